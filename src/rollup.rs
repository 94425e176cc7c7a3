//! Hourly roll-ups of a probe's runs for a week: what availability over 24 h and 7 d and the
//! response-time chart are computed from. One small bucket per hour (runs, passes, the summed
//! and the longest duration of the passing runs), at most [`HOURS`] of them per probe, so the
//! store stays bounded (about 8 KB of JSON per probe) whatever the schedule, and is kept in
//! the status history file beside the last 60 runs.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A week of hours, plus the one under way: the bucket that holds "7 days ago" is still kept
/// when the current hour has only begun.
pub const HOURS: usize = 7 * 24 + 1;
const HOUR: i64 = 3600;
/// The longer availability window, seconds.
pub const WEEK: i64 = 7 * 24 * HOUR;
/// The shorter one.
pub const DAY: i64 = 24 * HOUR;
/// A duration above this (a day) is not a run's: a peer's bucket holding one is cut to it.
const MAX_MS: f64 = 86_400_000.0;

/// One hour of one probe's runs. Short field names: the status document carries a week of
/// these per probe.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct HourBucket {
    /// Start of the hour, Unix seconds.
    pub t: i64,
    /// Runs in the hour.
    pub n: u32,
    /// Of which passed.
    pub ok: u32,
    /// Summed duration of the passing runs, milliseconds (mean = `ms / ok`), written to the µs.
    #[serde(serialize_with = "crate::report::millis::serialize_f64")]
    pub ms: f64,
    /// Longest passing run, milliseconds.
    #[serde(serialize_with = "crate::report::millis::serialize_f64")]
    pub max: f64,
    /// On the first hour ever kept only: when its first run started (Unix seconds), so "data
    /// since" after a first start at 12:36 says 12:36, not 12:00. 0 (not written) elsewhere.
    #[serde(skip_serializing_if = "is_zero")]
    pub first: i64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` signature
fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl HourBucket {
    /// The mean duration of the hour's passing runs, if any passed.
    pub fn mean_ms(&self) -> Option<f64> {
        (self.ok > 0).then(|| self.ms / f64::from(self.ok))
    }

    pub fn start(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.t, 0)
    }

    /// Where this hour's data begins: its start, or its first run on the first hour kept.
    pub fn data_since(&self) -> i64 {
        self.first.clamp(self.t, self.t + HOUR - 1)
    }
}

/// Availability over a window: runs, passes, and how much of the window the roll-ups cover.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Availability {
    pub runs: u64,
    pub passed: u64,
    /// `passed / runs`, absent with no runs.
    pub ratio: Option<f64>,
    /// Seconds of the window the kept hours cover (less than the window after a first start).
    pub covered_seconds: i64,
}

/// Availability over the last 24 hours and 7 days.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Windows {
    pub day: Availability,
    pub week: Availability,
}

/// Adds one run to `hours` (oldest first), dropping hours more than a week older than it.
pub fn record(hours: &mut VecDeque<HourBucket>, at: DateTime<Utc>, success: bool, ms: f64) {
    let t = at.timestamp().div_euclid(HOUR) * HOUR;
    // Runs arrive in order; one that does not (a clock stepped back) joins the newest hour
    // rather than reordering the week.
    let newest = hours.back().map(|b| b.t);
    if newest.is_none_or(|n| t > n) {
        hours.push_back(HourBucket {
            t,
            first: if newest.is_none() { at.timestamp() } else { 0 },
            ..HourBucket::default()
        });
    }
    if let Some(b) = hours.back_mut() {
        b.n = b.n.saturating_add(1);
        if success {
            let ms = if ms.is_finite() {
                ms.clamp(0.0, MAX_MS)
            } else {
                0.0
            };
            b.ok = b.ok.saturating_add(1);
            b.ms += ms;
            b.max = b.max.max(ms);
        }
    }
    let newest = hours.back().map_or(t, |b| b.t);
    while hours
        .front()
        .is_some_and(|b| b.t <= newest - HOURS as i64 * HOUR)
    {
        hours.pop_front();
    }
}

/// Availability over the `window` seconds before `now`, from whole hours: an hour that began
/// inside the window counts whole.
pub fn availability(hours: &VecDeque<HourBucket>, now: DateTime<Utc>, window: i64) -> Availability {
    let now_s = now.timestamp();
    let since = now_s - window;
    let inside = hours.iter().filter(|b| b.t + HOUR > since && b.t <= now_s);
    let (runs, passed, first) = inside.fold((0u64, 0u64, None::<i64>), |(r, p, f), b| {
        (
            r + u64::from(b.n),
            p + u64::from(b.ok.min(b.n)),
            Some(f.map_or(b.data_since(), |f: i64| f.min(b.data_since()))),
        )
    });
    Availability {
        runs,
        passed,
        // Cut (not rounded) to six decimals: 1.0 only when every run passed, and no
        // 0.23076923076923078 in the API for a figure the page shows as 23.07 %.
        ratio: (runs > 0).then(|| (passed as f64 / runs as f64 * 1e6).floor() / 1e6),
        covered_seconds: first.map_or(0, |f| (now_s - f.max(since)).clamp(0, window)),
    }
}

/// The 24-hour and 7-day windows.
pub fn windows(hours: &VecDeque<HourBucket>, now: DateTime<Utc>) -> Windows {
    Windows {
        day: availability(hours, now, DAY),
        week: availability(hours, now, WEEK),
    }
}

/// A peer's (or a saved file's) hours made safe to use: at most a week, in order, one per hour,
/// counts consistent, durations finite and within a day.
pub fn sanitize(hours: &mut VecDeque<HourBucket>) {
    let mut clean: VecDeque<HourBucket> = VecDeque::with_capacity(hours.len().min(HOURS));
    for b in hours.iter() {
        // An hour chrono cannot date (beyond ±262,000 years) is no run's, and `t + HOUR`
        // below and in `data_since` would overflow at the ends of `i64`.
        if b.t.rem_euclid(HOUR) != 0
            || b.start().is_none()
            || clean.back().is_some_and(|last| last.t >= b.t)
        {
            continue;
        }
        let finite = |v: f64| {
            if v.is_finite() {
                v.clamp(0.0, MAX_MS)
            } else {
                0.0
            }
        };
        let ok = b.ok.min(b.n);
        clean.push_back(HourBucket {
            t: b.t,
            n: b.n,
            ok,
            ms: finite(b.ms / f64::from(ok.max(1))) * f64::from(ok),
            max: finite(b.max),
            // Inside its hour, or none: a peer cannot move "data since" elsewhere.
            first: if b.first > b.t && b.first < b.t + HOUR {
                b.first
            } else {
                0
            },
        });
    }
    while clean.len() > HOURS {
        clean.pop_front();
    }
    *hours = clean;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn a_week_of_minutes_is_169_buckets_and_availability_counts_them() {
        let mut hours = VecDeque::new();
        let start = 1_700_000_000 / HOUR * HOUR;
        // Nine days of one run a minute; every 50th fails.
        for i in 0..9 * 24 * 60 {
            record(&mut hours, at(start + i * 60), i % 50 != 0, 120.0);
        }
        assert_eq!(hours.len(), HOURS);
        let now = at(start + 9 * 24 * 3600);
        // Half an hour later, the hour that began 7 days and 30 minutes ago still counts whole
        // (and the one under way has no runs yet).
        let later = windows(&hours, at(start + 9 * 24 * 3600 + 1800));
        assert_eq!(later.week.runs, 7 * 24 * 60);
        assert_eq!(later.day.runs, 24 * 60);
        let w = windows(&hours, now);
        assert_eq!(w.day.runs, 24 * 60);
        // `now` is on the hour: exactly the week's hours.
        assert_eq!(w.week.runs, 7 * 24 * 60);
        assert!((w.week.ratio.unwrap() - 0.98).abs() < 0.001, "{w:?}");
        assert_eq!(w.day.covered_seconds, 24 * 3600);
        assert_eq!(w.week.covered_seconds, 7 * 24 * 3600);
        let b = hours.back().unwrap();
        assert_eq!(b.mean_ms(), Some(120.0));
    }

    #[test]
    fn a_first_start_says_how_much_it_covers() {
        let mut hours = VecDeque::new();
        let start = 1_700_000_000 / HOUR * HOUR;
        record(&mut hours, at(start + 10), true, 5.0);
        record(&mut hours, at(start + 3 * HOUR + 10), false, 5.0);
        let w = windows(&hours, at(start + 3 * HOUR + 600));
        assert_eq!((w.day.runs, w.day.passed), (2, 1));
        // From the first run (10 s into its hour), not from the hour's start.
        assert_eq!(w.day.covered_seconds, 3 * HOUR + 590);
        assert_eq!(windows(&VecDeque::new(), at(start)).week.ratio, None);
    }

    /// Seen in a trial: `"ratio": 0.23076923076923078` in /api/v1/status. Six decimals, cut,
    /// so 1.0 still means every run passed.
    #[test]
    fn the_ratio_has_six_decimals_and_is_never_rounded_up_to_one() {
        let ratio = |ok: u32, n: u32| {
            let hours: VecDeque<HourBucket> = [HourBucket {
                t: HOUR,
                n,
                ok,
                ..HourBucket::default()
            }]
            .into();
            windows(&hours, at(2 * HOUR)).day.ratio.unwrap()
        };
        assert_eq!(ratio(3, 13), 0.230769);
        assert_eq!(ratio(9_999_999, 10_000_000), 0.999999);
        assert_eq!(ratio(13, 13), 1.0);
    }

    /// Seen in a trial: a prober first started at 12:36 said "data since 12:00" (the start
    /// of the hour bucket) on its status page, and `covered_seconds` counted 36 minutes it never
    /// probed. The first hour kept remembers its first run; no other hour carries it.
    #[test]
    fn data_since_is_the_first_run_not_the_start_of_its_hour() {
        let mut hours = VecDeque::new();
        let start = 1_700_000_000 / HOUR * HOUR;
        record(&mut hours, at(start + 36 * 60 + 28), true, 3.5);
        record(&mut hours, at(start + 37 * 60), true, 3.5);
        let w = windows(&hours, at(start + 38 * 60));
        assert_eq!(w.day.covered_seconds, 92);
        assert_eq!(hours[0].data_since(), start + 36 * 60 + 28);
        record(&mut hours, at(start + HOUR + 5), true, 3.5);
        assert_eq!(hours[1].first, 0);
        assert_eq!(hours[1].data_since(), start + HOUR);
        let json = serde_json::to_string(&hours).unwrap();
        assert_eq!(json.matches("\"first\"").count(), 1, "{json}");
        // Read back (a restart, a peer), it still says so; an old document without it is
        // read as the hour's start, and a peer's `first` outside its hour is dropped.
        let mut back: VecDeque<HourBucket> = serde_json::from_str(&json).unwrap();
        sanitize(&mut back);
        assert_eq!(back, hours);
        let mut odd: VecDeque<HourBucket> = serde_json::from_str(&format!(
            r#"[{{"t":{start},"n":1,"ok":1,"ms":1,"max":1,"first":{}}},{{"t":{},"n":1}}]"#,
            start - 50,
            start + HOUR
        ))
        .unwrap();
        sanitize(&mut odd);
        assert_eq!(
            (odd[0].data_since(), odd[1].data_since()),
            (start, start + HOUR)
        );
    }

    #[test]
    fn hostile_buckets_are_made_safe() {
        let mut hours: VecDeque<HourBucket> = (0..1000)
            .map(|i| HourBucket {
                t: i * HOUR,
                n: 1,
                ok: 7,
                ms: f64::MAX,
                max: f64::INFINITY,
                first: -1,
            })
            .collect();
        hours.push_back(HourBucket {
            t: 5,
            ..HourBucket::default()
        });
        sanitize(&mut hours);
        assert_eq!(hours.len(), HOURS);
        assert!(
            hours
                .iter()
                .all(|b| b.ok <= b.n && b.ms <= MAX_MS && b.max == 0.0 && b.first == 0)
        );
    }

    /// Hours at the ends of `i64` (whole hours, so they pass the alignment check) from a peer
    /// or the history file: before, `t + HOUR` overflowed in `sanitize` (a panic in a debug
    /// build) and `data_since`'s clamp panicked on the wrapped bound in any build, taking down
    /// the status page's request. Now such hours are dropped; the rest are kept.
    #[test]
    fn hours_at_the_ends_of_time_are_dropped_not_overflowed() {
        let last = i64::MAX - i64::MAX.rem_euclid(HOUR);
        let first = i64::MIN + (HOUR - i64::MIN.rem_euclid(HOUR));
        let now = DateTime::from_timestamp(1_790_000_000 - 1_790_000_000 % HOUR, 0).unwrap();
        let mut hours: VecDeque<HourBucket> = [first, -HOUR, now.timestamp(), last]
            .into_iter()
            .map(|t| HourBucket {
                t,
                n: 1,
                ok: 1,
                ms: 5.0,
                max: 5.0,
                first: t.wrapping_add(1),
            })
            .collect();
        sanitize(&mut hours);
        let kept: Vec<i64> = hours.iter().map(|b| b.t).collect();
        assert_eq!(kept, [-HOUR, now.timestamp()]);
        for b in &hours {
            b.data_since();
        }
        assert_eq!(windows(&hours, now).week.runs, 1);
    }
}
