//! The fresh hostile round of issue 17, on what was added last: values from the environment
//! that are whole URLs (their path, query and user info can be the secret) and values that
//! merely look like URLs (`user:password`), echoed back by a server; a SockJS or ActionCable
//! server closing with a reason of any length; `max_body_bytes` configured away; a URL whose
//! origin a server chose (an extracted value at its start), which the probe's credentials
//! must not follow to another origin, nor a value that came over TLS follow without it.

use std::collections::HashMap;

use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use joincanary::report::{FailureReason, ProbeRun};

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
    assert_eq!(run.reason, Some(FailureReason::WsClosed), "{error}");
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

// ---------------------------------------------------------------------------------------------
// A URL whose origin a server chose (an extracted value at its start): Nextcloud's signalling
// server from its settings, a homeserver's base URL, a TURN URL from `iceServers`.
// ---------------------------------------------------------------------------------------------

/// A "settings" server on 127.0.0.1 whose `/settings` names `server` (another host's URL) and
/// hands out a ticket.
async fn settings_server(server: String) -> String {
    let app = axum::Router::new().route(
        "/settings",
        axum::routing::get(move || {
            let server = server.clone();
            async move {
                axum::Json(serde_json::json!({"server": server, "ticket": "t1cket-from-settings"}))
            }
        }),
    );
    support::init();
    support::serve_router(app).await
}

/// Settings on 127.0.0.1, then a step to the server they name on 127.0.0.2 with `follow`'s
/// extra lines; the password is `${PW}`.
fn named_probe(settings: &str, follow: &str) -> String {
    format!(
        r#"
timeout = "5s"
[variables]
basic = "canary:${{PW}}"

[[steps]]
name = "settings"
kind = "http"
url = "http://{settings}/settings"
headers = {{ Authorization = "Basic {{{{basic|base64}}}}" }}
extract = {{ server = {{ json = "/server" }}, ticket = {{ json = "/ticket" }} }}

[[steps]]
name = "follow"
{follow}
"#
    )
}

const PW: &str = "hunter2-nextcl0ud-pw";

/// Runs `follow` against a recording server on 127.0.0.2 named by the settings: the run and
/// what that server saw at `/x`.
async fn follow_named(follow: &str) -> (ProbeRun, Vec<HashMap<String, String>>) {
    let (other, other_addr) = crate::redirects::hop_server("127.0.0.2", String::new()).await;
    let settings = settings_server(format!("http://{other_addr}")).await;
    let plan = probe_from(&named_probe(&settings, follow), &[("PW", PW)]);
    let run = run_once(&plan).await;
    (run, other.at("/x"))
}

/// The settings' server on another host must not get the password: before, the step sent its
/// `Authorization: Basic …` there and passed. Now it is refused before any byte is sent,
/// naming the value and the origin it came from.
#[tokio::test]
async fn credentials_do_not_follow_a_url_a_server_named_to_another_origin() {
    for (what, follow) in [
        (
            "`authorization` header",
            "kind = \"http\"\nurl = \"{{server}}/x\"\nheaders = { Authorization = \"Basic {{basic|base64}}\" }",
        ),
        (
            "`x-api-key` header",
            "kind = \"http\"\nurl = \"{{server}}/x\"\nheaders = { X-Api-Key = \"${PW}\" }",
        ),
        (
            "request body",
            "kind = \"http\"\nmethod = \"POST\"\nurl = \"{{server}}/x\"\njson = { password = \"${PW}\" }",
        ),
        ("URL", "kind = \"http\"\nurl = \"{{server}}/x?key=${PW}\""),
        (
            "`authorization` header",
            "kind = \"ws_connect\"\nurl = \"{{server}}/x\"\nheaders = { Authorization = \"Basic {{basic|base64}}\" }",
        ),
    ] {
        let (run, seen) = follow_named(follow).await;
        let out = serde_json::to_string(&run).unwrap();
        assert!(
            seen.is_empty(),
            "{what}: the named server was sent {seen:?}"
        );
        assert_eq!(run.failed_step.as_deref(), Some("follow"), "{what}: {out}");
        assert_eq!(run.reason, Some(FailureReason::Protocol), "{what}: {out}");
        let error = run.error.clone().unwrap_or_default();
        assert!(
            error.contains("`{{server}}`, from a reply of http://127.0.0.1:")
                && error.contains(&format!(
                    "is another origin, and the {what} holds a credential"
                )),
            "{what}: {error}"
        );
        assert!(!out.contains(PW), "{what}: {out}");
    }
}

/// What the naming server handed out itself may go where it points (the Nextcloud ticket, a
/// token it issued), as may a request carrying nothing secret; a value in the path decides no
/// origin.
#[tokio::test]
async fn what_the_naming_server_gave_may_follow_its_url() {
    for follow in [
        "kind = \"http\"\nurl = \"{{server}}/x\"\nheaders = { Authorization = \"Bearer {{ticket}}\", X-Tag = \"canary\" }",
        "kind = \"http\"\nmethod = \"POST\"\nurl = \"{{server}}/x\"\njson = { ticket = \"{{ticket}}\" }",
    ] {
        let (run, seen) = follow_named(follow).await;
        assert!(run.success, "{follow}: {run:#?}");
        assert_eq!(seen.len(), 1, "{follow}");
    }
}

/// A server reached over TLS naming a plain http URL: the step would send without TLS what the
/// encrypted reply led to. Refused with reason `tls`; the plain server never hears from it.
#[tokio::test]
async fn a_url_named_over_tls_is_never_followed_without_it() {
    let (plain, plain_addr) = crate::redirects::hop_server("127.0.0.1", String::new()).await;
    let body = format!("{{\"server\":\"http://{plain_addr}\",\"ticket\":\"t1cket-over-tls\"}}");
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let (tls_addr, cert) = crate::redirects::tls_answering(reply).await;
    let text = named_probe(&tls_addr, "kind = \"http\"\nurl = \"{{server}}/x\"")
        .replace("http://127.0.0.1", "https://127.0.0.1")
        .replace("timeout = \"5s\"", "timeout = \"5s\"\nca_file = \"ca.pem\"");
    let cfg = support::TempConfig::new("", &[("p.toml", &text)]);
    std::fs::write(cfg.probe_path("ca.pem"), cert).unwrap();
    let plan = cfg.load(&[("PW", PW)]).unwrap_or_else(|e| panic!("{e}"));
    let run = run_once(&plan.probes[0]).await;
    assert_eq!(run.failed_step.as_deref(), Some("follow"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::Tls), "{run:#?}");
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("which came over TLS) refused: it would send the request without TLS"),
        "{error}"
    );
    assert!(plain.at("/x").is_empty(), "the plain server was reached");
}

/// A TURN URL from a join reply with the probe's own REST `secret`: the secret would key a
/// credential for a server the reply chose. Refused before any datagram; the join's own
/// `iceServers` credential is what goes with the join's URL.
#[tokio::test]
async fn the_turn_secret_does_not_follow_a_turn_url_a_server_named() {
    let udp = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let turn = format!("turn:{}", udp.local_addr().unwrap());
    let settings = settings_server(turn).await;
    let text = named_probe(
        &settings,
        "kind = \"turn\"\nurl = \"{{server}}\"\nsecret = \"${PW}\"",
    );
    let run = run_once(&probe_from(&text, &[("PW", PW)])).await;
    assert_eq!(run.failed_step.as_deref(), Some("follow"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::Protocol), "{run:#?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(error.contains("`secret`"), "{error}");
    // A datagram sent over loopback is in the socket's queue by the time the run is over.
    let mut buf = [0u8; 64];
    assert!(
        udp.try_recv(&mut buf).is_err(),
        "the named TURN server was sent a datagram"
    );
}

/// The new kinds' debug-log scan: a Matrix-like flow (a password login handing out an access
/// token, a session cookie and the homeserver's own URL; a sync through that URL taking a
/// `since` token; a `poll` long poll carrying it until the event comes) and a SockJS
/// connection with the token in its URL and its first message, at `--log.level debug` and
/// `trace`: the whole log holds no shape of the password, the token, the `since` token or the
/// cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_and_trace_logs_of_a_long_poll_and_sockjs_run_hold_no_secret() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio_tungstenite::tungstenite::Message;
    const PASSWORD: &str = "matrix-passw0rd-r7";
    const TOKEN: &str = "syt_access-t0ken-q2";
    const SINCE: &str = "s72-since-t0ken-m5";
    const COOKIE: &str = "sess-c00kie-lp-v9";
    support::init();
    let syncs = std::sync::Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let login = {
        let base = base.clone();
        move || async move {
            (
                [(
                    axum::http::header::SET_COOKIE,
                    format!("sess={COOKIE}; Path=/"),
                )],
                axum::Json(serde_json::json!({"access_token": TOKEN, "server": base})),
            )
        }
    };
    let sync = move |headers: axum::http::HeaderMap| {
        let n = syncs.fetch_add(1, Ordering::SeqCst);
        async move {
            if headers.get("authorization").and_then(|v| v.to_str().ok())
                != Some(&format!("Bearer {TOKEN}"))
            {
                return (StatusCode::UNAUTHORIZED, "{}".to_string());
            }
            // The first sync and the first poll bring nothing; the next one the event.
            let body = if n < 2 { "[]" } else { r#"[{"body":"ok"}]"# };
            (
                StatusCode::OK,
                format!(r#"{{"next_batch":"{SINCE}","events":{body}}}"#),
            )
        }
    };
    let app = axum::Router::new()
        .route("/login", axum::routing::post(login))
        .route("/sync", axum::routing::get(sync));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let ws = crate::support::hostile::ws_server(|mut ws| async move {
        if ws.send(Message::text("o")).await.is_err() {
            return;
        }
        // Each message the client sends comes back as the server's; until it closes (the
        // run's own close at its end is not a step).
        while let Some(Ok(Message::Text(t))) = ws.next().await {
            let echo = format!("a{t}");
            if ws.send(Message::text(echo)).await.is_err() {
                return;
            }
        }
    })
    .await;
    let probe = format!(
        r#"
timeout = "10s"
[[steps]]
name = "login"
kind = "http"
method = "POST"
url = "{base}/login"
json = {{ user = "canary", password = "${{PASSWORD}}" }}
extract = {{ token = {{ json = "/access_token" }}, server = {{ json = "/server" }} }}

[[steps]]
name = "sync"
kind = "http"
url = "{{{{server}}}}/sync?timeout=0"
headers = {{ Authorization = "Bearer {{{{token}}}}" }}
extract = {{ since = {{ json = "/next_batch" }} }}

[[steps]]
name = "signalling"
kind = "http"
url = "{{{{server}}}}/sync?since={{{{since|url}}}}"
headers = {{ Authorization = "Bearer {{{{token}}}}" }}
expect_regex = '"body":"ok"'
poll = {{ since = {{ json = "/next_batch" }} }}

[[steps]]
name = "connect"
kind = "ws_connect"
protocol = "sockjs"
url = "ws://{ws}/sockjs/1/a/websocket?access_token={{{{token}}}}"

[[steps]]
name = "hello"
kind = "ws_send"
json = {{ msg = "connect", token = "{{{{token}}}}", since = "{{{{since}}}}" }}

[[steps]]
name = "welcome"
kind = "ws_expect"
expect_json = {{ msg = "connect" }}
"#
    );
    let cfg = support::TempConfig::new("", &[("p.toml", &probe)]);
    let mut leaks = Vec::new();
    for level in ["debug", "trace"] {
        let (code, log) = support::run_logged(level, "once", &cfg.path, &[("PASSWORD", PASSWORD)]);
        assert_eq!(code, Some(0), "at {level}:\n{log}");
        assert!(log.contains("DEBUG"), "at {level}:\n{log}");
        for secret in [PASSWORD, TOKEN, SINCE, COOKIE] {
            if let Some(found) = crate::secrets::leak(&log, secret) {
                leaks.push(format!("at {level}: {secret} as {found:?}\n{log}"));
            }
        }
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n\n"));
}

/// A server naming a cloud metadata address (`http://169.254.169.254/…`, with a `#` to cut off
/// the path the probe appends), or redirecting there: the instance's credentials would come
/// back quoted in the step's error, so in the status page and the page. Refused before any
/// connection (the address is a literal: nothing leaves the machine when the fix holds; on
/// main the step connected there, which is why this is not run against main).
#[tokio::test]
async fn a_url_a_server_chose_never_reaches_a_metadata_service() {
    let metadata = "http://169.254.169.254:9/latest/meta-data/iam/security-credentials/canary#";
    let settings = settings_server(metadata.to_string()).await;
    let named = probe_from(
        &named_probe(&settings, "kind = \"http\"\nurl = \"{{server}}/x\""),
        &[("PW", PW)],
    );
    let (_, redirecting) = crate::redirects::hop_server("127.0.0.1", metadata.to_string()).await;
    let redirected = probe_from(
        &format!(
            "timeout = \"5s\"\n[[steps]]\nname = \"follow\"\nkind = \"http\"\n\
             url = \"http://{redirecting}/start\"\n"
        ),
        &[],
    );
    for plan in [named, redirected] {
        let run = run_once(&plan).await;
        assert_eq!(run.failed_step.as_deref(), Some("follow"), "{run:#?}");
        assert_eq!(run.reason, Some(FailureReason::Protocol), "{run:#?}");
        let error = run.error.clone().unwrap_or_default();
        assert!(
            error.contains("(a URL a server chose) leads to 169.254.169.254, where cloud metadata services answer: refused"),
            "{error}"
        );
    }
}
