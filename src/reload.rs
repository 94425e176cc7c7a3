//! Reloading the configuration while `run` runs: requests (SIGHUP, `POST /-/reload`) and
//! changed files (`--watch`), each read off the async threads under a deadline, so a hung mount
//! can neither stall the service nor strand more than one thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Plan;
use crate::config::fingerprint::Fingerprinter;
use crate::server::ReloadRequest;
use crate::supervise::{Supervisor, Task};

/// How long a reload may take to read and check the files (a hung network mount otherwise
/// holds the reload, and with it every later one, forever).
const RELOAD_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the file watcher may take to read the files for one look.
const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Where reloads come from: requests (SIGHUP, `POST /-/reload`) and, when watching, changed
/// files. Without a [`Reload`], nothing: the service runs until shutdown.
pub(crate) struct Reloads {
    requests: Option<mpsc::Receiver<ReloadRequest>>,
    loader: Option<Loader>,
    watch_tick: Option<tokio::time::Interval>,
    /// The files' fingerprint when last looked at (watching only).
    seen: Option<u64>,
    /// The running plan's files and their fingerprint taken just before the last load began
    /// (watching only): what that load may have read, at the latest.
    before_load: Option<(Vec<std::path::PathBuf>, u64)>,
    /// What the watcher remembers of each file between looks (one look at a time: `watching`).
    fingerprinter: Arc<Mutex<Fingerprinter>>,
    /// At most one read of the files in flight for each of these: a read stuck on a hung
    /// mount keeps its thread, and a second one would only strand another.
    watching: Arc<AtomicBool>,
    loading: Arc<AtomicBool>,
    /// Where a look that panicked is reported (task `reload`, instance `config watcher`).
    tasks: Supervisor,
    /// The listener's web config (`--web.config.file`): its files are watched too, and every
    /// reload reads its TLS certificate, key and client CAs again (a renewed certificate).
    web: Option<crate::web::WebConfig>,
    refreshing_web: Arc<AtomicBool>,
}

/// The watcher's instance name in `/-/ready` and the log.
const WATCHER: &str = "config watcher";

impl Reloads {
    /// Also returns the sender `POST /-/reload` uses, when that endpoint is on.
    pub(crate) async fn new(
        reload: Option<Reload>,
        plan: &Plan,
        tasks: &Supervisor,
    ) -> (Reloads, Option<mpsc::Sender<ReloadRequest>>) {
        let (requests, reload_tx, loader, watch): (_, _, Option<Loader>, _) = match reload {
            Some(r) => (
                Some(r.requests),
                r.http_endpoint.then_some(r.sender),
                Some(Arc::from(r.loader)),
                r.watch,
            ),
            None => (None, None, None, None),
        };
        let watch_tick = watch.map(|every| {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut reloads = Reloads {
            requests,
            loader,
            watch_tick,
            seen: None,
            before_load: None,
            fingerprinter: Arc::default(),
            watching: Arc::new(AtomicBool::new(false)),
            loading: Arc::new(AtomicBool::new(false)),
            tasks: tasks.clone(),
            web: plan.web.clone(),
            refreshing_web: Arc::new(AtomicBool::new(false)),
        };
        reloads.loaded(plan).await;
        (reloads, reload_tx)
    }

    /// Waits for the next reason to reload: `Some(Some(reply))` for a request,
    /// `Some(None)` for changed files; `None` once `shutdown` is cancelled.
    pub(crate) async fn next(
        &mut self,
        shutdown: &CancellationToken,
        plan: &Plan,
    ) -> Option<Option<ReloadRequest>> {
        loop {
            let request = tokio::select! {
                () = shutdown.cancelled() => return None,
                Some(reply) = async {
                    match self.requests.as_mut() {
                        Some(r) => r.recv().await,
                        None => std::future::pending().await,
                    }
                } => Some(reply),
                _ = async {
                    match self.watch_tick.as_mut() {
                        Some(t) => t.tick().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = self.fingerprint(plan).await;
                    if now.is_none() || now == self.seen {
                        continue;
                    }
                    // Remembered even if the reload is refused: a broken file is reported
                    // once, and the next change is tried again.
                    self.seen = now;
                    tracing::info!(region = %plan.region, "configuration files changed; reloading");
                    None
                }
            };
            if self.loader.is_some() {
                return Some(request);
            }
        }
    }

    /// Reads and checks the files again, off the async threads and raced against shutdown:
    /// whatever the files do (a hung mount), SIGTERM still stops the service, and the running
    /// config stays. `None`: shutting down.
    pub(crate) async fn load(
        &mut self,
        shutdown: &CancellationToken,
        plan: &Plan,
        tasks: &Supervisor,
    ) -> Option<Result<Plan, crate::diag::ConfigErrors>> {
        let loader = self.loader.clone()?;
        self.before_load = None;
        if self.watch_tick.is_some()
            && let Some(h) = self.fingerprint(plan).await
        {
            self.before_load = Some((plan.sources.clone(), h));
        }
        tokio::select! {
            () = shutdown.cancelled() => {
                tracing::warn!(region = %plan.region, "shutting down while the configuration was being read; the reload is abandoned");
                None
            }
            loaded = async {
                // A web config that became unusable refuses the reload as a broken config
                // file does: the listener keeps its certificate and the running config stays.
                self.refresh_web(&plan.region).await?;
                load_plan(loader, &self.loading, &plan.config_path, tasks).await
            } => Some(loaded),
        }
    }

    /// Reads the web config's TLS files again ([`crate::web::WebConfig::refresh_tls`]) off the
    /// async threads, under the reload's deadline.
    async fn refresh_web(&mut self, region: &str) -> Result<(), crate::diag::ConfigErrors> {
        let Some(web) = self.web.clone().filter(crate::web::WebConfig::tls) else {
            return Ok(());
        };
        let path = web.files().first().cloned().unwrap_or_default();
        let refused = |message: String| {
            crate::diag::ConfigErrors(vec![crate::diag::ConfigError {
                file: path.clone(),
                line: 0,
                column: 0,
                key: None,
                message,
            }])
        };
        let refreshed = off_thread(&self.refreshing_web, RELOAD_READ_TIMEOUT, move || {
            let mut web = web;
            let outcome = web.refresh_tls();
            (web, outcome)
        })
        .await;
        match refreshed {
            Ok((web, Ok(changed))) => {
                if changed {
                    tracing::info!(region = %region, file = %path.display(), "the listener's certificate changed on disk; new connections get the new one");
                }
                self.web = Some(web);
                Ok(())
            }
            Ok((_, Err(e))) => Err(match e {
                crate::web::WebConfigError::Invalid {
                    path,
                    line,
                    column,
                    message,
                } => crate::diag::ConfigErrors(vec![crate::diag::ConfigError {
                    file: path,
                    line,
                    column,
                    key: None,
                    message: format!("{message} (the listener keeps its certificate)"),
                }]),
                crate::web::WebConfigError::Read { path, source } => {
                    crate::diag::ConfigErrors(vec![crate::diag::ConfigError {
                        file: path,
                        line: 0,
                        column: 0,
                        key: None,
                        message: format!(
                            "cannot read: {source} (the listener keeps its certificate)"
                        ),
                    }])
                }
            }),
            Err(stuck) => Err(refused(format!(
                "cannot read the web config again: {}",
                stuck.describe(RELOAD_READ_TIMEOUT)
            ))),
        }
    }

    /// `plan` is running: when watching, its files' fingerprint is the one to compare with.
    /// That is the one taken before the load read them, not one taken now: a file changed
    /// while the load was reading (Kubernetes swaps the config and the probes ConfigMaps each
    /// on its own, seconds apart) would otherwise count as seen and never be reloaded. A change
    /// that landed just before the read is then reloaded once more, the same files again:
    /// harmless. Only when the new plan reads other files (a probe directory added) is the
    /// fingerprint of those taken now.
    pub(crate) async fn loaded(&mut self, plan: &Plan) {
        if self.watch_tick.is_some() {
            self.seen = match self.before_load.take() {
                Some((sources, h)) if sources == plan.sources => Some(h),
                _ => self.fingerprint(plan).await,
            };
        }
    }

    /// [`Fingerprinter::look`] at `plan`'s files off the async threads and under a deadline (a
    /// hung network mount must not stall the service); `None` when it could not be worked out
    /// in time. A look that panics (a bug) is a failing `reload` task, `config watcher`, until
    /// a look succeeds: before, each tick only warned, and the watcher was dead while
    /// `/-/ready` said 200.
    async fn fingerprint(&self, plan: &Plan) -> Option<u64> {
        let fingerprinter = self.fingerprinter.clone();
        let mut sources = plan.sources.clone();
        if let Some(web) = self.web.as_ref().filter(|w| w.tls()) {
            sources.extend(web.files().iter().cloned());
        }
        let config_path = plan.config_path.clone();
        let looked = off_thread(&self.watching, WATCH_READ_TIMEOUT, move || {
            crate::supervise::fault::hit(Task::Reload, config_path.display());
            // A look that panicked left nothing half-done that matters: its memory is only a
            // cache.
            fingerprinter
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .look(&sources)
        })
        .await;
        match looked {
            Ok(h) => {
                self.tasks.recovered(WATCHER);
                Some(h)
            }
            Err(Stuck::Panicked) => {
                self.tasks.failed(
                    Task::Reload,
                    WATCHER,
                    "panicked looking at the configuration files",
                    true,
                );
                None
            }
            Err(stuck) => {
                tracing::warn!(
                    "could not read the configuration files to look for changes: {}",
                    stuck.describe(WATCH_READ_TIMEOUT)
                );
                None
            }
        }
    }
}

/// Loads the configuration with `loader` off the async threads, under [`RELOAD_READ_TIMEOUT`].
/// A load that panicked (a bug) is a failed `reload` task until a load finishes.
async fn load_plan(
    loader: Loader,
    slot: &Arc<AtomicBool>,
    config_path: &std::path::Path,
    tasks: &Supervisor,
) -> Result<Plan, crate::diag::ConfigErrors> {
    let outcome = off_thread(slot, RELOAD_READ_TIMEOUT, move || loader()).await;
    match &outcome {
        Err(Stuck::Panicked) => tasks.failed(
            Task::Reload,
            "reload",
            "panicked reading the configuration",
            true,
        ),
        Ok(_) => tasks.recovered("reload"),
        Err(_) => {}
    }
    match outcome {
        Ok(result) => result,
        Err(stuck) => Err(crate::diag::ConfigErrors(vec![crate::diag::ConfigError {
            file: config_path.to_path_buf(),
            line: 0,
            column: 0,
            key: None,
            message: format!("cannot reload: {}", stuck.describe(RELOAD_READ_TIMEOUT)),
        }])),
    }
}

/// Why [`off_thread`] has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stuck {
    /// The previous read is still going.
    Busy,
    /// This read ran past its deadline (it goes on in its thread).
    TimedOut,
    /// The read panicked (a bug).
    Panicked,
}

impl Stuck {
    fn describe(self, limit: Duration) -> String {
        match self {
            Stuck::Busy => "the previous read of the files has not finished (a hung mount?)".into(),
            Stuck::TimedOut => format!(
                "reading the files did not finish within {} (a hung mount?)",
                crate::report::human_duration(limit)
            ),
            Stuck::Panicked => "reading the files failed unexpectedly (see the log)".into(),
        }
    }
}

/// Runs `work` on the blocking pool under `limit`, one at a time per `slot`. A read stuck in
/// the kernel cannot be cancelled: its thread stays until the read returns, and `slot` stays
/// taken so no second thread is stranded behind it.
async fn off_thread<T: Send + 'static>(
    slot: &Arc<AtomicBool>,
    limit: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Stuck> {
    if slot.swap(true, Ordering::AcqRel) {
        return Err(Stuck::Busy);
    }
    let release = slot.clone();
    let task = tokio::task::spawn_blocking(move || {
        let out = work();
        release.store(false, Ordering::Release);
        out
    });
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(_)) => {
            // The work panicked: nothing holds the slot any more.
            slot.store(false, Ordering::Release);
            Err(Stuck::Panicked)
        }
        Err(_) => Err(Stuck::TimedOut),
    }
}

/// Loads and validates the configuration again (shared with the blocking thread that runs it).
type Loader = Arc<dyn Fn() -> Result<Plan, crate::diag::ConfigErrors> + Send + Sync>;

/// How `run` reloads its configuration (SIGHUP, `POST /-/reload`).
pub struct Reload {
    /// Loads and validates the configuration again.
    pub loader: Box<dyn Fn() -> Result<Plan, crate::diag::ConfigErrors> + Send + Sync>,
    /// Where reload requests arrive.
    pub requests: mpsc::Receiver<ReloadRequest>,
    /// Handed to the HTTP server for `POST /-/reload`.
    pub sender: mpsc::Sender<ReloadRequest>,
    /// Serve `POST /-/reload` (off by default, as Prometheus's `--web.enable-lifecycle`: anyone
    /// who reaches the port could otherwise make the prober restart its schedules at will).
    pub http_endpoint: bool,
    /// Look at the config and probe files this often and reload when what they hold changed
    /// (a mounted ConfigMap updated in place); `None`: only on request.
    pub watch: Option<Duration>,
}
