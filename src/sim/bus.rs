//! The pub/sub bus shared by every websocket connection, plus room membership: in-process by
//! default (standing in for a platform's Redis), or on a real Redis (`sim --redis`), where
//! presence and join announcements go through Redis. `signalling_drop` and
//! `signalling_delay_ms` faults strike between presence and announcement in both.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tokio::sync::{broadcast, watch};

use super::event::JoinEvent;
use super::redis::{RedisBus, RedisBusError, RedisStartError};

/// Room of backlog per subscriber; a connection that falls further behind skips messages
/// (logged) rather than making the bus buffer without bound.
const BUS_CAPACITY: usize = 1024;

pub type ConnId = u64;

#[derive(Debug)]
pub struct Bus {
    tx: broadcast::Sender<JoinEvent>,
    /// Local membership; unused on Redis, where presence lives in Redis.
    rooms: Mutex<HashMap<String, HashSet<ConnId>>>,
    redis: Option<RedisBus>,
}

impl Default for Bus {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(BUS_CAPACITY);
        Bus {
            tx,
            rooms: Mutex::new(HashMap::new()),
            redis: None,
        }
    }
}

impl Bus {
    /// A bus on Redis: connected and subscribed before it returns.
    ///
    /// # Errors
    /// A malformed URL or Redis not answering within `op_timeout`.
    pub async fn on_redis(
        url: &str,
        op_timeout: std::time::Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Bus, RedisStartError> {
        let (tx, _) = broadcast::channel(BUS_CAPACITY);
        let redis = RedisBus::connect(url, op_timeout, tx.clone(), shutdown).await?;
        Ok(Bus {
            tx,
            rooms: Mutex::new(HashMap::new()),
            redis: Some(redis),
        })
    }

    /// Records `conn` as present in `room` and returns the room's member count (across every
    /// sim on Redis).
    ///
    /// # Errors
    /// On Redis: Redis's refusal (e.g. OOM) or the operation's deadline.
    pub async fn join(&self, room: &str, conn: ConnId) -> Result<usize, RedisBusError> {
        match &self.redis {
            Some(redis) => redis.join(room, conn).await,
            None => {
                self.add_member(room, conn);
                Ok(self.participants(room))
            }
        }
    }

    /// Announces a join. In-process the count is taken now (so a delayed announcement sees
    /// who is there when it goes out); on Redis it is `joined_count`, from the presence write.
    ///
    /// # Errors
    /// On Redis: Redis's refusal or the operation's deadline.
    pub async fn announce(
        &self,
        room: String,
        id: String,
        joined_count: usize,
    ) -> Result<(), RedisBusError> {
        match &self.redis {
            Some(redis) => {
                let ev = JoinEvent {
                    room,
                    id,
                    participants: joined_count,
                };
                redis.publish(&ev).await
            }
            None => {
                self.publish(room, id);
                Ok(())
            }
        }
    }

    /// Drops `conn` from `rooms`: locally at once; on Redis in the background, under the
    /// operation deadline, so a stalled Redis never holds a closing connection.
    pub fn leave(self: &std::sync::Arc<Self>, conn: ConnId, rooms: &HashSet<String>) {
        if self.redis.is_none() {
            self.remove_member(conn, rooms);
            return;
        }
        let bus = std::sync::Arc::clone(self);
        let rooms: Vec<String> = rooms.iter().cloned().collect();
        tokio::spawn(async move {
            if let Some(redis) = &bus.redis {
                redis.leave(conn, &rooms).await;
            }
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<JoinEvent> {
        self.tx.subscribe()
    }

    pub fn add_member(&self, room: &str, conn: ConnId) {
        self.lock_rooms()
            .entry(room.to_owned())
            .or_default()
            .insert(conn);
    }

    /// Drops `conn` from each of `rooms`, deleting rooms left empty so memory tracks only
    /// rooms someone is in.
    pub fn remove_member<'a>(&self, conn: ConnId, rooms: impl IntoIterator<Item = &'a String>) {
        let mut map = self.lock_rooms();
        for room in rooms {
            if let Some(members) = map.get_mut(room) {
                members.remove(&conn);
                if members.is_empty() {
                    map.remove(room);
                }
            }
        }
    }

    pub fn participants(&self, room: &str) -> usize {
        self.lock_rooms().get(room).map_or(0, HashSet::len)
    }

    #[cfg(test)]
    pub fn room_count(&self) -> usize {
        self.lock_rooms().len()
    }

    /// Announces a join to every subscriber. Having no subscribers is not an error: the
    /// joiner may have disconnected while a delayed publish was pending.
    pub fn publish(&self, room: String, id: String) {
        let participants = self.participants(&room);
        let _ = self.tx.send(JoinEvent {
            room,
            id,
            participants,
        });
    }

    fn lock_rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<ConnId>>> {
        // The map stays consistent even if a holder panicked (every update is one call), so a
        // poisoned lock is safe to keep using.
        self.rooms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_rooms_are_removed() {
        let bus = Bus::default();
        bus.add_member("r", 1);
        bus.add_member("r", 2);
        bus.add_member("s", 1);
        assert_eq!(bus.participants("r"), 2);
        let rooms = ["r".to_owned(), "s".to_owned()];
        bus.remove_member(1, &rooms);
        assert_eq!(bus.participants("r"), 1);
        assert_eq!(bus.room_count(), 1);
        bus.remove_member(2, &rooms);
        assert_eq!(bus.room_count(), 0);
    }

    #[tokio::test]
    async fn publish_counts_members_at_publish_time() {
        let bus = Bus::default();
        let mut rx = bus.subscribe();
        bus.add_member("r", 7);
        bus.publish("r".into(), "a".into());
        let ev = rx.recv().await.unwrap();
        assert_eq!(ev.participants, 1);
        assert_eq!(ev.id, "a");
    }
}
