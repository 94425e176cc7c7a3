//! The one interface every provider sits behind, the shared HTTP sender, and the split of
//! delivery failures into retryable (the network, 429, 5xx) and permanent (a configuration error).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::Notification;
use crate::net::error_chain;

/// Why one delivery attempt failed. The text never holds a secret or a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying: a timeout, a connection error, 429, 5xx, an SMTP 4xx.
    #[error("{0}")]
    Retryable(String),
    /// Retrying cannot help: the provider refused the request (bad key, bad payload).
    #[error("{0}")]
    Permanent(String),
    /// Worth retrying, but the provider asked for a pause first: a 429 or 503 with
    /// `Retry-After` (seconds or an HTTP-date, as a wait from now).
    #[error("{0} (retry after {after})", after = crate::report::human_duration(*.1))]
    RetryAfter(String, Duration),
}

impl DeliveryError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DeliveryError::Retryable(_) | DeliveryError::RetryAfter(..)
        )
    }

    /// How long the provider asked us to wait before the next attempt, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DeliveryError::RetryAfter(_, after) => Some(*after),
            _ => None,
        }
    }

    /// Scrubbed of the pager's secrets, then made one line (a pager's reply is quoted in it,
    /// and `test-page` prints it to a terminal: no escape sequence or forged line gets
    /// through) and cut to [`MAX_DELIVERY_ERROR_CHARS`] (after: a secret straddling the cut
    /// would leave half of itself behind).
    pub(crate) fn scrub(self, redactor: &crate::redact::Redactor) -> DeliveryError {
        let clean = |m: &str| {
            let line: String = crate::redact::one_line(&redactor.scrub(m)).collect();
            crate::report::cut(&line, MAX_DELIVERY_ERROR_CHARS)
        };
        match self {
            DeliveryError::Retryable(m) => DeliveryError::Retryable(clean(&m)),
            DeliveryError::Permanent(m) => DeliveryError::Permanent(clean(&m)),
            DeliveryError::RetryAfter(m, after) => DeliveryError::RetryAfter(clean(&m), after),
        }
    }
}

/// Characters of a delivery error kept (logs, `test-page`): an SMTP server's refusal holds
/// every line of its reply, up to lettre's 100,000 bytes; an HTTP pager's quotes
/// [`ERROR_BODY_CHARS`] of the body, well within this.
pub const MAX_DELIVERY_ERROR_CHARS: usize = 1000;

/// The future a notifier returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>>;

/// The future of [`Notifier::catch_up`].
pub type CatchUpFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Delivers one notification to one provider, once (the dispatcher owns retries).
pub trait Notifier: Send + Sync {
    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a>;

    /// Called on every resend tick of an Alertmanager pager: re-posts what a member of an HA
    /// pair missed (the others have nothing to catch up on).
    fn catch_up<'a>(&'a self) -> CatchUpFuture<'a> {
        Box::pin(std::future::ready(()))
    }
}

/// One HTTP request a provider wants sent. Built by pure functions so payloads are unit-tested;
/// `Debug` hides the URL and header values (they may hold secrets).
#[derive(Clone, PartialEq)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("url", &"[redacted]")
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("body", &redacted_body(&self.body))
            .finish()
    }
}

/// The body with PagerDuty's `routing_key` (the only secret a provider puts in a body) hidden.
fn redacted_body(body: &serde_json::Value) -> serde_json::Value {
    let mut body = body.clone();
    if let Some(k) = body.get_mut("routing_key") {
        *k = serde_json::Value::String("[redacted]".into());
    }
    body
}

/// The process-wide client for pagers: rustls, no redirects (a redirect would carry a secret
/// header to another host), no connection reuse surprises across pagers.
pub fn http_client() -> Result<reqwest::Client, DeliveryError> {
    build_client(None)
}

/// The client for one pager: the shared one, or its own when it has a `tls_config`
/// ([`crate::tls_client`]), with the same settings otherwise.
pub fn client_for(
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
    shared: &Result<reqwest::Client, DeliveryError>,
) -> Result<reqwest::Client, DeliveryError> {
    match tls {
        None => shared.clone(),
        Some(_) => build_client(tls),
    }
}

fn build_client(
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
) -> Result<reqwest::Client, DeliveryError> {
    crate::tls_client::http_builder(tls)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("joincanary/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            DeliveryError::Permanent(format!(
                "cannot build an HTTP client: {}",
                error_chain(&e.without_url())
            ))
        })
}

/// Sends a POST and classifies the outcome.
pub async fn post(
    client: &reqwest::Client,
    req: &Request,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let mut builder = client.post(&req.url).timeout(timeout).json(&req.body);
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    let resp = builder
        .send()
        .await
        .map_err(|e| classify_reqwest(e, timeout))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    if status.is_redirection() {
        // Never followed (the request carries the pager's key or token, and only the
        // configured URL may have it), but said as a redirect, with the origin it pointed to:
        // `HTTP 307` alone reads like a refusal. Only scheme, host and port, as everywhere a
        // pager's URL is shown: a proxy sending `http://…/services/T0/B0/<key>` to its https
        // self, or a provider to a new hook URL, names the key in the rest.
        let to: String = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| resp.url().join(l).ok())
            .map(|u| {
                let origin = u.origin().ascii_serialization();
                let rest = if u.path() == "/" && u.query().is_none() {
                    ""
                } else {
                    "/…"
                };
                format!("{origin}{rest}")
                    .chars()
                    .take(LOCATION_CHARS)
                    .collect()
            })
            .unwrap_or_default();
        return Err(classify_status(
            status.as_u16(),
            format!(
                "HTTP {status}: a redirect to `{to}`, not followed (a page goes to the configured \
                 URL only; it carries the pager's key)"
            ),
        ));
    }
    // Only where the header means "come back later" (RFC 9110 §10.2.3): throttled or down.
    let retry_after = matches!(status.as_u16(), 429 | 503)
        .then(|| resp.headers().get(reqwest::header::RETRY_AFTER))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
    // A little of the body helps on-call fix a config ("invalid routing key"); capped, and the
    // caller scrubs it of secrets.
    let body = tokio::time::timeout(timeout, read_at_most(resp, MAX_ERROR_BODY_BYTES))
        .await
        .unwrap_or_default();
    let snippet: String = String::from_utf8_lossy(&body)
        .chars()
        .take(ERROR_BODY_CHARS)
        .collect();
    let msg = if snippet.trim().is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {}", snippet.trim())
    };
    Err(match retry_after {
        Some(after) => DeliveryError::RetryAfter(msg, after),
        None => classify_status(status.as_u16(), msg),
    })
}

/// Characters of a redirect's `Location` quoted in the delivery error.
const LOCATION_CHARS: usize = 200;

/// Characters of a pager's error reply quoted in the delivery error.
const ERROR_BODY_CHARS: usize = 300;

/// Bytes of a pager's error reply read at most: the quoted characters and room for the UTF-8
/// they may take. A pager (or a proxy before it) answering an error with hundreds of
/// megabytes must not grow the prober's memory: the rest is never read.
pub const MAX_ERROR_BODY_BYTES: usize = 4 * 1024;

/// The first `cap` bytes of a reply's body (fewer if it ends or breaks first); the connection
/// is dropped with the rest unread.
async fn read_at_most(mut resp: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < cap {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(cap - body.len());
                body.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body
}

/// A `Retry-After` value as a wait from `now`: delay-seconds or an HTTP-date (a date in the past
/// is no wait). `None` when it is neither: the backoff applies as if it were absent.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurd values saturate; the dispatcher caps the wait at the backoff cap anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// 408, 429 and 5xx are the provider's or the network's trouble, and so is a temporary
/// redirect (302, 303, 307: a proxy or a maintenance page in the way, which a later attempt may
/// not meet); other statuses mean our request is wrong, or the URL moved for good (301, 308),
/// and resending it will not help.
pub fn classify_status(status: u16, msg: String) -> DeliveryError {
    if matches!(status, 302 | 303 | 307 | 408 | 429) || status >= 500 {
        DeliveryError::Retryable(msg)
    } else {
        DeliveryError::Permanent(msg)
    }
}

fn classify_reqwest(e: reqwest::Error, timeout: Duration) -> DeliveryError {
    // Where it could not connect, as the email pager says it: the host and port (never the
    // path or query, which may be the pager's secret), then the cause without reqwest's and
    // hyper's wrappers (`error sending request: client error (Connect): …`).
    let to = e
        .url()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)));
    let e = e.without_url();
    if let (true, Some(to)) = (e.is_connect() && !e.is_timeout(), to) {
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(&e).and_then(|s| s.source());
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        let cause = if causes.is_empty() {
            error_chain(&e)
        } else {
            causes.join(": ")
        };
        return DeliveryError::Retryable(tls_hint(format!("cannot connect to {to}: {cause}")));
    }
    if e.is_timeout() {
        return DeliveryError::Retryable(format!(
            "no reply within {}",
            crate::report::human_duration(timeout)
        ));
    }
    if e.is_builder() {
        return DeliveryError::Permanent(format!("cannot build the request: {}", error_chain(&e)));
    }
    DeliveryError::Retryable(tls_hint(error_chain(&e)))
}

/// A failed TLS handshake with the key of the pager's `tls_config` that would mend it
/// ([`crate::tls_client::hint`]).
pub(crate) fn tls_hint(message: String) -> String {
    crate::tls_client::hint(message, "the pager's")
}

/// Builds a request with a provider's pure builder for each notification.
pub(crate) type BuildFn = Box<dyn Fn(&Notification) -> Request + Send + Sync>;

/// The notifier of an HTTP provider: builds the request with `build`, posts it, and scrubs
/// every secret of the pager from the error.
pub(crate) fn http_notifier(
    timeout: Duration,
    redactor: crate::redact::Redactor,
    client: &reqwest::Client,
    build: BuildFn,
) -> Box<dyn Notifier> {
    Box::new(HttpNotifier {
        timeout,
        redactor,
        client: client.clone(),
        build,
    })
}

struct HttpNotifier {
    timeout: Duration,
    redactor: crate::redact::Redactor,
    client: reqwest::Client,
    build: BuildFn,
}

impl Notifier for HttpNotifier {
    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move {
            let req = (self.build)(n);
            post(&self.client, &req, self.timeout)
                .await
                .map_err(|e| e.scrub(&self.redactor))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert!(classify_status(500, String::new()).is_retryable());
        assert!(classify_status(503, String::new()).is_retryable());
        assert!(classify_status(429, String::new()).is_retryable());
        assert!(!classify_status(400, String::new()).is_retryable());
        assert!(!classify_status(403, String::new()).is_retryable());
        for temporary in [302, 303, 307] {
            assert!(classify_status(temporary, String::new()).is_retryable());
        }
        for moved in [301, 308] {
            assert!(!classify_status(moved, String::new()).is_retryable());
        }
    }

    #[test]
    fn a_failed_handshake_names_the_tls_config_key_that_mends_it() {
        let hint = |m: &str| tls_hint(m.to_string());
        assert!(
            hint("invalid peer certificate: UnknownIssuer")
                .ends_with("(a private CA goes in the pager's `tls_config.ca_file`)")
        );
        assert!(hint("certificate not valid for name \"10.0.0.7\"; certificate is only valid for DnsName(\"am\")").ends_with("goes in the pager's `tls_config.server_name`)"));
        for refused in [
            "received fatal alert: BadCertificate",
            "received fatal alert: CertificateRequired",
        ] {
            assert!(
                hint(refused).ends_with("`tls_config.cert_file` and `key_file`)"),
                "{refused}"
            );
        }
        assert_eq!(hint("connection refused"), "connection refused");
    }
}
