//! The `ws_send` step: one message on an open websocket, framed by its protocol.

use serde::Deserialize;

use super::*;
use crate::diag::S;
use crate::flow::context::RunContext;
use crate::flow::kind::{Build, Kind, Reads, Websocket};
use crate::flow::protocol::ProtocolKind;
use crate::template::Template;

/// A `ws_send` step's table; which keys apply depends on the connection's protocol.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWsSend {
    pub text: Option<S<String>>,
    pub json: Option<S<toml::Value>>,
    /// The Socket.IO event or ActionCable action.
    pub event: Option<S<String>>,
    /// socketio: the event's arguments.
    pub args: Option<S<toml::Value>>,
    /// socketio: ask for an acknowledgement.
    pub ack: Option<S<bool>>,
    /// actioncable: subscribe to this channel identifier.
    pub subscribe: Option<S<toml::Value>>,
    /// raw: a binary frame, its bytes in hex (whitespace and `:` between bytes allowed).
    pub hex: Option<S<String>>,
    /// raw: a binary frame, its bytes in standard base64.
    pub base64: Option<S<String>>,
}

/// What a ws_send sends; which fields apply depends on the connection's protocol.
#[derive(Debug, Clone, Default)]
pub struct SendSpec {
    pub text: Option<Template>,
    pub json: Option<serde_json::Value>,
    pub event: Option<Template>,
    pub args: Option<serde_json::Value>,
    pub ack: bool,
    pub subscribe: Option<serde_json::Value>,
    /// Raw: a binary frame, its bytes written as `hex` or `base64` (decoded per run: the
    /// template may hold values, `{{token|base64}}`).
    pub binary: Option<(BinaryText, Template)>,
}

/// How a `ws_send`'s binary frame is written in the probe file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryText {
    Hex,
    Base64,
}

impl BinaryText {
    fn key(self) -> &'static str {
        match self {
            BinaryText::Hex => "hex",
            BinaryText::Base64 => "base64",
        }
    }

    /// The bytes `text` stands for.
    ///
    /// # Errors
    /// What is wrong with `text`, without quoting it (it may hold a secret).
    pub(crate) fn decode(self, text: &str) -> Result<Vec<u8>, String> {
        match self {
            BinaryText::Hex => crate::flow::matcher::hex_bytes(text),
            BinaryText::Base64 => {
                use base64::Engine as _;
                let compact: String = text.split_whitespace().collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact.as_bytes())
                    .map_err(|e| format!("not base64: {e}"))
            }
        }
    }
}

impl Kind for SendSpec {
    type Raw = RawWsSend;
    const WEBSOCKET: Websocket = Websocket::Uses;

    fn build(s: RawWsSend, b: &mut Build<'_, '_, '_>) -> Option<SendSpec> {
        let allowed = b.protocol.map_or(&[][..], |p| p.keys().send);
        b.protocol_keys(&ProtocolKind::claimed(|k| k.send), allowed);
        let protocol = b.protocol.unwrap_or_default();
        let spec = SendSpec {
            text: match &s.text {
                Some(t) => Some(b.ctx.template(t, &b.key("text"))?),
                None => None,
            },
            json: match &s.json {
                Some(j) => Some(b.ctx.json(j, &b.key("json"))?),
                None => None,
            },
            event: match &s.event {
                Some(e) => Some(b.ctx.template(e, &b.key("event"))?),
                None => None,
            },
            args: match &s.args {
                Some(a) => {
                    let v = b.ctx.json(a, &b.key("args"))?;
                    if !v.is_array() {
                        b.ctx
                            .error(Some(a.span()), b.key("args"), "must be an array");
                    }
                    Some(v)
                }
                None => None,
            },
            ack: s.ack.as_ref().is_some_and(|a| *a.get_ref()),
            binary: binary(&s, b)?,
            subscribe: match &s.subscribe {
                Some(j) => {
                    let v = b.ctx.json(j, &b.key("subscribe"))?;
                    if !v.is_object() {
                        b.ctx.error(
                            Some(j.span()),
                            b.key("subscribe"),
                            "must be a table (the channel identifier)",
                        );
                    }
                    Some(v)
                }
                None => None,
            },
        };
        let needs = match protocol {
            ProtocolKind::Raw => ([
                spec.text.is_some(),
                spec.json.is_some(),
                spec.binary.is_some(),
            ]
            .into_iter()
            .filter(|given| *given)
            .count()
                == 1
                && !(s.hex.is_some() && s.base64.is_some()))
            .then_some(())
            .ok_or("a ws_send step needs `text`, `json`, `hex` or `base64` (one of them)"),
            ProtocolKind::SockJs => (spec.text.is_some() != spec.json.is_some())
                .then_some(())
                .ok_or("a sockjs ws_send needs `text` or `json` (one of them)"),
            ProtocolKind::SocketIo => (spec.event.is_some()
                && !(spec.args.is_some() && spec.json.is_some()))
            .then_some(())
            .ok_or("a socketio ws_send needs `event`, and `args` or `json` (not both)"),
            ProtocolKind::ActionCable => (spec.subscribe.is_some() != spec.event.is_some())
                .then_some(())
                .ok_or("an actioncable ws_send needs `subscribe` or `event` (one of them)"),
            ProtocolKind::Xmpp => {
                let open = spec.event.as_ref().is_some_and(|e| e.to_string() == "open");
                (spec.text.is_some() != open)
                    .then_some(())
                    .ok_or("an xmpp ws_send needs `text` (a stanza) or `event = \"open\"` (restart the stream)")
            }
        };
        if let Err(msg) = needs {
            b.ctx.error(Some(b.name.clone()), b.prefix.clone(), msg);
            return None;
        }
        Some(spec)
    }

    fn reads<'s>(&'s self, r: &mut Reads<'s>) {
        r.templates.extend(&self.text);
        r.templates.extend(self.binary.as_ref().map(|(_, t)| t));
        r.templates.extend(&self.event);
        r.json.extend(&self.json);
        r.json.extend(&self.args);
        r.json.extend(&self.subscribe);
    }

    async fn run(&self, ctx: &mut RunContext<'_>, connection: &str) -> Result<(), StepError> {
        send(ctx, connection, self).await
    }
}

/// `hex` or `base64`: a template, checked at load time when it holds no value.
fn binary(s: &RawWsSend, b: &mut Build<'_, '_, '_>) -> Option<Option<(BinaryText, Template)>> {
    let (how, raw) = match (&s.hex, &s.base64) {
        (Some(h), _) => (BinaryText::Hex, h),
        (None, Some(b64)) => (BinaryText::Base64, b64),
        (None, None) => return Some(None),
    };
    let key = b.key(how.key());
    let t = b.ctx.template(raw, &key)?;
    if t.is_literal()
        && let Err(e) = how.decode(&t.render_placeholder(""))
    {
        b.ctx.error(Some(raw.span()), key, e);
        return None;
    }
    Some(Some((how, t)))
}

async fn send(ctx: &mut RunContext<'_>, name: &str, spec: &SendSpec) -> Result<(), StepError> {
    if let Some((how, t)) = &spec.binary {
        let bytes = how.decode(&ctx.render(t)?).map_err(|e| {
            StepError::new(
                FailureReason::Protocol,
                format!("`{}` of the frame to send: {e}", how.key()),
            )
        })?;
        let conn = ctx.socket(name)?;
        let started = Instant::now();
        conn.stream
            .send(WsMessage::binary(bytes))
            .await
            .map_err(|e| classify(e, FailureReason::WsClosed))?;
        ctx.last_send = Some((name.to_string(), started));
        return Ok(());
    }
    let json = |v: &Option<serde_json::Value>| -> Result<_, StepError> {
        v.as_ref().map(|v| ctx.render_json(v)).transpose()
    };
    let out = Outgoing {
        text: spec.text.as_ref().map(|t| ctx.render(t)).transpose()?,
        json: json(&spec.json)?,
        event: spec.event.as_ref().map(|t| ctx.render(t)).transpose()?,
        args: json(&spec.args)?,
        ack: spec.ack,
        subscribe: json(&spec.subscribe)?,
    };
    // A literal password in a login message (`{"password": …}`, `password=…`) is a secret
    // like one from the environment: the server may quote the message back in its refusal.
    let mut credentials = Vec::new();
    for v in [&out.json, &out.args, &out.subscribe].into_iter().flatten() {
        crate::redact::json_credentials(v, &mut credentials);
    }
    if let Some(text) = &out.text {
        credentials.extend(crate::redact::body_credentials(text));
    }
    for value in credentials {
        ctx.redactor.add(value);
    }
    let conn = ctx.socket(name)?;
    let frames = conn
        .proto
        .encode(out)
        .map_err(|e| StepError::new(FailureReason::Protocol, e))?;
    let started = Instant::now();
    for frame in frames {
        conn.stream
            .send(WsMessage::text(frame))
            .await
            .map_err(|e| classify(e, FailureReason::WsClosed))?;
    }
    ctx.last_send = Some((name.to_string(), started));
    Ok(())
}
