//! The shapes real platforms have, each probed as an SRE would write it from the docs: a
//! Django-style login (CSRF token from a hidden input and from a `csrftoken` cookie echoed in
//! `X-CSRFToken`, form-encoded) behind a path prefix, a JWT from JSON passed as `?access_token=`
//! and as a `Sec-WebSocket-Protocol`, LiveKit-style binary signalling (bytes sent from hex or a
//! token's base64, matched by prefix, contents and length, after welcome/ping/presence noise,
//! larger than an MTU), basic auth from the URL on the upgrade, `localhost` and an IPv6 literal
//! (one in-process server on loopback, axum, port 0); Socket.IO 2's protocol (EIO=3) against the
//! real Socket.IO server; a login redirected from http to https on ports 80/443 in a network
//! namespace of the test's own.

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use joincanary::report::FailureReason;

use crate::support;

const CSRF_FORM: &str = "f0rm-csrf-tok3n";
const CSRF_COOKIE: &str = "c00kie-csrf-tok3n";
const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJyb29tIjoiY2FuYXJ5In0.s1gnatur3";
const PASSWORD: &str = "pl4tform-pass";
/// LiveKit's join reply is a SignalResponse whose first field (`join`, 1, length-delimited) is
/// tag `0a`; the room name rides inside. The reply is padded past one MTU.
const REPLY_LEN: usize = 4000;

#[derive(Clone, Default)]
struct Shared {
    /// What the server saw that the test checks afterwards (the Host header of the login).
    hosts: Arc<std::sync::Mutex<Vec<String>>>,
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let all = headers.get(header::COOKIE)?.to_str().ok()?;
    all.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn app() -> (Router, Shared) {
    let shared = Shared::default();
    let app = Router::new()
        // Django: the form page sets the CSRF cookie and embeds the form token.
        .route(
            "/app/accounts/login/",
            get(|| async {
                Response::builder()
                    .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
                    .header(
                        header::SET_COOKIE,
                        format!("csrftoken={CSRF_COOKIE}; Path=/; SameSite=Lax"),
                    )
                    .body(axum::body::Body::from(format!(
                        "<html><body><form method=\"post\">\n\
                         <input type=\"hidden\" name=\"csrfmiddlewaretoken\" value=\"{CSRF_FORM}\">\n\
                         <input name=\"username\"><input name=\"password\" type=\"password\">\n\
                         </form></body></html>"
                    )))
                    .unwrap_or_default()
            })
            .post(
                |State(s): State<Shared>, headers: HeaderMap, body: String| async move {
                    if let Some(h) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
                        s.hosts.lock().unwrap().push(h.to_string());
                    }
                    let form: Vec<(String, String)> =
                        url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
                    let form_encoded = headers
                        .get(header::CONTENT_TYPE)
                        .is_some_and(|v| v == "application/x-www-form-urlencoded");
                    let csrf_ok = field("csrfmiddlewaretoken") == Some(CSRF_FORM)
                        && cookie(&headers, "csrftoken").as_deref() == Some(CSRF_COOKIE)
                        && headers.get("x-csrftoken").is_some_and(|v| v == CSRF_COOKIE);
                    if !form_encoded || !csrf_ok {
                        return (StatusCode::FORBIDDEN, "CSRF verification failed").into_response();
                    }
                    if field("username") != Some("canary") || field("password") != Some(PASSWORD) {
                        return (StatusCode::UNAUTHORIZED, "{\"error\":\"bad credentials\"}")
                            .into_response();
                    }
                    axum::Json(serde_json::json!({ "access_token": JWT, "expires_in": 600 }))
                        .into_response()
                },
            ),
        )
        // LiveKit-style: the token as a query parameter, binary protobuf signalling.
        .route(
            "/rtc",
            get(
                |Query(q): Query<std::collections::HashMap<String, String>>,
                 ws: WebSocketUpgrade| async move {
                    if q.get("access_token").map(String::as_str) != Some(JWT) {
                        return (StatusCode::UNAUTHORIZED, "invalid token").into_response();
                    }
                    ws.on_upgrade(binary_signalling)
                },
            ),
        )
        // Echoes each binary frame back behind a `12` tag (a frame that may carry a secret).
        .route(
            "/echo",
            get(|ws: WebSocketUpgrade| async move {
                ws.on_upgrade(|mut socket| async move {
                    for _ in 0..4 {
                        let Some(Ok(Message::Binary(b))) = socket.recv().await else {
                            return;
                        };
                        let mut reply = vec![0x12];
                        reply.extend_from_slice(&b);
                        let _ = socket.send(Message::Binary(reply.into())).await;
                    }
                })
            }),
        )
        // The token as a subprotocol (`Sec-WebSocket-Protocol: access_token, <jwt>`).
        .route(
            "/rtc-subprotocol",
            get(|headers: HeaderMap, ws: WebSocketUpgrade| async move {
                let offered = headers
                    .get(header::SEC_WEBSOCKET_PROTOCOL)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .split(',')
                    .map(|p| p.trim().to_string())
                    .collect::<Vec<_>>();
                if offered != ["access_token", JWT] {
                    return (StatusCode::UNAUTHORIZED, "no token").into_response();
                }
                ws.protocols(["access_token"])
                    .on_upgrade(binary_signalling)
            }),
        )
        // Basic auth on the upgrade.
        .route(
            "/ws-basic",
            get(|headers: HeaderMap, ws: WebSocketUpgrade| async move {
                use base64::Engine as _;
                let want = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("canary:{PASSWORD}"))
                );
                if headers.get(header::AUTHORIZATION).is_none_or(|v| *v != *want) {
                    return (StatusCode::UNAUTHORIZED, "authorization required").into_response();
                }
                ws.on_upgrade(|mut socket| async move {
                    let _ = socket.send(Message::text("{\"type\":\"welcome\"}")).await;
                })
            }),
        )
        .with_state(shared.clone());
    (app, shared)
}

/// Noise first (a text welcome, a websocket ping, a binary presence update), then for a join
/// request (`0a` + length + room) a join reply `0a` … carrying the room, padded to
/// [`REPLY_LEN`] bytes.
async fn binary_signalling(mut socket: axum::extract::ws::WebSocket) {
    let _ = socket
        .send(Message::text("{\"type\":\"welcome\",\"server\":\"sfu-1\"}"))
        .await;
    let _ = socket.send(Message::Ping(vec![1, 2, 3].into())).await;
    let _ = socket
        .send(Message::Binary(vec![0x2a, 0x03, b'b', b'o', b'b'].into()))
        .await;
    for _ in 0..8 {
        let Some(Ok(msg)) = socket.recv().await else {
            return;
        };
        let Message::Binary(req) = msg else { continue };
        if req.first() != Some(&0x0a) || req.len() < 2 {
            continue;
        }
        let room = &req[2..];
        let mut reply = vec![0x0a, 0x00];
        reply.extend_from_slice(b"room:");
        reply.extend_from_slice(room);
        reply.resize(REPLY_LEN, 0x00);
        let _ = socket.send(Message::Binary(reply.into())).await;
    }
}

/// Serves the app on `ip` (`127.0.0.1`, `::1`) at a free port; returns the port.
async fn serve(ip: &str) -> (u16, Shared) {
    support::init();
    let (app, shared) = app();
    let l = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await });
    (port, shared)
}

/// The Django-style login, as the docs show it: GET the form page (hidden input and cookie),
/// POST the form with both tokens, the JWT out of the JSON.
fn login_steps(base: &str) -> String {
    format!(
        r#"
[[steps]]
name = "login-page"
kind = "http"
url = "{base}/app/accounts/login/"
extract = {{ csrf_form = {{ regex = 'name="csrfmiddlewaretoken" value="([^"]+)"' }}, csrf_cookie = {{ cookie = "csrftoken" }} }}

[[steps]]
name = "login"
kind = "http"
method = "POST"
url = "{base}/app/accounts/login/"
headers = {{ X-CSRFToken = "{{{{csrf_cookie}}}}", Referer = "{base}/app/accounts/login/" }}
form = {{ csrfmiddlewaretoken = "{{{{csrf_form}}}}", username = "canary", password = "${{PLATFORM_PASSWORD}}" }}
extract = {{ token = {{ json = "/access_token" }} }}
"#
    )
}

/// Join over binary signalling: a join request from hex with the room's bytes, the reply matched
/// by its tag, the room's bytes and its length.
fn binary_steps(connect_url: &str, connect_extra: &str) -> String {
    format!(
        r#"
[[steps]]
name = "websocket"
kind = "ws_connect"
url = "{connect_url}"
{connect_extra}

[[steps]]
name = "join"
kind = "ws_send"
hex = "0a 06 63616e617279"          # field 1, 6 bytes: "canary"

[[steps]]
name = "joined"
kind = "ws_expect"
expect_binary = {{ prefix = "0a00", contains = "726f6f6d3a63616e617279", min_bytes = 100 }}
timeout = "3s"

[[steps]]
name = "close"
kind = "ws_close"
cleanup = true
"#
    )
}

fn env() -> [(&'static str, &'static str); 1] {
    [("PLATFORM_PASSWORD", PASSWORD)]
}

#[tokio::test]
async fn a_django_style_login_then_a_token_in_the_query_over_localhost_passes() {
    let (port, shared) = serve("127.0.0.1").await;
    // `localhost`, as an SRE writes it: the server listens on 127.0.0.1 only (where `localhost`
    // also resolves to `::1`, that is refused and 127.0.0.1 tried: see flow::net's tests).
    let base = format!("http://localhost:{port}");
    let probe = format!(
        "timeout = \"10s\"\n{}{}",
        login_steps(&base),
        binary_steps(
            &format!("ws://localhost:{port}/rtc?access_token={{{{token|url}}}}"),
            ""
        )
    );
    let plan = support::probe_from(&probe, &env());
    let run = support::run_once(&plan).await;
    assert!(run.success, "{run:#?}");
    let joined = run.steps.iter().find(|s| s.name == "joined").unwrap();
    assert!(
        joined
            .phases
            .contains_key(&joincanary::report::Phase::RoundTrip),
        "{joined:?}"
    );
    // The Host header carries the non-default port, as a browser sends it.
    assert_eq!(
        shared.hosts.lock().unwrap().as_slice(),
        [format!("localhost:{port}")]
    );
}

#[tokio::test]
async fn a_missing_csrf_header_is_refused_with_the_servers_words() {
    let (port, _) = serve("127.0.0.1").await;
    let base = format!("http://127.0.0.1:{port}");
    let probe = format!("timeout = \"5s\"\n{}", login_steps(&base))
        .replace("X-CSRFToken = \"{{csrf_cookie}}\", ", "");
    let run = support::run_once(&support::probe_from(&probe, &env())).await;
    assert_eq!(run.failed_step.as_deref(), Some("login"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::HttpStatus));
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains("status 403") && error.contains("CSRF verification failed"),
        "{error}"
    );
    assert!(!format!("{run:?}").contains(PASSWORD));
}

#[tokio::test]
async fn binary_signalling_with_the_token_as_a_subprotocol_over_ipv6_passes() {
    let (port, _) = serve("::1").await;
    let base = format!("http://[::1]:{port}");
    let probe = format!(
        "timeout = \"10s\"\n{}{}",
        login_steps(&base),
        binary_steps(
            &format!("ws://[::1]:{port}/rtc-subprotocol"),
            "subprotocols = [\"access_token\", \"{{token}}\"]"
        )
    );
    let run = support::run_once(&support::probe_from(&probe, &env())).await;
    assert!(run.success, "{run:#?}");
    // The token never shows (it was offered in a header, not logged).
    assert!(!format!("{run:?}").contains(JWT));
}

#[tokio::test]
async fn a_binary_reply_that_does_not_match_names_its_bytes_and_why() {
    let (port, _) = serve("127.0.0.1").await;
    let base = format!("http://127.0.0.1:{port}");
    let probe = format!(
        "timeout = \"10s\"\n{}{}",
        login_steps(&base),
        binary_steps(
            &format!("ws://127.0.0.1:{port}/rtc?access_token={{{{token|url}}}}"),
            ""
        )
    )
    .replace("prefix = \"0a00\"", "prefix = \"1200\"")
    .replace("timeout = \"3s\"", "timeout = \"500ms\"");
    let run = support::run_once(&support::probe_from(&probe, &env())).await;
    assert_eq!(run.failed_step.as_deref(), Some("joined"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::NoMatch));
    let error = run.error.unwrap_or_default();
    // The noise (text welcome, binary presence) and the reply were skipped; the last one is
    // named with its length, the reason and its first bytes.
    assert!(
        error.contains("frames skipped")
            && error.contains(&format!(
                "a binary frame of {REPLY_LEN} bytes does not start with 1200: hex 0a00726f6f6d3a"
            ))
            && error.contains('…'),
        "{error}"
    );
}

#[tokio::test]
async fn basic_auth_from_the_url_reaches_the_upgrade_and_never_shows() {
    let (port, _) = serve("127.0.0.1").await;
    let probe = |password: &str| {
        format!(
            "timeout = \"5s\"\n[[steps]]\nname = \"websocket\"\nkind = \"ws_connect\"\n\
             url = \"ws://canary:${{P}}@127.0.0.1:{port}/ws-basic\"\n\
             [[steps]]\nname = \"welcome\"\nkind = \"ws_expect\"\nexpect_json = {{ type = \"welcome\" }}\n"
        )
        .replace("${P}", password)
    };
    let ok = support::run_once(&support::probe_from(&probe("${PLATFORM_PASSWORD}"), &env())).await;
    assert!(ok.success, "{ok:#?}");
    let wrong = "wr0ng-passw0rd";
    let refused = support::run_once(&support::probe_from(
        &probe("${PLATFORM_PASSWORD}"),
        &[("PLATFORM_PASSWORD", wrong)],
    ))
    .await;
    assert_eq!(
        refused.reason,
        Some(FailureReason::WsHandshake),
        "{refused:#?}"
    );
    let error = refused.error.clone().unwrap_or_default();
    assert!(error.contains("status 401"), "{error}");
    assert!(!format!("{refused:?}").contains(wrong));
}

#[test]
fn bad_hex_and_binary_keys_on_other_protocols_are_config_errors() {
    let cfg = support::TempConfig::new(
        "",
        &[(
            "p.toml",
            r#"
[[steps]]
name = "ws"
kind = "ws_connect"
url = "ws://127.0.0.1:1/"

[[steps]]
name = "send"
kind = "ws_send"
hex = "0a 0g"

[[steps]]
name = "expect"
kind = "ws_expect"
expect_binary = { prefix = "0a", min_bytes = 10, max_bytes = 2 }

[[steps]]
name = "xmpp"
kind = "ws_connect"
connection = "x"
protocol = "xmpp"
domain = "example.com"
url = "ws://127.0.0.1:1/"

[[steps]]
name = "bytes"
kind = "ws_send"
connection = "x"
base64 = "AAEC"

[[steps]]
name = "sub"
kind = "ws_connect"
connection = "s"
url = "ws://127.0.0.1:1/"
subprotocols = ["a b"]

[[steps]]
name = "sio"
kind = "ws_connect"
connection = "io"
protocol = "socketio"
url = "http://127.0.0.1:1/socket.io/?EIO=3"
auth = { token = "t" }

[[steps]]
name = "expect-hex"
kind = "ws_expect"
expect_binary = { contains = "0a:zz", min_bytes = -1 }
"#,
        )],
    );
    let errors = cfg.errors();
    let want = [
        "steps[1].hex: not hex: Invalid character 'g' at position 3",
        "steps[2].expect_binary.min_bytes: min_bytes is larger than max_bytes",
        "steps[4].base64: `base64` does not apply to a ws_send on an `xmpp` connection",
        "steps[5].subprotocols[0]: a subprotocol is one token: no spaces, commas or other separators",
        "steps[6].auth: with EIO=3 (Socket.IO 2) the server connects the main namespace itself and \
         takes no auth payload: put it in the URL's query (`&token={{token|url}}`)",
        "steps[7].expect_binary.contains: not hex: Invalid character 'z' at position 2",
    ];
    for w in want {
        assert!(errors.iter().any(|e| e.ends_with(w)), "{w}\n{errors:#?}");
    }
}

/// Socket.IO 2 clients' protocol (Engine.IO v3) against the real Socket.IO 4.8 server with
/// `allowEIO3` (the code path that serves them; no Socket.IO 2 server is installable from
/// Debian): the token in the query, the main namespace connected by the server, join and echo.
#[tokio::test]
async fn socketio_with_eio3_joins_a_server_that_serves_socketio_2_clients() {
    use crate::support::servers;
    support::init();
    let redis = servers::running_redis().await;
    let sio = servers::start_socketio_with(
        &redis,
        &servers::SocketIoOptions {
            allow_eio3: true,
            ..servers::SocketIoOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let base = sio.a.base_url();
    let probe = |url_query: &str| {
        format!(
            r#"
timeout = "10s"
[[steps]]
name = "login"
kind = "http"
method = "POST"
url = "{base}/api/login"
json = {{ username = "canary", password = "{password}" }}
extract = {{ token = {{ json = "/token" }} }}

[[steps]]
name = "websocket"
kind = "ws_connect"
protocol = "socketio"
url = "{base}/socket.io/?EIO=3{url_query}"

[[steps]]
name = "join"
kind = "ws_send"
event = "join"
json = {{ room = "canary-{{{{uuid}}}}" }}
ack = true

[[steps]]
name = "joined"
kind = "ws_expect"
ack = true
expect_json = {{ room = "canary-{{{{uuid}}}}" }}
timeout = "3s"

[[steps]]
name = "close"
kind = "ws_close"
cleanup = true
"#,
            password = servers::PASSWORD,
        )
    };
    let run = support::run_once(&support::probe_from(&probe("&token={{token|url}}"), &[])).await;
    assert!(run.success, "{run:#?}");
    // Without the token the server's own refusal (CONNECT_ERROR) fails the connect at once.
    let refused = support::run_once(&support::probe_from(&probe(""), &[])).await;
    assert_eq!(
        refused.failed_step.as_deref(),
        Some("websocket"),
        "{refused:#?}"
    );
    assert_eq!(refused.reason, Some(FailureReason::ServerError));
    let error = refused.error.unwrap_or_default();
    assert!(
        error.starts_with("unauthorized"),
        "the page's first words are the server's: {error}"
    );
}

#[tokio::test]
async fn a_binary_frame_built_from_a_token_is_sent_and_a_reply_holding_it_is_never_shown() {
    let (port, _) = serve("127.0.0.1").await;
    let base = format!("http://127.0.0.1:{port}");
    let probe = format!(
        r#"timeout = "5s"
{}
[[steps]]
name = "websocket"
kind = "ws_connect"
url = "ws://127.0.0.1:{port}/echo"

[[steps]]
name = "send-token"
kind = "ws_send"
base64 = "{{{{token|base64}}}}"

[[steps]]
name = "echoed"
kind = "ws_expect"
expect_binary = {{ prefix = "12", min_bytes = {len} }}
timeout = "2s"

[[steps]]
name = "send-again"
kind = "ws_send"
base64 = "{{{{token|base64}}}}"

[[steps]]
name = "wrong-tag"
kind = "ws_expect"
expect_binary = {{ prefix = "0a" }}
timeout = "300ms"
"#,
        login_steps(&base),
        len = JWT.len() + 1,
    );
    let run = support::run_once(&support::probe_from(&probe, &env())).await;
    // The first echo matched: the bytes sent were the token's.
    let echoed = run.steps.iter().find(|s| s.name == "echoed").unwrap();
    assert!(echoed.success, "{run:#?}");
    assert_eq!(run.failed_step.as_deref(), Some("wrong-tag"), "{run:#?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "a binary frame of {} bytes does not start with 0a: (holds a secret: not shown)",
            JWT.len() + 1
        )),
        "{error}"
    );
    let shown = format!("{run:?}");
    let token_hex = hex::encode(&JWT.as_bytes()[..12]);
    assert!(
        !shown.contains(JWT) && !shown.contains(&token_hex),
        "{shown}"
    );
}

/// The one-off servers of the HTTPS-upgrade test: port 80 answers every POST with a 308 to the
/// same path on `https://localhost`, port 443 (TLS, `cert`/`key`) logs in a POST carrying the
/// password in its form and the key header. They stop after 60 s at most.
const UPGRADE_SERVERS: &str = r#"
import http.server, json, ssl, sys, threading, time
cert, key, ready = sys.argv[1:4]
class Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, code, headers, body=b""):
        self.send_response(code)
        for k, v in headers: self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
class Redirect(Quiet):
    def do_POST(self):
        self.reply(308, [("Location", "https://localhost" + self.path)])
class Login(Quiet):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        ok = "password=upgr4de-pass" in body and self.headers.get("X-Api-Key") == "k3y-from-env"
        out = {"token": "t0ken"} if ok else {"error": "form or key missing: " + body}
        self.reply(200 if ok else 403, [("Content-Type", "application/json")], json.dumps(out).encode())
plain = http.server.ThreadingHTTPServer(("127.0.0.1", 80), Redirect)
tls = http.server.ThreadingHTTPServer(("127.0.0.1", 443), Login)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
for s in (plain, tls):
    threading.Thread(target=s.serve_forever, daemon=True).start()
open(ready, "w").close()
time.sleep(60)
"#;

/// HTTP→HTTPS at login, as a front door that sends everyone to TLS does: `POST
/// http://localhost/login` answered 308 to `https://localhost/login` keeps its form (with the
/// password) and its key header, and logs in. On ports 80 and 443 (the default ports are what
/// makes it the same server), so in a network namespace of the test's own (`unshare -n`, root).
#[test]
fn a_login_redirected_from_http_to_https_on_the_same_host_keeps_its_form_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let cert = support::write_server_cert(dir.path(), &["localhost"]);
    std::fs::write(dir.path().join("ca.pem"), cert).unwrap();
    let probe = r#"
timeout = "5s"
ca_file = "../ca.pem"
[[steps]]
name = "login"
kind = "http"
method = "POST"
url = "http://localhost/login"
headers = { X-Api-Key = "${UPGRADE_KEY}" }
form = { username = "canary", password = "${UPGRADE_PASSWORD}" }
extract = { token = { json = "/token" } }
"#;
    std::fs::create_dir(dir.path().join("probes")).unwrap();
    std::fs::write(dir.path().join("probes/login.toml"), probe).unwrap();
    let config = dir.path().join("joincanary.toml");
    std::fs::write(&config, "probes = [\"probes\"]\n").unwrap();
    let ready = dir.path().join("ready");
    let script = r#"
set -e
ip link set lo up
/usr/bin/python3 -c "$SERVERS" "$DIR/server.crt" "$DIR/server.key" "$READY" &
servers=$!
trap 'kill $servers 2>/dev/null' EXIT
for _ in $(seq 200); do [ -e "$READY" ] && break; sleep 0.05; done
[ -e "$READY" ] || { echo "the servers did not start" >&2; exit 99; }
set +e
"$BIN" once --config "$CONFIG" --format json
"#;
    let mut child = std::process::Command::new("unshare")
        .args(["-n", "--", "sh", "-c", script])
        .env("SERVERS", UPGRADE_SERVERS)
        .env("DIR", dir.path())
        .env("READY", &ready)
        .env("BIN", support::binary())
        .env("CONFIG", &config)
        .env("UPGRADE_KEY", "k3y-from-env")
        .env("UPGRADE_PASSWORD", "upgr4de-pass")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("this test needs `unshare` (util-linux, root), `ip` and /usr/bin/python3");
    let exited = support::exit_within(&mut child, std::time::Duration::from_secs(30));
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(exited.is_some(), "still running after 30 s: {stderr}");
    assert_ne!(out.status.code(), Some(99), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    let run = &report["probes"][0];
    assert_eq!(run["success"], true, "{run:#}\n{stderr}");
    assert!(!stdout.contains("upgr4de-pass") && !stdout.contains("k3y-from-env"));
}
