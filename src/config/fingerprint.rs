//! What the config watcher compares: a hash of what the config and probe files hold, worked out
//! from one `stat` per file and each probe directory's listing, reading a file's bytes only when
//! its metadata moved (so an idle prober with 1,000 probe files does not read them all every
//! look, BENCHMARKS.md "The fixed cost").
//!
//! The metadata key is (device, inode, size, mtime and ctime with nanoseconds, mode), taken
//! through symlinks: a Kubernetes ConfigMap update (a new `..2026_…` directory, then an atomic
//! swap of the `..data` symlink) shows as new inodes; an editor's write-and-rename as a new inode;
//! an edit in place as a new mtime and ctime; `touch -d`, `cp -p` or `rsync -t` setting an old
//! mtime back still move the ctime, which no one can set. What metadata cannot show is a rewrite
//! of the same size within one timestamp tick (a coarse clock: 4 ms on Linux, 1–2 s on some
//! network and FAT file systems). As git does with "racily clean" entries, a file whose mtime or
//! ctime is within [`RACY`] of the look is not trusted by its metadata: its bytes are read again
//! at the next look, until it has been quiet that long. A touch that changes nothing reads the
//! file once and hashes the same, so it does not reload.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::diag::file;

/// A file written this recently is read again at the next look whatever its metadata says: the
/// coarsest timestamp tick of a file system in use (FAT's 2 s) with room for a network file
/// server's clock being a little ahead of ours.
pub const RACY: Duration = Duration::from_secs(3);

/// What one `stat` says about a file, enough to tell that it may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    mode: u32,
}

impl Meta {
    fn of(m: &std::fs::Metadata) -> Meta {
        use std::os::unix::fs::MetadataExt as _;
        Meta {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            mode: m.mode(),
        }
    }

    /// Whether the file changed within [`RACY`] of `now` (or in `now`'s future: a clock stepped
    /// back), so that a second write in the same tick would leave this metadata as it is.
    fn racy(&self, now: SystemTime) -> bool {
        let newest = self.mtime.max(self.ctime);
        let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return true;
        };
        let Ok(secs) = i64::try_from(now.saturating_sub(RACY).as_secs()) else {
            return true;
        };
        let cutoff = (secs, i64::from(now.saturating_sub(RACY).subsec_nanos()));
        newest >= cutoff
    }
}

/// The config watcher's memory between looks: each file's metadata and content hash when it was
/// last read (only for files whose metadata can be trusted; see [`RACY`]).
#[derive(Debug, Default)]
pub struct Fingerprinter {
    known: HashMap<PathBuf, (Meta, Option<u64>)>,
    /// Files whose bytes were read by the last look (for the tests and the benchmark's sake:
    /// an idle look reads none).
    reads: usize,
}

impl Fingerprinter {
    /// A hash of what `sources` hold now: each file's content, and for a directory the names
    /// and contents of its `*.toml` files. A path that cannot be read (missing, not a regular
    /// file, over 4 MiB: the loader's own rules, [`file::read_bytes`]) hashes as unreadable, so
    /// its appearing or vanishing is a change too.
    pub fn look(&mut self, sources: &[PathBuf]) -> u64 {
        self.look_at(sources, SystemTime::now())
    }

    /// How many files the last look read.
    pub fn reads(&self) -> usize {
        self.reads
    }

    fn look_at(&mut self, sources: &[PathBuf], now: SystemTime) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        let mut known = HashMap::with_capacity(self.known.len());
        self.reads = 0;
        for source in sources {
            source.hash(&mut h);
            // One `stat` per configured path tells a directory from a file and, for a file,
            // is its metadata too (before: `is_dir` and then `metadata`, two per look).
            let stat = std::fs::metadata(source);
            if stat.as_ref().is_ok_and(std::fs::Metadata::is_dir) {
                let mut files: Vec<(PathBuf, Option<Meta>)> = std::fs::read_dir(source)
                    .map(|d| {
                        d.filter_map(Result::ok)
                            .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
                            .map(|e| (e.path(), entry_meta(&e)))
                            .collect()
                    })
                    .unwrap_or_default();
                files.sort_by(|a, b| a.0.cmp(&b.0));
                for (f, meta) in files {
                    f.hash(&mut h);
                    self.content(&f, meta, now, &mut known).hash(&mut h);
                }
            } else {
                let meta = stat.ok().map(|m| Meta::of(&m));
                self.content(source, meta, now, &mut known).hash(&mut h);
            }
        }
        // Files no longer listed are forgotten.
        self.known = known;
        h.finish()
    }

    /// The hash of `path`'s bytes (`None`: unreadable), from memory when its metadata is the
    /// same as when it was read and that was not racy.
    fn content(
        &mut self,
        path: &Path,
        meta: Option<Meta>,
        now: SystemTime,
        known: &mut HashMap<PathBuf, (Meta, Option<u64>)>,
    ) -> Option<u64> {
        if let (Some(meta), Some((was, hash))) = (meta, self.known.get(path))
            && meta == *was
        {
            let hash = *hash;
            known.insert(path.to_path_buf(), (meta, hash));
            return hash;
        }
        // Read with the loader's own reader: a FIFO put here never blocks the watcher, and a
        // file over the cap is not read whole.
        self.reads += 1;
        let hash = file::read_bytes(path).ok().map(|bytes| {
            let mut h = std::hash::DefaultHasher::new();
            bytes.hash(&mut h);
            h.finish()
        });
        // Remembered only when the metadata taken before the read is old enough to tell the
        // next write apart (a write between the stat and the read shows as new metadata next
        // time, read again).
        if let Some(meta) = meta
            && !meta.racy(now)
        {
            known.insert(path.to_path_buf(), (meta, hash));
        }
        hash
    }
}

/// A directory entry's metadata through symlinks: a plain entry's from `fstatat` on the open
/// directory (no walk of the whole path again: about half the cost of a `stat` by path, at
/// 1,000 files a look), a symlink's (a ConfigMap key, `p.toml -> ..data/p.toml`) by its path.
fn entry_meta(e: &std::fs::DirEntry) -> Option<Meta> {
    let meta = match e.file_type() {
        Ok(t) if !t.is_symlink() => e.metadata(),
        _ => std::fs::metadata(e.path()),
    };
    meta.ok().map(|m| Meta::of(&m))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets `path`'s mtime (and so its ctime, to now) to `secs` seconds ago.
    fn age(path: &Path, secs: u64) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(secs))
            .unwrap();
    }

    /// A look `later` after now: past the racy window of files just written.
    fn look_later(fp: &mut Fingerprinter, sources: &[PathBuf]) -> u64 {
        fp.look_at(sources, SystemTime::now() + RACY + Duration::from_secs(1))
    }

    fn setup() -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let probes = dir.path().join("probes");
        std::fs::create_dir(&probes).unwrap();
        std::fs::write(dir.path().join("joincanary.toml"), "region = \"a\"\n").unwrap();
        for i in 0..3 {
            std::fs::write(
                probes.join(format!("p{i}.toml")),
                format!("name = \"p{i}\"\n"),
            )
            .unwrap();
        }
        let sources = vec![dir.path().join("joincanary.toml"), probes];
        (dir, sources)
    }

    #[test]
    fn an_idle_look_reads_no_file_once_they_are_settled() {
        let (_dir, sources) = setup();
        let mut fp = Fingerprinter::default();
        let first = look_later(&mut fp, &sources);
        assert_eq!(fp.reads(), 4);
        assert_eq!(look_later(&mut fp, &sources), first);
        assert_eq!(fp.reads(), 0, "settled files are not read again");
    }

    #[test]
    fn files_written_just_now_are_read_again_until_they_settle() {
        let (dir, sources) = setup();
        let mut fp = Fingerprinter::default();
        let first = fp.look(&sources);
        assert_eq!(fp.reads(), 4);
        // A same-size rewrite in the same timestamp tick leaves the metadata as it was (forced
        // here by setting the mtime back); read again because the files are recent.
        let p0 = dir.path().join("probes/p0.toml");
        let m = std::fs::metadata(&p0).unwrap().modified().unwrap();
        std::fs::write(&p0, "name = \"q0\"\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p0)
            .unwrap()
            .set_modified(m)
            .unwrap();
        let second = fp.look(&sources);
        assert_eq!(
            fp.reads(),
            4,
            "recent files are not trusted by their metadata"
        );
        assert_ne!(second, first);
    }

    #[test]
    fn a_same_size_rewrite_with_the_old_mtime_put_back_is_seen_by_its_ctime() {
        let (dir, sources) = setup();
        let p1 = dir.path().join("probes/p1.toml");
        age(&p1, 60);
        let mut fp = Fingerprinter::default();
        let first = look_later(&mut fp, &sources);
        // As `rsync -t` or `cp -p` would: the same size, the same mtime, another content.
        let m = std::fs::metadata(&p1).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20)); // the ctime must move past a tick
        std::fs::write(&p1, "name = \"q1\"\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p1)
            .unwrap()
            .set_modified(m)
            .unwrap();
        assert_eq!(std::fs::metadata(&p1).unwrap().modified().unwrap(), m);
        let second = look_later(&mut fp, &sources);
        assert_eq!(fp.reads(), 1, "only the changed file is read");
        assert_ne!(second, first);
    }

    #[test]
    fn a_touch_without_a_change_reads_the_file_but_does_not_count_as_a_change() {
        let (dir, sources) = setup();
        let mut fp = Fingerprinter::default();
        let first = look_later(&mut fp, &sources);
        age(&dir.path().join("probes/p2.toml"), 1);
        assert_eq!(look_later(&mut fp, &sources), first);
        assert_eq!(fp.reads(), 1);
    }

    #[test]
    fn files_added_removed_renamed_or_edited_change_it() {
        let (dir, sources) = setup();
        let probes = dir.path().join("probes");
        let mut fp = Fingerprinter::default();
        let first = look_later(&mut fp, &sources);
        let mut seen = vec![first];
        let mut changed = |what: &str, fp: &mut Fingerprinter| {
            let now = look_later(fp, &sources);
            assert!(!seen.contains(&now), "{what}: not seen as a change");
            seen.push(now);
            now
        };
        std::fs::write(probes.join("p3.toml"), "name = \"p3\"\n").unwrap();
        changed("added", &mut fp);
        std::fs::rename(probes.join("p3.toml"), probes.join("p4.toml")).unwrap();
        changed("renamed", &mut fp);
        std::fs::remove_file(probes.join("p4.toml")).unwrap();
        // The same bytes as the very first look: the same hash, as it should be.
        assert_eq!(look_later(&mut fp, &sources), first);
        std::fs::write(probes.join("p0.toml"), "name = \"p0\"\nlonger = 1\n").unwrap();
        changed("edited", &mut fp);
        std::fs::write(dir.path().join("joincanary.toml"), "region = \"b\"\n").unwrap();
        let last = changed("the config edited", &mut fp);
        // A file that is not a probe file (`*.toml`) is not looked at.
        std::fs::write(probes.join("README"), "x").unwrap();
        assert_eq!(look_later(&mut fp, &sources), last);
    }

    #[test]
    fn a_configmap_symlink_swap_is_seen() {
        // The kubelet's layout: `probes` -> `..data/probes`, `..data` -> `..v1`; an update
        // writes `..v2` and renames a new symlink over `..data`. The same size, and files not
        // written just now: only the inode tells.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for v in ["..v1", "..v2"] {
            std::fs::create_dir_all(root.join(v).join("probes")).unwrap();
            let text = if v == "..v1" {
                "name = \"a\"\n"
            } else {
                "name = \"b\"\n"
            };
            let p = root.join(v).join("probes/p.toml");
            std::fs::write(&p, text).unwrap();
            age(&p, 60);
            std::fs::write(root.join(v).join("joincanary.toml"), "region = \"r\"\n").unwrap();
            age(&root.join(v).join("joincanary.toml"), 60);
        }
        std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/probes", root.join("probes")).unwrap();
        std::os::unix::fs::symlink("..data/joincanary.toml", root.join("joincanary.toml")).unwrap();
        let sources = vec![root.join("joincanary.toml"), root.join("probes")];
        let mut fp = Fingerprinter::default();
        let first = look_later(&mut fp, &sources);
        assert_eq!(look_later(&mut fp, &sources), first);
        assert_eq!(fp.reads(), 0);
        std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        assert_ne!(look_later(&mut fp, &sources), first);
        assert_eq!(fp.reads(), 2, "both files behind the swapped link are read");
    }

    #[test]
    fn probe_files_that_are_symlinks_are_followed() {
        // A ConfigMap mounted as the probes directory: each key a symlink `p.toml ->
        // ..data/p.toml`; an update swaps `..data`, the links stay as they are.
        let dir = tempfile::tempdir().unwrap();
        let probes = dir.path().join("probes");
        for (v, text) in [("..v1", "name = \"a\"\n"), ("..v2", "name = \"b\"\n")] {
            std::fs::create_dir_all(probes.join(v)).unwrap();
            std::fs::write(probes.join(v).join("p.toml"), text).unwrap();
            age(&probes.join(v).join("p.toml"), 60);
        }
        std::os::unix::fs::symlink("..v1", probes.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/p.toml", probes.join("p.toml")).unwrap();
        let sources = vec![probes.clone()];
        let mut fp = Fingerprinter::default();
        let first = look_later(&mut fp, &sources);
        assert_eq!(look_later(&mut fp, &sources), first);
        assert_eq!(fp.reads(), 0);
        std::os::unix::fs::symlink("..v2", probes.join("..data_tmp")).unwrap();
        std::fs::rename(probes.join("..data_tmp"), probes.join("..data")).unwrap();
        assert_ne!(look_later(&mut fp, &sources), first);
        assert_eq!(fp.reads(), 1);
    }

    #[test]
    fn what_the_loader_refuses_is_not_read_and_its_coming_and_going_is_a_change() {
        let (dir, sources) = setup();
        let mut fp = Fingerprinter::default();
        let first = look_later(&mut fp, &sources);
        let fifo = dir.path().join("probes/fifo.toml");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        // Must return (a FIFO is never opened for reading) and differ.
        let with_fifo = look_later(&mut fp, &sources);
        assert_ne!(with_fifo, first);
        let big = dir.path().join("probes/big.toml");
        std::fs::write(&big, vec![b'#'; file::MAX_FILE_BYTES as usize + 1]).unwrap();
        assert_ne!(look_later(&mut fp, &sources), with_fifo);
        std::fs::remove_file(&fifo).unwrap();
        std::fs::remove_file(&big).unwrap();
        assert_eq!(look_later(&mut fp, &sources), first);
    }

    #[test]
    fn a_clock_stepped_back_makes_files_recent_not_trusted() {
        let m = Meta {
            dev: 1,
            ino: 1,
            size: 1,
            mtime: (1_000_000, 0),
            ctime: (1_000_000, 0),
            mode: 0o100_644,
        };
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        assert!(!m.racy(at(1_000_000 + 60)));
        assert!(m.racy(at(1_000_000 + 1)));
        assert!(
            m.racy(at(1_000_000 - 3600)),
            "a file from the future is recent"
        );
    }
}
