//! The status history file (`state_dir/status-history.json`): what a restart reads back so it
//! does not wipe what on-call sees, and the task that saves it after changes (debounced, on the
//! blocking pool, never on the probe path). Read as it is parsed, every list cut to its cap;
//! error texts saved cut short, so the file stays small whatever a server answered.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::peer::{first, first_entries, last};
use super::{HISTORY_LEN, HistoryEntry, ProbeStatus, Status, shared_run};
use crate::report::{ProbeRun, cut};

/// Error texts kept in the history file are cut to this many characters, so the file stays
/// small (probes × (60 entries + two runs)) whatever a server answered.
const MAX_SAVED_ERROR: usize = 1024;
/// How long the writer waits after a change before saving: every run in that time is one
/// write. The file holds every probe (about 10 KB each), so at 1,000 probes a save is ~10 MB
/// of JSON: once a second that was a steady share of a core; a crash loses at most this much
/// history, and a clean stop always saves.
const SAVE_DEBOUNCE: Duration = Duration::from_secs(10);

/// What the history file holds per probe.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    version: u32,
    /// Cut while parsed, as every list below: a history file of a million probes, or of an
    /// hourly list years long, is never held whole.
    #[serde(deserialize_with = "first_entries::<_, _, MAX_SAVED_PROBES>")]
    probes: BTreeMap<String, SavedProbe>,
}

/// Probes read back from the history file: far above any real configuration.
const MAX_SAVED_PROBES: usize = 10_000;

#[derive(Debug, Serialize, Deserialize)]
struct SavedProbe {
    runs: u64,
    #[serde(with = "shared_run")]
    last: Option<Arc<ProbeRun>>,
    last_success: Option<DateTime<Utc>>,
    failing_since: Option<DateTime<Utc>>,
    #[serde(with = "shared_run")]
    last_good: Option<Arc<ProbeRun>>,
    #[serde(deserialize_with = "first::<_, _, HISTORY_LEN>")]
    history: VecDeque<HistoryEntry>,
    /// Absent in files from before the roll-ups. Oldest first: the newest are kept.
    #[serde(default, deserialize_with = "last::<_, _, { crate::rollup::HOURS }>")]
    hourly: VecDeque<crate::rollup::HourBucket>,
}

impl Status {
    /// Loads the history saved by a previous process. A missing file is a first start; an
    /// unreadable one is logged and ignored (the history is for people, not for paging), and
    /// `Err` says why (the service counts it). Parsed as it is read, every list cut meanwhile.
    ///
    /// # Errors
    /// The file is not a regular file, is larger than `MAX_STATE_BYTES`, or does not parse.
    pub fn restore(&self, path: &Path) -> Result<(), String> {
        let reader = match crate::diag::file::open_state(path) {
            Ok(r) => r,
            Err(crate::diag::file::FileError::Io(e))
                if e.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the status history; starting empty");
                return Err(e.to_string());
            }
        };
        let saved: Saved = match serde_json::from_reader(reader) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "status history unreadable; starting empty");
                return Err(e.to_string());
            }
        };
        let mut map = self.probes.write().unwrap_or_else(|e| e.into_inner());
        for (name, mut p) in saved.probes {
            crate::rollup::sanitize(&mut p.hourly);
            let entry = map.entry(name.clone()).or_insert_with(|| ProbeStatus {
                probe: name,
                ..ProbeStatus::default()
            });
            entry.runs = p.runs;
            entry.last = p.last;
            entry.last_success = p.last_success;
            entry.failing_since = p.failing_since;
            entry.last_good = p.last_good;
            entry.history = p.history;
            entry.hourly = p.hourly;
        }
        Ok(())
    }

    /// The bytes of the history file: every probe, error texts cut to a bounded length.
    fn saved_bytes(&self) -> Vec<u8> {
        let map = self.probes.read().unwrap_or_else(|e| e.into_inner());
        let probes = map
            .iter()
            .map(|(name, p)| {
                (
                    name.clone(),
                    SavedProbe {
                        runs: p.runs,
                        last: p.last.as_ref().map(shorten),
                        last_success: p.last_success,
                        failing_since: p.failing_since,
                        last_good: p.last_good.as_ref().map(shorten),
                        history: p.history.clone(),
                        hourly: p.hourly.clone(),
                    },
                )
            })
            .collect();
        drop(map);
        serde_json::to_vec(&Saved { version: 1, probes }).unwrap_or_default()
    }

    /// Saves the history to `path` after each change (at most once per [`SAVE_DEBOUNCE`]), and once more
    /// when `stop` is cancelled. Runs as a task of its own (supervised by the service) and
    /// writes on the blocking pool: the run consumer only flips a flag.
    /// `on_health(true)` when a save fails after one that did not (a state directory not
    /// writable, a full disk), `on_health(false)` when one succeeds after a failure.
    pub fn persist<H: Fn(bool) + Send + 'static>(
        self: &Arc<Self>,
        path: PathBuf,
        stop: CancellationToken,
        on_health: H,
    ) -> impl std::future::Future<Output = ()> + Send + use<H> {
        let status = self.clone();
        async move {
            let mut failing = false;
            loop {
                let stopping = tokio::select! {
                    () = status.changed.notified() => false,
                    () = stop.cancelled() => true,
                };
                if !stopping {
                    tokio::select! {
                        () = tokio::time::sleep(SAVE_DEBOUNCE) => {}
                        () = stop.cancelled() => {}
                    }
                }
                let bytes = status.saved_bytes();
                let target = path.clone();
                let written = tokio::task::spawn_blocking(move || {
                    crate::supervise::fault::hit(crate::supervise::Task::History, target.display());
                    crate::store::write_atomic(&target, &bytes)
                })
                .await;
                match written {
                    Ok(Err(e)) if !failing => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot save the status history");
                        failing = true;
                        on_health(true);
                    }
                    // The write panicked (a bug): before, this was ignored, and a history that
                    // was never saved again looked healthy.
                    Err(e) if !failing => {
                        tracing::error!(path = %path.display(), error = %e, "saving the status history failed unexpectedly");
                        failing = true;
                        on_health(true);
                    }
                    Ok(Ok(())) if failing => {
                        tracing::info!(path = %path.display(), "status history saved again");
                        failing = false;
                        on_health(false);
                    }
                    _ => {}
                }
                if stopping || stop.is_cancelled() {
                    return;
                }
            }
        }
    }
}

/// A run with its error texts cut to [`MAX_SAVED_ERROR`] characters (the same `Arc` when no
/// text is that long, as is usual).
fn shorten(run: &Arc<ProbeRun>) -> Arc<ProbeRun> {
    let long = |e: &Option<String>| {
        e.as_ref()
            .is_some_and(|t| t.len() > MAX_SAVED_ERROR && t.chars().count() > MAX_SAVED_ERROR)
    };
    if !long(&run.error) && !run.steps.iter().any(|s| long(&s.error)) {
        return Arc::clone(run);
    }
    let shorten_error = |e: &mut Option<String>| {
        if let Some(text) = e {
            *text = cut(text, MAX_SAVED_ERROR);
        }
    };
    let mut run = ProbeRun::clone(run);
    shorten_error(&mut run.error);
    for step in &mut run.steps {
        shorten_error(&mut step.error);
    }
    Arc::new(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::status::tests::{run, t0};
    use crate::status::{HISTORY_FILE, HISTORY_LEN, ProbeState};

    #[test]
    fn history_round_trips_through_the_file_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HISTORY_FILE);
        let status = Status::new("r");
        status.set_probes(&[("p".into(), "* * * * *".into())]);
        status.record(&Arc::new(run("p", true, 0)));
        for _ in 0..200 {
            // A huge error body, every run: the file must not grow with it.
            status.record(&Arc::new(run("p", false, 100_000)));
        }
        let bytes = status.saved_bytes();
        assert!(bytes.len() < 64 * 1024, "{} bytes", bytes.len());
        crate::store::write_atomic(&path, &bytes).unwrap();

        let again = Status::new("r");
        again.restore(&path).unwrap();
        again.set_probes(&[("p".into(), "* * * * *".into())]);
        let p = &again.snapshot()[0];
        assert_eq!(p.runs, 201);
        assert_eq!(p.history.len(), HISTORY_LEN);
        assert_eq!(p.state, ProbeState::Failing);
        assert!(p.failing_since.is_some() && p.last_success.is_some());
        assert!(p.last_good.as_ref().is_some_and(|r| r.success));
        let error = p.last.as_ref().unwrap().error.as_ref().unwrap();
        assert_eq!(error.chars().count(), MAX_SAVED_ERROR + 1);
    }

    #[test]
    fn a_week_of_runs_every_minute_keeps_the_file_small() {
        let status = Status::new("r").with_clock(Clock::starting_at(t0()));
        status.set_probes(&[("p".into(), "* * * * *".into())]);
        let start = t0() - chrono::Duration::days(9);
        for i in 0..9 * 24 * 60 {
            let mut r = run("p", i % 97 != 0, 2000);
            r.started_at = start + chrono::Duration::minutes(i);
            status.record(&Arc::new(r));
        }
        let p = &status.snapshot()[0];
        assert_eq!(p.hourly.len(), crate::rollup::HOURS);
        let week = p.availability.week.runs;
        assert!((7 * 24 * 60..=7 * 24 * 60 + 60).contains(&week), "{week}");
        let bytes = status.saved_bytes();
        assert!(bytes.len() < 40 * 1024, "{} bytes", bytes.len());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HISTORY_FILE);
        crate::store::write_atomic(&path, &bytes).unwrap();
        let again = Status::new("r");
        again.restore(&path).unwrap();
        assert_eq!(again.snapshot()[0].hourly, p.hourly);
    }

    /// Issue 17: a history file of 20,000 probes, one with 200,000 hourly buckets and 5,000
    /// history entries: cut while parsed (the newest hours, the first entries and probes).
    #[test]
    fn a_huge_history_file_is_cut_while_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HISTORY_FILE);
        let now = Utc::now().timestamp() / 3600 * 3600;
        let hours: Vec<String> = (0..200_000i64)
            .map(|i| {
                format!(
                    r#"{{"t":{},"n":1,"ok":1,"ms":5,"max":5}}"#,
                    now - (200_000 - 1 - i) * 3600
                )
            })
            .collect();
        let entry = r#"{"time":"2026-01-01T00:00:00Z","success":true,"duration_ms":1}"#;
        let big = format!(
            r#"{{"runs":1,"last":null,"last_success":null,"failing_since":null,"last_good":null,"history":[{}],"hourly":[{}]}}"#,
            vec![entry; 5000].join(","),
            hours.join(",")
        );
        let small = r#"{"runs":1,"last":null,"last_success":null,"failing_since":null,"last_good":null,"history":[]}"#;
        let probes: Vec<String> = (0..20_000)
            .map(|i| format!(r#""p{i:05}":{}"#, if i == 0 { big.as_str() } else { small }))
            .collect();
        std::fs::write(
            &path,
            format!(r#"{{"version":1,"probes":{{{}}}}}"#, probes.join(",")),
        )
        .unwrap();
        let status = Status::new("r");
        status.restore(&path).unwrap();
        let snapshot = status.snapshot();
        assert_eq!(snapshot.len(), MAX_SAVED_PROBES);
        let p = &snapshot[0];
        assert_eq!(p.probe, "p00000");
        assert_eq!(p.history.len(), HISTORY_LEN);
        assert_eq!(p.hourly.len(), crate::rollup::HOURS);
        assert_eq!(
            p.hourly.back().map(|b| b.t),
            Some(now),
            "the newest hours kept"
        );
        // Over the size cap: refused before it is read, and said.
        std::fs::File::create(&path)
            .unwrap()
            .set_len(crate::diag::file::MAX_STATE_BYTES + 1)
            .unwrap();
        let e = Status::new("r").restore(&path).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn a_broken_history_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HISTORY_FILE);
        std::fs::write(&path, b"{not json").unwrap();
        let status = Status::new("r");
        assert!(status.restore(&path).is_err());
        assert!(status.snapshot().is_empty());
    }

    /// A save that fails (the state directory's path is a regular file: not writable, as root
    /// too) is told once to the hook, and its recovery once; the task keeps saving.
    #[tokio::test(start_paused = true)]
    async fn a_failing_save_and_its_recovery_are_told_to_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("state");
        std::fs::write(&blocker, "a file where the directory should be").unwrap();
        let status = Arc::new(Status::new("r"));
        status.set_probes(&[("p".into(), "* * * * *".into())]);
        let told = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(status.persist(blocker.join(HISTORY_FILE), stop.clone(), {
            let told = told.clone();
            move |failing| told.lock().unwrap().push(failing)
        }));
        let saved = || async {
            // Past the debounce, with the blocking pool's write done (real time, bounded).
            tokio::time::sleep(SAVE_DEBOUNCE + Duration::from_secs(1)).await;
            for _ in 0..60 {
                tokio::task::yield_now().await;
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        for _ in 0..2 {
            status.record(&Arc::new(run("p", true, 0)));
            saved().await;
        }
        assert_eq!(
            *told.lock().unwrap(),
            [true],
            "told once, not at every save"
        );
        std::fs::remove_file(&blocker).unwrap();
        status.record(&Arc::new(run("p", true, 0)));
        saved().await;
        assert_eq!(*told.lock().unwrap(), [true, false]);
        assert!(blocker.join(HISTORY_FILE).exists());
        stop.cancel();
        task.await.unwrap();
    }

    /// A save whose write panics (the fault hook) is told to the hook as a failing save, and
    /// its recovery once the next save works; before, the panic was ignored.
    #[tokio::test(start_paused = true)]
    async fn a_save_that_panics_is_told_to_the_hook_as_failing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HISTORY_FILE);
        crate::supervise::fault::arm(
            crate::supervise::Task::History,
            &path.display().to_string(),
            1,
        );
        let status = Arc::new(Status::new("r"));
        status.set_probes(&[("p".into(), "* * * * *".into())]);
        let told = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(status.persist(path.clone(), stop.clone(), {
            let told = told.clone();
            move |failing| told.lock().unwrap().push(failing)
        }));
        for expected in [vec![true], vec![true, false]] {
            status.record(&Arc::new(run("p", true, 0)));
            // Past the debounce, with the blocking pool's write done (real time, bounded).
            tokio::time::sleep(SAVE_DEBOUNCE + Duration::from_secs(1)).await;
            for _ in 0..200 {
                if *told.lock().unwrap() == expected {
                    break;
                }
                tokio::task::yield_now().await;
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(*told.lock().unwrap(), expected);
        }
        assert!(path.exists());
        stop.cancel();
        task.await.unwrap();
    }
}
