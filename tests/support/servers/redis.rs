//! A throw-away `redis-server` (tests/servers/redis/start.sh), plain or with a TLS port, and
//! enough RESP to drive its faults: out of memory, evictions, `CLIENT PAUSE`, `DEBUG SLEEP`,
//! SIGSTOP, a restart with a new `run_id`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{
    COMMAND_DEADLINE, Process, Result, ServerError, err, free_port, require_program,
    start_on_free_port, start_script, temp_dir, test_ca,
};

/// A RESP reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (status, error, integer or bulk); arrays give "".
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) | Reply::Error(s) => s.clone(),
            Reply::Int(i) => i.to_string(),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Bulk(None) | Reply::Array(_) => String::new(),
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}

/// One RESP connection to a test Redis (enough of the protocol to drive faults).
pub struct RedisConn {
    stream: AsyncBufReader<TcpStream>,
}

impl RedisConn {
    pub async fn connect(port: u16) -> Result<RedisConn> {
        let stream = timeout(COMMAND_DEADLINE, TcpStream::connect(("127.0.0.1", port)))
            .await
            .map_err(|_| ServerError(format!("redis 127.0.0.1:{port}: connect timed out")))?
            .map_err(|e| ServerError(format!("redis 127.0.0.1:{port}: {e}")))?;
        Ok(RedisConn {
            stream: AsyncBufReader::new(stream),
        })
    }

    /// Sends one command and reads its reply, within the command deadline. A Redis error
    /// reply is `Ok(Reply::Error(..))`: for fault tests it is the expected answer.
    pub async fn command(&mut self, args: &[&[u8]]) -> Result<Reply> {
        self.command_within(COMMAND_DEADLINE, args).await
    }

    /// `command` with its own deadline (for commands that legitimately wait, e.g. behind a pause).
    pub async fn command_within(&mut self, deadline: Duration, args: &[&[u8]]) -> Result<Reply> {
        timeout(deadline, async {
            let mut buf = format!("*{}\r\n", args.len()).into_bytes();
            for a in args {
                buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                buf.extend_from_slice(a);
                buf.extend_from_slice(b"\r\n");
            }
            self.stream.get_mut().write_all(&buf).await?;
            read_reply(&mut self.stream).await
        })
        .await
        .map_err(|_| ServerError(format!("redis: {} timed out", show(args))))?
        .map_err(|e| ServerError(format!("redis: {}: {e}", show(args))))
    }

    /// `command` for text arguments.
    pub async fn cmd(&mut self, args: &[&str]) -> Result<Reply> {
        let raw: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.command(&raw).await
    }
}

fn show(args: &[&[u8]]) -> String {
    args.first()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .unwrap_or_default()
}

fn read_reply<'a>(
    r: &'a mut AsyncBufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Reply>> + Send + 'a>> {
    Box::pin(async move {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let line = line.trim_end_matches("\r\n");
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad RESP");
        let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
        Ok(match kind {
            "+" => Reply::Status(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Int(rest.parse().map_err(|_| bad())?),
            "$" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut b = vec![0; usize::try_from(n).map_err(|_| bad())? + 2];
                    r.read_exact(&mut b).await?;
                    b.truncate(b.len() - 2);
                    Reply::Bulk(Some(b))
                }
            }
            "*" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Reply::Array(None)
                } else {
                    let mut items = Vec::new();
                    for _ in 0..n {
                        items.push(read_reply(r).await?);
                    }
                    Reply::Array(Some(items))
                }
            }
            _ => return Err(bad()),
        })
    })
}

/// `used_memory` out of an `INFO memory` reply.
fn used_memory(info: &str) -> Result<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ServerError("redis: INFO memory has no used_memory".into()))
}

/// `CLIENT PAUSE` modes.
#[derive(Debug, Clone, Copy)]
pub enum PauseMode {
    /// Write commands (and PUBLISH) wait; reads are served.
    Write,
    /// Every client command waits.
    All,
}

/// A throw-away `redis-server` on 127.0.0.1 (no persistence), from tests/servers/redis/start.sh.
pub struct Redis {
    process: Process,
    port: u16,
    /// With [`start_redis_tls`]: the TLS port and the CA that signed the server's certificate.
    tls: Option<(u16, String)>,
    /// redis-server arguments beyond the script's own (the TLS ones), kept for a restart.
    extra: Vec<String>,
    /// End of a `CLIENT PAUSE ... ALL`: until then even `CLIENT UNPAUSE` waits.
    paused_all_until: Mutex<Option<std::time::Instant>>,
    _dir: tempfile::TempDir,
}

/// Key prefix of the filler written by [`Redis::fill_to_oom`] / [`Redis::fill_to`].
const FILL_PREFIX: &str = "joincanary:fill:";
/// Size of one filler value.
const FILL_VALUE: usize = 64 * 1024;

/// [`start_redis`] that must succeed: panics saying why it did not start (`redis-server`
/// missing, say).
pub async fn running_redis() -> Redis {
    start_redis().await.unwrap_or_else(|e| panic!("{e}"))
}

/// Starts `redis-server` on a free 127.0.0.1 port with a temporary data dir.
pub async fn start_redis() -> Result<Redis> {
    require_program("redis", "redis-server", "redis-server")?;
    require_program("redis", "redis-cli", "redis-tools")?;
    start_on_free_port("redis", |port| async move {
        let dir = temp_dir("redis")?;
        let args = [port.to_string(), dir.path().display().to_string()];
        let process = start_script("redis", "redis/start.sh", &args, dir.path()).await?;
        Ok(Redis {
            process,
            port,
            tls: None,
            extra: Vec::new(),
            paused_all_until: Mutex::new(None),
            _dir: dir,
        })
    })
    .await
}

/// A `redis-server` that speaks TLS on a second port (certificate from a fresh [`test_ca`],
/// no client certificates asked for) beside its plain port, which the test side uses to drive
/// it. See [`Redis::tls_url`] and [`Redis::ca_pem`].
pub async fn start_redis_tls() -> Result<Redis> {
    require_program("redis", "redis-server", "redis-server")?;
    require_program("redis", "redis-cli", "redis-tools")?;
    let ca = test_ca()?;
    let ca = &ca;
    start_on_free_port("redis", |port| async move {
        let tls_port = free_port()?;
        let dir = temp_dir("redis")?;
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text)
                .map_err(|e| ServerError(format!("redis: writing {name}: {e}")))
        };
        write("server.crt", &ca.server_cert_pem)?;
        write("server.key", &ca.server_key_pem)?;
        write("ca.crt", &ca.ca_pem)?;
        let file = |name: &str| dir.path().join(name).display().to_string();
        let extra = vec![
            "--tls-port".to_string(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            file("server.crt"),
            "--tls-key-file".into(),
            file("server.key"),
            "--tls-ca-cert-file".into(),
            file("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        let mut args = vec![port.to_string(), dir.path().display().to_string()];
        args.extend(extra.iter().cloned());
        let process = start_script("redis", "redis/start.sh", &args, dir.path()).await?;
        Ok(Redis {
            process,
            port,
            tls: Some((tls_port, ca.ca_pem.clone())),
            extra,
            paused_all_until: Mutex::new(None),
            _dir: dir,
        })
    })
    .await
}

impl Redis {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `rediss://127.0.0.1:TLS_PORT` (a server from [`start_redis_tls`] only).
    pub fn tls_url(&self) -> String {
        let (port, _) = self.tls.as_ref().expect("started with start_redis_tls");
        format!("rediss://127.0.0.1:{port}")
    }

    /// The PEM of the CA that signed the TLS port's certificate.
    pub fn ca_pem(&self) -> &str {
        let (_, pem) = self.tls.as_ref().expect("started with start_redis_tls");
        pem
    }

    pub fn process(&self) -> &Process {
        &self.process
    }

    /// A new connection (for commands that must share one, e.g. SUBSCRIBE).
    pub async fn conn(&self) -> Result<RedisConn> {
        RedisConn::connect(self.port).await
    }

    /// One command on a fresh connection.
    pub async fn cmd(&self, args: &[&str]) -> Result<Reply> {
        self.conn().await?.cmd(args).await
    }

    /// One command that must not be answered with an error.
    pub async fn ok(&self, args: &[&str]) -> Result<Reply> {
        match self.cmd(args).await? {
            Reply::Error(e) => err(format!("redis: {}: {e}", args.join(" "))),
            r => Ok(r),
        }
    }

    pub async fn ping(&self) -> Result<()> {
        match self.cmd(&["PING"]).await? {
            Reply::Status(s) if s == "PONG" => Ok(()),
            r => err(format!("redis: PING answered {r:?}")),
        }
    }

    /// `INFO section` as field -> value.
    pub async fn info(&self, section: &str) -> Result<HashMap<String, String>> {
        let text = self.ok(&["INFO", section]).await?.text();
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect())
    }

    /// `used_memory` in bytes.
    pub async fn used_memory(&self) -> Result<u64> {
        used_memory(&self.ok(&["INFO", "memory"]).await?.text())
    }

    /// Out of memory for real: `maxmemory` a little above what is used, `noeviction`, then
    /// filler keys written until Redis answers OOM. Returns Redis's error text. Every write
    /// after this (presence, SET, HSET, ...) is refused with the same error.
    pub async fn fill_to_oom(&self) -> Result<String> {
        let limit = self.used_memory().await? + 2 * 1024 * 1024;
        self.ok(&["CONFIG", "SET", "maxmemory-policy", "noeviction"])
            .await?;
        self.ok(&["CONFIG", "SET", "maxmemory", &limit.to_string()])
            .await?;
        if self.fill(|_| false).await?.is_none() {
            return err("redis: filled past maxmemory without an OOM error");
        }
        // The refused 64 KiB write's own query buffer counted towards used_memory; once freed,
        // Redis could dip back under the limit. Set the limit 1 MiB under what the filled
        // Redis now uses, so it stays refused.
        let used = self.used_memory().await?;
        self.ok(&[
            "CONFIG",
            "SET",
            "maxmemory",
            &used.saturating_sub(1024 * 1024).to_string(),
        ])
        .await?;
        match self
            .cmd(&["SET", &format!("{FILL_PREFIX}probe"), "x"])
            .await?
        {
            Reply::Error(e) if e.starts_with("OOM") => Ok(e),
            r => err(format!("redis: still accepts writes after the fill: {r:?}")),
        }
    }

    /// Sets `maxmemory` (with `noeviction`) and writes filler until `used_memory` reaches
    /// `fraction` of it (e.g. 0.85 for a memory warning that is not yet an outage).
    pub async fn fill_to(&self, maxmemory: u64, fraction: f64) -> Result<()> {
        self.ok(&["CONFIG", "SET", "maxmemory-policy", "noeviction"])
            .await?;
        self.ok(&["CONFIG", "SET", "maxmemory", &maxmemory.to_string()])
            .await?;
        #[allow(clippy::cast_precision_loss)]
        let reached = |used: u64| used as f64 >= maxmemory as f64 * fraction;
        match self.fill(reached).await? {
            Some(e) if fraction < 1.0 => err(format!(
                "redis: refused before {fraction} of maxmemory: {e}"
            )),
            _ => Ok(()),
        }
    }

    /// Writes filler values until Redis refuses (returns its error) or `done(used)` says stop.
    async fn fill(&self, done: impl Fn(u64) -> bool) -> Result<Option<String>> {
        let mut conn = self.conn().await?;
        let value = vec![b'x'; FILL_VALUE];
        // Bounded: 16,384 values of 64 KiB is 1 GiB, far past any test's maxmemory.
        for i in 0..16_384u32 {
            let key = format!("{FILL_PREFIX}{i}");
            match conn.command(&[b"SET", key.as_bytes(), &value]).await? {
                Reply::Error(e) => return Ok(Some(e)),
                _ => {
                    // On the same connection: a new one per write would churn sockets.
                    let info = conn.cmd(&["INFO", "memory"]).await?.text();
                    if done(used_memory(&info)?) {
                        return Ok(None);
                    }
                }
            }
        }
        err("redis: wrote 1 GiB of filler without reaching the limit")
    }

    /// Evictions for real: `allkeys-lru` with `maxmemory` 1 MiB above what is used, then
    /// `values` filler values of 64 KiB (Redis evicts older ones to take each). Leaves the
    /// limit off again (so no memory warning rides along) and returns `evicted_keys`.
    pub async fn evict(&self, values: u32) -> Result<u64> {
        let limit = self.used_memory().await? + 1024 * 1024;
        self.ok(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"])
            .await?;
        self.ok(&["CONFIG", "SET", "maxmemory", &limit.to_string()])
            .await?;
        let mut conn = self.conn().await?;
        let value = vec![b'x'; FILL_VALUE];
        for i in 0..values {
            let key = format!("{FILL_PREFIX}{i}");
            if let Reply::Error(e) = conn.command(&[b"SET", key.as_bytes(), &value]).await? {
                return err(format!("redis: SET under allkeys-lru: {e}"));
            }
        }
        self.ok(&["CONFIG", "SET", "maxmemory", "0"]).await?;
        let evicted = self.info("stats").await?;
        evicted
            .get("evicted_keys")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ServerError("redis: INFO stats has no evicted_keys".into()))
    }

    /// Stops Redis (SIGKILL) and starts it again on the same port: a new `run_id`, every
    /// counter back at 0, as after a crash or a deploy.
    pub async fn restart(&mut self) -> Result<()> {
        let _ = self.process.signal("KILL");
        let _ = self.process.child.wait();
        let args = [
            self.port.to_string(),
            self._dir.path().display().to_string(),
        ];
        self.process = start_script("redis", "redis/start.sh", &args, self._dir.path()).await?;
        Ok(())
    }

    /// `CLIENT PAUSE ms WRITE|ALL`: commands wait (connections stay open) until `ms` pass.
    /// A `Write` pause ends early with [`Redis::restore`]; an `All` pause cannot (Redis holds
    /// `CLIENT UNPAUSE` too), so `restore` waits for its end: keep `All` pauses short, and
    /// use [`Redis::freeze`] for a long stall that must end on demand.
    pub async fn pause(&self, ms: u64, mode: PauseMode) -> Result<()> {
        let word = match mode {
            PauseMode::Write => "WRITE",
            PauseMode::All => "ALL",
        };
        let until = std::time::Instant::now() + Duration::from_millis(ms);
        self.ok(&["CLIENT", "PAUSE", &ms.to_string(), word]).await?;
        if let PauseMode::All = mode {
            *self
                .paused_all_until
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(until);
        }
        Ok(())
    }

    /// `DEBUG SLEEP`: Redis (single-threaded) answers nobody for `ms`; returns when it wakes.
    /// Called in a loop it makes a slow Redis.
    pub async fn debug_sleep(&self, ms: u64) -> Result<()> {
        let secs = format!("{:.3}", Duration::from_millis(ms).as_secs_f64());
        let mut conn = self.conn().await?;
        let deadline = COMMAND_DEADLINE + Duration::from_millis(ms);
        match conn
            .command_within(deadline, &[b"DEBUG", b"SLEEP", secs.as_bytes()])
            .await?
        {
            Reply::Error(e) => err(format!("redis: DEBUG SLEEP: {e}")),
            _ => Ok(()),
        }
    }

    /// SIGSTOP: Redis stops answering anything, connections stay open.
    pub fn freeze(&self) -> Result<()> {
        self.process.freeze()
    }

    /// SIGCONT after [`Redis::freeze`].
    pub fn thaw(&self) -> Result<()> {
        self.process.thaw()
    }

    /// Undoes every fault: SIGCONT, `CLIENT UNPAUSE`, the filler deleted, no `maxmemory`.
    pub async fn restore(&self) -> Result<()> {
        self.thaw()?;
        let pause_left = self
            .paused_all_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .map(|t| t.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or_default();
        let mut conn = self.conn().await?;
        conn.command_within(COMMAND_DEADLINE + pause_left, &[b"CLIENT", b"UNPAUSE"])
            .await?;
        let mut cursor = "0".to_string();
        // Bounded: the filler is at most 16,384 keys, scanned 1,000 at a time.
        for _ in 0..1_000 {
            let reply = conn
                .cmd(&[
                    "SCAN",
                    &cursor,
                    "MATCH",
                    &format!("{FILL_PREFIX}*"),
                    "COUNT",
                    "1000",
                ])
                .await?;
            let Reply::Array(Some(parts)) = reply else {
                return err(format!("redis: SCAN answered {reply:?}"));
            };
            let (Some(next), Some(Reply::Array(Some(keys)))) = (parts.first(), parts.get(1)) else {
                return err("redis: SCAN reply malformed");
            };
            let keys: Vec<String> = keys.iter().map(Reply::text).collect();
            if !keys.is_empty() {
                let mut args = vec!["DEL"];
                args.extend(keys.iter().map(String::as_str));
                conn.cmd(&args).await?;
            }
            cursor = next.text();
            if cursor == "0" {
                break;
            }
        }
        self.ok(&["CONFIG", "SET", "maxmemory", "0"]).await?;
        Ok(())
    }
}
