//! Trickled remote ICE candidates (RFC 8838): the SFU's candidates that come in signalling
//! messages after its SDP, as LiveKit, Janus (`full_trickle`) and browsers send them. What a
//! peer's tap took from the websocket ([`Trickled`], shared between the tap and the peer), and
//! how one candidate value is read: a candidate line, or a JSON `RTCIceCandidateInit`, or the
//! end of candidates in any of the shapes platforms write it.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use str0m::{Candidate, Rtc};

use super::sdp::{CandidateFault, Candidates, candidate_fault, canonical_candidate};
use crate::flow::StepError;
use crate::report::FailureReason;

/// Largest candidate value read (a candidate line with every extension is some 200 bytes; a
/// JSON init with `sdpMid` and `usernameFragment` twice that).
pub const MAX_CANDIDATE_BYTES: usize = 2048;
/// Default and largest `max_candidates`: a host with many interfaces, IPv4 and IPv6, UDP and
/// TCP, host, reflexive and relay, sends a few dozen at most.
pub const DEFAULT_MAX_CANDIDATES: usize = 32;
pub const MAX_CANDIDATES: usize = 256;

/// Where a peer's tap takes the SFU's trickled candidates from: a websocket, or the long poll
/// of a connection (its `http` steps with `batch`), by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TrickleFrom {
    Websocket(String),
    LongPoll(String),
}

/// What a peer's tap has taken so far: candidate lines (`candidate:…`, extensions in str0m's
/// order) not yet handed to the ICE agent, whether the end came, and the first thing that was
/// not a candidate (the step then fails with `protocol`).
#[derive(Debug, Default)]
pub struct Trickled {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    new: Vec<String>,
    /// Candidates taken in all (at most the tap's `max`; the rest are a `problem`).
    taken: usize,
    ended: bool,
    problem: Option<String>,
}

/// What the peer learns when it looks: the new candidates, and the state after them.
#[derive(Debug, Default)]
pub struct Taken {
    pub new: Vec<String>,
    pub taken: usize,
    pub ended: bool,
}

impl Trickled {
    pub fn new() -> Arc<Trickled> {
        Arc::new(Trickled::default())
    }

    /// One message's candidate value (`None` when the message only ended the candidates,
    /// `end`: it says so). Returns `false` once the end came: later messages are no longer
    /// this peer's (a new ICE session's would need a new offer).
    pub fn push(&self, value: Option<&str>, end: bool, max: usize) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.ended {
            return false;
        }
        match value.map(read_candidate) {
            Some(Ok(Some(line))) if s.taken < max => {
                s.taken += 1;
                s.new.push(line);
            }
            Some(Ok(Some(_))) => {
                s.problem.get_or_insert_with(|| {
                    format!("more than {max} candidates were trickled (`max_candidates`)")
                });
            }
            Some(Ok(None)) => s.ended = true,
            Some(Err(why)) => {
                let n = s.taken + 1;
                s.problem
                    .get_or_insert_with(|| format!("trickled candidate {n} {why}"));
            }
            None => {}
        }
        s.ended |= end;
        true
    }

    /// The candidates not yet taken and the state; `Err` with the first refused value.
    pub fn take(&self) -> Result<Taken, String> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(problem) = &s.problem {
            return Err(problem.clone());
        }
        Ok(Taken {
            new: std::mem::take(&mut s.new),
            taken: s.taken,
            ended: s.ended,
        })
    }
}

/// What became of a connection's trickled candidates: for its `ice` failure's message and
/// the `trickled_candidates` gauge.
#[derive(Debug, Default)]
pub(super) struct Seen {
    pub(super) candidates: usize,
    pub(super) ended: bool,
    /// Reading the websocket or the long poll failed while the step read it (nothing more
    /// was read): what and why, `reading the websocket failed: …`.
    pub(super) signalling: Option<String>,
}

impl Seen {
    /// `2 candidates trickled, no end of candidates yet`.
    pub(super) fn summary(&self) -> String {
        let end = if self.ended {
            "and the end of candidates"
        } else {
            "no end of candidates yet"
        };
        let signalling = self
            .signalling
            .as_deref()
            .map(|e| format!("; {e}"))
            .unwrap_or_default();
        format!(
            "{} candidate{} trickled, {end}{signalling}",
            self.candidates,
            if self.candidates == 1 { "" } else { "s" }
        )
    }
}

/// Hands the candidates `trickled` since the last look to `rtc`'s ICE agent, each counted in
/// `remote` (ICE-TCP and mDNS names counted there only, for the message should nothing else
/// work) and `seen`. Returns whether more may come (the SFU has not ended its candidates).
///
/// # Errors
/// `protocol` when a trickled value is no candidate, or more came than allowed.
pub(super) fn hand_over(
    trickled: &Trickled,
    remote: &mut Candidates,
    rtc: &mut Rtc,
    seen: &mut Seen,
) -> Result<bool, StepError> {
    let refused = |why: &str| {
        StepError::new(
            FailureReason::Protocol,
            format!("the SFU's trickled ICE candidates: {why}"),
        )
    };
    let taken = trickled.take().map_err(|why| refused(&why))?;
    let first = taken.taken - taken.new.len();
    for (i, line) in taken.new.iter().enumerate() {
        if !remote.add(line.strip_prefix("candidate:").unwrap_or(line)) {
            continue;
        }
        // Its shape was checked when it came: str0m's parser and agent are guarded all the
        // same, as for the SDP.
        let parsed = std::panic::catch_unwind(|| Candidate::from_sdp_string(line));
        let Ok(Ok(candidate)) = parsed else {
            return Err(refused(&format!(
                "trickled candidate {} cannot be read",
                first + i + 1
            )));
        };
        let added = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rtc.add_remote_candidate(candidate);
        }));
        if added.is_err() {
            return Err(refused(&format!(
                "trickled candidate {} could not be added",
                first + i + 1
            )));
        }
    }
    seen.candidates = taken.taken;
    seen.ended = taken.ended;
    Ok(!taken.ended)
}

/// One trickled value: `Ok(Some(line))` a candidate (`candidate:…`, extensions in str0m's
/// order), `Ok(None)` the end of candidates, `Err(why)` something else (the step fails with
/// `protocol`, naming it; its text is not quoted: it may be anything a server sent).
///
/// Read as platforms send it: a candidate line with or without `a=`; a JSON
/// `RTCIceCandidateInit` (`{"candidate": "candidate:…", "sdpMid": …}`) as an object or as a
/// string of JSON (LiveKit's `candidateInit`); the end as an empty candidate (the W3C's),
/// `a=end-of-candidates`, or `{"completed": true}` (Janus). `sdpMid` and `sdpMLineIndex` are
/// not read: every SFU bundles, so all candidates are the one transport's.
pub fn read_candidate(value: &str) -> Result<Option<String>, String> {
    if value.len() > MAX_CANDIDATE_BYTES {
        return Err(format!(
            "is {} bytes, more than the {MAX_CANDIDATE_BYTES} a candidate may be",
            value.len()
        ));
    }
    let value = value.trim();
    if value.starts_with('{') {
        let Ok(Value::Object(init)) = serde_json::from_str::<Value>(value) else {
            return Err("is neither a candidate line nor a JSON object".to_string());
        };
        if init.get("completed") == Some(&Value::Bool(true)) {
            return Ok(None);
        }
        return match init.get("candidate") {
            Some(Value::String(line)) => read_line(line),
            Some(Value::Null) | None => {
                Err("is a JSON object without a `candidate` string nor `completed`".to_string())
            }
            Some(_) => Err("has a `candidate` that is not a string".to_string()),
        };
    }
    read_line(value)
}

/// A candidate line (with or without `a=`), or the end of candidates.
fn read_line(line: &str) -> Result<Option<String>, String> {
    let line = line.trim();
    let line = line.strip_prefix("a=").unwrap_or(line);
    if line.is_empty() || line == "end-of-candidates" {
        return Ok(None);
    }
    let Some(candidate) = line.strip_prefix("candidate:") else {
        return Err("is not a candidate line (`candidate:…`)".to_string());
    };
    match candidate_fault(candidate) {
        Some(CandidateFault::Fields) => {
            return Err("is malformed (fields missing or not numbers)".to_string());
        }
        Some(CandidateFault::Port) => {
            return Err("is malformed (its port is not 1 to 65535)".to_string());
        }
        None => {}
    }
    let mut out = String::from("candidate:");
    canonical_candidate(candidate, &mut out);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_read_in_every_shape_platforms_send() {
        let line = "candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host";
        let want = Ok(Some(line.to_string()));
        assert_eq!(read_candidate(line), want);
        assert_eq!(read_candidate(&format!("a={line}\r\n")), want);
        // Janus: the object; LiveKit: the object as a JSON string (extracted as its text).
        let init = serde_json::json!({"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0});
        assert_eq!(read_candidate(&init.to_string()), want);
        // Chrome's extension order is put in str0m's.
        assert_eq!(
            read_candidate(&format!("{line} generation 0 ufrag Ab network-id 1")),
            Ok(Some(format!("{line} ufrag Ab")))
        );
        for end in [
            "",
            "a=end-of-candidates",
            r#"{"completed": true}"#,
            r#"{"candidate": "", "sdpMid": "0"}"#,
        ] {
            assert_eq!(read_candidate(end), Ok(None), "{end:?}");
        }
    }

    #[test]
    fn what_is_not_a_candidate_is_refused_saying_why() {
        for (value, why) in [
            ("hello", "not a candidate line"),
            ("candidate:1 1 udp x 10.0.0.1 5000 typ host", "not numbers"),
            (
                "candidate:1 1 udp 1 10.0.0.1 0 typ host",
                "port is not 1 to 65535",
            ),
            ("candidate:1 1 udp 1 10.0.0.1 99999 typ host", "port"),
            ("candidate:1 1 udp 1 10.0.0.1 9", "fields missing"),
            (r#"{"sdpMid": "0"}"#, "without a `candidate`"),
            (r#"{"candidate": 7}"#, "not a string"),
            ("{not json", "neither"),
            ("[1]", "not a candidate line"),
        ] {
            let e = read_candidate(value).unwrap_err();
            assert!(e.contains(why), "{value:?}: {e}");
        }
        let huge = format!("candidate:{}", "1".repeat(MAX_CANDIDATE_BYTES));
        assert!(read_candidate(&huge).unwrap_err().contains("bytes"));
    }

    #[test]
    fn the_store_is_bounded_and_keeps_the_first_problem() {
        let t = Trickled::new();
        let line = "candidate:1 1 udp 1 10.0.0.1 9 typ host";
        assert!(t.push(Some(line), false, 2));
        assert!(t.push(Some(line), false, 2));
        let taken = t.take().unwrap();
        assert_eq!((taken.new.len(), taken.taken, taken.ended), (2, 2, false));
        assert!(t.push(Some(line), false, 2));
        assert!(t.push(Some("junk"), false, 2));
        let e = t.take().unwrap_err();
        assert!(e.contains("more than 2 candidates"), "{e}");
        // The end closes the store: later messages are not taken.
        let t = Trickled::new();
        assert!(t.push(Some(r#"{"completed":true}"#), false, 2));
        assert!(!t.push(Some(line), false, 2));
        assert!(t.take().unwrap().ended);
        // An end flagged beside the value (LiveKit's `final`) takes the value first.
        let t = Trickled::new();
        assert!(t.push(Some(line), true, 2));
        let taken = t.take().unwrap();
        assert_eq!((taken.new.len(), taken.ended), (1, true));
    }
}
