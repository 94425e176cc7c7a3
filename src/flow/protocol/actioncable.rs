//! `actioncable`: Rails ActionCable's JSON protocol (`actioncable-v1-json`).
//!
//! The server opens with `{"type":"welcome"}` and pings every 3 s (skipped here); a client
//! subscribes with `{"command":"subscribe","identifier":"<json>"}` and is answered with
//! `confirm_subscription` or `reject_subscription`; `perform` is a `message` command whose
//! `data` is a JSON string holding `action`; broadcasts arrive as `{"identifier","message"}`.

use serde_json::{Value, json};

use super::{Incoming, Message, Outgoing, Protocol};

/// The keys of a step on an `actioncable` connection.
pub(crate) const KEYS: super::Keys = super::Keys {
    connect: &[],
    send: &["event", "json", "subscribe"],
    expect: &["event", "expect_json", "expect_regex"],
};

#[derive(Default)]
pub(crate) struct ActionCable {
    welcomed: bool,
    /// The identifier of the last subscription: where `perform` goes.
    identifier: Option<String>,
}

impl Protocol for ActionCable {
    fn subprotocol(&self) -> Option<&'static str> {
        Some("actioncable-v1-json")
    }

    fn ready(&self) -> bool {
        self.welcomed
    }

    fn decode(&mut self, frame: &str) -> Incoming {
        let Ok(json) = serde_json::from_str::<Value>(frame) else {
            return Incoming::Message(Message {
                text: frame.to_string(),
                ..Message::default()
            });
        };
        let kind = json.get("type").and_then(Value::as_str).map(str::to_string);
        match kind.as_deref() {
            Some("welcome") => {
                self.welcomed = true;
                Incoming::Control(Vec::new())
            }
            Some("ping") => Incoming::Control(Vec::new()),
            Some("reject_subscription") => {
                Incoming::ServerError("the server rejected the subscription")
            }
            Some("disconnect") => {
                let reason = json.get("reason").and_then(Value::as_str).unwrap_or("");
                if reason == "unauthorized" || reason == "invalid_request" {
                    Incoming::ServerError("the server refused the connection")
                } else {
                    Incoming::Closed(format!(
                        "the server disconnected ({})",
                        crate::redact::quote(reason, super::REASON_CHARS)
                    ))
                }
            }
            _ => {
                // A broadcast's payload is what a step matches; anything else is matched whole.
                let payload = match (&kind, json.get("message")) {
                    (None, Some(m)) => m.clone(),
                    _ => json.clone(),
                };
                Incoming::Message(Message {
                    text: frame.to_string(),
                    json: Some(payload),
                    name: kind,
                    ..Message::default()
                })
            }
        }
    }

    fn encode(&mut self, out: Outgoing) -> Result<Vec<String>, String> {
        if let Some(identifier) = out.subscribe {
            let identifier = identifier.to_string();
            let frame = json!({"command": "subscribe", "identifier": identifier});
            self.identifier = Some(identifier);
            return Ok(vec![frame.to_string()]);
        }
        let action = out
            .event
            .ok_or("an ActionCable send needs `subscribe` or `event`")?;
        let identifier = self
            .identifier
            .clone()
            .ok_or("`event` (perform) needs a `subscribe` step on this connection before it")?;
        let mut data = match out.json {
            Some(Value::Object(map)) => map,
            Some(_) => return Err("an ActionCable `json` payload must be a table".into()),
            None => serde_json::Map::new(),
        };
        data.insert("action".into(), Value::String(action));
        let frame = json!({
            "command": "message",
            "identifier": identifier,
            "data": Value::Object(data).to_string(),
        });
        Ok(vec![frame.to_string()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welcome_subscribe_perform_broadcast() {
        let mut a = ActionCable::default();
        assert!(!a.ready());
        assert!(matches!(
            a.decode(r#"{"type":"welcome"}"#),
            Incoming::Control(_)
        ));
        assert!(a.ready());
        assert!(matches!(
            a.decode(r#"{"type":"ping","message":1}"#),
            Incoming::Control(_)
        ));
        assert!(
            a.encode(Outgoing {
                event: Some("speak".into()),
                ..Outgoing::default()
            })
            .is_err()
        );
        let sub = a
            .encode(Outgoing {
                subscribe: Some(json!({"channel": "RoomChannel", "room": "r"})),
                ..Outgoing::default()
            })
            .unwrap();
        let sub: Value = serde_json::from_str(&sub[0]).unwrap();
        assert_eq!(sub["identifier"], r#"{"channel":"RoomChannel","room":"r"}"#);
        let perform = a
            .encode(Outgoing {
                event: Some("speak".into()),
                json: Some(json!({"text": "hi"})),
                ..Outgoing::default()
            })
            .unwrap();
        let perform: Value = serde_json::from_str(&perform[0]).unwrap();
        assert_eq!(perform["command"], "message");
        assert_eq!(perform["data"], r#"{"action":"speak","text":"hi"}"#);
        let Incoming::Message(m) = a.decode(r#"{"identifier":"{}","type":"confirm_subscription"}"#)
        else {
            panic!()
        };
        assert_eq!(m.name.as_deref(), Some("confirm_subscription"));
        let Incoming::Message(b) = a.decode(r#"{"identifier":"{}","message":{"text":"hi"}}"#)
        else {
            panic!()
        };
        assert_eq!((b.name, b.json), (None, Some(json!({"text": "hi"}))));
        assert!(matches!(
            a.decode(r#"{"identifier":"{}","type":"reject_subscription"}"#),
            Incoming::ServerError(_)
        ));
    }
}
