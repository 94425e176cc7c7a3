//! Connections a step opens itself, so each phase is timed on its own: name resolution, TCP
//! connect and TLS handshake. Shared by the HTTP and websocket steps. Also where a failure is
//! told apart as the prober's own ([`super::error::local_cause`]): out of fds, memory or
//! ephemeral ports.

use std::collections::VecDeque;
use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::MaybeTlsStream;

use super::context::RunContext;
use super::error::StepError;
pub(crate) use super::tcp::Tcp;
use crate::report::{FailureReason, Phase};

/// Where a URL a server chose (a redirect's `Location`, a value it sent deciding the origin)
/// may not lead: the link-local ranges (169.254.0.0/16, fe80::/10) where cloud metadata
/// services answer (AWS, GCP, Azure, Oracle: 169.254.169.254), AWS's IPv6 one
/// (fd00:ec2::254), Alibaba's (100.100.100.200), and unspecified addresses. Their reply
/// (instance credentials) would be quoted into the step's error, and so into the status page,
/// the logs and the page. A real signalling server, homeserver or login page is never there;
/// loopback and private ranges stay allowed (a platform's own network).
fn metadata_address(ip: std::net::IpAddr) -> bool {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    const ALIBABA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);
    const AWS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);
    let v4 = |v4: Ipv4Addr| v4.is_link_local() || v4.is_unspecified() || v4 == ALIBABA;
    match ip {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(a) => {
            a.is_unspecified()
                || (a.segments()[0] & 0xffc0) == 0xfe80
                || a == AWS_V6
                || a.to_ipv4_mapped().is_some_and(v4)
        }
    }
}

/// `addrs` without [`metadata_address`]es; none left is refused (`protocol`), naming them.
fn not_metadata(addrs: Vec<SocketAddr>, url: &url::Url) -> Result<Vec<SocketAddr>, StepError> {
    let (refused, kept): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.into_iter().partition(|a| metadata_address(a.ip()));
    if kept.is_empty() && !refused.is_empty() {
        let list: Vec<String> = refused.iter().take(4).map(|a| a.ip().to_string()).collect();
        return Err(StepError::new(
            FailureReason::Protocol,
            format!(
                "`{}` (a URL a server chose) leads to {}, where cloud metadata services answer: \
                 refused",
                crate::redact::redact_url_text(url.as_str()),
                list.join(", ")
            ),
        ));
    }
    Ok(kept)
}

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

/// `user:password@` in a step's URL, as curl and browsers send it: `Authorization: Basic`
/// (RFC 7617), taken out of the URL so it reaches neither the request line nor a log. The
/// password is a secret from here on, however it was written. `None` without userinfo.
pub(crate) fn take_basic_auth(
    ctx: &mut RunContext<'_>,
    url: &mut url::Url,
) -> Option<hyper::header::HeaderValue> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = decode(url.username());
    let password = decode(url.password().unwrap_or_default());
    let _ = url.set_username("");
    let _ = url.set_password(None);
    ctx.redactor.add(password.clone());
    let encoded = crate::net::basic_credentials(&user, &password);
    ctx.redactor.add(encoded.clone());
    let mut value = hyper::header::HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Resolves, connects and (for https/wss) does the TLS handshake, timing each phase.
pub(crate) async fn open(
    ctx: &mut RunContext<'_>,
    url: &url::Url,
) -> Result<MaybeTlsStream<Tcp>, StepError> {
    open_with_alpn(ctx, url, None).await
}

/// [`open`], offering `alpn` in the TLS handshake instead of HTTP/1.1 (TURN over TLS offers
/// `stun.turn`, RFC 7443).
pub(crate) async fn open_with_alpn(
    ctx: &mut RunContext<'_>,
    url: &url::Url,
    alpn: Option<&[u8]>,
) -> Result<MaybeTlsStream<Tcp>, StepError> {
    // Taken first: a lookup that fails must not leave it set for a later step's open.
    let fenced = std::mem::take(&mut ctx.server_chosen);
    let mut addrs = resolve(ctx, url).await?;
    if fenced {
        addrs = not_metadata(addrs, url)?;
    }
    let t = begin_phase(ctx, Phase::Connect);
    let tcp = connect_any(&addrs).await;
    add_phase(ctx, Phase::Connect, t);
    let tcp = Tcp::new(tcp?);
    if !matches!(url.scheme(), "https" | "wss") {
        return Ok(MaybeTlsStream::Plain(tcp));
    }
    let t = begin_phase(ctx, Phase::Tls);
    let tls = tls_over(tcp, url, ctx.tls.clone(), alpn).await;
    add_phase(ctx, Phase::Tls, t);
    if let Ok(MaybeTlsStream::Rustls(s)) = &tls
        && let Some(expiry) = earliest_expiry(s.get_ref().1.peer_certificates().unwrap_or(&[]))
    {
        ctx.cert_expiry = Some(ctx.cert_expiry.map_or(expiry, |e| e.min(expiry)));
    }
    tls
}

/// The earliest `notAfter` among `chain` (what the server presented, leaf first), or `None`
/// when none parses: a certificate that expires takes the join down with it (an intermediate
/// as surely as the leaf), so the first to go is the one to alert on, weeks ahead.
pub(crate) fn earliest_expiry(
    chain: &[rustls::pki_types::CertificateDer<'_>],
) -> Option<chrono::DateTime<chrono::Utc>> {
    use x509_cert::der::Decode as _;
    chain
        .iter()
        .filter_map(|der| x509_cert::Certificate::from_der(der).ok())
        .filter_map(|cert| {
            let after = cert
                .tbs_certificate()
                .validity()
                .not_after
                .to_unix_duration();
            chrono::DateTime::from_timestamp(i64::try_from(after.as_secs()).ok()?, 0)
        })
        .min()
}

/// [`open`] for a request no step times (a `webrtc` step's long poll aside, which runs on a
/// task of its own while the step's `ice` phase goes on): no phase recorded, `tls` as the
/// run's.
pub(crate) async fn open_untimed(
    url: &url::Url,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Result<MaybeTlsStream<Tcp>, StepError> {
    let port = url.port_or_known_default().ok_or_else(|| {
        StepError::new(
            FailureReason::Protocol,
            "the URL has no port and no known default",
        )
    })?;
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![(ip, port).into()],
        Some(url::Host::Ipv6(ip)) => vec![(ip, port).into()],
        Some(url::Host::Domain(name)) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| {
                StepError::caused_by(
                    FailureReason::Dns,
                    format!("cannot resolve `{name}`: {e}"),
                    &e,
                )
            })?
            .collect(),
        None => {
            return Err(StepError::new(
                FailureReason::Protocol,
                "the URL has no host",
            ));
        }
    };
    let tcp = Tcp::new(connect_any(&addrs).await?);
    if !matches!(url.scheme(), "https" | "wss") {
        return Ok(MaybeTlsStream::Plain(tcp));
    }
    tls_over(tcp, url, tls, None).await
}

/// The TLS handshake over `tcp` with `url`'s host (`config`: the run's, else the system's
/// roots; `alpn` instead of HTTP/1.1).
async fn tls_over(
    tcp: Tcp,
    url: &url::Url,
    config: Option<std::sync::Arc<rustls::ClientConfig>>,
    alpn: Option<&[u8]>,
) -> Result<MaybeTlsStream<Tcp>, StepError> {
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
    let mut config = config.unwrap_or_else(crate::net::system_tls_config);
    if let Some(alpn) = alpn {
        let mut own = (*config).clone();
        own.alpn_protocols = vec![alpn.to_vec()];
        config = std::sync::Arc::new(own);
    }
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await;
    let tls =
        tls.map_err(|e| StepError::caused_by(FailureReason::Tls, tls_failure(&host, &e), &e))?;
    Ok(MaybeTlsStream::Rustls(tls))
}

/// A failed handshake in words on-call can act on: a certificate no configured root vouches for
/// says where a private CA goes, and a trusted CA's name on another key (rustls says only
/// `BadSignature`) that the private CA was re-issued; a reply that is not TLS at all (rustls:
/// "received corrupt message of type InvalidContentType", an https URL on a plain-HTTP port)
/// says so before rustls' words, so the page's first line, which keeps the error's start,
/// names it.
fn tls_failure(host: &str, e: &std::io::Error) -> String {
    use rustls::{CertificateError, Error, InvalidMessage};
    match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => format!(
            "TLS handshake with `{host}` failed: {e} (no trusted CA issued it: a private CA goes in the probe's `ca_file`)"
        ),
        Some(Error::InvalidCertificate(CertificateError::BadSignature)) => format!(
            "TLS handshake with `{host}` failed: {e} (its issuer has the name of a trusted CA but not its key: a private CA re-issued since the probe's `ca_file` was written?)"
        ),
        Some(Error::InvalidMessage(InvalidMessage::InvalidContentType)) => format!(
            "TLS handshake with `{host}` failed: the reply is not TLS (a plain-HTTP port?): {e}"
        ),
        _ => format!("TLS handshake with `{host}` failed: {e}"),
    }
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

/// RFC 8305's connection attempt delay: while an attempt is still pending this long, the next
/// address is tried beside it (browsers and curl use 200-300 ms).
const ATTEMPT_DELAY: std::time::Duration = std::time::Duration::from_millis(250);
/// Addresses tried at most: a name with hundreds of silent addresses must not hold a socket open
/// for each (one run could otherwise pile up a deadline's worth, 80 in 20 s). Real hosts have a
/// handful; the interleaving keeps both families among the first ones.
const MAX_ATTEMPTS: usize = 16;

/// Connects to the first address that answers, as browsers and curl do (Happy Eyeballs, RFC
/// 8305, see [`first_answering`]). So a `localhost` that is `::1` (refused, or
/// `EADDRNOTAVAIL` where IPv6 is off) before a `127.0.0.1` that answers works, and so does a
/// host whose IPv6 path silently drops packets: without this the run would wait out its
/// deadline on an address no user waits for. All failing, the error names each address and
/// why, its reason the last one's (out of fds or ports, every address fails the same way, so
/// the run still says `local`).
async fn connect_any(addrs: &[SocketAddr]) -> Result<TcpStream, StepError> {
    let failed = match first_answering(addrs, connect_one).await {
        Ok(s) => return Ok(s),
        Err(failed) => failed,
    };
    let Some((_, last)) = failed.last() else {
        return Err(StepError::new(
            FailureReason::Connect,
            "no address to connect to",
        ));
    };
    let named: Vec<String> = failed.iter().map(|(a, e)| format!("{a}: {e}")).collect();
    Err(StepError::caused_by(
        FailureReason::Connect,
        format!("cannot connect to {}", named.join("; ")),
        last,
    ))
}

/// Happy Eyeballs (RFC 8305) over any attempt: `attempt` runs on the addresses in the
/// resolver's order with the families interleaved, the next one as soon as the previous fails
/// or has been pending for [`ATTEMPT_DELAY`], the earlier ones still running beside it. The
/// first success wins (the others are dropped); all failing, each address with its error, in
/// the order they failed. At most [`MAX_ATTEMPTS`] addresses are tried. TCP connects use it, and
/// so does the `turn` step's STUN Binding over UDP (an answer is its only sign of life).
pub(crate) async fn first_answering<T, E, F, Fut>(
    addrs: &[SocketAddr],
    attempt: F,
) -> Result<T, Vec<(SocketAddr, E)>>
where
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    use futures_util::StreamExt as _;
    let mut next = interleave(addrs).into_iter().take(MAX_ATTEMPTS);
    let mut attempts = futures_util::stream::FuturesUnordered::new();
    let mut failed = Vec::new();
    loop {
        // Every turn of the loop (a failure, or the delay passing) starts the next address.
        if let Some(addr) = next.next() {
            let running = attempt(addr);
            attempts.push(async move { (addr, running.await) });
        }
        if attempts.is_empty() {
            return Err(failed);
        }
        let more = next.len() > 0;
        tokio::select! {
            Some((addr, result)) = attempts.next() => match result {
                Ok(v) => return Ok(v),
                Err(e) => failed.push((addr, e)),
            },
            () = tokio::time::sleep(ATTEMPT_DELAY), if more => {}
        }
    }
}

/// One TCP connection, as browsers open it; `TCP_NODELAY` comes later ([`Tcp`]). What tokio's
/// `TcpStream::connect` does, one system call fewer: the outcome is read from the event that
/// says the socket became writable, and `SO_ERROR` is asked only when that event says the
/// connection closed (refused, reset), where tokio asks it every time (measured in
/// BENCHMARKS.md, issue 20).
async fn connect_one(addr: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    match socket.connect(&addr.into()) {
        Err(e) if e.raw_os_error() != Some(libc::EINPROGRESS) => return Err(e),
        _ => {}
    }
    let tcp = TcpStream::from_std(socket.into())?;
    let ready = tcp.ready(tokio::io::Interest::WRITABLE).await?;
    if ready.is_write_closed()
        && let Some(e) = tcp.take_error()?
    {
        return Err(e);
    }
    Ok(tcp)
}

/// The resolver's order (RFC 6724 already ranks it), families alternating from the first
/// address's (RFC 8305 §4), so one family's dead path costs one attempt delay, not one per
/// address.
fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return Vec::new();
    };
    let (mut same, mut other): (VecDeque<SocketAddr>, VecDeque<SocketAddr>) = addrs
        .iter()
        .copied()
        .partition(|a| a.is_ipv6() == first.is_ipv6());
    let mut out = Vec::with_capacity(addrs.len());
    while !same.is_empty() || !other.is_empty() {
        out.extend(same.pop_front());
        out.extend(other.pop_front());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL a server chose never reaches a cloud metadata service; loopback, private ranges
    /// and public addresses do, and a name with one good address keeps it.
    #[test]
    fn metadata_addresses_are_refused_to_a_url_a_server_chose() {
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "0.0.0.0",
            "100.100.100.200",
            "fe80::1",
            "fd00:ec2::254",
            "::",
            "::ffff:169.254.169.254",
        ] {
            assert!(metadata_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "8.8.8.8",
        ] {
            assert!(!metadata_address(ip.parse().unwrap()), "{ip}");
        }
        let url = url::Url::parse("http://meta.example/latest?x=1").unwrap();
        let a = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let err = not_metadata(vec![a("169.254.169.254:80")], &url).unwrap_err();
        assert_eq!(err.reason, FailureReason::Protocol);
        assert_eq!(
            err.message,
            "`http://meta.example/latest?[redacted]` (a URL a server chose) leads to \
             169.254.169.254, where cloud metadata services answer: refused"
        );
        assert_eq!(
            not_metadata(vec![a("169.254.169.254:80"), a("10.0.0.5:80")], &url).unwrap(),
            [a("10.0.0.5:80")]
        );
    }

    #[tokio::test]
    async fn every_address_is_tried_before_failing() {
        let good = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = good.local_addr().unwrap();
        // Nothing listens on port 1: refused, then the next address answers.
        let refused: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let tcp = connect_any(&[refused, good]).await.unwrap();
        assert_eq!(tcp.peer_addr().unwrap(), good);
        let e = connect_any(&[refused]).await.unwrap_err();
        assert_eq!(e.reason, FailureReason::Connect, "{e}");
        assert!(
            e.message.starts_with("cannot connect to 127.0.0.1:1: "),
            "{e}"
        );
        // Every address that failed is named, in the order they were tried.
        let also: SocketAddr = "127.0.0.2:1".parse().unwrap();
        let e = connect_any(&[refused, also]).await.unwrap_err();
        assert!(
            e.message.starts_with("cannot connect to 127.0.0.1:1: ")
                && e.message.contains("; 127.0.0.2:1: "),
            "{e}"
        );
        // Bounded: a name with many addresses costs at most MAX_ATTEMPTS sockets.
        let many: Vec<SocketAddr> = (1..=40)
            .map(|i| SocketAddr::from(([127, 0, 0, i], 1)))
            .collect();
        let e = connect_any(&many).await.unwrap_err();
        assert_eq!(e.message.matches("; ").count(), MAX_ATTEMPTS - 1, "{e}");
    }

    /// `TCP_NODELAY` is not set for a connection's first write (Nagle cannot hold it back:
    /// nothing is unacknowledged yet) but before its second, which could otherwise wait for
    /// the first one's ACK, whether the writes are plain or vectored (hyper's).
    #[tokio::test]
    async fn nagle_is_turned_off_before_the_second_write_not_at_the_opening() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for vectored in [false, true] {
            let mut conn = Tcp::new(connect_any(&[addr]).await.unwrap());
            let (mut peer, _) = listener.accept().await.unwrap();
            assert!(
                !conn.tcp().nodelay().unwrap(),
                "no setsockopt at the opening"
            );
            for (i, part) in [&b"first"[..], b"second", b"third"].into_iter().enumerate() {
                if vectored {
                    let n = conn
                        .write_vectored(&[std::io::IoSlice::new(part)])
                        .await
                        .unwrap();
                    assert_eq!(n, part.len());
                } else {
                    conn.write_all(part).await.unwrap();
                }
                assert_eq!(conn.tcp().nodelay().unwrap(), i > 0, "after write {i}");
            }
            let mut got = [0u8; 16];
            peer.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"firstsecondthird");
        }
    }

    #[test]
    fn families_alternate_from_the_first_address() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let got = interleave(&[
            a("[::1]:80"),
            a("[::2]:80"),
            a("[::3]:80"),
            a("127.0.0.1:80"),
            a("127.0.0.2:80"),
        ]);
        let want = [
            "[::1]:80",
            "127.0.0.1:80",
            "[::2]:80",
            "127.0.0.2:80",
            "[::3]:80",
        ]
        .map(a);
        assert_eq!(got, want);
        assert!(interleave(&[]).is_empty());
    }

    /// A listener whose accept queue is full: the kernel drops the next SYN, so a connect to
    /// it hangs as to an address whose path silently drops packets (a broken IPv6 route).
    async fn black_hole() -> (SocketAddr, Vec<TcpStream>) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        // Fill the queue: connects complete until it is full, then hang.
        for _ in 0..64 {
            match tokio::time::timeout(
                std::time::Duration::from_millis(200),
                TcpStream::connect(addr),
            )
            .await
            {
                Ok(Ok(s)) => held.push(s),
                _ => break,
            }
        }
        std::mem::forget(listener);
        (addr, held)
    }

    #[tokio::test]
    async fn a_silent_address_costs_one_attempt_delay_not_the_deadline() {
        let (silent, _held) = black_hole().await;
        let hangs = tokio::time::timeout(
            std::time::Duration::from_millis(600),
            TcpStream::connect(silent),
        );
        assert!(hangs.await.is_err(), "the full queue drops the SYN");
        let good = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = good.local_addr().unwrap();
        // The silent address first, as a black-holed `::1` or IPv6 route would be.
        let connected = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            connect_any(&[silent, good]),
        )
        .await
        .expect("the answering address is tried while the silent one hangs");
        assert_eq!(connected.unwrap().peer_addr().unwrap(), good);
    }
}
