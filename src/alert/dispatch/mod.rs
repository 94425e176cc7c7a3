//! Delivery: one queue and task per pager (one pager down never delays another), retries with
//! capped backoff, an on-disk outbox so an unsent page survives a restart, and Alertmanager
//! re-posts while an alert fires. This file is the [`Dispatcher`] (start, queue, shut down);
//! `outbox.rs` the outbox and its records, `queue.rs` each pager's delivery loop with its
//! retries, `watchdog.rs` the Alertmanager watchdog.

mod outbox;
mod queue;
mod watchdog;

pub use outbox::{LEGACY_OUTBOX_FILE, Outbox};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tracing::Instrument as _;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::notify::{self, Notifier};
use super::{Notification, PagerKind, PagerPlan};
use crate::clock::Clock;
use crate::store::Store;
use outbox::{Pending, pending_key};
use queue::{Broken, run_pager};
use watchdog::Watchdog;

/// The whole of shutdown's last delivery attempt.
pub const FLUSH_BUDGET: Duration = Duration::from_secs(5);
/// Ends the summary of a resolve whose trigger never reached its pager.
const NEVER_PAGED: &str = " (not paged: the pager did not take the page before the incident ended)";
/// How long shutdown waits for the state log to reach the disk.
const STORE_FLUSH: Duration = Duration::from_secs(2);

/// Hands notifications to pagers. Cheap to call from the alert loop: `send` only queues.
pub struct Dispatcher {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    stopping: tokio_util::sync::CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    forwarder: JoinHandle<()>,
    /// Opened by [`Dispatcher::start`] (in `engine.rs`, which owns the state files): closed at
    /// shutdown.
    pub(crate) owns_store: bool,
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
    liveness: std::sync::OnceLock<crate::liveness::Liveness>,
    /// Wall-clock time (tokio's, so tests run on the paused clock); its start is the
    /// watchdog's `startsAt`.
    clock: Clock,
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
        let names: Vec<&str> = pagers.iter().map(|p| p.name.as_str()).collect();
        outbox.keep_pagers(&names, &store);
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
                let client = notify::client_for(plan.tls.as_ref(), &client);
                let make_notifier = {
                    let (plan, client) = (plan.clone(), client.clone());
                    let (delivery, clock) = (shared.metrics.delivery.clone(), shared.clock);
                    move || -> Box<dyn Notifier> {
                        let notifier = match &client {
                            Ok(c) => Ok(crate::alert::pagers::notifier_for(
                                &plan,
                                c,
                                clock,
                                Some(delivery.clone()),
                            )),
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
                    (PagerKind::Alertmanager(a), Ok(c)) => Some(Arc::new(Watchdog {
                        plan: a.clone(),
                        members: crate::alert::alertmanager::Members::new(
                            &plan.name,
                            a,
                            c,
                            plan.timeout,
                            plan.redactor.clone(),
                            Some(shared.metrics.delivery.clone()),
                            shared.clock,
                        ),
                    })),
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
                event = %n.kind.as_str(),
                "shutting down: notification kept in the outbox for the next start"
            );
        }
        {
            let mut outbox = self.shared.lock();
            let now = self.shared.clock.now();
            for sink in &names {
                let alertmanager = self.shared.alertmanagers.contains(sink);
                outbox.enqueue(&self.shared.store, sink, &n, alertmanager, now);
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
    pub fn watch_liveness(&self, liveness: crate::liveness::Liveness) {
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

    /// Whether `item` is a trigger whose incident has ended while it waited: a resolve for the
    /// same incident is queued behind it for the same pager. That resolve is then marked
    /// (its summary says nobody was paged) for the chat and email pagers that show it.
    fn ended_before_delivery(&self, sink: &str, item: &Pending) -> bool {
        if item.notification.kind != super::EventKind::Trigger || item.notification.test {
            return false;
        }
        let mut outbox = self.lock();
        let Some(resolve) = outbox.pending.iter_mut().find(|p| {
            p.sink == sink
                && p.id > item.id
                && p.notification.kind == super::EventKind::Resolve
                && p.notification.dedup_key == item.notification.dedup_key
        }) else {
            return false;
        };
        if !resolve.notification.summary.ends_with(NEVER_PAGED) {
            resolve.notification.summary.push_str(NEVER_PAGED);
            self.store.put(&pending_key(resolve.id), &*resolve);
        }
        true
    }

    /// Counts a failed attempt; returns the new count.
    fn failed_attempt(&self, id: u64) -> u32 {
        let mut outbox = self.lock();
        let n = outbox.pending.iter_mut().find(|p| p.id == id).map(|p| {
            p.attempts = p.attempts.saturating_add(1);
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
