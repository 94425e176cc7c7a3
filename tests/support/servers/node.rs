//! The node test servers (tests/servers/<name>/server.js, each listening on port 0 and naming
//! it in its ready line): two Socket.IO 4.8 processes over the Redis adapter, two SockJS apps
//! meeting in Redis's pub/sub, and protoo's request/response server.

use super::{Process, Redis, Result, ServerError, require_node_modules, servers_dir};

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

/// LiveKit's `/rtc` as far as a joining client's token goes (tests/servers/livekit/server.js):
/// the upgrade is taken only when livekit-server-sdk's own `TokenVerifier(api_key, api_secret)`
/// accepts `access_token` and it grants `roomJoin` to `room`; then a `join` SignalResponse and
/// `pong_resp` to a `ping_req`. `GET /seen` lists the tokens it was sent.
pub async fn start_livekit(api_key: &str, api_secret: &str, room: &str) -> Result<NodeServer> {
    if !servers_dir()
        .join("node_modules/livekit-server-sdk")
        .is_dir()
    {
        return Err(ServerError(
            "livekit: tests/servers/node_modules has no livekit-server-sdk; run `bash .ci/run` (its set-up runs `npm ci` in tests/servers)".into(),
        ));
    }
    let args = [
        "--port",
        "0",
        "--api-key",
        api_key,
        "--api-secret",
        api_secret,
        "--room",
        room,
    ]
    .map(str::to_string);
    start_node("livekit", "livekit/server.js", &args).await
}

/// An API that verifies a JWT with a public key (tests/servers/jwt/server.js): `GET /verify`
/// with `Authorization: Bearer` is 200 only when npm `jose` verifies the token with the key
/// its `kid` names in `keys` (a JSON file `{"kid": {"alg", "spki"}}`), `iss` and `aud` as
/// given and `exp`, `nbf`, `iat` present and current; else 401 with jose's words and the token
/// echoed. `GET /seen` lists the tokens it was sent.
pub async fn start_jwt(keys: &std::path::Path, issuer: &str, audience: &str) -> Result<NodeServer> {
    if !servers_dir().join("node_modules/jose").is_dir() {
        return Err(ServerError(
            "jwt: tests/servers/node_modules has no jose; run `bash .ci/run` (its set-up runs `npm ci` in tests/servers)".into(),
        ));
    }
    let args = [
        "--port".to_string(),
        "0".into(),
        "--keys".into(),
        keys.display().to_string(),
        "--issuer".into(),
        issuer.into(),
        "--audience".into(),
        audience.into(),
    ];
    start_node("jwt", "jwt/server.js", &args).await
}
