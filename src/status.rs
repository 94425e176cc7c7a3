//! What `/api/v1/status` and the status page show: per probe the last run, the next run, the
//! last 60 results and open alerts. Fed only from `ProbeRun`s, which are already scrubbed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::report::{FailureReason, ProbeRun, Trigger};

/// What `/readyz`, `check` and the log say when no `[[pager]]` is configured.
pub const NO_PAGER: &str =
    "no pager configured: alerts show only in metrics and status; nobody is paged";

/// How many past results each probe keeps.
pub const HISTORY_LEN: usize = 60;

/// One past result, small enough to keep 60 of per probe.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub time: DateTime<Utc>,
    pub success: bool,
    pub duration_ms: f64,
    pub failed_step: Option<String>,
    pub reason: Option<FailureReason>,
    pub trigger: Trigger,
}

/// An open alert as shown in status output.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub severity: crate::alert::Severity,
    pub dedup_key: String,
    pub since: DateTime<Utc>,
    pub summary: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ProbeStatus {
    pub probe: String,
    pub schedule: String,
    pub next_run: Option<DateTime<Utc>>,
    pub runs: u64,
    pub skipped: u64,
    pub last: Option<ProbeRun>,
    pub last_success: Option<DateTime<Utc>>,
    pub history: VecDeque<HistoryEntry>,
    pub alerts: Vec<AlertView>,
}

/// Shared status, written by the run consumer, read by the HTTP server.
#[derive(Debug, Default)]
pub struct Status {
    region: String,
    probes: RwLock<BTreeMap<String, ProbeStatus>>,
    ready: AtomicBool,
    /// How many pagers the running configuration has (0: nobody can be paged).
    pagers: AtomicUsize,
}

#[derive(Serialize)]
struct StatusView<'a> {
    region: &'a str,
    version: &'static str,
    ready: bool,
    pagers: usize,
    probes: Vec<ProbeStatus>,
}

impl Status {
    /// Empty status for `region`; the engine fills in the probes with [`Status::set_probes`].
    pub fn new(region: &str) -> Status {
        Status {
            region: region.to_string(),
            probes: RwLock::new(BTreeMap::new()),
            ready: AtomicBool::new(false),
            pagers: AtomicUsize::new(0),
        }
    }

    fn with_probe(&self, probe: &str, f: impl FnOnce(&mut ProbeStatus)) {
        // A poisoned lock means a panic elsewhere while holding it; the data is still usable.
        let mut map = self.probes.write().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(probe.to_string()).or_insert_with(|| ProbeStatus {
            probe: probe.to_string(),
            ..ProbeStatus::default()
        });
        f(entry);
    }

    /// Makes the probe list match a (re)loaded plan, keeping the history of probes that stay.
    pub fn set_probes(&self, probes: &[(String, String)]) {
        let mut map = self.probes.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|name, _| probes.iter().any(|(n, _)| n == name));
        for (name, schedule) in probes {
            let entry = map.entry(name.clone()).or_insert_with(|| ProbeStatus {
                probe: name.clone(),
                ..ProbeStatus::default()
            });
            entry.schedule = schedule.clone();
        }
    }

    pub fn record(&self, run: &ProbeRun) {
        self.with_probe(&run.probe, |p| {
            p.runs += 1;
            if run.success {
                p.last_success = Some(run.finished_at());
            }
            p.history.push_front(HistoryEntry {
                time: run.started_at,
                success: run.success,
                duration_ms: run.duration_ms.as_secs_f64() * 1000.0,
                failed_step: run.failed_step.clone(),
                reason: run.reason,
                trigger: run.trigger,
            });
            p.history.truncate(HISTORY_LEN);
            p.last = Some(run.clone());
        });
    }

    pub fn record_skip(&self, probe: &str, count: u64) {
        self.with_probe(probe, |p| p.skipped += count);
    }

    pub fn set_next_run(&self, probe: &str, at: DateTime<Utc>) {
        self.with_probe(probe, |p| p.next_run = Some(at));
    }

    pub fn set_alerts(&self, probe: &str, alerts: Vec<AlertView>) {
        self.with_probe(probe, |p| p.alerts = alerts);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn set_pagers(&self, n: usize) {
        self.pagers.store(n, Ordering::SeqCst);
    }

    /// How many pagers the running configuration has.
    pub fn pagers(&self) -> usize {
        self.pagers.load(Ordering::SeqCst)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn snapshot(&self) -> Vec<ProbeStatus> {
        let map = self.probes.read().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let view = StatusView {
            region: &self.region,
            version: env!("CARGO_PKG_VERSION"),
            ready: self.is_ready(),
            pagers: self.pagers(),
            probes: self.snapshot(),
        };
        serde_json::to_value(view).unwrap_or_default()
    }

    pub fn region(&self) -> &str {
        &self.region
    }
}
