//! `--web.config.file`: TLS and basic auth on the listener, in the Prometheus exporter-toolkit
//! format, so `/api/v1/status`, the status page, `/metrics` and `/-/reload` are not open to
//! anyone who reaches the port. As in exporter-toolkit, every path is behind the password once
//! users are configured (health checks included), and unknown keys are errors. [`serve`] also
//! keeps the listener within [`Limits`] (connection cap, header-read and idle timeouts), so no
//! client can take the file descriptors the probes need.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # relative to this file
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # optional, with client_ca_file
//!   client_ca_file: clients.pem
//!   min_version: TLS12             # TLS12 (default) or TLS13
//! http_server_config:
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! basic_auth_users:
//!   alice: $2y$10$...              # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// How long shutdown waits for open connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Verified (user, password) pairs remembered, so a scrape every 15 s does not pay bcrypt
/// each time; a wrong password is never remembered (each guess costs a full bcrypt).
const AUTH_CACHE: usize = 64;
/// Compared against when the user is unknown, so an unknown user takes as long as a wrong
/// password (no user enumeration by timing), as exporter-toolkit does.
fn dummy_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash("joincanary-unknown-user", 10).unwrap_or_default())
        .clone()
}

/// Why the web config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: crate::diag::file::FileError,
    },
    /// `web.yml:3:3: basic_auth_users.alice: not a bcrypt hash …`, as every config error
    /// reads (line 0: no position found).
    #[error("{}{}: {message}", path.display(), at(*line, *column))]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

fn at(line: usize, column: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}:{column}")
    }
}

/// Where the key a message opens with (`tls_server_config.cert_file: …`) is written in the
/// YAML `text`: each part of the path looked for below the one before it, deeper indented.
/// The deepest part found, or (0, 0); the file is the small block-style YAML of
/// exporter-toolkit, not any YAML.
fn locate_key(text: &str, message: &str) -> (usize, usize) {
    let Some((path, _)) = message.split_once(": ") else {
        return (0, 0);
    };
    let mut parts = path.split('.').peekable();
    let (mut found, mut indent) = ((0, 0), None::<usize>);
    for (n, line) in text.lines().enumerate() {
        let Some(part) = parts.peek() else { break };
        let body = line.trim_start();
        let depth = line.len() - body.len();
        let key = body
            .split(':')
            .next()
            .unwrap_or("")
            .trim_matches(['"', '\'']);
        if indent.is_none_or(|i| depth > i) && body.contains(':') && key == *part {
            found = (n + 1, depth + 1);
            indent = Some(depth);
            parts.next();
        }
    }
    found
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// A loaded web config: what the listener and every response need.
#[derive(Clone, Default)]
pub struct WebConfig {
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The certificate the listener presents (the first in `cert_file`): what
    /// `joincanary healthcheck` expects to see.
    served_cert: Option<rustls::pki_types::CertificateDer<'static>>,
    users: Arc<BTreeMap<String, String>>,
    headers: Arc<Vec<(HeaderName, HeaderValue)>>,
    verified: Arc<Mutex<HashSet<(String, String)>>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes.
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.len())
            .finish()
    }
}

impl WebConfig {
    /// Reads and checks `path`: YAML, known keys only, readable certificate and key, valid
    /// bcrypt hashes.
    ///
    /// # Errors
    /// The first problem, naming the file.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = crate::diag::file::read_text(path).map_err(|source| WebConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| {
            let (line, column) = locate_key(&text, &message);
            WebConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        // An empty file is a valid config that changes nothing, as in exporter-toolkit.
        let raw: RawWebConfig = if text.trim().is_empty() {
            RawWebConfig::default()
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| {
                let message = e.to_string();
                match e.location() {
                    // The parser's own position, moved to the front as in every config error.
                    Some(l) => WebConfigError::Invalid {
                        path: path.to_path_buf(),
                        line: l.line(),
                        column: l.column(),
                        message: message
                            .strip_suffix(&format!(" at line {} column {}", l.line(), l.column()))
                            .unwrap_or(&message)
                            .to_string(),
                    },
                    None => invalid(message),
                }
            })?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let (tls, served_cert) = match raw.tls_server_config {
            Some(t) => {
                let (config, leaf) = tls_config(&t, base).map_err(invalid)?;
                (Some(Arc::new(config)), Some(leaf))
            }
            None => (None, None),
        };
        for (user, hash) in &raw.basic_auth_users {
            if user.contains(':') || user.is_empty() {
                return Err(invalid(format!(
                    "basic_auth_users: `{user}` is not a user name (empty or with `:`)"
                )));
            }
            if bcrypt::verify("", hash).is_err() {
                return Err(invalid(format!(
                    "basic_auth_users.{user}: not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
                )));
            }
        }
        let mut headers = Vec::new();
        for (name, value) in raw
            .http_server_config
            .map(|h| h.headers)
            .unwrap_or_default()
        {
            let n = HeaderName::try_from(name.as_str()).map_err(|_| {
                invalid(format!(
                    "http_server_config.headers: `{name}` is not a header name"
                ))
            })?;
            let v = HeaderValue::try_from(value.as_str()).map_err(|_| {
                invalid(format!(
                    "http_server_config.headers.{name}: not a header value"
                ))
            })?;
            headers.push((n, v));
        }
        Ok(WebConfig {
            tls,
            served_cert,
            users: Arc::new(raw.basic_auth_users),
            headers: Arc::new(headers),
            verified: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// Whether the listener speaks TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The certificate the listener presents, when it speaks TLS.
    pub fn served_certificate(&self) -> Option<&rustls::pki_types::CertificateDer<'static>> {
        self.served_cert.as_ref()
    }

    /// Whether requests need a user and password.
    pub fn auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// `app` behind basic auth (when users are configured) and with the configured headers.
    pub fn protect(&self, app: Router) -> Router {
        let web = self.clone();
        app.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let web = web.clone();
                async move { web.handle(req, next).await }
            },
        ))
    }

    async fn handle(&self, req: Request, next: Next) -> Response {
        let credentials = basic_credentials(&req);
        let mut response = if self.auth() && !self.authorized(credentials).await {
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic")],
                "Unauthorized\n",
            )
                .into_response()
        } else {
            next.run(req).await
        };
        for (name, value) in self.headers.iter() {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response
    }

    async fn authorized(&self, credentials: Option<(String, String)>) -> bool {
        let Some((user, password)) = credentials else {
            return false;
        };
        let key = (user.clone(), password.clone());
        if self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return true;
        }
        let hash = self.users.get(&user).cloned().unwrap_or_else(dummy_hash);
        let known = self.users.contains_key(&user);
        // bcrypt is deliberately slow (tens of ms): off the async workers.
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .is_ok_and(|r| r.unwrap_or(false))
            && known;
        if ok {
            let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= AUTH_CACHE {
                cache.clear();
            }
            cache.insert(key);
        }
        ok
    }
}

/// `Authorization: Basic base64(user:password)`.
fn basic_credentials(req: &Request) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn read_pem(base: &Path, file: &str, what: &str) -> Result<Vec<u8>, String> {
    let path = base.join(file);
    crate::diag::file::read_bytes(&path).map_err(|e| {
        format!(
            "tls_server_config.{what}: cannot read {}: {e}",
            path.display()
        )
    })
}

/// The server's TLS config and the certificate it presents.
fn tls_config(
    t: &RawTls,
    base: &Path,
) -> Result<
    (
        rustls::ServerConfig,
        rustls::pki_types::CertificateDer<'static>,
    ),
    String,
> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert_file), Some(key_file)) = (&t.cert_file, &t.key_file) else {
        return Err("tls_server_config: cert_file and key_file are both required".into());
    };
    let cert_pem = read_pem(base, cert_file, "cert_file")?;
    let key_pem = read_pem(base, key_file, "key_file")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_server_config.cert_file: {e}"))?;
    let Some(leaf) = certs.first().cloned() else {
        return Err("tls_server_config.cert_file: no certificate in it".into());
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("tls_server_config.key_file: {e}"))?;
    let version = |v: &Option<String>, key: &str| -> Result<Option<u8>, String> {
        match v.as_deref() {
            None | Some("") => Ok(None),
            Some("TLS12") => Ok(Some(12)),
            Some("TLS13") => Ok(Some(13)),
            Some(other) => Err(format!(
                "tls_server_config.{key}: `{other}` is not supported (TLS12 or TLS13)"
            )),
        }
    };
    let min = version(&t.min_version, "min_version")?.unwrap_or(12);
    let max = version(&t.max_version, "max_version")?.unwrap_or(13);
    if min > max {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let client_auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match client_auth {
        "NoClientCert" => builder.with_no_client_auth(),
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let Some(ca_file) = &t.client_ca_file else {
                return Err(format!(
                    "tls_server_config.client_ca_file is required with client_auth_type {client_auth}"
                ));
            };
            let ca_pem = read_pem(base, ca_file, "client_ca_file")?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&ca_pem) {
                let cert = cert.map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if client_auth == "VerifyClientCertIfGiven" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?,
            )
        }
        other => {
            return Err(format!(
                "tls_server_config.client_auth_type: `{other}` is not supported (NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)"
            ));
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls_server_config: certificate and key do not match: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, leaf))
}

/// Limits on the listener, so that no client, slow or numerous, can starve the prober of the
/// file descriptors and threads its probes need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once (`--web.max-connections`); one more is accepted and closed
    /// at once, and counted.
    pub max_connections: usize,
    /// How long a client has to send a request's headers: from connecting, and again after each
    /// response (hyper restarts it per request, so it is also the keep-alive idle timeout). It
    /// bounds the TLS handshake too.
    pub header_read_timeout: Duration,
    /// How long a connection may go with no byte moving either way while none of its requests
    /// is being handled: a client that stops reading its response, or stalls a request body.
    pub idle_timeout: Duration,
}

/// `--web.max-connections` by default: far above what Prometheus, a few dashboards and peers
/// open, a quarter of the common 1024 open-files limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// The listener's own series, each with the `region` label.
#[derive(Clone)]
pub struct ConnectionMetrics {
    rejected: prometheus::IntCounter,
    open: prometheus::IntGauge,
}

impl ConnectionMetrics {
    /// Registers `joincanary_http_connections_rejected_total`, `joincanary_http_connections_open`
    /// and `joincanary_http_connections_max` (set to `limits.max_connections`) in `registry`.
    ///
    /// # Errors
    /// Registration failing (registered twice: a programming error).
    pub fn register(
        registry: &prometheus::Registry,
        region: &str,
        limits: &Limits,
    ) -> Result<ConnectionMetrics, prometheus::Error> {
        let opts = |name: &str, help: &str| {
            prometheus::Opts::new(name, help).const_label("region", region)
        };
        let rejected = prometheus::IntCounter::with_opts(opts(
            "joincanary_http_connections_rejected_total",
            "Connections to the listener closed at once because --web.max-connections were open",
        ))?;
        let open = prometheus::IntGauge::with_opts(opts(
            "joincanary_http_connections_open",
            "Connections to the listener open now",
        ))?;
        let max = prometheus::IntGauge::with_opts(opts(
            "joincanary_http_connections_max",
            "The listener's connection cap (--web.max-connections, at most a quarter of the open-files limit)",
        ))?;
        max.set(i64::try_from(limits.max_connections).unwrap_or(i64::MAX));
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(max))?;
        Ok(ConnectionMetrics { rejected, open })
    }
}

/// Counts a connection open for as long as it lives.
struct OpenGuard(prometheus::IntGauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Serves `app` on `listener` until `stop`, plain or TLS, within `limits`: at most
/// `max_connections` at once (more are closed as they come, so the listener never holds more
/// file descriptors than that), headers within `header_read_timeout` (the TLS handshake too),
/// no connection idle past `idle_timeout`; open connections drained for at most
/// [`DRAIN_TIMEOUT`] at the end.
///
/// # Errors
/// None today; the signature keeps room for a listener failing as a whole.
pub async fn serve(
    listener: impl Into<Arc<TcpListener>>,
    app: Router,
    web: Option<&WebConfig>,
    limits: Limits,
    metrics: ConnectionMetrics,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let listener = listener.into();
    let acceptor = web
        .and_then(|w| w.tls.clone())
        .map(tokio_rustls::TlsAcceptor::from);
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut last_warned: Option<tokio::time::Instant> = None;
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of fds and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Accepted only to be closed: the kernel's queue stays short, the client learns at
            // once, and the descriptor is back before the next accept.
            drop(tcp);
            metrics.rejected.inc();
            let now = tokio::time::Instant::now();
            if last_warned.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60)) {
                last_warned = Some(now);
                tracing::warn!(
                    max_connections = limits.max_connections,
                    rejected_total = metrics.rejected.get(),
                    "listener at its connection cap; closing new connections until some end"
                );
            }
            continue;
        };
        metrics.open.inc();
        let open = OpenGuard(metrics.open.clone());
        let app = app.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(
            async move {
                let _permit = permit;
                let _open = open;
                let Some(acceptor) = acceptor else {
                    return serve_connection(tcp, app, limits, watcher, peer).await;
                };
                match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => serve_connection(tls, app, limits, watcher, peer).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
            .in_current_span(),
        );
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
    Ok(())
}

/// One HTTP/1.1 connection under the header-read and idle timeouts.
async fn serve_connection<I>(
    io: I,
    app: Router,
    limits: Limits,
    watcher: hyper_util::server::graceful::Watcher,
    peer: std::net::SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = hyper_util::rt::TokioIo::new(Watched {
        inner: io,
        activity: activity.clone(),
    });
    let service = Busy {
        inner: hyper_util::service::TowerToHyperService::new(app),
        activity: activity.clone(),
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = watcher.watch(builder.serve_connection(io, service));
    tokio::select! {
        ended = conn => if let Err(e) = ended {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        },
        () = activity.idle(limits.idle_timeout) => {
            tracing::debug!(%peer, "closing a connection idle past the idle timeout");
        }
    }
}

/// When a connection last moved a byte, and how many of its requests are being handled.
struct Activity {
    start: tokio::time::Instant,
    /// Milliseconds after `start`.
    last: std::sync::atomic::AtomicU64,
    busy: std::sync::atomic::AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: tokio::time::Instant::now(),
            last: std::sync::atomic::AtomicU64::new(0),
            busy: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn last(&self) -> tokio::time::Instant {
        self.start + Duration::from_millis(self.last.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Resolves once no byte has moved for `limit` while no request was being handled (a
    /// handler's own wait is bounded by its own deadlines, not the client's).
    async fn idle(&self, limit: Duration) {
        loop {
            let deadline = self.last() + limit;
            if tokio::time::Instant::now() < deadline {
                tokio::time::sleep_until(deadline).await;
            } else if self.busy.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                tokio::time::sleep(limit).await;
            } else {
                return;
            }
        }
    }
}

/// An I/O stream that records progress in its [`Activity`].
struct Watched<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A hyper service that marks its connection busy while a request is handled.
struct Busy<S> {
    inner: S,
    activity: Arc<Activity>,
}

/// Ends a request's busy mark, however its handler ends.
struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0
            .busy
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl<S, R> hyper::service::Service<R> for Busy<S>
where
    S: hyper::service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, req: R) -> Self::Future {
        self.activity
            .busy
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let guard = BusyGuard(self.activity.clone());
        let handling = self.inner.call(req);
        Box::pin(async move {
            let answer = handling.await;
            drop(guard);
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_placed_at_its_key() {
        let text = "tls_server_config:\n  cert_file: a\n  key_file: b\nbasic_auth_users:\n  \"bob\": x\n  alice.b: y\n";
        assert_eq!(
            locate_key(text, "tls_server_config.key_file: cannot read"),
            (3, 3)
        );
        assert_eq!(
            locate_key(text, "basic_auth_users.bob: not a bcrypt hash"),
            (5, 3)
        );
        // A part the path cannot tell apart (a user named `alice.b`): the deepest found.
        assert_eq!(
            locate_key(text, "basic_auth_users.alice.b: not a bcrypt hash"),
            (4, 1)
        );
        assert_eq!(locate_key(text, "no key here"), (0, 0));
        let e = WebConfigError::Invalid {
            path: "w.yml".into(),
            line: 5,
            column: 3,
            message: "basic_auth_users.bob: not a bcrypt hash".into(),
        };
        assert_eq!(
            e.to_string(),
            "w.yml:5:3: basic_auth_users.bob: not a bcrypt hash"
        );
    }

    /// The idle timeout, on an in-memory stream with a 1 KiB buffer and the paused clock: a
    /// client that stops reading a large answer is cut off once nothing moved for the idle
    /// timeout; a handler slower than that is not (its own deadlines bound it), and its client
    /// gets the whole answer.
    #[tokio::test(start_paused = true)]
    async fn idle_timeout_cuts_stalled_clients_not_slow_handlers() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let limits = Limits {
            max_connections: 4,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        };
        let app = Router::new()
            .route(
                "/big",
                axum::routing::get(|| async { "x".repeat(1024 * 1024) }),
            )
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_secs(90)).await;
                    "done\n"
                }),
            );
        // (path, whether the client reads the answer, closed by the idle timeout)
        for (path, reads, cut) in [("/big", false, true), ("/slow", true, false)] {
            let (mut client, server) = tokio::io::duplex(1024);
            let graceful = hyper_util::server::graceful::GracefulShutdown::new();
            let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
            let started = tokio::time::Instant::now();
            let serving = tokio::spawn(serve_connection(
                server,
                app.clone(),
                limits,
                graceful.watcher(),
                peer,
            ));
            client
                .write_all(
                    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await
                .unwrap();
            let mut got = Vec::new();
            if reads {
                client.read_to_end(&mut got).await.unwrap();
            }
            serving.await.unwrap();
            let took = started.elapsed();
            let text = String::from_utf8_lossy(&got);
            if cut {
                assert!(took >= limits.idle_timeout, "{path}: cut after {took:?}");
                assert!(took < Duration::from_secs(60), "{path}: cut after {took:?}");
            } else {
                assert!(took >= Duration::from_secs(90), "{path}: {took:?}");
                assert!(text.ends_with("done\n"), "{path}: {text}");
            }
        }
    }

    #[test]
    fn dummy_hash_is_a_bcrypt_hash() {
        assert!(bcrypt::verify("x", &dummy_hash()).is_ok_and(|ok| !ok));
    }
}
