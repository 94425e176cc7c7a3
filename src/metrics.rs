//! The Prometheus registry and `record(&ProbeRun)`. Metric names are a contract with
//! dashboards and alert rules: blackbox_exporter's names where they mean the same.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::report::ProbeRun;

/// Buckets from a 1 ms loopback hop to a 30 s timeout.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
];

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
    pub notifications: IntCounterVec,
    pub alert_firing: IntGaugeVec,
    pub reloads: IntCounterVec,
}

/// Metric construction only fails on invalid names or duplicate registration, both fixed at
/// compile time here; the error type keeps callers honest anyway.
#[derive(Debug, thiserror::Error)]
#[error("cannot register metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    /// Builds the registry with build info for `region` and the process collector.
    ///
    /// # Errors
    /// Registration failure (a programming error).
    pub fn new(region: &str) -> Result<Metrics, MetricsError> {
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
                .buckets(DURATION_BUCKETS.to_vec()),
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
            notifications: IntCounterVec::new(
                Opts::new(
                    "joincanary_notifications_total",
                    "Notification deliveries by pager, event and result",
                ),
                &["sink", "event", "result"],
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
                &["result"],
            )?,
            registry,
        };
        for result in ["success", "failure"] {
            m.reloads.with_label_values(&[result]);
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
            Box::new(m.notifications.clone()),
            Box::new(m.alert_firing.clone()),
            Box::new(m.reloads.clone()),
        ] {
            m.registry.register(c)?;
        }
        #[cfg(target_os = "linux")]
        m.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(m)
    }

    /// Creates the zero-valued series of a probe so `rate()` and `absent()` work from the first
    /// scrape, before anything has happened.
    pub fn register_probe(&self, probe: &str, region: &str) {
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

    /// Records one run. Phases never measured are omitted, not recorded as zero.
    pub fn record(&self, run: &ProbeRun, lag: Option<std::time::Duration>) {
        let l = [run.probe.as_str(), run.region.as_str()];
        self.success
            .with_label_values(&l)
            .set(i64::from(run.success));
        self.duration
            .with_label_values(&l)
            .set(run.duration_ms.as_secs_f64());
        let finished = run.finished_at().timestamp_millis() as f64 / 1000.0;
        self.last_run.with_label_values(&l).set(finished);
        if run.success {
            self.last_success.with_label_values(&l).set(finished);
        }
        self.runs
            .with_label_values(&[
                run.probe.as_str(),
                run.region.as_str(),
                if run.success { "success" } else { "failure" },
            ])
            .inc();
        if let (Some(step), Some(reason)) = (&run.failed_step, run.reason) {
            self.failures
                .with_label_values(&[
                    run.probe.as_str(),
                    run.region.as_str(),
                    step.as_str(),
                    reason.as_str(),
                ])
                .inc();
        }
        for step in &run.steps {
            for (phase, d) in &step.phases {
                self.step_duration
                    .with_label_values(&[
                        run.probe.as_str(),
                        run.region.as_str(),
                        step.name.as_str(),
                        phase.as_str(),
                    ])
                    .observe(d.as_secs_f64());
            }
        }
        if let Some(lag) = lag {
            self.schedule_lag
                .with_label_values(&l)
                .set(lag.as_secs_f64());
        }
    }

    pub fn record_skip(&self, probe: &str, region: &str, reason: &str, count: u64) {
        self.skipped
            .with_label_values(&[probe, region, reason])
            .inc_by(count);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
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
