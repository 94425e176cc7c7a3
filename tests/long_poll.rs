//! `poll` on an http step (a long poll: Matrix `/sync`, Bayeux, Talk's internal signalling)
//! against a loopback long-poll server: a reply without what the step waits for is asked again
//! from the value it carried (`next_batch`), until one matches; running out of time is
//! `no_match`; the request budget bounds a server that answers at once forever; a server error
//! or a reply missing the carried value fails at once. The real server it is written for,
//! Synapse's `/sync`, is in tests/matrix.rs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use joincanary::report::FailureReason;
use serde_json::json;

use crate::support::{self, run_once};

/// How the server answers `GET /sync?since=N&want=W`.
#[derive(Clone, Copy)]
enum Mode {
    /// `next_batch` N+1; from N = 3 on the reply carries W.
    EventAtThree,
    /// Never carries W; each reply held 100 ms.
    Never,
    /// Never carries W, answers at once.
    NeverAtOnce,
    /// 500 on the second request.
    FailsSecond,
    /// No `next_batch` in the replies.
    NoToken,
}

struct Server {
    mode: Mode,
    requests: AtomicUsize,
}

async fn sync(
    State(server): State<Arc<Server>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let n = server.requests.fetch_add(1, Ordering::SeqCst);
    let since: u64 = q.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
    let want = q.get("want").cloned().unwrap_or_default();
    let next = (since + 1).to_string();
    match server.mode {
        Mode::EventAtThree if since >= 3 => {
            Json(json!({ "next_batch": next, "events": [{ "body": want }] })).into_response()
        }
        Mode::EventAtThree | Mode::NeverAtOnce => {
            Json(json!({ "next_batch": next, "events": [] })).into_response()
        }
        Mode::Never => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Json(json!({ "next_batch": next, "events": [] })).into_response()
        }
        Mode::FailsSecond if n >= 1 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "errcode": "M_UNKNOWN", "error": "Internal server error" })),
        )
            .into_response(),
        Mode::FailsSecond => Json(json!({ "next_batch": next, "events": [] })).into_response(),
        Mode::NoToken => Json(json!({ "events": [] })).into_response(),
    }
}

/// The server on 127.0.0.1, and its request counter.
async fn serve(mode: Mode) -> (String, Arc<Server>) {
    support::init();
    let server = Arc::new(Server {
        mode,
        requests: AtomicUsize::new(0),
    });
    let app = axum::Router::new()
        .route("/sync", get(sync))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, server)
}

/// A first request takes the token; the second long-polls from it until the run's uuid comes.
fn probe(url: &str, timeout: &str) -> String {
    format!(
        r#"
timeout = "40s"
[[steps]]
name = "sync"
kind = "http"
url = "{url}/sync?since=0"
extract = {{ since = {{ json = "/next_batch" }} }}
[[steps]]
name = "signalling"
kind = "http"
url = "{url}/sync?since={{{{since}}}}&want={{{{uuid}}}}"
expect_json = {{ events = [{{ body = "{{{{uuid}}}}" }}] }}
poll = {{ since = {{ json = "/next_batch" }} }}
timeout = "{timeout}"
"#
    )
}

#[tokio::test]
async fn a_long_poll_asks_again_from_the_carried_token_until_the_event_comes() {
    let (url, server) = serve(Mode::EventAtThree).await;
    let run = run_once(&support::probe_from(&probe(&url, "5s"), &[])).await;
    assert!(run.success, "{run:#?}");
    // since=0 for the first step, then 1, 2 (no event) and 3 (the event).
    assert_eq!(server.requests.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_long_poll_that_never_brings_the_event_is_no_match_naming_the_last_reply() {
    let (url, _server) = serve(Mode::Never).await;
    let run = run_once(&support::probe_from(&probe(&url, "1s"), &[])).await;
    assert_eq!(run.failed_step.as_deref(), Some("signalling"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::NoMatch));
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("no reply matched within 1.0 s (the step's timeout; ")
            && error.contains(" replies skipped; last: the reply does not match expect_json"),
        "{error}"
    );
}

#[tokio::test]
async fn a_long_poll_answered_at_once_forever_stops_at_the_request_budget() {
    let (url, server) = serve(Mode::NeverAtOnce).await;
    let run = run_once(&support::probe_from(&probe(&url, "30s"), &[])).await;
    assert_eq!(run.failed_step.as_deref(), Some("signalling"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::NoMatch));
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("no reply matched in 100 requests (poll budget); last: "),
        "{error}"
    );
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        1 + joincanary::flow::http::MAX_POLLS
    );
}

#[tokio::test]
async fn a_server_error_or_a_reply_without_the_carried_value_fails_the_long_poll_at_once() {
    let (url, _server) = serve(Mode::FailsSecond).await;
    let run = run_once(&support::probe_from(&probe(&url, "5s"), &[])).await;
    assert_eq!(run.failed_step.as_deref(), Some("signalling"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::HttpStatus));

    // No `next_batch` in the replies: the first step takes something else as its token.
    let (url, _server) = serve(Mode::NoToken).await;
    let text = probe(&url, "5s").replace(
        "extract = { since = { json = \"/next_batch\" } }\n[[steps]]",
        "extract = { since = { regex = \"events\" } }\n[[steps]]",
    );
    let run = run_once(&support::probe_from(&text, &[])).await;
    assert_eq!(run.failed_step.as_deref(), Some("signalling"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::BodyMismatch));
    assert_eq!(
        run.error.as_deref(),
        Some("the reply has no JSON value at `/next_batch` for `since`")
    );
}

/// A long-poll server that answers `replies` requests (each on its own connection, held 250 ms,
/// never carrying the event), then stops accepting and fills its accept queue (backlog 1) with two
/// idle connections of its own, so the kernel drops the next request's SYN: that connect hangs.
async fn serve_then_hang(replies: usize) -> String {
    use tokio::io::AsyncWriteExt;
    support::init();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for n in 0..replies {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            // Answered whether or not the head came whole.
            let _ = crate::support::hostile::read_head(&mut conn).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
            let body = format!(r#"{{"next_batch":"{}","events":[]}}"#, n + 1);
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            if n + 1 == replies {
                // Fill the queue before the last reply, so the next connect finds it full.
                let mut idle = Vec::new();
                for _ in 0..2 {
                    idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
                }
                let _ = conn.write_all(reply.as_bytes()).await;
                drop(conn);
                // Hold the listener and the idle connections (never accept) until the test ends.
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop((idle, listener));
                return;
            }
            let _ = conn.write_all(reply.as_bytes()).await;
        }
    });
    format!("http://{addr}")
}

/// On the paused clock: the server's 250 ms and the step's 1 s are the same clock, so three
/// replies come inside the step whatever the machine's load (on the real clock a loaded
/// machine's delays of 250 ms in all cost the third reply, and the count in the message).
/// The hanging connect waits on the kernel's real SYN retry, which the paused clock outruns.
#[tokio::test(start_paused = true)]
async fn a_long_poll_whose_time_runs_out_while_the_next_request_connects_is_still_no_match() {
    // Four replies of 250 ms (the first step's and three polls), then the next poll's connect
    // hangs: the 1 s step timeout lands in that connect 250 ms after it began, inside the
    // reconnect grace.
    let url = serve_then_hang(4).await;
    let run = run_once(&support::probe_from(&probe(&url, "1s"), &[])).await;
    assert_eq!(run.failed_step.as_deref(), Some("signalling"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::NoMatch), "{run:#?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("no reply matched within 1.0 s (the step's timeout; 3 replies skipped")
            && error.ends_with("; the next request was connecting)"),
        "{error}"
    );
}

#[tokio::test]
async fn a_long_poll_whose_next_connect_hangs_past_the_grace_names_the_connect() {
    // The same server, a 3 s step timeout: the hung connect outlasts the 1 s grace, so the
    // layer that stopped answering is named, not the missing event. The real clock (the
    // kernel's SYN retry), so a run the prober was late for is run again on a fresh server.
    let run = support::on_time::on_time(async || {
        let url = serve_then_hang(4).await;
        run_once(&support::probe_from(&probe(&url, "3s"), &[])).await
    })
    .await;
    assert_eq!(run.failed_step.as_deref(), Some("signalling"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::Timeout), "{run:#?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(error.contains("connect"), "{error}");
}
