//! The internal pub/sub bus shared by every websocket connection, plus room membership.
//! It stands in for the Redis pub/sub of a real platform, which is where `signalling_drop`
//! and `signalling_delay_ms` faults strike.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tokio::sync::broadcast;

/// Room of backlog per subscriber; a connection that falls further behind skips messages
/// (logged) rather than making the bus buffer without bound.
const BUS_CAPACITY: usize = 1024;

/// One join announced on the bus. `participants` is counted when it is published, so every
/// member sees the same number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinEvent {
    pub room: String,
    pub id: String,
    pub participants: usize,
}

pub type ConnId = u64;

#[derive(Debug)]
pub struct Bus {
    tx: broadcast::Sender<JoinEvent>,
    rooms: Mutex<HashMap<String, HashSet<ConnId>>>,
}

impl Default for Bus {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(BUS_CAPACITY);
        Bus {
            tx,
            rooms: Mutex::new(HashMap::new()),
        }
    }
}

impl Bus {
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
