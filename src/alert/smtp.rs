//! The connection an email pager sends through: TCP, then TLS from the first byte
//! (`tls = "tls"`) or after STARTTLS, and lettre speaking SMTP over it. The TLS handshake is
//! ours, not lettre's, so that one rustls config decides trust, client certificate and the
//! name checked: the pager's `tls_config` as [`crate::tls_client`] builds it for every pager,
//! else the system's roots. Every reply is read through [`MAX_SMTP_REPLY_BYTES`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::Starttls;
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::notify::{DeliveryError, tls_hint};
use crate::net::{Capped, error_chain};

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS at all: only for a relay on loopback or a trusted network (port 25).
    None,
}

impl TlsMode {
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::StartTls => 587,
            TlsMode::Tls => 465,
            TlsMode::None => 25,
        }
    }
}

/// Bytes of one SMTP reply read at most (lettre refuses a reply past 100,000 bytes, but checks
/// a line's length only once the line has ended: a server sending one endless line would grow
/// the prober's memory until the deadline). Room for TLS records around lettre's own limit.
pub const MAX_SMTP_REPLY_BYTES: usize = 128 * 1024;

/// An open SMTP conversation (greeted, EHLO said, TLS on as the pager asks) and the flag its
/// reply cap sets, which [`Session::failed`] reads to say why a read failed.
pub(super) struct Session {
    pub conn: AsyncSmtpConnection,
    exceeded: Arc<AtomicBool>,
}

impl Session {
    /// A lettre error as a delivery error: the reply cap's own words when the cap ended it.
    pub fn failed(&self, e: lettre::transport::smtp::Error) -> DeliveryError {
        failed(&self.exceeded, e)
    }
}

fn failed(exceeded: &AtomicBool, e: lettre::transport::smtp::Error) -> DeliveryError {
    if exceeded.load(Ordering::Relaxed) {
        DeliveryError::Retryable(format!(
            "SMTP: a reply larger than {MAX_SMTP_REPLY_BYTES} bytes"
        ))
    } else {
        classify(&e)
    }
}

/// 5xx replies (also the one after DATA) and client-side errors are permanent; 4xx replies,
/// timeouts, network and TLS trouble are retried. A server refusing the client certificate
/// says so after the handshake, in the next read: the hint names the key that mends it.
pub fn classify(e: &lettre::transport::smtp::Error) -> DeliveryError {
    let text = tls_hint(format!("SMTP: {}", error_chain(e)));
    if e.is_permanent() || e.is_client() {
        DeliveryError::Permanent(text)
    } else {
        DeliveryError::Retryable(text)
    }
}

/// Connects to `host:port` within `timeout` and opens the conversation as `mode` says, TLS
/// with `tls`.
pub(super) async fn open(
    host: &str,
    port: u16,
    mode: TlsMode,
    tls: &Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<Session, DeliveryError> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| {
            DeliveryError::Retryable(format!(
                "SMTP: no connection to {host}:{port} within {}",
                crate::report::human_duration(timeout)
            ))
        })?
        .map_err(|e| {
            DeliveryError::Retryable(format!("SMTP: cannot connect to {host}:{port}: {e}"))
        })?;
    let peer = tcp.peer_addr().ok();
    let exceeded = Arc::new(AtomicBool::new(false));
    let hello = ClientId::default();
    let stream = |inner, replay| -> Box<dyn AsyncTokioStream> {
        Box::new(SmtpStream {
            inner: Capped::new(inner, MAX_SMTP_REPLY_BYTES, exceeded.clone()),
            peer,
            replay,
        })
    };
    let stream = match mode {
        TlsMode::None => stream(Inner::Plain(tcp), b""),
        TlsMode::Tls => stream(Inner::Tls(handshake(tls, host, tcp).await?), b""),
        TlsMode::StartTls => {
            // lettre greets, says EHLO and STARTTLS over a stream it only borrows; the TCP
            // connection then comes back here for the handshake. Whatever the server sent
            // after its `220` to STARTTLS stays in lettre's buffer, dropped with it: bytes
            // before the handshake must not be read as protected (RFC 3207's injection).
            let slot = Arc::new(Mutex::new(Some(tcp)));
            let mut plain = AsyncSmtpConnection::connect_with_transport(
                stream(Inner::Lent(slot.clone()), b""),
                &hello,
            )
            .await
            .map_err(|e| failed(&exceeded, e))?;
            if !plain.can_starttls() {
                return Err(DeliveryError::Permanent(
                    "SMTP: the server does not offer STARTTLS (tls = \"starttls\")".to_string(),
                ));
            }
            plain
                .command(Starttls)
                .await
                .map_err(|e| failed(&exceeded, e))?;
            drop(plain);
            let tcp = slot.lock().ok().and_then(|mut s| s.take()).ok_or_else(|| {
                DeliveryError::Retryable("SMTP: the connection was lost at STARTTLS".to_string())
            })?;
            // The server does not greet again after STARTTLS; lettre, starting afresh on the
            // protected stream (and saying EHLO again, as RFC 3207 asks), reads this instead.
            stream(
                Inner::Tls(handshake(tls, host, tcp).await?),
                b"220 TLS started\r\n",
            )
        }
    };
    let conn = AsyncSmtpConnection::connect_with_transport(stream, &hello)
        .await
        .map_err(|e| match mode {
            TlsMode::None => failed(&exceeded, e),
            TlsMode::Tls | TlsMode::StartTls => first_read_failed(&exceeded, e),
        })?;
    Ok(Session { conn, exceeded })
}

/// The first reply on a fresh TLS connection (the greeting, or after STARTTLS the EHLO's)
/// did not come. TLS 1.3 ends the handshake on the client's side before the server has
/// checked the client's certificate, so a server refusing it, or wanting one, shows up here:
/// as its alert (which [`classify`] hints at), or as a bare close (Python's asyncio servers
/// close without the alert).
fn first_read_failed(exceeded: &AtomicBool, e: lettre::transport::smtp::Error) -> DeliveryError {
    let closed = cut_off(&e);
    match failed(exceeded, e) {
        DeliveryError::Retryable(text) if closed && !text.contains("tls_config") => {
            DeliveryError::Retryable(format!(
                "{text} (the server closed the connection just after the TLS handshake; if \
                 it wants a client certificate: `tls_config.cert_file` and `key_file`)"
            ))
        }
        other => other,
    }
}

/// The connection ended under the reader (an end without TLS's `close_notify`, a reset).
fn cut_off(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            )
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// The TLS handshake with `host` as `tls` says (its verifier may check another name: a
/// `tls_config.server_name`).
async fn handshake(
    tls: &Arc<rustls::ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> Result<Box<tokio_rustls::client::TlsStream<TcpStream>>, DeliveryError> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| {
        DeliveryError::Permanent(format!("SMTP: `{host}` is not a valid TLS server name"))
    })?;
    tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map(Box::new)
        .map_err(|e| {
            DeliveryError::Retryable(tls_hint(format!(
                "SMTP: TLS handshake with `{host}` failed: {e}"
            )))
        })
}

/// The system's roots, as lettre's own TLS would use, without the HTTP ALPN the probes offer:
/// TLS for an email pager without `tls_config`.
pub(super) fn system_tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut config = (*crate::net::tls_client_config(Vec::new())).clone();
            config.alpn_protocols.clear();
            Arc::new(config)
        })
        .clone()
}

/// What an SMTP stream runs on.
#[derive(Debug)]
enum Inner {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// The TCP connection before STARTTLS, taken back for the handshake (then absent: a read
    /// or write fails as not connected).
    Lent(Arc<Mutex<Option<TcpStream>>>),
}

/// Runs `f` on the stream under `inner`, if it is still there.
fn on<T>(
    inner: &mut Inner,
    f: impl FnOnce(&mut (dyn AsyncIo + Unpin)) -> Poll<std::io::Result<T>>,
) -> Poll<std::io::Result<T>> {
    match inner {
        Inner::Plain(s) => f(s),
        Inner::Tls(s) => f(s),
        Inner::Lent(slot) => match slot.lock().ok().as_deref_mut().and_then(Option::as_mut) {
            Some(s) => f(s),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        },
    }
}

/// Read and write, for [`on`].
trait AsyncIo: AsyncRead + AsyncWrite {}
impl<T: AsyncRead + AsyncWrite> AsyncIo for T {}

impl AsyncRead for Inner {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        on(self.get_mut(), |s| std::pin::Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Inner {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        on(self.get_mut(), |s| {
            std::pin::Pin::new(s).poll_write(cx, data)
        })
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        on(self.get_mut(), |s| std::pin::Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        on(self.get_mut(), |s| std::pin::Pin::new(s).poll_shutdown(cx))
    }
}

/// A capped connection as lettre takes one (it asks for the peer's address), first reading
/// `replay` (a greeting said before STARTTLS, for a conversation lettre starts afresh).
#[derive(Debug)]
struct SmtpStream {
    inner: Capped<Inner>,
    peer: Option<SocketAddr>,
    replay: &'static [u8],
}

impl AsyncRead for SmtpStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay = &this.replay[n..];
            return Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SmtpStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for SmtpStream {
    fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.peer
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected))
    }
}
