//! Pagers against real loopback receivers: payload shapes, retries, isolation, the outbox,
//! secrets, and email through a real SMTP server.

use std::path::Path;
use std::time::Duration;

use joincanary::alert::dispatch::FLUSH_BUDGET;
use joincanary::alert::{
    DeliveryError, Dispatcher, EventKind, Link, Notification, PagerPlan, Severity, test_page,
};
use joincanary::clock::Clock;
use joincanary::config::Plan;
use joincanary::report::FailureReason;
use serde_json::json;
use tokio::sync::watch;

use crate::support::receiver::{Receiver, Request};
use crate::support::smtp::Smtp;
use crate::support::{self, TempConfig};

const PD_KEY: &str = "pd-routing-key-0123456789";
const GENIE_KEY: &str = "genie-api-key-abcdef";
const SMTP_PASSWORD: &str = "smtp-pass-word-42";

fn metrics() -> joincanary::metrics::Metrics {
    joincanary::metrics::Metrics::new("test").unwrap()
}

fn count(m: &joincanary::metrics::Metrics, sink: &str, event: &str, result: &str) -> u64 {
    m.notifications
        .with_label_values(&[sink, event, result, "test"])
        .get()
}

fn notification(kind: EventKind) -> Notification {
    let now = chrono::Utc::now();
    Notification {
        kind,
        severity: Severity::Critical,
        dedup_key: "joincanary/sim-join/test/critical".into(),
        probe: "sim-join".into(),
        region: "test".into(),
        summary: "sim-join failing in test: step \"signalling\" no_match after 5.0 s".into(),
        failed_step: Some("signalling".into()),
        reason: Some(FailureReason::NoMatch),
        details: json!({"steps": [{"name": "login", "ms": 42.0}]}),
        started_at: now - chrono::Duration::minutes(3),
        at: now,
        reminder: false,
        test: false,
        links: vec![Link {
            text: "status".into(),
            href: "http://127.0.0.1:9464/api/v1/status".into(),
        }],
    }
}

/// A probe file for plans that are about pagers (a config with zero probes is refused).
const PROBE: &str =
    "timeout = \"5s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";

/// A plan whose only content is the given `[[pager]]` tables (and one idle probe).
fn plan(pagers: &str, env: &[(&str, &str)]) -> (TempConfig, Plan) {
    let cfg = TempConfig::new(pagers, &[("p.toml", PROBE)]);
    let plan = cfg
        .load(env)
        .unwrap_or_else(|e| panic!("config loads: {e}"));
    (cfg, plan)
}

/// A dispatcher for `pagers` keeping its state in `state`, on a clock that follows tokio's (the
/// paused one where a test pauses it): it, its metrics, and its shutdown signal (held: dropping
/// the sender would close the watch).
fn dispatcher(
    pagers: Vec<PagerPlan>,
    state: &Path,
) -> (
    Dispatcher,
    joincanary::metrics::Metrics,
    watch::Sender<bool>,
) {
    let m = metrics();
    let (tx, rx) = watch::channel(false);
    let d = Dispatcher::start(pagers, state, m.clone(), Clock::system(), rx);
    (d, m, tx)
}

fn fast(mut pagers: Vec<PagerPlan>) -> Vec<PagerPlan> {
    for p in &mut pagers {
        p.retry.base = Duration::from_millis(10);
        p.retry.cap = Duration::from_millis(40);
    }
    pagers
}

#[tokio::test]
async fn every_http_provider_gets_its_real_payloads() {
    support::init();
    let pd = Receiver::statuses(&[], 202).await;
    let og = Receiver::statuses(&[], 202).await;
    let am = Receiver::statuses(&[], 200).await;
    let slack = Receiver::statuses(&[], 200).await;
    let hook = Receiver::statuses(&[], 200).await;
    let (cfg, plan) = plan(
        r#"
[[pager]]
name = "pd"
type = "pagerduty"
url = "${PD_URL}/v2/enqueue"
routing_key = "${PD_KEY}"

[[pager]]
name = "og"
type = "opsgenie"
url = "${OG_URL}"
api_key = "${GENIE_KEY}"
warning_priority = "P4"

[[pager]]
name = "am"
type = "alertmanager"
url = "${AM_URL}"
resend_interval = "1h"

[[pager]]
name = "slack"
type = "slack"
url = "${SLACK_URL}/services/T0/B0/secretpath"

[[pager]]
name = "hook"
type = "webhook"
url = "${HOOK_URL}/hook"
headers = { Authorization = "Bearer ${HOOK_TOKEN}" }
"#,
        &[
            ("PD_URL", &pd.url()),
            ("PD_KEY", PD_KEY),
            ("OG_URL", &og.url()),
            ("GENIE_KEY", GENIE_KEY),
            ("AM_URL", &am.url()),
            ("SLACK_URL", &slack.url()),
            ("HOOK_URL", &hook.url()),
            ("HOOK_TOKEN", "hook-token-xyz"),
        ],
    );
    let (d, m, _tx) = dispatcher(fast(plan.pagers), &cfg.dir.path().join("state"));
    let trigger = notification(EventKind::Trigger);
    d.send(trigger.clone(), None);
    let mut resolve = notification(EventKind::Resolve);
    // The policy's resolve need not repeat the step; Alertmanager still gets the same labels.
    resolve.failed_step = None;
    resolve.reason = None;
    resolve.summary = "sim-join recovered in test".into();
    d.send(resolve, None);

    let within = Duration::from_secs(5);
    let seen = pd.wait_for(2, within).await;
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/v2/enqueue")
    );
    let b = &seen[0].body;
    assert_eq!(b["routing_key"], PD_KEY);
    assert_eq!(b["event_action"], "trigger");
    assert_eq!(b["dedup_key"], trigger.dedup_key);
    assert_eq!(b["payload"]["source"], "joincanary/test");
    assert_eq!(b["payload"]["severity"], "critical");
    assert_eq!(b["payload"]["component"], "sim-join");
    assert_eq!(b["payload"]["group"], "test");
    assert_eq!(b["payload"]["class"], "no_match");
    assert_eq!(b["payload"]["custom_details"], trigger.details);
    assert_eq!(b["links"][0]["text"], "status");
    assert_eq!(
        seen[1].body,
        json!({"routing_key": PD_KEY, "event_action": "resolve", "dedup_key": trigger.dedup_key})
    );

    let seen = og.wait_for(2, within).await;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/v2/alerts");
    assert_eq!(
        seen[0].headers["authorization"],
        format!("GenieKey {GENIE_KEY}")
    );
    assert_eq!(seen[0].body["alias"], trigger.dedup_key);
    assert_eq!(seen[0].body["priority"], "P1");
    assert_eq!(
        seen[0].body["tags"],
        json!(["test", "sim-join", "critical"])
    );
    assert_eq!(seen[0].body["details"]["failed_step"], "signalling");
    assert_eq!(
        seen[1].path,
        "/v2/alerts/joincanary%2Fsim-join%2Ftest%2Fcritical/close?identifierType=alias"
    );
    assert_eq!(
        seen[1].headers["authorization"],
        format!("GenieKey {GENIE_KEY}")
    );
    assert_eq!(seen[1].body["source"], "joincanary");

    let seen = am.wait_for(3, within).await;
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.path == "/api/v2/alerts"));
    // One of the three is the always-firing watchdog.
    let (watchdog, seen): (Vec<Request>, Vec<Request>) = seen
        .into_iter()
        .partition(|s| s.body[0]["labels"]["alertname"] == "JoinCanaryWatchdog");
    assert_eq!(watchdog.len(), 1);
    assert_eq!(
        watchdog[0].body[0]["labels"],
        json!({"alertname": "JoinCanaryWatchdog", "region": "test", "severity": "none", "source": "joincanary"})
    );
    let fire = &seen[0].body[0];
    // Stable for the incident's life; what changes is in annotations.
    let expected_labels = json!({
        "alertname": "JoinFlowFailing", "probe": "sim-join", "region": "test",
        "severity": "critical", "source": "joincanary",
    });
    assert_eq!(fire["labels"], expected_labels);
    assert_eq!(fire["annotations"]["step"], "signalling");
    assert_eq!(fire["annotations"]["reason"], "no_match");
    assert_eq!(fire["generatorURL"], "http://127.0.0.1:9464/api/v1/status");
    assert_eq!(fire["annotations"]["summary"], trigger.summary);
    let ends: chrono::DateTime<chrono::Utc> = fire["endsAt"].as_str().unwrap().parse().unwrap();
    // Held for an hour (the default `hold`), not a few resend intervals.
    assert!(ends > chrono::Utc::now() + chrono::Duration::minutes(59));
    let resolved = &seen[1].body[0];
    assert_eq!(resolved["labels"], expected_labels);
    let ends: chrono::DateTime<chrono::Utc> = resolved["endsAt"].as_str().unwrap().parse().unwrap();
    assert!(ends <= chrono::Utc::now());

    let seen = slack.wait_for(2, within).await;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/services/T0/B0/secretpath");
    let text = seen[0].body["text"].as_str().unwrap();
    assert!(
        text.starts_with("[FIRING critical] sim-join failing"),
        "{text}"
    );
    assert!(seen[0].body["blocks"].to_string().contains("login"));
    assert!(
        seen[1].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED] sim-join recovered")
    );

    let seen = hook.wait_for(2, within).await;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/hook");
    assert_eq!(seen[0].headers["authorization"], "Bearer hook-token-xyz");
    let b = &seen[0].body;
    assert_eq!(b["version"], 1);
    assert_eq!(b["event"], "trigger");
    assert_eq!(b["severity"], "critical");
    assert_eq!(b["failed_step"], "signalling");
    assert_eq!(b["reason"], "no_match");
    assert_eq!(b["test"], false);
    assert_eq!(b["reminder"], false);
    let mut keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "at",
            "dedup_key",
            "details",
            "event",
            "failed_step",
            "links",
            "probe",
            "reason",
            "region",
            "reminder",
            "severity",
            "started_at",
            "summary",
            "test",
            "version"
        ]
    );
    assert_eq!(seen[1].body["event"], "resolve");

    for sink in ["pd", "og", "am", "slack", "hook"] {
        assert_eq!(count(&m, sink, "trigger", "delivered"), 1, "{sink}");
        assert_eq!(count(&m, sink, "resolve", "delivered"), 1, "{sink}");
    }
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_until_delivered() {
    support::init();
    let pd = Receiver::statuses(&[500, 500, 500], 202).await;
    let (cfg, plan) = plan(
        "[[pager]]\nname = \"pd\"\ntype = \"pagerduty\"\nurl = \"${U}\"\nrouting_key = \"k\"\n",
        &[("U", &pd.url())],
    );
    let (d, m, _tx) = dispatcher(fast(plan.pagers), &cfg.dir.path().join("state"));
    d.send(notification(EventKind::Trigger), None);
    let seen = pd.wait_for(4, Duration::from_secs(5)).await;
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|s| s.body["event_action"] == "trigger"));
    // The success is counted just after the reply; give the task a moment (bounded, not
    // fixed: a loaded machine may take longer than a moment).
    support::until(
        "the delivery counted",
        Duration::from_secs(20),
        Duration::from_millis(10),
        || count(&m, "pd", "trigger", "delivered") == 1,
    )
    .await;
    assert_eq!(count(&m, "pd", "trigger", "retry"), 3);
    assert_eq!(count(&m, "pd", "trigger", "delivered"), 1);
    assert_eq!(d.pending(), 0);
    d.shutdown().await;
}

/// On the paused clock: "no retry in several backoff periods" is then a wait on the
/// dispatcher's own timers, not on how busy the machine is.
#[tokio::test(start_paused = true)]
async fn a_client_error_is_not_retried() {
    support::init();
    let pd = Receiver::statuses(&[], 400).await;
    let (cfg, plan) = plan(
        "[[pager]]\nname = \"pd\"\ntype = \"pagerduty\"\nurl = \"${U}\"\nrouting_key = \"k\"\n",
        &[("U", &pd.url())],
    );
    let (d, m, _tx) = dispatcher(fast(plan.pagers), &cfg.dir.path().join("state"));
    d.send(notification(EventKind::Trigger), None);
    pd.wait_for(1, Duration::from_secs(5)).await;
    // Many backoff periods (10 ms doubling to a 40 ms cap), on the paused clock: a retry would
    // have happened by now.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(pd.requests().len(), 1);
    assert_eq!(count(&m, "pd", "trigger", "failed"), 1);
    assert_eq!(count(&m, "pd", "trigger", "retry"), 0);
    assert_eq!(d.pending(), 0);
    d.shutdown().await;
}

/// On the paused clock, so the bounds are the dispatcher's timers (a 30 s request timeout, a
/// 5 s flush on shutdown), not the machine's load.
#[tokio::test(start_paused = true)]
async fn a_hanging_pager_does_not_delay_another() {
    support::init();
    let stuck = Receiver::hanging().await;
    let ok = Receiver::statuses(&[], 200).await;
    let (cfg, plan) = plan(
        r#"
[[pager]]
name = "stuck"
type = "webhook"
url = "${STUCK}"
timeout = "30s"

[[pager]]
name = "ok"
type = "webhook"
url = "${OK}"
"#,
        &[("STUCK", &stuck.url()), ("OK", &ok.url())],
    );
    let (d, _, _tx) = dispatcher(plan.pagers, &cfg.dir.path().join("state"));
    let started = tokio::time::Instant::now();
    d.send(notification(EventKind::Trigger), None);
    d.send(notification(EventKind::Resolve), None);
    let seen = ok.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(seen.len(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stuck.requests().len(), 1);
    // Shutdown is bounded even with a request hanging: the flush budget and a little more.
    let started = tokio::time::Instant::now();
    d.shutdown().await;
    let took = started.elapsed();
    assert!(
        took >= FLUSH_BUDGET && took < FLUSH_BUDGET + Duration::from_secs(1),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_outbox_survives_a_restart() {
    support::init();
    // A port nothing listens on: connection refused, a retryable failure.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cfg = TempConfig::new("", &[]);
    let state = cfg.dir.path().join("state");
    let pager = |url: &str| {
        format!(
            "[[pager]]\nname = \"pd\"\ntype = \"pagerduty\"\nurl = \"{url}\"\nrouting_key = \"k\"\n"
        )
    };
    let load = |text: String| {
        let c = TempConfig::new(&text, &[("p.toml", PROBE)]);
        c.load(&[]).unwrap().pagers
    };
    let (d, m, _tx) = dispatcher(fast(load(pager(&format!("http://{down}")))), &state);
    d.send(notification(EventKind::Resolve), None);
    support::until(
        "a retry of the resolve",
        Duration::from_secs(20),
        Duration::from_millis(10),
        || count(&m, "pd", "resolve", "retry") > 0,
    )
    .await;
    d.shutdown().await;
    let pending = |state: &Path| {
        joincanary::store::read(&state.join("state.log"))
            .entries
            .keys()
            .filter(|k| k.starts_with("p/"))
            .count()
    };
    assert_eq!(pending(&state), 1);

    let up = Receiver::statuses(&[], 202).await;
    let (d, _, _tx2) = dispatcher(load(pager(&up.url())), &state);
    let seen = up.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body["event_action"], "resolve");
    d.shutdown().await;
    assert_eq!(pending(&state), 0);
    let left: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["state.log"], "no temp files left behind");
}

#[tokio::test(start_paused = true)]
async fn shutdown_signal_flushes_and_stops() {
    support::init();
    let hook = Receiver::statuses(&[], 200).await;
    let (cfg, plan) = plan(
        "[[pager]]\nname = \"h\"\ntype = \"webhook\"\nurl = \"${U}\"\n",
        &[("U", &hook.url())],
    );
    let (d, _, tx) = dispatcher(plan.pagers, &cfg.dir.path().join("state"));
    d.send(notification(EventKind::Trigger), None);
    tx.send(true).unwrap();
    // On the paused clock: the flush budget, not the machine's load, bounds this.
    tokio::time::timeout(Duration::from_secs(7), d.shutdown())
        .await
        .unwrap();
    assert_eq!(hook.requests().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn alertmanager_alerts_are_re_posted_while_firing() {
    support::init();
    let am = Receiver::statuses(&[], 200).await;
    let (cfg, plan) = plan(
        "[[pager]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = \"${U}\"\nresend_interval = \"50ms\"\n",
        &[("U", &am.url())],
    );
    let (_tx, rx) = watch::channel(false);
    let m = metrics();
    // Follows tokio's paused clock: the re-posts every 50 ms and the resolve's `endsAt` are
    // on the same time line.
    let clock = Clock::system();
    let d = Dispatcher::start(
        plan.pagers,
        &cfg.dir.path().join("state"),
        m.clone(),
        clock,
        rx,
    );
    let resends = |result: &str| m.resends.with_label_values(&["am", result, "test"]).get();
    assert_eq!((resends("delivered"), resends("failed")), (0, 0));
    d.send(notification(EventKind::Trigger), None);
    // The always-firing watchdog goes to the same endpoint; this test is about the incident.
    let incident = |seen: Vec<Request>| -> Vec<Request> {
        seen.into_iter()
            .filter(|s| s.body[0]["labels"]["alertname"] == "JoinFlowFailing")
            .collect()
    };
    let seen = am.wait_for(8, Duration::from_secs(5)).await;
    assert!(incident(seen.clone()).len() >= 3, "{}", seen.len());
    // Every re-post after the first post is counted as a keep-alive, not as a page.
    assert!(resends("delivered") >= 2, "{}", resends("delivered"));
    assert_eq!(count(&m, "am", "trigger", "delivered"), 1);
    let mut resolve = notification(EventKind::Resolve);
    resolve.at = clock.now();
    d.send(resolve, None);
    // After the resolve, no more re-posts of the incident (the watchdog goes on).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = incident(am.requests()).len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(incident(am.requests()).len(), after);
    assert!(
        am.requests()
            .iter()
            .rev()
            .take(2)
            .all(|s| s.body[0]["labels"]["alertname"] == "JoinCanaryWatchdog")
    );
    let last = incident(am.requests()).pop().unwrap();
    let ends: chrono::DateTime<chrono::Utc> =
        last.body[0]["endsAt"].as_str().unwrap().parse().unwrap();
    assert!(ends <= clock.now());
    d.shutdown().await;
}

#[tokio::test]
async fn test_page_sends_a_marked_trigger_and_resolve() {
    support::init();
    let hook = Receiver::statuses(&[], 200).await;
    let (_cfg, plan) = plan(
        "[[pager]]\nname = \"h\"\ntype = \"webhook\"\nurl = \"${U}\"\n",
        &[("U", &hook.url())],
    );
    let links = [Link {
        text: "joincanary status".into(),
        href: "http://127.0.0.1:9464/".into(),
    }];
    let results = test_page(&plan.pagers, "eu-west-1", &links, None, Clock::system()).await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0], ("h".to_string(), Ok(Vec::new())));
    let seen = hook.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body["event"], "trigger");
    assert_eq!(seen[1].body["event"], "resolve");
    for s in &seen {
        assert_eq!(s.body["test"], true);
        assert!(
            s.body["summary"]
                .as_str()
                .unwrap()
                .starts_with("[TEST] joincanary test page from eu-west-1")
        );
        assert_eq!(s.body["dedup_key"], seen[0].body["dedup_key"]);
        assert_eq!(
            s.body["links"],
            json!([{"text": "joincanary status", "href": "http://127.0.0.1:9464/"}])
        );
    }
}

/// What on-call sees of a test page in each provider: marked once (Slack's notification line
/// read `[TEST] [TEST] joincanary test page …`), and nothing that reads as a real state
/// (PagerDuty's `class` was `degraded`).
#[tokio::test]
async fn a_test_page_is_marked_once_and_names_no_failure_in_any_pager() {
    support::init();
    let hook = Receiver::statuses(&[], 200).await;
    let (_cfg, plan) = plan(
        "[[pager]]\nname = \"pd\"\ntype = \"pagerduty\"\nurl = \"${U}/pd\"\nrouting_key = \"k\"\n\n[[pager]]\nname = \"og\"\ntype = \"opsgenie\"\nurl = \"${U}/og\"\napi_key = \"k\"\n\n[[pager]]\nname = \"slack\"\ntype = \"slack\"\nurl = \"${U}/slack\"\n\n[[pager]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"${U}/hook\"\n",
        &[("U", &hook.url())],
    );
    let results = test_page(&plan.pagers, "eu-west-1", &[], None, Clock::system()).await;
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    let seen = hook.requests();
    // pd, og, slack, hook: a trigger and a resolve each.
    assert_eq!(seen.len(), 8, "{seen:?}");
    for s in &seen {
        let body = s.body.to_string();
        assert!(!body.contains("[TEST] [TEST]"), "{}: {body}", s.path);
        // A PagerDuty resolve carries only its key.
        if s.body["event_action"] != "resolve" {
            assert!(
                body.contains("[TEST] joincanary test page from eu-west-1"),
                "{}: {body}",
                s.path
            );
        }
    }
    let slack = seen.iter().find(|s| s.path == "/slack").unwrap();
    assert_eq!(
        slack.body["text"],
        "[TEST] joincanary test page from eu-west-1: not a real incident"
    );
    let pd = seen
        .iter()
        .find(|s| s.path == "/pd" && s.body["event_action"] == "trigger")
        .unwrap();
    assert_eq!(pd.body["payload"]["class"], "test", "{}", pd.body);
}

/// Seen in a trial: `test-page` through an Alertmanager pager said nothing for the whole wait
/// (40 s when the route cannot be read), then everything at once, "will keep the alert firing
/// 40s" included, after the 40 s. Each finding is now logged as it is made: the wait is
/// announced while the test alert is still firing (the resolve not yet posted).
#[tokio::test]
async fn an_alertmanager_test_page_says_how_long_it_waits_before_it_waits() {
    support::init();
    let logs = support::logs::Capture::start();
    let am = Receiver::statuses(&[], 200).await;
    let (_cfg, plan) = plan(
        "[[pager]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = \"${U}\"\n",
        &[("U", &am.url())],
    );
    let posts = || {
        am.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/api/v2/alerts")
            .count()
    };
    let page = test_page(
        &plan.pagers,
        "eu-west-1",
        &[],
        Some(Duration::from_secs(3)),
        Clock::system(),
    );
    let mut seen = String::new();
    let watch = support::eventually(
        "the wait to be announced",
        Duration::from_secs(20),
        Duration::from_millis(20),
        async || {
            seen.push_str(&logs.take());
            support::when(posts(), |_| {
                seen.contains("will keep the alert firing 3s (--wait)")
                    && seen.contains("Alertmanager accepted the test alert")
            })
            .map_err(|n| format!("{n} posts; logged:\n{seen}"))
        },
    );
    let (results, posts_when_announced) = tokio::join!(page, watch);
    assert!(results[0].1.is_ok(), "{results:?}");
    assert_eq!(
        posts_when_announced, 1,
        "announced with the test alert firing, before its resolve"
    );
    assert_eq!(posts(), 2, "then resolved");
}

#[tokio::test]
async fn secrets_never_reach_errors_debug_or_logs() {
    support::init();
    let logs = support::logs::Capture::start();

    // Receivers that echo the secrets back in an error body, as some providers do.
    let pd = Receiver::echoing(400, format!("bad routing key {PD_KEY}")).await;
    let og = Receiver::echoing(403, format!("key {GENIE_KEY} is revoked")).await;
    let slack = Receiver::echoing(404, "no_service /services/T0/B0/hookpath".into()).await;
    let (cfg, plan) = plan(
        r#"
[[pager]]
name = "pd"
type = "pagerduty"
url = "${PD}"
routing_key = "${PD_KEY}"

[[pager]]
name = "og"
type = "opsgenie"
url = "${OG}"
api_key = "${GENIE_KEY}"

[[pager]]
name = "slack"
type = "slack"
url = "${SLACK}/services/T0/B0/hookpath"

[[pager]]
name = "mail"
type = "email"
host = "127.0.0.1"
port = 1
tls = "none"
username = "canary"
password = "${SMTP_PASSWORD}"
from = "canary@example.com"
to = ["oncall@example.com"]
"#,
        &[
            ("PD", &pd.url()),
            ("PD_KEY", PD_KEY),
            ("OG", &og.url()),
            ("GENIE_KEY", GENIE_KEY),
            ("SLACK", &slack.url()),
            ("SMTP_PASSWORD", SMTP_PASSWORD),
        ],
    );
    let secrets = [PD_KEY, GENIE_KEY, SMTP_PASSWORD, "hookpath"];
    let debug = format!("{:?}", plan.pagers);
    for s in secrets {
        assert!(!debug.contains(s), "Debug shows {s}: {debug}");
    }
    let results = test_page(&plan.pagers, "test", &[], None, Clock::system()).await;
    assert_eq!(results.len(), 4);
    let mut errors = String::new();
    for (name, r) in &results {
        let e = r.as_ref().expect_err("every pager fails here");
        errors.push_str(&format!("{name}: {e} / {e:?}\n"));
    }
    assert!(matches!(results[0].1, Err(DeliveryError::Permanent(_))));
    // A refused connection is worth retrying.
    assert!(matches!(results[3].1, Err(DeliveryError::Retryable(_))));
    // Checked on its own: the dispatcher's lines below must not pass on the test page's.
    let page_logs = logs.take();
    for sink in ["pd", "og", "slack", "mail"] {
        assert!(
            page_logs.contains(&format!("test page failed sink={sink} ")),
            "{page_logs}"
        );
    }
    assert!(
        page_logs.contains("[redacted]"),
        "the echoed key is scrubbed: {page_logs}"
    );

    // And through the dispatcher, whose failures are logged.
    let (d, m, _tx) = dispatcher(fast(plan.pagers), &cfg.dir.path().join("state"));
    d.send(
        notification(EventKind::Trigger),
        Some(&["pd".into(), "og".into(), "slack".into()]),
    );
    // Waited for, not assumed within a fixed time: on a loaded machine the first attempts
    // can take seconds, and the logs are only read once all three have failed.
    support::until(
        "a failed trigger on pd, og and slack",
        Duration::from_secs(20),
        Duration::from_millis(10),
        || {
            ["pd", "og", "slack"]
                .iter()
                .all(|s| count(&m, s, "trigger", "failed") >= 1)
        },
    )
    .await;
    // Written by the pager's task right after it counted the failure, on this thread (the
    // test runtime has one), so the line is there once the count is.
    d.shutdown().await;
    let logs = logs.take();
    for sink in ["pd", "og", "slack"] {
        assert!(
            logs.lines()
                .any(|l| l.contains("the pager refused") && l.contains(&format!("sink={sink} "))),
            "{logs}"
        );
    }
    assert!(
        logs.contains("[redacted]"),
        "the echoed key is scrubbed: {logs}"
    );
    for s in secrets {
        assert!(!errors.contains(s), "an error shows {s}: {errors}");
        assert!(!page_logs.contains(s), "a log line shows {s}: {page_logs}");
        assert!(!logs.contains(s), "a log line shows {s}: {logs}");
    }
}

/// The capture sees a line even when another thread, one without a subscriber, reached that
/// log statement first while the capture was on (tracing caches "nobody wants this line" per
/// statement; `support::logs` explains why a lone capture used to get that answer).
#[test]
fn log_capture_sees_lines_another_thread_reached_first() {
    fn line() {
        tracing::warn!("reached first elsewhere");
    }
    support::init();
    let logs = support::logs::Capture::start();
    std::thread::spawn(line).join().unwrap();
    line();
    assert!(logs.take().contains("reached first elsewhere"));
}

#[test]
fn bad_pager_configs_are_reported_with_keys() {
    let cfg = TempConfig::new(
        r#"
[[pager]]
name = "a"
type = "pagerduty"

[[pager]]
name = "a"
type = "carrier-pigeon"

[[pager]]
name = "mail"
type = "email"
tls = "sometimes"

[[pager]]
name = "hook"
type = "webhook"
url = "${HOOK_URL}"
routing_key = "x"
"#,
        &[],
    );
    let errors = cfg
        .load(&[("HOOK_URL", "not a url with secret-in-it")])
        .unwrap_err()
        .0;
    let got: Vec<(String, String)> = errors
        .iter()
        .map(|e| (e.key.clone().unwrap_or_default(), e.message.clone()))
        .collect();
    let want = |key: &str, msg: &str| {
        assert!(
            got.iter().any(|(k, m)| k == key && m.contains(msg)),
            "no `{key}: {msg}` in {got:#?}"
        );
    };
    want(
        "pager[0].routing_key",
        "is required for a `pagerduty` pager",
    );
    want("pager[1].name", "another pager is already named `a`");
    want(
        "pager[1].type",
        "unknown pager type `carrier-pigeon`; expected one of: pagerduty, opsgenie, alertmanager, slack, webhook, email",
    );
    want("pager[2].host", "is required for an `email` pager");
    want("pager[2].from", "is required for an `email` pager");
    want("pager[2].to", "is required for an `email` pager");
    want("pager[2].tls", "unknown tls mode `sometimes`");
    want("pager[3].url", "is not an http:// or https:// URL");
    want(
        "pager[3].routing_key",
        "does not apply to a `webhook` pager",
    );
    assert!(errors.iter().all(|e| e.line > 0), "{errors:#?}");
    assert!(!format!("{errors:?}").contains("secret-in-it"));
}

#[tokio::test]
async fn email_arrives_with_text_and_html_parts() {
    support::init();
    let smtp = Smtp::start("accept").await;
    let (cfg, plan) = plan(&smtp.pager(), &[]);
    let (d, m, _tx) = dispatcher(plan.pagers, &cfg.dir.path().join("state"));
    let mut n = notification(EventKind::Trigger);
    n.summary = "sim-join failing in test: <script>".into();
    d.send(n, None);
    let msgs = smtp.messages(1).await;
    assert_eq!(msgs.len(), 1);
    let msg = &msgs[0];
    assert!(
        msg.contains("Subject: [joincanary] sim-join in test: join flow failing since "),
        "{msg}"
    );
    assert!(
        msg.contains("[FIRING critical] sim-join failing in test: <script>"),
        "{msg}"
    );
    assert!(msg.contains("multipart/alternative"), "{msg}");
    assert!(msg.contains("Content-Type: text/plain"), "{msg}");
    assert!(msg.contains("Content-Type: text/html"), "{msg}");
    // Undo quoted-printable's soft line breaks before looking into the HTML part.
    let unwrapped = msg.replace("=\r\n", "").replace("=\n", "");
    assert!(
        unwrapped.contains("&lt;script&gt;"),
        "HTML is escaped: {msg}"
    );
    assert!(
        msg.contains("To: oncall@example.com, sre@example.com"),
        "{msg}"
    );
    d.shutdown().await;
    assert_eq!(count(&m, "mail", "trigger", "delivered"), 1);
}

#[tokio::test]
async fn email_rejected_after_data_is_a_failed_delivery() {
    support::init();
    let smtp = Smtp::start("reject").await;
    let (_cfg, plan) = plan(&smtp.pager(), &[]);
    let results = test_page(&plan.pagers, "test", &[], None, Clock::system()).await;
    match &results[0].1 {
        Err(DeliveryError::Permanent(msg)) => assert!(msg.contains("554"), "{msg}"),
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    assert_eq!(std::fs::read_dir(smtp.dir.path()).unwrap().count(), 0);
}

/// Issue 16: a `${REGION}` inside a default was sent literally (a Slack URL path became
/// `/services/T000/B000/${REGION}`); it is expanded, and an unset one is refused at load.
#[tokio::test]
async fn a_variable_nested_in_a_default_is_expanded_in_the_pager_url() {
    let slack = Receiver::statuses(&[], 200).await;
    let pager = r#"
[[pager]]
name = "slack"
type = "slack"
url = "${SLACK_URL:-${HOOKS}/services/T000/B000/${REGION}}"
"#;
    let (_cfg, plan) = plan(pager, &[("HOOKS", &slack.url()), ("REGION", "eu-west-1")]);
    let results = test_page(&plan.pagers, "test", &[], None, Clock::system()).await;
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    let paths: Vec<String> = slack.requests().into_iter().map(|s| s.path).collect();
    assert!(!paths.is_empty());
    assert!(
        paths.iter().all(|p| p == "/services/T000/B000/eu-west-1"),
        "{paths:?}"
    );
    // The default is used and names a variable that is not set: a load error naming it.
    let cfg = TempConfig::new(pager, &[("p.toml", PROBE)]);
    let err = cfg
        .load(&[("HOOKS", &slack.url())])
        .expect_err("REGION is not set")
        .to_string();
    assert!(
        err.contains("joincanary.toml:9:7: pager[0].url: environment variable `REGION`"),
        "{err}"
    );
}

/// An Alertmanager HA pair (`urls`): every post goes to both members (they share no alerts).
/// One member down: delivered all the same (the other took it), the member shown failing in
/// `joincanary_alertmanager_member_failing` and the status (`degraded`), never its URL's
/// credentials; the resolve it missed is posted to it again once it is back, so it cannot
/// notify the alert as still firing after the recovery. Both down: not delivered, retried,
/// the error naming each member.
#[tokio::test(start_paused = true)]
async fn an_alertmanager_pair_gets_every_post_and_a_member_that_missed_the_resolve_gets_it_again() {
    support::init();
    let a = Receiver::statuses(&[], 200).await;
    let b = Receiver::statuses(&[], 503).await;
    let b_port = b.url().rsplit(':').next().unwrap().to_string();
    let b_url = b.url().replace("http://", "http://ops:member-b-pass@");
    let (cfg, plan) = plan(
        "[[pager]]\nname = \"am\"\ntype = \"alertmanager\"\nurls = [\"${A}\", \"${B}\"]\n\
         resend_interval = \"50ms\"\nheaders = { X-Scope-OrgID = \"${TENANT}\" }\n",
        &[("A", &a.url()), ("B", &b_url), ("TENANT", "ops-tenant")],
    );
    let (d, m, _tx) = dispatcher(plan.pagers, &cfg.dir.path().join("state"));
    let incident = |r: &Receiver| -> Vec<Request> {
        r.requests()
            .into_iter()
            .filter(|s| s.body[0]["labels"]["alertname"] == "JoinFlowFailing")
            .collect()
    };
    d.send(notification(EventKind::Trigger), None);
    support::holds_within(Duration::from_secs(5), Duration::from_millis(10), || {
        count(&m, "am", "trigger", "delivered") == 1 && !incident(&b).is_empty()
    })
    .await;
    assert_eq!(count(&m, "am", "trigger", "delivered"), 1);
    assert_eq!(count(&m, "am", "trigger", "retry"), 0);
    // Both members got the same alert, with the pager's headers; only B its credentials.
    let (to_a, to_b) = (incident(&a), incident(&b));
    assert_eq!(to_a[0].body, to_b[0].body);
    assert_eq!(to_a[0].headers["x-scope-orgid"], "ops-tenant");
    assert_eq!(to_b[0].headers["x-scope-orgid"], "ops-tenant");
    assert!(!to_a[0].headers.contains_key("authorization"));
    assert!(to_b[0].headers["authorization"].starts_with("Basic "));
    let text = m.render();
    let member = |name: &str, v: u8| {
        format!(
            "joincanary_alertmanager_member_failing{{member=\"{name}\",region=\"test\",sink=\"am\"}} {v}"
        )
    };
    let a_name = format!("127.0.0.1:{}", a.url().rsplit(':').next().unwrap());
    let b_name = format!("127.0.0.1:{b_port}");
    assert!(text.contains(&member(&a_name, 0)), "{text}");
    assert!(text.contains(&member(&b_name, 1)), "{text}");
    assert!(
        text.contains(
            "joincanary_pager_failing{region=\"test\",sink=\"am\",type=\"alertmanager\"} 0"
        )
    );
    let health = m.delivery.snapshot();
    assert_eq!(health[0].state(), "degraded");
    let status = serde_json::to_string(&health).unwrap();
    assert!(
        status.contains(&b_name) && status.contains("503"),
        "{status}"
    );
    for secret in ["member-b-pass", "ops-tenant"] {
        assert!(!text.contains(secret) && !status.contains(secret));
    }

    // The resolve: A takes it, B (still down) does not; once B is back it gets the resolve
    // at the next resend tick, and nothing more of the incident after that.
    let mut resolve = notification(EventKind::Resolve);
    resolve.at = Clock::system().now();
    d.send(resolve, None);
    support::holds_within(Duration::from_secs(5), Duration::from_millis(10), || {
        count(&m, "am", "resolve", "delivered") == 1
    })
    .await;
    let resolved = |r: &Receiver| {
        incident(r).into_iter().any(|s| {
            s.status == 200
                && s.body[0]["endsAt"]
                    .as_str()
                    .unwrap()
                    .parse::<chrono::DateTime<chrono::Utc>>()
                    .unwrap()
                    <= Clock::system().now()
        })
    };
    assert!(resolved(&a));
    assert!(!resolved(&b));
    b.set_fallback(200);
    support::holds_within(Duration::from_secs(5), Duration::from_millis(10), || {
        resolved(&b)
    })
    .await;
    assert!(resolved(&b), "B never got the resolve it missed");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = incident(&b).len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        incident(&b).len(),
        after,
        "the caught-up resolve is posted once"
    );
    assert_eq!(m.delivery.snapshot()[0].state(), "ok");

    // Both members down: not delivered; retried; the error names each member.
    a.set_fallback(503);
    b.set_fallback(503);
    d.send(notification(EventKind::Trigger), None);
    support::holds_within(Duration::from_secs(5), Duration::from_millis(10), || {
        count(&m, "am", "trigger", "retry") >= 1
    })
    .await;
    let health = m.delivery.snapshot();
    assert_eq!(health[0].state(), "failing");
    let error = health[0].last_error.clone().unwrap();
    assert!(
        error.starts_with("no Alertmanager member took it: ")
            && error.contains(&format!("{a_name}: HTTP 503"))
            && error.contains(&format!("{b_name}: HTTP 503")),
        "{error}"
    );
    assert!(!error.contains("member-b-pass"));
    d.shutdown().await;
}

/// An Alertmanager member's post that panics (the fault hook; one member of a pair) is the
/// pager task's panic: failing (so `/-/ready` 503, naming the pager) and restarted after 1 s
/// with its queue, so both members get the alert; healthy again after a quiet minute.
#[tokio::test(start_paused = true)]
async fn an_alertmanager_member_post_that_panics_restarts_the_pager_and_delivers() {
    use joincanary::supervise::{HEALTHY_AFTER, Supervisor, Task, fault};
    support::init();
    let a = Receiver::statuses(&[], 200).await;
    let b = Receiver::statuses(&[], 200).await;
    let b_name = format!("127.0.0.1:{}", b.url().rsplit(':').next().unwrap());
    let (cfg, plan) = plan(
        "[[pager]]\nname = \"am-fault\"\ntype = \"alertmanager\"\nurls = [\"${A}\", \"${B}\"]\n",
        &[("A", &a.url()), ("B", &b.url())],
    );
    fault::arm(Task::Pager, &format!("am-fault/{b_name}"), 1);
    let m = metrics();
    let tasks = Supervisor::detached("test");
    let (store, loaded) = joincanary::alert::engine::open_store(&cfg.dir.path().join("state"));
    let outbox = joincanary::alert::dispatch::Outbox::from_loaded(&loaded);
    let (_tx, rx) = watch::channel(false);
    let d = Dispatcher::start_with(
        plan.pagers,
        outbox,
        store,
        m.clone(),
        Clock::system(),
        rx,
        &tasks,
    );
    d.send(notification(EventKind::Trigger), None);
    let health = tasks.health();
    support::holds_within(Duration::from_secs(5), Duration::from_millis(10), || {
        !health.failing().is_empty()
    })
    .await;
    assert_eq!(
        health.failing(),
        [format!(
            "pager am-fault panicked: injected fault in the pager task for am-fault/{b_name}; restarting"
        )]
    );
    let incident = |r: &Receiver| {
        r.requests()
            .iter()
            .any(|s| s.body[0]["labels"]["alertname"] == "JoinFlowFailing")
    };
    support::holds_within(Duration::from_secs(10), Duration::from_millis(10), || {
        count(&m, "am-fault", "trigger", "delivered") == 1 && incident(&a) && incident(&b)
    })
    .await;
    assert_eq!(count(&m, "am-fault", "trigger", "delivered"), 1);
    assert!(incident(&a) && incident(&b));
    tokio::time::sleep(HEALTHY_AFTER + Duration::from_secs(1)).await;
    assert!(health.failing().is_empty(), "{:?}", health.failing());
    d.shutdown().await;
}
