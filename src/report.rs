//! What one probe run saw: plain data, no I/O.
//!
//! A [`ProbeRun`] flows one way from the flow engine to metrics, the status API and the alert
//! policy. Failures are data: every failed step carries a stable [`FailureReason`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

/// Why a step failed. The string form is stable: it is a metric label, a JSON field and the word
/// on-call reads in a page, so never rename a variant's string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureReason {
    /// The host name did not resolve.
    Dns,
    /// The TCP connection was refused, reset or unreachable.
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// The step or the probe ran out of time.
    Timeout,
    /// The HTTP status was not one the step accepts.
    HttpStatus,
    /// The reply arrived but was not what the step expects (not JSON, a value missing).
    BodyMismatch,
    /// The websocket upgrade was refused (no 101).
    WsHandshake,
    /// The websocket closed while the step still needed it.
    WsClosed,
    /// No received frame matched before the timeout or the frame budget ran out.
    NoMatch,
    /// A reply or frame was larger than the configured cap.
    TooLarge,
    /// The peer broke the protocol (bad frame, bad HTTP, a step used without its connection).
    Protocol,
    /// The server said it failed: a frame or body matched the step's `fail_json`/`fail_regex`,
    /// or the protocol's own error (Socket.IO CONNECT_ERROR, XMPP `type='error'`, ActionCable
    /// reject). The error quotes what the server said.
    ServerError,
    /// The prober's own resources failed, not the platform: out of file descriptors (EMFILE,
    /// ENFILE), memory or socket buffers (ENOMEM, ENOBUFS), ephemeral ports (EADDRNOTAVAIL).
    /// Such a run never pages as a platform outage; it is alerted as the prober being unhealthy.
    Local,
    /// The TURN server refused the credentials: 401 after the credentialed retry (wrong
    /// password, expired or wrongly signed REST credential), or 441 Wrong Credentials.
    TurnAuth,
    /// The TURN server has no room: 486 Allocation Quota Reached or 508 Insufficient Capacity.
    TurnCapacity,
    /// The TURN server refused by policy: 403 Forbidden (an allocation, or a permission for the
    /// peer's address).
    TurnForbidden,
    /// The relay took the data but no echo came back through it (the peer or the relay's own
    /// path is down) while binding, allocate and permission passed.
    TurnRelay,
    /// WebRTC: no ICE connectivity with the SFU's candidates, or lost during the step.
    Ice,
    /// WebRTC: ICE connected but DTLS failed: the SFU's certificate does not match the SDP's
    /// `a=fingerprint`, or the handshake never completed.
    Dtls,
    /// WebRTC: the connection came up but media did not flow (no data channel, no echo).
    Media,
}

impl FailureReason {
    /// Every reason, in a fixed order (for docs and for pre-registering metrics).
    pub const ALL: [FailureReason; 20] = [
        Self::Dns,
        Self::Connect,
        Self::Tls,
        Self::Timeout,
        Self::HttpStatus,
        Self::BodyMismatch,
        Self::WsHandshake,
        Self::WsClosed,
        Self::NoMatch,
        Self::TooLarge,
        Self::Protocol,
        Self::ServerError,
        Self::Local,
        Self::TurnAuth,
        Self::TurnCapacity,
        Self::TurnForbidden,
        Self::TurnRelay,
        Self::Ice,
        Self::Dtls,
        Self::Media,
    ];

    /// The stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::HttpStatus => "http_status",
            Self::BodyMismatch => "body_mismatch",
            Self::WsHandshake => "ws_handshake",
            Self::WsClosed => "ws_closed",
            Self::NoMatch => "no_match",
            Self::TooLarge => "too_large",
            Self::Protocol => "protocol",
            Self::ServerError => "server_error",
            Self::Local => "local",
            Self::TurnAuth => "turn_auth",
            Self::TurnCapacity => "turn_capacity",
            Self::TurnForbidden => "turn_forbidden",
            Self::TurnRelay => "turn_relay",
            Self::Ice => "ice",
            Self::Dtls => "dtls",
            Self::Media => "media",
        }
    }

    /// Parses the stable label back (used when reading persisted state).
    pub fn parse(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == label)
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FailureReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for FailureReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown reason `{s}`")))
    }
}

/// A measured part of a step. `Total` is the step's whole duration.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Dns,
    Connect,
    Tls,
    FirstByte,
    Upgrade,
    RoundTrip,
    /// From a `ws_send` on one connection to the matching frame on another: the message
    /// crossed the platform's fan-out (pub/sub between instances).
    FanOut,
    /// STUN Binding request to its response (the server-reflexive address).
    Binding,
    /// TURN Allocate, the 401 challenge and the credentialed retry included.
    Allocate,
    /// TURN CreatePermission for the echo peer.
    Permission,
    /// Data sent through the relay to the echo peer and back.
    RelayRtt,
    /// WebRTC: from the first connectivity check to a working ICE pair.
    Ice,
    /// WebRTC: from ICE connected to DTLS-SRTP established (certificate checked).
    Dtls,
    /// WebRTC: from DTLS established to the first echoed media (data channel open included).
    FirstMedia,
    Total,
}

impl Phase {
    pub const ALL: [Phase; 15] = [
        Self::Dns,
        Self::Connect,
        Self::Tls,
        Self::FirstByte,
        Self::Upgrade,
        Self::RoundTrip,
        Self::FanOut,
        Self::Binding,
        Self::Allocate,
        Self::Permission,
        Self::RelayRtt,
        Self::Ice,
        Self::Dtls,
        Self::FirstMedia,
        Self::Total,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::FirstByte => "first_byte",
            Self::Upgrade => "upgrade",
            Self::RoundTrip => "round_trip",
            Self::FanOut => "fan_out",
            Self::Binding => "binding",
            Self::Allocate => "allocate",
            Self::Permission => "permission",
            Self::RelayRtt => "relay_rtt",
            Self::Ice => "ice",
            Self::Dtls => "dtls",
            Self::FirstMedia => "first_media",
            Self::Total => "total",
        }
    }

    pub fn parse(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == label)
    }
}

/// The kind of a step, by the name written in probe files (`http`, `ws_expect`). The list of
/// kinds is the flow's (`flow::StepKind`, from `flow/kinds.rs`); a report carries only the name,
/// so this leaf knows no list, and a run read back from disk or from a peer that runs a kind
/// this build does not know still reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct KindName(Cow<'static, str>);

/// The longest kind name read from outside (the status history, a peer's status).
pub const MAX_KIND_CHARS: usize = 32;

impl KindName {
    /// A kind's own name (no allocation: the flow's names are `'static`).
    pub const fn new(name: &'static str) -> Self {
        Self(Cow::Borrowed(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name from outside: 1 to [`MAX_KIND_CHARS`] of `a-z`, `0-9`, `_`, as every kind's is.
impl TryFrom<String> for KindName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        let word = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if name.is_empty() || name.len() > MAX_KIND_CHARS || !word {
            return Err(format!(
                "step kind `{}` is not a kind's name (1 to {MAX_KIND_CHARS} of a-z, 0-9, _)",
                cut(&name, MAX_KIND_CHARS)
            ));
        }
        Ok(Self(Cow::Owned(name)))
    }
}

impl fmt::Display for KindName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run happened: the schedule, or the alert policy asking to confirm a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    #[default]
    Manual,
    Scheduled,
    Confirm,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Scheduled => "scheduled",
            Trigger::Confirm => "confirm",
        }
    }
}

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StepReport {
    pub name: String,
    pub kind: KindName,
    pub success: bool,
    #[serde(with = "millis")]
    pub duration_ms: Duration,
    pub reason: Option<FailureReason>,
    /// Human-readable detail, already scrubbed of secrets.
    pub error: Option<String>,
    /// Only the phases that were measured: an absent phase is unknown, never zero.
    #[serde(with = "phase_millis")]
    pub phases: BTreeMap<Phase, Duration>,
    /// A `cleanup = true` step: it runs after a failure too and never fails the run.
    #[serde(default)]
    pub cleanup: bool,
    /// Numbers the step read (Redis INFO, a JSON endpoint), exported as `probe_gauge_value`.
    /// Finite only ([`crate::flow::context::RunContext::gauge`]); read back leniently, as a peer of an
    /// older version or its history file may hold a `null` for one that was not.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "finite_gauges"
    )]
    pub gauges: BTreeMap<String, f64>,
    /// When the first of the certificates the server presented in this step's TLS handshake
    /// expires (the earliest `notAfter` of the chain; `probe_ssl_earliest_cert_expiry`, as
    /// blackbox_exporter names it). Absent for a step that made no TLS handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_expiry: Option<DateTime<Utc>>,
    /// Thresholds those numbers crossed: the step still succeeded, but the alert policy
    /// raises the degraded warning from them (as from a latency budget).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Gauges as read back: a value that is not a number (`null`) is left out, not the document.
fn finite_gauges<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, f64>, D::Error> {
    let read = <BTreeMap<String, Option<f64>> as serde::Deserialize>::deserialize(d)?;
    Ok(read
        .into_iter()
        .filter_map(|(name, v)| v.filter(|v| v.is_finite()).map(|v| (name, v)))
        .collect())
}

/// One probe run's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ProbeRun {
    pub probe: String,
    pub region: String,
    pub success: bool,
    pub started_at: DateTime<Utc>,
    #[serde(with = "millis")]
    pub duration_ms: Duration,
    pub failed_step: Option<String>,
    pub reason: Option<FailureReason>,
    pub error: Option<String>,
    #[serde(default)]
    pub trigger: Trigger,
    pub steps: Vec<StepReport>,
}

impl ProbeRun {
    /// The first failed step, if any. Cleanup steps never count: they tidy up after the flow.
    pub fn failed(&self) -> Option<&StepReport> {
        self.steps.iter().find(|s| !s.success && !s.cleanup)
    }

    /// Cleanup steps that failed (logged and counted, never the run's failure).
    pub fn failed_cleanups(&self) -> impl Iterator<Item = &StepReport> {
        self.steps.iter().filter(|s| !s.success && s.cleanup)
    }

    /// Wall-clock end of the run (its start when the sum is past chrono's range: a run read
    /// from disk or a peer may carry any date).
    pub fn finished_at(&self) -> DateTime<Utc> {
        chrono::Duration::from_std(self.duration_ms)
            .ok()
            .and_then(|d| self.started_at.checked_add_signed(d))
            .unwrap_or(self.started_at)
    }
}

/// A timestamp for people, to the second: `2025-03-01 12:05:00 UTC` (milliseconds are noise
/// at 3 a.m.; the payloads' RFC 3339 times keep them). One format for pages and the status page.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `text` cut to `max` characters, with `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Ends the cause-naming words that open an error (the server's own: `OOM command not allowed
/// … — the server reported an error: 42["join_error",…]`).
pub const CAUSE_END: &str = " — ";
/// The longest cause fragment a page's one-line summary carries.
pub const CAUSE_FRAGMENT_CHARS: usize = 100;

/// The shortest fragment of a run's error that names the cause, for the one line of a page that
/// every pager shows (Opsgenie's 130-character message, Slack's notification): the words before
/// [`CAUSE_END`] when the error opens with the server's own, else the error's start; one line,
/// at most [`CAUSE_FRAGMENT_CHARS`] characters. The error is already free of secrets.
pub fn cause_fragment(error: &str) -> Option<String> {
    let head = error.split(CAUSE_END).next().unwrap_or(error);
    let flat: String = head
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.is_empty() {
        return None;
    }
    if flat.chars().count() <= CAUSE_FRAGMENT_CHARS {
        return Some(flat.to_string());
    }
    let mut cut: String = flat.chars().take(CAUSE_FRAGMENT_CHARS - 1).collect();
    cut.push('…');
    Some(cut)
}

/// Formats a duration for people: `842 ms`, `5.0 s`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// `word` with its indefinite article, for messages naming a kind, scheme or protocol:
/// `a ws_send`, `an http`, `an xmpp`, `an actioncable`. A leading vowel takes "an"; so does a
/// leading run of letters without vowels (read out letter by letter: `http`, `xmpp`, `smtp`)
/// when its first letter's name opens with a vowel sound (eff, aitch, ell, em, en, ar, ess, ex).
pub fn with_article(word: &str) -> String {
    let head: String = word
        .trim_start_matches('`')
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let vowel = |c: char| "aeiouy".contains(c);
    let an = match head.chars().next() {
        Some(c) if vowel(c) => true,
        Some(c) => !head.chars().any(vowel) && "fhlmnrsx".contains(c),
        None => false,
    };
    format!("{} {word}", if an { "an" } else { "a" })
}

/// The longest duration read back from JSON (the status history on disk, a peer's status): a
/// run never lasts longer than a configured duration may be.
pub const MAX_READ_DURATION: Duration = crate::diag::MAX_DURATION;

/// A duration in milliseconds from outside (disk, a peer), range-checked: a finite number from
/// 0 to [`MAX_READ_DURATION`]. `Duration::from_secs_f64` panics past its range, and one bad
/// number must cost at most the document it came in, never the task that read it.
///
/// # Errors
/// The number and the accepted range, for the reader's error.
pub fn duration_from_ms(ms: f64) -> Result<Duration, String> {
    let max_ms = MAX_READ_DURATION.as_secs_f64() * 1000.0;
    if !(0.0..=max_ms).contains(&ms) {
        return Err(format!(
            "duration {ms:?} ms is out of range (accepted: 0 to {max_ms} ms)"
        ));
    }
    Duration::try_from_secs_f64(ms / 1000.0).map_err(|e| format!("duration {ms:?} ms: {e}"))
}

/// A duration in milliseconds computed from numbers that came from outside, for display:
/// out-of-range values are clamped to 0 ..= [`MAX_READ_DURATION`] (NaN reads as 0) rather than
/// refused, because the caller only formats it.
pub fn clamped_ms(ms: f64) -> Duration {
    duration_from_ms(ms).unwrap_or(if ms > 0.0 {
        MAX_READ_DURATION
    } else {
        Duration::ZERO
    })
}

/// A duration in milliseconds, to the tenth (`12.3`), for a log line's `duration_ms`: a
/// reader compares runs, and 17 significant digits (`12.345678901234567`) are noise.
pub fn log_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Durations as fractional milliseconds in JSON: tools read `duration_ms` as a number.
pub(crate) mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(round_ms(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::duration_from_ms(f64::deserialize(d)?).map_err(named)
    }

    /// For a field kept as milliseconds (`f64`): the same range check as a [`Duration`] field.
    pub fn deserialize_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let ms = f64::deserialize(d)?;
        super::duration_from_ms(ms).map_err(named)?;
        Ok(ms)
    }

    /// The error names the key (serde_json adds the line and column).
    fn named<E: serde::de::Error>(e: String) -> E {
        E::custom(format!("duration_ms: {e}"))
    }

    pub fn round_ms(d: Duration) -> f64 {
        round_f64(d.as_secs_f64() * 1000.0)
    }

    /// Milliseconds to the microsecond, as every duration in JSON is written: a sum of
    /// `f64`s (`4001.2431619999998`) would otherwise show 17 digits no clock measured.
    pub fn round_f64(ms: f64) -> f64 {
        (ms * 1000.0).round() / 1000.0
    }

    /// For a field kept as milliseconds (`f64`): written to the microsecond, as a
    /// [`Duration`] field is.
    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's `serialize_with` signature
    pub fn serialize_f64<S: Serializer>(ms: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(round_f64(*ms))
    }
}

mod phase_millis {
    use super::Phase;
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<Phase, Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(m.len()))?;
        for (phase, d) in m {
            map.serialize_entry(phase.as_str(), &super::millis::round_ms(*d))?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Phase, Duration>, D::Error> {
        let raw = BTreeMap::<Phase, f64>::deserialize(d)?;
        raw.into_iter()
            .map(|(p, ms)| {
                Ok((
                    p,
                    super::duration_from_ms(ms).map_err(|e| {
                        serde::de::Error::custom(format!("phases.{}: {e}", p.as_str()))
                    })?,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kind_names_take_the_right_article() {
        for (word, want) in [
            ("http", "an http"),
            ("http_json", "an http_json"),
            ("xmpp", "an xmpp"),
            ("`xmpp`", "an `xmpp`"),
            ("actioncable", "an actioncable"),
            ("ws_send", "a ws_send"),
            ("redis", "a redis"),
            ("sockjs", "a sockjs"),
            ("socketio", "a socketio"),
            ("webrtc", "a webrtc"),
            ("turn", "a turn"),
            ("raw", "a raw"),
            ("STUN", "a STUN"),
        ] {
            assert_eq!(super::with_article(word), want);
        }
    }

    /// A log line's `duration_ms` reads `12.3`, not `12.345678901234567`.
    #[test]
    fn logged_milliseconds_keep_one_decimal() {
        use std::time::Duration;
        assert_eq!(super::log_ms(Duration::from_nanos(12_345_678)), 12.3);
        assert_eq!(super::log_ms(Duration::from_nanos(12_350_001)), 12.4);
        assert_eq!(super::log_ms(Duration::from_secs(3)), 3000.0);
        assert_eq!(super::log_ms(Duration::ZERO), 0.0);
        for nanos in [1u64, 12_345_678_901, 999_999_999_999, 86_400_000_000_000] {
            let text = super::log_ms(Duration::from_nanos(nanos)).to_string();
            let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
            assert!(decimals <= 1, "{nanos} ns logged as {text}");
        }
    }

    #[test]
    fn the_cause_fragment_is_the_servers_words_or_the_errors_start() {
        let oom = "OOM command not allowed when used memory > 'maxmemory'. — the server reported an error: 42[\"join_error\"]";
        assert_eq!(
            cause_fragment(oom).as_deref(),
            Some("OOM command not allowed when used memory > 'maxmemory'.")
        );
        assert_eq!(
            cause_fragment("connect failed: Connection refused (os error 111)").as_deref(),
            Some("connect failed: Connection refused (os error 111)")
        );
        let long = format!("status 502 (expected 200): {}", "x\ny".repeat(100));
        let cut = cause_fragment(&long).unwrap_or_default();
        assert_eq!(cut.chars().count(), CAUSE_FRAGMENT_CHARS);
        assert!(cut.ends_with('…') && !cut.contains('\n'), "{cut}");
        assert_eq!(cause_fragment("  "), None);
    }

    use super::*;

    #[test]
    fn reason_labels_round_trip() {
        for r in FailureReason::ALL {
            assert_eq!(FailureReason::parse(r.as_str()), Some(r));
        }
        for p in Phase::ALL {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
        }
    }

    #[test]
    fn kind_names_read_back_as_written_and_are_bounded() {
        // As the history file and peers write them: the name, read back and written unchanged.
        let step = r#"{"name":"a","kind":"ws_expect","success":true,"duration_ms":1.5,"reason":null,"error":null,"phases":{},"cleanup":false}"#;
        let read: StepReport = serde_json::from_str(step).unwrap();
        assert_eq!(read.kind, KindName::new("ws_expect"));
        assert_eq!(serde_json::to_string(&read).unwrap(), step);
        // A kind this build does not know (a newer peer's) still reads.
        let newer = KindName::try_from("sfu_v2".to_string()).unwrap();
        assert_eq!(newer.as_str(), "sfu_v2");
        assert_eq!(serde_json::to_string(&newer).unwrap(), r#""sfu_v2""#);
        for bad in ["", "Http", "<b>x</b>", "a b", "ws-expect", &"k".repeat(33)] {
            let json = step.replace("ws_expect", bad);
            let err = serde_json::from_str::<StepReport>(&json).unwrap_err();
            assert!(
                err.to_string().contains("is not a kind's name"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn durations_from_outside_are_range_checked() {
        assert_eq!(duration_from_ms(1.5), Ok(Duration::from_micros(1500)));
        assert_eq!(duration_from_ms(0.0), Ok(Duration::ZERO));
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e300, 1e12 * 32.0] {
            assert!(duration_from_ms(bad).is_err(), "{bad}");
        }
        assert_eq!(
            duration_from_ms(1e300).unwrap_err(),
            "duration 1e300 ms is out of range (accepted: 0 to 31557600000 ms)"
        );
        assert_eq!(clamped_ms(1e300), MAX_READ_DURATION);
        assert_eq!(clamped_ms(f64::NAN), Duration::ZERO);
        assert_eq!(clamped_ms(-3.0), Duration::ZERO);
        let run: Result<ProbeRun, _> = serde_json::from_str(
            r#"{"probe":"p","region":"r","success":true,"started_at":"2026-01-01T00:00:00Z",
                "duration_ms":1e300,"failed_step":null,"reason":null,"error":null,"steps":[]}"#,
        );
        assert!(run.unwrap_err().to_string().contains("out of range"));
    }

    #[test]
    fn finished_at_never_overflows() {
        let run = ProbeRun {
            probe: "p".into(),
            region: "r".into(),
            success: true,
            started_at: DateTime::<Utc>::MAX_UTC,
            duration_ms: Duration::from_secs(60),
            failed_step: None,
            reason: None,
            error: None,
            trigger: Trigger::default(),
            steps: Vec::new(),
        };
        assert_eq!(run.finished_at(), DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(Duration::from_millis(42)), "42 ms");
        assert_eq!(human_duration(Duration::from_micros(1250)), "1.2 ms");
        assert_eq!(human_duration(Duration::from_millis(5000)), "5.0 s");
    }
}
