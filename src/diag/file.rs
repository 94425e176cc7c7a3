//! Reading config, probe, CA and web config files so that no file can hang or swamp the
//! prober: only regular files (a FIFO, a device such as a symlink to `/dev/zero`, a directory
//! are refused before anything is read), at most [`MAX_FILE_BYTES`], and opened non-blocking.
//! The prober's own state files are read the same way, with the larger [`MAX_STATE_BYTES`].
//! A load can ask which files it read ([`recording_reads`]), so `run` also watches the CA,
//! certificate and key files a config names, and a renewed certificate is picked up.

use std::cell::RefCell;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The largest config or probe file read: far above any real one (the shipped probes are a
/// few KiB), far below what would hurt the prober.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The largest state file read back at start-up (`state.log`, `status-history.json`, the
/// legacy files): a week of hourly roll-ups for 1,000 probes is about 10 MiB and the state
/// log of as many probes a few MiB, so this leaves room while a FIFO, `/dev/zero` or a
/// runaway file in the state directory still cannot hang or swamp the start. State files are
/// read as a stream ([`open_state`]), never whole into memory.
pub const MAX_STATE_BYTES: u64 = 64 * 1024 * 1024;

/// Why a file was not read. The caller names the file; these say why.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("not a regular file ({0}); only regular files are read")]
    NotRegular(&'static str),
    #[error("larger than {} MiB ({size} bytes); refusing to read it", max / 1024 / 1024)]
    TooLarge { size: u64, max: u64 },
    #[error("not UTF-8 text")]
    NotText,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What kind of file `meta` describes, for the error.
fn kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "not a file"
    }
}

fn check(meta: &std::fs::Metadata, max: u64) -> Result<(), FileError> {
    if !meta.is_file() {
        return Err(FileError::NotRegular(kind(meta)));
    }
    if meta.len() > max {
        return Err(FileError::TooLarge {
            size: meta.len(),
            max,
        });
    }
    Ok(())
}

/// The bytes of the regular file at `path` (symlinks followed; what they point to must be a
/// regular file too).
///
/// # Errors
/// Not a regular file, larger than [`MAX_FILE_BYTES`], or unreadable.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, FileError> {
    read_bytes_within(path, MAX_FILE_BYTES)
}

/// The prober's own state file at `path` to read as a stream (a JSON document parsed from it,
/// the state log line by line): the same checks as [`read_bytes`], at most
/// [`MAX_STATE_BYTES`] (a file that grows meanwhile ends there: its parse fails). A missing
/// file is `FileError::Io` of kind `NotFound` (a first start).
///
/// # Errors
/// Not a regular file, larger than [`MAX_STATE_BYTES`], or unreadable.
pub fn open_state(path: &Path) -> Result<std::io::BufReader<std::io::Take<File>>, FileError> {
    let file = open_within(path, MAX_STATE_BYTES)?;
    Ok(std::io::BufReader::new(file.take(MAX_STATE_BYTES)))
}

thread_local! {
    /// The files read on this thread while [`recording_reads`] runs (`None`: not recording).
    static READS: RefCell<Option<Vec<PathBuf>>> = const { RefCell::new(None) };
}

/// Runs `f` and returns, beside its result, every path [`read_bytes`] or [`read_text`] was
/// asked for on this thread meanwhile (once each, in order; unreadable ones too, so a file
/// that appears later is noticed). A config load reads on one thread, so this is what it read:
/// the config and probe files, and the CA, certificate and key files they name. Nested calls
/// each see their own reads.
pub fn recording_reads<T>(f: impl FnOnce() -> T) -> (T, Vec<PathBuf>) {
    let outer = READS.with(|r| r.replace(Some(Vec::new())));
    let result = f();
    let reads = READS.with(|r| r.replace(outer)).unwrap_or_default();
    if !reads.is_empty() {
        // The outer recording saw these reads too.
        READS.with(|r| {
            if let Some(outer) = r.borrow_mut().as_mut() {
                for p in &reads {
                    if !outer.contains(p) {
                        outer.push(p.clone());
                    }
                }
            }
        });
    }
    (result, reads)
}

fn note_read(path: &Path) {
    READS.with(|r| {
        if let Some(reads) = r.borrow_mut().as_mut()
            && !reads.iter().any(|p| p == path)
        {
            reads.push(path.to_path_buf());
        }
    });
}

fn read_bytes_within(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    note_read(path);
    let file = open_within(path, max)?;
    let size = file.metadata()?.len();
    // A file that grows while it is read (or reports size 0, as /proc files do) is still cut
    // at the cap.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(max + 1).read_to_end(&mut bytes)?;
    let read = bytes.len() as u64;
    if read > max {
        return Err(FileError::TooLarge { size: read, max });
    }
    Ok(bytes)
}

/// The regular file at `path`, opened without blocking, at most `max` bytes when opened.
fn open_within(path: &Path, max: u64) -> Result<File, FileError> {
    // Looked at before opening: opening a FIFO for reading blocks until a writer comes.
    check(&std::fs::metadata(path)?, max)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Should the path be swapped for a FIFO after the look, the open still returns at
        // once; the second look below then refuses it.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file: File = options.open(path)?;
    check(&file.metadata()?, max)?;
    Ok(file)
}

/// [`read_bytes`] as UTF-8 text.
///
/// # Errors
/// As [`read_bytes`], or not UTF-8.
pub fn read_text(path: &Path) -> Result<String, FileError> {
    String::from_utf8(read_bytes(path)?).map_err(|_| FileError::NotText)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_lists_each_file_read_once_unreadable_ones_too_and_nests() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, missing) = (
            dir.path().join("a.pem"),
            dir.path().join("b.pem"),
            dir.path().join("missing.pem"),
        );
        std::fs::write(&a, "a").unwrap();
        std::fs::write(&b, "b").unwrap();
        let (inner, outer) = recording_reads(|| {
            read_bytes(&a).unwrap();
            let (_, inner) = recording_reads(|| {
                read_text(&b).unwrap();
                read_bytes(&a).unwrap();
            });
            assert!(read_bytes(&missing).is_err());
            read_bytes(&a).unwrap();
            inner
        });
        assert_eq!(inner, [b.clone(), a.clone()]);
        assert_eq!(outer, [a.clone(), b, missing]);
        // Outside a recording nothing is kept.
        read_bytes(&a).unwrap();
        assert_eq!(recording_reads(|| ()).1, Vec::<PathBuf>::new());
    }

    #[test]
    fn refuses_what_is_not_a_small_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.toml");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let zero = dir.path().join("zero.toml");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let sub = dir.path().join("dir.toml");
        std::fs::create_dir(&sub).unwrap();
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
        let ok = dir.path().join("ok.toml");
        std::fs::write(&ok, "a = 1\n").unwrap();
        let bin = dir.path().join("bin.toml");
        std::fs::write(&bin, [0xff, 0xfe]).unwrap();
        for (path, want) in [
            (&fifo, "not a regular file (a FIFO)"),
            (&zero, "not a regular file (a character device)"),
            (&sub, "not a regular file (a directory)"),
            (&big, "larger than 4 MiB (4194305 bytes)"),
            (&bin, "not UTF-8 text"),
            (&dir.path().join("missing.toml"), "No such file"),
        ] {
            let e = read_text(path).unwrap_err().to_string();
            assert!(e.contains(want), "{}: {e}", path.display());
        }
        assert_eq!(read_text(&ok).unwrap(), "a = 1\n");
        // State files: the same refusals, a larger cap, and a missing file told apart.
        let e = open_state(&fifo).unwrap_err().to_string();
        assert!(e.contains("not a regular file (a FIFO)"), "{e}");
        let mut read = Vec::new();
        open_state(&big).unwrap().read_to_end(&mut read).unwrap();
        assert_eq!(read.len(), MAX_FILE_BYTES as usize + 1);
        assert!(matches!(
            open_state(&dir.path().join("missing")),
            Err(FileError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound
        ));
        let huge = dir.path().join("huge.json");
        std::fs::File::create(&huge)
            .unwrap()
            .set_len(MAX_STATE_BYTES + 1)
            .unwrap();
        let e = open_state(&huge).unwrap_err().to_string();
        assert!(e.contains("larger than 64 MiB"), "{e}");
    }
}
