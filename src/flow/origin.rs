//! A URL whose origin a server chose: a value a reply carried (Nextcloud's signalling server
//! from its settings, a homeserver's base URL, a TURN URL from `iceServers`) in a step's `url`
//! where it decides the scheme, host or port. As for a redirect, the credentials the probe
//! holds do not follow it to another origin, and a value that came over TLS never sends a
//! request without it.

use hyper::HeaderMap;
use hyper::header;
use url::Url;

use super::context::RunContext;
use super::error::StepError;
use crate::redact::{Redactor, redact_url_text};
use crate::report::FailureReason;
use crate::template::Template;

/// Stands in for a server's value when looking at whether that value decides the origin.
const PLACEHOLDER: &str = "joincanary-origin-placeholder.invalid";

/// The values that decided a step's origin, and where each came from.
pub(crate) struct Named {
    /// The variable (for the error) and the URL of the reply or websocket that carried it
    /// (`None`: no URL did).
    by: Vec<(String, Option<Url>)>,
}

/// `Some` when a value a server sent decides the scheme, host or port of the URL `template`
/// renders to (`url`, as rendered): rendered again with that value replaced, the origin
/// changes (or the text is no URL at all). A value in the path or the query decides nothing.
/// In a URL without an origin to compare (`turn:host:port`) any server value counts.
pub(crate) fn named(ctx: &RunContext<'_>, template: &Template, url: &str) -> Option<Named> {
    let mut by: Vec<(String, Option<Url>)> = Vec::new();
    let origin = Url::parse(url).ok().map(|u| u.origin());
    for var in template.vars() {
        let Some(from) = ctx.sources.get(var) else {
            continue;
        };
        if by.iter().any(|(v, _)| v == var) {
            continue;
        }
        let mut values = ctx.vars.clone();
        values.insert(var.to_string(), PLACEHOLDER.to_string());
        let decides = match (&origin, template.render(&values)) {
            (Some(origin), Ok(text)) => {
                !origin.is_tuple() || Url::parse(&text).map_or(true, |u| u.origin() != *origin)
            }
            _ => true,
        };
        if decides {
            by.push((var.to_string(), from.clone()));
        }
    }
    (!by.is_empty()).then_some(Named { by })
}

/// What a request to a server-named origin carries that may need refusing.
pub(crate) struct Outgoing<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl Named {
    /// Refuses, with the reason and what to do: a request without TLS when the value that
    /// named it came over TLS (`tls`); to an origin other than the reply that named it, any
    /// credential that server did not hand out itself (`protocol`): a header named
    /// `Authorization`, `Proxy-Authorization` or `Cookie` that does not carry a value it
    /// gave, any header, the URL (user info, path, query), the body or a credential holding
    /// a value from the environment or from another server. Cookies from the jar follow its
    /// domain rules, as everywhere.
    pub(crate) fn check(
        &self,
        ctx: &RunContext<'_>,
        to: &Url,
        out: &Outgoing<'_>,
    ) -> Result<(), StepError> {
        let (var, from) = &self.by[0];
        let named_by = match from {
            Some(f) => format!("`{{{{{var}}}}}`, from a reply of {}", origin_text(f)),
            None => format!("`{{{{{var}}}}}`, a value a server sent"),
        };
        let shown = redact_url_text(to.as_str());
        for (var, from) in &self.by {
            // A TURN URL is no downgrade: its credential never travels in clear.
            let plain = matches!(to.scheme(), "http" | "ws");
            if plain && from.as_ref().is_some_and(secure) {
                return Err(StepError::new(
                    FailureReason::Tls,
                    format!(
                        "`{shown}` (its origin from `{{{{{var}}}}}`, which came over TLS) \
                         refused: it would send the request without TLS"
                    ),
                ));
            }
        }
        if self
            .by
            .iter()
            .all(|(_, from)| from.as_ref().is_some_and(|f| same_origin(f, to)))
        {
            return Ok(());
        }
        let (foreign, given) = self.split(ctx, Some(to));
        let refuse = |what: String| {
            Err(StepError::new(
                FailureReason::Protocol,
                format!(
                    "`{shown}` (its origin from {named_by}) is another origin, and the {what} \
                     holds a credential that server did not hand out: refused, as for a \
                     redirect (write that server's URL in the probe, e.g. from the \
                     environment, to send it credentials)"
                ),
            ))
        };
        if foreign.holds_secret(to.as_str()) {
            return refuse("URL".into());
        }
        for (name, value) in out.headers {
            let text = String::from_utf8_lossy(value.as_bytes());
            let by_name = matches!(
                *name,
                header::AUTHORIZATION | header::PROXY_AUTHORIZATION | header::COOKIE
            );
            if foreign.holds_secret(&text) || (by_name && !given.holds_secret(&text)) {
                return refuse(format!("`{name}` header"));
            }
        }
        if !out.body.is_empty() && foreign.holds_secret(&String::from_utf8_lossy(out.body)) {
            return refuse("request body".into());
        }
        Ok(())
    }

    /// A `turn` step whose URL a server named (the join's `iceServers`): the probe's own REST
    /// `secret` would key a credential for a server the reply chose (and hand it a
    /// MESSAGE-INTEGRITY it could replay to the real one, or brute-force a weak static
    /// password from), so it is refused, as is a `username` or `credential` holding a value
    /// from the environment or another server. The join's own `iceServers` credential is what
    /// goes with the join's URL.
    pub(crate) fn check_turn(
        &self,
        ctx: &RunContext<'_>,
        secret: bool,
        credential: &[(&str, &str)],
    ) -> Result<(), StepError> {
        let (var, from) = &self.by[0];
        let named_by = match from {
            Some(f) => format!("`{{{{{var}}}}}`, from a reply of {}", origin_text(f)),
            None => format!("`{{{{{var}}}}}`, a value a server sent"),
        };
        let (foreign, _) = self.split(ctx, None);
        let what = if secret {
            Some("`secret` would key a credential for it")
        } else if credential.iter().any(|(_, v)| foreign.holds_secret(v)) {
            Some("credential holds a value that server did not hand out")
        } else {
            None
        };
        match what {
            Some(what) => Err(StepError::new(
                FailureReason::Protocol,
                format!(
                    "the TURN URL came from {named_by}, and the step's {what}: refused (write \
                     the TURN server's URL in the probe to use the probe's own credential, or \
                     take the join's `iceServers` username and credential with its URL)"
                ),
            )),
            None => Ok(()),
        }
    }

    /// The run's values split by who may receive them at `to` (`None`: a URL without an
    /// origin, a TURN server's): what the naming servers (or `to` itself) handed out, and
    /// everything else: the plan's secrets and what other servers sent.
    fn split(&self, ctx: &RunContext<'_>, to: Option<&Url>) -> (Redactor, Redactor) {
        let mut foreign = ctx.plan_redactor.clone();
        let mut given = Redactor::default();
        for (name, from) in &ctx.sources {
            let Some(value) = ctx.vars.get(name) else {
                continue;
            };
            let theirs = from.as_ref().is_some_and(|f| {
                to.is_some_and(|to| same_origin(f, to))
                    || self
                        .by
                        .iter()
                        .any(|(_, n)| n.as_ref().is_some_and(|n| same_origin(f, n)))
            });
            if theirs {
                given.add(value.clone());
            } else {
                foreign.add(value.clone());
            }
        }
        (foreign, given)
    }
}

/// `https`, `wss`: the value came over TLS.
fn secure(u: &Url) -> bool {
    matches!(u.scheme(), "https" | "wss")
}

/// One origin, a websocket counted as its http(s) twin (`wss://h` is `https://h`'s), and
/// `http://h` to `https://h` on default ports (the same server asking for TLS) as a redirect
/// takes it.
fn same_origin(a: &Url, b: &Url) -> bool {
    let web = |u: &Url| {
        match u.scheme() {
            "ws" => "http",
            "wss" => "https",
            s => s,
        }
        .to_string()
    };
    let (sa, sb) = (web(a), web(b));
    let hosts = a.host_str().is_some() && a.host_str() == b.host_str();
    hosts
        && ((sa == sb && a.port_or_known_default() == b.port_or_known_default())
            || (sa == "http" && sb == "https" && a.port().is_none() && b.port().is_none()))
}

/// `scheme://host:port` of a URL, for an error.
fn origin_text(u: &Url) -> String {
    u.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websockets_count_as_their_http_twin_and_tls_upgrades_as_a_redirect_does() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_origin(
            &u("https://a.example/x"),
            &u("wss://a.example/y")
        ));
        assert!(same_origin(
            &u("http://a.example:8080/"),
            &u("ws://a.example:8080/s")
        ));
        assert!(same_origin(
            &u("http://a.example/"),
            &u("https://a.example/")
        ));
        for (a, b) in [
            ("https://a.example/", "http://a.example/"),
            ("https://a.example/", "https://b.example/"),
            ("http://a.example:8080/", "ws://a.example:8081/"),
            ("http://a.example:8080/", "https://a.example:8443/"),
        ] {
            assert!(!same_origin(&u(a), &u(b)), "{a} {b}");
        }
    }
}
