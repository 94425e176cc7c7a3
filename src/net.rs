//! Network plumbing that probe steps, pagers and heartbeats share: the TLS client config,
//! a connection whose replies are capped, a reply's body read to a cap, a task aborted with its
//! connection, and an error's chain of causes as one line. A leaf: it imports nothing of the crate.

use std::sync::{Arc, OnceLock};

/// Aborts the task driving a connection when the step is done with it, however it ends: a
/// server that never answers must not leave a task behind.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `base64(user:password)`, the credentials of `Authorization: Basic` (RFC 7617): a step's
/// `user:password@` and `healthcheck`'s `--web.user` send them alike.
pub(crate) fn basic_credentials(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// A reply's whole body, refused once it passes `cap` bytes (the rest is never read): a
/// server answering with gigabytes cannot grow the prober's memory. For the JSON documents the
/// prober asks other services for (peers' status, Alertmanager's API).
pub(crate) async fn body_at_most(
    mut resp: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Why [`body_at_most`] gave no body.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Over the cap: `answer larger than {cap} bytes`.
    TooLarge(usize),
    /// The transfer failed; the caller words it (without the URL, which may hold a secret).
    Read(reqwest::Error),
}

impl BodyError {
    /// The message, with `read` wording a failed transfer.
    pub(crate) fn describe(self, read: impl FnOnce(reqwest::Error) -> String) -> String {
        match self {
            BodyError::TooLarge(cap) => format!("answer larger than {cap} bytes"),
            BodyError::Read(e) => read(e),
        }
    }
}

/// A connection whose reads fail once more than `cap` bytes arrived since the last write: a
/// request/reply protocol's reply cap (Redis, SMTP) under a client that would read a reply
/// whole. `exceeded` tells the caller that the cap, not the peer, ended the connection.
#[derive(Debug)]
pub(crate) struct Capped<S> {
    inner: S,
    cap: usize,
    since_write: usize,
    exceeded: Arc<std::sync::atomic::AtomicBool>,
}

impl<S> Capped<S> {
    pub(crate) fn new(inner: S, cap: usize, exceeded: Arc<std::sync::atomic::AtomicBool>) -> Self {
        Capped {
            inner,
            cap,
            since_write: 0,
            exceeded,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Capped<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let too_large = || std::io::Error::other(format!("a reply larger than {} bytes", this.cap));
        if this.exceeded.load(std::sync::atomic::Ordering::Relaxed) {
            return std::task::Poll::Ready(Err(too_large()));
        }
        let before = buf.filled().len();
        std::task::ready!(std::pin::Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.since_write += buf.filled().len() - before;
        if this.since_write > this.cap {
            this.exceeded
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return std::task::Poll::Ready(Err(too_large()));
        }
        std::task::Poll::Ready(Ok(()))
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Capped<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = std::pin::Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(written, std::task::Poll::Ready(Ok(n)) if n > 0) {
            // A command went out: what comes next is its reply.
            this.since_write = 0;
        }
        written
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The system's root certificates, loaded once.
pub(crate) fn system_tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG.get_or_init(|| tls_client_config(Vec::new())).clone()
}

/// A TLS client config trusting the system roots plus `extra` (a probe's `ca_file`), offering
/// HTTP/1.1 by ALPN (both step kinds speak it).
pub fn tls_client_config(
    extra: Vec<rustls::pki_types::CertificateDer<'static>>,
) -> Arc<rustls::ClientConfig> {
    let roots = root_store(extra);
    if roots.is_empty() {
        tracing::warn!("no CA certificates found: https and wss probes will fail with reason tls");
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The system's root certificates plus `extra` (a probe's `ca_file`, a pager's
/// `tls_config.ca_file`); a certificate the store refuses is left out.
pub(crate) fn root_store(
    extra: Vec<rustls::pki_types::CertificateDer<'static>>,
) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs()
        .certs
        .into_iter()
        .chain(extra)
    {
        let _ = roots.add(cert);
    }
    roots
}

/// The chain of an error's sources as one line (reqwest and hyper hide the useful part there).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A server on 127.0.0.1 that answers one request with `len` bytes, chunked (no
    /// Content-Length to refuse it by).
    async fn serve(len: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request).await;
            let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
            let _ = conn.write_all(head.as_bytes()).await;
            let chunk = vec![b'x'; 1000];
            for _ in 0..len / 1000 {
                let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                if conn.write_all(&frame).await.is_err() {
                    return;
                }
            }
            let _ = conn.write_all(b"0\r\n\r\n").await;
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_refused_and_one_within_it_read_whole() {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap();
        let get = |url: String| {
            let client = client.clone();
            async move {
                let resp = client.get(url).send().await.unwrap();
                body_at_most(resp, 10_000).await
            }
        };
        let body = get(serve(10_000).await).await.unwrap();
        assert_eq!(body.len(), 10_000);
        let err = get(serve(50_000).await).await.unwrap_err();
        assert_eq!(
            err.describe(|e| e.to_string()),
            "answer larger than 10000 bytes"
        );
    }
}
