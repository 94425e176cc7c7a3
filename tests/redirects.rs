//! Credentials and redirects (issue 17): an `http` step redirected to another origin (scheme,
//! host or port) does not forward `Authorization`, `Proxy-Authorization`, a configured `Cookie`
//! or any header holding a secret, as browsers, curl and reqwest do; a same-origin redirect
//! keeps them; https redirected to http is refused with reason `tls`; a 307 that would resend a
//! body holding a secret to another origin is refused. Real servers on 127.0.0.1
//! and 127.0.0.2 (both loopback: two hosts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::IntoResponse;
use joincanary::report::FailureReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::secrets::{header_strings, leak};
use crate::support::{self, TempConfig};

const TOKEN: &str = "bearer-t0ken-5ecret";
const EXTRACTED: &str = "extr4cted-sess10n-id";
const COOKIE: &str = "c00kie-sess-value";

/// One request's path and headers.
type Request = (String, HashMap<String, String>);

/// What one server saw: every request.
#[derive(Clone, Default)]
pub(crate) struct Seen(Arc<Mutex<Vec<Request>>>);

impl Seen {
    pub(crate) fn at(&self, path: &str) -> Vec<HashMap<String, String>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, h)| h.clone())
            .collect()
    }
}

/// A server that records every request: `/token` answers a JSON token, `/start` answers 302 to
/// `location` with a session cookie, `/start307` a 307 to `location`, anything else 200.
pub(crate) async fn hop_server(ip: &str, location: String) -> (Seen, String) {
    async fn handle(
        State((seen, location)): State<(Seen, String)>,
        uri: Uri,
        headers: HeaderMap,
    ) -> axum::response::Response {
        let headers = header_strings(&headers);
        seen.0
            .lock()
            .unwrap()
            .push((uri.path().to_string(), headers));
        match uri.path() {
            "/token" => format!("{{\"token\":\"{EXTRACTED}\"}}").into_response(),
            "/start307" => (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
            )
                .into_response(),
            "/start" => (
                StatusCode::FOUND,
                [
                    (header::LOCATION, location),
                    (header::SET_COOKIE, format!("sess={COOKIE}; Path=/")),
                ],
            )
                .into_response(),
            _ => "ok".into_response(),
        }
    }
    support::init();
    let seen = Seen::default();
    let app = axum::Router::new()
        .fallback(handle)
        .with_state((seen.clone(), location));
    (seen, support::serve_router_on(ip, app).await)
}

/// Extracts a token from `base`, then starts at `start` (a URL that redirects) with every kind
/// of credential and one plain header.
fn probe(base: &str, start: &str) -> String {
    format!(
        r#"
timeout = "5s"
[variables]
basic = "canary:${{TOKEN}}"

[[steps]]
name = "token"
kind = "http"
url = "http://{base}/token"
extract = {{ token = {{ json = "/token" }} }}

[[steps]]
name = "login"
kind = "http"
url = "{start}"
[steps.headers]
Authorization = "Bearer ${{TOKEN}}"
Proxy-Authorization = "Basic {{{{basic|base64}}}}"
Cookie = "manual=${{TOKEN}}"
X-Api-Key = "${{TOKEN}}"
X-Session = "{{{{token}}}}"
X-Request-Tag = "canary"
"#
    )
}

/// The credentials a request carried, by header.
fn credentials(headers: &HashMap<String, String>) -> Vec<String> {
    [
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-session",
    ]
    .into_iter()
    .filter(|h| headers.contains_key(*h))
    .map(str::to_string)
    .collect()
}

/// Runs the probe against a server on 127.0.0.1 that redirects to a server on `ip` (another
/// port): the headers the first got at `/start` and the second at `/landing`.
async fn redirect_to(ip: &str) -> (HashMap<String, String>, HashMap<String, String>) {
    let (other, other_addr) = hop_server(ip, String::new()).await;
    let (first, first_addr) = hop_server("127.0.0.1", format!("http://{other_addr}/landing")).await;
    let plan = support::probe_from(
        &probe(&first_addr, &format!("http://{first_addr}/start")),
        &[("TOKEN", TOKEN)],
    );
    let run = crate::support::run_once(&plan).await;
    assert!(run.success, "{run:#?}");
    let sent = first.at("/start");
    let landed = other.at("/landing");
    assert_eq!(
        (sent.len(), landed.len()),
        (1, 1),
        "the redirect was followed"
    );
    // The first host got everything (the test would pass vacuously otherwise).
    assert_eq!(credentials(&sent[0]).len(), 4, "{:?}", sent[0]);
    assert_eq!(sent[0]["authorization"], format!("Bearer {TOKEN}"));
    (sent[0].clone(), landed[0].clone())
}

/// The case from the review: 127.0.0.1 answers 302 to 127.0.0.2, which must get neither the
/// bearer token nor any other credential; a plain header still goes along.
#[tokio::test]
async fn a_redirect_to_another_host_carries_no_credentials() {
    let (_, landed) = redirect_to("127.0.0.2").await;
    assert!(credentials(&landed).is_empty(), "{landed:?}");
    assert!(!landed.contains_key("cookie"), "{landed:?}");
    assert_eq!(
        landed.get("x-request-tag").map(String::as_str),
        Some("canary")
    );
    let all = format!("{landed:?}");
    for secret in [TOKEN, EXTRACTED, COOKIE] {
        assert!(
            leak(&all, secret).is_none(),
            "{secret} reached 127.0.0.2: {all}"
        );
    }
}

/// Another port on the same host is another origin too.
#[tokio::test]
async fn a_redirect_to_another_port_carries_no_credentials() {
    let (_, landed) = redirect_to("127.0.0.1").await;
    assert!(credentials(&landed).is_empty(), "{landed:?}");
    // The jar's cookie may follow (cookies are per host, not per port); the configured one not.
    assert!(
        !landed.get("cookie").is_some_and(|c| c.contains("manual=")),
        "{landed:?}"
    );
}

/// A redirect within the origin keeps the credentials: a login flow that redirects to its own
/// landing page still works.
#[tokio::test]
async fn a_same_origin_redirect_keeps_the_credentials() {
    let (first, first_addr) = hop_server("127.0.0.1", "/landing".to_string()).await;
    let plan = support::probe_from(
        &probe(&first_addr, &format!("http://{first_addr}/start")),
        &[("TOKEN", TOKEN)],
    );
    let run = crate::support::run_once(&plan).await;
    assert!(run.success, "{run:#?}");
    let landed = &first.at("/landing")[0];
    assert_eq!(credentials(landed).len(), 4, "{landed:?}");
    assert!(
        landed.get("cookie").is_some_and(|c| c.contains("manual=")),
        "{landed:?}"
    );
}

/// An https server whose every reply is a 302 to `location`; the certificate is for 127.0.0.1.
async fn tls_redirector(location: String) -> (String, String) {
    tls_answering(format!(
        "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    ))
    .await
}

/// An https server (a certificate for 127.0.0.1) answering up to 4 requests with `reply`, a
/// whole HTTP response: its address and the certificate's PEM.
pub(crate) async fn tls_answering(reply: String) -> (String, String) {
    support::init();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (listener, addr) = support::hostile::listener().await;
    tokio::spawn(async move {
        for _ in 0..4 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut buf = vec![0u8; 8192];
            let _ = tls.read(&mut buf).await;
            let _ = tls.write_all(reply.as_bytes()).await;
            let _ = tls.shutdown().await;
        }
    });
    (addr, certified.cert.pem())
}

/// https redirected to http would send the request, credentials and all, in clear text: the
/// step fails with reason `tls` and the http server never hears from it.
#[tokio::test]
async fn an_https_to_http_redirect_is_refused_with_reason_tls() {
    let (plain, plain_addr) = hop_server("127.0.0.1", String::new()).await;
    let (tls_addr, cert) = tls_redirector(format!("http://{plain_addr}/landing")).await;
    let text = probe(&plain_addr, &format!("https://{tls_addr}/start"))
        .replace("timeout = \"5s\"", "timeout = \"5s\"\nca_file = \"ca.pem\"");
    let cfg = TempConfig::new("", &[("p.toml", &text)]);
    std::fs::write(cfg.probe_path("ca.pem"), cert).unwrap();
    let plan = cfg
        .load(&[("TOKEN", TOKEN)])
        .unwrap_or_else(|e| panic!("{e}"));
    let run = crate::support::run_once(&plan.probes[0]).await;
    assert_eq!(run.failed_step.as_deref(), Some("login"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::Tls), "{run:#?}");
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("redirect from https to `http://") && error.contains("refused"),
        "{error}"
    );
    assert!(
        plain.at("/landing").is_empty(),
        "the http server was reached"
    );
}

/// A login POST whose form holds the password, answered 307 to another host: a 307 resends the
/// body as it is, so following it would hand the password to 127.0.0.2. The step fails and says
/// why; the other host hears nothing. The same 307 with a body holding no secret is followed.
#[tokio::test]
async fn a_307_to_another_origin_never_resends_a_secret_body() {
    let (other, other_addr) = hop_server("127.0.0.2", String::new()).await;
    let (first, first_addr) = hop_server("127.0.0.1", format!("http://{other_addr}/landing")).await;
    let login = |field: &str| {
        format!(
            r#"
timeout = "5s"
[[steps]]
name = "login"
kind = "http"
method = "POST"
url = "http://{first_addr}/start307"
form = {{ user = "canary", {field} }}
"#
        )
    };
    let plan = support::probe_from(&login(r#"password = "${TOKEN}""#), &[("TOKEN", TOKEN)]);
    let run = crate::support::run_once(&plan).await;
    assert_eq!(run.failed_step.as_deref(), Some("login"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::Protocol), "{run:#?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains("redirect 307 to another origin") && error.contains("holds a credential"),
        "{error}"
    );
    assert!(leak(&error, TOKEN).is_none(), "{error}");
    assert_eq!(first.at("/start307").len(), 1, "the login was sent");
    assert!(
        other.at("/landing").is_empty(),
        "the password reached 127.0.0.2"
    );

    let plan = support::probe_from(&login(r#"room = "lobby""#), &[("TOKEN", TOKEN)]);
    let run = crate::support::run_once(&plan).await;
    assert!(run.success, "{run:#?}");
    assert_eq!(
        other.at("/landing").len(),
        1,
        "a body without a secret follows"
    );
}

/// A `Location` with another scheme (`ftp:`, `ws:`, `gopher:`, `file:`, `javascript:`) is
/// refused with reason `protocol` before any connection: before, the step sent its HTTP
/// request to that scheme's host and port (a listener standing in for an FTP server heard it).
#[tokio::test]
async fn a_redirect_to_a_scheme_other_than_http_is_refused() {
    let (listener, side) = support::hostile::listener().await;
    let heard = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = heard.clone();
    tokio::spawn(async move {
        for _ in 0..8 {
            let Ok(_conn) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    for location in [
        format!("ftp://{side}/pub"),
        format!("ws://{side}/socket"),
        format!("gopher://{side}/x"),
        "file:///etc/passwd".to_string(),
        "javascript:alert(1)".to_string(),
    ] {
        let (_, first_addr) = hop_server("127.0.0.1", location.clone()).await;
        let plan = support::probe_from(
            &probe(&first_addr, &format!("http://{first_addr}/start")),
            &[("TOKEN", TOKEN)],
        );
        let run = crate::support::run_once(&plan).await;
        assert_eq!(
            run.failed_step.as_deref(),
            Some("login"),
            "{location}: {run:#?}"
        );
        assert_eq!(run.reason, Some(FailureReason::Protocol), "{location}");
        let error = run.error.unwrap_or_default();
        assert!(
            error.contains("only http and https locations are followed"),
            "{location}: {error}"
        );
    }
    assert_eq!(
        heard.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a non-http location was connected to"
    );
}
