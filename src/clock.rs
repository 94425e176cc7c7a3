//! Wall-clock time derived from tokio's clock, so cron schedules run under `tokio::time::pause()`
//! in tests exactly as they do in production.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// Maps tokio instants to wall-clock times from a fixed origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin_wall: DateTime<Utc>,
    origin: Instant,
}

impl Clock {
    /// A clock that agrees with the system clock now.
    pub fn system() -> Clock {
        Clock::starting_at(Utc::now())
    }

    /// A clock that reads `wall` now (tests pick a fixed date).
    pub fn starting_at(wall: DateTime<Utc>) -> Clock {
        Clock {
            origin_wall: wall,
            origin: Instant::now(),
        }
    }

    /// The wall-clock time the clock was made at: for the service, when it started.
    pub fn started(&self) -> DateTime<Utc> {
        self.origin_wall
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.wall_at(Instant::now())
    }

    pub fn wall_at(&self, at: Instant) -> DateTime<Utc> {
        let elapsed = at.saturating_duration_since(self.origin);
        self.origin_wall + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }

    /// The tokio instant at which the wall clock reads `wall` (now, if that is past).
    pub fn instant_at(&self, wall: DateTime<Utc>) -> Instant {
        let now_wall = self.now();
        let ahead = (wall - now_wall).to_std().unwrap_or_default();
        Instant::now() + ahead
    }
}
