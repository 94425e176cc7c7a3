//! Prometheus Alertmanager API v2: post the alert; while it fires the dispatcher re-posts it
//! every `resend_interval`, and a resolve is the same alert with `endsAt` = now.

use std::time::Duration;

use serde_json::json;

use super::notify::{Request, Secret};
use super::{EventKind, Notification, Severity};
use crate::config::Ctx;
use crate::config::raw::{RawPager, S};

pub const DEFAULT_RESEND_INTERVAL: Duration = Duration::from_secs(60);

/// A firing alert ends on its own this many resend intervals after the last post, as Prometheus
/// does it: if joincanary dies, the alert resolves instead of firing forever.
const ENDS_AFTER_RESENDS: u32 = 4;

#[derive(Debug, Clone)]
pub struct Alertmanager {
    /// Base URL, e.g. `http://alertmanager:9093` (may hold basic-auth credentials).
    pub url: Secret,
    pub resend_interval: Duration,
}

impl Alertmanager {
    pub(crate) fn build(ctx: &mut Ctx<'_>, p: &S<RawPager>, i: usize) -> Option<Alertmanager> {
        let r = p.get_ref();
        super::reject_keys(ctx, r, i, &["url", "resend_interval"]);
        let url = super::required(ctx, p, r.url.as_ref(), i, "url")
            .and_then(|u| super::check_url(ctx, u, r.url.as_ref(), i, "url"));
        let resend_interval = match &r.resend_interval {
            Some(v) => ctx.duration(v, &format!("pager[{i}].resend_interval")),
            None => Some(DEFAULT_RESEND_INTERVAL),
        };
        Some(Alertmanager {
            url: Secret::new(url?.trim_end_matches('/').to_string()),
            resend_interval: resend_interval?,
        })
    }
}

/// The labels identify the alert: a resolve must carry the trigger's labels, which is why the
/// dispatcher resolves from the last trigger it posted.
pub fn build_request(plan: &Alertmanager, n: &Notification) -> Request {
    let mut labels = serde_json::Map::new();
    let mut label = |k: &str, v: &str| {
        labels.insert(k.into(), serde_json::Value::String(v.into()));
    };
    label(
        "alertname",
        match n.severity {
            Severity::Critical => "JoinFlowFailing",
            Severity::Warning => "JoinFlowDegraded",
        },
    );
    label("probe", &n.probe);
    label("region", &n.region);
    label("severity", n.severity.as_str());
    if let Some(s) = &n.failed_step {
        label("step", s);
    }
    if let Some(r) = n.reason {
        label("reason", r.as_str());
    }
    if n.test {
        label("test", "true");
    }
    let ends_at = match n.kind {
        EventKind::Resolve => n.at,
        EventKind::Trigger => {
            n.at + chrono::Duration::from_std(plan.resend_interval * ENDS_AFTER_RESENDS)
                .unwrap_or_else(|_| chrono::Duration::minutes(5))
        }
    };
    let mut alert = json!({
        "labels": labels,
        "annotations": {
            "summary": n.summary,
            "description": n.details_text(),
        },
        "startsAt": n.started_at.to_rfc3339(),
        "endsAt": ends_at.to_rfc3339(),
    });
    let status = n
        .links
        .iter()
        .find(|l| l.text.to_ascii_lowercase().contains("status"))
        .or(n.links.first());
    if let (Some(l), Some(obj)) = (status, alert.as_object_mut()) {
        obj.insert("generatorURL".into(), json!(l.href));
    }
    Request {
        url: format!("{}/api/v2/alerts", plan.url.expose()),
        headers: Vec::new(),
        body: json!([alert]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::sample;

    fn plan() -> Alertmanager {
        Alertmanager {
            url: Secret::new("http://am:9093"),
            resend_interval: Duration::from_secs(60),
        }
    }

    #[test]
    fn firing_payload() {
        let n = sample(EventKind::Trigger);
        let req = build_request(&plan(), &n);
        assert_eq!(req.url, "http://am:9093/api/v2/alerts");
        assert_eq!(
            req.body,
            json!([{
                "labels": {
                    "alertname": "JoinFlowFailing",
                    "probe": "sim-join",
                    "region": "eu-west-1",
                    "severity": "critical",
                    "step": "signalling",
                    "reason": "no_match",
                },
                "annotations": {"summary": n.summary, "description": n.details_text()},
                "generatorURL": "http://canary.example/status",
                "startsAt": "2025-03-01T12:00:00+00:00",
                "endsAt": "2025-03-01T12:09:00+00:00",
            }])
        );
    }

    #[test]
    fn resolved_payload_ends_now() {
        let mut n = sample(EventKind::Resolve);
        n.severity = Severity::Warning;
        let req = build_request(&plan(), &n);
        assert_eq!(req.body[0]["endsAt"], "2025-03-01T12:05:00+00:00");
        assert_eq!(req.body[0]["labels"]["alertname"], "JoinFlowDegraded");
    }
}
