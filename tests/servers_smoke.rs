//! Each real third-party test server starts from its script, answers, and shows its faults:
//! CI's proof that the servers other tests rely on work on a fresh machine.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::servers::{self, PauseMode, Reply};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Bound on every wait for a frame in these tests (a deadline, not a timing assertion).
const FRAME_DEADLINE: Duration = Duration::from_secs(10);

/// The next text frame, skipping Engine.IO pings (answered) and other control frames.
async fn next_text(ws: &mut Ws) -> String {
    loop {
        let msg = tokio::time::timeout(FRAME_DEADLINE, ws.next())
            .await
            .expect("a frame before the deadline")
            .expect("socket open")
            .expect("frame reads");
        if let Message::Text(t) = msg {
            if t.as_str() == "2" {
                ws.send(Message::text("3")).await.expect("pong sent");
                continue;
            }
            return t.to_string();
        }
    }
}

async fn login(base: &str, user: &str) -> String {
    let reply: Value = reqwest::Client::new()
        .post(format!("{base}/api/login"))
        .json(&json!({"username": user, "password": servers::PASSWORD}))
        .timeout(FRAME_DEADLINE)
        .send()
        .await
        .expect("login answers")
        .json()
        .await
        .expect("login JSON");
    reply["token"].as_str().expect("token").to_string()
}

/// The next text frame starting with `prefix`, skipping others (e.g. `participant_joined`,
/// which may or may not arrive depending on the order of joins across processes).
async fn frame_starting(ws: &mut Ws, prefix: &str) -> String {
    for _ in 0..20 {
        let f = next_text(ws).await;
        if f.starts_with(prefix) {
            return f;
        }
    }
    panic!("no frame starting with {prefix}");
}

/// Engine.IO open + Socket.IO CONNECT to the main namespace with `{token}`; returns the
/// CONNECT answer (`40{...}` or `44{...}`).
async fn socketio_connect(url: &str, token: &str) -> (Ws, String) {
    let (mut ws, _) = tokio::time::timeout(FRAME_DEADLINE, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake in time")
        .expect("websocket handshake");
    let open = next_text(&mut ws).await;
    assert!(open.starts_with("0{"), "Engine.IO open packet: {open}");
    ws.send(Message::text(format!("40{}", json!({"token": token}))))
        .await
        .unwrap();
    let connect = next_text(&mut ws).await;
    (ws, connect)
}

#[tokio::test]
async fn redis_answers_and_its_faults_work() {
    let redis = servers::start_redis()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    redis.ping().await.unwrap();
    assert_eq!(
        redis.ok(&["SET", "k", "v"]).await.unwrap(),
        Reply::Status("OK".into())
    );

    let oom = redis.fill_to_oom().await.unwrap();
    assert!(oom.starts_with("OOM command not allowed"), "{oom}");
    let refused = redis.cmd(&["SET", "k2", "v"]).await.unwrap();
    assert!(refused.text().starts_with("OOM"), "{refused:?}");

    // restore undoes each fault (an All pause only at its end: Redis holds CLIENT UNPAUSE too).
    redis.pause(300, PauseMode::All).await.unwrap();
    redis.restore().await.unwrap();
    redis.pause(60_000, PauseMode::Write).await.unwrap();
    redis.freeze().unwrap();
    redis.restore().await.unwrap();
    assert_eq!(
        redis.ok(&["SET", "k2", "v"]).await.unwrap(),
        Reply::Status("OK".into())
    );
    assert_eq!(redis.ok(&["DBSIZE"]).await.unwrap(), Reply::Int(2));

    redis.fill_to(64 * 1024 * 1024, 0.85).await.unwrap();
    let used = redis.used_memory().await.unwrap();
    assert!(
        (54 * 1024 * 1024..64 * 1024 * 1024).contains(&used),
        "{used}"
    );
}

#[tokio::test]
async fn socketio_fans_out_between_processes_and_reports_redis_oom() {
    let redis = servers::start_redis()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sio = servers::start_socketio(&redis)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let (_bad, refused) = socketio_connect(&servers::SocketIo::ws_url(&sio.a), "forged").await;
    assert_eq!(refused, r#"44{"message":"unauthorized"}"#);

    let token_a = login(&sio.a.base_url(), "alice").await;
    let token_b = login(&sio.b.base_url(), "bob").await;
    let (mut a, ca) = socketio_connect(&servers::SocketIo::ws_url(&sio.a), &token_a).await;
    let (mut b, cb) = socketio_connect(&servers::SocketIo::ws_url(&sio.b), &token_b).await;
    assert!(ca.starts_with("40{") && cb.starts_with("40{"), "{ca} {cb}");

    a.send(Message::text(r#"421["join",{"room":"r1"}]"#))
        .await
        .unwrap();
    let joined = next_text(&mut a).await;
    assert!(
        joined.starts_with(r#"431[{"room":"r1","user":"alice""#),
        "{joined}"
    );
    b.send(Message::text(r#"42["join",{"room":"r1"}]"#))
        .await
        .unwrap();
    assert!(
        next_text(&mut b)
            .await
            .starts_with(r#"42["joined",{"room":"r1","user":"bob""#)
    );
    assert!(
        next_text(&mut a)
            .await
            .starts_with(r#"42["participant_joined""#)
    );

    // a on process a, b on process b: the signal can only have come through Redis.
    a.send(Message::text(
        r#"422["signal",{"room":"r1","data":{"sdp":"v=0"}}]"#,
    ))
    .await
    .unwrap();
    assert_eq!(next_text(&mut a).await, r#"432[{"ok":true}]"#);
    let got = frame_starting(&mut b, r#"42["signal""#).await;
    assert!(
        got.starts_with(r#"42["signal",{"room":"r1","from":"alice""#)
            && got.contains(r#""data":{"sdp":"v=0"}"#),
        "{got}"
    );

    redis.fill_to_oom().await.unwrap();
    b.send(Message::text(r#"42["join",{"room":"r2"}]"#))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut b).await,
        r#"42["join_error",{"error":"OOM command not allowed when used memory > 'maxmemory'."}]"#
    );
}
