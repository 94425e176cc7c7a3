//! Runs one parsed command: `dispatch` hands each subcommand to its own function, which calls
//! the library and turns its outcome into an exit code (anyhow only here and in main.rs, the
//! edge).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use joincanary::config;
use joincanary::diag::ProcessEnv;
use joincanary::output::print_stdout;
use joincanary::report::Trigger;

use super::healthcheck::healthcheck;
use super::run::{listener_cap, spawn_sighup_reload};
use super::{Command, ListenArg, OutputFormat, WebConfigArg, eprint_line, given, load};

/// Runs one command to its exit code; an `Err` is printed by `main` and exits 2.
pub(crate) async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Once {
            config,
            probes,
            format,
        } => Ok(once(config.config.as_deref(), &probes, format).await),
        Command::Check {
            config,
            web: WebConfigArg { web_config },
        } => Ok(check(
            config.config.as_deref(),
            given(web_config).as_deref(),
        )),
        Command::Healthcheck {
            config,
            listen: ListenArg { listen },
            web: WebConfigArg { web_config },
            user,
            password_file,
            timeout,
        } => {
            healthcheck(
                config.config.as_deref(),
                given(listen),
                given(web_config).as_deref(),
                given(user),
                given(password_file).as_deref(),
                timeout,
            )
            .await
        }
        Command::Run {
            config,
            listen: ListenArg { listen },
            enable_lifecycle,
            watch_interval,
            web: WebConfigArg { web_config },
            state_dir,
            max_connections,
            probe_threads,
        } => {
            let path = config::config_path(config.config.as_deref());
            let flags = Overrides {
                listen: given(listen),
                state_dir: given(state_dir),
            };
            let Some(plan) = start_plan(&path, &flags, given(web_config), max_connections) else {
                return Ok(ExitCode::from(2));
            };
            let reload = Reloading {
                path,
                flags,
                enable_lifecycle,
                watch_interval,
            };
            run(plan, reload, probe_threads).await
        }
        #[cfg(feature = "sim")]
        Command::Demo { listen } => {
            joincanary::demo::run(listen, joincanary::shutdown::signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::TestPage {
            config,
            pagers,
            wait,
        } => Ok(test_page(config.config.as_deref(), &pagers, wait).await),
        #[cfg(feature = "sim")]
        Command::Sim {
            listen,
            username,
            password,
            redis,
            redis_timeout,
        } => sim(listen, username, password, redis, redis_timeout).await,
    }
}

/// `once`: the named probes (all without names) run once, printed as a table or JSON; 1 when
/// one failed.
async fn once(config: Option<&Path>, probes: &[String], format: OutputFormat) -> ExitCode {
    let Some(plan) = load(config) else {
        return ExitCode::from(2);
    };
    for name in probes {
        if plan.probe(name).is_none() {
            return unknown("probe", name, plan.probes.iter().map(|p| p.name.as_str()));
        }
    }
    let mut runs = Vec::new();
    // The edge: `once` runs on the system's time, as `run` does.
    let clock = joincanary::clock::Clock::system();
    for probe in &plan.probes {
        if probes.is_empty() || probes.contains(&probe.name) {
            runs.push(
                joincanary::flow::run_probe(probe, &plan.region, Trigger::Manual, &clock).await,
            );
        }
    }
    match format {
        OutputFormat::Table => print_stdout(&joincanary::output::table(&runs)),
        OutputFormat::Json => print_stdout(&format!("{}\n", joincanary::output::json(&runs))),
    }
    if runs.iter().all(|r| r.success) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `check`: the config validated, then what an SRE checks next: each probe's next run and
/// where its pages go, the heartbeats; warnings and notes to stderr.
fn check(config: Option<&Path>, web_config: Option<&Path>) -> ExitCode {
    let Some(plan) = load(config) else {
        return ExitCode::from(2);
    };
    if let Some(web_path) = web_config
        && let Err(e) = joincanary::web::WebConfig::load(web_path)
    {
        eprint_line(&format!("error: --web.config.file {e}"));
        return ExitCode::from(2);
    }
    let names: Vec<_> = plan.probes.iter().map(|p| p.name.as_str()).collect();
    let mut out = format!(
        "{}: ok (region {}, {} probe{}: {})\n",
        plan.config_path.display(),
        plan.region,
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        names.join(", ")
    );
    if plan.pagers.is_empty() {
        // Valid (metrics and status still work), but say it where it cannot be missed.
        eprint_line(&format!("warning: {}", joincanary::status::NO_PAGER));
    }
    for q in plan.quiet(chrono::Utc::now()) {
        eprint_line(&format!("warning: {}", q.message));
    }
    // Names a pager must cut or hash to stay within its provider's limits.
    for n in joincanary::alert::limit_notes(&plan.alerts(), &plan.pagers) {
        eprint_line(&format!("note: {n}"));
    }
    // What an SRE checks next: when each probe will run from this region, and where
    // its pages go.
    let now = chrono::Utc::now();
    for p in &plan.probes {
        let jitter = chrono::Duration::from_std(p.jitter).unwrap_or_default();
        let next = p.schedule.next_after(now - jitter).map(|t| t + jitter);
        let pagers = match &p.alerting.pagers {
            Some(list) => list.join(", "),
            None if plan.pagers.is_empty() => "nobody (no pager configured)".to_string(),
            None => plan
                .pagers
                .iter()
                .map(|x| x.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        };
        if let Some(r) = &p.resident {
            out.push_str(&format!(
                "  {}: resident, an exchange every {} (deadline {}, {}) on a session of {} (setup deadline {}), rotated after {}, keepalive {}, reconnect backoff {}..{}, pages to {}\n",
                p.name,
                human(r.every),
                human(p.timeout),
                steps(r.exchange.len()),
                steps(p.steps.len()),
                human(r.setup_timeout),
                human(r.max_session_age),
                human(r.keepalive),
                human(r.reconnect_min),
                human(r.reconnect_max),
                pagers
            ));
            continue;
        }
        // The offset is computed (a hash), not written, so it reads as a measurement.
        let jitter = if p.jitter.is_zero() {
            "no jitter".to_string()
        } else {
            format!("+ {} jitter", joincanary::report::human_duration(p.jitter))
        };
        out.push_str(&format!(
            "  {}: `{}` {}, deadline {}, {}, next run {}, pages to {}\n",
            p.name,
            p.schedule.expr,
            jitter,
            human(p.timeout),
            steps(p.steps.len()),
            next.map_or_else(
                || "never".to_string(),
                // To the second: a person compares it with a clock, and milliseconds would
                // promise a precision the timer (and the host's load) does not keep.
                |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
            ),
            pagers
        ));
    }
    // The dead man's switches, without their URLs or keys.
    for hb in &plan.heartbeats {
        out.push_str(&format!(
            "  heartbeat {}: {} every {}, timeout {}\n",
            hb.name,
            hb.target.kind(),
            human(hb.interval),
            human(hb.timeout),
        ));
    }
    print_stdout(&out);
    ExitCode::SUCCESS
}

/// A configured duration as the config spells it (`20s`, `1m`, `1h 30m`), so `check` shows
/// every key the way it was written, whatever the line.
fn human(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// `1 step`, `5 steps`.
fn steps(n: usize) -> String {
    format!("{n} step{}", if n == 1 { "" } else { "s" })
}

/// `error: no {what} named `{name}` (configured: …)`, exit code 2.
fn unknown<'a>(what: &str, name: &str, known: impl Iterator<Item = &'a str>) -> ExitCode {
    let known: Vec<_> = known.collect();
    eprint_line(&format!(
        "error: no {what} named `{name}` (configured: {})",
        known.join(", ")
    ));
    ExitCode::from(2)
}

/// `--web.listen-address` and `--state.dir` (or their environment variables) over the file,
/// at start and at every reload.
#[derive(Clone)]
struct Overrides {
    listen: Option<std::net::SocketAddr>,
    state_dir: Option<PathBuf>,
}

impl Overrides {
    fn apply(&self, plan: &mut config::Plan) {
        if let Some(addr) = self.listen {
            plan.listen = addr;
        }
        if let Some(dir) = &self.state_dir {
            plan.state_dir = dir.clone();
        }
    }
}

/// `run`'s plan: the config with the flags over it, the listener's cap and the web config;
/// `None` when either file is unusable (its problems printed).
fn start_plan(
    path: &Path,
    flags: &Overrides,
    web_config: Option<PathBuf>,
    max_connections: usize,
) -> Option<config::Plan> {
    let mut plan = load(Some(path))?;
    plan.web_limits.max_connections = listener_cap(max_connections, &plan.region);
    flags.apply(&mut plan);
    if let Some(web_path) = &web_config {
        match joincanary::web::WebConfig::load(web_path) {
            Ok(w) => plan.web = Some(w),
            Err(e) => {
                eprint_line(&format!("error: --web.config.file {e}"));
                return None;
            }
        }
    }
    Some(plan)
}

/// How `run` reloads: SIGHUP, `POST /-/reload` with `--web.enable-lifecycle`, and the file
/// watcher, each reading `path` again with the flags kept over it.
struct Reloading {
    path: PathBuf,
    flags: Overrides,
    enable_lifecycle: bool,
    watch_interval: std::time::Duration,
}

impl Reloading {
    /// Starts listening for SIGHUP (once `run` listens for SIGTERM).
    fn start(self) -> joincanary::service::Reload {
        let Reloading {
            path,
            flags,
            enable_lifecycle,
            watch_interval,
        } = self;
        let (sender, requests) = tokio::sync::mpsc::channel(4);
        spawn_sighup_reload(sender.clone());
        joincanary::service::Reload {
            loader: Box::new(move || {
                config::load(&path, &ProcessEnv).map(|mut p| {
                    // The flags keep winning over the file, so a reload does not warn
                    // that `listen` or `state_dir` changed.
                    flags.apply(&mut p);
                    p
                })
            }),
            requests,
            sender,
            http_endpoint: enable_lifecycle,
            watch: (!watch_interval.is_zero()).then_some(watch_interval),
        }
    }
}

/// `run`: listens, then serves the plan until SIGTERM or Ctrl-C.
async fn run(
    plan: config::Plan,
    reload: Reloading,
    probe_threads: usize,
) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(plan.listen)
        .await
        .with_context(|| format!("cannot listen on {}", plan.listen))?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let trigger = shutdown.clone();
    // Listening before anything is spawned: a SIGTERM right after start-up still stops
    // the service cleanly.
    let stop = joincanary::shutdown::listen();
    tokio::spawn(async move {
        stop.await;
        trigger.cancel();
    });
    let reload = reload.start();
    // A probe's runs stay on one thread (scheduler.rs).
    let runner: Arc<dyn joincanary::scheduler::Runner> = if probe_threads == 0 {
        Arc::new(joincanary::scheduler::FlowRunner)
    } else {
        Arc::new(
            joincanary::scheduler::OnThreads::start(
                joincanary::scheduler::FlowRunner,
                probe_threads,
            )
            .context("cannot start the probe threads")?,
        )
    };
    joincanary::service::serve_reloadable(
        plan,
        listener,
        runner,
        joincanary::clock::Clock::system(),
        shutdown,
        reload,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// `test-page`: a marked trigger and resolve through the named pagers (all without names);
/// 1 when one failed.
async fn test_page(
    config: Option<&Path>,
    pagers: &[String],
    wait: Option<std::time::Duration>,
) -> ExitCode {
    let Some(plan) = load(config) else {
        return ExitCode::from(2);
    };
    if plan.pagers.is_empty() {
        eprint_line(&format!(
            "error: {} configures no [[pager]]",
            plan.config_path.display()
        ));
        return ExitCode::from(2);
    }
    if let Some(name) = pagers
        .iter()
        .find(|n| !plan.pagers.iter().any(|p| &p.name == *n))
    {
        return unknown("pager", name, plan.pagers.iter().map(|p| p.name.as_str()));
    }
    let selected: Vec<_> = plan
        .pagers
        .iter()
        .filter(|p| pagers.is_empty() || pagers.contains(&p.name))
        .cloned()
        .collect();
    let results = joincanary::alert::test_page(
        &selected,
        &plan.region,
        &joincanary::alert::links(plan.status_url.as_deref(), plan.dashboard_url.as_deref()),
        wait,
        joincanary::clock::Clock::system(),
    )
    .await;
    let mut all_ok = true;
    for (name, result) in &results {
        match result {
            Ok(notes) => {
                for note in notes {
                    print_stdout(&format!("{name}: {note}\n"));
                }
                print_stdout(&format!(
                    "{name}: ok (test trigger and resolve delivered)\n"
                ));
            }
            Err(e) => {
                all_ok = false;
                print_stdout(&format!("{name}: FAILED: {e}\n"));
            }
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `sim`: the reference conference server until SIGTERM or Ctrl-C.
#[cfg(feature = "sim")]
async fn sim(
    listen: std::net::SocketAddr,
    username: String,
    password: String,
    redis: Option<String>,
    redis_timeout: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let creds = joincanary::sim::Credentials { username, password };
    let backend = match redis {
        Some(url) => joincanary::sim::Backend::Redis {
            url,
            op_timeout: redis_timeout,
        },
        None => joincanary::sim::Backend::Local,
    };
    let server = joincanary::sim::SimServer::start_with(listen, creds, backend)
        .await
        .with_context(|| format!("sim on {listen}"))?;
    print_stdout(&format!("listening on {}\n", server.base_url()));
    joincanary::shutdown::signal().await;
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
