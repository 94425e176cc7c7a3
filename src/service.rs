//! `joincanary run`: the scheduler, the HTTP server and the run consumer wired together, with a
//! shutdown that lets in-flight runs finish (mini-redis style: one signal, tracked tasks).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::alert::dispatch::Outbox;
use crate::alert::engine::AlertEngine;
use crate::alert::policy::Decision;
use crate::alert::{Dispatcher, Notification, Severity};
use crate::clock::Clock;
use crate::config::Plan;
use crate::heartbeat::Liveness;
use crate::metrics::Metrics;
use crate::scheduler::{Event, Runner, Scheduler};
use crate::status::{AlertView, Status};
use crate::store::Store;
use crate::supervise::{Supervisor, Task};

/// How often reminders and maintenance-held triggers are looked at.
const ALERT_TICK: Duration = Duration::from_secs(5);
/// How long shutdown waits for the state log to reach the disk.
const STATE_FLUSH: Duration = Duration::from_secs(2);
/// How long a reload may take to read and check the files (a hung network mount otherwise
/// holds the reload, and with it every later one, forever).
const RELOAD_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the file watcher may take to read the files for one look.
const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the service could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
}

/// The parts a caller (CLI, demo, tests) may want to look at while the service runs.
#[derive(Clone)]
pub struct Handles {
    pub metrics: Metrics,
    pub status: Arc<Status>,
    /// Runs every long-lived task; its health holds `/-/ready`.
    pub tasks: Supervisor,
}

/// Runs until `shutdown` is cancelled, then stops scheduling, waits for in-flight runs (each is
/// bounded by its deadline), drains their results and returns.
///
/// # Errors
/// Metrics registration or the HTTP listener failing.
pub async fn serve(
    plan: Plan,
    listener: TcpListener,
    runner: Arc<dyn Runner>,
    clock: Clock,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    let handles = handles(&plan, clock)?;
    serve_with(plan, listener, runner, clock, shutdown, handles).await
}

/// Builds metrics and status for `plan`, reading time from `clock` (exposed so callers can
/// watch them).
///
/// # Errors
/// Metrics registration failing.
pub fn handles(plan: &Plan, clock: Clock) -> Result<Handles, ServiceError> {
    // The probes themselves are registered when the engine starts (and again on each reload).
    let metrics = Metrics::with_detail(&plan.region, plan.phase_histograms)?.with_clock(clock);
    let tasks = Supervisor::register(&metrics.registry, &plan.region)
        .map_err(crate::metrics::MetricsError::from)?;
    Ok(Handles {
        metrics,
        status: Arc::new(Status::new(&plan.region)),
        tasks,
    })
}

/// [`serve`] with caller-made handles.
///
/// # Errors
/// None today (a failing listener is restarted by its supervisor); kept for callers.
pub async fn serve_with(
    plan: Plan,
    listener: TcpListener,
    runner: Arc<dyn Runner>,
    clock: Clock,
    shutdown: CancellationToken,
    handles: Handles,
) -> Result<(), ServiceError> {
    serve_in_span(plan, listener, runner, clock, shutdown, handles, None).await
}

/// [`serve`] that also reloads its configuration when asked (SIGHUP, `POST /-/reload`): a
/// valid new config replaces the schedules, probes, alert policy and pagers after the runs in
/// flight finish; an invalid one is refused and the running configuration stays.
///
/// # Errors
/// Metrics registration or the HTTP listener failing.
pub async fn serve_reloadable(
    plan: Plan,
    listener: TcpListener,
    runner: Arc<dyn Runner>,
    clock: Clock,
    shutdown: CancellationToken,
    reload: Reload,
) -> Result<(), ServiceError> {
    let handles = handles(&plan, clock)?;
    serve_in_span(
        plan,
        listener,
        runner,
        clock,
        shutdown,
        handles,
        Some(reload),
    )
    .await
}

async fn serve_in_span(
    plan: Plan,
    listener: TcpListener,
    runner: Arc<dyn Runner>,
    clock: Clock,
    shutdown: CancellationToken,
    handles: Handles,
    reload: Option<Reload>,
) -> Result<(), ServiceError> {
    // Every log line of the service, in every task it spawns, carries the region.
    let span = tracing::info_span!("joincanary", region = %plan.region);
    run_service(plan, listener, runner, clock, shutdown, handles, reload)
        .instrument(span)
        .await
}

async fn run_service(
    plan: Plan,
    listener: TcpListener,
    runner: Arc<dyn Runner>,
    clock: Clock,
    shutdown: CancellationToken,
    handles: Handles,
    reload: Option<Reload>,
) -> Result<(), ServiceError> {
    let Handles {
        metrics,
        status,
        tasks,
    } = handles;
    // Registered before anything starts, so a failure here leaves nothing running.
    let limits = plan.web_limits;
    let connections =
        crate::web::ConnectionMetrics::register(&metrics.registry, &plan.region, &limits)
            .map_err(crate::metrics::MetricsError::from)?;
    // The page's history survives a restart; a task of its own saves it, off the probe path.
    let history_path = plan.state_dir.join(crate::status::HISTORY_FILE);
    status.restore(&history_path);
    restore_metrics(&plan, &status, &metrics);
    let history_stop = CancellationToken::new();
    let history = {
        let (status, stop) = (status.clone(), history_stop.clone());
        tasks.spawn(
            Task::History,
            "history",
            true,
            history_stop.clone(),
            move || status.persist(history_path.clone(), stop.clone()),
        )
    };
    let region = plan.region.clone();
    let (mut requests, reload_tx, loader, watch): (_, _, Option<Loader>, _) = match reload {
        Some(r) => (
            Some(r.requests),
            r.http_endpoint.then_some(r.sender),
            Some(Arc::from(r.loader)),
            r.watch,
        ),
        None => (None, None, None, None),
    };
    let mut watch_tick = watch.map(|every| {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    // At most one read of the files in flight for each of these: a read stuck on a hung mount
    // keeps its thread, and a second one would only strand another.
    let watching = Arc::new(AtomicBool::new(false));
    let loading = Arc::new(AtomicBool::new(false));
    let mut seen = match watch {
        Some(_) => fingerprint(plan.sources.clone(), &watching).await,
        None => None,
    };

    // Alert state and the outbox live for the whole process: memory is authoritative (a disk
    // that fails loses nothing while the process runs), the state log follows it.
    let (store, loaded) = crate::alert::engine::open_store(&plan.state_dir);
    let alerts = AlertEngine::new(&plan, store.clone(), &loaded, clock.now());
    let outbox = Outbox::from_loaded(&loaded);
    drop(loaded);
    // The engine first, so the very first scrape already has every pre-created series.
    let mut plan = plan;
    let mut engine = Engine::start(
        &plan,
        runner.clone(),
        clock,
        &metrics,
        &status,
        &tasks,
        Carried {
            alerts,
            outbox,
            store: store.clone(),
            removed: Vec::new(),
        },
    );

    // The HTTP side lives for the whole process: a reload replaces only the engine.
    let http_stop = CancellationToken::new();
    // The bound address, not the configured one: with port 0 this is how a caller learns it.
    let listen = listener
        .local_addr()
        .map_or_else(|_| plan.listen.to_string(), |a| a.to_string());
    let app = crate::server::router(metrics.clone(), status.clone(), reload_tx, tasks.clone());
    // `--web.config.file`: basic auth on every path and TLS on the listener.
    let web = plan.web.clone();
    let app = match &web {
        Some(w) => w.protect(app),
        None => app,
    };
    // Shared, so a restarted listener task accepts on the same socket.
    let listener = Arc::new(listener);
    let http = {
        let stop = http_stop.clone();
        tasks.spawn(
            Task::Http,
            "http listener",
            true,
            http_stop.clone(),
            move || {
                let (listener, app, web, connections, stop) = (
                    listener.clone(),
                    app.clone(),
                    web.clone(),
                    connections.clone(),
                    stop.clone(),
                );
                async move {
                    if let Err(e) =
                        crate::web::serve(listener, app, web.as_ref(), limits, connections, stop)
                            .await
                    {
                        tracing::error!(error = %e, "the HTTP listener failed");
                    }
                }
            },
        )
    };
    status.set_ready(true);
    // Logged once ready: whoever waits for this line (a supervisor, a test) finds /readyz 200.
    tracing::info!(region = %region, probes = plan.probes.len(), listen = %listen, "joincanary running");
    loop {
        let request = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(reply) = async {
                match requests.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            } => Some(reply),
            _ = async {
                match watch_tick.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            } => {
                let now = fingerprint(plan.sources.clone(), &watching).await;
                if now.is_none() || now == seen {
                    continue;
                }
                // Remembered even if the reload is refused: a broken file is reported once,
                // and the next change is tried again.
                seen = now;
                tracing::info!(region = %region, "configuration files changed; reloading");
                None
            }
        };
        let Some(loader) = &loader else { continue };
        // Read off the async threads and raced against shutdown: whatever the files do (a
        // hung mount), SIGTERM still stops the service, and the running config stays.
        let loaded = tokio::select! {
            () = shutdown.cancelled() => {
                tracing::warn!(region = %region, "shutting down while the configuration was being read; the reload is abandoned");
                break;
            }
            loaded = load_plan(loader.clone(), &loading, &plan.config_path, &tasks) => loaded,
        };
        let outcome = match loaded {
            Ok(new_plan) => {
                if new_plan.listen != plan.listen
                    || new_plan.region != plan.region
                    || new_plan.state_dir != plan.state_dir
                {
                    tracing::warn!(region = %region, "`listen`, `region` and `state_dir` take effect at the next restart");
                }
                tracing::info!(region = %region, probes = new_plan.probes.len(), "configuration reloaded; restarting the scheduler");
                let (mut alerts, outbox) = engine.stop(&status).await;
                plan = Plan {
                    listen: plan.listen,
                    region: plan.region.clone(),
                    state_dir: plan.state_dir.clone(),
                    ..new_plan
                };
                let removed = alerts.configure(&plan, clock.now());
                engine = Engine::start(
                    &plan,
                    runner.clone(),
                    clock,
                    &metrics,
                    &status,
                    &tasks,
                    Carried {
                        alerts,
                        outbox,
                        store: store.clone(),
                        removed,
                    },
                );
                status.set_ready(true);
                metrics.count_reload("success");
                if watch.is_some() {
                    // The new plan may read other files (a probe directory added).
                    seen = fingerprint(plan.sources.clone(), &watching).await;
                }
                Ok(())
            }
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!(region = %region, error = %e, "reload refused; the running configuration stays");
                }
                metrics.count_reload("failure");
                Err(errors.to_string())
            }
        };
        if let Some(reply) = request {
            let _ = reply.send(outcome);
        }
    }

    tracing::info!(region = %region, "shutting down: no new runs; waiting for runs in flight");
    engine.stop(&status).await;
    // Bounded: a hung or full disk must not hold up SIGTERM.
    let flushed = tokio::task::spawn_blocking(move || {
        let done = store.flush(STATE_FLUSH);
        store.close();
        done
    })
    .await
    .unwrap_or(false);
    if !flushed {
        tracing::error!(region = %region, "alert state not fully written before exit");
    }
    history_stop.cancel();
    let _ = history.await;
    http_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
    tracing::info!(region = %region, "stopped");
    Ok(())
}

/// Each configured probe's last run before the restart, from the status history, into the
/// metrics ([`Metrics::restore_last`]): `probe_success` is there from the first scrape.
fn restore_metrics(plan: &Plan, status: &Status, metrics: &Metrics) {
    for p in status.snapshot() {
        if let Some(run) = &p.last
            && plan.probes.iter().any(|q| q.name == p.probe)
        {
            metrics.restore_last(
                &p.probe,
                &plan.region,
                run.success,
                run.duration_ms,
                p.last_success,
            );
        }
    }
}

/// [`crate::config::fingerprint`] off the async threads and under a deadline (a hung network
/// mount must not stall the service); `None` when it could not be worked out in time.
async fn fingerprint(sources: Vec<std::path::PathBuf>, slot: &Arc<AtomicBool>) -> Option<u64> {
    match off_thread(slot, WATCH_READ_TIMEOUT, move || {
        crate::config::fingerprint(&sources)
    })
    .await
    {
        Ok(h) => Some(h),
        Err(stuck) => {
            tracing::warn!(
                "could not read the configuration files to look for changes: {}",
                stuck.describe(WATCH_READ_TIMEOUT)
            );
            None
        }
    }
}

/// Loads the configuration with `loader` off the async threads, under [`RELOAD_READ_TIMEOUT`].
/// A load that panicked (a bug) is a failed `reload` task until a load finishes.
async fn load_plan(
    loader: Loader,
    slot: &Arc<AtomicBool>,
    config_path: &std::path::Path,
    tasks: &Supervisor,
) -> Result<Plan, crate::diag::ConfigErrors> {
    let outcome = off_thread(slot, RELOAD_READ_TIMEOUT, move || loader()).await;
    match &outcome {
        Err(Stuck::Panicked) => tasks.failed(
            Task::Reload,
            "reload",
            "panicked reading the configuration",
            true,
        ),
        Ok(_) => tasks.recovered("reload"),
        Err(_) => {}
    }
    match outcome {
        Ok(result) => result,
        Err(stuck) => Err(crate::diag::ConfigErrors(vec![crate::diag::ConfigError {
            file: config_path.to_path_buf(),
            line: 0,
            column: 0,
            key: None,
            message: format!("cannot reload: {}", stuck.describe(RELOAD_READ_TIMEOUT)),
        }])),
    }
}

/// Why [`off_thread`] has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stuck {
    /// The previous read is still going.
    Busy,
    /// This read ran past its deadline (it goes on in its thread).
    TimedOut,
    /// The read panicked (a bug).
    Panicked,
}

impl Stuck {
    fn describe(self, limit: Duration) -> String {
        match self {
            Stuck::Busy => "the previous read of the files has not finished (a hung mount?)".into(),
            Stuck::TimedOut => format!(
                "reading the files did not finish within {} (a hung mount?)",
                crate::report::human_duration(limit)
            ),
            Stuck::Panicked => "reading the files failed unexpectedly (see the log)".into(),
        }
    }
}

/// Runs `work` on the blocking pool under `limit`, one at a time per `slot`. A read stuck in
/// the kernel cannot be cancelled: its thread stays until the read returns, and `slot` stays
/// taken so no second thread is stranded behind it.
async fn off_thread<T: Send + 'static>(
    slot: &Arc<AtomicBool>,
    limit: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Stuck> {
    if slot.swap(true, Ordering::AcqRel) {
        return Err(Stuck::Busy);
    }
    let release = slot.clone();
    let task = tokio::task::spawn_blocking(move || {
        let out = work();
        release.store(false, Ordering::Release);
        out
    });
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(_)) => {
            // The work panicked: nothing holds the slot any more.
            slot.store(false, Ordering::Release);
            Err(Stuck::Panicked)
        }
        Err(_) => Err(Stuck::TimedOut),
    }
}

/// Loads and validates the configuration again (shared with the blocking thread that runs it).
type Loader = Arc<dyn Fn() -> Result<Plan, crate::diag::ConfigErrors> + Send + Sync>;

pub use crate::server::ReloadRequest;

/// How `run` reloads its configuration (SIGHUP, `POST /-/reload`).
pub struct Reload {
    /// Loads and validates the configuration again.
    pub loader: Box<dyn Fn() -> Result<Plan, crate::diag::ConfigErrors> + Send + Sync>,
    /// Where reload requests arrive.
    pub requests: mpsc::Receiver<ReloadRequest>,
    /// Handed to the HTTP server for `POST /-/reload`.
    pub sender: mpsc::Sender<ReloadRequest>,
    /// Serve `POST /-/reload` (off by default, as Prometheus's `--web.enable-lifecycle`: anyone
    /// who reaches the port could otherwise make the prober restart its schedules at will).
    pub http_endpoint: bool,
    /// Look at the config and probe files this often and reload when what they hold changed
    /// (a mounted ConfigMap updated in place); `None`: only on request.
    pub watch: Option<Duration>,
}

/// What a reload hands from one engine to the next.
struct Carried {
    alerts: AlertEngine,
    outbox: Outbox,
    store: Store,
    /// Resolves for incidents of probes the reload removed.
    removed: Vec<(Notification, Option<Vec<String>>)>,
}

/// The part of the service a reload replaces: schedules, the run consumer, pagers.
struct Engine {
    stop: CancellationToken,
    /// Stops the heartbeat tasks (first thing on stop: a stopping engine is not healthy).
    heartbeats_stop: CancellationToken,
    heartbeats: Vec<tokio::task::JoinHandle<()>>,
    tracker: TaskTracker,
    /// The supervised consumer task, and what it works on (kept outside it, so a restarted
    /// consumer carries on with the same alert state, pagers and channel).
    consumer: tokio::task::JoinHandle<()>,
    consuming: Arc<tokio::sync::Mutex<Option<Consumer>>>,
    dispatch_stop: tokio::sync::watch::Sender<bool>,
}

/// The run consumer: every run into metrics, status and the alert policy, pages to the
/// dispatcher, and the alert tick for reminders and ended maintenance windows.
struct Consumer {
    alerts: AlertEngine,
    dispatcher: Dispatcher,
    scheduler: Scheduler,
    events: mpsc::Receiver<Event>,
    ticker: tokio::time::Interval,
    liveness: Liveness,
    clock: Clock,
    region: String,
    metrics: Metrics,
    status: Arc<Status>,
}

impl Consumer {
    /// Consumes until every sender of the channel is gone (the engine stopping).
    async fn run(&mut self) {
        loop {
            self.liveness.beat();
            let event = tokio::select! {
                e = self.events.recv() => match e {
                    Some(e) => e,
                    None => return,
                },
                _ = self.ticker.tick() => {
                    for (probe, decision) in self.alerts.tick(self.clock.now()) {
                        act(decision, &probe, &self.alerts, &self.dispatcher, &self.scheduler);
                        publish_alerts(&self.alerts, &probe, &self.region, &self.metrics, &self.status);
                    }
                    continue;
                }
            };
            self.handle(event);
        }
    }

    fn handle(&mut self, event: Event) {
        let region = &self.region;
        match event {
            Event::Run { run, lag } => {
                crate::supervise::fault::hit(Task::Consumer, &run.probe);
                log_run(&run);
                self.metrics.record(&run, lag);
                // One copy of the run, shared by the status's last and last good.
                let run = Arc::new(run);
                self.status.record(&run);
                for decision in self.alerts.observe(&run, self.clock.now()) {
                    act(
                        decision,
                        &run.probe,
                        &self.alerts,
                        &self.dispatcher,
                        &self.scheduler,
                    );
                }
                publish_alerts(
                    &self.alerts,
                    &run.probe,
                    region,
                    &self.metrics,
                    &self.status,
                );
            }
            Event::Skipped {
                probe,
                reason,
                count,
            } => {
                self.metrics
                    .record_skip(&probe, region, reason.as_str(), count);
                self.status.record_skip(&probe, count);
            }
            Event::Reconnect { probe, cause } => {
                self.metrics.count_reconnect(&probe, region, cause.as_str());
            }
            Event::NextRun { probe, at } => {
                self.liveness.due(&probe, self.clock.instant_at(at));
                self.status.set_next_run(&probe, at);
            }
        }
    }
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    fn start(
        plan: &Plan,
        runner: Arc<dyn Runner>,
        clock: Clock,
        metrics: &Metrics,
        status: &Arc<Status>,
        tasks: &Supervisor,
        carried: Carried,
    ) -> Engine {
        let Carried {
            mut alerts,
            mut outbox,
            store,
            removed,
        } = carried;
        let region = plan.region.clone();
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        for p in &plan.probes {
            match &p.resident {
                Some(r) => {
                    metrics.register_probe(&p.name, &region, Some(r.every));
                    metrics.register_resident(&p.name, &region);
                }
                None => metrics.register_probe(
                    &p.name,
                    &region,
                    p.schedule.min_interval(clock.now(), 60),
                ),
            }
        }
        let names: Vec<(String, String)> = plan
            .probes
            .iter()
            .map(|p| (p.name.clone(), p.schedule.expr.clone()))
            .collect();
        status.set_probes(&names);
        status.set_page_config(crate::status::PageConfig {
            status_url: plan.status_url.clone(),
            dashboard_url: plan.dashboard_url.clone(),
            peers: plan.peers.clone(),
        });
        let (events_tx, events_rx) = mpsc::channel::<Event>(256);
        let scheduler = Scheduler::spawn_supervised(
            &plan.probes,
            &region,
            clock,
            runner,
            events_tx,
            stop.clone(),
            &tracker,
            tasks,
        );
        tracker.close();

        let (dispatch_stop, dispatch_stop_rx) = tokio::sync::watch::channel(false);
        let sinks: Vec<String> = plan.pagers.iter().map(|p| p.name.clone()).collect();
        let requeue = alerts.reconcile(&mut outbox, &sinks, clock.now());
        let dispatcher = Dispatcher::start_with(
            plan.pagers.clone(),
            outbox,
            store,
            metrics.clone(),
            clock,
            dispatch_stop_rx,
            tasks,
        );
        // The scheduler's liveness: fed by the consumer below, read by the heartbeats and the
        // Alertmanager watchdog, so a stuck scheduler stops both.
        let liveness = Liveness::new(crate::heartbeat::STALL_AFTER);
        dispatcher.watch_liveness(liveness.clone());
        let heartbeats_stop = CancellationToken::new();
        let heartbeats = plan
            .heartbeats
            .iter()
            .filter_map(|hb| match crate::heartbeat::http_pinger(hb) {
                Ok(ping) => {
                    let (hb, liveness, metrics, stop) = (
                        hb.clone(),
                        liveness.clone(),
                        metrics.clone(),
                        heartbeats_stop.clone(),
                    );
                    Some(tasks.spawn(
                        Task::Heartbeat,
                        format!("heartbeat {}", hb.name),
                        true,
                        heartbeats_stop.clone(),
                        move || {
                            crate::heartbeat::run(
                                hb.clone(),
                                ping.clone(),
                                liveness.clone(),
                                metrics.clone(),
                                stop.clone(),
                            )
                        },
                    ))
                }
                Err(e) => {
                    tracing::error!(heartbeat = %hb.name, error = %e, "heartbeat cannot send");
                    None
                }
            })
            .collect();
        status.set_pagers(plan.pagers.len());
        for (n, pagers) in removed {
            dispatcher.send(n, pagers.as_deref());
        }
        for (n, pagers) in requeue {
            dispatcher.send(n, Some(&pagers));
        }
        if plan.pagers.is_empty() {
            tracing::warn!(region = %region, "{}", crate::status::NO_PAGER);
        }
        for n in crate::alert::limit_notes(plan) {
            tracing::warn!(region = %region, note = %n, "a pager will cut or hash this to fit its provider's limits");
        }
        for probe in plan.probes.iter().map(|p| p.name.clone()) {
            publish_alerts(&alerts, &probe, &region, metrics, status);
        }

        let mut ticker = tokio::time::interval(ALERT_TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let consuming = Arc::new(tokio::sync::Mutex::new(Some(Consumer {
            alerts,
            dispatcher,
            scheduler,
            events: events_rx,
            ticker,
            liveness,
            clock,
            region,
            metrics: metrics.clone(),
            status: status.clone(),
        })));
        let shared = consuming.clone();
        // Ends normally when the channel closes, which only happens once `stop` is cancelled.
        let consumer = tasks.spawn(
            Task::Consumer,
            "run consumer",
            true,
            stop.clone(),
            move || {
                let shared = shared.clone();
                async move {
                    if let Some(c) = shared.lock().await.as_mut() {
                        c.run().await;
                    }
                }
            },
        );
        Engine {
            stop,
            heartbeats_stop,
            heartbeats,
            tracker,
            consumer,
            consuming,
            dispatch_stop,
        }
    }

    /// Stops scheduling, lets runs in flight finish (each bounded by its deadline), drains
    /// their results, then gives the pagers one bounded flush; what is left stays in the outbox.
    async fn stop(self, status: &Status) -> (AlertEngine, Outbox) {
        status.set_ready(false);
        self.heartbeats_stop.cancel();
        for h in self.heartbeats {
            let _ = h.await;
        }
        self.stop.cancel();
        self.tracker.wait().await;
        // Every event sender is gone once the tracked tasks end, so the consumer drains and
        // returns; its state is handed on even if it failed while draining.
        let _ = self.consumer.await;
        let Some(Consumer {
            alerts, dispatcher, ..
        }) = self.consuming.lock().await.take()
        else {
            unreachable!("only stop takes the consumer's state, once");
        };
        let _ = self.dispatch_stop.send(true);
        let outbox = dispatcher.shutdown().await;
        (alerts, outbox)
    }
}

/// Carries out one policy decision: a page to the probe's pagers, or a confirmation run.
fn act(
    decision: Decision,
    probe: &str,
    alerts: &AlertEngine,
    dispatcher: &Dispatcher,
    scheduler: &Scheduler,
) {
    match decision {
        Decision::Notify(n) => {
            tracing::warn!(
                probe = %n.probe,
                region = %n.region,
                event = n.kind.as_str(),
                severity = n.severity.as_str(),
                reminder = n.reminder,
                summary = %n.summary,
                "alert"
            );
            dispatcher.send(*n, alerts.pagers(probe));
        }
        Decision::Confirm(delay) => {
            tracing::info!(
                probe,
                delay_ms = delay.as_millis() as u64,
                "failure or recovery seen; confirming with an extra run"
            );
            scheduler.confirm(probe, delay);
        }
    }
}

/// Mirrors a probe's open alerts into `probe_alert_firing` and the status output.
fn publish_alerts(
    alerts: &AlertEngine,
    probe: &str,
    region: &str,
    metrics: &Metrics,
    status: &Status,
) {
    let open = alerts.open(probe);
    let firing = [Severity::Critical, Severity::Warning]
        .map(|severity| (severity.as_str(), open.iter().any(|(s, _)| *s == severity)));
    metrics.set_alert_firing(probe, region, &firing);
    status.set_alerts(
        probe,
        open.iter()
            .map(|(severity, a)| AlertView {
                severity: *severity,
                dedup_key: a.dedup_key.clone(),
                since: a.since,
                summary: a.last.summary.clone(),
            })
            .collect(),
    );
}

fn log_run(run: &crate::report::ProbeRun) {
    let ms = run.duration_ms.as_secs_f64() * 1000.0;
    if run.success {
        tracing::info!(probe = %run.probe, region = %run.region, duration_ms = ms, trigger = run.trigger.as_str(), "probe run succeeded");
    } else {
        tracing::warn!(
            probe = %run.probe,
            region = %run.region,
            duration_ms = ms,
            trigger = run.trigger.as_str(),
            step = run.failed_step.as_deref().unwrap_or(""),
            reason = run.reason.map(|r| r.as_str()).unwrap_or(""),
            error = run.error.as_deref().unwrap_or(""),
            "probe run failed"
        );
    }
}
