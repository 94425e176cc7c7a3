//! Janus with the WebSocket transport and the echotest plugin, on loopback or in a network
//! namespace of its own for the media path; its Admin API lists the sessions a probe left.

use super::{
    COMMAND_DEADLINE, Process, Result, ServerError, free_port, require_program, start_on_free_port,
    start_script, temp_dir,
};
use tokio::time::timeout;

/// The Janus Admin API secret in the test config.
pub const JANUS_ADMIN_SECRET: &str = "janusoverlord";

/// Janus with the WebSocket transport and the echotest plugin (tests/servers/janus/start.sh).
pub struct Janus {
    process: Process,
    ws_port: u16,
    admin_port: u16,
    /// The HTTP transport's port, when started with it ([`start_janus_media_http`]).
    http_port: Option<u16>,
    /// Started in a network namespace of its own (see [`start_janus_media`]).
    netns: bool,
    _dir: tempfile::TempDir,
}

pub async fn start_janus() -> Result<Janus> {
    start_janus_script("janus/start.sh", false, &[]).await
}

/// [`start_janus`] with signed-token authentication keyed with `secret` (`token_auth_secret`):
/// every request needs a `token` signed with it for the plugin it uses.
pub async fn start_janus_signed_tokens(secret: &str) -> Result<Janus> {
    start_janus_args(
        "janus/start.sh",
        false,
        vec![format!("token-secret={secret}")],
        false,
    )
    .await
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

/// [`start_janus_media`] with the HTTP transport too (janus.js's default: `POST /janus`, the
/// long poll `GET /janus/<session>`), at [`Janus::http_url`]; `full_trickle` as
/// [`start_janus_media_full_trickle`].
pub async fn start_janus_media_http(full_trickle: bool) -> Result<Janus> {
    require_program("janus", "unshare", "util-linux")?;
    require_program("janus", "ip", "iproute2")?;
    let extra: &'static [&'static str] = if full_trickle { &["full-trickle"] } else { &[] };
    start_janus_with("janus/start-netns.sh", true, extra, true).await
}

async fn start_janus_script(
    script: &'static str,
    netns: bool,
    extra: &'static [&'static str],
) -> Result<Janus> {
    start_janus_with(script, netns, extra, false).await
}

async fn start_janus_with(
    script: &'static str,
    netns: bool,
    extra: &'static [&'static str],
    http: bool,
) -> Result<Janus> {
    let extra = extra.iter().map(|a| a.to_string()).collect();
    start_janus_args(script, netns, extra, http).await
}

async fn start_janus_args(
    script: &'static str,
    netns: bool,
    extra: Vec<String>,
    http: bool,
) -> Result<Janus> {
    require_program("janus", "janus", "janus")?;
    require_program("janus", "curl", "curl")?;
    start_on_free_port("janus", |ws_port| {
        let extra = extra.clone();
        async move {
            let admin_port = free_port()?;
            let http_port = if http { Some(free_port()?) } else { None };
            let dir = temp_dir("janus")?;
            let mut args = vec![
                ws_port.to_string(),
                admin_port.to_string(),
                dir.path().display().to_string(),
            ];
            args.extend(extra);
            args.extend(http_port.map(|p| format!("http={p}")));
            let process = start_script("janus", script, &args, dir.path()).await?;
            Ok(Janus {
                process,
                ws_port,
                admin_port,
                http_port,
                netns,
                _dir: dir,
            })
        }
    })
    .await
}

impl Janus {
    /// `ws://127.0.0.1:PORT/` (subprotocol `janus-protocol`).
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.ws_port)
    }

    /// Where the HTTP transport listens, `http://127.0.0.1:PORT` (its base path is `/janus`;
    /// started with it only).
    pub fn http_url(&self) -> String {
        let port = self
            .http_port
            .expect("janus started with the HTTP transport");
        format!("http://127.0.0.1:{port}")
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
