//! One join announced on the sim's bus: the value both the in-process bus and the Redis-backed
//! one carry, kept apart from both so neither imports the other for it.

/// One join announced on the bus. `participants` is counted when it is published, so every
/// member sees the same number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinEvent {
    pub room: String,
    pub id: String,
    pub participants: usize,
}
