//! The service config as parsed: serde types that mirror the TOML, with spans. (A probe file's
//! are `flow::load`'s, a step's its kind's, `[defaults]` `flow::defaults`'.)
//!
//! Nothing here is validated beyond TOML types and unknown keys; `config::build` turns these
//! into a [`crate::config::Plan`] and reports every problem with file, line and key. The `///`
//! docs on fields are the user reference (the README repeats them).

use std::collections::BTreeMap;

use crate::diag::S;
use crate::flow::defaults::RawDefaults;
use serde::Deserialize;

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

/// `[[heartbeat]]`: a dead man's switch pinged while the scheduler is healthy.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    pub name: S<String>,
    /// `http` (a URL that counts pings) or `opsgenie` (the heartbeat ping API).
    #[serde(rename = "type")]
    pub kind: S<String>,
    /// `http`: the ping URL; `opsgenie`: the API base URL (default by `region`).
    pub url: Option<S<String>>,
    /// `http`: `GET` (default) or `POST`.
    pub method: Option<S<String>>,
    /// `opsgenie`: the API key (sent as `GenieKey`).
    pub api_key: Option<S<String>>,
    /// `opsgenie`: `us` (default) or `eu`.
    pub region: Option<S<String>>,
    /// `opsgenie`: the heartbeat's name in Opsgenie (default: `name`).
    pub heartbeat: Option<S<String>>,
    /// Time between pings (default 1m).
    pub interval: Option<S<String>>,
    /// Per-ping timeout (default 10s).
    pub timeout: Option<S<String>>,
}

/// `[alerting]` in the service config, or a probe's override.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawAlerting {
    pub enabled: Option<bool>,
    pub confirm_delay: Option<S<String>>,
    pub failure_threshold: Option<S<i64>>,
    pub success_threshold: Option<S<i64>>,
    pub degraded_threshold: Option<S<i64>>,
    pub reminder_interval: Option<S<String>>,
    /// Pages for this probe go only to these pagers (default: all).
    pub pagers: Option<S<Vec<String>>>,
    /// Shared incident key for a platform-wide incident across regions.
    pub group_key: Option<S<String>>,
    /// Step latency budgets: `{ "signalling.round_trip" = "1s" }` or `{ signalling = "1s" }`.
    #[serde(default)]
    pub budgets: BTreeMap<String, S<String>>,
    #[serde(default)]
    pub maintenance: Vec<S<RawMaintenance>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    /// Cron expression for the window's start.
    pub start: S<String>,
    pub duration: S<String>,
    pub timezone: Option<S<String>>,
}
