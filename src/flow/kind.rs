//! The shape of a step kind: the [`Kind`] trait each kind's file implements, and [`Build`],
//! what its validation reports through. The list of kinds is `kinds.rs`.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::context::RunContext;
use super::error::StepError;
use super::parts::Extraction;
use super::protocol::ProtocolKind;
use crate::diag::{ConfigError, Ctx, table_keys};
use crate::report::with_article;
use crate::template::Template;

/// How a kind stands to the websockets of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Websocket {
    /// It has none (`connection` is not its key).
    None,
    /// It opens one (ws_connect).
    Opens,
    /// It needs one an earlier step opened.
    Uses,
    /// It needs one and closes it (ws_close): a step after it needs a new ws_connect.
    Closes,
}

impl Websocket {
    /// It runs on a websocket an earlier step opened.
    pub(crate) fn uses(self) -> bool {
        matches!(self, Websocket::Uses | Websocket::Closes)
    }
}

/// One step kind: its table, its validation and its run (see the module's doc).
pub(crate) trait Kind: Sized {
    /// The kind's own keys (`#[serde(deny_unknown_fields)]`, `Spanned` fields).
    type Raw: for<'de> Deserialize<'de>;
    /// Whether the step runs on a websocket: then `connection` is one of its keys.
    const WEBSOCKET: Websocket = Websocket::None;
    /// Whether `connection` is one of its keys though it runs on no websocket: it names the
    /// participant whose cookies the step sends and keeps (http; see `context::Cookies`).
    const PARTICIPANT: bool = false;

    /// The keys of the kind's own table: `Raw`'s, unless it reads more tables through
    /// [`Build::read`] (http_json reads http's).
    fn keys() -> Vec<&'static str> {
        table_keys::<Self::Raw>().to_vec()
    }

    /// Checks `raw`; every problem is reported through `b`, `None` when there was one.
    fn build(raw: Self::Raw, b: &mut Build<'_, '_, '_>) -> Option<Self>;

    /// Adds the templates and JSON templates the step renders.
    fn reads<'s>(&'s self, _reads: &mut Reads<'s>) {}

    /// The values the step sets for the steps after it.
    fn extracts(&self) -> &[Extraction] {
        &[]
    }

    /// A variable the step sets other than by `extract` (webrtc's `save_as`).
    fn sets(&self) -> Option<&str> {
        None
    }

    /// The whole error when the step's timeout or the probe's deadline ran out (`which` says
    /// which, `waited` how long), for a kind whose running out of time is a failure of its own
    /// (ws_expect's `no_match`); `None` leaves it to the engine.
    fn timed_out(&self, _ctx: &RunContext<'_>, _waited: &str, _which: &str) -> Option<StepError> {
        None
    }

    /// What the step was doing when time ran out, for the engine's `timed out after 5.0 s
    /// <waiting> (the step's timeout)`. Asked only when no connection phase (DNS, TCP, TLS) nor
    /// WebRTC phase was under way: the engine names those itself.
    fn waiting(&self, _ctx: &RunContext<'_>) -> &'static str {
        "in the step"
    }

    /// One run of the step (`connection`: the websocket it uses, for a kind on one).
    async fn run(&self, ctx: &mut RunContext<'_>, connection: &str) -> Result<(), StepError>;
}

/// What a step's templates read: each variable must be set by then.
#[derive(Default)]
pub(crate) struct Reads<'s> {
    pub templates: Vec<&'s Template>,
    /// JSON whose strings are templates.
    pub json: Vec<&'s serde_json::Value>,
}

/// One step being validated: where to report, and what the step's kind may need to know.
pub(crate) struct Build<'c, 'a, 'i> {
    pub ctx: &'c mut Ctx<'a>,
    /// `steps[2]`: in front of each of the step's keys in an error.
    pub prefix: String,
    /// The kind's name (`ws_send`), for its errors.
    pub kind: &'static str,
    /// Where the step's `name` is written: the place of a problem that has no key of its own
    /// (a key that is missing).
    pub name: Range<usize>,
    /// `[defaults] max_frames`.
    pub max_frames: usize,
    /// The protocol of the websocket the step uses, when an earlier ws_connect opened it.
    pub protocol: Option<ProtocolKind>,
    pub(crate) table: Spanned<DeTable<'i>>,
    /// A table that is not of its type (`max_frames = "x"`): the file is not read further.
    pub(crate) broken: &'c mut Vec<ConfigError>,
}

impl<'i> Build<'_, '_, 'i> {
    /// `steps[2].key`.
    pub fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.prefix)
    }

    /// The step's keys that `T` declares, read as `T`.
    pub fn read<T: serde::de::DeserializeOwned>(&mut self) -> Option<T> {
        let keys = table_keys::<T>();
        let own: DeTable<'i> = self
            .table
            .get_ref()
            .iter()
            .filter(|(k, _)| keys.contains(&k.get_ref().as_ref()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let table = Spanned::new(self.table.span(), DeValue::Table(own));
        // Every key left is `T`'s: only a wrong type or a missing key can fail here.
        crate::diag::from_table(self.ctx.file, table, |_, _, _| {})
            .map_err(|e| self.broken.push(e))
            .ok()
    }

    /// The step's keys, each with the span of its value.
    pub fn written(&self) -> impl Iterator<Item = (&str, Range<usize>)> {
        self.table
            .get_ref()
            .iter()
            .map(|(k, v)| (k.get_ref().as_ref(), v.span()))
    }

    /// On a connection of `protocol`, a key of `framed` (every protocol's keys for this kind)
    /// that is not one of `allowed` (this protocol's) is refused.
    pub fn protocol_keys(&mut self, framed: &[&str], allowed: &[&str]) {
        let Some(p) = self.protocol else {
            return;
        };
        let wrong: Vec<(String, Range<usize>)> = self
            .written()
            .filter(|(k, _)| framed.contains(k) && !allowed.contains(k))
            .map(|(k, span)| (k.to_string(), span))
            .collect();
        for (key, span) in wrong {
            let message = format!(
                "`{key}` does not apply to {} on {} connection",
                with_article(self.kind),
                with_article(&format!("`{}`", p.as_str()))
            );
            let key = self.key(&key);
            self.ctx.error(Some(span), key, message);
        }
    }
}
