//! The alert policy's state machine: `observe(run, now)` and `tick(now)` -> decisions, per
//! probe. Pure: no I/O, no clock of its own; the settings are
//! [`PolicyConfig`](crate::alerting::PolicyConfig) and what a page says is built in
//! [`super::trigger`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::trigger::{
    AlertContext, RunBrief, budget_breaches, build_trigger, self_view, steps_detail,
};
use super::{EventKind, Notification, Severity};
use crate::report::{FailureReason, ProbeRun};

/// Failed runs kept as evidence for the page (the confirming runs).
const EVIDENCE_RUNS: usize = 5;

/// What the policy wants done after a run or a tick.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Send this to the probe's pagers.
    Notify(Box<Notification>),
    /// Run the probe again after this delay instead of waiting for the next tick, to confirm
    /// what the last run began.
    Confirm(std::time::Duration, Confirming),
}

/// What a confirmation run is for, as its log line says it: a failure or a recovery, with the
/// runs seen so far and the threshold that pages or resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirming {
    /// Failed runs in a row so far, and `failure_threshold`.
    Failure { runs: u32, needed: u32 },
    /// Passing runs in a row of an open incident so far, and `success_threshold`.
    Recovery { runs: u32, needed: u32 },
}

impl Confirming {
    /// `"failure"` or `"recovery"`, for the log line's `confirming` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Confirming::Failure { .. } => "failure",
            Confirming::Recovery { .. } => "recovery",
        }
    }

    /// What the runs counted are: `"failed"` or `"passing"`.
    pub fn runs_are(self) -> &'static str {
        match self {
            Confirming::Failure { .. } => "failed",
            Confirming::Recovery { .. } => "passing",
        }
    }

    /// (runs seen, runs needed).
    pub fn runs(self) -> (u32, u32) {
        match self {
            Confirming::Failure { runs, needed } | Confirming::Recovery { runs, needed } => {
                (runs, needed)
            }
        }
    }
}

/// An open incident of one severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAlert {
    pub dedup_key: String,
    /// When the bad streak began (first failing or slow run).
    pub since: DateTime<Utc>,
    /// When on-call was last told (trigger or reminder); `None` while held back by a
    /// maintenance window.
    pub notified_at: Option<DateTime<Utc>>,
    /// The last trigger sent, re-sent as a reminder.
    pub last: Notification,
    /// The failing step and reason on-call was last told of (trigger or reminder): what the
    /// resolve names, though later failures (a resident's failed reconnects) update `last`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paged: Option<(String, FailureReason)>,
}

impl OpenAlert {
    /// Records that `n` (this alert's trigger or reminder) is being sent.
    fn told(&mut self, n: &Notification) {
        self.paged = n.failed_step.clone().zip(n.reason);
    }
}

/// Everything the policy remembers about one probe; persisted across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeAlertState {
    pub failures: u32,
    pub successes: u32,
    pub slow: u32,
    pub fast: u32,
    pub failing_since: Option<DateTime<Utc>>,
    pub slow_since: Option<DateTime<Utc>>,
    pub evidence: Vec<RunBrief>,
    pub last_success: Option<RunBrief>,
    pub critical: Option<OpenAlert>,
    pub warning: Option<OpenAlert>,
}

impl ProbeAlertState {
    /// Feeds one finished run; returns what to do.
    pub fn observe(
        &mut self,
        cx: &AlertContext<'_>,
        run: &ProbeRun,
        now: DateTime<Utc>,
    ) -> Vec<Decision> {
        let cfg = cx.config;
        let mut out = Vec::new();
        if !cfg.enabled {
            return out;
        }
        // A run that failed for the prober's own reasons (out of fds, memory, local ports) says
        // nothing about the platform either way: it neither counts toward the critical page nor
        // resolves one. Metrics and status still record it with reason `local`, and the rules
        // alert on that as the prober being unhealthy (`JoinCanaryUnhealthy`).
        if !run.success && run.reason == Some(FailureReason::Local) {
            return out;
        }
        if run.success {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            RunBrief::set_success(&mut self.last_success, run);
            if self.critical.is_some() {
                if self.successes >= cfg.success_threshold {
                    if let Some(open) = self.critical.take() {
                        out.extend(self.resolve(cx, open, Severity::Critical, now));
                    }
                    self.failing_since = None;
                    self.evidence.clear();
                } else {
                    // Recovering: confirm it soon rather than keeping on-call waiting a minute.
                    out.push(Decision::Confirm(
                        cfg.confirm_delay,
                        Confirming::Recovery {
                            runs: self.successes,
                            needed: cfg.success_threshold,
                        },
                    ));
                }
            } else {
                self.failing_since = None;
                self.evidence.clear();
            }
            out.extend(self.observe_latency(cx, run, now));
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            self.failing_since.get_or_insert(run.started_at);
            self.evidence.push(RunBrief::of(run));
            if self.evidence.len() > EVIDENCE_RUNS {
                self.evidence.remove(0);
            }
            if let Some(open) = &mut self.critical {
                // Keep the latest failure as what a reminder or late trigger says.
                open.last = build_trigger(
                    cx,
                    self_view(&self.evidence, &self.last_success, self.failing_since),
                    run,
                    now,
                    open.dedup_key.clone(),
                    self.failures,
                );
            } else if self.failures >= cfg.failure_threshold {
                let since = self.failing_since.unwrap_or(run.started_at);
                let key = cx.dedup_key(Severity::Critical);
                let n = build_trigger(
                    cx,
                    self_view(&self.evidence, &self.last_success, Some(since)),
                    run,
                    now,
                    key.clone(),
                    self.failures,
                );
                let notify = !cx.in_maintenance(now);
                let mut open = OpenAlert {
                    dedup_key: key,
                    since,
                    notified_at: notify.then_some(now),
                    last: n.clone(),
                    paged: None,
                };
                if notify {
                    open.told(&n);
                }
                self.critical = Some(open);
                if notify {
                    out.push(Decision::Notify(Box::new(n)));
                }
            } else {
                out.push(Decision::Confirm(
                    cfg.confirm_delay,
                    Confirming::Failure {
                        runs: self.failures,
                        needed: cfg.failure_threshold,
                    },
                ));
            }
        }
        out
    }

    /// Slow-but-working: a per-step latency budget breached `degraded_threshold` runs in a row.
    fn observe_latency(
        &mut self,
        cx: &AlertContext<'_>,
        run: &ProbeRun,
        now: DateTime<Utc>,
    ) -> Vec<Decision> {
        let cfg = cx.config;
        // Gauge thresholds (redis, http_json steps) raise the same warning as budgets do.
        let gauges_watched = self.warning.is_some()
            || self.slow > 0
            || run.steps.iter().any(|s| !s.warnings.is_empty());
        if cfg.budgets.is_empty() && !gauges_watched {
            return Vec::new();
        }
        let breaches = budget_breaches(cfg, &run.steps);
        let mut out = Vec::new();
        if breaches.is_empty() {
            self.slow = 0;
            self.slow_since = None;
            self.fast = self.fast.saturating_add(1);
            if self.warning.is_some()
                && self.fast >= cfg.success_threshold
                && let Some(open) = self.warning.take()
            {
                out.extend(self.resolve(cx, open, Severity::Warning, now));
            }
        } else {
            self.fast = 0;
            self.slow = self.slow.saturating_add(1);
            let since = *self.slow_since.get_or_insert(run.started_at);
            let summary = format!(
                "{} degraded in {}: {} ({} runs in a row)",
                cx.probe,
                cx.region,
                breaches.join(", "),
                self.slow
            );
            let key = cx.dedup_key(Severity::Warning);
            let n = Notification {
                kind: EventKind::Trigger,
                severity: Severity::Warning,
                dedup_key: key.clone(),
                probe: cx.probe.to_string(),
                region: cx.region.to_string(),
                summary,
                failed_step: None,
                reason: None,
                details: serde_json::json!({
                    "breaches": breaches,
                    "slow_runs": self.slow,
                    "degraded_since": since,
                    "run": steps_detail(&run.steps),
                    "last_success": self.last_success,
                }),
                started_at: since,
                at: now,
                reminder: false,
                test: false,
                links: cx.links.to_vec(),
            };
            if let Some(open) = &mut self.warning {
                open.last = n;
            } else if self.slow >= cfg.degraded_threshold {
                let notify = !cx.in_maintenance(now);
                self.warning = Some(OpenAlert {
                    dedup_key: key,
                    since,
                    notified_at: notify.then_some(now),
                    last: n.clone(),
                    paged: None,
                });
                if notify {
                    out.push(Decision::Notify(Box::new(n)));
                }
            }
        }
        out
    }

    fn resolve(
        &self,
        cx: &AlertContext<'_>,
        open: OpenAlert,
        severity: Severity,
        now: DateTime<Utc>,
    ) -> Option<Decision> {
        // Never told (held back by maintenance): nothing to resolve on the pager's side.
        open.notified_at?;
        let lasted = (now - open.since).to_std().unwrap_or_default();
        // The step on-call was paged for, and the last failure if another step failed since
        // (a resident whose reconnects kept failing at `login` after paging for `signalling`).
        let last = open.last.failed_step.clone().zip(open.last.reason);
        let what = match (&open.paged, &last) {
            (Some((step, reason)), Some((last_step, last_reason)))
                if (step, reason) != (last_step, last_reason) =>
            {
                format!(
                    " (paged for: step \"{step}\" {reason}; last failure: step \"{last_step}\" {last_reason})"
                )
            }
            (Some((step, reason)), _) | (None, Some((step, reason))) => {
                format!(" (was: step \"{step}\" {reason})")
            }
            (None, None) => String::new(),
        };
        let (failed_step, reason) = match open.paged.clone().or(last) {
            Some((s, r)) => (Some(s), Some(r)),
            None => (None, None),
        };
        let word = if severity == Severity::Critical {
            "recovered"
        } else {
            "no longer degraded"
        };
        Some(Decision::Notify(Box::new(Notification {
            kind: EventKind::Resolve,
            severity,
            dedup_key: open.dedup_key.clone(),
            probe: cx.probe.to_string(),
            region: cx.region.to_string(),
            summary: format!(
                "{} {word} in {} after {}{what}",
                cx.probe,
                cx.region,
                humantime::format_duration(std::time::Duration::from_secs(lasted.as_secs()))
            ),
            failed_step,
            reason,
            details: serde_json::json!({ "lasted_seconds": lasted.as_secs(), "since": open.since, "last_success": self.last_success }),
            started_at: open.since,
            at: now,
            reminder: false,
            test: false,
            links: cx.links.to_vec(),
        })))
    }

    /// Time passing: reminders for open alerts, and triggers held back by a maintenance window
    /// that has ended.
    pub fn tick(&mut self, cx: &AlertContext<'_>, now: DateTime<Utc>) -> Vec<Decision> {
        let cfg = cx.config;
        let mut out = Vec::new();
        if !cfg.enabled || cx.in_maintenance(now) {
            return out;
        }
        for open in [self.critical.as_mut(), self.warning.as_mut()]
            .into_iter()
            .flatten()
        {
            let due = match open.notified_at {
                None => true,
                Some(at) => cfg
                    .reminder_interval
                    .and_then(|i| chrono::Duration::from_std(i).ok())
                    .is_some_and(|i| now - at >= i),
            };
            if due {
                let mut n = open.last.clone();
                n.reminder = open.notified_at.is_some();
                n.at = now;
                open.notified_at = Some(now);
                open.told(&n);
                out.push(Decision::Notify(Box::new(n)));
            }
        }
        out
    }

    /// Open alerts, for status output and the firing metric.
    pub fn open(&self) -> impl Iterator<Item = (Severity, &OpenAlert)> {
        [
            (Severity::Critical, self.critical.as_ref()),
            (Severity::Warning, self.warning.as_ref()),
        ]
        .into_iter()
        .filter_map(|(s, a)| a.map(|a| (s, a)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::trigger::RunBrief;
    use crate::alerting::{Maintenance, PolicyConfig};
    use crate::report::{Phase, StepReport, Trigger};
    use crate::schedule::Schedule;
    use chrono::TimeZone;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn step(name: &str, ok: bool, ms: u64, reason: Option<FailureReason>) -> StepReport {
        let mut phases = BTreeMap::new();
        phases.insert(Phase::Total, Duration::from_millis(ms));
        if name == "signalling" {
            phases.insert(Phase::RoundTrip, Duration::from_millis(ms));
        }
        StepReport {
            name: name.into(),
            kind: crate::report::KindName::new("http"),
            success: ok,
            duration_ms: Duration::from_millis(ms),
            reason,
            error: reason.map(|_| "no frame matched".into()),
            phases,
            cleanup: false,
            gauges: Default::default(),
            cert_expiry: None,
            warnings: Vec::new(),
        }
    }

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 3, 0, 0).unwrap() + chrono::Duration::seconds(secs)
    }

    fn run(at: i64, ok: bool, signalling_ms: u64) -> ProbeRun {
        let mut steps = vec![
            step("login", true, 42, None),
            step("websocket", true, 18, None),
        ];
        steps.push(step(
            "signalling",
            ok,
            signalling_ms,
            (!ok).then_some(FailureReason::NoMatch),
        ));
        ProbeRun {
            probe: "join-flow".into(),
            region: "eu-west-1".into(),
            success: ok,
            started_at: t(at),
            duration_ms: Duration::from_millis(60 + signalling_ms),
            failed_step: (!ok).then(|| "signalling".into()),
            reason: (!ok).then_some(FailureReason::NoMatch),
            error: (!ok).then(|| "no frame matched".into()),
            trigger: Trigger::Scheduled,
            steps,
        }
    }

    #[test]
    fn the_last_success_updated_in_place_is_the_fresh_brief() {
        let mut slot = None;
        RunBrief::set_success(&mut slot, &run(0, true, 30));
        for (at, ms) in [(60, 31), (120, 900)] {
            let next = run(at, true, ms);
            RunBrief::set_success(&mut slot, &next);
            assert_eq!(slot, Some(RunBrief::of_success(&next)));
        }
        // Another shape (a step more) is built afresh.
        let mut other = run(180, true, 5);
        other.steps.push(step("leave", true, 1, None));
        RunBrief::set_success(&mut slot, &other);
        assert_eq!(slot, Some(RunBrief::of_success(&other)));
    }

    fn notifications(d: &[Decision]) -> Vec<&Notification> {
        d.iter()
            .filter_map(|d| match d {
                Decision::Notify(n) => Some(n.as_ref()),
                Decision::Confirm(..) => None,
            })
            .collect()
    }

    /// Maintenance windows, each a cron start and a length in seconds.
    fn windows(list: &[(&str, u64)]) -> PolicyConfig {
        PolicyConfig {
            maintenance: list
                .iter()
                .map(|(start, secs)| Maintenance {
                    start: Schedule::parse(start, None).unwrap(),
                    duration: Duration::from_secs(*secs),
                })
                .collect(),
            ..PolicyConfig::default()
        }
    }

    /// A 1 s budget for `phase` of step `signalling`, warned of after `threshold` runs over it.
    fn budget_of_a_second(phase: Phase, threshold: u32) -> PolicyConfig {
        let mut budgets = BTreeMap::new();
        budgets.insert(
            "signalling".to_string(),
            BTreeMap::from([(phase, Duration::from_secs(1))]),
        );
        PolicyConfig {
            budgets,
            degraded_threshold: threshold,
            ..PolicyConfig::default()
        }
    }

    fn cx(cfg: &PolicyConfig) -> AlertContext<'_> {
        AlertContext {
            probe: "join-flow",
            region: "eu-west-1",
            config: cfg,
            links: &[],
            system_offset: chrono::TimeDelta::zero(),
        }
    }

    /// A run that failed because the prober ran out of file descriptors.
    fn local_failure(at: i64) -> ProbeRun {
        let mut r = run(at, false, 5000);
        r.reason = Some(FailureReason::Local);
        r.failed_step = Some("login".into());
        r.steps[0] = step("login", false, 1, Some(FailureReason::Local));
        r
    }

    #[test]
    fn local_failures_never_page_and_never_resolve() {
        let cfg = PolicyConfig::default();
        let mut s = ProbeAlertState::default();
        for i in 0..10 {
            let d = s.observe(&cx(&cfg), &local_failure(i * 60), t(i * 60 + 5));
            assert!(d.is_empty(), "run {i}: {d:?}");
        }
        assert!(s.critical.is_none());
        assert_eq!(s.failures, 0);
        // An incident already open stays open through local failures: they say nothing about
        // the platform, so they neither resolve it nor count as recovering.
        let mut s = ProbeAlertState::default();
        s.observe(&cx(&cfg), &run(0, false, 5000), t(5));
        let d = s.observe(&cx(&cfg), &run(60, false, 5000), t(65));
        assert_eq!(notifications(&d).len(), 1);
        for i in 2..6 {
            assert!(
                s.observe(&cx(&cfg), &local_failure(i * 60), t(i * 60 + 5))
                    .is_empty()
            );
        }
        assert!(s.critical.is_some());
        assert_eq!(s.failures, 2);
    }

    #[test]
    fn a_single_blip_pages_nobody_and_asks_for_a_confirmation() {
        let cfg = PolicyConfig::default();
        let mut s = ProbeAlertState::default();
        let d = s.observe(&cx(&cfg), &run(0, false, 5000), t(5));
        let failure = Confirming::Failure { runs: 1, needed: 2 };
        assert_eq!(d, vec![Decision::Confirm(Duration::from_secs(10), failure)]);
        let d = s.observe(&cx(&cfg), &run(15, true, 20), t(16));
        assert!(notifications(&d).is_empty());
        assert!(s.critical.is_none());
    }

    /// Issue 17: the resolve names the step on-call was paged for, though later failures (a
    /// resident's failed reconnects at `login`) replaced the alert's latest trigger.
    #[test]
    fn the_resolve_names_the_paged_step_and_the_last_failure() {
        let cfg = PolicyConfig::default();
        let mut s = ProbeAlertState::default();
        s.observe(&cx(&cfg), &run(0, false, 5000), t(5));
        let d = s.observe(&cx(&cfg), &run(10, false, 5000), t(15));
        assert_eq!(notifications(&d).len(), 1);
        let mut login = run(20, false, 0);
        login.steps = vec![step("login", false, 3, Some(FailureReason::Connect))];
        login.failed_step = Some("login".into());
        login.reason = Some(FailureReason::Connect);
        s.observe(&cx(&cfg), &login, t(21));
        s.observe(&cx(&cfg), &run(30, true, 20), t(31));
        let d = s.observe(&cx(&cfg), &run(35, true, 20), t(36));
        let n = notifications(&d);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].kind, EventKind::Resolve);
        assert_eq!(
            n[0].summary,
            "join-flow recovered in eu-west-1 after 36s (paged for: step \"signalling\" no_match; last failure: step \"login\" connect)"
        );
        assert_eq!(n[0].failed_step.as_deref(), Some("signalling"));
        // The same step all along: said once.
        let mut s = ProbeAlertState::default();
        s.observe(&cx(&cfg), &run(0, false, 5000), t(5));
        s.observe(&cx(&cfg), &run(10, false, 5000), t(15));
        s.observe(&cx(&cfg), &run(30, true, 20), t(31));
        let d = s.observe(&cx(&cfg), &run(35, true, 20), t(36));
        assert!(
            notifications(&d)[0]
                .summary
                .ends_with("after 36s (was: step \"signalling\" no_match)")
        );
    }

    #[test]
    fn two_failures_trigger_once_and_two_passes_resolve_once() {
        let cfg = PolicyConfig::default();
        let mut s = ProbeAlertState::default();
        s.observe(&cx(&cfg), &run(0, false, 5000), t(5));
        let d = s.observe(&cx(&cfg), &run(15, false, 5000), t(20));
        let n = notifications(&d);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].kind, EventKind::Trigger);
        assert_eq!(n[0].severity, Severity::Critical);
        assert_eq!(n[0].dedup_key, "joincanary/eu-west-1/join-flow/critical");
        assert_eq!(
            n[0].summary,
            "join-flow failing in eu-west-1: step \"signalling\" no_match after 5.0 s: no frame matched (login 42 ms, websocket 18 ms OK)"
        );
        assert_eq!(n[0].details["confirming_runs"].as_array().unwrap().len(), 2);
        assert_eq!(n[0].started_at, t(0));
        assert!(notifications(&s.observe(&cx(&cfg), &run(60, false, 5000), t(65))).is_empty());
        let d = s.observe(&cx(&cfg), &run(120, true, 20), t(121));
        let recovery = Confirming::Recovery { runs: 1, needed: 2 };
        assert_eq!(
            d,
            vec![Decision::Confirm(Duration::from_secs(10), recovery)]
        );
        let d = s.observe(&cx(&cfg), &run(131, true, 20), t(132));
        let n = notifications(&d);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].kind, EventKind::Resolve);
        assert_eq!(
            n[0].summary,
            "join-flow recovered in eu-west-1 after 2m 12s (was: step \"signalling\" no_match)"
        );
        assert!(notifications(&s.observe(&cx(&cfg), &run(180, true, 20), t(181))).is_empty());
    }

    #[test]
    fn group_key_is_shared_across_regions() {
        let cfg = PolicyConfig {
            group_key: Some("platform-join".into()),
            ..PolicyConfig::default()
        };
        assert_eq!(
            cx(&cfg).dedup_key(Severity::Critical),
            "joincanary/platform-join/critical"
        );
    }

    #[test]
    fn latency_over_budget_raises_only_the_warning() {
        let cfg = budget_of_a_second(Phase::RoundTrip, 2);
        let mut s = ProbeAlertState::default();
        assert!(notifications(&s.observe(&cx(&cfg), &run(0, true, 1400), t(2))).is_empty());
        let d = s.observe(&cx(&cfg), &run(60, true, 1400), t(62));
        let n = notifications(&d);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].severity, Severity::Warning);
        assert_eq!(n[0].dedup_key, "joincanary/eu-west-1/join-flow/warning");
        assert_eq!(
            n[0].summary,
            "join-flow degraded in eu-west-1: step \"signalling\" round_trip 1.4 s over its 1.0 s budget (2 runs in a row)"
        );
        assert!(s.critical.is_none());
        s.observe(&cx(&cfg), &run(120, true, 20), t(121));
        let n2 = s.observe(&cx(&cfg), &run(180, true, 20), t(181));
        assert_eq!(notifications(&n2)[0].kind, EventKind::Resolve);
    }

    #[test]
    fn hard_failure_pages_while_a_warning_is_open() {
        let cfg = budget_of_a_second(Phase::Total, 1);
        let mut s = ProbeAlertState::default();
        s.observe(&cx(&cfg), &run(0, true, 1400), t(2));
        assert!(s.warning.is_some());
        s.observe(&cx(&cfg), &run(60, false, 5000), t(65));
        let n = s.observe(&cx(&cfg), &run(75, false, 5000), t(80));
        assert_eq!(notifications(&n)[0].severity, Severity::Critical);
        assert_eq!(s.open().count(), 2);
    }

    #[test]
    fn maintenance_holds_pages_until_the_window_ends() {
        let cfg = windows(&[("0 3 * * *", 600)]);
        let mut s = ProbeAlertState::default();
        s.observe(&cx(&cfg), &run(0, false, 5000), t(5));
        assert!(notifications(&s.observe(&cx(&cfg), &run(15, false, 5000), t(20))).is_empty());
        assert!(s.critical.is_some());
        assert!(s.tick(&cx(&cfg), t(300)).is_empty());
        let d = s.tick(&cx(&cfg), t(601));
        assert_eq!(notifications(&d).len(), 1);
        assert!(!notifications(&d)[0].reminder);
    }

    /// A maintenance window is written in wall-clock time: after the host's clock was stepped
    /// (the service's own clock reads on unstepped) it is judged on the system clock. Before, a
    /// clock stepped an hour back held the pages of 03:00-03:10 by the service's clock, when
    /// the host said 02:00: paged nobody in a window nobody planned, and paged inside the real one.
    #[test]
    fn maintenance_follows_the_system_clock_after_a_step() {
        let cfg = windows(&[("0 3 * * *", 600)]);
        // The system clock an hour behind the service's: 03:00 by the service is 02:00 by the
        // host, outside the window: the confirmed failure pages.
        let behind = AlertContext {
            system_offset: chrono::TimeDelta::hours(-1),
            ..cx(&cfg)
        };
        let mut s = ProbeAlertState::default();
        s.observe(&behind, &run(0, false, 5000), t(5));
        assert_eq!(
            notifications(&s.observe(&behind, &run(15, false, 5000), t(20))).len(),
            1
        );
        // An hour ahead: 02:00 by the service is 03:00 by the host, inside: held back until
        // the window's end on the host's clock (02:10 by the service), then sent by the tick.
        let ahead = AlertContext {
            system_offset: chrono::TimeDelta::hours(1),
            ..cx(&cfg)
        };
        let mut s = ProbeAlertState::default();
        s.observe(&ahead, &run(-3600, false, 5000), t(-3595));
        assert!(notifications(&s.observe(&ahead, &run(-3585, false, 5000), t(-3580))).is_empty());
        assert!(s.critical.is_some());
        assert!(s.tick(&ahead, t(-3300)).is_empty());
        assert_eq!(notifications(&s.tick(&ahead, t(-2999))).len(), 1);
    }

    /// Issue 17: a window of 100000000 years made `at - duration` overflow and panic the run
    /// consumer. The config refuses it now; the arithmetic is checked regardless.
    #[test]
    fn maintenance_arithmetic_never_panics_at_the_ends_of_time() {
        for secs in [0, 1, 600, 3_155_760_000_000_000, u64::MAX / 4, u64::MAX] {
            let cfg = windows(&[("0 3 * * *", secs)]);
            for at in [DateTime::<Utc>::MIN_UTC, t(5), DateTime::<Utc>::MAX_UTC] {
                let _ = cfg.in_maintenance(at);
            }
        }
    }

    /// Windows that hold every page for a week are told apart from ordinary ones, and the
    /// arithmetic stays bounded and panic-free at the ends of time.
    #[test]
    fn maintenance_that_never_ends_is_found() {
        let week = Duration::from_secs(7 * 86_400);
        for (list, muted) in [
            (vec![("0 2 * * sun", 3_600)], false),
            (vec![("0 3 * * *", 600)], false),
            // Every minute for an hour; every two hours for two; once a year for a year.
            (vec![("* * * * *", 3_600)], true),
            (vec![("0 */2 * * *", 7_200)], true),
            (vec![("0 0 1 1 *", 366 * 86_400)], true),
            // Two entries that only together cover the clock: 00:00-12:00 and 12:00-24:00.
            (vec![("0 0 * * *", 43_200), ("0 12 * * *", 43_200)], true),
            (vec![("0 0 * * *", 43_200), ("0 12 * * *", 43_000)], false),
        ] {
            assert_eq!(windows(&list).muted_for(t(5), week), muted, "{list:?}");
        }
        let cfg = windows(&[("* * * * * *", 365 * 86_400)]);
        for at in [DateTime::<Utc>::MIN_UTC, t(5), DateTime::<Utc>::MAX_UTC] {
            let _ = cfg.muted_for(at, week);
        }
    }

    #[test]
    fn resolving_an_alert_held_back_by_maintenance_sends_nothing() {
        let cfg = windows(&[("0 3 * * *", 600)]);
        let mut s = ProbeAlertState::default();
        s.observe(&cx(&cfg), &run(0, false, 5000), t(5));
        s.observe(&cx(&cfg), &run(15, false, 5000), t(20));
        s.observe(&cx(&cfg), &run(60, true, 20), t(61));
        assert!(notifications(&s.observe(&cx(&cfg), &run(70, true, 20), t(71))).is_empty());
        assert!(s.critical.is_none());
    }

    #[test]
    fn reminders_repeat_on_the_interval() {
        let cfg = PolicyConfig {
            reminder_interval: Some(Duration::from_secs(1800)),
            ..PolicyConfig::default()
        };
        let mut s = ProbeAlertState::default();
        s.observe(&cx(&cfg), &run(0, false, 5000), t(5));
        s.observe(&cx(&cfg), &run(15, false, 5000), t(20));
        assert!(s.tick(&cx(&cfg), t(1000)).is_empty());
        let d = s.tick(&cx(&cfg), t(1820));
        assert_eq!(notifications(&d).len(), 1);
        assert!(notifications(&d)[0].reminder);
        assert!(s.tick(&cx(&cfg), t(1830)).is_empty());
    }

    #[test]
    fn state_survives_serialisation() {
        let cfg = PolicyConfig::default();
        let mut s = ProbeAlertState::default();
        s.observe(&cx(&cfg), &run(0, false, 5000), t(5));
        s.observe(&cx(&cfg), &run(15, false, 5000), t(20));
        let text = serde_json::to_string(&s).unwrap();
        let back: ProbeAlertState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
    }
}
