//! The `joincanary` command: parse flags, set up logging and TLS, call the library. The flags
//! and what each command does are in `cli/`, a module of this binary (anyhow stays at the edge).

mod cli;

use std::process::ExitCode;

use cli::{Command, LogFormat, eprint_line};
use joincanary::logging;

fn main() -> ExitCode {
    let cli = cli::parse();
    let format = match cli.log_format {
        LogFormat::Text => logging::Format::Text,
        LogFormat::Logfmt => logging::Format::Logfmt,
        LogFormat::Json => logging::Format::Json,
    };
    if let Err(e) = logging::init(format, &cli.log_level) {
        eprint_line(&format!("error: {e}"));
        return cli::cannot_start(&cli.command);
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
            return cli::cannot_start(&cli.command);
        }
    };
    let outcome = runtime.block_on(cli::dispatch::dispatch(cli.command));
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
