//! Nextcloud Talk's standalone signalling server (Debian's nextcloud-spreed-signaling on a real
//! nats-server, validating against a loopback Nextcloud: tests/support/nextcloud.rs) probed by
//! the shipped example `probes/examples/nextcloud-talk.toml`: the join passes with B's room
//! message reaching A through NATS; a stalled or stopped NATS fails `signalling` while every
//! hello and room join passes (the incident this project exists for); a shared secret that no
//! longer matches fails the hello at once with the server's words first; a stopped signalling
//! server fails at its websocket; a wrong app password never shows up in the output.

use std::time::Duration;

use joincanary::flow::ProbePlan;
use joincanary::report::{FailureReason, Phase, Trigger};

use crate::support::nextcloud::{self, NextcloudTalk};
use crate::support::{confirmed_page, cut_step, env_pairs, example, passed, run_once, step};

const EXAMPLE: &str = "nextcloud-talk.toml";

/// Every step before the room message: Nextcloud's HTTP side and both signalling joins.
const JOINED: [&str; 15] = [
    "settings-a",
    "join-a",
    "settings-b",
    "join-b",
    "websocket-a",
    "hello-a",
    "welcome-a",
    "room-a",
    "in-room-a",
    "websocket-b",
    "hello-b",
    "welcome-b",
    "room-b",
    "in-room-b",
    "b-speaks",
];

/// The example pointed at `talk`, its `signalling` wait cut to `signalling` (a stall costs the
/// whole wait).
fn plan(talk: &NextcloudTalk, env: &[(&str, &str)], signalling: Duration) -> ProbePlan {
    let base = talk.env();
    let mut all = env_pairs(&base);
    all.extend_from_slice(env);
    let mut plan = example(EXAMPLE, &all);
    cut_step(&mut plan.steps, "signalling", signalling);
    plan
}

#[tokio::test]
async fn the_join_passes_and_bs_room_message_reaches_a_through_nats() {
    let Some(talk) = nextcloud::start_or_skip().await else {
        return;
    };
    let plan = plan(&talk, &[], Duration::from_secs(3));
    let run = run_once(&plan).await;
    assert!(run.steps.iter().all(|s| s.success), "{run:#?}");
    assert!(step(&run, "signalling").phases.contains_key(&Phase::FanOut));
    for name in ["welcome-a", "in-room-a", "welcome-b", "in-room-b"] {
        assert!(
            step(&run, name).phases.contains_key(&Phase::RoundTrip),
            "{name}: {run:#?}"
        );
    }
    // A second run in a row passes too: the first one's `bye` left the room cleanly.
    assert!(run_once(&plan).await.success);

    // Why each participant's HTTP steps name its connection: with one cookie jar for both,
    // Nextcloud sees one PHP session join the conversation twice, ends A's Talk session, and
    // the signalling server's room check for A fails.
    let mut one_jar = plan.clone();
    for s in one_jar.steps.iter_mut() {
        if s.kind == joincanary::flow::StepKind::Http {
            s.connection.clear();
        }
    }
    let run = run_once(&one_jar).await;
    passed(&run, &JOINED[..8]);
    assert_eq!(run.failed_step.as_deref(), Some("in-room-a"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::ServerError));
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("no_such_room: The user is not invited to this room."),
        "{error}"
    );
}

#[tokio::test]
async fn a_stalled_or_stopped_nats_fails_signalling_while_every_hello_and_join_passes() {
    let Some(talk) = nextcloud::start_or_skip().await else {
        return;
    };
    let plan = plan(&talk, &[], Duration::from_secs(1));
    assert!(run_once(&plan).await.success);

    // NATS stops answering (SIGSTOP): the signalling server's health page, hellos and room
    // joins are all fine, and the room message never arrives.
    talk.nats
        .process()
        .freeze()
        .unwrap_or_else(|e| panic!("{e}"));
    let stalled = run_once(&plan).await;
    talk.nats.process().thaw().unwrap_or_else(|e| panic!("{e}"));
    passed(&stalled, &JOINED);
    assert_eq!(
        stalled.failed_step.as_deref(),
        Some("signalling"),
        "{stalled:#?}"
    );
    assert_eq!(stalled.reason, Some(FailureReason::NoMatch));
    assert!(
        stalled
            .error
            .clone()
            .unwrap_or_default()
            .contains("no frame matched"),
        "{stalled:#?}"
    );
    // Thawed, the bus carries the next run's message again.
    assert!(run_once(&plan).await.success);

    // NATS gone: the server only logs "NATS client disconnected" and keeps accepting joins.
    talk.nats
        .process()
        .signal("KILL")
        .unwrap_or_else(|e| panic!("{e}"));
    let gone = run_once(&plan).await;
    passed(&gone, &JOINED);
    assert_eq!(gone.failed_step.as_deref(), Some("signalling"), "{gone:#?}");
    assert_eq!(gone.reason, Some(FailureReason::NoMatch));
}

#[tokio::test]
async fn a_shared_secret_nextcloud_no_longer_accepts_fails_the_hello_with_the_servers_words_first()
{
    let Some(talk) = nextcloud::start_or_skip().await else {
        return;
    };
    let plan = plan(&talk, &[], Duration::from_secs(3));
    talk.set_nextcloud_secret("rotated-in-nextcloud-only")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let run = run_once(&plan).await;
    let error = refused_at_welcome(&run);
    // The error's code, then its message, then the frame.
    assert!(
        error.starts_with("invalid_request: The request could not be authenticated. — "),
        "{error}"
    );
    // The server answered: its error, not the step's 3 s, ended the step.
    crate::support::ended_before_its_timeout(&plan, &run, "welcome-a");
    // The page's summary carries the server's words.
    let page = confirmed_page(&plan, &run);
    let page: serde_json::Value = serde_json::from_str(&page).unwrap_or_default();
    let summary = page["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("welcome-a")
            && summary.contains(": invalid_request: The request could not be authenticated."),
        "{summary}"
    );
    // The cleanup still said bye and closed the websocket.
    passed(&run, &["bye-a", "close-a"]);

    talk.set_nextcloud_secret(nextcloud::SECRET)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(run_once(&plan).await.success);
}

#[tokio::test]
async fn a_stopped_signalling_server_fails_at_its_websocket_and_a_wrong_password_never_shows() {
    let Some(talk) = nextcloud::start_or_skip().await else {
        return;
    };
    // A wrong app password: Nextcloud refuses the settings, and no form of it is in the output.
    let wrong = "hunter2-app-password";
    let run = run_once(&plan(
        &talk,
        &[("NEXTCLOUD_APP_PASSWORD", wrong)],
        Duration::from_secs(3),
    ))
    .await;
    assert_eq!(run.failed_step.as_deref(), Some("settings-a"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::HttpStatus));
    let out = serde_json::to_string(&run).unwrap_or_default();
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("canary:{wrong}"));
    assert!(!out.contains(wrong) && !out.contains(&basic), "{out}");

    let plan = plan(&talk, &[], Duration::from_secs(3));
    talk.stop_signaling().unwrap_or_else(|e| panic!("{e}"));
    let run = run_once(&plan).await;
    passed(&run, &["settings-a", "join-a", "settings-b", "join-b"]);
    assert_eq!(run.failed_step.as_deref(), Some("websocket-a"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::Connect));
}

/// The resident example (`nextcloud-talk-resident.toml`): one session, an exchange every few
/// seconds. A stalled NATS fails the very next exchange at `signalling` (seconds, not the next
/// scheduled join), the session stays open, and the exchange after the thaw passes on it.
#[tokio::test]
async fn the_resident_session_fails_the_exchange_during_a_nats_stall_and_recovers_on_it() {
    let Some(talk) = nextcloud::start_or_skip().await else {
        return;
    };
    let env = talk.env();
    let mut plan = example("nextcloud-talk-resident.toml", &env_pairs(&env));
    let resident = plan.resident.as_mut().expect("a resident probe");
    cut_step(&mut resident.exchange, "signalling", Duration::from_secs(1));
    let (mut session, setup) = crate::support::open_session(&plan).await;
    assert!(setup.success, "{setup:#?}");

    let run = session.exchange(Trigger::Scheduled).await;
    assert!(run.success, "{run:#?}");
    assert!(step(&run, "signalling").phases.contains_key(&Phase::FanOut));

    talk.nats
        .process()
        .freeze()
        .unwrap_or_else(|e| panic!("{e}"));
    let stalled = session.exchange(Trigger::Scheduled).await;
    talk.nats.process().thaw().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stalled.failed_step.as_deref(),
        Some("signalling"),
        "{stalled:#?}"
    );
    assert_eq!(stalled.reason, Some(FailureReason::NoMatch));

    // The thawed bus delivers the late message too; the next exchange matches its own.
    let run = session.exchange(Trigger::Confirm).await;
    assert!(run.success, "{run:#?}");
    let teardown = session.close().await;
    assert!(teardown.iter().all(|s| s.success), "{teardown:#?}");
}

/// Hello 2.0 (Talk 17+: a JWT from Nextcloud's settings instead of the ticket) is the example
/// with its two hellos changed as docs/protocols.md says. Debian's signalling server (0.4.1)
/// predates 2.0 and refuses it: the probe fails `welcome-a` at once with the server's words
/// first, and the token never shows.
#[tokio::test]
async fn hello_2_0_is_refused_by_a_server_that_predates_it_with_its_words_first() {
    let Some(talk) = nextcloud::start_or_skip().await else {
        return;
    };
    let text = std::fs::read_to_string(crate::support::example_path(EXAMPLE))
        .unwrap_or_else(|e| panic!("{e}"));
    let text = hello_2_0(&text);
    let env = talk.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let plan = crate::support::probe_from(&text, &env);
    let run = run_once(&plan).await;
    let error = refused_at_welcome(&run);
    assert!(
        error.starts_with("invalid_format: Invalid data format. — "),
        "{error}"
    );
    // The JWT Nextcloud handed out (an extracted value) is nowhere in the report: its header,
    // `{"alg":"EdDSA",…` in base64url, would open it.
    let out = serde_json::to_string(&run).unwrap_or_default();
    assert!(!out.contains("eyJhbGciOiJFZERTQSIs"), "{out}");
    assert!(run.steps.iter().any(|s| s.name == "bye-a" && s.success));
}

/// The run got through `hello-a` and the server refused it at `welcome-a`: its error.
fn refused_at_welcome(run: &joincanary::report::ProbeRun) -> String {
    passed(run, &["settings-a", "join-a", "websocket-a", "hello-a"]);
    assert_eq!(run.failed_step.as_deref(), Some("welcome-a"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::ServerError));
    run.error.clone().unwrap_or_default()
}

/// The example's hellos as version 2.0 with the settings' `helloAuthParams["2.0"].token`.
fn hello_2_0(text: &str) -> String {
    let mut out = text.to_string();
    for who in ["a", "b"] {
        let from = format!("ticket_{who} = {{ json = \"/ocs/data/helloAuthParams/1.0/ticket\" }}");
        let to = format!("token_{who} = {{ json = \"/ocs/data/helloAuthParams/2.0/token\" }}");
        assert!(out.contains(&from), "{from}");
        out = out.replace(&from, &to);
        let from = format!(
            "version = \"1.0\", auth = {{ url = \"${{NEXTCLOUD_URL:-http://127.0.0.1:8080}}/ocs/v2.php/apps/spreed/api/v3/signaling/backend\", params = {{ userid = \"{{{{user}}}}\", ticket = \"{{{{ticket_{who}}}}}\" }} }}"
        );
        let to = format!(
            "version = \"2.0\", auth = {{ url = \"${{NEXTCLOUD_URL:-http://127.0.0.1:8080}}/ocs/v2.php/apps/spreed/api/v3/signaling/backend\", params = {{ token = \"{{{{token_{who}}}}}\" }} }}"
        );
        assert!(out.contains(&from), "{from}");
        out = out.replace(&from, &to);
    }
    out
}
