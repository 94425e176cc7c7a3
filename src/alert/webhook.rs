//! Slack incoming webhooks, and a generic JSON webhook whose body is a stable, versioned shape:
//!
//! `{"version": 1, "event": "trigger"|"resolve", "severity": "critical"|"warning", "dedup_key",
//! "probe", "region", "summary", "failed_step": str|null, "reason": str|null, "details": {..},
//! "started_at": RFC 3339, "at": RFC 3339, "reminder": bool, "test": bool,
//! "links": [{"text", "href"}]}`. Fields are only ever added; a breaking change bumps `version`.

use serde_json::json;

use super::notify::{Request, Secret};
use super::{EventKind, Notification};
use crate::config::Ctx;
use crate::config::raw::{RawPager, S};

/// Slack's limit on a section block's text.
const SLACK_SECTION_MAX: usize = 2900;

#[derive(Debug, Clone)]
pub struct Slack {
    /// The incoming-webhook URL: its path is the secret.
    pub url: Secret,
}

impl Slack {
    pub(crate) fn build(ctx: &mut Ctx<'_>, p: &S<RawPager>, i: usize) -> Option<Slack> {
        let r = p.get_ref();
        super::reject_keys(ctx, r, i, &["url"]);
        let url = super::required(ctx, p, r.url.as_ref(), i, "url")
            .and_then(|u| super::check_url(ctx, u, r.url.as_ref(), i, "url"));
        Some(Slack {
            url: Secret::new(url?),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: Secret,
    /// Extra headers; values may be secrets (an `Authorization` token).
    pub headers: Vec<(String, Secret)>,
}

impl Webhook {
    pub(crate) fn build(ctx: &mut Ctx<'_>, p: &S<RawPager>, i: usize) -> Option<Webhook> {
        let r = p.get_ref();
        super::reject_keys(ctx, r, i, &["url", "headers"]);
        let url = super::required(ctx, p, r.url.as_ref(), i, "url")
            .and_then(|u| super::check_url(ctx, u, r.url.as_ref(), i, "url"));
        let mut headers = Vec::new();
        let mut ok = true;
        for (name, value) in &r.headers {
            let key = format!("pager[{i}].headers.{name}");
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                ctx.error(Some(value.span()), &key, "is not a valid header name");
                ok = false;
                continue;
            }
            let Some(v) = ctx.env_str(value, &key) else {
                ok = false;
                continue;
            };
            if reqwest::header::HeaderValue::from_str(&v).is_err() {
                // The value may be a secret: never repeat it.
                ctx.error(Some(value.span()), &key, "has a value that cannot be sent");
                ok = false;
                continue;
            }
            headers.push((name.clone(), Secret::new(v)));
        }
        ok.then_some(())?;
        Some(Webhook {
            url: Secret::new(url?),
            headers,
        })
    }
}

/// Slack: a plain `text` (shown in notifications) and blocks with the details.
pub fn build_slack_request(plan: &Slack, n: &Notification) -> Request {
    let text = format!("{} {}", n.marker(), n.summary);
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": slack_escape(&super::truncate(&text, SLACK_SECTION_MAX))},
    })];
    if n.kind == EventKind::Trigger {
        let details = n.details_text();
        if !details.is_empty() {
            // Backticks would end the code block early.
            let details = super::truncate(&details.replace("```", "'''"), SLACK_SECTION_MAX);
            blocks.push(json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!("```{}```", slack_escape(&details))},
            }));
        }
    }
    if !n.links.is_empty() {
        let links = n
            .links
            .iter()
            .map(|l| {
                format!(
                    "<{}|{}>",
                    slack_escape(&l.href).replace('|', "%7C"),
                    slack_escape(&l.text).replace('|', "/")
                )
            })
            .collect::<Vec<_>>()
            .join(" · ");
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": links}],
        }));
    }
    Request {
        url: plan.url.expose().to_string(),
        headers: Vec::new(),
        body: json!({"text": text, "blocks": blocks}),
    }
}

/// Slack's three control characters in mrkdwn.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The generic webhook's stable body (see the module docs).
pub fn payload(n: &Notification) -> serde_json::Value {
    json!({
        "version": 1,
        "event": n.kind.as_str(),
        "severity": n.severity.as_str(),
        "dedup_key": n.dedup_key,
        "probe": n.probe,
        "region": n.region,
        "summary": n.summary,
        "failed_step": n.failed_step,
        "reason": n.reason.map(|r| r.as_str()),
        "details": n.details,
        "started_at": n.started_at.to_rfc3339(),
        "at": n.at.to_rfc3339(),
        "reminder": n.reminder,
        "test": n.test,
        "links": n.links,
    })
}

pub fn build_request(plan: &Webhook, n: &Notification) -> Request {
    Request {
        url: plan.url.expose().to_string(),
        headers: plan
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string()))
            .collect(),
        body: payload(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::sample;

    #[test]
    fn slack_payload() {
        let plan = Slack {
            url: Secret::new("https://hooks.slack.com/services/T0/B0/XYZ"),
        };
        let req = build_slack_request(&plan, &sample(EventKind::Trigger));
        let text = req.body["text"].as_str().unwrap_or_default();
        assert!(
            text.starts_with("[FIRING critical] sim-join failing"),
            "{text}"
        );
        assert_eq!(req.body["blocks"].as_array().map(Vec::len), Some(3));
        assert!(
            req.body["blocks"][1]["text"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("login") && t.starts_with("```"))
        );
        assert_eq!(
            req.body["blocks"][2]["elements"][0]["text"],
            "<http://canary.example/status|status>"
        );
        let resolve = build_slack_request(&plan, &sample(EventKind::Resolve));
        assert!(
            resolve.body["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("[RESOLVED] "))
        );
        let mut test = sample(EventKind::Trigger);
        test.test = true;
        let t = build_slack_request(&plan, &test);
        assert!(
            t.body["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("[TEST] "))
        );
        assert!(!format!("{plan:?}").contains("XYZ"));
    }

    #[test]
    fn webhook_payload_is_stable() {
        let plan = Webhook {
            url: Secret::new("http://127.0.0.1:1/hook"),
            headers: vec![("Authorization".into(), Secret::new("Bearer tok"))],
        };
        let req = build_request(&plan, &sample(EventKind::Trigger));
        assert_eq!(
            req.headers,
            vec![("Authorization".to_string(), "Bearer tok".to_string())]
        );
        assert_eq!(
            req.body,
            json!({
                "version": 1,
                "event": "trigger",
                "severity": "critical",
                "dedup_key": "joincanary/sim-join/eu-west-1/critical",
                "probe": "sim-join",
                "region": "eu-west-1",
                "summary": "sim-join failing in eu-west-1: step \"signalling\" no_match after 5.0 s",
                "failed_step": "signalling",
                "reason": "no_match",
                "details": {"steps": [{"name": "login", "ms": 42}]},
                "started_at": "2025-03-01T12:00:00+00:00",
                "at": "2025-03-01T12:05:00+00:00",
                "reminder": false,
                "test": false,
                "links": [{"text": "status", "href": "http://canary.example/status"}],
            })
        );
        assert!(!format!("{plan:?}").contains("Bearer tok"));
    }
}
