//! `joincanary test-page`: one marked trigger and resolve through each pager, directly.

use std::time::Duration;

use super::notify::{self, DeliveryError};
use super::{EventKind, Link, Notification, PagerKind, PagerPlan, Severity};
use crate::clock::Clock;

/// `joincanary test-page`: a clearly marked trigger then resolve through each pager, directly
/// (no queue, no retries), so the operator sees each pager's result at once. It carries the
/// same `links` as a real page ([`super::links`]), so they can be checked too. An Alertmanager
/// pager keeps the alert firing until Alertmanager has notified (`wait`, else its route's
/// `group_wait`: see [`super::alertmanager::test_page`]); the others resolve at once. Each
/// result holds what was found on the way, one line each.
pub async fn test_page(
    pagers: &[PagerPlan],
    region: &str,
    links: &[Link],
    wait: Option<Duration>,
    clock: Clock,
) -> Vec<(String, Result<Vec<String>, DeliveryError>)> {
    let client = notify::http_client();
    let id = uuid::Uuid::new_v4();
    let runs = pagers.iter().map(|plan| {
        let client = notify::client_for(plan.tls.as_ref(), &client);
        async move {
            let result = async {
                let client = client?;
                let now = clock.now();
                let mut n = Notification {
                    kind: EventKind::Trigger,
                    severity: Severity::Critical,
                    dedup_key: format!("joincanary/test-page/{region}/{id}"),
                    probe: "test-page".into(),
                    region: region.to_string(),
                    summary: format!(
                        "[TEST] joincanary test page from {region}: not a real incident"
                    ),
                    failed_step: None,
                    reason: None,
                    details: serde_json::json!({
                        "test": true,
                        "note": "sent by `joincanary test-page`; resolves itself",
                    }),
                    started_at: now,
                    at: now,
                    reminder: false,
                    test: true,
                    links: links.to_vec(),
                };
                if let PagerKind::Alertmanager(am) = &plan.kind {
                    let members = super::alertmanager::Members::new(
                        &plan.name,
                        am,
                        &client,
                        plan.timeout,
                        plan.redactor.clone(),
                        None,
                        clock,
                    );
                    let api = super::alertmanager::HttpAm { members: &members };
                    // Each finding is logged as it is made: the wait is up to minutes.
                    let say = |line: &str| tracing::info!(sink = %plan.name, region, "{line}");
                    return super::alertmanager::test_page(&api, am, n, wait, &clock, &say).await;
                }
                let notifier = crate::alert::pagers::notifier_for(plan, &client, clock, None);
                notifier.send(&n).await?;
                if matches!(plan.kind, PagerKind::Opsgenie(_)) {
                    // Opsgenie creates alerts asynchronously; a close sent at once can miss it.
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                n.kind = EventKind::Resolve;
                n.at = clock.now();
                n.summary = format!("[TEST] joincanary test page from {region}: resolved");
                notifier.send(&n).await.map(|()| Vec::new())
            }
            .await;
            match &result {
                Ok(_) => tracing::info!(sink = %plan.name, region, "test page delivered"),
                Err(e) => {
                    tracing::error!(sink = %plan.name, region, error = %e, "test page failed")
                }
            }
            (plan.name.clone(), result)
        }
    });
    futures_util::future::join_all(runs).await
}
