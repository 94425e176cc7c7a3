//! The Prometheus registry and `record(&ProbeRun)`. Metric names are a contract with
//! dashboards and alert rules: blackbox_exporter's names where they mean the same.
//!
//! The per-probe `probe_*` families (59 series per 5-step probe, 59,000 at 1,000 probes) live
//! in one compact table and are written straight into the text format at scrape time: the
//! prometheus crate's `gather()` would first build and sort a protobuf-shaped copy of every
//! series (measured: 128 ms per 1,000-probe scrape, and a `Desc` plus label strings per series
//! in memory). The few `joincanary_*` and `process_*` series stay in the crate's registry. The
//! text is byte for byte what the crate's encoder writes for the same series (`tests.rs`).
//!
//! Three rooms: this file (the registry, [`Metrics`], and `record(&ProbeRun)`), `table.rs`
//! (the per-probe table a run updates) and `text.rs` (the text encoder).

mod table;
#[cfg(test)]
mod tests;
mod text;

pub use text::{CHUNK, Exposition};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use prometheus::{GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::clock::Clock;
use crate::report::ProbeRun;
use table::{ProbeTable, counter};

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
    /// `{sink, type, region}`: 1 while the pager's last attempt failed (from [`Metrics::delivery`],
    /// set at scrape time), so a rule can tell a prober whose own push is not getting through.
    pub pager_failing: IntGaugeVec,
    /// `{sink, member, region}`: 1 while a member of an Alertmanager pager (`urls`: an HA
    /// pair or cluster) did not take the last post, 0 after it takes one; set at scrape time
    /// from [`Metrics::delivery`]. The pager itself delivers while any member takes it.
    pub member_failing: IntGaugeVec,
    pub pagers_configured: IntGauge,
    /// Probes whose failures page nobody although the config is valid: alerting disabled, or
    /// maintenance windows that hold every page for the next week (`config::Plan::quiet`); set
    /// at start and at every reload.
    pub probes_paging_nobody: IntGauge,
    pub heartbeat_last_success: GaugeVec,
    /// `{heartbeat, result, region}`.
    pub heartbeats: IntCounterVec,
    pub reloads: IntCounterVec,
    /// 1 while the configuration running is what the files say (start-up, or the last reload
    /// succeeded), 0 after a refused reload until one succeeds: Prometheus' own
    /// `prometheus_config_last_reload_successful`, so a broken file left on disk stays visible
    /// for as long as it is there (the reload counter's `increase()` forgets it).
    pub reload_ok: IntGauge,
    /// When the configuration running was loaded (Unix time).
    pub reload_success_time: prometheus::Gauge,
    /// The system clock minus the service's clock, set at each scrape. The service reads the
    /// system clock once, at start, and counts on from there with the monotonic clock (so an
    /// NTP step cannot bunch runs); after a step its cron ticks, maintenance windows, status
    /// times, exported timestamps and Alertmanager posts follow the system clock, and the times
    /// written into page texts are off by the step until a restart, which this shows.
    pub clock_offset: prometheus::Gauge,
    /// `{file, region}`: 1 while the state log (`state.log`) or the status history
    /// (`status-history.json`) cannot be written (a state directory not writable, a full disk):
    /// alert state and queued pages then live in memory only and a restart would lose them.
    pub state_write_failing: IntGaugeVec,
    pub state_read_errors: IntCounterVec,
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
    pub delivery: Arc<crate::delivery::DeliveryHealth>,
    /// What "now" is for the queue ages: the service's clock ([`Metrics::with_clock`]), so
    /// they agree with the dispatcher's timestamps (and follow tokio's paused clock in tests).
    clock: Clock,
}

/// The files the service writes in its state directory, each a `joincanary_state_write_failing`
/// series from start-up.
pub const STATE_FILES: [&str; 2] = ["state.log", "status-history.json"];

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
            pager_failing: IntGaugeVec::new(
                Opts::new(
                    "joincanary_pager_failing",
                    "1 while the pager's last delivery attempt (page, retry, re-post or watchdog) failed, 0 after it accepts one",
                ),
                &["sink", "type", "region"],
            )?,
            member_failing: IntGaugeVec::new(
                Opts::new(
                    "joincanary_alertmanager_member_failing",
                    "1 while this member of an Alertmanager pager (urls: an HA pair or cluster) did not take the last post, 0 after it takes one",
                ),
                &["sink", "member", "region"],
            )?,
            pagers_configured: IntGauge::with_opts(
                Opts::new(
                    "joincanary_pagers_configured",
                    "Number of configured pagers; 0 means this prober cannot page anyone",
                )
                .const_label("region", region),
            )?,
            probes_paging_nobody: IntGauge::with_opts(
                Opts::new(
                    "joincanary_probes_paging_nobody",
                    "Probes whose failures page nobody: alerting disabled, or maintenance windows holding every page for the next 7 days",
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
            reload_ok: IntGauge::with_opts(
                Opts::new(
                    "joincanary_config_last_reload_successful",
                    "Whether the last configuration reload succeeded (1 at start-up; 0 after a refused reload, the previous configuration running)",
                )
                .const_label("region", region),
            )?,
            reload_success_time: prometheus::Gauge::with_opts(
                Opts::new(
                    "joincanary_config_last_reload_success_timestamp_seconds",
                    "When the running configuration was loaded (start-up or the last successful reload; Unix time)",
                )
                .const_label("region", region),
            )?,
            clock_offset: prometheus::Gauge::with_opts(
                Opts::new(
                    "joincanary_clock_offset_seconds",
                    "The system clock minus the prober's clock (read once at start, then monotonic): nonzero after the system clock was stepped (schedules, windows and status follow the system clock; page texts' times do not until a restart)",
                )
                .const_label("region", region),
            )?,
            state_write_failing: IntGaugeVec::new(
                Opts::new(
                    "joincanary_state_write_failing",
                    "1 while the file cannot be written in the state directory (not writable, disk full): its state is in memory only",
                ),
                &["file", "region"],
            )?,
            state_read_errors: IntCounterVec::new(
                Opts::new(
                    "joincanary_state_read_errors_total",
                    "State files found unreadable at start-up (not a regular file, over the size cap, not parsing) or with damaged records: the start went on without what they held",
                ),
                &["file", "region"],
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
            clock: Clock::system(),
        };
        for result in ["success", "failure"] {
            m.reloads.with_label_values(&[result, region]);
        }
        m.config_loaded();
        for file in STATE_FILES {
            m.state_write_failing.with_label_values(&[file, region]);
            m.state_read_errors.with_label_values(&[file, region]);
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
            Box::new(m.pager_failing.clone()),
            Box::new(m.member_failing.clone()),
            Box::new(m.pagers_configured.clone()),
            Box::new(m.probes_paging_nobody.clone()),
            Box::new(m.heartbeat_last_success.clone()),
            Box::new(m.heartbeats.clone()),
            Box::new(m.reloads.clone()),
            Box::new(m.reload_ok.clone()),
            Box::new(m.reload_success_time.clone()),
            Box::new(m.clock_offset.clone()),
            Box::new(m.state_write_failing.clone()),
            Box::new(m.state_read_errors.clone()),
            Box::new(m.resident_reconnects.clone()),
        ] {
            m.registry.register(c)?;
        }
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(crate::process::ProcessMetrics::for_self()?))?;
        Ok(m)
    }

    /// The same metrics reading time from `clock` (the service's) instead of the system
    /// clock as of construction.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Metrics {
        self.clock = clock;
        self
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
        self.table()
            .with_cells(probe, region, |c| c.register(interval));
    }

    /// Creates a resident probe's reconnect series at 0 (two per probe and region).
    pub fn register_resident(&self, probe: &str, region: &str) {
        for cause in crate::event::ReconnectCause::ALL {
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
        let (all_phases, buckets) = (self.all_phases, self.buckets);
        self.table().with_cells(&run.probe, &run.region, |c| {
            c.record(run, lag, all_phases, buckets);
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
            c.restore(success, duration, last_success);
        });
    }

    /// Counts `count` skipped ticks of a probe (`reason`: see `event::SkipReason`).
    pub fn record_skip(&self, probe: &str, region: &str, reason: &'static str, count: u64) {
        self.table().with_cells(probe, region, |c| {
            *counter(&mut c.skipped, reason) += count;
        });
    }

    /// Sets `probe_alert_firing` of a probe for each (severity, open).
    pub fn set_alert_firing(&self, probe: &str, region: &str, firing: &[(&'static str, bool)]) {
        self.table()
            .with_cells(probe, region, |c| c.set_firing(firing));
    }

    /// The configuration the service runs was (re)loaded now: the reload gauges say so.
    fn config_loaded(&self) {
        self.reload_ok.set(1);
        self.reload_success_time
            .set(self.clock.system_now().timestamp_millis() as f64 / 1000.0);
    }

    /// Whether `file` (one of [`STATE_FILES`]) fails to be written now.
    pub fn set_state_write_failing(&self, file: &str, failing: bool) {
        self.state_write_failing
            .with_label_values(&[file, &self.region])
            .set(i64::from(failing));
    }

    /// Counts a state file (one of [`STATE_FILES`]) found unreadable or damaged at start-up.
    pub fn count_state_read_error(&self, file: &str) {
        self.state_read_errors
            .with_label_values(&[file, &self.region])
            .inc();
    }

    /// Counts a configuration reload and sets the reload gauges: `ok` the new configuration
    /// runs; else the previous one stays and `joincanary_config_last_reload_successful` is 0
    /// until a reload succeeds.
    pub fn count_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads
            .with_label_values(&[result, &self.region])
            .inc();
        if ok {
            self.config_loaded();
        } else {
            self.reload_ok.set(0);
        }
    }

    /// Sets up the delivery series of the configured pagers (a reload may change them): every
    /// `notifications_total` series at 0 (existing counts are kept), the outbox gauges of pagers
    /// no longer configured removed (and their `joincanary_pager_failing`), and
    /// `joincanary_pagers_configured`.
    pub fn register_pagers(&self, sinks: &[String]) {
        self.pagers_configured
            .set(i64::try_from(sinks.len()).unwrap_or(i64::MAX));
        self.outbox_pending.reset();
        self.outbox_oldest.reset();
        self.pager_failing.reset();
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
            .set(age_seconds(oldest, self.clock.now()));
    }

    /// Sets up a heartbeat's series at zero, its last-success timestamp too (as a probe's: 0
    /// until the first success), so a heartbeat that never got through is on the dashboard
    /// rather than absent from it.
    pub fn register_heartbeat(&self, name: &str) {
        for result in HEARTBEAT_RESULTS {
            self.heartbeats
                .with_label_values(&[name, result, &self.region]);
        }
        self.heartbeat_last_success
            .with_label_values(&[name, &self.region]);
    }

    /// Counts one heartbeat ping; a success also stamps its time, `at` on the system clock
    /// ([`Clock::system_now`]: Prometheus compares it with its own `time()`).
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
}

fn age_seconds(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> f64 {
    since.map_or(0.0, |t| {
        ((now - t).num_milliseconds().max(0) as f64) / 1000.0
    })
}
