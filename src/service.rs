//! `joincanary run`: the scheduler, the HTTP server and the run consumer wired together, with a
//! shutdown that lets in-flight runs finish (mini-redis style: one signal, tracked tasks).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::Plan;
use crate::metrics::Metrics;
use crate::scheduler::{Event, Runner, Scheduler};
use crate::status::Status;

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
    let Handles { metrics, status } = handles;
    let region = plan.region.clone();

    let http_stop = CancellationToken::new();
    let app = crate::server::router(metrics.clone(), status.clone());
    let http_stop_wait = http_stop.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_stop_wait.cancelled().await })
            .await
    });

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

    let consumer = {
        let metrics = metrics.clone();
        let status = status.clone();
        let region = region.clone();
        let _scheduler = scheduler.clone();
        tokio::spawn(async move {
            while let Some(event) = events_rx.recv().await {
                match event {
                    Event::Run { run, lag } => {
                        log_run(&run);
                        metrics.record(&run, lag);
                        status.record(&run);
                    }
                    Event::Skipped { probe } => {
                        metrics.record_skip(&probe, &region, "overlap");
                        status.record_skip(&probe);
                    }
                    Event::NextRun { probe, at } => status.set_next_run(&probe, at),
                }
            }
        })
    };

    shutdown.cancelled().await;
    tracing::info!(region = %region, "shutting down: no new runs; waiting for runs in flight");
    status.set_ready(false);
    tracker.wait().await;
    drop(scheduler);
    // Every sender is gone once the tracked tasks end, so the consumer drains and stops.
    let _ = consumer.await;
    http_stop.cancel();
    match tokio::time::timeout(Duration::from_secs(5), http).await {
        Ok(Ok(Err(e))) => return Err(ServiceError::Serve(e)),
        Ok(_) | Err(_) => {}
    }
    tracing::info!(region = %region, "stopped");
    Ok(())
}

fn log_run(run: &crate::report::ProbeRun) {
    let ms = run.duration_ms.as_secs_f64() * 1000.0;
    if run.success {
        tracing::info!(probe = %run.probe, region = %run.region, duration_ms = ms, trigger = ?run.trigger, "probe run succeeded");
    } else {
        tracing::warn!(
            probe = %run.probe,
            region = %run.region,
            duration_ms = ms,
            trigger = ?run.trigger,
            step = run.failed_step.as_deref().unwrap_or(""),
            reason = run.reason.map(|r| r.as_str()).unwrap_or(""),
            error = run.error.as_deref().unwrap_or(""),
            "probe run failed"
        );
    }
}
