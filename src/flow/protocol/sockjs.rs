//! `sockjs`: the SockJS websocket transport (sockjs-node, SockJS-client), under Meteor's DDP
//! (Rocket.Chat, BigBlueButton's HTML5 client) and Spring's STOMP endpoints.
//!
//! The server opens the session with `o`, sends heartbeats `h` and messages as `a[...]`, a JSON
//! array of strings (each a message the application sent, itself usually JSON text), and ends
//! it with `c[code,"reason"]`. A client sends a JSON array of strings. A step matches one
//! application message at a time: the others of the same frame wait their turn.

use std::collections::VecDeque;

use serde_json::Value;

use super::{Incoming, Message, Outgoing, Protocol};
use crate::flow::matcher;

/// The keys of a step on a `sockjs` connection.
pub(crate) const KEYS: super::Keys = super::Keys {
    connect: &["ping_json"],
    send: &["text", "json"],
    expect: &["expect_json", "expect_regex"],
};

/// Messages kept from one frame: a frame packing more is cut there (a step's frame budget is
/// 1,000 by default, and a frame is bounded by `max_body_bytes` anyway).
const MESSAGES_PER_FRAME: usize = 1000;

pub(crate) struct SockJs {
    opened: bool,
    /// The application's heartbeats (DDP's `{"msg":"ping"}`): skipped like SockJS's own `h`.
    ping: Option<Value>,
    /// The messages of the last frame not yet handed to a step.
    queued: VecDeque<Message>,
}

impl SockJs {
    pub(crate) fn new(ping: Option<Value>) -> SockJs {
        SockJs {
            opened: false,
            ping,
            queued: VecDeque::new(),
        }
    }

    fn message(&self, text: String) -> Option<Message> {
        let json = serde_json::from_str::<Value>(&text).ok();
        if let (Some(ping), Some(j)) = (&self.ping, &json)
            && matcher::is_json_subset(ping, j)
        {
            return None;
        }
        Some(Message {
            text,
            json,
            ..Message::default()
        })
    }
}

impl Protocol for SockJs {
    fn ready(&self) -> bool {
        self.opened
    }

    fn decode(&mut self, frame: &str) -> Incoming {
        let mut chars = frame.chars();
        let kind = chars.next().map(String::from).unwrap_or_default();
        let rest = chars.as_str();
        match kind.as_str() {
            "o" => {
                self.opened = true;
                Incoming::Control(Vec::new())
            }
            "h" => Incoming::Control(Vec::new()),
            "c" => {
                let why = match serde_json::from_str::<(Value, Value)>(rest) {
                    // The reason is the server's text, of any length: quoted, so it is
                    // scrubbed and cut as every quoted reply is.
                    Ok((code, reason)) => format!(
                        "the server closed the SockJS session ({} {})",
                        crate::redact::quote(&code.to_string(), 20),
                        crate::redact::quote(
                            reason.as_str().unwrap_or_default(),
                            super::REASON_CHARS
                        )
                    ),
                    Err(_) => "the server closed the SockJS session".to_string(),
                };
                Incoming::Closed(why)
            }
            // `a["m1","m2"]`, or `m"m1"` from old servers.
            "a" | "m" => {
                let texts: Vec<String> = if kind == "a" {
                    serde_json::from_str::<Vec<Value>>(rest)
                        .unwrap_or_default()
                        .into_iter()
                        .take(MESSAGES_PER_FRAME)
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                } else {
                    serde_json::from_str::<String>(rest).into_iter().collect()
                };
                self.queued.clear();
                for text in texts {
                    if let Some(m) = self.message(text) {
                        self.queued.push_back(m);
                    }
                }
                match self.queued.pop_front() {
                    Some(first) => Incoming::Message(first),
                    None => Incoming::Control(Vec::new()),
                }
            }
            // Not SockJS framing: matched as it came, so the step's error shows it.
            _ => Incoming::Message(Message {
                text: frame.to_string(),
                ..Message::default()
            }),
        }
    }

    fn pending(&mut self) -> Option<Message> {
        self.queued.pop_front()
    }

    fn encode(&mut self, out: Outgoing) -> Result<Vec<String>, String> {
        let text = match (out.text, out.json) {
            (Some(t), _) => t,
            (None, Some(j)) => j.to_string(),
            (None, None) => return Err("nothing to send".into()),
        };
        Ok(vec![Value::Array(vec![Value::String(text)]).to_string()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn open_heartbeat_messages_one_by_one_and_close() {
        let mut s = SockJs::new(Some(json!({"msg": "ping"})));
        assert!(!s.ready());
        assert!(matches!(s.decode("o"), Incoming::Control(r) if r.is_empty()));
        assert!(s.ready());
        assert!(matches!(s.decode("h"), Incoming::Control(_)));
        // Two messages and an application ping in one frame: the ping is skipped, the
        // second message waits for the next read.
        let frame =
            r#"a["{\"msg\":\"connected\",\"session\":\"s1\"}","{\"msg\":\"ping\"}","not json"]"#;
        let Incoming::Message(first) = s.decode(frame) else {
            panic!()
        };
        assert_eq!(
            first.json,
            Some(json!({"msg": "connected", "session": "s1"}))
        );
        let second = s.pending().expect("the frame's second message");
        assert_eq!((second.text.as_str(), second.json), ("not json", None));
        assert!(s.pending().is_none());
        // Only pings: nothing to match.
        assert!(matches!(
            s.decode(r#"a["{\"msg\":\"ping\"}"]"#),
            Incoming::Control(_)
        ));
        let Incoming::Message(old) = s.decode(r#"m"hello""#) else {
            panic!()
        };
        assert_eq!(old.text, "hello");
        assert!(matches!(
            s.decode(r#"c[3000,"Go away!"]"#),
            Incoming::Closed(why) if crate::redact::finish(&Default::default(), &why)
                == "the server closed the SockJS session (3000 Go away!)"
        ));
        assert!(matches!(s.decode(""), Incoming::Message(m) if m.text.is_empty()));
    }

    #[test]
    fn a_send_is_an_array_of_one_string() {
        let mut s = SockJs::new(None);
        let json = s
            .encode(Outgoing {
                json: Some(json!({"msg": "connect", "version": "1"})),
                ..Outgoing::default()
            })
            .unwrap();
        assert_eq!(json, [r#"["{\"msg\":\"connect\",\"version\":\"1\"}"]"#]);
        let text = s
            .encode(Outgoing {
                text: Some("SEND\ndestination:/x\n\nhi\u{0}".into()),
                ..Outgoing::default()
            })
            .unwrap();
        assert_eq!(text, [r#"["SEND\ndestination:/x\n\nhi\u0000"]"#]);
        assert!(s.encode(Outgoing::default()).is_err());
    }
}
