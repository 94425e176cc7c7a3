//! [`RunContext`]: what the steps of one run share (variables, cookies, open websockets) and
//! what the current step leaves for its report (phases, gauges, warnings).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::error::StepError;
use super::webrtc::peer::Peer;
use super::ws;
use crate::report::{FailureReason, Phase};

/// State shared by the steps of one run.
pub(crate) struct RunContext<'a> {
    /// The probe's name (for logs).
    pub probe: &'a str,
    /// The probe's cap on a reply (body, message, Redis reply).
    pub max_body_bytes: usize,
    /// TLS settings when the probe trusts extra CAs; `None` uses the system roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub vars: HashMap<String, String>,
    pub jar: Arc<reqwest::cookie::Jar>,
    /// The cookie names the jar holds (at most `http::MAX_COOKIES`).
    pub cookie_names: std::collections::BTreeSet<String>,
    /// Open websockets by connection name (`""` is the default one).
    pub ws: BTreeMap<String, ws::Connection>,
    /// WebRTC peers offered or answered, not yet connected, by connection name.
    pub webrtc: BTreeMap<String, Peer>,
    /// The current step's deadline (its timeout or the probe's, whichever is first): kinds that
    /// run phases of their own stop each one there with the phase's reason.
    pub deadline: Instant,
    /// Which connection the last `ws_send` used and when it began: a following `ws_expect`
    /// records the round trip (same connection) or the fan-out (another one) from it, until a
    /// `ws_connect` ends the measurement.
    pub last_send: Option<(String, Instant)>,
    /// Phases measured so far by the current step; kept here so a timeout does not lose them.
    pub phases: BTreeMap<Phase, Duration>,
    /// The connection phase under way (dns, connect, tls) and since when: a timeout names it
    /// and still reports its time.
    pub pending: Option<(Phase, Instant)>,
    /// Frames read by the current `ws_expect` (for the no-match message after a timeout).
    pub frames_seen: usize,
    /// Why the last frame the current `ws_expect` read did not match (quoted in `no_match`).
    pub last_miss: Option<String>,
    pub redactor: crate::redact::Redactor,
    /// The current step's name, gauges read and thresholds crossed (redis, http_json).
    pub step_name: String,
    pub gauges: BTreeMap<String, f64>,
    pub warnings: Vec<String>,
    /// What the current step waits for, when it says (for the timeout message).
    pub waiting: &'static str,
    /// The caller's wall clock (the scheduler's): a step reads "now" here, on tokio's clock,
    /// so under a paused clock in tests too.
    pub clock: crate::clock::Clock,
}

impl RunContext<'_> {
    /// Stores an extracted value; extracted values are treated as secrets (tokens, session ids).
    pub fn set_var(&mut self, name: &str, value: String) {
        self.add_secret(&value);
        self.vars.insert(name.to_string(), value);
    }

    /// A secret is scrubbed in every encoding (the redactor's own business).
    pub(crate) fn add_secret(&mut self, value: &str) {
        self.redactor.add(value.to_string());
    }

    /// Renders a step's `headers` table.
    pub fn render_headers(
        &self,
        headers: &[(String, crate::template::Template)],
    ) -> Result<hyper::HeaderMap, StepError> {
        let mut out = hyper::HeaderMap::new();
        for (name, value) in headers {
            let rendered = self.render(value)?;
            let name = hyper::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                StepError::new(
                    FailureReason::Protocol,
                    format!("`{name}` is not a header name"),
                )
            })?;
            let value = hyper::header::HeaderValue::from_str(&rendered).map_err(|_| {
                StepError::new(
                    FailureReason::Protocol,
                    format!("header `{name}` has a value that cannot be sent"),
                )
            })?;
            out.insert(name, value);
        }
        Ok(out)
    }

    /// The open websocket `name`.
    pub(crate) fn socket(&mut self, name: &str) -> Result<&mut ws::Connection, StepError> {
        self.ws.get_mut(name).ok_or_else(|| {
            StepError::new(
                FailureReason::WsClosed,
                "no websocket is open (did ws_connect fail or ws_close run?)",
            )
        })
    }

    pub fn render(&self, t: &crate::template::Template) -> Result<String, StepError> {
        t.render(&self.vars)
            .map_err(|e| StepError::new(FailureReason::Protocol, e.to_string()))
    }
}
