//! Shutdown: one signal (SIGTERM or Ctrl-C) fanned out to every task, as mini-redis does it.

use std::future::Future;

/// Starts listening for SIGTERM and SIGINT (Ctrl-C) now, and resolves on the first one.
///
/// The handlers are installed by this call, not when the future is first polled: a signal
/// that arrives between start-up's "running" line and the first poll of a spawned task would
/// otherwise meet the default action and kill the process (exit by signal, nothing flushed).
pub fn listen() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async fn on(signal: Option<Signal>) {
            match signal {
                Some(mut s) => {
                    s.recv().await;
                }
                // Not installable (no signal driver): this one never comes.
                None => std::future::pending().await,
            }
        }
        async move {
            tokio::select! {
                _ = on(term) => {}
                _ = on(int) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C), listening from the first poll on: for callers that
/// await it at once.
pub async fn signal() {
    listen().await
}
