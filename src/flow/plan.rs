//! A probe once validated: [`ProbePlan`] with its steps and resident settings.

use std::time::Duration;

use super::kinds::StepKind;
use super::kinds::StepSpec;
use crate::alerting::PolicyConfig;
use crate::schedule::Schedule;
use crate::template::Template;

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
    /// `[tokens.NAME]`: minted at the start of every run, after the variables.
    pub tokens: Vec<super::tokens::TokenPlan>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_stable_bounded_and_differs_by_region() {
        let max = Duration::from_secs(10);
        let a = derive_jitter("eu-west-1", "join", max);
        assert_eq!(a, derive_jitter("eu-west-1", "join", max));
        assert!(a < max);
        assert_ne!(a, derive_jitter("us-east-1", "join", max));
        assert_eq!(derive_jitter("x", "y", Duration::ZERO), Duration::ZERO);
    }
}
