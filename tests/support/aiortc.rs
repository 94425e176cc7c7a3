//! aiortc, a second WebRTC implementation (Python; ICE, DTLS-SRTP and SCTP of its own), as the
//! far end of the `webrtc` step (tests/servers/aiortc/server.py): it answers our offer or
//! offers to us, over plain HTTP on 127.0.0.1, and echoes data channel messages. Installed by
//! .ci/setup.d/aiortc.sh into tests/servers/aiortc/.venv. See docs/test-servers.md.

use serde_json::Value;

use super::servers::{Process, Result, ServerError, servers_dir, start_script_ready};

/// Why the aiortc tests cannot run here (not installed), or `None`.
pub fn missing() -> Option<String> {
    if servers_dir().join("aiortc/.venv/bin/python").is_file() {
        return None;
    }
    Some(
        "aiortc: tests/servers/aiortc/.venv is missing; run `bash .ci/setup.d/aiortc.sh` (PyPI \
         aiortc, pinned; `bash .ci/run` does it)"
            .into(),
    )
}

/// A running aiortc server.
pub struct Aiortc {
    process: Process,
    port: u16,
}

impl Aiortc {
    /// `http://127.0.0.1:PORT`, where `/offer`, `/call` and `/answer/ID` are.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn process(&self) -> &Process {
        &self.process
    }

    /// POSTs `body` to `path` (5 s at most) and returns the JSON reply; a status other than
    /// 200 is an error carrying aiortc's words.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}{path}", self.base_url());
        let fail = |e: String| ServerError(format!("aiortc: POST {path}: {e}"));
        let reply = reqwest::Client::new()
            .post(&url)
            .json(body)
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = reply.status();
        let text = reply.text().await.map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(fail(format!("{status}: {text}")));
        }
        serde_json::from_str(&text).map_err(|e| fail(format!("{e}: {text}")))
    }
}

/// Starts the server (its own process group, killed when the handle drops).
pub async fn start_aiortc() -> Result<Aiortc> {
    if let Some(why) = missing() {
        return Err(ServerError(why));
    }
    let args = ["--port".to_string(), "0".to_string()];
    let (process, line) =
        start_script_ready("aiortc", "aiortc/start.sh", &args, &servers_dir()).await?;
    // `ready aiortc http://127.0.0.1:PORT`
    let port = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| ServerError(format!("aiortc: no port in {line:?}")))?;
    Ok(Aiortc { process, port })
}

/// The server for a test, or `None` with the reason on stderr where aiortc is not installed
/// on this machine. Never in CI: with `CI` set a missing install fails the test, and
/// .ci/checks.d/aiortc.sh fails CI when `bash .ci/run` did not install it.
pub async fn start_or_skip() -> Option<Aiortc> {
    super::init();
    if let Some(why) = missing() {
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("skipped (aiortc not installed): {why}");
        return None;
    }
    Some(start_aiortc().await.unwrap_or_else(|e| panic!("{e}")))
}
