//! The `http` step: one request with a fresh connection, timed, checked, and mined for values.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;

use super::{RunContext, StepError, error_chain, matcher, snippet};
use crate::config::{Body, ExtractSource, HttpSpec};
use crate::report::{FailureReason, Phase};

/// Redirects followed before the step fails: a login flow may redirect once or twice; a loop
/// must not eat the deadline.
const MAX_REDIRECTS: usize = 5;

pub(super) async fn run(ctx: &mut RunContext<'_>, spec: &HttpSpec) -> Result<(), StepError> {
    let url_text = ctx.render(&spec.url)?;
    let url = url::Url::parse(&url_text).map_err(|e| {
        StepError::new(
            FailureReason::Protocol,
            format!(
                "`{}` is not a valid URL: {e}",
                super::redact_url_text(&url_text)
            ),
        )
    })?;
    let addrs = super::resolve(ctx, &url).await?;

    // A client per step: the connection is new each run (so connect and TLS are measured, as a
    // joining user would pay them), while the run's cookie jar carries the session across steps.
    let mut builder = reqwest::Client::builder()
        .cookie_provider(ctx.jar.clone())
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .pool_max_idle_per_host(0)
        .user_agent(concat!("joincanary/", env!("CARGO_PKG_VERSION")));
    if let Some(url::Host::Domain(domain)) = url.host() {
        builder = builder.resolve_to_addrs(domain, &addrs);
    }
    let client = builder.build().map_err(|e| {
        StepError::new(
            FailureReason::Tls,
            format!("cannot build an HTTP client: {}", error_chain(&e)),
        )
    })?;

    let mut headers = HeaderMap::new();
    for (name, value) in &spec.headers {
        let rendered = ctx.render(value)?;
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            StepError::new(
                FailureReason::Protocol,
                format!("`{name}` is not a header name"),
            )
        })?;
        let value = HeaderValue::from_str(&rendered).map_err(|_| {
            StepError::new(
                FailureReason::Protocol,
                format!("header `{name}` has a value that cannot be sent"),
            )
        })?;
        headers.insert(name, value);
    }
    let mut request = client.request(spec.method.clone(), url).headers(headers);
    request = match &spec.body {
        Body::None => request,
        Body::Json(v) => request.json(
            &super::template::render_json(v, &ctx.vars)
                .map_err(|e| StepError::new(FailureReason::Protocol, e.to_string()))?,
        ),
        Body::Form(fields) => {
            let mut rendered = Vec::with_capacity(fields.len());
            for (k, v) in fields {
                rendered.push((k.clone(), ctx.render(v)?));
            }
            request.form(&rendered)
        }
        Body::Raw(t) => request.body(ctx.render(t)?),
    };

    let sent = Instant::now();
    let mut response = request.send().await.map_err(classify)?;
    ctx.phases.insert(Phase::FirstByte, sent.elapsed());
    let status = response.status();
    let cap = ctx.plan.max_body_bytes;
    if let Some(len) = response.content_length()
        && len > cap as u64
    {
        return Err(too_large(cap));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(classify)? {
        if body.len() + chunk.len() > cap {
            return Err(too_large(cap));
        }
        body.extend_from_slice(&chunk);
    }

    let status_ok = if spec.expect_status.is_empty() {
        status.is_success()
    } else {
        spec.expect_status.contains(&status.as_u16())
    };
    if !status_ok {
        let wanted = if spec.expect_status.is_empty() {
            "2xx".to_string()
        } else {
            spec.expect_status
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(StepError::new(
            FailureReason::HttpStatus,
            format!(
                "status {} (expected {wanted}): {}",
                status.as_u16(),
                snippet(&body)
            ),
        ));
    }

    let needs_json = spec.expect_json.is_some()
        || spec
            .extract
            .iter()
            .any(|e| matches!(e.source, ExtractSource::Json(_)));
    let json: Option<serde_json::Value> = if needs_json {
        Some(serde_json::from_slice(&body).map_err(|e| {
            StepError::new(
                FailureReason::BodyMismatch,
                format!("the reply is not JSON ({e}): {}", snippet(&body)),
            )
        })?)
    } else {
        None
    };
    if let (Some(pattern), Some(actual)) = (&spec.expect_json, &json) {
        let pattern = super::template::render_json(pattern, &ctx.vars)
            .map_err(|e| StepError::new(FailureReason::Protocol, e.to_string()))?;
        matcher::json_subset(&pattern, actual).map_err(|m| {
            StepError::new(
                FailureReason::BodyMismatch,
                format!("the reply does not match expect_json: {m}"),
            )
        })?;
    }
    let text = String::from_utf8_lossy(&body);
    if let Some(re) = &spec.expect_regex
        && !re.is_match(&text)
    {
        return Err(StepError::new(
            FailureReason::BodyMismatch,
            format!(
                "the reply does not match expect_regex `{re}`: {}",
                snippet(&body)
            ),
        ));
    }
    let response_headers = response.headers().clone();
    for extraction in &spec.extract {
        let value = match &extraction.source {
            ExtractSource::Json(pointer) => json
                .as_ref()
                .and_then(|j| j.pointer(pointer))
                .map(matcher::value_as_var),
            ExtractSource::Header(name) => response_headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            ExtractSource::Cookie(name) => response_headers
                .get_all(reqwest::header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(|c| c.split(';').next())
                .filter_map(|c| c.split_once('='))
                .find(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().to_string()),
            ExtractSource::Regex(re) => matcher::regex_capture(re, &text),
        };
        let Some(value) = value else {
            let from = match &extraction.source {
                ExtractSource::Json(p) => format!("JSON value at `{p}`"),
                ExtractSource::Header(h) => format!("header `{h}`"),
                ExtractSource::Cookie(c) => format!("cookie `{c}`"),
                ExtractSource::Regex(r) => format!("match for `{r}`"),
            };
            return Err(StepError::new(
                FailureReason::BodyMismatch,
                format!("the reply has no {from} for `{}`", extraction.var),
            ));
        };
        ctx.set_var(&extraction.var, value);
    }
    // Cookies are session secrets even when no step extracts them.
    for v in response_headers.get_all(reqwest::header::SET_COOKIE) {
        if let Some((_, value)) = v
            .to_str()
            .ok()
            .and_then(|c| c.split(';').next())
            .and_then(|c| c.split_once('='))
        {
            ctx.redactor.add(value.trim().to_string());
        }
    }
    Ok(())
}

fn too_large(cap: usize) -> StepError {
    StepError::new(
        FailureReason::TooLarge,
        format!("the reply is larger than the {cap}-byte cap (max_body_bytes)"),
    )
}

/// Maps a reqwest error to a stable reason. reqwest's own text names the URL (and so a token in
/// its query), so it is stripped first.
fn classify(e: reqwest::Error) -> StepError {
    let e = e.without_url();
    let chain = error_chain(&e);
    let lower = chain.to_ascii_lowercase();
    let reason = if e.is_timeout() {
        FailureReason::Timeout
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        FailureReason::Tls
    } else if e.is_connect() {
        FailureReason::Connect
    } else if e.is_redirect() || e.is_body() || e.is_decode() {
        FailureReason::Protocol
    } else if lower.contains("connection closed")
        || lower.contains("reset")
        || lower.contains("incomplete message")
    {
        FailureReason::Connect
    } else {
        FailureReason::Protocol
    };
    StepError::new(reason, chain)
}
