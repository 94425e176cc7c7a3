//! Connections a step opens itself, so each phase is timed on its own: name resolution, TCP
//! connect and TLS handshake. Shared by the HTTP and websocket steps. Also where a failure is
//! told apart as the prober's own ([`local_cause`]): out of fds, memory or ephemeral ports.

use std::net::SocketAddr;

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
        Some(host) => resolve_host(ctx, host, port).await,
        None => Err(StepError::new(
            FailureReason::Protocol,
            "the URL has no host",
        )),
    }
}

/// Resolves `host`, timing it as `dns` unless it is an IP literal (see [`resolve`]).
pub(crate) async fn resolve_host(
    ctx: &mut RunContext<'_>,
    host: url::Host<&str>,
    port: u16,
) -> Result<Vec<SocketAddr>, StepError> {
    match host {
        url::Host::Ipv4(ip) => Ok(vec![(ip, port).into()]),
        url::Host::Ipv6(ip) => Ok(vec![(ip, port).into()]),
        url::Host::Domain(name) => {
            // getaddrinfo (so /etc/hosts and nsswitch apply) on a blocking thread. The step's
            // deadline drops this future, not the thread: a resolver that never answers costs
            // a parked thread until its own timeout, never the run's time (see `pending`).
            let t = begin_phase(ctx, Phase::Dns);
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
                Err(e) => Err(StepError::caused_by(
                    FailureReason::Dns,
                    format!("cannot resolve `{name}`: {e}"),
                    &e,
                )),
            }
        }
    }
}

/// Resolves, connects and (for https/wss) does the TLS handshake, timing each phase.
pub(crate) async fn open(
    ctx: &mut RunContext<'_>,
    url: &url::Url,
) -> Result<MaybeTlsStream<TcpStream>, StepError> {
    open_with_alpn(ctx, url, None).await
}

/// [`open`], offering `alpn` in the TLS handshake instead of HTTP/1.1 (TURN over TLS offers
/// `stun.turn`, RFC 7443).
pub(crate) async fn open_with_alpn(
    ctx: &mut RunContext<'_>,
    url: &url::Url,
    alpn: Option<&[u8]>,
) -> Result<MaybeTlsStream<TcpStream>, StepError> {
    let addrs = resolve(ctx, url).await?;
    let t = begin_phase(ctx, Phase::Connect);
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
    let mut config = ctx
        .plan
        .tls
        .clone()
        .unwrap_or_else(crate::net::system_tls_config);
    if let Some(alpn) = alpn {
        let mut own = (*config).clone();
        own.alpn_protocols = vec![alpn.to_vec()];
        config = std::sync::Arc::new(own);
    }
    let t = begin_phase(ctx, Phase::Tls);
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await;
    add_phase(ctx, Phase::Tls, t);
    let tls = tls.map_err(|e| {
        StepError::caused_by(
            FailureReason::Tls,
            format!("TLS handshake with `{host}` failed: {e}"),
            &e,
        )
    })?;
    Ok(MaybeTlsStream::Rustls(tls))
}

/// Marks `phase` as under way: if the deadline cuts it, the step's error names it (reason
/// `dns` for a resolver that never answers, `tls` for a stalled handshake) and its time so far
/// is still reported.
pub(crate) fn begin_phase(ctx: &mut RunContext<'_>, phase: Phase) -> Instant {
    let now = Instant::now();
    ctx.pending = Some((phase, now));
    now
}

/// Adds the time since `since` to `phase` (a redirect pays for a second connection too).
pub(crate) fn add_phase(ctx: &mut RunContext<'_>, phase: Phase, since: Instant) {
    ctx.pending = None;
    *ctx.phases.entry(phase).or_default() += since.elapsed();
}

async fn connect_any(addrs: &[SocketAddr]) -> Result<TcpStream, StepError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            // Every address is tried and the last error reported: `localhost` may be `::1`
            // (EADDRNOTAVAIL where IPv6 is off) before a `127.0.0.1` that answers. Out of fds
            // or ports, the last address fails the same way, so the run still says `local`.
            Err(e) => {
                last = Some(StepError::caused_by(
                    FailureReason::Connect,
                    format!("cannot connect to {addr}: {e}"),
                    &e,
                ));
            }
        }
    }
    Err(last.unwrap_or_else(|| StepError::new(FailureReason::Connect, "no address to connect to")))
}

/// What the prober itself ran out of, if that is why `e` happened: the error's source chain
/// (reqwest -> hyper -> `io::Error`, tungstenite -> `io::Error`, redis -> `io::Error`) is walked
/// for an OS error that names the prober's own resources rather than the peer or the network.
pub(crate) fn local_cause(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    // Bounded: a chain is a handful of links; a cyclic `source()` must not loop forever.
    let mut next = Some(e);
    for _ in 0..32 {
        let current = next?;
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            if let Some(what) = io_local_cause(io) {
                return Some(what);
            }
            // A custom io::Error's `source()` skips the error it wraps: look inside it too.
            if let Some(inner) = io.get_ref()
                && let Some(what) = local_cause(inner)
            {
                return Some(what);
            }
        }
        next = current.source();
    }
    None
}

fn io_local_cause(io: &std::io::Error) -> Option<&'static str> {
    if io.kind() == std::io::ErrorKind::OutOfMemory {
        return Some("out of memory");
    }
    match io.raw_os_error()? {
        libc::EMFILE => Some("out of file descriptors (process limit)"),
        libc::ENFILE => Some("out of file descriptors (system limit)"),
        libc::ENOMEM => Some("out of memory"),
        libc::ENOBUFS => Some("out of socket buffers"),
        libc::EADDRNOTAVAIL => Some("out of local ports"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error wrapping another, as hyper and reqwest wrap the io::Error.
    #[derive(Debug)]
    struct Wrapper(std::io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection error")
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[tokio::test]
    async fn every_address_is_tried_before_failing() {
        let good = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = good.local_addr().unwrap();
        // Nothing listens on port 1: refused, then the next address answers.
        let refused: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(connect_any(&[refused, good]).await.is_ok());
        let e = connect_any(&[refused]).await.unwrap_err();
        assert_eq!(e.reason, FailureReason::Connect, "{e}");
    }

    #[test]
    fn local_causes_are_found_anywhere_in_the_chain() {
        for (errno, local) in [
            (libc::EMFILE, true),
            (libc::ENFILE, true),
            (libc::ENOBUFS, true),
            (libc::ENOMEM, true),
            (libc::EADDRNOTAVAIL, true),
            (libc::ECONNREFUSED, false),
            (libc::ECONNRESET, false),
            (libc::ENETUNREACH, false),
            (libc::EAGAIN, false),
        ] {
            let direct = std::io::Error::from_raw_os_error(errno);
            assert_eq!(local_cause(&direct).is_some(), local, "errno {errno}");
            let wrapped = Wrapper(std::io::Error::from_raw_os_error(errno));
            assert_eq!(
                local_cause(&wrapped).is_some(),
                local,
                "wrapped errno {errno}"
            );
            // A custom io::Error around it (what tokio and rustls build).
            let custom = std::io::Error::other(Wrapper(std::io::Error::from_raw_os_error(errno)));
            assert_eq!(
                local_cause(&custom).is_some(),
                local,
                "custom errno {errno}"
            );
        }
        let e = StepError::caused_by(
            FailureReason::Connect,
            "cannot connect to 127.0.0.1:1",
            &std::io::Error::from_raw_os_error(libc::EMFILE),
        );
        assert_eq!(e.reason, FailureReason::Local);
        assert!(
            e.message.contains("out of file descriptors"),
            "{}",
            e.message
        );
    }
}
