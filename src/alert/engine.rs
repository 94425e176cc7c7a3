//! The alert policy applied to a stream of runs: per-probe state held in memory (authoritative
//! for the life of the process, across reloads) and recorded change by change in the state log
//! `{state_dir}/state.log`, so an open incident stays open across a restart.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Utc};

use super::AlertSettings;
use super::dispatch::{Dispatcher, LEGACY_OUTBOX_FILE, Outbox};
use super::policy::{Decision, OpenAlert, ProbeAlertState};
use super::trigger::AlertContext;
use super::{EventKind, Link, Notification, PagerPlan, Severity};
use crate::alerting::PolicyConfig;
use crate::clock::Clock;
use crate::report::ProbeRun;
use crate::store::{Loaded, Store};
use tokio::sync::watch;

/// The state log's name inside `state_dir` (alert state and the outbox).
pub const STATE_LOG: &str = "state.log";
/// Where an earlier version kept alert state (migrated on first start).
pub const LEGACY_STATE_FILE: &str = "alert-state.json";
const ALERT: &str = "a/";

/// Set by a migration that read the old outbox whole: an open alert's trigger that it did not
/// hold had been delivered (the old format kept no record of delivery).
const LEGACY_MARK: &str = "m/legacy-outbox-read";

// `Dispatcher::start` lives here, beside `open_store`, rather than in `dispatch/`: opening
// the state files (and migrating the legacy outbox, which needs `dispatch::Outbox`) is this
// module's job, and dispatch importing it back would tie the two modules in a circle.
impl Dispatcher {
    /// Opens the state log in `state_dir` (what an earlier run could not deliver) and starts
    /// one task per pager; see [`Dispatcher::start_with`]. For callers without alert state of
    /// their own (the service shares one log between alert state and the outbox). `clock` gives
    /// every timestamp (tests pass one on tokio's paused clock).
    pub fn start(
        pagers: Vec<PagerPlan>,
        state_dir: &Path,
        metrics: crate::metrics::Metrics,
        clock: Clock,
        shutdown: watch::Receiver<bool>,
    ) -> Dispatcher {
        let (store, loaded) = open_store(state_dir);
        let outbox = Outbox::from_loaded(&loaded);
        let tasks = crate::supervise::Supervisor::detached(&metrics.region);
        let mut d = Dispatcher::start_with(pagers, outbox, store, metrics, clock, shutdown, &tasks);
        d.owns_store = true;
        d
    }
}

/// Opens `{state_dir}/state.log`. On the first start after an upgrade, the `alert-state.json`
/// and `outbox.json` of earlier versions are read into it and renamed `*.migrated`.
pub fn open_store(state_dir: &Path) -> (Store, Loaded) {
    let path = state_dir.join(STATE_LOG);
    let (store, mut loaded) = Store::open(&path);
    if loaded.existed {
        return (store, loaded);
    }
    let state_path = state_dir.join(LEGACY_STATE_FILE);
    let outbox_path = state_dir.join(LEGACY_OUTBOX_FILE);
    let mut records: Vec<(String, serde_json::Value)> = Vec::new();
    let mut found = false;
    if let Ok(reader) = crate::diag::file::open_state(&state_path) {
        found = true;
        match serde_json::from_reader::<_, BTreeMap<String, serde_json::Value>>(reader) {
            Ok(states) => {
                records.extend(states.into_iter().map(|(p, s)| (format!("{ALERT}{p}"), s)));
            }
            Err(e) => {
                tracing::error!(path = %state_path.display(), error = %e, "old alert state unreadable; incidents are rebuilt from what the outbox holds");
            }
        }
    }
    match Outbox::migrate_legacy(&outbox_path) {
        Ok(Some(r)) => {
            found = true;
            records.extend(r);
            records.push((LEGACY_MARK.to_string(), serde_json::Value::Bool(true)));
        }
        Ok(None) => {}
        Err(e) => {
            found = true;
            tracing::error!(path = %outbox_path.display(), error = %e, "old outbox unreadable; the triggers of open alerts will be sent again");
        }
    }
    if !found {
        return (store, loaded);
    }
    for (k, v) in records {
        store.put(&k, &v);
        loaded.entries.insert(k, v.to_string());
    }
    if store.flush(std::time::Duration::from_secs(5)) {
        for old in [&state_path, &outbox_path] {
            if old.exists() {
                let mut to = old.as_os_str().to_os_string();
                to.push(".migrated");
                let _ = std::fs::rename(old, to);
            }
        }
        tracing::info!(path = %path.display(), "alert state and outbox migrated to the state log");
    }
    (store, loaded)
}

/// Alert state for every probe of one region.
pub struct AlertEngine {
    region: String,
    configs: HashMap<String, PolicyConfig>,
    links: Vec<Link>,
    states: BTreeMap<String, ProbeAlertState>,
    store: Store,
    /// See [`LEGACY_MARK`].
    legacy_delivered: bool,
    /// Incidents `configure` resolved because their probe left the configuration, until the
    /// next `reconcile`: their triggers are still recorded as delivered, and reconcile must not
    /// take them for lost incidents and send a second resolve.
    resolved_removed: Vec<String>,
    /// The system clock minus the service's, as last told ([`AlertEngine::follow_system_clock`]).
    system_offset: chrono::TimeDelta,
}

impl AlertEngine {
    /// The engine for `settings` with the state `loaded` from the log; `now` (the service's
    /// clock) dates the resolves of incidents whose probe is no longer configured.
    pub fn new(
        settings: &AlertSettings,
        store: Store,
        loaded: &Loaded,
        now: DateTime<Utc>,
    ) -> AlertEngine {
        let states: BTreeMap<String, ProbeAlertState> = loaded.decode(ALERT).into_iter().collect();
        let mut engine = AlertEngine {
            region: settings.region.clone(),
            configs: HashMap::new(),
            links: Vec::new(),
            states,
            store,
            legacy_delivered: loaded.entries.contains_key(LEGACY_MARK),
            system_offset: chrono::TimeDelta::zero(),
            resolved_removed: Vec::new(),
        };
        let open: usize = engine.states.values().map(|s| s.open().count()).sum();
        if open > 0 {
            tracing::info!(region = %settings.region, open, "restored open alerts");
        }
        engine.configure(settings, now);
        engine
    }

    /// Opens `{state_dir}/state.log` and builds the engine (tests and tools; the service
    /// shares the log with the outbox).
    pub fn load(settings: &AlertSettings, state_dir: &Path, now: DateTime<Utc>) -> AlertEngine {
        let (store, loaded) = open_store(state_dir);
        AlertEngine::new(settings, store, &loaded, now)
    }

    /// Takes a new configuration (a reload), keeping the state of every probe still configured.
    /// Open alerts of a probe that left the configuration are resolved (its incident would
    /// otherwise stay open at the pager for ever); returned with the pagers to send them to,
    /// dated `now`.
    pub fn configure(
        &mut self,
        settings: &AlertSettings,
        now: DateTime<Utc>,
    ) -> Vec<(Notification, Option<Vec<String>>)> {
        self.links = settings.links.clone();
        let old = std::mem::replace(
            &mut self.configs,
            settings
                .probes
                .iter()
                .map(|p| (p.name.clone(), p.alerting.clone()))
                .collect(),
        );
        let gone: Vec<String> = self
            .states
            .keys()
            .filter(|p| !self.configs.contains_key(*p))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for probe in gone {
            let Some(state) = self.states.remove(&probe) else {
                continue;
            };
            self.store.delete(&format!("{ALERT}{probe}"));
            let pagers = old.get(&probe).and_then(|c| c.pagers.clone());
            for (severity, open) in state.open() {
                if open.notified_at.is_none() {
                    continue;
                }
                tracing::warn!(
                    probe = %probe,
                    region = %self.region,
                    severity = %severity.as_str(),
                    dedup_key = %open.dedup_key,
                    "probe left the configuration during its incident; resolving the incident"
                );
                self.resolved_removed.push(open.dedup_key.clone());
                out.push((removed_resolve(open, &probe, now), pagers.clone()));
            }
        }
        out
    }

    /// Where the system clock is now relative to the service's ([`crate::clock::Clock::offset`]):
    /// maintenance windows are judged on the system clock (they are written in wall-clock time),
    /// so a host clock stepped after start moves them with it. The consumer tells it before
    /// each run and tick.
    pub fn follow_system_clock(&mut self, offset: chrono::TimeDelta) {
        self.system_offset = offset;
    }

    /// Feeds one run; records the probe's state when it changed.
    pub fn observe(&mut self, run: &ProbeRun, now: DateTime<Utc>) -> Vec<Decision> {
        let Some(config) = self.configs.get(&run.probe) else {
            return Vec::new();
        };
        // Looked up by `&str`: `entry` would allocate the name on every run.
        if !self.states.contains_key(&run.probe) {
            self.states
                .insert(run.probe.clone(), ProbeAlertState::default());
        }
        let Some(state) = self.states.get_mut(&run.probe) else {
            return Vec::new();
        };
        // A failed run always changes what is saved (its count, its evidence, the open alert's
        // latest trigger), so only a pass is compared: during an incident, when every probe
        // fails at once, that skips two copies per run of a state holding the open alert's
        // whole notification.
        let before = run.success.then(|| durable(state, config));
        let cx = AlertContext {
            probe: &run.probe,
            region: &self.region,
            config,
            links: &self.links,
            system_offset: self.system_offset,
        };
        let decisions = state.observe(&cx, run, now);
        if before.is_none_or(|b| durable(state, config) != b) {
            self.store.put(&format!("{ALERT}{}", run.probe), state);
        }
        decisions
    }

    /// Reminders and held-back triggers; returns (probe, decision) pairs.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<(String, Decision)> {
        let mut out = Vec::new();
        for (probe, state) in &mut self.states {
            let Some(config) = self.configs.get(probe) else {
                continue;
            };
            let cx = AlertContext {
                probe,
                region: &self.region,
                config,
                links: &self.links,
                system_offset: self.system_offset,
            };
            let decisions = state.tick(&cx, now);
            if !decisions.is_empty() {
                self.store.put(&format!("{ALERT}{probe}"), &*state);
            }
            out.extend(decisions.into_iter().map(|d| (probe.clone(), d)));
        }
        out
    }

    /// Compares open alerts with what the outbox knows reached the pagers, so a damaged or
    /// lost record on either side loses no incident:
    /// - an open alert whose trigger is neither queued for a pager nor recorded as delivered
    ///   there gets its trigger queued again (at-least-once: a pager may see it twice, and
    ///   deduplicates by key);
    /// - a trigger recorded as delivered whose alert the state does not hold (alert state
    ///   lost) reopens the alert, so its resolve is sent when the probe recovers; if the probe
    ///   is no longer configured, its resolve is queued now.
    ///
    /// Returns (notification, pagers) to queue, dated `now`.
    pub fn reconcile(
        &mut self,
        outbox: &mut Outbox,
        sinks: &[String],
        now: DateTime<Utc>,
    ) -> Vec<(Notification, Vec<String>)> {
        let mut out = Vec::new();
        let resolved_removed = std::mem::take(&mut self.resolved_removed);
        for (sink, trigger) in outbox.settled() {
            if outbox.queued(&sink, &trigger.dedup_key)
                || resolved_removed.contains(&trigger.dedup_key)
            {
                continue; // its resolve (or a newer trigger) is on the way
            }
            let held = self
                .states
                .get(&trigger.probe)
                .is_some_and(|s| s.open().any(|(_, a)| a.dedup_key == trigger.dedup_key));
            if held {
                continue;
            }
            let open = OpenAlert {
                dedup_key: trigger.dedup_key.clone(),
                since: trigger.started_at,
                notified_at: Some(trigger.at),
                last: trigger.clone(),
                paged: trigger.failed_step.clone().zip(trigger.reason),
            };
            if self.configs.contains_key(&trigger.probe) {
                tracing::warn!(probe = %trigger.probe, region = %self.region, sink = %sink,
                    dedup_key = %trigger.dedup_key,
                    "alert state had lost an incident whose trigger reached a pager; reopened until the probe recovers");
                let state = self.states.entry(trigger.probe.clone()).or_default();
                match trigger.severity {
                    Severity::Critical => {
                        state.critical.get_or_insert(open);
                        state.failing_since.get_or_insert(trigger.started_at);
                    }
                    Severity::Warning => {
                        state.warning.get_or_insert(open);
                    }
                }
                state.successes = 0;
                state.fast = 0;
                self.store
                    .put(&format!("{ALERT}{}", trigger.probe), &*state);
            } else {
                tracing::warn!(probe = %trigger.probe, region = %self.region, sink = %sink,
                    dedup_key = %trigger.dedup_key,
                    "probe left the configuration during its incident; resolving the incident");
                out.push((removed_resolve(&open, &trigger.probe, now), vec![sink]));
            }
        }
        for (probe, state) in &self.states {
            let Some(config) = self.configs.get(probe) else {
                continue;
            };
            let targets: Vec<String> = match &config.pagers {
                Some(list) => list.clone(),
                None => sinks.to_vec(),
            };
            for (_, open) in state.open() {
                if open.notified_at.is_none() {
                    continue; // held back by maintenance: the tick sends it
                }
                let missing: Vec<String> = targets
                    .iter()
                    .filter(|sink| {
                        !outbox.queued(sink, &open.dedup_key)
                            && !outbox
                                .settled()
                                .iter()
                                .any(|(s, n)| s == *sink && n.dedup_key == open.dedup_key)
                    })
                    .cloned()
                    .collect();
                if missing.is_empty() {
                    continue;
                }
                if self.legacy_delivered {
                    for sink in &missing {
                        outbox.mark_settled(&self.store, sink, &open.last);
                    }
                    continue;
                }
                tracing::warn!(probe = %probe, region = %self.region, sinks = %missing.join(","),
                    dedup_key = %open.dedup_key,
                    "open alert with no record of its trigger reaching these pagers; trigger queued again");
                let mut n = open.last.clone();
                n.at = now;
                n.reminder = false;
                out.push((n, missing));
            }
        }
        if self.legacy_delivered {
            self.legacy_delivered = false;
            self.store.delete(LEGACY_MARK);
        }
        out
    }

    /// The pagers a probe's notifications go to (`None`: all).
    pub fn pagers(&self, probe: &str) -> Option<&[String]> {
        self.configs.get(probe).and_then(|c| c.pagers.as_deref())
    }

    /// The last trigger of every incident on-call was told of, with its probe: what a pager
    /// added to a running prober must hear to know of incidents already open.
    pub fn open_triggers(&self) -> Vec<(String, super::Notification)> {
        self.states
            .iter()
            .flat_map(|(probe, s)| {
                s.open()
                    .filter(|(_, a)| a.notified_at.is_some())
                    .map(move |(_, a)| (probe.clone(), a.last.clone()))
            })
            .collect()
    }

    /// Open alerts of a probe.
    pub fn open(&self, probe: &str) -> Vec<(Severity, &OpenAlert)> {
        self.states
            .get(probe)
            .map(|s| s.open().collect())
            .unwrap_or_default()
    }

    /// The log this engine records to.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// The resolve for an incident whose probe was removed or renamed.
fn removed_resolve(open: &OpenAlert, probe: &str, now: DateTime<Utc>) -> Notification {
    let mut n = open.last.clone();
    n.kind = EventKind::Resolve;
    n.at = now;
    n.reminder = false;
    n.summary = format!(
        "{probe} in {}: the probe was removed from the configuration; resolving its incident",
        n.region
    );
    n
}

/// The part of a probe's state worth a disk write: a healthy probe changes only its last
/// success's timings and a pass count past the threshold every run, and writing that for every
/// probe every minute is work without a purpose (it is still saved with the next real change).
/// Built field by field, without the last success's step and phase timings: on the healthy
/// path (no evidence, no open alert) it allocates nothing, twice per run. A field added to
/// the state must be added here (the literal has no `..` on purpose).
fn durable(state: &ProbeAlertState, config: &PolicyConfig) -> ProbeAlertState {
    ProbeAlertState {
        failures: state.failures,
        successes: state.successes.min(config.success_threshold),
        slow: state.slow,
        fast: state.fast.min(config.success_threshold),
        failing_since: state.failing_since,
        slow_since: state.slow_since,
        evidence: state.evidence.clone(),
        last_success: None,
        critical: state.critical.clone(),
        warning: state.warning.clone(),
    }
}
