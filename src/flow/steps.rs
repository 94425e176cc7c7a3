//! Reading a probe's steps: the keys every step has ([`StepHead`]), each table checked against
//! its kind's keys and handed to the kind, names and connections and variables followed from
//! one step to the next.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::defaults::Defaults;
use super::kind::{Build, Reads, Websocket};
use super::kinds::StepKind;
use super::kinds::StepSpec;
use super::plan::StepPlan;
use super::protocol::ProtocolKind;
use crate::diag::{ConfigError, Ctx, S, SourceFile, array_tables, table_keys, valid_label};
use crate::report::with_article;
use crate::template;

/// The keys every step has, read before its kind's own table. Other keys are left to the kind.
#[derive(Debug, Deserialize)]
pub struct StepHead {
    pub name: S<String>,
    pub kind: S<String>,
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub timeout: Option<S<String>>,
    /// Runs after a failure too; never the run's failed step.
    pub cleanup: Option<S<bool>>,
    /// Which websocket a ws_* step uses (default: the unnamed one).
    pub connection: Option<S<String>>,
}

/// The tables of the array `key` (`[[steps]]`, `[[exchange]]`, `[[teardown]]`) of a probe
/// file, in order, with their spans.
pub(crate) fn tables<'f>(file: &'f SourceFile, key: &str) -> Vec<Spanned<DeTable<'f>>> {
    array_tables(file, key)
        .into_iter()
        .filter_map(|v| {
            let span = v.span();
            match v.into_inner() {
                DeValue::Table(t) => Some(Spanned::new(span, t)),
                _ => None,
            }
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
                    "unknown step kind `{}`{}, expected one of {}",
                    s.kind.get_ref(),
                    crate::diag::did_you_mean_among(s.kind.get_ref(), kinds.iter().copied()),
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
        if StepSpec::websocket(kind).uses() && protocol.is_none() {
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
            kind: kind.as_str(),
            name: s.name.span(),
            max_frames: defaults.max_frames,
            protocol,
            table,
            broken: &mut sections.broken,
        };
        let spec = StepSpec::build(kind, &mut b);
        let (prefix, table) = (b.prefix, b.table);
        match (&spec, StepSpec::websocket(kind)) {
            (Some(StepSpec::WsConnect(c)), _) => {
                sections.open.insert(connection.clone(), c.protocol);
            }
            (_, Websocket::Closes) => {
                sections.open.remove(&connection);
            }
            _ => {}
        }
        if let Some(spec) = spec {
            let uses = check_vars(ctx, step, &table, &spec, &sections.defined, &prefix);
            for var in spec.extracts() {
                sections.defined.insert(var.var.clone());
            }
            if let Some(var) = spec.sets() {
                sections.defined.insert(var.to_string());
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
        .filter(|k| *k != "connection" || StepSpec::takes_connection(kind))
        .collect();
    takes.extend(StepSpec::keys(kind));
    let mut wrong = Vec::new();
    for (key, value) in table.get_ref().iter() {
        let key_text: &str = key.get_ref().as_ref();
        if takes.contains(&key_text) {
            continue;
        }
        // The kinds that do take it: what the writer most likely meant.
        let elsewhere: Vec<&str> = StepKind::ALL
            .iter()
            .filter(|k| {
                StepSpec::keys(**k).contains(&key_text)
                    || (key_text == "connection" && StepSpec::takes_connection(**k))
            })
            .map(|k| k.as_str())
            .collect();
        wrong.push((key_text.to_string(), key.span(), value.span(), elsewhere));
    }
    for (key, key_span, value_span, elsewhere) in wrong {
        if !elsewhere.is_empty() {
            ctx.error(
                Some(value_span),
                format!("{prefix}.{key}"),
                format_args!(
                    "`{key}` does not apply to {} step (it is a key of {})",
                    with_article(kind.as_str()),
                    elsewhere.join(", ")
                ),
            );
        } else {
            let (line, column) = ctx.file.locate(key_span.start);
            let expected: Vec<String> = takes.iter().map(|k| format!("`{k}`")).collect();
            let expected = expected.join(", ");
            broken.push(ConfigError {
                file: ctx.file.path.clone(),
                line,
                column,
                key: Some(format!("{prefix}.{key}")),
                message: format!(
                    "unknown field `{key}`{}, expected one of {expected}",
                    crate::diag::did_you_mean(&key, &expected)
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
    table: &Spanned<DeTable<'_>>,
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
            // At the first value that reads it, else (a value the kind made) the step's table.
            let (key, at) = table
                .get_ref()
                .iter()
                .find_map(|(k, v)| reads_var(v, var, format!("{prefix}.{}", k.get_ref())))
                .unwrap_or_else(|| (prefix.to_string(), step.span()));
            ctx.error(
                Some(at),
                key,
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

/// The dotted key and span of the first string under `value` (written at `key`) that reads
/// `{{var}}`.
fn reads_var(
    value: &Spanned<DeValue<'_>>,
    var: &str,
    key: String,
) -> Option<(String, std::ops::Range<usize>)> {
    match value.get_ref() {
        DeValue::String(s) => template::Template::parse(s)
            .ok()
            .filter(|t| t.vars().any(|v| v == var))
            .map(|_| (key, value.span())),
        DeValue::Table(t) => t
            .iter()
            .find_map(|(k, v)| reads_var(v, var, format!("{key}.{}", k.get_ref()))),
        DeValue::Array(items) => items.iter().find_map(|v| reads_var(v, var, key.clone())),
        _ => None,
    }
}
