//! What several step kinds read alike: URL templates, headers, match patterns, `fail_*`,
//! `extract` and gauge thresholds. Each kind's own file calls these from its `build`.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;

use super::context::RunContext;
use super::error::{StepError, server_error};
use super::matcher::{self, Pattern};
use crate::diag::{Ctx, S, valid_label};
use crate::report::{FailureReason, with_article};
use crate::template::{BUILTINS, Template};

/// Thresholds on a step's gauges: crossing one is a warning (degraded), never a failure.
#[derive(Debug, Clone, Default)]
pub struct GaugeChecks {
    /// A gauge at or above its value warns.
    pub warn_above: Vec<(String, f64)>,
    /// A gauge below its value warns.
    pub warn_below: Vec<(String, f64)>,
}

impl GaugeChecks {
    /// Compares the step's gauges with the thresholds; each crossing becomes a warning.
    pub(crate) fn warn(&self, ctx: &mut RunContext<'_>) {
        let step = ctx.step_name.clone();
        for (name, limit) in &self.warn_above {
            if let Some(v) = ctx.gauges.get(name)
                && *v >= *limit
            {
                ctx.warnings.push(format!(
                    "step \"{step}\" {name} {} at or above {}",
                    number(*v),
                    number(*limit)
                ));
            }
        }
        for (name, limit) in &self.warn_below {
            if let Some(v) = ctx.gauges.get(name)
                && *v < *limit
            {
                ctx.warnings.push(format!(
                    "step \"{step}\" {name} {} below {}",
                    number(*v),
                    number(*limit)
                ));
            }
        }
    }
}

/// Whole numbers without a fraction, ratios with two decimals.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// `warn_above` / `warn_below` of a step with gauges.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGauges {
    /// A gauge at or above this value raises the degraded warning.
    pub warn_above: Option<S<BTreeMap<String, S<f64>>>>,
    /// A gauge below this value raises the degraded warning.
    pub warn_below: Option<S<BTreeMap<String, S<f64>>>>,
}

/// What makes a reply the server's own error: the step fails at once with `server_error`.
#[derive(Debug, Clone, Default)]
pub struct FailSpec {
    pub json: Option<serde_json::Value>,
    /// Any one matching is enough.
    pub regex: Vec<Pattern>,
}

/// The step's `fail_*` patterns, rendered for this run.
pub(crate) fn render_fail(
    ctx: &RunContext<'_>,
    fail: &FailSpec,
) -> Result<(Option<serde_json::Value>, Vec<regex::Regex>), StepError> {
    let protocol_error = |e: String| StepError::new(FailureReason::Protocol, e);
    let json = fail.json.as_ref().map(|v| ctx.render_json(v)).transpose()?;
    let regex = fail
        .regex
        .iter()
        .map(|p| p.regex(&ctx.vars).map(std::borrow::Cow::into_owned))
        .collect::<Result<_, _>>()
        .map_err(protocol_error)?;
    Ok((json, regex))
}

/// `server_error` when a reply matches the step's fail patterns (checked before `expect_*`).
pub(crate) fn check_fail(
    json: Option<&serde_json::Value>,
    text: &str,
    fail_json: Option<&serde_json::Value>,
    fail_regex: &[regex::Regex],
) -> Result<(), StepError> {
    let json_hit = fail_json
        .zip(json)
        .is_some_and(|(p, a)| matcher::is_json_subset(p, a));
    if json_hit || fail_regex.iter().any(|re| re.is_match(text)) {
        return Err(server_error("the server reported an error", text));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Extraction {
    pub var: String,
    pub source: ExtractSource,
    /// `regex` beside `json`, `header` or `cookie`: the part of that value to keep (group 1, or
    /// the whole match), e.g. a token inside a URL a reply names, or a URL without its
    /// trailing `/`.
    pub within: Option<Regex>,
}

impl Extraction {
    /// One extracted value narrowed by `within`; `None` when it does not match.
    pub(crate) fn narrow(&self, value: Option<String>) -> Option<String> {
        match (&self.within, value) {
            (Some(re), Some(v)) => matcher::regex_capture(re, &v),
            (None, v) => v,
            (Some(_), None) => None,
        }
    }

    /// The value in a websocket message (its `json`, its `text`), narrowed; `None` when it
    /// has none (`header` and `cookie` are HTTP replies' only).
    pub(crate) fn value_in(&self, json: Option<&serde_json::Value>, text: &str) -> Option<String> {
        let value = match &self.source {
            ExtractSource::Json(pointer) => json
                .and_then(|j| j.pointer(pointer))
                .map(matcher::value_as_var),
            ExtractSource::Regex(re) => matcher::regex_capture(re, text),
            ExtractSource::Header(_) | ExtractSource::Cookie(_) => None,
        };
        self.narrow(value)
    }

    /// The JSON value itself when it is taken whole from JSON and is not a string (Janus's
    /// integer ids): kept beside its text so JSON patterns and bodies render it with its type.
    pub(crate) fn typed_in(&self, json: Option<&serde_json::Value>) -> Option<serde_json::Value> {
        match (&self.source, &self.within) {
            (ExtractSource::Json(pointer), None) => json
                .and_then(|j| j.pointer(pointer))
                .filter(|v| !v.is_string())
                .cloned(),
            _ => None,
        }
    }

    /// What the value was to come from, for the error that says it did not.
    pub(crate) fn describe(&self) -> String {
        let from = match &self.source {
            ExtractSource::Json(p) => format!("JSON value at `{p}`"),
            ExtractSource::Header(h) => format!("header `{h}`"),
            ExtractSource::Cookie(c) => format!("cookie `{c}`"),
            ExtractSource::Regex(r) => format!("match for `{r}`"),
        };
        match &self.within {
            Some(re) => format!("{from} matching `{re}`"),
            None => from,
        }
    }
}

#[derive(Debug, Clone)]
pub enum ExtractSource {
    /// A JSON pointer (dotted paths are converted at load time).
    Json(String),
    Header(String),
    Cookie(String),
    Regex(Regex),
}

/// Where an extracted value comes from; exactly one key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExtract {
    /// JSON pointer (`/token`) or dotted path (`$.data.token`, `data.items[0].id`).
    pub json: Option<String>,
    pub header: Option<String>,
    pub cookie: Option<String>,
    /// A regex over the body or frame; capture group 1 (or the whole match). Beside `json`,
    /// `header` or `cookie`: over that value.
    pub regex: Option<String>,
}

/// `warn_above` / `warn_below`: every name must be one of the step's gauges (`known`; `has`
/// lists them for the message): a misspelt threshold would otherwise never warn.
pub(crate) fn gauge_checks(
    ctx: &mut Ctx<'_>,
    raw: &RawGauges,
    prefix: &str,
    known: &dyn Fn(&str) -> bool,
    has: &str,
) -> Option<GaugeChecks> {
    let mut ok = true;
    let mut read = |ctx: &mut Ctx<'_>, raw: Option<&S<BTreeMap<String, S<f64>>>>, which: &str| {
        let mut out = Vec::new();
        for (name, value) in raw.map(|m| m.get_ref().iter()).into_iter().flatten() {
            let k = format!("{prefix}.{which}.{name}");
            if !known(name) {
                ctx.error(
                    Some(value.span()),
                    &k,
                    format_args!("`{name}` is not a gauge of this step (it has {has})"),
                );
                ok = false;
            } else if !value.get_ref().is_finite() {
                ctx.error(Some(value.span()), &k, "must be a finite number");
                ok = false;
            } else {
                out.push((name.clone(), *value.get_ref()));
            }
        }
        out
    };
    let checks = GaugeChecks {
        warn_above: read(ctx, raw.warn_above.as_ref(), "warn_above"),
        warn_below: read(ctx, raw.warn_below.as_ref(), "warn_below"),
    };
    ok.then_some(checks)
}

/// A URL template with one of `schemes` and a host, checked with placeholders for its variables.
/// One that opens with a variable (`{{server}}/spreed`: the URL a login reply named) takes its
/// scheme and host from the run, so only the rest is checked here and [`run_url`] checks the
/// scheme when the run has the value.
pub(crate) fn url_template(
    ctx: &mut Ctx<'_>,
    raw: &S<String>,
    key: &str,
    schemes: &[&str],
) -> Option<Template> {
    let t = ctx.template(raw, key)?;
    let mut probe = t.render_placeholder("x");
    if t.starts_with_var() {
        probe = format!("{}://{probe}", schemes[0]);
    }
    match url::Url::parse(&probe) {
        Ok(u) if schemes.contains(&u.scheme()) && u.host_str().is_some_and(|h| !h.is_empty()) => {
            Some(t)
        }
        Ok(_) => {
            ctx.error(
                Some(raw.span()),
                key,
                format_args!(
                    "`{}` must be {} URL with a host",
                    crate::redact::redact_url_text(&probe),
                    with_article(&schemes.join(" or "))
                ),
            );
            None
        }
        Err(e) => {
            ctx.error(
                Some(raw.span()),
                key,
                format_args!(
                    "`{}` is not a valid URL: {e}",
                    crate::redact::redact_url_text(&probe)
                ),
            );
            None
        }
    }
}

/// The URL a step renders, parsed; its scheme must be one of `schemes` (a template that opens
/// with a variable is checked here, when the run has the value: see [`url_template`]). Errors
/// show the URL without its query and password.
pub(crate) fn run_url(
    ctx: &RunContext<'_>,
    template: &Template,
    schemes: &[&str],
) -> Result<url::Url, StepError> {
    let text = ctx.render(template)?;
    let shown = || crate::redact::redact_url_text(&text);
    let url = url::Url::parse(&text).map_err(|e| {
        StepError::new(
            FailureReason::Protocol,
            format!("`{}` is not a valid URL: {e}", shown()),
        )
    })?;
    if !schemes.contains(&url.scheme()) || url.host_str().is_none_or(str::is_empty) {
        return Err(StepError::new(
            FailureReason::Protocol,
            format!(
                "`{}` is not {} URL with a host",
                shown(),
                with_article(&schemes.join(" or "))
            ),
        ));
    }
    Ok(url)
}

/// Takes as secrets the credentials a request carries, however they were written (literally
/// in the probe file, not only through `${ENV}`): `Authorization` and `Proxy-Authorization`
/// (and the token after the scheme), each value of a `Cookie` header, a header, query
/// parameter or body field whose name says credential (`X-Api-Key`, `?access_token=`,
/// `{"password": …}`, `client_secret=…`), a path segment where a key or token sits
/// (`/hooks/<key>`, `/join/<token>`). A server echoing its request in a refusal (`invalid
/// token … for /api?access_token=…`, a 500 quoting the body it choked on) would otherwise put
/// them in the error, and so in the status, logs and pages; a pager's literal key is a secret
/// the same way.
pub(crate) fn note_credentials(
    ctx: &mut RunContext<'_>,
    url: &url::Url,
    headers: &hyper::HeaderMap,
    body: &[u8],
) {
    use hyper::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};
    for (name, value) in headers {
        let Ok(value) = value.to_str() else {
            continue;
        };
        if name == AUTHORIZATION || name == PROXY_AUTHORIZATION {
            ctx.redactor.add(value.to_string());
            if let Some((_, token)) = value.split_once(' ') {
                ctx.redactor.add(token.trim().to_string());
            }
        } else if name == COOKIE {
            for (_, v) in value.split(';').filter_map(|pair| pair.split_once('=')) {
                ctx.redactor.add(v.trim().to_string());
            }
        } else if crate::redact::names_a_credential(name.as_str())
            // The upgrade's nonce is no credential (and new on every connect).
            && !name.as_str().starts_with("sec-websocket-")
        {
            ctx.redactor.add(value.to_string());
        }
    }
    for (name, value) in url.query_pairs() {
        if crate::redact::names_a_credential(&name) {
            ctx.redactor.add(value.into_owned());
        }
    }
    for value in crate::redact::path_credentials(url) {
        ctx.redactor.add(value);
    }
    if let Ok(body) = std::str::from_utf8(body) {
        for value in crate::redact::body_credentials(body) {
            ctx.redactor.add(value);
        }
    }
}

/// Header names checked, values templates of one line each.
pub(crate) fn headers(
    ctx: &mut Ctx<'_>,
    raw: Option<&S<BTreeMap<String, S<String>>>>,
    key: &str,
) -> Option<Vec<(String, Template)>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (name, value) in raw.map(|h| h.get_ref().iter()).into_iter().flatten() {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            ctx.error(
                Some(value.span()),
                format!("{key}.{name}"),
                "not a valid header name",
            );
            ok = false;
            continue;
        }
        let field = format!("{key}.{name}");
        let Some(text) = ctx.env_template_str(value, &field) else {
            ok = false;
            continue;
        };
        let t = match Template::parse(&text) {
            Ok(t) => t,
            Err(e) => {
                ctx.error(Some(value.span()), field, e);
                ok = false;
                continue;
            }
        };
        // A line break would end the header early (and smuggle the rest in as more headers);
        // hyper refuses such a value at send time, so every run would fail. The value itself
        // is not quoted: it may hold a secret from the environment.
        if t.render_placeholder("x").contains(['\r', '\n', '\0']) {
            ctx.error(
                Some(value.span()),
                field,
                "contains a line break or NUL; a header value must be one line",
            );
            ok = false;
            continue;
        }
        out.push((name.clone(), t));
    }
    ok.then_some(out)
}

/// One regex template or a list of them (`expect_regex = [..]`, `fail_regex = [..]`).
pub(crate) fn patterns(
    ctx: &mut Ctx<'_>,
    raw: Option<&S<toml::Value>>,
    key: &str,
) -> Option<Vec<Pattern>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let texts: Vec<&str> = match raw.get_ref() {
        toml::Value::String(s) => vec![s.as_str()],
        toml::Value::Array(items) if !items.is_empty() => {
            match items.iter().map(toml::Value::as_str).collect::<Option<_>>() {
                Some(t) => t,
                None => {
                    ctx.error(
                        Some(raw.span()),
                        key,
                        "must be a string or a list of strings",
                    );
                    return None;
                }
            }
        }
        _ => {
            ctx.error(
                Some(raw.span()),
                key,
                "must be a string or a list of strings",
            );
            return None;
        }
    };
    let mut out = Vec::new();
    let mut ok = true;
    for text in texts {
        let value = S::new(raw.span(), text.to_string());
        let Some(substituted) = ctx.env_template_str(&value, key) else {
            ok = false;
            continue;
        };
        match Pattern::parse(&substituted) {
            Ok(p) => out.push(p),
            Err(e) => {
                ctx.error(Some(raw.span()), key, e);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// `fail_json` / `fail_regex`.
pub(crate) fn fail_spec(
    ctx: &mut Ctx<'_>,
    json: Option<&S<toml::Value>>,
    regex: Option<&S<toml::Value>>,
    prefix: &str,
) -> Option<FailSpec> {
    Some(FailSpec {
        json: match json {
            Some(j) => Some(ctx.json(j, &format!("{prefix}.fail_json"))?),
            None => None,
        },
        regex: patterns(ctx, regex, &format!("{prefix}.fail_regex"))?,
    })
}

/// `extract`: each variable from exactly one source; `header` and `cookie` on HTTP replies only.
pub(crate) fn extracts(
    ctx: &mut Ctx<'_>,
    raw: Option<&S<BTreeMap<String, S<RawExtract>>>>,
    key: &str,
    http: bool,
) -> Option<Vec<Extraction>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (var, spec) in raw.map(|m| m.get_ref().iter()).into_iter().flatten() {
        let k = format!("{key}.{var}");
        if BUILTINS.contains(&var.as_str()) || !valid_label(var) {
            ctx.error(
                Some(spec.span()),
                &k,
                format_args!("`{var}` cannot be used as a variable name"),
            );
            ok = false;
            continue;
        }
        match extraction(ctx, var, spec, &k, http) {
            Some(e) => out.push(e),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// One extracted value's source (`spec`, reported at `k`): exactly one of `json`, `header`,
/// `cookie` or `regex`, `regex` narrowing another; `header` and `cookie` on HTTP replies only.
pub(crate) fn extraction(
    ctx: &mut Ctx<'_>,
    var: &str,
    spec: &S<RawExtract>,
    k: &str,
    http: bool,
) -> Option<Extraction> {
    let e = spec.get_ref();
    let given = [e.json.is_some(), e.header.is_some(), e.cookie.is_some()];
    let sources = given.iter().filter(|g| **g).count();
    if sources > 1 || (sources == 0 && e.regex.is_none()) {
        ctx.error(
            Some(spec.span()),
            k,
            "give exactly one of `json`, `header`, `cookie`, `regex` (`regex` may narrow \
             one of the others)",
        );
        return None;
    }
    let regex = match e
        .regex
        .as_deref()
        .map(crate::diag::compile_regex)
        .transpose()
    {
        Ok(r) => r,
        Err(err) => {
            let key = format!("{k}.regex");
            ctx.error(
                Some(ctx.written(&key, spec.span())),
                key,
                format_args!("not a valid regex: {err}"),
            );
            return None;
        }
    };
    // `regex` alone reads the body or frame; beside another source, that source's value.
    let (regex, within) = if sources == 0 {
        (regex, None)
    } else {
        (None, regex)
    };
    let source = if let Some(path) = &e.json {
        match json_pointer(path) {
            Ok(p) => ExtractSource::Json(p),
            Err(msg) => {
                let key = format!("{k}.json");
                ctx.error(Some(ctx.written(&key, spec.span())), key, msg);
                return None;
            }
        }
    } else if let Some(h) = &e.header {
        if !http {
            let key = format!("{k}.header");
            let at = ctx.written(&key, spec.span());
            ctx.error(Some(at), key, "`header` applies to http steps only");
            return None;
        }
        ExtractSource::Header(h.clone())
    } else if let Some(c) = &e.cookie {
        if !http {
            let key = format!("{k}.cookie");
            let at = ctx.written(&key, spec.span());
            ctx.error(Some(at), key, "`cookie` applies to http steps only");
            return None;
        }
        ExtractSource::Cookie(c.clone())
    } else if let Some(r) = regex {
        ExtractSource::Regex(r)
    } else {
        return None;
    };
    Some(Extraction {
        var: var.to_string(),
        source,
        within,
    })
}

/// Accepts a JSON pointer (`/a/0/b`) or a dotted path (`$.a[0].b`, `a.b`) and returns a pointer.
///
/// # Errors
/// An empty path or unbalanced brackets.
pub fn json_pointer(path: &str) -> Result<String, String> {
    if path.starts_with('/') || path.is_empty() {
        return Ok(path.to_string());
    }
    let trimmed = path.strip_prefix('$').unwrap_or(path);
    let trimmed = trimmed.strip_prefix('.').unwrap_or(trimmed);
    let mut pointer = String::new();
    for part in trimmed.split('.') {
        let mut rest = part;
        let name_end = rest.find('[').unwrap_or(rest.len());
        let name = &rest[..name_end];
        if !name.is_empty() {
            pointer.push('/');
            pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
        }
        rest = &rest[name_end..];
        while let Some(inner) = rest.strip_prefix('[') {
            let close = inner
                .find(']')
                .ok_or_else(|| format!("`{path}`: `[` is never closed"))?;
            let index = inner[..close].trim_matches(|c| c == '"' || c == '\'');
            pointer.push('/');
            pointer.push_str(index);
            rest = &inner[close + 1..];
        }
        if !rest.is_empty() {
            return Err(format!(
                "`{path}` is not a JSON path like `$.data.token` or a pointer like `/data/token`"
            ));
        }
    }
    if pointer.is_empty() {
        return Err(format!("`{path}` selects nothing"));
    }
    Ok(pointer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_become_pointers() {
        assert_eq!(json_pointer("/token").unwrap(), "/token");
        assert_eq!(json_pointer("$.data.token").unwrap(), "/data/token");
        assert_eq!(json_pointer("items[0].id").unwrap(), "/items/0/id");
        assert!(json_pointer("a[0").is_err());
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(0.8), "0.80");
        assert_eq!(number(12.0), "12");
    }
}
