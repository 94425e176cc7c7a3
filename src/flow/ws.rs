//! The websocket steps: connect (dns, connect, tls, upgrade timed separately, then the
//! protocol's handshake), send, expect (skipping frames that do not match, failing at once on
//! the server's own error), close. A run may hold several named connections.

use std::collections::VecDeque;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::protocol::{self, Incoming, Message, Outgoing, Protocol, Setup};
use super::{RunContext, StepError, matcher, snippet};
use crate::config::{ExpectSpec, ExtractSource, FailSpec, ProtocolKind, SendSpec, WsConnectSpec};
use crate::report::{FailureReason, Phase};
use crate::template::{Context, render_json};

/// Read buffer of a probe's websocket (see where it is set).
const WS_READ_BUFFER: usize = 8 * 1024;

/// Frames read while waiting for the peer's close reply before giving up on a clean close.
const CLOSE_FRAME_BUDGET: usize = 64;
/// How long a protocol goodbye (`<close/>`) waits for the server's before the websocket is
/// closed anyway (a server that never answers it still gets the websocket closing handshake).
const GOODBYE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);
/// Control frames (pings, other namespaces' traffic) one read may skip: they never count
/// against `max_frames`, but a flood of them must not loop unbounded either.
const CONTROL_FRAME_BUDGET: usize = 100_000;
/// Longest quote of a server's error frame in a step error (and so in the page).
const SERVER_ERROR_CHARS: usize = 300;
/// Longest quote of the cause named in a server's error frame.
const CAUSE_CHARS: usize = 160;

/// An open websocket of one run, with its protocol's state.
pub(crate) struct Connection {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    proto: Box<dyn Protocol>,
    /// Messages that arrived during the handshake, before any step asked for them.
    backlog: VecDeque<Message>,
}

impl Connection {
    /// Says goodbye at the protocol level and waits for the server's (RFC 7395 §3.6: XMPP's
    /// `<close/>` is answered with `<close/>`), then the websocket closing handshake. Callers
    /// bound it with a timeout.
    ///
    /// The goodbye comes first because tungstenite drops data frames once our close frame is
    /// sent, so the server's `<close/>` would be lost. Once the server has said it, the session
    /// is over: a server that then drops the TCP connection without a close frame has closed
    /// cleanly, not failed.
    pub(crate) async fn close(mut self) -> Result<(), tungstenite::Error> {
        let mut said_bye = false;
        let mut closed_by_server = false;
        if let Some(bye) = self.proto.closing() {
            self.stream.send(WsMessage::text(bye)).await?;
            let until = Instant::now() + GOODBYE_WAIT;
            for _ in 0..CLOSE_FRAME_BUDGET {
                let Ok(got) = tokio::time::timeout_at(until, self.stream.next()).await else {
                    break; // no goodbye: close the websocket anyway
                };
                match got {
                    None | Some(Err(tungstenite::Error::ConnectionClosed)) => return Ok(()),
                    Some(Err(e)) if said_bye && peer_gone(&e) => return Ok(()),
                    Some(Err(e)) => return Err(e),
                    // The server closes the websocket itself (tungstenite answers the frame).
                    Some(Ok(WsMessage::Close(_))) => {
                        closed_by_server = true;
                        break;
                    }
                    Some(Ok(WsMessage::Text(t))) => {
                        if matches!(self.proto.decode(&t), Incoming::Closed(_)) {
                            said_bye = true;
                        }
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
        if !closed_by_server {
            match self.stream.close(None).await {
                Ok(()) => {}
                Err(e) if said_bye && peer_gone(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        for _ in 0..CLOSE_FRAME_BUDGET {
            match self.stream.next().await {
                None | Some(Err(tungstenite::Error::ConnectionClosed)) => return Ok(()),
                Some(Err(e)) if said_bye && peer_gone(&e) => return Ok(()),
                Some(Err(e)) => return Err(e),
                // The server's close frame ends the handshake; its TCP close (RFC 6455
                // §7.1.1: the server closes first, so TIME_WAIT stays on its side) is
                // waited for only if it has not come in with that frame already.
                Some(Ok(WsMessage::Close(_))) if self.peer_finished() => return Ok(()),
                Some(Ok(_)) => {}
            }
        }
        Ok(())
    }

    /// The server's FIN has arrived: the event loop's readiness says so, without the read
    /// that would return the end of stream (one system call per run saved). TLS: unknown.
    fn peer_finished(&self) -> bool {
        use futures_util::FutureExt as _;
        match self.stream.get_ref() {
            MaybeTlsStream::Plain(tcp) => tcp
                .ready(tokio::io::Interest::READABLE)
                .now_or_never()
                .is_some_and(|ready| ready.is_ok_and(|r| r.is_read_closed())),
            _ => false,
        }
    }

    /// The next message a step may match: control frames are answered and skipped; the
    /// server's protocol-level error or goodbye is an error. During the handshake
    /// (`handshake`), `None` says the protocol has just become ready.
    async fn next_message(&mut self, handshake: bool) -> Result<Option<Message>, Read> {
        if !handshake && let Some(m) = self.backlog.pop_front() {
            return Ok(Some(m));
        }
        for _ in 0..CONTROL_FRAME_BUDGET {
            let Some(text) = self.read_text().await? else {
                continue;
            };
            match self.proto.decode(&text) {
                Incoming::Control(replies) => {
                    self.answer(replies).await.map_err(Read::Closed)?;
                    if handshake && self.proto.ready() {
                        return Ok(None);
                    }
                }
                Incoming::Message(m) => return Ok(Some(m)),
                Incoming::ServerError(what) => {
                    return Err(Read::Failed(server_error(what, &text)));
                }
                Incoming::Closed(why) => {
                    return Err(Read::Closed(StepError::new(
                        FailureReason::WsClosed,
                        format!("{why}: {}", snippet(text.as_bytes())),
                    )));
                }
            }
        }
        Err(Read::Failed(StepError::new(
            FailureReason::Protocol,
            format!("{CONTROL_FRAME_BUDGET} control frames in a row and no message"),
        )))
    }

    /// Sends the protocol's answers to a control frame (Engine.IO's pong).
    async fn answer(&mut self, replies: Vec<String>) -> Result<(), StepError> {
        for r in replies {
            self.stream
                .send(WsMessage::text(r))
                .await
                .map_err(|e| classify(e, FailureReason::WsClosed))?;
        }
        Ok(())
    }

    /// The next data frame as text; `None` for a control frame (the transport's business,
    /// not traffic to match; tungstenite answers pings itself).
    async fn read_text(&mut self) -> Result<Option<String>, Read> {
        match self.stream.next().await {
            None => Err(Read::Closed(StepError::new(
                FailureReason::WsClosed,
                "the server closed the websocket while a frame was awaited",
            ))),
            Some(Err(e)) => Err(Read::Closed(classify(e, FailureReason::WsClosed))),
            Some(Ok(WsMessage::Close(frame))) => {
                let why = frame
                    .map(|f| format!(" (code {}: {})", u16::from(f.code), f.reason))
                    .unwrap_or_default();
                Err(Read::Closed(StepError::new(
                    FailureReason::WsClosed,
                    format!("the server closed the websocket{why}"),
                )))
            }
            Some(Ok(WsMessage::Text(t))) => Ok(Some(t.to_string())),
            Some(Ok(WsMessage::Binary(b))) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => Ok(None),
        }
    }

    /// Reads one frame of an idle resident session: the protocol's pings are answered, messages
    /// are dropped (no step waits for them), the server's error or goodbye is an error
    /// (`Err(true, _)`: the connection is gone). Cancel-safe while it waits for a frame.
    pub(crate) async fn pump(&mut self) -> Result<(), (bool, StepError)> {
        let text = match self.read_text().await {
            Ok(Some(text)) => text,
            Ok(None) => return Ok(()),
            Err(Read::Closed(e)) => return Err((true, e)),
            Err(Read::Failed(e)) => return Err((false, e)),
        };
        match self.proto.decode(&text) {
            Incoming::Control(replies) => self.answer(replies).await.map_err(|e| (true, e)),
            Incoming::Message(_) => Ok(()),
            Incoming::ServerError(what) => Err((false, server_error(what, &text))),
            Incoming::Closed(why) => Err((
                true,
                StepError::new(
                    FailureReason::WsClosed,
                    format!("{why}: {}", snippet(text.as_bytes())),
                ),
            )),
        }
    }

    /// A websocket ping (the keepalive of an idle session; any frame back counts as its answer).
    pub(crate) async fn ping(&mut self) -> Result<(), StepError> {
        self.stream
            .send(WsMessage::Ping(Default::default()))
            .await
            .map_err(|e| classify(e, FailureReason::WsClosed))
    }
}

/// The peer has closed the connection under us (a reset, a write to a closed socket, an end
/// without the websocket closing handshake).
fn peer_gone(e: &tungstenite::Error) -> bool {
    use tungstenite::Error as E;
    use tungstenite::error::ProtocolError as P;
    matches!(
        e,
        E::ConnectionClosed
            | E::AlreadyClosed
            | E::Io(_)
            | E::Protocol(P::ResetWithoutClosingHandshake)
    )
}

/// Why a read gave no message; `Closed` means the connection is gone.
enum Read {
    Closed(StepError),
    Failed(StepError),
}

/// `server_error` quoting what the server sent, the part that names the cause first (an XMPP
/// error's condition and text, a JSON error's `error` / `message`): the JIDs and ids around it
/// would otherwise fill the quote, and the page's first line takes the error up to ` — `
/// (see `alert::render::cause_fragment`).
fn server_error(what: &str, frame: &str) -> StepError {
    let quoted = crate::redact::quote(frame, SERVER_ERROR_CHARS);
    let message = match protocol::cause(frame) {
        Some(cause) => format!(
            "{}{}{what}: {quoted}",
            crate::redact::quote(&cause, CAUSE_CHARS),
            crate::report::CAUSE_END
        ),
        None => format!("{what}: {quoted}"),
    };
    StepError::new(FailureReason::ServerError, message)
}

/// The socket.io endpoint unless the probe names another path, with the Engine.IO query.
fn socketio_url(url: &mut url::Url) {
    if url.path().is_empty() || url.path() == "/" {
        url.set_path("/socket.io/");
    }
    let has = |k: &str| url.query_pairs().any(|(name, _)| name == k);
    let (eio, transport) = (has("EIO"), has("transport"));
    let mut pairs = url.query_pairs_mut();
    if !eio {
        pairs.append_pair("EIO", "4");
    }
    if !transport {
        pairs.append_pair("transport", "websocket");
    }
}

pub(super) async fn connect(
    ctx: &mut RunContext<'_>,
    name: &str,
    spec: &WsConnectSpec,
) -> Result<(), StepError> {
    // A send before this connect is no longer timed by a later expect: on this connection it
    // could not have been a fan-out (it did not exist yet), and on any other the time would
    // include this connect.
    ctx.last_send = None;
    if let Some(old) = ctx.ws.remove(name) {
        let _ = tokio::time::timeout(super::CLOSE_GRACE, old.close()).await;
    }
    let url_text = ctx.render(&spec.url)?;
    let shown = crate::redact::redact_url_text(&url_text);
    let mut url = url::Url::parse(&url_text).map_err(|e| {
        StepError::new(
            FailureReason::Protocol,
            format!("`{shown}` is not a valid URL: {e}"),
        )
    })?;
    // An http(s) base URL is accepted and upgraded, so one `${SIM_URL}` serves both kinds of step.
    let ws_scheme = match url.scheme() {
        "http" => Some("ws"),
        "https" => Some("wss"),
        _ => None,
    };
    if let Some(scheme) = ws_scheme {
        let _ = url.set_scheme(scheme);
    }
    if spec.protocol == ProtocolKind::SocketIo {
        socketio_url(&mut url);
    }
    let setup = Setup {
        auth: match &spec.auth {
            Some(a) => Some(
                render_json(a, &ctx.vars)
                    .map_err(|e| StepError::new(FailureReason::Protocol, e.to_string()))?,
            ),
            None => None,
        },
        domain: match &spec.domain {
            Some(d) => Some(ctx.render(d)?),
            None => None,
        },
    };
    let mut proto = protocol::new(spec, setup);
    let url_text = url.to_string();
    let stream = super::net::open(ctx, &url).await?;

    let mut request = url_text.as_str().into_client_request().map_err(|e| {
        StepError::new(
            FailureReason::Protocol,
            format!("cannot build the upgrade request: {e}"),
        )
    })?;
    request
        .headers_mut()
        .extend(ctx.render_headers(&spec.headers)?);
    let offered = if spec.subprotocols.is_empty() {
        proto
            .subprotocol()
            .map(str::to_string)
            .into_iter()
            .collect()
    } else {
        spec.subprotocols.clone()
    };
    if !offered.is_empty()
        && let Ok(v) = HeaderValue::from_str(&offered.join(", "))
    {
        request.headers_mut().insert("sec-websocket-protocol", v);
    }
    // The session cookies from earlier http steps travel with the upgrade, as in a browser.
    let mut cookie_url = url.clone();
    let _ = cookie_url.set_scheme(if url.scheme() == "wss" {
        "https"
    } else {
        "http"
    });
    if let Some(cookies) = reqwest::cookie::CookieStore::cookies(ctx.jar.as_ref(), &cookie_url)
        && let Ok(v) = HeaderValue::from_bytes(cookies.as_bytes())
    {
        request.headers_mut().insert("cookie", v);
    }

    let cap = ctx.plan.max_body_bytes;
    let config = WebSocketConfig::default()
        // tungstenite's default 128 KiB read buffer is zero-filled on every read: 4 % of a
        // run's CPU at 500 flows/s, and 128 KiB per open socket. Signalling frames are small.
        .read_buffer_size(WS_READ_BUFFER)
        .max_message_size(Some(cap))
        .max_frame_size(Some(cap));
    let t = Instant::now();
    let result = tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await;
    ctx.phases.insert(Phase::Upgrade, t.elapsed());
    let stream = match result {
        Ok((stream, response)) => {
            if let Some(want) = spec.subprotocols.first() {
                let got = response
                    .headers()
                    .get("sec-websocket-protocol")
                    .and_then(|v| v.to_str().ok());
                if !spec.subprotocols.iter().any(|p| Some(p.as_str()) == got) {
                    return Err(StepError::new(
                        FailureReason::WsHandshake,
                        format!(
                            "the server accepted none of the subprotocols (wanted `{want}`, got {got:?})"
                        ),
                    ));
                }
            }
            stream
        }
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().map(snippet).unwrap_or_default();
            return Err(StepError::new(
                FailureReason::WsHandshake,
                format!(
                    "the upgrade was refused with status {} (expected 101): {body}",
                    response.status().as_u16()
                ),
            ));
        }
        Err(e) => return Err(classify(e, FailureReason::WsHandshake)),
    };
    let opening = proto.opening();
    let mut conn = Connection {
        stream,
        proto,
        backlog: VecDeque::new(),
    };
    for frame in opening {
        conn.stream
            .send(WsMessage::text(frame))
            .await
            .map_err(|e| classify(e, FailureReason::WsClosed))?;
    }
    // The protocol's own handshake (Engine.IO open + namespace connect, ActionCable welcome,
    // XMPP stream open) is part of connecting: a refusal here is this step's failure.
    while !conn.proto.ready() {
        if conn.backlog.len() >= spec.max_frames {
            return Err(StepError::new(
                FailureReason::Protocol,
                format!(
                    "the {} handshake did not complete within {} frames",
                    spec.protocol.as_str(),
                    spec.max_frames
                ),
            ));
        }
        match conn.next_message(true).await {
            Ok(Some(m)) => conn.backlog.push_back(m),
            Ok(None) => {}
            Err(Read::Closed(e) | Read::Failed(e)) => return Err(e),
        }
    }
    ctx.ws.insert(name.to_string(), conn);
    Ok(())
}

fn connection<'c>(
    ctx: &'c mut RunContext<'_>,
    name: &str,
) -> Result<&'c mut Connection, StepError> {
    ctx.ws.get_mut(name).ok_or_else(|| {
        StepError::new(
            FailureReason::WsClosed,
            "no websocket is open (did ws_connect fail or ws_close run?)",
        )
    })
}

pub(super) async fn send(
    ctx: &mut RunContext<'_>,
    name: &str,
    spec: &SendSpec,
) -> Result<(), StepError> {
    let json = |v: &Option<serde_json::Value>| -> Result<_, StepError> {
        v.as_ref()
            .map(|v| render_json(v, &ctx.vars))
            .transpose()
            .map_err(|e| StepError::new(FailureReason::Protocol, e.to_string()))
    };
    let out = Outgoing {
        text: spec.text.as_ref().map(|t| ctx.render(t)).transpose()?,
        json: json(&spec.json)?,
        event: spec.event.as_ref().map(|t| ctx.render(t)).transpose()?,
        args: json(&spec.args)?,
        ack: spec.ack,
        subscribe: json(&spec.subscribe)?,
    };
    let conn = connection(ctx, name)?;
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

/// A step's patterns, rendered for this run.
struct Rendered {
    json: Option<serde_json::Value>,
    regex: Vec<regex::Regex>,
    xml: Option<protocol::xmpp::Element>,
    event: Option<String>,
    ack: Option<Option<u64>>,
    fail_json: Option<serde_json::Value>,
    fail_regex: Vec<regex::Regex>,
}

pub(super) fn render_fail(
    ctx: &RunContext<'_>,
    fail: &FailSpec,
) -> Result<(Option<serde_json::Value>, Vec<regex::Regex>), StepError> {
    let protocol_error = |e: String| StepError::new(FailureReason::Protocol, e);
    let json = fail
        .json
        .as_ref()
        .map(|v| render_json(v, &ctx.vars))
        .transpose()
        .map_err(|e| protocol_error(e.to_string()))?;
    let regex = fail
        .regex
        .iter()
        .map(|p| p.regex(&ctx.vars).map(std::borrow::Cow::into_owned))
        .collect::<Result<_, _>>()
        .map_err(protocol_error)?;
    Ok((json, regex))
}

/// `server_error` when a reply matches the step's fail patterns (checked before `expect_*`).
pub(super) fn check_fail(
    json: Option<&serde_json::Value>,
    text: &str,
    fail_json: Option<&serde_json::Value>,
    fail_regex: &[regex::Regex],
) -> Result<(), StepError> {
    let json_hit = fail_json
        .zip(json)
        .is_some_and(|(p, a)| matcher::json_subset(p, a).is_ok());
    if json_hit || fail_regex.iter().any(|re| re.is_match(text)) {
        return Err(server_error("the server reported an error", text));
    }
    Ok(())
}

pub(super) async fn expect(
    ctx: &mut RunContext<'_>,
    name: &str,
    spec: &ExpectSpec,
) -> Result<(), StepError> {
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
        json: spec
            .json
            .as_ref()
            .map(|v| render_json(v, &ctx.vars))
            .transpose()
            .map_err(|e| protocol_error(e.to_string()))?,
        regex: spec
            .regex
            .iter()
            .map(|p| p.regex(&ctx.vars).map(std::borrow::Cow::into_owned))
            .collect::<Result<_, _>>()
            .map_err(protocol_error)?,
        xml,
        event: spec.event.as_ref().map(|t| ctx.render(t)).transpose()?,
        ack: None,
        fail_json,
        fail_regex,
    };
    let since = ctx
        .last_send
        .as_ref()
        .map(|(conn, t)| (conn.as_str() == name, *t));
    connection(ctx, name)?;
    let Some(conn) = ctx.ws.get_mut(name) else {
        return Ok(());
    };
    if spec.ack {
        want.ack = Some(conn.proto.awaited_ack());
    }
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
        match message_matches(&want, &msg) {
            Ok(()) => break msg,
            Err(miss) => {
                ctx.last_miss = Some(miss.clone());
                last_miss = miss;
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
    extract(ctx, spec, &matched)
}

/// `Ok` if the message is the one the step waits for; `Err(why not)` otherwise.
fn message_matches(want: &Rendered, msg: &Message) -> Result<(), String> {
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

fn extract(ctx: &mut RunContext<'_>, spec: &ExpectSpec, msg: &Message) -> Result<(), StepError> {
    for e in &spec.extract {
        let value = match &e.source {
            ExtractSource::Json(pointer) => msg
                .json
                .as_ref()
                .and_then(|j| j.pointer(pointer))
                .map(matcher::value_as_var),
            ExtractSource::Regex(re) => matcher::regex_capture(re, &msg.text),
            ExtractSource::Header(_) | ExtractSource::Cookie(_) => None,
        };
        match value {
            Some(v) => ctx.set_var(&e.var, v),
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

pub(super) async fn close(ctx: &mut RunContext<'_>, name: &str) -> Result<(), StepError> {
    let conn = ctx
        .ws
        .remove(name)
        .ok_or_else(|| StepError::new(FailureReason::WsClosed, "no websocket is open to close"))?;
    conn.close()
        .await
        .map_err(|e| classify(e, FailureReason::WsClosed))
}

/// Maps a tungstenite error to a stable reason; `io_reason` is what a broken socket means at
/// this point of the flow.
fn classify(e: tungstenite::Error, io_reason: FailureReason) -> StepError {
    use tungstenite::Error as E;
    let reason = match &e {
        E::Capacity(_) => FailureReason::TooLarge,
        E::ConnectionClosed | E::AlreadyClosed => FailureReason::WsClosed,
        E::Io(_) => io_reason,
        E::Tls(_) => FailureReason::Tls,
        E::Http(_) | E::HttpFormat(_) | E::Url(_) => FailureReason::WsHandshake,
        // A protocol error during the upgrade is a failed handshake, not a broken stream.
        E::Protocol(_) if io_reason == FailureReason::WsHandshake => FailureReason::WsHandshake,
        _ => FailureReason::Protocol,
    };
    let message = match &e {
        E::Capacity(c) => format!("a frame exceeded the cap (max_body_bytes): {c}"),
        other => format!("websocket error: {}", crate::net::error_chain(other)),
    };
    StepError::caused_by(reason, message, &e)
}
