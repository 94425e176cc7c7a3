//! A `webrtc` step's `trickle` table: where the SFU's trickled ICE candidates come from (a
//! websocket's messages that match `expect_json` and hold a value at `candidate`), and the tap
//! that takes them out of that websocket's stream, whichever step reads it, from the `offer`
//! or `answer` step on until the peer is connected.

use std::sync::{Arc, Weak};

use serde::Deserialize;
use serde_json::Value;

use super::trickle::{DEFAULT_MAX_CANDIDATES, MAX_CANDIDATES, Trickled};
use crate::diag::{Ctx, S};
use crate::flow::StepError;
use crate::flow::context::RunContext;
use crate::flow::matcher;
use crate::flow::parts::{self, Extraction, RawExtract};
use crate::flow::protocol::Message;
use crate::flow::ws::Divert;
use crate::report::FailureReason;

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
    pub max: usize,
}

/// Compared as written (an extraction's regex by its text): plans compare when reloaded.
impl PartialEq for TrickleSpec {
    fn eq(&self, other: &TrickleSpec) -> bool {
        self.candidate.describe() == other.candidate.describe()
            && self.expect_json == other.expect_json
            && self.end_json == other.end_json
            && self.websocket == other.websocket
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
        let max = match &r.max_candidates {
            Some(m) => ctx.positive_at_most(m, &k("max_candidates"), MAX_CANDIDATES)?,
            None => DEFAULT_MAX_CANDIDATES,
        };
        Some(TrickleSpec {
            candidate,
            expect_json,
            end_json,
            websocket,
            max,
        })
    }

    /// The JSON templates it renders.
    pub fn json(&self) -> impl Iterator<Item = &Value> {
        self.expect_json.iter().chain(&self.end_json)
    }

    /// Puts a tap for `connection`'s peer on its websocket; returns what the tap fills.
    ///
    /// # Errors
    /// `ws_closed` when that websocket is not open; `protocol` for a pattern naming a variable
    /// not set.
    pub(crate) fn tap(
        &self,
        ctx: &mut RunContext<'_>,
        connection: &str,
    ) -> Result<Arc<Trickled>, StepError> {
        let render = |v: &Option<Value>| v.as_ref().map(|v| ctx.render_json(v)).transpose();
        let (want, end) = (render(&self.expect_json)?, render(&self.end_json)?);
        let websocket = self.websocket.as_deref().unwrap_or(connection);
        let conn = ctx.ws.get_mut(websocket).ok_or_else(|| {
            StepError::new(
                FailureReason::WsClosed,
                format!(
                    "`trickle` reads the SFU's candidates from websocket `{websocket}`, and \
                     none of that name is open (a ws_connect step with that `connection` \
                     comes first)"
                ),
            )
        })?;
        let trickled = Trickled::new();
        conn.divert(Arc::new(Tap {
            want,
            end,
            candidate: self.candidate.clone(),
            max: self.max,
            trickled: Arc::downgrade(&trickled),
        }));
        Ok(trickled)
    }
}

/// Takes a peer's candidates out of a websocket's stream, into the peer's [`Trickled`]; lives
/// as long as the peer holds it (until connected).
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
