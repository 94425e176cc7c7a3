//! A `webrtc` step's `trickle` table: where the SFU's trickled ICE candidates come from (a
//! websocket's messages, or a long poll's events, that match `expect_json` and hold a value at
//! `candidate`), and the tap that takes them out of that websocket's or long poll's stream,
//! whichever step reads it, from the `offer` or `answer` step on until the peer is connected.

use std::sync::{Arc, Weak};

use serde::Deserialize;
use serde_json::Value;

use super::trickle::{DEFAULT_MAX_CANDIDATES, MAX_CANDIDATES, TrickleFrom, Trickled};
use crate::diag::{Ctx, S};
use crate::flow::StepError;
use crate::flow::context::RunContext;
use crate::flow::matcher;
use crate::flow::parts::{self, Extraction, RawExtract};
use crate::flow::protocol::Message;
use crate::flow::ws::Divert;
use crate::report::FailureReason;
use crate::template::Template;

/// `trickle = { candidate = { json = "$.candidate" }, expect_json = {…}, end_json = {…},
/// websocket = "…", max_candidates = 32 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrickle {
    /// Where a message holds its candidate (as `extract` reads a value): a candidate line, or
    /// a JSON `RTCIceCandidateInit`, as an object or a string.
    pub candidate: Option<S<RawExtract>>,
    /// Only messages matching this JSON subset carry candidates (templates).
    pub expect_json: Option<S<toml::Value>>,
    /// A message matching this JSON subset ends the candidates (LiveKit's `final`), besides
    /// the ends read from the value itself.
    pub end_json: Option<S<toml::Value>>,
    /// The websocket they come on (default: the step's `connection`).
    pub websocket: Option<S<String>>,
    /// Or the long poll they come in (Janus over HTTP): the URL a `connect` step asks for
    /// more while ICE waits; the `http` steps with `batch` on the step's `connection` read the
    /// same events.
    pub poll: Option<S<String>>,
    /// Candidates taken at most (default 32); more fail the step with `protocol`.
    pub max_candidates: Option<S<i64>>,
}

/// A checked `trickle` table.
#[derive(Debug, Clone)]
pub struct TrickleSpec {
    pub candidate: Extraction,
    pub expect_json: Option<Value>,
    pub end_json: Option<Value>,
    /// `None`: the step's connection.
    pub websocket: Option<String>,
    /// The long poll's URL, instead of a websocket.
    pub poll: Option<Template>,
    pub max: usize,
}

/// Compared as written (an extraction's regex by its text): plans compare when reloaded.
impl PartialEq for TrickleSpec {
    fn eq(&self, other: &TrickleSpec) -> bool {
        self.candidate.describe() == other.candidate.describe()
            && self.expect_json == other.expect_json
            && self.end_json == other.end_json
            && self.websocket == other.websocket
            && self.poll == other.poll
            && self.max == other.max
    }
}

impl TrickleSpec {
    /// Checks the table at `key` (`steps[3].trickle`).
    pub fn build(ctx: &mut Ctx<'_>, raw: &S<RawTrickle>, key: &str) -> Option<TrickleSpec> {
        let r = raw.get_ref();
        let k = |name: &str| format!("{key}.{name}");
        let Some(candidate) = &r.candidate else {
            ctx.error(
                Some(raw.span()),
                key,
                "needs `candidate`: where a message holds its candidate, e.g. \
                 `candidate = { json = \"$.candidate\" }`",
            );
            return None;
        };
        let candidate = parts::extraction(ctx, "candidate", candidate, &k("candidate"), false)?;
        let json = |ctx: &mut Ctx<'_>, v: &Option<S<toml::Value>>, name: &str| match v {
            Some(v) => ctx.json(v, &k(name)).map(Some),
            None => Some(None),
        };
        let expect_json = json(ctx, &r.expect_json, "expect_json")?;
        let end_json = json(ctx, &r.end_json, "end_json")?;
        let websocket = super::connection_name(ctx, r.websocket.as_ref(), &k("websocket"))?;
        let poll = match (&r.poll, &r.websocket) {
            (Some(p), Some(_)) => {
                ctx.error(
                    Some(p.span()),
                    k("poll"),
                    "give `websocket` or `poll`, not both: candidates come on one of them",
                );
                return None;
            }
            (Some(p), None) => Some(parts::url_template(ctx, p, &k("poll"), &["http", "https"])?),
            (None, _) => None,
        };
        let max = match &r.max_candidates {
            Some(m) => ctx.positive_at_most(m, &k("max_candidates"), MAX_CANDIDATES)?,
            None => DEFAULT_MAX_CANDIDATES,
        };
        Some(TrickleSpec {
            candidate,
            expect_json,
            end_json,
            websocket,
            poll,
            max,
        })
    }

    /// The long poll's URL, a template it renders.
    pub fn template(&self) -> Option<&Template> {
        self.poll.as_ref()
    }

    /// The JSON templates it renders.
    pub fn json(&self) -> impl Iterator<Item = &Value> {
        self.expect_json.iter().chain(&self.end_json)
    }

    /// Puts a tap for `connection`'s peer on its websocket, or on its long poll's events;
    /// returns what the tap fills, and where from.
    ///
    /// # Errors
    /// `ws_closed` when that websocket is not open; `protocol` for a pattern naming a variable
    /// not set, or a `poll` URL that is none.
    pub(crate) fn tap(
        &self,
        ctx: &mut RunContext<'_>,
        connection: &str,
    ) -> Result<(Arc<Trickled>, TrickleFrom), StepError> {
        let render = |v: &Option<Value>| v.as_ref().map(|v| ctx.render_json(v)).transpose();
        let (want, end) = (render(&self.expect_json)?, render(&self.end_json)?);
        let trickled = Trickled::new();
        let tap = Arc::new(Tap {
            want,
            end,
            candidate: self.candidate.clone(),
            max: self.max,
            trickled: Arc::downgrade(&trickled),
        });
        if let Some(poll) = &self.poll {
            let url = parts::run_url(ctx, poll, &["http", "https"])?;
            let events = ctx.long_polls.entry(connection.to_string()).or_default();
            events.url = Some(url);
            events.divert(tap);
            return Ok((trickled, TrickleFrom::LongPoll(connection.to_string())));
        }
        let websocket = self.websocket.as_deref().unwrap_or(connection);
        let conn = ctx.ws.get_mut(websocket).ok_or_else(|| {
            StepError::new(
                FailureReason::WsClosed,
                format!(
                    "`trickle` reads the SFU's candidates from websocket `{websocket}`, and \
                     none of that name is open (a ws_connect step with that `connection` \
                     comes first; over HTTP, `poll` names the long poll)"
                ),
            )
        })?;
        conn.divert(tap);
        Ok((trickled, TrickleFrom::Websocket(websocket.to_string())))
    }
}

/// Takes a peer's candidates out of a websocket's stream or a long poll's events, into the
/// peer's [`Trickled`]; lives as long as the peer holds it (until connected).
struct Tap {
    want: Option<Value>,
    end: Option<Value>,
    candidate: Extraction,
    max: usize,
    trickled: Weak<Trickled>,
}

impl Divert for Tap {
    fn divert(&self, m: &Message) -> bool {
        let Some(trickled) = self.trickled.upgrade() else {
            return false;
        };
        let matches = |p: &Value| m.json_for(p).is_some_and(|a| matcher::is_json_subset(p, a));
        if self.want.as_ref().is_some_and(|p| !matches(p)) {
            return false;
        }
        let end = self.end.as_ref().is_some_and(matches);
        let value = self.candidate.value_in(m.json.as_ref(), &m.text);
        if value.is_none() && !end {
            return false;
        }
        trickled.push(value.as_deref(), end, self.max)
    }

    fn live(&self) -> bool {
        self.trickled.strong_count() > 0
    }
}
