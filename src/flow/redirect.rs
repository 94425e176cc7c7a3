//! An `http` step's redirects: where a `Location` leads, refused when it leaves http(s) or TLS,
//! and what follows it to another origin (no credentials; a body holding one refuses the hop).

use bytes::Bytes;
use hyper::header::{self, HeaderMap};

use super::context::RunContext;
use super::error::StepError;
use crate::report::FailureReason;

/// Where a redirect leads, refused when it leaves http(s) or TLS; as a browser does, a 303
/// (and a 301/302 after a POST) becomes a GET without a body, and the credentials and a body
/// that holds a secret do not follow it to another origin.
pub(super) fn follow(
    ctx: &RunContext<'_>,
    url: &url::Url,
    location: &str,
    status: hyper::StatusCode,
    method: &mut reqwest::Method,
    body: &mut Bytes,
    headers: &mut HeaderMap,
) -> Result<url::Url, StepError> {
    let next = url.join(location).map_err(|e| {
        StepError::new(
            FailureReason::Protocol,
            format!("redirect to an invalid location: {e}"),
        )
    })?;
    // Only http(s) is followed: a `Location` naming `ftp:`, `ws:`, `gopher:` or
    // the like would otherwise get an HTTP request at that scheme's port (a side
    // door to a service the probe was never pointed at).
    if !matches!(next.scheme(), "http" | "https") {
        return Err(StepError::new(
            FailureReason::Protocol,
            format!(
                "redirect to `{}` refused: only http and https locations are followed",
                crate::redact::redact_url_text(next.as_str())
            ),
        ));
    }
    if url.scheme() == "https" && next.scheme() != "https" {
        return Err(StepError::new(
            FailureReason::Tls,
            format!(
                "redirect from https to `{}` refused: it would send the request \
                 without TLS",
                crate::redact::redact_url_text(next.as_str())
            ),
        ));
    }
    // As browsers do: 303, and 301/302 after a POST, become a GET without a body.
    if status == 303 || (matches!(status.as_u16(), 301 | 302) && *method == reqwest::Method::POST) {
        *method = reqwest::Method::GET;
        *body = Bytes::new();
    }
    if next.origin() != url.origin() && !https_upgrade(url, &next) {
        drop_credentials(headers, &ctx.redactor);
        refuse_secret_body(body, &next, status, &ctx.redactor)?;
    }
    Ok(next)
}

/// `http://host/…` redirected to `https://host/…` (default ports both): the same server asking
/// for TLS, as an HSTS-style front door does at login. Nothing is less safe over TLS to the
/// same host, so headers and a form's body go along (a login POST answered with 308 to its
/// https self still logs in).
fn https_upgrade(from: &url::Url, to: &url::Url) -> bool {
    from.scheme() == "http"
        && to.scheme() == "https"
        && from.host() == to.host()
        && from.port().is_none()
        && to.port().is_none()
}

/// Before a redirect to another origin (scheme, host or port), as browsers, curl and reqwest
/// do: credentials meant for one server must not reach another. `Authorization`,
/// `Proxy-Authorization` and a configured `Cookie` go (the jar still sends the next host the
/// cookies its own domain rules allow), and so does every header holding a known secret (an
/// environment value, an extracted token, a cookie) in any shape the redactor knows. Dropped
/// for the rest of the step: a redirect back does not bring them back.
fn drop_credentials(headers: &mut HeaderMap, redactor: &crate::redact::Redactor) {
    let secret: Vec<header::HeaderName> = headers
        .iter()
        .filter(|(name, value)| {
            matches!(
                **name,
                header::AUTHORIZATION | header::PROXY_AUTHORIZATION | header::COOKIE
            ) || value.to_str().map_or(true, |v| redactor.holds_secret(v))
        })
        .map(|(name, _)| name.clone())
        .collect();
    if !secret.is_empty() {
        tracing::debug!(
            dropped = %secret.iter().map(header::HeaderName::as_str).collect::<Vec<_>>().join(", "),
            "redirect to another origin: credentials not forwarded"
        );
    }
    for name in secret {
        headers.remove(name);
    }
}

/// A 307 or 308 to another origin resends the request body as it is: a login form's password
/// would reach a host it was never meant for. Headers can be dropped, a body cannot (the next
/// host would get a different request), so the step fails and says why instead.
fn refuse_secret_body(
    body: &Bytes,
    next: &url::Url,
    status: hyper::StatusCode,
    redactor: &crate::redact::Redactor,
) -> Result<(), StepError> {
    if body.is_empty() || !redactor.holds_secret(&String::from_utf8_lossy(body)) {
        return Ok(());
    }
    Err(StepError::new(
        FailureReason::Protocol,
        format!(
            "redirect {} to another origin `{}` refused: it would resend the request body, \
             which holds a credential",
            status.as_u16(),
            crate::redact::redact_url_text(next.as_str())
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_host_on_default_ports_is_an_https_upgrade() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(https_upgrade(
            &u("http://a.example/login"),
            &u("https://a.example/login")
        ));
        assert!(https_upgrade(
            &u("http://a.example:80/"),
            &u("https://a.example:443/x")
        ));
        for (from, to) in [
            ("http://a.example/", "https://b.example/"),
            ("http://a.example:8080/", "https://a.example:8443/"),
            ("http://a.example/", "https://a.example:8443/"),
            ("https://a.example/", "http://a.example/"),
            ("http://a.example/", "http://a.example:81/"),
        ] {
            assert!(!https_upgrade(&u(from), &u(to)), "{from} -> {to}");
        }
    }
}
