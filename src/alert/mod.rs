//! Paging on-call: the policy that decides ([`policy`]), and the notifiers that deliver.
//!
//! Data flows one way: a `ProbeRun` goes through the policy, which may emit a [`Notification`];
//! the dispatcher hands it to every pager, each on its own queue with retries, so one pager
//! down never delays another.

pub mod policy;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Ctx;
use crate::config::raw::{RawPager, S};
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
    /// One line, e.g. `sim-join failing in eu-west-1: step "signalling" no_match after 5.0 s
    /// (login 42 ms, websocket 18 ms OK)`.
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

/// One configured pager (filled in by the alerting work).
#[derive(Debug, Clone)]
pub struct PagerPlan {
    pub name: String,
}

pub(crate) fn build_pagers(ctx: &mut Ctx<'_>, raw: &[S<RawPager>]) -> Vec<PagerPlan> {
    for p in raw {
        ctx.error(
            Some(p.span()),
            "pager",
            "pagers are not supported by this build yet",
        );
    }
    Vec::new()
}
