//! Real third-party servers for the integration tests, each started through its script in
//! `tests/servers/` on 127.0.0.1 and killed with its whole process group when the handle drops
//! (see docs/test-servers.md). This file holds what every starter shares: the process handle
//! and its output's tail, free ports, scripts waited on for their ready line, the test CA. One
//! file per server family below it: redis.rs, node.rs (Socket.IO, SockJS, protoo), prosody.rs,
//! ejabberd.rs, janus.rs, actioncable.rs, alertmanager.rs; coturn, aiortc, Synapse and Nextcloud's
//! signalling have their own files beside this one.

mod actioncable;
mod alertmanager;
mod ejabberd;
mod janus;
mod node;
mod prosody;
mod redis;

pub use actioncable::start_actioncable;
pub use alertmanager::{Alertmanager, start_alertmanager, start_alertmanager_tls};
pub use ejabberd::{EJABBERD_NO_ROOMS, start_ejabberd};
pub use janus::{
    Janus, start_janus, start_janus_media, start_janus_media_full_trickle, start_janus_media_http,
    start_janus_signed_tokens,
};
pub(crate) use node::start_node;
pub use node::{
    NodeServer, SocketIo, SocketIoOptions, start_jwt, start_livekit, start_protoo, start_socketio,
    start_socketio_with, start_sockjs,
};
pub use prosody::start_prosody;
pub use redis::{PauseMode, Redis, Reply, running_redis, start_redis, start_redis_tls};

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

/// How long a server may take to print its ready line (generous: CI shares 2 cores; Synapse
/// took over 30 s on a machine loaded to 29, ejabberd 15 s at load 8 and over 60 s at 18).
const START_DEADLINE: Duration = Duration::from_secs(120);
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

/// A free port on 127.0.0.1 (TCP and UDP) for servers that cannot bind port 0 themselves.
///
/// Taken from below the kernel's ephemeral range, one port after the other: a port the kernel
/// handed out for port 0 and that the test let go was anybody's until the server bound it, and
/// a parallel test's listener or outgoing connection could take it in between (the server then
/// failed, or a second listener of coturn or Janus went missing). The kernel never hands out
/// these ports itself, and the counter never gives one twice in this process; a port another
/// process holds is skipped, and a race with another process that picks its own ports is left to
/// [`start_on_free_port`]'s retry on "address in use". Ports are [`PORT_STRIDE`] apart: coturn
/// also listens on its port + 1 and its TLS port + 1 (STUN's alternate ports), and took the
/// next port handed out, its CLI's.
pub fn free_port() -> Result<u16> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let Some((low, size)) = fixed_ports() else {
        return kernel_port();
    };
    // Processes started together (two suites on one machine) start apart.
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..FREE_PORT_TRIES {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let slot = start.wrapping_add(n) % (size / PORT_STRIDE);
        let port = low + (slot * PORT_STRIDE) as u16;
        let free = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            return Ok(port);
        }
    }
    err(format!(
        "no free port on 127.0.0.1 from {low} to {}",
        u32::from(low) + size - 1
    ))
}

/// Ports of a pool [`free_port`] tried before it gives up (all in use: another suite's servers).
const FREE_PORT_TRIES: usize = 512;
/// Distance between two ports of the pool (the ports between are a server's own extra ones).
const PORT_STRIDE: u32 = 4;

/// `(first port, count)` of the pool below the kernel's ephemeral range (Linux's
/// `ip_local_port_range`; 32768 to 60999 by default: the pool is then 16384 to 32767), or
/// `None` when the range leaves no room below it.
fn fixed_ports() -> Option<(u16, u32)> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let ephemeral_low: u32 = range.split_whitespace().next()?.parse().ok()?;
    let low = ephemeral_low.checked_sub(16384)?.max(10000);
    let size = ephemeral_low.checked_sub(low).filter(|&n| n >= 1024)?;
    Some((u16::try_from(low).ok()?, size))
}

/// A port the kernel hands out for port 0 (racy, see [`free_port`]): where no pool fits.
fn kernel_port() -> Result<u16> {
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

/// A throw-away CA, a server certificate it signed for `name` only, and a client certificate,
/// written to `dir` (PEM): `ca.pem`, `server.pem`, `server-key.pem`, `client.pem`,
/// `client-key.pem`. For a server reached by an address its certificate does not name.
pub fn write_pki(dir: &std::path::Path, name: &str) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "joincanary pager test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    write("ca.pem", &issuer.pem());
    let mut server = CertificateParams::new(vec![name.to_string()]).unwrap();
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    write(
        "server.pem",
        &server.signed_by(&key, &issuer).unwrap().pem(),
    );
    write("server-key.pem", &key.serialize_pem());
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client
        .distinguished_name
        .push(DnType::CommonName, "joincanary");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    write(
        "client.pem",
        &client.signed_by(&key, &issuer).unwrap().pem(),
    );
    write("client-key.pem", &key.serialize_pem());
}
