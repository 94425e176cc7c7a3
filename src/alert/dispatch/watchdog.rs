//! The always-firing `JoinCanaryWatchdog` an Alertmanager pager is posted while the scheduler
//! is healthy, so a dead man's switch behind Alertmanager notices a prober that stopped.

use super::Shared;

/// The always-firing `JoinCanaryWatchdog` of an Alertmanager pager, posted to every member.
pub(super) struct Watchdog {
    pub(super) plan: crate::alert::alertmanager::Alertmanager,
    pub(super) members: crate::alert::alertmanager::Members,
}

impl Watchdog {
    /// Posts the watchdog unless the scheduler is stuck (then it lapses, and the dead man's
    /// switch behind Alertmanager notices). Keep-alive: not counted in `notifications_total`.
    pub(super) async fn post(&self, shared: &Shared, sink: &str) {
        if let Some(why) = shared.liveness.get().and_then(|l| l.stalled()) {
            tracing::error!(sink, why = %why, "the scheduler is stuck: watchdog alert withheld");
            return;
        }
        let body = crate::alert::alertmanager::build_watchdog(
            &self.plan,
            &shared.metrics.region,
            shared.clock.on_system(shared.clock.started()),
            shared.clock.system_now(),
        );
        match self.members.post(&body, false).await {
            Ok(()) => {
                shared.metrics.delivery.success(sink, shared.clock.now());
                tracing::debug!(sink, "watchdog alert posted");
            }
            Err(e) => {
                shared
                    .metrics
                    .delivery
                    .failure(sink, shared.clock.now(), &e.to_string());
                tracing::warn!(sink, error = %e, "posting the watchdog alert failed");
            }
        }
    }
}
