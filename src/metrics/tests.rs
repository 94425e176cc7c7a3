//! The hand-written `probe_*` text checked byte for byte against the prometheus crate's own
//! vectors and encoder, and the delivery series.

use std::time::Duration;

use chrono::DateTime;
use prometheus::{
    Encoder as _, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use super::text::FAMILIES;
use super::*;
use crate::report::{FailureReason, Phase, StepReport, Trigger};

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
    cert_expiry: GaugeVec,
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
            cert_expiry: gauge("probe_ssl_earliest_cert_expiry"),
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
            Box::new(r.cert_expiry.clone()),
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
        // A step's certificate expiry is what this run saw: none kept from an earlier one.
        for m in prometheus::core::Collector::collect(&self.cert_expiry) {
            for metric in m.get_metric() {
                let labels: Vec<&str> = metric.get_label().iter().map(|p| p.value()).collect();
                if labels[0] == l[0] && labels[1] == l[1] {
                    self.cert_expiry.remove_label_values(&labels).unwrap();
                }
            }
        }
        for step in &run.steps {
            if let Some(t) = step.cert_expiry {
                self.cert_expiry
                    .with_label_values(&[l[0], l[1], &step.name])
                    .set(t.timestamp() as f64);
            }
        }
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
        kind: crate::report::KindName::new("http"),
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
        cert_expiry: None,
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
    let mut login = step(
        "login",
        true,
        &[
            (Phase::Connect, 1),
            (Phase::FirstByte, 24),
            (Phase::Total, 25),
        ],
        false,
    );
    login.cert_expiry = DateTime::from_timestamp(1_790_000_000, 0);
    let full = vec![
        login,
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
        // join-b in eu read its gauges and its login's certificate at its first run and none
        // now: they are gone.
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

/// `joincanary_pager_failing` follows the pager's delivery health at scrape time: 1 from a
/// failed attempt until the next accepted one, with the pager's type; gone with the pager.
#[test]
fn pager_failing_follows_the_last_attempt() {
    let m = Metrics::new("eu").unwrap();
    m.register_pagers(&["am".into()]);
    // Not built yet: no type to show, no series.
    assert!(!m.render().contains("joincanary_pager_failing{"));
    m.delivery.set_kind("am", "alertmanager");
    let series = |v: u8| {
        format!("joincanary_pager_failing{{region=\"eu\",sink=\"am\",type=\"alertmanager\"}} {v}")
    };
    assert!(m.render().contains(&series(0)), "{}", m.render());
    let t = DateTime::from_timestamp(1_764_460_000, 0).unwrap();
    m.delivery.failure("am", t, "403 Forbidden");
    assert!(m.render().contains(&series(1)));
    m.delivery.success("am", t);
    assert!(m.render().contains(&series(0)));
    m.register_pagers(&[]);
    assert!(!m.render().contains("joincanary_pager_failing{"));
}

/// On the paused clock, through the injected [`Clock`]: the age is exact, and it grows while
/// nothing changes the queue.
#[tokio::test(start_paused = true)]
async fn the_oldest_queued_age_grows_at_scrape_time() {
    let t0 = DateTime::from_timestamp(1_764_460_000, 0).unwrap();
    let m = Metrics::new("eu")
        .unwrap()
        .with_clock(crate::clock::Clock::starting_at(t0));
    m.register_pagers(&["pd".into()]);
    m.set_outbox("pd", 2, Some(t0 - chrono::Duration::seconds(90)));
    let age = |text: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with("joincanary_outbox_oldest_seconds{"))
            .unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let text = m.render();
    assert_eq!(age(&text), 90.0, "{text}");
    assert!(text.contains("joincanary_outbox_pending{region=\"eu\",sink=\"pd\"} 2"));
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(age(&m.render()), 120.0);
    m.register_pagers(&[]);
    let text = m.render();
    assert!(!text.contains("joincanary_outbox_pending{"), "{text}");
    assert!(text.contains("joincanary_pagers_configured{region=\"eu\"} 0"));
}

/// The service's clock is the system's at start, then monotonic: a system clock stepped after
/// that (here: the service's clock made an hour behind, as if NTP stepped the system an hour
/// forward since) shows as the offset at each scrape, for a rule to tell; in step, about 0.
#[test]
fn a_stepped_system_clock_shows_as_the_clock_offset() {
    let offset = |m: &Metrics| -> f64 {
        let text = m.render();
        let line = text
            .lines()
            .find(|l| l.starts_with("joincanary_clock_offset_seconds{region=\"eu\"}"))
            .unwrap_or_else(|| panic!("{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let m = Metrics::new("eu").unwrap();
    assert!(offset(&m).abs() < 5.0);
    let clock = crate::clock::Clock::starting_at(chrono::Utc::now());
    let m = Metrics::new("eu").unwrap().with_clock(clock);
    assert_eq!(offset(&m), 0.0);
    clock.step_system(chrono::Duration::hours(1));
    assert_eq!(offset(&m), 3600.0);
}

/// A VM resumed (its monotonic clock stood still while the host clock went on) or an NTP step
/// forward after start: the prober's clock is behind the system's, and Prometheus compares
/// `probe_last_run_timestamp_seconds` with its own `time()`. Exported on the prober's clock,
/// a run that finished a second ago looked an hour old and `JoinCanaryStuck` paged about a
/// healthy prober. The timestamps go out on the system clock as it reads at the scrape.
#[test]
fn run_timestamps_are_exported_on_the_stepped_system_clock() {
    let t0 = DateTime::from_timestamp(1_764_460_000, 0).unwrap();
    let clock = crate::clock::Clock::starting_at(t0);
    let m = Metrics::new("eu").unwrap().with_clock(clock);
    let (run, lag) = runs().into_iter().find(|(r, _)| r.success).unwrap();
    m.record(&run, lag);
    let finished = run.finished_at().timestamp_millis() as f64 / 1000.0;
    let value = |name: &str| -> f64 {
        let text = m.render();
        let prefix = format!(
            "{name}{{probe=\"{}\",region=\"{}\"}} ",
            run.probe, run.region
        );
        let line = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{prefix}\n{text}"));
        line[prefix.len()..].parse().unwrap()
    };
    assert_eq!(value("probe_last_run_timestamp_seconds"), finished);
    assert_eq!(value("probe_last_success_timestamp_seconds"), finished);
    clock.step_system(chrono::Duration::hours(1));
    assert_eq!(value("probe_last_run_timestamp_seconds"), finished + 3600.0);
    assert_eq!(
        value("probe_last_success_timestamp_seconds"),
        finished + 3600.0
    );
}

/// A configured heartbeat is on the scrape from start-up, its last success at 0 (as a probe's)
/// until a ping gets through: a heartbeat that never worked must show on the dashboard, not be
/// missing from it.
#[test]
fn a_heartbeat_that_never_got_through_is_exported_at_zero() {
    let m = Metrics::new("eu").unwrap();
    m.register_heartbeat("hc");
    let text = m.render();
    assert!(
        text.contains(
            "joincanary_heartbeat_last_success_timestamp_seconds{heartbeat=\"hc\",region=\"eu\"} 0\n"
        ),
        "{text}"
    );
    m.count_heartbeat("hc", false, "2026-01-01T00:00:00Z".parse().unwrap());
    m.count_heartbeat("hc", true, "2026-01-01T00:00:10Z".parse().unwrap());
    // Registering again (a reload) keeps what was stamped.
    m.register_heartbeat("hc");
    assert!(m.render().contains(
        "joincanary_heartbeat_last_success_timestamp_seconds{heartbeat=\"hc\",region=\"eu\"} 1767225610\n"
    ));
}
