//! The `webrtc` step's engine against a real Janus echotest on 127.0.0.1: the full connection
//! (ICE, DTLS with the fingerprint checked, a data channel echo), Janus frozen mid-flow, a
//! wrong `a=fingerprint`. The signalling is done here by hand; the shipped probe file does
//! the same flow with ordinary steps (tests/examples.rs).

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use joincanary::flow::StepError;
use joincanary::flow::webrtc::{EchoOptions, Peer, Timings};
use joincanary::report::{FailureReason, Phase};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{self, servers};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A Janus session with an echotest handle, talked to by hand.
struct Signalling {
    ws: Ws,
    session: u64,
    handle: u64,
}

impl Signalling {
    async fn open(url: &str) -> Signalling {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("sec-websocket-protocol", "janus-protocol".parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let mut s = Signalling {
            ws,
            session: 0,
            handle: 0,
        };
        let v = s.ask(json!({"janus": "create"}), "success").await;
        s.session = v["data"]["id"].as_u64().unwrap();
        let v = s
            .ask(
                json!({"janus": "attach", "session_id": s.session, "plugin": "janus.plugin.echotest"}),
                "success",
            )
            .await;
        s.handle = v["data"]["id"].as_u64().unwrap();
        s
    }

    /// Sends `msg` with a fresh transaction and returns the first reply of type `want` to it.
    async fn ask(&mut self, mut msg: Value, want: &str) -> Value {
        let transaction = uuid::Uuid::new_v4().to_string();
        msg["transaction"] = json!(transaction);
        self.ws.send(Message::text(msg.to_string())).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let Some(Ok(Message::Text(t))) = self.ws.next().await else {
                    panic!("janus closed the websocket");
                };
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["transaction"] == json!(transaction) && v["janus"] == json!(want) {
                    return v;
                }
                assert_ne!(v["janus"], json!("error"), "{v}");
            }
        })
        .await
        .expect("janus answers within 5 s")
    }

    /// The echotest's answer to `offer`, after trickle's end-of-candidates.
    async fn negotiate(&mut self, offer: &str) -> String {
        let v = self
            .ask(
                json!({"janus": "message", "session_id": self.session, "handle_id": self.handle,
                       "body": {"audio": false, "video": false, "data": true},
                       "jsep": {"type": "offer", "sdp": offer}}),
                "event",
            )
            .await;
        let answer = v["jsep"]["sdp"].as_str().unwrap().to_string();
        self.ask(
            json!({"janus": "trickle", "session_id": self.session, "handle_id": self.handle,
                   "candidate": {"completed": true}}),
            "ack",
        )
        .await;
        answer
    }
}

/// Connects `peer` with `answer` under a 3 s deadline; the phases measured and the result.
async fn connect(
    peer: &mut Peer,
    answer: &str,
) -> (BTreeMap<Phase, Duration>, Result<f64, StepError>) {
    let mut phases = BTreeMap::new();
    let mut pending = None;
    let echo = EchoOptions {
        count: 5,
        interval: Duration::from_millis(10),
        wait: Duration::from_millis(500),
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let result = peer
        .connect(
            Some(answer),
            &echo,
            deadline,
            Timings {
                phases: &mut phases,
                pending: &mut pending,
            },
        )
        .await;
    (phases, result.map(|r| r.loss_ratio()))
}

/// One negotiation and connection inside Janus's namespace: `forge` may change the answer,
/// `before_connect` is awaited between the answer and the connection.
async fn case(
    janus: &servers::Janus,
    forge: fn(&str) -> String,
    before_connect: Option<tokio::sync::oneshot::Sender<tokio::sync::oneshot::Sender<()>>>,
) -> (BTreeMap<Phase, Duration>, Result<f64, StepError>) {
    let url = janus.ws_url();
    janus
        .inside(move || async move {
            let mut sig = Signalling::open(&url).await;
            let (mut peer, offer) = Peer::offer(None).await.unwrap();
            assert!(offer.contains("m=application"), "{offer}");
            let answer = forge(&sig.negotiate(&offer).await);
            if let Some(tell) = before_connect {
                let (go, wait) = tokio::sync::oneshot::channel();
                tell.send(go).unwrap();
                wait.await.unwrap();
            }
            connect(&mut peer, &answer).await
        })
        .await
}

#[tokio::test]
async fn janus_echotest_connects_checks_the_fingerprint_and_echoes_the_data_channel() {
    let janus = support::start_janus_media().await;

    // The whole way: ICE, DTLS, the echo, every phase measured.
    let (phases, result) = case(&janus, str::to_string, None).await;
    let loss = result.unwrap_or_else(|e| panic!("{e:?} after {phases:?}"));
    assert!(loss < 1.0);
    for phase in [Phase::Ice, Phase::Dtls, Phase::FirstMedia] {
        assert!(phases.contains_key(&phase), "{phase:?} missing: {phases:?}");
    }

    // A wrong `a=fingerprint` (one byte changed): ICE passes, DTLS fails.
    let (phases, result) = case(&janus, forge_fingerprint, None).await;
    let e = result.expect_err("a wrong fingerprint must fail");
    assert_eq!(e.reason, FailureReason::Dtls, "{e:?}");
    assert!(e.message.contains("fingerprint"), "{e:?}");
    assert!(phases.contains_key(&Phase::Ice), "{phases:?}");
    assert!(!phases.contains_key(&Phase::FirstMedia), "{phases:?}");

    // Janus frozen after answering: the checks go unanswered, `ice` fails at the deadline.
    let (tell, told) = tokio::sync::oneshot::channel();
    let frozen = async {
        let go: tokio::sync::oneshot::Sender<()> = told.await.unwrap();
        janus.process().freeze().unwrap();
        go.send(()).unwrap();
    };
    let ((phases, result), ()) = tokio::join!(case(&janus, str::to_string, Some(tell)), frozen);
    janus.process().thaw().unwrap();
    let e = result.expect_err("a frozen janus must fail");
    assert_eq!(e.reason, FailureReason::Ice, "{e:?}");
    assert!(phases.contains_key(&Phase::Ice), "{phases:?}");
    assert!(!phases.contains_key(&Phase::Dtls), "{phases:?}");
}

/// The answer with the first byte of its sha-256 `a=fingerprint` changed.
pub(crate) fn forge_fingerprint(sdp: &str) -> String {
    sdp.lines()
        .map(|l| match l.strip_prefix("a=fingerprint:sha-256 ") {
            Some(hex) => {
                let first = if hex.starts_with("00") { "11" } else { "00" };
                format!("a=fingerprint:sha-256 {first}{}", &hex[2..])
            }
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n"
}

/// Whether `text` shows an ICE password: an `ice-pwd:` not followed by `[redacted]`, or the
/// `pass: "…"` of str0m's `IceCreds` in a debug line.
fn shows_an_ice_password(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    for (at, _) in lower.match_indices("ice-pwd:") {
        let after = &text[at + "ice-pwd:".len()..];
        if !after.starts_with("[redacted]") {
            return Some(after.chars().take(40).collect());
        }
    }
    text.find("pass: \"")
        .map(|at| text[at..].chars().take(40).collect())
}

/// The shipped Janus media probe, run with every crate's debug lines captured (str0m's and
/// its ICE agent's among them): the passing run's log shows neither side's ICE password, and
/// the run's report (what status pages and pages show) neither.
#[tokio::test]
async fn no_ice_password_in_the_debug_log_of_a_janus_media_run() {
    let janus = support::start_janus_media().await;
    let plan = support::example(
        "janus-echotest-media.toml",
        &[("JANUS_URL", &janus.ws_url())],
    );
    let (run, log) = janus
        .inside(move || async move {
            let logs = support::logs::Capture::start();
            let run = support::run_once(&plan).await;
            (run, logs.take())
        })
        .await;
    assert!(run.success, "{run:#?}");
    // The capture sees the ICE agent's debug lines: the ones that would carry the passwords.
    assert!(log.contains("Set remote credentials"), "{log}");
    if let Some(shown) = shows_an_ice_password(&log) {
        panic!("an ICE password in the log ({shown}):\n{log}");
    }
    let report = format!("{run:?}");
    assert_eq!(shows_an_ice_password(&report), None, "{report}");
}

/// An SDP quoted in a step's error (a WHIP-style endpoint refusing the offer with the SDP in its
/// body, raw or in JSON) shows its ufrag and never its ICE password: no `webrtc` step has seen
/// that SDP, so only its shape tells.
#[tokio::test]
async fn an_sdp_quoted_in_an_error_shows_its_ufrag_and_hides_its_ice_password() {
    use axum::{Router, http::StatusCode, routing::post};
    support::init();
    const PASSWORD: &str = "Zx9+/pw0rd4a6b8c0d2e4f6a";
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-lite\r\na=ice-ufrag:Ab3d\r\na=ice-pwd:{PASSWORD}\r\n"
    );
    let json = serde_json::json!({ "error": "offer refused", "sdp": sdp }).to_string();
    let app = Router::new()
        .route(
            "/whip",
            post({
                let sdp = sdp.clone();
                move || async move { (StatusCode::BAD_REQUEST, sdp) }
            }),
        )
        .route(
            "/json",
            post(move || async move { (StatusCode::BAD_REQUEST, json) }),
        );
    let base = support::serve_router(app).await;
    for path in ["/whip", "/json"] {
        let plan = support::probe_from(
            &format!(
                "name = \"whip\"\n\n[[steps]]\nname = \"offer\"\nkind = \"http\"\nmethod = \"POST\"\n\
                 url = \"http://{base}{path}\"\nbody = \"v=0\"\ntimeout = \"2s\"\n"
            ),
            &[],
        );
        let run = support::run_once(&plan).await;
        let error = run.error.clone().unwrap_or_default();
        assert_eq!(run.reason, Some(FailureReason::HttpStatus), "{run:#?}");
        assert!(error.contains("a=ice-ufrag:Ab3d"), "{path}: {error}");
        assert!(error.contains("a=ice-pwd:[redacted]"), "{path}: {error}");
        assert!(!format!("{run:?}").contains("Zx9"), "{path}: {error}");
    }
}
