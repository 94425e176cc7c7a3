//! `[tokens]` against a verifier that is not ours: the LiveKit example's access token, minted
//! per run, checked by livekit-server-sdk's own `TokenVerifier` (tests/servers/livekit/); the
//! same signed with the wrong secret is refused at the websocket, and neither the secret nor a
//! token shows in the run, the page, the status or the trace log of a running service, though
//! the server echoes the token. A real Janus takes a signed token minted by an `hmac` table, and
//! the Jitsi example's commented token table loads.

use std::time::Duration;

use joincanary::clock::Clock;
use joincanary::flow::{ProbePlan, run_probe};
use joincanary::report::{FailureReason, Trigger};

use crate::secrets::{leaks_in, pages_naming, service_texts};
use crate::support::receiver::Receiver;
use crate::support::running::Running;
use crate::support::servers::{self, NodeServer};
use crate::support::{self, TempConfig, example, passed, step};

const KEY: &str = "APIcanaryKey7";
const SECRET: &str = "livekit-secret-of-the-server-4f9x2q";
const WRONG: &str = "livekit-secret-of-last-year-8k3w1z";
/// `canary-{{region}}` in the example, run as region `local`.
const ROOM: &str = "canary-local";

async fn livekit() -> NodeServer {
    support::init();
    servers::start_livekit(KEY, SECRET, ROOM)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The example pointed at `server`, signing with `secret`.
fn env(server: &NodeServer, secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("LIVEKIT_URL", format!("ws://127.0.0.1:{}", server.port())),
        ("LIVEKIT_API_KEY", KEY.to_string()),
        ("LIVEKIT_API_SECRET", secret.to_string()),
    ]
}

fn plan(server: &NodeServer, secret: &str) -> ProbePlan {
    example("livekit.toml", &support::env_pairs(&env(server, secret)))
}

/// Every token the server was sent, and each one's signature alone.
pub(crate) async fn seen(server: &NodeServer) -> Vec<String> {
    let url = format!("{}/seen", server.base_url());
    let tokens: Vec<String> = reqwest::get(&url).await.unwrap().json().await.unwrap();
    tokens
        .iter()
        .flat_map(|t| [t.clone(), t.rsplit('.').next().unwrap().to_string()])
        .collect()
}

#[tokio::test]
async fn a_livekit_join_with_a_token_minted_per_run_passes() {
    let server = livekit().await;
    let plan = plan(&server, SECRET);
    for _ in 0..2 {
        let run = run_probe(&plan, "local", Trigger::Manual, &Clock::system()).await;
        passed(&run, &["join", "joined", "ping", "pong", "leave"]);
        assert!(run.success, "{run:#?}");
    }
    // A token per run (each names its own participant).
    let tokens = seen(&server).await;
    assert_eq!(tokens.len(), 4, "{tokens:?}");
    assert_ne!(tokens[0], tokens[2]);
}

#[tokio::test]
async fn a_livekit_token_signed_with_the_wrong_secret_fails_the_websocket_and_stays_secret() {
    let server = livekit().await;
    let plan = plan(&server, WRONG);
    let run = run_probe(&plan, "local", Trigger::Manual, &Clock::system()).await;
    assert_eq!(run.failed_step.as_deref(), Some("join"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::WsHandshake));
    let error = step(&run, "join").error.clone().unwrap();
    // The server's own words, and its echo of the token scrubbed.
    assert!(
        error.starts_with("HTTP 401: invalid token: signature verification failed"),
        "{error}"
    );
    assert!(error.contains("[redacted]"), "{error}");
    let tokens = seen(&server).await;
    assert_eq!(tokens.len(), 2);
    let page = support::confirmed_page(&plan, &run);
    let texts = [("run", format!("{run:?}")), ("page", page)];
    let mut secrets: Vec<&str> = tokens.iter().map(String::as_str).collect();
    secrets.push(WRONG);
    let leaks = leaks_in(&texts, &secrets);
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

/// A running service, its probe failing every second on the refused token: its status, page,
/// metrics, trace log and the pages it sent hold no shape of the secret nor of any token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_service_shows_no_livekit_token_nor_its_secret() {
    let server = livekit().await;
    let (receiver, hook) = Receiver::start(200).await;
    let text = std::fs::read_to_string(support::example_path("livekit.toml")).unwrap();
    let cfg = refused_every_second(
        &hook,
        "livekit.toml",
        &text.replacen("timeout = \"10s\"", "", 1),
    );
    let env = env(&server, WRONG);
    let texts = shown_while_refused(
        &cfg,
        &support::env_pairs(&env),
        &receiver,
        "livekit",
        "signature verification failed",
    )
    .await;
    assert!(
        texts[0].1.contains("[redacted]"),
        "the refusal's echo is scrubbed in the status: {}",
        texts[0].1
    );
    let tokens = seen(&server).await;
    assert!(!tokens.is_empty());
    let mut secrets: Vec<&str> = tokens.iter().map(String::as_str).collect();
    secrets.push(WRONG);
    let leaks = leaks_in(&texts, &secrets);
    assert!(leaks.is_empty(), "{}\n\n{}", leaks.join("\n"), texts[3].1);
}

/// A service config paging `hook` at once, with probe file `name` (`text`, without a
/// `timeout`) run every second under a 900 ms deadline.
pub(crate) fn refused_every_second(hook: &str, name: &str, text: &str) -> TempConfig {
    TempConfig::new(
        &format!(
            "[alerting]\nconfirm_delay = \"200ms\"\nfailure_threshold = 1\n\
             [[pager]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{hook}/hook\"\nretry_base = \"50ms\"\n"
        ),
        &[(
            name,
            &format!("schedule = \"* * * * * *\"\ntimeout = \"900ms\"\n{text}"),
        )],
    )
}

/// Runs the service at `cfg` with a trace log until it has paged for `probe` and its status
/// shows `refusal`; then what it showed (status JSON first, see [`service_texts`]), stopped.
pub(crate) async fn shown_while_refused(
    cfg: &TempConfig,
    env: &[(&str, &str)],
    receiver: &Receiver,
    probe: &str,
    refusal: &str,
) -> [(&'static str, String); 5] {
    let running = tokio::task::block_in_place(|| {
        Running::start_with(&cfg.path, &["--log.level", "trace"], env)
    });
    let base = running.base();
    let pages = pages_naming(receiver, &[probe.to_string()]).await;
    let status = support::poll(
        Duration::from_secs(20),
        Duration::from_millis(100),
        async || {
            support::when(support::status(&base).await.to_string(), |s| {
                s.contains(refusal)
            })
        },
    )
    .await
    .unwrap_or_else(|last| last);
    assert!(
        status.contains(refusal),
        "the refusal is in the status: {status}"
    );
    service_texts(running, pages).await
}

/// jitsi-meet.toml's text, and its commented `[tokens.NAME]` table uncommented.
pub(crate) fn jitsi_table(name: &str) -> (String, String) {
    let text = std::fs::read_to_string(support::example_path("jitsi-meet.toml")).unwrap();
    let head = format!("# [tokens.{name}]");
    let table = text
        .lines()
        .skip_while(|l| *l != head)
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    (text, table)
}

/// The token table jitsi-meet.toml shows in a comment, uncommented into the example with the
/// URL reading it, loads and mints a token with Jitsi's claims.
#[test]
fn the_jitsi_examples_token_table_loads() {
    let (text, table) = jitsi_table("jitsi_token");
    assert!(table.contains("kind = \"jwt\""), "{table}");
    let url = "/xmpp-websocket}?room={{room|url}}";
    assert!(text.contains(url));
    let text = format!(
        "{}\n{table}",
        text.replacen(url, &format!("{url}&token={{{{jitsi_token}}}}"), 1)
    );
    let plan = support::probe_from(
        &text,
        &[
            ("JITSI_APP_SECRET", "jitsi-app-secret-42"),
            ("JITSI_APP_ID", "canary-app"),
        ],
    );
    assert_eq!(plan.tokens.len(), 1);
    assert!(plan.steps[0].uses.contains(&"jitsi_token".to_string()));
}

/// A BigBlueButton-style checksum in a query parameter no name marks as a credential
/// (`checksum=`), echoed by a server in its refusal: scrubbed because it was minted, and the
/// shared secret in its input never shows.
#[tokio::test]
async fn a_checksum_a_server_echoes_is_scrubbed() {
    const BBB_SECRET: &str = "bbb-shared-secret-7y2k";
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = asked.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(uri.to_string());
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("checksumError: {}", uri.query().unwrap_or_default()),
            )
        }
    });
    let addr = support::serve_router(app).await;
    let plan = support::probe_from(
        &format!(
            "[variables]\ncreate = \"name=canary&meetingID=canary-{{{{uuid}}}}\"\n\
             [tokens.checksum]\nkind = \"digest\"\nalgorithm = \"sha256\"\ninput = \"create{{{{create}}}}${{BBB_SECRET}}\"\n\
             [[steps]]\nname = \"create\"\nkind = \"http\"\n\
             url = \"http://{addr}/bigbluebutton/api/create?{{{{create}}}}&checksum={{{{checksum}}}}\"\n"
        ),
        &[("BBB_SECRET", BBB_SECRET)],
    );
    let run = run_probe(&plan, "local", Trigger::Manual, &Clock::system()).await;
    assert_eq!(run.reason, Some(FailureReason::HttpStatus), "{run:#?}");
    let error = run.error.clone().unwrap();
    let uri = asked.lock().unwrap()[0].clone();
    let checksum = uri.rsplit("checksum=").next().unwrap().to_string();
    assert_eq!(checksum.len(), 64, "{uri}");
    assert!(
        error.contains("checksumError: name=canary") && error.contains("checksum=[redacted]"),
        "{error}"
    );
    let page = support::confirmed_page(&plan, &run);
    let leaks = leaks_in(
        &[("error", error), ("page", page)],
        &[&checksum, BBB_SECRET],
    );
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

/// A Janus session and echotest handle with a signed token (`[tokens]` `hmac`, SHA-1, base64,
/// `<expiry>,janus,<plugin>:<signature>`), checked by Janus itself (`token_auth_secret`).
const JANUS_PROBE: &str = r#"timeout = "10s"

[tokens.janus_token]
kind = "hmac"
algorithm = "sha1"
secret = "${JANUS_TOKEN_SECRET}"
ttl = "5m"
message = "{{expires}},janus,janus.plugin.echotest"
encoding = "base64"
value = "{{message}}:{{signature}}"

[[steps]]
name = "websocket"
kind = "ws_connect"
url = "${JANUS_URL}"
subprotocols = ["janus-protocol"]
timeout = "3s"

[[steps]]
name = "create"
kind = "ws_send"
json = { janus = "create", transaction = "create-{{uuid}}", token = "{{janus_token}}" }

[[steps]]
name = "session"
kind = "ws_expect"
expect_json = { janus = "success", transaction = "create-{{uuid}}" }
fail_json = { janus = "error" }
extract = { session = { json = "$.data.id" } }
timeout = "2s"

[[steps]]
name = "attach"
kind = "ws_send"
json = { janus = "attach", session_id = "{{session}}", plugin = "${JANUS_PLUGIN}", transaction = "attach-{{uuid}}", token = "{{janus_token}}" }

[[steps]]
name = "handle"
kind = "ws_expect"
expect_json = { janus = "success", transaction = "attach-{{uuid}}" }
fail_json = { janus = "error" }
timeout = "2s"

[[steps]]
name = "destroy"
kind = "ws_send"
cleanup = true
json = { janus = "destroy", session_id = "{{session}}", transaction = "destroy-{{uuid}}", token = "{{janus_token}}" }

[[steps]]
name = "destroyed"
kind = "ws_expect"
cleanup = true
expect_json = { janus = "success", transaction = "destroy-{{uuid}}" }
timeout = "2s"
"#;

#[tokio::test]
async fn janus_takes_a_signed_token_minted_per_run_and_refuses_one_signed_otherwise() {
    const JANUS_SECRET: &str = "janus-token-secret-5t2v";
    support::init();
    let janus = servers::start_janus_signed_tokens(JANUS_SECRET)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = janus.ws_url();
    let run_with = async |secret: &str, plugin: &str| {
        let plan = support::probe_from(
            JANUS_PROBE,
            &[
                ("JANUS_URL", &url),
                ("JANUS_TOKEN_SECRET", secret),
                ("JANUS_PLUGIN", plugin),
            ],
        );
        run_probe(&plan, "local", Trigger::Manual, &Clock::system()).await
    };
    let run = run_with(JANUS_SECRET, "janus.plugin.echotest").await;
    assert!(run.success, "{run:#?}");
    janus.assert_no_sessions().await;
    // Another secret: Janus refuses the session.
    let run = run_with("janus-token-secret-old1", "janus.plugin.echotest").await;
    assert_eq!(run.failed_step.as_deref(), Some("session"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::ServerError));
    // The right secret for a plugin the token does not name: Janus read the token's plugins.
    let run = run_with(JANUS_SECRET, "janus.plugin.videoroom").await;
    assert_eq!(run.failed_step.as_deref(), Some("handle"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::ServerError));
    janus.assert_no_sessions().await;
}
