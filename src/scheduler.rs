//! Cron -> next fire (+ this region's jitter) -> run under the probe's deadline -> send the
//! `ProbeRun` on a channel. A run never overlaps the previous run of the same probe, and the
//! schedule never waits on the consumer of the channel: a tick that cannot start is skipped
//! and counted with its reason.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;

use crate::clock::Clock;
use crate::event::{Event, SkipReason};
use crate::flow::ProbePlan;
use crate::report::{ProbeRun, Trigger};
use crate::supervise::{Supervisor, Task};

/// Runs one probe once. The real one is [`FlowRunner`]; tests put a scripted one in its place
/// to drive the scheduler and alerting under a paused clock.
pub trait Runner: Send + Sync + 'static {
    /// `clock`: the scheduler's, which the run reads the time from.
    fn run(
        &self,
        probe: Arc<ProbePlan>,
        region: String,
        trigger: Trigger,
        clock: Clock,
    ) -> Pin<Box<dyn Future<Output = ProbeRun> + Send>>;

    /// Opens the sessions of `mode = "resident"` probes (the real flow unless a test says).
    fn resident(&self) -> Arc<dyn crate::resident::Sessions> {
        Arc::new(crate::resident::FlowSessions)
    }

    /// The runtime the loop of the `index`th probe (and so its runs and their sockets) lives
    /// on; `None`: the caller's (tests, under a paused clock).
    fn runtime(&self, index: usize) -> Option<tokio::runtime::Handle> {
        let _ = index;
        None
    }
}

/// `R` with every probe pinned to one of a few threads, each a current-thread runtime: a
/// probe's timer, its runs, their sockets and the tasks driving them are polled by the thread
/// whose event loop owns them, so a run's wake-ups never cross threads (on tokio's
/// multi-thread runtime a flow woke and parked other workers: `futex`, extra `epoll_wait`).
/// Only the finished run crosses over, on the event channel (measured in BENCHMARKS.md).
pub struct OnThreads<R> {
    inner: R,
    threads: Vec<tokio::runtime::Handle>,
    /// Ends the threads' runtimes when the runner goes (tests make many).
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl<R: Runner> OnThreads<R> {
    /// Starts `threads` (at least one) probe threads named `joincanary-probes-N`.
    ///
    /// # Errors
    /// The OS refusing a thread or the runtime's event loop.
    pub fn start(inner: R, threads: usize) -> std::io::Result<OnThreads<R>> {
        let mut handles = Vec::new();
        let mut stop = Vec::new();
        for i in 0..threads.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            stop.push(tx);
            std::thread::Builder::new()
                .name(format!("joincanary-probes-{i}"))
                .spawn(move || {
                    // Drives every task spawned onto this runtime until the runner is dropped.
                    let _ = runtime.block_on(rx);
                    // A getaddrinfo that never answers must not hold the thread (see main.rs).
                    runtime.shutdown_background();
                })?;
        }
        Ok(OnThreads {
            inner,
            threads: handles,
            _stop: stop,
        })
    }
}

impl<R: Runner> Runner for OnThreads<R> {
    fn run(
        &self,
        probe: Arc<ProbePlan>,
        region: String,
        trigger: Trigger,
        clock: Clock,
    ) -> Pin<Box<dyn Future<Output = ProbeRun> + Send>> {
        self.inner.run(probe, region, trigger, clock)
    }

    fn resident(&self) -> Arc<dyn crate::resident::Sessions> {
        self.inner.resident()
    }

    fn runtime(&self, index: usize) -> Option<tokio::runtime::Handle> {
        self.threads.get(index % self.threads.len()).cloned()
    }
}

/// Runs the real join flow.
pub struct FlowRunner;

impl Runner for FlowRunner {
    fn run(
        &self,
        probe: Arc<ProbePlan>,
        region: String,
        trigger: Trigger,
        clock: Clock,
    ) -> Pin<Box<dyn Future<Output = ProbeRun> + Send>> {
        Box::pin(async move { crate::flow::run_probe(&probe, &region, trigger, &clock).await })
    }
}

/// Starts a probe's loop (again, after a panic) for its supervisor.
type LoopFactory = Box<dyn FnMut() -> BoxFuture<'static, ()> + Send>;

/// A probe's run, as the schedule sees it.
const IDLE: u8 = 0;
const RUNNING: u8 = 1;
/// Finished; its result waits for room in the channel.
const REPORTING: u8 = 2;

/// Frees the probe for its next run; returns a next fire time announced meanwhile.
fn idle(
    running: &AtomicU8,
    next_run: &std::sync::Mutex<Option<DateTime<Utc>>>,
) -> Option<DateTime<Utc>> {
    let mut slot = next_run.lock().unwrap_or_else(|e| e.into_inner());
    running.store(IDLE, Ordering::SeqCst);
    slot.take()
}

/// Handles to ask a probe for an extra (confirmation) run.
#[derive(Clone, Default)]
pub struct Scheduler {
    confirm: HashMap<String, mpsc::Sender<Duration>>,
}

impl Scheduler {
    /// Starts one task per probe; tasks and runs are tracked by `tracker`, stop on `shutdown`.
    pub fn spawn(
        probes: &[Arc<ProbePlan>],
        region: &str,
        clock: Clock,
        runner: Arc<dyn Runner>,
        events: mpsc::Sender<Event>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Scheduler {
        let tasks = Supervisor::detached(region);
        Scheduler::spawn_supervised(
            probes, region, clock, runner, events, shutdown, tracker, &tasks,
        )
    }

    /// [`Scheduler::spawn`] with every probe's loop under `tasks`: a loop that panics is
    /// restarted (its confirm requests and run state survive), and a run that panics is
    /// counted and frees the probe for its next tick.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn_supervised(
        probes: &[Arc<ProbePlan>],
        region: &str,
        clock: Clock,
        runner: Arc<dyn Runner>,
        events: mpsc::Sender<Event>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
        tasks: &Supervisor,
    ) -> Scheduler {
        let mut confirm = HashMap::new();
        for (index, probe) in probes.iter().enumerate() {
            let (tx, rx) = mpsc::channel(4);
            confirm.insert(probe.name.clone(), tx);
            // Outlives a panicking loop: the restarted one reads the same requests.
            let rx = Arc::new(tokio::sync::Mutex::new(rx));
            // A resident probe keeps its own cadence on an open session.
            let (kind, name, factory): (Task, String, LoopFactory) = if probe.resident.is_some() {
                let task = Arc::new(crate::resident::Resident {
                    probe: probe.clone(),
                    region: region.to_string(),
                    clock,
                    sessions: runner.resident(),
                    events: events.clone(),
                    shutdown: shutdown.clone(),
                    seed: rand::random(),
                });
                let factory = move || -> BoxFuture<'static, ()> {
                    let (task, rx) = (task.clone(), rx.clone());
                    Box::pin(async move { task.run_with(&mut *rx.lock().await).await })
                };
                (
                    Task::Resident,
                    format!("resident probe {}", probe.name),
                    Box::new(factory),
                )
            } else {
                let task = Arc::new(ProbeLoop {
                    probe: probe.clone(),
                    region: region.to_string(),
                    clock,
                    runner: runner.clone(),
                    events: events.clone(),
                    shutdown: shutdown.clone(),
                    tracker: tracker.clone(),
                    tasks: tasks.clone(),
                    running: Arc::new(AtomicU8::new(IDLE)),
                    next_run: Arc::default(),
                    unreported: std::sync::Mutex::new(Vec::new()),
                });
                let factory = move || -> BoxFuture<'static, ()> {
                    let (task, rx) = (task.clone(), rx.clone());
                    Box::pin(async move { task.run(&mut *rx.lock().await).await })
                };
                (
                    Task::Scheduler,
                    format!("scheduler of probe {}", probe.name),
                    Box::new(factory),
                )
            };
            let supervised = tasks
                .supervise(kind, name, true, shutdown.clone(), factory)
                .in_current_span();
            // The loop spawns its runs, and they their connections' tasks, where it runs.
            match runner.runtime(index) {
                Some(thread) => tracker.spawn_on(supervised, &thread),
                None => tracker.spawn(supervised),
            };
        }
        Scheduler { confirm }
    }

    /// Asks for an extra run of `probe` after `delay` (the alert policy confirming a failure).
    pub fn confirm(&self, probe: &str, delay: Duration) {
        if let Some(tx) = self.confirm.get(probe) {
            let _ = tx.try_send(delay);
        }
    }
}

struct ProbeLoop {
    probe: Arc<ProbePlan>,
    region: String,
    clock: Clock,
    runner: Arc<dyn Runner>,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    tasks: Supervisor,
    running: Arc<AtomicU8>,
    /// The next fire time, announced while a run was going: the run sends it with its result.
    /// Its lock also orders the run's end (`running` back to idle) against the loop's look.
    next_run: Arc<std::sync::Mutex<Option<DateTime<Utc>>>>,
    /// Skips not yet told to the consumer (its channel was full), by reason.
    unreported: std::sync::Mutex<Vec<(SkipReason, u64)>>,
}

impl ProbeLoop {
    async fn run(&self, confirm_rx: &mut mpsc::Receiver<Duration>) {
        let jitter = chrono::Duration::from_std(self.probe.jitter).unwrap_or_default();
        let mut confirm_at: Option<Instant> = None;
        let mut announced: Option<DateTime<Utc>> = None;
        loop {
            crate::supervise::fault::hit(Task::Scheduler, &self.probe.name);
            // The tick that fires next, counting this region's fixed offset after it. A cron
            // schedule is written in wall-clock time, so it is read on the system clock as it
            // reads now (after a step: NTP after boot, a VM resumed), then turned back into
            // the service's own clock, which counts on monotonically and times the sleep.
            let now = self.clock.now();
            let offset = self.clock.offset();
            let Some(tick) = self
                .probe
                .schedule
                .next_after(self.clock.on_system(now) - jitter)
            else {
                tracing::error!(probe = %self.probe.name, region = %self.region, "schedule has no future fire time; probe stops");
                return;
            };
            let fire_wall = (tick + jitter)
                .checked_sub_signed(offset)
                .unwrap_or(tick + jitter);
            let fire = self.clock.instant_at(fire_wall);
            // A step while asleep moves the tick: look again at least this often.
            let recheck = Instant::now() + crate::clock::STEP_RECHECK;
            if announced != Some(fire_wall) {
                let mut slot = self.next_run.lock().unwrap_or_else(|e| e.into_inner());
                if self.running.load(Ordering::SeqCst) != IDLE {
                    // Told with the run's result: one wake-up of the consumer, not two.
                    *slot = Some(fire_wall);
                    announced = Some(fire_wall);
                } else if self
                    .events
                    .try_send(Event::NextRun {
                        probe: self.probe.name.clone(),
                        at: fire_wall,
                    })
                    .is_ok()
                {
                    // Never waits: when the channel is full, the next pass tries again.
                    announced = Some(fire_wall);
                }
            }
            let confirm_sleep = async {
                match confirm_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return,
                Some(delay) = confirm_rx.recv() => {
                    // A scheduled run due first confirms as well: an extra run after it (a
                    // `confirm_delay` longer than the interval) would only collide with a
                    // later tick, one of the two skipped and warned about.
                    if let Some(at) = Instant::now().checked_add(delay).filter(|at| *at < fire) {
                        confirm_at = Some(confirm_at.map_or(at, |c| c.min(at)));
                    }
                }
                () = confirm_sleep => {
                    confirm_at = None;
                    self.start(Trigger::Confirm, None).await;
                }
                () = tokio::time::sleep_until(fire) => {
                    self.start(Trigger::Scheduled, Some(Instant::now().saturating_duration_since(fire))).await;
                }
                () = tokio::time::sleep_until(recheck), if recheck < fire => {}
            }
        }
    }

    async fn start(&self, trigger: Trigger, lag: Option<Duration>) {
        if let Err(state) =
            self.running
                .compare_exchange(IDLE, RUNNING, Ordering::SeqCst, Ordering::SeqCst)
        {
            let reason = if state == REPORTING {
                SkipReason::Backlog
            } else {
                SkipReason::Overlap
            };
            tracing::warn!(probe = %self.probe.name, region = %self.region, trigger = %trigger.as_str(), reason = %reason.as_str(), "previous run still going or unrecorded; this run is skipped");
            self.skipped(reason);
            return;
        }
        self.report_skips();
        // Debug, not info: the run's outcome line carries the probe and trigger, and one info
        // line per run is half the logging cost of two (measured in BENCHMARKS.md).
        tracing::debug!(probe = %self.probe.name, region = %self.region, trigger = %trigger.as_str(), "probe run starting");
        let running = self.running.clone();
        let runner = self.runner.clone();
        let clock = self.clock;
        let probe = self.probe.clone();
        let region = self.region.clone();
        let events = self.events.clone();
        let tasks = self.tasks.clone();
        let next_run = self.next_run.clone();
        self.tracker.spawn(
            async move {
                let name = format!("run of probe {}", probe.name);
                let probe_name = probe.name.clone();
                let run = std::panic::AssertUnwindSafe(runner.run(probe, region, trigger, clock))
                    .catch_unwind()
                    .await;
                let announce = |at| Event::NextRun {
                    probe: probe_name.clone(),
                    at,
                };
                let run = match run {
                    Ok(run) => {
                        tasks.recovered(&name);
                        run
                    }
                    Err(panic) => {
                        // A bug, not the platform's fault: no run to record. The probe is
                        // freed for its next tick, and readiness says so until a run ends.
                        let why = format!(
                            "panicked: {}",
                            crate::supervise::panic_message(panic.as_ref())
                        );
                        tasks.failed(Task::Run, &name, &why, true);
                        if let Some(at) = idle(&running, &next_run) {
                            let _ = events.try_send(announce(at));
                        }
                        return;
                    }
                };
                // Waiting here holds up only this probe's next tick (skipped as `backlog`),
                // never the schedule, and keeps at most one result per probe waiting.
                running.store(REPORTING, Ordering::SeqCst);
                let next = next_run.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(at) = next {
                    let _ = events.send(announce(at)).await;
                }
                let _ = events
                    .send(Event::Run {
                        run,
                        lag,
                        quiet: false,
                    })
                    .await;
                // Announced while this result waited: rare, so told without waiting.
                if let Some(at) = idle(&running, &next_run) {
                    let _ = events.try_send(announce(at));
                }
            }
            .in_current_span(),
        );
    }

    /// Counts a skip and tells the consumer without waiting; what cannot be told now is told
    /// with the next skip or run start.
    fn skipped(&self, reason: SkipReason) {
        let mut pending = self.unreported.lock().unwrap_or_else(|e| e.into_inner());
        match pending.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => pending.push((reason, 1)),
        }
        drop(pending);
        self.report_skips();
    }

    fn report_skips(&self) {
        let mut pending = self.unreported.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((reason, count)) = pending.first().copied() {
            let sent = self.events.try_send(Event::Skipped {
                probe: self.probe.name.clone(),
                reason,
                count,
            });
            if sent.is_err() {
                return;
            }
            pending.remove(0);
        }
    }
}
