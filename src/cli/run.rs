//! What `joincanary run` sets up around the service besides the config: the open-files limit
//! and the listener's cap within it, and SIGHUP as a reload request.

/// Raises the open-files limit and fits the listener's cap within it, logging both: the
/// numbers that decide whether a flood of clients can starve the probes.
pub(super) fn listener_cap(requested: usize, region: &str) -> usize {
    match joincanary::process::raise_fd_limit() {
        Ok(fds) => {
            let cap = joincanary::process::connection_cap(requested, fds.soft);
            tracing::info!(
                region,
                open_files_soft = fds.soft,
                open_files_hard = fds.hard,
                open_files_at_start = fds.before,
                max_connections = cap,
                "file descriptor limits"
            );
            if cap < requested {
                tracing::warn!(
                    region,
                    requested,
                    max_connections = cap,
                    open_files = fds.soft,
                    "--web.max-connections lowered to a quarter of the open-files limit, so the probes keep the rest"
                );
            }
            cap
        }
        Err(e) => {
            // Keep the limit the process has; size the cap by it if it can be read at all.
            let soft = rlimit_soft().unwrap_or(1024);
            let cap = joincanary::process::connection_cap(requested, soft);
            tracing::warn!(region, error = %e, open_files = soft, max_connections = cap, "cannot raise the open-files limit");
            cap
        }
    }
}

fn rlimit_soft() -> Option<u64> {
    rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
}

/// SIGHUP asks for a reload, as it does of Prometheus and blackbox_exporter.
pub(super) fn spawn_sighup_reload(
    sender: tokio::sync::mpsc::Sender<joincanary::service::ReloadRequest>,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        // Installed here, before the service logs "running", not in the spawned task: a
        // SIGHUP sent as soon as the service says it runs must reload it, not kill it.
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!(
                "cannot listen for SIGHUP: reload with POST /-/reload or --config.watch-interval"
            );
            return;
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let (reply, answer) = tokio::sync::oneshot::channel();
                if sender.send(reply).await.is_err() {
                    return;
                }
                // The service logs the outcome; the answer only tells us it is done.
                let _ = answer.await;
            }
        });
    }
}
