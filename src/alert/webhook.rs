//! Slack incoming webhooks, and a generic JSON webhook whose body is a stable, versioned shape:
//!
//! `{"version": 1, "event": "trigger"|"resolve", "severity": "critical"|"warning", "dedup_key",
//! "probe", "region", "summary", "failed_step": str|null, "reason": str|null, "details": {..},
//! "started_at": RFC 3339 UTC (`Z`), "at": RFC 3339 UTC, "reminder": bool, "test": bool,
//! "links": [{"text", "href"}]}`. Fields are only ever added; a breaking change bumps `version`.

use std::collections::BTreeMap;

use serde_json::json;

use super::notify::Request;
use super::table::{Entry, pager_table};
use super::{EventKind, Notification, limits, render};
use crate::diag::{Ctx, S};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct Slack {
    /// The incoming-webhook URL: its path is the secret.
    pub url: Secret,
}

pager_table! {
    /// `type = "slack"`.
    pub struct RawSlack {
        /// The incoming-webhook URL (a secret: its path is the key).
        pub url: Option<S<String>>,
    }
}

impl Slack {
    pub(crate) fn build(ctx: &mut Ctx<'_>, e: &Entry<'_>, r: &RawSlack) -> Option<Slack> {
        let url = e
            .required(ctx, r.url.as_ref(), "url")
            .and_then(|u| e.url(ctx, u, r.url.as_ref(), "url"));
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

pager_table! {
    /// `type = "webhook"`.
    pub struct RawWebhook {
        /// Where the JSON body is posted (may hold a token: treated as a secret).
        pub url: Option<S<String>>,
        /// Extra headers, e.g. `{ Authorization = "Bearer ${TOKEN}" }` (values are secrets).
        #[serde(default)]
        pub headers: BTreeMap<String, S<String>>,
    }
}

impl Webhook {
    pub(crate) fn build(ctx: &mut Ctx<'_>, e: &Entry<'_>, r: &RawWebhook) -> Option<Webhook> {
        let url = e
            .required(ctx, r.url.as_ref(), "url")
            .and_then(|u| e.url(ctx, u, r.url.as_ref(), "url"));
        let headers = e.headers(ctx, &r.headers);
        Some(Webhook {
            url: Secret::new(url?),
            headers: headers?,
        })
    }
}

/// Slack: a notification line (`text`), a header, the summary, the facts as fields, the step
/// table and error in a code block, and the links. Every text is measured after mrkdwn escaping
/// and the fences (see [`limits`]): Slack answers `400 invalid_blocks` to one character too many,
/// which is not retried, so the page would be lost.
pub fn build_slack_request(plan: &Slack, n: &Notification) -> Request {
    // The notification line (what the phone shows), fitted like the header.
    let line = limits::fit_line(
        &format!("{} ", n.marker()),
        n.unmarked_summary(),
        &n.probe,
        &n.region,
        limits::SLACK_TOP_TEXT,
        limits::slack,
    );
    let mut blocks = vec![
        json!({
            "type": "header",
            "text": {"type": "plain_text", "text": limits::slack_escape(&header_line(n))},
        }),
        json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": limits::slack_fit(&n.summary, limits::SLACK_SECTION_TEXT)},
        }),
    ];
    let fields: Vec<serde_json::Value> = render::facts(n)
        .into_iter()
        .take(limits::SLACK_FIELDS)
        .map(|(label, value)| {
            let mut first = label.chars();
            let label = first
                .next()
                .map(|c| c.to_uppercase().chain(first).collect::<String>())
                .unwrap_or_default();
            let label = format!("*{label}*\n");
            let room = limits::SLACK_FIELD_TEXT.saturating_sub(limits::cost(&label, limits::slack));
            json!({"type": "mrkdwn", "text": format!("{label}{}", limits::slack_fit(&value, room))})
        })
        .collect();
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    if n.kind == EventKind::Trigger {
        let mut body = render::table_text(&render::step_rows(n));
        if let Some(e) = render::error(n) {
            body.push_str(&format!("\nerror: {e}\n"));
        }
        if !body.trim().is_empty() {
            // Backticks would end the code block early; the fences count against the limit.
            let body = body.trim_end().replace("```", "'''");
            let fenced = limits::slack_fit(&body, limits::SLACK_SECTION_TEXT - 6);
            blocks.push(json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!("```{fenced}```")},
            }));
        }
    }
    let links: Vec<serde_json::Value> = n
        .links
        .iter()
        .filter_map(|l| {
            let href = limits::slack_escape(&l.href).replace('|', "%7C");
            // A cut URL leads nowhere: a link too long to send is left out.
            let room =
                limits::SLACK_TEXT_OBJECT.checked_sub(limits::cost(&href, limits::plain) + 3)?;
            let text = limits::slack_fit(&l.text.replace('|', "/"), room.min(200));
            (!text.is_empty())
                .then(|| json!({"type": "mrkdwn", "text": format!("<{href}|{text}>")}))
        })
        .take(limits::SLACK_CONTEXT_ELEMENTS)
        .collect();
    if !links.is_empty() {
        blocks.push(json!({"type": "context", "elements": links}));
    }
    blocks.truncate(limits::SLACK_BLOCKS);
    Request {
        url: plan.url.expose().to_string(),
        headers: Vec::new(),
        body: json!({"text": limits::slack_escape(&line), "blocks": blocks}),
    }
}

/// The first line a channel shows, so the state and the cause: the notification line
/// (`[FIRING critical] sim-join failing in eu-west-1: step "signalling" server_error after 12 ms:
/// OOM command not allowed …`), cut at the header's 150 characters; the section under it
/// carries the whole summary.
/// The header block's text, unescaped: the header fitted to Slack's 150, the probe and region
/// names cut before the cause (see [`limits::fit_line`]).
fn header_line(n: &Notification) -> String {
    if n.test {
        limits::fit(&header(n), limits::SLACK_HEADER_TEXT, limits::slack)
    } else {
        let lead = format!("{} ", n.marker());
        limits::fit_line(
            &lead,
            &n.summary,
            &n.probe,
            &n.region,
            limits::SLACK_HEADER_TEXT,
            limits::slack,
        )
    }
}

fn header(n: &Notification) -> String {
    if n.test {
        format!("[TEST] joincanary test page from {}", n.region)
    } else {
        format!("{} {}", n.marker(), n.summary)
    }
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
        "started_at": super::rfc3339(n.started_at),
        "at": super::rfc3339(n.at),
        "reminder": n.reminder,
        "test": n.test,
        "links": n.links,
    })
}

pub fn build_request(plan: &Webhook, n: &Notification) -> Request {
    Request {
        url: plan.url.expose().to_string(),
        headers: exposed(&plan.headers),
        body: payload(n),
    }
}

/// Configured headers as sent: names and values in the clear, for the request only.
pub(crate) fn exposed(headers: &[(String, Secret)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_string()))
        .collect()
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
        assert_eq!(req.body["blocks"].as_array().map(Vec::len), Some(5));
        assert!(
            req.body["blocks"][0]["text"]["text"]
                .as_str()
                .is_some_and(|h| h.starts_with(
                    "[FIRING critical] sim-join failing in eu-west-1: step \"signalling\" no_match"
                )),
            "{}",
            req.body["blocks"][0]
        );
        assert_eq!(
            req.body["blocks"][2]["fields"][3]["text"],
            "*Failed step*\nsignalling"
        );
        assert!(
            req.body["blocks"][3]["text"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("login") && t.starts_with("```"))
        );
        assert_eq!(
            req.body["blocks"][4]["elements"][0]["text"],
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
        // "Failing since" to the second, as people read it: no `.001`.
        let mut ms = sample(EventKind::Trigger);
        ms.started_at += chrono::Duration::milliseconds(1);
        let fields = build_slack_request(&plan, &ms).body["blocks"][2]["fields"].to_string();
        assert!(fields.contains("2025-03-01 12:00:00 UTC"), "{fields}");
        assert!(!fields.contains(".001"), "{fields}");
    }

    /// The issue's case: a 6-step probe failing on an nginx 502 page, `& < >` everywhere.
    #[test]
    fn slack_sections_fit_after_escaping() {
        let plan = Slack {
            url: Secret::new("https://hooks.slack.com/services/T0/B0/XYZ"),
        };
        let page = "<html><head><title>502 Bad Gateway</title></head><body>&nbsp;<center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n";
        let mut n = sample(EventKind::Trigger);
        n.summary = format!("{} & {}", "<&>".repeat(800), "日本語🙂".repeat(300));
        n.region = "eu<&>".repeat(100);
        n.details = serde_json::json!({
            "error": page.repeat(40),
            "steps": (0..6).map(|i| serde_json::json!({
                "name": format!("step-{i}-{}", "&".repeat(300)), "success": i < 5,
                "reason": "server_error", "duration_ms": 12.0, "phases": {"connect": 1.0},
            })).collect::<Vec<_>>(),
        });
        let req = build_slack_request(&plan, &n);
        let len = |v: &serde_json::Value| v.as_str().map_or(0, |s| limits::cost(s, limits::plain));
        assert!(len(&req.body["text"]) <= limits::SLACK_TOP_TEXT);
        let blocks = req.body["blocks"].as_array().cloned().unwrap_or_default();
        assert!(len(&blocks[0]["text"]["text"]) <= limits::SLACK_HEADER_TEXT);
        assert!(len(&blocks[1]["text"]["text"]) <= limits::SLACK_SECTION_TEXT);
        for f in blocks[2]["fields"].as_array().into_iter().flatten() {
            assert!(len(&f["text"]) <= limits::SLACK_FIELD_TEXT);
        }
        let code = &blocks[3]["text"]["text"];
        assert!(len(code) <= limits::SLACK_SECTION_TEXT, "{}", len(code));
        assert!(
            len(code) > 2900,
            "the block is used, not left empty: {}",
            len(code)
        );
        let code = code.as_str().unwrap_or_default();
        assert!(code.starts_with("```") && code.ends_with("```"));
        assert!(!code.contains("<html>"), "escaped");
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
                "started_at": "2025-03-01T12:00:00Z",
                "at": "2025-03-01T12:05:00Z",
                "reminder": false,
                "test": false,
                "links": [{"text": "status", "href": "http://canary.example/status"}],
            })
        );
        assert!(!format!("{plan:?}").contains("Bearer tok"));
    }
}
