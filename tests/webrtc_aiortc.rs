//! The `webrtc` step against aiortc, a second, independent WebRTC implementation (Python: its
//! own ICE agent, DTLS and SCTP; tests/servers/aiortc/server.py) on 127.0.0.1: full ICE, DTLS
//! `setup:active` answers, BUNDLE with a port per m-line, three fingerprints (sha-256, -384,
//! -512), `end-of-candidates`. Both roles through a probe (the step offers; aiortc offers with
//! many m-lines and the step answers), a wrong fingerprint, and aiortc dying mid-flow: after
//! answering (`ice`) and the moment its DTLS is up (after `dtls`).

use std::collections::BTreeMap;
use std::time::Duration;

use joincanary::flow::StepError;
use joincanary::flow::webrtc::{EchoOptions, Peer, Timings};
use joincanary::report::{FailureReason, Phase};
use serde_json::json;
use tokio::time::Instant;

use crate::support::{self, aiortc, step};

/// The step offers; aiortc answers over HTTP; the step connects and echoes.
const WE_OFFER: &str = r#"
name = "aiortc-offer"
timeout = "15s"

[[steps]]
name = "offer"
kind = "webrtc"
action = "offer"
save_as = "offer"
timeout = "2s"

[[steps]]
name = "signal"
kind = "http"
method = "POST"
url = "${AIORTC_URL}/offer"
json = { sdp = "{{offer}}", type = "offer" }
extract = { answer = { json = "$.sdp" } }
timeout = "5s"

[[steps]]
name = "media"
kind = "webrtc"
action = "connect"
remote_sdp = "{{answer}}"
echo = 10
echo_interval = "20ms"
echo_wait = "1s"
timeout = "5s"
"#;

/// aiortc offers (audio and video m-lines before its data channel, as an SFU's subscriber
/// offer); the step answers, the answer goes back over HTTP; the step connects and echoes.
const WE_ANSWER: &str = r#"
name = "aiortc-answer"
timeout = "15s"

[[steps]]
name = "call"
kind = "http"
method = "POST"
url = "${AIORTC_URL}/call"
json = { media = 6 }
extract = { call = { json = "$.id" }, remote = { json = "$.sdp" } }
timeout = "5s"

[[steps]]
name = "answer"
kind = "webrtc"
action = "answer"
remote_sdp = "{{remote}}"
save_as = "answer"
timeout = "2s"

[[steps]]
name = "signal"
kind = "http"
method = "POST"
url = "${AIORTC_URL}/answer/{{call}}"
json = { sdp = "{{answer}}", type = "answer" }
timeout = "5s"

[[steps]]
name = "media"
kind = "webrtc"
action = "connect"
echo = 10
echo_interval = "20ms"
echo_wait = "1s"
timeout = "5s"
"#;

/// A passing run's `media` step: every phase, the echo's gauges.
fn assert_echoed(run: &joincanary::report::ProbeRun) {
    assert!(run.success, "{run:#?}");
    let media = step(run, "media");
    for phase in [Phase::Ice, Phase::Dtls, Phase::FirstMedia] {
        assert!(media.phases.contains_key(&phase), "{phase:?}: {media:#?}");
    }
    let loss = media.gauges.get("echo_loss_ratio").copied();
    assert!(loss.is_some_and(|l| l < 1.0), "{media:#?}");
    assert!(media.gauges.contains_key("echo_rtt_seconds"), "{media:#?}");
}

/// Runs `probe` against a fresh aiortc (nothing where it is not installed, outside CI).
async fn run_against_aiortc(probe: &str) {
    let Some(server) = aiortc::start_or_skip().await else {
        return;
    };
    let plan = support::probe_from(probe, &[("AIORTC_URL", &server.base_url())]);
    let run = support::run_once(&plan).await;
    assert_echoed(&run);
}

#[tokio::test]
async fn aiortc_answers_the_steps_offer_and_echoes_the_data_channel() {
    run_against_aiortc(WE_OFFER).await;
}

#[tokio::test]
async fn the_step_answers_aiortcs_offer_of_many_m_lines_and_echoes_the_data_channel() {
    run_against_aiortc(WE_ANSWER).await;
}

/// Our offer, aiortc's answer to it (`exit_when` passed on), `forge`d, then the connection
/// under a 3 s deadline; `before_connect` runs between the answer and the connection.
async fn connect(
    server: &aiortc::Aiortc,
    exit_when: Option<&str>,
    forge: fn(&str) -> String,
    before_connect: impl FnOnce(),
) -> (BTreeMap<Phase, Duration>, Result<f64, StepError>) {
    let (mut peer, offer) = Peer::offer(None).await.unwrap();
    let reply = server
        .post(
            "/offer",
            &json!({"sdp": offer, "type": "offer", "exit_when": exit_when}),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = forge(reply["sdp"].as_str().expect("aiortc's answer"));
    before_connect();
    let (mut phases, mut pending) = (BTreeMap::new(), None);
    let echo = EchoOptions {
        count: 5,
        interval: Duration::from_millis(10),
        wait: Duration::from_millis(500),
    };
    let result = peer
        .connect(
            Some(&answer),
            &echo,
            Instant::now() + Duration::from_secs(3),
            Timings {
                phases: &mut phases,
                pending: &mut pending,
            },
        )
        .await;
    (phases, result.map(|r| r.loss_ratio()))
}

#[tokio::test]
async fn a_wrong_fingerprint_fails_dtls_and_aiortc_dying_fails_the_phase_under_way() {
    let Some(server) = aiortc::start_or_skip().await else {
        return;
    };
    // The Peer API passes against aiortc too (the probes above use the step).
    let (phases, result) = connect(&server, None, str::to_string, || {}).await;
    let loss = result.unwrap_or_else(|e| panic!("{e:?} after {phases:?}"));
    assert!(loss < 1.0);

    // The sha-256 one forged; aiortc's sha-384 and sha-512 ones stay right (sha-256 is checked).
    let (phases, result) = connect(&server, None, crate::webrtc::forge_fingerprint, || {}).await;
    let e = result.expect_err("a wrong fingerprint must fail");
    assert_eq!(e.reason, FailureReason::Dtls, "{e:?}");
    assert!(e.message.contains("a=fingerprint"), "{e:?}");
    assert!(phases.contains_key(&Phase::Ice), "{phases:?}");
    assert!(!phases.contains_key(&Phase::FirstMedia), "{phases:?}");

    // aiortc exits the moment its DTLS is up: `ice` and `dtls` passed, media never came.
    let (phases, result) = connect(&server, Some("connected"), str::to_string, || {}).await;
    let e = result.expect_err("a dead far end must fail");
    // The data channel never opens; should ICE notice the silence first, it says so, naming
    // the phase under way.
    assert!(
        (e.reason == FailureReason::Media && e.message.contains("data channel never opened"))
            || (e.reason == FailureReason::Ice && e.message.contains("during the media echo")),
        "{e:?}"
    );
    for phase in [Phase::Ice, Phase::Dtls, Phase::FirstMedia] {
        assert!(phases.contains_key(&phase), "{phase:?}: {phases:?}");
    }
    assert!(
        server
            .process()
            .output()
            .contains("exiting: DTLS connected"),
        "{}",
        server.process().output()
    );
}

#[tokio::test]
async fn aiortc_killed_after_answering_fails_ice() {
    let Some(server) = aiortc::start_or_skip().await else {
        return;
    };
    let (phases, result) = connect(&server, None, str::to_string, || {
        server.process().signal("KILL").unwrap();
    })
    .await;
    let e = result.expect_err("a killed far end must fail");
    assert_eq!(e.reason, FailureReason::Ice, "{e:?}");
    assert!(phases.contains_key(&Phase::Ice), "{phases:?}");
    assert!(!phases.contains_key(&Phase::Dtls), "{phases:?}");
}
