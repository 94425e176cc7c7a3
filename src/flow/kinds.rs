//! The step kinds: the one list of them ([`kinds!`] below), and reading a probe's steps.
//!
//! A kind is one file under `flow/` that owns its table, its validation and its run, as
//! `impl Kind for <Kind>Spec`:
//! - `type Raw`: the kind's own keys, a `#[serde(deny_unknown_fields)]` struct of `Spanned`
//!   fields, read from the step's table once `kind` is known. The keys every step has (`name`,
//!   `kind`, `timeout`, `cleanup`, and `connection` for a kind on a websocket) are read here,
//!   into [`StepHead`].
//! - `build(raw, &mut Build) -> Option<Self>`: every check `joincanary check` promises, each
//!   problem reported through [`Build`] with file, line and key.
//! - `reads` and `extracts`: the variables its templates read and the ones it sets.
//! - `run`: one run of the step; the engine (`flow/mod.rs`) holds its timeout and deadline.
//!
//! To add a kind: write `flow/<kind>.rs`, name it in [`crate::report::StepKind`], add one line
//! to `kinds!` below, and document and test its keys. No list of keys is kept by hand: a key
//! another kind takes gets "`x` does not apply to a <kind> step", any other key "unknown field
//! `x`, expected one of …" with the keys this kind takes, both read from the `Raw` types.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::parts::Extraction;
use super::plan::{Defaults, StepPlan};
use super::protocol::ProtocolKind;
use super::{RunContext, StepError};
use crate::diag::{ConfigError, Ctx, S, table_keys, valid_label};
use crate::report::StepKind;
use crate::template::{self, Template};

macro_rules! kinds {
    ($($kind:ident($spec:ty),)*) => {
        /// A validated step, one variant per kind.
        #[derive(Debug, Clone)]
        pub enum StepSpec {
            $($kind($spec),)*
        }

        impl StepSpec {
            fn build(kind: StepKind, b: &mut Build<'_, '_, '_>) -> Option<StepSpec> {
                match kind {
                    $(StepKind::$kind => build::<$spec>(b).map(StepSpec::$kind),)*
                }
            }

            /// The keys of `kind`'s own table.
            fn keys(kind: StepKind) -> Vec<&'static str> {
                match kind {
                    $(StepKind::$kind => <$spec as Kind>::keys(),)*
                }
            }

            fn websocket(kind: StepKind) -> Websocket {
                match kind {
                    $(StepKind::$kind => <$spec as Kind>::WEBSOCKET,)*
                }
            }

            fn reads<'s>(&'s self, reads: &mut Reads<'s>) {
                match self {
                    $(StepSpec::$kind(s) => s.reads(reads),)*
                }
            }

            fn extracts(&self) -> &[Extraction] {
                match self {
                    $(StepSpec::$kind(s) => s.extracts(),)*
                }
            }

            /// Runs on a websocket an earlier step opened.
            pub(crate) fn uses_connection(&self) -> bool {
                match self {
                    $(StepSpec::$kind(_) => <$spec as Kind>::WEBSOCKET == Websocket::Uses,)*
                }
            }

            pub(crate) async fn run(
                &self,
                ctx: &mut RunContext<'_>,
                step: &StepPlan,
            ) -> Result<(), StepError> {
                match self {
                    $(StepSpec::$kind(s) => s.run(ctx, step).await,)*
                }
            }
        }
    };
}

kinds! {
    Http(super::http::HttpSpec),
    WsConnect(super::ws::WsConnectSpec),
    WsSend(super::ws::SendSpec),
    WsExpect(super::ws::ExpectSpec),
    WsClose(super::ws::CloseSpec),
    Redis(super::redis::RedisSpec),
    HttpJson(super::http_json::HttpJsonSpec),
}

/// How a kind stands to the websockets of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Websocket {
    /// It has none (`connection` is not its key).
    None,
    /// It opens one (ws_connect).
    Opens,
    /// It needs one an earlier step opened.
    Uses,
}

/// One step kind: its table, its validation and its run (see the module's doc).
pub(crate) trait Kind: Sized {
    /// The kind's own keys (`#[serde(deny_unknown_fields)]`, `Spanned` fields).
    type Raw: for<'de> Deserialize<'de>;
    /// Whether the step runs on a websocket: then `connection` is one of its keys.
    const WEBSOCKET: Websocket = Websocket::None;

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

    /// One run of the step.
    async fn run(&self, ctx: &mut RunContext<'_>, step: &StepPlan) -> Result<(), StepError>;
}

/// What a step's templates read: each variable must be set by then.
#[derive(Default)]
pub(crate) struct Reads<'s> {
    pub templates: Vec<&'s Template>,
    /// JSON whose strings are templates.
    pub json: Vec<&'s serde_json::Value>,
}

/// The keys every step has, read before its kind's own table. Other keys are left to the kind.
#[derive(Debug, Deserialize)]
pub struct StepHead {
    pub name: S<String>,
    pub kind: S<String>,
    pub timeout: Option<S<String>>,
    /// Runs after a failure too; never the run's failed step.
    pub cleanup: Option<S<bool>>,
    /// Which websocket a ws_* step uses (default: the unnamed one).
    pub connection: Option<S<String>>,
}

/// One step being validated: where to report, and what the step's kind may need to know.
pub(crate) struct Build<'c, 'a, 'i> {
    pub ctx: &'c mut Ctx<'a>,
    /// `steps[2]`: in front of each of the step's keys in an error.
    pub prefix: String,
    pub kind: StepKind,
    /// Where the step's `name` is written: the place of a problem that has no key of its own
    /// (a key that is missing).
    pub name: Range<usize>,
    pub defaults: &'c Defaults,
    /// The protocol of the websocket the step uses, when an earlier ws_connect opened it.
    pub protocol: Option<ProtocolKind>,
    table: Spanned<DeTable<'i>>,
    /// A table that is not of its type (`max_frames = "x"`): the file is not read further.
    broken: &'c mut Vec<ConfigError>,
}

impl<'i> Build<'_, '_, 'i> {
    /// `steps[2].key`.
    pub fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.prefix)
    }

    /// The step's keys that `T` declares, read as `T`.
    pub fn read<T: Deserialize<'i>>(&mut self) -> Option<T> {
        let keys = table_keys::<T>();
        let own: DeTable<'i> = self
            .table
            .get_ref()
            .iter()
            .filter(|(k, _)| keys.contains(&k.get_ref().as_ref()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let table = Spanned::new(self.table.span(), own);
        crate::diag::parse_table(self.ctx.file, table, self.broken)
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
                "`{key}` does not apply to a {} on a `{}` connection",
                self.kind.as_str(),
                p.as_str()
            );
            let key = self.key(&key);
            self.ctx.error(Some(span), key, message);
        }
    }
}

/// Reads the kind's table and builds it.
fn build<K: Kind>(b: &mut Build<'_, '_, '_>) -> Option<K> {
    let raw = b.read::<K::Raw>()?;
    K::build(raw, b)
}

/// The tables of the array `key` (`[[steps]]`, `[[exchange]]`, `[[teardown]]`) of a parsed
/// file, in order.
pub(crate) fn tables<'i>(doc: &Spanned<DeTable<'i>>, key: &str) -> Vec<Spanned<DeTable<'i>>> {
    let Some(value) = doc.get_ref().get(key) else {
        return Vec::new();
    };
    let DeValue::Array(items) = value.get_ref() else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|v| match v.get_ref() {
            DeValue::Table(t) => Some(Spanned::new(v.span(), t.clone())),
            _ => None,
        })
        .collect()
}

/// What the sections of a probe (`steps`, then `exchange` and `teardown`) share: step names are
/// unique across them, and a connection or value set in one is there for the next.
pub(crate) struct Sections {
    pub names: HashSet<String>,
    /// Open websockets by connection name, with their protocol: a ws_send's keys depend on it.
    pub open: BTreeMap<String, ProtocolKind>,
    /// Values set so far (built-ins, variables, extractions).
    pub defined: HashSet<String>,
    /// Tables that did not read as their types, or unknown keys: as a TOML error, the first of
    /// them is the file's one error.
    pub broken: Vec<ConfigError>,
}

impl Sections {
    pub fn new(defined: HashSet<String>) -> Sections {
        Sections {
            names: HashSet::new(),
            open: BTreeMap::new(),
            defined,
            broken: Vec::new(),
        }
    }
}

/// Builds one section's steps (`section` is its key: `steps`, `exchange`, `teardown`) from
/// their common keys (`heads`) and their tables.
pub(crate) fn build_steps(
    ctx: &mut Ctx<'_>,
    section: &str,
    heads: &[S<StepHead>],
    tables: Vec<Spanned<DeTable<'_>>>,
    defaults: &Defaults,
    sections: &mut Sections,
    steps: &mut Vec<StepPlan>,
) {
    for (i, (step, table)) in heads.iter().zip(tables).enumerate() {
        let prefix = format!("{section}[{i}]");
        let s = step.get_ref();
        if !sections.names.insert(s.name.get_ref().clone()) {
            ctx.error(
                Some(s.name.span()),
                format!("{prefix}.name"),
                format_args!("step name `{}` is used twice", s.name.get_ref()),
            );
        }
        if !valid_label(s.name.get_ref()) {
            ctx.error(
                Some(s.name.span()),
                format!("{prefix}.name"),
                "must be letters, digits, `-`, `_` or `.`",
            );
        }
        let Some(kind) = StepKind::parse(s.kind.get_ref()) else {
            let kinds: Vec<_> = StepKind::ALL.iter().map(|k| k.as_str()).collect();
            ctx.error(
                Some(s.kind.span()),
                format!("{prefix}.kind"),
                format_args!(
                    "unknown step kind `{}`, expected one of {}",
                    s.kind.get_ref(),
                    kinds.join(", ")
                ),
            );
            continue;
        };
        let connection = s
            .connection
            .as_ref()
            .map(|c| c.get_ref().clone())
            .unwrap_or_default();
        if let Some(c) = &s.connection
            && !valid_label(c.get_ref())
        {
            ctx.error(
                Some(c.span()),
                format!("{prefix}.connection"),
                "must be letters, digits, `-`, `_` or `.`",
            );
        }
        let table = own_keys(ctx, kind, &prefix, table, &mut sections.broken);
        let protocol = sections.open.get(&connection).copied();
        if StepSpec::websocket(kind) == Websocket::Uses && protocol.is_none() {
            let which = if connection.is_empty() {
                String::new()
            } else {
                format!(" for connection `{connection}`")
            };
            ctx.error(
                Some(s.kind.span()),
                format!("{prefix}.kind"),
                format_args!("needs a ws_connect step{which} before it"),
            );
        }
        let step_timeout = s
            .timeout
            .as_ref()
            .and_then(|t| ctx.duration(t, &format!("{prefix}.timeout")))
            .or(defaults.step_timeout);
        let mut b = Build {
            ctx,
            prefix,
            kind,
            name: s.name.span(),
            defaults,
            protocol,
            table,
            broken: &mut sections.broken,
        };
        let spec = StepSpec::build(kind, &mut b);
        let prefix = b.prefix;
        match (&spec, kind) {
            (Some(StepSpec::WsConnect(c)), _) => {
                sections.open.insert(connection.clone(), c.protocol);
            }
            (_, StepKind::WsClose) => {
                sections.open.remove(&connection);
            }
            _ => {}
        }
        if let Some(spec) = spec {
            let uses = check_vars(ctx, step, &spec, &sections.defined, &prefix);
            for var in spec.extracts() {
                sections.defined.insert(var.var.clone());
            }
            steps.push(StepPlan {
                name: s.name.get_ref().clone(),
                kind,
                timeout: step_timeout,
                spec,
                // Teardown runs when the session ends however it ended, and never fails a run.
                cleanup: section == "teardown" || s.cleanup.as_ref().is_some_and(|c| *c.get_ref()),
                connection,
                uses,
            });
        }
    }
}

/// The step's table, each key checked against `kind`'s and the ones every step has: a key
/// of another kind "does not apply" (a problem of the step, reported with the others), any
/// other key is unknown (as in every other table, the file's one TOML error).
fn own_keys<'i>(
    ctx: &mut Ctx<'_>,
    kind: StepKind,
    prefix: &str,
    table: Spanned<DeTable<'i>>,
    broken: &mut Vec<ConfigError>,
) -> Spanned<DeTable<'i>> {
    let head = table_keys::<StepHead>();
    let mut takes: Vec<&str> = head
        .iter()
        .copied()
        .filter(|k| *k != "connection" || StepSpec::websocket(kind) != Websocket::None)
        .collect();
    takes.extend(StepSpec::keys(kind));
    let mut wrong = Vec::new();
    for (key, value) in table.get_ref().iter() {
        let key_text: &str = key.get_ref().as_ref();
        if takes.contains(&key_text) {
            continue;
        }
        let elsewhere = StepKind::ALL.iter().any(|k| {
            StepSpec::keys(*k).contains(&key_text)
                || (key_text == "connection" && StepSpec::websocket(*k) != Websocket::None)
        });
        wrong.push((key_text.to_string(), key.span(), value.span(), elsewhere));
    }
    for (key, key_span, value_span, elsewhere) in wrong {
        if elsewhere {
            ctx.error(
                Some(value_span),
                format!("{prefix}.{key}"),
                format_args!("`{key}` does not apply to a {} step", kind.as_str()),
            );
        } else {
            let (line, column) = ctx.file.locate(key_span.start);
            let expected: Vec<String> = takes.iter().map(|k| format!("`{k}`")).collect();
            broken.push(ConfigError {
                file: ctx.file.path.clone(),
                line,
                column,
                key: Some(format!("{prefix}.{key}")),
                message: format!(
                    "unknown field `{key}`, expected one of {}",
                    expected.join(", ")
                ),
            });
        }
    }
    table
}

/// Every template a step reads must use only variables known at that point of the flow.
/// Returns the variables the step reads.
fn check_vars(
    ctx: &mut Ctx<'_>,
    step: &S<StepHead>,
    spec: &StepSpec,
    defined: &HashSet<String>,
    prefix: &str,
) -> Vec<String> {
    let mut reads = Reads::default();
    spec.reads(&mut reads);
    let mut used: Vec<String> = reads
        .templates
        .iter()
        .flat_map(|t| t.vars().map(str::to_string).collect::<Vec<_>>())
        .collect();
    for v in reads.json {
        for t in template::json_templates(v).unwrap_or_default() {
            used.extend(t.vars().map(str::to_string));
        }
    }
    let mut reported = HashSet::new();
    for var in &used {
        if !defined.contains(var) && reported.insert(var.clone()) {
            ctx.error(
                Some(step.span()),
                prefix,
                format_args!(
                    "step `{}` uses `{{{{{var}}}}}` before any step sets it (set it with `extract` in an earlier step or under [variables])",
                    step.get_ref().name.get_ref()
                ),
            );
        }
    }
    used.sort();
    used.dedup();
    used
}
