//! `[defaults]` of the service config: what a probe file does not say.

use std::time::Duration;

use serde::Deserialize;

use crate::diag::{Ctx, S};
use crate::schedule::{Schedule, every_minute, schedule, timezone};

/// Default cap on an HTTP body or websocket message.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// The most `max_body_bytes` may say (64 MiB, the websocket meter's per-step byte budget): the
/// cap bounds what one reply costs in memory, so it cannot be configured away.
pub const MAX_BODY_BYTES: usize = 64 << 20;
/// Default budget of frames a `ws_expect` step reads before giving up.
pub const DEFAULT_MAX_FRAMES: usize = 1000;

/// `[defaults]`: what a probe file does not say.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub schedule: Option<S<String>>,
    pub timezone: Option<S<String>>,
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub timeout: Option<S<String>>,
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub step_timeout: Option<S<String>>,
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub jitter: Option<S<String>>,
    pub max_body_bytes: Option<S<i64>>,
    pub max_frames: Option<S<i64>>,
}

/// Defaults from the service config's `[defaults]`.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub schedule: Schedule,
    pub timeout: Duration,
    pub step_timeout: Option<Duration>,
    pub jitter: Duration,
    pub max_body_bytes: usize,
    pub max_frames: usize,
    /// Where `timeout` and `schedule` are written (`file:line:col`), when they are: a probe's
    /// error about values it takes from here names their place.
    pub timeout_at: Option<String>,
    pub schedule_at: Option<String>,
}

impl Defaults {
    /// `[defaults]`, each key checked.
    pub fn build(ctx: &mut Ctx<'_>, raw: &RawDefaults) -> Defaults {
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
            timeout_at: raw.timeout.as_ref().map(|t| ctx.place(t.span())),
            schedule_at: raw.schedule.as_ref().map(|s| ctx.place(s.span())),
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
                .and_then(|v| ctx.positive_at_most(v, "defaults.max_body_bytes", MAX_BODY_BYTES))
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
            timeout_at: None,
            schedule_at: None,
        }
    }
}
