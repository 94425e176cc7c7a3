//! A pager endpoint on 127.0.0.1 that records every request and answers from a script.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use serde_json::Value;

/// Records `(path, JSON body, status answered)`.
#[derive(Clone, Default)]
pub struct Receiver {
    requests: Arc<Mutex<Vec<(String, Value, u16)>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
    fallback: Arc<Mutex<u16>>,
    /// When each request arrived, in the order of `requests`.
    arrived: Arc<Mutex<Vec<std::time::Instant>>>,
}

impl Receiver {
    pub async fn start(fallback: u16) -> (Receiver, String) {
        let r = Receiver::default();
        *r.fallback.lock().unwrap() = fallback;
        let app = axum::Router::new().fallback(record).with_state(r.clone());
        let base = format!("http://{}", super::serve_router(app).await);
        (r, base)
    }

    pub fn set_fallback(&self, status: u16) {
        *self.fallback.lock().unwrap() = status;
    }

    pub fn script(&self, statuses: &[u16]) {
        self.script.lock().unwrap().extend(statuses);
    }

    /// Accepted requests' bodies.
    pub fn accepted(&self) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, s)| *s < 300)
            .map(|(_, b, _)| b.clone())
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

    pub fn all(&self) -> Vec<(String, Value, u16)> {
        self.requests.lock().unwrap().clone()
    }

    /// Every request with the instant it arrived: `(when, path, JSON body)`.
    pub fn timed(&self) -> Vec<(std::time::Instant, String, Value)> {
        let requests = self.requests.lock().unwrap();
        let arrived = self.arrived.lock().unwrap();
        arrived
            .iter()
            .zip(requests.iter())
            .map(|(t, (p, b, _))| (*t, p.clone(), b.clone()))
            .collect()
    }
}

async fn record(State(r): State<Receiver>, uri: Uri, body: Bytes) -> StatusCode {
    let status = r
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(*r.fallback.lock().unwrap());
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // One lock order (requests, then arrived) so `timed` pairs them up.
    let mut requests = r.requests.lock().unwrap();
    requests.push((uri.path().to_string(), json, status));
    r.arrived.lock().unwrap().push(std::time::Instant::now());
    StatusCode::from_u16(status).unwrap()
}
