//! Run-time fault injection for the reference server: the current fault set, and the
//! validated merge that `PUT /_sim/faults` applies to it.

use serde::Serialize;
use serde_json::{Map, Value};

/// Longest injectable delay. Anything longer only wedges a test run or a demo, and a cap keeps
/// `Duration` arithmetic far from overflow.
pub const MAX_DELAY_MS: u64 = 600_000;
/// Most blips armed at once: a soak arms one at a time; more is a typo.
const MAX_BLIPS: u32 = 10_000;

/// The faults in force. `Copy` so each request takes a snapshot when it arrives and a later
/// `PUT` never changes a request already in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Faults {
    pub login_status: Option<u16>,
    pub login_delay_ms: u64,
    pub ws_reject_status: Option<u16>,
    pub signalling_delay_ms: u64,
    pub signalling_drop: bool,
    /// One-shot blips, for false-page soaks: each counts down as a request consumes it, so
    /// "fail the next login" hits exactly one run however the probes interleave.
    /// The next N logins answer 500.
    pub login_error_next: u32,
    /// The next N joins are lost on the pub/sub path.
    pub signalling_drop_next: u32,
    /// The next N joins are announced `signalling_spike_ms` late.
    pub signalling_spike_next: u32,
    pub signalling_spike_ms: u64,
}

/// What one join meets: the standing faults plus at most one blip taken from the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinFaults {
    pub drop: bool,
    pub delay_ms: u64,
}

/// Why a fault update was refused; the text goes back to the caller in a 400.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FaultError {
    #[error("body must be a JSON object")]
    NotAnObject,
    #[error("unknown field `{0}`")]
    UnknownField(String),
    #[error("`{field}` {problem}")]
    BadValue {
        field: &'static str,
        problem: &'static str,
    },
}

impl Faults {
    /// Returns the faults with `patch` merged in: present fields are set, absent ones kept, and
    /// `null` resets a field to "no fault". Nothing is applied unless every field is valid, so
    /// a half-bad request never leaves a half-applied fault set.
    pub fn merged(self, patch: &Value) -> Result<Faults, FaultError> {
        let obj = patch.as_object().ok_or(FaultError::NotAnObject)?;
        let mut next = self;
        for (key, value) in obj {
            match key.as_str() {
                "login_status" => next.login_status = status(value, "login_status")?,
                "login_delay_ms" => next.login_delay_ms = delay(value, "login_delay_ms")?,
                "ws_reject_status" => next.ws_reject_status = status(value, "ws_reject_status")?,
                "signalling_delay_ms" => {
                    next.signalling_delay_ms = delay(value, "signalling_delay_ms")?
                }
                "signalling_drop" => next.signalling_drop = flag(value, "signalling_drop")?,
                "login_error_next" => next.login_error_next = count(value, "login_error_next")?,
                "signalling_drop_next" => {
                    next.signalling_drop_next = count(value, "signalling_drop_next")?
                }
                "signalling_spike_next" => {
                    next.signalling_spike_next = count(value, "signalling_spike_next")?
                }
                "signalling_spike_ms" => {
                    next.signalling_spike_ms = delay(value, "signalling_spike_ms")?
                }
                // A typo such as `login_statu` would otherwise be a silent no-op and the caller
                // would believe a fault is active.
                other => return Err(FaultError::UnknownField(other.to_owned())),
            }
        }
        Ok(next)
    }

    /// The status a login meets, consuming one `login_error_next` blip if armed.
    pub fn take_login(&mut self) -> Option<u16> {
        if self.login_status.is_some() {
            return self.login_status;
        }
        if self.login_error_next > 0 {
            self.login_error_next -= 1;
            return Some(500);
        }
        None
    }

    /// What a join meets, consuming one drop or spike blip if armed (a drop first).
    pub fn take_join(&mut self) -> JoinFaults {
        let mut out = JoinFaults {
            drop: self.signalling_drop,
            delay_ms: self.signalling_delay_ms,
        };
        if self.signalling_drop_next > 0 {
            self.signalling_drop_next -= 1;
            out.drop = true;
        } else if self.signalling_spike_next > 0 {
            self.signalling_spike_next -= 1;
            out.delay_ms = out.delay_ms.saturating_add(self.signalling_spike_ms);
        }
        out
    }

    pub fn to_json(self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            // Serialising a plain struct of integers and bools cannot fail or yield a non-object.
            _ => Map::new(),
        }
    }
}

fn status(value: &Value, field: &'static str) -> Result<Option<u16>, FaultError> {
    if value.is_null() {
        return Ok(None);
    }
    // 1xx is refused: hyper cannot send an informational status as a final answer and would
    // silently turn it into a 500, so the fault would not be what the caller asked for.
    match value.as_u64() {
        Some(code @ 200..=599) => Ok(u16::try_from(code).ok()),
        _ => Err(FaultError::BadValue {
            field,
            problem: "must be an HTTP status code in 200..=599 or null",
        }),
    }
}

fn delay(value: &Value, field: &'static str) -> Result<u64, FaultError> {
    if value.is_null() {
        return Ok(0);
    }
    match value.as_u64() {
        Some(ms) if ms <= MAX_DELAY_MS => Ok(ms),
        _ => Err(FaultError::BadValue {
            field,
            problem: "must be an integer number of milliseconds in 0..=600000 or null",
        }),
    }
}

fn count(value: &Value, field: &'static str) -> Result<u32, FaultError> {
    if value.is_null() {
        return Ok(0);
    }
    match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
        Some(n) if n <= MAX_BLIPS => Ok(n),
        _ => Err(FaultError::BadValue {
            field,
            problem: "must be a count in 0..=10000 or null",
        }),
    }
}

fn flag(value: &Value, field: &'static str) -> Result<bool, FaultError> {
    if value.is_null() {
        return Ok(false);
    }
    value.as_bool().ok_or(FaultError::BadValue {
        field,
        problem: "must be a boolean or null",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_keeps_absent_fields_and_null_clears() {
        let f = Faults::default()
            .merged(&json!({"login_status": 503, "signalling_drop": true}))
            .unwrap();
        let f = f.merged(&json!({"login_delay_ms": 20})).unwrap();
        assert_eq!(f.login_status, Some(503));
        assert!(f.signalling_drop);
        assert_eq!(f.login_delay_ms, 20);
        let f = f.merged(&json!({"login_status": null})).unwrap();
        assert_eq!(f.login_status, None);
    }

    #[test]
    fn invalid_values_are_refused_without_partial_apply() {
        let base = Faults::default();
        for bad in [
            json!({"login_status": 99}),
            json!({"login_status": 600}),
            json!({"login_status": 101}),
            json!({"ws_reject_status": "503"}),
            json!({"login_delay_ms": -1}),
            json!({"signalling_delay_ms": MAX_DELAY_MS + 1}),
            json!({"signalling_drop": 1}),
            json!({"login_delay_ms": 5, "nope": true}),
            json!([1]),
        ] {
            assert!(base.merged(&bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn blips_are_consumed_one_request_at_a_time() {
        let mut f = Faults::default()
            .merged(&json!({"login_error_next": 1, "signalling_drop_next": 1,
                "signalling_spike_next": 1, "signalling_spike_ms": 200}))
            .unwrap();
        assert_eq!(f.take_login(), Some(500));
        assert_eq!(f.take_login(), None);
        assert_eq!(
            f.take_join(),
            JoinFaults {
                drop: true,
                delay_ms: 0
            }
        );
        assert_eq!(
            f.take_join(),
            JoinFaults {
                drop: false,
                delay_ms: 200
            }
        );
        assert_eq!(
            f.take_join(),
            JoinFaults {
                drop: false,
                delay_ms: 0
            }
        );
    }

    #[test]
    fn json_shows_every_field() {
        let map = Faults::default().to_json();
        assert_eq!(map.len(), 9);
        assert_eq!(map["login_status"], Value::Null);
        assert_eq!(map["signalling_drop"], Value::Bool(false));
        assert_eq!(map["login_delay_ms"], json!(0));
    }
}
