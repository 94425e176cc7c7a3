//! Each pager's queue: one task per pager delivers the head of its queue, retries with capped
//! backoff (longer when the pager sends `Retry-After`), gives up by age or attempts, re-posts
//! firing alerts to Alertmanager when idle, and makes one bounded last attempt at shutdown.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::outbox::Pending;
use super::watchdog::Watchdog;
use super::{FLUSH_BUDGET, Shared};
use crate::alert::notify::{DeliveryError, Notifier, SendFuture};
use crate::alert::{Notification, PagerKind, PagerPlan, RetryPolicy};

/// One pager's loop: deliver the head of its queue (so a resolve never overtakes its trigger),
/// back off on retryable failures, re-post firing alerts to Alertmanager when idle.
pub(super) async fn run_pager(
    shared: Arc<Shared>,
    plan: PagerPlan,
    notifier: Box<dyn Notifier>,
    watchdog: Option<Arc<Watchdog>>,
    mut stop: watch::Receiver<bool>,
) {
    let waker = shared
        .wakers
        .get(&plan.name)
        .cloned()
        .unwrap_or_else(|| Arc::new(Notify::new()));
    let resend = match &plan.kind {
        PagerKind::Alertmanager(a) => Some(a.resend_interval),
        _ => None,
    };
    // The first round goes out at once: the watchdog starts firing, and after a restart the
    // alerts still firing are posted again right away.
    let mut next_resend = Instant::now();
    let resend_every = resend.unwrap_or_default();
    // Whether the pager refused or failed the last attempt: a trigger that never got its own
    // attempt, queued behind another that failed, waited for a failing pager too.
    let mut last_attempt_failed = false;
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        let Some(item) = shared.head(&plan.name) else {
            tokio::select! {
                _ = waker.notified() => {}
                r = stop.changed() => if r.is_err() { break },
                _ = tokio::time::sleep_until(next_resend), if resend.is_some() => {
                    if let Some(w) = &watchdog {
                        w.post(&shared, &plan.name).await;
                    }
                    resend_firing(&shared, &plan, notifier.as_ref()).await;
                    notifier.catch_up().await;
                    next_resend = later(Instant::now(), resend_every);
                }
            }
            continue;
        };
        let pager_failing = item.attempts > 0 || last_attempt_failed;
        if pager_failing && shared.ended_before_delivery(&plan.name, &item) {
            // The pager could not take the page for the whole incident (a healthy pager takes a
            // trigger in well under a second; a resolve comes at least a confirmation later).
            // Paging now would wake someone for an incident that is over, so the trigger is
            // dropped as Alertmanager drops a firing notification whose alert resolved before
            // it went out: counted `failed` (the delivery alert fires) and logged, and its
            // resolve, next in the queue, says that nobody was paged.
            abandon(
                &shared,
                &plan.name,
                &item,
                item.attempts,
                "the incident ended before the pager took its page",
                "not paging late for an incident that is over; its resolve follows and says so",
            );
            continue;
        }
        let n = &item.notification;
        let result = tokio::select! {
            r = notifier.send(n) => r,
            // Abandoned mid-send: the flush below tries again within its budget.
            _ = stop.changed() => break,
        };
        last_attempt_failed = result.is_err();
        match result {
            Ok(()) => delivered(&shared, &plan.name, &item),
            Err(DeliveryError::Permanent(msg)) => abandon(
                &shared,
                &plan.name,
                &item,
                item.attempts.saturating_add(1),
                &msg,
                "the pager refused the notification; not retrying (check the pager's settings)",
            ),
            Err(e @ (DeliveryError::Retryable(_) | DeliveryError::RetryAfter(..))) => {
                let msg = e.to_string();
                let attempts = shared.failed_attempt(item.id);
                if gives_up(&plan.retry, attempts, item.enqueued_at, shared.clock.now()) {
                    abandon(
                        &shared,
                        &plan.name,
                        &item,
                        attempts,
                        &msg,
                        "giving up on a notification",
                    );
                    continue;
                }
                shared.count(&plan.name, n, "retry");
                let delay = retry_delay(
                    &plan.retry,
                    attempts,
                    rand::rng().random_range(-0.2..=0.2),
                    e.retry_after(),
                );
                tracing::warn!(
                    sink = %plan.name,
                    event = %n.kind.as_str(),
                    probe = %n.probe,
                    region = %n.region,
                    attempts,
                    retry_in_ms = delay.as_millis() as u64,
                    error = %msg,
                    "delivery failed; will retry"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => break,
                }
            }
        }
    }
    flush(&shared, &plan, notifier.as_ref()).await;
}

fn delivered(shared: &Shared, sink: &str, item: &Pending) {
    let n = &item.notification;
    shared.remove(item);
    shared.count(sink, n, "delivered");
    tracing::info!(
        sink = %sink,
        event = %n.kind.as_str(),
        probe = %n.probe,
        region = %n.region,
        attempts = item.attempts.saturating_add(1),
        "notification delivered"
    );
}

/// The wait before the next attempt: the backoff, or longer when the pager asked for a pause
/// with `Retry-After` (429/503) — but never past the backoff cap, so one header cannot hold a
/// page back for hours.
fn retry_delay(
    retry: &RetryPolicy,
    attempts: u32,
    jitter: f64,
    asked: Option<Duration>,
) -> Duration {
    let backoff = retry.delay(attempts, jitter);
    match asked {
        Some(asked) => backoff.max(asked.min(retry.cap)),
        None => backoff,
    }
}

/// `at + d` on tokio's clock; a duration too long to add (no configured one is) means "a
/// year from now" rather than a panic.
pub(super) fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .unwrap_or_else(|| at + Duration::from_secs(365 * 24 * 3600))
}

fn gives_up(
    retry: &RetryPolicy,
    attempts: u32,
    enqueued_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> bool {
    // `enqueued_at` came from the state log: a date in the future counts as new.
    let age = now
        .signed_duration_since(enqueued_at)
        .to_std()
        .unwrap_or_default();
    retry.max_attempts.is_some_and(|max| attempts >= max) || age >= retry.max_age
}

/// Drops a notification that will not be delivered: out of the outbox, counted, logged.
fn abandon(shared: &Shared, sink: &str, item: &Pending, attempts: u32, error: &str, why: &str) {
    let n = &item.notification;
    shared.remove(item);
    shared.count(sink, n, "failed");
    // `%`: logged as `sink=pd` like every other delivery line (a bare `sink` field would be
    // quoted, and a search for `sink=pd` would miss exactly the lines that say a page is lost).
    tracing::error!(
        sink = %sink,
        event = %n.kind.as_str(),
        probe = %n.probe,
        region = %n.region,
        attempts,
        error = %error,
        "{why}"
    );
}

/// Shutdown's one attempt: in queue order, stopping at the first failure (order matters) or when
/// the budget is spent.
pub(super) async fn flush(shared: &Shared, plan: &PagerPlan, notifier: &dyn Notifier) {
    let deadline = later(Instant::now(), FLUSH_BUDGET);
    while let Some(item) = shared.head(&plan.name) {
        let n = &item.notification;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, notifier.send(n)).await {
            Ok(Ok(())) => delivered(shared, &plan.name, &item),
            Ok(Err(DeliveryError::Permanent(msg))) => abandon(
                shared,
                &plan.name,
                &item,
                item.attempts.saturating_add(1),
                &msg,
                "the pager refused the notification",
            ),
            Ok(Err(e @ (DeliveryError::Retryable(_) | DeliveryError::RetryAfter(..)))) => {
                let msg = e.to_string();
                // A failed attempt the next start retries.
                shared.count(&plan.name, n, "retry");
                tracing::warn!(sink = %plan.name, event = %n.kind.as_str(), probe = %n.probe,
                    region = %n.region, error = %msg, "not delivered before shutdown; kept in the outbox");
                break;
            }
            Err(_) => break,
        }
    }
}

/// Alertmanager forgets an alert whose `endsAt` passes; re-posting keeps it firing. Counted in
/// `joincanary_alertmanager_resends_total`, not in `notifications_total`: these are keep-alives,
/// not pages. Logged at debug (one line per alert per interval would drown the log).
async fn resend_firing(shared: &Shared, plan: &PagerPlan, notifier: &dyn Notifier) {
    for mut n in shared.firing(&plan.name) {
        n.at = shared.clock.now();
        if let Err(e) = notifier.send(&n).await {
            shared.metrics.count_resend(&plan.name, "failed");
            tracing::warn!(sink = %plan.name, event = %"resend", probe = %n.probe,
                region = %n.region, error = %e, "re-posting a firing alert failed");
        } else {
            shared.metrics.count_resend(&plan.name, "delivered");
            tracing::debug!(sink = %plan.name, event = %"resend", probe = %n.probe,
                region = %n.region, "re-posted a firing alert");
        }
    }
}

/// A pager whose notifier could not be built: every attempt fails the same way.
pub(super) struct Broken(pub(super) String);

impl Notifier for Broken {
    fn send<'a>(&'a self, _n: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move { Err(DeliveryError::Permanent(self.0.clone())) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::notify;

    #[test]
    fn backoff_doubles_and_caps() {
        let r = RetryPolicy::default();
        assert_eq!(r.delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(r.delay(2, 0.0), Duration::from_secs(2));
        assert_eq!(r.delay(3, 0.0), Duration::from_secs(4));
        assert_eq!(r.delay(30, 0.0), Duration::from_secs(60));
        assert_eq!(r.delay(1, 0.2), Duration::from_millis(1200));
        assert_eq!(r.delay(40, 0.9), Duration::from_secs(72));
    }

    #[test]
    fn retry_after_lengthens_the_backoff_within_its_cap() {
        let r = RetryPolicy::default();
        let ten = Duration::from_secs(10);
        assert_eq!(retry_delay(&r, 1, 0.2, Some(ten)), ten);
        assert_eq!(retry_delay(&r, 1, 0.2, None), Duration::from_millis(1200));
        // A shorter ask never shortens the backoff.
        assert_eq!(
            retry_delay(&r, 5, 0.0, Some(Duration::from_secs(1))),
            Duration::from_secs(16)
        );
        // An ask past the cap waits the cap.
        assert_eq!(
            retry_delay(&r, 1, 0.0, Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        use std::time::UNIX_EPOCH;
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let parse = |v: &str| notify::parse_retry_after(v, now);
        assert_eq!(parse("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse(" 0 "), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(parse(&later), Some(Duration::from_secs(90)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse(&earlier), Some(Duration::ZERO));
        assert_eq!(parse("soon"), None);
        assert_eq!(parse("-5"), None);
        assert_eq!(parse(""), None);
        assert!(parse("99999999999999999999999").is_some());
    }

    #[test]
    fn gives_up_by_age_or_attempts() {
        let mut r = RetryPolicy::default();
        let now = DateTime::from_timestamp(1_764_460_000, 0).unwrap();
        assert!(!gives_up(&r, 100, now, now));
        assert!(gives_up(&r, 1, now - chrono::Duration::hours(2), now));
        // Dates from a damaged state log at either end of chrono's range never panic.
        assert!(!gives_up(&r, 1, DateTime::<Utc>::MAX_UTC, now));
        assert!(gives_up(&r, 1, DateTime::<Utc>::MIN_UTC, now));
        r.max_attempts = Some(3);
        assert!(gives_up(&r, 3, now, now));
    }
}
