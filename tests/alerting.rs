//! Paging end to end: `run` against the real sim, pagers pointed at loopback receivers that
//! check the real payload shapes. All on tokio's paused clock: the sim, the service and the
//! receivers run in the test's runtime, so the probe's sub-second timeouts, the confirm delay
//! and the retries are virtual, and a loaded machine cannot fail a run the test meant to pass
//! (or page for a blip the test did not make).

use std::time::Duration;

use joincanary::sim::SimServer;
use serde_json::{Value, json};

use crate::support::receiver::Receiver;
use crate::support::{
    Service, TempConfig, metric_value, poll, set_faults, start_sim, status, until, wait_metrics,
    wait_more_runs,
};

const ROUTING_KEY: &str = "pd-routing-key-0123456789";

/// The sim, a PagerDuty and a webhook receiver, and a service config paging both
/// ([`service_config`]) for the fast sim-join probe with `alerting` appended.
struct Rig {
    sim: SimServer,
    pd: Receiver,
    hook: Receiver,
    cfg: TempConfig,
}

/// [`Rig`] with `service` made from the service config (`|c| c` for it as it is).
async fn rig(alerting: &str, service: impl FnOnce(String) -> String) -> Rig {
    let sim = start_sim().await;
    let (pd, pd_url) = Receiver::start(202).await;
    let (hook, hook_url) = Receiver::start(200).await;
    let probe = crate::support::fast_sim_probe(&sim.base_url()) + alerting;
    let cfg = TempConfig::new(
        &service(service_config(&pd_url, &hook_url)),
        &[("sim-join.toml", &probe)],
    );
    Rig { sim, pd, hook, cfg }
}

fn service_config(pd: &str, hook: &str) -> String {
    format!(
        r#"status_url = "http://canary.example/status"
[alerting]
confirm_delay = "200ms"
failure_threshold = 2
success_threshold = 2

[[pager]]
name = "pd"
type = "pagerduty"
url = "{pd}/v2/enqueue"
routing_key = "${{TEST_PD_KEY}}"
retry_base = "50ms"

[[pager]]
name = "hook"
type = "webhook"
url = "{hook}/hook"
retry_base = "50ms"
"#
    )
}

async fn start_service(cfg: &TempConfig) -> Service {
    let plan = cfg
        .load(&[("TEST_PD_KEY", ROUTING_KEY)])
        .unwrap_or_else(|e| panic!("{e}"));
    Service::start(plan).await
}

#[tokio::test(start_paused = true)]
async fn a_fault_pages_once_per_provider_and_recovery_resolves_once() {
    let Rig { sim, pd, hook, cfg } = rig("", |c| c).await;
    let svc = start_service(&cfg).await;
    wait_more_runs(&svc.base, "sim-join", 2).await;
    assert!(pd.all().is_empty(), "a healthy flow pages nobody");

    set_faults(&sim, json!({"signalling_drop": true})).await;
    until(
        "trigger at both pagers",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || !pd.accepted().is_empty() && !hook.accepted().is_empty(),
    )
    .await;
    wait_more_runs(&svc.base, "sim-join", 3).await;
    let triggers: Vec<_> = pd.events("trigger");
    assert_eq!(triggers.len(), 1, "exactly one trigger: {triggers:#?}");
    let t = &triggers[0];
    assert_eq!(t["routing_key"], ROUTING_KEY);
    assert_eq!(t["dedup_key"], "joincanary/test/sim-join/critical");
    assert_eq!(t["payload"]["severity"], "critical");
    let summary = t["payload"]["summary"].as_str().unwrap();
    // The step's time said once: the cause names it (`no frame matched within 1.0 s`), so no
    // `after 1.0 s` before it (seen in a trial: the same figure twice in the first line).
    assert!(
        summary.starts_with(
            "sim-join failing in test: step \"signalling\" no_match: no frame matched within "
        ),
        "{summary}"
    );
    assert!(
        summary.contains("login") && summary.contains("websocket") && summary.ends_with("OK)"),
        "{summary}"
    );
    assert_eq!(t["payload"]["custom_details"]["consecutive_failures"], 2);
    assert!(
        t["links"]
            .to_string()
            .contains("http://canary.example/status")
    );
    let hooks = hook.accepted();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["event"], "trigger");
    assert_eq!(hooks[0]["failed_step"], "signalling");
    assert_eq!(hooks[0]["reason"], "no_match");

    // The routing key is a secret: not in status, metrics or the webhook's copy of the page.
    let status = crate::support::get_text(&svc.base, "/api/v1/status").await;
    let metrics = crate::support::get_text(&svc.base, "/metrics").await;
    for text in [&status, &metrics, &hooks[0].to_string()] {
        assert!(!text.contains(ROUTING_KEY));
    }
    assert!(
        metrics.lines().any(|l| l.starts_with("probe_alert_firing{")
            && l.contains("critical")
            && l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(status.contains("joincanary/test/sim-join/critical"));

    set_faults(&sim, json!({"signalling_drop": false})).await;
    until(
        "resolve at both pagers",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || !pd.events("resolve").is_empty() && !hook.events("resolve").is_empty(),
    )
    .await;
    wait_more_runs(&svc.base, "sim-join", 3).await;
    let resolves: Vec<_> = pd.events("resolve");
    assert_eq!(resolves.len(), 1);
    assert_eq!(
        resolves[0]["dedup_key"],
        "joincanary/test/sim-join/critical"
    );
    assert_eq!(hook.events("resolve").len(), 1);
    assert_eq!(pd.accepted().len(), 2, "nothing else was sent");
    svc.stop().await;
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn one_failed_run_followed_by_a_pass_pages_nobody() {
    let Rig { sim, pd, hook, cfg } = rig("", |c| {
        c.replace("confirm_delay = \"200ms\"", "confirm_delay = \"700ms\"")
    })
    .await;
    let svc = start_service(&cfg).await;
    wait_more_runs(&svc.base, "sim-join", 1).await;
    set_faults(&sim, json!({"login_status": 500})).await;
    // Clear the fault as soon as one failed run is recorded: the confirmation run passes.
    let saw_failure = poll(
        Duration::from_secs(3),
        Duration::from_millis(10),
        async || {
            let v: Value = status(&svc.base).await;
            (v["probes"][0]["last"]["success"] == false)
                .then_some(())
                .ok_or(())
        },
    )
    .await
    .is_ok();
    reqwest::Client::new()
        .delete(format!("{}/_sim/faults", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert!(saw_failure);
    wait_more_runs(&svc.base, "sim-join", 4).await;
    assert!(
        pd.all().is_empty() && hook.all().is_empty(),
        "a blip paged someone: {:?}",
        pd.all()
    );
    svc.stop().await;
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_provider_failing_three_times_still_gets_the_trigger() {
    let Rig {
        sim,
        pd,
        hook: _hook,
        cfg,
    } = rig("", |c| c).await;
    pd.script(&[500, 500, 500]);
    let svc = start_service(&cfg).await;
    set_faults(&sim, json!({"ws_reject_status": 503})).await;
    until(
        "the trigger delivered after retries",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || !pd.events("trigger").is_empty(),
    )
    .await;
    let all = pd.all();
    let statuses: Vec<u16> = all.iter().map(|(_, _, s)| *s).collect();
    assert_eq!(&statuses[..4], [500, 500, 500, 202]);
    assert!(
        all[..4]
            .iter()
            .all(|(path, v, _)| path == "/v2/enqueue" && v["event_action"] == "trigger")
    );
    // The receiver records the 202 before the dispatcher has read it and counted the delivery:
    // wait (bounded) for the count rather than race it.
    let count = |metrics: &str, result: &str| {
        metric_value(
            metrics,
            &format!(
                "joincanary_notifications_total{{sink=\"pd\",event=\"trigger\",result=\"{result}\"}}"
            ),
        )
    };
    let metrics = wait_metrics(
        &svc.base,
        "the delivery counted",
        Duration::from_secs(5),
        |m| count(m, "delivered") == Some(1.0),
    )
    .await;
    assert_eq!(count(&metrics, "retry"), Some(3.0), "{metrics}");
    assert_eq!(
        count(&metrics, "failed"),
        Some(0.0),
        "every series exists from start-up"
    );
    svc.stop().await;
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_mid_incident_neither_retriggers_nor_loses_the_resolve() {
    let Rig { sim, pd, hook, cfg } = rig("", |c| c).await;

    set_faults(&sim, json!({"signalling_drop": true})).await;
    let svc = start_service(&cfg).await;
    until(
        "trigger",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || !pd.events("trigger").is_empty(),
    )
    .await;
    // The receiver has the page before the dispatcher hears its answer; stopping in between
    // re-sends it at the next start (at least once is the outbox's promise), so wait for the
    // outbox to empty.
    let _ = poll(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || {
            let pending = svc
                .metrics()
                .await
                .lines()
                .filter(|l| l.starts_with("joincanary_outbox_pending{"))
                .any(|l| !l.ends_with(" 0"));
            if pending { Err(()) } else { Ok(()) }
        },
    )
    .await;
    svc.stop().await;

    // Restart with the fault still on: the incident is still open, nobody is paged again.
    let svc = start_service(&cfg).await;
    wait_more_runs(&svc.base, "sim-join", 3).await;
    assert_eq!(pd.events("trigger").len(), 1);
    assert_eq!(hook.events("trigger").len(), 1);

    // Recovery while PagerDuty is down, then a stop: the resolve waits in the outbox.
    pd.set_fallback(503);
    set_faults(&sim, json!({"signalling_drop": false})).await;
    until(
        "a resolve attempt",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || {
            pd.all()
                .iter()
                .any(|(_, v, s)| v["event_action"] == "resolve" && *s == 503)
        },
    )
    .await;
    svc.stop().await;
    assert!(
        pd.events("resolve").is_empty(),
        "the resolve waits in the outbox"
    );

    pd.set_fallback(202);
    let svc = start_service(&cfg).await;
    until(
        "the resolve delivered after the restart",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || !pd.events("resolve").is_empty(),
    )
    .await;
    wait_more_runs(&svc.base, "sim-join", 2).await;
    assert_eq!(pd.events("trigger").len(), 1);
    assert_eq!(pd.events("resolve").len(), 1);
    svc.stop().await;
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn latency_over_budget_raises_only_the_warning() {
    let Rig { sim, pd, hook: _hook, cfg } = rig(
        "\n[alerting]\ndegraded_threshold = 2\n[alerting.budgets]\n\"signalling.round_trip\" = \"100ms\"\n",
        |c| c,
    )
    .await;
    set_faults(&sim, json!({"signalling_delay_ms": 150})).await;
    let svc = start_service(&cfg).await;
    until(
        "the warning",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || !pd.accepted().is_empty(),
    )
    .await;
    wait_more_runs(&svc.base, "sim-join", 2).await;
    let accepted = pd.accepted();
    assert_eq!(accepted.len(), 1, "{accepted:#?}");
    assert_eq!(accepted[0]["payload"]["severity"], "warning");
    assert_eq!(accepted[0]["dedup_key"], "joincanary/test/sim-join/warning");
    let summary = accepted[0]["payload"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("sim-join degraded in test: step \"signalling\" round_trip"),
        "{summary}"
    );
    svc.stop().await;
    sim.shutdown().await;
}

/// A pager that cannot take the page for the whole incident is not paged late: once the
/// resolve is queued behind the undelivered trigger, the trigger is dropped (counted `failed`,
/// so the delivery alert fires) and the resolve that follows says nobody was paged. Before,
/// the trigger went out when the pager came back, followed at once by its resolve: a page
/// for an incident already over.
#[tokio::test(start_paused = true)]
async fn a_pager_down_for_the_whole_incident_gets_no_late_page_only_a_resolve_saying_so() {
    let Rig { sim, pd, hook, cfg } = rig("", |c| c).await;
    hook.set_fallback(503);
    let svc = start_service(&cfg).await;
    set_faults(&sim, json!({"signalling_drop": true})).await;
    until(
        "the trigger refused by the webhook",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || {
            !pd.events("trigger").is_empty()
                && hook
                    .all()
                    .iter()
                    .any(|(_, v, s)| v["event"] == "trigger" && *s == 503)
        },
    )
    .await;
    set_faults(&sim, json!({"signalling_drop": false})).await;
    until(
        "the resolve at PagerDuty",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || !pd.events("resolve").is_empty(),
    )
    .await;
    // Both the trigger and the resolve are queued for the webhook now: it comes back.
    hook.set_fallback(200);
    until(
        "the resolve at the webhook",
        Duration::from_secs(120),
        Duration::from_millis(100),
        || !hook.events("resolve").is_empty(),
    )
    .await;
    assert!(
        hook.events("trigger").is_empty(),
        "a page for an incident already over: {:#?}",
        hook.all()
    );
    let resolve = &hook.events("resolve")[0];
    let summary = resolve["summary"].as_str().unwrap_or_default();
    assert!(
        summary.starts_with("sim-join recovered in test")
            && summary.ends_with(
                "(not paged: the pager did not take the page before the incident ended)"
            ),
        "{resolve:#}"
    );
    // PagerDuty took the trigger: its incident resolves as usual.
    assert_eq!(pd.events("trigger").len(), 1);
    let metrics = wait_metrics(
        &svc.base,
        "the dropped trigger counted",
        Duration::from_secs(5),
        |m| {
            metric_value(
                m,
                "joincanary_notifications_total{sink=\"hook\",event=\"trigger\",result=\"failed\"}",
            ) == Some(1.0)
        },
    )
    .await;
    assert_eq!(
        metric_value(
            &metrics,
            "joincanary_notifications_total{sink=\"pd\",event=\"trigger\",result=\"failed\"}"
        ),
        Some(0.0),
        "{metrics}"
    );
    svc.stop().await;
    sim.shutdown().await;
}
