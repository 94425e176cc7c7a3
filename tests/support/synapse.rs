//! Synapse, the Matrix homeserver, for the integration tests (tests/servers/synapse/start.sh):
//! a main process and a sync worker replicating over a real `redis-server`, on 127.0.0.1, as
//! larger deployments run it; two canary accounts and the canary room `#canary:canary.test`
//! made through the client API. Each process is its own process group, so a test can stall
//! Redis and keep the rest running. See docs/test-servers.md.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::servers::{
    Process, Redis, Result, ServerError, free_port, servers_dir, start_on_free_port, start_redis,
    start_script, temp_dir,
};

/// The canary accounts the example probe logs in as (password [`super::servers::PASSWORD`]).
pub const USERS: [&str; 2] = ["canary-a", "canary-b"];
/// The canary room's alias (the example's default `MATRIX_ROOM`).
pub const ROOM: &str = "#canary:canary.test";

/// The Python of the virtualenv .ci/setup.d/synapse.sh installs Synapse into.
fn python() -> PathBuf {
    servers_dir().join("synapse/.venv/bin/python")
}

/// Why the Synapse tests cannot run here (not installed), or `None`.
pub fn missing() -> Option<String> {
    if !python().is_file() {
        return Some(
            "synapse: tests/servers/synapse/.venv is missing; run `bash .ci/setup.d/synapse.sh` \
             (PyPI matrix-synapse[redis]; `bash .ci/run` does it)"
                .into(),
        );
    }
    super::servers::require_program("synapse", "redis-server", "redis-server")
        .err()
        .map(|e| e.0)
}

/// Synapse's main process, its sync worker and the Redis between them.
pub struct Synapse {
    pub redis: Redis,
    main: Process,
    worker: Process,
    main_port: u16,
    worker_port: u16,
    _dir: tempfile::TempDir,
}

impl Synapse {
    /// The main process' client API (`MATRIX_URL`): logins, joins, sends.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.main_port)
    }

    /// The sync worker's client API (`MATRIX_SYNC_URL`): where a load balancer sends `/sync`.
    pub fn sync_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.worker_port)
    }

    /// The example probe's environment.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            ("MATRIX_URL", self.url()),
            ("MATRIX_SYNC_URL", self.sync_url()),
        ]
    }

    pub fn main(&self) -> &Process {
        &self.main
    }

    pub fn worker(&self) -> &Process {
        &self.worker
    }
}

/// Starts Redis, Synapse's main process and its sync worker, then registers the two canary
/// accounts and makes the canary room (public, joined by alias).
pub async fn start_synapse() -> Result<Synapse> {
    if let Some(why) = missing() {
        return Err(ServerError(why));
    }
    let redis = start_redis().await?;
    let dir = temp_dir("synapse")?;
    let dir_text = dir.path().display().to_string();
    let dir_text = &dir_text;
    let redis_port = redis.port();
    let (main, main_port) = start_on_free_port("synapse-main", |port| async move {
        let args = [
            "main".to_string(),
            dir_text.clone(),
            port.to_string(),
            free_port()?.to_string(),
            redis_port.to_string(),
        ];
        let main = start_script("synapse-main", "synapse/start.sh", &args, &servers_dir()).await?;
        Ok((main, port))
    })
    .await?;
    let (worker, worker_port) = start_on_free_port("synapse-worker", |port| async move {
        let args = ["worker".to_string(), dir_text.clone(), port.to_string()];
        let worker =
            start_script("synapse-worker", "synapse/start.sh", &args, &servers_dir()).await?;
        Ok((worker, port))
    })
    .await?;
    let synapse = Synapse {
        redis,
        main,
        worker,
        main_port,
        worker_port,
        _dir: dir,
    };
    let mut tokens = Vec::new();
    for user in USERS {
        let reply = call(
            &synapse.url(),
            "/_matrix/client/v3/register",
            None,
            json!({ "username": user, "password": super::servers::PASSWORD,
                    "auth": { "type": "m.login.dummy" }, "inhibit_login": false }),
        )
        .await?;
        let token = reply["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        tokens.push(token);
    }
    call(
        &synapse.url(),
        "/_matrix/client/v3/createRoom",
        Some(&tokens[0]),
        json!({ "room_alias_name": "canary", "preset": "public_chat", "name": "joincanary" }),
    )
    .await?;
    for token in &tokens {
        call(
            &synapse.url(),
            "/_matrix/client/v3/logout",
            Some(token),
            json!({}),
        )
        .await?;
    }
    Ok(synapse)
}

/// One client-API POST, its JSON reply (an error names the path and what Synapse said).
async fn call(base: &str, path: &str, token: Option<&str>, body: Value) -> Result<Value> {
    let fail = |e: String| ServerError(format!("synapse: POST {path}: {e}"));
    let mut request = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .timeout(Duration::from_secs(10));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let reply = request.send().await.map_err(|e| fail(e.to_string()))?;
    let status = reply.status();
    let text = reply.text().await.map_err(|e| fail(e.to_string()))?;
    if !status.is_success() {
        return Err(fail(format!("{status}: {text}")));
    }
    serde_json::from_str(&text).map_err(|e| fail(format!("{e}: {text}")))
}

/// The stack for a test, or `None` with the reason on stderr where Synapse is not installed on
/// this machine. Never in CI: with `CI` set a missing install fails the test, and
/// .ci/checks.d/synapse.sh fails CI when `bash .ci/run` did not install it.
pub async fn start_or_skip() -> Option<Synapse> {
    super::init();
    if let Some(why) = missing() {
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("skipped (Synapse not installed): {why}");
        return None;
    }
    Some(start_synapse().await.unwrap_or_else(|e| panic!("{e}")))
}
