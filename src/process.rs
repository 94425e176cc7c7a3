//! `process_*` metrics as Prometheus' own client libraries export them. The prometheus crate's
//! process collector divides CPU ticks by the clock rate in integers, so
//! `process_cpu_seconds_total` moves in whole seconds and `rate()` over it is mostly zero for a
//! prober that uses a few percent of a core; this wraps it and replaces that series (and the
//! start time, truncated the same way) with fractional values read from `/proc/self/stat`.
//! It also raises the open-files limit at start-up ([`raise_fd_limit`]) and sizes the
//! listener's connection cap within it ([`connection_cap`]).

use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, Opts};

const CPU: &str = "process_cpu_seconds_total";
const START: &str = "process_start_time_seconds";

/// The crate's process collector with fractional CPU seconds and start time.
pub struct ProcessMetrics {
    inner: prometheus::process_collector::ProcessCollector,
    cpu: Counter,
    start: Gauge,
    /// Serialises the read-then-add of the CPU counter between concurrent scrapes.
    cpu_lock: Mutex<()>,
}

impl ProcessMetrics {
    /// A collector for the calling process.
    ///
    /// # Errors
    /// Only an invalid metric name (fixed at compile time).
    pub fn for_self() -> Result<ProcessMetrics, prometheus::Error> {
        let cpu = Counter::with_opts(Opts::new(
            CPU,
            "Total user and system CPU time spent in seconds.",
        ))?;
        let start = Gauge::with_opts(Opts::new(
            START,
            "Start time of the process since unix epoch in seconds.",
        ))?;
        if let (Ok(stat), Ok(boot)) = (
            procfs::process::Process::myself().and_then(|p| p.stat()),
            procfs::boot_time_secs(),
        ) {
            start.set(seconds(stat.starttime) + boot as f64);
        }
        Ok(ProcessMetrics {
            inner: prometheus::process_collector::ProcessCollector::for_self(),
            cpu,
            start,
            cpu_lock: Mutex::new(()),
        })
    }

    /// CPU seconds (user + system) from `/proc/self/stat`, to the clock tick.
    pub fn cpu_seconds() -> Option<f64> {
        let stat = procfs::process::Process::myself()
            .and_then(|p| p.stat())
            .ok()?;
        Some(seconds(stat.utime + stat.stime))
    }
}

/// Clock ticks to seconds, keeping the fraction (127 ticks at 100 Hz are 1.27 s, not 1).
fn seconds(ticks: u64) -> f64 {
    ticks_to_seconds(ticks, procfs::ticks_per_second())
}

fn ticks_to_seconds(ticks: u64, per_second: u64) -> f64 {
    ticks as f64 / per_second.max(1) as f64
}

fn replaced(name: &str) -> bool {
    name == CPU || name == START
}

impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs: Vec<&Desc> = self
            .inner
            .desc()
            .into_iter()
            .filter(|d| !replaced(&d.fq_name))
            .collect();
        descs.extend(self.cpu.desc());
        descs.extend(self.start.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families: Vec<MetricFamily> = self
            .inner
            .collect()
            .into_iter()
            .filter(|f| !replaced(f.name()))
            .collect();
        if let Some(total) = Self::cpu_seconds() {
            let _guard = self.cpu_lock.lock().unwrap_or_else(|e| e.into_inner());
            let delta = total - self.cpu.get();
            if delta > 0.0 {
                self.cpu.inc_by(delta);
            }
        }
        families.extend(self.cpu.collect());
        families.extend(self.start.collect());
        families
    }
}

/// The open-files limit (`RLIMIT_NOFILE`) after [`raise_fd_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimits {
    /// The soft limit the process started with.
    pub before: u64,
    /// The soft limit now: what the process may open.
    pub soft: u64,
    pub hard: u64,
}

/// The most the soft limit is raised to when the hard limit is unlimited (Linux refuses more
/// than `fs.nr_open`, 1,048,576 by default).
const FD_CEILING: u64 = 1 << 20;

/// Raises the soft open-files limit to the hard one, as Go's runtime does for every program:
/// the usual soft default of 1024 dates from `select(2)`, which nothing here uses, and every probe
/// run, pager and state write needs descriptors that a flood of clients must not take.
///
/// # Errors
/// The limit could not be read or set (the process keeps the one it had).
pub fn raise_fd_limit() -> std::io::Result<FdLimits> {
    let (before, hard) = rlimit::Resource::NOFILE.get()?;
    let target = hard.min(FD_CEILING.max(before));
    if before >= target {
        return Ok(FdLimits {
            before,
            soft: before,
            hard,
        });
    }
    let soft = rlimit::increase_nofile_limit(target)?;
    Ok(FdLimits { before, soft, hard })
}

/// The listener's connection cap: `requested`, but at most a quarter of the open-files limit
/// (and at least 1), so three quarters stay for probe runs, pagers and the state log however
/// many clients connect.
pub fn connection_cap(requested: usize, soft_limit: u64) -> usize {
    let quarter = usize::try_from(soft_limit / 4).unwrap_or(usize::MAX);
    requested.min(quarter).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_three_quarters_of_the_fds() {
        for (requested, soft, want) in [
            (256, 1024, 256),
            (256, 256, 64),
            (256, 1_048_576, 256),
            (10_000, 1_048_576, 10_000),
            (10_000, 2048, 512),
            (0, 1024, 1),
            (256, 3, 1),
        ] {
            assert_eq!(
                connection_cap(requested, soft),
                want,
                "{requested} within {soft}"
            );
        }
    }

    #[test]
    fn the_soft_fd_limit_ends_at_the_hard_one() {
        let limits = raise_fd_limit().unwrap();
        assert!(limits.soft >= limits.before);
        assert!(limits.soft <= limits.hard);
        assert_eq!(
            rlimit::Resource::NOFILE.get().unwrap(),
            (limits.soft, limits.hard)
        );
    }

    #[test]
    fn cpu_seconds_have_fractions_and_every_process_family_is_there() {
        let m = ProcessMetrics::for_self().unwrap();
        // Burn a little CPU so the counter is above zero; the value is whatever the kernel says.
        let mut x = 0u64;
        for i in 0..3_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let families = m.collect();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        for want in [
            CPU,
            START,
            "process_open_fds",
            "process_max_fds",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_threads",
        ] {
            assert_eq!(
                names.iter().filter(|n| **n == want).count(),
                1,
                "{want} once in {names:?}"
            );
        }
        assert_eq!(m.desc().len(), families.len());
        assert!(m.cpu.get() > 0.0);
        let start = m.start.get();
        assert!(start > 1.7e9, "start time {start}");
    }

    #[test]
    fn ticks_keep_their_fraction() {
        assert_eq!(ticks_to_seconds(127, 100), 1.27);
        assert_eq!(ticks_to_seconds(5, 100), 0.05);
        assert_eq!(ticks_to_seconds(3, 0), 3.0);
    }
}
