//! [`RunContext`]: what the steps of one run share (variables, cookies, open websockets) and
//! what the current step leaves for its report (phases, gauges, warnings); [`Cookies`]: the
//! run's shared cookie jar and each named participant's own.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::{CookieStore, Jar};
use tokio::time::Instant;

use super::error::StepError;
use super::long_poll;
use super::webrtc::peer::Participant;
use super::ws;
use crate::report::{FailureReason, Phase};

/// State shared by the steps of one run.
pub(crate) struct RunContext<'a> {
    /// The probe's name (for logs).
    pub probe: &'a str,
    /// The probe's cap on a reply (body, message, Redis reply).
    pub max_body_bytes: usize,
    /// TLS settings when the probe trusts extra CAs; `None` uses the system roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub vars: HashMap<String, String>,
    /// The JSON value of each variable extracted from JSON as other than a string (a number,
    /// a boolean, …): a JSON pattern or body whose leaf is that one hole renders it with its
    /// type ([`crate::template::render_json`]). Bounded by the plan's extractions.
    pub typed: HashMap<String, serde_json::Value>,
    pub cookies: Cookies,
    /// Open websockets by connection name (`""` is the default one).
    pub ws: BTreeMap<String, ws::Connection>,
    /// WebRTC peers offered or answered, not yet connected, or publishing, by connection name.
    pub webrtc: BTreeMap<String, Participant>,
    /// Long polls read as event streams (`http` steps with `batch`, WebRTC taps with `poll`),
    /// by connection name.
    pub(crate) long_polls: BTreeMap<String, long_poll::Events>,
    /// The current step's deadline (its timeout or the probe's, whichever is first): kinds that
    /// run phases of their own stop each one there with the phase's reason.
    pub deadline: Instant,
    /// Which connection the last `ws_send` used and when it began: a following `ws_expect`
    /// records the round trip (same connection) or the fan-out (another one) from it, until a
    /// `ws_connect` ends the measurement.
    pub last_send: Option<(String, Instant)>,
    /// Phases measured so far by the current step; kept here so a timeout does not lose them.
    pub phases: BTreeMap<Phase, Duration>,
    /// The connection phase under way (dns, connect, tls) and since when: a timeout names it
    /// and still reports its time.
    pub pending: Option<(Phase, Instant)>,
    /// Frames read by the current `ws_expect` (for the no-match message after a timeout).
    pub frames_seen: usize,
    /// Why the last frame the current `ws_expect` read did not match (quoted in `no_match`).
    pub last_miss: Option<String>,
    pub redactor: crate::redact::Redactor,
    /// The plan's own secrets (values from the environment), without what the run learnt:
    /// what never follows a URL a server named to another origin ([`super::origin`]).
    pub plan_redactor: crate::redact::Redactor,
    /// Where each value a server sent came from: the URL of the reply (an `http` step's,
    /// after its redirects) or of the websocket (a `ws_expect`'s) that carried it; `None`
    /// when no URL did (a `webrtc` step's own SDP). One entry per extracted variable of the
    /// plan, so bounded by it.
    pub sources: HashMap<String, Option<url::Url>>,
    /// The connection about to be opened goes where a server pointed (a URL a value it sent
    /// decides the origin of, a redirect): [`super::net::open`] then refuses the addresses
    /// cloud metadata services answer on. The open takes (resets) it.
    pub server_chosen: bool,
    /// The current step's name, gauges read and thresholds crossed (redis, http_json).
    pub step_name: String,
    pub gauges: BTreeMap<String, f64>,
    /// The earliest expiry among the certificates presented in the current step's TLS
    /// handshakes (`probe_ssl_earliest_cert_expiry`).
    pub cert_expiry: Option<chrono::DateTime<chrono::Utc>>,
    pub warnings: Vec<String>,
    /// What the current step waits for, when it says (for the timeout message).
    pub waiting: &'static str,
    /// The caller's wall clock (the scheduler's): a step reads "now" here, on tokio's clock,
    /// so under a paused clock in tests too.
    pub clock: crate::clock::Clock,
}

impl RunContext<'_> {
    /// Stores an extracted value, and where it came from (`from`: the reply's or the
    /// websocket's URL); extracted values are treated as secrets (tokens, session ids).
    /// `typed`: the value's JSON when it came from JSON as other than a string (see
    /// [`Self::typed`]); a value set again without one forgets the old type.
    pub fn set_var(
        &mut self,
        name: &str,
        value: String,
        typed: Option<serde_json::Value>,
        from: Option<&url::Url>,
    ) {
        self.add_secret(&value);
        self.vars.insert(name.to_string(), value);
        match typed {
            Some(j) => self.typed.insert(name.to_string(), j),
            None => self.typed.remove(name),
        };
        self.sources.insert(name.to_string(), from.cloned());
    }

    /// Renders a JSON pattern or body for this run (values keep their JSON type where a leaf
    /// is one hole).
    pub fn render_json(&self, value: &serde_json::Value) -> Result<serde_json::Value, StepError> {
        crate::template::render_json(value, &self.vars, &self.typed)
            .map_err(|e| StepError::new(FailureReason::Protocol, e.to_string()))
    }

    /// Records a number the step read. One that is not finite (a server's `nan` or `inf`,
    /// a ratio that overflowed) is not kept: JSON has no such number, so the status document
    /// would carry it as `null`, and every peer and the history file's next read would refuse
    /// the whole document for it.
    pub fn gauge(&mut self, name: impl Into<String>, value: f64) {
        if value.is_finite() {
            self.gauges.insert(name.into(), value);
        }
    }

    /// A secret is scrubbed in every encoding (the redactor's own business).
    pub(crate) fn add_secret(&mut self, value: &str) {
        self.redactor.add(value.to_string());
    }

    /// Renders a step's `headers` table.
    pub fn render_headers(
        &self,
        headers: &[(String, crate::template::Template)],
    ) -> Result<hyper::HeaderMap, StepError> {
        let mut out = hyper::HeaderMap::new();
        for (name, value) in headers {
            let rendered = self.render(value)?;
            let name = hyper::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                StepError::new(
                    FailureReason::Protocol,
                    format!("`{name}` is not a header name"),
                )
            })?;
            let value = hyper::header::HeaderValue::from_str(&rendered).map_err(|_| {
                StepError::new(
                    FailureReason::Protocol,
                    format!("header `{name}` has a value that cannot be sent"),
                )
            })?;
            out.insert(name, value);
        }
        Ok(out)
    }

    /// The open websocket `name`.
    pub(crate) fn socket(&mut self, name: &str) -> Result<&mut ws::Connection, StepError> {
        self.ws.get_mut(name).ok_or_else(|| {
            StepError::new(
                FailureReason::WsClosed,
                "no websocket is open (did ws_connect fail or ws_close run?)",
            )
        })
    }

    pub fn render(&self, t: &crate::template::Template) -> Result<String, StepError> {
        t.render(&self.vars)
            .map_err(|e| StepError::new(FailureReason::Protocol, e.to_string()))
    }
}

/// The cookies of one run. Steps without `connection` keep theirs in the shared jar, as one
/// browser would. A named connection is a participant of its own (another browser or app): an
/// `http` step with `connection = "b"` keeps the cookies it is sent in b's jar, and b's `http`
/// and `ws_connect` steps send b's cookies, then the shared ones b has none of by that name.
/// Two participants of one account need this where the platform keys its session to a cookie
/// (Nextcloud ends the Talk session of a conversation when the same cookie joins it again).
#[derive(Default)]
pub(crate) struct Cookies {
    shared: Jar,
    /// Bounded by the probe's named connections (its own config).
    own: BTreeMap<String, Jar>,
    /// The cookies each jar holds (`""`: the shared one), at most [`MAX_COOKIES`] each.
    keys: BTreeMap<String, std::collections::BTreeSet<CookieKey>>,
}

/// Cookies a jar keeps, and the size of one cookie, as browsers bound them (Chrome keeps 180
/// per domain; RFC 6265 6.1 asks for 4,096 bytes per cookie): a server setting fresh cookies
/// on every reply of a long resident session would otherwise grow the jar, and the `Cookie`
/// header sent back with every request, without bound. A cookie past either is ignored, as a
/// browser ignores it.
pub const MAX_COOKIES: usize = 180;
pub const MAX_COOKIE_BYTES: usize = 4096;

/// What a jar holds one cookie under (RFC 6265 5.3): its name, domain and path. Counting names
/// alone let one name set under hundreds of paths (`/d`, `/d/d`, …) fill the jar unbounded.
type CookieKey = (String, String, String);

/// `c`'s key as the jar files it: the `Domain` attribute, else the host that set it; the
/// `Path` attribute, else the directory of the URL that set it (RFC 6265 5.1.4).
fn cookie_key(c: &cookie::Cookie<'_>, url: &url::Url) -> CookieKey {
    let domain = c
        .domain()
        .map(|d| d.trim_start_matches('.'))
        .or(url.host_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let path = match c.path() {
        Some(p) if p.starts_with('/') => p.to_string(),
        _ => match url.path().rfind('/') {
            Some(end) if end > 0 => url.path()[..end].to_string(),
            _ => "/".to_string(),
        },
    };
    (c.name().to_string(), domain, path)
}

/// The `Set-Cookie` headers of a reply from `url` a jar takes: each at most
/// [`MAX_COOKIE_BYTES`], and only while it holds fewer than [`MAX_COOKIES`] cookies (one it
/// already holds is always updated).
fn kept_cookies(
    headers: &hyper::HeaderMap,
    url: &url::Url,
    keys: &mut std::collections::BTreeSet<CookieKey>,
) -> Vec<hyper::header::HeaderValue> {
    let mut kept = Vec::new();
    for value in headers.get_all(hyper::header::SET_COOKIE) {
        let Some(c) = value
            .to_str()
            .ok()
            .filter(|_| value.len() <= MAX_COOKIE_BYTES)
            .and_then(|c| cookie::Cookie::parse(c).ok())
        else {
            continue;
        };
        let key = cookie_key(&c, url);
        if keys.contains(&key) || keys.len() < MAX_COOKIES {
            keys.insert(key);
            kept.push(value.clone());
        }
    }
    kept
}

impl Cookies {
    /// Keeps the `Set-Cookie`s of a reply from `url` where `connection`'s steps keep theirs,
    /// within the jar's bounds; returns the ones kept.
    pub fn store(
        &mut self,
        connection: &str,
        headers: &hyper::HeaderMap,
        url: &url::Url,
    ) -> Vec<hyper::header::HeaderValue> {
        let kept = kept_cookies(
            headers,
            url,
            self.keys.entry(connection.to_string()).or_default(),
        );
        let mut set = kept.iter();
        if connection.is_empty() {
            self.shared.set_cookies(&mut set, url);
        } else {
            self.own
                .entry(connection.to_string())
                .or_default()
                .set_cookies(&mut set, url);
        }
        kept
    }

    /// The `Cookie` header `connection` sends to `url`: its own cookies, then the shared ones
    /// it has none of by that name; `None` when there are none.
    pub fn header(&self, connection: &str, url: &url::Url) -> Option<hyper::header::HeaderValue> {
        let shared = self.shared.cookies(url);
        let Some(own) = self.own.get(connection).and_then(|j| j.cookies(url)) else {
            return shared;
        };
        let Some(shared) = shared else {
            return Some(own);
        };
        // Both are `name=value; name=value` (cookie_store's form; a value holds no `;`).
        let (Ok(own_text), Ok(shared_text)) = (own.to_str(), shared.to_str()) else {
            return Some(own);
        };
        let name = |pair: &str| pair.split('=').next().unwrap_or_default().to_string();
        let mine: std::collections::HashSet<String> = own_text.split("; ").map(name).collect();
        let mut all = own_text.to_string();
        for pair in shared_text.split("; ").filter(|p| !mine.contains(&name(p))) {
            all.push_str("; ");
            all.push_str(pair);
        }
        hyper::header::HeaderValue::from_str(&all)
            .ok()
            .or(Some(own))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cookies: &mut Cookies, connection: &str, set_cookie: &[&str], url: &url::Url) {
        let mut headers = hyper::HeaderMap::new();
        for c in set_cookie {
            headers.append(hyper::header::SET_COOKIE, c.parse().unwrap());
        }
        cookies.store(connection, &headers, url);
    }

    /// The pairs of a `Cookie` header, sorted (a jar's own order is not fixed).
    fn sorted(h: Option<hyper::header::HeaderValue>) -> Vec<String> {
        let mut pairs: Vec<String> = h
            .map(|h| {
                h.to_str()
                    .unwrap()
                    .split("; ")
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        pairs.sort();
        pairs
    }

    #[test]
    fn each_participant_sends_its_own_cookies_then_the_shared_ones() {
        let url = url::Url::parse("http://cloud.example/ocs/v2.php/x").unwrap();
        let mut c = Cookies::default();
        assert_eq!(c.header("", &url), None);
        assert_eq!(c.header("a", &url), None);
        set(
            &mut c,
            "",
            &["lang=en; Path=/", "sess=shared; Path=/"],
            &url,
        );
        // A participant without cookies of its own sends the shared ones (as before).
        assert_eq!(sorted(c.header("a", &url)), ["lang=en", "sess=shared"]);
        set(&mut c, "a", &["sess=a1; Path=/"], &url);
        set(&mut c, "b", &["sess=b1; Path=/"], &url);
        // Each its own session, the shared cookies it has none of after it.
        assert_eq!(c.header("a", &url).unwrap(), "sess=a1; lang=en");
        assert_eq!(c.header("b", &url).unwrap(), "sess=b1; lang=en");
        // Steps without `connection` never see a participant's cookies.
        assert_eq!(sorted(c.header("", &url)), ["lang=en", "sess=shared"]);
        // A participant's jar follows the domain rules like the shared one.
        let other = url::Url::parse("http://elsewhere.example/").unwrap();
        assert_eq!(c.header("a", &other), None);
    }
}
