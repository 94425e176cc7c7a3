//! A resident session's `[tokens]` are minted afresh at every (re)connect: after the server
//! broke the first session and when the second is rotated, both long past the first token's
//! `ttl`, the session reopens with a token the server takes. On tokio's paused clock, the
//! server in this runtime refusing a token whose `exp` has passed on the same clock, as an
//! expiring platform token would: a reconnect that reused the first token would be refused and
//! page for the wrong reason.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Query;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine as _;
use chrono::TimeZone as _;
use joincanary::clock::Clock;
use joincanary::event::{Event, ReconnectCause};

use crate::support;

/// What the server saw: each token it took (`iat`, `exp`, and its clock then) and each it
/// refused.
#[derive(Default)]
struct Seen {
    taken: Vec<(i64, i64, i64)>,
    refused: Vec<String>,
}

/// A token's `iat` and `exp`.
fn times(token: &str) -> Option<(i64, i64)> {
    let part = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some((claims["iat"].as_i64()?, claims["exp"].as_i64()?))
}

/// `/ws?token=JWT`: refused (401) once the token's `exp` has passed on `clock`, else a
/// websocket echoing text frames. The first connection is closed after its 4th echo.
async fn server(clock: Clock, seen: Arc<Mutex<Seen>>) -> String {
    let app = axum::Router::new().route(
        "/ws",
        get(
            move |Query(q): Query<std::collections::HashMap<String, String>>,
                  ws: WebSocketUpgrade| async move {
                let token = q.get("token").cloned().unwrap_or_default();
                let now = clock.now().timestamp();
                let Some((iat, exp)) = times(&token).filter(|(_, exp)| *exp > now) else {
                    seen.lock().unwrap().refused.push(token);
                    return (StatusCode::UNAUTHORIZED, "token expired").into_response();
                };
                let first = {
                    let mut s = seen.lock().unwrap();
                    s.taken.push((iat, exp, now));
                    s.taken.len() == 1
                };
                ws.on_upgrade(move |mut socket| async move {
                    let mut echoes = 0;
                    // Bounded by the client: it ends when the session closes.
                    while let Some(Ok(m)) = socket.recv().await {
                        if let Message::Text(t) = m {
                            let _ = socket.send(Message::Text(t)).await;
                            echoes += 1;
                            if first && echoes == 4 {
                                return;
                            }
                        }
                    }
                })
            },
        ),
    );
    support::serve_router(app).await
}

fn probe(addr: &str) -> String {
    format!(
        r#"mode = "resident"
timeout = "5s"

[resident]
every = "30s"
max_session_age = "4m"
keepalive = "10s"
reconnect_min = "1s"
reconnect_max = "5s"

[tokens.access]
kind = "jwt"
secret = "resident-secret-of-at-least-32-bytes"
ttl = "1m"
claims = {{ sub = "canary" }}

[[steps]]
name = "connect"
kind = "ws_connect"
url = "ws://{addr}/ws?token={{{{access}}}}"
timeout = "5s"

[[exchange]]
name = "ping"
kind = "ws_send"
text = "ping {{{{uuid}}}}"
timeout = "1s"

[[exchange]]
name = "pong"
kind = "ws_expect"
expect_regex = "ping {{{{uuid}}}}"
timeout = "3s"
"#
    )
}

#[tokio::test(start_paused = true)]
async fn a_reconnect_and_a_rotation_past_the_ttl_mint_fresh_tokens() {
    let clock = Clock::starting_at(chrono::Utc.timestamp_opt(1_800_000_000, 0).unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let addr = server(clock, seen.clone()).await;
    let plan = support::probe_from(&probe(&addr), &[]);
    let (task, mut rx, stop) = super::on_flow(plan, clock);
    let mut causes = Vec::new();
    let mut failed = Vec::new();
    // Bounded: about 15 runs in the 6 virtual minutes to the third session; at most 200
    // events, each within 10 virtual minutes.
    for _ in 0..200 {
        if causes.len() >= 2 {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(600), rx.recv()).await {
            Ok(Some(Event::Reconnect { cause, .. })) => causes.push(cause),
            Ok(Some(Event::Run { run, .. })) if !run.success => failed.push(run),
            Ok(Some(_)) => {}
            other => panic!("events ended: {other:?}"),
        }
    }
    stop.cancel();
    task.await.unwrap();
    let seen = seen.lock().unwrap();
    assert!(seen.refused.is_empty(), "stale tokens: {:?}", seen.refused);
    assert_eq!(
        causes,
        [ReconnectCause::Failure, ReconnectCause::Rotation],
        "{failed:#?}"
    );
    assert_eq!(seen.taken.len(), 3, "{:?}", seen.taken);
    // Each session's token was minted when it opened, after the one before had expired.
    for pair in seen.taken.windows(2) {
        let ((_, exp, _), (iat, _, now)) = (pair[0], pair[1]);
        assert!(iat >= exp && now >= exp, "{:?}", seen.taken);
    }
    // The only failure is the break itself (the session step), never the reopen.
    assert!(
        failed
            .iter()
            .all(|r| r.failed_step.as_deref() != Some("connect")),
        "{failed:#?}"
    );
}
