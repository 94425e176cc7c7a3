//! Probe files: `probes/*.toml` -> [`ProbePlan`], with every check `joincanary check` promises.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use regex::Regex;

use super::raw::{RawDefaults, RawExtract, RawProbe, RawStep};
use super::{DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_FRAMES};
use crate::alert::policy::PolicyConfig;
use crate::diag::{ConfigError, Ctx, S, parse_toml, read_source, valid_label};
use crate::flow::matcher::Pattern;
use crate::report::StepKind;
use crate::schedule::{Schedule, every_minute, schedule, timezone};
use crate::template::{self, BUILTINS, Template};

/// Defaults from the service config's `[defaults]`.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub schedule: Schedule,
    pub timeout: Duration,
    pub step_timeout: Option<Duration>,
    pub jitter: Duration,
    pub max_body_bytes: usize,
    pub max_frames: usize,
}

impl Defaults {
    pub(crate) fn build(ctx: &mut Ctx<'_>, raw: &RawDefaults) -> Defaults {
        let timezone = raw
            .timezone
            .as_ref()
            .and_then(|t| timezone(ctx, t, "defaults.timezone"));
        let schedule = raw
            .schedule
            .as_ref()
            .and_then(|s| schedule(ctx, s, timezone, "defaults.schedule"))
            .unwrap_or_else(every_minute);
        Defaults {
            schedule,
            timeout: raw
                .timeout
                .as_ref()
                .and_then(|t| ctx.duration(t, "defaults.timeout"))
                .unwrap_or(Duration::from_secs(20)),
            step_timeout: raw
                .step_timeout
                .as_ref()
                .and_then(|t| ctx.duration(t, "defaults.step_timeout")),
            jitter: raw
                .jitter
                .as_ref()
                .and_then(|t| ctx.duration_or_zero(t, "defaults.jitter"))
                .unwrap_or(Duration::ZERO),
            max_body_bytes: raw
                .max_body_bytes
                .as_ref()
                .and_then(|v| ctx.positive(v, "defaults.max_body_bytes"))
                .unwrap_or(DEFAULT_MAX_BODY_BYTES),
            max_frames: raw
                .max_frames
                .as_ref()
                .and_then(|v| ctx.positive(v, "defaults.max_frames"))
                .unwrap_or(DEFAULT_MAX_FRAMES),
        }
    }
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            schedule: every_minute(),
            timeout: Duration::from_secs(20),
            step_timeout: None,
            jitter: Duration::ZERO,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_frames: DEFAULT_MAX_FRAMES,
        }
    }
}

/// One validated probe.
#[derive(Debug, Clone)]
pub struct ProbePlan {
    pub name: String,
    pub description: Option<String>,
    pub source: std::path::PathBuf,
    pub schedule: Schedule,
    /// The whole run's deadline; no step outlives it.
    pub timeout: Duration,
    /// This region's fixed offset from the cron tick (derived from region + probe name).
    pub jitter: Duration,
    pub max_body_bytes: usize,
    /// TLS settings when the probe trusts extra CAs (`ca_file`); `None` uses the system roots.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub variables: Vec<(String, Template)>,
    pub steps: Vec<StepPlan>,
    /// Scrubs the values that came from the environment (possible secrets) from every error;
    /// each run adds its extracted values to a clone.
    pub redactor: crate::redact::Redactor,
    pub alerting: PolicyConfig,
    /// `mode = "resident"`: `steps` open a session, `exchange` runs on it every `every`.
    pub resident: Option<ResidentPlan>,
}

/// A resident probe's session settings and the steps that run on the open session.
#[derive(Debug, Clone)]
pub struct ResidentPlan {
    /// Time between two exchanges.
    pub every: Duration,
    /// A session this old is closed and opened anew.
    pub max_session_age: Duration,
    /// A websocket ping on each connection of an idle session this often.
    pub keepalive: Duration,
    /// Deadline of opening a session (the `steps`).
    pub setup_timeout: Duration,
    /// Reconnect delays: full jitter over `[0, min(reconnect_max, reconnect_min × 2^attempt)]`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Failed exchanges in a row on a session that still looks open before it is re-established.
    pub reconnect_after: u32,
    /// Run every `every`; one run each.
    pub exchange: Vec<StepPlan>,
    /// Run when a session ends (all `cleanup`).
    pub teardown: Vec<StepPlan>,
}

/// Defaults of a resident probe, documented in docs/resident.md.
pub const RESIDENT_EVERY: Duration = Duration::from_secs(5);
pub const RESIDENT_MAX_SESSION_AGE: Duration = Duration::from_secs(3600);
pub const RESIDENT_KEEPALIVE: Duration = Duration::from_secs(15);
pub const RESIDENT_RECONNECT_MIN: Duration = Duration::from_secs(1);
/// The reconnect backoff's cap when the probe sets none is `every` (at least `reconnect_min`):
/// a mended platform is then found within one `every`, and resolves in about two (see
/// docs/resident.md, "Reconnects"). This is the cap of a probe whose `every` is not known.
pub const RESIDENT_RECONNECT_MAX: Duration = RESIDENT_EVERY;
pub const RESIDENT_RECONNECT_AFTER: u32 = 3;
/// A resident probe's `confirm_delay` unless its own `[alerting]` sets one: the confirming
/// exchange comes this soon after a failed one, so two failures a few seconds apart page.
pub const RESIDENT_CONFIRM_DELAY: Duration = Duration::from_secs(2);

/// One validated step.
#[derive(Debug, Clone)]
pub struct StepPlan {
    pub name: String,
    pub kind: StepKind,
    pub timeout: Option<Duration>,
    pub spec: StepSpec,
    /// Runs after a failure too, and never becomes the run's failed step.
    pub cleanup: bool,
    /// The websocket a ws_* step uses; `""` is the default, unnamed one.
    pub connection: String,
    /// Every variable the step's templates read: a cleanup step whose values were never set
    /// (the step that extracts them failed) is skipped, not failed.
    pub uses: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum StepSpec {
    Http(HttpSpec),
    WsConnect(WsConnectSpec),
    WsSend(SendSpec),
    WsExpect(ExpectSpec),
    WsClose,
    Redis(RedisSpec),
    HttpJson(HttpJsonSpec),
    Turn(crate::flow::turn::TurnSpec),
    Webrtc(crate::flow::webrtc::WebrtcSpec),
}

/// Thresholds on a step's gauges: crossing one is a warning (degraded), never a failure.
#[derive(Debug, Clone, Default)]
pub struct GaugeChecks {
    /// A gauge at or above its value warns.
    pub warn_above: Vec<(String, f64)>,
    /// A gauge below its value warns.
    pub warn_below: Vec<(String, f64)>,
}

/// A `redis` step: PING, INFO gauges, optionally a pub/sub round trip on `channel`.
#[derive(Debug, Clone)]
pub struct RedisSpec {
    /// `redis://` or `rediss://` (TLS).
    pub url: Template,
    pub username: Option<String>,
    pub password: Option<String>,
    pub channel: Option<Template>,
    pub checks: GaugeChecks,
    /// INFO counter rates to compute: the defaults and every rate a threshold names.
    pub rates: Vec<crate::flow::CounterRate>,
    /// The previous run's counters (shared by the plan's clones; a reload starts afresh).
    pub memory: std::sync::Arc<crate::flow::CounterMemory>,
}

/// An `http_json` step: an `http` request whose JSON numbers become gauges.
#[derive(Debug, Clone)]
pub struct HttpJsonSpec {
    /// The request; its `extract` also carries one extraction per gauge.
    pub http: HttpSpec,
    /// Gauge name -> JSON pointer.
    pub gauges: Vec<(String, String)>,
    pub checks: GaugeChecks,
}

/// The memory warning of the incident's action plan: `used_memory / maxmemory` at 80 %.
pub const DEFAULT_MEMORY_RATIO_WARNING: f64 = 0.8;

/// How frames on a websocket are framed and read (`protocol = ...` on `ws_connect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolKind {
    /// Text frames as written: the step writes the frame, patterns see the frame.
    #[default]
    Raw,
    /// Engine.IO v4 / Socket.IO v5.
    SocketIo,
    /// Rails ActionCable (`actioncable-v1-json`).
    ActionCable,
    /// XMPP over websocket (RFC 7395).
    Xmpp,
}

impl ProtocolKind {
    pub const ALL: [ProtocolKind; 4] = [
        ProtocolKind::Raw,
        ProtocolKind::SocketIo,
        ProtocolKind::ActionCable,
        ProtocolKind::Xmpp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolKind::Raw => "raw",
            ProtocolKind::SocketIo => "socketio",
            ProtocolKind::ActionCable => "actioncable",
            ProtocolKind::Xmpp => "xmpp",
        }
    }

    pub fn parse(text: &str) -> Option<ProtocolKind> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// Which protocol-specific keys a ws_send / ws_expect on this connection may use.
    fn allows(self, key: &str, kind: StepKind) -> bool {
        const FRAMED: [&str; 9] = [
            "text",
            "json",
            "event",
            "args",
            "ack",
            "subscribe",
            "expect_json",
            "expect_regex",
            "expect_xml",
        ];
        if !FRAMED.contains(&key) {
            return true;
        }
        match (self, kind) {
            (ProtocolKind::Raw, StepKind::WsSend) => matches!(key, "text" | "json"),
            (ProtocolKind::SocketIo, StepKind::WsSend) => {
                matches!(key, "event" | "args" | "json" | "ack")
            }
            (ProtocolKind::ActionCable, StepKind::WsSend) => {
                matches!(key, "event" | "json" | "subscribe")
            }
            (ProtocolKind::Xmpp, StepKind::WsSend) => matches!(key, "text" | "event"),
            (ProtocolKind::Raw, StepKind::WsExpect) => {
                matches!(key, "expect_json" | "expect_regex")
            }
            (ProtocolKind::SocketIo, StepKind::WsExpect) => {
                matches!(key, "event" | "ack" | "expect_json" | "expect_regex")
            }
            (ProtocolKind::ActionCable, StepKind::WsExpect) => {
                matches!(key, "event" | "expect_json" | "expect_regex")
            }
            (ProtocolKind::Xmpp, StepKind::WsExpect) => {
                matches!(key, "expect_xml" | "expect_regex")
            }
            _ => true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpSpec {
    pub method: reqwest::Method,
    pub url: Template,
    pub headers: Vec<(String, Template)>,
    pub body: Body,
    /// Accepted statuses; empty means any 2xx.
    pub expect_status: Vec<u16>,
    pub expect_json: Option<serde_json::Value>,
    /// All must match the body.
    pub expect_regex: Vec<Pattern>,
    pub fail: FailSpec,
    pub extract: Vec<Extraction>,
}

/// What makes a reply the server's own error: the step fails at once with `server_error`.
#[derive(Debug, Clone, Default)]
pub struct FailSpec {
    pub json: Option<serde_json::Value>,
    /// Any one matching is enough.
    pub regex: Vec<Pattern>,
}

#[derive(Debug, Clone)]
pub enum Body {
    None,
    Json(serde_json::Value),
    Form(Vec<(String, Template)>),
    Raw(Template),
}

#[derive(Debug, Clone)]
pub struct WsConnectSpec {
    pub url: Template,
    pub headers: Vec<(String, Template)>,
    pub subprotocols: Vec<String>,
    pub protocol: ProtocolKind,
    /// Socket.IO namespace (`/` by default).
    pub namespace: String,
    /// Socket.IO namespace-connect payload (templates in its strings).
    pub auth: Option<serde_json::Value>,
    /// XMPP: the domain the stream is opened to.
    pub domain: Option<Template>,
    /// Raw: frames matching this are pings (never matched, never counted).
    pub ping_json: Option<serde_json::Value>,
    /// Frames read while the protocol's handshake completes.
    pub max_frames: usize,
}

/// What a ws_send sends; which fields apply depends on the connection's protocol.
#[derive(Debug, Clone, Default)]
pub struct SendSpec {
    pub text: Option<Template>,
    pub json: Option<serde_json::Value>,
    pub event: Option<Template>,
    pub args: Option<serde_json::Value>,
    pub ack: bool,
    pub subscribe: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct ExpectSpec {
    pub json: Option<serde_json::Value>,
    /// All must match the same frame.
    pub regex: Vec<Pattern>,
    /// XMPP: an element pattern (rendered, then parsed, per run).
    pub xml: Option<Template>,
    /// Socket.IO event name, ActionCable message type.
    pub event: Option<Template>,
    /// Socket.IO: the acknowledgement of the last `ack = true` send.
    pub ack: bool,
    pub fail: FailSpec,
    pub max_frames: usize,
    pub extract: Vec<Extraction>,
}

#[derive(Debug, Clone)]
pub struct Extraction {
    pub var: String,
    pub source: ExtractSource,
}

#[derive(Debug, Clone)]
pub enum ExtractSource {
    /// A JSON pointer (dotted paths are converted at load time).
    Json(String),
    Header(String),
    Cookie(String),
    Regex(Regex),
}

/// Which step kinds accept which keys: drives "key `x` does not apply to a `y` step".
const KEY_KINDS: &[(&str, &[StepKind])] = &[
    ("method", &[StepKind::Http]),
    (
        "url",
        &[
            StepKind::Http,
            StepKind::WsConnect,
            StepKind::Redis,
            StepKind::Turn,
        ],
    ),
    ("headers", &[StepKind::Http, StepKind::WsConnect]),
    ("json", &[StepKind::Http, StepKind::WsSend]),
    ("form", &[StepKind::Http]),
    ("body", &[StepKind::Http]),
    ("expect_status", &[StepKind::Http]),
    ("expect_json", &[StepKind::Http, StepKind::WsExpect]),
    ("expect_regex", &[StepKind::Http, StepKind::WsExpect]),
    ("extract", &[StepKind::Http, StepKind::WsExpect]),
    ("subprotocols", &[StepKind::WsConnect]),
    ("text", &[StepKind::WsSend]),
    ("max_frames", &[StepKind::WsConnect, StepKind::WsExpect]),
    ("fail_json", &[StepKind::Http, StepKind::WsExpect]),
    ("fail_regex", &[StepKind::Http, StepKind::WsExpect]),
    (
        "connection",
        &[
            StepKind::WsConnect,
            StepKind::WsSend,
            StepKind::WsExpect,
            StepKind::WsClose,
            StepKind::Webrtc,
        ],
    ),
    ("protocol", &[StepKind::WsConnect]),
    ("namespace", &[StepKind::WsConnect]),
    ("auth", &[StepKind::WsConnect]),
    ("domain", &[StepKind::WsConnect]),
    ("ping_json", &[StepKind::WsConnect]),
    ("event", &[StepKind::WsSend, StepKind::WsExpect]),
    ("args", &[StepKind::WsSend]),
    ("ack", &[StepKind::WsSend, StepKind::WsExpect]),
    ("subscribe", &[StepKind::WsSend]),
    ("expect_xml", &[StepKind::WsExpect]),
    ("username", &[StepKind::Redis, StepKind::Turn]),
    ("credential", &[StepKind::Turn]),
    ("secret", &[StepKind::Turn]),
    ("credential_ttl", &[StepKind::Turn]),
    ("peer", &[StepKind::Turn]),
    ("password", &[StepKind::Redis]),
    ("channel", &[StepKind::Redis]),
    ("gauges", &[StepKind::HttpJson]),
    ("warn_above", &[StepKind::Redis, StepKind::HttpJson]),
    ("warn_below", &[StepKind::Redis, StepKind::HttpJson]),
    ("action", &[StepKind::Webrtc]),
    ("remote_sdp", &[StepKind::Webrtc]),
    ("save_as", &[StepKind::Webrtc]),
    ("local_address", &[StepKind::Webrtc]),
    ("echo", &[StepKind::Webrtc]),
    ("echo_interval", &[StepKind::Webrtc]),
    ("echo_wait", &[StepKind::Webrtc]),
];

fn present_keys(s: &RawStep) -> Vec<(&'static str, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    macro_rules! key {
        ($field:ident) => {
            if let Some(v) = &s.$field {
                out.push((stringify!($field), v.span()));
            }
        };
    }
    key!(method);
    key!(url);
    key!(headers);
    key!(json);
    key!(form);
    key!(body);
    key!(expect_status);
    key!(expect_json);
    key!(expect_regex);
    key!(extract);
    key!(subprotocols);
    key!(text);
    key!(max_frames);
    key!(fail_json);
    key!(fail_regex);
    key!(connection);
    key!(protocol);
    key!(namespace);
    key!(auth);
    key!(domain);
    key!(ping_json);
    key!(event);
    key!(args);
    key!(ack);
    key!(subscribe);
    key!(expect_xml);
    key!(username);
    key!(credential);
    key!(secret);
    key!(credential_ttl);
    key!(peer);
    key!(password);
    key!(channel);
    key!(gauges);
    key!(warn_above);
    key!(warn_below);
    key!(action);
    key!(remote_sdp);
    key!(save_as);
    key!(local_address);
    key!(echo);
    key!(echo_interval);
    key!(echo_wait);
    out
}

/// Builds one probe file. Returns `None` when the file is unusable; errors go to `errors`.
pub(crate) fn build(
    path: &Path,
    env: &dyn super::EnvSource,
    defaults: &Defaults,
    alerting: &PolicyConfig,
    pager_names: &[String],
    region: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<ProbePlan> {
    let file = read_source(path, errors)?;
    let raw: RawProbe = parse_toml(&file, errors)?;
    let before = errors.len();
    let mut ctx = Ctx {
        file: &file,
        env,
        errors,
        env_values: Vec::new(),
    };

    let name = match &raw.name {
        Some(n) => ctx.env_str(n, "name").unwrap_or_default(),
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    if !valid_label(&name) {
        let span = raw.name.as_ref().map(|n| n.span());
        ctx.error(
            span,
            "name",
            format_args!("`{name}` must be letters, digits, `-`, `_` or `.`"),
        );
    }
    let tz = raw
        .timezone
        .as_ref()
        .and_then(|t| timezone(&mut ctx, t, "timezone"));
    let schedule_plan = match &raw.schedule {
        Some(s) => schedule(&mut ctx, s, tz.or(defaults.schedule.timezone), "schedule"),
        None => Some(Schedule {
            timezone: tz.or(defaults.schedule.timezone),
            ..defaults.schedule.clone()
        }),
    };
    let mut resident = resident_settings(&mut ctx, &raw, defaults);
    let schedule_plan = match &resident {
        Some(r) => {
            if let Some(s) = &raw.schedule {
                ctx.error(
                    Some(s.span()),
                    "schedule",
                    "a resident probe runs every `resident.every`, not on a schedule",
                );
            }
            Some(Schedule {
                expr: format!("resident, every {}", humantime::format_duration(r.every)),
                timezone: None,
                ..every_minute()
            })
        }
        None => schedule_plan,
    };
    // A resident probe's `timeout` is each exchange's deadline: by default one cadence.
    let timeout = raw
        .timeout
        .as_ref()
        .and_then(|t| ctx.duration(t, "timeout"))
        .unwrap_or_else(|| match &resident {
            Some(r) => defaults.timeout.min(r.every),
            None => defaults.timeout,
        });
    if let Some(sched) = &schedule_plan
        && resident.is_none()
        && let Some(interval) = sched.min_interval(chrono::Utc::now(), 60)
        && timeout >= interval
    {
        let span = raw
            .timeout
            .as_ref()
            .or(raw.schedule.as_ref())
            .map(|t| t.span());
        ctx.error(
            span,
            "timeout",
            format_args!(
                "the probe deadline ({}) must be shorter than the schedule's interval ({}), or runs would overlap",
                humantime::format_duration(timeout),
                humantime::format_duration(interval)
            ),
        );
    }
    let max_jitter = raw
        .jitter
        .as_ref()
        .and_then(|t| ctx.duration_or_zero(t, "jitter"))
        .unwrap_or(defaults.jitter);
    let max_body_bytes = raw
        .max_body_bytes
        .as_ref()
        .and_then(|v| ctx.positive(v, "max_body_bytes"))
        .unwrap_or(defaults.max_body_bytes);

    let ca_certs = raw
        .ca_file
        .as_ref()
        .and_then(|f| ca_file(&mut ctx, f, path))
        .unwrap_or_default();
    let tls = (!ca_certs.is_empty()).then(|| crate::net::tls_client_config(ca_certs));

    // Variables may read the built-ins only: that keeps them order-independent.
    let mut defined: HashSet<String> = BUILTINS.iter().map(|s| s.to_string()).collect();
    let mut variables = Vec::new();
    for (var, value) in &raw.variables {
        let key = format!("variables.{var}");
        if BUILTINS.contains(&var.as_str()) {
            ctx.error(
                Some(value.span()),
                &key,
                format_args!("`{var}` is a built-in and cannot be redefined"),
            );
            continue;
        }
        if let Some(t) = ctx.template(value, &key) {
            for used in t.vars() {
                if !BUILTINS.contains(&used) {
                    ctx.error(
                        Some(value.span()),
                        &key,
                        format_args!(
                            "variables may use only the built-ins ({}), not `{used}`",
                            BUILTINS.join(", ")
                        ),
                    );
                }
            }
            variables.push((var.clone(), t));
        }
    }
    defined.extend(raw.variables.keys().cloned());

    let mut steps = Vec::new();
    let mut sections = Sections {
        names: HashSet::new(),
        open: BTreeMap::new(),
        defined,
    };
    if raw.steps.get_ref().is_empty() {
        ctx.error(
            Some(raw.steps.span()),
            "steps",
            "a probe needs at least one step",
        );
    }
    build_steps(
        &mut ctx,
        "steps",
        raw.steps.get_ref(),
        defaults,
        &mut sections,
        &mut steps,
    );
    if let Some(r) = &mut resident {
        resident_steps(&mut ctx, &raw, defaults, &mut sections, r);
    }

    let mut probe_alerting = match &raw.alerting {
        Some(a) => PolicyConfig::build(&mut ctx, a, Some(alerting), "alerting", pager_names),
        None => alerting.clone(),
    };
    if resident.is_some()
        && raw
            .alerting
            .as_ref()
            .is_none_or(|a| a.confirm_delay.is_none())
    {
        probe_alerting.confirm_delay = RESIDENT_CONFIRM_DELAY;
    }
    let exchange_steps = resident.iter().flat_map(|r| r.exchange.iter());
    let all_names: Vec<&String> = steps
        .iter()
        .chain(exchange_steps)
        .map(|s| &s.name)
        .collect();
    for budget_step in probe_alerting.budgets.keys() {
        if !all_names.contains(&budget_step) && !steps.is_empty() {
            let span = raw
                .alerting
                .as_ref()
                .and_then(|a| a.budgets.values().next().map(|v| v.span()));
            ctx.error(
                span,
                "alerting.budgets",
                format_args!("no step is named `{budget_step}`"),
            );
        }
    }

    let secrets: Vec<String> = ctx
        .env_values
        .drain(..)
        .filter(|v| v.len() >= 4 && url::Url::parse(v).is_err())
        .collect();
    let failed = ctx.errors.len() > before;
    let jitter = derive_jitter(region, &name, max_jitter);
    if failed {
        return None;
    }
    // A plan lives as long as the service, once per probe: no spare step slots (a 5-step
    // probe would keep room for 8, ~1.3 KB).
    steps.shrink_to_fit();
    Some(ProbePlan {
        name,
        description: raw.description.clone(),
        source: path.to_path_buf(),
        schedule: schedule_plan?,
        timeout,
        jitter,
        max_body_bytes,
        tls,
        variables,
        steps,
        redactor: crate::redact::Redactor::new(secrets),
        alerting: probe_alerting,
        resident,
    })
}

/// `mode` and `[resident]`: the settings of a resident probe (its steps come later), or `None`
/// for a scheduled one. Resident-only keys on a scheduled probe are errors.
fn resident_settings(
    ctx: &mut Ctx<'_>,
    raw: &RawProbe,
    defaults: &Defaults,
) -> Option<ResidentPlan> {
    let resident = match &raw.mode {
        None => false,
        Some(m) => match m.get_ref().as_str() {
            "scheduled" => false,
            "resident" => true,
            other => {
                ctx.error(
                    Some(m.span()),
                    "mode",
                    format_args!("unknown mode `{other}`, expected `scheduled` or `resident`"),
                );
                false
            }
        },
    };
    if !resident {
        let stray = [
            ("resident", raw.resident.as_ref().map(|r| r.span())),
            ("exchange", raw.exchange.as_ref().map(|r| r.span())),
            ("teardown", raw.teardown.as_ref().map(|r| r.span())),
        ];
        for (key, span) in stray {
            if let Some(span) = span {
                ctx.error(
                    Some(span),
                    key,
                    format_args!("`{key}` applies to `mode = \"resident\"` only"),
                );
            }
        }
        return None;
    }
    let r = raw.resident.as_ref().map(|r| r.get_ref());
    let mut dur = |value: Option<&S<String>>, key: &str, default: Duration| {
        value
            .and_then(|v| ctx.duration(v, &format!("resident.{key}")))
            .unwrap_or(default)
    };
    let every = dur(r.and_then(|r| r.every.as_ref()), "every", RESIDENT_EVERY);
    let max_session_age = dur(
        r.and_then(|r| r.max_session_age.as_ref()),
        "max_session_age",
        RESIDENT_MAX_SESSION_AGE,
    );
    let keepalive = dur(
        r.and_then(|r| r.keepalive.as_ref()),
        "keepalive",
        RESIDENT_KEEPALIVE,
    );
    let setup_timeout = dur(
        r.and_then(|r| r.setup_timeout.as_ref()),
        "setup_timeout",
        defaults.timeout,
    );
    let reconnect_min = dur(
        r.and_then(|r| r.reconnect_min.as_ref()),
        "reconnect_min",
        RESIDENT_RECONNECT_MIN,
    );
    let reconnect_max = dur(
        r.and_then(|r| r.reconnect_max.as_ref()),
        "reconnect_max",
        every.max(reconnect_min),
    );
    let reconnect_after = r
        .and_then(|r| r.reconnect_after.as_ref())
        .and_then(|v| ctx.positive(v, "resident.reconnect_after"))
        .map_or(RESIDENT_RECONNECT_AFTER, |n| {
            u32::try_from(n).unwrap_or(u32::MAX)
        });
    let span = raw.resident.as_ref().map(|r| r.span());
    if reconnect_min > reconnect_max {
        ctx.error(
            span.clone(),
            "resident.reconnect_min",
            "must not be longer than `reconnect_max`",
        );
    }
    if max_session_age <= every {
        ctx.error(
            span,
            "resident.max_session_age",
            format_args!(
                "must be longer than `every` ({}), or every exchange would open a session",
                humantime::format_duration(every)
            ),
        );
    }
    Some(ResidentPlan {
        every,
        max_session_age,
        keepalive,
        setup_timeout,
        reconnect_min,
        reconnect_max,
        reconnect_after,
        exchange: Vec::new(),
        teardown: Vec::new(),
    })
}

/// `[[exchange]]` and `[[teardown]]` of a resident probe. An exchange neither opens nor closes
/// a connection: the session does (`steps`, `teardown`), so every exchange finds it as the
/// last one left it.
fn resident_steps(
    ctx: &mut Ctx<'_>,
    raw: &RawProbe,
    defaults: &Defaults,
    sections: &mut Sections,
    plan: &mut ResidentPlan,
) {
    let exchange = raw.exchange.as_ref().map_or(&[][..], |e| e.get_ref());
    if exchange.is_empty() {
        ctx.error(
            raw.exchange
                .as_ref()
                .map(|e| e.span())
                .or(raw.mode.as_ref().map(|m| m.span())),
            "exchange",
            "a resident probe needs at least one `[[exchange]]` step",
        );
    }
    for (i, step) in exchange.iter().enumerate() {
        let kind = step.get_ref().kind.get_ref().as_str();
        if kind == "ws_connect" || kind == "ws_close" {
            ctx.error(
                Some(step.get_ref().kind.span()),
                format!("exchange[{i}].kind"),
                format_args!(
                    "a {kind} belongs in `[[steps]]` (opening the session) or `[[teardown]]`, not in an exchange"
                ),
            );
        }
    }
    build_steps(
        ctx,
        "exchange",
        exchange,
        defaults,
        sections,
        &mut plan.exchange,
    );
    let teardown = raw.teardown.as_ref().map_or(&[][..], |t| t.get_ref());
    build_steps(
        ctx,
        "teardown",
        teardown,
        defaults,
        sections,
        &mut plan.teardown,
    );
}

/// What the sections of a probe (`steps`, then `exchange` and `teardown`) share: step names are
/// unique across them, and a connection or value set in one is there for the next.
struct Sections {
    names: HashSet<String>,
    /// Open websockets by connection name, with their protocol: a ws_send's keys depend on it.
    open: BTreeMap<String, ProtocolKind>,
    /// Values set so far (built-ins, variables, extractions).
    defined: HashSet<String>,
}

/// Builds one section's steps (`section` is its key: `steps`, `exchange`, `teardown`).
fn build_steps(
    ctx: &mut Ctx<'_>,
    section: &str,
    raw_steps: &[S<RawStep>],
    defaults: &Defaults,
    sections: &mut Sections,
    steps: &mut Vec<StepPlan>,
) {
    for (i, step) in raw_steps.iter().enumerate() {
        let prefix = format!("{section}[{i}]");
        let s = step.get_ref();
        if !sections.names.insert(s.name.get_ref().clone()) {
            ctx.error(
                Some(s.name.span()),
                format!("{prefix}.name"),
                format_args!("step name `{}` is used twice", s.name.get_ref()),
            );
        }
        if !valid_label(s.name.get_ref()) {
            ctx.error(
                Some(s.name.span()),
                format!("{prefix}.name"),
                "must be letters, digits, `-`, `_` or `.`",
            );
        }
        let Some(kind) = StepKind::parse(s.kind.get_ref()) else {
            let kinds: Vec<_> = StepKind::ALL.iter().map(|k| k.as_str()).collect();
            ctx.error(
                Some(s.kind.span()),
                format!("{prefix}.kind"),
                format_args!(
                    "unknown step kind `{}`, expected one of {}",
                    s.kind.get_ref(),
                    kinds.join(", ")
                ),
            );
            continue;
        };
        let connection = s
            .connection
            .as_ref()
            .map(|c| c.get_ref().clone())
            .unwrap_or_default();
        if let Some(c) = &s.connection
            && !valid_label(c.get_ref())
        {
            ctx.error(
                Some(c.span()),
                format!("{prefix}.connection"),
                "must be letters, digits, `-`, `_` or `.`",
            );
        }
        let protocol = sections.open.get(&connection).copied();
        for (key, span) in present_keys(s) {
            let allowed = KEY_KINDS
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(&[][..], |(_, kinds)| *kinds);
            // An http_json step is an http step with gauges: it takes every http key.
            let http_key = kind == StepKind::HttpJson && allowed.contains(&StepKind::Http);
            if !allowed.contains(&kind) && !http_key {
                ctx.error(
                    Some(span),
                    format!("{prefix}.{key}"),
                    format_args!("`{key}` does not apply to a {} step", kind.as_str()),
                );
            } else if let Some(p) = protocol
                && !p.allows(key, kind)
            {
                ctx.error(
                    Some(span),
                    format!("{prefix}.{key}"),
                    format_args!(
                        "`{key}` does not apply to a ws_{} on a `{}` connection",
                        &kind.as_str()[3..],
                        p.as_str()
                    ),
                );
            }
        }
        if matches!(
            kind,
            StepKind::WsSend | StepKind::WsExpect | StepKind::WsClose
        ) && protocol.is_none()
        {
            let which = if connection.is_empty() {
                String::new()
            } else {
                format!(" for connection `{connection}`")
            };
            ctx.error(
                Some(s.kind.span()),
                format!("{prefix}.kind"),
                format_args!("needs a ws_connect step{which} before it"),
            );
        }
        let step_timeout = s
            .timeout
            .as_ref()
            .and_then(|t| ctx.duration(t, &format!("{prefix}.timeout")))
            .or(defaults.step_timeout);
        let spec = build_spec(
            ctx,
            s,
            kind,
            &prefix,
            defaults,
            protocol.unwrap_or_default(),
        );
        match (&spec, kind) {
            (Some(StepSpec::WsConnect(c)), _) => {
                sections.open.insert(connection.clone(), c.protocol);
            }
            (_, StepKind::WsClose) => {
                sections.open.remove(&connection);
            }
            _ => {}
        }
        if let Some(spec) = spec {
            let uses = check_vars(ctx, step, &spec, &sections.defined, &prefix);
            for var in spec_extracts(&spec) {
                sections.defined.insert(var.var.clone());
            }
            if let StepSpec::Webrtc(w) = &spec
                && let Some(var) = w.sets()
            {
                sections.defined.insert(var.to_string());
            }
            steps.push(StepPlan {
                name: s.name.get_ref().clone(),
                kind,
                timeout: step_timeout,
                spec,
                // Teardown runs when the session ends however it ended, and never fails a run.
                cleanup: section == "teardown" || s.cleanup.as_ref().is_some_and(|c| *c.get_ref()),
                connection,
                uses,
            });
        }
    }
}

/// Reads a PEM bundle of extra trusted CAs.
fn ca_file(
    ctx: &mut Ctx<'_>,
    value: &S<String>,
    probe_path: &Path,
) -> Option<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let rel = ctx.env_str(value, "ca_file")?;
    let path = probe_path.parent().unwrap_or(Path::new(".")).join(&rel);
    let bytes = match super::file::read_bytes(&path) {
        Ok(b) => b,
        Err(e) => {
            ctx.error(
                Some(value.span()),
                "ca_file",
                format_args!("cannot read `{}`: {e}", path.display()),
            );
            return None;
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        ctx.error(
            Some(value.span()),
            "ca_file",
            format_args!("`{}` holds no PEM certificate", path.display()),
        );
        return None;
    }
    Some(certs)
}

/// A fixed offset in `[0, max)` from region and probe: regions spread out, and one region's
/// offset stays the same across restarts (FNV-1a, not `DefaultHasher`, whose output may change
/// between Rust releases).
pub fn derive_jitter(region: &str, probe: &str, max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in region.bytes().chain([0]).chain(probe.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(hash % max_ms)
}

fn spec_extracts(spec: &StepSpec) -> &[Extraction] {
    match spec {
        StepSpec::Http(h) | StepSpec::HttpJson(HttpJsonSpec { http: h, .. }) => &h.extract,
        StepSpec::WsExpect(e) => &e.extract,
        _ => &[],
    }
}

fn build_spec(
    ctx: &mut Ctx<'_>,
    s: &RawStep,
    kind: StepKind,
    prefix: &str,
    defaults: &Defaults,
    protocol: ProtocolKind,
) -> Option<StepSpec> {
    let key = |k: &str| format!("{prefix}.{k}");
    match kind {
        StepKind::Turn => turn_spec(ctx, s, &key).map(StepSpec::Turn),
        StepKind::Http => {
            let Some(url_raw) = &s.url else {
                ctx.error(Some(s.name.span()), key("url"), "an http step needs `url`");
                return None;
            };
            let url = url_template(ctx, url_raw, &key("url"), &["http", "https"])?;
            let method = match &s.method {
                Some(m) => {
                    match reqwest::Method::from_bytes(m.get_ref().to_ascii_uppercase().as_bytes()) {
                        Ok(m) => m,
                        Err(_) => {
                            ctx.error(
                                Some(m.span()),
                                key("method"),
                                format_args!("`{}` is not an HTTP method", m.get_ref()),
                            );
                            return None;
                        }
                    }
                }
                None => reqwest::Method::GET,
            };
            let bodies = [s.json.is_some(), s.form.is_some(), s.body.is_some()];
            if bodies.iter().filter(|b| **b).count() > 1 {
                ctx.error(
                    Some(s.name.span()),
                    prefix,
                    "give at most one of `json`, `form`, `body`",
                );
            }
            let body = if let Some(j) = &s.json {
                Body::Json(ctx.json(j, &key("json"))?)
            } else if let Some(f) = &s.form {
                let mut fields = Vec::new();
                for (k, v) in f.get_ref() {
                    fields.push((k.clone(), ctx.template(v, &key(&format!("form.{k}")))?));
                }
                Body::Form(fields)
            } else if let Some(b) = &s.body {
                Body::Raw(ctx.template(b, &key("body"))?)
            } else {
                Body::None
            };
            let expect_status = match &s.expect_status {
                Some(list) => {
                    let mut out = Vec::new();
                    for code in list.get_ref() {
                        match u16::try_from(*code) {
                            Ok(c) if (100..=599).contains(&c) => out.push(c),
                            _ => ctx.error(
                                Some(list.span()),
                                key("expect_status"),
                                format_args!("`{code}` is not an HTTP status"),
                            ),
                        }
                    }
                    out
                }
                None => Vec::new(),
            };
            Some(StepSpec::Http(HttpSpec {
                method,
                url,
                headers: headers(ctx, s.headers.as_ref(), &key("headers"))?,
                body,
                expect_status,
                expect_json: match &s.expect_json {
                    Some(j) => Some(ctx.json(j, &key("expect_json"))?),
                    None => None,
                },
                expect_regex: patterns(ctx, s.expect_regex.as_ref(), &key("expect_regex"))?,
                fail: fail_spec(ctx, s, prefix)?,
                extract: extracts(ctx, s.extract.as_ref(), &key("extract"), true)?,
            }))
        }
        StepKind::WsConnect => {
            let Some(url_raw) = &s.url else {
                ctx.error(
                    Some(s.name.span()),
                    key("url"),
                    "a ws_connect step needs `url`",
                );
                return None;
            };
            let protocol = match &s.protocol {
                Some(p) => {
                    let Some(kind) = ProtocolKind::parse(p.get_ref()) else {
                        let all: Vec<_> = ProtocolKind::ALL.iter().map(|p| p.as_str()).collect();
                        ctx.error(
                            Some(p.span()),
                            key("protocol"),
                            format_args!(
                                "unknown protocol `{}`, expected one of {}",
                                p.get_ref(),
                                all.join(", ")
                            ),
                        );
                        return None;
                    };
                    kind
                }
                None => ProtocolKind::Raw,
            };
            for (name, present, wants) in [
                ("namespace", s.namespace.is_some(), ProtocolKind::SocketIo),
                ("auth", s.auth.is_some(), ProtocolKind::SocketIo),
                ("domain", s.domain.is_some(), ProtocolKind::Xmpp),
                ("ping_json", s.ping_json.is_some(), ProtocolKind::Raw),
            ] {
                if present && protocol != wants {
                    ctx.error(
                        Some(s.name.span()),
                        key(name),
                        format_args!(
                            "`{name}` applies to `protocol = \"{}\"` only",
                            wants.as_str()
                        ),
                    );
                }
            }
            let namespace = s
                .namespace
                .as_ref()
                .map_or_else(|| "/".to_string(), |n| n.get_ref().clone());
            if !namespace.starts_with('/') || namespace.contains(',') {
                ctx.error(
                    s.namespace.as_ref().map(|n| n.span()),
                    key("namespace"),
                    "a Socket.IO namespace starts with `/` and has no `,`",
                );
            }
            let domain = match &s.domain {
                Some(d) => Some(ctx.template(d, &key("domain"))?),
                None => None,
            };
            if protocol == ProtocolKind::Xmpp && domain.is_none() {
                ctx.error(
                    Some(s.name.span()),
                    key("domain"),
                    "an xmpp connection needs `domain` (the stream's `to`)",
                );
            }
            let auth = match &s.auth {
                Some(a) => {
                    let v = ctx.json(a, &key("auth"))?;
                    if !v.is_object() {
                        ctx.error(Some(a.span()), key("auth"), "must be a table");
                    }
                    Some(v)
                }
                None => None,
            };
            let ping_json = match &s.ping_json {
                Some(j) => Some(ctx.json_data(j, &key("ping_json"))?),
                None => None,
            };
            Some(StepSpec::WsConnect(WsConnectSpec {
                url: url_template(ctx, url_raw, &key("url"), &["ws", "wss", "http", "https"])?,
                headers: headers(ctx, s.headers.as_ref(), &key("headers"))?,
                subprotocols: s
                    .subprotocols
                    .as_ref()
                    .map(|p| p.get_ref().clone())
                    .unwrap_or_default(),
                protocol,
                namespace,
                auth,
                domain,
                ping_json,
                max_frames: s
                    .max_frames
                    .as_ref()
                    .and_then(|m| ctx.positive(m, &key("max_frames")))
                    .unwrap_or(defaults.max_frames),
            }))
        }
        StepKind::WsSend => {
            let spec = SendSpec {
                text: match &s.text {
                    Some(t) => Some(ctx.template(t, &key("text"))?),
                    None => None,
                },
                json: match &s.json {
                    Some(j) => Some(ctx.json(j, &key("json"))?),
                    None => None,
                },
                event: match &s.event {
                    Some(e) => Some(ctx.template(e, &key("event"))?),
                    None => None,
                },
                args: match &s.args {
                    Some(a) => {
                        let v = ctx.json(a, &key("args"))?;
                        if !v.is_array() {
                            ctx.error(Some(a.span()), key("args"), "must be an array");
                        }
                        Some(v)
                    }
                    None => None,
                },
                ack: s.ack.as_ref().is_some_and(|a| *a.get_ref()),
                subscribe: match &s.subscribe {
                    Some(j) => {
                        let v = ctx.json(j, &key("subscribe"))?;
                        if !v.is_object() {
                            ctx.error(
                                Some(j.span()),
                                key("subscribe"),
                                "must be a table (the channel identifier)",
                            );
                        }
                        Some(v)
                    }
                    None => None,
                },
            };
            let needs = match protocol {
                ProtocolKind::Raw => (spec.text.is_some() != spec.json.is_some())
                    .then_some(())
                    .ok_or("a ws_send step needs `text` or `json` (one of them)"),
                ProtocolKind::SocketIo => (spec.event.is_some()
                    && !(spec.args.is_some() && spec.json.is_some()))
                .then_some(())
                .ok_or("a socketio ws_send needs `event`, and `args` or `json` (not both)"),
                ProtocolKind::ActionCable => (spec.subscribe.is_some() != spec.event.is_some())
                    .then_some(())
                    .ok_or("an actioncable ws_send needs `subscribe` or `event` (one of them)"),
                ProtocolKind::Xmpp => {
                    let open = spec.event.as_ref().is_some_and(|e| e.to_string() == "open");
                    (spec.text.is_some() != open)
                        .then_some(())
                        .ok_or("an xmpp ws_send needs `text` (a stanza) or `event = \"open\"` (restart the stream)")
                }
            };
            if let Err(msg) = needs {
                ctx.error(Some(s.name.span()), prefix, msg);
                return None;
            }
            Some(StepSpec::WsSend(spec))
        }
        StepKind::WsExpect => {
            if s.expect_json.is_none()
                && s.expect_regex.is_none()
                && s.expect_xml.is_none()
                && s.event.is_none()
                && !s.ack.as_ref().is_some_and(|a| *a.get_ref())
            {
                ctx.error(
                    Some(s.name.span()),
                    prefix,
                    "a ws_expect step needs `expect_json`, `expect_regex`, `expect_xml`, `event` or `ack`",
                );
                return None;
            }
            let xml = match &s.expect_xml {
                Some(x) => {
                    let t = ctx.template(x, &key("expect_xml"))?;
                    if let Err(e) =
                        crate::flow::protocol::xmpp::Element::parse(&t.render_placeholder("x"))
                    {
                        ctx.error(
                            Some(x.span()),
                            key("expect_xml"),
                            format_args!("not one XML element: {e}"),
                        );
                        return None;
                    }
                    Some(t)
                }
                None => None,
            };
            Some(StepSpec::WsExpect(ExpectSpec {
                json: match &s.expect_json {
                    Some(j) => Some(ctx.json(j, &key("expect_json"))?),
                    None => None,
                },
                regex: patterns(ctx, s.expect_regex.as_ref(), &key("expect_regex"))?,
                xml,
                event: match &s.event {
                    Some(e) => Some(ctx.template(e, &key("event"))?),
                    None => None,
                },
                ack: s.ack.as_ref().is_some_and(|a| *a.get_ref()),
                fail: fail_spec(ctx, s, prefix)?,
                max_frames: s
                    .max_frames
                    .as_ref()
                    .and_then(|m| ctx.positive(m, &key("max_frames")))
                    .unwrap_or(defaults.max_frames),
                extract: extracts(ctx, s.extract.as_ref(), &key("extract"), false)?,
            }))
        }
        StepKind::WsClose => Some(StepSpec::WsClose),
        StepKind::Webrtc => {
            let raw = crate::flow::webrtc::RawWebrtc {
                action: s.action.clone(),
                remote_sdp: s.remote_sdp.clone(),
                save_as: s.save_as.clone(),
                local_address: s.local_address.clone(),
                echo: s.echo.clone(),
                echo_interval: s.echo_interval.clone(),
                echo_wait: s.echo_wait.clone(),
            };
            crate::flow::webrtc::WebrtcSpec::build(ctx, &raw, s.name.span(), &key)
                .map(StepSpec::Webrtc)
        }
        StepKind::Redis => {
            let Some(url_raw) = &s.url else {
                ctx.error(
                    Some(s.name.span()),
                    key("url"),
                    "a redis step needs `url` (redis:// or rediss://)",
                );
                return None;
            };
            let url = url_template(ctx, url_raw, &key("url"), &["redis", "rediss"])?;
            let username = s
                .username
                .as_ref()
                .and_then(|u| ctx.env_str(u, &key("username")))
                // `${REDIS_PASSWORD:-}` unset: no AUTH at all, not AUTH with "".
                .filter(|v| !v.is_empty());
            let password = s
                .password
                .as_ref()
                .and_then(|p| ctx.env_str(p, &key("password")))
                // `${REDIS_PASSWORD:-}` unset: no AUTH at all, not AUTH with "".
                .filter(|v| !v.is_empty());
            let channel = match &s.channel {
                Some(c) => Some(ctx.template(c, &key("channel"))?),
                None => None,
            };
            let known = |name: &str| {
                crate::flow::REDIS_GAUGES.contains(&name)
                    || crate::flow::CounterRate::parse(name).is_some()
            };
            let has = format!(
                "{}, or the rate of an INFO counter, <counter>_per_second or <counter>_per_minute, for the counters {}",
                crate::flow::REDIS_GAUGES.join(", "),
                crate::flow::REDIS_COUNTERS.join(", ")
            );
            let mut checks = gauge_checks(ctx, s, prefix, &known, &has)?;
            if !checks.warn_above.iter().any(|(n, _)| n == "memory_ratio") {
                checks
                    .warn_above
                    .push(("memory_ratio".into(), DEFAULT_MEMORY_RATIO_WARNING));
            }
            let mut rates: Vec<crate::flow::CounterRate> = Vec::new();
            let named = checks.warn_above.iter().chain(&checks.warn_below);
            for name in crate::flow::DEFAULT_RATES
                .into_iter()
                .chain(named.map(|(n, _)| n.as_str()))
            {
                if let Some(rate) = crate::flow::CounterRate::parse(name)
                    && !rates.contains(&rate)
                {
                    rates.push(rate);
                }
            }
            Some(StepSpec::Redis(RedisSpec {
                url,
                username,
                password,
                channel,
                checks,
                rates,
                memory: std::sync::Arc::default(),
            }))
        }
        StepKind::HttpJson => {
            let Some(StepSpec::Http(mut http)) =
                build_spec(ctx, s, StepKind::Http, prefix, defaults, protocol)
            else {
                return None;
            };
            let mut gauges = Vec::new();
            for (name, path) in s
                .gauges
                .as_ref()
                .map(|g| g.get_ref().iter())
                .into_iter()
                .flatten()
            {
                let k = key(&format!("gauges.{name}"));
                if !valid_label(name) {
                    ctx.error(
                        Some(path.span()),
                        &k,
                        "a gauge name must be letters, digits, `-`, `_` or `.`",
                    );
                    continue;
                }
                match json_pointer(path.get_ref()) {
                    Ok(p) => {
                        http.extract.push(Extraction {
                            var: crate::flow::gauge_var(name),
                            source: ExtractSource::Json(p.clone()),
                        });
                        gauges.push((name.clone(), p));
                    }
                    Err(msg) => ctx.error(Some(path.span()), &k, msg),
                }
            }
            if gauges.is_empty() {
                ctx.error(
                    Some(s.name.span()),
                    key("gauges"),
                    "an http_json step needs `gauges` (name = JSON pointer of a number)",
                );
                return None;
            }
            let names: Vec<&str> = gauges.iter().map(|(n, _)| n.as_str()).collect();
            let known = |name: &str| names.contains(&name);
            let checks = gauge_checks(ctx, s, prefix, &known, &names.join(", "))?;
            Some(StepSpec::HttpJson(HttpJsonSpec {
                http,
                gauges,
                checks,
            }))
        }
    }
}

/// `warn_above` / `warn_below`: every name must be one of the step's gauges (`known`; `has`
/// lists them for the message): a misspelt threshold would otherwise never warn.
fn gauge_checks(
    ctx: &mut Ctx<'_>,
    s: &RawStep,
    prefix: &str,
    known: &dyn Fn(&str) -> bool,
    has: &str,
) -> Option<GaugeChecks> {
    let mut ok = true;
    let mut read = |ctx: &mut Ctx<'_>, raw: Option<&S<BTreeMap<String, S<f64>>>>, which: &str| {
        let mut out = Vec::new();
        for (name, value) in raw.map(|m| m.get_ref().iter()).into_iter().flatten() {
            let k = format!("{prefix}.{which}.{name}");
            if !known(name) {
                ctx.error(
                    Some(value.span()),
                    &k,
                    format_args!("`{name}` is not a gauge of this step (it has {has})"),
                );
                ok = false;
            } else if !value.get_ref().is_finite() {
                ctx.error(Some(value.span()), &k, "must be a finite number");
                ok = false;
            } else {
                out.push((name.clone(), *value.get_ref()));
            }
        }
        out
    };
    let checks = GaugeChecks {
        warn_above: read(ctx, s.warn_above.as_ref(), "warn_above"),
        warn_below: read(ctx, s.warn_below.as_ref(), "warn_below"),
    };
    ok.then_some(checks)
}

/// A `turn` step: the URI checked now when it holds no template, the credential or the REST
/// secret (not both), the echo peer.
fn turn_spec(
    ctx: &mut Ctx<'_>,
    s: &RawStep,
    key: &dyn Fn(&str) -> String,
) -> Option<crate::flow::turn::TurnSpec> {
    let Some(url_raw) = &s.url else {
        ctx.error(
            Some(s.name.span()),
            key("url"),
            "a turn step needs `url` (stun:, stuns:, turn: or turns:)",
        );
        return None;
    };
    let url = ctx.template(url_raw, &key("url"))?;
    if url.is_literal()
        && let Err(e) = crate::flow::turn::check_url(&url.render_placeholder(""))
    {
        ctx.error(Some(url_raw.span()), key("url"), e);
        return None;
    }
    let mut template = |raw: &Option<S<String>>, name: &str| match raw {
        Some(r) => ctx.template(r, &key(name)).map(Some),
        None => Some(None),
    };
    let username = template(&s.username, "username")?;
    let credential = template(&s.credential, "credential")?;
    let peer = template(&s.peer, "peer")?;
    let secret = s
        .secret
        .as_ref()
        .and_then(|v| ctx.env_str(v, &key("secret")))
        // `${TURN_SECRET:-}` unset: no REST credential, not one signed with "".
        .filter(|v| !v.is_empty());
    if let (Some(_), Some(c)) = (&secret, &s.credential) {
        ctx.error(
            Some(c.span()),
            key("credential"),
            "`secret` computes the credential (TURN REST API): set `credential` or `secret`, not both",
        );
        return None;
    }
    let credential_ttl = match &s.credential_ttl {
        Some(v) => ctx.duration(v, &key("credential_ttl"))?,
        None => crate::flow::turn::DEFAULT_CREDENTIAL_TTL,
    };
    Some(crate::flow::turn::TurnSpec {
        url,
        username,
        credential,
        secret,
        credential_ttl,
        peer,
    })
}

fn url_template(
    ctx: &mut Ctx<'_>,
    raw: &S<String>,
    key: &str,
    schemes: &[&str],
) -> Option<Template> {
    let t = ctx.template(raw, key)?;
    let probe = t.render_placeholder("x");
    match url::Url::parse(&probe) {
        Ok(u) if schemes.contains(&u.scheme()) && u.host_str().is_some_and(|h| !h.is_empty()) => {
            Some(t)
        }
        Ok(_) => {
            ctx.error(
                Some(raw.span()),
                key,
                format_args!(
                    "`{}` must be a {} URL with a host",
                    crate::redact::redact_url_text(&probe),
                    schemes.join(" or ")
                ),
            );
            None
        }
        Err(e) => {
            ctx.error(
                Some(raw.span()),
                key,
                format_args!(
                    "`{}` is not a valid URL: {e}",
                    crate::redact::redact_url_text(&probe)
                ),
            );
            None
        }
    }
}

fn headers(
    ctx: &mut Ctx<'_>,
    raw: Option<&S<BTreeMap<String, S<String>>>>,
    key: &str,
) -> Option<Vec<(String, Template)>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (name, value) in raw.map(|h| h.get_ref().iter()).into_iter().flatten() {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            ctx.error(
                Some(value.span()),
                format!("{key}.{name}"),
                "not a valid header name",
            );
            ok = false;
            continue;
        }
        let field = format!("{key}.{name}");
        let Some(text) = ctx.env_template_str(value, &field) else {
            ok = false;
            continue;
        };
        let t = match Template::parse(&text) {
            Ok(t) => t,
            Err(e) => {
                ctx.error(Some(value.span()), field, e);
                ok = false;
                continue;
            }
        };
        // A line break would end the header early (and smuggle the rest in as more headers);
        // hyper refuses such a value at send time, so every run would fail. The value itself
        // is not quoted: it may hold a secret from the environment.
        if t.render_placeholder("x").contains(['\r', '\n', '\0']) {
            ctx.error(
                Some(value.span()),
                field,
                "contains a line break or NUL; a header value must be one line",
            );
            ok = false;
            continue;
        }
        out.push((name.clone(), t));
    }
    ok.then_some(out)
}

/// One regex template or a list of them (`expect_regex = [..]`, `fail_regex = [..]`).
fn patterns(ctx: &mut Ctx<'_>, raw: Option<&S<toml::Value>>, key: &str) -> Option<Vec<Pattern>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let texts: Vec<&str> = match raw.get_ref() {
        toml::Value::String(s) => vec![s.as_str()],
        toml::Value::Array(items) if !items.is_empty() => {
            match items.iter().map(toml::Value::as_str).collect::<Option<_>>() {
                Some(t) => t,
                None => {
                    ctx.error(
                        Some(raw.span()),
                        key,
                        "must be a string or a list of strings",
                    );
                    return None;
                }
            }
        }
        _ => {
            ctx.error(
                Some(raw.span()),
                key,
                "must be a string or a list of strings",
            );
            return None;
        }
    };
    let mut out = Vec::new();
    let mut ok = true;
    for text in texts {
        let value = S::new(raw.span(), text.to_string());
        let Some(substituted) = ctx.env_template_str(&value, key) else {
            ok = false;
            continue;
        };
        match Pattern::parse(&substituted) {
            Ok(p) => out.push(p),
            Err(e) => {
                ctx.error(Some(raw.span()), key, e);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn fail_spec(ctx: &mut Ctx<'_>, s: &RawStep, prefix: &str) -> Option<FailSpec> {
    Some(FailSpec {
        json: match &s.fail_json {
            Some(j) => Some(ctx.json(j, &format!("{prefix}.fail_json"))?),
            None => None,
        },
        regex: patterns(ctx, s.fail_regex.as_ref(), &format!("{prefix}.fail_regex"))?,
    })
}

fn extracts(
    ctx: &mut Ctx<'_>,
    raw: Option<&S<BTreeMap<String, S<RawExtract>>>>,
    key: &str,
    http: bool,
) -> Option<Vec<Extraction>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (var, spec) in raw.map(|m| m.get_ref().iter()).into_iter().flatten() {
        let k = format!("{key}.{var}");
        if BUILTINS.contains(&var.as_str()) || !valid_label(var) {
            ctx.error(
                Some(spec.span()),
                &k,
                format_args!("`{var}` cannot be used as a variable name"),
            );
            ok = false;
            continue;
        }
        let e = spec.get_ref();
        let given = [
            e.json.is_some(),
            e.header.is_some(),
            e.cookie.is_some(),
            e.regex.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            ctx.error(
                Some(spec.span()),
                &k,
                "give exactly one of `json`, `header`, `cookie`, `regex`",
            );
            ok = false;
            continue;
        }
        let source = if let Some(path) = &e.json {
            match json_pointer(path) {
                Ok(p) => ExtractSource::Json(p),
                Err(msg) => {
                    ctx.error(Some(spec.span()), &k, msg);
                    ok = false;
                    continue;
                }
            }
        } else if let Some(h) = &e.header {
            if !http {
                ctx.error(Some(spec.span()), &k, "`header` applies to http steps only");
                ok = false;
                continue;
            }
            ExtractSource::Header(h.clone())
        } else if let Some(c) = &e.cookie {
            if !http {
                ctx.error(Some(spec.span()), &k, "`cookie` applies to http steps only");
                ok = false;
                continue;
            }
            ExtractSource::Cookie(c.clone())
        } else if let Some(r) = &e.regex {
            match Regex::new(r) {
                Ok(r) => ExtractSource::Regex(r),
                Err(err) => {
                    ctx.error(
                        Some(spec.span()),
                        &k,
                        format_args!("not a valid regex: {err}"),
                    );
                    ok = false;
                    continue;
                }
            }
        } else {
            continue;
        };
        out.push(Extraction {
            var: var.clone(),
            source,
        });
    }
    ok.then_some(out)
}

/// Accepts a JSON pointer (`/a/0/b`) or a dotted path (`$.a[0].b`, `a.b`) and returns a pointer.
///
/// # Errors
/// An empty path or unbalanced brackets.
pub fn json_pointer(path: &str) -> Result<String, String> {
    if path.starts_with('/') || path.is_empty() {
        return Ok(path.to_string());
    }
    let trimmed = path.strip_prefix('$').unwrap_or(path);
    let trimmed = trimmed.strip_prefix('.').unwrap_or(trimmed);
    let mut pointer = String::new();
    for part in trimmed.split('.') {
        let mut rest = part;
        let name_end = rest.find('[').unwrap_or(rest.len());
        let name = &rest[..name_end];
        if !name.is_empty() {
            pointer.push('/');
            pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
        }
        rest = &rest[name_end..];
        while let Some(inner) = rest.strip_prefix('[') {
            let close = inner
                .find(']')
                .ok_or_else(|| format!("`{path}`: `[` is never closed"))?;
            let index = inner[..close].trim_matches(|c| c == '"' || c == '\'');
            pointer.push('/');
            pointer.push_str(index);
            rest = &inner[close + 1..];
        }
        if !rest.is_empty() {
            return Err(format!(
                "`{path}` is not a JSON path like `$.data.token` or a pointer like `/data/token`"
            ));
        }
    }
    if pointer.is_empty() {
        return Err(format!("`{path}` selects nothing"));
    }
    Ok(pointer)
}

/// Every template a step reads must use only variables known at that point of the flow.
/// Returns the variables the step reads.
fn check_vars(
    ctx: &mut Ctx<'_>,
    step: &S<RawStep>,
    spec: &StepSpec,
    defined: &HashSet<String>,
    prefix: &str,
) -> Vec<String> {
    let mut templates: Vec<&Template> = Vec::new();
    let mut json: Vec<&serde_json::Value> = Vec::new();
    match spec {
        StepSpec::Redis(r) => {
            templates.push(&r.url);
            templates.extend(&r.channel);
        }
        StepSpec::Http(h) | StepSpec::HttpJson(HttpJsonSpec { http: h, .. }) => {
            templates.push(&h.url);
            templates.extend(h.headers.iter().map(|(_, t)| t));
            match &h.body {
                Body::Json(v) => json.push(v),
                Body::Form(f) => templates.extend(f.iter().map(|(_, t)| t)),
                Body::Raw(t) => templates.push(t),
                Body::None => {}
            }
            json.extend(&h.expect_json);
            templates.extend(h.expect_regex.iter().map(Pattern::template));
            json.extend(&h.fail.json);
            templates.extend(h.fail.regex.iter().map(Pattern::template));
        }
        StepSpec::WsConnect(w) => {
            templates.push(&w.url);
            templates.extend(w.headers.iter().map(|(_, t)| t));
            templates.extend(&w.domain);
            json.extend(&w.auth);
            json.extend(&w.ping_json);
        }
        StepSpec::WsSend(send) => {
            templates.extend(&send.text);
            templates.extend(&send.event);
            json.extend(&send.json);
            json.extend(&send.args);
            json.extend(&send.subscribe);
        }
        StepSpec::WsExpect(e) => {
            json.extend(&e.json);
            templates.extend(e.regex.iter().map(Pattern::template));
            templates.extend(&e.xml);
            templates.extend(&e.event);
            json.extend(&e.fail.json);
            templates.extend(e.fail.regex.iter().map(Pattern::template));
        }
        StepSpec::WsClose => {}
        StepSpec::Turn(t) => templates.extend(t.templates()),
        StepSpec::Webrtc(w) => templates.extend(w.reads()),
    }
    let mut used: Vec<String> = templates
        .iter()
        .flat_map(|t| t.vars().map(str::to_string).collect::<Vec<_>>())
        .collect();
    for v in json {
        for t in template::json_templates(v).unwrap_or_default() {
            used.extend(t.vars().map(str::to_string));
        }
    }
    let mut reported = HashSet::new();
    for var in &used {
        if !defined.contains(var) && reported.insert(var.clone()) {
            ctx.error(
                Some(step.span()),
                prefix,
                format_args!(
                    "step `{}` uses `{{{{{var}}}}}` before any step sets it (set it with `extract` in an earlier step or under [variables])",
                    step.get_ref().name.get_ref()
                ),
            );
        }
    }
    used.sort();
    used.dedup();
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_become_pointers() {
        assert_eq!(json_pointer("/token").unwrap(), "/token");
        assert_eq!(json_pointer("$.data.token").unwrap(), "/data/token");
        assert_eq!(json_pointer("items[0].id").unwrap(), "/items/0/id");
        assert!(json_pointer("a[0").is_err());
    }

    #[test]
    fn jitter_is_stable_bounded_and_differs_by_region() {
        let max = Duration::from_secs(10);
        let a = derive_jitter("eu-west-1", "join", max);
        assert_eq!(a, derive_jitter("eu-west-1", "join", max));
        assert!(a < max);
        assert_ne!(a, derive_jitter("us-east-1", "join", max));
        assert_eq!(derive_jitter("x", "y", Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn schedules_take_five_and_six_fields() {
        assert!(Schedule::parse("* * * * *", None).is_ok());
        assert!(Schedule::parse("*/5 * * * * *", None).is_ok());
        assert!(Schedule::parse("* * *", None).is_err());
        let every_5s = Schedule::parse("*/5 * * * * *", None).unwrap();
        assert_eq!(
            every_5s.min_interval(chrono::Utc::now(), 10),
            Some(Duration::from_secs(5))
        );
    }
}
