//! PagerDuty Events API v2: one event per notification, keyed by the incident's dedup key.

use serde_json::json;

use super::notify::{Request, Secret};
use super::{EventKind, Notification, Severity};
use crate::config::Ctx;
use crate::config::raw::{RawPager, S};

pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// PagerDuty's limit on `payload.summary`.
const SUMMARY_MAX: usize = 1024;

#[derive(Debug, Clone)]
pub struct PagerDuty {
    pub url: String,
    pub routing_key: Secret,
}

impl PagerDuty {
    pub(crate) fn build(ctx: &mut Ctx<'_>, p: &S<RawPager>, i: usize) -> Option<PagerDuty> {
        let r = p.get_ref();
        super::reject_keys(ctx, r, i, &["url", "routing_key"]);
        let url = match super::optional(ctx, r.url.as_ref(), i, "url") {
            Some(u) => super::check_url(ctx, u, r.url.as_ref(), i, "url"),
            None => Some(DEFAULT_URL.to_string()),
        };
        let key = super::required(ctx, p, r.routing_key.as_ref(), i, "routing_key");
        Some(PagerDuty {
            url: url?,
            routing_key: Secret::new(key?),
        })
    }
}

/// The Events API v2 body; a resolve needs only the key, the action and the dedup key.
pub fn build_request(plan: &PagerDuty, n: &Notification) -> Request {
    let body = match n.kind {
        EventKind::Resolve => json!({
            "routing_key": plan.routing_key.expose(),
            "event_action": "resolve",
            "dedup_key": n.dedup_key,
        }),
        EventKind::Trigger => json!({
            "routing_key": plan.routing_key.expose(),
            "event_action": "trigger",
            "dedup_key": n.dedup_key,
            "payload": {
                "summary": super::truncate(&n.summary, SUMMARY_MAX),
                "source": format!("joincanary/{}", n.region),
                "severity": match n.severity {
                    Severity::Critical => "critical",
                    Severity::Warning => "warning",
                },
                "component": n.probe,
                "group": n.region,
                "class": n.reason.map_or("degraded", |r| r.as_str()),
                "custom_details": n.details,
            },
            "links": n.links.iter().map(|l| json!({"href": l.href, "text": l.text})).collect::<Vec<_>>(),
        }),
    };
    Request {
        url: plan.url.clone(),
        headers: Vec::new(),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::sample;

    fn plan() -> PagerDuty {
        PagerDuty {
            url: DEFAULT_URL.into(),
            routing_key: Secret::new("R0UTINGKEY"),
        }
    }

    #[test]
    fn trigger_payload() {
        let req = build_request(&plan(), &sample(EventKind::Trigger));
        assert_eq!(req.url, DEFAULT_URL);
        assert_eq!(
            req.body,
            json!({
                "routing_key": "R0UTINGKEY",
                "event_action": "trigger",
                "dedup_key": "joincanary/sim-join/eu-west-1/critical",
                "payload": {
                    "summary": "sim-join failing in eu-west-1: step \"signalling\" no_match after 5.0 s",
                    "source": "joincanary/eu-west-1",
                    "severity": "critical",
                    "component": "sim-join",
                    "group": "eu-west-1",
                    "class": "no_match",
                    "custom_details": {"steps": [{"name": "login", "ms": 42}]},
                },
                "links": [{"href": "http://canary.example/status", "text": "status"}],
            })
        );
        assert!(!format!("{req:?}").contains("R0UTINGKEY"));
    }

    #[test]
    fn resolve_payload_and_truncation() {
        let req = build_request(&plan(), &sample(EventKind::Resolve));
        assert_eq!(
            req.body,
            json!({
                "routing_key": "R0UTINGKEY",
                "event_action": "resolve",
                "dedup_key": "joincanary/sim-join/eu-west-1/critical",
            })
        );
        let mut n = sample(EventKind::Trigger);
        n.summary = "x".repeat(5000);
        n.reason = None;
        n.severity = Severity::Warning;
        let req = build_request(&plan(), &n);
        let summary = req.body["payload"]["summary"].as_str().unwrap_or_default();
        assert_eq!(summary.chars().count(), 1024);
        assert_eq!(req.body["payload"]["class"], "degraded");
        assert_eq!(req.body["payload"]["severity"], "warning");
    }
}
