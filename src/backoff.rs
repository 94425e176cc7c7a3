//! Capped exponential backoff, the one every retry in joincanary waits by: a pager's retries
//! (±20 % jitter), a resident session's reconnects (full jitter), a supervised task's restarts
//! and the state writer's disk retries (no jitter). Each caller keeps its own delays and cap.

use std::time::Duration;

use rand::Rng;

/// `first × 2^doublings`, never past `cap` (no overflow however many doublings).
pub fn capped(first: Duration, cap: Duration, doublings: u32) -> Duration {
    first
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(cap)
}

/// `d` scaled by `1 + jitter`, with `jitter` held within `±spread` (a fleet of senders that
/// failed together does not retry together).
pub fn spread(d: Duration, jitter: f64, spread: f64) -> Duration {
    d.mul_f64((1.0 + jitter.clamp(-spread, spread)).max(0.0))
}

/// Full jitter: a uniform draw in `[0, d]`, so a fleet that failed together spreads out over
/// the whole wait.
pub fn full_jitter(d: Duration, rng: &mut impl Rng) -> Duration {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(rng.random_range(0..=us))
}

/// The delays of one retrying thing: `first`, doubling after each failure up to `cap`, back to
/// `first` after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    /// Failures since the last success.
    failures: u32,
}

impl Backoff {
    /// A cap shorter than `first` is taken as `first`.
    pub fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap: cap.max(first),
            failures: 0,
        }
    }

    /// The next wait before any jitter: `min(cap, first × 2^failures)`.
    pub fn bound(&self) -> Duration {
        capped(self.first, self.cap, self.failures)
    }

    /// The next wait (no jitter); counts the failure.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.bound();
        self.failures = self.failures.saturating_add(1);
        d
    }

    /// The next wait, fully jittered ([`full_jitter`] of [`Backoff::bound`]); counts the
    /// failure.
    pub fn next_jittered(&mut self, rng: &mut impl Rng) -> Duration {
        full_jitter(self.next_delay(), rng)
    }

    /// Failures since the last success.
    pub fn attempt(&self) -> u32 {
        self.failures
    }

    /// It worked again: the next failure waits `first`.
    pub fn reset(&mut self) {
        self.failures = 0;
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
                let d = b.next_jittered(&mut rng);
                assert!(d <= bound, "{d:?} past {bound:?}");
                bound.as_secs()
            })
            .collect();
        assert_eq!(bounds, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        for _ in 0..100 {
            b.next_jittered(&mut rng);
        }
        assert_eq!(
            b.bound(),
            Duration::from_secs(60),
            "no overflow past the cap"
        );
        assert_eq!(b.attempt(), 109);
        b.reset();
        assert_eq!(b.bound(), Duration::from_secs(1));
    }

    #[test]
    fn without_jitter_the_delays_are_the_bounds() {
        // The state writer's: 500 ms doubling to 30 s.
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let delays: Vec<u64> = (0..9).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
        // A cap below the first delay is the first delay.
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(b.next_delay(), Duration::from_secs(5));
        assert_eq!(b.next_delay(), Duration::from_secs(5));
    }

    #[test]
    fn capped_never_overflows() {
        let s = Duration::from_secs(1);
        assert_eq!(capped(s, Duration::from_secs(60), 0), s);
        assert_eq!(capped(s, Duration::from_secs(60), 3), 8 * s);
        assert_eq!(capped(s, Duration::from_secs(60), u32::MAX), 60 * s);
        assert_eq!(capped(Duration::MAX, Duration::MAX, 40), Duration::MAX);
    }

    #[test]
    fn spread_is_held_within_its_bounds() {
        let s = Duration::from_secs(10);
        assert_eq!(spread(s, 0.0, 0.2), s);
        assert_eq!(spread(s, 0.1, 0.2), Duration::from_secs(11));
        assert_eq!(spread(s, 0.9, 0.2), Duration::from_secs(12));
        assert_eq!(spread(s, -0.9, 0.2), Duration::from_secs(8));
        // Never negative, whatever the spread.
        assert_eq!(spread(s, -5.0, 10.0), Duration::ZERO);
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
                b.next_jittered(&mut rng);
            }
            let d = b.next_jittered(&mut rng);
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
