//! A probe file (`probes/*.toml`, read by `config`) -> [`ProbePlan`], with every check
//! `joincanary check` promises: its own keys here, each step's by its kind (`steps.rs`).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::defaults::Defaults;
use super::plan::{
    ProbePlan, RESIDENT_CONFIRM_DELAY, RESIDENT_EVERY, RESIDENT_KEEPALIVE,
    RESIDENT_MAX_SESSION_AGE, RESIDENT_RECONNECT_AFTER, RESIDENT_RECONNECT_MIN, ResidentPlan,
    StepPlan, derive_jitter,
};
use super::steps::{self, Sections, StepHead};
use crate::alerting::PolicyConfig;
use crate::alerting::RawAlerting;
use crate::diag::{ConfigError, Ctx, EnvSource, S, SourceFile, parse_toml, valid_label};
use crate::report::with_article;
use crate::schedule::{Schedule, every_minute, schedule, timezone};
use crate::template::{BUILTINS, Template};

/// `probes/*.toml`: one flow.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub name: Option<S<String>>,
    pub description: Option<String>,
    pub schedule: Option<S<String>>,
    pub timezone: Option<S<String>>,
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub timeout: Option<S<String>>,
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub jitter: Option<S<String>>,
    pub max_body_bytes: Option<S<i64>>,
    /// Extra trusted CA certificates (PEM), relative to the probe file: for platforms behind
    /// an internal CA.
    pub ca_file: Option<S<String>>,
    #[serde(default)]
    pub variables: BTreeMap<String, S<String>>,
    /// `[tokens.NAME]`: credentials minted per run, read by [`super::tokens::build`] from the
    /// tables as written (each kind has its own keys); here only accepted as a table.
    #[serde(default)]
    pub tokens: BTreeMap<String, serde::de::IgnoredAny>,
    pub steps: S<Vec<S<StepHead>>>,
    pub alerting: Option<RawAlerting>,
    /// `scheduled` (default: `steps` run on `schedule`) or `resident`: `steps` open a session
    /// that stays open, and `exchange` runs on it every `resident.every`.
    pub mode: Option<S<String>>,
    /// `mode = "resident"`: cadence, session age, keepalive and reconnect settings.
    pub resident: Option<S<RawResident>>,
    /// `mode = "resident"`: the steps run every `resident.every` on the open session; each
    /// exchange is one run.
    pub exchange: Option<S<Vec<S<StepHead>>>>,
    /// `mode = "resident"`: steps run when a session ends (rotation, reload, stop); they never
    /// fail a run.
    pub teardown: Option<S<Vec<S<StepHead>>>>,
}

/// `[resident]` of a `mode = "resident"` probe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResident {
    /// Time between two exchanges (default 5s).
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub every: Option<S<String>>,
    /// A session older than this is closed and opened anew (default 1h).
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub max_session_age: Option<S<String>>,
    /// A websocket ping on every connection of an idle session this often (default 15s).
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub keepalive: Option<S<String>>,
    /// Deadline of opening a session (the `steps`; default: `[defaults] timeout`).
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub setup_timeout: Option<S<String>>,
    /// First reconnect delay bound (default 1s); doubles per failed attempt, full jitter.
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub reconnect_min: Option<S<String>>,
    /// Cap of the reconnect delay (default 60s).
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub reconnect_max: Option<S<String>>,
    /// Failed exchanges in a row on an open session before it is re-established (default 3).
    pub reconnect_after: Option<S<i64>>,
}

/// Builds one probe file. Returns `None` when the file is unusable; errors go to `errors`.
pub fn build(
    file: &SourceFile,
    env: &dyn EnvSource,
    defaults: &Defaults,
    alerting: &PolicyConfig,
    pager_names: &[String],
    region: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<ProbePlan> {
    let path = file.path.as_path();
    let raw: RawProbe = parse_toml(file, errors)?;
    let before = errors.len();
    let mut ctx = Ctx {
        file,
        env,
        errors,
        env_values: Vec::new(),
    };

    // `None`: its `${VAR}` could not be read, which is already the error to report.
    let name = match &raw.name {
        Some(n) => ctx.env_str(n, "name"),
        None => Some(
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
    };
    if let Some(name) = name.as_ref().filter(|n| !valid_label(n)) {
        let span = raw.name.as_ref().map(|n| n.span());
        ctx.error(
            span,
            "name",
            format_args!("`{name}` must be letters, digits, `-`, `_` or `.`"),
        );
    }
    let name = name.unwrap_or_default();
    let tz = raw
        .timezone
        .as_ref()
        .and_then(|t| timezone(&mut ctx, t, "timezone"));
    let schedule_plan = match &raw.schedule {
        Some(s) => schedule(&mut ctx, s, tz.or(defaults.schedule.timezone), "schedule"),
        None => Some(Schedule {
            timezone: tz.or(defaults.schedule.timezone),
            ..defaults.schedule.clone()
        }),
    };
    let mut resident = resident_settings(&mut ctx, &raw, defaults);
    let (schedule_plan, timeout) =
        timing(&mut ctx, &raw, defaults, schedule_plan, resident.as_ref());
    let max_jitter = raw
        .jitter
        .as_ref()
        .and_then(|t| ctx.duration_or_zero(t, "jitter"))
        .unwrap_or(defaults.jitter);
    let max_body_bytes = raw
        .max_body_bytes
        .as_ref()
        .and_then(|v| ctx.positive_at_most(v, "max_body_bytes", super::defaults::MAX_BODY_BYTES))
        .unwrap_or(defaults.max_body_bytes);

    let ca_certs = raw
        .ca_file
        .as_ref()
        .and_then(|f| ca_file(&mut ctx, f, path))
        .unwrap_or_default();
    let tls = (!ca_certs.is_empty()).then(|| crate::net::tls_client_config(ca_certs));

    let variables = variables(&mut ctx, &raw);
    let tokens = super::tokens::build(&mut ctx, &raw.variables.keys().cloned().collect());
    let mut defined: HashSet<String> = BUILTINS.iter().map(|s| s.to_string()).collect();
    defined.extend(raw.variables.keys().cloned());
    // Every token named, minted or not: one whose table is wrong is that error, not a second
    // one at each step that reads it.
    defined.extend(raw.tokens.keys().cloned());

    let mut steps = Vec::new();
    let mut sections = Sections::new(defined);
    if raw.steps.get_ref().is_empty() {
        ctx.error(
            Some(raw.steps.span()),
            "steps",
            "a probe needs at least one step",
        );
    }
    // Each step's table is read by its kind, from the file as written (with its spans).
    steps::build_steps(
        &mut ctx,
        "steps",
        raw.steps.get_ref(),
        steps::tables(file, "steps"),
        defaults,
        &mut sections,
        &mut steps,
    );
    if let Some(r) = &mut resident {
        resident_steps(&mut ctx, &raw, defaults, &mut sections, r);
    }
    // A step table that does not read as its kind's (a key no kind has, a value of the wrong
    // type) is a TOML error: as in any other table, the first is the file's one error.
    if let Some(first) = sections.broken.iter().min_by_key(|e| (e.line, e.column)) {
        let first = first.clone();
        ctx.errors.truncate(before);
        ctx.errors.push(first);
        return None;
    }

    let probe_alerting = alerting_of(
        &mut ctx,
        &raw,
        alerting,
        pager_names,
        resident.as_ref(),
        &steps,
    );

    // A value that is a whole URL (`url = "${HOOK_URL}"`) is scrubbed by its parts that may
    // be secret (user info, path, query, fragment), so its host and port are still shown. Only
    // a `scheme://host` URL: `canary:hunter2` parses as a URL of scheme `canary` too, and is a
    // password.
    let secrets: Vec<String> = ctx
        .env_values
        .drain(..)
        .flat_map(|v| {
            if crate::redact::is_address_url(&v) {
                crate::redact::url_secret_parts(&v)
            } else {
                vec![v]
            }
        })
        .filter(|v| v.len() >= 4)
        .collect();
    let failed = ctx.errors.len() > before;
    let jitter = derive_jitter(region, &name, max_jitter);
    if failed {
        return None;
    }
    // A plan lives as long as the service, once per probe: no spare step slots (a 5-step
    // probe would keep room for 8, ~1.3 KB).
    steps.shrink_to_fit();
    Some(ProbePlan {
        name,
        description: raw.description.clone(),
        source: path.to_path_buf(),
        schedule: schedule_plan?,
        timeout,
        jitter,
        max_body_bytes,
        tls,
        variables,
        tokens,
        steps,
        redactor: crate::redact::Redactor::new(secrets),
        alerting: probe_alerting,
        resident,
    })
}

/// When a probe runs and for how long: a resident probe's schedule (it runs every
/// `resident.every`, not on one) and each run's deadline, which must be shorter than the
/// schedule's interval.
fn timing(
    ctx: &mut Ctx<'_>,
    raw: &RawProbe,
    defaults: &Defaults,
    schedule_plan: Option<Schedule>,
    resident: Option<&ResidentPlan>,
) -> (Option<Schedule>, Duration) {
    let schedule_plan = match resident {
        Some(r) => {
            if let Some(s) = &raw.schedule {
                ctx.error(
                    Some(s.span()),
                    "schedule",
                    "a resident probe runs every `resident.every`, not on a schedule",
                );
            }
            Some(Schedule {
                expr: format!("resident, every {}", humantime::format_duration(r.every)),
                timezone: None,
                ..every_minute()
            })
        }
        None => schedule_plan,
    };
    // A resident probe's `timeout` is each exchange's deadline: by default one cadence.
    let timeout = raw
        .timeout
        .as_ref()
        .and_then(|t| ctx.duration(t, "timeout"))
        .unwrap_or_else(|| match resident {
            Some(r) => defaults.timeout.min(r.every),
            None => defaults.timeout,
        });
    // The system's time, not the service's clock: the file is checked when it is read, and the
    // answer is the schedule's shape (its shortest gap over the next fires), not an instant.
    if let Some(sched) = &schedule_plan
        && resident.is_none()
        && let Some(interval) = sched.min_interval(chrono::Utc::now(), 60)
        && timeout >= interval
    {
        // At the one of them written here (the deadline first), keyed by it.
        let (key, span) = match (&raw.timeout, &raw.schedule) {
            (Some(t), _) => ("timeout", Some(t.span())),
            (None, Some(s)) => ("schedule", Some(s.span())),
            (None, None) => ("timeout", None),
        };
        // Either value may come from the service config's [defaults], which this file's
        // position cannot show: say so, where it is written there, and what to change.
        let from_defaults = |here: bool, at: &Option<String>| match (here, at) {
            (true, _) => String::new(),
            (false, Some(at)) => format!(" from [defaults] at {at}"),
            (false, None) => " from [defaults]".to_string(),
        };
        ctx.error(
            span,
            key,
            format_args!(
                "the probe deadline ({}{}) must be shorter than the schedule's interval ({}{}), or runs would overlap: set a shorter `timeout` or a sparser `schedule`{}",
                humantime::format_duration(timeout),
                from_defaults(raw.timeout.is_some(), &defaults.timeout_at),
                humantime::format_duration(interval),
                from_defaults(raw.schedule.is_some(), &defaults.schedule_at),
                if raw.timeout.is_some() && raw.schedule.is_some() {
                    ""
                } else {
                    " in this file or in the service config's [defaults]"
                },
            ),
        );
    }
    (schedule_plan, timeout)
}

/// `[variables]`, each a template that may read the built-ins only: that keeps them
/// order-independent.
fn variables(ctx: &mut Ctx<'_>, raw: &RawProbe) -> Vec<(String, Template)> {
    let mut variables = Vec::new();
    for (var, value) in &raw.variables {
        let key = format!("variables.{var}");
        if BUILTINS.contains(&var.as_str()) {
            ctx.error(
                Some(value.span()),
                &key,
                format_args!("`{var}` is a built-in and cannot be redefined"),
            );
            continue;
        }
        if let Some(t) = ctx.template(value, &key) {
            for used in t.vars() {
                if !BUILTINS.contains(&used) {
                    ctx.error(
                        Some(value.span()),
                        &key,
                        format_args!(
                            "variables may use only the built-ins ({}), not `{used}`",
                            BUILTINS.join(", ")
                        ),
                    );
                }
            }
            variables.push((var.clone(), t));
        }
    }
    variables
}

/// The probe's `[alerting]` over the service's, a resident probe's own `confirm_delay`, and
/// every latency budget naming a step the probe has.
fn alerting_of(
    ctx: &mut Ctx<'_>,
    raw: &RawProbe,
    alerting: &PolicyConfig,
    pager_names: &[String],
    resident: Option<&ResidentPlan>,
    steps: &[StepPlan],
) -> PolicyConfig {
    let mut probe_alerting = match &raw.alerting {
        Some(a) => PolicyConfig::build(ctx, a, Some(alerting), "alerting", pager_names),
        None => alerting.clone(),
    };
    if resident.is_some()
        && raw
            .alerting
            .as_ref()
            .is_none_or(|a| a.confirm_delay.is_none())
    {
        probe_alerting.confirm_delay = RESIDENT_CONFIRM_DELAY;
    }
    let exchange_steps = resident.into_iter().flat_map(|r| r.exchange.iter());
    let all_names: Vec<&String> = steps
        .iter()
        .chain(exchange_steps)
        .map(|s| &s.name)
        .collect();
    // The probe's own budgets replace the service's: a budget is this file's when the file
    // has any, and then it is placed at its own key.
    let own = raw.alerting.as_ref().filter(|a| !a.budgets.is_empty());
    for budget_step in probe_alerting.budgets.keys() {
        if !all_names.contains(&budget_step) && !steps.is_empty() {
            let names: Vec<&str> = all_names.iter().map(|n| n.as_str()).collect();
            match own {
                Some(a) => {
                    let written = a
                        .budgets
                        .iter()
                        .find(|(k, _)| crate::alerting::budget_target(k).0 == budget_step);
                    ctx.error(
                        written.map(|(_, v)| v.span()),
                        written.map_or("alerting.budgets".to_string(), |(k, _)| {
                            format!("alerting.budgets.{k}")
                        }),
                        format_args!(
                            "no step is named `{budget_step}` (this probe's steps: {})",
                            names.join(", ")
                        ),
                    );
                }
                None => ctx.error(
                    None,
                    "alerting.budgets",
                    format_args!(
                        "the service config's [alerting.budgets]{} names step `{budget_step}`, which this probe does not have (its steps: {}); give this probe its own [alerting.budgets], or move that budget to the probe files that have the step",
                        probe_alerting
                            .budget_places
                            .get(budget_step)
                            .map_or_else(String::new, |at| format!(" ({at})")),
                        names.join(", ")
                    ),
                ),
            }
        }
    }

    probe_alerting
}

/// `mode` and `[resident]`: the settings of a resident probe (its steps come later), or `None`
/// for a scheduled one. Resident-only keys on a scheduled probe are errors.
fn resident_settings(
    ctx: &mut Ctx<'_>,
    raw: &RawProbe,
    defaults: &Defaults,
) -> Option<ResidentPlan> {
    let resident = match &raw.mode {
        None => false,
        Some(m) => match m.get_ref().as_str() {
            "scheduled" => false,
            "resident" => true,
            other => {
                ctx.error(
                    Some(m.span()),
                    "mode",
                    format_args!(
                        "unknown mode `{other}`{}, expected `scheduled` or `resident`",
                        crate::diag::did_you_mean_among(other, ["scheduled", "resident"])
                    ),
                );
                false
            }
        },
    };
    if !resident {
        let stray = [
            ("resident", raw.resident.as_ref().map(|r| r.span())),
            ("exchange", raw.exchange.as_ref().map(|r| r.span())),
            ("teardown", raw.teardown.as_ref().map(|r| r.span())),
        ];
        for (key, span) in stray {
            if let Some(span) = span {
                ctx.error(
                    Some(span),
                    key,
                    format_args!("`{key}` applies to `mode = \"resident\"` only"),
                );
            }
        }
        return None;
    }
    let r = raw.resident.as_ref().map(|r| r.get_ref());
    let mut dur = |value: Option<&S<String>>, key: &str, default: Duration| {
        value
            .and_then(|v| ctx.duration(v, &format!("resident.{key}")))
            .unwrap_or(default)
    };
    let every = dur(r.and_then(|r| r.every.as_ref()), "every", RESIDENT_EVERY);
    let max_session_age = dur(
        r.and_then(|r| r.max_session_age.as_ref()),
        "max_session_age",
        RESIDENT_MAX_SESSION_AGE,
    );
    let keepalive = dur(
        r.and_then(|r| r.keepalive.as_ref()),
        "keepalive",
        RESIDENT_KEEPALIVE,
    );
    let setup_timeout = dur(
        r.and_then(|r| r.setup_timeout.as_ref()),
        "setup_timeout",
        defaults.timeout,
    );
    let reconnect_min = dur(
        r.and_then(|r| r.reconnect_min.as_ref()),
        "reconnect_min",
        RESIDENT_RECONNECT_MIN,
    );
    let reconnect_max = dur(
        r.and_then(|r| r.reconnect_max.as_ref()),
        "reconnect_max",
        every.max(reconnect_min),
    );
    let reconnect_after = r
        .and_then(|r| r.reconnect_after.as_ref())
        .and_then(|v| ctx.positive(v, "resident.reconnect_after"))
        .map_or(RESIDENT_RECONNECT_AFTER, |n| {
            u32::try_from(n).unwrap_or(u32::MAX)
        });
    // Each pair at the key of it written here, the other named with its value.
    let table = raw.resident.as_ref().map(|r| r.span());
    let at = |v: Option<&S<String>>| v.map(|v| v.span());
    if reconnect_min > reconnect_max {
        match at(r.and_then(|r| r.reconnect_min.as_ref())) {
            Some(span) => ctx.error(
                Some(span),
                "resident.reconnect_min",
                format_args!(
                    "must not be longer than `reconnect_max` ({})",
                    humantime::format_duration(reconnect_max)
                ),
            ),
            None => ctx.error(
                at(r.and_then(|r| r.reconnect_max.as_ref())).or(table.clone()),
                "resident.reconnect_max",
                format_args!(
                    "must not be shorter than `reconnect_min` ({})",
                    humantime::format_duration(reconnect_min)
                ),
            ),
        }
    }
    if max_session_age <= every {
        let written = at(r.and_then(|r| r.max_session_age.as_ref()));
        match written {
            Some(span) => ctx.error(
                Some(span),
                "resident.max_session_age",
                format_args!(
                    "must be longer than `every` ({}), or every exchange would open a session",
                    humantime::format_duration(every)
                ),
            ),
            None => ctx.error(
                at(r.and_then(|r| r.every.as_ref())).or(table),
                "resident.every",
                format_args!(
                    "must be shorter than `max_session_age` ({}, the default), or every exchange would open a session",
                    humantime::format_duration(max_session_age)
                ),
            ),
        }
    }
    Some(ResidentPlan {
        every,
        max_session_age,
        keepalive,
        setup_timeout,
        reconnect_min,
        reconnect_max,
        reconnect_after,
        exchange: Vec::new(),
        teardown: Vec::new(),
    })
}

/// `[[exchange]]` and `[[teardown]]` of a resident probe. An exchange neither opens nor closes
/// a connection: the session does (`steps`, `teardown`), so every exchange finds it as the
/// last one left it.
fn resident_steps(
    ctx: &mut Ctx<'_>,
    raw: &RawProbe,
    defaults: &Defaults,
    sections: &mut Sections,
    plan: &mut ResidentPlan,
) {
    let exchange = raw.exchange.as_ref().map_or(&[][..], |e| e.get_ref());
    if exchange.is_empty() {
        ctx.error(
            raw.exchange
                .as_ref()
                .map(|e| e.span())
                .or(raw.mode.as_ref().map(|m| m.span())),
            "exchange",
            "a resident probe needs at least one `[[exchange]]` step",
        );
    }
    for (i, step) in exchange.iter().enumerate() {
        let kind = step.get_ref().kind.get_ref().as_str();
        if kind == "ws_connect" || kind == "ws_close" {
            ctx.error(
                Some(step.get_ref().kind.span()),
                format!("exchange[{i}].kind"),
                format_args!(
                    "{} belongs in `[[steps]]` (opening the session) or `[[teardown]]`, not in an exchange",
                    with_article(kind)
                ),
            );
        }
    }
    steps::build_steps(
        ctx,
        "exchange",
        exchange,
        steps::tables(ctx.file, "exchange"),
        defaults,
        sections,
        &mut plan.exchange,
    );
    let teardown = raw.teardown.as_ref().map_or(&[][..], |t| t.get_ref());
    steps::build_steps(
        ctx,
        "teardown",
        teardown,
        steps::tables(ctx.file, "teardown"),
        defaults,
        sections,
        &mut plan.teardown,
    );
}

/// Reads a PEM bundle of extra trusted CAs.
fn ca_file(
    ctx: &mut Ctx<'_>,
    value: &S<String>,
    probe_path: &Path,
) -> Option<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let rel = ctx.env_str(value, "ca_file")?;
    let path = probe_path.parent().unwrap_or(Path::new(".")).join(&rel);
    let bytes = match crate::diag::file::read_bytes(&path) {
        Ok(b) => b,
        Err(e) => {
            ctx.error(
                Some(value.span()),
                "ca_file",
                format_args!("cannot read `{}`: {e}", path.display()),
            );
            return None;
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        ctx.error(
            Some(value.span()),
            "ca_file",
            format_args!("`{}` holds no PEM certificate", path.display()),
        );
        return None;
    }
    Some(certs)
}
