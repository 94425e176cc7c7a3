//! Loading, the top of the house: reads the service config and its probe files and assembles a
//! validated [`Plan`], each part checking its own tables (`flow::load` a probe file and each
//! step's kind its step, `alert` its pagers and policy, `heartbeat` its heartbeats).
//!
//! Two stages, as ripgrep does it: [`raw`] is the TOML as parsed (unknown keys rejected), then
//! `build` checks everything a run would trip over later and names file, line and key for each
//! problem. All problems are reported at once, so `joincanary check` is one round trip. Nothing
//! below imports this module back.

pub mod fingerprint;
pub mod promise;
pub mod raw;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::{
    ConfigError, ConfigErrors, Ctx, EnvSource, S, array_tables, parse_toml, read_source,
};
use crate::flow::ProbePlan;

/// The default service config path, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/joincanary.toml";

/// Probe files one prober loads: far above any real deployment (each probe runs about every
/// minute), far below what would make `check` take minutes and the prober gigabytes (a
/// directory of 100,000 files). Beyond it the config is refused, naming the count.
pub const MAX_PROBES: usize = 10_000;

/// Everything `run`, `once` and `check` need, validated.
#[derive(Debug, Clone)]
pub struct Plan {
    pub config_path: PathBuf,
    pub region: String,
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    pub status_url: Option<String>,
    pub dashboard_url: Option<String>,
    /// Base URLs of other regions' probers, for the fleet status page.
    pub peers: Vec<crate::status::peer::Peer>,
    /// TLS and basic auth on the listener (`run --web.config.file`); not in the TOML.
    pub web: Option<crate::web::WebConfig>,
    /// The listener's connection cap and timeouts (`run --web.max-connections`); not in the TOML.
    pub web_limits: crate::web::Limits,
    /// Every phase histogrammed with the full buckets (read at start-up; see metrics.rs).
    pub phase_histograms: bool,
    pub probes: Vec<Arc<ProbePlan>>,
    pub alerting: crate::alerting::PolicyConfig,
    pub pagers: Vec<crate::alert::PagerPlan>,
    /// Dead man's switches pinged while the scheduler is healthy.
    pub heartbeats: Vec<crate::heartbeat::HeartbeatPlan>,
    /// The files and directories this plan was read from (the config, each `probes` entry,
    /// and the CA, certificate and key files they name): what `run` watches to reload on a
    /// change.
    pub sources: Vec<PathBuf>,
}

impl Plan {
    /// The probe named `name`.
    pub fn probe(&self, name: &str) -> Option<&Arc<ProbePlan>> {
        self.probes.iter().find(|p| p.name == name)
    }

    /// What the alert side needs of this plan: the region, the links every page carries and
    /// each probe's alert settings.
    pub fn alerts(&self) -> crate::alert::AlertSettings {
        crate::alert::AlertSettings {
            region: self.region.clone(),
            links: crate::alert::links(self.status_url.as_deref(), self.dashboard_url.as_deref()),
            probes: self
                .probes
                .iter()
                .map(|p| crate::alert::ProbeAlerting {
                    name: p.name.clone(),
                    source: p.source.clone(),
                    alerting: p.alerting.clone(),
                })
                .collect(),
        }
    }
}

/// Resolves the config path: the flag, else `JOINCANARY_CONFIG`, else the default.
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        // Empty counts as unset, as for every other variable (`-e JOINCANARY_CONFIG=` read
        // the file "" and said `error: : cannot read`).
        .or_else(|| {
            std::env::var_os("JOINCANARY_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

/// `listen` when the config does not set it.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

/// The service config's `listen` alone (`${VAR}` expanded), without reading the probe files:
/// what `joincanary healthcheck` needs, so a probe file being edited never fails it.
///
/// # Errors
/// The config cannot be read or parsed, or `listen` is not an address; each with file and line.
pub fn listen_address(path: &Path, env: &dyn EnvSource) -> Result<SocketAddr, ConfigErrors> {
    let mut errors = Vec::new();
    let listen = read_source(path, &mut errors).and_then(|file| {
        let raw: raw::RawService = parse_toml(&file, &mut errors)?;
        let mut ctx = Ctx {
            file: &file,
            env,
            errors: &mut errors,
            env_values: Vec::new(),
        };
        listen_of(&raw, &mut ctx)
    });
    match listen {
        Some(addr) if errors.is_empty() => Ok(addr),
        _ => Err(ConfigErrors(errors)),
    }
}

/// `listen`, or [`DEFAULT_LISTEN`].
fn listen_of(raw: &raw::RawService, ctx: &mut Ctx<'_>) -> Option<SocketAddr> {
    let Some(l) = &raw.listen else {
        return Some(DEFAULT_LISTEN);
    };
    let text = ctx.env_str(l, "listen")?;
    match text.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            ctx.error(
                Some(l.span()),
                "listen",
                format_args!("`{text}` is not an address like 127.0.0.1:9464"),
            );
            None
        }
    }
}

/// Loads and validates the service config at `path` and every probe file it names.
///
/// # Errors
/// Every problem found, each with file, line and key.
pub fn load(path: &Path, env: &dyn EnvSource) -> Result<Plan, ConfigErrors> {
    let mut errors = Vec::new();
    let recording = Recording {
        inner: env,
        seen: std::sync::Mutex::new(Vec::new()),
    };
    let (plan, read) = crate::diag::file::recording_reads(|| build(path, &recording, &mut errors));
    let plan = plan.map(|mut plan| {
        watch_what_it_names(&mut plan.sources, read);
        plan
    });
    // An error names file, line and key, never a value that came from the environment: the
    // errors reach `POST /-/reload`'s reply, logs and CI output, and a routing key of the
    // wrong length is still a routing key.
    let seen = recording
        .seen
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !errors.is_empty() && !seen.is_empty() {
        let redactor = crate::redact::Redactor::new(seen);
        for e in &mut errors {
            e.message = redactor.scrub(&e.message);
        }
    }
    match plan {
        Some(plan) if errors.is_empty() => Ok(plan),
        _ => {
            if errors.is_empty() {
                errors.push(ConfigError {
                    file: path.to_path_buf(),
                    line: 0,
                    column: 0,
                    key: None,
                    message: "invalid configuration".into(),
                });
            }
            // Files in the order they were read, each file's problems top to bottom.
            let mut files: Vec<PathBuf> = Vec::new();
            for e in &errors {
                if !files.contains(&e.file) {
                    files.push(e.file.clone());
                }
            }
            errors.sort_by_key(|e| (files.iter().position(|f| f == &e.file), e.line, e.column));
            Err(ConfigErrors(errors))
        }
    }
}

/// Adds to `sources` the files a load read beside the config and probe files: the CA,
/// certificate and key files of pagers, heartbeats, peers and probes. Watched like the config,
/// a certificate renewed on disk (cert-manager rewriting a mounted Secret) reloads the config and
/// the prober presents and trusts the new one, instead of failing at the old one's expiry.
fn watch_what_it_names(sources: &mut Vec<PathBuf>, read: Vec<PathBuf>) {
    for path in read {
        // A probe directory's `*.toml` files are watched through its listing already.
        let in_a_watched_dir = path.extension().is_some_and(|x| x == "toml")
            && path
                .parent()
                .is_some_and(|d| sources.iter().any(|s| s == d));
        if !in_a_watched_dir && !sources.contains(&path) {
            sources.push(path);
        }
    }
}

/// An environment that remembers every value it handed out.
struct Recording<'a> {
    inner: &'a dyn EnvSource,
    seen: std::sync::Mutex<Vec<String>>,
}

impl EnvSource for Recording<'_> {
    fn get(&self, name: &str) -> Option<String> {
        let value = self.inner.get(name)?;
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(value.clone());
        }
        Some(value)
    }
}

fn build(path: &Path, env: &dyn EnvSource, errors: &mut Vec<ConfigError>) -> Option<Plan> {
    let file = read_source(path, errors)?;
    let raw: raw::RawService = parse_toml(&file, errors)?;
    let mut ctx = Ctx {
        file: &file,
        env,
        errors,
        env_values: Vec::new(),
    };
    // `None`: its `${VAR}` could not be read, which is already the error to report.
    let region = match &raw.region {
        Some(r) => ctx.env_str(r, "region"),
        None => Some("local".to_string()),
    };
    if region
        .as_ref()
        .is_some_and(|r| r.is_empty() || r.chars().any(|c| c.is_control() || c == '"'))
    {
        let span = raw.region.as_ref().map(|r| r.span());
        ctx.error(
            span,
            "region",
            "must be a non-empty label without quotes or control characters",
        );
    }
    let region = region.unwrap_or_default();
    let listen = listen_of(&raw, &mut ctx);
    let base = path.parent().unwrap_or(Path::new("."));
    let state_dir = match &raw.state_dir {
        Some(s) => ctx
            .env_str(s, "state_dir")
            .map(|d| base.join(d))
            .unwrap_or_default(),
        None => base.join("../state"),
    };
    // Alert state and the outbox live here: a file in its place would lose every incident at
    // the first write, so it is refused now rather than at 3 a.m.
    if std::fs::metadata(&state_dir).is_ok_and(|m| !m.is_dir()) {
        ctx.error(
            raw.state_dir.as_ref().map(|s| s.span()),
            "state_dir",
            format_args!("`{}` exists and is not a directory", state_dir.display()),
        );
    }
    let status_url = link(&mut ctx, raw.status_url.as_ref(), "status_url");
    let dashboard_url = link(&mut ctx, raw.dashboard_url.as_ref(), "dashboard_url");
    let peers = crate::status::peer::parse_peers(&mut ctx, raw.peers.as_ref());
    let defaults = crate::flow::defaults::Defaults::build(&mut ctx, &raw.defaults);
    let crate::alert::pagers::Pagers {
        plans: pagers,
        names: pager_names,
    } = crate::alert::pagers::parse(&mut ctx, array_tables(&file, "pager"));
    let heartbeats = crate::heartbeat::parse(&mut ctx, array_tables(&file, "heartbeat"));
    let alerting = crate::alerting::PolicyConfig::build(
        &mut ctx,
        &raw.alerting,
        None,
        "alerting",
        &pager_names,
    );

    let mut sources = vec![path.to_path_buf()];
    let probe_paths = probe_files(&mut ctx, &raw.probes, base, &mut sources);
    drop(ctx);
    let probes = load_probes(
        probe_paths,
        env,
        &defaults,
        &alerting,
        &pager_names,
        &region,
        errors,
    );
    Some(Plan {
        config_path: path.to_path_buf(),
        region,
        listen: listen?,
        state_dir,
        status_url,
        dashboard_url,
        peers,
        web: None,
        web_limits: crate::web::Limits::default(),
        phase_histograms: raw.phase_histograms.as_ref().is_some_and(|b| *b.get_ref()),
        probes,
        alerting,
        pagers,
        heartbeats,
        sources,
    })
}

/// `probes = [...]`: each entry a file, or a directory whose `*.toml` files are read in name
/// order, at most [`MAX_PROBES`] in all, each with the place of the entry that found it;
/// what was looked at goes to `sources` (the watcher's list). A list that finds no file is an
/// error: a prober with zero probes can never page.
fn probe_files(
    ctx: &mut Ctx<'_>,
    listed: &S<Vec<S<String>>>,
    base: &Path,
    sources: &mut Vec<PathBuf>,
) -> Vec<(PathBuf, Arc<str>)> {
    let mut probe_paths = Vec::new();
    let errors_before_probes = ctx.errors.len();
    for entry in listed.get_ref() {
        let Some(rel) = ctx.env_str(entry, "probes") else {
            continue;
        };
        let target = base.join(&rel);
        sources.push(target.clone());
        if target.is_dir() {
            match std::fs::read_dir(&target) {
                Ok(dir) => {
                    // One past the cap is enough to refuse: a directory of a million files
                    // is never held as paths.
                    let room = (MAX_PROBES + 1).saturating_sub(probe_paths.len());
                    let mut found: Vec<PathBuf> = dir
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                        .take(room)
                        .collect();
                    found.sort();
                    // Formatted once per entry, shared by the files it finds.
                    let at: Arc<str> = ctx.place(entry.span()).into();
                    probe_paths.extend(found.into_iter().map(|p| (p, at.clone())));
                }
                Err(e) => ctx.error(
                    Some(entry.span()),
                    "probes",
                    format_args!("cannot read directory `{rel}`: {e}"),
                ),
            }
        } else if target.exists() {
            // Whatever it is (a file, a FIFO, a device), the reader decides and says why.
            probe_paths.push((target, ctx.place(entry.span()).into()));
        } else {
            ctx.error(
                Some(entry.span()),
                "probes",
                format_args!("`{}` does not exist", target.display()),
            );
        }
    }
    if probe_paths.len() > MAX_PROBES {
        ctx.error(
            Some(listed.span()),
            "probes",
            format_args!(
                "more than {MAX_PROBES} probe files; one prober runs at most {MAX_PROBES} (split them across probers, one config each)"
            ),
        );
        probe_paths.clear();
    } else if listed.get_ref().is_empty() {
        ctx.error(Some(listed.span()), "probes", "names no probe files");
    } else if probe_paths.is_empty() && ctx.errors.len() == errors_before_probes {
        // An empty probe directory would run "healthy" with no probe series, so no rule and no
        // pager could ever fire.
        ctx.error(
            Some(listed.span()),
            "probes",
            "found no probe files (`*.toml`); a prober with zero probes can never page",
        );
    }
    probe_paths
}

/// Each probe file built against the service's defaults and alerting; a name given twice is
/// refused at its second file.
fn load_probes(
    probe_paths: Vec<(PathBuf, Arc<str>)>,
    env: &dyn EnvSource,
    defaults: &crate::flow::defaults::Defaults,
    alerting: &crate::alerting::PolicyConfig,
    pager_names: &[String],
    region: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<Arc<ProbePlan>> {
    let mut probes: Vec<Arc<ProbePlan>> = Vec::new();
    // Names seen, to their file: a lookup, not a scan of every probe loaded so far (that was
    // quadratic: 20,000 probes took `check` 33 s).
    let mut seen: std::collections::HashMap<String, PathBuf> = std::collections::HashMap::new();
    for (probe_path, listed) in probe_paths {
        let before = errors.len();
        let Some(file) = read_source(&probe_path, errors) else {
            // No line of its own to show: the service config's entry that names it has one.
            for e in &mut errors[before..] {
                e.message = format!("{} (listed in `probes` at {listed})", e.message);
            }
            continue;
        };
        if let Some(p) =
            crate::flow::load::build(&file, env, defaults, alerting, pager_names, region, errors)
        {
            if let Some(other) = seen.get(&p.name) {
                // At its `name = …`, or the file's start when the name is the file's; the
                // first file's place in the message (looked up only now: a valid config
                // never pays for it).
                let at = |(line, column)| match (line, column) {
                    (0, _) => (1, 1),
                    at => at,
                };
                let (line, column) = at(crate::diag::name_position_in(&file.text));
                let (first_line, first_column) = at(crate::diag::name_position(other));
                errors.push(ConfigError {
                    file: probe_path.clone(),
                    line,
                    column,
                    key: Some("name".into()),
                    message: format!(
                        "probe `{}` is also defined at {}",
                        p.name,
                        crate::diag::place(other, first_line, first_column)
                    ),
                });
                continue;
            }
            seen.insert(p.name.clone(), p.source.clone());
            probes.push(Arc::new(p));
        }
    }
    probes
}

/// How far ahead [`Plan::quiet`] looks for maintenance windows that hold every page.
pub const QUIET_HORIZON: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The longest gap between two scheduled runs [`Plan::quiet`] lets pass without a word.
pub const QUIET_GAP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// One probe that a valid configuration keeps from paging in practice ([`Plan::quiet`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quiet {
    /// Its failures page nobody (alerting disabled, maintenance that never ends), counted in
    /// `joincanary_probes_paging_nobody`; else it pages, but too late to be a canary.
    pub pages_nobody: bool,
    /// The sentence `check` prints and `run` logs, naming the probe and the cause.
    pub message: String,
}

/// `7 days`, `1.5 days`: the scale of [`Plan::quiet`]'s gaps.
fn days(d: std::time::Duration) -> String {
    let days = d.as_secs_f64() / 86_400.0;
    if days.fract() == 0.0 {
        format!("{days:.0} days")
    } else {
        format!("{days:.1} days")
    }
}

impl Plan {
    /// What keeps a valid configuration from paging in practice, one sentence per probe and
    /// cause: alerting disabled, maintenance windows that hold every page for the next
    /// [`QUIET_HORIZON`], a schedule with more than [`QUIET_GAP`] between runs (`0 0 29 2 *`),
    /// or else settings that make the first page later than the 90 s promise
    /// ([`promise::TimeToPage`]).
    /// `check` prints them as warnings, `run` logs them at start and at every reload. (A
    /// schedule that never fires, and zero probes, are errors; no pager at all is
    /// [`crate::status::NO_PAGER`].)
    pub fn quiet(&self, now: chrono::DateTime<chrono::Utc>) -> Vec<Quiet> {
        let mut out = Vec::new();
        // Probes share their `[alerting]` windows: each distinct set is walked once.
        let mut muted: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
        for p in &self.probes {
            let name = &p.name;
            if !p.alerting.enabled {
                out.push(Quiet {
                    pages_nobody: true,
                    message: format!(
                        "probe `{name}`: alerting is disabled (`enabled = false`): its failures page nobody"
                    ),
                });
            } else if !p.alerting.maintenance.is_empty() {
                let key = format!("{:?}", p.alerting.maintenance);
                let held = *muted
                    .entry(key)
                    .or_insert_with(|| p.alerting.muted_for(now, QUIET_HORIZON));
                if held {
                    out.push(Quiet {
                        pages_nobody: true,
                        message: format!(
                            "probe `{name}`: its maintenance windows hold every page for the next {} (`alerting.maintenance`): it pages nobody",
                            days(QUIET_HORIZON)
                        ),
                    });
                }
            }
            if p.resident.is_some() {
                continue;
            }
            let first = p.schedule.next_after(now);
            let gap = first
                .and_then(|a| Some((a, p.schedule.next_after(a)?)))
                .and_then(|(a, b)| (b - a).to_std().ok());
            if let (Some(first), Some(gap)) = (first, gap)
                && gap > QUIET_GAP
            {
                out.push(Quiet {
                    pages_nobody: false,
                    message: format!(
                        "probe `{name}`: `{}` runs only every {} (next {}): a broken join flow goes unseen that long",
                        p.schedule.expr,
                        days(gap),
                        first.format("%Y-%m-%d %H:%M UTC")
                    ),
                });
            } else if let Some(message) = promise::TimeToPage::of(p, now).and_then(|t| t.warning(p))
            {
                out.push(Quiet {
                    pages_nobody: false,
                    message,
                });
            }
        }
        out
    }
}

/// A link for people (`status_url`, `dashboard_url`): shown on the status page, in
/// `/api/v1/status` (no login) and in every page, so one carrying credentials
/// (`user:password@`, a query parameter such as `token` or `auth_token`) would publish them.
fn link(ctx: &mut Ctx<'_>, raw: Option<&S<String>>, key: &str) -> Option<String> {
    let raw = raw?;
    let text = ctx.env_str(raw, key)?;
    let credentials = url::Url::parse(&text).is_ok_and(|u| {
        !u.username().is_empty()
            || u.password().is_some()
            || u.query_pairs()
                .any(|(name, _)| crate::redact::names_a_credential(&name))
    });
    if credentials {
        ctx.error(
            Some(raw.span()),
            key,
            "carries credentials (`user:password@` or a query parameter such as `token`), and \
             it is shown on the status page, in /api/v1/status and in every page: link to a \
             page that asks for a login instead",
        );
        return None;
    }
    Some(text)
}
