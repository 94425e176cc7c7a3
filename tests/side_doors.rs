//! The fresh hostile round of issue 17, on what was added last: values from the environment
//! that are whole URLs (their path, query and user info can be the secret) and values that
//! merely look like URLs (`user:password`), echoed back by a server; a SockJS or ActionCable
//! server closing with a reason of any length.

use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;

use crate::support::{self, probe_from, run_once};

/// A server that answers 404 naming what it was asked for, as many do: the path and query, and
/// the last path segment on its own.
async fn echoing_server() -> String {
    async fn handle(uri: Uri) -> axum::response::Response {
        let last = uri
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        (
            StatusCode::NOT_FOUND,
            format!("no route for {uri} (unknown hook {last})"),
        )
            .into_response()
    }
    support::init();
    support::serve_router(axum::Router::new().fallback(handle)).await
}

/// `url = "${HOOK_URL}"` with a token in the path and the query: before, a whole-URL value
/// from the environment was not scrubbed at all, so the server's echo put both in the error
/// (and so in the status API, logs and pages). The host and port stay readable.
#[tokio::test]
async fn a_whole_url_from_the_environment_keeps_its_path_and_query_secret() {
    let addr = echoing_server().await;
    let url = format!("http://{addr}/hooks/T0PATHSECRET123/x?token=QUERYSECRET99&a=1");
    let plan = probe_from(
        "timeout = \"5s\"\n[[steps]]\nname = \"hook\"\nkind = \"http\"\nurl = \"${HOOK_URL}\"\n",
        &[("HOOK_URL", &url)],
    );
    let run = run_once(&plan).await;
    let out = serde_json::to_string(&run).unwrap();
    assert!(!run.success, "{out}");
    for secret in ["T0PATHSECRET123", "QUERYSECRET99"] {
        assert!(!out.contains(secret), "{secret} leaked: {out}");
    }
    assert!(out.contains("no route for"), "{out}");
}

/// `user:password` parses as a URL of scheme `user`: before, such a value from the environment
/// was taken for a URL and never scrubbed.
#[tokio::test]
async fn a_user_colon_password_value_is_a_secret_not_a_url() {
    let addr = echoing_server().await;
    let plan = probe_from(
        &format!(
            "timeout = \"5s\"\n[[steps]]\nname = \"login\"\nkind = \"http\"\n\
             url = \"http://{addr}/login?who={{{{who|url}}}}\"\n\
             [variables]\nwho = \"${{CREDS}}\"\n"
        ),
        &[("CREDS", "canary:hunter2secretpw")],
    );
    let run = run_once(&plan).await;
    let out = serde_json::to_string(&run).unwrap();
    assert!(!run.success, "{out}");
    assert!(
        !out.contains("hunter2secretpw"),
        "the password leaked: {out}"
    );
    assert!(out.contains(&addr) || out.contains("no route for"), "{out}");
}

/// A SockJS server that opens the session, then closes it with a 256 KiB reason that also
/// echoes the probe's token. Before, the reason went whole into the error (status, logs,
/// pages): a quarter of a megabyte per run, the token scrubbed but the line unbounded.
#[tokio::test]
async fn a_sockjs_close_reason_is_quoted_and_cut() {
    use futures_util::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let addr = crate::support::hostile::ws_server(|mut ws| async move {
        let reason = format!("T0KENSECRET77 {}", "x".repeat(256 * 1024));
        let close = format!("c{}", serde_json::json!([3000, reason]));
        for frame in ["o".to_string(), close] {
            if ws.send(Message::text(frame)).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    })
    .await;
    let plan = probe_from(
        &format!(
            "timeout = \"5s\"\n[[steps]]\nname = \"open\"\nkind = \"ws_connect\"\n\
             protocol = \"sockjs\"\nurl = \"ws://{addr}/sockjs/1/abc/websocket?t=${{TOKEN}}\"\n\
             [[steps]]\nname = \"wait\"\nkind = \"ws_expect\"\nexpect_regex = \"never\"\n"
        ),
        &[("TOKEN", "T0KENSECRET77")],
    );
    let run = run_once(&plan).await;
    let error = run.error.clone().unwrap_or_default();
    assert_eq!(
        run.reason,
        Some(joincanary::report::FailureReason::WsClosed),
        "{error}"
    );
    assert!(
        error.starts_with("the server closed the SockJS session (3000 [redacted] xxx"),
        "{error}"
    );
    assert!(error.chars().count() < 1000, "{} characters", error.len());
    assert!(!error.contains("T0KENSECRET77"), "{error}");
}

/// `max_body_bytes` bounds what one reply costs in memory; before, any positive number was
/// taken (`9223372036854775807` let one reply fill the machine). Now at most 64 MiB, the error
/// at the key.
#[test]
fn max_body_bytes_cannot_configure_the_cap_away() {
    let probe = |head: &str| {
        format!(
            "{head}timeout = \"5s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\n\
             url = \"http://127.0.0.1:9/\"\n"
        )
    };
    let in_probe = support::TempConfig::new(
        "",
        &[("p.toml", &probe("max_body_bytes = 9223372036854775807\n"))],
    )
    .errors();
    assert_eq!(
        in_probe,
        ["probes/p.toml:1:18: max_body_bytes: must be a whole number from 1 to 67108864"]
    );
    let in_defaults = support::TempConfig::new(
        "[defaults]\nmax_body_bytes = 67108865\n",
        &[("p.toml", &probe(""))],
    )
    .errors();
    assert_eq!(
        in_defaults,
        [
            "joincanary.toml:6:18: defaults.max_body_bytes: must be a whole number from 1 to 67108864"
        ]
    );
}
