//! Captures the library's log lines inside a test, on the test's own thread, without losing
//! lines to tracing's per-callsite cache when other tests run alongside.
//!
//! Why the pinned dispatchers: tracing caches, per log statement ("callsite"), whether anyone
//! wants it, the first time any thread reaches it. While exactly one `Dispatch` is registered in
//! the process (a lone capture), tracing-core 0.1 asks only the *current thread's* subscriber
//! (the `has_just_one` short path, tokio-rs/tracing#3611). So when another test's thread, which
//! has no subscriber, is the first to reach a statement during the capture, "never" is cached
//! for it and the capture silently misses that line for the rest of the run. The full suite
//! under load did exactly that: the dispatcher's and the test page's failure lines were first
//! reached by neighbouring tests. With two more dispatchers registered for the life of the
//! binary, every first registration asks all live dispatchers (under tracing's registry lock,
//! so it cannot interleave with a capture starting), and the capture sees its lines.

use std::sync::{Arc, Mutex, OnceLock};

use tracing::Dispatch;
use tracing::subscriber::NoSubscriber;

/// Registers two inert dispatchers once per test binary (idempotent, cheap after the first
/// call). `support::init` calls it, so the switch away from the short path happens when the
/// first test starts, long before any capture.
pub fn pin_dispatchers() {
    static PINNED: OnceLock<[Dispatch; 2]> = OnceLock::new();
    PINNED.get_or_init(|| {
        [
            Dispatch::new(NoSubscriber::default()),
            Dispatch::new(NoSubscriber::default()),
        ]
    });
}

/// Log lines (plain text, no colour, debug and up) written on this thread while it lives.
/// Tokio's test runtime runs every task on the test's thread, so that is all the library logs
/// from the code under test; lines from other threads (spawn_blocking, std threads) are not
/// seen.
pub struct Capture {
    buf: Buf,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Capture {
    pub fn start() -> Capture {
        pin_dispatchers();
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        Capture { buf, _guard: guard }
    }

    /// Everything captured so far, and empties the buffer (to check one phase at a time).
    pub fn take(&self) -> String {
        let bytes = std::mem::take(&mut *self.buf.0.lock().unwrap());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
