//! One probe in one region, as a card: what fails and since when, the last success, the next
//! run, open alerts, availability, the strip of the last 60 runs, and each step of the last run
//! beside the last good one.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::format::{anchor, badge, coverage, percent, span, time};
use crate::html::escape as esc;
use crate::report::{ProbeRun, human_duration};
use crate::status::{ProbeStatus, StatusDoc};

pub(super) fn card(html: &mut String, doc: &StatusDoc, p: &ProbeStatus, now: DateTime<Utc>) {
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
    // A resident probe's failed reopen ran the session's setup steps (`login`, `connect-a`),
    // its last good run was an exchange (`announce`, `echo`): set side by side they read as
    // "login FAILED, last good —" above "announce not reached, 0.4 ms", as if the exchange had
    // been skipped. Runs with no step in common are not compared.
    let good: Option<&ProbeRun> = p.last_good.as_deref().filter(|g| {
        g.steps
            .iter()
            .any(|gs| last.steps.iter().any(|s| s.name == gs.name))
    });
    // Whenever the probe is healthy the last run is the last good one: set beside itself it
    // read "19 ms | 19 ms | +0.0 ms" on every row. Then it is shown alone.
    let alone = good.is_some_and(|g| std::ptr::eq(g, &**last) || g == &**last);
    let caption = if alone {
        "Step timings: last run (the last good run)"
    } else if good.is_none() && p.last_good.is_some() {
        "Step timings: last run (no step in common with the last good run, so no comparison)"
    } else {
        "Step timings: last run against the last good run"
    };
    let compare_head = if alone {
        ""
    } else {
        "<th scope=\"col\">last good run</th><th scope=\"col\">change</th>"
    };
    let _ = write!(
        html,
        "<table class=\"steps\"><caption>{caption}</caption>\
         <thead><tr><th scope=\"col\">step</th><th scope=\"col\">last run</th>{compare_head}\
         <th scope=\"col\">phases (last run)</th></tr></thead><tbody>",
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
                // A change that rounds to nothing has no sign (it read `−0.0 ms`).
                if text == human_duration(std::time::Duration::ZERO) {
                    format!("±{}", esc(&text))
                } else if delta >= 0.0 {
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
        let compared = if alone {
            String::new()
        } else {
            format!("<td>{good_text}</td><td>{change}</td>")
        };
        let _ = write!(
            html,
            "<tr class=\"{class}\"><th scope=\"row\">{}</th><td>{result}</td>{compared}<td class=\"phases\">{}</td></tr>",
            esc(name),
            esc(&phases)
        );
    }
    html.push_str("</tbody></table>");
}
