//! The text exposition format, written by hand for the `probe_*` families (byte for byte what
//! the prometheus crate's encoder writes for the same series) and merged in name order with
//! the registry's own families, in chunks, at scrape time.

use std::fmt::Write as _;
use std::ops::Bound;

use prometheus::TextEncoder;

use super::table::{Hist, LastRun, ProbeCells, ProbeTable};
use super::{Metrics, age_seconds};

/// A `probe_*` family: its name, help, type and label names in the order they are written
/// (sorted, as the prometheus crate writes them).
pub(super) struct Family {
    pub(super) id: Fam,
    pub(super) name: &'static str,
    pub(super) help: &'static str,
    pub(super) kind: &'static str,
    pub(super) labels: &'static [&'static str],
}

/// Which `probe_*` family.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Fam {
    AlertFiring,
    Duration,
    Failures,
    GaugeValue,
    Interval,
    LastRun,
    LastSuccess,
    Runs,
    Lag,
    Skipped,
    SslExpiry,
    StepDuration,
    Success,
}

const PR: &[&str] = &["probe", "region"];

/// Sorted by name, as the exposition lists them.
pub(super) const FAMILIES: [Family; 13] = [
    Family {
        id: Fam::AlertFiring,
        name: "probe_alert_firing",
        help: "Whether an alert is open for the probe, by severity",
        kind: "gauge",
        labels: &["probe", "region", "severity"],
    },
    Family {
        id: Fam::Duration,
        name: "probe_duration_seconds",
        help: "Duration of the last run of the probe",
        kind: "gauge",
        labels: PR,
    },
    Family {
        id: Fam::Failures,
        name: "probe_failures_total",
        help: "Failed runs by the step that failed and its reason",
        kind: "counter",
        labels: &["probe", "reason", "region", "step"],
    },
    Family {
        id: Fam::GaugeValue,
        name: "probe_gauge_value",
        help: "What a redis or http_json step read at the last run (used_memory, memory_ratio, a queue depth, ...); absent when that run did not read it",
        kind: "gauge",
        labels: &["name", "probe", "region", "step"],
    },
    Family {
        id: Fam::Interval,
        name: "probe_interval_seconds",
        help: "The probe schedule's interval (shortest gap between two runs)",
        kind: "gauge",
        labels: PR,
    },
    Family {
        id: Fam::LastRun,
        name: "probe_last_run_timestamp_seconds",
        help: "When the last run finished (Unix time)",
        kind: "gauge",
        labels: PR,
    },
    Family {
        id: Fam::LastSuccess,
        name: "probe_last_success_timestamp_seconds",
        help: "When the last successful run finished (Unix time)",
        kind: "gauge",
        labels: PR,
    },
    Family {
        id: Fam::Runs,
        name: "probe_runs_total",
        help: "Probe runs by result (success, failure)",
        kind: "counter",
        labels: &["probe", "region", "result"],
    },
    Family {
        id: Fam::Lag,
        name: "probe_schedule_lag_seconds",
        help: "How late the last run started after its scheduled time",
        kind: "gauge",
        labels: PR,
    },
    Family {
        id: Fam::Skipped,
        name: "probe_skipped_total",
        help: "Scheduled runs skipped, by reason (overlap: the previous run was still going; backlog: its result was not yet recorded)",
        kind: "counter",
        labels: &["probe", "reason", "region"],
    },
    Family {
        id: Fam::SslExpiry,
        name: "probe_ssl_earliest_cert_expiry",
        help: "When the first of the certificates a step's server presented at the last run expires (Unix time); absent when that run made no TLS handshake in the step",
        kind: "gauge",
        labels: &["probe", "region", "step"],
    },
    Family {
        id: Fam::StepDuration,
        name: "probe_step_duration_seconds",
        help: "Duration of each step and phase of the join flow",
        kind: "histogram",
        labels: &["phase", "probe", "region", "step"],
    },
    Family {
        id: Fam::Success,
        name: "probe_success",
        help: "Whether the last run of the probe succeeded (1) or not (0)",
        kind: "gauge",
        labels: PR,
    },
];

/// One series of a family while a scrape is written: label values in the family's label
/// order (unused ones empty) and the value.
struct Row<'a> {
    labels: [&'a str; 4],
    value: Value<'a>,
}

enum Value<'a> {
    Float(f64),
    Int(i64),
    Count(u64),
    Hist(&'a Hist),
}

impl Metrics {
    /// The text exposition format as a sequence of chunks of about [`CHUNK`] bytes: the
    /// registry's families and the `probe_*` ones, merged in name order. Each chunk is written
    /// when asked for, under the table's lock for that chunk only, so a 6 MB scrape of 1,000
    /// probes neither holds the lock for the whole scrape nor keeps 6 MB of text in memory at
    /// once (a buffer that size stays in the allocator's arenas after it is freed). Every
    /// series, histograms included, is written whole within one chunk.
    pub fn exposition(&self) -> Exposition {
        let now = self.clock.now();
        self.clock_offset
            .set(self.clock.offset().num_milliseconds() as f64 / 1000.0);
        for (sink, oldest) in self.lock_oldest().iter() {
            self.outbox_oldest
                .with_label_values(&[sink, &self.region])
                .set(age_seconds(*oldest, now));
        }
        // A pager appears once the dispatcher has built it (its `type` known then).
        for p in self.delivery.snapshot() {
            if !p.kind.is_empty() {
                self.pager_failing
                    .with_label_values(&[&p.pager, &p.kind, &self.region])
                    .set(i64::from(p.failing_since.is_some()));
            }
            for m in &p.members {
                self.member_failing
                    .with_label_values(&[&p.pager, &m.member, &self.region])
                    .set(i64::from(m.failing_since.is_some()));
            }
        }
        let gathered = self.registry.gather();
        let mut units = Vec::with_capacity(gathered.len() + FAMILIES.len());
        let mut ours = FAMILIES.iter().peekable();
        for (i, mf) in gathered.iter().enumerate() {
            while let Some(f) = ours.next_if(|f| f.name < mf.name()) {
                units.push(Unit::Probe(f));
            }
            units.push(Unit::Registry(i));
        }
        units.extend(ours.map(Unit::Probe));
        Exposition {
            metrics: self.clone(),
            gathered,
            units,
            at: Cursor::default(),
        }
    }

    /// Writes groups of `family` from the cursor on until the chunk is full (false) or the
    /// family is done (true). A group is one probe's series (for the step histograms and
    /// `probe_gauge_value`, one probe's series of one phase or gauge name, which come first
    /// in the sort order).
    pub(super) fn write_groups(&self, family: &Family, at: &mut Cursor, out: &mut String) -> bool {
        // The run timestamps are on the prober's clock; they are exported on the system clock
        // as it reads at this scrape (the offset set by `exposition`), which Prometheus' `time()`
        // is compared with: a prober whose host clock was stepped forward after it started (a VM
        // resumed: the monotonic clock stood still) would otherwise look stuck to
        // `JoinCanaryStuck`, and one stepped back never.
        let offset = self.clock_offset.get();
        let table = self.table();
        let majors = at
            .majors
            .get_or_insert_with(|| majors_of(family.id, &table));
        let mut rows = Vec::new();
        let mut scratch = String::new();
        loop {
            let major = match family.id {
                Fam::StepDuration | Fam::GaugeValue => match majors.get(at.major) {
                    Some(m) => Some(m.as_str()),
                    None => return true,
                },
                _ if at.major > 0 => return true,
                _ => None,
            };
            let from = match &at.after {
                Some(p) => Bound::Excluded(p.as_str()),
                None => Bound::Unbounded,
            };
            for (probe, regions) in table.probes.range::<str, _>((from, Bound::Unbounded)) {
                rows.clear();
                rows_of(family.id, probe, regions, major, offset, &mut rows);
                if !rows.is_empty() {
                    if !at.header {
                        at.header = true;
                        write_header(family, out);
                    }
                    rows.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
                    self.write_rows(family, &rows, &mut scratch, out);
                }
                if out.len() >= CHUNK {
                    at.after = Some(probe.clone());
                    return false;
                }
            }
            at.after = None;
            at.major += 1;
        }
    }

    fn write_rows(
        &self,
        family: &Family,
        rows: &[Row<'_>],
        scratch: &mut String,
        out: &mut String,
    ) {
        for row in rows {
            scratch.clear();
            for (i, (name, value)) in family.labels.iter().zip(row.labels).enumerate() {
                scratch.push(if i == 0 { '{' } else { ',' });
                scratch.push_str(name);
                scratch.push_str("=\"");
                push_escaped(scratch, value, true);
                scratch.push('"');
            }
            match row.value {
                Value::Float(v) => sample(out, family.name, "", scratch, "}", |o| push_f64(o, v)),
                Value::Int(v) => sample(out, family.name, "", scratch, "}", |o| push_i64(o, v)),
                Value::Count(v) => sample(out, family.name, "", scratch, "}", |o| push_u64(o, v)),
                Value::Hist(h) => {
                    let mut cumulative = 0;
                    for (le, n) in self.bucket_labels.iter().zip(h.counts.iter()) {
                        cumulative += n;
                        out.push_str(family.name);
                        out.push_str("_bucket");
                        out.push_str(scratch);
                        out.push_str(",le=\"");
                        out.push_str(le);
                        out.push_str("\"} ");
                        push_u64(out, cumulative);
                        out.push('\n');
                    }
                    sample(out, family.name, "_bucket", scratch, ",le=\"+Inf\"}", |o| {
                        push_u64(o, h.count);
                    });
                    sample(out, family.name, "_sum", scratch, "}", |o| {
                        push_f64(o, h.sum)
                    });
                    sample(out, family.name, "_count", scratch, "}", |o| {
                        push_u64(o, h.count);
                    });
                }
            }
        }
    }
}

/// Chunks are written up to about this size: under the allocator's 128 KiB mmap threshold,
/// so the next chunk reuses the last one's memory.
pub const CHUNK: usize = 32 * 1024;

/// A scrape being written: an iterator of text chunks (see [`Metrics::exposition`]).
pub struct Exposition {
    metrics: Metrics,
    gathered: Vec<prometheus::proto::MetricFamily>,
    units: Vec<Unit>,
    at: Cursor,
}

/// One family of the merged list.
enum Unit {
    Registry(usize),
    Probe(&'static Family),
}

/// Where a scrape has got to.
#[derive(Default)]
pub(super) struct Cursor {
    /// Index into `units`.
    unit: usize,
    /// The phases (or gauge names) of the current family, sorted; computed when it starts.
    majors: Option<Vec<String>>,
    /// Index into `majors` (0 for families without).
    major: usize,
    /// The last probe written in the current family and major key.
    after: Option<String>,
    /// HELP and TYPE of the current family written.
    header: bool,
}

impl Iterator for Exposition {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let mut out = String::with_capacity(CHUNK + CHUNK / 4);
        let encoder = TextEncoder::new();
        while out.len() < CHUNK {
            match self.units.get(self.at.unit) {
                None => break,
                Some(Unit::Registry(i)) => {
                    if let Some(mf) = self.gathered.get(*i) {
                        // Only fails on an inconsistent family, which the registry never builds.
                        let _ = encoder.encode_utf8(std::slice::from_ref(mf), &mut out);
                    }
                    self.at = Cursor {
                        unit: self.at.unit + 1,
                        ..Cursor::default()
                    };
                }
                Some(Unit::Probe(f)) => {
                    if self.metrics.write_groups(f, &mut self.at, &mut out) {
                        self.at = Cursor {
                            unit: self.at.unit + 1,
                            ..Cursor::default()
                        };
                    }
                }
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

fn write_header(family: &Family, out: &mut String) {
    out.push_str("# HELP ");
    out.push_str(family.name);
    out.push(' ');
    push_escaped(out, family.help, false);
    out.push_str("\n# TYPE ");
    out.push_str(family.name);
    out.push(' ');
    out.push_str(family.kind);
    out.push('\n');
}

#[cfg(test)]
impl Metrics {
    /// Only the `probe_*` families, as the exposition writes them.
    pub(super) fn probe_families_text(&self) -> String {
        let mut out = String::new();
        for f in &FAMILIES {
            let mut at = Cursor::default();
            while !self.write_groups(f, &mut at, &mut out) {}
        }
        out
    }
}

/// The phases (step histograms) or gauge names (`probe_gauge_value`) present, sorted: the
/// first label of those families.
fn majors_of(family: Fam, table: &ProbeTable) -> Vec<String> {
    let mut keys = std::collections::BTreeSet::new();
    for c in table.probes.values().flatten().map(|(_, c)| c) {
        match family {
            Fam::StepDuration => {
                keys.extend(
                    c.steps
                        .iter()
                        .flat_map(|(_, ps)| ps.iter().map(|(p, _)| p.as_str())),
                );
            }
            Fam::GaugeValue => keys.extend(c.gauges.iter().map(|(n, _, _)| &**n)),
            _ => {}
        }
    }
    keys.into_iter().map(str::to_owned).collect()
}

/// The series of one probe (every region) in `family`; for the step histograms and
/// `probe_gauge_value` only those whose phase or gauge name is `major`. `offset`: the system
/// clock minus the prober's, added to the timestamps.
fn rows_of<'a>(
    family: Fam,
    probe: &'a str,
    regions: &'a [(String, ProbeCells)],
    major: Option<&str>,
    offset: f64,
    rows: &mut Vec<Row<'a>>,
) {
    for (region, c) in regions {
        let (p, r) = (probe, region.as_str());
        let mut push = |labels: [&'a str; 4], value: Value<'a>| rows.push(Row { labels, value });
        let last = |f: fn(&LastRun) -> f64| c.last.as_ref().map(|l| Value::Float(f(l)));
        let single = match family {
            Fam::Duration => last(|l| l.duration),
            Fam::Interval => c.interval.map(Value::Float),
            Fam::LastRun | Fam::Lag if c.last.as_ref().is_some_and(|l| l.restored) => None,
            Fam::LastRun => c.last.as_ref().map(|l| Value::Float(l.finished + offset)),
            // 0: no success since the state began.
            Fam::LastSuccess => c.last.as_ref().map(|l| {
                Value::Float(match l.last_success {
                    0.0 => 0.0,
                    t => t + offset,
                })
            }),
            Fam::Lag => last(|l| l.lag),
            Fam::Success => c.last.as_ref().map(|l| Value::Int(l.success)),
            _ => None,
        };
        if let Some(v) = single {
            push([p, r, "", ""], v);
        }
        match family {
            Fam::AlertFiring => {
                for (severity, v) in &c.firing {
                    push([p, r, severity, ""], Value::Int(*v));
                }
            }
            Fam::Runs => {
                if let Some([failure, success]) = c.runs {
                    push([p, r, "failure", ""], Value::Count(failure));
                    push([p, r, "success", ""], Value::Count(success));
                }
            }
            Fam::Skipped => {
                for (reason, n) in &c.skipped {
                    push([p, reason, r, ""], Value::Count(*n));
                }
            }
            Fam::Failures => {
                for (reason, step, n) in &c.failures {
                    push([p, reason, r, step], Value::Count(*n));
                }
            }
            Fam::SslExpiry => {
                for (step, t) in &c.cert_expiry {
                    push([p, r, step, ""], Value::Float(*t));
                }
            }
            Fam::GaugeValue => {
                for (gauge, step, v) in &c.gauges {
                    if Some(&**gauge) == major {
                        push([gauge, p, r, step], Value::Float(*v));
                    }
                }
            }
            Fam::StepDuration => {
                for (step, phases) in &c.steps {
                    for (phase, h) in phases {
                        if Some(phase.as_str()) == major {
                            push([phase.as_str(), p, r, step], Value::Hist(h));
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// `name{labels}` + `close` + ` ` + value + newline (`labels` is the open label list).
fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &str,
    close: &str,
    value: impl FnOnce(&mut String),
) {
    out.push_str(name);
    out.push_str(suffix);
    out.push_str(labels);
    out.push_str(close);
    out.push(' ');
    value(out);
    out.push('\n');
}

/// As the text format (and the crate's encoder) escapes: `\` and newline always, `"` in
/// label values.
fn push_escaped(out: &mut String, v: &str, quote: bool) {
    let special = |b: u8| b == b'\\' || b == b'\n' || (quote && b == b'"');
    if !v.bytes().any(special) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Values are written as the crate writes them: an `f64`'s `Display`.
fn push_f64(out: &mut String, v: f64) {
    let _ = write!(out, "{v}");
}

/// Integers below 2^53 print the same as their `f64` (what the crate converts them to),
/// and faster.
fn push_u64(out: &mut String, v: u64) {
    if v < 1 << 53 {
        let _ = write!(out, "{v}");
    } else {
        push_f64(out, v as f64);
    }
}

fn push_i64(out: &mut String, v: i64) {
    if v.unsigned_abs() < 1 << 53 {
        let _ = write!(out, "{v}");
    } else {
        push_f64(out, v as f64);
    }
}
