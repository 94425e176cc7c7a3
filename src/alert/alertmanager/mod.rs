//! Prometheus Alertmanager API v2: post the alert; while it fires the dispatcher re-posts it
//! every `resend_interval`, and a resolve is the same alert with `endsAt` = now. Alongside, an
//! always-firing `JoinCanaryWatchdog` alert (the Prometheus `Watchdog` pattern) for a dead man's
//! switch receiver. Every post goes to each member of an HA pair or cluster (`urls`,
//! `members.rs`).

mod members;

pub(crate) use members::Members;
pub use members::member_names;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::notify::DeliveryError;
use super::table::{Entry, pager_table};
use super::{EventKind, Notification, Severity, limits, render, rfc3339};
use crate::diag::{Ctx, S};
use crate::secret::Secret;

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

/// The most members one pager posts to (`urls`): an Alertmanager cluster has three or five.
pub const MAX_MEMBERS: usize = 10;

#[derive(Debug, Clone)]
pub struct Alertmanager {
    /// Base URLs, e.g. `http://alertmanager:9093` (may hold basic-auth credentials): `url`, or
    /// each member of an HA pair or cluster (`urls`), every one posted to.
    pub urls: Vec<Secret>,
    pub resend_interval: Duration,
    /// How long a firing alert outlives its last post (`hold`, default 1 h).
    pub hold: Duration,
    /// Sent with every request (posts and `test-page`'s reads): a bearer token for an
    /// Alertmanager behind an authenticating proxy, `X-Scope-OrgID` for Mimir's or Cortex's.
    /// Values are secrets.
    pub headers: Vec<(String, Secret)>,
}

pager_table! {
    /// `type = "alertmanager"`.
    pub struct RawAlertmanager {
        /// Alertmanager's base URL, e.g. `http://alertmanager:9093` (may hold credentials).
        pub url: Option<S<String>>,
        /// The base URL of each member of an Alertmanager HA pair or cluster, instead of `url`:
        /// every alert is posted to each (they do not share alerts), delivered when one took it.
        pub urls: Option<S<Vec<S<String>>>>,
        /// How often firing alerts and the watchdog are posted (default 30s, at most 1h).
        #[serde(default, deserialize_with = "crate::diag::duration")]
        pub resend_interval: Option<S<String>>,
        /// How long a firing alert stays firing after the last post if nothing resolves it (a
        /// dead prober must not resolve its incident); default 1h.
        #[serde(default, deserialize_with = "crate::diag::duration")]
        pub hold: Option<S<String>>,
        /// Extra headers on every request, e.g. `{ Authorization = "Bearer ${AM_TOKEN}" }` or
        /// `{ X-Scope-OrgID = "ops" }` (values are secrets).
        #[serde(default)]
        pub headers: std::collections::BTreeMap<String, S<String>>,
    }
}

impl Alertmanager {
    pub(crate) fn build(
        ctx: &mut Ctx<'_>,
        e: &Entry<'_>,
        r: &RawAlertmanager,
    ) -> Option<Alertmanager> {
        let urls = member_urls(ctx, e, r);
        let (min, max) = RESEND_INTERVAL_RANGE;
        let resend_interval = match &r.resend_interval {
            Some(v) => ctx.duration_within(v, &e.key("resend_interval"), min, max),
            None => Some(DEFAULT_RESEND_INTERVAL),
        };
        let hold = match &r.hold {
            Some(v) => ctx.duration_within(v, &e.key("hold"), min, MAX_HOLD),
            // Never shorter than a few resends, whatever the resend interval.
            None => Some(DEFAULT_HOLD.max(resend_interval.unwrap_or_default().saturating_mul(4))),
        };
        if let (Some(h), Some(ri)) = (hold, resend_interval)
            && h <= ri
        {
            ctx.error(
                r.hold.as_ref().map(|v| v.span()),
                e.key("hold"),
                "must be longer than resend_interval, or a firing alert would lapse between posts",
            );
        }
        let headers = e.headers(ctx, &r.headers);
        Some(Alertmanager {
            urls: urls?,
            resend_interval: resend_interval?,
            hold: hold?,
            headers: headers?,
        })
    }
}

/// `url` or `urls` (one of them, not both): each an http(s) URL, none twice, at most
/// [`MAX_MEMBERS`].
fn member_urls(ctx: &mut Ctx<'_>, e: &Entry<'_>, r: &RawAlertmanager) -> Option<Vec<Secret>> {
    let list = match (&r.url, &r.urls) {
        (Some(_), Some(list)) => {
            ctx.error(
                Some(list.span()),
                e.key("urls"),
                "give `url` (one Alertmanager) or `urls` (each member of an HA pair or cluster), not both",
            );
            return None;
        }
        (Some(u), None) => vec![(u, "url".to_string())],
        (None, Some(list)) => {
            if list.get_ref().is_empty() || list.get_ref().len() > MAX_MEMBERS {
                ctx.error(
                    Some(list.span()),
                    e.key("urls"),
                    format_args!("must list 1 to {MAX_MEMBERS} Alertmanager base URLs"),
                );
                return None;
            }
            list.get_ref()
                .iter()
                .enumerate()
                .map(|(i, u)| (u, format!("urls[{i}]")))
                .collect()
        }
        (None, None) => {
            ctx.error(
                Some(e.span.clone()),
                e.key("url"),
                format_args!(
                    "is required for {} (or `urls`, one per member of an HA pair or cluster)",
                    e.a_pager()
                ),
            );
            return None;
        }
    };
    let mut urls: Vec<Secret> = Vec::new();
    let mut ok = true;
    for (value, key) in list {
        let Some(text) = ctx.env_str(value, &e.key(&key)) else {
            ok = false;
            continue;
        };
        let text = text.trim().trim_end_matches('/').to_string();
        let Some(text) = e.url(ctx, text, Some(value), &key) else {
            ok = false;
            continue;
        };
        if urls.iter().any(|u| u.expose() == text) {
            // Never repeated: a URL may hold credentials.
            ctx.error(
                Some(value.span()),
                e.key(&key),
                "lists the same Alertmanager twice",
            );
            ok = false;
            continue;
        }
        urls.push(Secret::new(text));
    }
    ok.then_some(urls)
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
/// `startsAt` and `endsAt` are put on the system clock as it reads now
/// ([`Clock::on_system`](crate::clock::Clock::on_system)): Alertmanager judges them by its own
/// clock, and a prober whose host clock was stepped after it started (NTP after boot, a VM
/// resumed) would otherwise post an alert already resolved, or a resolve that only takes effect
/// once the step's offset has passed. The body of the post (an array of one alert), the same
/// for every member.
pub fn build_alert(
    plan: &Alertmanager,
    n: &Notification,
    clock: &crate::clock::Clock,
) -> serde_json::Value {
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
    let at = clock.on_system(n.at);
    let ends_at = match n.kind {
        EventKind::Resolve => at,
        EventKind::Trigger => after(at, plan.hold),
    };
    let mut annotations = serde_json::Map::new();
    let fit = |max| limits::fit_line("", &n.summary, &n.probe, &n.region, max, limits::plain);
    annotations.insert("summary".into(), json!(fit(limits::AM_SUMMARY)));
    // Alertmanager cuts Opsgenie's message at 130 characters from the end, which drops the
    // cause when the names are long: this one has the names cut first, for the receivers'
    // `joincanary.short` template (deploy/alertmanager/templates/joincanary.tmpl).
    if limits::cost(&n.summary, limits::plain) > limits::OG_MESSAGE {
        annotations.insert("summary_short".into(), json!(fit(limits::OG_MESSAGE)));
    }
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
        "startsAt": rfc3339(clock.on_system(n.started_at)),
        "endsAt": rfc3339(ends_at),
    });
    let status = n
        .links
        .iter()
        .find(|l| l.text.to_ascii_lowercase().contains("status"))
        .or(n.links.first());
    if let (Some(l), Some(obj)) = (status, alert.as_object_mut()) {
        obj.insert("generatorURL".into(), json!(l.href));
    }
    json!([alert])
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
/// [`watchdog_ttl`] after this post (`at`). Both on the system clock as it reads at the post
/// ([`Clock::on_system`](crate::clock::Clock::on_system)), as for [`build_alert`].
pub fn build_watchdog(
    plan: &Alertmanager,
    region: &str,
    started: DateTime<Utc>,
    at: DateTime<Utc>,
) -> serde_json::Value {
    let ends_at = after(at, watchdog_ttl(plan.resend_interval));
    json!([{
            "labels": {
                "alertname": WATCHDOG,
                "region": region,
                "severity": "none",
                "source": "joincanary",
            },
            "annotations": {
                "summary": format!("joincanary in {region} is alive; this alert always fires (route it to a dead man's switch)"),
            },
            "startsAt": rfc3339(started.min(at)),
            "endsAt": rfc3339(ends_at),
    }])
}

/// The notifier of an Alertmanager pager: each notification built by [`build_alert`] and
/// posted to every member; on each resend tick, the resolves a member missed again.
pub(crate) struct AmNotifier {
    pub plan: Alertmanager,
    pub members: Members,
    pub clock: crate::clock::Clock,
}

impl super::Notifier for AmNotifier {
    fn send<'a>(&'a self, n: &'a Notification) -> super::notify::SendFuture<'a> {
        Box::pin(async move {
            let body = build_alert(&self.plan, n, &self.clock);
            self.members.post(&body, n.kind == EventKind::Resolve).await
        })
    }

    fn catch_up<'a>(&'a self) -> super::notify::CatchUpFuture<'a> {
        Box::pin(self.members.catch_up())
    }
}

/// How long `test-page` keeps its alert firing when it cannot read the route from Alertmanager
/// (and no `--wait` was given): past the 30 s `group_wait` Alertmanager defaults to.
pub const DEFAULT_TEST_WAIT: Duration = Duration::from_secs(40);
/// Added to the route's wait: Alertmanager flushes the group then, and its notification needs
/// a moment to go out before a resolve could turn it into nothing.
pub const NOTIFY_MARGIN: Duration = Duration::from_secs(3);
/// The longest `test-page` waits unless told (`group_interval` may be hours).
pub const MAX_TEST_WAIT: Duration = Duration::from_secs(600);
/// The most `test-page` reads of one Alertmanager answer (its configuration, its alerts).
const MAX_API_BODY: usize = 4 << 20;

/// Alertmanager's HTTP API as `test-page` uses it (a trait so the waiting is tested on the
/// paused clock without a network).
pub(crate) trait AmApi {
    /// `GET {url}{path}` as JSON; the error says what went wrong, without the URL.
    async fn get_json(&self, path: &str) -> Result<serde_json::Value, String>;
    /// `POST` of alerts (`resolve`: they end).
    async fn post(&self, body: &serde_json::Value, resolve: bool) -> Result<(), DeliveryError>;
}

/// [`AmApi`] over HTTP to every member (reads from the first that answers), every request
/// under the pager's `timeout`, errors scrubbed.
pub(crate) struct HttpAm<'a> {
    pub members: &'a Members,
}

impl AmApi for HttpAm<'_> {
    async fn get_json(&self, path: &str) -> Result<serde_json::Value, String> {
        self.members.get_json(path, MAX_API_BODY).await
    }

    async fn post(&self, body: &serde_json::Value, resolve: bool) -> Result<(), DeliveryError> {
        self.members.post(body, resolve).await
    }
}

/// `joincanary test-page` through an Alertmanager pager: Alertmanager notifies only once the
/// route's `group_wait` has passed (and a resolve before that means no notification at all),
/// so the test alert is posted, checked to be listed as active, kept firing past that wait,
/// and only then resolved. The wait is `wait` when given; otherwise the `group_wait` of every
/// route the alert takes, read from Alertmanager's configuration (its `group_interval` when a
/// group with the same labels already exists: the alert joins that group's next flush), plus
/// [`NOTIFY_MARGIN`], at most [`MAX_TEST_WAIT`]; [`DEFAULT_TEST_WAIT`] when it cannot be read.
/// Returns what it found, one line each, and tells each line to `say` as it is found: the
/// wait is up to minutes, and an operator who hears nothing until it ends takes it for a hang
/// (and a "will keep it firing 40s" read after the 40 s is no help).
///
/// # Errors
/// Alertmanager refused the alert, does not list it, or will not notify (silenced or
/// inhibited); or the resolve failed.
pub(crate) async fn test_page(
    api: &impl AmApi,
    plan: &Alertmanager,
    mut n: Notification,
    wait: Option<Duration>,
    clock: &crate::clock::Clock,
    say: &dyn Fn(&str),
) -> Result<Vec<String>, DeliveryError> {
    let mut notes = Vec::new();
    let mut note = |line: String| {
        say(&line);
        notes.push(line);
    };
    // Its own `probe` label: with the usual `group_by: [probe]` each test page is a new group,
    // notified after `group_wait`, not folded into the next flush of an earlier one (whose
    // resolved alerts Alertmanager no longer lists, so it could not be seen and waited for).
    let run = n.dedup_key.rsplit('/').next().unwrap_or_default();
    n.probe = format!("test-page-{}", run.get(..8).unwrap_or(run));
    let labels: std::collections::BTreeMap<String, String> =
        serde_json::from_value(build_alert(plan, &n, clock)[0]["labels"].clone())
            .unwrap_or_default();
    let wait = match wait {
        Some(w) => {
            note(format!(
                "will keep the alert firing {} (--wait)",
                humantime::format_duration(w)
            ));
            w
        }
        None => {
            let (w, why) = route_wait(api, &labels).await;
            note(why);
            w
        }
    };
    // The alert must outlive the wait, whatever `hold` says.
    let firing = Alertmanager {
        hold: plan.hold.max(wait.saturating_add(Duration::from_secs(60))),
        ..plan.clone()
    };
    n.at = clock.now();
    api.post(&build_alert(&firing, &n, clock), false).await?;
    note("Alertmanager accepted the test alert (POST /api/v2/alerts answered 2xx)".into());
    let listed = listed_state(api, &labels).await;
    let refused = match &listed {
        Ok(line) => {
            note(line.clone());
            None
        }
        Err(e) => Some(e.clone()),
    };
    if refused.is_none() {
        tokio::time::sleep(wait).await;
        note(format!(
            "kept it firing {} for Alertmanager to notify; resolving",
            humantime::format_duration(wait)
        ));
    }
    n.kind = EventKind::Resolve;
    n.at = clock.now();
    n.summary = format!("[TEST] joincanary test page from {}: resolved", n.region);
    api.post(&build_alert(plan, &n, clock), true).await?;
    match refused {
        Some(e) => Err(DeliveryError::Permanent(e)),
        None => Ok(notes),
    }
}

/// How long to keep the test alert firing, from Alertmanager's own routes, and why.
async fn route_wait(
    api: &impl AmApi,
    labels: &std::collections::BTreeMap<String, String>,
) -> (Duration, String) {
    let fallback = |e: String| {
        (
            DEFAULT_TEST_WAIT,
            format!(
                "could not read the route from Alertmanager ({e}); will keep the alert firing {} (set --wait to change)",
                humantime::format_duration(DEFAULT_TEST_WAIT)
            ),
        )
    };
    let status = match api.get_json("/api/v2/status").await {
        Ok(s) => s,
        Err(e) => return fallback(format!("GET /api/v2/status: {e}")),
    };
    let Some(original) = status["config"]["original"].as_str() else {
        return fallback("its status has no config.original".into());
    };
    let routes = match super::am_route::routes_for(original, labels) {
        Ok(r) if !r.is_empty() => r,
        Ok(_) => return fallback("no route matches".into()),
        Err(e) => return fallback(e),
    };
    // A group with these labels already there (an earlier test page, a real incident) takes the
    // alert into its next flush, up to group_interval away.
    let groups = api.get_json("/api/v2/alerts/groups").await.ok();
    let mut wait = Duration::ZERO;
    let mut parts = Vec::new();
    for r in &routes {
        let want = r.group_labels(labels);
        let exists = groups.as_ref().and_then(|g| g.as_array()).is_some_and(|g| {
            g.iter().any(|g| {
                g["receiver"]["name"] == r.receiver.as_str()
                    && serde_json::from_value::<std::collections::BTreeMap<String, String>>(
                        g["labels"].clone(),
                    )
                    .is_ok_and(|l| l == want)
                    && g["alerts"].as_array().is_some_and(|a| !a.is_empty())
            })
        });
        let (d, what) = if exists {
            (r.group_interval, "group_interval, its group exists")
        } else {
            (r.group_wait, "group_wait")
        };
        wait = wait.max(d);
        parts.push(format!(
            "`{}` ({what} {})",
            r.receiver,
            humantime::format_duration(d)
        ));
    }
    let wait = wait.saturating_add(NOTIFY_MARGIN).min(MAX_TEST_WAIT);
    (
        wait,
        format!(
            "Alertmanager routes it to {}; will keep it firing {}",
            parts.join(", "),
            humantime::format_duration(wait)
        ),
    )
}

/// Whether Alertmanager lists the alert with `labels` as active (`Ok`: a line saying so and to
/// which receivers), or why not.
async fn listed_state(
    api: &impl AmApi,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<String, String> {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in labels {
        query.append_pair("filter", &format!("{k}={}", json!(v)));
    }
    let alerts = match api
        .get_json(&format!("/api/v2/alerts?{}", query.finish()))
        .await
    {
        Ok(a) => a,
        // The POST was accepted; not being able to look is said, not failed.
        Err(e) => {
            return Ok(format!(
                "could not list Alertmanager's alerts to confirm it: {e}"
            ));
        }
    };
    let Some(alert) = alerts.as_array().and_then(|a| a.first()) else {
        return Err(
            "Alertmanager accepted the test alert but does not list it (expired at once? check the clocks)"
                .into(),
        );
    };
    let receivers: Vec<&str> = alert["receivers"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["name"].as_str()).collect())
        .unwrap_or_default();
    let state = alert["status"]["state"].as_str().unwrap_or("unknown");
    let ids = |key: &str| -> String {
        alert["status"][key]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    match state {
        "suppressed" => Err(format!(
            "Alertmanager will not notify: the test alert is suppressed (silenced by [{}], inhibited by [{}])",
            ids("silencedBy"),
            ids("inhibitedBy")
        )),
        _ => Ok(format!(
            "Alertmanager lists it as {state}, for receiver(s) {}",
            receivers.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests;
