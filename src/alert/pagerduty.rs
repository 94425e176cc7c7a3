//! PagerDuty Events API v2: one event per notification, keyed by the incident's dedup key.

use serde_json::json;

use super::notify::Request;
use super::table::{Entry, pager_table};
use super::{EventKind, Notification, Severity, limits};
use crate::diag::{Ctx, S};
use crate::secret::Secret;

pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

#[derive(Debug, Clone)]
pub struct PagerDuty {
    pub url: String,
    pub routing_key: Secret,
}

pager_table! {
    /// `type = "pagerduty"`.
    pub struct RawPagerDuty {
        /// The Events API v2 URL (default: PagerDuty's).
        pub url: Option<S<String>>,
        /// The integration's routing key (a secret).
        pub routing_key: Option<S<String>>,
    }
}

impl PagerDuty {
    pub(crate) fn build(ctx: &mut Ctx<'_>, e: &Entry<'_>, r: &RawPagerDuty) -> Option<PagerDuty> {
        let url = match e.optional(ctx, r.url.as_ref(), "url") {
            Some(u) => e.url(ctx, u, r.url.as_ref(), "url"),
            None => Some(DEFAULT_URL.to_string()),
        };
        let key = e.required(ctx, r.routing_key.as_ref(), "routing_key");
        Some(PagerDuty {
            url: url?,
            routing_key: Secret::new(key?),
        })
    }
}

/// The Events API v2 body; a resolve needs only the key, the action and the dedup key. The dedup
/// key is hashed past 255 characters (the same way for trigger and resolve), the summary cut to
/// 1024, and the details shrunk when the event would pass 512 KB (see [`limits`]).
pub fn build_request(plan: &PagerDuty, n: &Notification) -> Request {
    let dedup_key = limits::fit_key(&n.dedup_key, limits::PD_DEDUP_KEY);
    let mut body = match n.kind {
        EventKind::Resolve => json!({
            "routing_key": plan.routing_key.expose(),
            "event_action": "resolve",
            "dedup_key": dedup_key,
        }),
        EventKind::Trigger => json!({
            "routing_key": plan.routing_key.expose(),
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "payload": {
                "summary": limits::fit_line("", &n.summary, &n.probe, &n.region, limits::PD_SUMMARY, limits::plain),
                "source": format!("joincanary/{}", n.region),
                "severity": match n.severity {
                    Severity::Critical => "critical",
                    Severity::Warning => "warning",
                },
                "component": n.probe,
                "group": n.region,
                // A test page has no reason; "degraded" there would name a state it is not.
                "class": if n.test { "test" } else { n.reason.map_or("degraded", |r| r.as_str()) },
                "custom_details": n.details,
            },
            "links": n.links.iter().map(|l| json!({"href": l.href, "text": l.text})).collect::<Vec<_>>(),
        }),
    };
    // The incident's "View in joincanary" button: the status page (or the dashboard).
    if let (EventKind::Trigger, Some(obj)) = (n.kind, body.as_object_mut()) {
        obj.insert("client".into(), json!("joincanary"));
        if let Some(link) = n.links.first() {
            obj.insert("client_url".into(), json!(link.href));
        }
    }
    shrink_details(&mut body);
    Request {
        url: plan.url.clone(),
        headers: Vec::new(),
        body,
    }
}

/// Keeps the serialized event under 512 KB: first drop the history (earlier runs), then cut what
/// is left to a string that fits, marked as cut.
fn shrink_details(body: &mut serde_json::Value) {
    let size = |b: &serde_json::Value| serde_json::to_vec(b).map_or(usize::MAX, |v| v.len());
    // Room for the marker keys and rounding.
    const SLACK: usize = 256;
    if size(body) <= limits::PD_EVENT_BYTES - SLACK {
        return;
    }
    let Some(details) = body.pointer_mut("/payload/custom_details") else {
        return;
    };
    if let Some(obj) = details.as_object_mut() {
        obj.remove("confirming_runs");
        obj.remove("last_success");
    }
    if size(body) <= limits::PD_EVENT_BYTES - SLACK {
        return;
    }
    let text = body
        .pointer("/payload/custom_details")
        .map(|d| serde_json::to_string_pretty(d).unwrap_or_default())
        .unwrap_or_default();
    if let Some(d) = body.pointer_mut("/payload/custom_details") {
        *d = json!({});
    }
    let rest = size(body);
    let budget = limits::PD_EVENT_BYTES.saturating_sub(rest + SLACK);
    if let Some(d) = body.pointer_mut("/payload/custom_details") {
        *d = json!({
            "cut": "details cut to fit PagerDuty's 512 KB event limit",
            "details": limits::fit(&text, budget, limits::json_bytes),
        });
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
                "client": "joincanary",
                "client_url": "http://canary.example/status",
            })
        );
        assert!(!format!("{req:?}").contains("R0UTINGKEY"));
        // Without links: the client is named, no client_url (PagerDuty wants a URL there).
        let mut n = sample(EventKind::Trigger);
        n.links.clear();
        let body = build_request(&plan(), &n).body;
        assert_eq!(body["client"], "joincanary");
        assert!(body.get("client_url").is_none(), "{body}");
        // A resolve carries only what PagerDuty reads of it.
        let body = build_request(&plan(), &sample(EventKind::Resolve)).body;
        assert!(body.get("client").is_none(), "{body}");
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
        assert!(summary.ends_with('…'));
        assert_eq!(req.body["payload"]["class"], "degraded");
        assert_eq!(req.body["payload"]["severity"], "warning");
    }

    #[test]
    fn long_keys_and_huge_details_fit() {
        let mut n = sample(EventKind::Trigger);
        n.dedup_key = format!("joincanary/eu-west-1/{}/critical", "p".repeat(400));
        n.details = json!({"error": "<html>".repeat(200_000), "confirming_runs": [1, 2]});
        let req = build_request(&plan(), &n);
        let key = req.body["dedup_key"].as_str().unwrap_or_default();
        assert_eq!(key.chars().count(), 255);
        let size = serde_json::to_vec(&req.body)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        assert!(size <= limits::PD_EVENT_BYTES, "{size}");
        assert!(req.body["payload"]["custom_details"]["cut"].is_string());
        let mut r = n.clone();
        r.kind = EventKind::Resolve;
        assert_eq!(build_request(&plan(), &r).body["dedup_key"], key);
    }
}
