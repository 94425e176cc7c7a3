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

/// `app` with every other path answering after noting the `Cookie` header it was sent: runs a
/// probe that GETs `set` and then `then`; the cookies sent with the second request, once it
/// passed.
async fn cookies_sent_back(app: Router, set: &str, then: &str) -> Vec<String> {
    use std::sync::{Arc, Mutex};
    let sent = Arc::new(Mutex::new(String::new()));
    let seen = sent.clone();
    let app = app.fallback(move |headers: HeaderMap| async move {
        let cookie = headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        *seen.lock().unwrap() = cookie;
        "ok"
    });
    let addr = support::serve_router(app).await;
    let plan = support::probe_from(
        &format!(
            r#"
timeout = "5s"
[[steps]]
name = "set"
kind = "http"
url = "http://{addr}{set}"
[[steps]]
name = "echo"
kind = "http"
url = "http://{addr}{then}"
"#
        ),
        &[],
    );
    let run = support::run_once(&plan).await;
    assert!(run.success, "{run:#?}");
    let cookie = sent.lock().unwrap().clone();
    cookie
        .split("; ")
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// As many cookies sent back as a jar keeps, the session cookie (set first) among them.
fn assert_full_jar_with_the_session(pairs: &[String]) {
    assert_eq!(
        pairs.len(),
        joincanary::flow::context::MAX_COOKIES,
        "{} cookies sent back",
        pairs.len()
    );
    assert!(pairs.contains(&format!("session={SESSION}")));
}

/// `/set/0` … `/set/{replies - 1}`, each redirecting to the next but the last, each setting
/// the cookies `cookies(n)` names.
fn setting_cookies(replies: usize, cookies: fn(usize) -> Vec<String>) -> Router {
    Router::new().route(
        "/set/{n}",
        get(
            move |axum::extract::Path(n): axum::extract::Path<usize>| async move {
                let mut headers = HeaderMap::new();
                for c in cookies(n) {
                    headers.append(header::SET_COOKIE, c.parse().unwrap());
                }
                if n + 1 < replies {
                    headers.insert(header::LOCATION, format!("/set/{}", n + 1).parse().unwrap());
                    return (StatusCode::FOUND, headers).into_response();
                }
                (headers, "set").into_response()
            },
        ),
    )
}

/// Hostile review (issue 17): a server setting 90 fresh cookies on each of four replies, and one
/// of 5,000 bytes. Before, the jar kept every one and sent all 362 back with every later
/// request (in a resident session, one more batch per exchange for as long as the session
/// lived). Now the jar keeps at most `MAX_COOKIES`, the first ones set (the session cookie
/// among them), and ignores a cookie over `MAX_COOKIE_BYTES`, as browsers do.
#[tokio::test]
async fn a_flood_of_cookies_keeps_the_jar_and_the_cookie_header_bounded() {
    let app = setting_cookies(4, |n| {
        let mut set = Vec::new();
        if n == 0 {
            set.push(format!("session={SESSION}; Path=/"));
            set.push(format!("huge={}; Path=/", "x".repeat(5_000)));
        }
        set.extend((0..90).map(|i| format!("c{n}x{i}=value-{n}-{i}-abcdef; Path=/")));
        set
    });
    let pairs = cookies_sent_back(app, "/set/0", "/echo").await;
    assert_full_jar_with_the_session(&pairs);
    assert!(
        !pairs.iter().any(|p| p.starts_with("huge=")),
        "a 5,000-byte cookie was kept"
    );
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

/// A fresh hostile round (issue 17): the jar's bound counted names, but a jar holds one cookie
/// per name, domain and path. A server setting one name under 450 paths (`/d`, `/d/d`, …, 90
/// on each of five replies) had every one kept, and a request under the deepest sent all 450
/// back; with fresh paths on every reply of a resident session the jar grew for as long as the
/// session lived. Now the bound counts cookies as the jar keys them.
#[tokio::test]
async fn one_cookie_name_under_many_paths_keeps_the_jar_bounded() {
    const PER_REPLY: usize = 90;
    const REPLIES: usize = 5;
    let app = setting_cookies(REPLIES, |n| {
        let mut set = Vec::new();
        if n == 0 {
            set.push(format!("session={SESSION}; Path=/"));
        }
        set.extend(
            (n * PER_REPLY + 1..=(n + 1) * PER_REPLY)
                .map(|depth| format!("t=v{depth}; Path={}", "/d".repeat(depth))),
        );
        set
    });
    let deepest = "/d".repeat(PER_REPLY * REPLIES);
    let pairs = cookies_sent_back(app, "/set/0", &format!("{deepest}/echo")).await;
    assert_full_jar_with_the_session(&pairs);
}
