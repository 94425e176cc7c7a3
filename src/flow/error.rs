//! A failed step: [`StepError`], a stable reason and a human message (scrubbed before it
//! leaves the engine), and what tells the prober's own failures (out of fds, memory, ports)
//! apart from the platform's.

use crate::redact::quote;
use crate::report::FailureReason;

/// Longest snippet of a reply quoted in an error.
const SNIPPET_CHARS: usize = 160;

/// A failed step: a stable reason and a human message (scrubbed before it leaves the engine).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub reason: FailureReason,
    pub message: String,
}

impl StepError {
    pub fn new(reason: FailureReason, message: impl Into<String>) -> StepError {
        StepError {
            reason,
            message: message.into(),
        }
    }

    /// `reason`, unless `cause` says the prober itself ran out of something (fds, memory,
    /// local ports): then `local`, so the run is not taken for a platform outage.
    pub fn caused_by(
        reason: FailureReason,
        message: impl Into<String>,
        cause: &(dyn std::error::Error + 'static),
    ) -> StepError {
        match local_cause(cause) {
            Some(what) => StepError::new(
                FailureReason::Local,
                format!("this prober is {what}: {}", message.into()),
            ),
            None => StepError::new(reason, message),
        }
    }
}

/// A quoted, truncated, single-line view of a reply for error messages.
pub(crate) fn snippet(bytes: &[u8]) -> String {
    quote(&String::from_utf8_lossy(bytes), SNIPPET_CHARS)
}

/// A reply whose status was not accepted (`http_status`; `ws_handshake` for a refused
/// upgrade), `story` saying which status was expected and quoting the reply. When the reply names
/// its cause — a JSON error's `error` / `message` (as [`server_error`] reads a frame), an HTML
/// page's `<title>` — the message opens with the status and those words (`HTTP 500: injected
/// fault: login_status`, `HTTP 502 Bad Gateway`), then [`CAUSE_END`](crate::report::CAUSE_END)
/// and the story: the page's first line takes the words before it, and a pager that cuts the
/// line (Opsgenie's 130 characters) still shows what the server said, not its JSON or markup.
///
/// A 401 or 407 whose body names nothing says its challenge instead (`WWW-Authenticate` /
/// `Proxy-Authenticate`): an OAuth bearer's `error` and `error_description` (RFC 6750: an
/// expired or revoked token, with an empty body), else the challenge itself (`Basic
/// realm="…"`: the credentials were not taken, or none reached the server).
pub(crate) fn refused_status(
    reason: FailureReason,
    status: u16,
    story: String,
    body: &[u8],
    headers: &hyper::HeaderMap,
) -> StepError {
    let Some(cause) = body_cause(body).or_else(|| challenge_cause(status, headers)) else {
        return StepError::new(reason, story);
    };
    let code = status.to_string();
    let opening = if cause.starts_with(&code) {
        format!("HTTP {}", quote(&cause, CAUSE_CHARS))
    } else {
        format!("HTTP {code}: {}", quote(&cause, CAUSE_CHARS))
    };
    StepError::new(
        reason,
        format!("{opening}{}{story}", crate::report::CAUSE_END),
    )
}

/// How far into an HTML reply its `<title>` is looked for: it is in the head.
const TITLE_WITHIN: usize = 8 * 1024;

/// The words a refusing reply names its cause with: a JSON body's error text, or an HTML page's
/// title, whitespace folded. `None` for anything else (a plain-text body is quoted as it is).
fn body_cause(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&body[..body.len().min(TITLE_WITHIN)]);
    let trimmed = text.trim_start();
    let cause = if trimmed.starts_with(['{', '[']) {
        super::protocol::cause(&String::from_utf8_lossy(body))?
    } else {
        let lower = text.to_ascii_lowercase();
        let open = lower.find("<title")?;
        let start = open + lower[open..].find('>')? + 1;
        let end = start + lower[start..].find("</title")?;
        text[start..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let cause = cause.trim().to_string();
    (!cause.is_empty()).then_some(cause)
}

/// What a 401's `WWW-Authenticate` (a 407's `Proxy-Authenticate`) says: its `error` and
/// `error_description` when it has them, else the header named with its value (the first one).
fn challenge_cause(status: u16, headers: &hyper::HeaderMap) -> Option<String> {
    let name = match status {
        401 => hyper::header::WWW_AUTHENTICATE,
        407 => hyper::header::PROXY_AUTHENTICATE,
        _ => return None,
    };
    let value = String::from_utf8_lossy(headers.get(&name)?.as_bytes()).into_owned();
    let value = value.trim();
    let cause = match (
        auth_param(value, "error"),
        auth_param(value, "error_description"),
    ) {
        (Some(e), Some(d)) => format!("{e}: {d}"),
        (Some(one), None) | (None, Some(one)) => one.to_string(),
        (None, None) if value.is_empty() => return None,
        (None, None) => format!("{}: {value}", canonical(&name)),
    };
    Some(cause)
}

/// The header's name as RFC 9110 writes it (the map keeps them lower case).
fn canonical(name: &hyper::header::HeaderName) -> &'static str {
    if name == hyper::header::PROXY_AUTHENTICATE {
        "Proxy-Authenticate"
    } else {
        "WWW-Authenticate"
    }
}

/// An auth-param's value in a challenge (`name="quoted"` or `name=token`), RFC 9110 11.2; the
/// name matched whole, in any case.
fn auth_param<'a>(challenge: &'a str, name: &str) -> Option<&'a str> {
    let lower = challenge.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find(name).map(|i| i + from) {
        from = at + name.len();
        let starts = at == 0 || lower[..at].ends_with([' ', ',', '\t']);
        let rest = lower[from..].trim_start();
        if !starts || !rest.starts_with('=') {
            continue;
        }
        let value = challenge[challenge.len() - rest.len() + 1..].trim_start();
        let value = match value.strip_prefix('"') {
            Some(quoted) => &quoted[..quoted.find('"').unwrap_or(quoted.len())],
            None => value.split([',', ' ']).next().unwrap_or_default(),
        };
        return (!value.trim().is_empty()).then_some(value.trim());
    }
    None
}

/// `server_error` quoting what the server sent, the part that names the cause first (an XMPP
/// error's condition and text, a JSON error's `error` / `message`): the JIDs and ids around it
/// would otherwise fill the quote, and the page's first line takes the error up to ` — `
/// (see `alert::render::cause_fragment`).
pub(crate) fn server_error(what: &str, frame: &str) -> StepError {
    let quoted = crate::redact::quote(frame, SERVER_ERROR_CHARS);
    let message = match super::protocol::cause(frame) {
        Some(cause) => format!(
            "{}{}{what}: {quoted}",
            crate::redact::quote(&cause, CAUSE_CHARS),
            crate::report::CAUSE_END
        ),
        None => format!("{what}: {quoted}"),
    };
    StepError::new(FailureReason::ServerError, message)
}

/// Longest quote of a server's error frame in a step error (and so in the page).
const SERVER_ERROR_CHARS: usize = 300;
/// Longest quote of the cause named in a server's error frame.
const CAUSE_CHARS: usize = 160;

/// What the prober itself ran out of, if that is why `e` happened: the error's source chain
/// (reqwest -> hyper -> `io::Error`, tungstenite -> `io::Error`, redis -> `io::Error`) is walked
/// for an OS error that names the prober's own resources rather than the peer or the network.
pub(crate) fn local_cause(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    // Bounded: a chain is a handful of links; a cyclic `source()` must not loop forever.
    let mut next = Some(e);
    for _ in 0..32 {
        let current = next?;
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            if let Some(what) = io_local_cause(io) {
                return Some(what);
            }
            // A custom io::Error's `source()` skips the error it wraps: look inside it too.
            if let Some(inner) = io.get_ref()
                && let Some(what) = local_cause(inner)
            {
                return Some(what);
            }
        }
        next = current.source();
    }
    None
}

fn io_local_cause(io: &std::io::Error) -> Option<&'static str> {
    if io.kind() == std::io::ErrorKind::OutOfMemory {
        return Some("out of memory");
    }
    match io.raw_os_error()? {
        libc::EMFILE => Some("out of file descriptors (process limit)"),
        libc::ENFILE => Some("out of file descriptors (system limit)"),
        libc::ENOMEM => Some("out of memory"),
        libc::ENOBUFS => Some("out of socket buffers"),
        libc::EADDRNOTAVAIL => Some("out of local ports"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error wrapping another, as hyper and reqwest wrap the io::Error.
    #[derive(Debug)]
    struct Wrapper(std::io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection error")
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn local_causes_are_found_anywhere_in_the_chain() {
        for (errno, local) in [
            (libc::EMFILE, true),
            (libc::ENFILE, true),
            (libc::ENOBUFS, true),
            (libc::ENOMEM, true),
            (libc::EADDRNOTAVAIL, true),
            (libc::ECONNREFUSED, false),
            (libc::ECONNRESET, false),
            (libc::ENETUNREACH, false),
            (libc::EAGAIN, false),
        ] {
            let direct = std::io::Error::from_raw_os_error(errno);
            assert_eq!(local_cause(&direct).is_some(), local, "errno {errno}");
            let wrapped = Wrapper(std::io::Error::from_raw_os_error(errno));
            assert_eq!(
                local_cause(&wrapped).is_some(),
                local,
                "wrapped errno {errno}"
            );
            // A custom io::Error around it (what tokio and rustls build).
            let custom = std::io::Error::other(Wrapper(std::io::Error::from_raw_os_error(errno)));
            assert_eq!(
                local_cause(&custom).is_some(),
                local,
                "custom errno {errno}"
            );
        }
        let e = StepError::caused_by(
            FailureReason::Connect,
            "cannot connect to 127.0.0.1:1",
            &std::io::Error::from_raw_os_error(libc::EMFILE),
        );
        assert_eq!(e.reason, FailureReason::Local);
        assert!(
            e.message.contains("out of file descriptors"),
            "{}",
            e.message
        );
    }

    /// The refused reply's own words open the message, as the page's first line reads them.
    #[test]
    fn a_refused_status_opens_with_what_the_reply_said() {
        let shown = |status: u16, body: &str| {
            let e = refused_status(
                FailureReason::HttpStatus,
                status,
                format!(
                    "status {status} (expected 200): {}",
                    snippet(body.as_bytes())
                ),
                body.as_bytes(),
                &hyper::HeaderMap::new(),
            );
            crate::redact::finish(&crate::redact::Redactor::new([]), &e.message)
        };
        assert_eq!(
            shown(500, r#"{"error":"injected fault: login_status"}"#),
            r#"HTTP 500: injected fault: login_status — status 500 (expected 200): {"error":"injected fault: login_status"}"#
        );
        // An OAuth-style error: the code, then its description.
        assert!(
            shown(
                401,
                r#"{"error":{"code":"invalid_token","message":"expired"}}"#
            )
            .starts_with("HTTP 401: invalid_token: expired — ")
        );
        // An nginx error page: its title, which already says the status.
        let nginx =
            "<html>\r\n<head><title>502 Bad\r\n Gateway</title></head>\r\n<body>…</body></html>";
        assert!(
            shown(502, nginx)
                .starts_with("HTTP 502 Bad Gateway — status 502 (expected 200): <html>"),
            "{}",
            shown(502, nginx)
        );
        assert!(shown(403, "<HTML><TITLE>Forbidden</TITLE>").starts_with("HTTP 403: Forbidden — "));
        // Nothing that names a cause: the message as it always was.
        for body in [
            "",
            "upstream connect error",
            "<html><body>no title</body></html>",
            "{}",
            "{\"error\":\"  \"}",
        ] {
            assert!(
                shown(503, body).starts_with("status 503 (expected 200)"),
                "{body:?}: {}",
                shown(503, body)
            );
        }
    }

    /// A 401 with an empty body (an expired bearer token, Basic credentials not taken) says
    /// the server's challenge; a body that names a cause still wins, and other statuses and
    /// an empty challenge keep the message as it was.
    #[test]
    fn a_refused_401_without_words_says_its_challenge() {
        let shown = |status: u16, body: &str, header: Option<(&str, &str)>| {
            let mut headers = hyper::HeaderMap::new();
            if let Some((name, value)) = header {
                headers.insert(
                    hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            let story = format!(
                "status {status} (expected 200): {}",
                snippet(body.as_bytes())
            );
            let e = refused_status(
                FailureReason::HttpStatus,
                status,
                story,
                body.as_bytes(),
                &headers,
            );
            crate::redact::finish(&crate::redact::Redactor::new([]), &e.message)
        };
        let bearer = r#"Bearer realm="api", error="invalid_token", error_description="The access token expired""#;
        assert_eq!(
            shown(401, "", Some(("www-authenticate", bearer))),
            "HTTP 401: invalid_token: The access token expired — status 401 (expected 200): "
        );
        assert!(
            shown(
                401,
                "",
                Some(("WWW-Authenticate", "Bearer error=insufficient_scope"))
            )
            .starts_with("HTTP 401: insufficient_scope — ")
        );
        assert!(
            shown(
                401,
                "",
                Some((
                    "WWW-Authenticate",
                    r#"Basic realm="Nextcloud", charset="UTF-8""#
                ))
            )
            .starts_with(
                r#"HTTP 401: WWW-Authenticate: Basic realm="Nextcloud", charset="UTF-8" — "#
            )
        );
        // `myerror=` is not `error=`.
        assert!(
            shown(401, "", Some(("WWW-Authenticate", r#"Custom myerror="x""#)))
                .starts_with(r#"HTTP 401: WWW-Authenticate: Custom myerror="x" — "#)
        );
        assert!(
            shown(
                407,
                "",
                Some(("Proxy-Authenticate", r#"Basic realm="proxy""#))
            )
            .starts_with(r#"HTTP 407: Proxy-Authenticate: Basic realm="proxy" — "#)
        );
        assert!(
            shown(
                401,
                r#"{"error":"M_UNKNOWN_TOKEN"}"#,
                Some(("WWW-Authenticate", bearer))
            )
            .starts_with("HTTP 401: M_UNKNOWN_TOKEN — ")
        );
        assert!(shown(403, "", Some(("WWW-Authenticate", bearer))).starts_with("status 403"));
        assert!(shown(401, "", None).starts_with("status 401"));
    }
}
