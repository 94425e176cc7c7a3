//! A pager endpoint on 127.0.0.1 that records every request and answers from a script: a
//! status list then a fallback, a fixed body, or never (a hung provider).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::Value;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path and query, as sent.
    pub path: String,
    /// By lower-case name (a repeated header: the last one).
    pub headers: HashMap<String, String>,
    /// The body as JSON (`Null` when it is not).
    pub body: Value,
    /// The status it was answered with (a hung request: the one it would have had).
    pub status: u16,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// How it answers.
#[derive(Default)]
struct Script {
    statuses: VecDeque<u16>,
    fallback: u16,
    body: String,
    hang: bool,
}

#[derive(Clone, Default)]
pub struct Receiver {
    requests: Arc<Mutex<Vec<Request>>>,
    script: Arc<Mutex<Script>>,
    /// `http://127.0.0.1:PORT`
    base: String,
}

impl Receiver {
    /// Answers every request with `fallback`: the receiver and its base URL.
    pub async fn start(fallback: u16) -> (Receiver, String) {
        let r = Receiver::serve(Script {
            fallback,
            ..Script::default()
        })
        .await;
        let base = r.base.clone();
        (r, base)
    }

    /// Answers with `statuses` in order, then `then`.
    pub async fn statuses(statuses: &[u16], then: u16) -> Receiver {
        Receiver::serve(Script {
            statuses: statuses.iter().copied().collect(),
            fallback: then,
            ..Script::default()
        })
        .await
    }

    /// Answers every request with `status` and `body`.
    pub async fn echoing(status: u16, body: String) -> Receiver {
        Receiver::serve(Script {
            fallback: status,
            body,
            ..Script::default()
        })
        .await
    }

    /// Records every request and never answers.
    pub async fn hanging() -> Receiver {
        Receiver::serve(Script {
            fallback: 200,
            hang: true,
            ..Script::default()
        })
        .await
    }

    async fn serve(script: Script) -> Receiver {
        let mut r = Receiver::default();
        *r.script.lock().unwrap() = script;
        let app = axum::Router::new().fallback(record).with_state(r.clone());
        r.base = format!("http://{}", super::serve_router(app).await);
        r
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.base.clone()
    }

    pub fn set_fallback(&self, status: u16) {
        self.script.lock().unwrap().fallback = status;
    }

    /// Answers the next requests with `statuses`, then the fallback again.
    pub fn script(&self, statuses: &[u16]) {
        self.script.lock().unwrap().statuses.extend(statuses);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits (10 ms apart, at most `within`) until `n` requests arrived: the requests then.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Request> {
        super::poll(within, Duration::from_millis(10), async || {
            super::when(self.requests(), |seen| seen.len() >= n)
        })
        .await
        .unwrap_or_else(|seen| seen)
    }

    /// Accepted requests' bodies.
    pub fn accepted(&self) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.status < 300)
            .map(|r| r.body.clone())
            .collect()
    }

    /// The accepted bodies of `event` (`trigger`, `resolve`): the webhook's `event` or
    /// PagerDuty's `event_action`.
    pub fn events(&self, event: &str) -> Vec<Value> {
        self.accepted()
            .into_iter()
            .filter(|v| v["event"] == event || v["event_action"] == event)
            .collect()
    }

    /// Every body so far as JSON text, one a line (what to search a page's words in).
    pub fn bodies(&self) -> String {
        let requests = self.requests.lock().unwrap();
        let bodies: Vec<String> = requests.iter().map(|r| r.body.to_string()).collect();
        bodies.join("\n")
    }

    /// Every request as `(path without the query, JSON body, status answered)`.
    pub fn all(&self) -> Vec<(String, Value, u16)> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| (path_only(&r.path), r.body.clone(), r.status))
            .collect()
    }

    /// Every request with the instant it arrived: `(when, path without the query, JSON body)`.
    pub fn timed(&self) -> Vec<(std::time::Instant, String, Value)> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.at, path_only(&r.path), r.body.clone()))
            .collect()
    }
}

fn path_only(target: &str) -> String {
    target.split('?').next().unwrap_or_default().to_string()
}

async fn record(
    State(r): State<Receiver>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let (status, answer, hang) = {
        let mut script = r.script.lock().unwrap();
        let status = script.statuses.pop_front().unwrap_or(script.fallback);
        (status, script.body.clone(), script.hang)
    };
    r.requests.lock().unwrap().push(Request {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status,
        at: std::time::Instant::now(),
    });
    if hang {
        std::future::pending::<()>().await;
    }
    (StatusCode::from_u16(status).unwrap(), answer)
}
