//! The Alertmanager pager: alerts re-posted while firing, an HA pair getting every post (a
//! member that missed the resolve gets it again), a member's panicking post restarting the
//! pager without losing its queue.

use std::time::Duration;

use joincanary::alert::{Dispatcher, EventKind, test_page};
use joincanary::clock::Clock;
use tokio::sync::watch;

use super::{count, dispatcher, metrics, notification, plan};
use crate::support;
use crate::support::receiver::{Receiver, Request};

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
