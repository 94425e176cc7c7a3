//! `[alerting]`: the alert policy's settings in the service config (and a probe file's
//! override) as written, validated into a [`PolicyConfig`] with file, line and key for each
//! problem; and a page's [`Severity`]. A leaf: a probe's plan carries its `PolicyConfig` and the
//! status document an incident's `Severity`, so neither `flow` nor `status` imports `alert/`,
//! which reads both.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::diag::{Ctx, S};
use crate::report::Phase;
use crate::schedule::Schedule;

/// `[alerting]` in the service config, or a probe's override.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawAlerting {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub confirm_delay: Option<S<String>>,
    pub failure_threshold: Option<S<i64>>,
    pub success_threshold: Option<S<i64>>,
    pub degraded_threshold: Option<S<i64>>,
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub reminder_interval: Option<S<String>>,
    /// Pages for this probe go only to these pagers (default: all).
    pub pagers: Option<S<Vec<String>>>,
    /// Shared incident key for a platform-wide incident across regions.
    pub group_key: Option<S<String>>,
    /// Step latency budgets: `{ "signalling.round_trip" = "1s" }` or `{ signalling = "1s" }`.
    #[serde(default)]
    pub budgets: BTreeMap<String, S<String>>,
    #[serde(default)]
    pub maintenance: Vec<S<RawMaintenance>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    /// Cron expression for the window's start.
    pub start: S<String>,
    #[serde(deserialize_with = "crate::diag::required_duration")]
    pub duration: S<String>,
    pub timezone: Option<S<String>>,
}

/// A window in which no page is sent; runs and metrics continue.
#[derive(Debug, Clone)]
pub struct Maintenance {
    pub start: Schedule,
    pub duration: Duration,
}

impl Maintenance {
    /// The end of the latest-ending window of this entry that covers `at`, if one does (looked
    /// for among at most 64 starts: a later start only makes the end later).
    fn covers(&self, at: chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono::Utc>> {
        let span = chrono::Duration::from_std(self.duration).ok()?;
        let mut from = at
            .checked_sub_signed(span)?
            .checked_sub_signed(chrono::Duration::seconds(1))?;
        let mut end = None;
        for _ in 0..64 {
            let Some(start) = self.start.next_after(from).filter(|s| *s <= at) else {
                break;
            };
            end = start.checked_add_signed(span).filter(|e| *e > at).or(end);
            from = start;
        }
        end
    }
}

/// The most runs in a row a threshold may ask for: past it a probe pages (or resolves) hours
/// after the fault, or never (`failure_threshold = 99999999999` was accepted, and paged nobody).
pub const MAX_THRESHOLD: usize = 100;

/// Alert policy settings for one probe.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub enabled: bool,
    pub confirm_delay: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub degraded_threshold: u32,
    pub reminder_interval: Option<Duration>,
    /// Pager names; `None` means every pager.
    pub pagers: Option<Vec<String>>,
    pub group_key: Option<String>,
    /// step name -> phase -> budget.
    pub budgets: BTreeMap<String, BTreeMap<Phase, Duration>>,
    /// step name -> where its first budget is written (`file:line:col`): a probe without the
    /// step names the service config's place.
    pub budget_places: BTreeMap<String, String>,
    pub maintenance: Vec<Maintenance>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            enabled: true,
            confirm_delay: Duration::from_secs(10),
            failure_threshold: 2,
            success_threshold: 2,
            degraded_threshold: 3,
            reminder_interval: None,
            pagers: None,
            group_key: None,
            budgets: BTreeMap::new(),
            budget_places: BTreeMap::new(),
            maintenance: Vec::new(),
        }
    }
}

/// A budget's key as written, `"signalling.round_trip"` or `"login"`, as the step and phase
/// it bounds (a bare step name, or one whose last part is no phase, means its `total`).
pub fn budget_target(name: &str) -> (&str, Phase) {
    match name.rsplit_once('.') {
        Some((step, p)) => Phase::parse(p).map_or((name, Phase::Total), |phase| (step, phase)),
        None => (name, Phase::Total),
    }
}

impl PolicyConfig {
    pub(crate) fn build(
        ctx: &mut Ctx<'_>,
        raw: &RawAlerting,
        parent: Option<&PolicyConfig>,
        prefix: &str,
        pager_names: &[String],
    ) -> PolicyConfig {
        // A misspelt pager name would drop pages silently at 3 a.m.: refuse it at load time.
        if let Some(list) = &raw.pagers {
            for name in list.get_ref() {
                if !pager_names.contains(name) {
                    ctx.error(
                        Some(list.span()),
                        format!("{prefix}.pagers"),
                        format_args!(
                            "no [[pager]] is named `{name}` (configured: {})",
                            if pager_names.is_empty() {
                                "none".to_string()
                            } else {
                                pager_names.join(", ")
                            }
                        ),
                    );
                }
            }
        }
        let base = parent.cloned().unwrap_or_default();
        let key = |k: &str| format!("{prefix}.{k}");
        let threshold = |ctx: &mut Ctx<'_>, v: &Option<crate::diag::S<i64>>, k: &str, dflt: u32| {
            v.as_ref()
                .and_then(|v| ctx.positive_at_most(v, &key(k), MAX_THRESHOLD))
                .map_or(dflt, |n| u32::try_from(n).unwrap_or(u32::MAX))
        };
        let (mut budgets, mut budget_places) = if raw.budgets.is_empty() {
            (base.budgets.clone(), base.budget_places.clone())
        } else {
            (BTreeMap::new(), BTreeMap::new())
        };
        for (name, value) in &raw.budgets {
            let (step, phase) = budget_target(name);
            budget_places
                .entry(step.to_string())
                .or_insert_with(|| ctx.place(value.span()));
            if let Some(d) = ctx.duration(value, &key(&format!("budgets.{name}"))) {
                budgets
                    .entry(step.to_string())
                    .or_default()
                    .insert(phase, d);
            }
        }
        let maintenance = if raw.maintenance.is_empty() {
            base.maintenance.clone()
        } else {
            raw.maintenance
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    let k = key(&format!("maintenance[{i}]"));
                    let m = m.get_ref();
                    let tz = m
                        .timezone
                        .as_ref()
                        .and_then(|t| crate::schedule::timezone(ctx, t, &format!("{k}.timezone")));
                    let start_text = ctx.env_str(&m.start, &format!("{k}.start"))?;
                    let start = match Schedule::parse(&start_text, tz) {
                        Ok(s) => s,
                        Err(e) => {
                            ctx.error(Some(m.start.span()), format!("{k}.start"), e);
                            return None;
                        }
                    };
                    let duration = ctx.duration(&m.duration, &format!("{k}.duration"))?;
                    Some(Maintenance { start, duration })
                })
                .collect()
        };
        PolicyConfig {
            enabled: raw.enabled.unwrap_or(base.enabled),
            confirm_delay: raw
                .confirm_delay
                .as_ref()
                .and_then(|d| ctx.duration(d, &key("confirm_delay")))
                .unwrap_or(base.confirm_delay),
            failure_threshold: threshold(
                ctx,
                &raw.failure_threshold,
                "failure_threshold",
                base.failure_threshold,
            ),
            success_threshold: threshold(
                ctx,
                &raw.success_threshold,
                "success_threshold",
                base.success_threshold,
            ),
            degraded_threshold: threshold(
                ctx,
                &raw.degraded_threshold,
                "degraded_threshold",
                base.degraded_threshold,
            ),
            reminder_interval: raw
                .reminder_interval
                .as_ref()
                .and_then(|d| ctx.duration(d, &key("reminder_interval")))
                .or(base.reminder_interval),
            pagers: raw
                .pagers
                .as_ref()
                .map(|p| p.get_ref().clone())
                .or(base.pagers),
            group_key: raw
                .group_key
                .as_ref()
                .and_then(|g| ctx.env_str(g, &key("group_key")))
                .or(base.group_key),
            budgets,
            budget_places,
            maintenance,
        }
    }

    /// Whether the maintenance windows hold every page from `now` for at least `horizon` (one
    /// window that never ends, or windows that overlap back to back): a probe that never pages.
    /// `false` when that cannot be told within a bounded amount of work (a window starting
    /// every second): this is a warning, not a guarantee.
    pub fn muted_for(&self, now: chrono::DateTime<chrono::Utc>, horizon: Duration) -> bool {
        let Some(until) = chrono::Duration::from_std(horizon)
            .ok()
            .and_then(|h| now.checked_add_signed(h))
        else {
            return false;
        };
        let mut at = now;
        // Each pass moves `at` to the end of the window that covers it, so it is bounded by the
        // windows in the horizon (168 with hourly ones over a week).
        for _ in 0..2_000 {
            let Some(end) = self.maintenance.iter().filter_map(|m| m.covers(at)).max() else {
                return false;
            };
            if end >= until {
                return true;
            }
            at = end;
        }
        false
    }

    /// Whether `at` falls inside a maintenance window.
    pub fn in_maintenance(&self, at: chrono::DateTime<chrono::Utc>) -> bool {
        self.maintenance.iter().any(|m| {
            // Checked although the config bounds the duration: a date near chrono's end must
            // not panic the run consumer (nothing would record runs or page after it).
            let Ok(span) = chrono::Duration::from_std(m.duration) else {
                return false;
            };
            // The latest window start at or before `at` is the next start after `at - duration`.
            at.checked_sub_signed(span)
                .and_then(|t| t.checked_sub_signed(chrono::Duration::seconds(1)))
                .and_then(|from| m.start.next_after(from))
                .is_some_and(|start| {
                    start <= at && start.checked_add_signed(span).is_none_or(|end| at < end)
                })
        })
    }
}

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
