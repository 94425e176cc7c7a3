//! The status page at `/`, rendered on the server: a probe × region grid for the fleet, then a
//! card per probe and region with what on-call asks first (what fails, where, since when, what
//! changed). Plain HTML and CSS, no JavaScript; state is always a word beside its colour; every
//! value that came from a probe, a server or a peer is escaped.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::fleet::PeerView;
use crate::report::{ProbeRun, human_duration};
use crate::status::{ProbeState, ProbeStatus, StatusDoc};

#[cfg(test)]
mod golden;

/// How often the page reloads itself (a meta refresh, so it works without JavaScript).
pub const REFRESH_SECONDS: u32 = 15;

/// One column of the grid: a region that answered, or a peer that did not.
struct Column<'a> {
    /// The region; for a peer that did not answer, its configured or last reported region,
    /// else its URL.
    name: String,
    doc: Option<&'a StatusDoc>,
    error: Option<&'a str>,
    url: Option<&'a str>,
    local: bool,
    /// A peer that did not answer: since when (first failed fetch), and when it last did.
    unreachable_since: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
}

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    crate::html::escape(s)
}

/// An href only for http(s) URLs: a peer could send `javascript:`.
fn link(url: &str, text: &str) -> String {
    let safe = url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
    if safe {
        format!("<a href=\"{}\">{}</a>", esc(url), esc(text))
    } else {
        format!("{} <code>{}</code>", esc(text), esc(url))
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn clock(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S").to_string()
}

/// `42s`, `3m 12s`, `2h 05m`, `3d 04h`.
pub fn span(d: chrono::Duration) -> String {
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

fn badge(state: ProbeState) -> String {
    format!(
        "<span class=\"badge {s}\"><span aria-hidden=\"true\">{}</span> {s}</span>",
        symbol(state),
        s = state.as_str()
    )
}

fn anchor(region: &str, probe: &str) -> String {
    // Ids may hold any character but space; escaping keeps them inside the attribute.
    esc(&format!("{region}/{probe}").replace(char::is_whitespace, "_"))
}

/// The id of a region's section.
fn region_anchor(region: &str) -> String {
    anchor("region", region)
}

/// The page for `local` and its peers, as of `now`.
pub fn render(local: &StatusDoc, peers: &[PeerView], now: DateTime<Utc>) -> String {
    let mut columns = vec![Column {
        name: local.region.clone(),
        doc: Some(local),
        error: None,
        url: None,
        local: true,
        unreachable_since: None,
        last_seen: None,
    }];
    for p in peers {
        match &p.result {
            // A shared peer list names this prober too: show it once.
            Ok(doc) if doc.region == local.region => {}
            Ok(doc) => columns.push(Column {
                name: doc.region.clone(),
                doc: Some(doc),
                error: None,
                url: Some(&p.url),
                local: false,
                unreachable_since: None,
                last_seen: None,
            }),
            Err(e) => columns.push(Column {
                name: p.region.clone().unwrap_or_else(|| p.url.clone()),
                doc: None,
                error: Some(e),
                url: Some(&p.url),
                local: false,
                unreachable_since: p.unreachable_since,
                last_seen: p.last_seen,
            }),
        }
    }
    let probes: BTreeSet<&str> = columns
        .iter()
        .filter_map(|c| c.doc)
        .flat_map(|d| d.probes.iter().map(|p| p.probe.as_str()))
        .collect();

    let mut html = String::new();
    let title = if columns.len() > 1 {
        format!("joincanary fleet — {} regions", columns.len())
    } else {
        format!("joincanary — {}", local.region)
    };
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>{}</title><style>{CSS}</style></head><body>\
         <header><h1>{}</h1><p>seen from <strong>{}</strong> at {} · refreshes every {REFRESH_SECONDS} s</p></header><main>",
        esc(&title),
        esc(&title),
        esc(&local.region),
        esc(&time(now)),
    );
    banner(&mut html, &columns, now);
    grid(&mut html, &columns, &probes, now);
    charts(&mut html, &columns, &probes, now);
    for c in &columns {
        match c.doc {
            Some(doc) => region_section(&mut html, c, doc, now),
            None => {
                let _ = write!(
                    html,
                    "<section class=\"region\" id=\"{}\"><h2>{} <span class=\"badge unreachable\"><span aria-hidden=\"true\">⊘</span> unreachable</span></h2>\
                     <p class=\"links\">{}</p>\
                     <p class=\"error\">No status from {}: {}. Its probes are shown as unreachable, not as passing.</p></section>",
                    region_anchor(&c.name),
                    esc(&c.name),
                    unreachable_note(c, now),
                    esc(c.url.unwrap_or("")),
                    esc(c.error.unwrap_or("no answer")),
                );
            }
        }
    }
    let _ = write!(
        html,
        "</main><footer><a href=\"/api/v1/status\">status JSON</a> · <a href=\"/metrics\">metrics</a> · \
         joincanary {}</footer></body></html>",
        esc(&local.version)
    );
    html
}

/// "unreachable since 12:03:04 UTC (5m 12s) · last answered 12:01:10 UTC", escaped.
fn unreachable_note(c: &Column<'_>, now: DateTime<Utc>) -> String {
    let mut note = match c.unreachable_since {
        Some(t) => format!(
            "unreachable since {} ({})",
            esc(&time(t)),
            esc(&span(now - t))
        ),
        None => "unreachable".to_string(),
    };
    match c.last_seen {
        Some(t) => {
            let _ = write!(note, " · last answered {}", esc(&time(t)));
        }
        None => note.push_str(" · has not answered since this prober started"),
    }
    note
}

/// One line on top: all well, or what is wrong where (pagers that cannot deliver included).
fn banner(html: &mut String, columns: &[Column<'_>], now: DateTime<Utc>) {
    let mut failing = Vec::new();
    let mut degraded = Vec::new();
    let mut unreachable = Vec::new();
    let mut delivery = Vec::new();
    for c in columns {
        match c.doc {
            None => unreachable.push(match c.unreachable_since {
                Some(t) => format!("{} (since {}, {})", c.name, clock(t), span(now - t)),
                None => c.name.clone(),
            }),
            Some(doc) => {
                for d in doc.delivery.iter().filter(|d| d.state() == "failing") {
                    delivery.push(format!("{} in {}", d.pager, doc.region));
                }
                for p in &doc.probes {
                    match p.judge() {
                        ProbeState::Failing => {
                            failing.push(format!("{} in {}", p.probe, doc.region))
                        }
                        ProbeState::Degraded => {
                            degraded.push(format!("{} in {}", p.probe, doc.region))
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    let mut parts = Vec::new();
    if !failing.is_empty() {
        parts.push(format!("failing: {}", failing.join(", ")));
    }
    if !degraded.is_empty() {
        parts.push(format!("degraded: {}", degraded.join(", ")));
    }
    if !unreachable.is_empty() {
        parts.push(format!("unreachable: {}", unreachable.join(", ")));
    }
    if !delivery.is_empty() {
        parts.push(format!("pages not delivered: {}", delivery.join(", ")));
    }
    let (class, text) = if !failing.is_empty() {
        ("failing", parts.join(" · "))
    } else if !degraded.is_empty() || !unreachable.is_empty() || !delivery.is_empty() {
        ("degraded", parts.join(" · "))
    } else {
        ("up", "All probes passing in every region.".to_string())
    };
    let _ = write!(
        html,
        "<p class=\"banner {class}\" role=\"status\">{}</p>",
        esc(&text)
    );
}

fn grid(html: &mut String, columns: &[Column<'_>], probes: &BTreeSet<&str>, now: DateTime<Utc>) {
    html.push_str(
        "<table class=\"grid\"><caption>Probes by region</caption><thead><tr><th scope=\"col\">probe</th>",
    );
    for c in columns {
        let note = if c.local {
            " <small>(this prober)</small>".to_string()
        } else if c.doc.is_none() {
            match c.unreachable_since {
                Some(t) => format!(" <small>(unreachable since {})</small>", esc(&clock(t))),
                None => " <small>(unreachable)</small>".to_string(),
            }
        } else {
            String::new()
        };
        let _ = write!(html, "<th scope=\"col\">{}{note}</th>", esc(&c.name));
    }
    html.push_str("</tr></thead><tbody>");
    if probes.is_empty() {
        let _ = write!(
            html,
            "<tr><td colspan=\"{}\">No probes configured.</td></tr>",
            columns.len() + 1
        );
    }
    for probe in probes {
        let _ = write!(html, "<tr><th scope=\"row\">{}</th>", esc(probe));
        for c in columns {
            let Some(doc) = c.doc else {
                let _ = write!(
                    html,
                    "<td class=\"cell unreachable\"><a href=\"#{}\"><span class=\"badge unreachable\"><span aria-hidden=\"true\">⊘</span> unreachable</span></a>\
                     <div class=\"detail\">no status from {}{}</div></td>",
                    region_anchor(&c.name),
                    esc(&c.name),
                    c.unreachable_since
                        .map(|t| format!("<br>since {} ({})", esc(&clock(t)), esc(&span(now - t))))
                        .unwrap_or_default(),
                );
                continue;
            };
            let Some(p) = doc.probes.iter().find(|p| p.probe == *probe) else {
                html.push_str(
                    "<td class=\"cell none\"><span class=\"muted\">not configured</span></td>",
                );
                continue;
            };
            let state = p.judge();
            let detail = match (&p.last, state) {
                (Some(run), ProbeState::Failing) if !run.success => {
                    let mut d = format!(
                        "step <strong>{}</strong> · {}",
                        esc(run.failed_step.as_deref().unwrap_or("?")),
                        esc(run.reason.map(|r| r.as_str()).unwrap_or("?")),
                    );
                    if let Some(since) = p.failing_since {
                        let _ = write!(d, "<br>for {}", esc(&span(now - since)));
                    }
                    d
                }
                (_, ProbeState::Failing) => "critical alert open".to_string(),
                (_, ProbeState::Degraded) => p
                    .alerts
                    .first()
                    .map(|a| format!("warning since {}", esc(&clock(a.since))))
                    .unwrap_or_default(),
                (Some(run), _) => esc(&human_duration(run.duration_ms)),
                (None, _) => "no run yet".to_string(),
            };
            let w = crate::rollup::windows(&p.hourly, now);
            let _ = write!(
                html,
                "<td class=\"cell {}\"><a href=\"#{}\">{}</a><div class=\"detail\">{detail}</div>\
                 <div class=\"avail\">24 h {} · 7 d {}</div></td>",
                state.as_str(),
                anchor(&doc.region, probe),
                badge(state),
                esc(&percent(&w.day)),
                esc(&percent(&w.week)),
            );
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
}

fn region_section(html: &mut String, c: &Column<'_>, doc: &StatusDoc, now: DateTime<Utc>) {
    let _ = write!(
        html,
        "<section class=\"region\" id=\"{}\"><h2>{}",
        region_anchor(&doc.region),
        esc(&doc.region)
    );
    if c.local {
        html.push_str(" <small>(this prober)</small>");
    }
    html.push_str("</h2><p class=\"links\">");
    let mut links = Vec::new();
    if let Some(u) = &doc.dashboard_url {
        links.push(link(u, "dashboard"));
    }
    if let Some(u) = &doc.status_url {
        links.push(link(u, "status page"));
    }
    if let Some(u) = c.url {
        links.push(link(&format!("{u}/api/v1/status"), "status JSON"));
    }
    links.push(format!(
        "version {}{}",
        esc(&doc.version),
        if doc.ready {
            ""
        } else {
            " · <strong>not ready</strong>"
        }
    ));
    if doc.pagers == 0 {
        links.push("<strong>no pager configured</strong>".to_string());
    }
    html.push_str(&links.join(" · "));
    html.push_str("</p>");
    delivery(html, doc, now);
    for p in &doc.probes {
        card(html, doc, p, now);
    }
    html.push_str("</section>");
}

/// Each pager's delivery health: the last success, the last error (already redacted and cut),
/// what waits.
fn delivery(html: &mut String, doc: &StatusDoc, now: DateTime<Utc>) {
    if doc.delivery.is_empty() {
        return;
    }
    let _ = write!(
        html,
        "<table class=\"pagers\"><caption>Pagers of {}: delivery</caption><thead><tr>\
         <th scope=\"col\">pager</th><th scope=\"col\">state</th><th scope=\"col\">last success</th>\
         <th scope=\"col\">last error</th><th scope=\"col\">queued</th></tr></thead><tbody>",
        esc(&doc.region)
    );
    let ago = |t: Option<DateTime<Utc>>| match t {
        Some(t) => format!("{} · {} ago", esc(&time(t)), esc(&span(now - t))),
        None => "never".to_string(),
    };
    for d in &doc.delivery {
        let state = d.state();
        let (class, symbol) = match state {
            "failing" => ("failing", "✕"),
            "queued" => ("degraded", "…"),
            "ok" => ("up", "✓"),
            _ => ("unknown", "–"),
        };
        let error = match (&d.last_error, d.last_error_at) {
            (Some(e), Some(t)) => format!(
                "{}{}<div class=\"error\">{}</div>",
                esc(&time(t)),
                d.failing_since
                    .map(|f| format!(" · failing for <strong>{}</strong>", esc(&span(now - f))))
                    .unwrap_or_default(),
                esc(e)
            ),
            _ => "none".to_string(),
        };
        let queued = match d.oldest_queued {
            Some(t) if d.queued > 0 => format!("{} · oldest {} old", d.queued, esc(&span(now - t))),
            _ => d.queued.to_string(),
        };
        let _ = write!(
            html,
            "<tr class=\"{class}\"><th scope=\"row\">{} <small>{}</small></th>\
             <td><span class=\"badge {class}\"><span aria-hidden=\"true\">{symbol}</span> {state}</span></td>\
             <td>{}</td><td>{error}</td><td>{queued}</td></tr>",
            esc(&d.pager),
            esc(&d.kind),
            ago(d.last_success),
        );
    }
    html.push_str("</tbody></table>");
}

/// `99.93 %` over the window, `100 %` only when every run passed, `no runs`; with how much of
/// the window the kept hours cover when that is less than all of it.
fn percent(a: &crate::rollup::Availability) -> String {
    let Some(ratio) = a.ratio else {
        return "no runs".to_string();
    };
    // Cut, not rounded: one failure in 10,000 runs must not read as 100 %.
    if a.passed >= a.runs {
        "100 %".to_string()
    } else {
        format!("{:.2} %", (ratio * 10_000.0).floor() / 100.0)
    }
}

/// " (data since 20:00 UTC)" when the kept hours cover less than the window: the roll-ups
/// are whole hours, so that is the start of the first hour kept.
fn coverage(a: &crate::rollup::Availability, window: i64, now: DateTime<Utc>) -> String {
    if a.covered_seconds >= window || a.runs == 0 {
        String::new()
    } else {
        format!(
            " (data since {})",
            time(now - chrono::Duration::seconds(a.covered_seconds))
        )
    }
}

fn card(html: &mut String, doc: &StatusDoc, p: &ProbeStatus, now: DateTime<Utc>) {
    let state = p.judge();
    let _ = write!(
        html,
        "<article class=\"card {}\" id=\"{}\"><h3>{} <small>in {}</small> {}</h3><dl class=\"facts\">",
        state.as_str(),
        anchor(&doc.region, &p.probe),
        esc(&p.probe),
        esc(&doc.region),
        badge(state),
    );
    let mut fact = |name: &str, value: String| {
        let _ = write!(html, "<dt>{}</dt><dd>{value}</dd>", esc(name));
    };
    if let Some(since) = p.failing_since {
        fact(
            "failing since",
            format!(
                "{} · for <strong>{}</strong>",
                esc(&time(since)),
                esc(&span(now - since))
            ),
        );
    }
    if let Some(run) = p.last.as_ref().filter(|r| !r.success) {
        let mut v = format!(
            "step <strong>{}</strong> · reason <code>{}</code>",
            esc(run.failed_step.as_deref().unwrap_or("?")),
            esc(run.reason.map(|r| r.as_str()).unwrap_or("?")),
        );
        if let Some(e) = &run.error {
            let _ = write!(v, "<div class=\"error\">{}</div>", esc(e));
        }
        fact("failing step", v);
    }
    fact(
        "last success",
        match p.last_success {
            Some(t) => format!("{} · {} ago", esc(&time(t)), esc(&span(now - t))),
            None => "never".to_string(),
        },
    );
    if let Some(run) = &p.last {
        fact(
            "last run",
            format!(
                "{} · {} · {}",
                esc(&time(run.started_at)),
                esc(&human_duration(run.duration_ms)),
                esc(run.trigger.as_str())
            ),
        );
    }
    fact(
        "next run",
        match p.next_run {
            Some(t) if t >= now => format!("{} · in {}", esc(&time(t)), esc(&span(t - now))),
            Some(t) => esc(&time(t)),
            None => "not scheduled".to_string(),
        },
    );
    fact(
        "runs",
        format!(
            "{} (skipped {}) · schedule <code>{}</code>",
            p.runs,
            p.skipped,
            esc(&p.schedule)
        ),
    );
    if !p.alerts.is_empty() {
        let mut v = String::from("<ul class=\"alerts\">");
        for a in &p.alerts {
            let sev = a.severity.as_str();
            let _ = write!(
                v,
                "<li><span class=\"badge {}\">{sev}</span> since {} ({}) — {}</li>",
                if sev == "critical" {
                    "failing"
                } else {
                    "degraded"
                },
                esc(&time(a.since)),
                esc(&span(now - a.since)),
                esc(&a.summary)
            );
        }
        v.push_str("</ul>");
        fact("open alerts", v);
    } else {
        fact("open alerts", "none".to_string());
    }
    let w = crate::rollup::windows(&p.hourly, now);
    fact(
        "availability",
        format!(
            "last 24 h <strong>{}</strong> of {} runs{} · last 7 d <strong>{}</strong> of {} runs{}",
            esc(&percent(&w.day)),
            w.day.runs,
            esc(&coverage(&w.day, crate::rollup::DAY, now)),
            esc(&percent(&w.week)),
            w.week.runs,
            esc(&coverage(&w.week, crate::rollup::WEEK, now)),
        ),
    );
    html.push_str("</dl>");
    strip(html, p);
    steps(html, p);
    html.push_str("</article>");
}

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
fn charts(html: &mut String, columns: &[Column<'_>], probes: &BTreeSet<&str>, now: DateTime<Utc>) {
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
            .filter_map(|(_, p)| p.hourly.front().map(|b| b.t))
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
            esc(&human_duration(crate::report::clamped_ms(ms))),
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

/// The last 60 runs, oldest left: colour, height and a tooltip per run; a text summary for
/// screen readers.
fn strip(html: &mut String, p: &ProbeStatus) {
    if p.history.is_empty() {
        return;
    }
    let failed = p.history.iter().filter(|h| !h.success).count();
    let _ = write!(
        html,
        "<div class=\"history\"><div class=\"label\">last {} runs, oldest first: {} passed, {} failed</div>\
         <div class=\"strip\" role=\"img\" aria-label=\"last {} runs: {} passed, {} failed\">",
        p.history.len(),
        p.history.len() - failed,
        failed,
        p.history.len(),
        p.history.len() - failed,
        failed
    );
    // Empty slots first, so the newest run is always at the right edge.
    for _ in p.history.len()..crate::status::HISTORY_LEN {
        html.push_str("<span class=\"run empty\"></span>");
    }
    for h in p.history.iter().rev() {
        let ms = crate::report::clamped_ms(h.duration_ms);
        let outcome = if h.success {
            "passed".to_string()
        } else {
            format!(
                "FAILED at {} ({})",
                h.failed_step.as_deref().unwrap_or("?"),
                h.reason.map(|r| r.as_str()).unwrap_or("?")
            )
        };
        let tip = format!(
            "{} · {} · {} · {}",
            time(h.time),
            human_duration(ms),
            outcome,
            h.trigger.as_str()
        );
        let _ = write!(
            html,
            "<span class=\"run {}\" title=\"{}\"></span>",
            if h.success { "ok" } else { "fail" },
            esc(&tip)
        );
    }
    html.push_str("</div></div>");
}

/// Each step of the last run beside the same step of the last good run.
fn steps(html: &mut String, p: &ProbeStatus) {
    let Some(last) = p.last.as_ref().or(p.last_good.as_ref()) else {
        return;
    };
    let good: Option<&ProbeRun> = p.last_good.as_deref();
    html.push_str(
        "<table class=\"steps\"><caption>Step timings: last run against the last good run</caption>\
         <thead><tr><th scope=\"col\">step</th><th scope=\"col\">last run</th><th scope=\"col\">last good run</th>\
         <th scope=\"col\">change</th><th scope=\"col\">phases (last run)</th></tr></thead><tbody>",
    );
    let mut names: Vec<&str> = last.steps.iter().map(|s| s.name.as_str()).collect();
    if let Some(g) = good {
        for s in &g.steps {
            if !names.contains(&s.name.as_str()) {
                names.push(&s.name);
            }
        }
    }
    for name in names {
        let now_step = last.steps.iter().find(|s| s.name == name);
        let good_step = good.and_then(|g| g.steps.iter().find(|s| s.name == name));
        let (class, result) = match now_step {
            Some(s) if s.success => ("ok", format!("✓ {}", esc(&human_duration(s.duration_ms)))),
            Some(s) => (
                "fail",
                format!(
                    "<strong>✕ FAILED</strong> {} after {}",
                    esc(s.reason.map(|r| r.as_str()).unwrap_or("?")),
                    esc(&human_duration(s.duration_ms))
                ),
            ),
            None => ("skipped", "not reached".to_string()),
        };
        let good_text = good_step
            .map(|s| esc(&human_duration(s.duration_ms)))
            .unwrap_or_else(|| "—".to_string());
        let change = match (now_step.filter(|s| s.success), good_step) {
            (Some(a), Some(b)) => {
                let delta = a.duration_ms.as_secs_f64() - b.duration_ms.as_secs_f64();
                let text = human_duration(crate::report::clamped_ms(delta.abs() * 1000.0));
                if delta >= 0.0 {
                    format!("+{}", esc(&text))
                } else {
                    format!("−{}", esc(&text))
                }
            }
            _ => String::new(),
        };
        let phases = now_step
            .map(|s| {
                s.phases
                    .iter()
                    .filter(|(ph, _)| **ph != crate::report::Phase::Total)
                    .map(|(ph, d)| format!("{} {}", ph.as_str(), human_duration(*d)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = write!(
            html,
            "<tr class=\"{class}\"><th scope=\"row\">{}</th><td>{result}</td><td>{good_text}</td><td>{change}</td><td class=\"phases\">{}</td></tr>",
            esc(name),
            esc(&phases)
        );
    }
    html.push_str("</tbody></table>");
}

/// Colours meet WCAG AA contrast (dark text on light tints); state never relies on colour
/// alone: every badge has a word and a symbol, failed runs in the strip are also taller.
const CSS: &str = "\
:root{--ink:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg:#f6f8fa;\
--up:#0b6b2e;--up-bg:#dff3e6;--deg:#7a4a00;--deg-bg:#fff0c2;--fail:#a0101e;--fail-bg:#fde2e4;\
--unk:#3d4654;--unk-bg:#e6eaef}\
*{box-sizing:border-box}\
body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:var(--ink);background:var(--bg)}\
header{background:#1b1f24;color:#fff;padding:14px 28px}\
header h1{margin:0;font-size:22px}header p{margin:4px 0 0;color:#d0d7de;font-size:13px}\
main{padding:18px 28px;max-width:1400px}\
footer{padding:12px 28px 28px;color:var(--muted);font-size:13px}\
a{color:#0a4fa8}\
.banner{margin:0 0 18px;padding:12px 16px;border-radius:6px;border-left:6px solid;font-weight:600}\
.banner.up{background:var(--up-bg);color:var(--up);border-color:var(--up)}\
.banner.degraded{background:var(--deg-bg);color:var(--deg);border-color:var(--deg)}\
.banner.failing{background:var(--fail-bg);color:var(--fail);border-color:var(--fail)}\
table{border-collapse:collapse}\
caption{text-align:left;font-weight:600;padding:0 0 6px;color:var(--muted);font-size:13px}\
.grid{background:#fff;border:1px solid var(--line);margin-bottom:22px}\
.grid th,.grid td{padding:9px 14px;border:1px solid var(--line);text-align:left;vertical-align:top}\
.grid td{min-width:210px}\
.grid thead th{background:#eef1f4;font-size:14px}\
.grid td a{text-decoration:none}\
.cell.failing{background:#fff5f6}.cell.degraded{background:#fffaeb}\
.cell.unreachable{background:repeating-linear-gradient(135deg,#eef1f4 0 8px,#e2e6eb 8px 16px)}\
.detail{font-size:13px;color:var(--muted);margin-top:4px}\
.badge{display:inline-block;padding:1px 9px;border-radius:999px;border:1px solid;font-weight:700;font-size:13px;white-space:nowrap}\
.badge.up{background:var(--up-bg);color:var(--up)}\
.badge.degraded{background:var(--deg-bg);color:var(--deg)}\
.badge.failing{background:var(--fail-bg);color:var(--fail)}\
.badge.unknown,.badge.unreachable{background:var(--unk-bg);color:var(--unk)}\
.muted{color:var(--muted)}\
.region h2{font-size:18px;margin:26px 0 4px}.links{margin:0 0 8px;font-size:13px;color:var(--muted)}\
.card{background:#fff;border:1px solid var(--line);border-left:6px solid var(--unk);border-radius:6px;padding:12px 18px;margin:12px 0}\
.card.up{border-left-color:var(--up)}.card.degraded{border-left-color:#c98a00}.card.failing{border-left-color:var(--fail)}\
.card h3{margin:0 0 8px;font-size:17px}.card h3 small{font-weight:400;color:var(--muted)}\
.facts{display:grid;grid-template-columns:max-content 1fr;gap:3px 18px;margin:0 0 10px;font-size:14px}\
.facts dt{color:var(--muted)}.facts dd{margin:0}\
.error{margin-top:3px;padding:4px 8px;background:var(--fail-bg);color:var(--fail);border-radius:4px;font:13px/1.4 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-word;max-height:7.5em;overflow:auto}\
code{font:13px ui-monospace,Menlo,Consolas,monospace}\
.alerts{margin:0;padding-left:18px}\
.history .label{font-size:13px;color:var(--muted);margin-bottom:4px}\
.strip{display:flex;gap:2px;align-items:flex-end;height:28px;margin-bottom:12px}\
.run{display:block;width:9px;height:16px;border-radius:2px;background:#2e8b4e}\
.run.fail{height:28px;background:var(--fail)}\
.run.empty{background:#e6eaef}\
.run:hover{outline:2px solid var(--ink)}\
.steps{font-size:14px;min-width:60%}\
.steps th,.steps td{padding:4px 12px 4px 0;text-align:left;border-bottom:1px solid #eaeef2}\
.steps thead th{color:var(--muted);font-weight:600}\
.steps tr.fail td,.steps tr.fail th{color:var(--fail)}\
.steps tr.skipped td{color:var(--muted)}\
.steps .phases{color:var(--muted);font-size:13px}\
.avail{font-size:12px;color:var(--muted);margin-top:2px}\
.pagers{background:#fff;border:1px solid var(--line);margin:8px 0 12px;font-size:14px}\
.pagers th,.pagers td{padding:5px 12px;border-bottom:1px solid #eaeef2;text-align:left;vertical-align:top}\
.pagers thead th{color:var(--muted);font-weight:600}\
.charts h2{font-size:18px;margin:8px 0 4px}\
.chart{background:#fff;border:1px solid var(--line);border-radius:6px;margin:10px 0;padding:8px 12px;max-width:800px}\
.chart figcaption{font-size:14px;margin-bottom:4px}\
.chart svg{max-width:100%;height:auto}\
.chart .rule{stroke:#d0d7de;stroke-width:1}\
.chart .axis{font:11px system-ui,sans-serif;fill:var(--muted)}\
.chart .fail{fill:var(--fail)}\
.legend{list-style:none;margin:4px 0 0;padding:0;font-size:13px;display:flex;flex-wrap:wrap;gap:4px 18px}\
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn only_http_links_are_links() {
        assert!(link("https://grafana.example/d/x", "dashboard").starts_with("<a href="));
        assert!(!link("javascript:alert(1)", "dashboard").contains("href"));
    }

    /// Two days kept, with a gap of three hours: the chart spans 7 days by hourly means and the
    /// line breaks at the gap; a newly started prober's chart is its last runs instead.
    #[test]
    fn the_chart_is_hourly_once_hours_are_kept_and_breaks_at_gaps() {
        use crate::rollup::HourBucket;
        use crate::status::HistoryEntry;
        let now = Utc::now();
        let hour = now.timestamp() / 3600 * 3600;
        let hourly = (0..48)
            .filter(|i| !(10..13).contains(i))
            .map(|i| HourBucket {
                t: hour - 3600 * (47 - i),
                n: 60,
                ok: if i == 20 { 57 } else { 60 },
                ms: 60.0 * 100.0,
                max: 140.0,
            })
            .collect();
        let probe = |hourly, history| ProbeStatus {
            probe: "join".into(),
            hourly,
            history,
            ..ProbeStatus::default()
        };
        let doc = StatusDoc {
            region: "eu".into(),
            probes: vec![probe(hourly, Default::default())],
            ..StatusDoc::default()
        };
        let html = render(&doc, &[], now);
        let chart = &html[html.find("<figure class=\"chart\">").unwrap()..];
        assert!(
            chart.contains("hourly mean of passing runs, last 7 days"),
            "{chart}"
        );
        let path = chart.split("<path d=\"").nth(1).unwrap();
        let path = &path[..path.find('"').unwrap()];
        assert_eq!(path.matches('M').count(), 2, "one break at the gap: {path}");
        assert!(chart.contains("eu: 3 of 60 runs failed") || chart.contains("57 of 60 passed"));
        assert!(
            chart.contains("100 ms"),
            "the axis reads in durations: {chart}"
        );

        let history = (0..5)
            .map(|i| HistoryEntry {
                time: now - chrono::Duration::seconds(60 * i),
                success: i != 2,
                duration_ms: 80.0,
                failed_step: (i == 2).then(|| "signalling".into()),
                reason: (i == 2).then_some(crate::report::FailureReason::NoMatch),
                trigger: crate::report::Trigger::Scheduled,
            })
            .collect();
        let doc = StatusDoc {
            region: "eu".into(),
            probes: vec![probe(
                [HourBucket {
                    t: hour,
                    n: 5,
                    ok: 4,
                    ms: 320.0,
                    max: 80.0,
                }]
                .into(),
                history,
            )],
            ..StatusDoc::default()
        };
        let html = render(&doc, &[], now);
        assert!(html.contains("each of the last 60 runs"), "{html}");
        assert_eq!(html.matches("passed in 80 ms").count(), 4);
        assert!(html.contains("failed at signalling (no_match)"));
    }

    #[test]
    fn spans_read_well() {
        assert_eq!(span(chrono::Duration::seconds(42)), "42s");
        assert_eq!(span(chrono::Duration::seconds(192)), "3m 12s");
        assert_eq!(span(chrono::Duration::seconds(7500)), "2h 05m");
        assert_eq!(span(chrono::Duration::seconds(-5)), "0s");
    }
}

#[cfg(test)]
mod hostile {
    use super::*;
    use crate::alert::health::PagerHealth;
    use crate::report::{FailureReason, StepKind, StepReport, Trigger};
    use crate::status::{AlertView, HistoryEntry};
    use std::time::Duration;

    fn run(error: &str) -> ProbeRun {
        ProbeRun {
            probe: "<img src=x onerror=alert(1)>".into(),
            region: "r".into(),
            success: false,
            started_at: Utc::now(),
            duration_ms: Duration::from_millis(12),
            failed_step: Some("<b>step</b>".into()),
            reason: Some(FailureReason::HttpStatus),
            error: Some(error.into()),
            trigger: Trigger::Scheduled,
            steps: vec![StepReport {
                name: "<b>step</b>".into(),
                kind: StepKind::Http,
                success: false,
                duration_ms: Duration::from_millis(12),
                reason: Some(FailureReason::HttpStatus),
                error: Some(error.into()),
                phases: Default::default(),
                cleanup: false,
                gauges: Default::default(),
                warnings: Vec::new(),
            }],
        }
    }

    #[test]
    fn nothing_from_a_probe_a_server_or_a_peer_becomes_markup() {
        let bad = "<script>alert('x')</script>\"><iframe>";
        let r = run(bad);
        let doc = StatusDoc {
            region: "<i>eu</i>".into(),
            version: "<v>".into(),
            dashboard_url: Some("javascript:alert(1)".into()),
            status_url: Some("https://ok.example/?a=\"><script>".into()),
            probes: vec![ProbeStatus {
                probe: r.probe.clone(),
                schedule: "<s>".into(),
                failing_since: Some(r.started_at),
                history: [HistoryEntry {
                    time: r.started_at,
                    success: false,
                    duration_ms: 12.0,
                    failed_step: Some(bad.into()),
                    reason: r.reason,
                    trigger: r.trigger,
                }]
                .into(),
                alerts: vec![AlertView {
                    severity: crate::alert::Severity::Critical,
                    dedup_key: bad.into(),
                    since: r.started_at,
                    summary: bad.into(),
                }],
                last: Some(std::sync::Arc::new(r)),
                hourly: [crate::rollup::HourBucket {
                    t: Utc::now().timestamp() / 3600 * 3600,
                    n: 3,
                    ok: 2,
                    ms: 40.0,
                    max: 30.0,
                }]
                .into(),
                ..ProbeStatus::default()
            }],
            delivery: vec![PagerHealth {
                pager: bad.into(),
                kind: "<k>".into(),
                last_error: Some(bad.into()),
                last_error_at: Some(Utc::now()),
                failing_since: Some(Utc::now()),
                ..PagerHealth::default()
            }],
            ..StatusDoc::default()
        };
        let peer = PeerView {
            url: "http://peer<script>:9464".into(),
            region: Some(bad.into()),
            result: Err(bad.into()),
            unreachable_since: Some(Utc::now()),
            last_seen: None,
        };
        let peer_doc = PeerView {
            url: "http://peer2:9464".into(),
            region: None,
            result: Ok(StatusDoc {
                region: bad.into(),
                ..doc.clone()
            }
            .bounded()),
            unreachable_since: None,
            last_seen: None,
        };
        let html = render(&doc, &[peer, peer_doc], Utc::now());
        for tag in [
            "<script", "<iframe", "<img", "<b>", "<i>", "<v>", "<s>", "<k>",
        ] {
            assert!(!html.contains(tag), "{tag} got through");
        }
        assert!(!html.contains("href=\"javascript:"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    }

    /// A peer that sends a document as big as it may: what is kept and rendered is cut to
    /// the page's bounds.
    #[test]
    fn a_huge_peer_document_is_cut_to_bounds() {
        let long = "x".repeat(1500);
        let probe = ProbeStatus {
            probe: long.clone(),
            history: (0..100)
                .map(|_| HistoryEntry {
                    time: Utc::now(),
                    success: true,
                    duration_ms: f64::MAX,
                    failed_step: Some(long.clone().into()),
                    reason: None,
                    trigger: Trigger::Scheduled,
                })
                .collect(),
            alerts: (0..25)
                .map(|_| AlertView {
                    severity: crate::alert::Severity::Warning,
                    dedup_key: long.clone(),
                    since: Utc::now(),
                    summary: long.clone(),
                })
                .collect(),
            ..ProbeStatus::default()
        };
        let doc = StatusDoc {
            region: long.clone(),
            probes: vec![probe; 510],
            delivery: vec![
                PagerHealth {
                    pager: long.clone(),
                    last_error: Some(long.clone()),
                    ..PagerHealth::default()
                };
                60
            ],
            ..StatusDoc::default()
        }
        .bounded();
        assert_eq!(doc.probes.len(), 500);
        assert!(doc.region.chars().count() <= 101);
        let p = &doc.probes[0];
        assert_eq!(p.history.len(), crate::status::HISTORY_LEN);
        assert_eq!(p.alerts.len(), 20);
        assert!(p.alerts[0].summary.chars().count() <= 1001);
        assert!(doc.delivery.len() <= 50);
        let html = render(
            &StatusDoc::default(),
            &[PeerView {
                url: "http://peer:9464".into(),
                region: None,
                result: Ok(doc),
                unreachable_since: None,
                last_seen: None,
            }],
            Utc::now(),
        );
        assert!(html.len() < 40 * 1024 * 1024, "{} bytes", html.len());
    }
}
