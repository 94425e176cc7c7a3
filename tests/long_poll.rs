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
