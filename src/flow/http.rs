//! The `http` step: one request over a connection of its own (so dns, connect, tls and first
//! byte are each timed, as a joining user would pay them), checked and mined for values.
//! HTTP/1.1 over hyper; redirects followed; the run's cookie jar carries the session (a named
//! `connection`'s own jar for that participant).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{self, HeaderMap};

use serde::Deserialize;

use super::context::RunContext;
use super::error::{StepError, snippet};
use super::http_wire::{exchange, read_body};
use super::kind::{Build, Kind, Reads};
use super::matcher::Pattern;
use super::parts::{self, ExtractSource, Extraction, FailSpec, RawExtract};
use super::protocol::Message;
use super::{matcher, net};
use crate::diag::S;
use crate::report::{FailureReason, Phase};
use crate::template::Template;

/// Redirects followed before the step fails: a login flow may redirect once or twice; a loop
/// must not eat the deadline.
const MAX_REDIRECTS: usize = 5;

/// Requests a `poll` step sends at most: a long poll that answers at once, again and again,
/// without what the step waits for must not spin until the deadline.
pub const MAX_POLLS: usize = 100;

/// An `http` step's table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub method: Option<S<String>>,
    pub url: Option<S<String>>,
    pub headers: Option<S<BTreeMap<String, S<String>>>>,
    pub json: Option<S<toml::Value>>,
    pub form: Option<S<BTreeMap<String, S<String>>>>,
    pub body: Option<S<String>>,
    pub expect_status: Option<S<Vec<S<i64>>>>,
    pub expect_json: Option<S<toml::Value>>,
    /// One regex or a list; all must match the same reply. Templates, values regex-escaped.
    pub expect_regex: Option<S<toml::Value>>,
    pub extract: Option<S<BTreeMap<String, S<RawExtract>>>>,
    /// A reply matching this JSON subset fails the step at once with `server_error`.
    pub fail_json: Option<S<toml::Value>>,
    /// A reply matching any of these regexes fails the step at once with `server_error`.
    pub fail_regex: Option<S<toml::Value>>,
    /// A long poll (Matrix `/sync`, Bayeux, Talk's internal signalling): a reply that does not
    /// meet the expectations is sent again, these values taken from it first (`since =
    /// { json = "/next_batch" }`), until one does or time runs out (`no_match`).
    pub poll: Option<S<BTreeMap<String, S<RawExtract>>>>,
    /// With `poll`: each reply is a batch of events (a JSON array, Janus's `?maxev=N`, or one
    /// object), each matched on its own; those after the match are kept for the next step on
    /// the connection, and a `webrtc` step's tap takes its trickled candidates out of them.
    pub batch: Option<S<bool>>,
}

#[derive(Debug, Clone)]
pub struct HttpSpec {
    pub method: reqwest::Method,
    pub url: Template,
    pub headers: Vec<(String, Template)>,
    pub body: Body,
    /// Accepted statuses; empty means any 2xx.
    pub expect_status: Vec<u16>,
    pub expect_json: Option<serde_json::Value>,
    /// All must match the body.
    pub expect_regex: Vec<Pattern>,
    pub fail: FailSpec,
    pub extract: Vec<Extraction>,
    /// `Some`: a long poll, carrying these values from a reply that did not match into the
    /// next request.
    pub poll: Option<Vec<Extraction>>,
    /// The replies are batches of events, read as the connection's event stream
    /// ([`super::long_poll::Events`]).
    pub batch: bool,
}

#[derive(Debug, Clone)]
pub enum Body {
    None,
    Json(serde_json::Value),
    Form(Vec<(String, Template)>),
    Raw(Template),
}

impl Kind for HttpSpec {
    type Raw = RawHttp;
    /// `connection` names the participant whose cookies the request sends and keeps.
    const PARTICIPANT: bool = true;

    fn build(s: RawHttp, b: &mut Build<'_, '_, '_>) -> Option<HttpSpec> {
        let Some(url_raw) = &s.url else {
            b.ctx.error(
                Some(b.name.clone()),
                b.key("url"),
                "an http step needs `url`",
            );
            return None;
        };
        let url = parts::url_template(b.ctx, url_raw, &b.key("url"), &["http", "https"])?;
        let method = match &s.method {
            Some(m) => {
                match reqwest::Method::from_bytes(m.get_ref().to_ascii_uppercase().as_bytes()) {
                    Ok(m) => m,
                    Err(_) => {
                        b.ctx.error(
                            Some(m.span()),
                            b.key("method"),
                            format_args!("`{}` is not an HTTP method", m.get_ref()),
                        );
                        return None;
                    }
                }
            }
            None => reqwest::Method::GET,
        };
        // Placed at the second of them as written: the first one given stands.
        let mut bodies: Vec<(&str, std::ops::Range<usize>)> = [
            ("json", s.json.as_ref().map(|v| v.span())),
            ("form", s.form.as_ref().map(|v| v.span())),
            ("body", s.body.as_ref().map(|v| v.span())),
        ]
        .into_iter()
        .filter_map(|(k, span)| Some((k, span?)))
        .collect();
        bodies.sort_by_key(|(_, span)| span.start);
        if let [(first, _), (second, at), ..] = bodies.as_slice() {
            b.ctx.error(
                Some(at.clone()),
                b.key(second),
                format_args!("give at most one of `json`, `form`, `body` (`{first}` is given too)"),
            );
        }
        let body = if let Some(j) = &s.json {
            Body::Json(b.ctx.json(j, &b.key("json"))?)
        } else if let Some(f) = &s.form {
            let mut fields = Vec::new();
            for (k, v) in f.get_ref() {
                fields.push((k.clone(), b.ctx.template(v, &b.key(&format!("form.{k}")))?));
            }
            Body::Form(fields)
        } else if let Some(body) = &s.body {
            Body::Raw(b.ctx.template(body, &b.key("body"))?)
        } else {
            Body::None
        };
        let expect_status = match &s.expect_status {
            // Empty would accept any 2xx, as if the key were not there: not what was written.
            Some(list) if list.get_ref().is_empty() => {
                b.ctx.error(
                    Some(list.span()),
                    b.key("expect_status"),
                    "an empty list accepts no status: list the statuses, or leave the key out \
                     for any 2xx",
                );
                Vec::new()
            }
            Some(list) => {
                let mut out = Vec::new();
                for code in list.get_ref() {
                    match u16::try_from(*code.get_ref()) {
                        Ok(c) if (100..=599).contains(&c) => out.push(c),
                        // Placed at the value itself: a list of ten shows which one.
                        _ => b.ctx.error(
                            Some(code.span()),
                            b.key("expect_status"),
                            format_args!(
                                "`{}` is not an HTTP status: must be from 100 to 599",
                                code.get_ref()
                            ),
                        ),
                    }
                }
                out
            }
            None => Vec::new(),
        };
        let batch = s.batch.as_ref().is_some_and(|b| *b.get_ref());
        if let Some(bt) = s.batch.as_ref().filter(|_| batch && s.poll.is_none()) {
            b.ctx.error(
                Some(bt.span()),
                b.key("batch"),
                "`batch` reads a long poll's replies as events: it goes with `poll` (`poll = {}` \
                 when no value is carried from one request to the next)",
            );
            return None;
        }
        Some(HttpSpec {
            batch,
            method,
            url,
            headers: parts::headers(b.ctx, s.headers.as_ref(), &b.key("headers"))?,
            body,
            expect_status,
            expect_json: match &s.expect_json {
                Some(j) => Some(b.ctx.json(j, &b.key("expect_json"))?),
                None => None,
            },
            expect_regex: parts::patterns(b.ctx, s.expect_regex.as_ref(), &b.key("expect_regex"))?,
            fail: parts::fail_spec(
                b.ctx,
                s.fail_json.as_ref(),
                s.fail_regex.as_ref(),
                &b.prefix,
            )?,
            extract: parts::extracts(b.ctx, s.extract.as_ref(), &b.key("extract"), true)?,
            poll: match &s.poll {
                Some(p) => Some(parts::extracts(b.ctx, Some(p), &b.key("poll"), true)?),
                None => None,
            },
        })
    }

    fn reads<'s>(&'s self, r: &mut Reads<'s>) {
        r.templates.push(&self.url);
        r.templates.extend(self.headers.iter().map(|(_, t)| t));
        match &self.body {
            Body::Json(v) => r.json.push(v),
            Body::Form(f) => r.templates.extend(f.iter().map(|(_, t)| t)),
            Body::Raw(t) => r.templates.push(t),
            Body::None => {}
        }
        r.json.extend(&self.expect_json);
        r.templates
            .extend(self.expect_regex.iter().map(Pattern::template));
        r.json.extend(&self.fail.json);
        r.templates
            .extend(self.fail.regex.iter().map(Pattern::template));
    }

    fn extracts(&self) -> &[Extraction] {
        &self.extract
    }

    /// A long poll that runs out of time is `no_match`, as a `ws_expect` is: the server was
    /// there and what the flow waited for never came. A connection that never came up is
    /// still named by its layer (the engine does that) — unless replies came and the time ran
    /// out while the next request was connecting for less than [`POLL_RECONNECT_GRACE`]: that
    /// is the poll's own cycle (each request a fresh connection), not a dead layer, and naming
    /// it `timeout` at `connect` would send on-call to the network for a missing event.
    fn timed_out(&self, ctx: &RunContext<'_>, waited: &str, which: &str) -> Option<StepError> {
        self.poll.as_ref()?;
        let mut connecting = "";
        if let Some((phase @ (Phase::Dns | Phase::Connect | Phase::Tls), since)) = ctx.pending {
            if ctx.frames_seen == 0 || since.elapsed() >= POLL_RECONNECT_GRACE {
                return None;
            }
            connecting = match phase {
                Phase::Dns => "; the next request was resolving the name",
                Phase::Tls => "; the next request was in its TLS handshake",
                _ => "; the next request was connecting",
            };
        }
        let seen = ctx.frames_seen;
        let last = match &ctx.last_miss {
            Some(miss) => format!("; last: {miss}"),
            None => String::new(),
        };
        Some(StepError::new(
            FailureReason::NoMatch,
            format!(
                "no reply matched within {waited} ({which}; {seen} replies skipped{last}{connecting})"
            ),
        ))
    }

    fn waiting(&self, ctx: &RunContext<'_>) -> &'static str {
        match ctx.phases.keys().next_back() {
            None => "waiting for the connection",
            Some(Phase::FirstByte) => "reading the body",
            Some(_) => "waiting for the reply",
        }
    }

    async fn run(&self, ctx: &mut RunContext<'_>, connection: &str) -> Result<(), StepError> {
        run(ctx, self, connection).await
    }
}

/// How long the next request of a long poll may have been connecting when the time runs out
/// for the step still to be `no_match` (see `timed_out`); longer, and the layer is named.
const POLL_RECONNECT_GRACE: Duration = Duration::from_secs(1);

/// The step: one request, or for a `poll` step requests until a reply matches (at most
/// [`MAX_POLLS`]; the step's timeout and the deadline bound them as any step).
pub(super) async fn run(
    ctx: &mut RunContext<'_>,
    spec: &HttpSpec,
    connection: &str,
) -> Result<(), StepError> {
    if spec.batch {
        return batch(ctx, spec, connection).await;
    }
    for _ in 0..MAX_POLLS {
        if once(ctx, spec, connection).await? == Reply::Matched {
            return Ok(());
        }
    }
    let last = ctx.last_miss.take().unwrap_or_default();
    Err(StepError::new(
        FailureReason::NoMatch,
        format!("no reply matched in {MAX_POLLS} requests (poll budget); last: {last}"),
    ))
}

/// A `batch` step: the connection's long poll read as events ([`super::long_poll`]), each
/// judged on its own (the server's error first, as for one reply), until one matches: first
/// those read and not yet taken, then the reply of a request a `webrtc` step started aside
/// (older than any this step would send), then requests of its own, at most [`MAX_POLLS`]. A
/// WebRTC tap takes its candidates out of each reply before any event is judged; the events
/// this step skips are kept for a tap set up after it.
async fn batch(
    ctx: &mut RunContext<'_>,
    spec: &HttpSpec,
    connection: &str,
) -> Result<(), StepError> {
    let (fail_json, fail_regex) = parts::render_fail(ctx, &spec.fail)?;
    let url = parts::run_url(ctx, &spec.url, &["http", "https"])?;
    ctx.long_polls
        .entry(connection.to_string())
        .or_default()
        .forget_skipped();
    let mut requests = 0;
    loop {
        let unread = ctx
            .long_polls
            .get_mut(connection)
            .and_then(super::long_poll::Events::next_unread);
        if let Some(event) = unread {
            ctx.frames_seen += 1;
            let view = fail_json.as_ref().and_then(|p| event.json_for(p));
            parts::check_fail(view, &event.text, fail_json.as_ref(), &fail_regex)?;
            let text = event.text.as_bytes();
            match expectations(ctx, spec, event.json.as_ref(), &event.text, text) {
                Ok(()) => return extract_event(ctx, spec, &event, &url),
                Err(miss) if miss.reason == FailureReason::BodyMismatch => {
                    ctx.last_miss = Some(miss.message);
                    if let Some(events) = ctx.long_polls.get_mut(connection) {
                        events.keep_skipped(event);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        if requests >= MAX_POLLS {
            let last = ctx.last_miss.take().unwrap_or_default();
            return Err(StepError::new(
                FailureReason::NoMatch,
                format!("no event matched in {MAX_POLLS} requests (poll budget); last: {last}"),
            ));
        }
        requests += 1;
        let aside = match ctx.long_polls.get_mut(connection) {
            Some(events) if events.in_flight() => events.finish_in_flight().await,
            _ => None,
        };
        let body = match aside {
            Some(reply) => reply?,
            None => {
                let got = request(ctx, spec, connection).await?;
                if !got.status.is_success() {
                    // A server error in the body still wins over the status.
                    for e in super::long_poll::events_of(&got.body) {
                        let view = fail_json.as_ref().and_then(|p| e.json_for(p));
                        parts::check_fail(view, &e.text, fail_json.as_ref(), &fail_regex)?;
                    }
                }
                expected_status(spec, got.status, &got.body, &got.headers)?;
                if let Some(carry) = spec.poll.as_ref().filter(|c| !c.is_empty()) {
                    let json = serde_json::from_slice(&got.body).ok();
                    let text = String::from_utf8_lossy(&got.body);
                    extract(ctx, carry, json.as_ref(), &got.headers, &text, &got.url)?;
                }
                got.body
            }
        };
        ctx.long_polls
            .entry(connection.to_string())
            .or_default()
            .accept(&body);
    }
}

/// A `batch` step's values, from the event it matched (`header` and `cookie` sources see
/// none: an event may have come in an earlier step's reply).
fn extract_event(
    ctx: &mut RunContext<'_>,
    spec: &HttpSpec,
    event: &Message,
    url: &url::Url,
) -> Result<(), StepError> {
    let none = HeaderMap::new();
    extract(
        ctx,
        &spec.extract,
        event.json.as_ref(),
        &none,
        &event.text,
        url,
    )
}

/// What one request of a step came to.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Matched,
    /// A `poll` step's reply that did not meet the expectations: ask again.
    Again,
}

/// A reply, its redirects followed and its body read.
struct Fetched {
    status: hyper::StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    /// Where it came from, after the redirects.
    url: url::Url,
}

/// One request: send, check, extract; `connection`'s cookies go with it and it keeps the reply's
/// (`""`: the run's shared jar; see [`super::context::Cookies`]).
async fn once(
    ctx: &mut RunContext<'_>,
    spec: &HttpSpec,
    connection: &str,
) -> Result<Reply, StepError> {
    let Fetched {
        status,
        headers: response_headers,
        body,
        url,
    } = request(ctx, spec, connection).await?;

    // The server's own error wins over every other check: its words are the root cause.
    if spec.fail.json.is_some() || !spec.fail.regex.is_empty() {
        let (fail_json, fail_regex) = super::parts::render_fail(ctx, &spec.fail)?;
        let parsed = serde_json::from_slice::<serde_json::Value>(&body).ok();
        super::parts::check_fail(
            parsed.as_ref(),
            &String::from_utf8_lossy(&body),
            fail_json.as_ref(),
            &fail_regex,
        )?;
    }
    expected_status(spec, status, &body, &response_headers)?;

    let needs_json = spec.expect_json.is_some()
        || spec
            .extract
            .iter()
            .chain(spec.poll.iter().flatten())
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
    let text = String::from_utf8_lossy(&body);
    if let Err(miss) = expectations(ctx, spec, json.as_ref(), &text, &body) {
        let Some(carry) = &spec.poll else {
            return Err(miss);
        };
        if miss.reason != FailureReason::BodyMismatch {
            return Err(miss);
        }
        extract(ctx, carry, json.as_ref(), &response_headers, &text, &url)?;
        ctx.frames_seen += 1;
        ctx.last_miss = Some(miss.message);
        return Ok(Reply::Again);
    }
    extract(
        ctx,
        &spec.extract,
        json.as_ref(),
        &response_headers,
        &text,
        &url,
    )?;
    Ok(Reply::Matched)
}

/// Sends the step's request (`connection`'s cookies with it, the reply's kept), follows its
/// redirects and reads the reply's body under the cap.
async fn request(
    ctx: &mut RunContext<'_>,
    spec: &HttpSpec,
    connection: &str,
) -> Result<Fetched, StepError> {
    let mut url = parts::run_url(ctx, &spec.url, &["http", "https"])?;
    let mut headers = ctx.render_headers(&spec.headers)?;
    if let Some(basic) = net::take_basic_auth(ctx, &mut url)
        && !headers.contains_key(header::AUTHORIZATION)
    {
        headers.insert(header::AUTHORIZATION, basic);
    }
    let (mut body, content_type) = request_body(ctx, spec)?;
    parts::note_credentials(ctx, &url, &headers, &body);
    // A URL a server named: the probe's credentials do not follow it to another origin.
    let named = super::origin::named(ctx, &spec.url, url.as_str());
    if let Some(named) = &named {
        named.check(
            ctx,
            &url,
            &super::origin::Outgoing {
                headers: &headers,
                body: &body,
            },
        )?;
    }
    let mut method = spec.method.clone();

    let mut hops = 0;
    let (status, response_headers, mut incoming, _conn) = loop {
        ctx.server_chosen = named.is_some() || hops > 0;
        let (parts, incoming, conn) = exchange(
            ctx,
            &url,
            &method,
            &headers,
            content_type,
            body.clone(),
            connection,
        )
        .await?;
        let kept = ctx.cookies.store(connection, &parts.headers, &url);
        // Cookies are session secrets even when no step extracts them.
        for c in kept
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|c| cookie::Cookie::parse(c).ok())
        {
            ctx.redactor.add(c.value().to_string());
        }
        let location = parts
            .headers
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok());
        match (parts.status.is_redirection(), location) {
            (true, Some(location)) if hops < MAX_REDIRECTS => {
                hops += 1;
                url = super::redirect::follow(
                    ctx,
                    &url,
                    location,
                    parts.status,
                    &mut method,
                    &mut body,
                    &mut headers,
                )?;
                // A token the server put in the path or query it sent us to (`/join/<t>`).
                parts::note_credentials(ctx, &url, &HeaderMap::new(), &[]);
            }
            (true, Some(_)) => {
                return Err(StepError::new(
                    FailureReason::Protocol,
                    format!("more than {MAX_REDIRECTS} redirects"),
                ));
            }
            _ => break (parts.status, parts.headers, incoming, conn),
        }
    };

    let body = read_body(&mut incoming, &response_headers, ctx.max_body_bytes).await?;
    Ok(Fetched {
        status,
        headers: response_headers,
        body,
        url,
    })
}

/// `expect_status` (2xx without one) against the reply's status: `http_status`, with the
/// start of the body, when it is not met.
fn expected_status(
    spec: &HttpSpec,
    status: hyper::StatusCode,
    body: &[u8],
    headers: &HeaderMap,
) -> Result<(), StepError> {
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
        return Err(super::error::refused_status(
            FailureReason::HttpStatus,
            status.as_u16(),
            format!(
                "status {} (expected {wanted}): {}",
                status.as_u16(),
                snippet(body)
            ),
            body,
            headers,
        ));
    }
    Ok(())
}

/// `expect_json` and `expect_regex` against one reply (`body_mismatch` when it does not meet
/// them).
fn expectations(
    ctx: &RunContext<'_>,
    spec: &HttpSpec,
    json: Option<&serde_json::Value>,
    text: &str,
    body: &[u8],
) -> Result<(), StepError> {
    if let (Some(pattern), Some(actual)) = (&spec.expect_json, json) {
        let pattern = ctx.render_json(pattern)?;
        matcher::json_subset(&pattern, actual).map_err(|m| {
            StepError::new(
                FailureReason::BodyMismatch,
                format!("the reply does not match expect_json: {m}"),
            )
        })?;
    }
    for pattern in &spec.expect_regex {
        let re = pattern
            .regex(&ctx.vars)
            .map_err(|e| StepError::new(FailureReason::Protocol, e))?;
        if !re.is_match(text) {
            return Err(StepError::new(
                FailureReason::BodyMismatch,
                format!(
                    "the reply does not match expect_regex `{re}`: {}",
                    snippet(body)
                ),
            ));
        }
    }
    Ok(())
}

/// Sets each of `extractions` from one reply (from `url`, after its redirects); one it lacks
/// fails the step (`body_mismatch`).
fn extract(
    ctx: &mut RunContext<'_>,
    extractions: &[Extraction],
    json: Option<&serde_json::Value>,
    response_headers: &HeaderMap,
    text: &str,
    url: &url::Url,
) -> Result<(), StepError> {
    for extraction in extractions {
        let value = match &extraction.source {
            ExtractSource::Json(pointer) => json
                .and_then(|j| j.pointer(pointer))
                .map(matcher::value_as_var),
            ExtractSource::Header(name) => response_headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            ExtractSource::Cookie(name) => set_cookies(response_headers)
                .find(|c| c.name() == name)
                .map(|c| c.value().to_string()),
            ExtractSource::Regex(re) => matcher::regex_capture(re, text),
        };
        let Some(value) = extraction.narrow(value) else {
            return Err(StepError::new(
                FailureReason::BodyMismatch,
                format!(
                    "the reply has no {} for `{}`",
                    extraction.describe(),
                    extraction.var
                ),
            ));
        };
        let typed = extraction.typed_in(json);
        ctx.set_var(&extraction.var, value, typed, Some(url));
    }
    Ok(())
}

/// The cookies a reply sets, read by the `cookie` crate (the parser the jar itself uses, via
/// cookie_store): name and value trimmed, the value as sent (quotes kept). A header that is not
/// a cookie (no `name=`) is skipped, as the jar skips it. Bounded by the reply's header count.
fn set_cookies(headers: &HeaderMap) -> impl Iterator<Item = cookie::Cookie<'_>> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| cookie::Cookie::parse(c).ok())
}

/// The request body and its content type.
fn request_body(
    ctx: &RunContext<'_>,
    spec: &HttpSpec,
) -> Result<(Bytes, Option<&'static str>), StepError> {
    Ok(match &spec.body {
        Body::None => (Bytes::new(), None),
        Body::Json(v) => {
            let rendered = ctx.render_json(v)?;
            (Bytes::from(rendered.to_string()), Some("application/json"))
        }
        Body::Form(fields) => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in fields {
                form.append_pair(k, &ctx.render(v)?);
            }
            (
                Bytes::from(form.finish()),
                Some("application/x-www-form-urlencoded"),
            )
        }
        Body::Raw(t) => (Bytes::from(ctx.render(t)?), None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cookies_reads_each_header_as_the_jar_does() {
        let mut h = HeaderMap::new();
        for v in [
            "session=abc123; Path=/; HttpOnly",
            " spaced = v w ; Secure",
            "quoted=\"q=1\"",
            "no-pair; Path=/",
            "=nameless",
            "last=",
        ] {
            h.append(header::SET_COOKIE, v.parse().unwrap());
        }
        let got: Vec<(String, String)> = set_cookies(&h)
            .map(|c| (c.name().to_string(), c.value().to_string()))
            .collect();
        let want = [
            ("session", "abc123"),
            ("spaced", "v w"),
            ("quoted", "\"q=1\""),
            ("last", ""),
        ];
        assert_eq!(
            got,
            want.map(|(n, v)| (n.to_string(), v.to_string())).to_vec()
        );
    }
}
