//! The `ws_connect` step: opens a websocket (dns, connect, tls and the upgrade timed each on
//! its own), then completes its protocol's handshake.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;
use crate::diag::{S, table_keys};
use crate::flow::context::RunContext;
use crate::flow::kind::{Build, Kind, Reads, Websocket};
use crate::flow::parts;
use crate::flow::protocol::ProtocolKind;
use crate::template::Template;

/// A `ws_connect` step's table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWsConnect {
    pub url: Option<S<String>>,
    pub headers: Option<S<BTreeMap<String, S<String>>>>,
    pub subprotocols: Option<S<Vec<S<String>>>>,
    /// Frames read while the protocol's handshake completes.
    pub max_frames: Option<S<i64>>,
    /// `raw` (default), `socketio`, `actioncable`, `xmpp`.
    pub protocol: Option<S<String>>,
    /// socketio: the namespace to connect (default `/`).
    pub namespace: Option<S<String>>,
    /// socketio: the `auth` payload of the namespace connect.
    pub auth: Option<S<toml::Value>>,
    /// xmpp: the domain in the stream `<open to=...>`.
    pub domain: Option<S<String>>,
    /// raw: frames matching this JSON subset are the protocol's pings: skipped and never
    /// counted against `max_frames`.
    pub ping_json: Option<S<toml::Value>>,
}

#[derive(Debug, Clone)]
pub struct WsConnectSpec {
    pub url: Template,
    pub headers: Vec<(String, Template)>,
    /// Offered in `Sec-WebSocket-Protocol`; templates (a token passed as a subprotocol).
    pub subprotocols: Vec<Template>,
    pub protocol: ProtocolKind,
    /// Socket.IO namespace (`/` by default).
    pub namespace: String,
    /// Socket.IO namespace-connect payload (templates in its strings).
    pub auth: Option<serde_json::Value>,
    /// XMPP: the domain the stream is opened to.
    pub domain: Option<Template>,
    /// Raw: frames matching this are pings (never matched, never counted).
    pub ping_json: Option<serde_json::Value>,
    /// Frames read while the protocol's handshake completes.
    pub max_frames: usize,
}

impl Kind for WsConnectSpec {
    type Raw = RawWsConnect;
    const WEBSOCKET: Websocket = Websocket::Opens;

    fn build(s: RawWsConnect, b: &mut Build<'_, '_, '_>) -> Option<WsConnectSpec> {
        let Some(url_raw) = &s.url else {
            b.ctx.error(
                Some(b.name.clone()),
                b.key("url"),
                "a ws_connect step needs `url`",
            );
            return None;
        };
        let protocol = match &s.protocol {
            Some(p) => {
                let Some(kind) = ProtocolKind::parse(p.get_ref()) else {
                    let all: Vec<_> = ProtocolKind::ALL.iter().map(|p| p.as_str()).collect();
                    b.ctx.error(
                        Some(p.span()),
                        b.key("protocol"),
                        format_args!(
                            "unknown protocol `{}`{}, expected one of {}",
                            p.get_ref(),
                            crate::diag::did_you_mean_among(p.get_ref(), all.iter().copied()),
                            all.join(", ")
                        ),
                    );
                    return None;
                };
                kind
            }
            None => ProtocolKind::Raw,
        };
        // A key another protocol claims does not apply to this one.
        let written: Vec<&str> = b.written().map(|(k, _)| k).collect();
        let wrong: Vec<(&str, ProtocolKind)> = table_keys::<RawWsConnect>()
            .iter()
            .filter(|k| written.contains(k))
            .filter_map(|k| {
                let wants = ProtocolKind::ALL
                    .into_iter()
                    .find(|p| p.keys().connect.contains(k))?;
                (!protocol.keys().connect.contains(k)).then_some((*k, wants))
            })
            .collect();
        for (name, wants) in wrong {
            let at = b
                .written()
                .find(|(k, _)| *k == name)
                .map_or_else(|| b.name.clone(), |(_, span)| span);
            b.ctx.error(
                Some(at),
                b.key(name),
                format_args!(
                    "`{name}` applies to `protocol = \"{}\"` only",
                    wants.as_str()
                ),
            );
        }
        let namespace = s
            .namespace
            .as_ref()
            .map_or_else(|| "/".to_string(), |n| n.get_ref().clone());
        if !namespace.starts_with('/') || namespace.contains(',') {
            b.ctx.error(
                s.namespace.as_ref().map(|n| n.span()),
                b.key("namespace"),
                "a Socket.IO namespace starts with `/` and has no `,`",
            );
        }
        let domain = match &s.domain {
            Some(d) => Some(b.ctx.template(d, &b.key("domain"))?),
            None => None,
        };
        if protocol == ProtocolKind::Xmpp && domain.is_none() {
            b.ctx.error(
                Some(b.name.clone()),
                b.key("domain"),
                "an xmpp connection needs `domain` (the stream's `to`)",
            );
        }
        let auth = match &s.auth {
            Some(a) => {
                let v = b.ctx.json(a, &b.key("auth"))?;
                if !v.is_object() {
                    b.ctx
                        .error(Some(a.span()), b.key("auth"), "must be a table");
                }
                let url = url::Url::parse(
                    &b.ctx
                        .template(url_raw, &b.key("url"))?
                        .render_placeholder("x"),
                );
                if namespace == "/" && url.is_ok_and(|u| engine_io_v3(&u)) {
                    b.ctx.error(
                        Some(a.span()),
                        b.key("auth"),
                        "with EIO=3 (Socket.IO 2) the server connects the main namespace itself and \
                         takes no auth payload: put it in the URL's query (`&token={{token|url}}`)",
                    );
                }
                Some(v)
            }
            None => None,
        };
        let ping_json = match &s.ping_json {
            Some(j) => Some(b.ctx.json_data(j, &b.key("ping_json"))?),
            None => None,
        };
        Some(WsConnectSpec {
            url: parts::url_template(
                b.ctx,
                url_raw,
                &b.key("url"),
                &["ws", "wss", "http", "https"],
            )?,
            headers: parts::headers(b.ctx, s.headers.as_ref(), &b.key("headers"))?,
            subprotocols: subprotocols(b, s.subprotocols.as_ref())?,
            protocol,
            namespace,
            auth,
            domain,
            ping_json,
            max_frames: s
                .max_frames
                .as_ref()
                .and_then(|m| b.ctx.positive(m, &b.key("max_frames")))
                .unwrap_or(b.max_frames),
        })
    }

    fn reads<'s>(&'s self, r: &mut Reads<'s>) {
        r.templates.push(&self.url);
        r.templates.extend(self.headers.iter().map(|(_, t)| t));
        r.templates.extend(&self.subprotocols);
        r.templates.extend(&self.domain);
        r.json.extend(&self.auth);
        r.json.extend(&self.ping_json);
    }

    fn waiting(&self, _ctx: &RunContext<'_>) -> &'static str {
        "opening the websocket"
    }

    async fn run(&self, ctx: &mut RunContext<'_>, connection: &str) -> Result<(), StepError> {
        connect(ctx, connection, self).await
    }
}

/// `subprotocols`: templates, each one token (RFC 6455: no separators or spaces) once its
/// values are in.
fn subprotocols(
    b: &mut Build<'_, '_, '_>,
    raw: Option<&S<Vec<S<String>>>>,
) -> Option<Vec<Template>> {
    let mut out = Vec::new();
    for (i, p) in raw
        .map(|r| r.get_ref().iter())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let key = b.key(&format!("subprotocols[{i}]"));
        let t = b.ctx.template(p, &key)?;
        let shown = t.render_placeholder("x");
        if shown.is_empty() || !shown.bytes().all(is_token_byte) {
            b.ctx.error(
                Some(p.span()),
                key,
                "a subprotocol is one token: no spaces, commas or other separators",
            );
            return None;
        }
        out.push(t);
    }
    Some(out)
}

/// RFC 7230's `tchar`: what a subprotocol (and a header token) is made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The URL asks for Engine.IO v3 (`EIO=3`: a Socket.IO 2 server, or a newer one with
/// `allowEIO3`).
fn engine_io_v3(url: &url::Url) -> bool {
    url.query_pairs().any(|(k, v)| k == "EIO" && v == "3")
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

async fn connect(
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
    let mut url = parts::run_url(ctx, &spec.url, &["ws", "wss", "http", "https"])?;
    let named = crate::flow::origin::named(ctx, &spec.url, url.as_str());
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
    let eio3 = engine_io_v3(&url);
    let setup = Setup {
        auth: match &spec.auth {
            Some(a) => Some(ctx.render_json(a)?),
            None => None,
        },
        domain: match &spec.domain {
            Some(d) => Some(ctx.render(d)?),
            None => None,
        },
        namespace: spec.namespace.clone(),
        ping_json: spec.ping_json.clone(),
        eio3,
    };
    let proto = protocol::new(spec.protocol, setup);
    let basic = crate::flow::net::take_basic_auth(ctx, &mut url);
    ctx.server_chosen = named.is_some();
    let stream = crate::flow::net::open(ctx, &url).await?;
    let (request, wanted) = upgrade_request(
        ctx,
        name,
        spec,
        &url,
        basic,
        proto.subprotocol(),
        named.as_ref(),
    )?;
    crate::flow::parts::note_credentials(ctx, &url, request.headers(), &[]);
    let offered_extensions = extension_names(request.headers());
    let cap = ctx.max_body_bytes;
    let config = WebSocketConfig::default()
        // tungstenite's default 128 KiB read buffer is zero-filled on every read: 4 % of a
        // run's CPU at 500 flows/s, and 128 KiB per open socket. Signalling frames are small.
        .read_buffer_size(WS_READ_BUFFER)
        .max_message_size(Some(cap))
        .max_frame_size(Some(cap));
    let t = Instant::now();
    let stream = super::meter::Metered::new(stream, super::meter::step_bytes(cap));
    let result = tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await;
    ctx.phases.insert(Phase::Upgrade, t.elapsed());
    let stream = match result {
        Ok((stream, response)) => {
            agreed(&response, &offered_extensions, &wanted)?;
            stream
        }
        Err(tungstenite::Error::Http(response)) => {
            let raw = response.body().as_deref().unwrap_or_default();
            let status = response.status().as_u16();
            return Err(crate::flow::error::refused_status(
                FailureReason::WsHandshake,
                status,
                format!(
                    "the upgrade was refused with status {status} (expected 101): {}",
                    snippet(raw)
                ),
                raw,
                response.headers(),
            ));
        }
        Err(e) => return Err(classify(e, FailureReason::WsHandshake)),
    };
    let mut conn = Connection {
        stream,
        proto,
        backlog: VecDeque::new(),
        skipped: super::Skipped::default(),
        diverts: Vec::new(),
        url,
    };
    handshake(&mut conn, spec).await?;
    ctx.ws.insert(name.to_string(), conn);
    Ok(())
}

/// The upgrade request: the step's headers, `user:password@` as `Authorization: Basic`
/// unless a header sets one, the subprotocols offered (the step's, else the protocol's own),
/// checked against an origin a server `named` (see `flow/origin.rs`), then the session cookies
/// of earlier http steps, as a browser sends them. Also the subprotocols the step wants, which
/// the reply must name.
fn upgrade_request(
    ctx: &mut RunContext<'_>,
    name: &str,
    spec: &WsConnectSpec,
    url: &url::Url,
    basic: Option<HeaderValue>,
    protocol_offers: Option<&str>,
    named: Option<&crate::flow::origin::Named>,
) -> Result<(tungstenite::handshake::client::Request, Vec<String>), StepError> {
    let mut request = url.as_str().into_client_request().map_err(|e| {
        StepError::new(
            FailureReason::Protocol,
            format!("cannot build the upgrade request: {e}"),
        )
    })?;
    request
        .headers_mut()
        .extend(ctx.render_headers(&spec.headers)?);
    if let Some(basic) = basic
        && !request.headers().contains_key("authorization")
    {
        request.headers_mut().insert("authorization", basic);
    }
    let wanted = spec
        .subprotocols
        .iter()
        .map(|t| ctx.render(t))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(bad) = wanted
        .iter()
        .find(|p| p.is_empty() || !p.bytes().all(is_token_byte))
    {
        return Err(StepError::new(
            FailureReason::Protocol,
            format!(
                "subprotocol `{}` is not one token (no spaces, commas or other separators)",
                crate::redact::quote(bad, 40)
            ),
        ));
    }
    let offered = if wanted.is_empty() {
        protocol_offers.map(str::to_string).into_iter().collect()
    } else {
        wanted.clone()
    };
    if !offered.is_empty()
        && let Ok(v) = HeaderValue::from_str(&offered.join(", "))
    {
        request.headers_mut().insert("sec-websocket-protocol", v);
    }
    if let Some(named) = named {
        named.check(
            ctx,
            url,
            &crate::flow::origin::Outgoing {
                headers: request.headers(),
                body: &[],
            },
        )?;
    }
    // The session cookies from earlier http steps travel with the upgrade, as in a browser
    // (this participant's, for a named connection).
    let mut cookie_url = url.clone();
    let _ = cookie_url.set_scheme(if url.scheme() == "wss" {
        "https"
    } else {
        "http"
    });
    if let Some(cookies) = ctx.cookies.header(name, &cookie_url) {
        request.headers_mut().insert("cookie", cookies);
    }

    Ok((request, wanted))
}

/// RFC 6455's checks of the server's `101` that tungstenite leaves to its caller.
fn agreed(
    response: &tungstenite::handshake::client::Response,
    offered_extensions: &[String],
    wanted: &[String],
) -> Result<(), StepError> {
    // RFC 6455 4.1: the client fails the connection when the server agrees to an
    // extension it did not offer. tungstenite does not check, and a server that then
    // compresses its frames (`permessage-deflate`) would fail every read later with a
    // reason that hides the cause.
    if let Some(unasked) = extension_names(response.headers())
        .into_iter()
        .find(|e| !offered_extensions.contains(e))
    {
        return Err(StepError::new(
            FailureReason::WsHandshake,
            format!("the server agreed to the extension `{unasked}`, which was not offered"),
        ));
    }
    if let Some(want) = wanted.first() {
        let got = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok());
        if !wanted.iter().any(|p| Some(p.as_str()) == got) {
            return Err(StepError::new(
                FailureReason::WsHandshake,
                format!(
                    "the server accepted none of the subprotocols (wanted `{want}`, got {got:?})"
                ),
            ));
        }
    }
    Ok(())
}

/// The protocol's own handshake after the upgrade: its opening frames sent, then frames read
/// (kept for the steps after) until it is ready, at most `max_frames`.
async fn handshake(conn: &mut Connection, spec: &WsConnectSpec) -> Result<(), StepError> {
    for frame in conn.proto.opening() {
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
    Ok(())
}

/// The extension names in every `Sec-WebSocket-Extensions` header (`permessage-deflate;
/// client_max_window_bits, x-webkit` gives both names), lower-cased; bounded by the headers.
fn extension_names(headers: &tungstenite::http::HeaderMap) -> Vec<String> {
    headers
        .get_all("sec-websocket-extensions")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|e| e.split(';').next())
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .collect()
}
