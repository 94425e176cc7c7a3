//! A small durable key/value store for alert state and the outbox: an append-only log of
//! checksummed JSON lines, compacted into a fresh file when it has grown, written by a thread
//! of its own so no caller ever waits on the disk.
//!
//! Why a log and not a rewrite of one JSON file per change: a change costs one appended line
//! (its own size), whatever the number of probes or queued notifications. Why not an embedded
//! database: every line carries its own checksum, so a damaged or truncated file still yields
//! every record that is intact (a B-tree file whose header is damaged yields nothing), and a
//! disk that fails leaves the caller's in-memory state authoritative: the writer keeps every
//! change and writes a complete fresh file once the disk takes writes again.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long a failed write waits before the next try, doubling up to [`MAX_BACKOFF`]
/// ([`crate::backoff`], no jitter: one writer, nobody to collide with).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The log is compacted when it holds this many more records than live keys (amortised: a
/// compaction writes the live keys once per at least as many appended changes).
const COMPACT_SLACK: usize = 1000;

/// What was read from disk when a store was opened.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Live records: key -> JSON text.
    pub entries: BTreeMap<String, String>,
    /// Lines that failed their checksum or did not parse (skipped; the rest is kept).
    pub damaged: usize,
    /// Whether the log file existed.
    pub existed: bool,
    /// Why the file could not be read (or was read only in part): logged, counted by the
    /// service (`joincanary_state_read_errors_total`), and an unreadable file set aside as
    /// `<name>.unreadable`.
    pub unreadable: Option<String>,
}

impl Loaded {
    /// The records under `prefix`, decoded; records that do not decode are logged and skipped.
    pub fn decode<T: DeserializeOwned>(&self, prefix: &str) -> Vec<(String, T)> {
        self.entries
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, v)| match serde_json::from_str(v) {
                Ok(t) => Some((k[prefix.len()..].to_string(), t)),
                Err(e) => {
                    tracing::error!(key = %k, error = %e, "stored record does not decode; skipped");
                    None
                }
            })
            .collect()
    }
}

/// A handle to one log file; cheap to clone. Writes are queued and return at once.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    queue: Mutex<Queue>,
    /// Wakes the writer (work queued, stop) and waiters of [`Store::flush`] (work written).
    wake: Condvar,
    /// Told `true` when writes start failing and `false` when they succeed again (the
    /// service's metric: the writer itself only logs).
    on_health: Mutex<Option<HealthHook>>,
    /// Told why when a write batch panicked (a bug), and `None` at the next write that works
    /// (the service's supervisor: counted, `/-/ready` held).
    on_panic: Mutex<PanicReport>,
}

/// The panic hook, and a panic that came before it was set (the start-up write runs as soon
/// as the store opens), told to the hook when it is set so it is never missed.
#[derive(Default)]
struct PanicReport {
    hook: Option<PanicHook>,
    untold: Option<String>,
}

/// See [`Store::on_health`].
type HealthHook = Arc<dyn Fn(bool) + Send + Sync>;
/// See [`Store::on_panic`].
type PanicHook = Arc<dyn Fn(Option<&str>) + Send + Sync>;

#[derive(Default)]
struct Queue {
    /// Changes not yet handed to the writer; a later change to a key replaces an earlier one.
    ops: BTreeMap<String, Option<String>>,
    /// Changes queued so far / known to be on disk (for `flush`).
    queued: u64,
    written: u64,
    /// The last write failed: the disk is behind memory.
    failing: bool,
    stop: bool,
}

impl Store {
    /// Opens (or creates on first write) the log at `path`, reading what it holds. A damaged
    /// file is copied aside as `<name>.damaged` for a human and its intact records are kept.
    pub fn open(path: &Path) -> (Store, Loaded) {
        let loaded = read_log(path);
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            on_health: Mutex::new(None),
            on_panic: Mutex::default(),
        });
        let mut mirror: BTreeMap<String, String> = loaded
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Written whole at once (a damaged file rewritten clean, a missing one created): a state
        // directory that takes no writes is found at start-up, not at the first page, and
        // [`Store::on_health`] tells it.
        let mut dirty = true;
        if loaded.damaged > 0 {
            let aside = with_suffix(path, ".damaged");
            let _ = std::fs::copy(path, &aside);
            tracing::error!(
                path = %path.display(),
                damaged = loaded.damaged,
                recovered = loaded.entries.len(),
                copy = %aside.display(),
                "state log damaged: intact records recovered, damaged ones skipped"
            );
        }
        let records = loaded.entries.len();
        let writer = inner.clone();
        let spawned = std::thread::Builder::new()
            .name("joincanary-store".into())
            .spawn(move || writer.run(&mut mirror, &mut dirty, records));
        if let Err(e) = spawned {
            tracing::error!(path = %path.display(), error = %e, "cannot start the state writer; state is kept in memory only");
        }
        (Store { inner }, loaded)
    }

    /// Queues `key = value`.
    pub fn put(&self, key: &str, value: &impl Serialize) {
        match serde_json::to_string(value) {
            Ok(json) => self.queue(key, Some(json)),
            Err(e) => tracing::error!(key, error = %e, "cannot encode a state record"),
        }
    }

    /// Queues the removal of `key`.
    pub fn delete(&self, key: &str) {
        self.queue(key, None);
    }

    fn queue(&self, key: &str, value: Option<String>) {
        let mut q = self.inner.lock();
        q.ops.insert(key.to_string(), value);
        q.queued += 1;
        drop(q);
        self.inner.wake.notify_all();
    }

    /// Waits up to `timeout` for every change queued so far to reach the disk; `true` if it did.
    /// Never waits longer, so a hung disk cannot hold up shutdown.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut q = self.inner.lock();
        let target = q.queued;
        while q.written < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            q = self
                .inner
                .wake
                .wait_timeout(q, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        true
    }

    /// Calls `hook(true)` whenever writes start failing (a state directory not writable, a full
    /// disk) and `hook(false)` when they succeed again; at once with the current state, so a
    /// failure before the hook was set is not missed.
    pub fn on_health(&self, hook: impl Fn(bool) + Send + Sync + 'static) {
        let hook: HealthHook = Arc::new(hook);
        *self
            .inner
            .on_health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hook.clone());
        // Told under the queue's lock, as the writer tells its changes: never out of order.
        let q = self.inner.lock();
        hook(q.failing);
        drop(q);
    }

    /// Calls `hook(Some(why))` whenever a write batch panics (a bug: the writer catches it,
    /// keeps the batch's changes and retries as after a failed write, so the thread never dies
    /// quietly), and `hook(None)` at the next write that works after one did; at once with
    /// a panic not yet followed by a working write, so one before the hook was set is told.
    pub fn on_panic(&self, hook: impl Fn(Option<&str>) + Send + Sync + 'static) {
        let hook: PanicHook = Arc::new(hook);
        // Told under the report's lock, as the writer tells its panics: never out of order.
        let mut report = self
            .inner
            .on_panic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        report.hook = Some(hook.clone());
        if let Some(why) = report.untold.take() {
            hook(Some(&why));
        }
    }

    /// Whether the disk has everything (`false` while writes fail).
    pub fn healthy(&self) -> bool {
        let q = self.inner.lock();
        !q.failing && q.written == q.queued
    }

    /// Where the log lives.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Stops the writer thread after one last write attempt (not waited for).
    pub fn close(&self) {
        self.inner.lock().stop = true;
        self.inner.wake.notify_all();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The writer never panics holding the lock; if it did, the queue is still valid data.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the hook, if one is set, that writes are `failing` (called with the queue locked).
    fn health(&self, failing: bool) {
        let hook = self
            .on_health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(hook) = hook {
            hook(failing);
        }
    }

    /// Tells the panic hook (see [`Store::on_panic`]), or keeps the panic for it until it
    /// is set.
    fn panicked(&self, why: Option<&str>) {
        let mut report = self
            .on_panic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match report.hook.clone() {
            Some(hook) => hook(why),
            None => report.untold = why.map(str::to_string),
        }
    }

    /// The writer: takes queued changes in batches (one append and one fsync per batch, so a
    /// burst of changes costs one disk round trip), compacts when the log has grown, and after
    /// a failure keeps retrying with a complete fresh file.
    fn run(&self, mirror: &mut BTreeMap<String, String>, dirty: &mut bool, mut records: usize) {
        let mut backoff = crate::backoff::Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
        let mut panicked = false;
        loop {
            let (ops, upto, stop) = {
                let mut q = self.lock();
                while q.ops.is_empty() && !q.stop && !*dirty {
                    q = self.wake.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                (std::mem::take(&mut q.ops), q.queued, q.stop)
            };
            if stop && ops.is_empty() && !*dirty {
                // Closed with everything written: nothing more to touch (the file may belong to
                // a new owner by now).
                return;
            }
            // One batch under `catch_unwind`: a panic in it (a bug) is a failed write, told
            // to the panic hook, not a writer thread that died while memory went on.
            let batch = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::supervise::fault::hit(crate::supervise::Task::History, self.path.display());
                self.write_batch(&ops, mirror, *dirty, &mut records)
            }));
            let result = batch.unwrap_or_else(|panic| {
                let why = format!("panicked: {}", crate::supervise::panic_message(panic.as_ref()));
                tracing::error!(path = %self.path.display(), why, "the state writer failed unexpectedly; its changes are kept and written again");
                panicked = true;
                self.panicked(Some(&why));
                // The batch's changes go back to the queue (a newer change to a key wins), the
                // mirror may hold part of them: the next write is a fresh file.
                let mut q = self.lock();
                for (k, v) in ops {
                    q.ops.entry(k).or_insert(v);
                }
                Err(std::io::Error::other(why))
            });
            let mut q = self.lock();
            match result {
                Ok(()) => {
                    let was_failing = q.failing;
                    if was_failing {
                        tracing::info!(path = %self.path.display(), "state written again: the disk takes writes");
                    }
                    q.failing = false;
                    *dirty = false;
                    backoff.reset();
                    q.written = upto;
                    if was_failing {
                        self.health(false);
                    }
                    if std::mem::take(&mut panicked) {
                        self.panicked(None);
                    }
                    drop(q);
                    self.wake.notify_all();
                }
                Err(e) => {
                    if !q.failing {
                        tracing::error!(path = %self.path.display(), error = %e, "cannot write state; it is kept in memory and written when the disk recovers");
                        self.health(true);
                    }
                    q.failing = true;
                    // A failed append may leave half a line: the next write is a fresh file.
                    *dirty = true;
                    if stop {
                        return;
                    }
                    let _ = self.wake.wait_timeout(q, backoff.next_delay());
                    continue;
                }
            }
            if stop && self.lock().ops.is_empty() {
                return;
            }
        }
    }

    /// Writes one batch: its lines appended, or the whole mirror as a fresh file when the log
    /// is `dirty`, has grown, or vanished.
    fn write_batch(
        &self,
        ops: &BTreeMap<String, Option<String>>,
        mirror: &mut BTreeMap<String, String>,
        dirty: bool,
        records: &mut usize,
    ) -> std::io::Result<()> {
        let mut lines = String::new();
        for (k, v) in ops {
            lines.push_str(&encode_line(k, v.as_deref()));
            match v {
                Some(v) => mirror.insert(k.clone(), v.clone()),
                None => mirror.remove(k),
            };
        }
        // A log that vanished (removed by hand, a fresh disk) is written whole, not as a
        // fragment holding only the latest changes.
        let rewrite = dirty || *records > 2 * mirror.len() + COMPACT_SLACK || !self.path.exists();
        if rewrite {
            compact(&self.path, mirror).map(|()| *records = mirror.len())
        } else {
            append(&self.path, &lines).map(|()| *records += ops.len())
        }
    }
}

/// Appends one batch. The file is opened per batch (one open beside an fsync is cheap), so a log
/// that was removed or replaced is noticed instead of written into an unlinked inode.
fn append(path: &Path, lines: &str) -> std::io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(lines.as_bytes())?;
    f.sync_data()
}

/// Writes every live record to a temp file and renames it over the log (a crash leaves the
/// old log or the new one). The temp file is removed when anything fails (a full disk must
/// not collect them).
fn compact(path: &Path, mirror: &BTreeMap<String, String>) -> std::io::Result<()> {
    let mut text = String::new();
    for (k, v) in mirror {
        text.push_str(&encode_line(k, Some(v)));
    }
    write_atomic(path, text.as_bytes())
}

/// Writes `bytes` to `path` so a crash leaves the old file or the new one, never half of one;
/// the temp file is removed when anything fails (a full disk must not collect them).
///
/// # Errors
/// Any I/O failure on the way.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = with_suffix(path, &format!(".tmp.{}", std::process::id()));
    let written = write_file(path, &tmp, bytes);
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn write_file(path: &Path, tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::File::create(tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// One record: `<16 hex digits of FNV-1a 64 of the JSON> <JSON>\n`, the JSON being
/// `{"k":key,"v":value}` or `{"k":key}` for a removal. JSON strings never hold a raw newline,
/// so a line is a record.
fn encode_line(key: &str, value: Option<&str>) -> String {
    let key_json = serde_json::to_string(key).unwrap_or_else(|_| "\"\"".into());
    let body = match value {
        Some(v) => format!("{{\"k\":{key_json},\"v\":{v}}}"),
        None => format!("{{\"k\":{key_json}}}"),
    };
    format!("{:016x} {body}\n", fnv1a(body.as_bytes()))
}

#[derive(serde::Deserialize)]
struct Record {
    k: String,
    v: Option<Box<serde_json::value::RawValue>>,
}

fn decode_line(line: &str) -> Option<(String, Option<String>)> {
    let (sum, body) = line.split_once(' ')?;
    if sum.len() != 16 || u64::from_str_radix(sum, 16).ok()? != fnv1a(body.as_bytes()) {
        return None;
    }
    let r: Record = serde_json::from_str(body).ok()?;
    Some((r.k, r.v.map(|v| v.get().to_string())))
}

/// Reads the log at `path` without opening it for writing (tools and tests).
pub fn read(path: &Path) -> Loaded {
    read_log(path)
}

/// The longest line read back: a record is an alert's state or one notification (a few KiB);
/// a longer line is counted damaged and skipped without being held.
const MAX_LINE: usize = 4 << 20;

fn read_log(path: &Path) -> Loaded {
    use std::io::{BufRead as _, Read as _};
    let mut reader = match crate::diag::file::open_state(path) {
        Ok(r) => r,
        Err(crate::diag::file::FileError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Loaded::default();
        }
        Err(e) => {
            // Kept for a human under another name: the writer is about to write a fresh log.
            let aside = with_suffix(path, ".unreadable");
            let moved = std::fs::rename(path, &aside).is_ok();
            tracing::error!(path = %path.display(), error = %e, moved_to = moved.then(|| tracing::field::display(aside.display())), "cannot read the state log; starting from memory only");
            return Loaded {
                unreadable: Some(e.to_string()),
                ..Loaded::default()
            };
        }
    };
    let mut loaded = Loaded {
        existed: true,
        ..Loaded::default()
    };
    // Line by line, bytes not text: one damaged byte spoils its own line only. Streamed: the
    // file is never held whole, and a line is held only up to [`MAX_LINE`].
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "state log read cut short; the records before kept");
                loaded.unreadable = Some(e.to_string());
                break;
            }
        }
        if line.len() > MAX_LINE && line.last() != Some(&b'\n') {
            loaded.damaged += 1;
            skip_line(&mut reader);
            continue;
        }
        let raw = line.strip_suffix(b"\n").unwrap_or(&line);
        if raw.is_empty() {
            continue;
        }
        match std::str::from_utf8(raw).ok().and_then(decode_line) {
            Some((k, Some(v))) => {
                loaded.entries.insert(k, v);
            }
            Some((k, None)) => {
                loaded.entries.remove(&k);
            }
            None => loaded.damaged += 1,
        }
    }
    loaded
}

/// Reads past the rest of a line (to its newline or the end) without keeping it.
fn skip_line(reader: &mut impl std::io::BufRead) {
    loop {
        let Ok(buf) = reader.fill_buf() else { return };
        if buf.is_empty() {
            return;
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return;
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

/// FNV-1a, 64 bits: detects torn and damaged lines (not an adversary's edits).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17: a line of 10 MiB (no newline in it) is skipped as damaged without being
    /// held, and the records around it are kept.
    #[test]
    fn an_endless_line_is_skipped_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.log");
        let mut text = encode_line("a", Some("1"));
        text.push_str(&"x".repeat(10 << 20));
        text.push('\n');
        text.push_str(&encode_line("b", Some("2")));
        std::fs::write(&path, text).unwrap();
        let loaded = read_log(&path);
        assert_eq!(loaded.damaged, 1);
        assert_eq!(loaded.entries.len(), 2, "{:?}", loaded.entries.keys());
        // Larger than the cap: set aside, said, not read.
        std::fs::File::create(&path)
            .unwrap()
            .set_len(crate::diag::file::MAX_STATE_BYTES + 1)
            .unwrap();
        let loaded = read_log(&path);
        assert!(
            loaded
                .unreadable
                .as_deref()
                .is_some_and(|e| e.contains("larger than"))
        );
        assert!(!path.exists() && with_suffix(&path, ".unreadable").exists());
    }

    /// The start-up write runs as soon as the store opens, before the service sets its panic
    /// hook: a panic there is told when the hook is set, not lost until a later write.
    #[test]
    fn a_panic_before_the_hook_is_set_is_told_when_it_is() {
        use crate::supervise::{Task, fault};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.log");
        let key = path.display().to_string();
        fault::arm(Task::History, &key, 1_000);
        let (store, _) = Store::open(&path);
        // Real time, bounded: the writer is an OS thread.
        let failing = (0..1_000).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            !store.healthy()
        });
        assert!(failing, "the start-up write panicked");
        let panics = Arc::new(Mutex::new(Vec::new()));
        store.on_panic({
            let panics = panics.clone();
            move |why| panics.lock().unwrap().push(why.map(str::to_string))
        });
        let told = panics.lock().unwrap().first().cloned();
        assert_eq!(
            told,
            Some(Some(format!(
                "panicked: injected fault in the history task for {key}"
            )))
        );
        fault::disarm(Task::History, &key);
        store.put("a", &1);
        assert!(
            store.flush(Duration::from_secs(40)),
            "written once disarmed"
        );
        assert_eq!(panics.lock().unwrap().last(), Some(&None));
    }

    /// A write batch that panics (the fault hook) does not end the writer thread: the panic is
    /// told to the panic hook and as failing writes to the health hook, the batch's change is
    /// written at the retry, and later changes reach the disk too.
    #[test]
    fn a_write_that_panics_is_told_and_the_writer_keeps_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.log");
        let (store, _) = Store::open(&path);
        assert!(store.flush(Duration::from_secs(10)), "the first write");
        let health = Arc::new(Mutex::new(Vec::new()));
        let panics = Arc::new(Mutex::new(Vec::new()));
        store.on_health({
            let health = health.clone();
            move |failing| health.lock().unwrap().push(failing)
        });
        store.on_panic({
            let panics = panics.clone();
            move |why| panics.lock().unwrap().push(why.map(str::to_string))
        });
        crate::supervise::fault::arm(
            crate::supervise::Task::History,
            &path.display().to_string(),
            1,
        );
        store.put("a", &1);
        // Retried after the first backoff (500 ms): real time, bounded by the flush.
        assert!(
            store.flush(Duration::from_secs(10)),
            "written after the panic"
        );
        assert_eq!(*health.lock().unwrap(), [false, true, false]);
        assert_eq!(
            *panics.lock().unwrap(),
            [
                Some(format!(
                    "panicked: injected fault in the history task for {}",
                    path.display()
                )),
                None
            ]
        );
        store.put("b", &2);
        assert!(store.flush(Duration::from_secs(10)));
        assert!(store.healthy());
        let loaded = read(&path);
        assert_eq!(loaded.entries.get("a").map(String::as_str), Some("1"));
        assert_eq!(loaded.entries.get("b").map(String::as_str), Some("2"));
        assert_eq!(loaded.damaged, 0);
        store.close();
    }

    #[test]
    fn lines_round_trip_and_detect_damage() {
        let line = encode_line("p/1", Some("{\"a\":\"x\\ny\"}"));
        assert_eq!(line.matches('\n').count(), 1);
        let got = decode_line(line.trim_end()).expect("valid line");
        assert_eq!(
            got,
            ("p/1".to_string(), Some("{\"a\":\"x\\ny\"}".to_string()))
        );
        let mut bad = line.trim_end().to_string();
        bad.replace_range(20..21, "Z");
        assert!(decode_line(&bad).is_none());
        assert!(decode_line(&line[..line.len() / 2]).is_none());
        let del = encode_line("p/1", None);
        assert_eq!(decode_line(del.trim_end()), Some(("p/1".to_string(), None)));
    }
}
