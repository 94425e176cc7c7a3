//! Each pager's delivery health for the status page and `/api/v1/status`: when it last took a
//! notification, the last error it gave (redacted, cut to [`MAX_ERROR_CHARS`]), what waits in
//! its queue, and for an Alertmanager pager each member's own (an HA pair: one member down
//! while the other takes the alerts is `degraded`, not `ok`). Plain shared data: the dispatcher writes it (through `alert::health::Observed`
//! and the watchdog), metrics carries it to the server, status and peers read it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An error text is cut to this many characters (after redaction).
pub const MAX_ERROR_CHARS: usize = 300;
/// Members kept per pager (the Alertmanager pager takes at most 10 `urls`).
const MAX_MEMBERS: usize = 16;

/// One pager as the status shows it. Every field has a default, so regions running different
/// versions still read each other's documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct PagerHealth {
    pub pager: String,
    /// The provider's `type` (`slack`, `alertmanager`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// The last attempt the pager accepted.
    pub last_success: Option<DateTime<Utc>>,
    /// The last attempt it did not, and why (redacted, at most [`MAX_ERROR_CHARS`]).
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The first failure since the last success: how long delivery has been broken.
    pub failing_since: Option<DateTime<Utc>>,
    /// Notifications waiting for this pager, and since when the oldest.
    pub queued: usize,
    pub oldest_queued: Option<DateTime<Utc>>,
    /// An Alertmanager pager's members (`urls`), each with its own last success and error.
    /// Shown when there are several; never read from a peer's document (a peer's lists are
    /// bounded where they are parsed, and this one is for the region's own page).
    #[serde(skip_deserializing, skip_serializing_if = "single")]
    pub members: Vec<MemberHealth>,
}

fn single(m: &[MemberHealth]) -> bool {
    m.len() <= 1
}

/// One member of an Alertmanager pager (an HA pair or cluster) as the status shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct MemberHealth {
    /// `host:port` of its URL.
    pub member: String,
    pub last_success: Option<DateTime<Utc>>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The first failure since its last success.
    pub failing_since: Option<DateTime<Utc>>,
}

impl PagerHealth {
    /// `failing` (the last attempt failed), `queued` (waiting, no failure yet), `degraded`
    /// (delivered, but a member of its HA pair or cluster did not take the last post), `ok`
    /// (the last attempt succeeded), `idle` (nothing sent yet).
    pub fn state(&self) -> &'static str {
        if self.failing_since.is_some() {
            "failing"
        } else if self.queued > 0 {
            "queued"
        } else if self.members.iter().any(|m| m.failing_since.is_some()) {
            "degraded"
        } else if self.last_success.is_some() {
            "ok"
        } else {
            "idle"
        }
    }
}

/// Every configured pager's health, shared by the dispatcher (which writes) and the HTTP
/// server (which reads); kept across reloads for pagers that stay.
#[derive(Debug, Default)]
pub struct DeliveryHealth {
    pagers: Mutex<BTreeMap<String, PagerHealth>>,
}

impl DeliveryHealth {
    fn with<R>(&self, pager: &str, f: impl FnOnce(&mut PagerHealth) -> R) -> Option<R> {
        let mut map = self.pagers.lock().unwrap_or_else(|e| e.into_inner());
        map.get_mut(pager).map(f)
    }

    /// The configured pagers (a reload may change them): new ones start idle, gone ones go.
    pub fn configure(&self, pagers: &[String]) {
        let mut map = self.pagers.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|name, _| pagers.contains(name));
        for name in pagers {
            map.entry(name.clone()).or_insert_with(|| PagerHealth {
                pager: name.clone(),
                ..PagerHealth::default()
            });
        }
    }

    /// The provider's `type` of `pager`, once its notifier is built.
    pub fn set_kind(&self, pager: &str, kind: &str) {
        self.with(pager, |p| p.kind = kind.to_string());
    }

    /// An attempt `pager` accepted.
    pub fn success(&self, pager: &str, at: DateTime<Utc>) {
        self.with(pager, |p| {
            p.last_success = Some(at);
            p.failing_since = None;
        });
    }

    /// An attempt `pager` did not accept; `error` is already redacted.
    pub fn failure(&self, pager: &str, at: DateTime<Utc>, error: &str) {
        self.with(pager, |p| {
            p.last_error_at = Some(at);
            p.last_error = Some(crate::report::cut(error, MAX_ERROR_CHARS));
            p.failing_since.get_or_insert(at);
        });
    }

    /// The members of an Alertmanager pager (`pager`'s `urls`), idle until posted to; members
    /// a reload removed go.
    pub fn set_members(&self, pager: &str, members: &[String]) {
        self.with(pager, |p| {
            p.members.retain(|m| members.contains(&m.member));
            for name in members.iter().take(MAX_MEMBERS) {
                if !p.members.iter().any(|m| &m.member == name) {
                    p.members.push(MemberHealth {
                        member: name.clone(),
                        ..MemberHealth::default()
                    });
                }
            }
        });
    }

    /// A post one member of `pager` took.
    pub fn member_success(&self, pager: &str, member: &str, at: DateTime<Utc>) {
        self.with_member(pager, member, |m| {
            m.last_success = Some(at);
            m.failing_since = None;
        });
    }

    /// A post one member of `pager` did not take; `error` is already redacted.
    pub fn member_failure(&self, pager: &str, member: &str, at: DateTime<Utc>, error: &str) {
        self.with_member(pager, member, |m| {
            m.last_error_at = Some(at);
            m.last_error = Some(crate::report::cut(error, MAX_ERROR_CHARS));
            m.failing_since.get_or_insert(at);
        });
    }

    fn with_member(&self, pager: &str, member: &str, f: impl FnOnce(&mut MemberHealth)) {
        self.with(pager, |p| {
            if let Some(i) = p.members.iter().position(|m| m.member == member) {
                f(&mut p.members[i]);
            } else if p.members.len() < MAX_MEMBERS {
                let mut m = MemberHealth {
                    member: member.to_string(),
                    ..MemberHealth::default()
                };
                f(&mut m);
                p.members.push(m);
            }
        });
    }

    /// What waits in `pager`'s queue.
    pub fn queue(&self, pager: &str, queued: usize, oldest: Option<DateTime<Utc>>) {
        self.with(pager, |p| {
            p.queued = queued;
            p.oldest_queued = oldest;
        });
    }

    /// Every pager, by name.
    pub fn snapshot(&self) -> Vec<PagerHealth> {
        let map = self.pagers.lock().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_until_the_next_success_and_errors_stay_short() {
        let h = DeliveryHealth::default();
        h.configure(&["slack".into(), "am".into()]);
        let t = |s| DateTime::<Utc>::from_timestamp(s, 0).unwrap();
        assert_eq!(h.snapshot()[1].state(), "idle");
        h.success("slack", t(10));
        h.failure("slack", t(20), &"403 Forbidden ".repeat(100));
        h.failure("slack", t(30), "403 Forbidden");
        h.queue("slack", 2, Some(t(20)));
        let slack = h
            .snapshot()
            .into_iter()
            .find(|p| p.pager == "slack")
            .unwrap();
        assert_eq!(slack.state(), "failing");
        assert_eq!(slack.failing_since, Some(t(20)));
        assert_eq!(slack.last_success, Some(t(10)));
        assert_eq!(slack.last_error.as_deref(), Some("403 Forbidden"));
        assert_eq!((slack.queued, slack.oldest_queued), (2, Some(t(20))));
        h.failure("am", t(5), &"x".repeat(10_000));
        let am = &h.snapshot()[0];
        assert!(am.last_error.as_ref().unwrap().chars().count() <= MAX_ERROR_CHARS + 1);
        h.success("slack", t(40));
        h.queue("slack", 0, None);
        let slack = h
            .snapshot()
            .into_iter()
            .find(|p| p.pager == "slack")
            .unwrap();
        assert_eq!((slack.state(), slack.failing_since), ("ok", None));
        // A reload without the pager forgets it; unknown names are ignored.
        h.configure(&["am".into()]);
        h.success("slack", t(50));
        assert_eq!(h.snapshot().len(), 1);
    }
}
