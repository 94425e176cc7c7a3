//! [`Observed`]: a notifier wrapper the dispatcher puts around every pager, so every attempt
//! (pages, retries, the shutdown flush, Alertmanager re-posts) is recorded in the pagers'
//! [`DeliveryHealth`] (a leaf, `crate::delivery`, that metrics and status read), as the
//! Alertmanager watchdog's posts are: "Slack answers 403" and "Alertmanager is down" show on
//! the page while nothing is firing.

use super::notify::{Notifier, SendFuture};
use super::{Notification, PagerPlan};
use crate::clock::Clock;
use crate::delivery::DeliveryHealth;

/// A notifier that records each attempt's outcome in [`DeliveryHealth`].
pub struct Observed {
    inner: Box<dyn Notifier>,
    pager: String,
    health: std::sync::Arc<DeliveryHealth>,
    clock: Clock,
    redactor: crate::redact::Redactor,
}

impl Observed {
    /// Wraps `inner`, the notifier of `plan`.
    pub fn wrap(
        inner: Box<dyn Notifier>,
        plan: &PagerPlan,
        health: std::sync::Arc<DeliveryHealth>,
        clock: Clock,
    ) -> Box<dyn Notifier> {
        health.set_kind(&plan.name, plan.type_name());
        Box::new(Observed {
            inner,
            pager: plan.name.clone(),
            health,
            clock,
            redactor: plan.redactor.clone(),
        })
    }
}

impl Notifier for Observed {
    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move {
            let result = self.inner.send(n).await;
            match &result {
                Ok(()) => self.health.success(&self.pager, self.clock.now()),
                // Notifiers already keep secrets out of their errors; scrubbed again all the
                // same, since this text is shown to anyone who can read the page.
                Err(e) => self.health.failure(
                    &self.pager,
                    self.clock.now(),
                    &self.redactor.scrub(&e.to_string()),
                ),
            }
            result
        })
    }

    fn catch_up<'a>(&'a self) -> super::notify::CatchUpFuture<'a> {
        self.inner.catch_up()
    }
}
