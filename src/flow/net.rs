//! Connections a step opens itself, so each phase is timed on its own: name resolution, TCP
//! connect and TLS handshake. Shared by the HTTP and websocket steps.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::MaybeTlsStream;

use super::{RunContext, StepError};
use crate::report::{FailureReason, Phase};

/// Resolves the URL's host, timing it as `dns` unless the host is an IP literal.
pub(crate) async fn resolve(
    ctx: &mut RunContext<'_>,
    url: &url::Url,
) -> Result<Vec<SocketAddr>, StepError> {
    let port = url.port_or_known_default().ok_or_else(|| {
        StepError::new(
            FailureReason::Protocol,
            "the URL has no port and no known default",
        )
    })?;
    match url.host() {
        Some(url::Host::Ipv4(ip)) => Ok(vec![(ip, port).into()]),
        Some(url::Host::Ipv6(ip)) => Ok(vec![(ip, port).into()]),
        Some(url::Host::Domain(name)) => {
            let t = Instant::now();
            let result = tokio::net::lookup_host((name, port)).await;
            add_phase(ctx, Phase::Dns, t);
            match result {
                Ok(addrs) => {
                    let addrs: Vec<_> = addrs.collect();
                    if addrs.is_empty() {
                        Err(StepError::new(
                            FailureReason::Dns,
                            format!("`{name}` resolved to no address"),
                        ))
                    } else {
                        Ok(addrs)
                    }
                }
                Err(e) => Err(StepError::new(
                    FailureReason::Dns,
                    format!("cannot resolve `{name}`: {e}"),
                )),
            }
        }
        None => Err(StepError::new(
            FailureReason::Protocol,
            "the URL has no host",
        )),
    }
}

/// Resolves, connects and (for https/wss) does the TLS handshake, timing each phase.
pub(crate) async fn open(
    ctx: &mut RunContext<'_>,
    url: &url::Url,
) -> Result<MaybeTlsStream<TcpStream>, StepError> {
    let addrs = resolve(ctx, url).await?;
    let t = Instant::now();
    let tcp = connect_any(&addrs).await;
    add_phase(ctx, Phase::Connect, t);
    let tcp = tcp?;
    let _ = tcp.set_nodelay(true);
    if !matches!(url.scheme(), "https" | "wss") {
        return Ok(MaybeTlsStream::Plain(tcp));
    }
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let server_name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|_| {
        StepError::new(
            FailureReason::Tls,
            format!("`{host}` is not a valid TLS server name"),
        )
    })?;
    let config = ctx.plan.tls.clone().unwrap_or_else(system_tls_config);
    let t = Instant::now();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await;
    add_phase(ctx, Phase::Tls, t);
    let tls = tls.map_err(|e| {
        StepError::new(
            FailureReason::Tls,
            format!("TLS handshake with `{host}` failed: {e}"),
        )
    })?;
    Ok(MaybeTlsStream::Rustls(tls))
}

/// Adds the time since `since` to `phase` (a redirect pays for a second connection too).
pub(crate) fn add_phase(ctx: &mut RunContext<'_>, phase: Phase, since: Instant) {
    *ctx.phases.entry(phase).or_default() += since.elapsed();
}

async fn connect_any(addrs: &[SocketAddr]) -> Result<TcpStream, StepError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(format!("cannot connect to {addr}: {e}")),
        }
    }
    Err(StepError::new(
        FailureReason::Connect,
        last.unwrap_or_else(|| "no address to connect to".into()),
    ))
}

/// The system's root certificates, loaded once.
fn system_tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG.get_or_init(|| tls_client_config(Vec::new())).clone()
}

/// A TLS client config trusting the system roots plus `extra` (a probe's `ca_file`), offering
/// HTTP/1.1 by ALPN (both step kinds speak it).
pub fn tls_client_config(
    extra: Vec<rustls::pki_types::CertificateDer<'static>>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs()
        .certs
        .into_iter()
        .chain(extra)
    {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        tracing::warn!("no CA certificates found: https and wss probes will fail with reason tls");
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}
