//! The pager kinds: [`KINDS`], the one list where a `[[pager]]` table's `type` picks the
//! kind's own table and parser, and the validated [`PagerPlan`] with its notifier. Adding a
//! provider is its file (its `pager_table!`, `build`, request builder) and a line in each
//! `match` here, which the compiler asks for.

use std::collections::HashSet;
use std::time::Duration;

use toml::Spanned;
use toml::de::DeValue;

use super::notify::{self, Notifier};
use super::table::{Common, Entry};
use super::{RetryPolicy, alertmanager, email, opsgenie, pagerduty, webhook};
use crate::diag::Ctx;
use crate::secret::Secret;

/// Default per-request timeout of a pager.
pub const DEFAULT_PAGER_TIMEOUT: Duration = Duration::from_secs(10);

/// One configured, validated pager. `Debug` never shows a secret: they are
/// [`crate::secret::Secret`]s, and the redactor is left out.
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
    /// `tls_config`: its own TLS settings; `None`, the shared client's (the system's roots).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
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

/// Reads a kind's table from a `[[pager]]` entry and validates it.
type Parse = fn(&mut Ctx<'_>, &Entry<'_>, Spanned<DeValue<'_>>) -> Option<PagerKind>;

/// Every pager kind: its `type` word and its parser (the kind's own `deny_unknown_fields`
/// table, read once `type` is known).
pub const KINDS: [(&str, Parse); 6] = [
    ("pagerduty", |c, e, t| {
        kind(c, e, t, pagerduty::PagerDuty::build, PagerKind::PagerDuty)
    }),
    ("opsgenie", |c, e, t| {
        kind(c, e, t, opsgenie::Opsgenie::build, PagerKind::Opsgenie)
    }),
    ("alertmanager", |c, e, t| {
        kind(
            c,
            e,
            t,
            alertmanager::Alertmanager::build,
            PagerKind::Alertmanager,
        )
    }),
    ("slack", |c, e, t| {
        kind(c, e, t, webhook::Slack::build, PagerKind::Slack)
    }),
    ("webhook", |c, e, t| {
        kind(c, e, t, webhook::Webhook::build, PagerKind::Webhook)
    }),
    ("email", |c, e, t| {
        kind(c, e, t, email::Email::build, PagerKind::Email)
    }),
];

/// Reads the kind's table `R`, then validates it with the kind's `build`.
fn kind<R: serde::de::DeserializeOwned, K>(
    ctx: &mut Ctx<'_>,
    e: &Entry<'_>,
    table: Spanned<DeValue<'_>>,
    build: fn(&mut Ctx<'_>, &Entry<'_>, &R) -> Option<K>,
    wrap: fn(K) -> PagerKind,
) -> Option<PagerKind> {
    let raw = e.read(ctx, table)?;
    build(ctx, e, &raw).map(wrap)
}

impl PagerKind {
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

/// The `[[pager]]` tables read and validated, every problem reported to `ctx`.
pub struct Pagers {
    pub plans: Vec<PagerPlan>,
    /// The name of every table that has one, valid or not: what `alerting.pagers` may name
    /// (a pager with a bad key is reported once, not again at each probe that names it).
    pub names: Vec<String>,
}

/// Reads the `[[pager]]` tables (from [`crate::diag::array_tables`]): the keys every provider
/// shares, then the provider's own, reporting every problem.
pub fn parse(ctx: &mut Ctx<'_>, tables: Vec<Spanned<DeValue<'_>>>) -> Pagers {
    let mut out = Pagers {
        plans: Vec::new(),
        names: Vec::new(),
    };
    let mut names = HashSet::new();
    for (i, table) in tables.into_iter().enumerate() {
        let common: Common = match crate::diag::from_table(ctx.file, table.clone(), |_, _, _| {}) {
            Ok(c) => c,
            Err(e) => {
                ctx.errors.push(e);
                continue;
            }
        };
        let e = Entry {
            i,
            span: table.span(),
            kind: common.kind.get_ref(),
        };
        let env_before = ctx.env_values.len();
        let name = common.name.get_ref().trim().to_string();
        out.names.push(name.clone());
        if name.is_empty() || name.chars().any(|c| c.is_control() || c == '"') {
            ctx.error(
                Some(common.name.span()),
                e.key("name"),
                "must be a non-empty label without quotes or control characters",
            );
        } else if !names.insert(name.clone()) {
            ctx.error(
                Some(common.name.span()),
                e.key("name"),
                format_args!("another pager is already named `{name}`"),
            );
        }
        let timeout = match &common.timeout {
            Some(t) => ctx.duration(t, &e.key("timeout")),
            None => Some(DEFAULT_PAGER_TIMEOUT),
        };
        let kind = match KINDS.iter().find(|(word, _)| *word == e.kind) {
            Some((_, parse)) => parse(ctx, &e, table),
            None => {
                ctx.error(
                    Some(common.kind.span()),
                    e.key("type"),
                    format_args!(
                        "unknown pager type `{}`{}; expected one of: {}",
                        e.kind,
                        crate::diag::did_you_mean_among(e.kind, KINDS.map(|(word, _)| word)),
                        KINDS.map(|(word, _)| word).join(", ")
                    ),
                );
                None
            }
        };
        let mut retry = RetryPolicy::default();
        if let Some(v) = &common.retry_base
            && let Some(d) = ctx.duration(v, &e.key("retry_base"))
        {
            retry.base = d;
            retry.cap = retry.cap.max(d);
        }
        if let Some(v) = &common.retry_max_age
            && let Some(d) = ctx.duration(v, &e.key("retry_max_age"))
        {
            retry.max_age = d;
        }
        let tls = match &common.tls_config {
            None => Some(None),
            Some(t) if matches!(&kind, Some(PagerKind::Email(m)) if m.tls == email::TlsMode::None) =>
            {
                ctx.error(
                    Some(t.span()),
                    e.key("tls_config"),
                    "does not apply with `tls = \"none\"` (an email pager uses TLS with \
                     `tls = \"starttls\"` or `tls = \"tls\"`)",
                );
                None
            }
            Some(t) => crate::tls_client::parse(ctx, t, &e.key("tls_config")).map(Some),
        };
        let Some(kind) = kind else { continue };
        let Some(timeout) = timeout else { continue };
        let Some(tls) = tls else { continue };
        // Secrets written literally (not via `${ENV}`) must not leak either.
        let mut redactor =
            crate::redact::Redactor::new(ctx.env_values[env_before..].iter().cloned());
        for s in secrets_of(&kind) {
            redactor.add(s);
        }
        out.plans.push(PagerPlan {
            name,
            kind,
            timeout,
            retry,
            redactor,
            tls,
        });
    }
    out
}

/// Builds the notifier for one pager.
/// `health`: where an Alertmanager pager records each member's outcome (the dispatcher's).
pub fn notifier_for(
    plan: &PagerPlan,
    client: &reqwest::Client,
    clock: crate::clock::Clock,
    health: Option<std::sync::Arc<crate::delivery::DeliveryHealth>>,
) -> Box<dyn Notifier> {
    let build: notify::BuildFn = match &plan.kind {
        PagerKind::PagerDuty(p) => {
            let p = p.clone();
            Box::new(move |n| pagerduty::build_request(&p, n))
        }
        PagerKind::Opsgenie(p) => {
            let p = p.clone();
            Box::new(move |n| opsgenie::build_request(&p, n))
        }
        PagerKind::Alertmanager(p) => {
            return Box::new(alertmanager::AmNotifier {
                members: alertmanager::Members::new(
                    &plan.name,
                    p,
                    client,
                    plan.timeout,
                    plan.redactor.clone(),
                    health,
                    clock,
                ),
                plan: p.clone(),
                clock,
            });
        }
        PagerKind::Slack(p) => {
            let p = p.clone();
            Box::new(move |n| webhook::build_slack_request(&p, n))
        }
        PagerKind::Webhook(p) => {
            let p = p.clone();
            Box::new(move |n| webhook::build_request(&p, n))
        }
        PagerKind::Email(e) => {
            return Box::new(email::EmailNotifier::new(
                e,
                plan.tls.clone(),
                plan.timeout,
                plan.redactor.clone(),
            ));
        }
    };
    notify::http_notifier(plan.timeout, plan.redactor.clone(), client, build)
}

/// Every secret a provider holds, for the pager's redactor.
fn secrets_of(kind: &PagerKind) -> Vec<String> {
    match kind {
        PagerKind::PagerDuty(p) => vec![p.routing_key.expose().to_string()],
        PagerKind::Opsgenie(p) => vec![p.api_key.expose().to_string()],
        PagerKind::Alertmanager(p) => {
            let mut v: Vec<String> = p
                .urls
                .iter()
                .flat_map(|u| url_secrets(u.expose()))
                .collect();
            v.extend(p.headers.iter().map(|(_, s)| s.expose().to_string()));
            v
        }
        PagerKind::Slack(p) => url_secrets(p.url.expose()),
        PagerKind::Webhook(p) => url_and_header_secrets(&p.url, &p.headers),
        PagerKind::Email(e) => e.password.iter().map(|s| s.expose().to_string()).collect(),
    }
}

/// The URL's secrets and every header value (a token).
fn url_and_header_secrets(url: &Secret, headers: &[(String, Secret)]) -> Vec<String> {
    let mut v = url_secrets(url.expose());
    v.extend(headers.iter().map(|(_, s)| s.expose().to_string()));
    v
}

/// The whole URL and its parts that may be secret: a Slack hook's secret is its path.
fn url_secrets(url: &str) -> Vec<String> {
    let mut v = vec![url.to_string()];
    v.extend(crate::redact::url_secret_parts(url));
    v
}
