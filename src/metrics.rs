//! The Prometheus registry and `record(&ProbeRun)`. Metric names are a contract with
//! dashboards and alert rules: blackbox_exporter's names where they mean the same.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use prometheus::core::{AtomicF64, AtomicI64, AtomicU64, GenericCounter, GenericGauge};
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

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
    pub registry: Registry,
    pub success: IntGaugeVec,
    pub duration: GaugeVec,
    pub step_duration: HistogramVec,
    pub runs: IntCounterVec,
    pub failures: IntCounterVec,
    pub last_run: GaugeVec,
    pub last_success: GaugeVec,
    pub skipped: IntCounterVec,
    pub schedule_lag: GaugeVec,
    pub interval: GaugeVec,
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
    pub alert_firing: IntGaugeVec,
    pub reloads: IntCounterVec,
    /// `probe_gauge_value{probe, region, step, name}`: numbers a redis or http_json step read.
    pub gauge_value: GaugeVec,
    /// `probe_resident_reconnects_total{probe, region, cause}`: a resident probe opened its
    /// session again (`failure`, `rotation`).
    pub resident_reconnects: IntCounterVec,
    /// The region every `joincanary_*` series carries.
    pub region: String,
    /// Every phase histogrammed (`phase_histograms = true`), else [`DEFAULT_PHASES`] only.
    all_phases: bool,
    /// Each probe's series, resolved once: `with_label_values` hashes every label value on
    /// every call, a dozen times per run otherwise.
    per_probe: Arc<Mutex<SeriesCache>>,
    /// Per sink, when its oldest queued notification was queued: the age is worked out at
    /// scrape time, so it grows while nothing is delivered (a stuck queue is the point).
    oldest_queued: Arc<Mutex<BTreeMap<String, Option<DateTime<Utc>>>>>,
}

/// Metric construction only fails on invalid names or duplicate registration, both fixed at
/// compile time here; the error type keeps callers honest anyway.
#[derive(Debug, thiserror::Error)]
#[error("cannot register metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// (probe, region) -> its resolved series.
type SeriesCache = HashMap<(String, String), Arc<ProbeSeries>>;

/// The series of one probe and region that every run updates.
struct ProbeSeries {
    success: GenericGauge<AtomicI64>,
    duration: GenericGauge<AtomicF64>,
    last_run: GenericGauge<AtomicF64>,
    last_success: GenericGauge<AtomicF64>,
    runs_success: GenericCounter<AtomicU64>,
    runs_failure: GenericCounter<AtomicU64>,
    lag: GenericGauge<AtomicF64>,
    /// step name -> (phase, histogram); a handful of phases per step, scanned.
    steps: Mutex<HashMap<String, Vec<(Phase, Histogram)>>>,
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
        let buckets = if all_phases {
            FULL_DURATION_BUCKETS.to_vec()
        } else {
            DURATION_BUCKETS.to_vec()
        };
        let registry = Registry::new();
        let pr = ["probe", "region"];
        let m = Metrics {
            success: IntGaugeVec::new(
                Opts::new(
                    "probe_success",
                    "Whether the last run of the probe succeeded (1) or not (0)",
                ),
                &pr,
            )?,
            duration: GaugeVec::new(
                Opts::new(
                    "probe_duration_seconds",
                    "Duration of the last run of the probe",
                ),
                &pr,
            )?,
            step_duration: HistogramVec::new(
                HistogramOpts::new(
                    "probe_step_duration_seconds",
                    "Duration of each step and phase of the join flow",
                )
                .buckets(buckets),
                &["probe", "region", "step", "phase"],
            )?,
            runs: IntCounterVec::new(
                Opts::new(
                    "probe_runs_total",
                    "Probe runs by result (success, failure)",
                ),
                &["probe", "region", "result"],
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "probe_failures_total",
                    "Failed runs by the step that failed and its reason",
                ),
                &["probe", "region", "step", "reason"],
            )?,
            last_run: GaugeVec::new(
                Opts::new(
                    "probe_last_run_timestamp_seconds",
                    "When the last run finished (Unix time)",
                ),
                &pr,
            )?,
            last_success: GaugeVec::new(
                Opts::new(
                    "probe_last_success_timestamp_seconds",
                    "When the last successful run finished (Unix time)",
                ),
                &pr,
            )?,
            skipped: IntCounterVec::new(
                Opts::new(
                    "probe_skipped_total",
                    "Scheduled runs skipped, by reason (overlap: the previous run was still going; backlog: its result was not yet recorded)",
                ),
                &["probe", "region", "reason"],
            )?,
            schedule_lag: GaugeVec::new(
                Opts::new(
                    "probe_schedule_lag_seconds",
                    "How late the last run started after its scheduled time",
                ),
                &pr,
            )?,
            interval: GaugeVec::new(
                Opts::new(
                    "probe_interval_seconds",
                    "The probe schedule's interval (shortest gap between two runs)",
                ),
                &pr,
            )?,
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
            alert_firing: IntGaugeVec::new(
                Opts::new(
                    "probe_alert_firing",
                    "Whether an alert is open for the probe, by severity",
                ),
                &["probe", "region", "severity"],
            )?,
            reloads: IntCounterVec::new(
                Opts::new(
                    "joincanary_config_reloads_total",
                    "Configuration reloads by result (success, failure)",
                ),
                &["result", "region"],
            )?,
            gauge_value: GaugeVec::new(
                Opts::new(
                    "probe_gauge_value",
                    "Last value a redis or http_json step read (used_memory, memory_ratio, a queue depth, ...)",
                ),
                &["probe", "region", "step", "name"],
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
            per_probe: Arc::default(),
            oldest_queued: Arc::default(),
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
            Box::new(m.success.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.duration.clone()),
            Box::new(m.step_duration.clone()),
            Box::new(m.runs.clone()),
            Box::new(m.failures.clone()),
            Box::new(m.last_run.clone()),
            Box::new(m.last_success.clone()),
            Box::new(m.skipped.clone()),
            Box::new(m.schedule_lag.clone()),
            Box::new(m.interval.clone()),
            Box::new(m.notifications.clone()),
            Box::new(m.outbox_pending.clone()),
            Box::new(m.outbox_oldest.clone()),
            Box::new(m.resends.clone()),
            Box::new(m.pagers_configured.clone()),
            Box::new(m.heartbeat_last_success.clone()),
            Box::new(m.heartbeats.clone()),
            Box::new(m.alert_firing.clone()),
            Box::new(m.reloads.clone()),
            Box::new(m.gauge_value.clone()),
            Box::new(m.resident_reconnects.clone()),
        ] {
            m.registry.register(c)?;
        }
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(crate::process::ProcessMetrics::for_self()?))?;
        Ok(m)
    }

    /// Creates the zero-valued series of a probe so `rate()` and `absent()` work from the first
    /// scrape, before anything has happened.
    pub fn register_probe(&self, probe: &str, region: &str, interval: Option<std::time::Duration>) {
        if let Some(i) = interval {
            self.interval
                .with_label_values(&[probe, region])
                .set(i.as_secs_f64());
        }
        for result in ["success", "failure"] {
            self.runs.with_label_values(&[probe, region, result]);
        }
        self.skipped.with_label_values(&[probe, region, "overlap"]);
        self.skipped.with_label_values(&[probe, region, "backlog"]);
        for severity in ["critical", "warning"] {
            self.alert_firing
                .with_label_values(&[probe, region, severity]);
        }
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

    fn probe_series(&self, probe: &str, region: &str) -> Arc<ProbeSeries> {
        let mut map = self
            .per_probe
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = map.get(&(probe.to_owned(), region.to_owned())) {
            return Arc::clone(s);
        }
        let l = [probe, region];
        let s = Arc::new(ProbeSeries {
            success: self.success.with_label_values(&l),
            duration: self.duration.with_label_values(&l),
            last_run: self.last_run.with_label_values(&l),
            last_success: self.last_success.with_label_values(&l),
            runs_success: self.runs.with_label_values(&[probe, region, "success"]),
            runs_failure: self.runs.with_label_values(&[probe, region, "failure"]),
            lag: self.schedule_lag.with_label_values(&l),
            steps: Mutex::default(),
        });
        map.insert((probe.to_owned(), region.to_owned()), Arc::clone(&s));
        s
    }

    /// Records one run. Phases never measured are omitted, not recorded as zero.
    pub fn record(&self, run: &ProbeRun, lag: Option<std::time::Duration>) {
        let s = self.probe_series(&run.probe, &run.region);
        s.success.set(i64::from(run.success));
        s.duration.set(run.duration_ms.as_secs_f64());
        let finished = run.finished_at().timestamp_millis() as f64 / 1000.0;
        s.last_run.set(finished);
        if run.success {
            s.last_success.set(finished);
            s.runs_success.inc();
        } else {
            s.runs_failure.inc();
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
            self.failures
                .with_label_values(&[
                    run.probe.as_str(),
                    run.region.as_str(),
                    step.as_str(),
                    reason.as_str(),
                ])
                .inc();
        }
        let mut steps = s
            .steps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for step in &run.steps {
            for (phase, d) in &step.phases {
                if !self.all_phases && !DEFAULT_PHASES.contains(&phase.as_str()) {
                    continue;
                }
                if !steps.contains_key(step.name.as_str()) {
                    steps.insert(step.name.clone(), Vec::new());
                }
                let Some(phases) = steps.get_mut(step.name.as_str()) else {
                    continue;
                };
                let histogram = match phases.iter().find(|(p, _)| p == phase) {
                    Some((_, h)) => h,
                    None => {
                        let h = self.step_duration.with_label_values(&[
                            run.probe.as_str(),
                            run.region.as_str(),
                            step.name.as_str(),
                            phase.as_str(),
                        ]);
                        phases.push((*phase, h));
                        &phases[phases.len() - 1].1
                    }
                };
                histogram.observe(d.as_secs_f64());
            }
        }
        for step in &run.steps {
            for (name, value) in &step.gauges {
                self.gauge_value
                    .with_label_values(&[
                        run.probe.as_str(),
                        run.region.as_str(),
                        step.name.as_str(),
                        name.as_str(),
                    ])
                    .set(*value);
            }
        }
        if let Some(lag) = lag {
            s.lag.set(lag.as_secs_f64());
        }
    }

    pub fn record_skip(&self, probe: &str, region: &str, reason: &str, count: u64) {
        self.skipped
            .with_label_values(&[probe, region, reason])
            .inc_by(count);
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

    /// The text exposition format.
    pub fn render(&self) -> String {
        let now = Utc::now();
        for (sink, oldest) in self.lock_oldest().iter() {
            self.outbox_oldest
                .with_label_values(&[sink, &self.region])
                .set(age_seconds(*oldest, now));
        }
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
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
