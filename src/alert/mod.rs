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
pub mod pagers;
pub mod policy;
pub mod render;
pub mod smtp;
pub mod table;
pub mod test_page;
pub mod trigger;
pub mod webhook;

pub use crate::alerting::Severity;
pub use dispatch::Dispatcher;
pub use notify::{DeliveryError, Notifier};
pub use pagers::{DEFAULT_PAGER_TIMEOUT, PagerKind, PagerPlan};
pub use test_page::test_page;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::report::FailureReason;

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

/// What the alert side needs of a loaded configuration (`config::Plan::alerts` builds it): the
/// region, the links every page carries and each probe's alert settings.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub region: String,
    pub links: Vec<Link>,
    pub probes: Vec<ProbeAlerting>,
}

/// One probe's alert settings, with its name and the file it came from (where notes about it
/// are placed).
#[derive(Debug, Clone)]
pub struct ProbeAlerting {
    pub name: String,
    pub source: std::path::PathBuf,
    pub alerting: crate::alerting::PolicyConfig,
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

    /// The summary as it reads after [`Notification::marker`]: a test page's summary opens with
    /// `[TEST]` itself (PagerDuty and Opsgenie show it alone), so a line that puts the marker in
    /// front drops it there rather than reading `[TEST] [TEST] …`.
    pub fn unmarked_summary(&self) -> &str {
        if self.test {
            self.summary
                .strip_prefix("[TEST]")
                .unwrap_or(&self.summary)
                .trim_start()
        } else {
            &self.summary
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

/// The links every page carries: the status page and the dashboard, when configured.
pub fn links(status_url: Option<&str>, dashboard_url: Option<&str>) -> Vec<Link> {
    [
        ("joincanary status", status_url),
        ("dashboard", dashboard_url),
    ]
    .into_iter()
    .filter_map(|(text, href)| {
        href.map(|href| Link {
            text: text.into(),
            href: href.into(),
        })
    })
    .collect()
}

/// What a configured pager will cut or hash to stay within its provider's limits, found at load
/// (`check` prints these, `run` logs them): one per probe, pager and field, located at the
/// probe's `name`. Every such field is fitted deterministically when sent (see [`limits`]), so
/// none of these stops a page; they say what on-call will see instead of the full text.
pub fn limit_notes(
    settings: &AlertSettings,
    pagers: &[PagerPlan],
) -> Vec<crate::diag::ConfigError> {
    let mut out = Vec::new();
    for p in &settings.probes {
        let (line, column) = crate::diag::name_position(&p.source);
        let mut note = |message: String| {
            out.push(crate::diag::ConfigError {
                file: p.source.clone(),
                line,
                column,
                key: Some("name".into()),
                message,
            });
        };
        let cx = trigger::AlertContext {
            probe: &p.name,
            region: &settings.region,
            config: &p.alerting,
            links: &[],
            system_offset: chrono::TimeDelta::zero(),
        };
        let mut severities = vec![Severity::Critical];
        if !p.alerting.budgets.is_empty() {
            severities.push(Severity::Warning);
        }
        // The summary starts `{probe} failing in {region}: step ...`.
        let lead = format!("{} failing in {}: step", p.name, settings.region);
        for pager in pagers {
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
            // The names are cut (to NAME_FLOOR each at least) before the step and the cause
            // are: say so when they take half the field, where a cause of any length needs it.
            let cut_note = |field: &str, max: usize| -> Option<String> {
                let n = limits::cost(&lead, limits::plain);
                (2 * n > max).then(|| {
                    format!("{who}: the probe and region names take {n} of the {field}'s {max} characters; they are cut there (to {} characters at least) so that the failing step and the server's words fit; shorten them to read them whole", limits::NAME_FLOOR)
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
                    for (what, tag) in [("probe", &p.name), ("region", &settings.region)] {
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

pub use crate::report::timestamp;

/// A timestamp for machines in a page payload: RFC 3339 in UTC with `Z`
/// (`2025-03-01T12:05:00Z`), as serde writes the times in `details`, so one payload never
/// mixes `Z` and `+00:00`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
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
