//! The Prometheus registry and `record(&ProbeRun)`. Metric names are a contract with
//! dashboards and alert rules: blackbox_exporter's names where they mean the same.
//!
//! The per-probe `probe_*` families (59 series per 5-step probe, 59,000 at 1,000 probes) live
//! in one compact table and are written straight into the text format at scrape time: the
//! prometheus crate's `gather()` would first build and sort a protobuf-shaped copy of every
//! series (measured: 128 ms per 1,000-probe scrape, and a `Desc` plus label strings per series
//! in memory). The few `joincanary_*` and `process_*` series stay in the crate's registry. The
//! text is byte for byte what the crate's encoder writes for the same series (tested below).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use prometheus::{GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::report::{Phase, ProbeRun};

/// `joincanary_notifications_total` results: delivered, one failed attempt that will be retried,
/// given up. Every series exists from start-up so `increase()` sees the first failure.
pub const NOTIFICATION_RESULTS: [&str; 3] = ["delivered", "retry", "failed"];
/// `joincanary_notifications_total` events.
pub const NOTIFICATION_EVENTS: [&str; 2] = ["trigger", "resolve"];
/// `joincanary_alertmanager_resends_total` results.
pub const RESEND_RESULTS: [&str; 2] = ["delivered", "failed"];
/// `joincanary_heartbeats_total` results.
pub const HEARTBEAT_RESULTS: [&str; 2] = ["success", "failure"];

/// Default buckets, chosen for join flows: healthy (under 25 ms near the platform, under
/// 100 ms across regions), elevated (250 ms), the usual latency budget (1 s), very slow (5 s),
/// and past it the step timeouts (+Inf). Five buckets keep a 5-step probe at 59 series.
pub const DURATION_BUCKETS: [f64; 5] = [0.025, 0.1, 0.25, 1.0, 5.0];

/// `phase_histograms = true`: from a 1 ms loopback hop to a 30 s timeout.
pub const FULL_DURATION_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
];

/// Phases histogrammed by default: each step's `total`, and the signalling paths (a message
/// through the platform's pub/sub, the incident's failure point). The connection phases (dns,
/// connect, tls, first_byte, upgrade) add up to their step's total and are in every run's
/// status and page; `phase_histograms = true` exports them too.
const DEFAULT_PHASES: [&str; 3] = ["total", "round_trip", "fan_out"];

/// Every metric joincanary exports.
#[derive(Clone)]
pub struct Metrics {
    /// The `joincanary_*` and `process_*` families (the `probe_*` ones are in `probes`).
    pub registry: Registry,
    /// `{sink, event, result, region}`.
    pub notifications: IntCounterVec,
    pub outbox_pending: IntGaugeVec,
    pub outbox_oldest: GaugeVec,
    /// `{sink, result, region}`: Alertmanager keep-alive re-posts of firing alerts (not pages, so
    /// not in `notifications`).
    pub resends: IntCounterVec,
    pub pagers_configured: IntGauge,
    pub heartbeat_last_success: GaugeVec,
    /// `{heartbeat, result, region}`.
    pub heartbeats: IntCounterVec,
    pub reloads: IntCounterVec,
    /// `probe_resident_reconnects_total{probe, region, cause}`: a resident probe opened its
    /// session again (`failure`, `rotation`). In the registry, not the probe table: only
    /// resident probes have it, two series each.
    pub resident_reconnects: IntCounterVec,
    /// The region every `joincanary_*` series carries.
    pub region: String,
    /// Every phase histogrammed (`phase_histograms = true`), else [`DEFAULT_PHASES`] only.
    all_phases: bool,
    /// The step histograms' buckets and their `le` labels, formatted once.
    buckets: &'static [f64],
    bucket_labels: Arc<[String]>,
    /// Every `probe_*` series.
    probes: Arc<Mutex<ProbeTable>>,
    /// Per sink, when its oldest queued notification was queued: the age is worked out at
    /// scrape time, so it grows while nothing is delivered (a stuck queue is the point).
    oldest_queued: Arc<Mutex<BTreeMap<String, Option<DateTime<Utc>>>>>,
    /// Each pager's last success, last error and queue, for the status page: every part that
    /// delivers already holds this handle.
    pub delivery: Arc<crate::alert::health::DeliveryHealth>,
}

/// Metric construction only fails on invalid names or duplicate registration, both fixed at
/// compile time here; the error type keeps callers honest anyway.
#[derive(Debug, thiserror::Error)]
#[error("cannot register metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// probe -> region -> its series (one region per probe in practice, so a short list).
#[derive(Default)]
struct ProbeTable {
    probes: BTreeMap<String, Vec<(String, ProbeCells)>>,
}

impl ProbeTable {
    fn with_cells<R>(
        &mut self,
        probe: &str,
        region: &str,
        f: impl FnOnce(&mut ProbeCells) -> R,
    ) -> R {
        if let Some(regions) = self.probes.get_mut(probe) {
            return f(region_cells(regions, region));
        }
        // One region per probe in practice: room for one, not the default four.
        f(region_cells(
            self.probes
                .entry(probe.to_owned())
                .or_insert_with(|| Vec::with_capacity(1)),
            region,
        ))
    }
}

fn region_cells<'a>(
    regions: &'a mut Vec<(String, ProbeCells)>,
    region: &str,
) -> &'a mut ProbeCells {
    let i = match regions.iter().position(|(r, _)| r == region) {
        Some(i) => i,
        None => {
            regions.push((region.to_owned(), ProbeCells::default()));
            regions.len() - 1
        }
    };
    &mut regions[i].1
}

/// The series of one probe in one region. A series exists from the moment the prometheus
/// crate would have created it (`register_probe` or the first run), at 0 until set.
#[derive(Default)]
struct ProbeCells {
    /// Set by every run; absent before the first one.
    last: Option<LastRun>,
    /// `probe_interval_seconds`.
    interval: Option<f64>,
    /// `probe_runs_total` by `result`: `[failure, success]`.
    runs: Option<[u64; 2]>,
    /// `probe_skipped_total` by reason.
    skipped: Vec<(&'static str, u64)>,
    /// `probe_alert_firing` by severity.
    firing: Vec<(&'static str, i64)>,
    /// `probe_failures_total` by (reason, step).
    failures: Vec<(&'static str, Box<str>, u64)>,
    /// `probe_step_duration_seconds` per step, then phase.
    steps: Vec<(Box<str>, StepHists)>,
    /// `probe_gauge_value` by (name, step).
    gauges: Vec<(Box<str>, Box<str>, f64)>,
}

/// One step's histograms, by phase.
type StepHists = Vec<(Phase, Hist)>;

/// The gauges every run sets.
#[derive(Default)]
struct LastRun {
    success: i64,
    duration: f64,
    finished: f64,
    last_success: f64,
    lag: f64,
    /// Read back at start-up ([`Metrics::restore_last`]), no run of this process yet:
    /// `probe_last_run_timestamp_seconds` and `probe_schedule_lag_seconds` wait for one, so a
    /// rule counting time since the last run counts from the process start until then.
    restored: bool,
}

/// One histogram: per-bucket (not cumulative) counts, as the prometheus crate keeps them.
struct Hist {
    counts: Box<[u64]>,
    sum: f64,
    count: u64,
}

impl Hist {
    fn new(buckets: usize) -> Hist {
        Hist {
            counts: vec![0; buckets].into_boxed_slice(),
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, buckets: &[f64], v: f64) {
        if let Some(i) = buckets.iter().position(|b| v <= *b)
            && let Some(c) = self.counts.get_mut(i)
        {
            *c += 1;
        }
        self.count += 1;
        self.sum += v;
    }
}

/// A `probe_*` family: its name, help, type and label names in the order they are written
/// (sorted, as the prometheus crate writes them).
struct Family {
    id: Fam,
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    labels: &'static [&'static str],
}

/// Which `probe_*` family.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fam {
    AlertFiring,
    Duration,
    Failures,
    GaugeValue,
    Interval,
    LastRun,
    LastSuccess,
    Runs,
    Lag,
    Skipped,
    StepDuration,
    Success,
}

const PR: &[&str] = &["probe", "region"];

/// Sorted by name, as the exposition lists them.
const FAMILIES: [Family; 12] = [
    Family {
        id: Fam::AlertFiring,
        name: "probe_alert_firing",
        help: "Whether an alert is open for the probe, by severity",
        kind: "gauge",
        labels: &["probe", "region", "severity"],
    },
    Family {
        id: Fam::Duration,
        name: "probe_duration_seconds",
        help: "Duration of the last run of the probe",
        kind: "gauge",
        labels: PR,
    },
    Family {
        id: Fam::Failures,
        name: "probe_failures_total",
        help: "Failed runs by the step that failed and its reason",
        kind: "counter",
        labels: &["probe", "reason", "region", "step"],
    },
    Family {
        id: Fam::GaugeValue,
        name: "probe_gauge_value",
        help: "What a redis or http_json step read at the last run (used_memory, memory_ratio, a queue depth, ...); absent when that run did not read it",
        kind: "gauge",
        labels: &["name", "probe", "region", "step"],
    },
    Family {
        id: Fam::Interval,
        name: "probe_interval_seconds",
        help: "The probe schedule's interval (shortest gap between two runs)",
        kind: "gauge",
        labels: PR,
    },
    Family {
        id: Fam::LastRun,
        name: "probe_last_run_timestamp_seconds",
        help: "When the last run finished (Unix time)",
        kind: "gauge",
        labels: PR,
    },
    Family {
        id: Fam::LastSuccess,
        name: "probe_last_success_timestamp_seconds",
        help: "When the last successful run finished (Unix time)",
        kind: "gauge",
        labels: PR,
    },
    Family {
        id: Fam::Runs,
        name: "probe_runs_total",
        help: "Probe runs by result (success, failure)",
        kind: "counter",
        labels: &["probe", "region", "result"],
    },
    Family {
        id: Fam::Lag,
        name: "probe_schedule_lag_seconds",
        help: "How late the last run started after its scheduled time",
        kind: "gauge",
        labels: PR,
    },
    Family {
        id: Fam::Skipped,
        name: "probe_skipped_total",
        help: "Scheduled runs skipped, by reason (overlap: the previous run was still going; backlog: its result was not yet recorded)",
        kind: "counter",
        labels: &["probe", "reason", "region"],
    },
    Family {
        id: Fam::StepDuration,
        name: "probe_step_duration_seconds",
        help: "Duration of each step and phase of the join flow",
        kind: "histogram",
        labels: &["phase", "probe", "region", "step"],
    },
    Family {
        id: Fam::Success,
        name: "probe_success",
        help: "Whether the last run of the probe succeeded (1) or not (0)",
        kind: "gauge",
        labels: PR,
    },
];

/// One series of a family while a scrape is written: label values in the family's label
/// order (unused ones empty) and the value.
struct Row<'a> {
    labels: [&'a str; 4],
    value: Value<'a>,
}

enum Value<'a> {
    Float(f64),
    Int(i64),
    Count(u64),
    Hist(&'a Hist),
}

impl Metrics {
    /// Builds the registry with build info for `region` and the process collector.
    ///
    /// # Errors
    /// Registration failure (a programming error).
    pub fn new(region: &str) -> Result<Metrics, MetricsError> {
        Metrics::with_detail(region, false)
    }

    /// [`Metrics::new`], with every phase histogrammed on [`FULL_DURATION_BUCKETS`] when
    /// `all_phases` (the service's `phase_histograms`).
    ///
    /// # Errors
    /// Registration failure (a programming error).
    pub fn with_detail(region: &str, all_phases: bool) -> Result<Metrics, MetricsError> {
        let buckets: &'static [f64] = if all_phases {
            &FULL_DURATION_BUCKETS
        } else {
            &DURATION_BUCKETS
        };
        let registry = Registry::new();
        let m = Metrics {
            notifications: IntCounterVec::new(
                Opts::new(
                    "joincanary_notifications_total",
                    "Notification delivery attempts by pager, event and result (delivered; retry: an attempt failed and will be retried; failed: given up)",
                ),
                &["sink", "event", "result", "region"],
            )?,
            outbox_pending: IntGaugeVec::new(
                Opts::new(
                    "joincanary_outbox_pending",
                    "Notifications queued for the pager and not yet delivered",
                ),
                &["sink", "region"],
            )?,
            outbox_oldest: GaugeVec::new(
                Opts::new(
                    "joincanary_outbox_oldest_seconds",
                    "Age of the oldest notification queued for the pager (0 when none)",
                ),
                &["sink", "region"],
            )?,
            resends: IntCounterVec::new(
                Opts::new(
                    "joincanary_alertmanager_resends_total",
                    "Re-posts of firing alerts to an Alertmanager pager (keep-alives, not pages) by result (delivered, failed)",
                ),
                &["sink", "result", "region"],
            )?,
            pagers_configured: IntGauge::with_opts(
                Opts::new(
                    "joincanary_pagers_configured",
                    "Number of configured pagers; 0 means this prober cannot page anyone",
                )
                .const_label("region", region),
            )?,
            heartbeat_last_success: GaugeVec::new(
                Opts::new(
                    "joincanary_heartbeat_last_success_timestamp_seconds",
                    "When the heartbeat was last pinged successfully (Unix time)",
                ),
                &["heartbeat", "region"],
            )?,
            heartbeats: IntCounterVec::new(
                Opts::new(
                    "joincanary_heartbeats_total",
                    "Heartbeat pings by result (success, failure)",
                ),
                &["heartbeat", "result", "region"],
            )?,
            reloads: IntCounterVec::new(
                Opts::new(
                    "joincanary_config_reloads_total",
                    "Configuration reloads by result (success, failure)",
                ),
                &["result", "region"],
            )?,
            resident_reconnects: IntCounterVec::new(
                Opts::new(
                    "probe_resident_reconnects_total",
                    "Times a resident probe opened its session again, by cause (failure, rotation)",
                ),
                &["probe", "region", "cause"],
            )?,
            registry,
            region: region.to_string(),
            all_phases,
            buckets,
            bucket_labels: buckets.iter().map(f64::to_string).collect(),
            probes: Arc::default(),
            oldest_queued: Arc::default(),
            delivery: Arc::default(),
        };
        for result in ["success", "failure"] {
            m.reloads.with_label_values(&[result, region]);
        }
        let build = IntGaugeVec::new(
            Opts::new("joincanary_build_info", "Build information; always 1"),
            &["version", "region"],
        )?;
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), region])
            .set(1);
        m.registry.register(Box::new(build))?;
        for c in [
            Box::new(m.notifications.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.outbox_pending.clone()),
            Box::new(m.outbox_oldest.clone()),
            Box::new(m.resends.clone()),
            Box::new(m.pagers_configured.clone()),
            Box::new(m.heartbeat_last_success.clone()),
            Box::new(m.heartbeats.clone()),
            Box::new(m.reloads.clone()),
            Box::new(m.resident_reconnects.clone()),
        ] {
            m.registry.register(c)?;
        }
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(crate::process::ProcessMetrics::for_self()?))?;
        Ok(m)
    }

    fn table(&self) -> MutexGuard<'_, ProbeTable> {
        // Plain numbers; a panic elsewhere while holding the lock leaves them usable.
        self.probes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates the zero-valued series of a probe so `rate()` and `absent()` work from the first
    /// scrape, before anything has happened.
    pub fn register_probe(&self, probe: &str, region: &str, interval: Option<std::time::Duration>) {
        self.table().with_cells(probe, region, |c| {
            if let Some(i) = interval {
                c.interval = Some(i.as_secs_f64());
            }
            c.runs.get_or_insert([0, 0]);
            for reason in ["overlap", "backlog"] {
                counter(&mut c.skipped, reason);
            }
            for severity in ["critical", "warning"] {
                if !c.firing.iter().any(|(s, _)| *s == severity) {
                    c.firing.push((severity, 0));
                }
            }
        });
    }

    /// Creates a resident probe's reconnect series at 0 (two per probe and region).
    pub fn register_resident(&self, probe: &str, region: &str) {
        for cause in crate::resident::ReconnectCause::ALL {
            self.resident_reconnects
                .with_label_values(&[probe, region, cause.as_str()]);
        }
    }

    /// Counts one re-established resident session.
    pub fn count_reconnect(&self, probe: &str, region: &str, cause: &str) {
        self.resident_reconnects
            .with_label_values(&[probe, region, cause])
            .inc();
    }

    /// Records one run. Phases never measured are omitted, not recorded as zero.
    pub fn record(&self, run: &ProbeRun, lag: Option<std::time::Duration>) {
        let finished = run.finished_at().timestamp_millis() as f64 / 1000.0;
        let (all_phases, buckets) = (self.all_phases, self.buckets);
        self.table().with_cells(&run.probe, &run.region, |c| {
            let runs = c.runs.get_or_insert([0, 0]);
            runs[usize::from(run.success)] += 1;
            let last = c.last.get_or_insert_with(LastRun::default);
            last.restored = false;
            last.success = i64::from(run.success);
            last.duration = run.duration_ms.as_secs_f64();
            last.finished = finished;
            if run.success {
                last.last_success = finished;
            }
            if let Some(lag) = lag {
                last.lag = lag.as_secs_f64();
            }
            // A failed cleanup step never fails the run, but it is counted: a platform leaking
            // sessions because `destroy` keeps failing is worth a graph.
            let failed_cleanups = run
                .failed_cleanups()
                .filter_map(|s| Some((&s.name, s.reason?)));
            for (step, reason) in run
                .failed_step
                .as_ref()
                .zip(run.reason)
                .into_iter()
                .chain(failed_cleanups)
            {
                let reason = reason.as_str();
                match c
                    .failures
                    .iter_mut()
                    .find(|(r, s, _)| *r == reason && **s == **step)
                {
                    Some((_, _, n)) => *n += 1,
                    None => c.failures.push((reason, step.as_str().into(), 1)),
                }
            }
            // A gauge is what this run read: one it did not read (Redis's `maxmemory` back to 0
            // leaves no `memory_ratio`, a failed run reads nothing) is removed, not kept at a
            // stale value that a rule would fire on for ever.
            c.gauges.retain(|(name, step, _)| {
                run.steps
                    .iter()
                    .any(|s| *s.name == **step && s.gauges.contains_key(&**name))
            });
            for step in &run.steps {
                for (phase, d) in &step.phases {
                    if !all_phases && !DEFAULT_PHASES.contains(&phase.as_str()) {
                        continue;
                    }
                    let at = match c.steps.iter().position(|(s, _)| **s == *step.name) {
                        Some(i) => i,
                        None => {
                            c.steps.push((step.name.as_str().into(), Vec::new()));
                            c.steps.len() - 1
                        }
                    };
                    let phases = &mut c.steps[at].1;
                    let h = match phases.iter().position(|(p, _)| p == phase) {
                        Some(i) => i,
                        None => {
                            phases.push((*phase, Hist::new(buckets.len())));
                            phases.len() - 1
                        }
                    };
                    phases[h].1.observe(buckets, d.as_secs_f64());
                }
                for (name, value) in &step.gauges {
                    match c
                        .gauges
                        .iter_mut()
                        .find(|(n, s, _)| **n == **name && **s == *step.name)
                    {
                        Some((_, _, v)) => *v = *value,
                        None => {
                            c.gauges
                                .push((name.as_str().into(), step.name.as_str().into(), *value))
                        }
                    }
                }
            }
        });
    }

    /// What the last run before a restart said (from the status history): `probe_success`,
    /// `probe_duration_seconds` and `probe_last_success_timestamp_seconds` are exported from
    /// start-up instead of being absent until the first run, so the probe does not drop out of
    /// the rules and their `for:` timers do not start again. A run of this process replaces it;
    /// a probe that already ran is left alone.
    pub fn restore_last(
        &self,
        probe: &str,
        region: &str,
        success: bool,
        duration: std::time::Duration,
        last_success: Option<DateTime<Utc>>,
    ) {
        self.table().with_cells(probe, region, |c| {
            c.last.get_or_insert_with(|| LastRun {
                success: i64::from(success),
                duration: duration.as_secs_f64(),
                last_success: last_success.map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0),
                restored: true,
                ..LastRun::default()
            });
        });
    }

    /// Counts `count` skipped ticks of a probe (`reason`: see `scheduler::SkipReason`).
    pub fn record_skip(&self, probe: &str, region: &str, reason: &'static str, count: u64) {
        self.table().with_cells(probe, region, |c| {
            *counter(&mut c.skipped, reason) += count;
        });
    }

    /// Sets `probe_alert_firing` of a probe for each (severity, open).
    pub fn set_alert_firing(&self, probe: &str, region: &str, firing: &[(&'static str, bool)]) {
        self.table().with_cells(probe, region, |c| {
            for (severity, open) in firing {
                let v = i64::from(*open);
                match c.firing.iter_mut().find(|(s, _)| s == severity) {
                    Some((_, x)) => *x = v,
                    None => c.firing.push((severity, v)),
                }
            }
        });
    }

    /// Counts a configuration reload (`success` or `failure`).
    pub fn count_reload(&self, result: &str) {
        self.reloads
            .with_label_values(&[result, &self.region])
            .inc();
    }

    /// Sets up the delivery series of the configured pagers (a reload may change them): every
    /// `notifications_total` series at 0 (existing counts are kept), the outbox gauges of pagers
    /// no longer configured removed, and `joincanary_pagers_configured`.
    pub fn register_pagers(&self, sinks: &[String]) {
        self.pagers_configured
            .set(i64::try_from(sinks.len()).unwrap_or(i64::MAX));
        self.outbox_pending.reset();
        self.outbox_oldest.reset();
        self.lock_oldest().clear();
        self.delivery.configure(sinks);
        for sink in sinks {
            for event in NOTIFICATION_EVENTS {
                for result in NOTIFICATION_RESULTS {
                    self.notifications
                        .with_label_values(&[sink, event, result, &self.region]);
                }
            }
            self.set_outbox(sink, 0, None);
        }
    }

    /// Creates the re-post series of the Alertmanager pagers at 0.
    pub fn register_resends(&self, sinks: &[String]) {
        for sink in sinks {
            for result in RESEND_RESULTS {
                self.resends
                    .with_label_values(&[sink, result, &self.region]);
            }
        }
    }

    /// Counts one Alertmanager re-post of `sink` (see [`RESEND_RESULTS`]).
    pub fn count_resend(&self, sink: &str, result: &str) {
        self.resends
            .with_label_values(&[sink, result, &self.region])
            .inc();
    }

    /// Counts one delivery outcome of `sink` (see [`NOTIFICATION_RESULTS`]).
    pub fn count_notification(&self, sink: &str, event: &str, result: &str) {
        self.notifications
            .with_label_values(&[sink, event, result, &self.region])
            .inc();
    }

    /// What waits in `sink`'s queue: how many, and since when the oldest.
    pub fn set_outbox(&self, sink: &str, pending: usize, oldest: Option<DateTime<Utc>>) {
        self.outbox_pending
            .with_label_values(&[sink, &self.region])
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.lock_oldest().insert(sink.to_string(), oldest);
        self.delivery.queue(sink, pending, oldest);
        self.outbox_oldest
            .with_label_values(&[sink, &self.region])
            .set(age_seconds(oldest, Utc::now()));
    }

    /// Sets up a heartbeat's series at zero.
    pub fn register_heartbeat(&self, name: &str) {
        for result in HEARTBEAT_RESULTS {
            self.heartbeats
                .with_label_values(&[name, result, &self.region]);
        }
    }

    /// Counts one heartbeat ping; a success also stamps its time.
    pub fn count_heartbeat(&self, name: &str, ok: bool, at: DateTime<Utc>) {
        self.heartbeats
            .with_label_values(&[name, HEARTBEAT_RESULTS[usize::from(!ok)], &self.region])
            .inc();
        if ok {
            self.heartbeat_last_success
                .with_label_values(&[name, &self.region])
                .set(at.timestamp_millis() as f64 / 1000.0);
        }
    }

    fn lock_oldest(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Option<DateTime<Utc>>>> {
        // Plain data; a panic elsewhere while holding the lock leaves it usable.
        self.oldest_queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The text exposition format in one string (tests, small registries); the service
    /// streams it with [`Metrics::exposition`].
    pub fn render(&self) -> String {
        self.exposition().collect()
    }

    /// The text exposition format as a sequence of chunks of about [`CHUNK`] bytes: the
    /// registry's families and the `probe_*` ones, merged in name order. Each chunk is written
    /// when asked for, under the table's lock for that chunk only, so a 6 MB scrape of 1,000
    /// probes neither holds the lock for the whole scrape nor keeps 6 MB of text in memory at
    /// once (a buffer that size stays in the allocator's arenas after it is freed). Every
    /// series, histograms included, is written whole within one chunk.
    pub fn exposition(&self) -> Exposition {
        let now = Utc::now();
        for (sink, oldest) in self.lock_oldest().iter() {
            self.outbox_oldest
                .with_label_values(&[sink, &self.region])
                .set(age_seconds(*oldest, now));
        }
        let gathered = self.registry.gather();
        let mut units = Vec::with_capacity(gathered.len() + FAMILIES.len());
        let mut ours = FAMILIES.iter().peekable();
        for (i, mf) in gathered.iter().enumerate() {
            while let Some(f) = ours.next_if(|f| f.name < mf.name()) {
                units.push(Unit::Probe(f));
            }
            units.push(Unit::Registry(i));
        }
        units.extend(ours.map(Unit::Probe));
        Exposition {
            metrics: self.clone(),
            gathered,
            units,
            at: Cursor::default(),
        }
    }

    /// Writes groups of `family` from the cursor on until the chunk is full (false) or the
    /// family is done (true). A group is one probe's series (for the step histograms and
    /// `probe_gauge_value`, one probe's series of one phase or gauge name, which come first
    /// in the sort order).
    fn write_groups(&self, family: &Family, at: &mut Cursor, out: &mut String) -> bool {
        let table = self.table();
        let majors = at
            .majors
            .get_or_insert_with(|| majors_of(family.id, &table));
        let mut rows = Vec::new();
        let mut scratch = String::new();
        loop {
            let major = match family.id {
                Fam::StepDuration | Fam::GaugeValue => match majors.get(at.major) {
                    Some(m) => Some(m.as_str()),
                    None => return true,
                },
                _ if at.major > 0 => return true,
                _ => None,
            };
            let from = match &at.after {
                Some(p) => Bound::Excluded(p.as_str()),
                None => Bound::Unbounded,
            };
            for (probe, regions) in table.probes.range::<str, _>((from, Bound::Unbounded)) {
                rows.clear();
                rows_of(family.id, probe, regions, major, &mut rows);
                if !rows.is_empty() {
                    if !at.header {
                        at.header = true;
                        write_header(family, out);
                    }
                    rows.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
                    self.write_rows(family, &rows, &mut scratch, out);
                }
                if out.len() >= CHUNK {
                    at.after = Some(probe.clone());
                    return false;
                }
            }
            at.after = None;
            at.major += 1;
        }
    }

    fn write_rows(
        &self,
        family: &Family,
        rows: &[Row<'_>],
        scratch: &mut String,
        out: &mut String,
    ) {
        for row in rows {
            scratch.clear();
            for (i, (name, value)) in family.labels.iter().zip(row.labels).enumerate() {
                scratch.push(if i == 0 { '{' } else { ',' });
                scratch.push_str(name);
                scratch.push_str("=\"");
                push_escaped(scratch, value, true);
                scratch.push('"');
            }
            match row.value {
                Value::Float(v) => sample(out, family.name, "", scratch, "}", |o| push_f64(o, v)),
                Value::Int(v) => sample(out, family.name, "", scratch, "}", |o| push_i64(o, v)),
                Value::Count(v) => sample(out, family.name, "", scratch, "}", |o| push_u64(o, v)),
                Value::Hist(h) => {
                    let mut cumulative = 0;
                    for (le, n) in self.bucket_labels.iter().zip(h.counts.iter()) {
                        cumulative += n;
                        out.push_str(family.name);
                        out.push_str("_bucket");
                        out.push_str(scratch);
                        out.push_str(",le=\"");
                        out.push_str(le);
                        out.push_str("\"} ");
                        push_u64(out, cumulative);
                        out.push('\n');
                    }
                    sample(out, family.name, "_bucket", scratch, ",le=\"+Inf\"}", |o| {
                        push_u64(o, h.count);
                    });
                    sample(out, family.name, "_sum", scratch, "}", |o| {
                        push_f64(o, h.sum)
                    });
                    sample(out, family.name, "_count", scratch, "}", |o| {
                        push_u64(o, h.count);
                    });
                }
            }
        }
    }
}

/// Chunks are written up to about this size: under the allocator's 128 KiB mmap threshold,
/// so the next chunk reuses the last one's memory.
pub const CHUNK: usize = 32 * 1024;

/// A scrape being written: an iterator of text chunks (see [`Metrics::exposition`]).
pub struct Exposition {
    metrics: Metrics,
    gathered: Vec<prometheus::proto::MetricFamily>,
    units: Vec<Unit>,
    at: Cursor,
}

/// One family of the merged list.
enum Unit {
    Registry(usize),
    Probe(&'static Family),
}

/// Where a scrape has got to.
#[derive(Default)]
struct Cursor {
    /// Index into `units`.
    unit: usize,
    /// The phases (or gauge names) of the current family, sorted; computed when it starts.
    majors: Option<Vec<String>>,
    /// Index into `majors` (0 for families without).
    major: usize,
    /// The last probe written in the current family and major key.
    after: Option<String>,
    /// HELP and TYPE of the current family written.
    header: bool,
}

impl Iterator for Exposition {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let mut out = String::with_capacity(CHUNK + CHUNK / 4);
        let encoder = TextEncoder::new();
        while out.len() < CHUNK {
            match self.units.get(self.at.unit) {
                None => break,
                Some(Unit::Registry(i)) => {
                    if let Some(mf) = self.gathered.get(*i) {
                        // Only fails on an inconsistent family, which the registry never builds.
                        let _ = encoder.encode_utf8(std::slice::from_ref(mf), &mut out);
                    }
                    self.at = Cursor {
                        unit: self.at.unit + 1,
                        ..Cursor::default()
                    };
                }
                Some(Unit::Probe(f)) => {
                    if self.metrics.write_groups(f, &mut self.at, &mut out) {
                        self.at = Cursor {
                            unit: self.at.unit + 1,
                            ..Cursor::default()
                        };
                    }
                }
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

fn write_header(family: &Family, out: &mut String) {
    out.push_str("# HELP ");
    out.push_str(family.name);
    out.push(' ');
    push_escaped(out, family.help, false);
    out.push_str("\n# TYPE ");
    out.push_str(family.name);
    out.push(' ');
    out.push_str(family.kind);
    out.push('\n');
}

#[cfg(test)]
impl Metrics {
    /// Only the `probe_*` families, as the exposition writes them.
    fn probe_families_text(&self) -> String {
        let mut out = String::new();
        for f in &FAMILIES {
            let mut at = Cursor::default();
            while !self.write_groups(f, &mut at, &mut out) {}
        }
        out
    }
}

/// The phases (step histograms) or gauge names (`probe_gauge_value`) present, sorted: the
/// first label of those families.
fn majors_of(family: Fam, table: &ProbeTable) -> Vec<String> {
    let mut keys = std::collections::BTreeSet::new();
    for c in table.probes.values().flatten().map(|(_, c)| c) {
        match family {
            Fam::StepDuration => {
                keys.extend(
                    c.steps
                        .iter()
                        .flat_map(|(_, ps)| ps.iter().map(|(p, _)| p.as_str())),
                );
            }
            Fam::GaugeValue => keys.extend(c.gauges.iter().map(|(n, _, _)| &**n)),
            _ => {}
        }
    }
    keys.into_iter().map(str::to_owned).collect()
}

/// The series of one probe (every region) in `family`; for the step histograms and
/// `probe_gauge_value` only those whose phase or gauge name is `major`.
fn rows_of<'a>(
    family: Fam,
    probe: &'a str,
    regions: &'a [(String, ProbeCells)],
    major: Option<&str>,
    rows: &mut Vec<Row<'a>>,
) {
    for (region, c) in regions {
        let (p, r) = (probe, region.as_str());
        let mut push = |labels: [&'a str; 4], value: Value<'a>| rows.push(Row { labels, value });
        let last = |f: fn(&LastRun) -> f64| c.last.as_ref().map(|l| Value::Float(f(l)));
        let single = match family {
            Fam::Duration => last(|l| l.duration),
            Fam::Interval => c.interval.map(Value::Float),
            Fam::LastRun | Fam::Lag if c.last.as_ref().is_some_and(|l| l.restored) => None,
            Fam::LastRun => last(|l| l.finished),
            Fam::LastSuccess => last(|l| l.last_success),
            Fam::Lag => last(|l| l.lag),
            Fam::Success => c.last.as_ref().map(|l| Value::Int(l.success)),
            _ => None,
        };
        if let Some(v) = single {
            push([p, r, "", ""], v);
        }
        match family {
            Fam::AlertFiring => {
                for (severity, v) in &c.firing {
                    push([p, r, severity, ""], Value::Int(*v));
                }
            }
            Fam::Runs => {
                if let Some([failure, success]) = c.runs {
                    push([p, r, "failure", ""], Value::Count(failure));
                    push([p, r, "success", ""], Value::Count(success));
                }
            }
            Fam::Skipped => {
                for (reason, n) in &c.skipped {
                    push([p, reason, r, ""], Value::Count(*n));
                }
            }
            Fam::Failures => {
                for (reason, step, n) in &c.failures {
                    push([p, reason, r, step], Value::Count(*n));
                }
            }
            Fam::GaugeValue => {
                for (gauge, step, v) in &c.gauges {
                    if Some(&**gauge) == major {
                        push([gauge, p, r, step], Value::Float(*v));
                    }
                }
            }
            Fam::StepDuration => {
                for (step, phases) in &c.steps {
                    for (phase, h) in phases {
                        if Some(phase.as_str()) == major {
                            push([phase.as_str(), p, r, step], Value::Hist(h));
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// The counter of `key` in a small list kept sorted (as the scrape writes it), created at 0
/// when absent.
fn counter<'a>(list: &'a mut Vec<(&'static str, u64)>, key: &'static str) -> &'a mut u64 {
    let i = match list.binary_search_by(|(k, _)| (*k).cmp(key)) {
        Ok(i) => i,
        Err(i) => {
            list.insert(i, (key, 0));
            i
        }
    };
    &mut list[i].1
}

/// `name{labels}` + `close` + ` ` + value + newline (`labels` is the open label list).
fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &str,
    close: &str,
    value: impl FnOnce(&mut String),
) {
    out.push_str(name);
    out.push_str(suffix);
    out.push_str(labels);
    out.push_str(close);
    out.push(' ');
    value(out);
    out.push('\n');
}

/// As the text format (and the crate's encoder) escapes: `\` and newline always, `"` in
/// label values.
fn push_escaped(out: &mut String, v: &str, quote: bool) {
    let special = |b: u8| b == b'\\' || b == b'\n' || (quote && b == b'"');
    if !v.bytes().any(special) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Values are written as the crate writes them: an `f64`'s `Display`.
fn push_f64(out: &mut String, v: f64) {
    let _ = write!(out, "{v}");
}

/// Integers below 2^53 print the same as their `f64` (what the crate converts them to),
/// and faster.
fn push_u64(out: &mut String, v: u64) {
    if v < 1 << 53 {
        let _ = write!(out, "{v}");
    } else {
        push_f64(out, v as f64);
    }
}

fn push_i64(out: &mut String, v: i64) {
    if v.unsigned_abs() < 1 << 53 {
        let _ = write!(out, "{v}");
    } else {
        push_f64(out, v as f64);
    }
}

fn age_seconds(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> f64 {
    since.map_or(0.0, |t| {
        ((now - t).num_milliseconds().max(0) as f64) / 1000.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use prometheus::{Encoder as _, Histogram, HistogramOpts, HistogramVec};

    use crate::report::{FailureReason, StepKind, StepReport, Trigger};

    type ProbeKey = (String, String);
    type LabelValues = Vec<String>;

    /// The `probe_*` families as the prometheus crate's own vectors keep them (what this
    /// module used before it wrote the text itself), to compare the output byte for byte.
    struct Reference {
        registry: Registry,
        success: IntGaugeVec,
        duration: GaugeVec,
        step_duration: HistogramVec,
        runs: IntCounterVec,
        failures: IntCounterVec,
        last_run: GaugeVec,
        last_success: GaugeVec,
        skipped: IntCounterVec,
        lag: GaugeVec,
        interval: GaugeVec,
        firing: IntGaugeVec,
        gauge_value: GaugeVec,
        /// The `probe_gauge_value` label values each (probe, region) set at its last run.
        gauges_set: std::sync::Mutex<Vec<(ProbeKey, Vec<LabelValues>)>>,
        all_phases: bool,
    }

    impl Reference {
        fn new(all_phases: bool) -> Reference {
            let buckets = if all_phases {
                FULL_DURATION_BUCKETS.to_vec()
            } else {
                DURATION_BUCKETS.to_vec()
            };
            let f = |name: &str| FAMILIES.iter().find(|f| f.name == name).unwrap();
            let opts = |name: &str| Opts::new(name, f(name).help);
            let gauge = |name: &str| GaugeVec::new(opts(name), f(name).labels).unwrap();
            let int_gauge = |name: &str| IntGaugeVec::new(opts(name), f(name).labels).unwrap();
            let counter = |name: &str| IntCounterVec::new(opts(name), f(name).labels).unwrap();
            let name = "probe_step_duration_seconds";
            let r = Reference {
                registry: Registry::new(),
                success: int_gauge("probe_success"),
                duration: gauge("probe_duration_seconds"),
                step_duration: HistogramVec::new(
                    HistogramOpts::new(name, f(name).help).buckets(buckets),
                    f(name).labels,
                )
                .unwrap(),
                runs: counter("probe_runs_total"),
                failures: counter("probe_failures_total"),
                last_run: gauge("probe_last_run_timestamp_seconds"),
                last_success: gauge("probe_last_success_timestamp_seconds"),
                skipped: counter("probe_skipped_total"),
                lag: gauge("probe_schedule_lag_seconds"),
                interval: gauge("probe_interval_seconds"),
                firing: int_gauge("probe_alert_firing"),
                gauge_value: gauge("probe_gauge_value"),
                gauges_set: std::sync::Mutex::new(Vec::new()),
                all_phases,
            };
            for c in [
                Box::new(r.success.clone()) as Box<dyn prometheus::core::Collector>,
                Box::new(r.duration.clone()),
                Box::new(r.step_duration.clone()),
                Box::new(r.runs.clone()),
                Box::new(r.failures.clone()),
                Box::new(r.last_run.clone()),
                Box::new(r.last_success.clone()),
                Box::new(r.skipped.clone()),
                Box::new(r.lag.clone()),
                Box::new(r.interval.clone()),
                Box::new(r.firing.clone()),
                Box::new(r.gauge_value.clone()),
            ] {
                r.registry.register(c).unwrap();
            }
            r
        }

        /// Label values in the vector's declared order (the family's sorted label names).
        fn labels<'a>(family: &str, pairs: &[(&str, &'a str)]) -> Vec<&'a str> {
            let f = FAMILIES.iter().find(|f| f.name == family).unwrap();
            f.labels
                .iter()
                .map(|l| pairs.iter().find(|(n, _)| n == l).unwrap().1)
                .collect()
        }

        fn register_probe(&self, probe: &str, region: &str, interval: Option<Duration>) {
            if let Some(i) = interval {
                self.interval
                    .with_label_values(&[probe, region])
                    .set(i.as_secs_f64());
            }
            for result in ["success", "failure"] {
                self.runs.with_label_values(&[probe, region, result]);
            }
            for reason in ["overlap", "backlog"] {
                self.skip(probe, region, reason, 0);
            }
            self.fire(probe, region, &[("critical", false), ("warning", false)]);
        }

        fn skip(&self, probe: &str, region: &str, reason: &str, n: u64) {
            let l = Self::labels(
                "probe_skipped_total",
                &[("probe", probe), ("region", region), ("reason", reason)],
            );
            self.skipped.with_label_values(&l).inc_by(n);
        }

        fn fire(&self, probe: &str, region: &str, firing: &[(&str, bool)]) {
            for (severity, open) in firing {
                self.firing
                    .with_label_values(&[probe, region, severity])
                    .set(i64::from(*open));
            }
        }

        fn record(&self, run: &ProbeRun, lag: Option<Duration>) {
            let l = [run.probe.as_str(), run.region.as_str()];
            let mut set_now: Vec<Vec<String>> = Vec::new();
            let finished = run.finished_at().timestamp_millis() as f64 / 1000.0;
            self.success
                .with_label_values(&l)
                .set(i64::from(run.success));
            self.duration
                .with_label_values(&l)
                .set(run.duration_ms.as_secs_f64());
            self.last_run.with_label_values(&l).set(finished);
            let last_success = self.last_success.with_label_values(&l);
            let result = if run.success { "success" } else { "failure" };
            for r in ["success", "failure"] {
                let c = self.runs.with_label_values(&[l[0], l[1], r]);
                if r == result {
                    c.inc();
                }
            }
            if run.success {
                last_success.set(finished);
            }
            let cleanups = run
                .failed_cleanups()
                .filter_map(|s| Some((&s.name, s.reason?)));
            for (step, reason) in run
                .failed_step
                .as_ref()
                .zip(run.reason)
                .into_iter()
                .chain(cleanups)
            {
                let v = Self::labels(
                    "probe_failures_total",
                    &[
                        ("probe", l[0]),
                        ("region", l[1]),
                        ("step", step),
                        ("reason", reason.as_str()),
                    ],
                );
                self.failures.with_label_values(&v).inc();
            }
            for step in &run.steps {
                for (phase, d) in &step.phases {
                    if !self.all_phases && !DEFAULT_PHASES.contains(&phase.as_str()) {
                        continue;
                    }
                    let v = Self::labels(
                        "probe_step_duration_seconds",
                        &[
                            ("probe", l[0]),
                            ("region", l[1]),
                            ("step", &step.name),
                            ("phase", phase.as_str()),
                        ],
                    );
                    let h: Histogram = self.step_duration.with_label_values(&v);
                    h.observe(d.as_secs_f64());
                }
                for (name, value) in &step.gauges {
                    let v = Self::labels(
                        "probe_gauge_value",
                        &[
                            ("probe", l[0]),
                            ("region", l[1]),
                            ("step", &step.name),
                            ("name", name),
                        ],
                    );
                    self.gauge_value.with_label_values(&v).set(*value);
                    set_now.push(v.iter().map(|s| s.to_string()).collect());
                }
            }
            let mut sets = self.gauges_set.lock().unwrap();
            let key = (run.probe.clone(), run.region.clone());
            match sets.iter_mut().find(|(k, _)| *k == key) {
                Some((_, before)) => {
                    for old in before.iter().filter(|v| !set_now.contains(v)) {
                        let v: Vec<&str> = old.iter().map(String::as_str).collect();
                        self.gauge_value.remove_label_values(&v).unwrap();
                    }
                    *before = set_now;
                }
                None => sets.push((key, set_now)),
            }
            drop(sets);
            let lag_gauge = self.lag.with_label_values(&l);
            if let Some(lag) = lag {
                lag_gauge.set(lag.as_secs_f64());
            }
        }

        fn text(&self) -> String {
            let mut buf = Vec::new();
            TextEncoder::new()
                .encode(&self.registry.gather(), &mut buf)
                .unwrap();
            String::from_utf8(buf).unwrap()
        }
    }

    fn step(name: &str, ok: bool, ms: &[(Phase, u64)], cleanup: bool) -> StepReport {
        StepReport {
            name: name.into(),
            kind: StepKind::Http,
            success: ok,
            duration_ms: Duration::from_millis(ms.iter().map(|(_, m)| m).sum()),
            reason: (!ok).then_some(FailureReason::Timeout),
            error: None,
            phases: ms
                .iter()
                .map(|(p, m)| (*p, Duration::from_micros(m * 1000 + 7)))
                .collect(),
            cleanup,
            gauges: Default::default(),
            warnings: Vec::new(),
        }
    }

    /// A handful of runs that touch every family: passes and failures, a failed cleanup, a
    /// step name that needs escaping, values on and past the bucket bounds, two regions.
    fn runs() -> Vec<(ProbeRun, Option<Duration>)> {
        let base = |probe: &str, region: &str, ok: bool, steps: Vec<StepReport>| ProbeRun {
            probe: probe.into(),
            region: region.into(),
            success: ok,
            started_at: DateTime::from_timestamp(1_764_460_000, 123_000_000).unwrap(),
            duration_ms: Duration::from_micros(42_317),
            failed_step: (!ok).then(|| "signalling".into()),
            reason: (!ok).then_some(FailureReason::NoMatch),
            error: None,
            trigger: Trigger::Scheduled,
            steps,
        };
        let mut gauged = step(
            "redis \"quoted\"\\ and\nnewline",
            true,
            &[(Phase::Total, 3)],
            false,
        );
        gauged.gauges = [("used_memory".into(), 1.5e9), ("memory_ratio".into(), 0.25)].into();
        let full = vec![
            step(
                "login",
                true,
                &[
                    (Phase::Connect, 1),
                    (Phase::FirstByte, 24),
                    (Phase::Total, 25),
                ],
                false,
            ),
            step(
                "websocket",
                true,
                &[(Phase::Upgrade, 2), (Phase::Total, 99)],
                false,
            ),
            step(
                "signalling",
                true,
                &[
                    (Phase::RoundTrip, 100),
                    (Phase::FanOut, 250),
                    (Phase::Total, 6000),
                ],
                false,
            ),
            gauged,
            step("leave", false, &[(Phase::Total, 1000)], true),
        ];
        let failing = vec![
            step("login", true, &[(Phase::Total, 5)], false),
            step("signalling", false, &[(Phase::Total, 5000)], false),
        ];
        let failing_again = failing.clone();
        vec![
            (
                base("join-b", "eu", true, full.clone()),
                Some(Duration::from_micros(1500)),
            ),
            (base("join-a", "eu", false, failing.clone()), None),
            (
                base("join-a", "eu", true, full.clone()),
                Some(Duration::ZERO),
            ),
            (
                base("join-b", "ap", false, failing),
                Some(Duration::from_millis(3)),
            ),
            (base("join-10", "eu", true, full), None),
            // join-b in eu read its gauges at its first run and none now: they are gone.
            (base("join-b", "eu", false, failing_again), None),
        ]
    }

    #[test]
    fn a_large_scrape_streams_in_chunks_with_the_same_text() {
        let ours = Metrics::new("eu").unwrap();
        let reference = Reference::new(false);
        for i in 0..300 {
            for (mut run, lag) in runs() {
                run.probe = format!("join-{i}");
                ours.record(&run, lag);
                reference.record(&run, lag);
            }
        }
        assert_eq!(ours.probe_families_text(), reference.text());
        let chunks: Vec<String> = ours.exposition().collect();
        assert!(chunks.len() > 10, "{} chunks", chunks.len());
        // A chunk stops after the group that fills it: a few KiB over at most.
        assert!(chunks.iter().all(|c| c.len() < CHUNK + 8 * 1024));
        // The same text as one render, but for the process' own figures, which move.
        let steady = |t: &str| {
            t.lines()
                .filter(|l| !l.contains("process_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(steady(&chunks.concat()), steady(&ours.render()));
    }

    #[test]
    fn probe_families_are_what_the_prometheus_encoder_writes() {
        for all_phases in [false, true] {
            let ours = Metrics::with_detail("eu", all_phases).unwrap();
            let reference = Reference::new(all_phases);
            for (probe, region) in [("join-b", "eu"), ("join-a", "eu"), ("join-c", "eu")] {
                ours.register_probe(probe, region, Some(Duration::from_secs(60)));
                reference.register_probe(probe, region, Some(Duration::from_secs(60)));
            }
            assert_eq!(ours.probe_families_text(), reference.text());
            for (run, lag) in runs() {
                ours.record(&run, lag);
                reference.record(&run, lag);
            }
            ours.record_skip("join-a", "eu", "overlap", 2);
            reference.skip("join-a", "eu", "overlap", 2);
            ours.record_skip("join-10", "eu", "backlog", 1);
            reference.skip("join-10", "eu", "backlog", 1);
            ours.set_alert_firing("join-a", "eu", &[("critical", true), ("warning", false)]);
            reference.fire("join-a", "eu", &[("critical", true), ("warning", false)]);
            let text = ours.probe_families_text();
            assert_eq!(text, reference.text(), "phase_histograms = {all_phases}");
            assert!(
                text.contains(r#"step="redis \"quoted\"\\ and\nnewline""#),
                "{text}"
            );
            // And `render` puts them between the registry's families, in name order.
            let full = ours.render();
            assert!(full.contains(&text), "{full}");
            let names: Vec<&str> = full
                .lines()
                .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
                .collect();
            assert!(names.is_sorted(), "{names:?}");
        }
    }

    #[test]
    fn delivery_series_exist_at_zero_with_the_region() {
        let m = Metrics::new("eu").unwrap();
        m.register_pagers(&["pd".into()]);
        let text = m.render();
        for event in NOTIFICATION_EVENTS {
            for result in NOTIFICATION_RESULTS {
                let series = format!(
                    "joincanary_notifications_total{{event=\"{event}\",region=\"eu\",result=\"{result}\",sink=\"pd\"}} 0"
                );
                assert!(text.contains(&series), "{series} missing in\n{text}");
            }
        }
        assert!(text.contains("joincanary_outbox_pending{region=\"eu\",sink=\"pd\"} 0"));
        assert!(text.contains("joincanary_outbox_oldest_seconds{region=\"eu\",sink=\"pd\"} 0"));
        assert!(text.contains("joincanary_pagers_configured{region=\"eu\"} 1"));
    }

    #[test]
    fn the_oldest_queued_age_grows_at_scrape_time() {
        let m = Metrics::new("eu").unwrap();
        m.register_pagers(&["pd".into()]);
        m.set_outbox("pd", 2, Some(Utc::now() - chrono::Duration::seconds(90)));
        let text = m.render();
        let line = text
            .lines()
            .find(|l| l.starts_with("joincanary_outbox_oldest_seconds{"))
            .unwrap();
        let age: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((90.0..100.0).contains(&age), "{line}");
        assert!(text.contains("joincanary_outbox_pending{region=\"eu\",sink=\"pd\"} 2"));
        m.register_pagers(&[]);
        let text = m.render();
        assert!(!text.contains("joincanary_outbox_pending{"), "{text}");
        assert!(text.contains("joincanary_pagers_configured{region=\"eu\"} 0"));
    }
}
