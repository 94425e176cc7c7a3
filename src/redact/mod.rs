//! Scrubbing secrets out of text that leaves the engine, in every shape a server may echo them:
//! as written, backslash/JSON-escaped (twice too: a JSON body quoted inside a JSON error),
//! `\uXXXX`, percent- or form-encoded, HTML/XML entities, base64, and hex (a dump of the bytes).
//!
//! A server that echoes the request puts the password in its reply the way the request carried
//! it (JSON-escaped in a JSON body, form-encoded in a form, base64 in `Authorization: Basic`),
//! and the reply is quoted in the error, so matching only the literal value leaks it. One regex
//! per redactor matches each secret with every character in any of its encodings, so mixed
//! shapes (`\"` next to a literal `é`) are caught without listing every combination. A server
//! that encodes every character, letters and digits too (`%53%75`, `&#83;`), is matched on a
//! copy with those encodings undone (once and twice over), mapped back to the text.
//!
//! Here the matcher: a redactor's secrets and their replacement. `forms.rs` builds the pattern of
//! every encoded shape of a secret; `decode.rs` undoes per-character encodings for the copy.

mod carriers;
mod decode;
mod forms;

use std::sync::OnceLock;

pub use carriers::{body_credentials, json_credentials, names_a_credential, path_credentials};
use decode::decodings;
use forms::{Compiled, base_forms, compile};

/// What a secret is replaced by.
pub const REDACTED: &str = "[redacted]";

/// Shorter values are not scrubbed: `1` would garble every number without protecting anything.
const MIN_SECRET_BYTES: usize = 4;

/// Replaces secrets (values from the environment, extracted values, cookies) in text that
/// leaves the engine: errors reach logs, status JSON and pages.
///
/// Clones share what the original held, compiled once: a probe's plan holds the values from
/// the environment, and each run adds its extracted values on top without compiling the
/// plan's again (a platform-wide outage fails every run at once).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    shared: std::sync::Arc<Layer>,
    own: Layer,
}

/// Secrets a run adds on top of its plan's are kept to this many, the least recently added
/// forgotten first. A resident session lives for up to `max_session_age` (a year at most) on
/// one run's state, and a server that rotates its session cookie on every reply (as Rails'
/// cookie store does) or a token extracted per exchange would otherwise grow the list, and
/// every scrub's pattern, by one value per exchange for as long as the session lives. What the
/// session opened with is kept apart ([`Redactor::freeze`]) and never forgotten; a value a run
/// adds again counts as new. 256 is far more than a login flow sets (tens of cookies and
/// tokens) and keeps the pattern a scrub compiles small (it grows with every value held).
pub const MAX_RUN_SECRETS: usize = 256;

/// A set of secrets and, once needed, the regex matching all their shapes.
#[derive(Debug, Clone, Default)]
struct Layer {
    /// Longest first, so a secret containing another is scrubbed whole.
    secrets: Vec<String>,
    /// The same secrets, least recently added first (what [`MAX_RUN_SECRETS`] forgets first).
    order: std::collections::VecDeque<String>,
    /// For each shape, its longest run of letters and digits: no encoder escapes those, so
    /// every match contains it. A text holding none of them needs no regex (building one costs
    /// milliseconds, and most failed runs quote nothing secret). Counted by the secrets that
    /// have it, so a forgotten secret takes its own anchors along.
    anchors: std::collections::HashMap<String, usize>,
    /// Built at the first scrub that needs it after a change.
    compiled: OnceLock<Compiled>,
}

/// A secret's anchors (see [`Layer::anchors`]), once each.
fn anchors_of(secret: &str) -> Vec<String> {
    let mut out: Vec<String> = base_forms(secret)
        .iter()
        .map(|form| {
            form.split(|c: char| !c.is_ascii_alphanumeric())
                .max_by_key(|run| run.len())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

impl Layer {
    fn add(&mut self, secret: String) {
        for anchor in anchors_of(&secret) {
            *self.anchors.entry(anchor).or_default() += 1;
        }
        self.order.push_back(secret.clone());
        // Longest first, kept by inserting in place (a sort per value is quadratic over a
        // long session).
        let at = self.secrets.partition_point(|s| s.len() >= secret.len());
        self.secrets.insert(at, secret);
        self.compiled = OnceLock::new();
    }

    /// Moves `secret` to the most recently added end; false when it is not held.
    fn touch(&mut self, secret: &str) -> bool {
        let Some(at) = self.order.iter().position(|s| s == secret) else {
            return false;
        };
        if let Some(s) = self.order.remove(at) {
            self.order.push_back(s);
        }
        true
    }

    /// Forgets the least recently added secret.
    fn forget_oldest(&mut self) {
        let Some(old) = self.order.pop_front() else {
            return;
        };
        self.secrets.retain(|s| *s != old);
        for anchor in anchors_of(&old) {
            if let Some(n) = self.anchors.get_mut(&anchor) {
                *n -= 1;
                if *n == 0 {
                    self.anchors.remove(&anchor);
                }
            }
        }
        self.compiled = OnceLock::new();
    }

    /// False when no shape of any secret can be in `text`.
    fn may_occur(&self, text: &str) -> bool {
        self.compiled.get().is_some()
            || self
                .anchors
                .keys()
                .any(|a| a.is_empty() || text.contains(a.as_str()))
    }

    fn longest(&self) -> usize {
        self.secrets.first().map_or(0, String::len)
    }

    fn scrub(&self, text: String) -> String {
        if self.secrets.is_empty() {
            return text;
        }
        // The text with every character's encoding undone, once and twice over: a server that
        // encodes every character (`%53%75`, `&#83;`, `\u0053`) leaves no letter or digit of
        // the secret in the text itself, for the anchors or the pattern to find.
        let decoded = decodings(&text);
        if !self.may_occur(&text) && !decoded.iter().any(|d| self.may_occur(&d.text)) {
            return text;
        }
        let compiled = self.compiled.get_or_init(|| compile(&self.secrets));
        let mut spans: Vec<std::ops::Range<usize>> = Vec::new();
        if let Some(re) = &compiled.re {
            spans.extend(re.find_iter(&text).map(|m| m.range()));
            for d in &decoded {
                spans.extend(re.find_iter(&d.text).map(|m| d.source(m.range())));
            }
        }
        // The secrets a pattern would cost too much for (see `forms::MAX_SECRET_PATTERN`):
        // the forms a template filter gives, matched literally.
        for form in &compiled.plain {
            spans.extend(
                text.match_indices(form.as_str())
                    .map(|(i, m)| i..i + m.len()),
            );
        }
        replace_spans(text, spans)
    }
}

/// `text` with each span (overlapping ones merged) replaced by `[redacted]`.
fn replace_spans(text: String, mut spans: Vec<std::ops::Range<usize>>) -> String {
    if spans.is_empty() {
        return text;
    }
    spans.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    for span in spans {
        if span.end <= done {
            continue;
        }
        let start = span.start.max(done);
        out.push_str(&text[done..start]);
        if start == span.start {
            out.push_str(REDACTED);
        }
        done = span.end;
    }
    out.push_str(&text[done..]);
    out
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Redactor {
        let mut layer = Layer::default();
        for s in secrets {
            if s.len() >= MIN_SECRET_BYTES && !layer.secrets.contains(&s) {
                layer.add(s);
            }
        }
        Redactor {
            shared: std::sync::Arc::new(layer),
            own: Layer::default(),
        }
    }

    /// Remembers a value to scrub, in every encoding. Very short values are skipped. Past
    /// [`MAX_RUN_SECRETS`] values added this way, the least recently added is forgotten.
    pub fn add(&mut self, secret: String) {
        if secret.len() < MIN_SECRET_BYTES
            || self.shared.secrets.contains(&secret)
            || self.own.touch(&secret)
        {
            return;
        }
        self.own.add(secret);
        while self.own.secrets.len() > MAX_RUN_SECRETS {
            self.own.forget_oldest();
        }
    }

    /// Makes every value added so far permanent: a resident session calls it once it is open,
    /// so the token and cookies it logged in with are scrubbed for as long as it lives, however
    /// many values its exchanges add after them.
    pub fn freeze(&mut self) {
        let own = std::mem::take(&mut self.own);
        if own.secrets.is_empty() {
            return;
        }
        let mut layer = (*self.shared).clone();
        for s in own.order {
            if !layer.secrets.contains(&s) {
                layer.add(s);
            }
        }
        self.shared = std::sync::Arc::new(layer);
    }

    /// How many values this redactor scrubs (its plan's, frozen ones and its own).
    pub fn len(&self) -> usize {
        self.shared.secrets.len() + self.own.secrets.len()
    }

    /// True when nothing would be scrubbed.
    pub fn is_empty(&self) -> bool {
        self.shared.secrets.is_empty() && self.own.secrets.is_empty()
    }

    /// True when `text` holds some shape of a secret.
    pub fn holds_secret(&self, text: &str) -> bool {
        self.scrub(text) != text
    }

    /// `text` with every form of every secret replaced by `[redacted]`, and every SDP's
    /// ICE password (see [`scrub_ice_passwords`]).
    pub fn scrub(&self, text: &str) -> String {
        // The set holding the longest secret goes first, so it is scrubbed whole.
        let scrubbed = if self.own.longest() > self.shared.longest() {
            self.shared.scrub(self.own.scrub(text.to_string()))
        } else {
            self.own.scrub(self.shared.scrub(text.to_string()))
        };
        scrub_ice_passwords(scrubbed)
    }
}

/// An SDP's `a=ice-pwd:` value, as written, JSON-escaped (`\/`) or percent-encoded.
const ICE_PWD: &str = r"(?i)(ice-pwd(?::|%3a))((?:[a-z0-9+]|%2[bf]|\\*/)+)";

/// Every SDP's ICE password replaced by `[redacted]`, whoever sent the SDP: it keys the
/// MESSAGE-INTEGRITY of the connectivity checks (RFC 8445 §7.2.2), so whoever holds it can
/// answer them in the SFU's name or ours while the session lives; browsers keep it out of
/// `getStats`. A signalling reply quoted in an error carries the SFU's before any `webrtc` step
/// has seen it, hence a shape, not a value. The ufrag stays: it travels in clear in every
/// check's USERNAME and is what an SFU's logs are searched by.
fn scrub_ice_passwords(text: String) -> String {
    static PATTERN: OnceLock<Option<regex::Regex>> = OnceLock::new();
    if !text
        .as_bytes()
        .windows(7)
        .any(|w| w.eq_ignore_ascii_case(b"ice-pwd"))
    {
        return text;
    }
    match PATTERN.get_or_init(|| regex::Regex::new(ICE_PWD).ok()) {
        Some(re) => re
            .replace_all(&text, format!("${{1}}{REDACTED}"))
            .into_owned(),
        None => text,
    }
}

/// The parts of a URL that may be secret: its user info, its path when it is more than `/` (a
/// webhook's or a hook's path is its key), its query and each of the query's values, its
/// fragment. Never its scheme, host or port: a page must still say where it failed to connect.
/// Empty for a text that is not a URL.
pub fn url_secret_parts(text: &str) -> Vec<String> {
    let Ok(u) = url::Url::parse(text) else {
        return Vec::new();
    };
    let mut parts = Vec::new();
    if !u.username().is_empty() {
        parts.push(u.username().to_string());
    }
    parts.extend(u.password().map(str::to_string));
    if u.path().len() > 1 {
        parts.push(u.path().to_string());
        // A server may echo the path decoded, or a segment alone (`unknown hook T0…`).
        parts.extend(
            u.path_segments()
                .into_iter()
                .flatten()
                .filter(|s| s.len() >= MIN_SECRET_BYTES)
                .map(|s| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8_lossy()
                        .into_owned()
                }),
        );
    }
    if let Some(q) = u.query() {
        parts.push(q.to_string());
        parts.extend(u.query_pairs().map(|(_, v)| v.into_owned()));
    }
    parts.extend(u.fragment().map(str::to_string));
    parts.retain(|p| p.len() >= MIN_SECRET_BYTES);
    parts
}

/// `scheme://host…`: a URL that names a server (not `user:password`, which also parses as a
/// URL, of scheme `user`).
pub fn is_address_url(text: &str) -> bool {
    text.contains("://") && url::Url::parse(text).is_ok_and(|u| u.has_host())
}

/// A URL as errors show it: its password, its query (tokens travel in query strings) and the
/// path segments that carry a credential ([`path_credentials`]: a hook's key, a join token)
/// replaced by `[redacted]`; scheme, host, port and the other segments stay, to say where.
pub fn redact_url_text(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut u) => {
            let secret = path_credentials(&u);
            if !secret.is_empty() {
                let path: Vec<&str> = u
                    .path_segments()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        if secret.iter().any(|x| x == s) {
                            REDACTED
                        } else {
                            s
                        }
                    })
                    .collect();
                u.set_path(&path.join("/"));
            }
            if u.query().is_some() {
                u.set_query(Some(REDACTED));
            }
            if u.password().is_some() {
                let _ = u.set_password(Some(REDACTED));
            }
            u.to_string()
        }
        Err(_) => text.to_string(),
    }
}

/// Opens a quoted piece of a server's reply inside an error message; see [`quote`].
const QUOTE_OPEN: char = '\u{E000}';
/// Ends the length in a quote's header.
const QUOTE_LIMIT_END: char = '\u{E001}';
/// Closes a quoted piece.
const QUOTE_CLOSE: char = '\u{E002}';
/// How much of a reply a quote keeps before the secrets are scrubbed: enough that a secret
/// starting inside the shown part is whole when it is matched — as long as the longest one
/// the redactor matches by pattern (`forms::MAX_SECRET_PATTERN`), so a long token (an 8 KiB
/// JWT) echoed by a server never shows its first characters. Scrubbing it is one pass of the
/// compiled pattern over at most this much, and only for a failure's message.
const QUOTE_KEEP: usize = 64 * 1024;

/// A piece of a server's reply for an error message, cut to `limit` characters on one line.
///
/// The cut happens in [`finish`], after the secrets are scrubbed: cut first, and a password
/// straddling the cut would leave its first half behind; flatten control characters first,
/// and an echoed tab would hide the password it is part of.
pub(crate) fn quote(text: &str, limit: usize) -> String {
    let mut out = format!("{QUOTE_OPEN}{limit}");
    if text.chars().count() > QUOTE_KEEP {
        out.push('+');
    }
    out.push(QUOTE_LIMIT_END);
    // A server cannot forge the markers.
    out.extend(text.chars().take(QUOTE_KEEP).map(|c| {
        if matches!(c, QUOTE_OPEN | QUOTE_LIMIT_END | QUOTE_CLOSE) {
            char::REPLACEMENT_CHARACTER
        } else {
            c
        }
    }));
    out.push(QUOTE_CLOSE);
    out
}

/// An error message as it leaves the engine: secrets scrubbed, then each quoted reply cut to
/// its length on one line.
pub(crate) fn finish(redactor: &Redactor, message: &str) -> String {
    let scrubbed = redactor.scrub(message);
    let mut out = String::with_capacity(scrubbed.len());
    let mut rest = scrubbed.as_str();
    while let Some(open) = rest.find(QUOTE_OPEN) {
        out.extend(one_line(&rest[..open]));
        let body = &rest[open + QUOTE_OPEN.len_utf8()..];
        let (header, body) = body.split_once(QUOTE_LIMIT_END).unwrap_or(("", body));
        let (text, after) = body.split_once(QUOTE_CLOSE).unwrap_or((body, ""));
        let cut_before = header.ends_with('+');
        let limit: usize = header.trim_end_matches('+').parse().unwrap_or(160);
        out.extend(one_line(text).take(limit));
        if cut_before || text.chars().count() > limit {
            out.push('…');
        }
        rest = after;
    }
    out.extend(one_line(rest));
    // Whatever a server got into the message unquoted (a close reason, a list of its
    // addresses), the message stays one readable line for a page: cut after the scrub, so
    // no half of a secret is left.
    if out.chars().count() > MAX_MESSAGE_CHARS {
        out = out.chars().take(MAX_MESSAGE_CHARS).collect();
        out.push('…');
    }
    out
}

/// Text outside a quote, as a line: a server's words get there unquoted too (a Redis `-ERR`
/// line, a close reason), and `once` prints the message to a terminal, where an escape
/// sequence would retitle or clear it and a line break would forge a line of the table.
pub(crate) fn one_line(text: &str) -> impl Iterator<Item = char> + '_ {
    text.chars().map(|c| if c.is_control() { ' ' } else { c })
}

/// The longest error message that leaves the engine (status, logs, pages), in characters:
/// many times a quoted reply (160 or 300), so only text a server put in unbounded is cut.
pub const MAX_MESSAGE_CHARS: usize = 2048;

#[cfg(test)]
mod tests {
    use super::*;

    /// A long-lived run (a resident session) adding a fresh value again and again keeps at most
    /// `MAX_RUN_SECRETS` of its own, the oldest forgotten first; what it froze and the plan's
    /// stay; a value added again is young again.
    #[test]
    fn a_run_keeps_a_bounded_list_of_its_own_secrets() {
        let mut r = Redactor::new(["plan-secret-value".to_string()]);
        r.add("session-token-at-login".to_string());
        r.freeze();
        r.add("kept-alive-token".to_string());
        let value = |i: usize| format!("rotated-cookie-{i:06}");
        let added = 2 * MAX_RUN_SECRETS;
        for i in 0..added {
            r.add(value(i));
            if i % 100 == 0 {
                r.add("kept-alive-token".to_string());
            }
        }
        assert_eq!(r.own.secrets.len(), MAX_RUN_SECRETS);
        assert_eq!(r.own.order.len(), MAX_RUN_SECRETS);
        assert_eq!(r.len(), MAX_RUN_SECRETS + 2);
        let anchors: std::collections::HashSet<String> =
            r.own.secrets.iter().flat_map(|s| anchors_of(s)).collect();
        assert_eq!(
            anchors,
            r.own.anchors.keys().cloned().collect(),
            "a forgotten secret's anchors go with it"
        );
        for kept in [
            "plan-secret-value".to_string(),
            "session-token-at-login".to_string(),
            "kept-alive-token".to_string(),
            value(added - 1),
        ] {
            assert_eq!(r.scrub(&format!("a {kept} b")), "a [redacted] b", "{kept}");
        }
        let forgotten = value(0);
        assert_eq!(r.scrub(&forgotten), forgotten);
    }

    /// An SDP's ICE password is hidden as written, in a JSON string (`\/`, `\r\n`) and
    /// percent-encoded, by any redactor; the ufrag and the rest of the SDP stay readable.
    #[test]
    fn ice_passwords_are_scrubbed_in_every_sdp() {
        let r = Redactor::default();
        let sdp =
            "v=0\r\na=ice-ufrag:Ab3d\r\na=ice-pwd:Zx9+/pw0rd4a6b8c0d2e4f6a\r\na=setup:actpass";
        assert_eq!(
            r.scrub(sdp),
            "v=0\r\na=ice-ufrag:Ab3d\r\na=ice-pwd:[redacted]\r\na=setup:actpass"
        );
        let json =
            r#"{"sdp":"a=ice-ufrag:Ab3d\r\na=ice-pwd:Zx9+\/pw0rd4a6b8c0d2e4f6a\r\na=mid:0"}"#;
        assert_eq!(
            r.scrub(json),
            r#"{"sdp":"a=ice-ufrag:Ab3d\r\na=ice-pwd:[redacted]\r\na=mid:0"}"#
        );
        assert_eq!(
            r.scrub("sdp=a%3Dice-pwd%3AZx9%2B%2Fpw0rd4a6b8c0d2e4f6a%0D%0A"),
            "sdp=a%3Dice-pwd%3A[redacted]%0D%0A"
        );
        assert!(r.holds_secret("a=ICE-PWD:Zx9pw0rd4a6b8c0d2e4f6a"));
        assert!(!r.holds_secret("a=ice-ufrag:Ab3d a=ice-options:trickle"));
        let quoted = format!("status 400: {}", quote(sdp, 160));
        assert!(!finish(&r, &quoted).contains("Zx9"), "{quoted}");
    }

    #[test]
    fn scrubs_longest_first_and_skips_tiny_values() {
        let r = Redactor::new(["tok".to_string(), "secret".into(), "secret-token".into()]);
        assert_eq!(
            r.scrub("a secret-token and secret, tok"),
            "a [redacted] and [redacted], tok"
        );
    }

    #[test]
    fn no_regex_is_built_for_text_without_a_trace_of_the_secrets() {
        let r = Redactor::new(["token-0123456789".to_string()]);
        assert_eq!(r.scrub("timed out after 2s"), "timed out after 2s");
        assert!(r.shared.compiled.get().is_none());
        assert_eq!(r.scrub("x token%2D0123456789"), "x [redacted]");
        assert!(r.shared.compiled.get().is_some());
    }

    #[test]
    fn quotes_are_cut_after_scrubbing() {
        let secret = "abc\tdefgh";
        let r = Redactor::new([secret.to_string()]);
        let long = format!("{}{secret}tail", "x".repeat(8));
        let msg = format!("status 400: {}", quote(&long, 12));
        assert_eq!(finish(&r, &msg), "status 400: xxxxxxxx[red…");
        assert_eq!(
            finish(&Redactor::default(), &quote("a\tb\u{E002}c", 10)),
            "a b\u{FFFD}c"
        );
    }

    /// A secret longer than the quote's first cut used to be matched only in part: its first
    /// characters were shown. An 8,000-character token echoed near the start of a long reply
    /// is scrubbed whole.
    #[test]
    fn a_long_secret_echoed_in_a_long_reply_is_scrubbed_whole() {
        let secret: String = (0..8_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let r = Redactor::new([secret.clone()]);
        let reply = format!("{{\"error\":\"bad {secret}\"}}{}", " ".repeat(20_000));
        let shown = finish(&r, &format!("status 401: {}", quote(&reply, 160)));
        assert!(!shown.contains(&secret[..20]), "{shown}");
        assert!(
            shown.starts_with("status 401: {\"error\":\"bad [redacted]"),
            "{shown}"
        );
    }

    #[test]
    fn url_redaction_hides_query_and_password() {
        assert_eq!(
            redact_url_text("ws://h:1/ws?token=abc"),
            "ws://h:1/ws?[redacted]"
        );
        assert_eq!(
            redact_url_text("http://u:pw@h/"),
            "http://u:%5Bredacted%5D@h/"
        );
        assert_eq!(
            redact_url_text("http://h:1/join/r00m-t0ken?x=1"),
            "http://h:1/join/[redacted]?[redacted]"
        );
        assert_eq!(
            redact_url_text("https://h/api/webhooks/1234/tok-en"),
            "https://h/api/webhooks/[redacted]/[redacted]"
        );
    }
}
