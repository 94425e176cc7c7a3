//! How values read on the page: times, spans, availability percentages, state badges, anchors
//! and links. Each returns text already escaped where it holds anything from outside.

use chrono::{DateTime, Utc};

use crate::html::escape as esc;
use crate::status::ProbeState;

/// An href only for http(s) URLs: a peer could send `javascript:`.
pub(super) fn link(url: &str, text: &str) -> String {
    let safe = url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
    if safe {
        format!("<a href=\"{}\">{}</a>", esc(url), esc(text))
    } else {
        format!("{} <code>{}</code>", esc(text), esc(url))
    }
}

pub(super) use crate::report::timestamp as time;

pub(super) fn clock(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S").to_string()
}

/// `42s`, `3m 12s`, `2h 05m`, `3d 04h`.
pub(super) fn span(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {:02}h", s / 86400, (s % 86400) / 3600),
    }
}

fn symbol(state: ProbeState) -> &'static str {
    match state {
        ProbeState::Up => "✓",
        ProbeState::Degraded => "!",
        ProbeState::Failing => "✕",
        ProbeState::Unknown => "?",
    }
}

pub(super) fn badge(state: ProbeState) -> String {
    format!(
        "<span class=\"badge {s}\"><span aria-hidden=\"true\">{}</span> {s}</span>",
        symbol(state),
        s = state.as_str()
    )
}

pub(super) fn anchor(region: &str, probe: &str) -> String {
    // Ids may hold any character but space; escaping keeps them inside the attribute.
    esc(&format!("{region}/{probe}").replace(char::is_whitespace, "_"))
}

/// The id of a region's section.
pub(super) fn region_anchor(region: &str) -> String {
    anchor("region", region)
}

/// `99.93 %` over the window, `100 %` only when every run passed, `no runs`; with how much of
/// the window the kept hours cover when that is less than all of it.
pub(super) fn percent(a: &crate::rollup::Availability) -> String {
    let Some(ratio) = a.ratio else {
        return "no runs".to_string();
    };
    // Cut, not rounded: one failure in 10,000 runs must not read as 100 %.
    if a.passed >= a.runs {
        return "100 %".to_string();
    }
    // No more decimals than one run can move: 5 of 30 runs is `16 %`, not `16.66 %`; a day of
    // minutely runs (1,440) keeps two.
    let decimals: u32 = match a.runs {
        0..=100 => 0,
        101..=1000 => 1,
        _ => 2,
    };
    // In whole units of the last decimal, from the counts (the ratio is a float: 0.29 × 100 is
    // 28.999…); the ratio only when the counts do not fit (a peer's document).
    let units = u128::from(a.passed)
        .checked_mul(10u128.pow(decimals + 2))
        .and_then(|n| n.checked_div(u128::from(a.runs)))
        .unwrap_or_else(|| (ratio * 10f64.powi(decimals as i32 + 2)).floor() as u128);
    let unit = 10u128.pow(decimals);
    match decimals {
        0 => format!("{units} %"),
        d => format!(
            "{}.{:0width$} %",
            units / unit,
            units % unit,
            width = d as usize
        ),
    }
}

/// " (data since 20:00 UTC)" when the kept hours cover less than the window: the roll-ups
/// are whole hours, so that is the start of the first hour kept.
pub(super) fn coverage(a: &crate::rollup::Availability, window: i64, now: DateTime<Utc>) -> String {
    if a.covered_seconds >= window || a.runs == 0 {
        String::new()
    } else {
        format!(
            " (data since {})",
            time(now - chrono::Duration::seconds(a.covered_seconds))
        )
    }
}
