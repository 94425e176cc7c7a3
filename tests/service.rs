//! `run` as a service against the real sim: metrics, status history, SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use joincanary::clock::Clock;
use joincanary::scheduler::FlowRunner;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::{
    TempConfig, get_text as scrape, metric_value as value, set_faults, start_sim, wait_metrics,
};

/// How long to wait for a probe running every second: 30 s of the paused clock the in-process
/// test runs on (the sim and the service in its runtime, so a loaded machine cannot fail the
/// 400 ms step timeouts of `fast_sim_probe`).
const PATIENCE: Duration = Duration::from_secs(30);

fn has(metrics: &str, series: &str) -> bool {
    value(metrics, series).is_some()
}

#[tokio::test(start_paused = true)]
async fn run_exports_metrics_and_history_that_follow_sim_faults() {
    let sim = start_sim().await;
    let cfg = TempConfig::new(
        "",
        &[(
            "sim-join.toml",
            &crate::support::fast_sim_probe(&sim.base_url()),
        )],
    );
    let plan = cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(joincanary::service::serve(
        plan,
        listener,
        Arc::new(FlowRunner),
        Clock::system(),
        shutdown.clone(),
    ));

    let pr = r#"probe="sim-join",region="test""#;
    let m = wait_metrics(&base, "a success", PATIENCE, |m| {
        value(m, &format!("probe_success{{{pr}}}")) == Some(1.0)
    })
    .await;
    for series in [
        format!("probe_duration_seconds{{{pr}}}"),
        format!("probe_last_run_timestamp_seconds{{{pr}}}"),
        format!("probe_last_success_timestamp_seconds{{{pr}}}"),
        format!("probe_schedule_lag_seconds{{{pr}}}"),
        format!(r#"probe_runs_total{{{pr},result="success"}}"#),
        format!(r#"probe_runs_total{{{pr},result="failure"}}"#),
        format!(r#"probe_skipped_total{{{pr},reason="overlap"}}"#),
        format!(
            r#"probe_step_duration_seconds_count{{{pr},step="signalling",phase="round_trip"}}"#
        ),
        format!(r#"probe_step_duration_seconds_count{{{pr},step="login",phase="total"}}"#),
        r#"joincanary_build_info{region="test"}"#.to_string(),
    ] {
        assert!(has(&m, &series), "missing {series} in\n{m}");
    }
    assert!(m.contains("process_resident_memory_bytes") && m.contains("process_open_fds"));
    // Loopback has no DNS and no TLS: those phases are omitted, not zero.
    assert!(!m.contains(r#"phase="dns""#) && !m.contains(r#"phase="tls""#));
    // By default only step totals and round trips are histogrammed (`phase_histograms`).
    assert!(!m.contains(r#"phase="upgrade""#) && !m.contains(r#"phase="connect""#));

    set_faults(&sim, json!({"signalling_drop": true})).await;
    let failing = format!(r#"probe_failures_total{{{pr},step="signalling",reason="no_match"}}"#);
    let m = wait_metrics(&base, "a signalling failure", PATIENCE, |m| {
        value(m, &failing).unwrap_or(0.0) >= 1.0
            && value(m, &format!("probe_success{{{pr}}}")) == Some(0.0)
    })
    .await;
    assert!(value(&m, &format!(r#"probe_runs_total{{{pr},result="failure"}}"#)).unwrap() >= 1.0);

    set_faults(&sim, json!({"signalling_drop": false, "login_status": 500})).await;
    let login_failing =
        format!(r#"probe_failures_total{{{pr},step="login",reason="http_status"}}"#);
    wait_metrics(&base, "a login failure", PATIENCE, |m| {
        value(m, &login_failing).unwrap_or(0.0) >= 1.0
    })
    .await;

    let status: serde_json::Value =
        serde_json::from_str(&scrape(&base, "/api/v1/status").await).unwrap();
    let p = &status["probes"][0];
    assert_eq!(p["probe"], "sim-join");
    assert_eq!(status["region"], "test");
    assert!(p["next_run"].is_string());
    let history = p["history"].as_array().unwrap();
    assert!(history.len() >= 3 && history.len() <= 60);
    assert!(history.iter().any(|h| h["success"] == true));
    assert!(
        history
            .iter()
            .any(|h| h["reason"] == "no_match" && h["failed_step"] == "signalling")
    );
    assert!(p["last"]["steps"].is_array());
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    let page = scrape(&base, "/").await;
    assert!(page.contains("sim-join") && page.contains("failing"));

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), service)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_run_lets_it_finish_and_exits_0() {
    let sim = start_sim().await;
    set_faults(&sim, json!({"login_delay_ms": 1500})).await;
    // The login's 1.5 s keeps the run in flight when SIGTERM comes; its 4 s timeout (2 s left a
    // loaded machine 0.5 s) lets it pass all the same.
    let probe = crate::support::fast_sim_probe(&sim.base_url())
        .replace(
            "timeout = \"900ms\"\nschedule = \"* * * * * *\"",
            "timeout = \"4500ms\"\nschedule = \"*/5 * * * * *\"",
        )
        .replacen("timeout = \"400ms\"", "timeout = \"4s\"", 1);
    let cfg = TempConfig::new("", &[("sim-join.toml", &probe)]);
    let mut child = Command::new(crate::support::binary())
        .args(["--log-format", "json", "run", "--config"])
        .arg(&cfg.path)
        // "probe run starting" is a debug line (one info line per run is enough).
        .env("JOINCANARY_LOG", "info,joincanary::scheduler=debug")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        let mut reader = BufReader::new(stderr);
        let mut signalled = false;
        let mut line = String::new();
        // Bounded: the process exits within seconds of the signal.
        for _ in 0..500 {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if !signalled && line.contains("probe run starting") {
                std::thread::sleep(Duration::from_millis(300));
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                signalled = true;
                lines.push("--- SIGTERM sent ---".to_string());
            }
            lines.push(line.trim_end().to_string());
        }
        let status = child.wait().unwrap();
        (status, lines)
    });
    let (status, lines) = tokio::time::timeout(Duration::from_secs(40), lines)
        .await
        .unwrap()
        .unwrap();
    let after: Vec<_> = lines
        .iter()
        .skip_while(|l| !l.contains("SIGTERM sent"))
        .collect();
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    assert!(
        after.iter().any(|l| l.contains("probe run succeeded")),
        "the run in flight completed: {lines:#?}"
    );
    assert!(
        after
            .iter()
            .any(|l| l.contains("\"stopped\"") || l.contains("stopped")),
        "{lines:#?}"
    );
    for l in lines.iter().filter(|l| !l.starts_with("---")) {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|_| panic!("JSON log line: {l}"));
        // Every line of the service names its region (from the service's span).
        let region = v["spans"][0]["region"]
            .as_str()
            .or(v["span"]["region"].as_str())
            .or(v["region"].as_str());
        assert_eq!(region, Some("test"), "{l}");
    }
    sim.shutdown().await;
}

/// A run that passes after 5 ms (virtual) and says when it finished.
struct Finishing {
    finished: Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
}

impl joincanary::scheduler::Runner for Finishing {
    fn run(
        &self,
        probe: Arc<joincanary::flow::ProbePlan>,
        region: String,
        trigger: joincanary::report::Trigger,
        clock: Clock,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = joincanary::report::ProbeRun> + Send>>
    {
        let finished = self.finished.clone();
        let started_at = clock.now();
        Box::pin(async move {
            let took = Duration::from_millis(5);
            tokio::time::sleep(took).await;
            finished.lock().unwrap().push(tokio::time::Instant::now());
            crate::support::passing_run(&probe.name, region, started_at, took, trigger)
        })
    }
}

/// Forty probes every second against a closed port, starts spread by 900 ms of jitter; their
/// config (keep it: it holds the state directory), plan, and the clock to run them on.
fn forty_every_second() -> (TempConfig, joincanary::config::Plan, Clock) {
    let probes: Vec<(String, String)> = (0..40)
        .map(|i| {
            (
                format!("p{i}.toml"),
                format!(
                    "name = \"p{i}\"\nschedule = \"* * * * * *\"\njitter = \"900ms\"\ntimeout = \"900ms\"\n\
                     [[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n"
                ),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = probes
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let cfg = TempConfig::new("", &files);
    let plan = cfg.load(&[]).unwrap();
    let clock = Clock::starting_at(
        chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 3, 1, 12, 0, 0).unwrap(),
    );
    (cfg, plan, clock)
}

/// Forty probes every second, starts spread by the jitter: results come faster than one per
/// `consumer::LINGER`, so the consumer records them in batches (one wake-up for several), none
/// lost and none later than the linger; and stopping does not wait for a linger to end.
#[tokio::test(start_paused = true)]
async fn fast_results_are_recorded_in_batches_within_the_linger_and_stop_does_not_wait() {
    use joincanary::consumer::LINGER;
    let (_cfg, plan, clock) = forty_every_second();
    let finished = Arc::new(std::sync::Mutex::new(Vec::new()));
    let runner = Arc::new(Finishing {
        finished: finished.clone(),
    });
    let (service, handles) = crate::support::Service::scripted(plan, runner, clock).await;
    let status = handles.status;
    let recorded = || -> usize { status.snapshot().iter().map(|p| p.history.len()).sum() };
    // Past the first alert tick (5 s): the start-up burst (every probe announcing its first
    // run at once) is a busy linger, after which the consumer does not linger until that tick.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (mut batched, mut latest_gap) = (false, Duration::ZERO);
    // 3 to 5 s of the paused clock, looked at every 10 ms: about 150 runs; then stopped while
    // the consumer lingers (a result waiting 20-60 ms: the linger has about 200 ms to go).
    for look in 0..500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = tokio::time::Instant::now();
        let done = finished.lock().unwrap().clone();
        let seen = recorded();
        // The runs finished before `seen` + 1 are the ones still waiting (runs are recorded in
        // the order they finish: one thread, one channel).
        let mut done = done;
        done.sort();
        if let Some(oldest_waiting) = done.get(seen) {
            let waited = now.saturating_duration_since(*oldest_waiting);
            latest_gap = latest_gap.max(waited);
            batched |= waited >= Duration::from_millis(20);
            if look >= 300 && waited >= Duration::from_millis(20) && waited < LINGER / 4 {
                break;
            }
        }
    }
    let total = finished.lock().unwrap().len();
    assert!(
        total >= 300,
        "{total} runs in 9 s or more of 40 probes every second"
    );
    assert!(
        batched,
        "some result waited for the consumer's linger (one wake-up for several results)"
    );
    assert!(
        latest_gap <= LINGER + Duration::from_millis(20),
        "no result waited longer than the linger ({LINGER:?}) and a look: {latest_gap:?}"
    );
    let before = tokio::time::Instant::now();
    service.shutdown.cancel();
    service.task.await.unwrap().unwrap();
    assert!(
        before.elapsed() < Duration::from_millis(50),
        "stopping took {:?}: it waited for the linger",
        before.elapsed()
    );
    let snapshot = status.snapshot();
    let skipped: u64 = snapshot.iter().map(|p| p.skipped).sum();
    assert_eq!(skipped, 0, "no tick was skipped waiting for the consumer");
    assert_eq!(
        recorded(),
        finished.lock().unwrap().len(),
        "every run that finished was recorded before the service stopped"
    );
}

/// While results keep coming (forty probes a second), the consumer lingers back to back and
/// never waits on the channel between lingers: what it records (runs, and the next run each
/// probe announces) changes only when a linger ends, four times a second, not also each time
/// an event reaches a consumer waiting on the channel (each such send wakes its thread). The
/// alert tick (every 5 s) breaks the chain once.
#[tokio::test(start_paused = true)]
async fn while_results_keep_coming_none_wakes_the_consumer_on_its_own() {
    use joincanary::consumer::LINGER;
    let (_cfg, plan, clock) = forty_every_second();
    let runner = Arc::new(Finishing {
        finished: Arc::new(std::sync::Mutex::new(Vec::new())),
    });
    let (service, handles) = crate::support::Service::scripted(plan, runner, clock).await;
    let status = handles.status;
    let recorded = || {
        let snapshot = status.snapshot();
        let runs: usize = snapshot.iter().map(|p| p.history.len()).sum();
        let next: Vec<_> = snapshot.iter().map(|p| p.next_run).collect();
        (runs, next)
    };
    // Past the first alert tick and the start-up burst (see the test above).
    tokio::time::sleep(Duration::from_secs(6)).await;
    // 3 s of the paused clock, looked at every millisecond: about 120 runs.
    let (first, mut last) = (recorded().0, recorded());
    let mut changes = 0;
    for _ in 0..3000 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let now = recorded();
        changes += usize::from(now != last);
        last = now;
    }
    let runs = last.0 - first;
    assert!(runs >= 100, "{runs} runs recorded in 3 s");
    // Back to back lingers: 3 s / 250 ms = 12 ends, and the tick's break costs one or two.
    let most = (Duration::from_secs(3).as_millis() / LINGER.as_millis()) as usize + 3;
    assert!(
        changes <= most,
        "what the consumer records changed {changes} times in 3 s (at most {most} at one \
         look a linger): it took events as they were sent, between lingers"
    );
    service.shutdown.cancel();
    service.task.await.unwrap().unwrap();
}
