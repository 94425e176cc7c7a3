//! What `/api/v1/status` and the status page show: per probe its state, the last run and the
//! last good one, the next run, the last 60 results and open alerts. Fed only from `ProbeRun`s,
//! which are already scrubbed. Here the document and the live [`Status`] the consumer writes;
//! `history.rs` the history file a restart reads back (saved by a task of its own, never on
//! the probe path); `peer.rs` a peer's document (another region's status, read by the fleet
//! page), parsed and cut to its caps.

mod history;
pub mod peer;
mod system_time;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::report::{FailureReason, ProbeRun, Trigger};
use peer::{PEER_MAX_ALERTS, PEER_MAX_PAGERS, PEER_MAX_PROBES, first, last};

/// What `/readyz`, `check` and the log say when no `[[pager]]` is configured.
pub const NO_PAGER: &str =
    "no pager configured: alerts show only in metrics and status; nobody is paged";

/// How many past results each probe keeps.
pub const HISTORY_LEN: usize = 60;

/// The status history file in `state_dir`.
pub const HISTORY_FILE: &str = "status-history.json";
/// What a probe looks like at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProbeState {
    /// The last run passed and no alert is open.
    Up,
    /// Passing, but a latency warning is open.
    Degraded,
    /// The last run failed, or a critical alert is still open.
    Failing,
    /// No run yet (or a peer that did not say).
    #[default]
    Unknown,
}

impl ProbeState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeState::Up => "up",
            ProbeState::Degraded => "degraded",
            ProbeState::Failing => "failing",
            ProbeState::Unknown => "unknown",
        }
    }
}

/// One past result, small enough to keep 60 of per probe (40 bytes; the step name is
/// allocated only for a failure).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub time: DateTime<Utc>,
    pub success: bool,
    /// Range-checked when read back (the history file, a peer's status); written to the µs.
    #[serde(
        serialize_with = "crate::report::millis::serialize_f64",
        deserialize_with = "crate::report::millis::deserialize_f64"
    )]
    pub duration_ms: f64,
    pub failed_step: Option<Box<str>>,
    pub reason: Option<FailureReason>,
    #[serde(default)]
    pub trigger: Trigger,
}

/// An open alert as shown in status output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertView {
    pub severity: crate::alerting::Severity,
    pub dedup_key: String,
    pub since: DateTime<Utc>,
    pub summary: String,
}

/// One probe as `/api/v1/status` shows it (and as a peer's page reads it back: every field
/// has a default, so regions running different versions still understand each other).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ProbeStatus {
    pub probe: String,
    pub state: ProbeState,
    pub schedule: String,
    pub next_run: Option<DateTime<Utc>>,
    pub runs: u64,
    pub skipped: u64,
    /// Shared with `last_good` when the last run was good (one copy per probe, not two).
    #[serde(with = "shared_run")]
    pub last: Option<Arc<ProbeRun>>,
    pub last_success: Option<DateTime<Utc>>,
    /// Start of the first failed run of the current failure streak.
    pub failing_since: Option<DateTime<Utc>>,
    /// The last run that passed while no alert was open, for "this step took 40 ms when it
    /// last worked".
    #[serde(with = "shared_run")]
    pub last_good: Option<Arc<ProbeRun>>,
    /// Newest first.
    #[serde(deserialize_with = "first::<_, _, HISTORY_LEN>")]
    pub history: VecDeque<HistoryEntry>,
    #[serde(deserialize_with = "first::<_, _, PEER_MAX_ALERTS>")]
    pub alerts: Vec<AlertView>,
    /// A week of hourly roll-ups, oldest first: availability and the response-time chart.
    #[serde(deserialize_with = "last::<_, _, { crate::rollup::HOURS }>")]
    pub hourly: VecDeque<crate::rollup::HourBucket>,
    /// Availability over the last 24 hours and 7 days (from `hourly`), as of the document.
    pub availability: crate::rollup::Windows,
}

impl ProbeStatus {
    /// The state from the data itself (not the `state` field), so a peer's document is judged
    /// the same way as our own.
    pub fn judge(&self) -> ProbeState {
        let open = |sev| self.alerts.iter().any(|a| a.severity == sev);
        match &self.last {
            None if open(crate::alerting::Severity::Critical) => ProbeState::Failing,
            None => ProbeState::Unknown,
            Some(run) if !run.success => ProbeState::Failing,
            Some(_) if open(crate::alerting::Severity::Critical) => ProbeState::Failing,
            Some(_) if open(crate::alerting::Severity::Warning) => ProbeState::Degraded,
            Some(_) => ProbeState::Up,
        }
    }
}

/// The whole of `/api/v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct StatusDoc {
    pub region: String,
    pub version: String,
    pub ready: bool,
    pub pagers: usize,
    pub status_url: Option<String>,
    pub dashboard_url: Option<String>,
    #[serde(deserialize_with = "first::<_, _, PEER_MAX_PROBES>")]
    pub probes: Vec<ProbeStatus>,
    /// Each pager's delivery health: last success, last error, what waits.
    #[serde(deserialize_with = "first::<_, _, PEER_MAX_PAGERS>")]
    pub delivery: Vec<crate::delivery::PagerHealth>,
}

/// Shared status, written by the run consumer, read by the HTTP server.
#[derive(Debug)]
pub struct Status {
    region: String,
    /// What "now" is when a snapshot judges availability, and for the page and the peers'
    /// fetches the server makes from it: the service's clock ([`Status::with_clock`]).
    clock: Clock,
    probes: RwLock<BTreeMap<String, ProbeStatus>>,
    ready: AtomicBool,
    /// How many pagers the running configuration has (0: nobody can be paged).
    pagers: AtomicUsize,
    /// The running configuration's links and peers (they change on reload).
    config: RwLock<PageConfig>,
    /// Wakes the history writer.
    changed: tokio::sync::Notify,
}

/// Links and peers of the running configuration.
#[derive(Debug, Clone, Default)]
pub struct PageConfig {
    pub status_url: Option<String>,
    pub dashboard_url: Option<String>,
    /// Other regions' probers (`http://prober-us:9464`), shown beside this one on the page.
    pub peers: Vec<peer::Peer>,
}

impl Status {
    /// Empty status for `region`; the engine fills in the probes with [`Status::set_probes`].
    pub fn new(region: &str) -> Status {
        Status {
            region: region.to_string(),
            clock: Clock::system(),
            probes: RwLock::new(BTreeMap::new()),
            ready: AtomicBool::new(false),
            pagers: AtomicUsize::new(0),
            config: RwLock::new(PageConfig::default()),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// The same status reading time from `clock` (the service's) instead of the system clock
    /// as of construction, so tests judge it at a time of their choosing.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Status {
        self.clock = clock;
        self
    }

    /// The clock the status reads time from: the service's.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Links and peers from a (re)loaded plan.
    pub fn set_page_config(&self, config: PageConfig) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    pub fn page_config(&self) -> PageConfig {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn with_probe(&self, probe: &str, f: impl FnOnce(&mut ProbeStatus)) {
        // A poisoned lock means a panic elsewhere while holding it; the data is still usable.
        let mut map = self.probes.write().unwrap_or_else(|e| e.into_inner());
        // Looked up by `&str` first: every run comes here a few times, and `entry` would
        // allocate the name each time.
        if let Some(entry) = map.get_mut(probe) {
            return f(entry);
        }
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

    /// Records a finished run; the status keeps the `Arc`, not a copy.
    pub fn record(&self, run: &Arc<ProbeRun>) {
        self.with_probe(&run.probe, |p| {
            p.runs += 1;
            if run.success {
                p.last_success = Some(run.finished_at());
                p.failing_since = None;
                // "Good" is a pass while no alert was open: during a latency warning the
                // comparison should be with how fast it was before, not with itself.
                if p.alerts.is_empty() {
                    p.last_good = Some(Arc::clone(run));
                }
            } else if p.failing_since.is_none() {
                p.failing_since = Some(run.started_at);
            }
            p.history.push_front(HistoryEntry {
                time: run.started_at,
                success: run.success,
                duration_ms: crate::report::millis::round_ms(run.duration_ms),
                failed_step: run.failed_step.as_deref().map(Box::from),
                reason: run.reason,
                trigger: run.trigger,
            });
            p.history.truncate(HISTORY_LEN);
            crate::rollup::record(
                &mut p.hourly,
                run.started_at,
                run.success,
                run.duration_ms.as_secs_f64() * 1000.0,
            );
            p.last = Some(Arc::clone(run));
        });
        self.changed.notify_one();
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

    /// Every probe, with its `state` and availability judged now (by the status's clock).
    pub fn snapshot(&self) -> Vec<ProbeStatus> {
        let now = self.clock.now();
        let map = self.probes.read().unwrap_or_else(|e| e.into_inner());
        map.values()
            .map(|p| ProbeStatus {
                state: p.judge(),
                availability: crate::rollup::windows(&p.hourly, now),
                ..p.clone()
            })
            .collect()
    }

    /// `/api/v1/status`.
    pub fn doc(&self) -> StatusDoc {
        let config = self.page_config();
        StatusDoc {
            region: self.region.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ready: self.is_ready(),
            pagers: self.pagers(),
            status_url: config.status_url,
            dashboard_url: config.dashboard_url,
            probes: self.snapshot(),
            // Filled in by the server, which holds the pagers' health.
            delivery: Vec::new(),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }
}

/// A shared run in JSON: the run itself (serde's `rc` feature would rebuild every crate
/// that depends on serde for these two fields).
mod shared_run {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::report::ProbeRun;

    pub fn serialize<S: Serializer>(run: &Option<Arc<ProbeRun>>, s: S) -> Result<S::Ok, S::Error> {
        run.as_deref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<ProbeRun>>, D::Error> {
        Ok(Option::<ProbeRun>::deserialize(d)?.map(Arc::new))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::StepReport;
    use chrono::TimeZone as _;

    /// When the runs below start: a fixed time, so nothing here reads the system clock.
    pub(super) fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    pub(super) fn run(probe: &str, success: bool, error_len: usize) -> ProbeRun {
        let error = (!success).then(|| "x".repeat(error_len));
        ProbeRun {
            probe: probe.into(),
            region: "r".into(),
            success,
            started_at: t0(),
            duration_ms: Duration::from_millis(5),
            failed_step: (!success).then(|| "login".into()),
            reason: (!success).then_some(FailureReason::HttpStatus),
            error: error.clone(),
            trigger: Trigger::Scheduled,
            steps: vec![StepReport {
                name: "login".into(),
                kind: crate::report::KindName::new("http"),
                success,
                duration_ms: Duration::from_millis(5),
                reason: (!success).then_some(FailureReason::HttpStatus),
                error,
                phases: Default::default(),
                cleanup: false,
                gauges: Default::default(),
                cert_expiry: None,
                warnings: Vec::new(),
            }],
        }
    }

    /// What `/api/v1/status` writes of durations a clock measured: microseconds, never the
    /// 17 digits an `f64` sum shows (`4001.2431619999998` in the history, seen in a trial).
    #[test]
    fn history_and_hourly_durations_are_written_to_the_microsecond() {
        let status = Status::new("r").with_clock(Clock::starting_at(t0()));
        status.set_probes(&[("p".into(), "* * * * *".into())]);
        for ns in [4_001_243_162, 3_572_715, 3_460_689, 3_048_530] {
            let mut r = run("p", true, 0);
            r.duration_ms = Duration::from_nanos(ns);
            status.record(&Arc::new(r));
        }
        let doc = serde_json::to_value(status.snapshot()).unwrap();
        let p = &doc[0];
        assert_eq!(p["history"][3]["duration_ms"], serde_json::json!(4001.243));
        assert_eq!(p["hourly"][0]["ms"], serde_json::json!(4011.325));
        assert_eq!(p["hourly"][0]["max"], serde_json::json!(4001.243));
        let text = serde_json::to_string(&doc).unwrap();
        // Numbers only: the times are RFC 3339 strings.
        let long = regex::Regex::new(r":-?\d+\.\d{4,}[,}]").unwrap();
        assert!(!long.is_match(&text), "{text}");
    }

    #[test]
    fn state_is_a_word_for_each_case() {
        let mut p = ProbeStatus::default();
        assert_eq!(p.judge(), ProbeState::Unknown);
        p.last = Some(Arc::new(run("p", true, 0)));
        assert_eq!(p.judge(), ProbeState::Up);
        p.alerts.push(AlertView {
            severity: crate::alerting::Severity::Warning,
            dedup_key: "k".into(),
            since: t0(),
            summary: String::new(),
        });
        assert_eq!(p.judge(), ProbeState::Degraded);
        p.last = Some(Arc::new(run("p", false, 10)));
        assert_eq!(p.judge(), ProbeState::Failing);
    }

    /// Availability is judged at the service's clock: a run counts in the last 24 hours until
    /// the clock is a day past it, however long the test really took.
    #[tokio::test(start_paused = true)]
    async fn availability_is_judged_at_the_service_clock() {
        let status = Status::new("r").with_clock(Clock::starting_at(t0()));
        status.set_probes(&[("p".into(), "* * * * *".into())]);
        status.record(&Arc::new(run("p", true, 0)));
        let day = |s: &Status| s.snapshot()[0].availability.day.runs;
        assert_eq!(day(&status), 1);
        tokio::time::advance(Duration::from_secs(23 * 3600)).await;
        assert_eq!(day(&status), 1);
        tokio::time::advance(Duration::from_secs(2 * 3600)).await;
        assert_eq!(day(&status), 0, "a day and an hour later");
        assert_eq!(status.snapshot()[0].availability.week.runs, 1);
        assert_eq!(status.clock().now(), t0() + chrono::Duration::hours(25));
    }
}
