//! The listener: [`serve`] answers plain or TLS within [`Limits`] (a connection cap, header-read
//! and idle timeouts), so no client, slow or numerous, can take the file descriptors the probes
//! need; [`ConnectionMetrics`] counts what it holds and what it turned away.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::config::WebConfig;

/// How long shutdown waits for open connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

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
    let web = web.cloned();
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
        // Taken per connection: a certificate renewed since (`WebConfig::refresh_tls`) is
        // what the next client sees.
        let acceptor = web
            .as_ref()
            .and_then(WebConfig::server_config)
            .map(tokio_rustls::TlsAcceptor::from);
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
}
