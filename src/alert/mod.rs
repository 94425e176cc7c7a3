//! Paging on-call: the policy that decides ([`policy`]), and the notifiers that deliver.
//!
//! Data flows one way: a `ProbeRun` goes through the policy, which may emit a [`Notification`];
//! the dispatcher hands it to every pager, each on its own queue with retries, so one pager
//! down never delays another.

pub mod alertmanager;
pub mod am_route;
pub mod dispatch;
pub mod email;
pub mod engine;
pub mod health;
pub mod limits;
pub mod notify;
pub mod opsgenie;
pub mod pagerduty;
pub mod policy;
pub mod render;
pub mod test_page;
pub mod webhook;

pub use dispatch::Dispatcher;
pub use notify::{DeliveryError, Notifier, Secret};
pub use test_page::test_page;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::raw::RawPager;
use crate::diag::Ctx;
use crate::diag::S;
use crate::report::FailureReason;

/// How bad: a broken flow pages (`critical`); a slow one warns (`warning`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
        }
    }
}

/// What a notification does to the incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Open (or, for a reminder, re-announce) the incident.
    Trigger,
    /// Close it.
    Resolve,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Trigger => "trigger",
            EventKind::Resolve => "resolve",
        }
    }
}

/// A link put in a page (status URL, dashboard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub text: String,
    pub href: String,
}

/// One page to deliver, provider-neutral. Built by the policy; every text field is already
/// free of secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub kind: EventKind,
    pub severity: Severity,
    /// Deterministic incident key: probe, region and severity (or the shared `group_key`).
    pub dedup_key: String,
    pub probe: String,
    pub region: String,
    /// One line, e.g. `sim-join failing in eu-west-1: step "signalling" server_error after 12 ms:
    /// OOM command not allowed … (login 42 ms, websocket 18 ms OK)`: the cause before the
    /// passed steps (see `report::cause_fragment`).
    pub summary: String,
    pub failed_step: Option<String>,
    pub reason: Option<FailureReason>,
    /// Structured details: the failing run's steps and timings, the last success's timings,
    /// how long it has been failing, the confirming runs.
    pub details: serde_json::Value,
    /// When the incident began (first failing run).
    pub started_at: DateTime<Utc>,
    /// When this notification was made.
    pub at: DateTime<Utc>,
    /// A reminder re-announces an open incident.
    pub reminder: bool,
    /// `joincanary test-page`: clearly marked, never a real incident.
    pub test: bool,
    pub links: Vec<Link>,
}

impl Notification {
    /// The details as indented text, for providers that show a text description.
    pub fn details_text(&self) -> String {
        match &self.details {
            serde_json::Value::Null => String::new(),
            v => serde_json::to_string_pretty(v).unwrap_or_default(),
        }
    }

    /// The `[FIRING critical]` / `[RESOLVED]` / `[TEST]` marker that starts text pages.
    pub fn marker(&self) -> String {
        if self.test {
            "[TEST]".to_string()
        } else {
            match self.kind {
                EventKind::Trigger => format!("[FIRING {}]", self.severity.as_str()),
                EventKind::Resolve => "[RESOLVED]".to_string(),
            }
        }
    }
}

/// Default per-request timeout of a pager.
pub const DEFAULT_PAGER_TIMEOUT: Duration = Duration::from_secs(10);

/// One configured, validated pager. `Debug` never shows a secret: they are [`Secret`]s, and
/// the redactor is left out.
#[derive(Clone)]
pub struct PagerPlan {
    pub name: String,
    pub kind: PagerKind,
    /// Per-request timeout (`timeout`, default 10 s).
    pub timeout: Duration,
    /// How undelivered notifications are retried.
    pub retry: RetryPolicy,
    /// Every secret value of this pager (and everything it took from the environment): scrubbed
    /// from every error message a delivery produces.
    pub redactor: crate::redact::Redactor,
}

impl std::fmt::Debug for PagerPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerPlan")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl PagerPlan {
    /// The provider's `type` word.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
}

/// Provider settings, validated.
#[derive(Debug, Clone)]
pub enum PagerKind {
    PagerDuty(pagerduty::PagerDuty),
    Opsgenie(opsgenie::Opsgenie),
    Alertmanager(alertmanager::Alertmanager),
    Slack(webhook::Slack),
    Webhook(webhook::Webhook),
    Email(email::Email),
}

impl PagerKind {
    pub const TYPES: [&'static str; 6] = [
        "pagerduty",
        "opsgenie",
        "alertmanager",
        "slack",
        "webhook",
        "email",
    ];

    pub fn type_name(&self) -> &'static str {
        match self {
            PagerKind::PagerDuty(_) => "pagerduty",
            PagerKind::Opsgenie(_) => "opsgenie",
            PagerKind::Alertmanager(_) => "alertmanager",
            PagerKind::Slack(_) => "slack",
            PagerKind::Webhook(_) => "webhook",
            PagerKind::Email(_) => "email",
        }
    }
}

/// Capped exponential backoff with jitter, for retryable failures only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First delay; doubles each attempt.
    pub base: Duration,
    /// Largest delay.
    pub cap: Duration,
    /// Give up once the notification is this old (default 1 h).
    pub max_age: Duration,
    /// Give up after this many attempts (default: no limit but `max_age`).
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            max_age: Duration::from_secs(3600),
            max_attempts: None,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (after `attempt` failures), with ±20% jitter.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let capped = crate::backoff::capped(self.base, self.cap, attempt.saturating_sub(1));
        crate::backoff::spread(capped, jitter, 0.2)
    }
}

/// Reads the keys every provider shares, then the provider's own, reporting every problem.
pub(crate) fn build_pagers(ctx: &mut Ctx<'_>, raw: &[S<RawPager>]) -> Vec<PagerPlan> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, p) in raw.iter().enumerate() {
        let key = |k: &str| format!("pager[{i}].{k}");
        let env_before = ctx.env_values.len();
        let name = p.get_ref().name.get_ref().trim().to_string();
        if name.is_empty() || name.chars().any(|c| c.is_control() || c == '"') {
            ctx.error(
                Some(p.get_ref().name.span()),
                key("name"),
                "must be a non-empty label without quotes or control characters",
            );
        } else if !names.insert(name.clone()) {
            ctx.error(
                Some(p.get_ref().name.span()),
                key("name"),
                format_args!("another pager is already named `{name}`"),
            );
        }
        let timeout = match &p.get_ref().timeout {
            Some(t) => ctx.duration(t, &key("timeout")),
            None => Some(DEFAULT_PAGER_TIMEOUT),
        };
        let r = p.get_ref();
        let kind = match r.kind.get_ref().as_str() {
            "pagerduty" => pagerduty::PagerDuty::build(ctx, p, i).map(PagerKind::PagerDuty),
            "opsgenie" => opsgenie::Opsgenie::build(ctx, p, i).map(PagerKind::Opsgenie),
            "alertmanager" => {
                alertmanager::Alertmanager::build(ctx, p, i).map(PagerKind::Alertmanager)
            }
            "slack" => webhook::Slack::build(ctx, p, i).map(PagerKind::Slack),
            "webhook" => webhook::Webhook::build(ctx, p, i).map(PagerKind::Webhook),
            "email" => email::Email::build(ctx, p, i).map(PagerKind::Email),
            other => {
                ctx.error(
                    Some(r.kind.span()),
                    key("type"),
                    format_args!(
                        "unknown pager type `{other}`; expected one of: {}",
                        PagerKind::TYPES.join(", ")
                    ),
                );
                None
            }
        };
        let mut retry = RetryPolicy::default();
        if let Some(v) = &r.retry_base
            && let Some(d) = ctx.duration(v, &key("retry_base"))
        {
            retry.base = d;
            retry.cap = retry.cap.max(d);
        }
        if let Some(v) = &r.retry_max_age
            && let Some(d) = ctx.duration(v, &key("retry_max_age"))
        {
            retry.max_age = d;
        }
        let Some(kind) = kind else { continue };
        let Some(timeout) = timeout else { continue };
        // Secrets written literally (not via `${ENV}`) must not leak either.
        let mut redactor =
            crate::redact::Redactor::new(ctx.env_values[env_before..].iter().cloned());
        for s in notify::secrets_of(&kind) {
            redactor.add(s);
        }
        out.push(PagerPlan {
            name,
            kind,
            timeout,
            retry,
            redactor,
        });
    }
    out
}

/// Keys a provider does not use: reported, so a typo'd setting is not silently ignored.
pub(crate) fn reject_keys(ctx: &mut Ctx<'_>, r: &RawPager, i: usize, allowed: &[&str]) {
    let present: [(&str, Option<std::ops::Range<usize>>); 16] = [
        ("url", r.url.as_ref().map(|v| v.span())),
        ("routing_key", r.routing_key.as_ref().map(|v| v.span())),
        ("api_key", r.api_key.as_ref().map(|v| v.span())),
        ("region", r.region.as_ref().map(|v| v.span())),
        ("priority", r.priority.as_ref().map(|v| v.span())),
        (
            "warning_priority",
            r.warning_priority.as_ref().map(|v| v.span()),
        ),
        ("headers", r.headers.values().next().map(|v| v.span())),
        (
            "resend_interval",
            r.resend_interval.as_ref().map(|v| v.span()),
        ),
        ("hold", r.hold.as_ref().map(|v| v.span())),
        ("host", r.host.as_ref().map(|v| v.span())),
        ("port", r.port.as_ref().map(|v| v.span())),
        ("tls", r.tls.as_ref().map(|v| v.span())),
        ("username", r.username.as_ref().map(|v| v.span())),
        ("password", r.password.as_ref().map(|v| v.span())),
        ("from", r.from.as_ref().map(|v| v.span())),
        ("to", r.to.as_ref().map(|v| v.span())),
    ];
    for (k, span) in present {
        if let Some(span) = span
            && !allowed.contains(&k)
        {
            ctx.error(
                Some(span),
                format!("pager[{i}].{k}"),
                format_args!("does not apply to {}", a_pager(r.kind.get_ref())),
            );
        }
    }
}

/// A required string key, `${ENV}`-substituted; reports its absence (at the pager's table).
pub(crate) fn required(
    ctx: &mut Ctx<'_>,
    pager: &S<RawPager>,
    value: Option<&S<String>>,
    i: usize,
    k: &str,
) -> Option<String> {
    let key = format!("pager[{i}].{k}");
    match value {
        Some(v) => non_empty(ctx, v, &key),
        None => {
            ctx.error(
                Some(pager.span()),
                key,
                format_args!(
                    "is required for {}",
                    a_pager(pager.get_ref().kind.get_ref())
                ),
            );
            None
        }
    }
}

/// "a `slack` pager", "an `email` pager".
pub(crate) fn a_pager(kind: &str) -> String {
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} `{kind}` pager")
}

/// An optional string key, `${ENV}`-substituted (`None` when absent or invalid; invalid is
/// reported).
pub(crate) fn optional(
    ctx: &mut Ctx<'_>,
    value: Option<&S<String>>,
    i: usize,
    k: &str,
) -> Option<String> {
    non_empty(ctx, value?, &format!("pager[{i}].{k}"))
}

fn non_empty(ctx: &mut Ctx<'_>, v: &S<String>, key: &str) -> Option<String> {
    let text = ctx.env_str(v, key)?;
    if text.trim().is_empty() {
        ctx.error(Some(v.span()), key, "must not be empty");
        return None;
    }
    Some(text.trim().to_string())
}

/// Checks an http(s) URL. The message never repeats the URL: webhook URLs are secrets.
pub(crate) fn check_url(
    ctx: &mut Ctx<'_>,
    text: String,
    span: Option<&S<String>>,
    i: usize,
    k: &str,
) -> Option<String> {
    match url::Url::parse(&text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(text),
        _ => {
            ctx.error(
                span.map(|s| s.span()),
                format!("pager[{i}].{k}"),
                "is not an http:// or https:// URL",
            );
            None
        }
    }
}

/// The links every page carries: the status page and the dashboard, when configured.
pub fn links(plan: &crate::config::Plan) -> Vec<Link> {
    let mut links = Vec::new();
    if let Some(u) = &plan.status_url {
        links.push(Link {
            text: "joincanary status".into(),
            href: u.clone(),
        });
    }
    if let Some(u) = &plan.dashboard_url {
        links.push(Link {
            text: "dashboard".into(),
            href: u.clone(),
        });
    }
    links
}

/// What a configured pager will cut or hash to stay within its provider's limits, found at load
/// (`check` prints these, `run` logs them): one per probe, pager and field, located at the
/// probe's `name`. Every such field is fitted deterministically when sent (see [`limits`]), so
/// none of these stops a page; they say what on-call will see instead of the full text.
pub fn limit_notes(plan: &crate::config::Plan) -> Vec<crate::diag::ConfigError> {
    let mut out = Vec::new();
    for p in &plan.probes {
        let (line, column) = name_position(&p.source);
        let mut note = |message: String| {
            out.push(crate::diag::ConfigError {
                file: p.source.clone(),
                line,
                column,
                key: Some("name".into()),
                message,
            });
        };
        let cx = policy::AlertContext {
            probe: &p.name,
            region: &plan.region,
            config: &p.alerting,
            links: &[],
        };
        let mut severities = vec![Severity::Critical];
        if !p.alerting.budgets.is_empty() {
            severities.push(Severity::Warning);
        }
        // The summary starts `{probe} failing in {region}: step ...`.
        let lead = format!("{} failing in {}: step", p.name, plan.region);
        for pager in &plan.pagers {
            let pages = p
                .alerting
                .pagers
                .as_ref()
                .is_none_or(|l| l.contains(&pager.name));
            if !p.alerting.enabled || !pages {
                continue;
            }
            let who = format!("{} pager `{}`", pager.type_name(), pager.name);
            let key_note = |key: &str, field: &str, max: usize| -> Option<String> {
                let n = limits::cost(key, limits::plain);
                (n > max).then(|| {
                    format!(
                        "{who}: the {field} is {n} characters, over the provider's {max}; it is sent hashed as `{}` (the same for trigger and resolve)",
                        limits::fit_key(key, max)
                    )
                })
            };
            let cut_note = |field: &str, max: usize| -> Option<String> {
                (limits::cost(&lead, limits::plain) > max).then(|| {
                    format!("{who}: the {field} is cut at {max} characters before it says which step failed; shorten the probe or region name")
                })
            };
            let notes: Vec<Option<String>> = match &pager.kind {
                PagerKind::PagerDuty(_) => severities
                    .iter()
                    .map(|s| key_note(&cx.dedup_key(*s), "dedup_key", limits::PD_DEDUP_KEY))
                    .chain([cut_note("summary", limits::PD_SUMMARY)])
                    .collect(),
                PagerKind::Opsgenie(_) => {
                    let mut v: Vec<Option<String>> = severities
                        .iter()
                        .map(|s| key_note(&cx.dedup_key(*s), "alias", limits::OG_ALIAS))
                        .collect();
                    for (what, tag) in [("probe", &p.name), ("region", &plan.region)] {
                        let n = limits::cost(tag, limits::plain);
                        v.push((n > limits::OG_TAG).then(|| {
                            format!(
                                "{who}: the {what} tag is {n} characters, over Opsgenie's {}; it is sent cut as `{}`",
                                limits::OG_TAG,
                                limits::fit_plain(tag, limits::OG_TAG)
                            )
                        }));
                    }
                    v.push(cut_note("message", limits::OG_MESSAGE));
                    v
                }
                _ => Vec::new(),
            };
            for n in notes.into_iter().flatten() {
                note(n);
            }
        }
    }
    out
}

/// Line and column of a probe file's top-level `name = ...` (before any table); 0, 0 when the
/// name comes from the file name.
pub(crate) fn name_position(path: &std::path::Path) -> (usize, usize) {
    // The config reader: the file may have been swapped for a FIFO since it loaded.
    let Ok(text) = crate::diag::file::read_text(path) else {
        return (0, 0);
    };
    for (i, l) in text.lines().enumerate() {
        let t = l.trim_start();
        if t.starts_with('[') {
            break;
        }
        if let Some(rest) = t.strip_prefix("name")
            && rest.trim_start().starts_with('=')
        {
            return (i + 1, l.len() - t.len() + 1);
        }
    }
    (0, 0)
}

/// A timestamp for people, to the millisecond: `2025-03-01 12:05:00.000 UTC`.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()
}

/// A notification for unit tests of the request builders.
#[cfg(test)]
pub(crate) fn sample(kind: EventKind) -> Notification {
    use chrono::TimeZone;
    let at = Utc
        .with_ymd_and_hms(2025, 3, 1, 12, 5, 0)
        .single()
        .unwrap_or_default();
    Notification {
        kind,
        severity: Severity::Critical,
        dedup_key: "joincanary/sim-join/eu-west-1/critical".into(),
        probe: "sim-join".into(),
        region: "eu-west-1".into(),
        summary: "sim-join failing in eu-west-1: step \"signalling\" no_match after 5.0 s".into(),
        failed_step: Some("signalling".into()),
        reason: Some(FailureReason::NoMatch),
        details: serde_json::json!({"steps": [{"name": "login", "ms": 42}]}),
        started_at: at - chrono::Duration::minutes(5),
        at,
        reminder: false,
        test: false,
        links: vec![Link {
            text: "status".into(),
            href: "http://canary.example/status".into(),
        }],
    }
}
