//! Opsgenie Alert API v2: create an alert keyed by alias (the dedup key), close it by alias.

use serde_json::json;

use super::notify::Request;
use super::table::{Entry, pager_table};
use super::{EventKind, Notification, Severity, limits, render};
use crate::diag::{Ctx, S};
use crate::secret::Secret;

pub const DEFAULT_URL: &str = "https://api.opsgenie.com";
pub const EU_URL: &str = "https://api.eu.opsgenie.com";

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

pager_table! {
    /// `type = "opsgenie"`.
    pub struct RawOpsgenie {
        /// The API base URL (default: by `region`).
        pub url: Option<S<String>>,
        /// The API integration's key (a secret), sent as `GenieKey`.
        pub api_key: Option<S<String>>,
        /// `us` (default) or `eu`.
        pub region: Option<S<String>>,
        /// Priority of critical alerts, `P1` (default) to `P5`.
        pub priority: Option<S<String>>,
        /// Priority of warnings, `P1` to `P5` (default `P3`).
        pub warning_priority: Option<S<String>>,
    }
}

impl Opsgenie {
    pub(crate) fn build(ctx: &mut Ctx<'_>, e: &Entry<'_>, r: &RawOpsgenie) -> Option<Opsgenie> {
        let region = e.optional(ctx, r.region.as_ref(), "region");
        let default_url = match region.as_deref() {
            None | Some("us") => Some(DEFAULT_URL),
            Some("eu") => Some(EU_URL),
            Some(other) => {
                ctx.error(
                    r.region.as_ref().map(|v| v.span()),
                    e.key("region"),
                    format_args!("unknown Opsgenie region `{other}`; expected `us` or `eu`"),
                );
                None
            }
        };
        let url = match e.optional(ctx, r.url.as_ref(), "url") {
            Some(u) => e.url(ctx, u, r.url.as_ref(), "url"),
            None => default_url.map(str::to_string),
        };
        let api_key = e.required(ctx, r.api_key.as_ref(), "api_key");
        let mut priority =
            |v: Option<&S<String>>, k: &str, default: &str| match e.optional(ctx, v, k) {
                None => Some(default.to_string()),
                Some(p) if PRIORITIES.contains(&p.as_str()) => Some(p),
                Some(p) => {
                    ctx.error(
                        v.map(|s| s.span()),
                        e.key(k),
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

/// Create (trigger) or close-by-alias (resolve). The alias is hashed past 512 characters (the
/// same way for create and close); message, description, tags, details and note are cut to
/// Opsgenie's limits (see [`limits`]).
pub fn build_request(plan: &Opsgenie, n: &Notification) -> Request {
    let headers = vec![(
        "Authorization".to_string(),
        format!("GenieKey {}", plan.api_key.expose()),
    )];
    let alias = limits::fit_key(&n.dedup_key, limits::OG_ALIAS);
    match n.kind {
        EventKind::Trigger => Request {
            url: endpoint(&plan.url, &["v2", "alerts"]),
            headers,
            body: json!({
                "message": limits::fit_line("", &n.summary, &n.probe, &n.region, limits::OG_MESSAGE, limits::plain),
                "alias": alias,
                "description": limits::fit_plain(&description(n), limits::OG_DESCRIPTION),
                "priority": match n.severity {
                    Severity::Critical => &plan.priority,
                    Severity::Warning => &plan.warning_priority,
                },
                "source": "joincanary",
                "tags": tags(n),
                "details": flat_details(n),
            }),
        },
        EventKind::Resolve => {
            let mut url = endpoint(&plan.url, &["v2", "alerts", &alias, "close"]);
            url.push_str("?identifierType=alias");
            Request {
                url,
                headers,
                body: json!({
                    "source": "joincanary",
                    "note": limits::fit_plain(&n.summary, limits::OG_NOTE),
                }),
            }
        }
    }
}

/// Region, probe and severity, each cut to 50 characters (Opsgenie's tag limit).
fn tags(n: &Notification) -> Vec<String> {
    [n.region.as_str(), n.probe.as_str(), n.severity.as_str()]
        .iter()
        .take(limits::OG_TAGS)
        .map(|t| limits::fit_plain(t, limits::OG_TAG))
        .collect()
}

/// The summary, the step table, the error, the links, then the raw details.
fn description(n: &Notification) -> String {
    let mut out = format!("{}\n", n.summary);
    let table = render::table_text(&render::step_rows(n));
    if !table.is_empty() {
        out.push('\n');
        out.push_str(&table);
    }
    if let Some(e) = render::error(n) {
        out.push_str(&format!("\nerror: {e}\n"));
    }
    for l in &n.links {
        out.push_str(&format!("\n{}: {}", l.text, l.href));
    }
    let details = n.details_text();
    if !details.is_empty() {
        out.push_str(&format!("\n\ndetails:\n{details}"));
    }
    out
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

/// Opsgenie's `details` is a flat string map of at most 8000 characters in all: the facts first,
/// then the run's details (nested values as JSON), each cut to what is left; what does not fit
/// is left out and `cut` says so.
fn flat_details(n: &Notification) -> serde_json::Map<String, serde_json::Value> {
    let mut entries: Vec<(String, String)> = vec![
        ("probe".into(), n.probe.clone()),
        ("region".into(), n.region.clone()),
        ("severity".into(), n.severity.as_str().to_string()),
        ("started_at".into(), super::rfc3339(n.started_at)),
    ];
    if let Some(s) = &n.failed_step {
        entries.push(("failed_step".into(), s.clone()));
    }
    if let Some(r) = n.reason {
        entries.push(("reason".into(), r.as_str().to_string()));
    }
    if n.test {
        entries.push(("test".into(), "true".into()));
    }
    for l in &n.links {
        entries.push((l.text.clone(), l.href.clone()));
    }
    if let serde_json::Value::Object(obj) = &n.details {
        for (k, v) in obj {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            entries.push((k.clone(), text));
        }
    }
    // `{` and `}`, and room for the `cut` marker.
    const CUT: (&str, &str) = ("cut", "details cut to Opsgenie's 8000-character limit");
    let reserve =
        2 + limits::cost(CUT.0, limits::json_chars) + limits::cost(CUT.1, limits::json_chars) + 6;
    let mut left = limits::OG_DETAILS - reserve;
    let mut m = serde_json::Map::new();
    let mut cut = false;
    for (k, v) in entries {
        if m.contains_key(&k) {
            continue;
        }
        // `"k":"v",`
        let key_cost = limits::cost(&k, limits::json_chars) + 6;
        let Some(room) = left.checked_sub(key_cost) else {
            cut = true;
            continue;
        };
        let value = limits::fit(&v, room, limits::json_chars);
        if value.len() < v.len() {
            cut = true;
        }
        if value.is_empty() && !v.is_empty() {
            continue;
        }
        left -= key_cost + limits::cost(&value, limits::json_chars);
        m.insert(k, serde_json::Value::String(value));
    }
    if cut {
        m.insert(CUT.0.into(), serde_json::Value::String(CUT.1.into()));
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
                "description": description(&n),
                "priority": "P1",
                "source": "joincanary",
                "tags": ["eu-west-1", "sim-join", "critical"],
                "details": {
                    "probe": "sim-join",
                    "region": "eu-west-1",
                    "severity": "critical",
                    "started_at": "2025-03-01T12:00:00Z",
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

    #[test]
    fn hostile_values_fit_every_field() {
        let mut n = sample(EventKind::Trigger);
        n.probe = "p".repeat(80);
        n.dedup_key = format!("joincanary/eu/{}/critical", "k".repeat(600));
        n.summary = "日本語🙂<&>".repeat(300);
        n.details =
            json!({"error": "\"<html>\"\n".repeat(5000), "steps": [{"name": "s".repeat(3000)}]});
        let req = build_request(&plan(), &n);
        let len = |v: &serde_json::Value| v.as_str().map_or(0, |s| limits::cost(s, limits::plain));
        assert!(len(&req.body["message"]) <= 130);
        assert_eq!(len(&req.body["alias"]), 512);
        assert!(len(&req.body["description"]) <= 15000);
        for t in req.body["tags"].as_array().into_iter().flatten() {
            assert!(len(t) <= 50);
        }
        let details = serde_json::to_string(&req.body["details"]).unwrap_or_default();
        assert!(
            limits::cost(&details, limits::plain) <= 8000,
            "{}",
            details.len()
        );
        assert!(req.body["details"]["cut"].is_string());
        assert_eq!(req.body["details"]["probe"], n.probe);
        let mut r = n.clone();
        r.kind = EventKind::Resolve;
        let close = build_request(&plan(), &r);
        assert!(close.url.contains(&"k".repeat(400)));
        assert!(!close.url.contains(&"k".repeat(600)));
    }
}
