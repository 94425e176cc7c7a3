//! Protocol framing on a websocket (`protocol = ...` on `ws_connect`): one file per protocol
//! behind [`Protocol`], which turns a step's event into frames and a frame into a message, a
//! control frame to answer or skip, or the server's own error.
//!
//! Protocols are synchronous state machines: the websocket I/O, deadlines and frame budgets
//! stay in `ws.rs`, so no protocol can outlive a step or read without a bound.

pub(crate) mod actioncable;
pub(crate) mod raw;
pub(crate) mod socketio;
pub(crate) mod sockjs;
pub mod xmpp;

use serde_json::Value;

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
    /// The SockJS websocket transport (`o`, `h`, `a[...]`, `c[...]`).
    SockJs,
}

impl ProtocolKind {
    pub const ALL: [ProtocolKind; 5] = [
        ProtocolKind::Raw,
        ProtocolKind::SocketIo,
        ProtocolKind::ActionCable,
        ProtocolKind::Xmpp,
        ProtocolKind::SockJs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolKind::Raw => "raw",
            ProtocolKind::SocketIo => "socketio",
            ProtocolKind::ActionCable => "actioncable",
            ProtocolKind::Xmpp => "xmpp",
            ProtocolKind::SockJs => "sockjs",
        }
    }

    pub fn parse(text: &str) -> Option<ProtocolKind> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// The keys a step on a connection of this protocol may use, beyond the ones every
    /// connection takes: each protocol's file says its own.
    pub(crate) fn keys(self) -> &'static Keys {
        match self {
            ProtocolKind::Raw => &raw::KEYS,
            ProtocolKind::SocketIo => &socketio::KEYS,
            ProtocolKind::ActionCable => &actioncable::KEYS,
            ProtocolKind::Xmpp => &xmpp::KEYS,
            ProtocolKind::SockJs => &sockjs::KEYS,
        }
    }

    /// The keys some protocol claims for a step kind (`which` picks ws_connect's, ws_send's or
    /// ws_expect's): on a connection of another protocol they do not apply.
    pub(crate) fn claimed(which: fn(&Keys) -> &[&'static str]) -> Vec<&'static str> {
        let mut all: Vec<&'static str> = Vec::new();
        for p in ProtocolKind::ALL {
            for k in which(p.keys()) {
                if !all.contains(k) {
                    all.push(k);
                }
            }
        }
        all
    }
}

/// The keys of steps on one protocol's connections.
pub(crate) struct Keys {
    /// `ws_connect` keys for this protocol only.
    pub connect: &'static [&'static str],
    /// What a `ws_send` on it may use.
    pub send: &'static [&'static str],
    /// What a `ws_expect` on it may use (besides `fail_*`, `max_frames`, `extract`).
    pub expect: &'static [&'static str],
}

/// A message a step may match: what patterns and extractions see.
#[derive(Debug, Clone, Default)]
pub(crate) struct Message {
    /// What `expect_regex` / `fail_regex` see: the frame (raw, actioncable), the event's JSON
    /// array without the packet prefix (socketio), the stanza (xmpp).
    pub text: String,
    /// What `expect_json` / `fail_json` / `extract` see.
    pub json: Option<Value>,
    /// `json` is an argument list: a pattern that is not a list matches the first argument.
    pub args: bool,
    /// The Socket.IO event name or the ActionCable message type.
    pub name: Option<String>,
    /// The Socket.IO acknowledgement id this message answers.
    pub ack: Option<u64>,
    /// The stanza, parsed (xmpp).
    pub xml: Option<xmpp::Element>,
    /// The frame's bytes when it came as a binary frame (LiveKit's protobuf signalling):
    /// what `expect_binary` sees. `text` is then those bytes read as UTF-8 (invalid sequences
    /// replaced), so regexes still find the readable parts.
    pub bytes: Option<Box<[u8]>>,
}

impl Message {
    /// The JSON a pattern is compared with.
    pub fn json_for(&self, pattern: &Value) -> Option<&Value> {
        match (&self.json, self.args) {
            (Some(Value::Array(items)), true) if !pattern.is_array() => items.first(),
            (json, _) => json.as_ref(),
        }
    }
}

/// One decoded frame.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// Transport housekeeping (handshake, pings): never matched, never counted against
    /// `max_frames`; the frames given are sent back at once (a pong).
    Control(Vec<String>),
    Message(Message),
    /// The server reported an error in the protocol's own terms (what, and the frame).
    ServerError(&'static str),
    /// The server ended the session at the protocol level.
    Closed(String),
}

/// A rendered `ws_send`.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    pub text: Option<String>,
    pub json: Option<Value>,
    pub event: Option<String>,
    pub args: Option<Value>,
    pub ack: bool,
    pub subscribe: Option<Value>,
}

/// What `ws_connect` rendered for the protocol.
#[derive(Debug, Default)]
pub(crate) struct Setup {
    pub auth: Option<Value>,
    pub domain: Option<String>,
    /// Socket.IO's namespace.
    pub namespace: String,
    /// Raw: the frames that are pings.
    pub ping_json: Option<Value>,
    /// Socket.IO: the URL asks for Engine.IO v3 (`EIO=3`).
    pub eio3: bool,
}

pub(crate) trait Protocol: Send + Sync {
    /// The websocket subprotocol to offer when the probe names none.
    fn subprotocol(&self) -> Option<&'static str> {
        None
    }
    /// Frames to send as soon as the websocket is open.
    fn opening(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// True once the protocol's handshake is done (`ws_connect` waits for it).
    fn ready(&self) -> bool {
        true
    }
    fn decode(&mut self, frame: &str) -> Incoming;
    /// A message the last frame held beyond the one `decode` returned (SockJS packs several
    /// into one frame); read before the next frame.
    fn pending(&mut self) -> Option<Message> {
        None
    }
    /// The frames for one `ws_send`.
    ///
    /// # Errors
    /// What the step asked for that this protocol cannot say.
    fn encode(&mut self, out: Outgoing) -> Result<Vec<String>, String>;
    /// A frame to send before the websocket close (XMPP's `<close/>`).
    fn closing(&self) -> Option<String> {
        None
    }
    /// The acknowledgement id the last `ack = true` send asked for.
    fn awaited_ack(&self) -> Option<u64> {
        None
    }
    /// A frame an idle session sends to stay alive, beside the websocket ping (Engine.IO v3's
    /// client ping).
    fn keepalive(&self) -> Option<&'static str> {
        None
    }
}

/// Keys a server's JSON error names its cause under, in the order they are preferred
/// (Socket.IO `{"message"}`, an app's `{"error"}`, ActionCable's `reason`, protoo's
/// `errorReason`, OAuth's `error_description`).
/// Characters of a server's close or disconnect reason shown (SockJS `c[code,"reason"]`,
/// ActionCable's `reason`): the reason is quoted, so scrubbed and cut; the frame follows it.
pub(crate) const REASON_CHARS: usize = 100;

const CAUSE_KEYS: [&str; 6] = [
    "error",
    "message",
    "reason",
    "errorReason",
    "error_description",
    "detail",
];
/// JSON values looked at for a cause: a frame's error is near its top.
const CAUSE_NODES: usize = 64;

/// The part of a server's error frame that names the cause, for the page's first line: an XMPP
/// error's condition and `<text>` (`not-allowed: Room creation is restricted`), or a JSON
/// error's `error` / `message` / `reason` text (`OOM command not allowed …`), the JSON found
/// after any packet prefix (Socket.IO's `44`, `42`). `None` when the frame names none.
pub(crate) fn cause(frame: &str) -> Option<String> {
    let trimmed = frame.trim_start();
    if trimmed.starts_with('<') {
        return xmpp::Element::parse(trimmed)
            .ok()
            .and_then(|el| xmpp::error_cause(&el));
    }
    // Socket.IO 2's CONNECT_ERROR is a bare string after the packet type: `44"unauthorized"`.
    let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0
        && let Ok(Value::String(text)) = serde_json::from_str::<Value>(&trimmed[digits..])
    {
        return Some(text.trim().to_string()).filter(|t| !t.is_empty());
    }
    let start = trimmed.find(['{', '['])?;
    let json: Value = serde_json::from_str(&trimmed[start..]).ok()?;
    json_cause(&json)
}

/// The first cause-naming string in `json`, breadth first (a string under one of
/// [`CAUSE_KEYS`], or an error object's own `message`), after the object's machine-readable
/// `code` (Matrix: `errcode`) when it has a textual one: Nextcloud Talk's
/// `{"type":"error","error":{"code":"invalid_ticket","message":"The given ticket is not valid…"}}`
/// gives `invalid_ticket: The given ticket is not valid…` (the code is what on-call searches
/// for; a numeric code, as Janus's 460, adds nothing to its reason and is left out).
fn json_cause(json: &Value) -> Option<String> {
    let mut queue = std::collections::VecDeque::from([json]);
    let mut seen = 0;
    while let Some(v) = queue.pop_front() {
        seen += 1;
        if seen > CAUSE_NODES {
            return None;
        }
        match v {
            Value::Object(map) => {
                for key in CAUSE_KEYS {
                    match map.get(key) {
                        Some(Value::String(s)) if !s.trim().is_empty() => {
                            let s = s.trim();
                            // Matrix spells it `errcode` (`M_FORBIDDEN`).
                            let code = map.get("code").or_else(|| map.get("errcode"));
                            return Some(match code {
                                Some(Value::String(code))
                                    if !code.trim().is_empty() && code.trim() != s =>
                                {
                                    format!("{}: {s}", code.trim())
                                }
                                _ => s.to_string(),
                            });
                        }
                        Some(inner @ Value::Object(_)) => queue.push_front(inner),
                        _ => {}
                    }
                }
                queue.extend(map.values().filter(|v| v.is_object() || v.is_array()));
            }
            Value::Array(items) => {
                queue.extend(items.iter().filter(|v| v.is_object() || v.is_array()));
            }
            _ => {}
        }
    }
    None
}

/// The protocol for a connection.
pub(crate) fn new(kind: ProtocolKind, setup: Setup) -> Box<dyn Protocol> {
    match kind {
        ProtocolKind::Raw => Box::new(raw::Raw::new(setup.ping_json)),
        ProtocolKind::SocketIo => Box::new(socketio::SocketIo::new(
            setup.namespace,
            setup.auth,
            setup.eio3,
        )),
        ProtocolKind::ActionCable => Box::new(actioncable::ActionCable::default()),
        ProtocolKind::Xmpp => Box::new(xmpp::Xmpp::new(setup.domain.unwrap_or_default())),
        ProtocolKind::SockJs => Box::new(sockjs::SockJs::new(setup.ping_json)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_found_in_each_protocols_error_frames() {
        for (frame, want) in [
            // Socket.IO CONNECT_ERROR, an event's error, a protoo response, Janus, ActionCable.
            (r#"44{"message":"unauthorized"}"#, Some("unauthorized")),
            // Socket.IO 2 (Engine.IO v3): the error is a bare string.
            (r#"44"unauthorized""#, Some("unauthorized")),
            (r#"44"""#, None),
            (r#""quoted words""#, None),
            (
                r#"42["join_error",{"error":"OOM command not allowed when used memory > 'maxmemory'."}]"#,
                Some("OOM command not allowed when used memory > 'maxmemory'."),
            ),
            (
                r#"{"response":true,"id":3,"errorCode":403,"errorReason":"room forbidden"}"#,
                Some("room forbidden"),
            ),
            (
                r#"{"janus":"error","error":{"code":460,"reason":"No such session"}}"#,
                Some("No such session"),
            ),
            (
                r#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#,
                Some("unauthorized"),
            ),
            (
                "<presence type='error'><error type='cancel'><not-allowed/><text>Room creation is restricted</text></error></presence>",
                Some("not-allowed: Room creation is restricted"),
            ),
            // Nextcloud Talk's signalling server: the error's code, then its message.
            (
                r#"{"type":"error","error":{"code":"invalid_ticket","message":"The given ticket is not valid for this user."}}"#,
                Some("invalid_ticket: The given ticket is not valid for this user."),
            ),
            (
                r#"{"type":"error","error":{"code":"no_such_session","message":"no_such_session"}}"#,
                Some("no_such_session"),
            ),
            // Matrix: `errcode`, then `error`.
            (
                r#"{"errcode":"M_FORBIDDEN","error":"You are not invited to this room."}"#,
                Some("M_FORBIDDEN: You are not invited to this room."),
            ),
            // Nothing that names a cause: the frame alone is quoted.
            (r#"{"type":"joined","participants":2}"#, None),
            (r#"{"error":""}"#, None),
            ("plain words", None),
            ("<unclosed", None),
        ] {
            assert_eq!(cause(frame).as_deref(), want, "{frame}");
        }
        // Bounded: a wide frame with no cause is given up on, not walked whole.
        let wide = serde_json::to_string(&vec![serde_json::json!({"a": [1]}); 10_000]).unwrap();
        assert_eq!(cause(&wide), None);
    }
}
