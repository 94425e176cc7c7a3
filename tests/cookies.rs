//! Sessions: cookies set by one step travel with later http steps and the websocket upgrade;
//! values come out of headers and cookies; form and raw bodies arrive as sent.

use axum::Router;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::support;

const SESSION: &str = "sess-0123456789abcdef";

fn has_session(headers: &HeaderMap) -> bool {
    headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| {
            c.split(';')
                .any(|kv| kv.trim() == format!("session={SESSION}"))
        })
}

async fn server() -> String {
    let app = Router::new()
        .route(
            "/login",
            post(|headers: HeaderMap, body: String| async move {
                let form_ok = headers
                    .get(header::CONTENT_TYPE)
                    .is_some_and(|v| v == "application/x-www-form-urlencoded")
                    && body == "pass=p+w%26&user=canary"; // fields go in key order
                if !form_ok {
                    return (StatusCode::BAD_REQUEST, body).into_response();
                }
                Response::builder()
                    .header(
                        header::SET_COOKIE,
                        format!("session={SESSION}; Path=/; HttpOnly"),
                    )
                    .header("x-request-id", "req-42")
                    .body(axum::body::Body::from("ok"))
                    .unwrap_or_default()
            }),
        )
        .route(
            "/me",
            get(|headers: HeaderMap| async move {
                if has_session(&headers) {
                    (StatusCode::OK, "{\"user\":\"canary\"}")
                } else {
                    (StatusCode::UNAUTHORIZED, "{}")
                }
            }),
        )
        .route(
            "/ws",
            get(|headers: HeaderMap, ws: WebSocketUpgrade| async move {
                if !has_session(&headers) {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                ws.on_upgrade(|mut socket| async move {
                    if let Some(Ok(Message::Text(_))) = socket.recv().await {
                        let _ = socket
                            .send(Message::Text(
                                "{\"type\":\"joined\",\"who\":\"canary\"}".into(),
                            ))
                            .await;
                    }
                    let _ = socket.recv().await;
                })
            }),
        );
    support::serve_router(app).await
}

#[tokio::test]
async fn cookies_carry_to_later_steps_and_the_websocket() {
    let addr = server().await;
    let text = format!(
        r#"
timeout = "5s"
[[steps]]
name = "login"
kind = "http"
method = "POST"
url = "http://{addr}/login"
form = {{ user = "canary", pass = "p w&" }}
extract = {{ session = {{ cookie = "session" }}, request_id = {{ header = "x-request-id" }} }}

[[steps]]
name = "me"
kind = "http"
url = "http://{addr}/me"
expect_json = {{ user = "canary" }}
headers = {{ x-request-id = "{{{{request_id}}}}" }}
"#
    ) + &support::ws_join_steps(
        &format!("ws://{addr}/ws"),
        "join",
        r#"expect_regex = '"who":"(\w+)"'
extract = { who = { regex = '"who":"(\w+)"' } }"#,
    );
    let probe = support::probe_from(&text, &[]);
    let run = crate::support::run_once(&probe).await;
    assert!(run.success, "{run:#?}");
    // The session cookie is a secret: never in the report.
    assert!(!serde_json::to_string(&run).unwrap().contains(SESSION));
}

#[tokio::test]
async fn without_the_cookie_the_websocket_is_refused() {
    let addr = server().await;
    let text = format!(
        "[[steps]]\nname = \"websocket\"\nkind = \"ws_connect\"\nurl = \"ws://{addr}/ws\"\n"
    );
    let run = crate::support::run_once(&support::probe_from(&text, &[])).await;
    assert_eq!(
        run.reason,
        Some(joincanary::report::FailureReason::WsHandshake)
    );
    assert!(run.error.unwrap_or_default().contains("401"));
}

/// A named connection is a participant with a cookie jar of its own: participant b's login
/// cookie goes with b's later requests and b's websocket upgrade, not with a's.
#[tokio::test]
async fn a_participants_login_cookie_goes_with_its_own_steps_only() {
    let addr = server().await;
    let text = format!(
        r#"
timeout = "5s"
[[steps]]
name = "login-b"
kind = "http"
connection = "b"
method = "POST"
url = "http://{addr}/login"
form = {{ user = "canary", pass = "p w&" }}

[[steps]]
name = "me-b"
kind = "http"
connection = "b"
url = "http://{addr}/me"
expect_json = {{ user = "canary" }}

[[steps]]
name = "websocket-b"
kind = "ws_connect"
connection = "b"
url = "ws://{addr}/ws"

[[steps]]
name = "websocket-a"
kind = "ws_connect"
connection = "a"
url = "ws://{addr}/ws"
"#
    );
    let run = crate::support::run_once(&support::probe_from(&text, &[])).await;
    crate::support::passed(&run, &["login-b", "me-b", "websocket-b"]);
    assert_eq!(run.failed_step.as_deref(), Some("websocket-a"), "{run:#?}");
    assert_eq!(
        run.reason,
        Some(joincanary::report::FailureReason::WsHandshake)
    );
}
