//! State that never loses an incident (issue 9): the state log's write cost, damaged and
//! migrated state reconciled with what reached the pagers, a failing disk, and probes that a
//! reload removes during their incident. The services run on tokio's paused clock (their
//! waits are virtual), except where the state writer's own thread must retry in real time.

use std::path::Path;
use std::time::Duration;

use joincanary::store::Store;
use serde_json::{Value, json};

use crate::support::receiver::Receiver;
use crate::support::{
    Service, TempConfig, eventually, poll, set_faults, start_sim, status, until, when,
};

const KEY: &str = "joincanary/test/sim-join/critical";

fn service_config(hook: &str) -> String {
    format!(
        r#"
[alerting]
confirm_delay = "100ms"
failure_threshold = 2
success_threshold = 2

[[pager]]
name = "hook"
type = "webhook"
url = "{hook}/hook"
retry_base = "50ms"
"#
    )
}

/// Waits (25 ms apart, at most 10 s) for the webhook to have accepted a notification
/// matching `event`.
async fn wait_event(hook: &Receiver, event: &str) -> Value {
    eventually(
        &format!("a {event} at the pager"),
        Duration::from_secs(10),
        Duration::from_millis(25),
        async || {
            hook.accepted()
                .into_iter()
                .find(|v| v["event"] == event && v["dedup_key"] == KEY)
                .ok_or_else(|| format!("{:?}", hook.all()))
        },
    )
    .await
}

/// Waits (25 ms apart, at most 10 s) for the status to show the alert open (or closed).
async fn wait_alert(base: &str, open: bool) -> Value {
    eventually(
        if open {
            "the alert open"
        } else {
            "the alert closed"
        },
        Duration::from_secs(10),
        Duration::from_millis(25),
        async || {
            when(status(base).await, |s| {
                s["probes"][0]["alerts"]
                    .as_array()
                    .is_none_or(|a| a.is_empty())
                    != open
            })
        },
    )
    .await
}

fn log_lines(state: &Path) -> Vec<String> {
    std::fs::read_to_string(state.join("state.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Damages the latest line of the log whose key starts with `prefix`.
fn damage(state: &Path, prefix: &str) {
    let path = state.join("state.log");
    let mut lines = log_lines(state);
    let needle = format!("{{\"k\":\"{prefix}");
    let i = lines
        .iter()
        .rposition(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no {prefix} record in {lines:?}"));
    lines[i] = lines[i].replacen("\"k\"", "\"K\"", 1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

/// Turns the state of an incident into what an earlier version would have left:
/// `alert-state.json` holding it, and `outbox.json` with `outbox`.
fn legacy_files(state: &Path, outbox: &str) {
    let loaded = joincanary::store::read(&state.join("state.log"));
    let alert: Value = serde_json::from_str(&loaded.entries["a/sim-join"]).unwrap();
    std::fs::write(
        state.join("alert-state.json"),
        serde_json::to_vec(&json!({"sim-join": alert})).unwrap(),
    )
    .unwrap();
    std::fs::write(state.join("outbox.json"), outbox).unwrap();
    std::fs::remove_file(state.join("state.log")).unwrap();
}

/// What `hook` has accepted once it has taken more than `before` (25 ms apart, at most 10 s;
/// then what it has, for the caller's assertion to show).
async fn accepted_after(hook: &Receiver, before: usize) -> Vec<Value> {
    poll(
        Duration::from_secs(10),
        Duration::from_millis(25),
        async || when(hook.accepted(), |sent| sent.len() > before),
    )
    .await
    .unwrap_or_else(|sent| sent)
}

/// An incident opened and delivered, then the service stopped: (sim, hook, config).
async fn incident() -> (joincanary::sim::SimServer, Receiver, TempConfig) {
    let sim = start_sim().await;
    let (hook, hook_url) = Receiver::start(200).await;
    let cfg = TempConfig::new(
        &service_config(&hook_url),
        &[("p.toml", &crate::support::fast_sim_probe(&sim.base_url()))],
    );
    set_faults(&sim, json!({"signalling_drop": true})).await;
    let svc = Service::reloadable(&cfg, false).await;
    wait_event(&hook, "trigger").await;
    svc.stop().await;
    (sim, hook, cfg)
}

#[test]
fn a_change_appends_one_line_whatever_the_number_of_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.log");
    let (store, _) = Store::open(&path);
    for i in 0..2000 {
        store.put(&format!("a/probe-{i:04}"), &json!({"failures": i}));
    }
    assert!(store.flush(Duration::from_secs(10)));
    let before = std::fs::metadata(&path).unwrap().len();
    store.put("a/probe-0007", &json!({"failures": 8}));
    assert!(store.flush(Duration::from_secs(10)));
    let grown = std::fs::metadata(&path).unwrap().len() - before;
    let last = std::fs::read_to_string(&path).unwrap();
    let last = last.lines().last().unwrap();
    assert_eq!(grown, last.len() as u64 + 1, "one appended line: {last}");
    store.close();
    let loaded = joincanary::store::read(&path);
    assert_eq!(loaded.entries.len(), 2000);
    assert_eq!(loaded.entries["a/probe-0007"], r#"{"failures":8}"#);
}

#[test]
fn a_damaged_log_keeps_every_intact_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.log");
    let (store, _) = Store::open(&path);
    for i in 0..10 {
        store.put(&format!("k{i}"), &i);
    }
    assert!(store.flush(Duration::from_secs(10)));
    store.close();
    let text = std::fs::read_to_string(&path).unwrap();
    // One line damaged in the middle, the last one torn.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[3] = lines[3].replace(":3}", ":33}");
    let torn = lines[9].len() / 2;
    lines[9].truncate(torn);
    std::fs::write(&path, lines.join("\n")).unwrap();
    let (store, loaded) = Store::open(&path);
    assert_eq!(loaded.damaged, 2);
    assert_eq!(loaded.entries.len(), 8);
    assert!(!loaded.entries.contains_key("k3"));
    assert!(dir.path().join("state.log.damaged").exists());
    // The next write leaves a clean file.
    store.put("k3", &3);
    assert!(store.flush(Duration::from_secs(10)));
    store.close();
    let again = joincanary::store::read(&path);
    assert_eq!((again.damaged, again.entries.len()), (0, 9));
}

#[tokio::test(start_paused = true)]
async fn a_lost_delivery_record_re_sends_the_trigger_of_an_open_alert() {
    let (_sim, hook, cfg) = incident().await;
    let state = cfg.dir.path().join("state");
    damage(&state, "s/");
    let before = hook.accepted().len();
    let svc = Service::reloadable(&cfg, false).await;
    let sent = accepted_after(&hook, before).await;
    assert_eq!(sent.len(), before + 1, "{sent:?}");
    assert_eq!(sent[before]["event"], "trigger");
    assert_eq!(sent[before]["dedup_key"], KEY);
    svc.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_lost_alert_record_is_rebuilt_and_resolved() {
    let (sim, hook, cfg) = incident().await;
    let state = cfg.dir.path().join("state");
    damage(&state, "a/");
    set_faults(&sim, json!({"signalling_drop": false})).await;
    let svc = Service::reloadable(&cfg, false).await;
    let resolve = wait_event(&hook, "resolve").await;
    assert_eq!(resolve["probe"], "sim-join");
    svc.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_truncated_legacy_outbox_re_sends_the_trigger() {
    let (_sim, hook, cfg) = incident().await;
    let state = cfg.dir.path().join("state");
    // What an earlier version would have left: alert-state.json holding the open incident and
    // an outbox.json cut short.
    legacy_files(&state, r#"{"version":1,"next_id":3,"pend"#);
    let before = hook.accepted().len();
    let svc = Service::reloadable(&cfg, false).await;
    let sent = accepted_after(&hook, before).await;
    assert_eq!(sent.len(), before + 1, "{sent:?}");
    assert_eq!(sent[before]["event"], "trigger");
    assert!(state.join("alert-state.json.migrated").exists());
    svc.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_intact_legacy_outbox_migrates_without_paging_again() {
    let (_sim, hook, cfg) = incident().await;
    let state = cfg.dir.path().join("state");
    legacy_files(
        &state,
        r#"{"version":1,"next_id":3,"pending":[],"firing":[]}"#,
    );
    let before = hook.accepted().len();
    let svc = Service::reloadable(&cfg, false).await;
    crate::support::wait_probe_runs(&svc.base, "sim-join", 3).await;
    wait_alert(&svc.base, true).await;
    svc.stop().await;
    assert_eq!(hook.accepted().len(), before, "{:?}", hook.all());
    let loaded = joincanary::store::read(&state.join("state.log"));
    assert!(
        loaded.entries.keys().any(|k| k.starts_with("s/")),
        "delivery recorded: {:?}",
        loaded.entries.keys()
    );
    assert!(state.join("outbox.json.migrated").exists());
}

// Real time: the state writer is a thread of its own, retrying on the real clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_disk_and_a_reload_keep_the_incident() {
    let sim = start_sim().await;
    let (hook, hook_url) = Receiver::start(200).await;
    let cfg = TempConfig::new(
        &service_config(&hook_url),
        &[("p.toml", &crate::support::fast_sim_probe(&sim.base_url()))],
    );
    let state = cfg.dir.path().join("state");
    set_faults(&sim, json!({"signalling_drop": true})).await;
    let svc = Service::reloadable(&cfg, false).await;
    wait_event(&hook, "trigger").await;
    // The disk stops taking writes: the log's path is now a directory.
    std::fs::remove_file(state.join("state.log")).unwrap();
    std::fs::create_dir(state.join("state.log")).unwrap();
    std::fs::write(state.join("state.log").join("x"), "").unwrap();
    svc.reload().await.unwrap();
    crate::support::wait_probe_runs(&svc.base, "sim-join", 1).await;
    let s = wait_alert(&svc.base, true).await;
    assert_eq!(s["probes"][0]["alerts"][0]["dedup_key"], KEY, "{s}");
    // Told to Prometheus, not only logged (JoinCanaryStateNotWritable).
    wait_state_failing(&svc.base, "state.log", 1.0).await;
    // The disk recovers: everything is written, in a fresh file.
    std::fs::remove_dir_all(state.join("state.log")).unwrap();
    until(
        "the state written once the disk recovered",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let loaded = joincanary::store::read(&state.join("state.log"));
            loaded.entries.get("a/sim-join").is_some_and(|a| {
                serde_json::from_str::<Value>(a).unwrap()["critical"]["dedup_key"] == KEY
            })
        },
    )
    .await;
    wait_state_failing(&svc.base, "state.log", 0.0).await;
    // Listed once every writer has stopped: while it runs, the status history's save may be
    // between writing its temp file and renaming it (seen under load), which leaves nothing.
    svc.stop().await;
    let left: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!left.iter().any(|f| f.contains(".tmp")), "{left:?}");
}

/// Waits (50 ms apart, at most 30 s: the writer retries on its own backoff, real time) for
/// `joincanary_state_write_failing{file}` to read `want`.
async fn wait_state_failing(base: &str, file: &str, want: f64) {
    let series = format!("joincanary_state_write_failing{{file=\"{file}\",region=\"test\"}}");
    let got = poll(
        Duration::from_secs(30),
        Duration::from_millis(50),
        async || {
            let m = crate::support::get_text(base, "/metrics").await;
            when(crate::support::metric_value(&m, &series), |v| {
                *v == Some(want)
            })
        },
    )
    .await
    .unwrap_or_else(|last| last);
    assert_eq!(got, Some(want), "{series}");
}

/// Issue 17: state files that cannot be read (a history over the size cap, a state log that
/// is a directory) are logged, counted and ignored: the service starts, probes and is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_state_files_are_counted_and_the_start_goes_on() {
    let sim = start_sim().await;
    let cfg = TempConfig::new(
        "",
        &[("p.toml", &crate::support::fast_sim_probe(&sim.base_url()))],
    );
    let plan = cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(plan.state_dir.join("state.log")).unwrap();
    std::fs::File::create(plan.state_dir.join("status-history.json"))
        .unwrap()
        .set_len(joincanary::diag::file::MAX_STATE_BYTES + 1)
        .unwrap();
    let svc = Service::start(plan).await;
    crate::support::wait_probe_runs(&svc.base, "sim-join", 1).await;
    let m = svc.metrics().await;
    for file in ["state.log", "status-history.json"] {
        assert_eq!(
            crate::support::metric_value(
                &m,
                &format!("joincanary_state_read_errors_total{{file=\"{file}\",region=\"test\"}}")
            ),
            Some(1.0),
            "{file}: {m}"
        );
    }
    svc.stop().await;
    sim.shutdown().await;
}

/// A state directory that cannot be written at start-up (its path runs through a regular file:
/// refused to root too) does not stop `run` — it probes and pages from memory — but it is told
/// at once, before any incident needs the disk, not at the first page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_directory_not_writable_at_start_is_reported_at_once() {
    let sim = start_sim().await;
    let cfg = TempConfig::new(
        "",
        &[("p.toml", &crate::support::fast_sim_probe(&sim.base_url()))],
    );
    let blocker = cfg.dir.path().join("blocker");
    std::fs::write(&blocker, "").unwrap();
    let mut plan = cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"));
    plan.state_dir = blocker.join("state");
    let svc = Service::start(plan).await;
    wait_state_failing(&svc.base, "state.log", 1.0).await;
    crate::support::wait_probe_runs(&svc.base, "sim-join", 1).await;
    let m = svc.metrics().await;
    assert_eq!(
        crate::support::metric_value(
            &m,
            "joincanary_state_write_failing{file=\"status-history.json\",region=\"test\"}"
        ),
        Some(0.0),
        "the history's series exists from start-up (it is saved 10 s after a change): {m}"
    );
    svc.stop().await;
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_probe_removed_during_its_incident_is_resolved() {
    let sim = start_sim().await;
    let (hook, hook_url) = Receiver::start(200).await;
    let probe = crate::support::fast_sim_probe(&sim.base_url());
    let cfg = TempConfig::new(
        &service_config(&hook_url),
        &[
            ("p.toml", &probe),
            (
                "q.toml",
                &probe.replace("name = \"sim-join\"", "name = \"other\""),
            ),
        ],
    );
    set_faults(&sim, json!({"signalling_drop": true})).await;
    let svc = Service::reloadable(&cfg, false).await;
    wait_event(&hook, "trigger").await;
    std::fs::remove_file(cfg.probe_path("p.toml")).unwrap();
    svc.reload().await.unwrap();
    let resolve = wait_event(&hook, "resolve").await;
    assert!(
        resolve["summary"]
            .as_str()
            .unwrap()
            .contains("removed from the configuration"),
        "{resolve}"
    );
    // Exactly one (issue 17: the reload's resolve and the outbox reconciliation's each queued
    // one, so Slack and email showed two). Stopping delivers whatever is still queued.
    svc.stop().await;
    let resolves = hook
        .accepted()
        .into_iter()
        .filter(|v| v["event"] == "resolve" && v["dedup_key"] == KEY)
        .count();
    assert_eq!(resolves, 1, "{:?}", hook.all());
}

/// Issue 16: after a restart `probe_success` was absent until the probe's first run (up to an
/// interval), so the region dropped out of Prometheus' rules and their `for:` timers started
/// again. A real restart on the same state_dir, with the probe's next run a year away: the
/// first scrape already says what the last run before the restart said, the incident is still
/// open and not paged again, and it resolves once when the probe passes.
#[tokio::test(start_paused = true)]
async fn probe_success_and_the_open_incident_survive_a_restart() {
    use crate::support::metric_value;
    let sim = start_sim().await;
    let (hook, hook_url) = Receiver::start(200).await;
    let probe = crate::support::fast_sim_probe(&sim.base_url());
    let cfg = TempConfig::new(&service_config(&hook_url), &[("p.toml", &probe)]);
    let svc = Service::reloadable(&cfg, false).await;
    // A pass first, so there is a last success to keep.
    crate::support::wait_probe_runs(&svc.base, "sim-join", 1).await;
    set_faults(&sim, json!({"signalling_drop": true})).await;
    wait_event(&hook, "trigger").await;
    let scrape = |base: String| async move { crate::support::get_text(&base, "/metrics").await };
    let success = "probe_success{probe=\"sim-join\",region=\"test\"}";
    let last_success = "probe_last_success_timestamp_seconds{probe=\"sim-join\",region=\"test\"}";
    let last_run = "probe_last_run_timestamp_seconds{probe=\"sim-join\",region=\"test\"}";
    let firing = "probe_alert_firing{probe=\"sim-join\",region=\"test\",severity=\"critical\"}";
    // Stopped (SIGTERM's path) while the last run failed: it saves the status history.
    let before = poll(
        Duration::from_secs(2),
        Duration::from_millis(10),
        async || {
            when(scrape(svc.base.clone()).await, |m| {
                metric_value(m, success) == Some(0.0)
            })
        },
    )
    .await
    .unwrap_or_else(|last| last);
    svc.stop().await;
    let before_status = serde_json::to_string(
        &joincanary::store::read(&cfg.dir.path().join("state/state.log")).entries,
    )
    .unwrap();
    let expected_success = metric_value(&before, last_success).expect("a success before");
    assert!(expected_success > 0.0, "{before}");

    std::fs::write(
        cfg.probe_path("p.toml"),
        probe.replace("schedule = \"* * * * * *\"", "schedule = \"0 0 1 1 *\""),
    )
    .unwrap();
    let svc = Service::reloadable(&cfg, false).await;
    let after = scrape(svc.base.clone()).await;
    assert_eq!(metric_value(&after, success), Some(0.0), "{after}");
    assert_eq!(metric_value(&after, last_success), Some(expected_success));
    assert_eq!(metric_value(&after, firing), Some(1.0));
    // Not run by this process yet: "time since the last run" counts from the process start.
    assert_eq!(metric_value(&after, last_run), None, "{after}");
    let s = status(&svc.base).await;
    assert_eq!(s["probes"][0]["state"], "failing", "{s}");
    assert_eq!(s["probes"][0]["alerts"][0]["dedup_key"], KEY, "{s}");
    // Not paged again (the outbox knows the trigger reached the pager): give a re-sent trigger
    // time to arrive, then count.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let triggers = |hook: &Receiver| {
        hook.accepted()
            .iter()
            .filter(|v| v["event"] == "trigger" && v["dedup_key"] == KEY)
            .count()
    };
    assert_eq!(triggers(&hook), 1, "{:?} / {before_status}", hook.all());

    // The platform mends and the probe runs again: one resolve ends that same incident, and the
    // metrics are this process's own.
    set_faults(&sim, json!({"signalling_drop": false})).await;
    std::fs::write(cfg.probe_path("p.toml"), &probe).unwrap();
    svc.reload().await.unwrap();
    let resolve = wait_event(&hook, "resolve").await;
    assert_eq!(resolve["probe"], "sim-join");
    let now = scrape(svc.base.clone()).await;
    assert_eq!(metric_value(&now, success), Some(1.0), "{now}");
    assert!(metric_value(&now, last_run).is_some(), "{now}");
    svc.stop().await;
    assert_eq!(triggers(&hook), 1, "{:?}", hook.all());
}
