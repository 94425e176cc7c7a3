//! Protocol framing on a websocket (`protocol = ...` on `ws_connect`): one file per protocol
//! behind [`Protocol`], which turns a step's event into frames and a frame into a message, a
//! control frame to answer or skip, or the server's own error.
//!
//! Protocols are synchronous state machines: the websocket I/O, deadlines and frame budgets
//! stay in `ws.rs`, so no protocol can outlive a step or read without a bound.

pub(crate) mod actioncable;
pub(crate) mod raw;
pub(crate) mod socketio;
pub mod xmpp;

use serde_json::Value;

use crate::config::{ProtocolKind, WsConnectSpec};

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
}

/// The protocol for a connection.
pub(crate) fn new(spec: &WsConnectSpec, setup: Setup) -> Box<dyn Protocol> {
    match spec.protocol {
        ProtocolKind::Raw => Box::new(raw::Raw::new(spec.ping_json.clone())),
        ProtocolKind::SocketIo => {
            Box::new(socketio::SocketIo::new(spec.namespace.clone(), setup.auth))
        }
        ProtocolKind::ActionCable => Box::new(actioncable::ActionCable::default()),
        ProtocolKind::Xmpp => Box::new(xmpp::Xmpp::new(setup.domain.unwrap_or_default())),
    }
}
