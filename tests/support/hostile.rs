//! Hostile loopback servers for reason tests: silent peers and scripted websockets, each
//! bounded in the connections it accepts and how long it holds them.

use std::time::Duration;

use tokio::net::TcpListener;

/// A listener on 127.0.0.1 at a free port, and its `127.0.0.1:PORT`.
pub async fn listener() -> (TcpListener, String) {
    super::init();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, format!("127.0.0.1:{port}"))
}

/// A port on 127.0.0.1 that refuses every connection while the returned socket lives: bound
/// and never listening, without `SO_REUSEADDR`, so no other test's server can take the port
/// in the meantime (a listener bound and dropped freed its port for anyone: a parallel test's
/// server could be there by the time the step connects).
pub fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// Accepts up to 4 connections and never says a word; lets go of them after 10 s.
pub async fn silent_server() -> String {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let mut held = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            for _ in 0..4 {
                if let Ok((s, _)) = l.accept().await {
                    held.push(s);
                }
            }
            std::future::pending::<()>().await;
        })
        .await;
    });
    addr
}

/// An HTTP server: on each of up to `connections` connections it reads the request head, then
/// `answer`s (a client that hangs up first gets nothing).
pub async fn http_server<F, Fut>(connections: usize, answer: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (l, addr) = listener().await;
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        for _ in 0..connections {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                if read_head(&mut s).await.is_some() {
                    answer(s).await;
                }
            });
        }
    });
    addr
}

/// A websocket server running `behave` on each of up to 4 connections. It accepts the first
/// subprotocol the client offers (an `xmpp` client requires one back).
// tungstenite fixes the handshake callback's error type (an HTTP response): not ours to shrink.
#[allow(clippy::result_large_err)]
pub async fn ws_server<F, Fut>(behave: F) -> String
where
    F: Fn(tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (l, addr) = listener().await;
    let behave = std::sync::Arc::new(behave);
    tokio::spawn(async move {
        for _ in 0..4 {
            let Ok((s, _)) = l.accept().await else { return };
            let behave = behave.clone();
            tokio::spawn(async move {
                use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
                // The error type is tungstenite's, fixed by `accept_hdr_async`'s callback.
                #[allow(clippy::result_large_err)]
                let echo = |req: &Request, mut resp: Response| {
                    let first = req
                        .headers()
                        .get("sec-websocket-protocol")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.split(',').next())
                        .and_then(|p| p.trim().parse().ok());
                    if let Some(p) = first {
                        resp.headers_mut().insert("sec-websocket-protocol", p);
                    }
                    Ok(resp)
                };
                if let Ok(ws) = tokio_tungstenite::accept_hdr_async(s, echo).await {
                    behave(ws).await;
                }
            });
        }
    });
    addr
}

/// How long a pour waits on one write before it takes the client for gone. The prober reads in
/// the same thread as the pour writes: on a machine loaded to 29 a 5 s stall was the thread
/// waiting for the CPU, and the pour hung up on a prober that was still reading.
const POUR_STALL: Duration = Duration::from_secs(15);

/// What a flooding server wrote before the client stopped reading and hung up.
#[derive(Clone, Default)]
pub struct Poured {
    bytes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    done: std::sync::Arc<tokio::sync::Notify>,
    finished: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Poured {
    /// Bytes written once the pour has ended (the client hung up, or `limit` was reached);
    /// waits at most 30 s for that (past the stall a pour gives up after).
    pub async fn total(&self) -> usize {
        use std::sync::atomic::Ordering::SeqCst;
        let _ = tokio::time::timeout(Duration::from_secs(30), async {
            while !self.finished.load(SeqCst) {
                self.done.notified().await;
            }
        })
        .await;
        assert!(self.finished.load(SeqCst), "the pour never ended");
        self.bytes.load(SeqCst)
    }

    /// Writes `head`, then `filler` over and over until about `limit` bytes in all or until
    /// the peer stops taking them (a write failing, or stalling for [`POUR_STALL`]).
    pub async fn pour<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        s: &mut W,
        head: &[u8],
        filler: &[u8],
        limit: usize,
    ) {
        use std::sync::atomic::Ordering::SeqCst;
        use tokio::io::AsyncWriteExt as _;
        let chunk = filler.repeat((64 * 1024 / filler.len().max(1)).max(1));
        let mut sent = 0;
        if let Ok(Ok(())) = tokio::time::timeout(POUR_STALL, s.write_all(head)).await {
            sent += head.len();
            // No filler: the head alone (an empty chunk would never add up to `limit`).
            while sent < limit && !chunk.is_empty() {
                let n = chunk.len().min(limit - sent);
                match tokio::time::timeout(POUR_STALL, s.write_all(&chunk[..n])).await {
                    Ok(Ok(())) => sent += n,
                    _ => break,
                }
            }
        }
        self.bytes.fetch_add(sent, SeqCst);
        self.finished.store(true, SeqCst);
        self.done.notify_waiters();
    }
}

/// An HTTP server that answers the first request with `head` (status line and headers) and
/// then a body of up to `limit` bytes, as fast as the client takes it.
pub async fn pouring_http(head: String, limit: usize) -> (String, Poured) {
    pouring(move |mut s, p| async move {
        if read_head(&mut s).await.is_some() {
            p.pour(&mut s, head.as_bytes(), b"x", limit).await;
        }
    })
    .await
}

/// A server that speaks first (an SMTP greeting): on connect, `head` and then up to `limit`
/// bytes of `filler`, as fast as the client takes them.
pub async fn pouring_greeting(
    head: &'static str,
    filler: &'static [u8],
    limit: usize,
) -> (String, Poured) {
    pouring(move |mut s, p| async move {
        p.pour(&mut s, head.as_bytes(), filler, limit).await;
    })
    .await
}

/// A server whose first connection `serve` takes, with the [`Poured`] it counts into (and
/// this returns beside the address).
async fn pouring<F, Fut>(serve: F) -> (String, Poured)
where
    F: FnOnce(tokio::net::TcpStream, Poured) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (l, addr) = listener().await;
    let poured = Poured::default();
    let p = poured.clone();
    tokio::spawn(async move {
        if let Ok((s, _)) = l.accept().await {
            serve(s, p).await;
        }
    });
    (addr, poured)
}

/// Reads an HTTP request head (up to its blank line, at most 64 KiB); `None` when the client
/// hangs up first.
pub async fn read_head<R: tokio::io::AsyncRead + Unpin>(s: &mut R) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let mut buf = vec![0u8; 8192];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 65536 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    Some(seen)
}

/// A fake Redis that answers the client's set-up (`CLIENT SETINFO`) and `PING`, and answers
/// `INFO` with `head` and then up to `limit` bytes of `filler`: a huge bulk string, an array of
/// a billion elements, a line that never ends.
pub async fn pouring_redis(
    head: &'static str,
    filler: &'static [u8],
    limit: usize,
) -> (String, Poured) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    pouring(move |mut s, p| async move {
        let mut buf = vec![0u8; 8192];
        // Bounded: a handful of commands come before INFO.
        for _ in 0..16 {
            let n = match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => return,
            };
            for command in redis_commands(&buf[..n]) {
                let reply: &[u8] = match command {
                    RedisCommand::SetInfo => b"+OK\r\n",
                    RedisCommand::Ping => b"+PONG\r\n",
                    RedisCommand::Info => {
                        p.pour(&mut s, head.as_bytes(), filler, limit).await;
                        return;
                    }
                };
                if s.write_all(reply).await.is_err() {
                    return;
                }
            }
        }
    })
    .await
}

/// The commands a fake Redis answers.
#[derive(Clone, Copy)]
pub enum RedisCommand {
    SetInfo,
    Ping,
    Info,
}

/// The commands in what a Redis client wrote, in order (the client's set-up pipeline, `PING`,
/// `INFO`); anything else is ignored.
pub fn redis_commands(read: &[u8]) -> Vec<RedisCommand> {
    let text = String::from_utf8_lossy(read);
    let mut commands: Vec<(usize, RedisCommand)> = [
        ("SETINFO", RedisCommand::SetInfo),
        ("\r\nPING\r\n", RedisCommand::Ping),
        ("\r\nINFO\r\n", RedisCommand::Info),
    ]
    .iter()
    .flat_map(|(k, c)| text.match_indices(k).map(|(i, _)| (i, *c)))
    .collect();
    commands.sort_by_key(|(i, _)| *i);
    commands.into_iter().map(|(_, c)| c).collect()
}

/// A fake Redis answering every connection's set-up and `PING`, and `INFO` with `info` (at most
/// 64 connections, 16 reads each): a scheduled probe's every run.
pub async fn redis_answering_info(info: &'static str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        for _ in 0..64 {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                for _ in 0..16 {
                    let n = match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                        .await
                    {
                        Ok(Ok(n)) if n > 0 => n,
                        _ => return,
                    };
                    for command in redis_commands(&buf[..n]) {
                        let reply = match command {
                            RedisCommand::SetInfo => "+OK\r\n".to_string(),
                            RedisCommand::Ping => "+PONG\r\n".to_string(),
                            RedisCommand::Info => format!("${}\r\n{info}\r\n", info.len()),
                        };
                        if s.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}
