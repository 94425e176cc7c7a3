//! Runs one parsed command: each subcommand calls the library and turns its outcome into an
//! exit code (anyhow only here and in main.rs, the edge).

use std::process::ExitCode;

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
                eprint_line(&format!("warning: {q}"));
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
