//! Delivery to the HTTP providers against real loopback receivers: each provider's real
//! payloads, `test-page`'s marked pair, server errors retried and client errors not, a hanging
//! pager isolated from another, the outbox kept across a restart, shutdown's flush.

use std::path::Path;
use std::time::Duration;

use joincanary::alert::dispatch::FLUSH_BUDGET;
use joincanary::alert::{EventKind, Link, test_page};
use joincanary::clock::Clock;
use serde_json::json;

use super::{GENIE_KEY, PD_KEY, PROBE, count, dispatcher, fast, notification, plan};
use crate::support::receiver::{Receiver, Request};
use crate::support::{self, TempConfig};

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
