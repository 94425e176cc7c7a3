//! What a page says, provider-neutral: the per-step table (step, result, duration, phases against
//! the last good run) and the error, read from a notification's details. Providers lay these
//! out (email as text and HTML tables, Slack and Opsgenie as text); pure, no I/O.

use std::time::Duration;

use serde_json::Value;

use super::{EventKind, Notification};
use crate::report::human_duration;

/// The facts on-call reads first, as (label, value): probe, region, severity, the failing step
/// and reason, since when (and for how long), when this was sent, the incident key.
pub fn facts(n: &Notification) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("probe", n.probe.clone()),
        ("region", n.region.clone()),
        ("severity", n.severity.as_str().to_string()),
    ];
    if let Some(s) = &n.failed_step {
        rows.push(("failed step", s.clone()));
    }
    if let Some(r) = n.reason {
        rows.push(("reason", r.as_str().to_string()));
    }
    let since = match n.kind {
        EventKind::Trigger => "failing since",
        EventKind::Resolve => "started",
    };
    let secs = (n.at - n.started_at).num_seconds().max(0).unsigned_abs();
    rows.push((
        since,
        format!(
            "{} (for {})",
            super::timestamp(n.started_at),
            humantime::format_duration(Duration::from_secs(secs))
        ),
    ));
    rows.push(("sent", super::timestamp(n.at)));
    rows.push(("incident", n.dedup_key.clone()));
    rows
}

/// One row of the step table.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    pub name: String,
    /// `ok`, the failure reason (`no_match`), or `not run` for a step the failing run never
    /// reached (known from the last good run).
    pub result: String,
    pub ok: bool,
    pub ms: Option<f64>,
    pub last_good_ms: Option<f64>,
    /// `(phase, ms, last good ms)`, `total` left out (it is the duration).
    pub phases: Vec<(String, f64, Option<f64>)>,
}

/// The failing (or slow) run's steps next to the last good run's. Empty for a resolve or a
/// test page, whose details carry no run.
pub fn step_rows(n: &Notification) -> Vec<StepRow> {
    let d = &n.details;
    let steps = d
        .get("steps")
        .or_else(|| d.get("run"))
        .and_then(Value::as_array);
    let Some(steps) = steps else {
        return Vec::new();
    };
    let good = d.get("last_success");
    let good_ms = |name: &str| -> Option<f64> {
        good?
            .get("steps")?
            .as_array()?
            .iter()
            .find(|s| s.get(0).and_then(Value::as_str) == Some(name))?
            .get(1)?
            .as_f64()
    };
    let good_phase = |name: &str, phase: &str| -> Option<f64> {
        good?
            .get("phases")?
            .as_array()?
            .iter()
            .find(|s| s.get(0).and_then(Value::as_str) == Some(name))?
            .get(1)?
            .get(phase)?
            .as_f64()
    };
    let mut rows: Vec<StepRow> = steps
        .iter()
        .map(|s| {
            let name = s
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            let ok = s.get("success").and_then(Value::as_bool).unwrap_or(false);
            let result = if ok {
                "ok".to_string()
            } else {
                s.get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("failed")
                    .to_string()
            };
            let phases = s
                .get("phases")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter(|(p, _)| p.as_str() != "total")
                        .filter_map(|(p, v)| Some((p.clone(), v.as_f64()?, good_phase(&name, p))))
                        .collect()
                })
                .unwrap_or_default();
            StepRow {
                last_good_ms: good_ms(&name),
                ms: s.get("duration_ms").and_then(Value::as_f64),
                name,
                result,
                ok,
                phases,
            }
        })
        .collect();
    // Steps after the failing one never ran; the last good run still knows them.
    if let Some(good_steps) = good.and_then(|g| g.get("steps")).and_then(Value::as_array) {
        for s in good_steps {
            let Some(name) = s.get(0).and_then(Value::as_str) else {
                continue;
            };
            if !rows.iter().any(|r| r.name == name) {
                rows.push(StepRow {
                    name: name.to_string(),
                    result: "not run".into(),
                    ok: false,
                    ms: None,
                    last_good_ms: s.get(1).and_then(Value::as_f64),
                    phases: Vec::new(),
                });
            }
        }
    }
    rows
}

/// The run's error text, if any.
pub fn error(n: &Notification) -> Option<String> {
    n.details
        .get("error")
        .and_then(Value::as_str)
        .filter(|e| !e.trim().is_empty())
        .map(str::to_string)
}

/// `5.0 s`, `42 ms`, or `-`.
pub fn ms_text(ms: Option<f64>) -> String {
    // The details may come back from the state log: a number past a duration's range is
    // clamped, never handed to `Duration::from_secs_f64` (which panics on it).
    ms.filter(|m| m.is_finite() && *m >= 0.0).map_or_else(
        || "-".to_string(),
        |m| human_duration(crate::report::clamped_ms(m)),
    )
}

/// `connect 3.0 ms (2.0 ms), tls 10 ms (9.0 ms)`: each phase, the last good run's in brackets.
pub fn phases_text(row: &StepRow) -> String {
    row.phases
        .iter()
        .map(|(p, ms, good)| match good {
            Some(g) => format!("{p} {} ({})", ms_text(Some(*ms)), ms_text(Some(*g))),
            None => format!("{p} {}", ms_text(Some(*ms))),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub const TABLE_HEADER: [&str; 5] = ["STEP", "RESULT", "TOOK", "LAST GOOD", "PHASES (LAST GOOD)"];

/// The table as aligned plain text (for email's text part, Slack's code block, Opsgenie).
pub fn table_text(rows: &[StepRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.result.clone(),
                ms_text(r.ms),
                ms_text(r.last_good_ms),
                phases_text(r),
            ]
        })
        .collect();
    let mut width = TABLE_HEADER.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            // A hostile 2,000-character step name must not pad every other row to its width.
            *w = (*w).max(c.chars().count().min(40));
        }
    }
    let mut out = String::new();
    let line = |cols: [&str; 5], out: &mut String| {
        let mut l = String::new();
        for (i, c) in cols.iter().enumerate() {
            if i == 4 {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(TABLE_HEADER, &mut out);
    for row in &cells {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]], &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::sample;
    use serde_json::json;

    fn failing() -> Notification {
        let mut n = sample(EventKind::Trigger);
        n.details = json!({
            "error": "no frame matched",
            "steps": [
                {"name": "login", "success": true, "duration_ms": 42.0, "phases": {"connect": 3.0, "total": 42.0}},
                {"name": "signalling", "success": false, "reason": "no_match", "duration_ms": 5000.0, "phases": {"round_trip": 5000.0}},
            ],
            "last_success": {
                "steps": [["login", 40.0], ["signalling", 20.0], ["leave", 12.0]],
                "phases": [["login", {"connect": 2.0, "total": 40.0}], ["signalling", {"round_trip": 18.0}]],
            },
        });
        n
    }

    #[test]
    fn rows_compare_with_the_last_good_run() {
        let rows = step_rows(&failing());
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].phases, vec![("connect".into(), 3.0, Some(2.0))]);
        assert_eq!(rows[1].result, "no_match");
        assert_eq!(rows[1].last_good_ms, Some(20.0));
        assert_eq!(rows[2].result, "not run");
        assert_eq!(
            table_text(&rows),
            "STEP        RESULT    TOOK   LAST GOOD  PHASES (LAST GOOD)\n\
             login       ok        42 ms  40 ms      connect 3.0 ms (2.0 ms)\n\
             signalling  no_match  5.0 s  20 ms      round_trip 5.0 s (18 ms)\n\
             leave       not run   -      12 ms\n"
        );
        assert_eq!(error(&failing()).as_deref(), Some("no frame matched"));
    }

    #[test]
    fn no_run_no_table() {
        let n = sample(EventKind::Resolve);
        let mut n2 = n.clone();
        n2.details = json!({"lasted_seconds": 3});
        assert!(step_rows(&n2).is_empty());
        assert_eq!(table_text(&[]), "");
    }
}
