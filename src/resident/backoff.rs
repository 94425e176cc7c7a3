//! Reconnect delays of a resident session: exponential, capped, with full jitter (a uniform
//! draw in `[0, min(max, min × 2^attempt)]`), so a fleet of probers that lost their sessions
//! together never reconnects together — a reconnect storm was the incident's amplifier.

use std::time::Duration;

use rand::Rng;

/// Attempts past this many keep the cap (2^20 × any sane `min` is far past any sane `max`).
const MAX_DOUBLINGS: u32 = 20;

/// The delay before each reconnect attempt.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// Failed attempts since the last success.
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The bound of the next draw: `min(max, min × 2^attempt)`.
    pub fn bound(&self) -> Duration {
        let factor = 1u32 << self.attempt.min(MAX_DOUBLINGS);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// Draws the next delay and counts the attempt.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let bound = self.bound();
        self.attempt = self.attempt.saturating_add(1);
        let bound_us = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rng.random_range(0..=bound_us))
    }

    /// Attempts so far.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A session worked again: the next failure starts from `min`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn bounds_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let bounds: Vec<u64> = (0..9)
            .map(|_| {
                let bound = b.bound();
                let d = b.next_delay(&mut rng);
                assert!(d <= bound, "{d:?} past {bound:?}");
                bound.as_secs()
            })
            .collect();
        assert_eq!(bounds, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        for _ in 0..100 {
            b.next_delay(&mut rng);
        }
        assert_eq!(
            b.bound(),
            Duration::from_secs(60),
            "no overflow past the cap"
        );
        b.reset();
        assert_eq!(b.bound(), Duration::from_secs(1));
    }

    #[test]
    fn delays_are_spread_over_the_whole_range() {
        // Full jitter: 1,000 probers reconnecting at attempt 3 (bound 8 s) land all over
        // [0, 8 s], not in a burst.
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let mut buckets = [0u32; 8];
        for _ in 0..1000 {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
            for _ in 0..3 {
                b.next_delay(&mut rng);
            }
            let d = b.next_delay(&mut rng);
            assert!(d <= Duration::from_secs(8));
            let i = usize::try_from(d.as_secs()).unwrap_or(7).min(7);
            buckets[i] += 1;
        }
        // Each second of the range gets about 125; none is empty or holds a storm.
        assert!(
            buckets.iter().all(|n| (60..=200).contains(n)),
            "{buckets:?}"
        );
    }
}
