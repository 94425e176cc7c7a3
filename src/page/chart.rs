//! The response-time chart: one inline SVG per probe, a line per region (a colour and a dash
//! pattern each), hourly means once hours are kept, the last runs before that, failures as
//! red ticks on the time axis.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::format::{percent, time};
use super::model::Column;
use crate::html::escape as esc;
use crate::report::human_duration;
use crate::status::{ProbeStatus, StatusDoc};

/// Line styles for the regions of a chart: a colour *and* a dash pattern each, so lines are
/// told apart without colour too.
const SERIES: [(&str, &str); 6] = [
    ("#0a4fa8", ""),
    ("#b3400e", "6 3"),
    ("#2e7d32", "2 3"),
    ("#6a1b9a", "10 3 2 3"),
    ("#00695c", "1 5"),
    ("#5d4037", "12 6"),
];

/// One point of a chart line: when (Unix seconds), the duration of passing runs (none: a gap),
/// how many runs failed there, and its tooltip.
struct Point {
    t: i64,
    ms: Option<f64>,
    failed: u32,
    tip: String,
}

/// What a probe's chart shows: a week (or a day) of hourly means once more than
/// [`RECENT_FOR`] is kept, else each of the last 60 runs, so a new prober's chart is not a
/// single dot.
const RECENT_FOR: i64 = 3 * 3600;

/// A response-time chart per probe, a line per region: the hourly mean of passing runs over
/// the last 7 days (24 hours while less than a day is kept; each of the last 60 runs while
/// less than [`RECENT_FOR`] is), with a gap where there were none and a red tick on the time
/// axis where runs failed. Inline SVG.
pub(super) fn charts(
    html: &mut String,
    columns: &[Column<'_>],
    probes: &BTreeSet<&str>,
    now: DateTime<Utc>,
) {
    let regions: Vec<(&str, &StatusDoc)> = columns
        .iter()
        .filter_map(|c| c.doc.map(|d| (c.name.as_str(), d)))
        .collect();
    if probes.is_empty() || regions.is_empty() {
        return;
    }
    html.push_str("<section class=\"charts\"><h2>Response time</h2>");
    let now_s = now.timestamp();
    for probe in probes {
        let series: Vec<(&str, &ProbeStatus)> = regions
            .iter()
            .filter_map(|(name, d)| {
                d.probes
                    .iter()
                    .find(|p| p.probe == *probe)
                    .map(|p| (*name, p))
            })
            .collect();
        let oldest = series
            .iter()
            .filter_map(|(_, p)| p.hourly.front().map(crate::rollup::HourBucket::data_since))
            .min();
        let kept = oldest.map_or(0, |t| now_s - t);
        let (what, start, lines) = if kept < RECENT_FOR {
            let lines: Vec<(&str, Vec<Point>)> = series
                .iter()
                .map(|(region, p)| (*region, recent_points(region, p)))
                .collect();
            let first = lines
                .iter()
                .flat_map(|(_, pts)| pts.first().map(|p| p.t))
                .min()
                .unwrap_or(now_s);
            // At least a minute wide, with a margin, so the first run is not on the axis.
            let start = first.min(now_s - 60);
            let start = start - (now_s - start) / 20;
            (
                "each of the last 60 runs (hourly means from 3 hours on)".to_string(),
                start,
                lines,
            )
        } else {
            let window = if kept > crate::rollup::DAY {
                crate::rollup::WEEK
            } else {
                crate::rollup::DAY
            };
            let start = now_s - window;
            let lines: Vec<(&str, Vec<Point>)> = series
                .iter()
                .map(|(region, p)| (*region, hourly_points(region, p, start, now_s)))
                .collect();
            let since = oldest
                .filter(|t| now_s - t < window)
                .and_then(|t| DateTime::from_timestamp(t, 0))
                .map(|t| format!(" (data since {})", time(t)))
                .unwrap_or_default();
            let span = if window == crate::rollup::WEEK {
                "7 days"
            } else {
                "24 hours"
            };
            (
                format!("hourly mean of passing runs, last {span}{since}"),
                start,
                lines,
            )
        };
        let _ = write!(
            html,
            "<figure class=\"chart\"><figcaption><strong>{}</strong> · {}</figcaption>",
            esc(probe),
            esc(&what)
        );
        svg_chart(
            html,
            &format!("{probe}: response time, {what}, by region"),
            &lines,
            start,
            now_s,
        );
        html.push_str("<ul class=\"legend\">");
        for (i, (region, p)) in series.iter().enumerate() {
            let (colour, dash) = SERIES[i % SERIES.len()];
            let w = crate::rollup::windows(&p.hourly, now);
            let _ = write!(
                html,
                "<li><svg width=\"28\" height=\"10\" aria-hidden=\"true\"><line x1=\"0\" x2=\"28\" y1=\"5\" y2=\"5\" stroke=\"{colour}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"/></svg> \
                 {} · 24 h {} · 7 d {}</li>",
                esc(region),
                esc(&percent(&w.day)),
                esc(&percent(&w.week)),
            );
        }
        html.push_str("</ul></figure>");
    }
    html.push_str("</section>");
}

/// The hours of `p` from `start` to `end`: the mean of the passing runs, the failed ones; a
/// gap where an hour has no bucket (the prober was down).
fn hourly_points(region: &str, p: &ProbeStatus, start: i64, end: i64) -> Vec<Point> {
    let mut points = Vec::new();
    let mut last: Option<i64> = None;
    for b in p.hourly.iter().filter(|b| b.t + 3600 > start && b.t <= end) {
        if last.is_some_and(|l| b.t - l > 3600) {
            points.push(Point {
                t: b.t - 1800,
                ms: None,
                failed: 0,
                tip: String::new(),
            });
        }
        last = Some(b.t);
        let from = b.start().map(time).unwrap_or_default();
        let failed = b.n.saturating_sub(b.ok);
        points.push(Point {
            t: b.t + 1800,
            ms: b.mean_ms(),
            failed,
            tip: match b.mean_ms() {
                Some(mean) => format!(
                    "{region}, hour from {from}: mean {}, slowest {}, {} of {} passed",
                    human_duration(crate::report::clamped_ms(mean)),
                    human_duration(crate::report::clamped_ms(b.max)),
                    b.ok,
                    b.n
                ),
                None => format!(
                    "{region}: {failed} of {} runs failed in the hour from {from}",
                    b.n
                ),
            },
        });
    }
    points
}

/// The last runs of `p`, oldest first: a passing run's duration, a failed one as a failure.
fn recent_points(region: &str, p: &ProbeStatus) -> Vec<Point> {
    p.history
        .iter()
        .rev()
        .map(|h| {
            let took = human_duration(crate::report::clamped_ms(h.duration_ms));
            Point {
                t: h.time.timestamp(),
                ms: h.success.then_some(h.duration_ms),
                failed: u32::from(!h.success),
                tip: if h.success {
                    format!("{region}, {}: passed in {took}", time(h.time))
                } else {
                    format!(
                        "{region}, {}: failed at {} ({}) after {took}",
                        time(h.time),
                        h.failed_step.as_deref().unwrap_or("?"),
                        h.reason.map(|r| r.as_str()).unwrap_or("?")
                    )
                },
            }
        })
        .collect()
}

/// Lines (one per region, in [`SERIES`] styles) over `start..=end`, with a value axis from 0 to
/// a round number above the highest point, time labels, and failures as red ticks.
fn svg_chart(html: &mut String, label: &str, lines: &[(&str, Vec<Point>)], start: i64, end: i64) {
    const W: f64 = 760.0;
    const H: f64 = 170.0;
    const LEFT: f64 = 64.0;
    const RIGHT: f64 = 12.0;
    const TOP: f64 = 10.0;
    const BOTTOM: f64 = 24.0;
    let width = (end - start).max(1);
    let x =
        |t: i64| LEFT + (W - LEFT - RIGHT) * ((t - start) as f64 / width as f64).clamp(0.0, 1.0);
    let top = lines
        .iter()
        .flat_map(|(_, pts)| pts.iter().filter_map(|p| p.ms))
        .fold(0.0_f64, f64::max);
    let scale = nice_ceiling(top);
    let y = |ms: f64| TOP + (H - TOP - BOTTOM) * (1.0 - (ms / scale).clamp(0.0, 1.0));
    let _ = write!(
        html,
        "<svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        esc(label)
    );
    for frac in [0.0, 0.5, 1.0] {
        let ms = scale * frac;
        let _ = write!(
            html,
            "<line class=\"rule\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
             <text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            y(ms),
            y(ms),
            LEFT - 6.0,
            y(ms) + 4.0,
            axis_label(ms, scale),
        );
    }
    // About five time labels, on round steps.
    let step = [60, 300, 900, 3600, 6 * 3600, 24 * 3600]
        .into_iter()
        .find(|s| width / s <= 6)
        .unwrap_or(24 * 3600);
    let format = if step >= 24 * 3600 { "%b %d" } else { "%H:%M" };
    let mut t = end - end.rem_euclid(step);
    while t > start {
        if let Some(when) = DateTime::from_timestamp(t, 0) {
            let _ = write!(
                html,
                "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x(t),
                H - 6.0,
                esc(&when.format(format).to_string()),
            );
        }
        t -= step;
    }
    for (i, (_, points)) in lines.iter().enumerate() {
        let (colour, dash) = SERIES[i % SERIES.len()];
        let mut d = String::new();
        let mut joined = false;
        let mut marks = String::new();
        for p in points {
            let cx = x(p.t);
            if p.failed > 0 {
                let _ = write!(
                    marks,
                    "<rect class=\"fail\" x=\"{:.1}\" y=\"{:.1}\" width=\"3\" height=\"8\"><title>{}</title></rect>",
                    cx - 1.5,
                    H - BOTTOM,
                    esc(&p.tip),
                );
            }
            let Some(ms) = p.ms else {
                joined = false;
                continue;
            };
            let _ = write!(d, "{}{cx:.1} {:.1} ", if joined { "L" } else { "M" }, y(ms));
            joined = true;
            let _ = write!(
                marks,
                "<circle cx=\"{cx:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{colour}\"><title>{}</title></circle>",
                y(ms),
                esc(&p.tip),
            );
        }
        let _ = write!(
            html,
            "<path d=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"/>{marks}",
            d.trim_end()
        );
    }
    html.push_str("</svg>");
}

/// A value on the y axis in the unit of its top (`0 ms`, `5 ms`, `10 ms`; `0 s`, `1 s`,
/// `2 s`): one unit per axis, and no `0.0` beside a `10`.
pub(super) fn axis_label(ms: f64, top: f64) -> String {
    let (value, unit) = if top >= 1000.0 {
        (ms / 1000.0, "s")
    } else {
        (ms, "ms")
    };
    // The top is 1, 2 or 5 × 10^k, so its half needs at most one more decimal.
    format!("{} {unit}", (value * 1000.0).round() / 1000.0)
}

/// The chart's top: 1, 2 or 5 × a power of ten, at or above `ms` (10 ms at least).
fn nice_ceiling(ms: f64) -> f64 {
    let ms = if ms.is_finite() { ms.max(10.0) } else { 10.0 };
    let mut unit = 10f64.powf(ms.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * unit >= ms {
            unit *= m;
            return unit;
        }
    }
    unit * 10.0
}
