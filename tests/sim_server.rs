//! End-to-end tests of the reference conference server: real HTTP and websocket clients
//! against `SimServer` on 127.0.0.1, covering login, signalling, pings and every fault. Tests
//! about time (delays, pings, a prompt shutdown, an outage that loses joins) run on tokio's
//! paused clock: the server is in this runtime, so its timers and the test's agree, and no
//! bound depends on how loaded the machine is.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use joincanary::sim::{Credentials, SimServer};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::support::start_sim;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Generous bound for anything that should happen "at once", so a loaded CI box does not flake.
const PROMPT: Duration = Duration::from_secs(3);
/// Frames read per wait at most; pings arrive once a second so this is never the real limit.
const MAX_FRAMES: usize = 200;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client builds")
}

async fn login_response(server: &SimServer, body: &Value) -> reqwest::Response {
    login_response_at(&server.base_url(), body).await
}

async fn login_response_at(base: &str, body: &Value) -> reqwest::Response {
    http()
        .post(format!("{base}/api/login"))
        .json(body)
        .send()
        .await
        .expect("login request is answered")
}

async fn login(server: &SimServer) -> String {
    login_at(&server.base_url()).await
}

async fn login_at(base: &str) -> String {
    let creds = Credentials::default();
    let resp = login_response_at(
        base,
        &json!({"username": creds.username, "password": creds.password}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("login body is JSON");
    body["token"]
        .as_str()
        .expect("login body has a token")
        .to_owned()
}

async fn put_faults(server: &SimServer, faults: Value) -> reqwest::Response {
    http()
        .put(format!("{}/_sim/faults", server.base_url()))
        .json(&faults)
        .send()
        .await
        .expect("fault update is answered")
}

async fn set_faults(server: &SimServer, faults: Value) -> Value {
    let resp = put_faults(server, faults).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("faults body is JSON")
}

/// The faults in force, as `GET /_sim/faults` shows them.
async fn faults(server: &SimServer) -> Value {
    http()
        .get(format!("{}/_sim/faults", server.base_url()))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON")
}

fn ws_url(server: &SimServer, token: &str) -> String {
    ws_url_at(&server.base_url(), token)
}

fn ws_url_at(base: &str, token: &str) -> String {
    format!("{}/ws?token={token}", base.replacen("http://", "ws://", 1))
}

async fn connect(server: &SimServer) -> Ws {
    connect_to(&server.base_url()).await
}

/// Logs in to the sim at `base` (`http://…`) and opens its websocket.
pub(crate) async fn connect_to(base: &str) -> Ws {
    let token = login_at(base).await;
    let (ws, _) = tokio::time::timeout(PROMPT, connect_async(ws_url_at(base, &token)))
        .await
        .expect("websocket connects in time")
        .expect("websocket upgrade succeeds");
    ws
}

/// The HTTP status a refused websocket handshake got.
async fn ws_refusal_status(url: &str) -> u16 {
    match tokio::time::timeout(PROMPT, connect_async(url))
        .await
        .expect("handshake is answered in time")
    {
        Ok(_) => panic!("websocket upgrade unexpectedly succeeded"),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
    }
}

pub(crate) async fn join(ws: &mut Ws, room: &str, id: &str) {
    let frame = json!({"type": "join", "room": room, "id": id}).to_string();
    ws.send(Message::text(frame)).await.expect("join is sent");
}

/// Every text frame (pings included) received before `wait` elapses, stopping early at the
/// first non-ping frame if `stop_at_app_frame`.
async fn frames(ws: &mut Ws, wait: Duration, stop_at_app_frame: bool) -> Vec<Value> {
    let deadline = Instant::now() + wait;
    let mut seen = Vec::new();
    for _ in 0..MAX_FRAMES {
        let Ok(next) = tokio::time::timeout_at(deadline, ws.next()).await else {
            break;
        };
        match next {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(text.as_str()).expect("server sends JSON");
                let is_ping = value["type"] == "ping";
                seen.push(value);
                if stop_at_app_frame && !is_ping {
                    break;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    seen
}

/// The next frame that is not a ping, within [`PROMPT`].
pub(crate) async fn next_app_frame(ws: &mut Ws) -> Value {
    frames(ws, PROMPT, true)
        .await
        .into_iter()
        .find(|v| v["type"] != "ping")
        .expect("a non-ping frame arrives in time")
}

pub(crate) async fn close(mut ws: Ws) {
    ws.close(None).await.expect("close is sent");
    // Read until the server's close reply ends the stream, so the server has seen the close.
    let _ = frames(&mut ws, PROMPT, false).await;
}

#[tokio::test]
async fn healthz_answers_ok() {
    let server = start_sim().await;
    let resp = http()
        .get(format!("{}/healthz", server.base_url()))
        .send()
        .await
        .expect("healthz is answered");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("healthz body"), "ok");
    assert!(server.base_url().starts_with("http://127.0.0.1:"));
    assert_eq!(
        server.base_url(),
        format!("http://127.0.0.1:{}", server.local_addr().port())
    );
    server.shutdown().await;
}

#[tokio::test]
async fn login_issues_distinct_tokens() {
    let server = start_sim().await;
    let a = login(&server).await;
    let b = login(&server).await;
    assert!(!a.is_empty());
    assert_ne!(a, b);
    server.shutdown().await;
}

#[tokio::test]
async fn login_with_wrong_credentials_is_401() {
    let server = start_sim().await;
    let resp = login_response(&server, &json!({"username": "canary", "password": "nope"})).await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("error body is JSON");
    assert_eq!(body, json!({"error": "invalid credentials"}));
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_login_is_400() {
    let server = start_sim().await;
    let url = format!("{}/api/login", server.base_url());
    let not_json = http()
        .post(&url)
        .body("{not json")
        .send()
        .await
        .expect("answered");
    assert_eq!(not_json.status(), 400);
    let missing_field = login_response(&server, &json!({"username": "canary"})).await;
    assert_eq!(missing_field.status(), 400);
    let wrong_type = login_response(&server, &json!({"username": 1, "password": 2})).await;
    assert_eq!(wrong_type.status(), 400);
    server.shutdown().await;
}

#[tokio::test]
async fn websocket_without_valid_token_is_401() {
    let server = start_sim().await;
    let base = server.base_url().replacen("http://", "ws://", 1);
    assert_eq!(ws_refusal_status(&format!("{base}/ws")).await, 401);
    assert_eq!(ws_refusal_status(&ws_url(&server, "bogus")).await, 401);
    // A plain GET (no upgrade headers) is judged on its token first, so it is a 401 too.
    let plain = http()
        .get(format!("{}/ws?token=bogus", server.base_url()))
        .send()
        .await
        .expect("answered");
    assert_eq!(plain.status(), 401);
    server.shutdown().await;
}

#[tokio::test]
async fn join_is_echoed_with_participant_count() {
    let server = start_sim().await;
    let mut a = connect(&server).await;
    join(&mut a, "room-1", "alice").await;
    let joined = next_app_frame(&mut a).await;
    assert_eq!(
        joined,
        json!({"type": "joined", "room": "room-1", "id": "alice", "participants": 1})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn two_connections_in_a_room_see_each_other() {
    let server = start_sim().await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    let mut other_room = connect(&server).await;
    join(&mut a, "shared", "alice").await;
    assert_eq!(next_app_frame(&mut a).await["participants"], 1);
    join(&mut other_room, "elsewhere", "carol").await;
    assert_eq!(next_app_frame(&mut other_room).await["room"], "elsewhere");

    join(&mut b, "shared", "bob").await;
    for ws in [&mut a, &mut b] {
        let joined = next_app_frame(ws).await;
        assert_eq!(
            joined,
            json!({"type": "joined", "room": "shared", "id": "bob", "participants": 2})
        );
    }
    // Not a member of "shared", so bob's join must not reach it.
    let leaked = frames(&mut other_room, Duration::from_millis(300), true).await;
    assert!(
        leaked.iter().all(|v| v["type"] == "ping"),
        "non-member got {leaked:?}"
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn pings_arrive_every_second() {
    let server = start_sim().await;
    let mut ws = connect(&server).await;
    let seen = frames(&mut ws, Duration::from_millis(2_500), true).await;
    assert!(
        seen.iter().any(|v| *v == json!({"type": "ping"})),
        "no ping in {seen:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_frames_get_an_error_and_the_connection_stays_open() {
    let server = start_sim().await;
    let mut ws = connect(&server).await;
    for bad in [
        "not json",
        r#"{"type":"leave","room":"r"}"#,
        r#"{"type":"join","room":5,"id":"x"}"#,
        r#"{"type":"join","room":"","id":"x"}"#,
    ] {
        ws.send(Message::text(bad)).await.expect("sent");
        let reply = next_app_frame(&mut ws).await;
        assert_eq!(reply["type"], "error", "for {bad}: {reply}");
        assert!(reply["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    ws.send(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("sent");
    assert_eq!(next_app_frame(&mut ws).await["type"], "error");
    join(&mut ws, "r", "still-here").await;
    assert_eq!(next_app_frame(&mut ws).await["type"], "joined");
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_message_ends_the_connection() {
    let server = start_sim().await;
    let mut ws = connect(&server).await;
    let huge = format!(
        r#"{{"type":"join","room":"{}","id":"x"}}"#,
        "r".repeat(70 * 1024)
    );
    // The send itself may already fail if the server hangs up first. Read until the server
    // ends the stream (30 s at most: [`PROMPT`]'s 3 s is a loaded machine's time too).
    let _ = ws.send(Message::text(huge)).await;
    let seen = frames(&mut ws, Duration::from_secs(30), true).await;
    assert!(
        seen.iter().all(|v| v["type"] == "ping"),
        "oversized join was processed: {seen:?}"
    );
    // The stream must have ended rather than the wait timing out.
    assert!(
        matches!(
            tokio::time::timeout(Duration::from_millis(100), ws.next()).await,
            Ok(None | Some(Err(_)))
        ),
        "connection still open after an oversized message"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn client_close_is_answered_with_close() {
    let server = start_sim().await;
    let mut ws = connect(&server).await;
    ws.close(None).await.expect("close is sent");
    let deadline = Instant::now() + PROMPT;
    let mut got_close = false;
    for _ in 0..MAX_FRAMES {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(_)))) => got_close = true,
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) | Err(_) => break,
        }
    }
    assert!(got_close, "server did not answer the close");
    server.shutdown().await;
}

#[tokio::test]
async fn membership_is_removed_when_a_connection_closes() {
    let server = start_sim().await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    join(&mut a, "cleanup", "alice").await;
    assert_eq!(next_app_frame(&mut a).await["participants"], 1);
    join(&mut b, "cleanup", "bob").await;
    assert_eq!(next_app_frame(&mut b).await["participants"], 2);
    assert_eq!(next_app_frame(&mut a).await["participants"], 2);
    close(b).await;

    join(&mut a, "cleanup", "alice-again").await;
    assert_eq!(next_app_frame(&mut a).await["participants"], 1);
    // A brand-new connection joining now makes two, not three.
    let mut c = connect(&server).await;
    join(&mut c, "cleanup", "carol").await;
    assert_eq!(next_app_frame(&mut c).await["participants"], 2);
    server.shutdown().await;
}

#[tokio::test]
async fn faults_get_put_merge_and_delete() {
    let server = start_sim().await;
    let url = format!("{}/_sim/faults", server.base_url());
    let cleared = json!({
        "login_status": null,
        "login_delay_ms": 0,
        "ws_reject_status": null,
        "signalling_delay_ms": 0,
        "signalling_drop": false,
        "login_error_next": 0,
        "signalling_drop_next": 0,
        "signalling_spike_next": 0,
        "signalling_spike_ms": 0,
    });
    let initial = faults(&server).await;
    assert_eq!(initial, cleared);

    let after_first = set_faults(
        &server,
        json!({"login_status": 503, "signalling_drop": true}),
    )
    .await;
    assert_eq!(after_first["login_status"], 503);
    // Absent fields keep their value.
    let merged = set_faults(&server, json!({"signalling_delay_ms": 250})).await;
    assert_eq!(
        merged,
        json!({
            "login_status": 503,
            "login_delay_ms": 0,
            "ws_reject_status": null,
            "signalling_delay_ms": 250,
            "signalling_drop": true,
            "login_error_next": 0,
            "signalling_drop_next": 0,
            "signalling_spike_next": 0,
            "signalling_spike_ms": 0,
        })
    );
    let shown = faults(&server).await;
    assert_eq!(shown, merged);

    let deleted = http().delete(&url).send().await.expect("answered");
    assert_eq!(deleted.status(), 200);
    let shown = faults(&server).await;
    assert_eq!(shown, cleared);
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_faults_are_rejected_and_not_applied() {
    let server = start_sim().await;
    for bad in [
        json!({"login_status": 99}),
        json!({"login_status": 600}),
        json!({"ws_reject_status": "500"}),
        json!({"login_delay_ms": -5}),
        json!({"signalling_drop": "yes"}),
        json!({"login_delay_ms": 10, "no_such_fault": 1}),
        json!([1, 2]),
    ] {
        let resp = put_faults(&server, bad.clone()).await;
        assert_eq!(resp.status(), 400, "accepted {bad}");
    }
    let not_json = http()
        .put(format!("{}/_sim/faults", server.base_url()))
        .body("{")
        .send()
        .await
        .expect("answered");
    assert_eq!(not_json.status(), 400);
    // The half-valid request above must not have applied its valid part.
    let shown = faults(&server).await;
    assert_eq!(shown["login_delay_ms"], 0);
    server.shutdown().await;
}

#[tokio::test]
async fn login_status_fault_overrides_credentials() {
    let server = start_sim().await;
    set_faults(&server, json!({"login_status": 503})).await;
    let creds = Credentials::default();
    let good = login_response(
        &server,
        &json!({"username": creds.username, "password": creds.password}),
    )
    .await;
    assert_eq!(good.status(), 503);
    let body: Value = good.json().await.expect("fault body is JSON");
    assert!(body["error"].is_string());
    let bad = login_response(&server, &json!({"username": "x", "password": "y"})).await;
    assert_eq!(bad.status(), 503);

    set_faults(&server, json!({"login_status": null})).await;
    login(&server).await;
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn login_delay_fault_delays_the_answer() {
    let server = start_sim().await;
    let delay = Duration::from_millis(400);
    set_faults(&server, json!({"login_delay_ms": 400})).await;
    let started = Instant::now();
    login(&server).await;
    assert!(
        started.elapsed() >= delay,
        "login took only {:?}",
        started.elapsed()
    );
    set_faults(&server, json!({"login_delay_ms": 0})).await;
    let started = Instant::now();
    login(&server).await;
    assert!(started.elapsed() < delay, "delay outlived its fault");
    server.shutdown().await;
}

#[tokio::test]
async fn ws_reject_fault_refuses_the_upgrade() {
    let server = start_sim().await;
    let token = login(&server).await;
    set_faults(&server, json!({"ws_reject_status": 502})).await;
    assert_eq!(ws_refusal_status(&ws_url(&server, &token)).await, 502);
    let delete = http()
        .delete(format!("{}/_sim/faults", server.base_url()))
        .send()
        .await
        .expect("answered");
    assert_eq!(delete.status(), 200);
    let upgraded = tokio::time::timeout(PROMPT, connect_async(ws_url(&server, &token)))
        .await
        .expect("answered in time");
    assert!(upgraded.is_ok(), "upgrade still refused after clearing");
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn signalling_delay_fault_delays_joined() {
    let server = start_sim().await;
    let mut ws = connect(&server).await;
    set_faults(&server, json!({"signalling_delay_ms": 600})).await;
    let started = Instant::now();
    join(&mut ws, "slow", "alice").await;
    let joined = next_app_frame(&mut ws).await;
    assert_eq!(joined["type"], "joined");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "joined after only {:?}",
        started.elapsed()
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn signalling_drop_fault_loses_joins_but_pings_flow() {
    let server = start_sim().await;
    let mut ws = connect(&server).await;
    set_faults(&server, json!({"signalling_drop": true})).await;
    join(&mut ws, "lost", "alice").await;
    let seen = frames(&mut ws, Duration::from_millis(1_500), false).await;
    assert!(
        seen.iter().all(|v| v["type"] == "ping"),
        "join was not dropped: {seen:?}"
    );
    assert!(!seen.is_empty(), "no pings during the outage");

    // Once the outage ends the same connection signals again.
    set_faults(&server, json!({"signalling_drop": false})).await;
    join(&mut ws, "lost", "alice").await;
    assert_eq!(next_app_frame(&mut ws).await["type"], "joined");
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_websockets_promptly() {
    let server = start_sim().await;
    let addr = server.local_addr();
    let mut ws = connect(&server).await;
    let started = Instant::now();
    let (_, seen_close) = tokio::join!(server.shutdown(), async {
        let deadline = Instant::now() + PROMPT;
        for _ in 0..MAX_FRAMES {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) | Err(_) => return None,
            }
        }
        None
    });
    assert_eq!(seen_close, Some(1001));
    assert!(started.elapsed() < Duration::from_millis(2_500));
    // No longer accepting.
    let refused = tokio::time::timeout(PROMPT, TcpStream::connect(addr))
        .await
        .expect("connect attempt ends in time");
    assert!(refused.is_err(), "still accepting after shutdown");
}
