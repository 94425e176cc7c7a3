//! The command line of this binary: clap's flags and subcommands (`--help` is drawn from them),
//! and the two helpers every command speaks through (load the config or print its problems; one
//! line to stderr). `dispatch.rs` runs a command; `healthcheck.rs` and `run.rs` hold what those
//! two commands need besides. Here, not in the library, so `anyhow` stays at the edge.

pub(crate) mod dispatch;
mod healthcheck;
mod run;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use joincanary::config;
use joincanary::diag::ProcessEnv;

#[derive(Parser)]
#[command(
    name = "joincanary",
    version,
    about = "Synthetic canary for video-conferencing join flows"
)]
pub(crate) struct Cli {
    /// Log format: `text` for terminals, `logfmt` or `json` (one object per line) for log
    /// pipelines, as Prometheus exporters write them.
    #[arg(long = "log.format", alias = "log-format", value_name = "FORMAT", global = true, value_enum, default_value_t = LogFormat::Text, env = "JOINCANARY_LOG_FORMAT")]
    pub(crate) log_format: LogFormat,
    /// Log level: `debug`, `info`, `warn`, `error`, or a filter such as `joincanary=debug,info`.
    #[arg(
        long = "log.level",
        value_name = "LEVEL",
        global = true,
        default_value = "info",
        env = "JOINCANARY_LOG"
    )]
    pub(crate) log_level: String,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Logfmt,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum OutputFormat {
    Table,
    Json,
}

/// `--config` (or `--config.file`, the exporter spelling) on every command that reads one.
#[derive(clap::Args)]
pub(crate) struct ConfigArg {
    /// The service config: region, listen address, probe files, alerting, pagers
    /// [default: $JOINCANARY_CONFIG, else config/joincanary.toml]
    #[arg(long, visible_alias = "config.file", value_name = "PATH")]
    config: Option<PathBuf>,
}

/// `--web.listen-address` on `run` and `healthcheck`: the flag, else `JOINCANARY_LISTEN`, else
/// the config's `listen`, else 127.0.0.1:9464.
#[derive(clap::Args)]
pub(crate) struct ListenArg {
    /// Address for metrics, status and health endpoints; overrides `listen` in the config (the
    /// container image sets JOINCANARY_LISTEN=0.0.0.0:9464).
    #[arg(long = "web.listen-address", value_name = "ADDR", env = "JOINCANARY_LISTEN", value_parser = or_unset::<std::net::SocketAddr>)]
    listen: Option<OrUnset<std::net::SocketAddr>>,
}

/// A flag's value where empty means not given, as an empty `${VAR}` counts as unset in the
/// config: `-e JOINCANARY_LISTEN=` hands the address back to the config file.
#[derive(Clone)]
pub(crate) struct OrUnset<T>(Option<T>);

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
pub(crate) struct WebConfigArg {
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
pub(crate) enum Command {
    /// Run each selected probe once and report (exit 0 all passed, 1 any failed, 2 bad config).
    Once {
        #[command(flatten)]
        config: ConfigArg,
        /// Run only this probe (repeatable).
        #[arg(long = "probe", value_name = "NAME")]
        probes: Vec<String>,
        /// `table` for people; `json` for tools, one document with every run and its steps
        /// (README, "Commands").
        #[arg(long, value_name = "FORMAT", value_enum, default_value_t = OutputFormat::Table)]
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
        #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = timeout_flag)]
        timeout: std::time::Duration,
    },
    /// Run every probe on its schedule, serve /metrics and the status API, until SIGTERM (exit
    /// 0 on a clean stop, 2 on a config error).
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
        #[arg(long = "config.watch-interval", value_name = "DURATION", default_value = "5s", env = "JOINCANARY_CONFIG_WATCH_INTERVAL", value_parser = joincanary::diag::parse_flag_duration)]
        watch_interval: std::time::Duration,
        /// Connections the listener serves at once; more are closed as they arrive. Capped at a
        /// quarter of the open-files limit, so the probes always have descriptors.
        #[arg(long = "web.max-connections", value_name = "N", default_value_t = joincanary::web::DEFAULT_MAX_CONNECTIONS, value_parser = count::<1, MAX_CONNECTIONS>)]
        max_connections: usize,
        /// Threads that run the probes, each probe (its timer, runs and sockets) on one of
        /// them, apart from metrics, status and pagers, so a scrape never delays a run. One
        /// thread shares its wake-ups among the most runs (the least CPU per run, measured in
        /// BENCHMARKS.md); more raise the ceiling past one core. `0`: on the service's own
        /// thread; at most 64.
        #[arg(
            long = "probe.threads",
            value_name = "N",
            default_value_t = 1,
            env = "JOINCANARY_PROBE_THREADS",
            value_parser = count::<0, MAX_PROBE_THREADS>
        )]
        probe_threads: usize,
    },
    /// The whole thing on the embedded default: a reference server in-process, the shipped
    /// probe against it every few seconds, metrics and status on 127.0.0.1. Ctrl-C stops it
    /// (exit 0).
    #[cfg(feature = "sim")]
    Demo {
        /// Address for metrics and status (falls back to a free port if taken).
        #[arg(
            long,
            value_name = "ADDR",
            visible_alias = "web.listen-address",
            default_value = "127.0.0.1:9464"
        )]
        listen: std::net::SocketAddr,
    },
    /// Send a clearly marked test trigger and resolve through each configured pager (exit 0 all
    /// delivered, 1 any failed, 2 bad config).
    TestPage {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this pager (repeatable).
        #[arg(long = "pager", value_name = "NAME")]
        pagers: Vec<String>,
        /// Alertmanager pagers: keep the test alert firing this long before resolving it, so
        /// Alertmanager notifies (default: the route's group_wait read from Alertmanager plus
        /// 3 s, else 40 s). Other pagers resolve at once.
        #[arg(long, value_name = "DURATION", value_parser = joincanary::diag::parse_flag_duration)]
        wait: Option<std::time::Duration>,
    },
    /// Run the reference conference server; its first stdout line is `listening on http://…`
    /// (exit 2 if it cannot listen or reach Redis).
    #[cfg(feature = "sim")]
    Sim {
        /// Address to listen on (port 0 picks a free port).
        #[arg(
            long,
            value_name = "ADDR",
            visible_alias = "web.listen-address",
            default_value = "127.0.0.1:7480"
        )]
        listen: std::net::SocketAddr,
        /// The user the login accepts (the shipped probes read the same SIM_USERNAME and
        /// SIM_PASSWORD, so one environment sets both sides).
        #[arg(
            long,
            value_name = "USER",
            default_value = "canary",
            env = "SIM_USERNAME"
        )]
        username: String,
        /// That user's password.
        #[arg(
            long,
            value_name = "PASSWORD",
            default_value = "canary-pass",
            env = "SIM_PASSWORD",
            hide_env_values = true
        )]
        password: String,
        /// Run signalling on this Redis (`redis://[:password@]host:port[/db]`): presence in
        /// Redis, joins through PUBLISH/SUBSCRIBE, so sims sharing a Redis see each other's joins.
        #[arg(
            long,
            value_name = "URL",
            env = "SIM_REDIS_URL",
            hide_env_values = true
        )]
        redis: Option<String>,
        /// Deadline of each Redis operation (a join past it is answered with an error frame).
        #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = timeout_flag)]
        redis_timeout: std::time::Duration,
    },
}

/// `--probe.threads`: each one is a thread with its own event loop (two descriptors), started
/// at once; more than the machine's cores only adds wake-ups. 64 is past any core count a
/// prober is given, and far from an open-files limit (100000 failed with `EMFILE`).
const MAX_PROBE_THREADS: usize = 64;

/// `--web.max-connections`: the listener's cap, lowered further to a quarter of the open-files
/// limit at start (`cli/run.rs`); above a million is a typing error, not a plan.
const MAX_CONNECTIONS: usize = 1 << 20;

/// A count flag in `MIN..=MAX`: a value outside is refused with the range (as a config value
/// is), not started and found out later (`--probe.threads 100000` ran out of descriptors).
fn count<const MIN: usize, const MAX: usize>(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (MIN..=MAX).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from {MIN} to {MAX}")),
    }
}

/// A deadline flag (`healthcheck --timeout`, `sim --redis-timeout`): `0s` would fail every
/// attempt, so it is refused with the range, as above a year is.
fn timeout_flag(text: &str) -> Result<std::time::Duration, String> {
    let range = || {
        format!(
            "must be between 1ms and {}",
            humantime::format_duration(joincanary::diag::MAX_DURATION)
        )
    };
    match joincanary::diag::parse_flag_duration(text) {
        Ok(d) if d >= std::time::Duration::from_millis(1) => Ok(d),
        Ok(_) => Err(range()),
        Err(e) if e.starts_with("must be") => Err(range()),
        Err(e) => Err(e),
    }
}

/// Parses the command line, or exits as clap does (usage errors: 2). A bad value from a
/// flag's environment variable is said to come from that variable: clap names only the flag,
/// which a Kubernetes user who set `JOINCANARY_PROBE_THREADS` in a manifest never typed.
pub(crate) fn parse() -> Cli {
    use clap::CommandFactory as _;
    let e = match Cli::try_parse() {
        Ok(cli) => return cli,
        Err(e) => e,
    };
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if !e.use_stderr() {
        // --help, --version
        e.exit()
    }
    // Docker reserves exit code 2 of a HEALTHCHECK command: a bad flag there is unhealthy, 1.
    let code = if args.iter().any(|a| a == "healthcheck") {
        1
    } else {
        2
    };
    match from_environment(&e, &Cli::command(), &args, |var| {
        std::env::var_os(var).is_some_and(|v| !v.is_empty())
    }) {
        Some(text) => eprint_line(&text),
        None => {
            let _ = e.print();
        }
    }
    std::process::exit(code)
}

/// The exit code of a command that cannot start (usage, logging, runtime): 2, as `check` and
/// `run` document, except for `healthcheck`, whose 2 Docker reserves.
pub(crate) fn cannot_start(command: &Command) -> std::process::ExitCode {
    match command {
        Command::Healthcheck { .. } => std::process::ExitCode::from(1),
        _ => std::process::ExitCode::from(2),
    }
}

/// clap's message for a bad value, saying which environment variable gave it; `None` when the
/// error is of another kind or the value came from the command line.
fn from_environment(
    e: &clap::Error,
    command: &clap::Command,
    args: &[String],
    is_set: impl Fn(&str) -> bool,
) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(shown)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    // `--probe.threads <N>`
    let long = shown.strip_prefix("--")?.split([' ', '=']).next()?;
    let arg = find_arg(command, long)?;
    let var = arg.get_env()?.to_str()?;
    let mut names = vec![arg.get_long()?];
    names.extend(arg.get_all_aliases().unwrap_or_default());
    let typed = args.iter().any(|a| {
        let a = a.split('=').next().unwrap_or(a);
        names.iter().any(|n| a.strip_prefix("--") == Some(n))
    });
    if typed || !is_set(var) {
        return None;
    }
    let text = e.render().to_string();
    let text = text.replacen(
        &format!("'{shown}'"),
        &format!("'{shown}' (from the environment variable {var})"),
        1,
    );
    Some(text.trim_end().to_string())
}

/// The argument whose long name is `long`, in the command or any of its subcommands.
fn find_arg<'c>(command: &'c clap::Command, long: &str) -> Option<&'c clap::Arg> {
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .or_else(|| {
            command
                .get_subcommands()
                .find_map(|sub| find_arg(sub, long))
        })
}

/// Loads the plan or prints every problem (file:line:col: key: message) and returns `None`.
pub(crate) fn load(flag: Option<&std::path::Path>) -> Option<config::Plan> {
    let path = config::config_path(flag);
    match config::load(&path, &ProcessEnv) {
        Ok(plan) => Some(plan),
        Err(errors) => {
            let mut text: String = errors.0.iter().map(|e| format!("error: {e}\n")).collect();
            // A newcomer running the binary outside the checkout meets the default path first.
            if path == Path::new(config::DEFAULT_CONFIG_PATH) && !path.exists() {
                let cwd = std::env::current_dir()
                    .map(|d| format!(" ({})", d.display()))
                    .unwrap_or_default();
                text.push_str(&format!("hint: no --config given and JOINCANARY_CONFIG not set, so the default config/joincanary.toml was looked for in the working directory{cwd}: pass --config PATH\n"));
            }
            joincanary::output::print_stderr(&text);
            None
        }
    }
}

/// One line to stderr; a closed stderr is ignored (`eprintln!` would panic).
pub(crate) fn eprint_line(line: &str) {
    joincanary::output::print_stderr(&format!("{line}\n"));
}
