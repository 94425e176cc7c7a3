//! The shipped probes/examples/janus-echotest-http-media.toml against a loopback stand-in for
//! Janus's HTTP API (the real Janus is in tests/janus_http.rs): `POST /janus` creates,
//! `POST /janus/<session>` attaches and destroys, `POST /janus/<session>/<handle>` takes the
//! offer (`ack`) and trickles, `GET /janus/<session>?maxev=N` long-polls the session's events
//! as Janus does (a JSON array of up to N, held until one comes). Behind it, either aiortc
//! answering our offer and trickling its real candidates Janus's way only *after* the answer
//! (held until our `trickle` POST, so they can only come in later replies that the `media`
//! step asks for itself, however slow the machine), or a str0m peer's
//! answer without candidates followed by hostile events: too many candidates, a flood of other
//! events, a session gone. Each fails at once with the layer named, never at the deadline.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::{SinkExt, StreamExt};
use joincanary::flow::webrtc::Peer;
use joincanary::report::{FailureReason, Phase, ProbeRun};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{self, aiortc, example, step};

/// What answers the offer.
#[derive(Clone)]
enum Backend {
    /// aiortc's `/ws` at this URL, trickling its candidates `delay_ms` after its answer, and
    /// never their end (as some SFUs do): `media` keeps a long poll waiting until ICE is up.
    Aiortc(String, u64),
    /// A str0m peer's answer without candidates, then these events; `gone`: after the answer
    /// has been read, the session is gone (every long poll a 404, as Janus answers).
    Scripted { events: Vec<Value>, gone: bool },
}

#[derive(Default)]
struct Session {
    events: VecDeque<Value>,
    /// Long polls waiting, oldest first: (id, maxev, where their events go). As Janus does,
    /// an event goes to the oldest one, whether or not its client is still there (Janus
    /// writes it into the suspended request: a client gone loses it).
    waiting: VecDeque<(u64, usize, oneshot::Sender<Vec<Value>>)>,
    /// The answer has been read: a `gone` session answers 404 from now on.
    answered: bool,
}

impl Session {
    /// Up to `max` events, taken out.
    fn take(&mut self, max: usize) -> Vec<Value> {
        let out: Vec<Value> = self.events.drain(..self.events.len().min(max)).collect();
        self.answered |= out.iter().any(|e| e["jsep"].is_object());
        out
    }

    /// Hands the events to the waiting long polls, oldest first.
    fn deliver(&mut self) {
        while !self.events.is_empty() {
            let Some((_, max, to)) = self.waiting.pop_front() else {
                return;
            };
            let out = self.take(max);
            let _ = to.send(out);
        }
    }
}

struct StandIn {
    backend: Backend,
    sessions: Mutex<HashMap<u64, Session>>,
    polls: AtomicU64,
    /// aiortc's trickled events, held until our `trickle` POST (`None` once it came): the
    /// step before `media`, so no reply before `media`'s can carry them. aiortc's own delay
    /// alone raced the prober's steps on a loaded machine.
    held: Mutex<Option<Vec<Value>>>,
    /// How many long polls had begun when our `trickle` POST came (`u64::MAX` before).
    polls_before_our_trickle: AtomicU64,
    /// The long polls (by their number, from 0) whose reply carried a trickled candidate.
    candidate_polls: Mutex<Vec<u64>>,
}

const SESSION: u64 = 4_211_000_000_001;
const HANDLE: u64 = 7;

impl StandIn {
    fn push(&self, session: u64, mut event: Value) {
        event["session_id"] = json!(session);
        event["sender"] = json!(HANDLE);
        if let Some(s) = self.sessions.lock().unwrap().get_mut(&session) {
            s.events.push_back(event);
            s.deliver();
        }
    }

    /// aiortc's trickled `event`: held until our `trickle` POST, pushed after it.
    fn trickle(&self, session: u64, event: Value) {
        if let Some(held) = self.held.lock().unwrap().as_mut() {
            held.push(event);
            return;
        }
        self.push(session, event);
    }

    /// Our `trickle` POST came: what was held goes out, the rest as it comes.
    fn release(&self, session: u64) {
        let polls = self.polls.load(Ordering::SeqCst);
        self.polls_before_our_trickle.store(polls, Ordering::SeqCst);
        let held = self.held.lock().unwrap().take().unwrap_or_default();
        for event in held {
            self.push(session, event);
        }
    }

    /// Long poll `me`'s reply, noted when it carries a trickled candidate.
    fn reply(&self, me: u64, events: Vec<Value>) -> Response {
        if events
            .iter()
            .any(|e| e["candidate"]["candidate"].is_string())
        {
            self.candidate_polls.lock().unwrap().push(me);
        }
        Json(Value::Array(events)).into_response()
    }
}

/// A request's JSON whatever its content type (Janus reads the body as JSON regardless).
fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_default()
}

async fn create(State(s): State<Arc<StandIn>>, body: Bytes) -> Json<Value> {
    let req = json_of(&body);
    s.sessions
        .lock()
        .unwrap()
        .insert(SESSION, Session::default());
    Json(json!({"janus": "success", "transaction": req["transaction"], "data": {"id": SESSION}}))
}

async fn session(State(s): State<Arc<StandIn>>, Path(id): Path<u64>, body: Bytes) -> Json<Value> {
    let req = json_of(&body);
    let t = &req["transaction"];
    match req["janus"].as_str() {
        Some("attach") => {
            Json(json!({"janus": "success", "transaction": t, "data": {"id": HANDLE}}))
        }
        Some("destroy") => {
            s.sessions.lock().unwrap().remove(&id);
            Json(json!({"janus": "success", "session_id": id, "transaction": t}))
        }
        _ => Json(
            json!({"janus": "error", "transaction": t, "error": {"code": 453, "reason": "Unknown request"}}),
        ),
    }
}

async fn handle(
    State(s): State<Arc<StandIn>>,
    Path((id, _handle)): Path<(u64, u64)>,
    body: Bytes,
) -> Json<Value> {
    let req = json_of(&body);
    if req["janus"] == "trickle" && req["candidate"]["completed"] == true {
        s.release(id);
    }
    if let Some(offer) = req["jsep"]["sdp"].as_str() {
        let (s, offer, t) = (s.clone(), offer.to_string(), req["transaction"].clone());
        tokio::spawn(async move { answer(s, id, offer, t).await });
    }
    Json(json!({"janus": "ack", "session_id": id, "transaction": req["transaction"]}))
}

/// The plugin's event with the answer, as Janus's echotest sends it.
fn answer_event(sdp: &str, transaction: &Value) -> Value {
    json!({"janus": "event", "transaction": transaction,
           "plugindata": {"plugin": "janus.plugin.echotest", "data": {"echotest": "event", "result": "ok"}},
           "jsep": {"type": "answer", "sdp": sdp}})
}

/// Answers `offer` through the backend, its events into the session's queue.
async fn answer(s: Arc<StandIn>, id: u64, offer: String, transaction: Value) {
    match s.backend.clone() {
        Backend::Aiortc(url, delay_ms) => {
            let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
                return;
            };
            let ask =
                json!({"type": "offer", "sdp": offer, "trickle": "janus", "delay_ms": delay_ms});
            let _ = ws.send(Message::text(ask.to_string())).await;
            // Bounded: aiortc sends an answer, a few candidates, their end and `connected`.
            for _ in 0..64 {
                let Ok(Some(Ok(Message::Text(t)))) =
                    tokio::time::timeout(Duration::from_secs(10), ws.next()).await
                else {
                    return;
                };
                let v: Value = serde_json::from_str(&t).unwrap_or_default();
                match v["type"].as_str() {
                    Some("answer") => s.push(
                        id,
                        answer_event(v["sdp"].as_str().unwrap_or_default(), &transaction),
                    ),
                    Some("connected") => {
                        // Later than ICE on our side for sure: `media` has stopped reading.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        s.push(id, json!({"janus": "webrtcup"}));
                    }
                    _ if v["candidate"]["completed"] == true => {}
                    _ if v["janus"] == "trickle" => s.trickle(id, v),
                    _ => {}
                }
            }
        }
        Backend::Scripted { events, .. } => {
            let loopback = Some(std::net::Ipv4Addr::LOCALHOST.into());
            let Ok((_far, sdp)) = Peer::answer(loopback, &offer).await else {
                return;
            };
            let sdp: String = sdp
                .lines()
                .filter(|l| !l.starts_with("a=candidate:"))
                .map(|l| format!("{l}\r\n"))
                .collect();
            s.push(id, answer_event(&sdp, &transaction));
            for e in events {
                s.push(id, e);
            }
        }
    }
}

/// Janus's long poll: up to `maxev` events, held until one comes (10 s here, then a keepalive).
async fn long_poll(
    State(s): State<Arc<StandIn>>,
    Path(id): Path<u64>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let max: usize = q
        .get("maxev")
        .and_then(|m| m.parse().ok())
        .unwrap_or(1)
        .max(1);
    let gone = matches!(s.backend, Backend::Scripted { gone: true, .. });
    let me = s.polls.fetch_add(1, Ordering::SeqCst);
    let (tx, rx) = oneshot::channel();
    {
        let mut sessions = s.sessions.lock().unwrap();
        let Some(session) = sessions.get_mut(&id).filter(|ss| !(gone && ss.answered)) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        if !session.events.is_empty() {
            let events = session.take(max);
            drop(sessions);
            return s.reply(me, events);
        }
        session.waiting.push_back((me, max, tx));
    }
    match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(events)) => s.reply(me, events),
        _ => {
            if let Some(session) = s.sessions.lock().unwrap().get_mut(&id) {
                session.waiting.retain(|(id, _, _)| *id != me);
            }
            Json(json!([{"janus": "keepalive"}])).into_response()
        }
    }
}

/// The stand-in on 127.0.0.1; its URL for `JANUS_HTTP_URL`, and its state.
async fn serve(backend: Backend) -> (String, Arc<StandIn>) {
    support::init();
    let held = matches!(backend, Backend::Aiortc(..)).then(Vec::new);
    let state = Arc::new(StandIn {
        backend,
        sessions: Mutex::new(HashMap::new()),
        polls: AtomicU64::new(0),
        held: Mutex::new(held),
        polls_before_our_trickle: AtomicU64::new(u64::MAX),
        candidate_polls: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .route("/janus", post(create))
        .route("/janus/{session}", post(session).get(long_poll))
        .route("/janus/{session}/{handle}", post(handle))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, state)
}

async fn run(backend: Backend) -> ProbeRun {
    run_with_state(backend).await.0
}

async fn run_with_state(backend: Backend) -> (ProbeRun, Arc<StandIn>) {
    let (url, state) = serve(backend).await;
    let plan = example(
        "janus-echotest-http-media.toml",
        &[("JANUS_HTTP_URL", &url)],
    );
    (support::run_once(&plan).await, state)
}

/// `media` failed before its deadline, not at it: it took less than the example's `media`
/// timeout (a step that waits for its deadline takes at least that). No tighter bound: how
/// long "at once" takes depends on the machine's load.
fn media_failed_at_once(run: &ProbeRun) {
    let plan = example(
        "janus-echotest-http-media.toml",
        &[("JANUS_HTTP_URL", "http://127.0.0.1:9")],
    );
    let timeout = plan
        .steps
        .iter()
        .find(|s| s.name == "media")
        .and_then(|s| s.timeout);
    let media = step(run, "media");
    assert!(
        timeout.is_some_and(|t| media.duration_ms < t),
        "{timeout:?}: {run:#?}"
    );
}

#[tokio::test]
async fn candidates_trickled_after_the_answer_come_in_later_replies_that_media_asks_for() {
    let Some(server) = aiortc::start_or_skip().await else {
        return;
    };
    let ws = server.base_url().replace("http://", "ws://") + "/ws";
    // Held until our `trickle` POST, aiortc's candidates reach no reply before `media`'s; its
    // 300 ms delay makes them come into a long poll `media` holds open, as Janus's do.
    let (run, standin) = run_with_state(Backend::Aiortc(ws, 300)).await;
    assert!(run.success, "{run:#?}");
    let media = step(&run, "media");
    for phase in [Phase::Ice, Phase::Dtls, Phase::FirstMedia] {
        assert!(media.phases.contains_key(&phase), "{phase:?}: {media:#?}");
    }
    assert!(media.gauges["trickled_candidates"] >= 1.0, "{media:#?}");
    // Every reply with a candidate answered a long poll begun after our `trickle` POST: one
    // `media` asked for (the only reader after it that needs them).
    let ours = standin.polls_before_our_trickle.load(Ordering::SeqCst);
    let polls = standin.candidate_polls.lock().unwrap().clone();
    assert!(
        !polls.is_empty() && polls.iter().all(|p| *p >= ours),
        "polls {polls:?}, our trickle after {ours}: {media:#?}"
    );
    assert!(media.gauges["echo_loss_ratio"] < 1.0, "{media:#?}");
    // aiortc's `connected` (the stand-in's `webrtcup`) goes into the long poll `media` left
    // waiting once ICE was up (no end of candidates came): its reply is read by the step after,
    // not lost with the request (before: `webrtcup` failed `no_match`).
    support::passed(&run, &["webrtcup", "destroy"]);
}

/// A candidate event the stand-in sends (`n` makes each one its own).
fn candidate(n: usize) -> Value {
    let line = format!(
        "candidate:{n} 1 udp 2130706431 127.0.0.1 {} typ host",
        40_000 + n
    );
    json!({"janus": "trickle", "candidate": {"candidate": line, "sdpMLineIndex": 0}})
}

#[tokio::test]
async fn more_candidates_than_max_candidates_in_the_long_poll_fail_protocol_at_once() {
    let events = (1..=40).map(candidate).collect();
    let run = run(Backend::Scripted {
        events,
        gone: false,
    })
    .await;
    assert_eq!(run.failed_step.as_deref(), Some("media"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::Protocol), "{run:#?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains("more than 32 candidates were trickled (`max_candidates`)"),
        "{error}"
    );
    media_failed_at_once(&run);
    assert!(step(&run, "destroy").success, "{run:#?}");
}

#[tokio::test]
async fn a_flood_of_other_events_stops_the_reading_at_its_bound_and_says_so() {
    let events = (0..300)
        .map(|n| json!({"janus": "event", "n": n}))
        .collect();
    let run = run(Backend::Scripted {
        events,
        gone: false,
    })
    .await;
    assert_eq!(run.failed_step.as_deref(), Some("media"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::Ice), "{run:#?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains("reading the long poll failed: 256 events came that no step has read yet"),
        "{error}"
    );
}

#[tokio::test]
async fn a_session_gone_from_the_long_poll_fails_ice_at_once_naming_the_long_poll() {
    let run = run(Backend::Scripted {
        events: Vec::new(),
        gone: true,
    })
    .await;
    assert_eq!(run.failed_step.as_deref(), Some("media"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::Ice), "{run:#?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains("0 candidates trickled, no end of candidates yet; reading the long poll failed: status 404"),
        "{error}"
    );
    media_failed_at_once(&run);
}
