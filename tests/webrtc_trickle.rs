//! Trickled remote candidates (the `webrtc` step's `trickle` table): the SFU sends its SDP
//! without candidates and each candidate in a signalling message of its own, as LiveKit and
//! Janus (`full_trickle`) do. Against aiortc (tests/servers/aiortc/server.py's `/ws`: its real
//! candidates, trickled Janus's way and LiveKit's way, after a delay or at once) and against a
//! scripted hostile websocket, whose answer is a real str0m peer's with its candidates
//! removed and whose trickled values are hostile: each fails with `protocol` or `ice` at once,
//! never a panic nor a wait to the deadline (but where nothing is trickled at all).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use joincanary::flow::webrtc::Peer;
use joincanary::report::{FailureReason, Phase, ProbeRun};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{self, aiortc, hostile, step};

/// We offer; aiortc answers without candidates and trickles them Janus's way, after
/// `delay_ms`. A step after `media` waits for a frame that came while `media` read the
/// websocket for candidates: kept for it, not lost.
const WE_OFFER: &str = r#"
name = "aiortc-trickle-offer"
timeout = "15s"

[[steps]]
name = "websocket"
kind = "ws_connect"
url = "${AIORTC_WS}"
timeout = "3s"

[[steps]]
name = "offer"
kind = "webrtc"
action = "offer"
save_as = "offer"
trickle = { expect_json = { janus = "trickle" }, candidate = { json = "$.candidate" } }
timeout = "2s"

[[steps]]
name = "send-offer"
kind = "ws_send"
json = { type = "offer", sdp = "{{offer}}", trickle = "janus", delay_ms = DELAY_MS }
timeout = "1s"

[[steps]]
name = "answer"
kind = "ws_expect"
expect_json = { type = "answer" }
extract = { answer = { json = "$.sdp" } }
timeout = "5s"

[[steps]]
name = "media"
kind = "webrtc"
action = "connect"
remote_sdp = "{{answer}}"
echo = 5
echo_interval = "10ms"
echo_wait = "1s"
timeout = "5s"

[[steps]]
name = "kept"
kind = "ws_expect"
expect_json = { type = "keepalive" }
max_frames = 1
timeout = "1s"
"#;

/// aiortc offers (audio and video before its data channel) without candidates and trickles
/// them LiveKit's way (`candidateInit` a JSON string, `final` at the end); the step answers.
/// The candidates come right after the offer: the tap takes them out of the stream while
/// `answered` waits for its frame.
const WE_ANSWER: &str = r#"
name = "aiortc-trickle-answer"
timeout = "15s"

[[steps]]
name = "websocket"
kind = "ws_connect"
url = "${AIORTC_WS}"
timeout = "3s"

[[steps]]
name = "call"
kind = "ws_send"
json = { type = "call", media = 2, trickle = "livekit" }
timeout = "1s"

[[steps]]
name = "offer"
kind = "ws_expect"
expect_json = { type = "offer" }
extract = { remote = { json = "$.sdp" } }
timeout = "5s"

[[steps]]
name = "answer"
kind = "webrtc"
action = "answer"
remote_sdp = "{{remote}}"
save_as = "answer"
timeout = "2s"

[steps.trickle]
expect_json = { trickle = { target = "SUBSCRIBER" } }
candidate = { json = "$.trickle.candidateInit" }
end_json = { trickle = { final = true } }
max_candidates = 8

[[steps]]
name = "send-answer"
kind = "ws_send"
json = { type = "answer", sdp = "{{answer}}" }
timeout = "1s"

[[steps]]
name = "answered"
kind = "ws_expect"
expect_json = { type = "answered" }
timeout = "3s"

[[steps]]
name = "media"
kind = "webrtc"
action = "connect"
echo = 5
echo_interval = "10ms"
echo_wait = "1s"
timeout = "5s"
"#;

/// A run whose `media` step connected through trickled candidates only.
fn assert_trickled(run: &ProbeRun) {
    assert!(run.success, "{run:#?}");
    let media = step(run, "media");
    for phase in [Phase::Ice, Phase::Dtls, Phase::FirstMedia] {
        assert!(media.phases.contains_key(&phase), "{phase:?}: {media:#?}");
    }
    let trickled = media.gauges.get("trickled_candidates").copied();
    assert!(trickled.is_some_and(|n| n >= 1.0), "{media:#?}");
    assert!(
        media
            .gauges
            .get("echo_loss_ratio")
            .is_some_and(|l| *l < 1.0),
        "{media:#?}"
    );
}

async fn run_against_aiortc(probe: &str, delay_ms: &str) -> Option<ProbeRun> {
    let server = aiortc::start_or_skip().await?;
    let ws = server.base_url().replace("http://", "ws://") + "/ws";
    let plan = support::probe_from(&probe.replace("DELAY_MS", delay_ms), &[("AIORTC_WS", &ws)]);
    Some(support::run_once(&plan).await)
}

#[tokio::test]
async fn aiortc_trickles_its_answers_candidates_janus_style_after_a_delay_and_the_step_connects() {
    // 1 s: the step is in `ice` well before the first candidate, with nothing to reach. Only
    // the websocket's reading shows `media` is waiting, so time tells: with 300 ms, `ice` was
    // 222 ms at the least on a loaded machine (the prober's steps between the answer and
    // `ice` ate the rest); 1 s leaves 900 ms for them.
    let Some(run) = run_against_aiortc(WE_OFFER, "1000").await else {
        return;
    };
    assert_trickled(&run);
    // It waited for the candidate inside `ice` (candidates already there take a few ms).
    let ice = step(&run, "media").phases[&Phase::Ice];
    assert!(ice >= Duration::from_millis(100), "{run:#?}");
    support::passed(&run, &["kept"]);
}

#[tokio::test]
async fn aiortc_offers_without_candidates_and_trickles_them_livekit_style_the_step_answers() {
    let Some(run) = run_against_aiortc(WE_ANSWER, "0").await else {
        return;
    };
    assert_trickled(&run);
    // Taken by the tap while `answered` read past them (the step itself read none).
    support::passed(&run, &["answered"]);
}

#[tokio::test]
async fn candidates_trickled_before_the_sdp_are_kept_for_the_step_that_answers_it() {
    // Janus's subscriber offer races its own candidate gathering: the candidates (and their
    // end) can come before the event with the SDP. The step waiting for that event skips them;
    // the `webrtc` step's tap, set up after it, still gets them (before: 0 trickled, `ice`).
    let probe = WE_ANSWER.replace(
        r#"trickle = "livekit" }"#,
        r#"trickle = "livekit", candidates_first = true }"#,
    );
    assert!(probe.contains("candidates_first"));
    let Some(run) = run_against_aiortc(&probe, "0").await else {
        return;
    };
    assert_trickled(&run);
    assert!(step(&run, "offer").success, "{run:#?}");
}

/// A scripted signalling server: it answers the offer it is sent with a real str0m peer's
/// answer (never driven) without its candidates, then sends `trickles` (frames, as written),
/// then holds the websocket open for 3 s.
async fn hostile_signalling(trickles: Vec<String>) -> String {
    hostile::ws_server(move |mut ws| {
        let trickles = trickles.clone();
        async move {
            let Some(Ok(Message::Text(offer))) = ws.next().await else {
                return;
            };
            let offer: Value = serde_json::from_str(&offer).unwrap_or_default();
            let offer = offer["sdp"].as_str().unwrap_or_default().to_string();
            let loopback = Some(std::net::Ipv4Addr::LOCALHOST.into());
            let Ok((_far, answer)) = Peer::answer(loopback, &offer).await else {
                return;
            };
            let answer: String = answer
                .lines()
                .filter(|l| !l.starts_with("a=candidate:"))
                .map(|l| format!("{l}\r\n"))
                .collect();
            let _ = ws
                .send(Message::text(
                    json!({"type": "answer", "sdp": answer}).to_string(),
                ))
                .await;
            for t in trickles {
                if ws.send(Message::text(t)).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    })
    .await
}

const HOSTILE: &str = r#"
name = "hostile-trickle"
timeout = "30s"

[[steps]]
name = "websocket"
kind = "ws_connect"
url = "ws://${SIGNALLING}/"
timeout = "2s"

[[steps]]
name = "offer"
kind = "webrtc"
action = "offer"
save_as = "offer"
trickle = { candidate = { json = "$.candidate" } }
timeout = "2s"

[[steps]]
name = "send-offer"
kind = "ws_send"
json = { type = "offer", sdp = "{{offer}}" }
timeout = "1s"

[[steps]]
name = "answer"
kind = "ws_expect"
expect_json = { type = "answer" }
extract = { answer = { json = "$.sdp" } }
timeout = "2s"

[[steps]]
name = "media"
kind = "webrtc"
action = "connect"
remote_sdp = "{{answer}}"
echo = 1
timeout = "${MEDIA_TIMEOUT}"
"#;

/// What "at once" means for a `media` step of 20 s: far from its deadline whatever the
/// machine's load (3 s of 4 was tight on a loaded one).
const AT_ONCE: Duration = Duration::from_secs(10);

/// The `media` step's failure with `trickles` sent after the answer.
async fn hostile_media(trickles: Vec<String>, timeout: &str) -> (FailureReason, String, Duration) {
    let addr = hostile_signalling(trickles).await;
    let plan = support::probe_from(
        HOSTILE,
        &[("SIGNALLING", &addr), ("MEDIA_TIMEOUT", timeout)],
    );
    let run = support::run_once(&plan).await;
    let media = step(&run, "media");
    assert!(!media.success, "{run:#?}");
    (
        media.reason.expect("a reason"),
        media.error.clone().unwrap_or_default(),
        media.duration_ms,
    )
}

fn trickle(candidate: Value) -> String {
    json!({ "candidate": candidate }).to_string()
}

const CANDIDATE: &str = "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host";

#[tokio::test]
async fn hostile_trickled_candidates_fail_with_protocol_at_once_never_a_panic() {
    let many: Vec<String> = (0..40).map(|_| trickle(json!(CANDIDATE))).collect();
    let huge = format!("{CANDIDATE} x {}", "y".repeat(4000));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![trickle(json!("candidate:1 1 udp 1 127.0.0.1 0 typ host"))],
            "trickled candidate 1 is malformed (its port is not 1 to 65535)",
        ),
        (
            vec![trickle(json!({"sdpMid": "0"}))],
            "trickled candidate 1 is a JSON object without a `candidate` string",
        ),
        (
            vec![trickle(json!("hello"))],
            "trickled candidate 1 is not a candidate line",
        ),
        (
            vec![trickle(json!(huge))],
            "more than the 2048 a candidate may be",
        ),
        (
            many,
            "more than 32 candidates were trickled (`max_candidates`)",
        ),
        (
            vec![trickle(json!(CANDIDATE)), trickle(json!(7))],
            "trickled candidate 2 is not a candidate line",
        ),
    ];
    for (trickles, words) in cases {
        let (reason, error, took) = hostile_media(trickles, "20s").await;
        assert_eq!(reason, FailureReason::Protocol, "{words}: {error}");
        assert!(error.contains(words), "{words}: {error}");
        assert!(took < AT_ONCE, "{words}: {took:?} {error}");
    }
}

#[tokio::test]
async fn an_end_of_candidates_with_none_usable_fails_ice_at_once_saying_why() {
    let end = || trickle(json!({"completed": true}));
    let tcp = "candidate:1 1 tcp 1 127.0.0.1 443 typ host tcptype passive";
    for (trickles, words) in [
        (
            vec![end()],
            "the SFU's SDP has no ICE candidate and none was trickled (0 candidates trickled, \
             and the end of candidates)",
        ),
        (
            vec![trickle(json!(tcp)), end()],
            "none of the SFU's (in its SDP and trickled) ICE candidates can be used: 1 over TCP",
        ),
    ] {
        let (reason, error, took) = hostile_media(trickles, "20s").await;
        assert_eq!(reason, FailureReason::Ice, "{error}");
        assert!(error.contains(words), "{words}: {error}");
        assert!(took < AT_ONCE, "{took:?} {error}");
    }
}

/// A server that floods other messages while the step waits for candidates: 256 are kept
/// for the steps after, then the step stops reading and says why (memory stays bounded).
#[tokio::test]
async fn a_flood_of_other_messages_stops_the_reading_at_its_bound_and_says_so() {
    let noise: Vec<String> = (0..300)
        .map(|i| json!({ "noise": i }).to_string())
        .collect();
    let (reason, error, took) = hostile_media(noise, "20s").await;
    assert_eq!(reason, FailureReason::Ice, "{error}");
    assert!(
        error.contains("reading the websocket failed: 256 messages came that no step has read yet"),
        "{error}"
    );
    assert!(took < AT_ONCE, "{took:?} {error}");
}

#[tokio::test]
async fn nothing_trickled_fails_ice_at_the_deadline_saying_none_came() {
    let (reason, error, _) = hostile_media(vec![], "1s").await;
    assert_eq!(reason, FailureReason::Ice, "{error}");
    assert!(
        error.contains("none was trickled") && error.contains("no end of candidates yet"),
        "{error}"
    );
}
