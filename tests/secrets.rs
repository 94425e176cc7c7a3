//! Secrets in every shape (issue 9): a server echoing the request must not get a password into
//! status, logs, pages or metrics however it is escaped (the encoders and `leak` here are
//! shared with other test files); values from the environment are data, never templates, and
//! config errors never print them (secrets/environment.rs); trace logs never carry a token.

mod environment;
mod literal;

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use futures_util::StreamExt as _;
use joincanary::report::FailureReason;

use crate::support::receiver::Receiver;
use crate::support::running::Running;
use crate::support::{self, TempConfig, probe_from};

/// Passwords as people and generators make them: each breaks a naive redactor in its own way.
const SECRETS: [&str; 11] = [
    "pa\"ss\"word-1",
    "back\\slash\\pw",
    "tab\tpass\tword",
    "two words & more=x+y",
    "100%pure%20pw",
    "ünïcødé-pässwörd",
    "emoji😀🔑pass",
    "<tag attr='v'>&amp;",
    "ab{{region}}cd$x",
    "plainAlnumPassw0rd",
    "slash/q?uery#frag=1",
];

/// How the flow sends the secret: the step's lines, and what the echo server sends back.
const CARRIERS: [(&str, &str, &str); 5] = [
    ("json", "json = { password = \"${PW}\" }", "body"),
    ("form", "form = { password = \"${PW}\" }", "body"),
    ("header", "headers = { X-Token = \"${PW}\" }", "x-token"),
    (
        "basic",
        "headers = { Authorization = \"Basic {{basic|base64}}\" }",
        "authorization",
    ),
    ("query", "", "uri"),
];

/// How the server echoes what it got, each into a 400 reply quoted in the error. `pctall`,
/// `entdec` and `enthex` encode every character, letters and digits too.
const ECHOES: [&str; 12] = [
    "raw", "json", "ascii", "form", "pctlower", "html", "b64", "pctall", "entdec", "enthex",
    "hexlower", "hexupper",
];

pub(crate) fn json_inner(s: &str) -> String {
    let q = serde_json::Value::String(s.to_string()).to_string();
    q[1..q.len() - 1].to_string()
}

/// JSON as Python's `json.dumps` writes it: everything past ASCII as `\uxxxx`.
pub(crate) fn json_ascii(s: &str) -> String {
    let mut out = String::new();
    for c in json_inner(s).chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

pub(crate) fn form(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(crate) fn pct_lower(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// Every byte as `%XX`, upper-case hex (letters and digits too).
pub(crate) fn pct_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Every character as a decimal entity, `&#83;`.
pub(crate) fn entity_dec(s: &str) -> String {
    s.chars().map(|c| format!("&#{};", u32::from(c))).collect()
}

/// Every character as a hex entity, `&#x53;`.
pub(crate) fn entity_hex(s: &str) -> String {
    s.chars()
        .map(|c| format!("&#x{:x};", u32::from(c)))
        .collect()
}

/// Every byte as two hex digits, as a server dumping a payload writes it.
fn hex_dump(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}

fn echo(shape: &str, x: &str) -> String {
    match shape {
        "raw" => format!("denied: {x}"),
        "json" => format!("{{\"error\":\"denied\",\"echo\":\"{}\"}}", json_inner(x)),
        "ascii" => format!("{{\"error\":\"denied\",\"echo\":\"{}\"}}", json_ascii(x)),
        "form" => format!("error=denied&echo={}", form(x)),
        "pctlower" => format!("denied: {}", pct_lower(x)),
        "html" => format!("<p>denied: {}</p>", html(x)),
        "b64" => format!("denied: {}", STANDARD.encode(x)),
        "pctall" => format!("denied: {}", pct_all(x)),
        "entdec" => format!("<p>denied: {}</p>", entity_dec(x)),
        "enthex" => format!("<p>denied: {}</p>", entity_hex(x)),
        "hexlower" => format!("denied: payload 0x{}", hex_dump(x)),
        "hexupper" => format!("denied: payload 0x{}", hex_dump(x).to_uppercase()),
        other => panic!("no echo shape {other}"),
    }
}

/// Every shape of `secret` this file's encoders can give, once or twice over.
fn shapes(secret: &str) -> Vec<String> {
    let encoders: [fn(&str) -> String; 9] = [
        str::to_string,
        json_inner,
        json_ascii,
        form,
        pct_lower,
        html,
        pct_all,
        entity_dec,
        entity_hex,
    ];
    let mut out = Vec::new();
    for a in encoders {
        for b in encoders {
            out.push(b(&a(secret)));
        }
    }
    for v in [secret.to_string(), json_inner(secret)] {
        out.push(hex_dump(&v));
        out.push(hex_dump(&v).to_uppercase());
        out.push(STANDARD.encode(&v));
        out.push(URL_SAFE.encode(&v).trim_end_matches('=').to_string());
    }
    out.sort();
    out.dedup();
    out
}

/// The shape of `secret` found in `text`, if any: directly, or inside any run of base64
/// characters decoded at each of the four offsets.
pub(crate) fn leak(text: &str, secret: &str) -> Option<String> {
    if let Some(s) = shapes(secret)
        .into_iter()
        .find(|s| text.contains(s.as_str()))
    {
        return Some(s);
    }
    let plain = [secret.to_string(), json_inner(secret)];
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || "+/-_".contains(c);
    for run in text.split(|c: char| !is_b64(c)).filter(|r| r.len() >= 8) {
        for offset in 0..4 {
            let Some(part) = run.get(offset..) else {
                continue;
            };
            let part = &part[..part.len() / 4 * 4];
            let normal: String = part
                .chars()
                .map(|c| match c {
                    '-' => '+',
                    '_' => '/',
                    c => c,
                })
                .collect();
            if let Ok(bytes) = STANDARD.decode(&normal) {
                let decoded = String::from_utf8_lossy(&bytes);
                if let Some(p) = plain.iter().find(|p| decoded.contains(p.as_str())) {
                    return Some(format!("base64 of {p:?} in {run}"));
                }
            }
        }
    }
    None
}

/// `POST /echo/{shape}/{what}`: answers 400 with `what` (the body, a header or the URI) echoed
/// in `shape`.
async fn echo_server() -> String {
    async fn handle(
        Path((shape, what)): Path<(String, String)>,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, String) {
        let x = match what.as_str() {
            "body" => String::from_utf8_lossy(&body).into_owned(),
            "uri" => uri.to_string(),
            header => headers
                .get(header)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default(),
        };
        (StatusCode::BAD_REQUEST, echo(&shape, &x))
    }
    support::init();
    let app = axum::Router::new().route("/echo/{shape}/{what}", axum::routing::any(handle));
    support::serve_router(app).await
}

fn probe_text(addr: &str, carrier: &str, shape: &str, extra: &str) -> String {
    let (_, lines, what) = CARRIERS
        .iter()
        .find(|c| c.0 == carrier)
        .unwrap_or_else(|| panic!("no carrier {carrier}"));
    // Generous timeouts: the echo answers at once, and 497 cases 16 at a time on a loaded CI
    // machine must fail on the echo's 400, never on a deadline.
    format!(
        r#"
timeout = "15s"
{extra}
[variables]
pw = "${{PW}}"
basic = "canary:${{PW}}"

[[steps]]
name = "login"
kind = "http"
method = "POST"
url = "http://{addr}/echo/{shape}/{what}?token={{{{pw|url}}}}"
{lines}
timeout = "10s"
"#
    )
}

/// Header values are visible ASCII (and tab): the others cannot be sent in one. A server
/// base64-ing or hex-dumping what it got is matched for the secret and its JSON form (a JSON
/// body), not for that of a form body, of a URI or of a header already in base64: encodings
/// three deep.
fn fits(carrier: &str, shape: &str, secret: &str) -> bool {
    (carrier != "header"
        || secret
            .chars()
            .all(|c| c == '\t' || (' '..='~').contains(&c)))
        && (!matches!(shape, "b64" | "hexlower" | "hexupper")
            || matches!(carrier, "json" | "header"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_secret_shape_is_redacted_in_every_echo() {
    let addr = echo_server().await;
    let mut cases = Vec::new();
    for secret in SECRETS {
        for (carrier, _, _) in CARRIERS {
            for shape in ECHOES {
                if fits(carrier, shape, secret) {
                    cases.push((secret, carrier, shape));
                }
            }
        }
    }
    let total = cases.len();
    let results: Vec<_> = futures_util::stream::iter(cases)
        .map(|(secret, carrier, shape)| {
            let plan = probe_from(&probe_text(&addr, carrier, shape, ""), &[("PW", secret)]);
            async move {
                let run = crate::support::run_once(&plan).await;
                (secret, carrier, shape, run)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(results.len(), total);
    let mut failures = Vec::new();
    for (secret, carrier, shape, run) in results {
        let error = run.error.clone().unwrap_or_default();
        let case = format!("{secret:?} sent as {carrier}, echoed as {shape}");
        if run.reason != Some(FailureReason::HttpStatus) {
            failures.push(format!("{case}: not the echo's 400: {error}"));
        } else if let Some(found) = leak(&error, secret) {
            failures.push(format!("{case}: {found:?} in {error:?}"));
        } else if !error.contains("[redacted]") {
            failures.push(format!("{case}: the echo is not in the error: {error:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases leaked:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The whole service: probes failing on an echoing server page a webhook; status JSON, the
/// status page, `/metrics`, the debug log and every page body hold no shape of any secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_status_logs_pages_and_metrics() {
    let addr = echo_server().await;
    let (receiver, hook) = Receiver::start(200).await;
    let mut probes = Vec::new();
    let mut env = Vec::new();
    let combos = [("json", "json"), ("form", "ascii"), ("basic", "raw")];
    for (i, secret) in SECRETS.iter().enumerate() {
        env.push((format!("PW{i}"), secret.to_string()));
        for (carrier, shape) in combos {
            let text = probe_text(&addr, carrier, shape, "schedule = \"* * * * * *\"")
                .replace("timeout = \"15s\"", "timeout = \"900ms\"")
                .replace("timeout = \"10s\"", "timeout = \"800ms\"")
                .replace("${PW}", &format!("${{PW{i}}}"));
            probes.push((format!("s{i}-{carrier}.toml"), text));
        }
    }
    let probe_refs: Vec<(&str, &str)> = probes
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let cfg = TempConfig::new(
        &format!(
            "[alerting]\nconfirm_delay = \"200ms\"\nfailure_threshold = 1\n\
             [[pager]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{hook}/hook\"\nretry_base = \"50ms\"\n"
        ),
        &probe_refs,
    );
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let running = tokio::task::block_in_place(|| {
        Running::start_with(&cfg.path, &["--log.level", "debug"], &env_refs)
    });
    let names: Vec<String> = probes
        .iter()
        .map(|(n, _)| n.trim_end_matches(".toml").to_string())
        .collect();
    let pages = pages_naming(&receiver, &names).await;
    let texts = service_texts(running, pages).await;
    assert!(
        texts[0].1.contains("[redacted]"),
        "the echoes reached status: {}",
        texts[0].1
    );
    let leaks = leaks_in(&texts, &SECRETS);
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

/// The pages `receiver` got once they name every probe in `names` (waited for up to 30 s);
/// fails naming the probes never paged.
pub(crate) async fn pages_naming(receiver: &Receiver, names: &[String]) -> String {
    let named = |p: &String| names.iter().all(|n| p.contains(&format!("\"{n}\"")));
    let pages = support::poll(
        Duration::from_secs(30),
        Duration::from_millis(100),
        async || support::when(receiver.bodies(), named),
    )
    .await
    .unwrap_or_else(|last| last);
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !pages.contains(&format!("\"{n}\"")))
        .collect();
    assert!(missing.is_empty(), "never paged: {missing:?}\n{pages}");
    pages
}

/// Everything a running service showed of itself, and then stopped: its status JSON (first),
/// status page, metrics and log, with `pages`, what it sent; each named.
pub(crate) async fn service_texts(running: Running, pages: String) -> [(&'static str, String); 5] {
    let base = running.base();
    let status = support::status(&base).await.to_string();
    let page = support::get_text(&base, "/").await;
    let metrics = support::get_text(&base, "/metrics").await;
    let log = running.log();
    drop(running);
    [
        ("status JSON", status),
        ("status page", page),
        ("metrics", metrics),
        ("log", log),
        ("pages", pages),
    ]
}

/// Each shape of each of `secrets` found in each of `texts`, a line each.
pub(crate) fn leaks_in(texts: &[(&str, String)], secrets: &[&str]) -> Vec<String> {
    let mut leaks = Vec::new();
    for (what, text) in texts {
        for secret in secrets {
            if let Some(found) = leak(text, secret) {
                leaks.push(format!("{what}: {secret:?} as {found:?}"));
            }
        }
    }
    leaks
}

/// Request headers as text, by lower-case name (a repeated header: the last one).
pub(crate) fn header_strings(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The review's debug-log scan: a run with a session cookie, a bearer token (in headers and a
/// URL's query, of an HTTP request and a websocket upgrade), an extracted token in a header and
/// a websocket URL, a literal client secret in a form body and a literal token in a URL path
/// (both echoed by a server in a 500), and a test page through pagers holding keys (two of
/// them failing, their key in their URL's path), each at `--log.level debug` and `trace`: the
/// whole log and output (every library's lines included) holds no shape of any secret.
/// cookie_store used to log `inserting Set-Cookie … sess=…` at debug; the body and path
/// credentials were in the failing probe's WARN line and table row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_and_trace_logs_of_a_run_and_its_pages_hold_no_secret() {
    const TOKEN: &str = "bearer-0f-the-env-9x7";
    const EXTRACTED: &str = "extracted-t0ken-q4z8";
    const COOKIE: &str = "sess-c00kie-v4lue-k2";
    const PD_KEY: &str = "pd-routing-key-5ecret";
    const GENIE_KEY: &str = "genie-api-key-5ecret";
    const HOOK: &str = "hookpath-5ecret-w3";
    const BODY_SECRET: &str = "l1teral-b0dy-5ecret";
    const PATH_TOKEN: &str = "l1teral-path-t0ken";
    const HOOK_500: &str = "SECRETPATH500x";
    const HOOK_DOWN: &str = "SECRETPATHdown";
    async fn login() -> impl axum::response::IntoResponse {
        (
            [(
                axum::http::header::SET_COOKIE,
                format!("sess={COOKIE}; Path=/; HttpOnly"),
            )],
            format!("{{\"token\":\"{EXTRACTED}\"}}"),
        )
    }
    async fn me(headers: HeaderMap) -> StatusCode {
        let cookie = headers
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if cookie.contains(COOKIE) && bearer == format!("Bearer {TOKEN}") {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        }
    }
    // A server choking on what it got quotes it: the path, the body.
    async fn choke(uri: Uri, body: Bytes) -> (StatusCode, String) {
        let body = String::from_utf8_lossy(&body).into_owned();
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("no_service {uri} {body}"),
        )
    }
    support::init();
    let app = axum::Router::new()
        .route("/login", axum::routing::post(login))
        .route("/me", axum::routing::get(me))
        .fallback(choke);
    let http_addr = support::serve_router(app).await;
    let (closed, closed_addr) = support::hostile::listener().await;
    drop(closed);
    let ws_addr = support::hostile::ws_server(|mut ws| async move {
        // Until the client closes; bounded by the client's deadline.
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    let (receiver, hook) = Receiver::start(200).await;
    let cfg = TempConfig::new(
        &format!(
            r#"
[[pager]]
name = "pd"
type = "pagerduty"
url = "{hook}/pd"
routing_key = "${{PD_KEY}}"

[[pager]]
name = "og"
type = "opsgenie"
url = "{hook}/og"
api_key = "${{GENIE_KEY}}"

[[pager]]
name = "slack"
type = "slack"
url = "{hook}/services/{HOOK}"

[[pager]]
name = "slack-500"
type = "slack"
url = "http://{http_addr}/services/T0/B0/{HOOK_500}"
retry_max_age = "1s"

[[pager]]
name = "slack-down"
type = "slack"
url = "http://{closed_addr}/services/T0/B0/{HOOK_DOWN}"
retry_max_age = "1s"
"#
        ),
        &[
            (
                "q.toml",
                &format!(
                    r#"
timeout = "5s"
[[steps]]
name = "register"
kind = "http"
method = "POST"
url = "http://{http_addr}/join/{PATH_TOKEN}"
form = {{ user = "canary", client_secret = "{BODY_SECRET}" }}
"#
                ),
            ),
            (
                "p.toml",
                &format!(
                    r#"
timeout = "5s"
[[steps]]
name = "login"
kind = "http"
method = "POST"
url = "http://{http_addr}/login?token=${{TOKEN}}"
json = {{ user = "canary", password = "${{TOKEN}}" }}
extract = {{ token = {{ json = "/token" }} }}

[[steps]]
name = "me"
kind = "http"
url = "http://{http_addr}/me?session={{{{token}}}}"
headers = {{ Authorization = "Bearer ${{TOKEN}}", X-Session = "{{{{token}}}}" }}

[[steps]]
name = "connect"
kind = "ws_connect"
url = "ws://{ws_addr}/ws?token={{{{token}}}}"
headers = {{ Authorization = "Bearer ${{TOKEN}}" }}

[[steps]]
name = "close"
kind = "ws_close"
"#
                ),
            ),
        ],
    );
    let env = [
        ("TOKEN", TOKEN),
        ("PD_KEY", PD_KEY),
        ("GENIE_KEY", GENIE_KEY),
    ];
    let mut leaks = Vec::new();
    for level in ["debug", "trace"] {
        for command in ["once", "test-page"] {
            let (code, log) = support::run_logged(level, command, &cfg.path, &env);
            // q fails on the server's 500, and so do two pagers: the echoes and errors are
            // in the log; p and the other pagers pass.
            assert_eq!(code, Some(1), "{command} at {level}:\n{log}");
            let expected: &[&str] = if command == "once" {
                &["DEBUG", "no_service /join/[redacted]", "p in test: ok"]
            } else {
                &["slack-500: FAILED", "slack-down: FAILED", "slack: ok"]
            };
            for e in expected {
                assert!(log.contains(e), "{command} at {level}: no {e}:\n{log}");
            }
            for secret in [
                TOKEN,
                EXTRACTED,
                COOKIE,
                PD_KEY,
                GENIE_KEY,
                HOOK,
                BODY_SECRET,
                PATH_TOKEN,
                HOOK_500,
                HOOK_DOWN,
            ] {
                if let Some(found) = leak(&log, secret) {
                    leaks.push(format!(
                        "{command} at {level}: {secret} as {found:?}\n{log}"
                    ));
                }
            }
        }
    }
    // The pages went out (the keys were used, so they could have been logged).
    assert_eq!(receiver.accepted().len(), 12, "{:?}", receiver.all());
    assert!(leaks.is_empty(), "{}", leaks.join("\n\n"));
}
