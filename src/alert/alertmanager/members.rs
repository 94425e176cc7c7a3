//! An Alertmanager pager's members (`urls`): every post goes to each of them at once, as
//! Prometheus does with its `alertmanagers` list, because the members of an HA pair or
//! cluster share silences and their notification log but not alerts: a member that never got
//! an alert cannot notify it, and the notification log keeps two members that both got it
//! from notifying twice. Delivered when at least one member accepted; a member that did not
//! is logged, shown on the status page and in `joincanary_alertmanager_member_failing`, gets
//! firing alerts again at the next resend, and a resolve it missed on each resend tick until
//! it takes it (else it would notify the alert as still firing: a false page after the
//! recovery). Each member gets only its own URL's credentials; the pager's `headers` go to
//! every listed member (the operator listed them), and no redirect is followed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::Alertmanager;
use crate::alert::notify::{self, DeliveryError, Request};
use crate::clock::Clock;
use crate::delivery::DeliveryHealth;

/// At most this many resolves wait for members that missed them; past it the oldest is
/// dropped (logged): those members lapse the alert at its `endsAt` instead.
const MAX_LAGGING: usize = 256;

/// One member: its name for logs, metrics and the status page (`host:port`, never the
/// credentials or path of its URL) and where alerts are posted.
#[derive(Debug, Clone)]
struct Target {
    name: String,
    alerts_url: String,
    base: String,
}

/// A resolve some members have not taken yet.
struct Lagging {
    labels: Value,
    body: Value,
    members: Vec<usize>,
    /// Past this the members have lapsed the alert themselves (its `endsAt`).
    until: Instant,
}

/// The members of one Alertmanager pager and how posting to them went.
pub(crate) struct Members {
    targets: Vec<Target>,
    headers: Vec<(String, String)>,
    client: reqwest::Client,
    timeout: Duration,
    redactor: crate::redact::Redactor,
    pager: String,
    hold: Duration,
    health: Option<Arc<DeliveryHealth>>,
    clock: Clock,
    lagging: Mutex<Vec<Lagging>>,
}

/// Each member's display name: `host:port` of its URL (default port filled in), with `#2`,
/// `#3` after a name already taken (two tenants of one Mimir, say).
pub fn member_names(urls: &[crate::secret::Secret]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (i, u) in urls.iter().enumerate() {
        let base = url::Url::parse(u.expose())
            .ok()
            .and_then(|u| {
                let host = u.host_str()?.to_string();
                Some(match u.port_or_known_default() {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                })
            })
            .unwrap_or_else(|| format!("member {}", i + 1));
        let mut name = base.clone();
        let mut n = 1;
        while names.contains(&name) {
            n += 1;
            name = format!("{base}#{n}");
        }
        names.push(name);
    }
    names
}

impl Members {
    /// The members of `plan` (the pager `pager`), posting with `client` under `timeout`,
    /// scrubbing errors with `redactor`; outcomes recorded in `health` when given (the
    /// dispatcher's; `test-page` reports its own).
    pub(crate) fn new(
        pager: &str,
        plan: &Alertmanager,
        client: &reqwest::Client,
        timeout: Duration,
        redactor: crate::redact::Redactor,
        health: Option<Arc<DeliveryHealth>>,
        clock: Clock,
    ) -> Members {
        let targets: Vec<Target> = member_names(&plan.urls)
            .into_iter()
            .zip(&plan.urls)
            .map(|(name, u)| Target {
                name,
                alerts_url: format!("{}/api/v2/alerts", u.expose()),
                base: u.expose().to_string(),
            })
            .collect();
        if let Some(h) = &health {
            let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
            h.set_members(pager, &names);
        }
        Members {
            targets,
            headers: crate::alert::webhook::exposed(&plan.headers),
            client: client.clone(),
            timeout,
            redactor,
            pager: pager.to_string(),
            hold: plan.hold,
            health,
            clock,
            lagging: Mutex::new(Vec::new()),
        }
    }

    fn lagging(&self) -> std::sync::MutexGuard<'_, Vec<Lagging>> {
        self.lagging.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `GET {member}{path}` from the first member that answers (the read of `test-page`),
    /// with the pager's headers; what went wrong at each when none does.
    pub(crate) async fn get_json(&self, path: &str, max_body: usize) -> Result<Value, String> {
        let mut errors = Vec::new();
        for t in &self.targets {
            match self.get_one(&t.base, path, max_body).await {
                Ok(v) => return Ok(v),
                Err(e) => errors.push(self.tagged(t, &e)),
            }
        }
        Err(errors.join("; "))
    }

    async fn get_one(&self, base: &str, path: &str, max_body: usize) -> Result<Value, String> {
        let url = format!("{base}{path}");
        let read = async {
            let mut get = self.client.get(&url);
            for (k, v) in &self.headers {
                get = get.header(k, v);
            }
            let resp = get
                .send()
                .await
                .map_err(|e| crate::net::error_chain(&e.without_url()))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("HTTP {status}"));
            }
            let body = crate::net::body_at_most(resp, max_body)
                .await
                .map_err(|e| e.describe(|e| crate::net::error_chain(&e.without_url())))?;
            serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(r) => r.map_err(|e| self.redactor.scrub(&e)),
            Err(_) => Err(format!(
                "no answer within {}",
                crate::report::human_duration(self.timeout)
            )),
        }
    }

    /// An error as said of one member: bare with one member (as before there were several),
    /// `host:port: error` with more.
    fn tagged(&self, t: &Target, e: &str) -> String {
        if self.targets.len() == 1 {
            e.to_string()
        } else {
            format!("{}: {e}", t.name)
        }
    }

    /// Posts `body` (an array of alerts) to every member at once, each under the timeout.
    /// `resolve`: the body ends its alerts, so a member that missed it gets it again at each
    /// [`Members::catch_up`].
    ///
    /// # Errors
    /// No member accepted: with one member its error as it is; with more, each member's,
    /// retryable unless every member refused for good.
    pub(crate) async fn post(&self, body: &Value, resolve: bool) -> Result<(), DeliveryError> {
        let all: Vec<usize> = (0..self.targets.len()).collect();
        let results = self.post_to(&all, body).await;
        let accepted: Vec<usize> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| *i)
            .collect();
        self.superseded(body, &accepted);
        if accepted.is_empty() {
            return Err(self.combined(results));
        }
        let missed: Vec<usize> = results
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(i, _)| *i)
            .collect();
        if resolve && !missed.is_empty() {
            let mut lagging = self.lagging();
            if lagging.len() >= MAX_LAGGING {
                lagging.remove(0);
                tracing::warn!(sink = %self.pager, "too many resolves waiting for Alertmanager members; the oldest dropped (its members lapse it at its endsAt)");
            }
            lagging.push(Lagging {
                labels: labels_of(body),
                body: body.clone(),
                members: missed,
                until: Instant::now()
                    .checked_add(self.hold)
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(24 * 3600)),
            });
        }
        Ok(())
    }

    /// Posts the resolves members missed to those members again; forgets those past their
    /// alert's end. Called on every resend tick.
    pub(crate) async fn catch_up(&self) {
        let now = Instant::now();
        let due: Vec<(Value, Vec<usize>)> = {
            let mut lagging = self.lagging();
            lagging.retain(|l| l.until > now && !l.members.is_empty());
            lagging
                .iter()
                .map(|l| (l.body.clone(), l.members.clone()))
                .collect()
        };
        for (body, members) in due {
            let results = self.post_to(&members, &body).await;
            let took: Vec<usize> = results
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(i, _)| *i)
                .collect();
            self.superseded(&body, &took);
        }
    }

    /// Members in `took` accepted a post of these labels: a resolve they missed earlier is
    /// no longer theirs to catch up on (a newer trigger must not be resolved by it).
    fn superseded(&self, body: &Value, took: &[usize]) {
        if took.is_empty() {
            return;
        }
        let labels = labels_of(body);
        self.lagging().retain_mut(|l| {
            if l.labels == labels {
                l.members.retain(|m| !took.contains(m));
            }
            !l.members.is_empty()
        });
    }

    /// Posts `body` to the members `which` at once; records each outcome (health, log).
    async fn post_to(
        &self,
        which: &[usize],
        body: &Value,
    ) -> Vec<(usize, Result<(), DeliveryError>)> {
        let posts = which.iter().filter_map(|&i| {
            let t = self.targets.get(i)?;
            let req = Request {
                url: t.alerts_url.clone(),
                headers: self.headers.clone(),
                body: body.clone(),
            };
            Some(async move {
                // A member's post that panics is the pager task's panic: key `pager/member`.
                crate::supervise::fault::hit(
                    crate::supervise::Task::Pager,
                    format_args!("{}/{}", self.pager, t.name),
                );
                let r = notify::post(&self.client, &req, self.timeout)
                    .await
                    .map_err(|e| e.scrub(&self.redactor));
                (i, r)
            })
        });
        let results = futures_util::future::join_all(posts).await;
        let now = self.clock.now();
        for (i, r) in &results {
            let Some(t) = self.targets.get(*i) else {
                continue;
            };
            if let Some(h) = &self.health {
                match r {
                    Ok(()) => h.member_success(&self.pager, &t.name, now),
                    Err(e) => h.member_failure(&self.pager, &t.name, now, &e.to_string()),
                }
            }
            if let Err(e) = r
                && self.targets.len() > 1
            {
                tracing::warn!(sink = %self.pager, member = %t.name, error = %e,
                    "an Alertmanager member did not take the post");
            }
        }
        results
    }

    /// Every member failed: one error naming each (with one member, its own).
    fn combined(&self, mut results: Vec<(usize, Result<(), DeliveryError>)>) -> DeliveryError {
        if results.len() == 1
            && let Some((_, Err(e))) = results.pop()
        {
            return e;
        }
        let mut text = Vec::new();
        let (mut permanent, mut after) = (true, Some(Duration::MAX));
        for (i, r) in &results {
            let (Some(t), Err(e)) = (self.targets.get(*i), r) else {
                continue;
            };
            text.push(self.tagged(t, &e.to_string()));
            permanent &= !e.is_retryable();
            after = match (after, e) {
                (Some(a), DeliveryError::RetryAfter(_, b)) => Some(a.min(*b)),
                (a, DeliveryError::Permanent(_)) => a,
                _ => None,
            };
        }
        let msg = format!("no Alertmanager member took it: {}", text.join("; "));
        match (permanent, after) {
            (true, _) => DeliveryError::Permanent(msg),
            (false, Some(a)) if a < Duration::MAX => DeliveryError::RetryAfter(msg, a),
            _ => DeliveryError::Retryable(msg),
        }
    }
}

/// The labels of the first alert of a body (what Alertmanager identifies it by).
fn labels_of(body: &Value) -> Value {
    body.get(0)
        .and_then(|a| a.get("labels"))
        .cloned()
        .unwrap_or(Value::Null)
}
