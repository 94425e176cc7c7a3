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
    let redis = servers::running_redis().await;
    redis.ping().await.unwrap();
    assert_eq!(
        redis.ok(&["SET", "k", "v"]).await.unwrap(),
        Reply::Status("OK".into())
    );

    let oom = redis.fill_to_oom().await.unwrap();
    assert!(oom.starts_with("OOM command not allowed"), "{oom}");
    let refused = redis.cmd(&["SET", "k2", "v"]).await.unwrap();
    assert!(refused.text().starts_with("OOM"), "{refused:?}");

    redis.debug_sleep(10).await.unwrap();

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
    let redis = servers::running_redis().await;
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

/// A websocket with a subprotocol (protoo, XMPP and Janus require one).
async fn ws_with_protocol(url: &str, protocol: &'static str) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
    let (ws, resp) = tokio::time::timeout(FRAME_DEADLINE, tokio_tungstenite::connect_async(req))
        .await
        .expect("handshake in time")
        .unwrap_or_else(|e| panic!("websocket handshake to {url}: {e}"));
    assert_eq!(resp.headers()["sec-websocket-protocol"], protocol);
    ws
}

async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

async fn next_json(ws: &mut Ws) -> Value {
    serde_json::from_str(&next_text(ws).await).expect("a JSON frame")
}

#[tokio::test]
async fn protoo_answers_requests_and_notifies_peers() {
    let protoo = servers::start_protoo()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let token = login(&protoo.base_url(), "alice").await;
    let mut a = ws_with_protocol(&protoo.protoo_url("r1", "a", &token), "protoo").await;
    let mut b = ws_with_protocol(&protoo.protoo_url("r1", "b", &token), "protoo").await;
    send_json(
        &mut a,
        json!({"request": true, "id": 1, "method": "join", "data": {"displayName": "A"}}),
    )
    .await;
    assert_eq!(
        next_json(&mut a).await,
        json!({"response": true, "id": 1, "ok": true, "data": {"peers": []}})
    );
    send_json(
        &mut b,
        json!({"request": true, "id": 1, "method": "join", "data": {}}),
    )
    .await;
    assert_eq!(next_json(&mut b).await["data"]["peers"][0]["id"], "a");
    assert_eq!(next_json(&mut a).await["method"], "newPeer");
    send_json(
        &mut a,
        json!({"request": true, "id": 2, "method": "signal", "data": {"data": {"sdp": "v=0"}}}),
    )
    .await;
    assert_eq!(next_json(&mut a).await["data"]["delivered"], 1);
    assert_eq!(
        next_json(&mut b).await,
        json!({"notification": true, "method": "signal", "data": {"from": "a", "data": {"sdp": "v=0"}}})
    );

    let mut f = ws_with_protocol(&protoo.protoo_url("forbidden", "f", &token), "protoo").await;
    send_json(
        &mut f,
        json!({"request": true, "id": 1, "method": "join", "data": {}}),
    )
    .await;
    let refused = next_json(&mut f).await;
    assert_eq!(
        (
            refused["errorCode"].as_u64(),
            refused["errorReason"].as_str()
        ),
        (Some(403), Some("room forbidden"))
    );
}

#[tokio::test]
async fn janus_echotest_over_websocket() {
    let janus = servers::start_janus()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut ws = ws_with_protocol(&janus.ws_url(), "janus-protocol").await;
    send_json(&mut ws, json!({"janus": "create", "transaction": "t1"})).await;
    let created = next_json(&mut ws).await;
    assert_eq!(created["janus"], "success");
    let session = created["data"]["id"].as_u64().expect("session id");
    assert_eq!(janus.sessions().await.unwrap(), vec![session]);

    send_json(&mut ws, json!({"janus": "attach", "session_id": session, "plugin": "janus.plugin.nosuch", "transaction": "t2"})).await;
    assert_eq!(next_json(&mut ws).await["error"]["code"], 460);
    send_json(&mut ws, json!({"janus": "attach", "session_id": session, "plugin": "janus.plugin.echotest", "transaction": "t3"})).await;
    let handle = next_json(&mut ws).await["data"]["id"]
        .as_u64()
        .expect("handle id");
    send_json(&mut ws, json!({"janus": "message", "session_id": session, "handle_id": handle, "transaction": "t4", "body": {"audio": true}})).await;
    // Janus answers `ack` and the plugin's `event` from different threads: either comes first.
    let first = next_json(&mut ws).await;
    let second = next_json(&mut ws).await;
    let (ack, event) = if first["janus"] == "event" {
        (&second, &first)
    } else {
        (&first, &second)
    };
    assert_eq!(ack["janus"], "ack", "{first} {second}");
    assert_eq!(
        event["plugindata"]["data"],
        json!({"echotest": "event", "result": "ok"})
    );

    send_json(
        &mut ws,
        json!({"janus": "destroy", "session_id": session, "transaction": "t5"}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["janus"], "success");
    janus.assert_no_sessions().await;
}

/// One XMPP stanza after another, skipping nothing (the tests match by content).
async fn xmpp_until(ws: &mut Ws, needle: &str) -> String {
    for _ in 0..20 {
        let f = next_text(ws).await;
        if f.contains(needle) {
            return f;
        }
    }
    panic!("no stanza containing {needle}");
}

/// RFC 7395 login: open, SASL (`mechanism`, `payload`), re-open, bind. Returns the full JID.
async fn xmpp_login(url: &str, domain: &str, mechanism: &str, payload: &str) -> (Ws, String) {
    let mut ws = ws_with_protocol(url, "xmpp").await;
    let open = format!(
        r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="{domain}" version="1.0"/>"#
    );
    ws.send(Message::text(open.clone())).await.unwrap();
    xmpp_until(&mut ws, "<mechanism>").await;
    ws.send(Message::text(format!(
        r#"<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="{mechanism}">{payload}</auth>"#
    )))
    .await
    .unwrap();
    let answer = next_text(&mut ws).await;
    assert!(answer.starts_with("<success"), "SASL {mechanism}: {answer}");
    ws.send(Message::text(open)).await.unwrap();
    xmpp_until(&mut ws, "urn:ietf:params:xml:ns:xmpp-bind").await;
    ws.send(Message::text(
        r#"<iq type="set" id="bind1" xmlns="jabber:client"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"/></iq>"#,
    ))
    .await
    .unwrap();
    let bound = xmpp_until(&mut ws, "bind1").await;
    let jid = bound
        .split("<jid>")
        .nth(1)
        .and_then(|s| s.split("</jid>").next())
        .expect("bound JID")
        .to_string();
    (ws, jid)
}

/// Both join `room1@conference.localhost` (each gets its self-presence, status 110), then
/// `guest` says hello to the room: the stanza `alice` receives.
async fn muc_relay(alice: &mut Ws, guest: &mut Ws) -> String {
    let join = |nick: &str| {
        format!(
            r#"<presence to="room1@conference.localhost/{nick}" xmlns="jabber:client"><x xmlns="http://jabber.org/protocol/muc"/></presence>"#
        )
    };
    alice.send(Message::text(join("alice"))).await.unwrap();
    xmpp_until(alice, "code='110'").await;
    guest.send(Message::text(join("guest"))).await.unwrap();
    xmpp_until(guest, "code='110'").await;
    guest
        .send(Message::text(r#"<message to="room1@conference.localhost" type="groupchat" id="m1" xmlns="jabber:client"><body>hello</body></message>"#))
        .await
        .unwrap();
    xmpp_until(alice, "<body>hello</body>").await
}

#[tokio::test]
async fn prosody_muc_join_groupchat_and_refused_room() {
    let prosody = servers::start_prosody()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // SASL PLAIN is base64("\0user\0password").
    let plain = "AGFsaWNlAGNhbmFyeS1wYXNz";
    let (mut alice, jid) = xmpp_login(&prosody.ws_url(), "localhost", "PLAIN", plain).await;
    assert!(jid.starts_with("alice@localhost/"), "{jid}");
    let (mut guest, gjid) =
        xmpp_login(&prosody.ws_url(), "guest.localhost", "ANONYMOUS", "=").await;
    assert!(gjid.contains("@guest.localhost/"), "{gjid}");

    let mut wrong = ws_with_protocol(&prosody.ws_url(), "xmpp").await;
    wrong
        .send(Message::text(
            r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="1.0"/>"#,
        ))
        .await
        .unwrap();
    xmpp_until(&mut wrong, "<mechanism>").await;
    wrong
        .send(Message::text(r#"<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">AGFsaWNlAHdyb25n</auth>"#))
        .await
        .unwrap();
    assert!(
        xmpp_until(&mut wrong, "<failure")
            .await
            .contains("<not-authorized/>")
    );

    let got = muc_relay(&mut alice, &mut guest).await;
    assert!(
        got.contains("from='room1@conference.localhost/guest'"),
        "{got}"
    );

    guest
        .send(Message::text(r#"<presence to="forbidden1@conference.localhost/guest" xmlns="jabber:client"><x xmlns="http://jabber.org/protocol/muc"/></presence>"#))
        .await
        .unwrap();
    let refused = xmpp_until(&mut guest, "forbidden1@").await;
    assert!(
        refused.contains("type='error'") && refused.contains("<not-allowed"),
        "{refused}"
    );
}

#[tokio::test]
async fn ejabberd_logs_in_both_ways_and_relays_a_groupchat() {
    let ejabberd = servers::start_ejabberd()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = ejabberd.ws_url();
    // The external authentication program's one account.
    let (mut alice, jid) = xmpp_login(&url, "localhost", "PLAIN", "AGFsaWNlAGNhbmFyeS1wYXNz").await;
    assert!(jid.starts_with("alice@localhost/"), "{jid}");
    let (mut guest, gjid) = xmpp_login(&url, "guest.localhost", "ANONYMOUS", "=").await;
    assert!(gjid.contains("@guest.localhost/"), "{gjid}");
    let got = muc_relay(&mut alice, &mut guest).await;
    assert!(got.contains("room1@conference.localhost/guest"), "{got}");
}

#[tokio::test]
async fn actioncable_confirms_rejects_and_broadcasts_through_redis() {
    let redis = servers::running_redis().await;
    let cable = servers::start_actioncable(&redis)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let token = login(&cable.base_url(), "alice").await;

    let mut bad = ws_with_protocol(&cable.ws_url("forged"), "actioncable-v1-json").await;
    assert_eq!(
        next_json(&mut bad).await,
        json!({"type": "disconnect", "reason": "unauthorized", "reconnect": false})
    );

    let mut ws = ws_with_protocol(&cable.ws_url(&token), "actioncable-v1-json").await;
    assert_eq!(next_cable(&mut ws).await, json!({"type": "welcome"}));
    let room = json!({"channel": "RoomChannel", "room": "r1"}).to_string();
    let forbidden = json!({"channel": "RoomChannel", "room": "forbidden"}).to_string();
    send_json(
        &mut ws,
        json!({"command": "subscribe", "identifier": forbidden}),
    )
    .await;
    assert_eq!(
        next_cable(&mut ws).await,
        json!({"identifier": forbidden, "type": "reject_subscription"})
    );
    send_json(&mut ws, json!({"command": "subscribe", "identifier": room})).await;
    assert_eq!(
        next_cable(&mut ws).await,
        json!({"identifier": room, "type": "confirm_subscription"})
    );
    let speak = json!({"action": "speak", "body": "hello"}).to_string();
    send_json(
        &mut ws,
        json!({"command": "message", "identifier": room, "data": speak}),
    )
    .await;
    assert_eq!(
        next_cable(&mut ws).await,
        json!({"identifier": room, "message": {"from": "alice", "body": "hello"}})
    );
}

/// The next ActionCable frame that is not a ping.
async fn next_cable(ws: &mut Ws) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] != "ping" {
            return v;
        }
    }
}

/// The SockJS app (sockjs-node over Redis), spoken to in SockJS' own framing by hand: `o`,
/// `["<message>"]` out, `a["<message>"]` in; a signal crosses between the two processes.
#[tokio::test]
async fn sockjs_frames_its_sessions_and_fans_out_between_processes() {
    let redis = servers::running_redis().await;
    let (a, b) = servers::start_sockjs(&redis)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut open = Vec::new();
    for (server, session) in [(&a, "sa"), (&b, "sb")] {
        let token = login(&server.base_url(), "smoke").await;
        let url = format!(
            "ws://127.0.0.1:{}/room/000/{session}/websocket",
            server.port()
        );
        let (mut ws, _) =
            tokio::time::timeout(FRAME_DEADLINE, tokio_tungstenite::connect_async(url))
                .await
                .expect("handshake in time")
                .expect("websocket handshake");
        assert_eq!(next_text(&mut ws).await, "o");
        for message in [
            json!({"type": "auth", "token": token}),
            json!({"type": "join", "room": "smoke"}),
        ] {
            let frame = Value::Array(vec![Value::String(message.to_string())]).to_string();
            ws.send(Message::text(frame)).await.unwrap();
        }
        assert!(
            next_text(&mut ws)
                .await
                .starts_with(r#"a["{\"type\":\"authed\""#)
        );
        assert!(
            next_text(&mut ws)
                .await
                .starts_with(r#"a["{\"type\":\"joined\""#)
        );
        open.push(ws);
    }
    let say = json!({"type": "signal", "room": "smoke", "data": "hi"}).to_string();
    open[0]
        .send(Message::text(
            Value::Array(vec![Value::String(say)]).to_string(),
        ))
        .await
        .unwrap();
    let got = frame_starting(&mut open[1], "a[").await;
    let inner: Vec<String> = serde_json::from_str(&got[1..]).expect("a JSON array of strings");
    let signal: Value = serde_json::from_str(&inner[0]).expect("a JSON message");
    assert_eq!(
        (signal["type"].as_str(), signal["data"].as_str()),
        (Some("signal"), Some("hi"))
    );
}
