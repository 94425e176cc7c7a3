//! `socketio`: Engine.IO v4 framing with Socket.IO v5 packets over one websocket, or (`EIO=3`
//! in the URL) Engine.IO v3 with Socket.IO 2's connect: the server joins the main namespace
//! itself, other namespaces take their auth as a query, and the client sends the pings.
//!
//! Engine.IO: `0{open}`, `1` close, `2`/`3` ping/pong (answered here), `4<socket.io packet>`,
//! `6` noop. Socket.IO: `<type>[/nsp,][ack id][json]` with types CONNECT 0, DISCONNECT 1,
//! EVENT 2, ACK 3, CONNECT_ERROR 4 (binary 5/6 are read as plain messages).

use serde_json::Value;

use super::{Incoming, Message, Outgoing, Protocol};

/// The keys of a step on a `socketio` connection.
pub(crate) const KEYS: super::Keys = super::Keys {
    connect: &["namespace", "auth"],
    send: &["event", "args", "json", "ack"],
    expect: &["event", "ack", "expect_json", "expect_regex"],
};

pub(crate) struct SocketIo {
    namespace: String,
    auth: Option<Value>,
    /// Engine.IO v3 (Socket.IO 2 servers, and 3/4 servers with `allowEIO3`).
    eio3: bool,
    connected: bool,
    next_ack: u64,
    awaited: Option<u64>,
}

impl SocketIo {
    pub(crate) fn new(namespace: String, auth: Option<Value>, eio3: bool) -> SocketIo {
        SocketIo {
            namespace,
            auth,
            eio3,
            connected: false,
            next_ack: 0,
            awaited: None,
        }
    }

    /// `/admin,` for a namespace other than the main one.
    fn prefix(&self) -> String {
        if self.namespace == "/" {
            String::new()
        } else {
            format!("{},", self.namespace)
        }
    }

    fn packet(&mut self, packet: &str) -> Incoming {
        let mut chars = packet.char_indices();
        let Some((_, kind)) = chars.next() else {
            return Incoming::Control(Vec::new());
        };
        let mut rest = &packet[kind.len_utf8()..];
        // Binary packets carry `<attachments>-` first; the JSON part is still readable.
        if matches!(kind, '5' | '6')
            && let Some(dash) = rest.find('-')
            && rest[..dash].bytes().all(|b| b.is_ascii_digit())
        {
            rest = &rest[dash + 1..];
        }
        let mut namespace = "/";
        if rest.starts_with('/') {
            let end = rest.find(',').unwrap_or(rest.len());
            namespace = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or("");
        }
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let ack = rest[..digits].parse::<u64>().ok();
        let payload = &rest[digits..];
        if namespace != self.namespace {
            // Another namespace multiplexed on the same socket: not this connection's traffic.
            return Incoming::Control(Vec::new());
        }
        let json = serde_json::from_str::<Value>(payload).ok();
        match kind {
            '0' => {
                self.connected = true;
                Incoming::Control(Vec::new())
            }
            '1' => Incoming::Closed("the server disconnected the Socket.IO namespace".into()),
            '4' => Incoming::ServerError("the server refused the namespace (CONNECT_ERROR)"),
            '2' | '5' => {
                let (name, args) = match json {
                    Some(Value::Array(mut items)) if !items.is_empty() => {
                        let name = items.remove(0);
                        (name.as_str().map(str::to_string), Value::Array(items))
                    }
                    other => (None, other.unwrap_or(Value::Null)),
                };
                Incoming::Message(Message {
                    text: payload.to_string(),
                    json: Some(args),
                    args: true,
                    name,
                    ..Message::default()
                })
            }
            '3' | '6' => Incoming::Message(Message {
                text: payload.to_string(),
                json,
                args: true,
                ack,
                ..Message::default()
            }),
            _ => Incoming::Message(Message {
                text: payload.to_string(),
                json,
                ..Message::default()
            }),
        }
    }
}

impl Protocol for SocketIo {
    fn ready(&self) -> bool {
        self.connected
    }

    fn decode(&mut self, frame: &str) -> Incoming {
        let Some(kind) = frame.chars().next() else {
            return Incoming::Control(Vec::new());
        };
        let rest = &frame[kind.len_utf8()..];
        match kind {
            // The open packet: connect to the namespace, with the auth payload if any.
            '0' if !self.eio3 => {
                let auth = self.auth.as_ref().map(Value::to_string).unwrap_or_default();
                Incoming::Control(vec![format!("40{}{auth}", self.prefix())])
            }
            // Engine.IO v3: the server connects the main namespace on its own (a second
            // CONNECT would make it close the session); another one is asked for with the
            // auth as its query, as Socket.IO 2 clients did.
            '0' if self.namespace == "/" => Incoming::Control(Vec::new()),
            '0' => Incoming::Control(vec![format!(
                "40{}{},",
                self.namespace,
                self.auth.as_ref().map(auth_query).unwrap_or_default()
            )]),
            '1' => Incoming::Closed("the server closed the Engine.IO session".into()),
            '2' => Incoming::Control(vec![format!("3{rest}")]),
            '3' | '5' | '6' => Incoming::Control(Vec::new()),
            '4' => self.packet(rest),
            _ => Incoming::Message(Message {
                text: frame.to_string(),
                ..Message::default()
            }),
        }
    }

    fn encode(&mut self, out: Outgoing) -> Result<Vec<String>, String> {
        let event = out.event.ok_or("a Socket.IO send needs `event`")?;
        let mut items = vec![Value::String(event)];
        match (out.args, out.json) {
            (Some(Value::Array(args)), _) => items.extend(args),
            (_, Some(one)) => items.push(one),
            _ => {}
        }
        let id = if out.ack {
            let id = self.next_ack;
            self.next_ack += 1;
            self.awaited = Some(id);
            id.to_string()
        } else {
            String::new()
        };
        Ok(vec![format!(
            "42{}{id}{}",
            self.prefix(),
            Value::Array(items)
        )])
    }

    fn awaited_ack(&self) -> Option<u64> {
        self.awaited
    }

    /// Engine.IO v3 servers wait for the client's ping and close a session that sends none
    /// within pingInterval + pingTimeout (45 s by default): an idle resident session pings.
    fn keepalive(&self) -> Option<&'static str> {
        self.eio3.then_some("2")
    }
}

/// `?token=t&room=r`: an auth table as a Socket.IO 2 namespace query (strings as they are,
/// other values as JSON).
fn auth_query(auth: &Value) -> String {
    let Value::Object(map) = auth else {
        return String::new();
    };
    let mut query = url::form_urlencoded::Serializer::for_suffix(String::from("?"), 1);
    for (k, v) in map {
        match v {
            Value::String(s) => query.append_pair(k, s),
            other => query.append_pair(k, &other.to_string()),
        };
    }
    query.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn control(i: Incoming) -> Vec<String> {
        match i {
            Incoming::Control(r) => r,
            other => panic!("not control: {other:?}"),
        }
    }

    #[test]
    fn handshake_connects_the_namespace_with_auth() {
        let mut s = SocketIo::new("/chat".into(), Some(json!({"token": "t"})), false);
        assert!(!s.ready());
        let reply = control(s.decode(r#"0{"sid":"x","pingInterval":25000,"pingTimeout":20000}"#));
        assert_eq!(reply, [r#"40/chat,{"token":"t"}"#]);
        assert!(control(s.decode(r#"40{"sid":"other-namespace"}"#)).is_empty());
        assert!(!s.ready(), "a CONNECT for another namespace is not ours");
        control(s.decode(r#"40/chat,{"sid":"abc"}"#));
        assert!(s.ready());
        assert_eq!(control(s.decode("2")), ["3"]);
    }

    #[test]
    fn engine_io_v3_lets_the_server_connect_the_main_namespace_and_pings_itself() {
        let mut s = SocketIo::new("/".into(), None, true);
        let open = r#"0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":5000}"#;
        assert!(control(s.decode(open)).is_empty(), "no CONNECT of our own");
        assert!(!s.ready());
        control(s.decode("40"));
        assert!(s.ready(), "Socket.IO 2's CONNECT has no payload");
        assert!(control(s.decode("3")).is_empty(), "the pong to our ping");
        assert_eq!(s.keepalive(), Some("2"));
        assert_eq!(SocketIo::new("/".into(), None, false).keepalive(), None);

        // Another namespace: asked for, its auth as the query.
        let auth = json!({"token": "a b&c", "n": 1});
        let mut s = SocketIo::new("/chat".into(), Some(auth), true);
        assert_eq!(control(s.decode(open)), ["40/chat?n=1&token=a+b%26c,"]);
        control(s.decode("40"));
        assert!(!s.ready(), "the main namespace's CONNECT is not ours");
        control(s.decode("40/chat,"));
        assert!(s.ready());
    }

    #[test]
    fn connect_error_is_a_server_error() {
        let mut s = SocketIo::new("/".into(), None, false);
        assert_eq!(control(s.decode("0{}")), ["40"]);
        assert!(matches!(
            s.decode(r#"44{"message":"unauthorized"}"#),
            Incoming::ServerError(_)
        ));
    }

    #[test]
    fn events_acks_and_emits() {
        let mut s = SocketIo::new("/".into(), None, false);
        let Incoming::Message(m) = s.decode(r#"42["joined",{"room":"r"},2]"#) else {
            panic!()
        };
        assert_eq!(m.name.as_deref(), Some("joined"));
        assert_eq!(m.json, Some(json!([{"room": "r"}, 2])));
        assert_eq!(
            m.json_for(&json!({"room": "r"})),
            Some(&json!({"room": "r"}))
        );
        assert_eq!(m.text, r#"["joined",{"room":"r"},2]"#);
        let frames = s
            .encode(Outgoing {
                event: Some("join".into()),
                json: Some(json!({"room": "r"})),
                ack: true,
                ..Outgoing::default()
            })
            .unwrap();
        assert_eq!(frames, [r#"420["join",{"room":"r"}]"#]);
        assert_eq!(s.awaited_ack(), Some(0));
        let Incoming::Message(ack) = s.decode(r#"430[{"ok":true}]"#) else {
            panic!()
        };
        assert_eq!((ack.ack, ack.name), (Some(0), None));
        assert!(matches!(s.decode("41"), Incoming::Closed(_)));
    }
}
