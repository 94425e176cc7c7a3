//! The `joincanary` command: parse flags, set up logging and TLS, call the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use joincanary::config;
use joincanary::diag::ProcessEnv;
use joincanary::logging;
use joincanary::output::print_stdout;
use joincanary::report::Trigger;

#[derive(Parser)]
#[command(
    name = "joincanary",
    version,
    about = "Synthetic canary for video-conferencing join flows"
)]
struct Cli {
    /// Log format: `text` for terminals, `logfmt` or `json` (one object per line) for log
    /// pipelines, as Prometheus exporters write them.
    #[arg(long = "log.format", alias = "log-format", global = true, value_enum, default_value_t = LogFormat::Text, env = "JOINCANARY_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log level: `debug`, `info`, `warn`, `error`, or a filter such as `joincanary=debug,info`.
    #[arg(
        long = "log.level",
        global = true,
        default_value = "info",
        env = "JOINCANARY_LOG"
    )]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Logfmt,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

/// `--config` (or `--config.file`, the exporter spelling) on every command that reads one.
#[derive(clap::Args)]
struct ConfigArg {
    /// The service config: region, listen address, probe files, alerting, pagers
    /// [default: $JOINCANARY_CONFIG, else config/joincanary.toml]
    #[arg(long, visible_alias = "config.file", value_name = "PATH")]
    config: Option<PathBuf>,
}

/// `--web.listen-address` on `run` and `healthcheck`: the flag, else `JOINCANARY_LISTEN`, else
/// the config's `listen`, else 127.0.0.1:9464.
#[derive(clap::Args)]
struct ListenArg {
    /// Address for metrics, status and health endpoints; overrides `listen` in the config (the
    /// container image sets JOINCANARY_LISTEN=0.0.0.0:9464).
    #[arg(long = "web.listen-address", value_name = "ADDR", env = "JOINCANARY_LISTEN", value_parser = or_unset::<std::net::SocketAddr>)]
    listen: Option<OrUnset<std::net::SocketAddr>>,
}

/// A flag's value where empty means not given, as an empty `${VAR}` counts as unset in the
/// config: `-e JOINCANARY_LISTEN=` hands the address back to the config file.
#[derive(Clone)]
struct OrUnset<T>(Option<T>);

fn or_unset<T: std::str::FromStr>(text: &str) -> Result<OrUnset<T>, String>
where
    T::Err: std::fmt::Display,
{
    if text.is_empty() {
        return Ok(OrUnset(None));
    }
    text.parse::<T>()
        .map(|v| OrUnset(Some(v)))
        .map_err(|e| e.to_string())
}

/// The value of an [`OrUnset`] flag.
fn given<T>(flag: Option<OrUnset<T>>) -> Option<T> {
    flag.and_then(|f| f.0)
}

/// `--web.config.file` on `run`, `check` and `healthcheck` (one variable sets it for the
/// service and its container health check alike).
#[derive(clap::Args)]
struct WebConfigArg {
    /// TLS and basic auth for every endpoint, in the Prometheus exporter-toolkit format
    /// (`tls_server_config`, `basic_auth_users` with bcrypt hashes); `run` reads it at start-up.
    #[arg(
        long = "web.config.file",
        value_name = "PATH",
        env = "JOINCANARY_WEB_CONFIG_FILE",
        value_parser = or_unset::<PathBuf>
    )]
    web_config: Option<OrUnset<PathBuf>>,
}

#[derive(Subcommand)]
enum Command {
    /// Run each selected probe once and report (exit 0 all passed, 1 any failed, 2 bad config).
    Once {
        #[command(flatten)]
        config: ConfigArg,
        /// Run only this probe (repeatable).
        #[arg(long = "probe")]
        probes: Vec<String>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Validate the config and every probe file without sending traffic (exit 0 or 2).
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Also checked (TLS files, bcrypt hashes), as `run` would read it.
        #[command(flatten)]
        web: WebConfigArg,
    },
    /// Ask the `joincanary run` on this host for `/healthz` as it is configured (listen address,
    /// TLS, basic auth), within a short deadline: exit 0 healthy, 1 not. The container's
    /// HEALTHCHECK.
    Healthcheck {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        listen: ListenArg,
        #[command(flatten)]
        web: WebConfigArg,
        /// User for basic auth, when the web config lists users.
        #[arg(long, env = "JOINCANARY_HEALTHCHECK_USER", value_parser = or_unset::<String>)]
        user: Option<OrUnset<String>>,
        /// A file holding that user's password (a mounted secret; trailing newline ignored).
        #[arg(
            long = "password-file",
            value_name = "PATH",
            env = "JOINCANARY_HEALTHCHECK_PASSWORD_FILE",
            value_parser = or_unset::<PathBuf>
        )]
        password_file: Option<OrUnset<PathBuf>>,
        /// Deadline for the whole check: connect, TLS, request and answer.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Run every probe on its schedule, serve /metrics and the status API, until SIGTERM.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        listen: ListenArg,
        /// Serve `POST /-/reload` (SIGHUP always reloads).
        #[arg(long = "web.enable-lifecycle")]
        enable_lifecycle: bool,
        #[command(flatten)]
        web: WebConfigArg,
        /// Where alert state, the outbox and the status history are kept; overrides `state_dir`
        /// in the config (relative to the working directory; the container image sets
        /// JOINCANARY_STATE_DIR=/var/lib/joincanary).
        #[arg(long = "state.dir", value_name = "DIR", env = "JOINCANARY_STATE_DIR", value_parser = or_unset::<PathBuf>)]
        state_dir: Option<OrUnset<PathBuf>>,
        /// Reload when the config or probe files change (e.g. a mounted ConfigMap), looking
        /// this often; `0s` turns it off.
        #[arg(long = "config.watch-interval", default_value = "5s", env = "JOINCANARY_CONFIG_WATCH_INTERVAL", value_parser = joincanary::diag::parse_flag_duration)]
        watch_interval: std::time::Duration,
        /// Connections the listener serves at once; more are closed as they arrive. Capped at a
        /// quarter of the open-files limit, so the probes always have descriptors.
        #[arg(long = "web.max-connections", value_name = "N", default_value_t = joincanary::web::DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// Threads that run the probes, each probe (its timer, runs and sockets) on one of
        /// them, apart from metrics, status and pagers, so a scrape never delays a run. One
        /// thread shares its wake-ups among the most runs (the least CPU per run, measured in
        /// BENCHMARKS.md); more raise the ceiling past one core. `0`: on the service's own thread.
        #[arg(
            long = "probe.threads",
            value_name = "N",
            default_value_t = 1,
            env = "JOINCANARY_PROBE_THREADS"
        )]
        probe_threads: usize,
    },
    /// The whole thing on the embedded default: a reference server in-process, the shipped
    /// probe against it every few seconds, metrics and status on 127.0.0.1. Ctrl-C stops it.
    #[cfg(feature = "sim")]
    Demo {
        /// Address for metrics and status (falls back to a free port if taken).
        #[arg(
            long,
            visible_alias = "web.listen-address",
            default_value = "127.0.0.1:9464"
        )]
        listen: std::net::SocketAddr,
    },
    /// Send a clearly marked test trigger and resolve through each configured pager.
    TestPage {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this pager (repeatable).
        #[arg(long = "pager")]
        pagers: Vec<String>,
        /// Alertmanager pagers: keep the test alert firing this long before resolving it, so
        /// Alertmanager notifies (default: the route's group_wait read from Alertmanager plus
        /// 3 s, else 40 s). Other pagers resolve at once.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        wait: Option<std::time::Duration>,
    },
    /// Run the reference conference server.
    #[cfg(feature = "sim")]
    Sim {
        /// Address to listen on (port 0 picks a free port).
        #[arg(
            long,
            visible_alias = "web.listen-address",
            default_value = "127.0.0.1:7480"
        )]
        listen: std::net::SocketAddr,
        #[arg(long, default_value = "canary")]
        username: String,
        #[arg(
            long,
            default_value = "canary-pass",
            env = "SIM_PASSWORD",
            hide_env_values = true
        )]
        password: String,
        /// Run signalling on this Redis (`redis://[:password@]host:port[/db]`): presence in
        /// Redis, joins through PUBLISH/SUBSCRIBE, so sims sharing a Redis see each other's joins.
        #[arg(long, env = "SIM_REDIS_URL", hide_env_values = true)]
        redis: Option<String>,
        /// Deadline of each Redis operation (a join past it is answered with an error frame).
        #[arg(long, default_value = "2s", value_parser = joincanary::diag::parse_flag_duration)]
        redis_timeout: std::time::Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match cli.log_format {
        LogFormat::Text => logging::Format::Text,
        LogFormat::Logfmt => logging::Format::Logfmt,
        LogFormat::Json => logging::Format::Json,
    };
    if let Err(e) = logging::init(format, &cli.log_level) {
        eprint_line(&format!("error: {e}"));
        return ExitCode::from(2);
    }
    // One crypto provider for reqwest, tokio-tungstenite and lettre alike: two would panic at
    // the first TLS connection.
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        tracing::debug!("a rustls crypto provider was already installed");
    }
    // `run` keeps its probes on probe threads of their own (scheduler::OnThreads), so what is
    // left (metrics, status, alerting, pagers) needs one thread, and a run's result wakes one
    // thread, not a pool; `once` runs its flows right here. The sim and the demo serve many
    // clients at once: a thread per core.
    let runtime = if matches!(cli.command, Command::Run { .. } | Command::Once { .. }) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprint_line(&format!("error: cannot start the async runtime: {e}"));
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(dispatch(cli.command));
    // Everything that must finish (runs, state, outbox, history) was awaited inside `dispatch`.
    // What may remain are blocking threads stuck in getaddrinfo for a resolver that never
    // answers, or in a read on a hung mount: dropping the runtime would wait for them, holding
    // `once` or a SIGTERM past the deadline (by seconds, or forever). Leave them to the exit.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprint_line(&format!("error: {e:#}"));
            ExitCode::from(2)
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Once {
            config,
            probes,
            format,
        } => {
            let Some(plan) = load(config.config.as_deref()) else {
                return Ok(ExitCode::from(2));
            };
            for name in &probes {
                if plan.probe(name).is_none() {
                    let known: Vec<_> = plan.probes.iter().map(|p| p.name.as_str()).collect();
                    eprint_line(&format!(
                        "error: no probe named `{name}` (configured: {})",
                        known.join(", ")
                    ));
                    return Ok(ExitCode::from(2));
                }
            }
            let mut runs = Vec::new();
            // The edge: `once` runs on the system's time, as `run` does.
            let clock = joincanary::clock::Clock::system();
            for probe in &plan.probes {
                if probes.is_empty() || probes.contains(&probe.name) {
                    runs.push(
                        joincanary::flow::run_probe(probe, &plan.region, Trigger::Manual, &clock)
                            .await,
                    );
                }
            }
            match format {
                OutputFormat::Table => print_stdout(&joincanary::output::table(&runs)),
                OutputFormat::Json => {
                    print_stdout(&format!("{}\n", joincanary::output::json(&runs)))
                }
            }
            Ok(if runs.iter().all(|r| r.success) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Check {
            config,
            web: WebConfigArg { web_config },
        } => {
            let Some(plan) = load(config.config.as_deref()) else {
                return Ok(ExitCode::from(2));
            };
            if let Some(web_path) = &given(web_config)
                && let Err(e) = joincanary::web::WebConfig::load(web_path)
            {
                eprint_line(&format!("error: --web.config.file {e}"));
                return Ok(ExitCode::from(2));
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
                    None if plan.pagers.is_empty() => "none configured".to_string(),
                    None => plan
                        .pagers
                        .iter()
                        .map(|x| x.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                if let Some(r) = &p.resident {
                    let human = |d| humantime::format_duration(d).to_string();
                    out.push_str(&format!(
                        "  {}: resident, an exchange every {} (deadline {}, {} steps) on a session of {} steps (setup deadline {}), rotated after {}, keepalive {}, reconnect backoff {}..{}, pages to {}\n",
                        p.name,
                        human(r.every),
                        human(p.timeout),
                        r.exchange.len(),
                        p.steps.len(),
                        human(r.setup_timeout),
                        human(r.max_session_age),
                        human(r.keepalive),
                        human(r.reconnect_min),
                        human(r.reconnect_max),
                        pagers
                    ));
                    continue;
                }
                out.push_str(&format!(
                    "  {}: `{}` + {} jitter, deadline {}, {} steps, next run {}, pages to {}\n",
                    p.name,
                    p.schedule.expr,
                    joincanary::report::human_duration(p.jitter),
                    joincanary::report::human_duration(p.timeout),
                    p.steps.len(),
                    next.map_or_else(
                        || "never".to_string(),
                        |t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()
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
                    joincanary::report::human_duration(hb.interval),
                    joincanary::report::human_duration(hb.timeout),
                ));
            }
            print_stdout(&out);
            Ok(ExitCode::SUCCESS)
        }
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
            let Some(mut plan) = load(Some(&path)) else {
                return Ok(ExitCode::from(2));
            };
            plan.web_limits.max_connections = listener_cap(max_connections, &plan.region);
            let (listen, state_dir, web_config) =
                (given(listen), given(state_dir), given(web_config));
            // Flag (or its environment variable) over the file, at start and at every reload.
            let overrides = move |plan: &mut config::Plan| {
                if let Some(addr) = listen {
                    plan.listen = addr;
                }
                if let Some(dir) = &state_dir {
                    plan.state_dir = dir.clone();
                }
            };
            overrides(&mut plan);
            if let Some(web_path) = &web_config {
                match joincanary::web::WebConfig::load(web_path) {
                    Ok(w) => plan.web = Some(w),
                    Err(e) => {
                        eprint_line(&format!("error: --web.config.file {e}"));
                        return Ok(ExitCode::from(2));
                    }
                }
            }
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
            let (sender, requests) = tokio::sync::mpsc::channel(4);
            spawn_sighup_reload(sender.clone());
            let reload = joincanary::service::Reload {
                loader: Box::new(move || {
                    config::load(&path, &ProcessEnv).map(|mut p| {
                        // The flags keep winning over the file, so a reload does not warn
                        // that `listen` or `state_dir` changed.
                        overrides(&mut p);
                        p
                    })
                }),
                requests,
                sender,
                http_endpoint: enable_lifecycle,
                watch: (!watch_interval.is_zero()).then_some(watch_interval),
            };
            // A probe's runs stay on one thread (scheduler.rs).
            let threads = probe_threads;
            let runner: std::sync::Arc<dyn joincanary::scheduler::Runner> = if threads == 0 {
                std::sync::Arc::new(joincanary::scheduler::FlowRunner)
            } else {
                std::sync::Arc::new(
                    joincanary::scheduler::OnThreads::start(
                        joincanary::scheduler::FlowRunner,
                        threads,
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
        #[cfg(feature = "sim")]
        Command::Demo { listen } => {
            joincanary::demo::run(listen, joincanary::shutdown::signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::TestPage {
            config,
            pagers,
            wait,
        } => {
            let Some(plan) = load(config.config.as_deref()) else {
                return Ok(ExitCode::from(2));
            };
            if plan.pagers.is_empty() {
                eprint_line(&format!(
                    "error: {} configures no [[pager]]",
                    plan.config_path.display()
                ));
                return Ok(ExitCode::from(2));
            }
            if let Some(unknown) = pagers
                .iter()
                .find(|n| !plan.pagers.iter().any(|p| &p.name == *n))
            {
                let known: Vec<_> = plan.pagers.iter().map(|p| p.name.as_str()).collect();
                eprint_line(&format!(
                    "error: no pager named `{unknown}` (configured: {})",
                    known.join(", ")
                ));
                return Ok(ExitCode::from(2));
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
                &joincanary::alert::links(
                    plan.status_url.as_deref(),
                    plan.dashboard_url.as_deref(),
                ),
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
            Ok(if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        #[cfg(feature = "sim")]
        Command::Sim {
            listen,
            username,
            password,
            redis,
            redis_timeout,
        } => {
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
    }
}

/// `joincanary healthcheck`: exit 0 when `/healthz` answers 200 within `timeout`, 1 otherwise
/// (Docker reserves 2), one line saying which.
async fn healthcheck(
    config_flag: Option<&std::path::Path>,
    listen: Option<std::net::SocketAddr>,
    web_config: Option<&std::path::Path>,
    user: Option<String>,
    password_file: Option<&std::path::Path>,
    timeout: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let unhealthy = |message: String| {
        eprint_line(&format!("unhealthy: {message}"));
        Ok(ExitCode::from(1))
    };
    let addr = match listen {
        Some(a) => a,
        None => match config::listen_address(&config::config_path(config_flag), &ProcessEnv) {
            Ok(a) => a,
            Err(e) => return unhealthy(e.to_string()),
        },
    };
    let web = match web_config.map(joincanary::web::WebConfig::load) {
        None => None,
        Some(Ok(w)) => Some(w),
        Some(Err(e)) => return unhealthy(format!("--web.config.file {e}")),
    };
    let credentials = match (user, password_file) {
        (Some(u), Some(file)) => match joincanary::diag::file::read_text(file) {
            Ok(p) => Some((u, p.trim_end_matches(['\r', '\n']).to_string())),
            Err(e) => return unhealthy(format!("--password-file {}: {e}", file.display())),
        },
        (None, None) => None,
        _ => {
            return unhealthy(
                "basic auth needs both a user and a password file (JOINCANARY_HEALTHCHECK_USER and JOINCANARY_HEALTHCHECK_PASSWORD_FILE)".into(),
            );
        }
    };
    let target = joincanary::healthcheck::Target {
        addr,
        pinned: web.as_ref().and_then(|w| w.served_certificate().cloned()),
        credentials,
        auth_required: web.as_ref().is_some_and(joincanary::web::WebConfig::auth),
    };
    match joincanary::healthcheck::check(&target, timeout).await {
        Ok(h) => {
            print_stdout(&format!(
                "ok: {} answered 200 in {}\n",
                h.url,
                joincanary::report::human_duration(h.took)
            ));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => unhealthy(e.to_string()),
    }
}

/// Raises the open-files limit and fits the listener's cap within it, logging both: the
/// numbers that decide whether a flood of clients can starve the probes.
fn listener_cap(requested: usize, region: &str) -> usize {
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
fn spawn_sighup_reload(sender: tokio::sync::mpsc::Sender<joincanary::service::ReloadRequest>) {
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

/// Loads the plan or prints every problem (file:line:col: key: message) and returns `None`.
fn load(flag: Option<&std::path::Path>) -> Option<config::Plan> {
    let path = config::config_path(flag);
    match config::load(&path, &ProcessEnv) {
        Ok(plan) => Some(plan),
        Err(errors) => {
            let text: String = errors.0.iter().map(|e| format!("error: {e}\n")).collect();
            joincanary::output::print_stderr(&text);
            None
        }
    }
}

/// One line to stderr; a closed stderr is ignored (`eprintln!` would panic).
fn eprint_line(line: &str) {
    joincanary::output::print_stderr(&format!("{line}\n"));
}
