//! `joincanary run`: the scheduler, the HTTP server and the run consumer wired together, with a
//! shutdown that lets in-flight runs finish (mini-redis style: one signal, tracked tasks).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::alert::engine::AlertEngine;
use crate::alert::policy::Decision;
use crate::alert::{Dispatcher, Severity};
use crate::clock::Clock;
use crate::config::Plan;
use crate::metrics::Metrics;
use crate::scheduler::{Event, Runner, Scheduler};
use crate::status::{AlertView, Status};

/// How often reminders and maintenance-held triggers are looked at.
const ALERT_TICK: Duration = Duration::from_secs(5);

/// Why the service could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("cannot serve HTTP: {0}")]
    Serve(std::io::Error),
}

/// The parts a caller (CLI, demo, tests) may want to look at while the service runs.
#[derive(Clone)]
pub struct Handles {
    pub metrics: Metrics,
    pub status: Arc<Status>,
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
    let handles = handles(&plan)?;
    serve_with(plan, listener, runner, clock, shutdown, handles).await
}

/// Builds metrics and status for `plan` (exposed so callers can watch them).
///
/// # Errors
/// Metrics registration failing.
pub fn handles(plan: &Plan) -> Result<Handles, ServiceError> {
    let metrics = Metrics::new(&plan.region)?;
    let probes: Vec<(String, String)> = plan
        .probes
        .iter()
        .map(|p| (p.name.clone(), p.schedule.expr.clone()))
        .collect();
    for p in &plan.probes {
        metrics.register_probe(&p.name, &plan.region);
    }
    Ok(Handles {
        metrics,
        status: Arc::new(Status::new(&plan.region, &probes)),
    })
}

/// [`serve`] with caller-made handles.
///
/// # Errors
/// The HTTP listener failing.
pub async fn serve_with(
    plan: Plan,
    listener: TcpListener,
    runner: Arc<dyn Runner>,
    clock: Clock,
    shutdown: CancellationToken,
    handles: Handles,
) -> Result<(), ServiceError> {
    // Every log line of the service, in every task it spawns, carries the region.
    let span = tracing::info_span!("joincanary", region = %plan.region);
    serve_in_span(plan, listener, runner, clock, shutdown, handles)
        .instrument(span)
        .await
}

async fn serve_in_span(
    plan: Plan,
    listener: TcpListener,
    runner: Arc<dyn Runner>,
    clock: Clock,
    shutdown: CancellationToken,
    handles: Handles,
) -> Result<(), ServiceError> {
    let Handles { metrics, status } = handles;
    let region = plan.region.clone();

    let http_stop = CancellationToken::new();
    let app = crate::server::router(metrics.clone(), status.clone());
    let http_stop_wait = http_stop.clone();
    let http = tokio::spawn(
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { http_stop_wait.cancelled().await })
                .await
        }
        .in_current_span(),
    );

    let tracker = TaskTracker::new();
    let (events_tx, mut events_rx) = mpsc::channel::<Event>(256);
    let scheduler = Scheduler::spawn(
        &plan.probes,
        &region,
        clock,
        runner,
        events_tx,
        shutdown.clone(),
        &tracker,
    );
    tracker.close();
    status.set_ready(true);
    tracing::info!(region = %region, probes = plan.probes.len(), listen = %plan.listen, "joincanary running");

    let (dispatch_stop_tx, dispatch_stop_rx) = tokio::sync::watch::channel(false);
    let dispatcher = Dispatcher::start(
        plan.pagers.clone(),
        &plan.state_dir,
        metrics.notifications.clone(),
        dispatch_stop_rx,
    );
    if plan.pagers.is_empty() {
        tracing::warn!(region = %region, "no [[pager]] configured: alerts show only in metrics and status");
    }
    let mut alerts = AlertEngine::load(&plan);
    for probe in plan.probes.iter().map(|p| p.name.clone()) {
        publish_alerts(&alerts, &probe, &region, &metrics, &status);
    }

    let consumer = {
        let metrics = metrics.clone();
        let status = status.clone();
        let region = region.clone();
        let scheduler = scheduler.clone();
        tokio::spawn(
            async move {
                let mut ticker = tokio::time::interval(ALERT_TICK);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    let event = tokio::select! {
                        e = events_rx.recv() => match e {
                            Some(e) => e,
                            None => break,
                        },
                        _ = ticker.tick() => {
                            for (probe, decision) in alerts.tick(clock.now()) {
                                act(decision, &probe, &alerts, &dispatcher, &scheduler);
                                publish_alerts(&alerts, &probe, &region, &metrics, &status);
                            }
                            continue;
                        }
                    };
                    match event {
                        Event::Run { run, lag } => {
                            log_run(&run);
                            metrics.record(&run, lag);
                            status.record(&run);
                            for decision in alerts.observe(&run, clock.now()) {
                                act(decision, &run.probe, &alerts, &dispatcher, &scheduler);
                            }
                            publish_alerts(&alerts, &run.probe, &region, &metrics, &status);
                        }
                        Event::Skipped { probe } => {
                            metrics.record_skip(&probe, &region, "overlap");
                            status.record_skip(&probe);
                        }
                        Event::NextRun { probe, at } => status.set_next_run(&probe, at),
                    }
                }
                dispatcher
            }
            .in_current_span(),
        )
    };

    shutdown.cancelled().await;
    tracing::info!(region = %region, "shutting down: no new runs; waiting for runs in flight");
    status.set_ready(false);
    tracker.wait().await;
    drop(scheduler);
    // Every sender is gone once the tracked tasks end, so the consumer drains and stops; then
    // the pagers get one bounded flush and whatever is left waits in the outbox.
    if let Ok(dispatcher) = consumer.await {
        let _ = dispatch_stop_tx.send(true);
        dispatcher.shutdown().await;
    }
    http_stop.cancel();
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), http).await {
        return Err(ServiceError::Serve(e));
    }
    tracing::info!(region = %region, "stopped");
    Ok(())
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
    for severity in [Severity::Critical, Severity::Warning] {
        let firing = open.iter().any(|(s, _)| *s == severity);
        metrics
            .alert_firing
            .with_label_values(&[probe, region, severity.as_str()])
            .set(i64::from(firing));
    }
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
