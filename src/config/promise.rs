//! The 90-second promise held against a probe's settings: how late, at worst, its first page
//! can come after a fault, for `check`'s warnings and `run`'s log ([`super::Plan::quiet`]).

use std::time::Duration;

use crate::flow::ProbePlan;

/// The README's promise: a broken join flow pages on-call within this of the fault.
pub const PAGE_PROMISE: Duration = Duration::from_secs(90);

/// Fires of the schedule looked at for its longest gap (as `flow::load` looks for its
/// shortest).
const SAMPLES: usize = 60;

/// The worst case from a fault to the probe's page, as the alert policy reaches it, with the
/// parts it is made of (README, "Paging on-call"):
/// - the fault comes just after a run passed: the next run starts up to the schedule's longest
///   gap later;
/// - that run fails after at most `fail`: a hung step's timeout (the longest a step that can
///   fail has, a step without one the probe's deadline) and the cleanup steps after it, all
///   within the probe's `timeout`;
/// - `failure_threshold` failed runs in a row page: each further one runs `confirm_delay`
///   after the last (or at the next tick, if that comes first) and fails as late.
///
/// The delivery to the pager (and Alertmanager's `group_wait`) comes on top. `None` for a
/// resident probe (its confirmations ride on a jittered reconnect backoff: docs/resident.md),
/// one whose alerting is disabled, and a schedule that stops firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeToPage {
    pub interval: Duration,
    pub fail: Duration,
    pub confirmations: u32,
    pub confirm_every: Duration,
    pub total: Duration,
}

impl TimeToPage {
    pub fn of(p: &ProbePlan, now: chrono::DateTime<chrono::Utc>) -> Option<TimeToPage> {
        // Disabled alerting is a warning of its own (it pages nobody).
        if p.resident.is_some() || !p.alerting.enabled {
            return None;
        }
        let interval = p.schedule.max_interval(now, SAMPLES)?;
        let step = |t: Option<Duration>| t.unwrap_or(p.timeout).min(p.timeout);
        let hung = p
            .steps
            .iter()
            .filter(|s| !s.cleanup)
            .map(|s| step(s.timeout))
            .max()
            .unwrap_or_default();
        let cleanup: Duration = p
            .steps
            .iter()
            .filter(|s| s.cleanup)
            .map(|s| step(s.timeout))
            .sum();
        let fail = (hung + cleanup).min(p.timeout);
        let confirmations = p.alerting.failure_threshold.saturating_sub(1);
        let confirm_every = p.alerting.confirm_delay.min(interval);
        let total = interval + fail + (confirm_every + fail) * confirmations;
        Some(TimeToPage {
            interval,
            fail,
            confirmations,
            confirm_every,
            total,
        })
    }

    /// The warning when [`TimeToPage::total`] is past [`PAGE_PROMISE`]: the figure, its parts,
    /// and the keys that change them.
    pub fn warning(&self, p: &ProbePlan) -> Option<String> {
        if self.total <= PAGE_PROMISE {
            return None;
        }
        let confirming = match self.confirmations {
            0 => String::new(),
            n => format!(
                " + {n} confirming run{} for `failure_threshold = {}`, each {} later ({}) + {} to fail",
                if n == 1 { "" } else { "s" },
                n + 1,
                secs(self.confirm_every),
                if self.confirm_every < p.alerting.confirm_delay {
                    "the next run, before `confirm_delay`"
                } else {
                    "`confirm_delay`"
                },
                secs(self.fail),
            ),
        };
        Some(format!(
            "probe `{}`: its first page can come {} after a fault, past the {} promise: the next run up to {} later (`schedule` `{}`) + {} to fail (step `timeout`s, the probe's `timeout`){confirming}; \
             run it more often, shorten the timeouts, or lower `[alerting] confirm_delay` or `failure_threshold`",
            p.name,
            secs(self.total),
            secs(PAGE_PROMISE),
            secs(self.interval),
            p.schedule.expr,
            secs(self.fail),
        ))
    }
}

/// `110 s`, as the README writes the promise; whole minutes past ten (`16h`, a schedule's
/// night). Rounded up: the figure is a bound.
fn secs(d: Duration) -> String {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if s < 600 {
        format!("{s} s")
    } else {
        humantime::format_duration(Duration::from_secs(s - s % 60)).to_string()
    }
}
