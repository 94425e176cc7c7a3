//! `Retry-After` from a pager (issue 9): a 429 or 503 that asks for a pause gets it, within the
//! backoff cap. A loopback pager, the real dispatcher and webhook notifier, the paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use joincanary::alert::dispatch::Dispatcher;
use joincanary::alert::{EventKind, Notification, Severity};
use joincanary::report::FailureReason;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::support::{TempConfig, serve_router};

/// A pager that answers the first request with `status` and `Retry-After: retry_after()`, every
/// later one with 200, and records when (on the paused clock) each request arrived.
async fn throttling_pager(
    status: u16,
    retry_after: fn() -> String,
) -> (Arc<Mutex<Vec<Instant>>>, String) {
    let arrived: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = arrived.clone();
    let app = axum::Router::new().fallback(move || {
        let seen = seen.clone();
        async move {
            let mut seen = seen.lock().unwrap();
            seen.push(Instant::now());
            let mut headers = HeaderMap::new();
            if seen.len() == 1 {
                headers.insert("retry-after", retry_after().parse().unwrap());
                (StatusCode::from_u16(status).unwrap(), headers, "slow down")
            } else {
                (StatusCode::OK, headers, "ok")
            }
        }
    });
    (arrived, format!("http://{}", serve_router(app).await))
}

fn notification() -> Notification {
    let now = chrono::Utc::now();
    Notification {
        kind: EventKind::Trigger,
        severity: Severity::Critical,
        dedup_key: "joincanary/test/sim-join/critical".into(),
        probe: "sim-join".into(),
        region: "test".into(),
        summary: "sim-join failing in test: step \"signalling\" no_match after 5.0 s".into(),
        failed_step: Some("signalling".into()),
        reason: Some(FailureReason::NoMatch),
        details: json!({}),
        started_at: now,
        at: now,
        reminder: false,
        test: false,
        links: Vec::new(),
    }
}

/// The gap between the throttled attempt and the next one.
async fn gap_after(status: u16, retry_after: fn() -> String) -> Duration {
    let (arrived, url) = throttling_pager(status, retry_after).await;
    // A 50 ms backoff: without Retry-After the second attempt would come after about 50 ms.
    let cfg = TempConfig::new(
        &format!(
            "[[pager]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{url}/hook\"\nretry_base = \"50ms\"\n"
        ),
        &[(
            "p.toml",
            "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\n",
        )],
    );
    let plan = cfg.load(&[]).expect("config loads");
    let (_tx, rx) = watch::channel(false);
    let d = Dispatcher::start(
        plan.pagers.clone(),
        &cfg.dir.path().join("state"),
        joincanary::metrics::Metrics::new("test").unwrap(),
        joincanary::clock::Clock::system(),
        rx,
    );
    d.send(notification(), None);
    // Bounded, on the paused clock: 100 ms steps up to 200 s of virtual time.
    crate::support::holds_within(Duration::from_secs(200), Duration::from_millis(100), || {
        arrived.lock().unwrap().len() >= 2
    })
    .await;
    d.shutdown().await;
    let arrived = arrived.lock().unwrap().clone();
    assert!(arrived.len() >= 2, "never retried: {arrived:?}");
    arrived[1] - arrived[0]
}

#[tokio::test(start_paused = true)]
async fn retry_after_seconds_on_429_is_honoured() {
    let gap = gap_after(429, || "10".into()).await;
    assert!(gap >= Duration::from_secs(10), "retried after {gap:?}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_http_date_on_503_is_honoured() {
    // 11 s ahead: an HTTP-date has whole seconds, so at least 10 s remain when it is read.
    let gap = gap_after(503, || {
        httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(11))
    })
    .await;
    assert!(gap >= Duration::from_secs(10), "retried after {gap:?}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_backoff_cap_waits_the_cap() {
    let gap = gap_after(429, || "3600".into()).await;
    assert!(
        gap >= Duration::from_secs(60) && gap < Duration::from_secs(3600),
        "retried after {gap:?}"
    );
}
