//! `raw`: text frames as written. Frames matching `ping_json` are the platform's heartbeats.

use serde_json::Value;

use super::{Incoming, Message, Outgoing, Protocol};
use crate::flow::matcher;

/// The keys of a step on a `raw` connection.
pub(crate) const KEYS: super::Keys = super::Keys {
    connect: &["ping_json"],
    send: &["text", "json", "hex", "base64"],
    expect: &["expect_json", "expect_regex", "expect_binary"],
};

pub(crate) struct Raw {
    ping: Option<Value>,
}

impl Raw {
    pub(crate) fn new(ping: Option<Value>) -> Raw {
        Raw { ping }
    }
}

impl Protocol for Raw {
    fn decode(&mut self, frame: &str) -> Incoming {
        let json = serde_json::from_str::<Value>(frame).ok();
        if let (Some(ping), Some(j)) = (&self.ping, &json)
            && matcher::is_json_subset(ping, j)
        {
            return Incoming::Control(Vec::new());
        }
        Incoming::Message(Message {
            text: frame.to_string(),
            json,
            ..Message::default()
        })
    }

    fn encode(&mut self, out: Outgoing) -> Result<Vec<String>, String> {
        match (out.text, out.json) {
            (Some(t), _) => Ok(vec![t]),
            (None, Some(j)) => Ok(vec![j.to_string()]),
            (None, None) => Err("nothing to send".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_are_control_frames() {
        let mut raw = Raw::new(Some(serde_json::json!({"type": "ping"})));
        assert!(
            matches!(raw.decode(r#"{"type":"ping","n":1}"#), Incoming::Control(r) if r.is_empty())
        );
        assert!(matches!(
            raw.decode(r#"{"type":"joined"}"#),
            Incoming::Message(_)
        ));
        assert!(matches!(raw.decode("not json"), Incoming::Message(m) if m.json.is_none()));
    }
}
