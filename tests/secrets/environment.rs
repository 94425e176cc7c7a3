//! Values from the environment: a host and port are shown while a password is kept out of
//! every output, each is sent exactly as given (data, never a template), and neither a config
//! error, `check`'s output nor a refused reload ever prints one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use joincanary::flow::run_probe;
use joincanary::report::Trigger;

use super::{SECRETS, echo_server, header_strings, leak, probe_text};
use crate::support::receiver::Receiver;
use crate::support::running::Running;
use crate::support::{self, TempConfig, probe_from};

/// Issue 17: every value from the environment was a secret, so a host and port taken from it
/// read `[redacted]:[redacted]` in the page. Now they are shown (in the page, status and log),
/// while a password from the environment in the same service stays out of all of them and out
/// of the debug log and metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_and_ports_from_the_environment_are_shown_and_passwords_are_not() {
    let addr = echo_server().await;
    let (receiver, hook) = Receiver::start(200).await;
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = refused.local_addr().unwrap().port().to_string();
    drop(refused);
    let secret = SECRETS[9];
    let down = "timeout = \"900ms\"\nschedule = \"* * * * * *\"\n[[steps]]\nname = \"login\"\n\
                kind = \"http\"\nurl = \"http://${TARGET_HOST}:${TARGET_PORT}/login\"\n\
                timeout = \"800ms\"\n";
    let echoed = probe_text(&addr, "json", "json", "schedule = \"* * * * * *\"")
        .replace("timeout = \"15s\"", "timeout = \"900ms\"")
        .replace("timeout = \"10s\"", "timeout = \"800ms\"");
    let cfg = TempConfig::new(
        &format!(
            "[alerting]\nconfirm_delay = \"200ms\"\nfailure_threshold = 1\n\
             [[pager]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{hook}/hook\"\nretry_base = \"50ms\"\n"
        ),
        &[("down.toml", down), ("echoed.toml", &echoed)],
    );
    let env = [
        ("TARGET_HOST", "127.0.0.1"),
        ("TARGET_PORT", port.as_str()),
        ("PW", secret),
    ];
    let running = tokio::task::block_in_place(|| {
        Running::start_with(&cfg.path, &["--log.level", "debug"], &env)
    });
    let base = running.base();
    let pages = support::poll(
        Duration::from_secs(30),
        Duration::from_millis(100),
        async || {
            support::when(receiver.bodies(), |p| {
                p.contains("\"down\"") && p.contains("\"echoed\"")
            })
        },
    )
    .await
    .unwrap_or_else(|last| last);
    let status = support::status(&base).await.to_string();
    let page = reqwest::get(format!("{base}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let log = running.log();
    drop(running);
    let address = format!("127.0.0.1:{port}");
    for (what, text) in [("pages", &pages), ("status JSON", &status), ("log", &log)] {
        assert!(text.contains(&address), "{what} names {address}: {text}");
        assert!(!text.contains("[redacted]:[redacted]"), "{what}: {text}");
    }
    assert!(
        status.contains("[redacted]"),
        "the echo reached status: {status}"
    );
    for (what, text) in [
        ("status JSON", &status),
        ("status page", &page),
        ("metrics", &metrics),
        ("log", &log),
        ("pages", &pages),
    ] {
        assert_eq!(leak(text, secret), None, "{what} holds the password");
    }
}

/// One request as the server saw it: URI, headers, body.
type Seen = (String, HashMap<String, String>, String);

/// Records every request.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

async fn capture_server() -> (Capture, String) {
    async fn handle(
        State(c): State<Capture>,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> &'static str {
        let headers = header_strings(&headers);
        c.0.lock().unwrap().push((
            uri.to_string(),
            headers,
            String::from_utf8_lossy(&body).into_owned(),
        ));
        "ok"
    }
    support::init();
    let c = Capture::default();
    let app = axum::Router::new().fallback(handle).with_state(c.clone());
    (c.clone(), support::serve_router(app).await)
}

/// A value from the environment is sent exactly as it is, in a JSON body, a form body, a
/// header and a URL: `{{region}}` in a password is not the region, and `{{` is not an error.
#[tokio::test]
async fn environment_values_are_data_never_templates() {
    let (capture, addr) = capture_server().await;
    let values = [
        "ab{{region}}cd",
        "open{{only",
        "close}}only",
        "{{",
        "}}",
        "dollar$sign$${X}",
        "quote\"d{{probe}}",
        "{{\"literal\"}}",
        "x{",
    ];
    for value in values {
        let text = format!(
            r#"
timeout = "3s"
[variables]
v = "pre-${{V}}"

[[steps]]
name = "json"
kind = "http"
method = "POST"
url = "http://{addr}/json/${{V}}"
headers = {{ X-Value = "${{V}}", X-Mixed = "{{{{region}}}}:${{V}}" }}
json = {{ value = "${{V}}", nested = {{ list = ["${{V}}", "{{{{v}}}}"] }} }}

[[steps]]
name = "form"
kind = "http"
method = "POST"
url = "http://{addr}/form?v={{{{v|url}}}}"
form = {{ value = "${{V}}" }}
"#
        );
        let plan = probe_from(&text, &[("V", value)]);
        capture.0.lock().unwrap().clear();
        let run = run_probe(
            &plan,
            "eu-test",
            Trigger::Manual,
            &joincanary::clock::Clock::system(),
        )
        .await;
        assert!(run.success, "{value:?}: {run:#?}");
        let seen = capture.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{value:?}");
        let (uri, headers, body) = &seen[0];
        let path = uri.trim_start_matches("/json/");
        let decoded: String = url::form_urlencoded::parse(format!("p={path}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        // The URL parser percent-encodes what a path cannot hold; decoded, it is the value.
        assert_eq!(
            percent_decode(path),
            value,
            "{value:?}: URL path {uri} ({decoded})"
        );
        assert_eq!(headers["x-value"], value);
        assert_eq!(headers["x-mixed"], format!("eu-test:{value}"));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["value"], value, "{body}");
        assert_eq!(json["nested"]["list"][0], value, "{body}");
        assert_eq!(json["nested"]["list"][1], format!("pre-{value}"), "{body}");
        let (uri, _, body) = &seen[1];
        let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(form["value"], value, "{body}");
        let query: HashMap<String, String> =
            url::form_urlencoded::parse(uri.split_once('?').map_or("", |q| q.1).as_bytes())
                .into_owned()
                .collect();
        assert_eq!(query["v"], format!("pre-{value}"), "{uri}");
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A config error names file, line and key, never the value the environment gave: not in
/// `config::load`'s errors, not in `check`'s output.
#[test]
fn config_errors_never_print_environment_values() {
    const KEY: &str = "R0UT1NGKEY-0123456789abcdef";
    const PD_URL: &str = "pd-events-secret-789";
    const URL: &str = "not a url secret-token-123";
    const DURATION: &str = "soon-secret-456";
    let cfg = TempConfig::new(
        r#"
[[pager]]
name = "pd"
type = "pagerduty"
routing_key = "${PD_KEY}"
url = "${PD_URL}"

[[pager]]
name = "hook"
type = "webhook"
url = "${HOOK_URL}"
"#,
        &[(
            "p.toml",
            "timeout = \"${TIMEOUT}\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\n",
        )],
    );
    let env = [
        ("PD_KEY", KEY),
        ("PD_URL", PD_URL),
        ("HOOK_URL", URL),
        ("TIMEOUT", DURATION),
    ];
    let errors = cfg.load(&env).expect_err("invalid config").to_string();
    assert_eq!(errors.lines().count(), 3, "{errors}");
    for key in ["url", "timeout"] {
        assert!(errors.contains(&format!("{key}: ")), "{key}: {errors}");
    }
    assert!(
        errors.lines().all(|l| l.contains(".toml:")),
        "every error has file:line: {errors}"
    );
    let mut cmd = std::process::Command::new(support::binary());
    cmd.args(["check", "--config"]).arg(&cfg.path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("check runs");
    assert_eq!(out.status.code(), Some(2));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for text in [&errors, &printed] {
        for value in [KEY, PD_URL, URL, DURATION] {
            assert!(leak(text, value).is_none(), "{value} in {text}");
        }
    }
}

/// The case from the field: a reload whose config takes a bad value from the environment is
/// refused with a 400 that names file, line and key, and neither the reply nor the log carries
/// the value (a PagerDuty key had shown up in both). Here an operator wrote the key's variable
/// where a duration goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_never_shows_the_environment_value() {
    const KEY: &str = "routing-key-0123456789abcdef";
    let (_receiver, hook) = Receiver::start(200).await;
    let probe = "schedule = \"0 0 * * *\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\n";
    let cfg = TempConfig::new(
        &format!(
            "[[pager]]\nname = \"pd\"\ntype = \"pagerduty\"\nrouting_key = \"${{PD_KEY}}\"\nurl = \"{hook}/pd\"\n"
        ),
        &[("p.toml", probe)],
    );
    let running = tokio::task::block_in_place(|| {
        Running::start_with(&cfg.path, &["--web.enable-lifecycle"], &[("PD_KEY", KEY)])
    });
    std::fs::write(
        cfg.probe_path("p.toml"),
        format!("timeout = \"${{PD_KEY}}\"\n{probe}"),
    )
    .unwrap();
    let reply = reqwest::Client::new()
        .post(format!("{}/-/reload", running.base()))
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    let body = reply.text().await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("p.toml:1:") && body.contains("timeout: "),
        "{body}"
    );
    // The refusal is logged before the reply; the reader thread may be a moment behind.
    let log = support::poll(
        Duration::from_secs(5),
        Duration::from_millis(100),
        async || support::when(running.log(), |l| l.contains("p.toml:1:")),
    )
    .await
    .unwrap_or_else(|last| last);
    drop(running);
    assert!(log.contains("p.toml:1:"), "the refusal is logged: {log}");
    for text in [&body, &log] {
        assert!(leak(text, KEY).is_none(), "{KEY} in {text}");
    }
}
