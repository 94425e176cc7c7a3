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
use crate::report::human_duration;
use crate::service::ReloadRequest;
use crate::status::Status;

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    status: Arc<Status>,
    reload: Option<mpsc::Sender<ReloadRequest>>,
}

/// The router, for `axum::serve`. `reload`, when given, serves `POST /-/reload` (the
/// Prometheus convention).
pub fn router(
    metrics: Metrics,
    status: Arc<Status>,
    reload: Option<mpsc::Sender<ReloadRequest>>,
) -> Router {
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
        .with_state(AppState {
            metrics,
            status,
            reload,
        })
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
        s.metrics.render(),
    )
        .into_response()
}

async fn healthy() -> &'static str {
    "ok\n"
}

async fn ready(State(s): State<AppState>) -> Response {
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

async fn status_json(State(s): State<AppState>) -> Response {
    axum::Json(s.status.to_json()).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A page a person can read at 3 a.m.: each probe's state, failing step and recent history.
async fn page(State(s): State<AppState>) -> Html<String> {
    let mut rows = String::new();
    for p in s.status.snapshot() {
        let (state, detail) = match &p.last {
            None => ("pending".to_string(), String::new()),
            Some(run) if run.success => ("ok".to_string(), human_duration(run.duration_ms)),
            Some(run) => (
                "FAILING".to_string(),
                format!(
                    "step \"{}\" {}: {}",
                    run.failed_step.as_deref().unwrap_or("?"),
                    run.reason.map(|r| r.as_str()).unwrap_or("?"),
                    run.error.as_deref().unwrap_or("")
                ),
            ),
        };
        let history: String = p
            .history
            .iter()
            .rev()
            .map(|h| if h.success { '▪' } else { '✗' })
            .collect();
        let alerts: Vec<String> = p
            .alerts
            .iter()
            .map(|a| {
                format!(
                    "{} since {}",
                    a.severity.as_str(),
                    a.since.format("%H:%M:%S")
                )
            })
            .collect();
        rows.push_str(&format!(
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            if state == "FAILING" { "bad" } else { "good" },
            escape(&p.probe),
            escape(&state),
            escape(&detail),
            escape(&history),
            escape(&alerts.join(", ")),
            p.next_run.map(|t| t.format("%H:%M:%S").to_string()).unwrap_or_default(),
        ));
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\">\
         <title>joincanary {region}</title><style>body{{font-family:sans-serif}}td,th{{padding:4px 10px;text-align:left}}\
         .bad td{{background:#fdd}}</style></head><body><h1>joincanary — {region}</h1>\
         <table><tr><th>probe</th><th>state</th><th>detail</th><th>last 60 runs (oldest first)</th><th>alerts</th><th>next run (UTC)</th></tr>\n{rows}</table>\
         <p><a href=\"/api/v1/status\">status JSON</a> · <a href=\"/metrics\">metrics</a></p></body></html>",
        region = escape(s.status.region()),
    ))
}
