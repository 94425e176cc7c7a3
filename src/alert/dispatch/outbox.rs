//! The outbox: what waits for delivery, what fires at Alertmanager, and which triggers
//! reached their pager; each change one record in the state log, and the `outbox.json` of
//! earlier versions read into it once.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::{EventKind, Notification};
use crate::store::{Loaded, Store};

/// Where an earlier version kept the outbox (migrated into the state log on first start).
pub const LEGACY_OUTBOX_FILE: &str = "outbox.json";

/// The outbox: what waits for delivery, what fires at Alertmanager, and which triggers reached
/// their pager. Lives in memory (authoritative: a failing disk loses nothing while the process
/// runs, and a reload hands it to the next dispatcher); every change is one record in the
/// state log ([`crate::store`]), so its cost does not grow with the queue.
#[derive(Debug, Default)]
pub struct Outbox {
    pub(super) next_id: u64,
    pub(super) pending: Vec<Pending>,
    /// Alertmanager alerts still firing: re-posted every `resend_interval`, and the source of the
    /// labels a resolve must repeat.
    pub(super) firing: Vec<Firing>,
    /// Per (sink, dedup key): the last trigger delivered (or given up on) whose resolve has not
    /// been. What reconciliation compares open alerts with.
    settled: BTreeMap<(String, String), Notification>,
}

/// The `outbox.json` of earlier versions, read once to migrate it.
#[derive(Debug, Default, Deserialize)]
struct LegacyOutbox {
    #[serde(default)]
    pending: Vec<Pending>,
    #[serde(default)]
    firing: Vec<Firing>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Pending {
    pub(super) id: u64,
    pub(super) sink: String,
    pub(super) attempts: u32,
    pub(super) enqueued_at: DateTime<Utc>,
    pub(super) notification: Notification,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Firing {
    pub(super) sink: String,
    pub(super) notification: Notification,
}

pub(super) const PENDING: &str = "p/";
pub(super) const FIRING: &str = "f/";
pub(super) const SETTLED: &str = "s/";

pub(super) fn pending_key(id: u64) -> String {
    // Zero-padded so the log's key order is the queue order.
    format!("{PENDING}{id:020}")
}

pub(super) fn pair_key(prefix: &str, sink: &str, dedup_key: &str) -> String {
    format!(
        "{prefix}{}",
        serde_json::to_string(&(sink, dedup_key)).unwrap_or_default()
    )
}

impl Outbox {
    /// The outbox as the state log holds it.
    pub fn from_loaded(loaded: &Loaded) -> Outbox {
        // A record is kept under the key of its own id (an edited file could say otherwise:
        // its removal would then miss the key, and it would be sent again at every start), and
        // an id below `u64::MAX`, so the next id cannot overflow.
        let pending: Vec<Pending> = loaded
            .decode::<Pending>(PENDING)
            .into_iter()
            .filter_map(|(key, p)| {
                if p.id < u64::MAX && key == format!("{:020}", p.id) {
                    Some(p)
                } else {
                    tracing::warn!(key = %format!("{PENDING}{key}"), id = p.id, "state log: a queued notification whose id does not match its key is skipped");
                    None
                }
            })
            .collect();
        let firing = loaded
            .decode::<Firing>(FIRING)
            .into_iter()
            .map(|(_, f)| f)
            .collect();
        let settled = loaded
            .decode::<Firing>(SETTLED)
            .into_iter()
            .map(|(_, f)| ((f.sink, f.notification.dedup_key.clone()), f.notification))
            .collect();
        Outbox {
            next_id: pending.iter().map(|p| p.id + 1).max().unwrap_or(0),
            pending,
            firing,
            settled,
        }
    }

    /// Reads an `outbox.json` left by an earlier version as state-log records. `Ok(None)`:
    /// there was none. A damaged one is an error (what it held is unknown, so reconciliation
    /// sends the triggers of open alerts again).
    pub(crate) fn migrate_legacy(
        path: &Path,
    ) -> Result<Option<Vec<(String, serde_json::Value)>>, String> {
        let reader = match crate::diag::file::open_state(path) {
            Ok(r) => r,
            Err(crate::diag::file::FileError::Io(e))
                if e.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e.to_string()),
        };
        let legacy: LegacyOutbox = serde_json::from_reader(reader).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for (id, mut p) in legacy.pending.into_iter().enumerate() {
            p.id = id as u64;
            out.push((
                pending_key(p.id),
                serde_json::to_value(&p).map_err(|e| e.to_string())?,
            ));
        }
        for f in legacy.firing {
            out.push((
                pair_key(FIRING, &f.sink, &f.notification.dedup_key),
                serde_json::to_value(&f).map_err(|e| e.to_string())?,
            ));
        }
        Ok(Some(out))
    }

    /// Drops what belongs to pagers no longer configured (a reload removed or renamed them):
    /// queued notifications (logged), firing alerts and delivery records.
    pub(super) fn keep_pagers(&mut self, pagers: &[&str], store: &Store) {
        self.pending.retain(|p| {
            let known = pagers.contains(&p.sink.as_str());
            if !known {
                tracing::warn!(
                    sink = %p.sink,
                    event = %p.notification.kind.as_str(),
                    probe = %p.notification.probe,
                    region = %p.notification.region,
                    "dropping a queued notification: no pager of that name is configured any more"
                );
                store.delete(&pending_key(p.id));
            }
            known
        });
        self.firing.retain(|f| {
            let known = pagers.contains(&f.sink.as_str());
            if !known {
                store.delete(&pair_key(FIRING, &f.sink, &f.notification.dedup_key));
            }
            known
        });
        self.settled.retain(|(sink, dedup), _| {
            let known = pagers.contains(&sink.as_str());
            if !known {
                store.delete(&pair_key(SETTLED, sink, dedup));
            }
            known
        });
    }

    /// Queues `n` for `sink` at `now`, recording it; for an Alertmanager pager a trigger is
    /// remembered as firing and a resolve repeats its trigger's labels ([`track_firing`]).
    pub(super) fn enqueue(
        &mut self,
        store: &Store,
        sink: &str,
        n: &Notification,
        alertmanager: bool,
        now: DateTime<Utc>,
    ) {
        let notification = if alertmanager {
            let sent = track_firing(self, sink, n);
            let key = pair_key(FIRING, sink, &n.dedup_key);
            match self
                .firing
                .iter()
                .find(|f| f.sink == sink && f.notification.dedup_key == n.dedup_key)
            {
                Some(f) => store.put(&key, f),
                None => store.delete(&key),
            }
            sent
        } else {
            n.clone()
        };
        let id = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        let p = Pending {
            id,
            sink: sink.to_string(),
            attempts: 0,
            enqueued_at: now,
            notification,
        };
        store.put(&pending_key(id), &p);
        self.pending.push(p);
    }

    /// Records that `sink` has (or was given up on with) the trigger `n`.
    pub(crate) fn mark_settled(&mut self, store: &Store, sink: &str, n: &Notification) {
        let key = (sink.to_string(), n.dedup_key.clone());
        match n.kind {
            EventKind::Trigger => {
                store.put(
                    &pair_key(SETTLED, sink, &n.dedup_key),
                    &Firing {
                        sink: sink.to_string(),
                        notification: n.clone(),
                    },
                );
                self.settled.insert(key, n.clone());
            }
            EventKind::Resolve => {
                if self.settled.remove(&key).is_some() {
                    store.delete(&pair_key(SETTLED, sink, &n.dedup_key));
                }
            }
        }
    }

    /// Triggers known to have reached a pager and not yet resolved there: (sink, trigger).
    pub fn settled(&self) -> Vec<(String, Notification)> {
        self.settled
            .iter()
            .map(|((sink, _), n)| (sink.clone(), n.clone()))
            .collect()
    }

    /// Whether a notification for `dedup_key` waits for `sink`.
    pub fn queued(&self, sink: &str, dedup_key: &str) -> bool {
        self.pending
            .iter()
            .any(|p| p.sink == sink && p.notification.dedup_key == dedup_key)
    }

    /// Notifications waiting for delivery.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Nothing waits for delivery.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// For an Alertmanager pager: remember a trigger as firing; turn a resolve into the last
/// trigger with `endsAt` = now, since Alertmanager identifies an alert by its labels.
pub(super) fn track_firing(outbox: &mut Outbox, sink: &str, n: &Notification) -> Notification {
    let pos = outbox
        .firing
        .iter()
        .position(|f| f.sink == sink && f.notification.dedup_key == n.dedup_key);
    match n.kind {
        EventKind::Trigger => {
            let f = Firing {
                sink: sink.to_string(),
                notification: n.clone(),
            };
            match pos {
                Some(i) => outbox.firing[i] = f,
                None => outbox.firing.push(f),
            }
            n.clone()
        }
        EventKind::Resolve => match pos {
            Some(i) => {
                let mut r = outbox.firing.remove(i).notification;
                r.kind = EventKind::Resolve;
                r.at = n.at;
                r.summary = n.summary.clone();
                r.reminder = false;
                r
            }
            None => n.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An edited `state.log` (issue 17's hostile files): a queued notification under another
    /// id's key, or with the largest id, is skipped (no overflow of the next id, no record that
    /// can never be removed); a huge attempt count is kept as it is.
    #[test]
    fn queued_records_from_disk_are_checked() {
        let n = crate::alert::sample(EventKind::Trigger);
        let record = |id: u64, attempts: u32| {
            serde_json::to_string(&Pending {
                id,
                sink: "hook".into(),
                attempts,
                enqueued_at: n.at,
                notification: n.clone(),
            })
            .unwrap()
        };
        let mut loaded = crate::store::Loaded::default();
        for (key, id, attempts) in [(u64::MAX, u64::MAX, 0), (5, 7, 0), (3, 3, u32::MAX)] {
            loaded
                .entries
                .insert(pending_key(key), record(id, attempts));
        }
        let outbox = Outbox::from_loaded(&loaded);
        let kept: Vec<(u64, u32)> = outbox.pending.iter().map(|p| (p.id, p.attempts)).collect();
        assert_eq!(kept, [(3, u32::MAX)]);
        assert_eq!(outbox.next_id, 4);
    }

    #[test]
    fn resolve_repeats_the_firing_labels() {
        let mut outbox = Outbox::default();
        let t = crate::alert::sample(EventKind::Trigger);
        track_firing(&mut outbox, "am", &t);
        assert_eq!(outbox.firing.len(), 1);
        let mut r = crate::alert::sample(EventKind::Resolve);
        r.failed_step = None;
        r.reason = None;
        let sent = track_firing(&mut outbox, "am", &r);
        assert_eq!(sent.kind, EventKind::Resolve);
        assert_eq!(sent.failed_step.as_deref(), Some("signalling"));
        assert!(outbox.firing.is_empty());
    }
}
