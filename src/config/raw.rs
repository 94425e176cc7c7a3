//! The service config as parsed: serde types that mirror the TOML, with spans. (A probe file's
//! are `flow::load`'s, a step's its kind's, `[defaults]` `flow::defaults`'.)
//!
//! Nothing here is validated beyond TOML types and unknown keys; `config::build` turns these
//! into a [`crate::config::Plan`] and reports every problem with file, line and key. The `///`
//! docs on fields are the user reference (the README repeats them).

use serde::Deserialize;

use crate::alerting::RawAlerting;
use crate::diag::S;
use crate::flow::defaults::RawDefaults;

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
    /// `[[heartbeat]]`: each is read by [`crate::heartbeat::parse`] into its type's own table,
    /// once its `type` is known; here only accepted.
    #[serde(default)]
    pub heartbeat: Vec<serde::de::IgnoredAny>,
}
