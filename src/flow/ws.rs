//! The websocket steps: connect (dns, connect, tls, upgrade timed separately), send, expect
//! (skipping frames that do not match), close.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{RunContext, StepError, matcher, snippet};
use crate::config::{ExpectSpec, ExtractSource, WsConnectSpec};
use crate::flow::template::Template;
use crate::report::{FailureReason, Phase};

/// Frames read while waiting for the peer's close reply before giving up on a clean close.
const CLOSE_FRAME_BUDGET: usize = 64;

/// An open websocket of one run.
pub(crate) struct Connection {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Connection {
    /// Sends a close frame and waits for the peer's. Callers bound it with a timeout.
    pub(crate) async fn close(mut self) -> Result<(), tungstenite::Error> {
        self.stream.close(None).await?;
        for _ in 0..CLOSE_FRAME_BUDGET {
            match self.stream.next().await {
                None | Some(Err(tungstenite::Error::ConnectionClosed)) => return Ok(()),
                Some(Err(e)) => return Err(e),
                Some(Ok(_)) => {}
            }
        }
        Ok(())
    }
}

pub(super) async fn connect(
    ctx: &mut RunContext<'_>,
    spec: &WsConnectSpec,
) -> Result<(), StepError> {
    if let Some(old) = ctx.ws.take() {
        let _ = tokio::time::timeout(super::CLOSE_GRACE, old.close()).await;
    }
    let url_text = ctx.render(&spec.url)?;
    let shown = super::redact_url_text(&url_text);
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
    if !spec.subprotocols.is_empty()
        && let Ok(v) = HeaderValue::from_str(&spec.subprotocols.join(", "))
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
        .max_message_size(Some(cap))
        .max_frame_size(Some(cap));
    let t = Instant::now();
    let result = tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await;
    ctx.phases.insert(Phase::Upgrade, t.elapsed());
    match result {
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
            ctx.ws = Some(Connection { stream });
            Ok(())
        }
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().map(snippet).unwrap_or_default();
            Err(StepError::new(
                FailureReason::WsHandshake,
                format!(
                    "the upgrade was refused with status {} (expected 101): {body}",
                    response.status().as_u16()
                ),
            ))
        }
        Err(e) => Err(classify(e, FailureReason::WsHandshake)),
    }
}

fn connection<'c>(ctx: &'c mut RunContext<'_>) -> Result<&'c mut Connection, StepError> {
    ctx.ws.as_mut().ok_or_else(|| {
        StepError::new(
            FailureReason::WsClosed,
            "no websocket is open (did ws_connect fail or ws_close run?)",
        )
    })
}

pub(super) async fn send(ctx: &mut RunContext<'_>, text: &Template) -> Result<(), StepError> {
    let rendered = ctx.render(text)?;
    ctx.last_send = Some(Instant::now());
    let conn = connection(ctx)?;
    conn.stream
        .send(Message::text(rendered))
        .await
        .map_err(|e| classify(e, FailureReason::WsClosed))
}

pub(super) async fn expect(ctx: &mut RunContext<'_>, spec: &ExpectSpec) -> Result<(), StepError> {
    let pattern = match &spec.json {
        Some(p) => Some(
            super::template::render_json(p, &ctx.vars)
                .map_err(|e| StepError::new(FailureReason::Protocol, e.to_string()))?,
        ),
        None => None,
    };
    let since = ctx.last_send.take();
    let mut last_miss = String::new();
    for _ in 0..spec.max_frames {
        let frame = connection(ctx)?.stream.next().await;
        let text = match frame {
            None => {
                return Err(StepError::new(
                    FailureReason::WsClosed,
                    "the server closed the websocket while a frame was awaited",
                ));
            }
            Some(Err(e)) => return Err(classify(e, FailureReason::WsClosed)),
            Some(Ok(Message::Close(frame))) => {
                let why = frame
                    .map(|f| format!(" (code {}: {})", u16::from(f.code), f.reason))
                    .unwrap_or_default();
                ctx.ws = None;
                return Err(StepError::new(
                    FailureReason::WsClosed,
                    format!("the server closed the websocket{why}"),
                ));
            }
            Some(Ok(Message::Text(t))) => t.to_string(),
            Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
            // Control frames are the transport's business, not traffic to match.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
        };
        ctx.frames_seen += 1;
        match frame_matches(pattern.as_ref(), spec.regex.as_ref(), &text) {
            Ok(json) => {
                if let Some(t) = since {
                    ctx.phases.insert(Phase::RoundTrip, t.elapsed());
                }
                return extract(ctx, spec, json.as_ref(), &text);
            }
            Err(miss) => last_miss = miss,
        }
    }
    Err(StepError::new(
        FailureReason::NoMatch,
        format!(
            "no frame matched in {} frames (frame budget); last: {last_miss}",
            spec.max_frames
        ),
    ))
}

/// `Ok(parsed JSON)` if the frame matches; `Err(why not)` otherwise.
fn frame_matches(
    pattern: Option<&serde_json::Value>,
    regex: Option<&regex::Regex>,
    text: &str,
) -> Result<Option<serde_json::Value>, String> {
    let json = serde_json::from_str::<serde_json::Value>(text).ok();
    if let Some(p) = pattern {
        let Some(actual) = &json else {
            return Err(format!("not JSON: {}", snippet(text.as_bytes())));
        };
        matcher::json_subset(p, actual)?;
    }
    if let Some(re) = regex
        && !re.is_match(text)
    {
        return Err(format!(
            "does not match `{re}`: {}",
            snippet(text.as_bytes())
        ));
    }
    Ok(json)
}

fn extract(
    ctx: &mut RunContext<'_>,
    spec: &ExpectSpec,
    json: Option<&serde_json::Value>,
    text: &str,
) -> Result<(), StepError> {
    for e in &spec.extract {
        let value = match &e.source {
            ExtractSource::Json(pointer) => json
                .and_then(|j| j.pointer(pointer))
                .map(matcher::value_as_var),
            ExtractSource::Regex(re) => matcher::regex_capture(re, text),
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

pub(super) async fn close(ctx: &mut RunContext<'_>) -> Result<(), StepError> {
    let conn = ctx
        .ws
        .take()
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
        other => format!("websocket error: {}", super::error_chain(other)),
    };
    StepError::new(reason, message)
}
