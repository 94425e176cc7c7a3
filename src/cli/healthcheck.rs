//! `joincanary healthcheck` as the command runs it: the address, web config and credentials
//! gathered from flags and config, then the library's check (src/healthcheck.rs).

use std::process::ExitCode;

use joincanary::config;
use joincanary::diag::ProcessEnv;
use joincanary::output::print_stdout;

use super::eprint_line;

/// `joincanary healthcheck`: exit 0 when `/healthz` answers 200 within `timeout`, 1 otherwise
/// (Docker reserves 2), one line saying which.
pub(super) async fn healthcheck(
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
        pinned: web
            .as_ref()
            .and_then(joincanary::web::WebConfig::served_certificate),
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
