//! Delivery: one queue and task per pager (one pager down never delays another), retries with
//! capped backoff, an on-disk outbox so an unsent page survives a restart, and Alertmanager
//! re-posts while an alert fires.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
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
use crate::clock::Clock;
use crate::store::{Loaded, Store};

/// The whole of shutdown's last delivery attempt.
pub const FLUSH_BUDGET: Duration = Duration::from_secs(5);
/// How long shutdown waits for the state log to reach the disk.
const STORE_FLUSH: Duration = Duration::from_secs(2);
/// Where an earlier version kept the outbox (migrated into the state log on first start).
pub const LEGACY_OUTBOX_FILE: &str = "outbox.json";

/// Hands notifications to pagers. Cheap to call from the alert loop: `send` only queues.
pub struct Dispatcher {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    stopping: tokio_util::sync::CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    forwarder: JoinHandle<()>,
    /// Opened by [`Dispatcher::start`] (in `engine.rs`, which owns the state files): closed at
    /// shutdown.
    pub(super) owns_store: bool,
}

struct Shared {
    outbox: Mutex<Outbox>,
    store: Store,
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
    /// Wall-clock time (tokio's, so tests run on the paused clock); its start is the
    /// watchdog's `startsAt`.
    clock: Clock,
}

/// The outbox: what waits for delivery, what fires at Alertmanager, and which triggers reached
/// their pager. Lives in memory (authoritative: a failing disk loses nothing while the process
/// runs, and a reload hands it to the next dispatcher); every change is one record in the
/// state log ([`crate::store`]), so its cost does not grow with the queue.
#[derive(Debug, Default)]
pub struct Outbox {
    next_id: u64,
    pending: Vec<Pending>,
    /// Alertmanager alerts still firing: re-posted every `resend_interval`, and the source of the
    /// labels a resolve must repeat.
    firing: Vec<Firing>,
    /// Per (sink, dedup key): the last trigger delivered (or given up on) whose resolve has not
    /// been. What reconciliation compares open alerts with.
    settled: BTreeMap<(String, String), Notification>,
}

/// The `outbox.json` of earlier versions, read once to migrate it.
#[derive(Debug, Default, Deserialize)]
struct LegacyOutbox {
    #[serde(default)]
    pending: Vec<Pending>,
    #[serde(default)]
    firing: Vec<Firing>,
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

const PENDING: &str = "p/";
const FIRING: &str = "f/";
const SETTLED: &str = "s/";

fn pending_key(id: u64) -> String {
    // Zero-padded so the log's key order is the queue order.
    format!("{PENDING}{id:020}")
}

fn pair_key(prefix: &str, sink: &str, dedup_key: &str) -> String {
    format!(
        "{prefix}{}",
        serde_json::to_string(&(sink, dedup_key)).unwrap_or_default()
    )
}

impl Outbox {
    /// The outbox as the state log holds it.
    pub fn from_loaded(loaded: &Loaded) -> Outbox {
        let pending: Vec<Pending> = loaded
            .decode::<Pending>(PENDING)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        let firing = loaded
            .decode::<Firing>(FIRING)
            .into_iter()
            .map(|(_, f)| f)
            .collect();
        let settled = loaded
            .decode::<Firing>(SETTLED)
            .into_iter()
            .map(|(_, f)| ((f.sink, f.notification.dedup_key.clone()), f.notification))
            .collect();
        Outbox {
            next_id: pending.iter().map(|p| p.id + 1).max().unwrap_or(0),
            pending,
            firing,
            settled,
        }
    }

    /// Reads an `outbox.json` left by an earlier version as state-log records. `Ok(None)`:
    /// there was none. A damaged one is an error (what it held is unknown, so reconciliation
    /// sends the triggers of open alerts again).
    pub(crate) fn migrate_legacy(
        path: &Path,
    ) -> Result<Option<Vec<(String, serde_json::Value)>>, String> {
        let bytes = match crate::diag::file::read_state(path) {
            Ok(b) => b,
            Err(crate::diag::file::FileError::Io(e))
                if e.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e.to_string()),
        };
        let legacy: LegacyOutbox = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for (id, mut p) in legacy.pending.into_iter().enumerate() {
            p.id = id as u64;
            out.push((
                pending_key(p.id),
                serde_json::to_value(&p).map_err(|e| e.to_string())?,
            ));
        }
        for f in legacy.firing {
            out.push((
                pair_key(FIRING, &f.sink, &f.notification.dedup_key),
                serde_json::to_value(&f).map_err(|e| e.to_string())?,
            ));
        }
        Ok(Some(out))
    }

    /// Records that `sink` has (or was given up on with) the trigger `n`.
    pub(crate) fn mark_settled(&mut self, store: &Store, sink: &str, n: &Notification) {
        let key = (sink.to_string(), n.dedup_key.clone());
        match n.kind {
            EventKind::Trigger => {
                store.put(
                    &pair_key(SETTLED, sink, &n.dedup_key),
                    &Firing {
                        sink: sink.to_string(),
                        notification: n.clone(),
                    },
                );
                self.settled.insert(key, n.clone());
            }
            EventKind::Resolve => {
                if self.settled.remove(&key).is_some() {
                    store.delete(&pair_key(SETTLED, sink, &n.dedup_key));
                }
            }
        }
    }

    /// Triggers known to have reached a pager and not yet resolved there: (sink, trigger).
    pub fn settled(&self) -> Vec<(String, Notification)> {
        self.settled
            .iter()
            .map(|((sink, _), n)| (sink.clone(), n.clone()))
            .collect()
    }

    /// Whether a notification for `dedup_key` waits for `sink`.
    pub fn queued(&self, sink: &str, dedup_key: &str) -> bool {
        self.pending
            .iter()
            .any(|p| p.sink == sink && p.notification.dedup_key == dedup_key)
    }

    /// Notifications waiting for delivery.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Nothing waits for delivery.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

impl Dispatcher {
    /// Starts one task per pager on `outbox` (what an earlier run or the configuration before a
    /// reload left undelivered), recording every change in `store`. `clock` gives every
    /// timestamp (its start is the watchdog's `startsAt`: pass the service's clock, which
    /// outlives reloads). `shutdown` turning `true` makes the tasks flush and stop, as
    /// [`Dispatcher::shutdown`] does. Each pager's task runs under `tasks` (restarted if it
    /// panics; the queue is shared, so nothing is lost). Must be called inside a tokio runtime.
    pub fn start_with(
        pagers: Vec<PagerPlan>,
        mut outbox: Outbox,
        store: Store,
        metrics: crate::metrics::Metrics,
        clock: Clock,
        shutdown: watch::Receiver<bool>,
        tasks: &crate::supervise::Supervisor,
    ) -> Dispatcher {
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
                store.delete(&pending_key(p.id));
            }
            known
        });
        outbox.firing.retain(|f| {
            let known = pagers.iter().any(|pg| pg.name == f.sink);
            if !known {
                store.delete(&pair_key(FIRING, &f.sink, &f.notification.dedup_key));
            }
            known
        });
        outbox.settled.retain(|(sink, dedup), _| {
            let known = pagers.iter().any(|pg| &pg.name == sink);
            if !known {
                store.delete(&pair_key(SETTLED, sink, dedup));
            }
            known
        });
        if !outbox.pending.is_empty() {
            tracing::info!(
                queued = outbox.pending.len(),
                "re-sending notifications queued before the restart"
            );
        }
        let shared = Arc::new(Shared {
            outbox: Mutex::new(outbox),
            store,
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
            clock,
        });
        shared.metrics.register_pagers(&shared.sinks);
        shared.metrics.register_resends(&shared.alertmanagers);
        shared.publish(&shared.lock());
        let (stop, stop_rx) = watch::channel(false);
        // Cancelled before `stop` is sent: a pager task ending after it is not a failure.
        let stopping = tokio_util::sync::CancellationToken::new();
        let client = notify::http_client();
        let supervisor = tasks;
        let tasks = pagers
            .into_iter()
            .map(|plan| {
                let make_notifier = {
                    let (plan, client) = (plan.clone(), client.clone());
                    let (delivery, clock) = (shared.metrics.delivery.clone(), shared.clock);
                    move || -> Box<dyn Notifier> {
                        let notifier = match &client {
                            Ok(c) => super::pagers::notifier_for(&plan, c),
                            Err(e) => Err(e.clone()),
                        }
                        .unwrap_or_else(|e| {
                            tracing::error!(sink = %plan.name, error = %e, "pager cannot send");
                            Box::new(Broken(e.to_string()))
                        });
                        // Every attempt's outcome, for the status page's delivery health.
                        super::health::Observed::wrap(notifier, &plan, delivery.clone(), clock)
                    }
                };
                let watchdog = match (&plan.kind, &client) {
                    (PagerKind::Alertmanager(a), Ok(c)) => Some(Watchdog {
                        plan: a.clone(),
                        client: c.clone(),
                        timeout: plan.timeout,
                        redactor: plan.redactor.clone(),
                    }),
                    _ => None,
                };
                let (shared, stop_rx) = (shared.clone(), stop_rx.clone());
                supervisor.spawn(
                    crate::supervise::Task::Pager,
                    format!("pager {}", plan.name),
                    true,
                    stopping.clone(),
                    move || {
                        run_pager(
                            shared.clone(),
                            plan.clone(),
                            make_notifier(),
                            watchdog.clone(),
                            stop_rx.clone(),
                        )
                    },
                )
            })
            .collect();
        let forwarder = tokio::spawn(
            forward_shutdown(shutdown, stop.clone(), stopping.clone()).in_current_span(),
        );
        Dispatcher {
            shared,
            stop,
            stopping,
            tasks,
            forwarder,
            owns_store: false,
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
                    let sent = track_firing(&mut outbox, sink, &n);
                    let key = pair_key(FIRING, sink, &n.dedup_key);
                    match outbox
                        .firing
                        .iter()
                        .find(|f| f.sink == *sink && f.notification.dedup_key == n.dedup_key)
                    {
                        Some(f) => self.shared.store.put(&key, f),
                        None => self.shared.store.delete(&key),
                    }
                    sent
                } else {
                    n.clone()
                };
                let id = outbox.next_id;
                outbox.next_id += 1;
                let p = Pending {
                    id,
                    sink: sink.clone(),
                    attempts: 0,
                    enqueued_at: self.shared.clock.now(),
                    notification,
                };
                self.shared.store.put(&pending_key(id), &p);
                outbox.pending.push(p);
            }
            self.shared.publish(&outbox);
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

    /// How many notifications wait for delivery (all pagers).
    pub fn pending(&self) -> usize {
        self.shared.lock().pending.len()
    }

    /// Triggers known to have reached a pager and not yet resolved there: (sink, trigger).
    pub fn settled(&self) -> Vec<(String, Notification)> {
        self.shared.lock().settled()
    }

    /// Whether a notification for `dedup_key` waits for `sink`.
    pub fn queued(&self, sink: &str, dedup_key: &str) -> bool {
        self.shared.lock().queued(sink, dedup_key)
    }

    /// The configured pagers' names, sorted.
    pub fn sinks(&self) -> Vec<String> {
        let mut all: Vec<String> = self.shared.wakers.keys().cloned().collect();
        all.sort();
        all
    }

    /// Stops taking work, gives every pager one last attempt (at most [`FLUSH_BUDGET`] in all),
    /// and leaves the rest in the outbox for the next start (or the dispatcher after a reload,
    /// which takes the returned outbox).
    pub async fn shutdown(self) -> Outbox {
        self.shared.accepting.store(false, Ordering::SeqCst);
        self.stopping.cancel();
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
        let outbox = std::mem::take(&mut *self.shared.lock());
        // Bounded: a hung disk must not hold up shutdown (what is not written stays in memory
        // and is retried by the writer while the process lives).
        let store = self.shared.store.clone();
        let owns = self.owns_store;
        let _ = tokio::task::spawn_blocking(move || {
            store.flush(STORE_FLUSH);
            if owns {
                store.close();
            }
        })
        .await;
        if !outbox.pending.is_empty() {
            tracing::warn!(
                queued = outbox.pending.len(),
                "undelivered notifications kept in the outbox"
            );
        }
        outbox
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

    /// Takes a delivered (or abandoned) notification off the queue, and records a trigger as
    /// having reached its pager (a resolve clears that record).
    fn remove(&self, item: &Pending) {
        let mut outbox = self.lock();
        outbox.pending.retain(|p| p.id != item.id);
        self.store.delete(&pending_key(item.id));
        outbox.mark_settled(&self.store, &item.sink, &item.notification);
        self.publish(&outbox);
    }

    /// Counts a failed attempt; returns the new count.
    fn failed_attempt(&self, id: u64) -> u32 {
        let mut outbox = self.lock();
        let n = outbox.pending.iter_mut().find(|p| p.id == id).map(|p| {
            p.attempts += 1;
            self.store.put(&pending_key(id), &*p);
            p.attempts
        });
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

async fn forward_shutdown(
    mut external: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    stopping: tokio_util::sync::CancellationToken,
) {
    loop {
        if *external.borrow_and_update() {
            stopping.cancel();
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
    let resend_every = resend.unwrap_or_default();
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
                    next_resend = later(Instant::now(), resend_every);
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
    shared.remove(item);
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
fn later(at: Instant, d: Duration) -> Instant {
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

/// Shutdown's one attempt: in queue order, stopping at the first failure (order matters) or when
/// the budget is spent.
/// Drops a notification that will not be delivered: out of the outbox, counted, logged.
fn abandon(shared: &Shared, sink: &str, item: &Pending, attempts: u32, error: &str, why: &str) {
    let n = &item.notification;
    shared.remove(item);
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
                item.attempts + 1,
                &msg,
                "the pager refused the notification",
            ),
            Ok(Err(e @ (DeliveryError::Retryable(_) | DeliveryError::RetryAfter(..)))) => {
                let msg = e.to_string();
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
        n.at = shared.clock.now();
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
#[derive(Clone)]
struct Watchdog {
    plan: super::alertmanager::Alertmanager,
    client: reqwest::Client,
    timeout: Duration,
    redactor: crate::redact::Redactor,
}

impl Watchdog {
    /// Posts the watchdog unless the scheduler is stuck (then it lapses, and the dead man's
    /// switch behind Alertmanager notices). Keep-alive: not counted in `notifications_total`.
    async fn post(&self, shared: &Shared, sink: &str) {
        if let Some(why) = shared.liveness.get().and_then(|l| l.stalled()) {
            tracing::error!(sink, why = %why, "the scheduler is stuck: watchdog alert withheld");
            return;
        }
        let req = super::alertmanager::build_watchdog(
            &self.plan,
            &shared.metrics.region,
            shared.clock.started(),
            shared.clock.now(),
        );
        match notify::post(&self.client, &req, self.timeout).await {
            Ok(()) => {
                shared.metrics.delivery.success(sink, shared.clock.now());
                tracing::debug!(sink, "watchdog alert posted");
            }
            Err(e) => {
                let e = e.scrub(&self.redactor);
                shared
                    .metrics
                    .delivery
                    .failure(sink, shared.clock.now(), &e.to_string());
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
/// same `links` as a real page ([`super::links`]), so they can be checked too. An Alertmanager
/// pager keeps the alert firing until Alertmanager has notified (`wait`, else its route's
/// `group_wait`: see [`super::alertmanager::test_page`]); the others resolve at once. Each
/// result holds what was found on the way, one line each.
pub async fn test_page(
    pagers: &[PagerPlan],
    region: &str,
    links: &[Link],
    wait: Option<Duration>,
    clock: Clock,
) -> Vec<(String, Result<Vec<String>, DeliveryError>)> {
    let client = notify::http_client();
    let id = uuid::Uuid::new_v4();
    let runs = pagers.iter().map(|plan| {
        let client = client.clone();
        async move {
            let result = async {
                let client = client?;
                let now = clock.now();
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
                if let PagerKind::Alertmanager(am) = &plan.kind {
                    let api = super::alertmanager::HttpAm {
                        plan: am,
                        client: &client,
                        timeout: plan.timeout,
                        redactor: &plan.redactor,
                    };
                    return super::alertmanager::test_page(&api, am, n, wait, &clock).await;
                }
                let notifier = super::pagers::notifier_for(plan, &client)?;
                notifier.send(&n).await?;
                if matches!(plan.kind, PagerKind::Opsgenie(_)) {
                    // Opsgenie creates alerts asynchronously; a close sent at once can miss it.
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                n.kind = EventKind::Resolve;
                n.at = clock.now();
                n.summary = format!("[TEST] joincanary test page from {region}: resolved");
                notifier.send(&n).await.map(|()| Vec::new())
            }
            .await;
            match &result {
                Ok(notes) => {
                    for note in notes {
                        tracing::info!(sink = %plan.name, region, "{note}");
                    }
                    tracing::info!(sink = %plan.name, region, "test page delivered");
                }
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
        let now = Utc::now();
        assert!(!gives_up(&r, 100, now, now));
        assert!(gives_up(&r, 1, now - chrono::Duration::hours(2), now));
        // Dates from a damaged state log at either end of chrono's range never panic.
        assert!(!gives_up(&r, 1, DateTime::<Utc>::MAX_UTC, now));
        assert!(gives_up(&r, 1, DateTime::<Utc>::MIN_UTC, now));
        r.max_attempts = Some(3);
        assert!(gives_up(&r, 3, now, now));
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
