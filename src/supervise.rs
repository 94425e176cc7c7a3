//! Supervision of the long-lived tasks: a task that panics or ends before it is told to stop
//! is logged, counted in `joincanary_task_restarts_total{task}`, restarted after a backoff
//! where that is safe, and holds `/-/ready` at 503 (naming it) until it has run
//! [`HEALTHY_AFTER`] without failing again. A canary whose consumer, pager or scheduler died
//! quietly is the worst failure it can have: this is the part that says so.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt as _;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio_util::sync::CancellationToken;

/// A restarted task counts as healthy again after running this long without failing.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// The first restart waits this long; each failure before the task is healthy again doubles
/// it, up to [`MAX_BACKOFF`] (a task that panics on every start costs a log line a minute).
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between restarts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The kinds of supervised task: the `task` label of `joincanary_task_restarts_total`
/// (every one exists from start-up at 0; the instance, such as the probe or pager, is in the
/// log and in `/-/ready`'s body, not in a label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Task {
    /// A probe's schedule loop.
    Scheduler,
    /// A resident probe's session loop.
    Resident,
    /// One run of a probe (not restarted: the next tick runs again).
    Run,
    /// The run consumer: metrics, status, the alert policy.
    Consumer,
    /// A pager's delivery loop.
    Pager,
    /// A heartbeat's ping loop.
    Heartbeat,
    /// The state writers: the status history's task and the state log's writer thread.
    History,
    /// The HTTP listener, and its request handlers (a handler that panics answers 500).
    Http,
    /// A reload's read of the files.
    Reload,
}

impl Task {
    pub const ALL: [Task; 9] = [
        Task::Scheduler,
        Task::Resident,
        Task::Run,
        Task::Consumer,
        Task::Pager,
        Task::Heartbeat,
        Task::History,
        Task::Http,
        Task::Reload,
    ];

    /// The `task` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Scheduler => "scheduler",
            Task::Resident => "resident",
            Task::Run => "run",
            Task::Consumer => "consumer",
            Task::Pager => "pager",
            Task::Heartbeat => "heartbeat",
            Task::History => "history",
            Task::Http => "http",
            Task::Reload => "reload",
        }
    }
}

/// One failing task instance, as `/-/ready` shows it.
#[derive(Debug, Clone)]
struct Failing {
    task: Task,
    why: String,
    failures: u64,
    restarting: bool,
}

/// Which supervised tasks are failing now (read by `/-/ready`, mirrored in
/// `joincanary_task_failing{task}`). Cheap to clone.
#[derive(Debug, Clone)]
pub struct TaskHealth {
    failing: Arc<Mutex<BTreeMap<String, Failing>>>,
    /// `{task, region}`: instances failing now.
    gauge: IntGaugeVec,
    region: String,
}

impl TaskHealth {
    fn new(region: &str) -> TaskHealth {
        let gauge = IntGaugeVec::new(
            Opts::new(
                "joincanary_task_failing",
                "Supervised tasks failing now (panicked or ended early, not yet healthy again); /-/ready is 503 while any is",
            ),
            &["task", "region"],
        )
        .unwrap_or_else(|e| unreachable!("a constant metric definition is valid: {e}"));
        for task in Task::ALL {
            gauge.with_label_values(&[task.as_str(), region]);
        }
        TaskHealth {
            failing: Arc::default(),
            gauge,
            region: region.to_string(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Failing>> {
        // Every change is one insert or remove: the map is whole even after a panic.
        self.failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One line per failing task, e.g. `consumer panicked (3 times): … ; restarting`; empty
    /// when every task is healthy.
    pub fn failing(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|(name, f)| {
                let times = if f.failures == 1 {
                    String::new()
                } else {
                    format!(" ({} times)", f.failures)
                };
                let next = if f.restarting {
                    "restarting"
                } else {
                    "not restarted"
                };
                format!("{name} {}{times}; {next}", f.why)
            })
            .collect()
    }

    fn fail(&self, task: Task, name: &str, why: &str, restarting: bool) {
        let mut map = self.lock();
        let entry = map.entry(name.to_string()).or_insert_with(|| {
            self.gauge
                .with_label_values(&[task.as_str(), &self.region])
                .inc();
            Failing {
                task,
                why: String::new(),
                failures: 0,
                restarting,
            }
        });
        entry.why = why.to_string();
        entry.failures += 1;
        entry.restarting = restarting;
    }

    /// Whether `name` was failing (and is not any more).
    fn recover(&self, name: &str) -> bool {
        let Some(was) = self.lock().remove(name) else {
            return false;
        };
        self.gauge
            .with_label_values(&[was.task.as_str(), &self.region])
            .dec();
        true
    }
}

/// Runs tasks under supervision; one per service, shared by every part that spawns.
#[derive(Clone)]
pub struct Supervisor {
    health: TaskHealth,
    /// `{task, region}`.
    restarts: IntCounterVec,
    region: String,
}

impl Supervisor {
    /// Registers `joincanary_task_restarts_total` in `registry`, every task at 0.
    ///
    /// # Errors
    /// The registry refusing the family (registered twice).
    pub fn register(registry: &Registry, region: &str) -> Result<Supervisor, prometheus::Error> {
        let s = Supervisor::detached(region);
        registry.register(Box::new(s.restarts.clone()))?;
        registry.register(Box::new(s.health.gauge.clone()))?;
        Ok(s)
    }

    /// A supervisor whose counter is in no registry (`test-page`, tests): it logs, restarts
    /// and tracks health all the same.
    pub fn detached(region: &str) -> Supervisor {
        let restarts = IntCounterVec::new(
            Opts::new(
                "joincanary_task_restarts_total",
                "Supervised tasks that panicked or ended early (each was logged, and restarted where safe)",
            ),
            &["task", "region"],
        )
        .unwrap_or_else(|e| unreachable!("a constant metric definition is valid: {e}"));
        for task in Task::ALL {
            restarts.with_label_values(&[task.as_str(), region]);
        }
        Supervisor {
            health: TaskHealth::new(region),
            restarts,
            region: region.to_string(),
        }
    }

    /// What `/-/ready` reads.
    pub fn health(&self) -> TaskHealth {
        self.health.clone()
    }

    /// Records a failure of `name` that the caller handles itself (a run that panicked, a
    /// handler that panicked): logged, counted, and failing until [`Supervisor::recovered`].
    pub fn failed(&self, task: Task, name: &str, why: &str, restarting: bool) {
        tracing::error!(task = %task.as_str(), name, why, region = %self.region, restarting, "supervised task failed");
        self.restarts
            .with_label_values(&[task.as_str(), &self.region])
            .inc();
        self.health.fail(task, name, why, restarting);
    }

    /// `name` works again (logged when it was failing).
    pub fn recovered(&self, name: &str) {
        if self.health.recover(name) {
            tracing::info!(name, region = %self.region, "supervised task healthy again");
        }
    }

    /// Spawns [`Supervisor::supervise`] on the runtime.
    pub fn spawn<F, Fut>(
        &self,
        task: Task,
        name: impl Into<String>,
        restart: bool,
        stop: CancellationToken,
        factory: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(tracing::Instrument::in_current_span(
            self.supervise(task, name, restart, stop, factory),
        ))
    }

    /// Runs `factory()`'s future until `stop` is cancelled and the future returns. A panic, or
    /// a return before `stop`, is a failure: logged, counted, marked failing, and (`restart`)
    /// followed by a fresh `factory()` after a backoff. Whatever must survive a restart (a
    /// channel's receiver, state) lives outside the future, behind what the factory clones.
    pub fn supervise<F, Fut>(
        &self,
        task: Task,
        name: impl Into<String>,
        restart: bool,
        stop: CancellationToken,
        mut factory: F,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let this = self.clone();
        let name = name.into();
        async move {
            let mut backoff = crate::backoff::Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
            let mut failing = false;
            loop {
                let mut run = std::pin::pin!(AssertUnwindSafe(factory()).catch_unwind());
                let outcome = loop {
                    tokio::select! {
                        r = &mut run => break r,
                        () = tokio::time::sleep(HEALTHY_AFTER), if failing => {
                            failing = false;
                            backoff.reset();
                            this.recovered(&name);
                        }
                    }
                };
                let why = match outcome {
                    Ok(()) if stop.is_cancelled() => return,
                    Ok(()) => "ended before it was stopped".to_string(),
                    Err(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
                };
                if stop.is_cancelled() {
                    // Stopping anyway: say so, but there is nothing to restart.
                    tracing::error!(task = %task.as_str(), name = %name, why, "supervised task failed while stopping");
                    this.restarts
                        .with_label_values(&[task.as_str(), &this.region])
                        .inc();
                    return;
                }
                this.failed(task, &name, &why, restart);
                if !restart {
                    return;
                }
                failing = true;
                tokio::select! {
                    () = stop.cancelled() => {
                        // Stopped while waiting to restart: one last start, which sees the stop
                        // and finishes its part (the consumer drains the runs in flight, a pager
                        // flushes, the history is saved), so shutdown never waits on a dead task.
                        let _ = AssertUnwindSafe(factory()).catch_unwind().await;
                        return;
                    }
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}

/// A deliberate panic for the tests of supervision (with feature `sim`; nothing in a config,
/// the environment or the network reaches [`fault::arm`], only Rust code in the process).
#[cfg(feature = "sim")]
#[doc(hidden)]
pub mod fault {
    use super::Task;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// (task, instance, passes left that panic).
    static ARMED: Mutex<Vec<(Task, String, u32)>> = Mutex::new(Vec::new());
    /// Whether anything was ever armed: the hooks sit on every run's and step's path, and
    /// cost one load while nothing is.
    static EVER: AtomicBool = AtomicBool::new(false);

    /// The next `times` passes of `task` for `name` (a probe name; `probe/step` for a step,
    /// `probe/connection` for a WebRTC publisher, the config path for the config watcher, the
    /// history file's path for its save) panic.
    pub fn arm(task: Task, name: &str, times: u32) {
        let mut armed = ARMED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        armed.push((task, name.to_string(), times));
        EVER.store(true, Ordering::Release);
    }

    /// Stops the panics armed for (`task`, `name`); returns how many were still to come.
    pub fn disarm(task: Task, name: &str) -> u32 {
        let mut armed = ARMED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let left = armed
            .iter()
            .filter(|(t, n, _)| *t == task && n == name)
            .map(|(_, _, left)| *left)
            .sum();
        armed.retain(|(t, n, _)| !(*t == task && n == name));
        left
    }

    /// Panics when armed for (`task`, `name`).
    pub(crate) fn hit(task: Task, name: impl std::fmt::Display) {
        if !EVER.load(Ordering::Acquire) {
            return;
        }
        let name = name.to_string();
        let mut armed = ARMED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(i) = armed.iter().position(|(t, n, _)| *t == task && *n == name) else {
            return;
        };
        armed[i].2 = armed[i].2.saturating_sub(1);
        if armed[i].2 == 0 {
            armed.remove(i);
        }
        drop(armed);
        panic!("injected fault in the {} task for {name}", task.as_str());
    }
}

/// Without the `sim` feature there is no fault to inject.
#[cfg(not(feature = "sim"))]
pub(crate) mod fault {
    pub(crate) fn hit(_: super::Task, _: impl std::fmt::Display) {}
}

/// The message of a panic payload (`panic!("…")` gives `&str` or `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn count(s: &Supervisor, task: Task) -> u64 {
        s.restarts.with_label_values(&[task.as_str(), "r"]).get()
    }

    /// A task that panics twice is restarted with a growing backoff, holds readiness while it
    /// fails, and is healthy again after running [`HEALTHY_AFTER`] cleanly.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_counted_and_recovers() {
        let s = Supervisor::detached("r");
        let starts = Arc::new(AtomicU32::new(0));
        let n = starts.clone();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = s.spawn(Task::Consumer, "consumer", true, stop.clone(), move || {
            let n = n.fetch_add(1, Ordering::SeqCst);
            let token = token.clone();
            async move {
                assert!(n >= 2, "deliberate panic {n}");
                token.cancelled().await;
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(count(&s, Task::Consumer), 1);
        assert_eq!(
            s.health().failing(),
            ["consumer panicked: deliberate panic 0; restarting"]
        );
        // First restart after 1 s, which panics again; the second after 2 s more.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(count(&s, Task::Consumer), 2);
        assert_eq!(
            s.health().failing(),
            ["consumer panicked: deliberate panic 1 (2 times); restarting"]
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 3);
        assert!(!s.health().failing().is_empty());
        tokio::time::sleep(HEALTHY_AFTER).await;
        assert!(s.health().failing().is_empty());
        assert_eq!(count(&s, Task::Consumer), 2);
        assert_eq!(count(&s, Task::Pager), 0);
        stop.cancel();
        task.await.unwrap();
    }

    /// A stop during the restart backoff still gives the task one last start to finish.
    #[tokio::test(start_paused = true)]
    async fn a_stop_during_the_backoff_gets_one_last_start() {
        let s = Supervisor::detached("r");
        let starts = Arc::new(AtomicU32::new(0));
        let n = starts.clone();
        let stop = CancellationToken::new();
        let task = s.spawn(Task::Consumer, "consumer", true, stop.clone(), move || {
            let first = n.fetch_add(1, Ordering::SeqCst) == 0;
            async move { assert!(!first, "deliberate panic") }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        stop.cancel();
        task.await.unwrap();
        assert_eq!(starts.load(Ordering::SeqCst), 2);
        assert_eq!(count(&s, Task::Consumer), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_early_end_is_a_failure_and_a_stop_is_not() {
        let s = Supervisor::detached("r");
        let stop = CancellationToken::new();
        let task = s.spawn(Task::History, "history", false, stop.clone(), || async {});
        task.await.unwrap();
        assert_eq!(count(&s, Task::History), 1);
        assert_eq!(
            s.health().failing(),
            ["history ended before it was stopped; not restarted"]
        );
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = s.spawn(Task::Pager, "pager/pd", true, stop.clone(), move || {
            let token = token.clone();
            async move { token.cancelled().await }
        });
        stop.cancel();
        task.await.unwrap();
        assert_eq!(count(&s, Task::Pager), 0);
    }
}
