//! What a page says: whom it is about and where it links ([`AlertContext`]), the short records
//! of runs kept as its evidence ([`RunBrief`]), the trigger's summary and details, and the
//! budgets a slow run broke.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{EventKind, Link, Notification, Severity};
use crate::alerting::PolicyConfig;
use crate::report::millis::round_ms as ms;
use crate::report::{FailureReason, ProbeRun, StepReport, Trigger, human_duration};

/// The probe's identity and where its pages link to.
#[derive(Debug, Clone)]
pub struct AlertContext<'a> {
    pub probe: &'a str,
    pub region: &'a str,
    pub config: &'a PolicyConfig,
    pub links: &'a [Link],
    /// The system clock minus the service's ([`crate::clock::Clock::offset`]): maintenance
    /// windows are written in wall-clock time, so they are judged on the system clock even
    /// after it was stepped.
    pub system_offset: chrono::TimeDelta,
}

impl AlertContext<'_> {
    /// Whether `now` (the service's clock) falls in a maintenance window, on the system clock.
    pub fn in_maintenance(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.config
            .in_maintenance(now.checked_add_signed(self.system_offset).unwrap_or(now))
    }

    /// Deterministic: the same probe, region and severity always make the same key, so a
    /// restart or a re-send updates the incident instead of opening another. The region is in
    /// it so regions never resolve each other's incidents, unless `group_key` says they share one.
    pub fn dedup_key(&self, severity: Severity) -> String {
        match &self.config.group_key {
            Some(group) => format!("joincanary/{group}/{}", severity.as_str()),
            None => format!(
                "joincanary/{}/{}/{}",
                self.region,
                self.probe,
                severity.as_str()
            ),
        }
    }
}

/// A short record of a run for the page's evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunBrief {
    pub time: DateTime<Utc>,
    pub trigger: Trigger,
    pub success: bool,
    pub duration_ms: f64,
    pub failed_step: Option<String>,
    pub reason: Option<FailureReason>,
    /// step name -> total ms.
    pub steps: Vec<(String, f64)>,
    /// step name -> phase -> ms; kept only for the last success, which pages compare the failing
    /// run's phases with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<(String, BTreeMap<String, f64>)>,
}

impl RunBrief {
    pub(super) fn of(run: &ProbeRun) -> RunBrief {
        RunBrief {
            time: run.started_at,
            trigger: run.trigger,
            success: run.success,
            duration_ms: ms(run.duration_ms),
            failed_step: run.failed_step.clone(),
            reason: run.reason,
            steps: run
                .steps
                .iter()
                .map(|s| (s.name.clone(), ms(s.duration_ms)))
                .collect(),
            phases: Vec::new(),
        }
    }

    /// A success, with its per-step phases (the baseline a page compares against).
    pub(super) fn of_success(run: &ProbeRun) -> RunBrief {
        RunBrief {
            phases: run
                .steps
                .iter()
                .map(|s| {
                    let phases = s
                        .phases
                        .iter()
                        .map(|(p, d)| (p.as_str().to_string(), ms(*d)))
                        .collect();
                    (s.name.clone(), phases)
                })
                .collect(),
            ..RunBrief::of(run)
        }
    }
}

impl RunBrief {
    /// Makes `slot` the brief of this success. A healthy probe's runs all have the same steps
    /// and phases, so the brief already held is updated in place: no step name or phase map
    /// is allocated again on every run.
    pub(super) fn set_success(slot: &mut Option<RunBrief>, run: &ProbeRun) {
        let same_shape = |b: &RunBrief| {
            b.steps.len() == run.steps.len()
                && b.phases.len() == run.steps.len()
                && b.steps.iter().zip(&b.phases).zip(&run.steps).all(
                    |(((name, _), (pname, phases)), step)| {
                        *name == step.name
                            && *pname == step.name
                            && phases.len() == step.phases.len()
                            && step.phases.keys().all(|p| phases.contains_key(p.as_str()))
                    },
                )
        };
        let Some(b) = slot.as_mut().filter(|b| same_shape(b)) else {
            *slot = Some(RunBrief::of_success(run));
            return;
        };
        b.time = run.started_at;
        b.trigger = run.trigger;
        b.success = run.success;
        b.duration_ms = ms(run.duration_ms);
        b.failed_step.clone_from(&run.failed_step);
        b.reason = run.reason;
        for (((_, total), (_, phases)), step) in
            b.steps.iter_mut().zip(&mut b.phases).zip(&run.steps)
        {
            *total = ms(step.duration_ms);
            for (p, d) in &step.phases {
                if let Some(v) = phases.get_mut(p.as_str()) {
                    *v = ms(*d);
                }
            }
        }
    }
}

pub(super) struct History<'a> {
    evidence: &'a [RunBrief],
    last_success: &'a Option<RunBrief>,
    since: Option<DateTime<Utc>>,
}

pub(super) fn self_view<'a>(
    evidence: &'a [RunBrief],
    last_success: &'a Option<RunBrief>,
    since: Option<DateTime<Utc>>,
) -> History<'a> {
    History {
        evidence,
        last_success,
        since,
    }
}

/// `login 42 ms, websocket 18 ms OK`-style list of the steps before the failing one. Cleanup
/// steps ran after the failure, not on the way to it: left out.
fn passed_steps(steps: &[StepReport]) -> String {
    let ok: Vec<String> = steps
        .iter()
        .filter(|s| s.success && !s.cleanup)
        .map(|s| format!("{} {}", s.name, human_duration(s.duration_ms)))
        .collect();
    if ok.is_empty() {
        String::new()
    } else {
        format!(" ({} OK)", ok.join(", "))
    }
}

pub(super) fn steps_detail(steps: &[StepReport]) -> serde_json::Value {
    serde_json::to_value(steps).unwrap_or_default()
}

pub(super) fn build_trigger(
    cx: &AlertContext<'_>,
    h: History<'_>,
    run: &ProbeRun,
    now: DateTime<Utc>,
    dedup_key: String,
    failures: u32,
) -> Notification {
    let failed = run.failed();
    let step = failed.map(|s| s.name.as_str()).unwrap_or("?");
    let reason = run.reason.map(|r| r.as_str()).unwrap_or("failed");
    let took = failed
        .map(|s| human_duration(s.duration_ms))
        .unwrap_or_default();
    let since = h.since.unwrap_or(run.started_at);
    // What the server said belongs in the line every pager shows (Opsgenie's message, Slack's
    // notification), not only in the details: before the passed steps, which a cut drops first.
    let cause = run
        .error
        .as_deref()
        .and_then(crate::report::cause_fragment)
        .map(|c| format!(": {c}"))
        .unwrap_or_default();
    // The step's time once: a cause that says it (`no frame matched within 5.0 s`) read
    // `no_match after 5.0 s: no frame matched within 5.0 s`, the same figure twice in the
    // 130 characters Opsgenie shows.
    let after = if !took.is_empty() && cause.contains(&took) {
        String::new()
    } else {
        format!(" after {took}")
    };
    let summary = format!(
        "{} failing in {}: step \"{step}\" {reason}{after}{cause}{}",
        cx.probe,
        cx.region,
        passed_steps(&run.steps)
    );
    Notification {
        kind: EventKind::Trigger,
        severity: Severity::Critical,
        dedup_key,
        probe: cx.probe.to_string(),
        region: cx.region.to_string(),
        summary,
        failed_step: run.failed_step.clone(),
        reason: run.reason,
        details: serde_json::json!({
            "failed_step": run.failed_step,
            "reason": run.reason,
            "error": run.error,
            "failing_since": since,
            "failing_for_seconds": (now - since).num_seconds().max(0),
            "consecutive_failures": failures,
            "steps": steps_detail(&run.steps),
            "last_success": h.last_success,
            "confirming_runs": h.evidence,
        }),
        started_at: since,
        at: now,
        reminder: false,
        test: false,
        links: cx.links.to_vec(),
    }
}

/// Which budgets a run's steps broke, as `signalling round_trip 1.4 s over its 1.0 s budget`,
/// then the gauge thresholds they crossed (`step "redis" memory_ratio 0.91 above 0.8`).
pub fn budget_breaches(cfg: &PolicyConfig, steps: &[StepReport]) -> Vec<String> {
    let mut out = Vec::new();
    for step in steps {
        out.extend(step.warnings.iter().cloned());
        let Some(budgets) = cfg.budgets.get(&step.name) else {
            continue;
        };
        for (phase, budget) in budgets {
            if let Some(took) = step.phases.get(phase)
                && took > budget
            {
                out.push(format!(
                    "step \"{}\" {} {} over its {} budget",
                    step.name,
                    phase.as_str(),
                    human_duration(*took),
                    human_duration(*budget)
                ));
            }
        }
    }
    out
}
