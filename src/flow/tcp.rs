//! A step's TCP connection ([`Tcp`]): `TCP_NODELAY` set just before its second write, where
//! it first matters. Its own file so the websocket and TURN streams can name it without
//! reaching into `net` (which takes a `RunContext`).

use tokio::net::TcpStream;

/// A step's TCP connection, with `TCP_NODELAY` set as browsers set it (a small frame written
/// after another must not wait for the first one's ACK), but only just before the
/// connection's second write. Nagle's algorithm (Linux: Minshall's variant) holds a small
/// segment back only while an earlier small one is unacknowledged, and before the first write
/// nothing is (the handshake acknowledged the SYN): the first write leaves at once with or
/// without the option, so setting it at the opening bought nothing for it. A connection that
/// writes once, an HTTP request, never pays the `setsockopt`; every later write goes out as
/// it did (measured in BENCHMARKS.md, issue 20).
#[derive(Debug)]
pub(crate) struct Tcp {
    tcp: TcpStream,
    /// Writes that moved bytes, counted to 2: at 1, the next one sets `TCP_NODELAY` first.
    writes: u8,
}

impl Tcp {
    pub(crate) fn new(tcp: TcpStream) -> Tcp {
        Tcp { tcp, writes: 0 }
    }

    /// The socket (its readiness, its options).
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Before a write: the second one finds `TCP_NODELAY` set.
    fn before_write(&mut self) {
        if self.writes == 1 {
            // As before at the opening, a refusal is not worth failing the run for.
            let _ = self.tcp.set_nodelay(true);
            self.writes = 2;
        }
    }

    /// After a write: one that moved bytes counts.
    fn wrote(&mut self, written: &std::task::Poll<std::io::Result<usize>>) {
        if self.writes == 0 && matches!(written, std::task::Poll::Ready(Ok(n)) if *n > 0) {
            self.writes = 1;
        }
    }
}

impl tokio::io::AsyncRead for Tcp {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Tcp {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.before_write();
        let written = std::pin::Pin::new(&mut this.tcp).poll_write(cx, data);
        this.wrote(&written);
        written
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.before_write();
        let written = std::pin::Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.wrote(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
