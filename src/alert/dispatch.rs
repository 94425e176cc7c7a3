//! Delivery: one queue and task per pager (one pager down never delays another), retries with
//! capped backoff, an on-disk outbox so an unsent page survives a restart, and Alertmanager
//! re-posts while an alert fires.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tracing::Instrument as _;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::notify::{self, DeliveryError, Notifier, SendFuture};
use super::{EventKind, Link, Notification, PagerKind, PagerPlan, RetryPolicy, Severity};

/// The whole of shutdown's last delivery attempt.
pub const FLUSH_BUDGET: Duration = Duration::from_secs(5);
const OUTBOX_FILE: &str = "outbox.json";

/// Hands notifications to pagers. Cheap to call from the alert loop: `send` only queues.
pub struct Dispatcher {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    forwarder: JoinHandle<()>,
}

struct Shared {
    outbox: Mutex<Outbox>,
    path: PathBuf,
    /// Per pager: wakes its task when work is queued.
    wakers: HashMap<String, Arc<Notify>>,
    /// Names of Alertmanager pagers (their firing alerts are tracked for re-posting).
    alertmanagers: Vec<String>,
    accepting: AtomicBool,
    metrics: crate::metrics::Metrics,
    /// Pager names, for the per-sink outbox gauges.
    sinks: Vec<String>,
    /// The scheduler's liveness: the Alertmanager watchdog is posted only while it is healthy.
    liveness: std::sync::OnceLock<crate::heartbeat::Liveness>,
    /// Pagers configured now that were not at the last start (see `Outbox::known_sinks`).
    added: Vec<String>,
}

/// What `outbox.json` holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Outbox {
    version: u32,
    next_id: u64,
    pending: Vec<Pending>,
    /// Alertmanager alerts still firing: re-posted every `resend_interval`, and the source of the
    /// labels a resolve must repeat.
    #[serde(default)]
    firing: Vec<Firing>,
    /// The pagers of the last start: one not among them is new and is told of the incidents
    /// already open ([`Dispatcher::added_pagers`]). `None` in an outbox written before this was
    /// kept (nothing is announced then: every pager may already know).
    #[serde(default)]
    known_sinks: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    id: u64,
    sink: String,
    attempts: u32,
    enqueued_at: DateTime<Utc>,
    notification: Notification,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Firing {
    sink: String,
    notification: Notification,
}

impl Dispatcher {
    /// Loads `{state_dir}/outbox.json` (what an earlier run could not deliver) and starts one
    /// task per pager. `shutdown` turning `true` makes the tasks flush and stop, as
    /// [`Dispatcher::shutdown`] does. Must be called inside a tokio runtime.
    pub fn start(
        pagers: Vec<PagerPlan>,
        state_dir: &Path,
        metrics: crate::metrics::Metrics,
        shutdown: watch::Receiver<bool>,
    ) -> Dispatcher {
        let path = state_dir.join(OUTBOX_FILE);
        let mut outbox = load_outbox(&path);
        let before = (outbox.pending.len(), outbox.firing.len());
        outbox.pending.retain(|p| {
            let known = pagers.iter().any(|pg| pg.name == p.sink);
            if !known {
                tracing::warn!(
                    sink = %p.sink,
                    event = p.notification.kind.as_str(),
                    probe = %p.notification.probe,
                    region = %p.notification.region,
                    "dropping a queued notification: no pager of that name is configured any more"
                );
            }
            known
        });
        outbox
            .firing
            .retain(|f| pagers.iter().any(|pg| pg.name == f.sink));
        let names: Vec<String> = pagers.iter().map(|p| p.name.clone()).collect();
        let added: Vec<String> = match &outbox.known_sinks {
            Some(known) => names
                .iter()
                .filter(|n| !known.contains(n))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        let changed = before != (outbox.pending.len(), outbox.firing.len())
            || outbox.known_sinks.as_ref() != Some(&names);
        outbox.known_sinks = Some(names);
        if !outbox.pending.is_empty() {
            tracing::info!(
                queued = outbox.pending.len(),
                "re-sending notifications queued before the restart"
            );
        }
        let shared = Arc::new(Shared {
            outbox: Mutex::new(outbox),
            path,
            wakers: pagers
                .iter()
                .map(|p| (p.name.clone(), Arc::new(Notify::new())))
                .collect(),
            alertmanagers: pagers
                .iter()
                .filter(|p| matches!(p.kind, PagerKind::Alertmanager(_)))
                .map(|p| p.name.clone())
                .collect(),
            accepting: AtomicBool::new(true),
            sinks: pagers.iter().map(|p| p.name.clone()).collect(),
            metrics,
            liveness: std::sync::OnceLock::new(),
            added,
        });
        shared.metrics.register_pagers(&shared.sinks);
        shared.metrics.register_resends(&shared.alertmanagers);
        if changed {
            shared.persist(&shared.lock());
        } else {
            shared.publish(&shared.lock());
        }
        let (stop, stop_rx) = watch::channel(false);
        let client = notify::http_client();
        let tasks = pagers
            .into_iter()
            .map(|plan| {
                let notifier = match &client {
                    Ok(c) => notify::notifier_for(&plan, c),
                    Err(e) => Err(e.clone()),
                }
                .unwrap_or_else(|e| {
                    tracing::error!(sink = %plan.name, error = %e, "pager cannot send");
                    Box::new(Broken(e.to_string()))
                });
                let watchdog = match (&plan.kind, &client) {
                    (PagerKind::Alertmanager(a), Ok(c)) => Some(Watchdog {
                        plan: a.clone(),
                        client: c.clone(),
                        timeout: plan.timeout,
                        redactor: plan.redactor.clone(),
                    }),
                    _ => None,
                };
                tokio::spawn(
                    run_pager(shared.clone(), plan, notifier, watchdog, stop_rx.clone())
                        .in_current_span(),
                )
            })
            .collect();
        let forwarder = tokio::spawn(forward_shutdown(shutdown, stop.clone()).in_current_span());
        Dispatcher {
            shared,
            stop,
            tasks,
            forwarder,
        }
    }

    /// Queues `n` for the named pagers (`None`: every pager) and returns at once. Unknown names
    /// are logged and skipped.
    pub fn send(&self, n: Notification, pagers: Option<&[String]>) {
        let names: Vec<String> = match pagers {
            Some(list) => list
                .iter()
                .filter(|name| {
                    let known = self.shared.wakers.contains_key(name.as_str());
                    if !known {
                        tracing::warn!(sink = %name, probe = %n.probe, "no pager of that name");
                    }
                    known
                })
                .cloned()
                .collect(),
            None => {
                let mut all: Vec<String> = self.shared.wakers.keys().cloned().collect();
                all.sort();
                all
            }
        };
        if names.is_empty() {
            return;
        }
        if !self.shared.accepting.load(Ordering::SeqCst) {
            // Still written to the outbox: the next start delivers it.
            tracing::warn!(
                probe = %n.probe,
                event = n.kind.as_str(),
                "shutting down: notification kept in the outbox for the next start"
            );
        }
        {
            let mut outbox = self.shared.lock();
            for sink in &names {
                let notification = if self.shared.alertmanagers.contains(sink) {
                    track_firing(&mut outbox, sink, &n)
                } else {
                    n.clone()
                };
                let id = outbox.next_id;
                outbox.next_id += 1;
                outbox.pending.push(Pending {
                    id,
                    sink: sink.clone(),
                    attempts: 0,
                    enqueued_at: Utc::now(),
                    notification,
                });
            }
            self.shared.persist(&outbox);
        }
        for sink in &names {
            if let Some(w) = self.shared.wakers.get(sink) {
                w.notify_one();
            }
        }
    }

    /// Posts the Alertmanager watchdog only while `liveness` says the scheduler is healthy
    /// (without it, whenever the pager task runs).
    pub fn watch_liveness(&self, liveness: crate::heartbeat::Liveness) {
        let _ = self.shared.liveness.set(liveness);
    }

    /// Pagers that were not configured at the last start (added by a reload or while the
    /// process was down): they have not heard of incidents already open, so the caller sends
    /// them the open triggers.
    pub fn added_pagers(&self) -> &[String] {
        &self.shared.added
    }

    /// How many notifications wait for delivery (all pagers).
    pub fn pending(&self) -> usize {
        self.shared.lock().pending.len()
    }

    /// Stops taking work, gives every pager one last attempt (at most [`FLUSH_BUDGET`] in all),
    /// and leaves the rest in the outbox for the next start.
    pub async fn shutdown(self) {
        self.shared.accepting.store(false, Ordering::SeqCst);
        let _ = self.stop.send(true);
        let mut tasks = self.tasks;
        let all = futures_util::future::join_all(tasks.iter_mut());
        if tokio::time::timeout(FLUSH_BUDGET + Duration::from_millis(500), all)
            .await
            .is_err()
        {
            tracing::warn!("pagers did not finish flushing in time");
        }
        for t in &tasks {
            t.abort();
        }
        self.forwarder.abort();
        let outbox = self.shared.lock();
        self.shared.persist(&outbox);
        if !outbox.pending.is_empty() {
            tracing::warn!(
                queued = outbox.pending.len(),
                "undelivered notifications kept in the outbox for the next start"
            );
        }
    }
}

/// For an Alertmanager pager: remember a trigger as firing; turn a resolve into the last
/// trigger with `endsAt` = now, since Alertmanager identifies an alert by its labels.
fn track_firing(outbox: &mut Outbox, sink: &str, n: &Notification) -> Notification {
    let pos = outbox
        .firing
        .iter()
        .position(|f| f.sink == sink && f.notification.dedup_key == n.dedup_key);
    match n.kind {
        EventKind::Trigger => {
            let f = Firing {
                sink: sink.to_string(),
                notification: n.clone(),
            };
            match pos {
                Some(i) => outbox.firing[i] = f,
                None => outbox.firing.push(f),
            }
            n.clone()
        }
        EventKind::Resolve => match pos {
            Some(i) => {
                let mut r = outbox.firing.remove(i).notification;
                r.kind = EventKind::Resolve;
                r.at = n.at;
                r.summary = n.summary.clone();
                r.reminder = false;
                r
            }
            None => n.clone(),
        },
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Outbox> {
        // A panic while holding the lock leaves valid data (every change is one push/remove).
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the outbox atomically. Called with the lock held so an older snapshot never
    /// overwrites a newer one; the file is small and pages are rare, so blocking briefly is fine.
    fn persist(&self, outbox: &Outbox) {
        self.publish(outbox);
        let written = serde_json::to_vec_pretty(outbox)
            .map_err(std::io::Error::other)
            .and_then(|json| super::engine::write_atomic(&self.path, &json));
        if let Err(e) = written {
            tracing::error!(
                path = %self.path.display(),
                error = %e,
                "cannot write the notification outbox; undelivered pages will not survive a restart"
            );
        }
    }

    /// Mirrors what waits, per pager, into `joincanary_outbox_pending` and `_oldest_seconds`.
    fn publish(&self, outbox: &Outbox) {
        for sink in &self.sinks {
            let queued = outbox.pending.iter().filter(|p| &p.sink == sink);
            let (count, oldest) =
                queued.fold((0, None), |(c, o): (usize, Option<DateTime<Utc>>), p| {
                    (
                        c + 1,
                        Some(o.map_or(p.enqueued_at, |o| o.min(p.enqueued_at))),
                    )
                });
            self.metrics.set_outbox(sink, count, oldest);
        }
    }

    fn head(&self, sink: &str) -> Option<Pending> {
        self.lock().pending.iter().find(|p| p.sink == sink).cloned()
    }

    fn remove(&self, id: u64) {
        let mut outbox = self.lock();
        outbox.pending.retain(|p| p.id != id);
        self.persist(&outbox);
    }

    /// Counts a failed attempt; returns the new count.
    fn failed_attempt(&self, id: u64) -> u32 {
        let mut outbox = self.lock();
        let n = outbox.pending.iter_mut().find(|p| p.id == id).map(|p| {
            p.attempts += 1;
            p.attempts
        });
        self.persist(&outbox);
        n.unwrap_or(u32::MAX)
    }

    fn firing(&self, sink: &str) -> Vec<Notification> {
        self.lock()
            .firing
            .iter()
            .filter(|f| f.sink == sink)
            .map(|f| f.notification.clone())
            .collect()
    }

    fn count(&self, sink: &str, n: &Notification, result: &str) {
        self.metrics
            .count_notification(sink, n.kind.as_str(), result);
    }
}

fn load_outbox(path: &Path) -> Outbox {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Outbox::default(),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read the notification outbox");
            return Outbox::default();
        }
    };
    match serde_json::from_slice::<Outbox>(&text) {
        Ok(mut o) => {
            let max = o.pending.iter().map(|p| p.id + 1).max().unwrap_or(0);
            o.next_id = o.next_id.max(max);
            o
        }
        Err(e) => {
            // Kept aside for a human rather than overwritten.
            let aside = path.with_extension("json.corrupt");
            let _ = std::fs::rename(path, &aside);
            tracing::error!(
                path = %path.display(),
                error = %e,
                "the notification outbox is unreadable; moved aside"
            );
            Outbox::default()
        }
    }
}

async fn forward_shutdown(mut external: watch::Receiver<bool>, stop: watch::Sender<bool>) {
    loop {
        if *external.borrow_and_update() {
            let _ = stop.send(true);
            return;
        }
        if external.changed().await.is_err() {
            // The owner went away without asking for shutdown: only `shutdown()` stops us now.
            return;
        }
    }
}

/// One pager's loop: deliver the head of its queue (so a resolve never overtakes its trigger),
/// back off on retryable failures, re-post firing alerts to Alertmanager when idle.
async fn run_pager(
    shared: Arc<Shared>,
    plan: PagerPlan,
    notifier: Box<dyn Notifier>,
    watchdog: Option<Watchdog>,
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
                    next_resend = Instant::now() + resend.unwrap_or_default();
                }
            }
            continue;
        };
        let n = &item.notification;
        let result = tokio::select! {
            r = notifier.send(n) => r,
            // Abandoned mid-send: the flush below tries again within its budget.
            _ = stop.changed() => break,
        };
        match result {
            Ok(()) => delivered(&shared, &plan.name, &item),
            Err(DeliveryError::Permanent(msg)) => abandon(
                &shared,
                &plan.name,
                &item,
                item.attempts + 1,
                &msg,
                "the pager refused the notification; not retrying (check the pager's settings)",
            ),
            Err(DeliveryError::Retryable(msg)) => {
                let attempts = shared.failed_attempt(item.id);
                if gives_up(&plan.retry, attempts, item.enqueued_at) {
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
                let delay = plan
                    .retry
                    .delay(attempts, rand::rng().random_range(-0.2..=0.2));
                tracing::warn!(
                    sink = %plan.name,
                    event = n.kind.as_str(),
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
    shared.remove(item.id);
    shared.count(sink, n, "delivered");
    tracing::info!(
        sink = %sink,
        event = n.kind.as_str(),
        probe = %n.probe,
        region = %n.region,
        attempts = item.attempts + 1,
        "notification delivered"
    );
}

fn gives_up(retry: &RetryPolicy, attempts: u32, enqueued_at: DateTime<Utc>) -> bool {
    let age = (Utc::now() - enqueued_at).to_std().unwrap_or_default();
    retry.max_attempts.is_some_and(|max| attempts >= max) || age >= retry.max_age
}

/// Shutdown's one attempt: in queue order, stopping at the first failure (order matters) or when
/// the budget is spent.
/// Drops a notification that will not be delivered: out of the outbox, counted, logged.
fn abandon(shared: &Shared, sink: &str, item: &Pending, attempts: u32, error: &str, why: &str) {
    let n = &item.notification;
    shared.remove(item.id);
    shared.count(sink, n, "failed");
    tracing::error!(
        sink,
        event = n.kind.as_str(),
        probe = %n.probe,
        region = %n.region,
        attempts,
        error,
        "{why}"
    );
}

async fn flush(shared: &Shared, plan: &PagerPlan, notifier: &dyn Notifier) {
    let deadline = Instant::now() + FLUSH_BUDGET;
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
                item.attempts + 1,
                &msg,
                "the pager refused the notification",
            ),
            Ok(Err(DeliveryError::Retryable(msg))) => {
                // A failed attempt the next start retries.
                shared.count(&plan.name, n, "retry");
                tracing::warn!(sink = %plan.name, event = n.kind.as_str(), probe = %n.probe,
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
        n.at = Utc::now();
        if let Err(e) = notifier.send(&n).await {
            shared.metrics.count_resend(&plan.name, "failed");
            tracing::warn!(sink = %plan.name, event = "resend", probe = %n.probe,
                region = %n.region, error = %e, "re-posting a firing alert failed");
        } else {
            shared.metrics.count_resend(&plan.name, "delivered");
            tracing::debug!(sink = %plan.name, event = "resend", probe = %n.probe,
                region = %n.region, "re-posted a firing alert");
        }
    }
}

/// The always-firing `JoinCanaryWatchdog` of an Alertmanager pager.
struct Watchdog {
    plan: super::alertmanager::Alertmanager,
    client: reqwest::Client,
    timeout: Duration,
    redactor: crate::flow::Redactor,
}

impl Watchdog {
    /// Posts the watchdog unless the scheduler is stuck (then it lapses, and the dead man's
    /// switch behind Alertmanager notices). Keep-alive: not counted in `notifications_total`.
    async fn post(&self, shared: &Shared, sink: &str) {
        if let Some(why) = shared.liveness.get().and_then(|l| l.stalled()) {
            tracing::error!(sink, why = %why, "the scheduler is stuck: watchdog alert withheld");
            return;
        }
        let req =
            super::alertmanager::build_watchdog(&self.plan, &shared.metrics.region, Utc::now());
        match notify::post(&self.client, &req, self.timeout).await {
            Ok(()) => tracing::debug!(sink, "watchdog alert posted"),
            Err(e) => {
                let e = e.scrub(&self.redactor);
                tracing::warn!(sink, error = %e, "posting the watchdog alert failed");
            }
        }
    }
}

/// A pager whose notifier could not be built: every attempt fails the same way.
struct Broken(String);

impl Notifier for Broken {
    fn send<'a>(&'a self, _n: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move { Err(DeliveryError::Permanent(self.0.clone())) })
    }
}

/// `joincanary test-page`: a clearly marked trigger then resolve through each pager, directly
/// (no queue, no retries), so the operator sees each pager's result at once. It carries the
/// same `links` as a real page ([`super::links`]), so they can be checked too.
pub async fn test_page(
    pagers: &[PagerPlan],
    region: &str,
    links: &[Link],
) -> Vec<(String, Result<(), DeliveryError>)> {
    let client = notify::http_client();
    let id = uuid::Uuid::new_v4();
    let runs = pagers.iter().map(|plan| {
        let client = client.clone();
        async move {
            let result = async {
                let notifier = notify::notifier_for(plan, &client?)?;
                let now = Utc::now();
                let mut n = Notification {
                    kind: EventKind::Trigger,
                    severity: Severity::Critical,
                    dedup_key: format!("joincanary/test-page/{region}/{id}"),
                    probe: "test-page".into(),
                    region: region.to_string(),
                    summary: format!(
                        "[TEST] joincanary test page from {region}: not a real incident"
                    ),
                    failed_step: None,
                    reason: None,
                    details: serde_json::json!({
                        "test": true,
                        "note": "sent by `joincanary test-page`; resolves itself",
                    }),
                    started_at: now,
                    at: now,
                    reminder: false,
                    test: true,
                    links: links.to_vec(),
                };
                notifier.send(&n).await?;
                if matches!(plan.kind, PagerKind::Opsgenie(_)) {
                    // Opsgenie creates alerts asynchronously; a close sent at once can miss it.
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                n.kind = EventKind::Resolve;
                n.at = Utc::now();
                n.summary = format!("[TEST] joincanary test page from {region}: resolved");
                notifier.send(&n).await
            }
            .await;
            match &result {
                Ok(()) => tracing::info!(sink = %plan.name, region, "test page delivered"),
                Err(e) => {
                    tracing::error!(sink = %plan.name, region, error = %e, "test page failed")
                }
            }
            (plan.name.clone(), result)
        }
    });
    futures_util::future::join_all(runs).await
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn gives_up_by_age_or_attempts() {
        let mut r = RetryPolicy::default();
        assert!(!gives_up(&r, 100, Utc::now()));
        assert!(gives_up(&r, 1, Utc::now() - chrono::Duration::hours(2)));
        r.max_attempts = Some(3);
        assert!(gives_up(&r, 3, Utc::now()));
    }

    #[test]
    fn resolve_repeats_the_firing_labels() {
        let mut outbox = Outbox::default();
        let t = crate::alert::sample(EventKind::Trigger);
        track_firing(&mut outbox, "am", &t);
        assert_eq!(outbox.firing.len(), 1);
        let mut r = crate::alert::sample(EventKind::Resolve);
        r.failed_step = None;
        r.reason = None;
        let sent = track_firing(&mut outbox, "am", &r);
        assert_eq!(sent.kind, EventKind::Resolve);
        assert_eq!(sent.failed_step.as_deref(), Some("signalling"));
        assert!(outbox.firing.is_empty());
    }
}
