//! Issue 8's engine features against scripted servers and the reference server: fail patterns,
//! pattern templates, cleanup steps, pings outside the frame budget, two participants.

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use joincanary::report::{FailureReason, Phase, ProbeRun};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{self, TempConfig, probe_from, start_sim, step};

type Script = Arc<dyn Fn(&str) -> Vec<String> + Send + Sync>;

/// A websocket server on 127.0.0.1:0: sends `greeting` on connect, then answers each text
/// frame with `script(frame)`. Every frame it receives is logged. Serves up to 8 connections.
async fn scripted_ws(greeting: Vec<String>, script: Script) -> (String, Arc<Mutex<Vec<String>>>) {
    support::init();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("127.0.0.1:{}", l.local_addr().unwrap().port());
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&log);
    tokio::spawn(async move {
        for _ in 0..8 {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let (greeting, script, seen) =
                (greeting.clone(), Arc::clone(&script), Arc::clone(&seen));
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                for g in greeting {
                    if ws.send(Message::text(g)).await.is_err() {
                        return;
                    }
                }
                for _ in 0..64 {
                    let Some(Ok(Message::Text(t))) = ws.next().await else {
                        return;
                    };
                    seen.lock().unwrap().push(t.to_string());
                    for reply in script(t.as_str()) {
                        if ws.send(Message::text(reply)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, log)
}

async fn run(text: &str) -> ProbeRun {
    crate::support::run_once(&probe_from(text, &[])).await
}

const OOM: &str =
    r#"42["join_error",{"error":"OOM command not allowed when used memory > 'maxmemory'."}]"#;

fn join_probe(addr: &str, expect: &str) -> String {
    format!(
        "timeout = \"20s\"\n{}",
        support::ws_join_steps(
            &format!("ws://{addr}/ws"),
            r#"{"join":"{{uuid}}"}"#,
            &format!("timeout = \"15s\"\n{expect}"),
        )
    )
}

#[tokio::test]
async fn a_fail_pattern_fails_the_step_at_once_with_the_servers_words() {
    let (addr, _) = scripted_ws(
        vec![],
        Arc::new(|_| vec![r#"{"type":"ping"}"#.into(), OOM.into()]),
    )
    .await;
    let run = run(&join_probe(
        &addr,
        "expect_json = { type = \"joined\" }\nfail_regex = ['^42\\[\"join_error\"', 'never']",
    ))
    .await;
    assert_eq!(run.failed_step.as_deref(), Some("signalling"), "{run:#?}");
    // Without the fail pattern this would wait out the 15 s timeout and say `no_match`.
    assert_eq!(run.reason, Some(FailureReason::ServerError));
    let error = run.error.as_deref().unwrap_or_default();
    // The server's words first, then the frame they came in (issue 17).
    assert!(
        error.starts_with(
            "OOM command not allowed when used memory > 'maxmemory'. — the server reported an error: 42[\"join_error\""
        ),
        "{error}"
    );
}

#[tokio::test]
async fn fail_json_matches_a_subset_of_the_frame() {
    let (addr, _) = scripted_ws(
        vec![],
        Arc::new(|_| {
            vec![r#"{"janus":"error","error":{"code":460,"reason":"No such session"}}"#.into()]
        }),
    )
    .await;
    let run = run(&join_probe(
        &addr,
        "expect_json = { janus = \"success\" }\nfail_json = { janus = \"error\" }",
    ))
    .await;
    assert_eq!(run.reason, Some(FailureReason::ServerError), "{run:#?}");
    let error = run.error.unwrap_or_default();
    assert!(
        error.starts_with("No such session — the server reported an error: {"),
        "{error}"
    );
}

#[tokio::test]
async fn a_fail_pattern_on_an_http_body_is_a_server_error() {
    let app = axum::Router::new().route(
        "/api/login",
        axum::routing::post(|| async {
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"error":"OOM command not allowed"}"#,
            )
        }),
    );
    let addr = support::serve_router(app).await;
    let run = run(&format!(
        r#"
[[steps]]
name = "login"
kind = "http"
method = "POST"
url = "http://{addr}/api/login"
fail_regex = 'OOM'
"#
    ))
    .await;
    assert_eq!(run.reason, Some(FailureReason::ServerError), "{run:#?}");
    assert!(run.error.unwrap().contains("OOM command not allowed"));
}

#[tokio::test]
async fn regex_patterns_are_templates_and_all_must_match_one_frame() {
    // The server echoes the join with a room whose name is full of regex metacharacters.
    let (addr, _) = scripted_ws(
        vec![],
        Arc::new(|frame| {
            let room = frame.split('"').nth(3).unwrap_or_default().to_string();
            vec![
                format!(r#"{{"type":"joined","room":"{room}x"}}"#),
                format!(r#"{{"type":"left","room":"{room}"}}"#),
                format!(r#"{{"type":"joined","room":"{room}"}}"#),
            ]
        }),
    )
    .await;
    let text = format!(
        "[variables]\nroom = \"a.b+(c)-{{{{uuid}}}}\"\n{}",
        support::ws_join_steps(
            &format!("ws://{addr}/ws"),
            r#"{"room":"{{room}}"}"#,
            r#"expect_regex = ['"room":"{{room}}"', '"type":"joined"']
extract = { seen = { regex = '"room":"([^"]*)"' } }"#,
        )
    );
    let run = run(&text).await;
    assert!(run.success, "{run:#?}");
}

#[test]
fn unknown_variables_filters_and_connections_are_check_errors() {
    let cfg = TempConfig::new(
        "",
        &[
            (
                "p.toml",
                r#"[[steps]]
name = "websocket"
kind = "ws_connect"
url = "ws://127.0.0.1:1/ws"
[[steps]]
name = "signalling"
kind = "ws_expect"
expect_regex = '[{{nosuchvar}}]'
"#,
            ),
            (
                "q.toml",
                r#"[[steps]]
name = "login"
kind = "http"
url = "http://127.0.0.1:1/"
fail_regex = '{{uuid|yaml}}'
"#,
            ),
            (
                "r.toml",
                r#"[[steps]]
name = "websocket"
kind = "ws_connect"
url = "ws://127.0.0.1:1/ws"
[[steps]]
name = "send"
kind = "ws_send"
connection = "b"
text = "x"
"#,
            ),
        ],
    );
    let err = cfg.load(&[]).unwrap_err().to_string();
    assert!(
        err.contains("step `signalling` uses `{{nosuchvar}}` before any step sets it"),
        "{err}"
    );
    assert!(err.contains("`yaml` is not a template filter"), "{err}");
    assert!(
        err.contains("needs a ws_connect step for connection `b` before it"),
        "{err}"
    );
}

#[tokio::test]
async fn protocol_pings_never_count_against_max_frames() {
    let (addr, _) = scripted_ws(
        vec![],
        Arc::new(|_| {
            let mut frames = vec![r#"{"type":"ping"}"#.to_string(); 150];
            frames.push(r#"{"type":"joined"}"#.into());
            frames
        }),
    )
    .await;
    let expect = "expect_json = { type = \"joined\" }\nmax_frames = 100";
    let without = run(&join_probe(&addr, expect)).await;
    assert_eq!(without.reason, Some(FailureReason::NoMatch), "{without:#?}");
    let with = run(&join_probe(&addr, expect).replace(
        "url = \"ws://",
        "ping_json = { type = \"ping\" }\nurl = \"ws://",
    ))
    .await;
    assert!(with.success, "{with:#?}");
}

/// A flow that creates a session, fails, and must still destroy it.
fn session_probe(addr: &str, fail: bool) -> String {
    let expect = if fail { "nope" } else { "ack" };
    format!(
        r#"
timeout = "5s"
[[steps]]
name = "websocket"
kind = "ws_connect"
url = "ws://{addr}/ws"
[[steps]]
name = "create"
kind = "ws_send"
text = '{{"janus":"create"}}'
[[steps]]
name = "created"
kind = "ws_expect"
expect_json = {{ janus = "success" }}
extract = {{ session = {{ json = "/data/id" }} }}
[[steps]]
name = "signalling"
kind = "ws_expect"
expect_json = {{ janus = "{expect}" }}
timeout = "300ms"
[[steps]]
name = "destroy"
kind = "ws_send"
cleanup = true
text = '{{"janus":"destroy","session_id":{{{{session}}}}}}'
[[steps]]
name = "destroyed"
kind = "ws_expect"
cleanup = true
expect_json = {{ janus = "success", session_id = "{{{{session}}}}" }}
timeout = "1s"
"#
    )
}

/// Janus's create and destroy, session 4242; `destroys`: the destroy is confirmed.
fn janus_like(destroys: bool) -> Script {
    Arc::new(move |frame| {
        if frame.contains("create") {
            vec![
                r#"{"janus":"success","data":{"id":4242}}"#.into(),
                r#"{"janus":"ack"}"#.into(),
            ]
        } else if destroys && frame.contains("destroy") {
            // Janus's ids are integers, in its replies as in its requests.
            vec![r#"{"janus":"success","session_id":4242}"#.into()]
        } else {
            vec![]
        }
    })
}

#[tokio::test]
async fn cleanup_steps_run_after_a_failure_and_never_become_the_failed_step() {
    let (addr, log) = scripted_ws(vec![], janus_like(true)).await;
    let run = run(&session_probe(&addr, true)).await;
    assert!(!run.success);
    assert_eq!(run.failed_step.as_deref(), Some("signalling"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::NoMatch));
    assert!(step(&run, "destroy").success && step(&run, "destroy").cleanup);
    assert!(step(&run, "destroyed").success, "{run:#?}");
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .any(|f| f == r#"{"janus":"destroy","session_id":4242}"#),
        "the session was destroyed on the server"
    );
}

#[tokio::test]
async fn a_failing_cleanup_after_a_passing_flow_is_still_a_success() {
    // The server never confirms the destroy: the cleanup fails, the join flow passed.
    let (addr, _) = scripted_ws(vec![], janus_like(false)).await;
    let run = run(&session_probe(&addr, false)).await;
    assert!(run.success, "{run:#?}");
    assert_eq!(run.failed_step, None);
    let cleanup = step(&run, "destroyed");
    assert!(!cleanup.success && cleanup.cleanup);
    assert_eq!(run.failed_cleanups().count(), 1);

    // The failed cleanup is counted in probe_failures_total, with its step and reason.
    let metrics = joincanary::metrics::Metrics::new("test").unwrap();
    metrics.record(&run, None);
    let text = metrics.render();
    assert!(
        text.lines().any(|l| l.starts_with("probe_failures_total")
            && l.contains("step=\"destroyed\"")
            && l.contains("reason=\"no_match\"")
            && l.ends_with(" 1")),
        "{text}"
    );
}

#[tokio::test]
async fn a_cleanup_whose_values_were_never_set_is_skipped() {
    // `create` never succeeds, so there is no session to destroy.
    let (addr, log) = scripted_ws(vec![], Arc::new(|_| vec![])).await;
    let text = session_probe(&addr, true).replace(
        "name = \"created\"\nkind = \"ws_expect\"",
        "name = \"created\"\nkind = \"ws_expect\"\ntimeout = \"200ms\"",
    );
    let run = run(&text).await;
    assert_eq!(run.failed_step.as_deref(), Some("created"), "{run:#?}");
    assert!(run.steps.iter().all(|s| s.name != "destroy"), "{run:#?}");
    assert!(log.lock().unwrap().iter().all(|f| !f.contains("destroy")));
}

fn two_participants(sim_url: &str) -> String {
    format!(
        r#"
timeout = "10s"
[variables]
room = "canary-{{{{uuid}}}}"
[[steps]]
name = "login-a"
kind = "http"
method = "POST"
url = "{sim_url}/api/login"
json = {{ username = "canary", password = "canary-pass" }}
extract = {{ token_a = {{ json = "/token" }} }}
[[steps]]
name = "login-b"
kind = "http"
method = "POST"
url = "{sim_url}/api/login"
json = {{ username = "canary", password = "canary-pass" }}
extract = {{ token_b = {{ json = "/token" }} }}
[[steps]]
name = "websocket-a"
kind = "ws_connect"
connection = "a"
url = "{sim_url}/ws?token={{{{token_a}}}}"
ping_json = {{ type = "ping" }}
[[steps]]
name = "websocket-b"
kind = "ws_connect"
connection = "b"
url = "{sim_url}/ws?token={{{{token_b}}}}"
ping_json = {{ type = "ping" }}
[[steps]]
name = "b-joins"
kind = "ws_send"
connection = "b"
text = '{{"type":"join","room":"{{{{room}}}}","id":"b"}}'
[[steps]]
name = "b-joined"
kind = "ws_expect"
connection = "b"
expect_json = {{ type = "joined", id = "b" }}
[[steps]]
name = "a-joins"
kind = "ws_send"
connection = "a"
text = '{{"type":"join","room":"{{{{room}}}}","id":"a"}}'
[[steps]]
name = "b-sees-a"
kind = "ws_expect"
connection = "b"
expect_json = {{ type = "joined", id = "a", participants = 2 }}
timeout = "2s"
"#
    )
}

#[tokio::test]
async fn a_message_from_a_seen_by_b_records_the_fan_out() {
    let sim = start_sim().await;
    let run = run(&two_participants(&sim.base_url())).await;
    assert!(run.success, "{run:#?}");
    let fan_out = step(&run, "b-sees-a");
    assert!(fan_out.phases.contains_key(&Phase::FanOut), "{fan_out:#?}");
    assert!(!fan_out.phases.contains_key(&Phase::RoundTrip));
    assert!(
        step(&run, "b-joined")
            .phases
            .contains_key(&Phase::RoundTrip)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn cleanup_runs_past_the_probe_deadline_within_its_grace() {
    let (addr, log) = scripted_ws(vec![], janus_like(true)).await;
    // The signalling step has no timeout of its own: the probe's deadline ends it.
    let text = session_probe(&addr, true)
        .replace("timeout = \"5s\"", "timeout = \"600ms\"")
        .replace(
            "expect_json = { janus = \"nope\" }\ntimeout = \"300ms\"",
            "expect_json = { janus = \"nope\" }",
        );
    let run = run(&text).await;
    assert_eq!(run.failed_step.as_deref(), Some("signalling"), "{run:#?}");
    // A ws_expect out of time is `no_match` whichever clock ran out (docs/protocols.md).
    assert_eq!(run.reason, Some(FailureReason::NoMatch));
    assert!(
        run.error
            .as_deref()
            .unwrap_or_default()
            .contains("probe's deadline"),
        "{run:#?}"
    );
    assert!(
        step(&run, "destroy").success && step(&run, "destroyed").success,
        "{run:#?}"
    );
    assert!(
        log.lock().unwrap().iter().any(|f| f.contains("destroy")),
        "the destroy reached the server after the deadline"
    );
}

const XMPP_OPEN: &str =
    "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='x.test' id='s1' version='1.0'/>";
const XMPP_CLOSE: &str = "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>";

/// An XMPP stream opened and then closed by a `ws_close` step.
fn xmpp_open_close(addr: &str) -> String {
    format!(
        "[[steps]]\nname = \"websocket\"\nkind = \"ws_connect\"\nprotocol = \"xmpp\"\nurl = \"ws://{addr}/xmpp-websocket\"\ndomain = \"x.test\"\n\n[[steps]]\nname = \"close\"\nkind = \"ws_close\"\ntimeout = \"2s\"\n"
    )
}

/// Issue 17: Prosody answers `<close/>` and drops the TCP connection without a websocket close
/// frame; `ws_close` failed on every healthy run (`Connection reset without closing
/// handshake`, reason `protocol`). After the server's own goodbye that is a clean close.
#[tokio::test]
async fn an_xmpp_server_that_drops_the_connection_after_its_close_closed_cleanly() {
    let addr = crate::support::hostile::ws_server(|mut ws| async move {
        let Some(Ok(Message::Text(_))) = ws.next().await else {
            return;
        };
        if ws.send(Message::text(XMPP_OPEN)).await.is_err() {
            return;
        }
        for _ in 0..8 {
            let Some(Ok(m)) = ws.next().await else { return };
            if m.to_text().is_ok_and(|t| t.contains("<close")) {
                let _ = ws.send(Message::text(XMPP_CLOSE)).await;
                return; // dropped: the TCP connection ends with no close frame
            }
        }
    })
    .await;
    let r = run(&xmpp_open_close(&addr)).await;
    assert!(r.steps.iter().all(|s| s.success), "{r:#?}");

    // A server that never answers `<close/>` still gets the websocket closing handshake.
    let addr = crate::support::hostile::ws_server(|mut ws| async move {
        let Some(Ok(Message::Text(_))) = ws.next().await else {
            return;
        };
        if ws.send(Message::text(XMPP_OPEN)).await.is_err() {
            return;
        }
        // tungstenite answers the close frame while this reads; bounded by the client.
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    let r = run(&xmpp_open_close(&addr)).await;
    assert!(r.steps.iter().all(|s| s.success), "{r:#?}");

    // Without the server's goodbye, a reset is still a failure.
    let addr = crate::support::hostile::ws_server(|mut ws| async move {
        let Some(Ok(Message::Text(_))) = ws.next().await else {
            return;
        };
        let _ = ws.send(Message::text(XMPP_OPEN)).await;
        let _ = ws.next().await; // the client's `<close/>`: dropped without a word
    })
    .await;
    let r = run(&xmpp_open_close(&addr)).await;
    assert!(!step(&r, "close").success, "{r:#?}");
}

/// Issue 17: the first read on connection `a`, opened after `b`'s send, was recorded as a
/// `fan_out` of that send (it was `a`'s welcome, and the time included `a`'s connect). A
/// `ws_connect` in between ends the measurement; a later send on `a` seen by `b` is a fan-out.
#[tokio::test]
async fn a_read_after_a_connect_is_not_a_fan_out_of_an_earlier_send() {
    let script: Script = Arc::new(|frame: &str| vec![frame.to_string()]);
    let (addr, _) = scripted_ws(vec![r#"{"type":"welcome"}"#.into()], script).await;
    let probe = format!(
        r#"
[[steps]]
name = "websocket-b"
kind = "ws_connect"
connection = "b"
url = "ws://{addr}/"
[[steps]]
name = "b-joins"
kind = "ws_send"
connection = "b"
text = '{{"type":"join"}}'
[[steps]]
name = "b-joined"
kind = "ws_expect"
connection = "b"
expect_json = {{ type = "join" }}
[[steps]]
name = "websocket-a"
kind = "ws_connect"
connection = "a"
url = "ws://{addr}/"
[[steps]]
name = "a-welcome"
kind = "ws_expect"
connection = "a"
expect_json = {{ type = "welcome" }}
[[steps]]
name = "a-says"
kind = "ws_send"
connection = "a"
text = '{{"type":"hello"}}'
[[steps]]
name = "a-hears"
kind = "ws_expect"
connection = "a"
expect_json = {{ type = "hello" }}
"#
    );
    let r = run(&probe).await;
    assert!(r.success, "{r:#?}");
    let welcome = step(&r, "a-welcome");
    assert!(
        !welcome.phases.contains_key(&Phase::FanOut)
            && !welcome.phases.contains_key(&Phase::RoundTrip),
        "{welcome:#?}"
    );
    assert!(step(&r, "b-joined").phases.contains_key(&Phase::RoundTrip));
    assert!(step(&r, "a-hears").phases.contains_key(&Phase::RoundTrip));
}

/// Janus's ids are JSON integers, 64-bit: a handle extracted from `data.id` is sent in `json`
/// frames as the integer (`"{{handle}}"` is that one value), and `expect_json = { sender =
/// "{{handle}}" }` matches the event of that handle by every digit, not one whose id differs
/// past 2^53 (the same f64). Before: the id was sent and matched as a string, so the event
/// never matched (`no_match`); and numbers compared as f64 took the other handle's event.
#[tokio::test]
async fn janus_integer_ids_are_sent_and_matched_as_integers_by_every_digit() {
    const ID: u64 = (1 << 53) + 1;
    let (addr, log) = scripted_ws(
        vec![],
        Arc::new(|frame| {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(frame) else {
                return vec![];
            };
            match v["janus"].as_str() {
                Some("create") => vec![format!(r#"{{"janus":"success","data":{{"id":{ID}}}}}"#)],
                // As Janus: a session or handle id that is not an integer is not read.
                Some("message") if v["handle_id"].as_u64() == Some(ID) => vec![
                    r#"{"janus":"ack"}"#.into(),
                    format!(
                        r#"{{"janus":"event","sender":{},"plugindata":{{"data":{{"who":"other"}}}}}}"#,
                        ID - 1
                    ),
                    format!(
                        r#"{{"janus":"event","sender":{ID},"plugindata":{{"data":{{"who":"mine"}}}}}}"#
                    ),
                ],
                Some("message") => vec![r#"{"janus":"error","error":{"code":457}}"#.into()],
                _ => vec![],
            }
        }),
    )
    .await;
    let run = run(&format!(
        r#"
timeout = "5s"
[[steps]]
name = "websocket"
kind = "ws_connect"
url = "ws://{addr}/ws"
[[steps]]
name = "create"
kind = "ws_send"
json = {{ janus = "create" }}
[[steps]]
name = "created"
kind = "ws_expect"
expect_json = {{ janus = "success" }}
extract = {{ handle = {{ json = "$.data.id" }} }}
[[steps]]
name = "message"
kind = "ws_send"
json = {{ janus = "message", handle_id = "{{{{handle}}}}", body = {{ note = "h{{{{handle}}}}" }} }}
[[steps]]
name = "event"
kind = "ws_expect"
expect_json = {{ janus = "event", sender = "{{{{handle}}}}" }}
fail_json = {{ janus = "error" }}
extract = {{ who = {{ json = "$.plugindata.data.who" }} }}
timeout = "1s"
[[steps]]
name = "tell"
kind = "ws_send"
json = {{ who = "{{{{who}}}}" }}
"#
    ))
    .await;
    assert!(run.success, "{run:#?}");
    let log = log.lock().unwrap();
    // The id went out as the integer, every digit; inside a longer string it stays text.
    assert!(
        log[1].contains(&format!(r#""handle_id":{ID}"#)) && log[1].contains(&format!(r#""h{ID}""#)),
        "{log:?}"
    );
    assert_eq!(log[2], r#"{"who":"mine"}"#, "{log:?}");
}
