//! `joincanary run`: the scheduler, the HTTP server and the run consumer wired together, with a
//! shutdown that lets in-flight runs finish (mini-redis style: one signal, tracked tasks). This
//! file only wires: one run's data goes scheduler -> flow -> `ProbeRun` -> the consumer
//! ([`crate::consumer`]: metrics, status, alert policy) -> dispatcher; a reload replaces the
//! [`Engine`] that carries that road, and the HTTP side and the state log outlive it.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::alert::dispatch::Outbox;
use crate::alert::engine::AlertEngine;
use crate::alert::{Dispatcher, Notification};
use crate::clock::Clock;
use crate::config::Plan;
use crate::consumer::{self, Consumer};
use crate::event::Event;
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::reload::Reloads;
use crate::scheduler::{Runner, Scheduler};
use crate::status::Status;
use crate::store::Store;
use crate::supervise::{Supervisor, Task};

/// How long shutdown waits for the state log to reach the disk.
const STATE_FLUSH: Duration = Duration::from_secs(2);

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
        status: Arc::new(Status::new(&plan.region).with_clock(clock)),
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
    let connections =
        crate::web::ConnectionMetrics::register(&metrics.registry, &plan.region, &plan.web_limits)
            .map_err(crate::metrics::MetricsError::from)?;
    let history = start_history(&plan, &status, &metrics, &tasks);
    let (mut reloads, reload_tx) = Reloads::new(reload, &plan, &tasks).await;
    let wiring = Wiring {
        runner,
        clock,
        metrics,
        status,
        tasks,
    };
    // Alert state and the outbox live for the whole process: memory is authoritative (a disk
    // that fails loses nothing while the process runs), the state log follows it.
    let (store, carried) = open_state(&plan, clock, &wiring.metrics, &wiring.tasks);
    // The engine first, so the very first scrape already has every pre-created series.
    let mut engine = Engine::start(&plan, &wiring, carried);
    let (http, listen) = start_http(listener, &plan, &wiring, reload_tx, connections);
    wiring.status.set_ready(true);
    // Logged once ready: whoever waits for this line (a supervisor, a test) finds /readyz 200.
    tracing::info!(region = %plan.region, probes = plan.probes.len(), listen = %listen, "joincanary running");
    let mut plan = plan;
    while let Some(request) = reloads.next(&shutdown, &plan).await {
        let Some(loaded) = reloads.load(&shutdown, &plan, &wiring.tasks).await else {
            break;
        };
        let outcome = match loaded {
            Ok(new_plan) => {
                (plan, engine) = reload_engine(plan, new_plan, engine, &wiring, &store).await;
                reloads.loaded(&plan).await;
                Ok(())
            }
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!(region = %plan.region, error = %e, "reload refused; the running configuration stays");
                }
                wiring.metrics.count_reload(false);
                Err(errors.to_string())
            }
        };
        if let Some(reply) = request {
            let _ = reply.send(outcome);
        }
    }
    shut_down(&plan.region, engine, store, history, http, &wiring.status).await;
    Ok(())
}

/// What every engine is started with: it outlives reloads.
struct Wiring {
    runner: Arc<dyn Runner>,
    clock: Clock,
    metrics: Metrics,
    status: Arc<Status>,
    tasks: Supervisor,
}

/// A long-lived task of the service and what stops it.
struct Background {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The page's history survives a restart: read back (into the status and the metrics), and
/// saved by a task of its own, off the probe path.
fn start_history(
    plan: &Plan,
    status: &Arc<Status>,
    metrics: &Metrics,
    tasks: &Supervisor,
) -> Background {
    let history_path = plan.state_dir.join(crate::status::HISTORY_FILE);
    if status.restore(&history_path).is_err() {
        metrics.count_state_read_error(crate::status::HISTORY_FILE);
    }
    restore_metrics(plan, status, metrics);
    let stop = CancellationToken::new();
    let task = {
        let (status, stop, metrics) = (status.clone(), stop.clone(), metrics.clone());
        tasks.spawn(Task::History, "history", true, stop.clone(), move || {
            let metrics = metrics.clone();
            status.persist(history_path.clone(), stop.clone(), move |failing| {
                metrics.set_state_write_failing(crate::status::HISTORY_FILE, failing);
            })
        })
    };
    Background { stop, task }
}

/// The state log's writer thread, as `/-/ready` and the log name it.
const STATE_WRITER: &str = "state log writer";

/// Opens the state log: the alert engine and the outbox it holds, to hand to the first engine.
fn open_state(
    plan: &Plan,
    clock: Clock,
    metrics: &Metrics,
    tasks: &Supervisor,
) -> (Store, Carried) {
    let (store, loaded) = crate::alert::engine::open_store(&plan.state_dir);
    if loaded.unreadable.is_some() || loaded.damaged > 0 {
        metrics.count_state_read_error(crate::alert::engine::STATE_LOG);
    }
    let m = metrics.clone();
    store.on_health(move |failing| {
        m.set_state_write_failing(crate::alert::engine::STATE_LOG, failing);
    });
    // The writer is a thread of its own: a batch that panics is caught there and reported
    // here, as the `history` task (the state writers), until a write works again.
    let tasks = tasks.clone();
    store.on_panic(move |why| match why {
        Some(why) => tasks.failed(Task::History, STATE_WRITER, why, true),
        None => tasks.recovered(STATE_WRITER),
    });
    let alerts = AlertEngine::new(&plan.alerts(), store.clone(), &loaded, clock.now());
    let outbox = Outbox::from_loaded(&loaded);
    let carried = Carried {
        alerts,
        outbox,
        store: store.clone(),
        removed: Vec::new(),
    };
    (store, carried)
}

/// The HTTP side lives for the whole process (a reload replaces only the engine). Returns its
/// task and the bound address, not the configured one: with port 0 this is how a caller
/// learns it.
fn start_http(
    listener: TcpListener,
    plan: &Plan,
    wiring: &Wiring,
    reload_tx: Option<mpsc::Sender<ReloadRequest>>,
    connections: crate::web::ConnectionMetrics,
) -> (Background, String) {
    let stop = CancellationToken::new();
    let listen = listener
        .local_addr()
        .map_or_else(|_| plan.listen.to_string(), |a| a.to_string());
    let app = crate::server::router(
        wiring.metrics.clone(),
        wiring.status.clone(),
        reload_tx,
        wiring.tasks.clone(),
    );
    // `--web.config.file`: basic auth on every path and TLS on the listener.
    let web = plan.web.clone();
    let app = match &web {
        Some(w) => w.protect(app),
        None => app,
    };
    let limits = plan.web_limits;
    // Shared, so a restarted listener task accepts on the same socket.
    let listener = Arc::new(listener);
    let task = {
        let stop = stop.clone();
        wiring
            .tasks
            .spawn(Task::Http, "http listener", true, stop.clone(), move || {
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
            })
    };
    (Background { stop, task }, listen)
}

/// Replaces the engine with one for `new_plan` once the runs in flight finish, carrying the
/// alert state and the outbox over. `listen`, `region` and `state_dir` stay as they were.
async fn reload_engine(
    plan: Plan,
    new_plan: Plan,
    engine: Engine,
    wiring: &Wiring,
    store: &Store,
) -> (Plan, Engine) {
    let region = &plan.region;
    if new_plan.listen != plan.listen
        || new_plan.region != plan.region
        || new_plan.state_dir != plan.state_dir
    {
        tracing::warn!(region = %region, "`listen`, `region` and `state_dir` take effect at the next restart");
    }
    tracing::info!(region = %region, probes = new_plan.probes.len(), "configuration reloaded; restarting the scheduler");
    let (mut alerts, outbox) = engine.stop(&wiring.status).await;
    let plan = Plan {
        listen: plan.listen,
        region: plan.region.clone(),
        state_dir: plan.state_dir.clone(),
        ..new_plan
    };
    let removed = alerts.configure(&plan.alerts(), wiring.clock.now());
    let engine = Engine::start(
        &plan,
        wiring,
        Carried {
            alerts,
            outbox,
            store: store.clone(),
            removed,
        },
    );
    wiring.status.set_ready(true);
    wiring.metrics.count_reload(true);
    (plan, engine)
}

/// Stops the engine (in-flight runs finish), writes the state log (bounded: a hung or full
/// disk must not hold up SIGTERM), then the history and the HTTP side.
async fn shut_down(
    region: &str,
    engine: Engine,
    store: Store,
    history: Background,
    http: Background,
    status: &Status,
) {
    tracing::info!(region = %region, "shutting down: no new runs; waiting for runs in flight");
    engine.stop(status).await;
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
    history.stop.cancel();
    let _ = history.task.await;
    http.stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), http.task).await;
    tracing::info!(region = %region, "stopped");
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

pub use crate::reload::Reload;
pub use crate::server::ReloadRequest;

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
    heartbeats: Heartbeats,
    tracker: TaskTracker,
    consumer: consumer::Consuming,
    dispatch_stop: tokio::sync::watch::Sender<bool>,
}

impl Engine {
    /// Wires one run's road for `plan`: scheduler -> flow -> `ProbeRun` -> the consumer
    /// (metrics, status, alert policy) -> dispatcher -> pagers.
    fn start(plan: &Plan, wiring: &Wiring, carried: Carried) -> Engine {
        let Carried {
            mut alerts,
            mut outbox,
            store,
            removed,
        } = carried;
        let Wiring {
            runner,
            clock,
            metrics,
            status,
            tasks,
        } = wiring;
        let region = plan.region.clone();
        register_probes(plan, *clock, metrics, status);
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (events_tx, events_rx) = mpsc::channel::<Event>(256);
        let scheduler = Scheduler::spawn_supervised(
            &plan.probes,
            &region,
            *clock,
            runner.clone(),
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
            *clock,
            dispatch_stop_rx,
            tasks,
        );
        // The scheduler's liveness: fed by the consumer below, read by the heartbeats and the
        // Alertmanager watchdog, so a stuck scheduler stops both.
        let liveness = Liveness::new(crate::liveness::STALL_AFTER);
        dispatcher.watch_liveness(liveness.clone());
        let heartbeats = start_heartbeats(plan, &liveness, metrics, *clock, tasks);
        status.set_pagers(plan.pagers.len());
        for (n, pagers) in removed {
            dispatcher.send(n, pagers.as_deref());
        }
        for (n, pagers) in requeue {
            dispatcher.send(n, Some(&pagers));
        }
        warn_pagers(plan, metrics, clock.now());
        for probe in plan.probes.iter().map(|p| p.name.clone()) {
            consumer::publish_alerts(&alerts, &probe, &region, metrics, status);
        }

        let consumer = consumer::spawn(
            Consumer {
                alerts,
                dispatcher,
                scheduler,
                events: events_rx,
                ticker: consumer::ticker(),
                liveness,
                clock: *clock,
                region,
                metrics: metrics.clone(),
                status: status.clone(),
                stop: stop.clone(),
            },
            tasks,
            stop.clone(),
        );
        Engine {
            stop,
            heartbeats,
            tracker,
            consumer,
            dispatch_stop,
        }
    }

    /// Stops scheduling, lets runs in flight finish (each bounded by its deadline), drains
    /// their results, then gives the pagers one bounded flush; what is left stays in the outbox.
    async fn stop(self, status: &Status) -> (AlertEngine, Outbox) {
        status.set_ready(false);
        self.heartbeats.stop.cancel();
        for h in self.heartbeats.tasks {
            let _ = h.await;
        }
        self.stop.cancel();
        self.tracker.wait().await;
        // Every event sender is gone once the tracked tasks end, so the consumer drains and
        // returns.
        let (alerts, dispatcher) = self.consumer.finish().await;
        let _ = self.dispatch_stop.send(true);
        let outbox = dispatcher.shutdown().await;
        (alerts, outbox)
    }
}

/// Every probe's series at zero (so `rate()` and `absent()` work from the first scrape), and
/// the probes and page settings into the status.
fn register_probes(plan: &Plan, clock: Clock, metrics: &Metrics, status: &Status) {
    for p in &plan.probes {
        match &p.resident {
            Some(r) => {
                metrics.register_probe(&p.name, &plan.region, Some(r.every));
                metrics.register_resident(&p.name, &plan.region);
            }
            None => metrics.register_probe(
                &p.name,
                &plan.region,
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
}

/// The heartbeat tasks of an engine, and what stops them.
struct Heartbeats {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// One supervised task per `[[heartbeat]]` that can send, pinging while `liveness` says the
/// scheduler is healthy.
fn start_heartbeats(
    plan: &Plan,
    liveness: &Liveness,
    metrics: &Metrics,
    clock: Clock,
    tasks: &Supervisor,
) -> Heartbeats {
    let stop = CancellationToken::new();
    let handles = plan
        .heartbeats
        .iter()
        .filter_map(|hb| match crate::heartbeat::http_pinger(hb) {
            Ok(ping) => {
                let (hb, liveness, metrics, stop) =
                    (hb.clone(), liveness.clone(), metrics.clone(), stop.clone());
                Some(tasks.spawn(
                    Task::Heartbeat,
                    format!("heartbeat {}", hb.name),
                    true,
                    stop.clone(),
                    move || {
                        crate::heartbeat::run(
                            hb.clone(),
                            ping.clone(),
                            liveness.clone(),
                            metrics.clone(),
                            clock,
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
    Heartbeats {
        stop,
        tasks: handles,
    }
}

/// Says at start and at every reload what the pagers cannot do: none configured, a probe that
/// would page nobody ([`Plan::quiet`], its maintenance windows judged at `now` on the service's
/// clock, as the alert policy judges them), or a field a provider will cut or hash to fit its
/// limits.
fn warn_pagers(plan: &Plan, metrics: &Metrics, now: chrono::DateTime<chrono::Utc>) {
    if plan.pagers.is_empty() {
        tracing::warn!(region = %plan.region, "{}", crate::status::NO_PAGER);
    }
    let quiet = plan.quiet(now);
    for q in &quiet {
        tracing::warn!(region = %plan.region, "{}", q.message);
    }
    let nobody = quiet.iter().filter(|q| q.pages_nobody).count();
    metrics
        .probes_paging_nobody
        .set(i64::try_from(nobody).unwrap_or(i64::MAX));
    for n in crate::alert::limit_notes(&plan.alerts(), &plan.pagers) {
        tracing::warn!(region = %plan.region, note = %n, "a pager will cut or hash this to fit its provider's limits");
    }
}
