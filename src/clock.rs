//! Wall-clock time derived from tokio's clock, so cron schedules run under `tokio::time::pause()`
//! in tests exactly as they do in production; and the system clock as it reads now, for the
//! timestamps another server judges (Alertmanager's `startsAt`/`endsAt`).

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use tokio::time::Instant;

/// How often a loop asleep until a wall-clock time (a cron tick, a maintenance window's end)
/// looks at the system clock again, so a step while it sleeps moves it within this long.
pub const STEP_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Maps tokio instants to wall-clock times from a fixed origin.
///
/// The origin is read once: runs, cron times and deadlines count on from it with the monotonic
/// clock, so a step of the system clock (NTP after boot, a VM resumed, `date -s`) neither bunches
/// nor skips runs (docs/reliability.md, "The clock"). Timestamps that another server compares
/// with its own clock are converted with [`Clock::on_system`] at the moment they are sent.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin_wall: DateTime<Utc>,
    origin: Instant,
    system: System,
}

/// Where [`Clock::system_now`] reads.
#[derive(Debug, Clone, Copy)]
enum System {
    /// The host's clock (`CLOCK_REALTIME`), compared with the clock's start plus the time
    /// elapsed on the std monotonic clock since (the same clock as tokio's `Instant` in
    /// production; under tokio's paused clock in tests it still says "no step").
    Real(std::time::Instant),
    /// A test clock's stand-in: its own time plus the milliseconds stepped with
    /// [`Clock::step_system`]. The cell is leaked (8 bytes per test clock) so that `Clock` stays
    /// `Copy`: it is copied into every task.
    Simulated(&'static AtomicI64),
}

impl Clock {
    /// A clock that agrees with the system clock now.
    pub fn system() -> Clock {
        Clock {
            origin_wall: Utc::now(),
            origin: Instant::now(),
            system: System::Real(std::time::Instant::now()),
        }
    }

    /// A clock that reads `wall` now (tests pick a fixed date). Its "system clock" agrees with
    /// it until [`Clock::step_system`] steps it.
    pub fn starting_at(wall: DateTime<Utc>) -> Clock {
        Clock {
            origin_wall: wall,
            origin: Instant::now(),
            system: System::Simulated(Box::leak(Box::new(AtomicI64::new(0)))),
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

    /// What the system clock reads now (to the second: see [`Clock::offset`]): the host's
    /// clock, or a test clock's (stepped) stand-in.
    pub fn system_now(&self) -> DateTime<Utc> {
        self.on_system(self.now())
    }

    /// The system clock minus this clock, now: zero until the system clock is stepped after
    /// start (`joincanary_clock_offset_seconds`). Under a second counts as zero: NTP slews the
    /// clocks that far apart without a step, and the two reads' own jitter (microseconds) would
    /// otherwise make every converted timestamp wobble.
    pub fn offset(&self) -> TimeDelta {
        match self.system {
            System::Real(origin) => {
                let elapsed = TimeDelta::from_std(origin.elapsed()).unwrap_or_default();
                let d = Utc::now() - (self.origin_wall + elapsed);
                if d.abs() < TimeDelta::seconds(1) {
                    TimeDelta::zero()
                } else {
                    d
                }
            }
            System::Simulated(step) => TimeDelta::milliseconds(step.load(Ordering::Relaxed)),
        }
    }

    /// `t`, a time on this clock, as the system clock reads it now: `t` plus [`Clock::offset`].
    /// For timestamps a server compares with its own clock when it gets them (Alertmanager
    /// resolves an alert whose `endsAt` is past on its clock), read afresh for every post, as
    /// Prometheus does for its own alerts. Saturates at chrono's range.
    pub fn on_system(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let offset = self.offset();
        t.checked_add_signed(offset)
            .unwrap_or(if offset < TimeDelta::zero() {
                DateTime::<Utc>::MIN_UTC
            } else {
                DateTime::<Utc>::MAX_UTC
            })
    }

    /// Steps a test clock's system clock by `by` (an NTP correction, a VM resumed); this clock
    /// itself reads on as before. No effect on [`Clock::system`], whose system clock is the
    /// host's.
    pub fn step_system(&self, by: TimeDelta) {
        if let System::Simulated(step) = self.system {
            step.fetch_add(by.num_milliseconds(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_moves_the_system_clock_and_not_the_schedule_clock() {
        let clock = Clock::starting_at(t0());
        assert_eq!(clock.offset(), TimeDelta::zero());
        assert_eq!(clock.on_system(t0()), t0());
        tokio::time::advance(std::time::Duration::from_secs(60)).await;
        clock.step_system(TimeDelta::minutes(-10));
        // A copy shares the step: every task holds one.
        let copy = clock;
        assert_eq!(copy.now(), t0() + TimeDelta::minutes(1));
        assert_eq!(copy.system_now(), t0() - TimeDelta::minutes(9));
        assert_eq!(copy.offset(), TimeDelta::minutes(-10));
        assert_eq!(copy.on_system(t0()), t0() - TimeDelta::minutes(10));
        assert_eq!(
            clock.on_system(DateTime::<Utc>::MIN_UTC),
            DateTime::<Utc>::MIN_UTC
        );
    }

    #[test]
    fn the_real_system_clock_is_the_hosts() {
        let clock = Clock::system();
        clock.step_system(TimeDelta::hours(1));
        assert!(clock.offset().num_seconds().abs() < 5);
    }
}
