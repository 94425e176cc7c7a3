//! The Alertmanager pager's request builders and `test-page`'s waiting, against an in-memory
//! Alertmanager on the paused clock.

use super::*;
use crate::alert::sample;

fn plan() -> Alertmanager {
    Alertmanager {
        urls: vec![Secret::new("http://am:9093")],
        resend_interval: Duration::from_secs(60),
        hold: DEFAULT_HOLD,
        headers: Vec::new(),
    }
}

/// A clock whose system clock agrees with it (not stepped).
fn clock() -> crate::clock::Clock {
    crate::clock::Clock::starting_at("2025-03-01T12:00:00Z".parse().unwrap())
}

#[test]
fn firing_payload() {
    let n = sample(EventKind::Trigger);
    let body = build_alert(&plan(), &n, &clock());
    assert_eq!(
        body,
        json!([{
            "labels": {
                "alertname": "JoinFlowFailing",
                "probe": "sim-join",
                "region": "eu-west-1",
                "severity": "critical",
                "source": "joincanary",
            },
            "annotations": {
                "summary": n.summary,
                "description": description(&n),
                "step": "signalling",
                "reason": "no_match",
            },
            "generatorURL": "http://canary.example/status",
            "startsAt": "2025-03-01T12:00:00Z",
            "endsAt": "2025-03-01T13:05:00Z",
        }])
    );
}

/// A summary too long for Opsgenie's 130-character message (long probe and region names): a
/// `summary_short` with the names cut first, the step and the cause kept, for the receivers'
/// `joincanary.short` template (Alertmanager itself cuts the message from the end).
#[test]
fn long_names_get_a_short_summary_that_keeps_the_cause() {
    let mut n = sample(EventKind::Trigger);
    assert!(build_alert(&plan(), &n, &clock())[0]["annotations"]["summary_short"].is_null());
    n.probe = format!("payments-{}-join-flow", "video-conferencing-".repeat(5));
    n.region = "europe-west3-frankfurt-availability-zone-c".into();
    n.summary = format!(
        "{} failing in {}: step \"signalling\" no_match after 5.0 s: no frame matched",
        n.probe, n.region
    );
    let body = build_alert(&plan(), &n, &clock());
    let short = body[0]["annotations"]["summary_short"]
        .as_str()
        .unwrap_or_default();
    assert!(
        limits::cost(short, limits::plain) <= limits::OG_MESSAGE,
        "{short}"
    );
    assert!(
        short.ends_with(": step \"signalling\" no_match after 5.0 s: no frame matched"),
        "{short}"
    );
    assert!(short.starts_with("payments-video-"), "{short}");
    assert_eq!(body[0]["annotations"]["summary"], n.summary);
}

#[test]
fn resolved_payload_ends_now() {
    let mut n = sample(EventKind::Resolve);
    n.severity = Severity::Warning;
    let req = build_alert(&plan(), &n, &clock());
    assert_eq!(req[0]["endsAt"], "2025-03-01T12:05:00Z");
    assert_eq!(req[0]["labels"]["alertname"], "JoinFlowDegraded");
}

/// The host's clock stepped after the prober started (NTP after boot, a VM resumed): the
/// prober's own clock reads on unstepped, but Alertmanager judges `startsAt`/`endsAt` by
/// its clock, so they go out on the system clock as it reads at the post. Before, a clock
/// stepped 2 h forward made the trigger's `endsAt` (1 h ahead on the prober's clock) an hour
/// in Alertmanager's past: posted already resolved.
#[test]
fn a_stepped_system_clock_moves_the_posted_times() {
    let clock = clock();
    clock.step_system(chrono::Duration::hours(2));
    let n = sample(EventKind::Trigger);
    let req = build_alert(&plan(), &n, &clock);
    assert_eq!(req[0]["startsAt"], "2025-03-01T14:00:00Z");
    assert_eq!(req[0]["endsAt"], "2025-03-01T15:05:00Z");
    // Stepped back: a resolve's `endsAt` is not in Alertmanager's future (which would keep
    // the alert firing until the clocks met).
    clock.step_system(chrono::Duration::hours(-3));
    let r = sample(EventKind::Resolve);
    let req = build_alert(&plan(), &r, &clock);
    assert_eq!(req[0]["endsAt"], "2025-03-01T11:05:00Z");
    assert_eq!(req[0]["startsAt"], "2025-03-01T11:00:00Z");
}

#[test]
fn a_changed_step_keeps_the_labels() {
    let a = sample(EventKind::Trigger);
    let mut b = a.clone();
    b.failed_step = Some("login".into());
    b.reason = Some(crate::report::FailureReason::HttpStatus);
    let (ra, rb) = (
        build_alert(&plan(), &a, &clock()),
        build_alert(&plan(), &b, &clock()),
    );
    assert_eq!(ra[0]["labels"], rb[0]["labels"]);
    assert_eq!(rb[0]["annotations"]["step"], "login");
}

#[test]
fn watchdog_payload() {
    let started = "2025-03-01T11:00:00Z".parse().unwrap();
    let at = "2025-03-01T12:00:00Z".parse().unwrap();
    let req = build_watchdog(&plan(), "eu-west-1", started, at);
    assert_eq!(
        req[0]["labels"],
        json!({"alertname": "JoinCanaryWatchdog", "region": "eu-west-1", "severity": "none", "source": "joincanary"})
    );
    // Stable across posts (Alertmanager sets a missing startsAt to endsAt: in the future).
    assert_eq!(req[0]["startsAt"], "2025-03-01T11:00:00Z");
    // 1.5 resend intervals (60 s here) after the post.
    assert_eq!(req[0]["endsAt"], "2025-03-01T12:01:30Z");
    let default = Alertmanager {
        resend_interval: DEFAULT_RESEND_INTERVAL,
        ..plan()
    };
    let req = build_watchdog(&default, "eu-west-1", started, at);
    assert_eq!(req[0]["endsAt"], "2025-03-01T12:00:45Z");
}

/// Alertmanager as `test-page` sees it, in memory: each answer canned, each POST recorded
/// with the tokio time it was made at.
struct FakeAm {
    status: Result<serde_json::Value, String>,
    groups: serde_json::Value,
    alerts: serde_json::Value,
    posts: std::sync::Mutex<Vec<(tokio::time::Instant, serde_json::Value)>>,
}

impl FakeAm {
    fn new(config: &str) -> FakeAm {
        FakeAm {
            status: Ok(json!({"config": {"original": config}})),
            groups: json!([]),
            alerts: json!([{"status": {"state": "active", "silencedBy": [], "inhibitedBy": []},
                            "receivers": [{"name": "page"}]}]),
            posts: Default::default(),
        }
    }

    /// (seconds after `t0`, alert) of every POST.
    fn posts(&self, t0: tokio::time::Instant) -> Vec<(f64, serde_json::Value)> {
        let posts = self.posts.lock().unwrap();
        posts
            .iter()
            .map(|(t, b)| ((*t - t0).as_secs_f64(), b[0].clone()))
            .collect()
    }
}

impl AmApi for FakeAm {
    async fn get_json(&self, path: &str) -> Result<serde_json::Value, String> {
        if path == "/api/v2/status" {
            return self.status.clone();
        }
        if path == "/api/v2/alerts/groups" {
            return Ok(self.groups.clone());
        }
        assert!(path.starts_with("/api/v2/alerts?filter="), "{path}");
        assert!(path.contains("filter=test%3D%22true%22"), "{path}");
        Ok(self.alerts.clone())
    }

    async fn post(&self, body: &serde_json::Value, _resolve: bool) -> Result<(), DeliveryError> {
        let mut posts = self.posts.lock().unwrap();
        posts.push((tokio::time::Instant::now(), body.clone()));
        Ok(())
    }
}

const ROUTES: &str = "route:\n  receiver: warning\n  group_by: [probe]\n  group_wait: 30s\n  group_interval: 2m\n  routes:\n    - receiver: page\n      matchers: ['severity=\"critical\"']\n      group_wait: 10s\n";

fn test_alert(clock: &crate::clock::Clock) -> Notification {
    let mut n = sample(EventKind::Trigger);
    n.probe = "test-page".into();
    n.dedup_key = "joincanary/test-page/eu-west-1/0123456789abcdef".into();
    n.test = true;
    n.at = clock.now();
    n
}

/// The trigger stays firing past the route's group_wait (10 s + the margin), then the
/// resolve goes out; paused clock, so the 13 s are exact.
#[tokio::test(start_paused = true)]
async fn test_page_holds_the_alert_past_group_wait() {
    let clock = crate::clock::Clock::starting_at("2025-03-01T12:00:00Z".parse().unwrap());
    let am = FakeAm::new(ROUTES);
    let t0 = tokio::time::Instant::now();
    let notes = test_page(&am, &plan(), test_alert(&clock), None, &clock, &|_| {})
        .await
        .unwrap();
    let posts = am.posts(t0);
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].0, 0.0);
    assert_eq!(posts[1].0, 13.0);
    assert_eq!(posts[0].1["labels"]["test"], "true");
    assert_eq!(posts[0].1["labels"]["probe"], "test-page-01234567");
    // Firing while Alertmanager waits; the resolve ends it when it is sent.
    assert_eq!(posts[0].1["endsAt"], "2025-03-01T13:00:00Z");
    assert_eq!(posts[1].1["endsAt"], "2025-03-01T12:00:13Z");
    assert_eq!(posts[1].1["labels"], posts[0].1["labels"]);
    assert_eq!(
        notes,
        [
            "Alertmanager routes it to `page` (group_wait 10s); will keep it firing 13s",
            "Alertmanager accepted the test alert (POST /api/v2/alerts answered 2xx)",
            "Alertmanager lists it as active, for receiver(s) page",
            "kept it firing 13s for Alertmanager to notify; resolving",
        ]
    );
}

/// An existing group (an earlier test page) takes the alert at its next flush: wait its
/// group_interval. `--wait` wins over the route; an unreadable route waits the default.
#[tokio::test(start_paused = true)]
async fn test_page_wait_follows_the_group_the_flag_or_the_default() {
    let clock = crate::clock::Clock::system();
    let mut am = FakeAm::new(ROUTES);
    am.groups = json!([{"labels": {"probe": "test-page-01234567"}, "receiver": {"name": "page"},
                        "alerts": [{"labels": {}}]}]);
    let t0 = tokio::time::Instant::now();
    let notes = test_page(&am, &plan(), test_alert(&clock), None, &clock, &|_| {})
        .await
        .unwrap();
    assert_eq!(am.posts(t0)[1].0, 123.0);
    assert!(
        notes[0].contains("group_interval, its group exists 2m"),
        "{notes:?}"
    );

    let am = FakeAm::new(ROUTES);
    let t0 = tokio::time::Instant::now();
    test_page(
        &am,
        &plan(),
        test_alert(&clock),
        Some(Duration::from_secs(7)),
        &clock,
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(am.posts(t0)[1].0, 7.0);

    let mut am = FakeAm::new(ROUTES);
    am.status = Err("HTTP 401 Unauthorized".into());
    let t0 = tokio::time::Instant::now();
    let notes = test_page(&am, &plan(), test_alert(&clock), None, &clock, &|_| {})
        .await
        .unwrap();
    assert_eq!(am.posts(t0)[1].0, DEFAULT_TEST_WAIT.as_secs_f64());
    assert!(notes[0].contains("HTTP 401"), "{notes:?}");
}

/// A silenced (or inhibited) test alert would never notify: resolved at once, and a failure.
#[tokio::test(start_paused = true)]
async fn test_page_fails_when_alertmanager_suppresses_it() {
    let clock = crate::clock::Clock::system();
    let mut am = FakeAm::new(ROUTES);
    am.alerts = json!([{"status": {"state": "suppressed", "silencedBy": ["s-1"], "inhibitedBy": []},
                        "receivers": [{"name": "page"}]}]);
    let t0 = tokio::time::Instant::now();
    let err = test_page(&am, &plan(), test_alert(&clock), None, &clock, &|_| {})
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Alertmanager will not notify: the test alert is suppressed (silenced by [s-1], inhibited by [])"
    );
    let posts = am.posts(t0);
    assert_eq!((posts.len(), posts[1].0), (2, 0.0));
    am.alerts = json!([]);
    assert!(
        test_page(&am, &plan(), test_alert(&clock), None, &clock, &|_| {})
            .await
            .is_err()
    );
}

/// Dates and durations from outside (a damaged state log, an absurd config) never panic:
/// the sum saturates.
#[test]
fn end_times_saturate_instead_of_panicking() {
    let huge = Duration::from_secs(u64::MAX);
    let mut n = sample(EventKind::Trigger);
    let p = Alertmanager {
        hold: huge,
        resend_interval: huge,
        ..plan()
    };
    let max = crate::alert::rfc3339(DateTime::<Utc>::MAX_UTC);
    assert_eq!(build_alert(&p, &n, &clock())[0]["endsAt"], json!(max));
    n.at = DateTime::<Utc>::MAX_UTC;
    assert_eq!(build_alert(&plan(), &n, &clock())[0]["endsAt"], json!(max));
    let req = build_watchdog(&p, "r", n.at, n.at);
    assert_eq!(req[0]["endsAt"], json!(max));
    assert_eq!(watchdog_ttl(huge), Duration::MAX);
}
