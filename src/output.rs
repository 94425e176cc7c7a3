//! How `once` shows runs: a table for people, JSON for tools.

use std::fmt::Write as _;

use crate::report::{ProbeRun, human_duration};

/// `connect 0.3 ms, upgrade 1.2 ms`: the measured phases other than the total, in flow order.
fn phases(step: &crate::report::StepReport) -> String {
    step.phases
        .iter()
        .filter(|(p, _)| **p != crate::report::Phase::Total)
        .map(|(p, d)| format!("{} {}", p.as_str(), human_duration(*d)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes `text` to stdout in one write and flushes, ignoring a closed stdout: no command may
/// die because whoever read its output went away (`joincanary check | head -1`), which is what
/// `println!` does on a broken pipe.
pub fn print_stdout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// [`print_stdout`] for stderr: error messages must not panic when stderr is gone either.
pub fn print_stderr(text: &str) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// `{"probes":[ProbeRun...]}`, the shape `once --format json` promises.
pub fn json(runs: &[ProbeRun]) -> String {
    serde_json::json!({ "probes": runs }).to_string()
}

/// A row per step: probe, step, result, time, reason and detail.
pub fn table(runs: &[ProbeRun]) -> String {
    let mut rows: Vec<[String; 7]> = vec![[
        "PROBE".into(),
        "STEP".into(),
        "RESULT".into(),
        "TIME".into(),
        "REASON".into(),
        "PHASES".into(),
        "DETAIL".into(),
    ]];
    for run in runs {
        for (i, step) in run.steps.iter().enumerate() {
            rows.push([
                if i == 0 {
                    run.probe.clone()
                } else {
                    String::new()
                },
                step.name.clone(),
                if step.success {
                    "ok".into()
                } else {
                    "FAIL".into()
                },
                human_duration(step.duration_ms),
                step.reason.map(|r| r.to_string()).unwrap_or_default(),
                phases(step),
                step.error.clone().unwrap_or_default(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c < 6 {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for run in runs {
        match (&run.failed_step, run.reason) {
            (Some(step), Some(reason)) => {
                let _ = writeln!(
                    out,
                    "{} in {}: FAILED at step \"{step}\" ({reason}) after {}",
                    run.probe,
                    run.region,
                    human_duration(run.duration_ms)
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "{} in {}: ok in {}",
                    run.probe,
                    run.region,
                    human_duration(run.duration_ms)
                );
            }
        }
    }
    out
}
