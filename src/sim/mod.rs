//! The reference conference server: HTTP login, a websocket for signalling over an internal
//! pub/sub bus, and run-time fault injection. Used by the demo, the tests and users' pipelines
//! as a known-good (or known-broken, on request) target for the prober. With `--redis` its
//! signalling runs on a real Redis, so Redis faults break joining as they do on a platform.

mod bus;
mod event;
mod faults;
mod redis;
mod tokens;
mod ws;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use bus::Bus;
use faults::Faults;
pub use redis::{DEFAULT_OP_TIMEOUT as DEFAULT_REDIS_TIMEOUT, RedisStartError};
use tokens::{DEFAULT_TOKEN_CAP, TokenStore};

/// Largest request body or websocket message accepted; the protocol's messages are tiny, so
/// anything near this is abuse or a bug.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Upper bound on how long [`SimServer::shutdown`] waits before abandoning stragglers.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// The one account the sim accepts.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            username: "canary".to_owned(),
            password: "canary-pass".to_owned(),
        }
    }
}

// Hand-written so a stray `{:?}` in a log line can never print the password.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where the sim's signalling runs.
#[derive(Clone, Default)]
pub enum Backend {
    /// An in-process bus: no dependencies, for the demo and most tests.
    #[default]
    Local,
    /// A real Redis shared by any number of sim processes; every Redis operation is bounded
    /// by `op_timeout`.
    Redis { url: String, op_timeout: Duration },
}

// By hand: a Redis URL may carry a password.
impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Local => f.write_str("Local"),
            Backend::Redis { op_timeout, .. } => f
                .debug_struct("Redis")
                .field("op_timeout", op_timeout)
                .finish_non_exhaustive(),
        }
    }
}

/// Why the sim did not start.
#[derive(Debug, thiserror::Error)]
pub enum SimStartError {
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error(transparent)]
    Redis(#[from] RedisStartError),
}

/// A running sim server. Dropping it without [`SimServer::shutdown`] still asks the server to
/// stop, but does not wait for it.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    conns: watch::Receiver<usize>,
    task: Option<JoinHandle<()>>,
}

impl SimServer {
    /// Binds `addr` (port 0 picks a free port) and serves in a background tokio task, with the
    /// in-process bus.
    pub async fn start(addr: SocketAddr, creds: Credentials) -> std::io::Result<SimServer> {
        match SimServer::start_with(addr, creds, Backend::Local).await {
            Ok(server) => Ok(server),
            Err(SimStartError::Listen(err)) => Err(err),
            // The local backend has no Redis to fail.
            Err(SimStartError::Redis(err)) => Err(std::io::Error::other(err)),
        }
    }

    /// As [`SimServer::start`], on the chosen backend. On Redis it returns once connected and
    /// subscribed.
    ///
    /// # Errors
    /// The address cannot be bound, or Redis is unreachable within its deadline.
    pub async fn start_with(
        addr: SocketAddr,
        creds: Credentials,
        backend: Backend,
    ) -> Result<SimServer, SimStartError> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        // Nagle plus the peer's delayed ACK held a `joined` frame queued behind a ping for
        // ~40 ms, which showed up as timing error in every round trip measured against the sim.
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(%err, "cannot set TCP_NODELAY");
            }
        });
        let (stop, stop_rx) = watch::channel(false);
        let (conns_tx, conns) = watch::channel(0usize);
        let bus = match backend {
            Backend::Local => Bus::default(),
            Backend::Redis { url, op_timeout } => {
                Bus::on_redis(&url, op_timeout, stop_rx.clone()).await?
            }
        };
        let state = Arc::new(AppState {
            creds,
            tokens: Mutex::new(TokenStore::new(DEFAULT_TOKEN_CAP)),
            faults: Arc::new(Mutex::new(Faults::default())),
            bus: Arc::new(bus),
            shutdown: stop_rx.clone(),
            conns: conns_tx,
            next_conn: AtomicU64::new(1),
        });
        let app = router(state);
        let mut signal_rx = stop_rx;
        let signal = async move {
            // Err means the handle is gone, which is also a reason to stop.
            let _ = signal_rx.wait_for(|stopping| *stopping).await;
        };
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::error!(%err, "sim server stopped with an error");
            }
        });
        tracing::info!(%addr, "sim server listening");
        Ok(SimServer {
            addr,
            stop,
            conns,
            task: Some(task),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// "http://127.0.0.1:PORT"; a wildcard bind is reported as loopback, since that is an
    /// address a local client can actually dial.
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Stops accepting, closes websockets, waits (bounded, ~2 s max) for the server task to end.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout_at(deadline, &mut task).await.is_err()
        {
            tracing::warn!("sim server did not stop in time; aborting it");
            task.abort();
        }
        // Websocket tasks outlive the HTTP server's own task, so wait for them separately.
        if tokio::time::timeout_at(deadline, self.conns.wait_for(|n| *n == 0))
            .await
            .is_err()
        {
            tracing::warn!("some sim websockets did not close in time");
        }
        tracing::info!(addr = %self.addr, "sim server stopped");
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

struct AppState {
    creds: Credentials,
    tokens: Mutex<TokenStore>,
    faults: Arc<Mutex<Faults>>,
    bus: Arc<Bus>,
    shutdown: watch::Receiver<bool>,
    conns: watch::Sender<usize>,
    next_conn: AtomicU64,
}

impl AppState {
    fn faults(&self) -> Faults {
        *lock(&self.faults)
    }
}

/// Every lock here guards plain data that each update leaves consistent, so a poisoned lock
/// is safe to keep using rather than taking the whole server down.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

type Shared = Arc<AppState>;

fn router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/login", post(login))
        .route("/ws", get(ws_upgrade))
        .route(
            "/_sim/faults",
            get(get_faults).put(put_faults).delete(clear_faults),
        )
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .with_state(state)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

#[derive(Deserialize)]
struct LoginRequest {
    username: String,
    password: String,
}

async fn login(State(state): State<Shared>, body: Bytes) -> Response {
    // Snapshot and consume a blip in one lock, so one armed blip fails exactly one login.
    let (delay_ms, status) = {
        let mut faults = lock(&state.faults);
        (faults.login_delay_ms, faults.take_login())
    };
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    if let Some(code) = status {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        tracing::debug!(status = code, "login answered by injected fault");
        return error(status, "injected fault: login_status");
    }
    // Parsed by hand rather than with the `Json` extractor, which would answer 415 or 422 for
    // some malformed bodies; the contract is a plain 400 for all of them.
    let Ok(req) = serde_json::from_slice::<LoginRequest>(&body) else {
        return error(StatusCode::BAD_REQUEST, "malformed login request");
    };
    if req.username != state.creds.username || req.password != state.creds.password {
        tracing::debug!("login refused: invalid credentials");
        return error(StatusCode::UNAUTHORIZED, "invalid credentials");
    }
    let token = lock(&state.tokens).issue();
    tracing::debug!("login accepted");
    Json(json!({ "token": token })).into_response()
}

#[derive(Deserialize)]
struct WsQuery {
    token: Option<String>,
}

async fn ws_upgrade(
    State(state): State<Shared>,
    query: Result<Query<WsQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let faults = state.faults();
    if let Some(code) = faults.ws_reject_status {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        tracing::debug!(status = code, "websocket refused by injected fault");
        return error(status, "injected fault: ws_reject_status");
    }
    let token = query.ok().and_then(|Query(q)| q.token);
    let authorised = token.is_some_and(|t| lock(&state.tokens).is_valid(&t));
    if !authorised {
        tracing::debug!("websocket refused: missing or unknown token");
        return error(StatusCode::UNAUTHORIZED, "invalid token");
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let id = state.next_conn.fetch_add(1, Ordering::Relaxed);
    // Counted before the upgrade completes so shutdown cannot miss a connection mid-handshake;
    // the guard lives in the callback, so a failed upgrade drops it and uncounts.
    let guard = ConnGuard::new(&state.conns);
    let ctx = ws::ConnCtx {
        id,
        bus: Arc::clone(&state.bus),
        faults: Arc::clone(&state.faults),
        shutdown: state.shutdown.clone(),
    };
    upgrade
        // Small frames: an 8 KiB read buffer instead of the 128 KiB zero-filled default.
        .read_buffer_size(8 * 1024)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            ws::run(socket, ctx).await;
            drop(guard);
        })
}

/// Counts a live websocket for [`SimServer::shutdown`] until dropped.
struct ConnGuard(watch::Sender<usize>);

impl ConnGuard {
    fn new(conns: &watch::Sender<usize>) -> Self {
        conns.send_modify(|n| *n += 1);
        ConnGuard(conns.clone())
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

async fn get_faults(State(state): State<Shared>) -> Response {
    Json(state.faults().to_json()).into_response()
}

async fn put_faults(State(state): State<Shared>, body: Bytes) -> Response {
    let Ok(patch) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "body must be a JSON object");
    };
    // Validate and apply under one lock so two concurrent PUTs merge instead of one losing.
    let mut current = lock(&state.faults);
    match current.merged(&patch) {
        Ok(next) => {
            *current = next;
            // The faults in force, as the JSON `PUT /_sim/faults` takes (not Rust's Debug form),
            // leaving out the ones off.
            let active: serde_json::Map<String, serde_json::Value> = next
                .to_json()
                .into_iter()
                .filter(|(_, v)| !(v.is_null() || *v == false || *v == 0))
                .collect();
            tracing::info!(faults = %serde_json::Value::Object(active), "sim faults updated");
            Json(next.to_json()).into_response()
        }
        Err(err) => error(StatusCode::BAD_REQUEST, &err.to_string()),
    }
}

async fn clear_faults(State(state): State<Shared>) -> Response {
    let cleared = Faults::default();
    *lock(&state.faults) = cleared;
    tracing::info!("sim faults cleared");
    Json(cleared.to_json()).into_response()
}
