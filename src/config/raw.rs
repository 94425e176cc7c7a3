//! The config and probe files as parsed: serde types that mirror the TOML, with spans.
//!
//! Nothing here is validated beyond TOML types and unknown keys; `config::build` turns these
//! into a [`crate::config::Plan`] and reports every problem with file, line and key. The `///`
//! docs on fields are the user reference (the README repeats them).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::alert::settings::RawAlerting;
use crate::diag::S;
use crate::heartbeat::RawHeartbeat;

/// `config/joincanary.toml`: the service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Region label on every metric, status entry, log line and page.
    pub region: Option<S<String>>,
    /// Address for /metrics, /healthz, /readyz and /api/v1/status.
    pub listen: Option<S<String>>,
    /// Probe files or directories of `*.toml`, relative to this file.
    pub probes: S<Vec<S<String>>>,
    /// Where alert state survives restarts (relative to this file).
    pub state_dir: Option<S<String>>,
    /// A URL on-call can open for this prober's status (put in pages).
    pub status_url: Option<S<String>>,
    /// A dashboard URL (put in pages).
    pub dashboard_url: Option<S<String>>,
    /// Other regions' probers: a base URL (`"http://prober-us:9464"`), or a table with its
    /// region (`{ url = "http://prober-us:9464", region = "us-east-1" }`), so the status page can
    /// name a peer that never answered. The page shows them beside this one.
    pub peers: Option<S<Vec<S<toml::Value>>>>,
    /// `true`: a histogram for every phase, with 16 buckets (~200 series per 5-step probe);
    /// default: step totals and the signalling round trip, 5 buckets (59 series).
    pub phase_histograms: Option<S<bool>>,
    #[serde(default)]
    pub defaults: RawDefaults,
    #[serde(default)]
    pub alerting: RawAlerting,
    /// `[[pager]]`: each is read by [`crate::alert::pagers::parse`] into its kind's own table,
    /// once its `type` is known; here only accepted.
    #[serde(default)]
    pub pager: Vec<serde::de::IgnoredAny>,
    #[serde(default)]
    pub heartbeat: Vec<S<RawHeartbeat>>,
}

/// `[defaults]`: what a probe file does not say.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub schedule: Option<S<String>>,
    pub timezone: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub step_timeout: Option<S<String>>,
    pub jitter: Option<S<String>>,
    pub max_body_bytes: Option<S<i64>>,
    pub max_frames: Option<S<i64>>,
}

/// `probes/*.toml`: one flow.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub name: Option<S<String>>,
    pub description: Option<String>,
    pub schedule: Option<S<String>>,
    pub timezone: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub jitter: Option<S<String>>,
    pub max_body_bytes: Option<S<i64>>,
    /// Extra trusted CA certificates (PEM), relative to the probe file: for platforms behind
    /// an internal CA.
    pub ca_file: Option<S<String>>,
    #[serde(default)]
    pub variables: BTreeMap<String, S<String>>,
    pub steps: S<Vec<S<RawStep>>>,
    pub alerting: Option<RawAlerting>,
    /// `scheduled` (default: `steps` run on `schedule`) or `resident`: `steps` open a session
    /// that stays open, and `exchange` runs on it every `resident.every`.
    pub mode: Option<S<String>>,
    /// `mode = "resident"`: cadence, session age, keepalive and reconnect settings.
    pub resident: Option<S<RawResident>>,
    /// `mode = "resident"`: the steps run every `resident.every` on the open session; each
    /// exchange is one run.
    pub exchange: Option<S<Vec<S<RawStep>>>>,
    /// `mode = "resident"`: steps run when a session ends (rotation, reload, stop); they never
    /// fail a run.
    pub teardown: Option<S<Vec<S<RawStep>>>>,
}

/// `[resident]` of a `mode = "resident"` probe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResident {
    /// Time between two exchanges (default 5s).
    pub every: Option<S<String>>,
    /// A session older than this is closed and opened anew (default 1h).
    pub max_session_age: Option<S<String>>,
    /// A websocket ping on every connection of an idle session this often (default 15s).
    pub keepalive: Option<S<String>>,
    /// Deadline of opening a session (the `steps`; default: `[defaults] timeout`).
    pub setup_timeout: Option<S<String>>,
    /// First reconnect delay bound (default 1s); doubles per failed attempt, full jitter.
    pub reconnect_min: Option<S<String>>,
    /// Cap of the reconnect delay (default 60s).
    pub reconnect_max: Option<S<String>>,
    /// Failed exchanges in a row on an open session before it is re-established (default 3).
    pub reconnect_after: Option<S<i64>>,
}

/// One `[[steps]]` entry. Flat on purpose: serde's tagged enums lose spans, and a flat table
/// lets us say "key `text` does not apply to an http step" instead of "unknown field".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub name: S<String>,
    pub kind: S<String>,
    pub timeout: Option<S<String>>,
    pub method: Option<S<String>>,
    pub url: Option<S<String>>,
    pub headers: Option<S<BTreeMap<String, S<String>>>>,
    pub json: Option<S<toml::Value>>,
    pub form: Option<S<BTreeMap<String, S<String>>>>,
    pub body: Option<S<String>>,
    pub expect_status: Option<S<Vec<i64>>>,
    pub expect_json: Option<S<toml::Value>>,
    /// One regex or a list; all must match the same reply. Templates, values regex-escaped.
    pub expect_regex: Option<S<toml::Value>>,
    pub extract: Option<S<BTreeMap<String, S<RawExtract>>>>,
    pub subprotocols: Option<S<Vec<String>>>,
    pub text: Option<S<String>>,
    pub max_frames: Option<S<i64>>,
    /// A reply matching this JSON subset fails the step at once with `server_error`.
    pub fail_json: Option<S<toml::Value>>,
    /// A reply matching any of these regexes fails the step at once with `server_error`.
    pub fail_regex: Option<S<toml::Value>>,
    /// Runs after a failure too; never the run's failed step.
    pub cleanup: Option<S<bool>>,
    /// Which websocket a ws_* step uses (default: the unnamed one).
    pub connection: Option<S<String>>,
    /// ws_connect: `raw` (default), `socketio`, `actioncable`, `xmpp`.
    pub protocol: Option<S<String>>,
    /// ws_connect, socketio: the namespace to connect (default `/`).
    pub namespace: Option<S<String>>,
    /// ws_connect, socketio: the `auth` payload of the namespace connect.
    pub auth: Option<S<toml::Value>>,
    /// ws_connect, xmpp: the domain in the stream `<open to=...>`.
    pub domain: Option<S<String>>,
    /// ws_connect, raw: frames matching this JSON subset are the protocol's pings: skipped and
    /// never counted against `max_frames`.
    pub ping_json: Option<S<toml::Value>>,
    /// ws_send: the Socket.IO event or ActionCable action; ws_expect: the event or message type.
    pub event: Option<S<String>>,
    /// ws_send, socketio: the event's arguments.
    pub args: Option<S<toml::Value>>,
    /// ws_send, socketio: ask for an acknowledgement; ws_expect: wait for it.
    pub ack: Option<S<bool>>,
    /// ws_send, actioncable: subscribe to this channel identifier.
    pub subscribe: Option<S<toml::Value>>,
    /// ws_expect, xmpp: an element that must match (name, attributes in any order, children).
    pub expect_xml: Option<S<String>>,
    /// redis: the ACL user (`${ENV}` expanded at load time); turn: the TURN username (a
    /// template), or with `secret` the user part of the REST username.
    pub username: Option<S<String>>,
    /// turn: the TURN password, `RTCIceServer.credential` (a template; scrubbed from every error).
    pub credential: Option<S<String>>,
    /// turn: the TURN REST API shared secret (`${ENV}` expanded at load time): the step computes
    /// an ephemeral username and password from it.
    pub secret: Option<S<String>>,
    /// turn: how long a computed REST credential is valid (default 1h).
    pub credential_ttl: Option<S<String>>,
    /// turn: `host:port` of the UDP echo peer the relay sends to (a template).
    pub peer: Option<S<String>>,
    /// redis: the password (`${ENV}` expanded at load time; scrubbed from every error).
    pub password: Option<S<String>>,
    /// redis: the canary channel of the PUBLISH/SUBSCRIBE round trip (none: no round trip).
    pub channel: Option<S<String>>,
    /// http_json: gauge name -> JSON pointer (or dotted path) of a number in the reply.
    pub gauges: Option<S<BTreeMap<String, S<String>>>>,
    /// redis, http_json: a gauge at or above this value raises the degraded warning.
    pub warn_above: Option<S<BTreeMap<String, S<f64>>>>,
    /// redis, http_json: a gauge below this value raises the degraded warning.
    pub warn_below: Option<S<BTreeMap<String, S<f64>>>>,
    /// webrtc: `offer`, `answer` or `connect` (see `flow::webrtc::RawWebrtc`).
    pub action: Option<S<String>>,
    /// webrtc: the SFU's SDP (its offer for `answer`, its answer for `connect`).
    pub remote_sdp: Option<S<String>>,
    /// webrtc: the variable our SDP goes into.
    pub save_as: Option<S<String>>,
    /// webrtc: our host candidate's IP.
    pub local_address: Option<S<String>>,
    /// webrtc connect: data channel messages echoed.
    pub echo: Option<S<i64>>,
    /// webrtc connect: between two messages.
    pub echo_interval: Option<S<String>>,
    /// webrtc connect: how long the last message's echo may take.
    pub echo_wait: Option<S<String>>,
}

/// Where an extracted value comes from; exactly one key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExtract {
    /// JSON pointer (`/token`) or dotted path (`$.data.token`, `data.items[0].id`).
    pub json: Option<String>,
    pub header: Option<String>,
    pub cookie: Option<String>,
    /// A regex over the body or frame; capture group 1 (or the whole match).
    pub regex: Option<String>,
}
