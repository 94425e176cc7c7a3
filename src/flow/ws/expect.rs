//! The `ws_expect` step: reads frames until one matches (skipping the others, within
//! `max_frames`), failing at once on the server's own error; values are extracted from it.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;
use crate::diag::S;
use crate::flow::context::RunContext;
use crate::flow::kind::{Build, Kind, Reads, Websocket};
use crate::flow::matcher;
use crate::flow::matcher::Pattern;
use crate::flow::parts::{self, Extraction, FailSpec, RawExtract};
use crate::flow::parts::{check_fail, render_fail};
use crate::flow::protocol::ProtocolKind;
use crate::template::Template;

/// A `ws_expect` step's table; which match keys apply depends on the connection's protocol.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWsExpect {
    pub expect_json: Option<S<toml::Value>>,
    /// One regex or a list; all must match the same frame. Templates, values regex-escaped.
    pub expect_regex: Option<S<toml::Value>>,
    /// xmpp: an element that must match (name, attributes in any order, children).
    pub expect_xml: Option<S<String>>,
    /// The Socket.IO event or ActionCable message type.
    pub event: Option<S<String>>,
    /// socketio: wait for the acknowledgement of the last `ack = true` send.
    pub ack: Option<S<bool>>,
    /// A frame matching this JSON subset fails the step at once with `server_error`.
    pub fail_json: Option<S<toml::Value>>,
    /// A frame matching any of these regexes fails the step at once with `server_error`.
    pub fail_regex: Option<S<toml::Value>>,
    pub max_frames: Option<S<i64>>,
    pub extract: Option<S<BTreeMap<String, S<RawExtract>>>>,
    /// raw: a binary frame's leading bytes, contents and length.
    pub expect_binary: Option<S<RawBinary>>,
}

/// `expect_binary = { prefix = "0a", contains = "…", min_bytes = 2, max_bytes = 4096 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBinary {
    /// Hex: the bytes the frame starts with.
    pub prefix: Option<String>,
    /// Hex: bytes the frame contains somewhere.
    pub contains: Option<String>,
    pub min_bytes: Option<i64>,
    pub max_bytes: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ExpectSpec {
    pub json: Option<serde_json::Value>,
    /// All must match the same frame.
    pub regex: Vec<Pattern>,
    /// XMPP: an element pattern (rendered, then parsed, per run).
    pub xml: Option<Template>,
    /// Socket.IO event name, ActionCable message type.
    pub event: Option<Template>,
    /// Socket.IO: the acknowledgement of the last `ack = true` send.
    pub ack: bool,
    pub fail: FailSpec,
    pub max_frames: usize,
    pub extract: Vec<Extraction>,
    /// Raw: what a binary frame must be.
    pub binary: Option<matcher::BinaryPattern>,
}

impl Kind for ExpectSpec {
    type Raw = RawWsExpect;
    const WEBSOCKET: Websocket = Websocket::Uses;

    fn build(s: RawWsExpect, b: &mut Build<'_, '_, '_>) -> Option<ExpectSpec> {
        let allowed = b.protocol.map_or(&[][..], |p| p.keys().expect);
        b.protocol_keys(&ProtocolKind::claimed(|k| k.expect), allowed);
        if s.expect_json.is_none()
            && s.expect_regex.is_none()
            && s.expect_xml.is_none()
            && s.event.is_none()
            && s.expect_binary.is_none()
            && !s.ack.as_ref().is_some_and(|a| *a.get_ref())
        {
            b.ctx.error(
                Some(b.name.clone()),
                b.prefix.clone(),
                "a ws_expect step needs `expect_json`, `expect_regex`, `expect_xml`, \
                 `expect_binary`, `event` or `ack`",
            );
            return None;
        }
        let binary = match &s.expect_binary {
            Some(raw) => Some(binary_pattern(b, raw)?),
            None => None,
        };
        let xml = match &s.expect_xml {
            Some(x) => {
                let t = b.ctx.template(x, &b.key("expect_xml"))?;
                if let Err(e) =
                    crate::flow::protocol::xmpp::Element::parse(&t.render_placeholder("x"))
                {
                    b.ctx.error(
                        Some(x.span()),
                        b.key("expect_xml"),
                        format_args!("not one XML element: {e}"),
                    );
                    return None;
                }
                Some(t)
            }
            None => None,
        };
        Some(ExpectSpec {
            json: match &s.expect_json {
                Some(j) => Some(b.ctx.json(j, &b.key("expect_json"))?),
                None => None,
            },
            regex: parts::patterns(b.ctx, s.expect_regex.as_ref(), &b.key("expect_regex"))?,
            xml,
            event: match &s.event {
                Some(e) => Some(b.ctx.template(e, &b.key("event"))?),
                None => None,
            },
            ack: s.ack.as_ref().is_some_and(|a| *a.get_ref()),
            fail: parts::fail_spec(
                b.ctx,
                s.fail_json.as_ref(),
                s.fail_regex.as_ref(),
                &b.prefix,
            )?,
            max_frames: s
                .max_frames
                .as_ref()
                .and_then(|m| b.ctx.positive(m, &b.key("max_frames")))
                .unwrap_or(b.max_frames),
            extract: parts::extracts(b.ctx, s.extract.as_ref(), &b.key("extract"), false)?,
            binary,
        })
    }

    fn reads<'s>(&'s self, r: &mut Reads<'s>) {
        r.json.extend(&self.json);
        r.templates.extend(self.regex.iter().map(Pattern::template));
        r.templates.extend(&self.xml);
        r.templates.extend(&self.event);
        r.json.extend(&self.fail.json);
        r.templates
            .extend(self.fail.regex.iter().map(Pattern::template));
    }

    fn extracts(&self) -> &[Extraction] {
        &self.extract
    }

    /// Running out of time is `no_match` whichever clock ran out, the step's timeout or the
    /// probe's deadline. The websocket was up and the frame the flow needed never came (the
    /// signalling path failing, with or without other traffic); the message says which clock
    /// and how many frames were skipped. A step's own `timeout` is an optional refinement and
    /// must not change what the failure is called.
    fn timed_out(&self, ctx: &RunContext<'_>, waited: &str, which: &str) -> Option<StepError> {
        let seen = ctx.frames_seen;
        Some(StepError::new(
            FailureReason::NoMatch,
            match &ctx.last_miss {
                Some(miss) => format!(
                    "no frame matched within {waited} ({which}; {seen} frames skipped; last: {miss})"
                ),
                None => {
                    format!("no frame matched within {waited} ({which}; {seen} frames skipped)")
                }
            },
        ))
    }

    async fn run(&self, ctx: &mut RunContext<'_>, connection: &str) -> Result<(), StepError> {
        expect(ctx, connection, self).await
    }
}

/// `expect_binary`: hex that decodes, lengths that are sizes and in order, something to check.
fn binary_pattern(b: &mut Build<'_, '_, '_>, raw: &S<RawBinary>) -> Option<matcher::BinaryPattern> {
    let key = b.key("expect_binary");
    let span = raw.span();
    let r = raw.get_ref();
    let hex = |b: &mut Build<'_, '_, '_>, field: &str, text: &Option<String>| {
        let Some(t) = text else {
            return Some(Vec::new());
        };
        matcher::hex_bytes(t)
            .map_err(|e| {
                let key = format!("{key}.{field}");
                let at = b.ctx.written(&key, span.clone());
                b.ctx.error(Some(at), key, e);
            })
            .ok()
    };
    let prefix = hex(b, "prefix", &r.prefix)?;
    let contains = hex(b, "contains", &r.contains)?;
    let size = |n: Option<i64>| n.map(|n| usize::try_from(n).map_err(|_| n)).transpose();
    let (min_bytes, max_bytes) = (size(r.min_bytes), size(r.max_bytes));
    let (Ok(min_bytes), Ok(max_bytes)) = (min_bytes, max_bytes) else {
        let field = if min_bytes.is_err() {
            "min_bytes"
        } else {
            "max_bytes"
        };
        let key = format!("{key}.{field}");
        let at = b.ctx.written(&key, span);
        b.ctx.error(
            Some(at),
            key,
            "min_bytes and max_bytes are byte counts (0 or more)",
        );
        return None;
    };
    if min_bytes.zip(max_bytes).is_some_and(|(lo, hi)| lo > hi) {
        let key = format!("{key}.min_bytes");
        let at = b.ctx.written(&key, span);
        b.ctx
            .error(Some(at), key, "min_bytes is larger than max_bytes");
        return None;
    }
    Some(matcher::BinaryPattern {
        prefix,
        contains,
        min_bytes,
        max_bytes,
    })
}

/// A step's patterns, rendered for this run.
struct Rendered {
    json: Option<serde_json::Value>,
    regex: Vec<regex::Regex>,
    xml: Option<protocol::xmpp::Element>,
    event: Option<String>,
    ack: Option<Option<u64>>,
    binary: Option<matcher::BinaryPattern>,
    fail_json: Option<serde_json::Value>,
    fail_regex: Vec<regex::Regex>,
}

async fn expect(ctx: &mut RunContext<'_>, name: &str, spec: &ExpectSpec) -> Result<(), StepError> {
    let protocol_error = |e: String| StepError::new(FailureReason::Protocol, e);
    let (fail_json, fail_regex) = render_fail(ctx, &spec.fail)?;
    let xml = match &spec.xml {
        Some(t) => {
            let text = t
                .render_in(&ctx.vars, Context::Xml)
                .map_err(|e| protocol_error(e.to_string()))?;
            Some(
                protocol::xmpp::Element::parse(&text)
                    .map_err(|e| protocol_error(format!("expect_xml is not one element: {e}")))?,
            )
        }
        None => None,
    };
    let mut want = Rendered {
        json: spec.json.as_ref().map(|v| ctx.render_json(v)).transpose()?,
        regex: spec
            .regex
            .iter()
            .map(|p| p.regex(&ctx.vars).map(std::borrow::Cow::into_owned))
            .collect::<Result<_, _>>()
            .map_err(protocol_error)?,
        xml,
        event: spec.event.as_ref().map(|t| ctx.render(t)).transpose()?,
        ack: None,
        binary: spec.binary.clone(),
        fail_json,
        fail_regex,
    };
    let since = ctx
        .last_send
        .as_ref()
        .map(|(conn, t)| (conn.as_str() == name, *t));
    ctx.socket(name)?;
    let Some(conn) = ctx.ws.get_mut(name) else {
        return Ok(());
    };
    if spec.ack {
        want.ack = Some(conn.proto.awaited_ack());
    }
    conn.forget_skipped();
    let mut counted = 0;
    let mut last_miss = String::from("none");
    let matched = loop {
        if counted >= spec.max_frames {
            return Err(StepError::new(
                FailureReason::NoMatch,
                format!(
                    "no frame matched in {} frames (frame budget); last: {last_miss}",
                    spec.max_frames
                ),
            ));
        }
        let msg = match conn.next_message(false).await {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(Read::Failed(e)) => return Err(e),
            Err(Read::Closed(e)) => {
                ctx.ws.remove(name);
                return Err(e);
            }
        };
        counted += 1;
        ctx.frames_seen = counted;
        let fail_view = want.fail_json.as_ref().and_then(|p| msg.json_for(p));
        check_fail(
            fail_view,
            &msg.text,
            want.fail_json.as_ref(),
            &want.fail_regex,
        )?;
        match message_matches(&want, &msg, &ctx.redactor) {
            Ok(()) => break msg,
            Err(miss) => {
                ctx.last_miss = Some(miss.clone());
                last_miss = miss;
                conn.keep_skipped(msg);
            }
        }
    };
    if let Some((same, t)) = since {
        let phase = if same {
            Phase::RoundTrip
        } else {
            Phase::FanOut
        };
        ctx.phases.insert(phase, t.elapsed());
    }
    let from = ctx.ws.get(name).map(|c| c.url.clone());
    extract(ctx, spec, &matched, from.as_ref())
}

/// `Ok` if the message is the one the step waits for; `Err(why not)` otherwise.
fn message_matches(
    want: &Rendered,
    msg: &Message,
    redactor: &crate::redact::Redactor,
) -> Result<(), String> {
    if let Some(pattern) = &want.binary {
        pattern.matches(msg.bytes.as_deref()).map_err(|why| {
            // Hex escapes the redactor: a frame holding a secret shows its length only.
            let shown = match &msg.bytes {
                Some(_) if redactor.holds_secret(&msg.text) => "(holds a secret: not shown)".into(),
                Some(b) => matcher::hex_view(b),
                None => snippet(msg.text.as_bytes()),
            };
            format!("{why}: {shown}")
        })?;
    }
    if let Some(event) = &want.event
        && msg.name.as_deref() != Some(event.as_str())
    {
        return Err(format!(
            "{} instead of `{event}`: {}",
            msg.name
                .as_deref()
                .map_or_else(|| "no event name".to_string(), |n| format!("`{n}`")),
            snippet(msg.text.as_bytes())
        ));
    }
    if let Some(awaited) = want.ack
        && (msg.ack.is_none() || msg.ack != awaited)
    {
        return Err(format!(
            "not the acknowledgement: {}",
            snippet(msg.text.as_bytes())
        ));
    }
    if let Some(p) = &want.json {
        let Some(actual) = msg.json_for(p) else {
            return Err(format!("not JSON: {}", snippet(msg.text.as_bytes())));
        };
        matcher::json_subset(p, actual)
            .map_err(|e| format!("{e}: {}", snippet(msg.text.as_bytes())))?;
    }
    for re in &want.regex {
        if !re.is_match(&msg.text) {
            return Err(format!(
                "does not match `{re}`: {}",
                snippet(msg.text.as_bytes())
            ));
        }
    }
    if let Some(pattern) = &want.xml {
        let Some(actual) = &msg.xml else {
            return Err(format!("not XML: {}", snippet(msg.text.as_bytes())));
        };
        pattern.matches(actual)?;
    }
    Ok(())
}

fn extract(
    ctx: &mut RunContext<'_>,
    spec: &ExpectSpec,
    msg: &Message,
    from: Option<&url::Url>,
) -> Result<(), StepError> {
    for e in &spec.extract {
        match e.value_in(msg.json.as_ref(), &msg.text) {
            Some(v) => ctx.set_var(&e.var, v, e.typed_in(msg.json.as_ref()), from),
            None => {
                return Err(StepError::new(
                    FailureReason::BodyMismatch,
                    format!("the matching frame has no value for `{}`", e.var),
                ));
            }
        }
    }
    Ok(())
}
