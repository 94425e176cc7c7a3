//! coturn for the `turn` step's tests: `turnserver` on 127.0.0.1 (UDP, TCP and TLS with a
//! certificate from a fresh test CA) with a static user or a TURN REST shared secret, its echo
//! peer `turnutils_peer`, and a count of the server's live sessions read from its telnet CLI
//! (how a test proves no allocation was left behind).

use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::servers::{
    Process, Result, ServerError, free_port, require_program, start_on_free_port, start_script,
    temp_dir, test_ca,
};

/// The realm every test server uses.
pub const REALM: &str = "joincanary.test";
/// The static user's name and password.
pub const USER: &str = "canary";
pub const PASSWORD: &str = "turn-pass-7f3a";
/// The CLI password the start script sets.
const CLI_PASSWORD: &str = "clipw";
/// Relay ports per server: servers of concurrent tests get ranges of their own.
const RELAY_PORTS: u16 = 40;
static NEXT_RANGE: AtomicU16 = AtomicU16::new(0);

/// How the server checks credentials.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Long-term credentials: [`USER`] / [`PASSWORD`].
    Static,
    /// TURN REST API: HMAC-SHA1 of the username with this shared secret.
    Secret(String),
}

pub struct Coturn {
    process: Process,
    pub port: u16,
    pub tls_port: u16,
    cli_port: u16,
    ca_pem: String,
    _dir: tempfile::TempDir,
}

/// Starts `turnserver` with `auth`; `extra` goes to it as is (`--total-quota=0`, ...).
pub async fn start_coturn(auth: Auth, extra: &[&str]) -> Result<Coturn> {
    require_program("coturn", "turnserver", "coturn")?;
    let ca = test_ca()?;
    let ca = &ca;
    let auth = &auth;
    start_on_free_port("coturn", |port| async move {
        let tls_port = free_port()?;
        let cli_port = free_port()?;
        let dir = temp_dir("coturn")?;
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text)
                .map_err(|e| ServerError(format!("coturn: writing {name}: {e}")))
        };
        write("cert.pem", &ca.server_cert_pem)?;
        write("key.pem", &ca.server_key_pem)?;
        let slot = NEXT_RANGE.fetch_add(1, Ordering::Relaxed) % 200;
        let min_port = 42000 + slot * RELAY_PORTS;
        let mut args = vec![
            dir.path().display().to_string(),
            port.to_string(),
            tls_port.to_string(),
            cli_port.to_string(),
            min_port.to_string(),
            (min_port + RELAY_PORTS - 1).to_string(),
            format!("--realm={REALM}"),
            "--fingerprint".to_string(),
        ];
        match auth {
            Auth::Static => {
                args.push("--lt-cred-mech".into());
                args.push(format!("--user={USER}:{PASSWORD}"));
            }
            Auth::Secret(secret) => {
                args.push("--use-auth-secret".into());
                args.push(format!("--static-auth-secret={secret}"));
            }
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let process = start_script("coturn", "coturn/start.sh", &args, dir.path()).await?;
        Ok(Coturn {
            process,
            port,
            tls_port,
            cli_port,
            ca_pem: ca.ca_pem.clone(),
            _dir: dir,
        })
    })
    .await
}

impl Coturn {
    pub fn udp_url(&self) -> String {
        format!("turn:127.0.0.1:{}", self.port)
    }

    pub fn tcp_url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=tcp", self.port)
    }

    pub fn tls_url(&self) -> String {
        format!("turns:127.0.0.1:{}", self.tls_port)
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn process(&self) -> &Process {
        &self.process
    }

    /// The server's log so far (its last lines).
    pub fn output(&self) -> String {
        self.process.output()
    }

    /// The number of live sessions (allocations) the server holds, from its CLI's `ps`.
    pub async fn sessions(&self) -> Result<usize> {
        // Generous: on a machine loaded to 29 the CLI's prompt took over 5 s.
        let deadline = Instant::now() + Duration::from_secs(20);
        let conn = timeout_at(deadline, TcpStream::connect(("127.0.0.1", self.cli_port)))
            .await
            .map_err(|_| ServerError("coturn CLI: connect timed out".into()))?
            .map_err(|e| ServerError(format!("coturn CLI: {e}")))?;
        let mut cli = Cli {
            conn,
            seen: String::new(),
            deadline,
        };
        cli.expect("password:").await?;
        cli.send(CLI_PASSWORD).await?;
        cli.expect("> ").await?;
        cli.send("ps").await?;
        cli.expect("Total sessions:").await?;
        let rest = cli.expect("> ").await?;
        let _ = cli.send("quit").await;
        rest.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| ServerError(format!("coturn CLI: no session count in `{rest}`")))
    }

    /// Waits (bounded, 15 s: a loaded coturn takes its time) until the server holds no
    /// session; the count left otherwise.
    pub async fn wait_no_sessions(&self) -> Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let n = self.sessions().await?;
            if n == 0 || Instant::now() >= deadline {
                return Ok(n);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A telnet CLI session: what was read and not yet consumed, under one deadline.
struct Cli {
    conn: TcpStream,
    seen: String,
    deadline: Instant,
}

impl Cli {
    async fn send(&mut self, line: &str) -> Result<()> {
        self.conn
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .map_err(|e| ServerError(format!("coturn CLI: {e}")))
    }

    /// Reads until `marker` (bounded by the deadline and 1 MiB); returns the text before it.
    async fn expect(&mut self, marker: &str) -> Result<String> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(at) = self.seen.find(marker) {
                let before = self.seen[..at].to_string();
                self.seen.drain(..at + marker.len());
                return Ok(before);
            }
            if self.seen.len() > 1 << 20 {
                return Err(ServerError(format!("coturn CLI: no `{marker}` in 1 MiB")));
            }
            let n = timeout_at(self.deadline, self.conn.read(&mut buf))
                .await
                .map_err(|_| ServerError(format!("coturn CLI: no `{marker}` in time")))?
                .map_err(|e| ServerError(format!("coturn CLI: {e}")))?;
            if n == 0 {
                return Err(ServerError(format!("coturn CLI closed before `{marker}`")));
            }
            self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
}

/// `turnutils_peer`: a UDP echo on 127.0.0.1.
pub struct Peer {
    _process: Process,
    pub port: u16,
}

impl Peer {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

pub async fn start_peer() -> Result<Peer> {
    require_program("turn-peer", "turnutils_peer", "coturn")?;
    start_on_free_port("turn-peer", |port| async move {
        let dir = temp_dir("turn-peer")?;
        let process = start_script(
            "turn-peer",
            "coturn/peer.sh",
            &[port.to_string()],
            dir.path(),
        )
        .await?;
        Ok(Peer {
            _process: process,
            port,
        })
    })
    .await
}
