//! Opsgenie Alert API v2: create an alert keyed by alias (the dedup key), close it by alias.

use serde_json::json;

use super::notify::{Request, Secret};
use super::{EventKind, Notification, Severity};
use crate::config::Ctx;
use crate::config::raw::{RawPager, S};

pub const DEFAULT_URL: &str = "https://api.opsgenie.com";
pub const EU_URL: &str = "https://api.eu.opsgenie.com";

/// Opsgenie's limits on `message` and `description`.
const MESSAGE_MAX: usize = 130;
const DESCRIPTION_MAX: usize = 15000;
const PRIORITIES: [&str; 5] = ["P1", "P2", "P3", "P4", "P5"];

#[derive(Debug, Clone)]
pub struct Opsgenie {
    /// API base, without `/v2/...`.
    pub url: String,
    pub api_key: Secret,
    /// Priority of critical alerts (default P1).
    pub priority: String,
    /// Priority of warnings (default P3).
    pub warning_priority: String,
}

impl Opsgenie {
    pub(crate) fn build(ctx: &mut Ctx<'_>, p: &S<RawPager>, i: usize) -> Option<Opsgenie> {
        let r = p.get_ref();
        super::reject_keys(
            ctx,
            r,
            i,
            &["url", "api_key", "region", "priority", "warning_priority"],
        );
        let region = super::optional(ctx, r.region.as_ref(), i, "region");
        let default_url = match region.as_deref() {
            None | Some("us") => Some(DEFAULT_URL),
            Some("eu") => Some(EU_URL),
            Some(other) => {
                ctx.error(
                    r.region.as_ref().map(|v| v.span()),
                    format!("pager[{i}].region"),
                    format_args!("unknown Opsgenie region `{other}`; expected `us` or `eu`"),
                );
                None
            }
        };
        let url = match super::optional(ctx, r.url.as_ref(), i, "url") {
            Some(u) => super::check_url(ctx, u, r.url.as_ref(), i, "url"),
            None => default_url.map(str::to_string),
        };
        let api_key = super::required(ctx, p, r.api_key.as_ref(), i, "api_key");
        let mut priority =
            |v: Option<&S<String>>, k: &str, default: &str| match super::optional(ctx, v, i, k) {
                None => Some(default.to_string()),
                Some(p) if PRIORITIES.contains(&p.as_str()) => Some(p),
                Some(p) => {
                    ctx.error(
                        v.map(|s| s.span()),
                        format!("pager[{i}].{k}"),
                        format_args!("`{p}` is not an Opsgenie priority; expected P1 to P5"),
                    );
                    None
                }
            };
        let prio = priority(r.priority.as_ref(), "priority", "P1");
        let warn = priority(r.warning_priority.as_ref(), "warning_priority", "P3");
        Some(Opsgenie {
            url: url?.trim_end_matches('/').to_string(),
            api_key: Secret::new(api_key?),
            priority: prio?,
            warning_priority: warn?,
        })
    }
}

/// Create (trigger) or close-by-alias (resolve).
pub fn build_request(plan: &Opsgenie, n: &Notification) -> Request {
    let headers = vec![(
        "Authorization".to_string(),
        format!("GenieKey {}", plan.api_key.expose()),
    )];
    match n.kind {
        EventKind::Trigger => {
            let description = super::truncate(
                &format!("{}\n\n{}", n.summary, n.details_text()),
                DESCRIPTION_MAX,
            );
            Request {
                url: endpoint(&plan.url, &["v2", "alerts"]),
                headers,
                body: json!({
                    "message": super::truncate(&n.summary, MESSAGE_MAX),
                    "alias": n.dedup_key,
                    "description": description,
                    "priority": match n.severity {
                        Severity::Critical => &plan.priority,
                        Severity::Warning => &plan.warning_priority,
                    },
                    "source": "joincanary",
                    "tags": [n.region, n.probe, n.severity.as_str()],
                    "details": flat_details(n),
                }),
            }
        }
        EventKind::Resolve => {
            let mut url = endpoint(&plan.url, &["v2", "alerts", &n.dedup_key, "close"]);
            url.push_str("?identifierType=alias");
            Request {
                url,
                headers,
                body: json!({
                    "source": "joincanary",
                    "note": super::truncate(&n.summary, 25000),
                }),
            }
        }
    }
}

/// `base` plus path segments, each percent-encoded (a dedup key holds `/`).
fn endpoint(base: &str, segments: &[&str]) -> String {
    match url::Url::parse(base) {
        Ok(mut u) => {
            if let Ok(mut path) = u.path_segments_mut() {
                path.pop_if_empty().extend(segments);
            }
            u.to_string()
        }
        // Validated at load; a base that no longer parses fails at send time instead.
        Err(_) => format!("{base}/{}", segments.join("/")),
    }
}

/// Opsgenie's `details` is a flat string map: scalars as text, anything nested as JSON.
fn flat_details(n: &Notification) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), serde_json::Value::String(v));
    };
    put("probe", n.probe.clone());
    put("region", n.region.clone());
    put("severity", n.severity.as_str().to_string());
    put("started_at", n.started_at.to_rfc3339());
    if let Some(s) = &n.failed_step {
        put("failed_step", s.clone());
    }
    if let Some(r) = n.reason {
        put("reason", r.as_str().to_string());
    }
    if n.test {
        put("test", "true".to_string());
    }
    for l in &n.links {
        put(&l.text, l.href.clone());
    }
    if let serde_json::Value::Object(obj) = &n.details {
        for (k, v) in obj {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            m.entry(k.clone())
                .or_insert(serde_json::Value::String(text));
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::sample;

    fn plan() -> Opsgenie {
        Opsgenie {
            url: "http://127.0.0.1:1".into(),
            api_key: Secret::new("GENIEKEY1"),
            priority: "P1".into(),
            warning_priority: "P3".into(),
        }
    }

    #[test]
    fn create_payload() {
        let n = sample(EventKind::Trigger);
        let req = build_request(&plan(), &n);
        assert_eq!(req.url, "http://127.0.0.1:1/v2/alerts");
        assert_eq!(
            req.headers,
            vec![(
                "Authorization".to_string(),
                "GenieKey GENIEKEY1".to_string()
            )]
        );
        assert_eq!(
            req.body,
            json!({
                "message": n.summary,
                "alias": "joincanary/sim-join/eu-west-1/critical",
                "description": format!("{}\n\n{}", n.summary, n.details_text()),
                "priority": "P1",
                "source": "joincanary",
                "tags": ["eu-west-1", "sim-join", "critical"],
                "details": {
                    "probe": "sim-join",
                    "region": "eu-west-1",
                    "severity": "critical",
                    "started_at": "2025-03-01T12:00:00+00:00",
                    "failed_step": "signalling",
                    "reason": "no_match",
                    "status": "http://canary.example/status",
                    "steps": "[{\"ms\":42,\"name\":\"login\"}]",
                },
            })
        );
        assert!(!format!("{req:?}").contains("GENIEKEY1"));
    }

    #[test]
    fn close_payload_and_limits() {
        let req = build_request(&plan(), &sample(EventKind::Resolve));
        assert_eq!(
            req.url,
            "http://127.0.0.1:1/v2/alerts/joincanary%2Fsim-join%2Feu-west-1%2Fcritical/close?identifierType=alias"
        );
        assert_eq!(req.body["source"], "joincanary");
        assert!(req.body["note"].is_string());
        let mut n = sample(EventKind::Trigger);
        n.summary = "y".repeat(400);
        n.severity = Severity::Warning;
        let req = build_request(&plan(), &n);
        assert_eq!(
            req.body["message"].as_str().map(|s| s.chars().count()),
            Some(130)
        );
        assert_eq!(req.body["priority"], "P3");
    }
}
