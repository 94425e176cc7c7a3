//! Whether the scheduler is making progress ([`Liveness`]): the run consumer ticks it and the
//! scheduler announces each probe's next run; the heartbeat pings and the Alertmanager watchdog
//! both follow it. A leaf of its own, so the two (heartbeat and alert) are siblings that take it
//! rather than one importing the other for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// The scheduler counts as stuck when a probe's next run is this far overdue or the run
/// consumer has not ticked for this long (it ticks every 5 s).
pub const STALL_AFTER: Duration = Duration::from_secs(30);

/// Whether the scheduler is making progress: the run consumer ticks, and no probe's announced
/// next run is far overdue. Cheap to clone; shared by the consumer and the heartbeat tasks.
#[derive(Clone)]
pub struct Liveness {
    inner: Arc<Mutex<LiveState>>,
    bound: Duration,
}

struct LiveState {
    consumer: Instant,
    due: HashMap<String, Instant>,
}

impl Liveness {
    /// Healthy now; stuck once nothing progresses for `bound`.
    pub fn new(bound: Duration) -> Liveness {
        Liveness {
            inner: Arc::new(Mutex::new(LiveState {
                consumer: Instant::now(),
                due: HashMap::new(),
            })),
            bound,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        // Plain data; a panic elsewhere while holding the lock leaves it usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The run consumer went round its loop.
    pub fn beat(&self) {
        self.lock().consumer = Instant::now();
    }

    /// The scheduler announced `probe`'s next run at `at`.
    pub fn due(&self, probe: &str, at: Instant) {
        self.lock().due.insert(probe.to_string(), at);
    }

    /// `None` while healthy, else why not.
    pub fn stalled(&self) -> Option<String> {
        let now = Instant::now();
        let s = self.lock();
        let quiet = now.saturating_duration_since(s.consumer);
        if quiet > self.bound {
            return Some(format!(
                "the run consumer has not progressed for {}",
                crate::report::human_duration(quiet)
            ));
        }
        let mut overdue: Vec<(&String, Duration)> = s
            .due
            .iter()
            .map(|(p, at)| (p, now.saturating_duration_since(*at)))
            .filter(|(_, late)| *late > self.bound)
            .collect();
        overdue.sort();
        overdue.first().map(|(p, late)| {
            format!(
                "probe `{p}` should have started {} ago",
                crate::report::human_duration(*late)
            )
        })
    }
}
