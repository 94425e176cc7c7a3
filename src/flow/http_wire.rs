//! The wire under the `http` step: one request and reply on a fresh connection (timed, as
//! the step reports it, or untimed for a `webrtc` step's long poll aside), the reply's body
//! read under its cap, and what a hyper error says about the layer that failed.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap, HeaderValue};
use tokio::time::Instant;

use super::context::RunContext;
use super::error::{StepError, snippet};
use super::net;
use crate::net::AbortOnDrop;
use crate::net::error_chain;
use crate::report::{FailureReason, Phase};

/// The reply's body, `too_large` past `cap` (by its `Content-Length` before a byte is read,
/// or as it arrives).
pub(super) async fn read_body(
    incoming: &mut hyper::body::Incoming,
    response_headers: &HeaderMap,
    cap: usize,
) -> Result<Vec<u8>, StepError> {
    let declared = response_headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > cap as u64) {
        return Err(too_large(cap));
    }
    let mut body = Vec::new();
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| {
            hyper_error(&e, format!("reading the reply failed: {}", error_chain(&e)))
        })?;
        if let Ok(chunk) = frame.into_data() {
            if body.len() + chunk.len() > cap {
                return Err(too_large(cap));
            }
            body.extend_from_slice(&chunk);
        }
    }
    Ok(body)
}

/// One request/response on a fresh connection: the response head, its body stream, and the
/// guard of the task driving the connection (keep it until the body is read).
pub(super) async fn exchange(
    ctx: &mut RunContext<'_>,
    url: &url::Url,
    method: &reqwest::Method,
    headers: &HeaderMap,
    content_type: Option<&'static str>,
    body: Bytes,
    connection: &str,
) -> Result<
    (
        hyper::http::response::Parts,
        hyper::body::Incoming,
        AbortOnDrop,
    ),
    StepError,
> {
    let stream = net::open(ctx, url).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| {
                StepError::caused_by(
                    FailureReason::Protocol,
                    format!("HTTP handshake failed: {}", error_chain(&e)),
                    &e,
                )
            })?;
    let guard = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));

    let mut builder = request_to(method.as_str(), url);
    if let Some(ct) = content_type {
        builder = builder.header(header::CONTENT_TYPE, ct);
    }
    if let Some(cookies) = ctx.cookies.header(connection, url) {
        builder = builder.header(header::COOKIE, cookies);
    }
    let mut request = builder.body(Full::new(body)).map_err(|e| {
        StepError::new(
            FailureReason::Protocol,
            format!("cannot build the request: {e}"),
        )
    })?;
    for (name, value) in headers {
        request.headers_mut().insert(name.clone(), value.clone());
    }

    let sent = Instant::now();
    let response = sender.send_request(request).await;
    net::add_phase(ctx, Phase::FirstByte, sent);
    let response =
        response.map_err(|e| hyper_error(&e, format!("no HTTP reply: {}", error_chain(&e))))?;
    let (parts, incoming) = response.into_parts();
    Ok((parts, incoming, guard))
}

/// The layer a hyper error points at: the prober's own resources (`local`); bytes that are not
/// HTTP, a malformed chunked body among them (`protocol`: hyper reports a bad chunk line as an
/// `InvalidInput`/`InvalidData` I/O error under a body error); otherwise the connection broke
/// (`connect`, a reply cut short included).
pub(super) fn hyper_error(e: &hyper::Error, message: String) -> StepError {
    let malformed = e.is_parse() || e.is_parse_status() || {
        let mut source = std::error::Error::source(e);
        let mut found = false;
        // Bounded: a chain is a handful of links.
        for _ in 0..32 {
            let Some(s) = source else { break };
            if s.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
                )
            }) {
                found = true;
                break;
            }
            source = s.source();
        }
        found
    };
    let reason = if malformed {
        FailureReason::Protocol
    } else {
        FailureReason::Connect
    };
    StepError::caused_by(reason, message, e)
}

pub(super) fn too_large(cap: usize) -> StepError {
    StepError::new(
        FailureReason::TooLarge,
        format!("the reply is larger than the {cap}-byte cap (max_body_bytes)"),
    )
}

/// A GET of `url` on a fresh connection that no step times (a `webrtc` step's long poll
/// aside, see `long_poll::Events::read_aside`): `cookie` sent, the body read under `cap`,
/// `http_status` unless 2xx. Bounded by its caller.
pub(crate) async fn get_untimed(
    url: url::Url,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    cookie: Option<HeaderValue>,
    cap: usize,
) -> Result<Vec<u8>, StepError> {
    let stream = net::open_untimed(&url, tls).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| hyper_error(&e, format!("HTTP handshake failed: {}", error_chain(&e))))?;
    let _guard = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let mut builder = request_to("GET", &url);
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    let request = builder.body(Full::new(Bytes::new())).map_err(|e| {
        StepError::new(
            FailureReason::Protocol,
            format!("cannot build the request: {e}"),
        )
    })?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| hyper_error(&e, format!("no HTTP reply: {}", error_chain(&e))))?;
    let (parts, mut incoming) = response.into_parts();
    let body = read_body(&mut incoming, &parts.headers, cap).await?;
    if !parts.status.is_success() {
        return Err(StepError::new(
            FailureReason::HttpStatus,
            format!(
                "status {} (expected 2xx): {}",
                parts.status.as_u16(),
                snippet(&body)
            ),
        ));
    }
    Ok(body)
}

/// A request for `url` (its path and query as the target, its host and port as `Host`) with
/// the headers every step request carries.
fn request_to(method: &str, url: &url::Url) -> hyper::http::request::Builder {
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => String::new(),
    };
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    hyper::Request::builder()
        .method(method)
        .uri(target)
        .header(header::HOST, host)
        .header(
            header::USER_AGENT,
            concat!("joincanary/", env!("CARGO_PKG_VERSION")),
        )
        .header(header::ACCEPT, "*/*")
}
