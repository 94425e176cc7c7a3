//! Credentials written into a probe file as they are (`Authorization = "Bearer …"`,
//! `?access_token=…`, `json = { password = … }`, `/join/<token>`), not through `${ENV}`: a
//! server echoing its request in a refusal (`invalid token … for /api?access_token=…`, a 500
//! quoting the body, as many do) put them in the run's error, and so in the status, logs and
//! pages. A pager's literal key and its URL's path were already secrets; a probe's are now.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri};

use super::{leak, leaks_in, pages_naming, service_texts};
use crate::support::receiver::Receiver;
use crate::support::running::Running;
use crate::support::{self, TempConfig, probe_from, run_once};

/// Answers every request (an upgrade too) 401, echoing its URI and the headers that carry
/// credentials.
async fn echoing_refusal() -> String {
    async fn refuse(uri: Uri, headers: HeaderMap) -> (StatusCode, String) {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        (
            StatusCode::UNAUTHORIZED,
            format!(
                "invalid credentials `{}` / `{}` / `{}` for {uri}",
                header("authorization"),
                header("x-api-key"),
                header("cookie"),
            ),
        )
    }
    support::init();
    support::serve_router(axum::Router::new().fallback(refuse)).await
}

/// Literal values in the query and the headers of an `http` step and a `ws_connect` step.
#[tokio::test]
async fn literal_credentials_echoed_by_a_server_are_scrubbed() {
    let addr = echoing_refusal().await;
    let secrets = [
        "LitQueryToken42",
        "LitBearerToken42",
        "LitApiKey42",
        "LitCookie42",
        "LitWsToken42",
    ];
    for step in [
        format!(
            "kind = \"http\"\nurl = \"http://{addr}/api?room=lobby&access_token=LitQueryToken42\"\n\
             headers = {{ Authorization = \"Bearer LitBearerToken42\", X-Api-Key = \"LitApiKey42\", Cookie = \"sess=LitCookie42\" }}"
        ),
        format!(
            "kind = \"ws_connect\"\nurl = \"ws://{addr}/ws?room=lobby&token=LitWsToken42\"\n\
             headers = {{ Authorization = \"Bearer LitBearerToken42\" }}"
        ),
    ] {
        let plan = probe_from(
            &format!("timeout = \"5s\"\n[[steps]]\nname = \"join\"\n{step}\n"),
            &[],
        );
        let run = run_once(&plan).await;
        let out = serde_json::to_string(&run).unwrap();
        assert!(!run.success, "{out}");
        assert!(out.contains("invalid credentials"), "{out}");
        // What names no credential stays readable.
        assert!(out.contains("room=lobby"), "{out}");
        for secret in secrets {
            assert_eq!(leak(&out, secret), None, "{secret} leaked: {out}");
        }
    }
}

/// Answers 500 at `/e500`, 401 anywhere else, quoting the request's URI and body as a server
/// that chokes on them does; at `/go/…`, 302 to the same path under `/join/` (a token the
/// server puts in the path it sends us to), and at `/ftp/…` to an `ftp:` URL (refused, the
/// location in the error).
async fn echoing_body_and_path() -> String {
    async fn refuse(uri: Uri, body: axum::body::Bytes) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        let path = uri.path().to_string();
        if let Some(rest) = path.strip_prefix("/go/") {
            return (StatusCode::FOUND, [("location", format!("/join/{rest}"))]).into_response();
        }
        if let Some(rest) = path.strip_prefix("/ftp/") {
            let to = format!("ftp://files.example/join/{rest}");
            return (StatusCode::FOUND, [("location", to)]).into_response();
        }
        let status = if path == "/e500" {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::UNAUTHORIZED
        };
        let body = String::from_utf8_lossy(&body).into_owned();
        (status, format!("cannot handle {uri} with {body}")).into_response()
    }
    support::init();
    support::serve_router(axum::Router::new().fallback(refuse)).await
}

/// Literal values in request bodies (a JSON table, a form table, a raw JSON or form `body`),
/// under every name that says credential, any case, echoed in a 500 or a 401: only the
/// credentials are hidden, the user and the other fields stay readable. Before, the server's
/// quote of the body showed them in the run's error.
#[tokio::test]
async fn literal_body_credentials_echoed_by_a_server_are_scrubbed() {
    let addr = echoing_body_and_path().await;
    let cases = [
        (
            "json = { user = \"canary\", password = \"LitJsonPass42\", nested = { Client_Secret = \"LitClientSecret42\" }, pin = 1234 }",
            "/e500",
            &["LitJsonPass42", "LitClientSecret42"][..],
        ),
        (
            "form = { user = \"canary\", Passwd = \"LitFormPass42\", api_key = \"LitFormApiKey42\" }",
            "/e401",
            &["LitFormPass42", "LitFormApiKey42"],
        ),
        (
            "body = 'password=LitRawFormPass42&user=canary&access_token=LitRawFormToken42'",
            "/e500",
            &["LitRawFormPass42", "LitRawFormToken42"],
        ),
        (
            r#"body = '{"user":"canary","TOKEN":"LitRawJsonToken42","credential":"LitCredential42","secret":"LitSecret42"}'"#,
            "/e401",
            &["LitRawJsonToken42", "LitCredential42", "LitSecret42"],
        ),
    ];
    for (body, path, secrets) in cases {
        let plan = probe_from(
            &format!(
                "timeout = \"5s\"\n[[steps]]\nname = \"login\"\nkind = \"http\"\nmethod = \"POST\"\n\
                 url = \"http://{addr}{path}\"\n{body}\n"
            ),
            &[],
        );
        let run = run_once(&plan).await;
        let out = serde_json::to_string(&run).unwrap();
        assert!(!run.success, "{out}");
        assert!(out.contains("cannot handle"), "{out}");
        assert!(out.contains("[redacted]"), "{out}");
        assert!(out.contains("canary"), "the user stays readable: {out}");
        for secret in secrets {
            assert_eq!(leak(&out, secret), None, "{secret} leaked: {out}");
        }
    }
}

/// The same for a websocket login message: a server answering `ws_send`'s
/// `{"type":"join","password":…}` with an error frame quoting it, which the failing
/// `ws_expect` shows as what it saw instead.
#[tokio::test]
async fn a_literal_password_in_a_websocket_message_echoed_back_is_scrubbed() {
    use futures_util::{SinkExt as _, StreamExt as _};
    support::init();
    let addr = support::hostile::ws_server(|mut ws| async move {
        if let Some(Ok(m)) = ws.next().await {
            let echo = format!(
                "{{\"type\":\"error\",\"echo\":{:?}}}",
                m.to_text().unwrap_or("")
            );
            let _ = ws
                .send(tokio_tungstenite::tungstenite::Message::text(echo))
                .await;
        }
        // Until the client gives up (bounded by its deadline).
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    let plan = probe_from(
        &format!(
            "timeout = \"5s\"\n{}",
            support::ws_join_steps(
                &format!("ws://{addr}/ws"),
                r#"{"type":"join","user":"canary","password":"LitWsPass42"}"#,
                "expect_json = { type = \"joined\" }\nmax_frames = 1\ntimeout = \"2s\"",
            )
        ),
        &[],
    );
    let run = run_once(&plan).await;
    let out = serde_json::to_string(&run).unwrap();
    assert!(!run.success, "{out}");
    assert!(out.contains("canary"), "the frame is quoted: {out}");
    assert_eq!(leak(&out, "LitWsPass42"), None, "leaked: {out}");
}

/// Tokens in a probe URL's path, written literally: after `/join/`, after `/hooks/` (every
/// segment: Discord's `/api/webhooks/<id>/<token>`), or shaped like one anywhere; and a token a
/// redirect put in the path. Echoed in a refusal or shown as a refused redirect's location,
/// they were in the run's error; the rest of the path stays readable.
#[tokio::test]
async fn tokens_in_url_paths_are_scrubbed() {
    let addr = echoing_body_and_path().await;
    let cases = [
        ("/join/LitJoinToken42", "LitJoinToken42"),
        ("/api/webhooks/987654/LitHookToken42", "LitHookToken42"),
        ("/hooks/LitMattermostKey42", "LitMattermostKey42"),
        (
            "/rooms/Lit0ShapedToken0abcdef0123456789/state",
            "Lit0ShapedToken0abcdef0123456789",
        ),
        ("/go/LitRedirToken42", "LitRedirToken42"),
        ("/ftp/LitFtpToken42", "LitFtpToken42"),
    ];
    for (path, secret) in cases {
        let plan = probe_from(
            &format!(
                "timeout = \"5s\"\n[[steps]]\nname = \"join\"\nkind = \"http\"\n\
                 url = \"http://{addr}{path}\"\n"
            ),
            &[],
        );
        let run = run_once(&plan).await;
        let out = serde_json::to_string(&run).unwrap();
        assert!(!run.success, "{out}");
        assert!(out.contains("[redacted]"), "{out}");
        assert_eq!(leak(&out, secret), None, "{secret} leaked: {out}");
    }
}

/// The whole service at `--log.level debug`: a probe posting a literal password and client
/// secret, one joining at `/join/<token>`, both echoed in the refusal; pages to a webhook that
/// takes them, to a Slack-style pager whose path is its key answering 500 with that path, and
/// to one whose port refuses. Status JSON (the pagers' delivery errors too), the status page,
/// `/metrics`, the log and the pages hold none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_and_path_credentials_stay_out_of_status_logs_pages_and_metrics() {
    const PASSWORD: &str = "LitSvcPass42";
    const CLIENT_SECRET: &str = "LitSvcClientSecret42";
    const JOIN: &str = "LitSvcJoinToken42";
    const HOOK: &str = "SECRETPATHxq7";
    const HOOK_DOWN: &str = "SECRETPATHdown9";
    let addr = echoing_body_and_path().await;
    let (receiver, hook) = Receiver::start(200).await;
    // A provider that does not know the hook quotes the path it was asked for.
    async fn no_service(uri: Uri) -> (StatusCode, String) {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("no_service {uri}"),
        )
    }
    let slack = support::serve_router(axum::Router::new().fallback(no_service)).await;
    let (closed, closed_addr) = support::hostile::listener().await;
    drop(closed);
    let every_second = "schedule = \"* * * * * *\"\ntimeout = \"900ms\"\n";
    let cfg = TempConfig::new(
        &format!(
            "[alerting]\nconfirm_delay = \"200ms\"\nfailure_threshold = 1\n\
             [[pager]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{hook}/hook\"\nretry_base = \"50ms\"\n\
             [[pager]]\nname = \"slack\"\ntype = \"slack\"\nurl = \"http://{slack}/services/T0/B0/{HOOK}\"\nretry_base = \"50ms\"\n\
             [[pager]]\nname = \"slack-down\"\ntype = \"slack\"\nurl = \"http://{closed_addr}/services/T0/B0/{HOOK_DOWN}\"\nretry_base = \"50ms\"\n"
        ),
        &[
            (
                "login.toml",
                &format!(
                    "{every_second}[[steps]]\nname = \"login\"\nkind = \"http\"\nmethod = \"POST\"\n\
                     url = \"http://{addr}/e500\"\n\
                     json = {{ user = \"canary\", password = \"{PASSWORD}\", client_secret = \"{CLIENT_SECRET}\" }}\n"
                ),
            ),
            (
                "join.toml",
                &format!(
                    "{every_second}[[steps]]\nname = \"join\"\nkind = \"http\"\nurl = \"http://{addr}/join/{JOIN}\"\n"
                ),
            ),
        ],
    );
    let running = tokio::task::block_in_place(|| {
        Running::start_with(&cfg.path, &["--log.level", "debug"], &[])
    });
    let base = running.base();
    let pages = pages_naming(&receiver, &["login".to_string(), "join".to_string()]).await;
    // Both failing pagers have tried and failed by now, or soon.
    let status = support::poll(
        Duration::from_secs(20),
        Duration::from_millis(100),
        async || {
            support::when(support::status(&base).await.to_string(), |s| {
                s.contains("no_service") && s.contains("cannot connect")
            })
        },
    )
    .await
    .unwrap_or_else(|last| last);
    assert!(
        status.contains("no_service") && status.contains("cannot connect"),
        "the pagers' errors are in the status: {status}"
    );
    assert!(
        status.contains("cannot handle"),
        "the echoes reached status: {status}"
    );
    let texts = service_texts(running, pages).await;
    let leaks = leaks_in(&texts, &[PASSWORD, CLIENT_SECRET, JOIN, HOOK, HOOK_DOWN]);
    assert!(leaks.is_empty(), "{}\n\n{}", leaks.join("\n"), texts[3].1);
}
