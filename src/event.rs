//! What probing tells the rest of the service: the [`Event`]s the scheduler and the resident
//! loops send on one channel to the run consumer, with the labels they carry. A leaf of its own
//! because both senders take it and the scheduler starts the resident loops: kept in either,
//! the two would import each other.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::report::ProbeRun;

/// What probing tells the rest of the service (the consumer).
#[derive(Debug)]
pub enum Event {
    /// A run finished. `lag` is how late a scheduled run started. `quiet`: a failure its
    /// sender has told the log about already (a resident's reconnect attempts while its session
    /// stays down: `resident`), so the consumer logs it at debug rather than warn.
    Run {
        run: ProbeRun,
        lag: Option<Duration>,
        quiet: bool,
    },
    /// `count` ticks could not start a run (see [`SkipReason`]).
    Skipped {
        probe: String,
        reason: SkipReason,
        count: u64,
    },
    /// When the probe runs next.
    NextRun { probe: String, at: DateTime<Utc> },
    /// A resident probe opens its session again.
    Reconnect {
        probe: String,
        cause: ReconnectCause,
    },
}

/// Why a tick started no run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The previous run of the probe was still going.
    Overlap,
    /// The previous run had finished but its result still waited for the run consumer (the
    /// service is behind on recording runs; the schedule does not wait for it).
    Backlog,
}

impl SkipReason {
    /// The `reason` label of `probe_skipped_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Overlap => "overlap",
            SkipReason::Backlog => "backlog",
        }
    }
}

/// Why a session was opened again: the `cause` label of `probe_resident_reconnects_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectCause {
    /// The session broke, or exchanges kept failing on it, or opening it failed.
    Failure,
    /// It reached `max_session_age`.
    Rotation,
}

impl ReconnectCause {
    pub const ALL: [ReconnectCause; 2] = [ReconnectCause::Failure, ReconnectCause::Rotation];

    pub fn as_str(self) -> &'static str {
        match self {
            ReconnectCause::Failure => "failure",
            ReconnectCause::Rotation => "rotation",
        }
    }
}
