//! The page's HTML: the head, the banner, the probe × region grid, a section per region with
//! its pagers' delivery and its cards, the footer, and the stylesheet. Reads the model; the
//! chart and the cards are drawn by their own modules.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::card::card;
use super::chart::charts;
use super::format::{anchor, badge, clock, link, percent, region_anchor, span, time};
use super::model::{Column, View};
use crate::html::escape as esc;
use crate::report::human_duration;
use crate::status::{ProbeState, StatusDoc};

/// How often the page reloads itself (a meta refresh, so it works without JavaScript).
pub const REFRESH_SECONDS: u32 = 15;

/// The page for `view`, as of `now`.
pub(super) fn page(view: &View<'_>, now: DateTime<Utc>) -> String {
    let View {
        local,
        columns,
        probes,
    } = view;
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
    banner(&mut html, columns, now);
    grid(&mut html, columns, probes, now);
    charts(&mut html, columns, probes, now);
    for c in columns {
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
            "degraded" => ("degraded", "◐"),
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
        // An HA pair's member that did not take the last post, while another did.
        let mut error = error;
        if d.members.len() > 1 {
            for m in d.members.iter().filter(|m| m.failing_since.is_some()) {
                let _ = write!(
                    error,
                    "<div class=\"error\">member <strong>{}</strong> failing for {}{}</div>",
                    esc(&m.member),
                    esc(&span(now - m.failing_since.unwrap_or(now))),
                    m.last_error
                        .as_ref()
                        .map(|e| format!(": {}", esc(e)))
                        .unwrap_or_default()
                );
            }
        }
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
