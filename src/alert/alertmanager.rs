//! Prometheus Alertmanager API v2: post the alert; while it fires the dispatcher re-posts it
//! every `resend_interval`, and a resolve is the same alert with `endsAt` = now. Alongside, an
//! always-firing `JoinCanaryWatchdog` alert (the Prometheus `Watchdog` pattern) for a dead man's
//! switch receiver.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::notify::{Request, Secret};
use super::{EventKind, Notification, Severity, limits, render};
use crate::config::Ctx;
use crate::config::raw::{RawPager, S};

/// Firing alerts and the watchdog are posted this often. 30 s, so the watchdog's `endsAt`
/// ([`watchdog_ttl`]: 45 s) stays inside a dead man's switch notified every minute: after
/// `kill -9` the switch hears at most once more.
pub const DEFAULT_RESEND_INTERVAL: Duration = Duration::from_secs(30);

/// `resend_interval` accepted by `check`: short enough for tests, and at most an hour (the
/// watchdog must reach Alertmanager more often than any dead man's switch's grace).
pub const RESEND_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(3600));

/// A firing alert stays firing this long after the last post unless a resolve is sent: a dead
/// prober must not resolve an incident while the platform may still be broken (a false RESOLVED
/// then FIRING again after the restart). Prober death is reported by the watchdog, the
/// heartbeats and the Prometheus rules instead.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(3600);

/// The longest `hold`: a month. Longer says "never", which Alertmanager cannot hold either.
pub const MAX_HOLD: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long the watchdog outlives its last post: 1.5 resend intervals. Alertmanager resolves
/// it once that passes, and a dead man's switch receiver (`send_resolved: false`) hears nothing
/// more; half an interval of slack lets a slow post (the pager's `timeout` is 10 s) land in
/// time. With the default 30 s: the switch stops hearing at most 45 s after the last post.
pub fn watchdog_ttl(resend_interval: Duration) -> Duration {
    resend_interval.saturating_add(resend_interval / 2)
}

/// The `alertname` of the always-firing watchdog alert.
pub const WATCHDOG: &str = "JoinCanaryWatchdog";

#[derive(Debug, Clone)]
pub struct Alertmanager {
    /// Base URL, e.g. `http://alertmanager:9093` (may hold basic-auth credentials).
    pub url: Secret,
    pub resend_interval: Duration,
    /// How long a firing alert outlives its last post (`hold`, default 1 h).
    pub hold: Duration,
}

impl Alertmanager {
    pub(crate) fn build(ctx: &mut Ctx<'_>, p: &S<RawPager>, i: usize) -> Option<Alertmanager> {
        let r = p.get_ref();
        super::reject_keys(ctx, r, i, &["url", "resend_interval", "hold"]);
        let url = super::required(ctx, p, r.url.as_ref(), i, "url")
            .and_then(|u| super::check_url(ctx, u, r.url.as_ref(), i, "url"));
        let (min, max) = RESEND_INTERVAL_RANGE;
        let resend_interval = match &r.resend_interval {
            Some(v) => ctx.duration_within(v, &format!("pager[{i}].resend_interval"), min, max),
            None => Some(DEFAULT_RESEND_INTERVAL),
        };
        let hold = match &r.hold {
            Some(v) => ctx.duration_within(v, &format!("pager[{i}].hold"), min, MAX_HOLD),
            // Never shorter than a few resends, whatever the resend interval.
            None => Some(DEFAULT_HOLD.max(resend_interval.unwrap_or_default().saturating_mul(4))),
        };
        if let (Some(h), Some(ri)) = (hold, resend_interval)
            && h <= ri
        {
            ctx.error(
                r.hold.as_ref().map(|v| v.span()),
                format!("pager[{i}].hold"),
                "must be longer than resend_interval, or a firing alert would lapse between posts",
            );
        }
        Some(Alertmanager {
            url: Secret::new(url?.trim_end_matches('/').to_string()),
            resend_interval: resend_interval?,
            hold: hold?,
        })
    }
}

/// The step table and the error as text (the raw details when the run has no steps), cut to
/// [`limits::AM_DESCRIPTION`]: Alertmanager documents no limit, but its receivers template
/// annotations into Slack, PagerDuty and email, and a 600 KB error page helps none of them.
fn description(n: &Notification) -> String {
    let mut out = render::table_text(&render::step_rows(n));
    if let Some(e) = render::error(n) {
        out.push_str(&format!("\nerror: {e}\n"));
    }
    if out.trim().is_empty() {
        out = n.details_text();
    }
    limits::fit_plain(out.trim_end(), limits::AM_DESCRIPTION)
}

/// The labels identify the alert, so they are the same for the whole life of an incident:
/// `alertname`, `probe`, `region`, `severity`, `source`. What changes while it fires (the failing
/// step, the reason, the summary) is in annotations, so a new failing step updates the alert
/// instead of opening a second one. A firing alert's `endsAt` is `hold` after this post.
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
    label("source", "joincanary");
    if n.test {
        label("test", "true");
    }
    let ends_at = match n.kind {
        EventKind::Resolve => n.at,
        EventKind::Trigger => after(n.at, plan.hold),
    };
    let mut annotations = serde_json::Map::new();
    annotations.insert(
        "summary".into(),
        json!(limits::fit_plain(&n.summary, limits::AM_SUMMARY)),
    );
    annotations.insert("description".into(), json!(description(n)));
    if let Some(s) = &n.failed_step {
        annotations.insert("step".into(), json!(s));
    }
    if let Some(r) = n.reason {
        annotations.insert("reason".into(), json!(r.as_str()));
    }
    let mut alert = json!({
        "labels": labels,
        "annotations": annotations,
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

/// `at + d`, saturating instead of panicking: `at` may come from the state log and `d` from
/// the config, and no value from outside may panic a pager task. A date past chrono's range
/// becomes its last one, which Alertmanager refuses with a 400 (logged, not a crash).
pub(crate) fn after(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(d)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The always-firing `JoinCanaryWatchdog` alert, posted every `resend_interval` while the
/// scheduler is healthy: route it to a dead man's switch, which raises the alarm when it stops.
/// `startsAt` is the prober's start (`started`), the same in every post; `endsAt` is
/// [`watchdog_ttl`] after this post (`at`).
pub fn build_watchdog(
    plan: &Alertmanager,
    region: &str,
    started: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Request {
    let ends_at = after(at, watchdog_ttl(plan.resend_interval));
    Request {
        url: format!("{}/api/v2/alerts", plan.url.expose()),
        headers: Vec::new(),
        body: json!([{
            "labels": {
                "alertname": WATCHDOG,
                "region": region,
                "severity": "none",
                "source": "joincanary",
            },
            "annotations": {
                "summary": format!("joincanary in {region} is alive; this alert always fires (route it to a dead man's switch)"),
            },
            "startsAt": started.min(at).to_rfc3339(),
            "endsAt": ends_at.to_rfc3339(),
        }]),
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
            hold: DEFAULT_HOLD,
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
                    "source": "joincanary",
                },
                "annotations": {
                    "summary": n.summary,
                    "description": description(&n),
                    "step": "signalling",
                    "reason": "no_match",
                },
                "generatorURL": "http://canary.example/status",
                "startsAt": "2025-03-01T12:00:00+00:00",
                "endsAt": "2025-03-01T13:05:00+00:00",
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

    #[test]
    fn a_changed_step_keeps_the_labels() {
        let a = sample(EventKind::Trigger);
        let mut b = a.clone();
        b.failed_step = Some("login".into());
        b.reason = Some(crate::report::FailureReason::HttpStatus);
        let (ra, rb) = (build_request(&plan(), &a), build_request(&plan(), &b));
        assert_eq!(ra.body[0]["labels"], rb.body[0]["labels"]);
        assert_eq!(rb.body[0]["annotations"]["step"], "login");
    }

    #[test]
    fn watchdog_payload() {
        let started = "2025-03-01T11:00:00Z".parse().unwrap();
        let at = "2025-03-01T12:00:00Z".parse().unwrap();
        let req = build_watchdog(&plan(), "eu-west-1", started, at);
        assert_eq!(req.url, "http://am:9093/api/v2/alerts");
        assert_eq!(
            req.body[0]["labels"],
            json!({"alertname": "JoinCanaryWatchdog", "region": "eu-west-1", "severity": "none", "source": "joincanary"})
        );
        // Stable across posts (Alertmanager sets a missing startsAt to endsAt: in the future).
        assert_eq!(req.body[0]["startsAt"], "2025-03-01T11:00:00+00:00");
        // 1.5 resend intervals (60 s here) after the post.
        assert_eq!(req.body[0]["endsAt"], "2025-03-01T12:01:30+00:00");
        let default = Alertmanager {
            resend_interval: DEFAULT_RESEND_INTERVAL,
            ..plan()
        };
        let req = build_watchdog(&default, "eu-west-1", started, at);
        assert_eq!(req.body[0]["endsAt"], "2025-03-01T12:00:45+00:00");
    }

    /// Dates and durations from outside (a damaged state log, an absurd config) never panic:
    /// the sum saturates.
    #[test]
    fn end_times_saturate_instead_of_panicking() {
        let huge = Duration::from_secs(u64::MAX);
        let mut n = sample(EventKind::Trigger);
        let p = Alertmanager {
            hold: huge,
            resend_interval: huge,
            ..plan()
        };
        let max = DateTime::<Utc>::MAX_UTC.to_rfc3339();
        assert_eq!(build_request(&p, &n).body[0]["endsAt"], json!(max));
        n.at = DateTime::<Utc>::MAX_UTC;
        assert_eq!(build_request(&plan(), &n).body[0]["endsAt"], json!(max));
        let req = build_watchdog(&p, "r", n.at, n.at);
        assert_eq!(req.body[0]["endsAt"], json!(max));
        assert_eq!(watchdog_ttl(huge), Duration::MAX);
    }
}
