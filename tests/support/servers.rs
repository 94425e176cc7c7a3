//! Real third-party servers for the integration tests (Redis, Socket.IO, protoo, ActionCable,
//! Prosody, Janus), each started through its script in `tests/servers/` on 127.0.0.1 and
//! killed with its whole process group when the handle drops. See docs/test-servers.md.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout, timeout_at};

/// How long a server may take to print its ready line (generous: CI shares 2 cores).
const START_DEADLINE: Duration = Duration::from_secs(30);
/// Deadline of one Redis command from the test side.
const COMMAND_DEADLINE: Duration = Duration::from_secs(5);
/// Lines of a server's output kept for error messages.
const TAIL_LINES: usize = 60;

/// The password every test server accepts (any user name).
pub const PASSWORD: &str = "canary-pass";

/// Why a server could not be started or driven; the text says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ServerError(pub String);

pub type Result<T> = std::result::Result<T, ServerError>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(ServerError(msg.into()))
}

/// `tests/servers/` in the source tree.
pub fn servers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/servers")
}

/// A free port on 127.0.0.1 for servers that cannot bind port 0 themselves (a race with other
/// tests is possible, so starters that use it retry on "address in use").
pub fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ServerError(format!("no free port on 127.0.0.1: {e}")))
}

/// Fails with a message naming `bash .ci/run` when `program` is not on PATH.
pub(crate) fn require_program(server: &str, program: &str, package: &str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        err(format!(
            "{server}: `{program}` is not installed; run `bash .ci/run` (it installs the Debian package {package})"
        ))
    }
}

/// Fails with a message naming `bash .ci/run` when the node project is not installed.
fn require_node_modules(server: &str) -> Result<()> {
    require_program(server, "node", "nodejs")?;
    if servers_dir().join("node_modules/socket.io").is_dir() {
        Ok(())
    } else {
        err(format!(
            "{server}: tests/servers/node_modules is missing; run `bash .ci/run` (its set-up runs `npm ci` in tests/servers)"
        ))
    }
}

/// One started server process, leader of its own process group.
pub struct Process {
    name: String,
    child: Child,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Process {
    /// Starts `program args` in a new process group and waits (bounded) for a stdout line
    /// starting with `ready `, which it returns.
    async fn start(
        name: &str,
        program: &str,
        args: &[String],
        cwd: &Path,
    ) -> Result<(Process, String)> {
        Process::launch(name, program, args, cwd, true).await
    }

    /// [`Process::start`]; with `ready` false it returns at once (the caller checks readiness
    /// its own way, e.g. a server's health endpoint).
    async fn launch(
        name: &str,
        program: &str,
        args: &[String],
        cwd: &Path,
        ready: bool,
    ) -> Result<(Process, String)> {
        let mut child = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so Drop kills the script and everything it started at once.
            .process_group(0)
            .spawn()
            .map_err(|e| ServerError(format!("{name}: cannot start {program}: {e}")))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::unbounded_channel();
        let (tx, rx) = if ready {
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        if let Some(out) = child.stdout.take() {
            drain(out, tail.clone(), tx);
        }
        if let Some(errs) = child.stderr.take() {
            drain(errs, tail.clone(), None);
        }
        let mut process = Process {
            name: name.to_string(),
            child,
            tail,
        };
        let Some(mut rx) = rx else {
            return Ok((process, String::new()));
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            match timeout_at(deadline, rx.recv()).await {
                Ok(Some(line)) if line.starts_with("ready ") => return Ok((process, line)),
                Ok(Some(_)) => {}
                Ok(None) => {
                    let status = process
                        .child
                        .wait()
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    return err(format!(
                        "{name} exited before it was ready ({status}); its output:\n{}",
                        process.output()
                    ));
                }
                Err(_) => {
                    return err(format!(
                        "{name} printed no ready line within {START_DEADLINE:?}; its output:\n{}",
                        process.output()
                    ));
                }
            }
        }
    }

    /// The last lines the server printed (stdout and stderr), for failure messages.
    pub fn output(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "STOP", "CONT") to the whole process group.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args([
                format!("-{signal}"),
                "--".into(),
                format!("-{}", self.child.id()),
            ])
            .status()
            .map_err(|e| ServerError(format!("{}: kill -{signal}: {e}", self.name)))?;
        if status.success() {
            Ok(())
        } else {
            err(format!("{}: kill -{signal} failed: {status}", self.name))
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered. Returns once
    /// every thread of the process group has stopped (a signal lands asynchronously: a busy
    /// thread could otherwise still answer a packet sent right after).
    pub fn freeze(&self) -> Result<()> {
        self.signal("STOP")?;
        for _ in 0..200 {
            if self.all_stopped() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        err(format!("{}: not stopped 1 s after SIGSTOP", self.name))
    }

    /// Whether every thread of every process in the group is stopped (state `T`).
    fn all_stopped(&self) -> bool {
        let group = self.child.id().to_string();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return false;
        };
        procs.flatten().all(|p| {
            // /proc/PID/stat: `pid (comm) state ppid pgrp ...`; comm may hold spaces.
            let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
            if fields.get(2) != Some(&group.as_str()) {
                return true;
            }
            std::fs::read_dir(p.path().join("task")).is_ok_and(|tasks| {
                tasks.flatten().all(|t| {
                    let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                    stat.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().next())
                        .is_some_and(|state| state == "T" || state == "t")
                })
            })
        })
    }

    /// Undoes [`Process::freeze`].
    pub fn thaw(&self) -> Result<()> {
        self.signal("CONT")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.signal("KILL");
        let _ = self.child.wait();
    }
}

/// Reads lines from a server's output into the tail, forwarding stdout lines to `ready`.
/// Keeps reading after ready so the server never blocks on a full pipe.
fn drain(
    stream: impl Read + Send + 'static,
    tail: Arc<Mutex<VecDeque<String>>>,
    ready: Option<mpsc::UnboundedSender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            {
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                if t.len() == TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(line.clone());
            }
            if let Some(tx) = &ready {
                let _ = tx.send(line);
            }
        }
    });
}

/// Starts a server whose port the test picks, retrying with a new port when it was taken.
pub(crate) async fn start_on_free_port<T, F, Fut>(name: &str, mut start: F) -> Result<T>
where
    F: FnMut(u16) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut last = None;
    for _ in 0..3 {
        match start(free_port()?).await {
            Ok(t) => return Ok(t),
            Err(e) if e.0.contains("in use") => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| ServerError(format!("{name}: no port"))))
}

/// Runs `bash tests/servers/<script> args...` and waits for its ready line.
pub(crate) async fn start_script(
    name: &str,
    script: &str,
    args: &[String],
    cwd: &Path,
) -> Result<Process> {
    Ok(start_script_ready(name, script, args, cwd).await?.0)
}

/// [`start_script`], with the ready line (for a server that says there which port it bound).
pub(crate) async fn start_script_ready(
    name: &str,
    script: &str,
    args: &[String],
    cwd: &Path,
) -> Result<(Process, String)> {
    let mut all = vec![servers_dir().join(script).display().to_string()];
    all.extend_from_slice(args);
    Process::start(name, "bash", &all, cwd).await
}

/// A temporary directory for one server's config and data (removed with the handle).
pub(crate) fn temp_dir(name: &str) -> Result<tempfile::TempDir> {
    tempfile::tempdir().map_err(|e| ServerError(format!("{name}: temp dir: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Redis

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

/// A throw-away CA and a server certificate it signed for 127.0.0.1 and localhost (PEM).
pub struct TestCa {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

/// Makes a fresh [`TestCa`] (ECDSA P-256, made at test time: no key material in the tree).
pub fn test_ca() -> Result<TestCa> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let bad = |e: rcgen::Error| ServerError(format!("test CA: {e}"));
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "joincanary test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer =
        CertifiedIssuer::self_signed(ca, KeyPair::generate().map_err(bad)?).map_err(bad)?;
    let server = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
    ])
    .map_err(bad)?;
    let server_key = KeyPair::generate().map_err(bad)?;
    let cert = server.signed_by(&server_key, &issuer).map_err(bad)?;
    Ok(TestCa {
        ca_pem: issuer.pem(),
        server_cert_pem: cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    })
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

// ---------------------------------------------------------------------------------------------
// Node servers (Socket.IO, protoo)

/// One node test server process (tests/servers/<name>/server.js) listening on 127.0.0.1.
pub struct NodeServer {
    process: Process,
    port: u16,
}

impl NodeServer {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn process(&self) -> &Process {
        &self.process
    }

    /// protoo's websocket URL for a peer (connect with subprotocol `protoo`).
    pub fn protoo_url(&self, room: &str, peer: &str, token: &str) -> String {
        format!(
            "ws://127.0.0.1:{}/?roomId={room}&peerId={peer}&token={token}",
            self.port
        )
    }
}

/// Starts `node tests/servers/<script> args...`; the script listens on port 0 and prints
/// `ready <name> http://127.0.0.1:PORT ...`.
pub(crate) async fn start_node(name: &str, script: &str, args: &[String]) -> Result<NodeServer> {
    require_node_modules(name)?;
    let mut all = vec![servers_dir().join(script).display().to_string()];
    all.extend(args.iter().cloned());
    let (process, line) = Process::start(name, "node", &all, &servers_dir()).await?;
    let port = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://127.0.0.1:"))
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .ok_or_else(|| ServerError(format!("{name}: ready line without a port: {line}")))?;
    Ok(NodeServer { process, port })
}

/// Two Socket.IO 4.8 processes with the Redis adapter over one Redis (see docs/test-servers.md
/// for the app: login, `join`, `signal`, `echo`, `leave`).
pub struct SocketIo {
    pub a: NodeServer,
    pub b: NodeServer,
}

impl SocketIo {
    /// The Engine.IO v4 websocket URL of server `a` or `b`'s base URL.
    pub fn ws_url(server: &NodeServer) -> String {
        format!(
            "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket",
            server.port
        )
    }
}

/// Options of [`start_socketio_with`].
#[derive(Debug, Clone, Default)]
pub struct SocketIoOptions {
    /// A separate Redis for the adapter's pub/sub (presence stays on the main one), so a test
    /// can stall pub/sub alone.
    pub pubsub_redis_url: Option<String>,
    /// Engine.IO ping interval / timeout in ms (Socket.IO's defaults: 25,000 / 20,000).
    pub ping_interval_ms: Option<u64>,
    pub ping_timeout_ms: Option<u64>,
    /// Serve Engine.IO v3 (Socket.IO 2) clients too (`allowEIO3`).
    pub allow_eio3: bool,
}

/// Two Socket.IO server processes (`a`, `b`) sharing `redis`.
pub async fn start_socketio(redis: &Redis) -> Result<SocketIo> {
    start_socketio_with(redis, &SocketIoOptions::default()).await
}

pub async fn start_socketio_with(redis: &Redis, opts: &SocketIoOptions) -> Result<SocketIo> {
    let args = |name: &str| {
        let mut a = vec![
            "--port".to_string(),
            "0".into(),
            "--redis".into(),
            redis.url(),
            "--name".into(),
            name.into(),
        ];
        if let Some(u) = &opts.pubsub_redis_url {
            a.extend(["--pubsub-redis".into(), u.clone()]);
        }
        if let Some(ms) = opts.ping_interval_ms {
            a.extend(["--ping-interval".into(), ms.to_string()]);
        }
        if let Some(ms) = opts.ping_timeout_ms {
            a.extend(["--ping-timeout".into(), ms.to_string()]);
        }
        if opts.allow_eio3 {
            a.extend(["--allow-eio3".into(), "true".into()]);
        }
        a
    };
    let (args_a, args_b) = (args("a"), args("b"));
    let (a, b) = tokio::join!(
        start_node("socketio", "socketio/server.js", &args_a),
        start_node("socketio", "socketio/server.js", &args_b),
    );
    Ok(SocketIo { a: a?, b: b? })
}

/// Two SockJS app processes (tests/servers/sockjs/server.js: login, `auth`, `join`, `signal`)
/// whose rooms meet only in `redis`'s pub/sub.
pub async fn start_sockjs(redis: &Redis) -> Result<(NodeServer, NodeServer)> {
    let args = |name: &str| {
        vec![
            "--port".to_string(),
            "0".into(),
            "--redis".into(),
            redis.url(),
            "--name".into(),
            name.into(),
        ]
    };
    let (args_a, args_b) = (args("a"), args("b"));
    let (a, b) = tokio::join!(
        start_node("sockjs", "sockjs/server.js", &args_a),
        start_node("sockjs", "sockjs/server.js", &args_b),
    );
    Ok((a?, b?))
}

/// The protoo request/response server (tests/servers/protoo/server.js).
pub async fn start_protoo() -> Result<NodeServer> {
    start_node("protoo", "protoo/server.js", &["--port".into(), "0".into()]).await
}

// ---------------------------------------------------------------------------------------------
// Prosody (XMPP)

/// Prosody with a MUC (tests/servers/prosody/start.sh): hosts `localhost` (SASL PLAIN user
/// [`XMPP_USER`] / [`PASSWORD`]), `guest.localhost` (SASL ANONYMOUS), `conference.localhost`
/// (MUC; rooms named `forbidden*` cannot be created); and Jitsi's layout: `meet.jitsi`,
/// `guest.meet.jitsi`, `conference.meet.jitsi`, `focus.meet.jitsi` (a jicofo stand-in).
pub struct Prosody {
    process: Process,
    http_port: u16,
    c2s_port: u16,
    _dir: tempfile::TempDir,
}

/// The account the Prosody start script creates on `localhost`.
pub const XMPP_USER: &str = "alice";

pub async fn start_prosody() -> Result<Prosody> {
    require_program("prosody", "prosody", "prosody")?;
    require_program("prosody", "curl", "curl")?;
    start_on_free_port("prosody", |http_port| async move {
        let c2s_port = free_port()?;
        let dir = temp_dir("prosody")?;
        let args = [
            c2s_port.to_string(),
            http_port.to_string(),
            dir.path().display().to_string(),
        ];
        let process = start_script("prosody", "prosody/start.sh", &args, dir.path()).await?;
        Ok(Prosody {
            process,
            http_port,
            c2s_port,
            _dir: dir,
        })
    })
    .await
}

impl Prosody {
    /// `ws://127.0.0.1:PORT/xmpp-websocket` (RFC 7395; subprotocol `xmpp`).
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/xmpp-websocket", self.http_port)
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Plain XMPP client port (not needed by websocket probes).
    pub fn c2s_port(&self) -> u16 {
        self.c2s_port
    }

    pub fn process(&self) -> &Process {
        &self.process
    }
}

// ---------------------------------------------------------------------------------------------
// Janus

/// The Janus Admin API secret in the test config.
pub const JANUS_ADMIN_SECRET: &str = "janusoverlord";

/// Janus with the WebSocket transport and the echotest plugin (tests/servers/janus/start.sh).
pub struct Janus {
    process: Process,
    ws_port: u16,
    admin_port: u16,
    /// Started in a network namespace of its own (see [`start_janus_media`]).
    netns: bool,
    _dir: tempfile::TempDir,
}

pub async fn start_janus() -> Result<Janus> {
    start_janus_script("janus/start.sh", false, &[]).await
}

/// Janus for the media path, in a network namespace of its own with a veth pair
/// (tests/servers/janus/start-netns.sh): Janus never gathers ICE candidates on loopback, and
/// the tests may only talk to loopback or namespaces they create. Talk to it from inside,
/// with [`Janus::inside`].
pub async fn start_janus_media() -> Result<Janus> {
    require_program("janus", "unshare", "util-linux")?;
    require_program("janus", "ip", "iproute2")?;
    start_janus_script("janus/start-netns.sh", true, &[]).await
}

/// [`start_janus_media`] with `full_trickle = true`: Janus's SDP carries no candidate, and it
/// trickles them in `{"janus":"trickle"}` events (before its answer, in practice), then
/// `{"completed": true}`.
pub async fn start_janus_media_full_trickle() -> Result<Janus> {
    require_program("janus", "unshare", "util-linux")?;
    require_program("janus", "ip", "iproute2")?;
    start_janus_script("janus/start-netns.sh", true, &["full-trickle"]).await
}

async fn start_janus_script(
    script: &'static str,
    netns: bool,
    extra: &'static [&'static str],
) -> Result<Janus> {
    require_program("janus", "janus", "janus")?;
    require_program("janus", "curl", "curl")?;
    start_on_free_port("janus", |ws_port| async move {
        let admin_port = free_port()?;
        let dir = temp_dir("janus")?;
        let mut args = vec![
            ws_port.to_string(),
            admin_port.to_string(),
            dir.path().display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let process = start_script("janus", script, &args, dir.path()).await?;
        Ok(Janus {
            process,
            ws_port,
            admin_port,
            netns,
            _dir: dir,
        })
    })
    .await
}

impl Janus {
    /// `ws://127.0.0.1:PORT/` (subprotocol `janus-protocol`).
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.ws_port)
    }

    /// The Admin API: `ws://127.0.0.1:PORT/` (subprotocol `janus-admin-protocol`).
    pub fn admin_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.admin_port)
    }

    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Runs `f` where this Janus can be reached: for [`start_janus_media`]'s, on a thread of
    /// its own that joined Janus's network namespace (setns is per thread), with a runtime of
    /// its own, so every socket `f` opens lives there.
    pub async fn inside<T, F, Fut>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T>,
    {
        if !self.netns {
            return f().await;
        }
        let ns = format!("/proc/{}/ns/net", self.process.pid());
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let file = std::fs::File::open(&ns).unwrap_or_else(|e| panic!("{ns}: {e}"));
            // SAFETY: setns(2) on a descriptor we own; it moves only this thread, which is
            // ours and ends with `f`.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let _ = tx.send(rt.block_on(f()));
        });
        rx.await.expect("the namespace thread finished")
    }

    /// The ids of the sessions Janus holds (Admin API `list_sessions`): a probe's cleanup
    /// must leave none behind.
    pub async fn sessions(&self) -> Result<Vec<u64>> {
        let url = self.admin_url();
        self.inside(move || list_sessions(url)).await
    }

    /// Panics unless Janus holds no session: every one the probe made was destroyed.
    pub async fn assert_no_sessions(&self) {
        let left = self.sessions().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(left, Vec::<u64>::new(), "sessions left on Janus");
    }
}

/// The Admin API's `list_sessions` at `admin_url`.
async fn list_sessions(admin_url: String) -> Result<Vec<u64>> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let fail = |e: String| ServerError(format!("janus admin: {e}"));
    let mut req = admin_url
        .into_client_request()
        .map_err(|e| fail(e.to_string()))?;
    req.headers_mut().insert(
        "sec-websocket-protocol",
        tokio_tungstenite::tungstenite::http::HeaderValue::from_static("janus-admin-protocol"),
    );
    timeout(COMMAND_DEADLINE, async {
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let ask = serde_json::json!({"janus": "list_sessions", "transaction": "sessions", "admin_secret": JANUS_ADMIN_SECRET});
        ws.send(Message::text(ask.to_string()))
            .await
            .map_err(|e| fail(e.to_string()))?;
        while let Some(msg) = ws.next().await {
            if let Message::Text(t) = msg.map_err(|e| fail(e.to_string()))? {
                let v: serde_json::Value =
                    serde_json::from_str(&t).map_err(|e| fail(e.to_string()))?;
                return v["sessions"]
                    .as_array()
                    .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
                    .ok_or_else(|| fail(format!("unexpected answer {t}")));
            }
        }
        Err(fail("closed without an answer".into()))
    })
    .await
    .map_err(|_| fail("timed out".into()))?
}

// ---------------------------------------------------------------------------------------------
// ActionCable

/// Rails ActionCable on puma with the Redis subscription adapter
/// (tests/servers/actioncable/start.sh).
pub struct ActionCable {
    process: Process,
    port: u16,
}

/// ActionCable over `redis`: `POST /api/login`, `/cable?token=T`, `RoomChannel`.
pub async fn start_actioncable(redis: &Redis) -> Result<ActionCable> {
    require_program("actioncable", "puma", "puma")?;
    require_program("actioncable", "curl", "curl")?;
    let redis_url = redis.url();
    start_on_free_port("actioncable", |port| {
        let redis_url = redis_url.clone();
        async move {
            let args = [port.to_string(), redis_url];
            let process =
                start_script("actioncable", "actioncable/start.sh", &args, &servers_dir()).await?;
            Ok(ActionCable { process, port })
        }
    })
    .await
}

impl ActionCable {
    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `ws://127.0.0.1:PORT/cable?token=T` (subprotocol `actioncable-v1-json`).
    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://127.0.0.1:{}/cable?token={token}", self.port)
    }

    pub fn process(&self) -> &Process {
        &self.process
    }
}

// ---------------------------------------------------------------------------------------------
// Alertmanager

/// Debian's `prometheus-alertmanager` on 127.0.0.1 (no clustering), with a temporary data dir.
pub struct Alertmanager {
    process: Process,
    port: u16,
    _dir: tempfile::TempDir,
}

/// Starts Alertmanager with `config` (YAML) and waits (bounded) until `/-/ready` answers 200.
pub async fn start_alertmanager(config: &str) -> Result<Alertmanager> {
    require_program(
        "alertmanager",
        "prometheus-alertmanager",
        "prometheus-alertmanager",
    )?;
    start_on_free_port("alertmanager", |port| async move {
        let dir = temp_dir("alertmanager")?;
        let file = dir.path().join("alertmanager.yml");
        std::fs::write(&file, config)
            .map_err(|e| ServerError(format!("alertmanager: writing its config: {e}")))?;
        let args = [
            format!("--config.file={}", file.display()),
            format!("--storage.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            // No gossip port: nothing but the API on loopback.
            "--cluster.listen-address=".to_string(),
            "--log.level=warn".to_string(),
        ];
        let (mut process, _) = Process::launch(
            "alertmanager",
            "prometheus-alertmanager",
            &args,
            dir.path(),
            false,
        )
        .await?;
        let client = reqwest::Client::new();
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let answer = timeout(Duration::from_secs(2), client.get(&ready).send()).await;
            if matches!(&answer, Ok(Ok(r)) if r.status().is_success()) {
                return Ok(Alertmanager {
                    process,
                    port,
                    _dir: dir,
                });
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                // "address already in use" makes start_on_free_port try another port.
                return err(format!(
                    "alertmanager exited before it was ready ({status}); its output:\n{}",
                    process.output()
                ));
            }
            if Instant::now() > deadline {
                return err(format!(
                    "alertmanager not ready within {START_DEADLINE:?}; its output:\n{}",
                    process.output()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

impl Alertmanager {
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn process(&self) -> &Process {
        &self.process
    }
}
