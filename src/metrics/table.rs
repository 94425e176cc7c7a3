//! The per-probe table: every `probe_*` series of every probe, kept as plain numbers (not the
//! prometheus crate's vectors), and how a run, a skip, a restored run or an alert changes them.
//! [`super::text`] writes it out at scrape time.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::DEFAULT_PHASES;
use crate::report::{Phase, ProbeRun};

/// probe -> region -> its series (one region per probe in practice, so a short list).
#[derive(Default)]
pub(super) struct ProbeTable {
    pub(super) probes: BTreeMap<String, Vec<(String, ProbeCells)>>,
}

impl ProbeTable {
    pub(super) fn with_cells<R>(
        &mut self,
        probe: &str,
        region: &str,
        f: impl FnOnce(&mut ProbeCells) -> R,
    ) -> R {
        if let Some(regions) = self.probes.get_mut(probe) {
            return f(region_cells(regions, region));
        }
        // One region per probe in practice: room for one, not the default four.
        f(region_cells(
            self.probes
                .entry(probe.to_owned())
                .or_insert_with(|| Vec::with_capacity(1)),
            region,
        ))
    }
}

fn region_cells<'a>(
    regions: &'a mut Vec<(String, ProbeCells)>,
    region: &str,
) -> &'a mut ProbeCells {
    let i = match regions.iter().position(|(r, _)| r == region) {
        Some(i) => i,
        None => {
            regions.push((region.to_owned(), ProbeCells::default()));
            regions.len() - 1
        }
    };
    &mut regions[i].1
}

/// The series of one probe in one region. A series exists from the moment the prometheus
/// crate would have created it (`register_probe` or the first run), at 0 until set.
#[derive(Default)]
pub(super) struct ProbeCells {
    /// Set by every run; absent before the first one.
    pub(super) last: Option<LastRun>,
    /// `probe_interval_seconds`.
    pub(super) interval: Option<f64>,
    /// `probe_runs_total` by `result`: `[failure, success]`.
    pub(super) runs: Option<[u64; 2]>,
    /// `probe_skipped_total` by reason.
    pub(super) skipped: Vec<(&'static str, u64)>,
    /// `probe_alert_firing` by severity.
    pub(super) firing: Vec<(&'static str, i64)>,
    /// `probe_failures_total` by (reason, step).
    pub(super) failures: Vec<(&'static str, Box<str>, u64)>,
    /// `probe_step_duration_seconds` per step, then phase.
    pub(super) steps: Vec<(Box<str>, StepHists)>,
    /// `probe_gauge_value` by (name, step).
    pub(super) gauges: Vec<(Box<str>, Box<str>, f64)>,
    /// `probe_ssl_earliest_cert_expiry` by step (Unix time).
    pub(super) cert_expiry: Vec<(Box<str>, f64)>,
}

/// One step's histograms, by phase.
pub(super) type StepHists = Vec<(Phase, Hist)>;

/// The gauges every run sets.
#[derive(Default)]
pub(super) struct LastRun {
    pub(super) success: i64,
    pub(super) duration: f64,
    pub(super) finished: f64,
    pub(super) last_success: f64,
    pub(super) lag: f64,
    /// Read back at start-up ([`crate::metrics::Metrics::restore_last`]), no run of this process yet:
    /// `probe_last_run_timestamp_seconds` and `probe_schedule_lag_seconds` wait for one, so a
    /// rule counting time since the last run counts from the process start until then.
    pub(super) restored: bool,
}

/// One histogram: per-bucket (not cumulative) counts, as the prometheus crate keeps them.
pub(super) struct Hist {
    pub(super) counts: Box<[u64]>,
    pub(super) sum: f64,
    pub(super) count: u64,
}

impl Hist {
    fn new(buckets: usize) -> Hist {
        Hist {
            counts: vec![0; buckets].into_boxed_slice(),
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, buckets: &[f64], v: f64) {
        if let Some(i) = buckets.iter().position(|b| v <= *b)
            && let Some(c) = self.counts.get_mut(i)
        {
            *c += 1;
        }
        self.count += 1;
        self.sum += v;
    }
}

impl ProbeCells {
    /// The series a probe has from start-up, at 0 (see [`super::Metrics::register_probe`]).
    pub(super) fn register(&mut self, interval: Option<std::time::Duration>) {
        if let Some(i) = interval {
            self.interval = Some(i.as_secs_f64());
        }
        self.runs.get_or_insert([0, 0]);
        for reason in ["overlap", "backlog"] {
            counter(&mut self.skipped, reason);
        }
        for severity in ["critical", "warning"] {
            if !self.firing.iter().any(|(s, _)| *s == severity) {
                self.firing.push((severity, 0));
            }
        }
    }

    /// One run (see [`super::Metrics::record`]): `buckets` are the step histograms' bounds,
    /// `all_phases` whether every phase is histogrammed.
    pub(super) fn record(
        &mut self,
        run: &ProbeRun,
        lag: Option<std::time::Duration>,
        all_phases: bool,
        buckets: &[f64],
    ) {
        let finished = run.finished_at().timestamp_millis() as f64 / 1000.0;
        let runs = self.runs.get_or_insert([0, 0]);
        runs[usize::from(run.success)] += 1;
        let last = self.last.get_or_insert_with(LastRun::default);
        last.restored = false;
        last.success = i64::from(run.success);
        last.duration = run.duration_ms.as_secs_f64();
        last.finished = finished;
        if run.success {
            last.last_success = finished;
        }
        if let Some(lag) = lag {
            last.lag = lag.as_secs_f64();
        }
        // A failed cleanup step never fails the run, but it is counted: a platform leaking
        // sessions because `destroy` keeps failing is worth a graph.
        let failed_cleanups = run
            .failed_cleanups()
            .filter_map(|s| Some((&s.name, s.reason?)));
        for (step, reason) in run
            .failed_step
            .as_ref()
            .zip(run.reason)
            .into_iter()
            .chain(failed_cleanups)
        {
            let reason = reason.as_str();
            match self
                .failures
                .iter_mut()
                .find(|(r, s, _)| *r == reason && **s == **step)
            {
                Some((_, _, n)) => *n += 1,
                None => self.failures.push((reason, step.as_str().into(), 1)),
            }
        }
        // A gauge is what this run read: one it did not read (Redis's `maxmemory` back to 0
        // leaves no `memory_ratio`, a failed run reads nothing) is removed, not kept at a
        // stale value that a rule would fire on for ever.
        self.gauges.retain(|(name, step, _)| {
            run.steps
                .iter()
                .any(|s| *s.name == **step && s.gauges.contains_key(&**name))
        });
        // The same for a certificate's expiry: a step that made no handshake this run (an
        // earlier step failed, the URL now plain HTTP) keeps no stale date.
        self.cert_expiry.clear();
        for step in &run.steps {
            if let Some(t) = step.cert_expiry
                && !self.cert_expiry.iter().any(|(s, _)| **s == *step.name)
            {
                self.cert_expiry
                    .push((step.name.as_str().into(), t.timestamp() as f64));
            }
            for (phase, d) in &step.phases {
                if !all_phases && !DEFAULT_PHASES.contains(&phase.as_str()) {
                    continue;
                }
                let at = match self.steps.iter().position(|(s, _)| **s == *step.name) {
                    Some(i) => i,
                    None => {
                        self.steps.push((step.name.as_str().into(), Vec::new()));
                        self.steps.len() - 1
                    }
                };
                let phases = &mut self.steps[at].1;
                let h = match phases.iter().position(|(p, _)| p == phase) {
                    Some(i) => i,
                    None => {
                        phases.push((*phase, Hist::new(buckets.len())));
                        phases.len() - 1
                    }
                };
                phases[h].1.observe(buckets, d.as_secs_f64());
            }
            for (name, value) in &step.gauges {
                match self
                    .gauges
                    .iter_mut()
                    .find(|(n, s, _)| **n == **name && **s == *step.name)
                {
                    Some((_, _, v)) => *v = *value,
                    None => {
                        self.gauges
                            .push((name.as_str().into(), step.name.as_str().into(), *value))
                    }
                }
            }
        }
    }

    /// The last run before a restart (see [`super::Metrics::restore_last`]).
    pub(super) fn restore(
        &mut self,
        success: bool,
        duration: std::time::Duration,
        last_success: Option<DateTime<Utc>>,
    ) {
        self.last.get_or_insert_with(|| LastRun {
            success: i64::from(success),
            duration: duration.as_secs_f64(),
            last_success: last_success.map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0),
            restored: true,
            ..LastRun::default()
        });
    }

    /// `probe_alert_firing` for each (severity, open).
    pub(super) fn set_firing(&mut self, firing: &[(&'static str, bool)]) {
        for (severity, open) in firing {
            let v = i64::from(*open);
            match self.firing.iter_mut().find(|(s, _)| s == severity) {
                Some((_, x)) => *x = v,
                None => self.firing.push((severity, v)),
            }
        }
    }
}

/// The counter of `key` in a small list kept sorted (as the scrape writes it), created at 0
/// when absent.
pub(super) fn counter<'a>(
    list: &'a mut Vec<(&'static str, u64)>,
    key: &'static str,
) -> &'a mut u64 {
    let i = match list.binary_search_by(|(k, _)| (*k).cmp(key)) {
        Ok(i) => i,
        Err(i) => {
            list.insert(i, (key, 0));
            i
        }
    };
    &mut list[i].1
}
