//! Loading: the service config and its probe files -> a validated [`Plan`].
//!
//! Two stages, as ripgrep does it: [`raw`] is the TOML as parsed (unknown keys rejected), then
//! `build` checks everything a run would trip over later and names file, line and key for each
//! problem. All problems are reported at once, so `joincanary check` is one round trip.

mod env;
pub mod file;
mod probe;
pub mod raw;

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use env::{EnvError, EnvSource, ProcessEnv, substitute, substitute_template};
pub(crate) use probe::timezone as probe_timezone;
pub(crate) use probe::valid_label;
pub use probe::{
    Body, ExpectSpec, ExtractSource, Extraction, FailSpec, GaugeChecks, HttpJsonSpec, HttpSpec,
    ProbePlan, ProtocolKind, RESIDENT_CONFIRM_DELAY, RESIDENT_EVERY, RESIDENT_KEEPALIVE,
    RESIDENT_MAX_SESSION_AGE, RESIDENT_RECONNECT_AFTER, RESIDENT_RECONNECT_MAX,
    RESIDENT_RECONNECT_MIN, RedisSpec, ResidentPlan, Schedule, SendSpec, StepPlan, StepSpec,
    WsConnectSpec,
};

use crate::flow::template::Template;

/// The default service config path, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/joincanary.toml";
/// Default cap on an HTTP body or websocket message.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default budget of frames a `ws_expect` step reads before giving up.
pub const DEFAULT_MAX_FRAMES: usize = 1000;
/// The longest duration any key accepts: a year (365.25 days, humantime's `1year`), so a
/// yearly maintenance window fits. A longer one is a slip of the unit, and bounding every
/// duration here keeps each time calculation downstream (dates, timers, backoffs) far from
/// overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(31_557_600);
/// The shortest duration a key that must be greater than zero accepts.
const MIN_DURATION: Duration = Duration::from_nanos(1);

/// "must be between 10ms and 1h": the accepted range, as every out-of-range error says it.
fn out_of_range(min: Duration, max: Duration) -> String {
    format!(
        "must be between {} and {}",
        humantime::format_duration(min),
        humantime::format_duration(max)
    )
}

/// A duration flag (`--config.watch-interval`, `--redis-timeout`): as in the files, at most
/// [`MAX_DURATION`] (a timer of a longer period overflows when it is re-armed).
///
/// # Errors
/// Not a duration, or out of range.
pub fn parse_flag_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        Ok(_) => Err(out_of_range(Duration::ZERO, MAX_DURATION)),
        Err(e) => Err(e.to_string()),
    }
}

/// One problem in a config or probe file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no position (an unreadable file).
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `steps[2].url`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found while loading; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A file's text, kept to turn byte spans into line and column.
pub(crate) struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    fn locate(&self, offset: usize) -> (usize, usize) {
        let upto = &self.text[..offset.min(self.text.len())];
        let line = upto.matches('\n').count() + 1;
        let column = upto.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }
}

/// [`substitute`] or [`substitute_template`].
type SubstituteFn = fn(&str, &dyn EnvSource) -> Result<env::Substituted, EnvError>;

/// Collects errors for one file while it is validated, and the values that came from the
/// environment (possible secrets, scrubbed from every error string a run produces).
pub(crate) struct Ctx<'a> {
    pub file: &'a SourceFile,
    pub env: &'a dyn EnvSource,
    pub errors: &'a mut Vec<ConfigError>,
    pub env_values: Vec<String>,
}

impl Ctx<'_> {
    pub fn error(
        &mut self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl fmt::Display,
    ) {
        // A problem of values that are not written in this file (a name taken from the file
        // name, a deadline and schedule both from `[defaults]`) is placed at the file's start.
        let (line, column) = span.map_or((1, 1), |s| self.file.locate(s.start));
        let key = key.into();
        self.errors.push(ConfigError {
            file: self.file.path.clone(),
            line,
            column,
            key: (!key.is_empty()).then_some(key),
            message: message.to_string(),
        });
    }

    /// `${ENV}` substitution of one spanned string.
    pub fn env_str(&mut self, value: &raw::S<String>, key: &str) -> Option<String> {
        match substitute(value.get_ref(), self.env) {
            Ok(s) => {
                self.env_values.extend(s.env_values);
                Some(s.text)
            }
            Err(e) => {
                self.error(Some(value.span()), key, e);
                None
            }
        }
    }

    /// `${ENV}` substitution for a string that is then parsed as a template: values from the
    /// environment are data, never template syntax (see [`substitute_template`]).
    pub fn env_template_str(&mut self, value: &raw::S<String>, key: &str) -> Option<String> {
        match substitute_template(value.get_ref(), self.env) {
            Ok(s) => {
                self.env_values.extend(s.env_values);
                Some(s.text)
            }
            Err(e) => {
                self.error(Some(value.span()), key, e);
                None
            }
        }
    }

    /// `${ENV}` substitution, then `{{var}}` parsing.
    pub fn template(&mut self, value: &raw::S<String>, key: &str) -> Option<Template> {
        let text = self.env_template_str(value, key)?;
        match Template::parse(&text) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(Some(value.span()), key, e);
                None
            }
        }
    }

    /// A duration greater than zero, at most [`MAX_DURATION`].
    pub fn duration(&mut self, value: &raw::S<String>, key: &str) -> Option<Duration> {
        self.duration_from(value, key, MIN_DURATION, MAX_DURATION)
    }

    /// A duration in `min..=max` (within 1ns ..= [`MAX_DURATION`] whatever is asked): a value
    /// outside it (`100000000years`) is an error that states the accepted range, rather than
    /// an overflow later in a date calculation.
    pub fn duration_within(
        &mut self,
        value: &raw::S<String>,
        key: &str,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        self.duration_from(value, key, min.max(MIN_DURATION), max.min(MAX_DURATION))
    }

    /// A duration where zero means "none" (jitter), at most [`MAX_DURATION`].
    pub fn duration_or_zero(&mut self, value: &raw::S<String>, key: &str) -> Option<Duration> {
        self.duration_from(value, key, Duration::ZERO, MAX_DURATION)
    }

    fn duration_from(
        &mut self,
        value: &raw::S<String>,
        key: &str,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let text = self.env_str(value, key)?;
        let message = match humantime::parse_duration(text.trim()) {
            Ok(d) if (min..=max).contains(&d) => return Some(d),
            Ok(d) if d.is_zero() && min == MIN_DURATION => "must be greater than zero".to_string(),
            Ok(_) => out_of_range(min, max),
            Err(e) => format!("`{text}` is not a duration ({e}); write e.g. `500ms`, `10s`, `1m`"),
        };
        self.error(Some(value.span()), key, message);
        None
    }

    pub fn positive(&mut self, value: &raw::S<i64>, key: &str) -> Option<usize> {
        match usize::try_from(*value.get_ref()) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                self.error(
                    Some(value.span()),
                    key,
                    "must be a whole number greater than zero",
                );
                None
            }
        }
    }

    /// `${ENV}` substitution inside every string of a TOML value, then conversion to JSON whose
    /// string leaves are templates (rendered per run: values from the environment are written
    /// so that rendering gives them back as they are).
    pub fn json(&mut self, value: &raw::S<toml::Value>, key: &str) -> Option<serde_json::Value> {
        self.json_in(value, key, substitute_template)
    }

    /// As [`Ctx::json`] for JSON that is used as written, never rendered (`ping_json`).
    pub fn json_data(
        &mut self,
        value: &raw::S<toml::Value>,
        key: &str,
    ) -> Option<serde_json::Value> {
        self.json_in(value, key, substitute)
    }

    fn json_in(
        &mut self,
        value: &raw::S<toml::Value>,
        key: &str,
        subst: SubstituteFn,
    ) -> Option<serde_json::Value> {
        let substituted = self.env_in_value(value.get_ref(), value.span(), key, subst)?;
        match serde_json::to_value(&substituted) {
            Ok(v) => {
                if let Err(e) = crate::flow::template::json_templates(&v) {
                    self.error(Some(value.span()), key, e);
                    return None;
                }
                Some(v)
            }
            Err(e) => {
                self.error(Some(value.span()), key, e);
                None
            }
        }
    }

    fn env_in_value(
        &mut self,
        value: &toml::Value,
        span: Range<usize>,
        key: &str,
        subst: SubstituteFn,
    ) -> Option<toml::Value> {
        Some(match value {
            toml::Value::String(s) => match subst(s, self.env) {
                Ok(sub) => {
                    self.env_values.extend(sub.env_values);
                    toml::Value::String(sub.text)
                }
                Err(e) => {
                    self.error(Some(span), key, e);
                    return None;
                }
            },
            toml::Value::Array(items) => toml::Value::Array(
                items
                    .iter()
                    .map(|v| self.env_in_value(v, span.clone(), key, subst))
                    .collect::<Option<_>>()?,
            ),
            toml::Value::Table(t) => {
                let mut out = toml::Table::new();
                for (k, v) in t {
                    out.insert(
                        k.clone(),
                        self.env_in_value(v, span.clone(), &format!("{key}.{k}"), subst)?,
                    );
                }
                toml::Value::Table(out)
            }
            other => other.clone(),
        })
    }
}

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
    pub peers: Vec<Peer>,
    /// TLS and basic auth on the listener (`run --web.config.file`); not in the TOML.
    pub web: Option<crate::web::WebConfig>,
    /// The listener's connection cap and timeouts (`run --web.max-connections`); not in the TOML.
    pub web_limits: crate::web::Limits,
    /// Every phase histogrammed with the full buckets (read at start-up; see metrics.rs).
    pub phase_histograms: bool,
    pub probes: Vec<Arc<ProbePlan>>,
    pub alerting: crate::alert::policy::PolicyConfig,
    pub pagers: Vec<crate::alert::PagerPlan>,
    /// Dead man's switches pinged while the scheduler is healthy.
    pub heartbeats: Vec<crate::heartbeat::HeartbeatPlan>,
    /// The files and directories this plan was read from (the config, each `probes` entry):
    /// what `run` watches to reload on a change.
    pub sources: Vec<PathBuf>,
}

impl Plan {
    /// The probe named `name`.
    pub fn probe(&self, name: &str) -> Option<&Arc<ProbePlan>> {
        self.probes.iter().find(|p| p.name == name)
    }
}

/// Resolves the config path: the flag, else `JOINCANARY_CONFIG`, else the default.
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("JOINCANARY_CONFIG").map(PathBuf::from))
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
    let plan = build(path, &recording, &mut errors);
    // An error names file, line and key, never a value that came from the environment: the
    // errors reach `POST /-/reload`'s reply, logs and CI output, and a routing key of the
    // wrong length is still a routing key.
    let seen = recording
        .seen
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !errors.is_empty() && !seen.is_empty() {
        let redactor = crate::flow::Redactor::new(seen);
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

/// Reads a config or probe file through [`file::read_text`]: a FIFO, device or directory is
/// refused without blocking, and so is a file over [`file::MAX_FILE_BYTES`]; the error names it.
pub(crate) fn read_source(path: &Path, errors: &mut Vec<ConfigError>) -> Option<SourceFile> {
    match file::read_text(path) {
        Ok(text) => Some(SourceFile {
            path: path.to_path_buf(),
            text,
        }),
        Err(e) => {
            errors.push(ConfigError {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                key: None,
                message: format!("cannot read: {e}"),
            });
            None
        }
    }
}

/// Parses TOML into `T`, turning the parser's error into a located [`ConfigError`].
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &SourceFile,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match toml::from_str::<T>(&file.text) {
        Ok(v) => Some(v),
        Err(e) => {
            // Every parse error names its place and its key (`steps[1].wat`, or the table for a
            // missing field), as every other error does; with no place, the file's start.
            let (line, column) = e.span().map_or((1, 1), |s| file.locate(s.start));
            let key = match missing_field(e.message()) {
                // Placed at its table: the key is the table's and the field's.
                Some(field) => Some(
                    e.span()
                        .and_then(|s| header_at(&file.text, s.start))
                        .map_or_else(|| field.to_string(), |t| format!("{t}.{field}")),
                ),
                None => e.span().and_then(|s| key_at(&file.text, s.start)),
            };
            errors.push(ConfigError {
                file: file.path.clone(),
                line,
                column,
                key,
                message: e.message().trim().to_string(),
            });
            None
        }
    }
}

/// The dotted key of the line holding `offset`: the table it is in (an array of tables with
/// its index, `steps[1]`) and the bare key written at the start of the line if it is
/// `key = ...`; on a table header, the table itself. `None` at the top level off any key.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next().unwrap_or("");
    let (table, header_here) = match table_header(line) {
        Some(_) => (table_path(text, start + line.len()), true),
        None => (table_path(text, start), false),
    };
    let key = (!header_here)
        .then(|| line.split_once('=').map(|(k, _)| k.trim()))
        .flatten()
        // `"a.total" = …` is the key `a.total`, as the checks after parsing write it.
        .map(|k| k.trim_matches(|c| c == '"' || c == '\''))
        .filter(|k| !k.is_empty() && !k.starts_with('#'));
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (Some(t), None) => Some(t),
        (None, Some(k)) => Some(k.to_string()),
        (None, None) => None,
    }
}

/// `X` of serde's "missing field `X`".
fn missing_field(message: &str) -> Option<&str> {
    message
        .trim()
        .strip_prefix("missing field `")?
        .split('`')
        .next()
}

/// The table whose header is the line holding `offset` (`None` off a header: the top level).
fn header_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?;
    table_header(line)?;
    table_path(text, start + line.len())
}

/// `[name]` → (name, false), `[[name]]` → (name, true).
fn table_header(line: &str) -> Option<(&str, bool)> {
    let t = line.trim();
    let t = t.split_once('#').map_or(t, |(before, _)| before.trim_end());
    let (inner, array) = match t.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
        Some(inner) => (inner, true),
        None => (t.strip_prefix('[')?.strip_suffix(']')?, false),
    };
    // A malformed header (`[[steps]`) names no table.
    let inner = inner.trim();
    (!inner.is_empty() && !inner.contains(['[', ']'])).then_some((inner, array))
}

/// The table the text before `end` leaves open: the last header, with its index among the
/// same array-of-tables headers before it.
fn table_path(text: &str, end: usize) -> Option<String> {
    let before = text.get(..end)?;
    let (name, array) = before.lines().rev().find_map(table_header)?;
    if !array {
        return Some(name.to_string());
    }
    let index = before
        .lines()
        .filter(|l| table_header(l) == Some((name, true)))
        .count()
        .saturating_sub(1);
    Some(format!("{name}[{index}]"))
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
    let region = match &raw.region {
        Some(r) => ctx.env_str(r, "region").unwrap_or_default(),
        None => "local".to_string(),
    };
    if region.is_empty() || region.chars().any(|c| c.is_control() || c == '"') {
        let span = raw.region.as_ref().map(|r| r.span());
        ctx.error(
            span,
            "region",
            "must be a non-empty label without quotes or control characters",
        );
    }
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
    let status_url = raw
        .status_url
        .as_ref()
        .and_then(|u| ctx.env_str(u, "status_url"));
    let dashboard_url = raw
        .dashboard_url
        .as_ref()
        .and_then(|u| ctx.env_str(u, "dashboard_url"));
    let peers = build_peers(&mut ctx, raw.peers.as_ref());
    let defaults = probe::Defaults::build(&mut ctx, &raw.defaults);
    let pagers = crate::alert::build_pagers(&mut ctx, &raw.pager);
    let heartbeats = crate::heartbeat::build(&mut ctx, &raw.heartbeat);
    let pager_names: Vec<String> = raw
        .pager
        .iter()
        .map(|p| p.get_ref().name.get_ref().trim().to_string())
        .collect();
    let alerting = crate::alert::policy::PolicyConfig::build(
        &mut ctx,
        &raw.alerting,
        None,
        "alerting",
        &pager_names,
    );

    let mut probe_paths = Vec::new();
    let mut sources = vec![path.to_path_buf()];
    let errors_before_probes = ctx.errors.len();
    for entry in raw.probes.get_ref() {
        let Some(rel) = ctx.env_str(entry, "probes") else {
            continue;
        };
        let target = base.join(&rel);
        sources.push(target.clone());
        if target.is_dir() {
            match std::fs::read_dir(&target) {
                Ok(dir) => {
                    let mut found: Vec<PathBuf> = dir
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                        .collect();
                    found.sort();
                    probe_paths.extend(found);
                }
                Err(e) => ctx.error(
                    Some(entry.span()),
                    "probes",
                    format_args!("cannot read directory `{rel}`: {e}"),
                ),
            }
        } else if target.exists() {
            // Whatever it is (a file, a FIFO, a device), the reader decides and says why.
            probe_paths.push(target);
        } else {
            ctx.error(
                Some(entry.span()),
                "probes",
                format_args!("`{}` does not exist", target.display()),
            );
        }
    }
    if raw.probes.get_ref().is_empty() {
        ctx.error(Some(raw.probes.span()), "probes", "names no probe files");
    } else if probe_paths.is_empty() && ctx.errors.len() == errors_before_probes {
        // An empty probe directory would run "healthy" with no probe series, so no rule and no
        // pager could ever fire.
        ctx.error(
            Some(raw.probes.span()),
            "probes",
            "found no probe files (`*.toml`); a prober with zero probes can never page",
        );
    }
    drop(ctx);

    let mut probes: Vec<Arc<ProbePlan>> = Vec::new();
    for probe_path in probe_paths {
        if let Some(p) = probe::build(
            &probe_path,
            env,
            &defaults,
            &alerting,
            &pager_names,
            &region,
            errors,
        ) {
            if let Some(other) = probes.iter().find(|o| o.name == p.name) {
                // At its `name = …`, or the file's start when the name is the file's.
                let (line, column) = match crate::alert::name_position(&probe_path) {
                    (0, _) => (1, 1),
                    at => at,
                };
                errors.push(ConfigError {
                    file: probe_path.clone(),
                    line,
                    column,
                    key: Some("name".into()),
                    message: format!(
                        "probe `{}` is also defined in {}",
                        p.name,
                        other.source.display()
                    ),
                });
                continue;
            }
            probes.push(Arc::new(p));
        }
    }
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

/// A hash of what `sources` hold now: each file's bytes, and for a directory the names and
/// bytes of its `*.toml` files. Reading through the paths (not comparing mtimes or inodes)
/// follows symlinks, so a Kubernetes ConfigMap update — an atomic swap of the `..data` symlink
/// behind every mounted file — changes it exactly like an edit in place. An unreadable path
/// hashes as such, so its appearing or vanishing is a change too.
pub fn fingerprint(sources: &[PathBuf]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    for source in sources {
        source.hash(&mut h);
        if source.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(source)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            for f in files {
                f.hash(&mut h);
                file::read_bytes(&f).ok().hash(&mut h);
            }
        } else {
            // The same reader as the load: a FIFO put here never blocks the watcher.
            file::read_bytes(source).ok().hash(&mut h);
        }
    }
    h.finish()
}

/// A prober in another region, for the fleet status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its base URL (may carry `user:password@`, never shown).
    pub url: String,
    /// Its region as configured: the page's name for it until it answers (and after, if it
    /// never does).
    pub region: Option<String>,
}

/// `peers`: http(s) base URLs, each once, as a string or `{ url, region }`. Credentials in a
/// URL (`http://user:pass@host`) are allowed for peers behind basic auth; the page never shows
/// them.
fn build_peers(ctx: &mut Ctx<'_>, raw: Option<&raw::S<Vec<raw::S<toml::Value>>>>) -> Vec<Peer> {
    let mut peers: Vec<Peer> = Vec::new();
    for (i, entry) in raw
        .map(|r| r.get_ref().as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let key = format!("peers[{i}]");
        let span = entry.span();
        let string = |ctx: &mut Ctx<'_>, v: &toml::Value, key: &str| match v.as_str() {
            Some(text) => ctx.env_str(&raw::S::new(span.clone(), text.to_string()), key),
            None => {
                ctx.error(Some(span.clone()), key, "must be a string");
                None
            }
        };
        let (url, region) = match entry.get_ref() {
            toml::Value::Table(t) => {
                if let Some(unknown) = t.keys().find(|k| !matches!(k.as_str(), "url" | "region")) {
                    ctx.error(
                        Some(span.clone()),
                        format!("{key}.{unknown}"),
                        "unknown key (a peer has `url` and `region`)",
                    );
                    continue;
                }
                let Some(url) = t.get("url") else {
                    ctx.error(Some(span.clone()), format!("{key}.url"), "is required");
                    continue;
                };
                let region = match t.get("region") {
                    Some(r) => {
                        let rkey = format!("{key}.region");
                        let Some(region) = string(ctx, r, &rkey) else {
                            continue;
                        };
                        if region.is_empty() || region.chars().any(|c| c.is_control() || c == '"') {
                            ctx.error(
                                Some(span.clone()),
                                rkey,
                                "must be a non-empty label without quotes or control characters",
                            );
                            continue;
                        }
                        Some(region)
                    }
                    None => None,
                };
                (string(ctx, url, &format!("{key}.url")), region)
            }
            other => (string(ctx, other, &key), None),
        };
        let Some(text) = url else {
            continue;
        };
        let text = text.trim().trim_end_matches('/').to_string();
        match url::Url::parse(&text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if peers.iter().any(|p| p.url == text) {
                    ctx.error(Some(span), key, "listed twice");
                } else {
                    peers.push(Peer { url: text, region });
                }
            }
            _ => ctx.error(
                Some(span),
                key,
                "must be a prober's base URL like http://prober-us:9464",
            ),
        }
    }
    peers
}
