//! The HTTP face of the service: `/metrics`, `/healthz` and `/readyz` (also as `/-/healthy` and
//! `/-/ready`, the Prometheus spellings), `/api/v1/status`, and the status page at `/`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::status::Status;
use crate::supervise::{Supervisor, Task};

/// A reload request (`POST /-/reload`, SIGHUP): answered with `Ok` or the config errors. Defined
/// here, where requests are made, so the server never imports the service that wires it.
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    status: Arc<Status>,
    reload: Option<mpsc::Sender<ReloadRequest>>,
    fleet: Arc<crate::fleet::Fleet>,
    /// The service's clock (the one `status` was built with): what "now" is on the page.
    clock: crate::clock::Clock,
    /// Failing tasks hold `/-/ready` at 503; a handler that panics is counted here.
    tasks: Supervisor,
}

/// The router, for `axum::serve`. `reload`, when given, serves `POST /-/reload` (the
/// Prometheus convention).
pub fn router(
    metrics: Metrics,
    status: Arc<Status>,
    reload: Option<mpsc::Sender<ReloadRequest>>,
    tasks: Supervisor,
) -> Router {
    let state = AppState::new(metrics, status, reload, tasks);
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthy))
        .route("/readyz", get(ready))
        // The Prometheus spellings, for tooling that expects them.
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/api/v1/status", get(status_json))
        .route("/-/reload", post(reload_handler))
        .route("/", get(page))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            catch_panics,
        ))
        .with_state(state)
}

impl AppState {
    /// Time is read from the clock `status` holds, the service's, so the page, the peers'
    /// fetches and the status document agree on "now" (and follow a paused clock in tests).
    fn new(
        metrics: Metrics,
        status: Arc<Status>,
        reload: Option<mpsc::Sender<ReloadRequest>>,
        tasks: Supervisor,
    ) -> AppState {
        let clock = status.clock();
        AppState {
            metrics,
            status,
            reload,
            fleet: Arc::new(crate::fleet::Fleet::new(clock)),
            clock,
            tasks,
        }
    }
}

/// A handler that panics answers 500 and is logged and counted (`task="http"`), instead of
/// leaving its client without an answer; the listener and every other request go on.
async fn catch_panics(
    State(s): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use futures_util::FutureExt as _;
    let path = request.uri().path().to_string();
    match std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(panic) => {
            let why = format!(
                "panicked serving {path}: {}",
                crate::supervise::panic_message(panic.as_ref())
            );
            // Not held as failing: the next request is served as usual.
            s.tasks.failed(Task::Http, "http", &why, true);
            s.tasks.recovered("http");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error (logged)\n",
            )
                .into_response()
        }
    }
}

/// Reloads the configuration; answers once the new one runs (200) or was refused (400 with
/// the errors, which name files and lines but never values).
async fn reload_handler(State(s): State<AppState>) -> Response {
    let Some(tx) = s.reload else {
        return (StatusCode::NOT_IMPLEMENTED, "this instance cannot reload\n").into_response();
    };
    let (reply, answer) = oneshot::channel();
    if tx.send(reply).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match answer.await {
        Ok(Ok(())) => (StatusCode::OK, "reloaded\n").into_response(),
        Ok(Err(errors)) => (StatusCode::BAD_REQUEST, format!("{errors}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

async fn metrics_handler(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        // Streamed chunk by chunk: a 1,000-probe scrape is ~6 MB of text.
        axum::body::Body::from_stream(futures_util::stream::iter(
            s.metrics
                .exposition()
                .map(Ok::<_, std::convert::Infallible>),
        )),
    )
        .into_response()
}

async fn healthy() -> &'static str {
    "ok\n"
}

async fn ready(State(s): State<AppState>) -> Response {
    let failing = s.tasks.health().failing();
    if !failing.is_empty() {
        // A task that stopped doing its part (recording runs, paging, saving) is not ready,
        // and says which: the alert JoinCanaryTaskFailing fires beside it.
        let mut body = String::from("not ready: a supervised task failed\n");
        for line in failing {
            body.push_str(&line);
            body.push('\n');
        }
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    if s.status.is_ready() {
        // Still 200: readiness gates traffic to /metrics, and a prober without a pager still
        // measures and exports; the body says plainly that it cannot page.
        let body = if s.status.pagers() == 0 {
            format!("ready; {}\n", crate::status::NO_PAGER)
        } else {
            "ready\n".to_string()
        };
        (StatusCode::OK, body).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// This prober's document: the status, with each pager's delivery health, its times on the
/// system clock as it reads now ([`crate::status::StatusDoc::on_system`]).
fn doc(s: &AppState) -> crate::status::StatusDoc {
    let mut doc = s.status.doc();
    doc.delivery = s.metrics.delivery.snapshot();
    doc.on_system(s.clock.offset())
}

async fn status_json(State(s): State<AppState>) -> Response {
    axum::Json(doc(&s)).into_response()
}

/// The fleet page: this prober and its peers (fetched under a short deadline, cached briefly).
async fn page(State(s): State<AppState>) -> Html<String> {
    let peers = s.status.page_config().peers;
    let views = s.fleet.views(&peers).await;
    Html(crate::page::render(&doc(&s), &views, s.clock.system_now()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone as _;

    use super::*;
    use crate::clock::Clock;

    /// The page says when it was rendered, by the service's clock: a fixed date here, moved
    /// by tokio's paused clock, never the host's; on the (simulated) system clock once that
    /// is stepped.
    #[tokio::test(start_paused = true)]
    async fn the_page_is_rendered_at_the_service_clock() {
        let t0 = chrono::Utc
            .with_ymd_and_hms(2026, 3, 1, 12, 34, 56)
            .unwrap();
        let clock = Clock::starting_at(t0);
        let status = Arc::new(Status::new("eu").with_clock(clock));
        let metrics = Metrics::new("eu").unwrap().with_clock(clock);
        let s = AppState::new(metrics, status, None, Supervisor::detached("eu"));
        let Html(html) = page(State(s.clone())).await;
        assert!(html.contains("at 2026-03-01 12:34:56 UTC"), "{html}");
        tokio::time::advance(Duration::from_secs(90)).await;
        let Html(html) = page(State(s.clone())).await;
        assert!(html.contains("at 2026-03-01 12:36:26 UTC"), "{html}");
        // The host's clock stepped an hour ahead: the page reads the system clock's time.
        clock.step_system(chrono::TimeDelta::hours(1));
        let Html(html) = page(State(s)).await;
        assert!(html.contains("at 2026-03-01 13:36:26 UTC"), "{html}");
    }
}
