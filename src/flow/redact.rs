//! Scrubbing secrets out of text that leaves the engine, in every shape a server may echo them:
//! as written, backslash/JSON-escaped (twice too: a JSON body quoted inside a JSON error),
//! `\uXXXX`, percent- or form-encoded, HTML/XML entities, and base64.
//!
//! A server that echoes the request puts the password in its reply the way the request carried
//! it (JSON-escaped in a JSON body, form-encoded in a form, base64 in `Authorization: Basic`),
//! and the reply is quoted in the error, so matching only the literal value leaks it. One regex
//! per redactor matches each secret with every character in any of its encodings, so mixed
//! shapes (`\"` next to a literal `é`) are caught without listing every combination.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

/// What a secret is replaced by.
pub const REDACTED: &str = "[redacted]";

/// Shorter values are not scrubbed: `1` would garble every number without protecting anything.
const MIN_SECRET_BYTES: usize = 4;
/// Base64 pieces of a secret inside a longer blob (`base64("user:" + password)`) are scrubbed
/// from this length on; shorter pieces would match ordinary words.
const MIN_BASE64_CORE_BYTES: usize = 6;
/// How many times a character may have been escaped: a JSON body echoed as a string inside a
/// JSON error is escaped twice (`"` becomes `\\\"`).
const ESCAPE_DEPTH: u8 = 2;

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

/// A set of secrets and, once needed, the regex matching all their shapes.
#[derive(Debug, Clone, Default)]
struct Layer {
    /// Longest first, so a secret containing another is scrubbed whole.
    secrets: Vec<String>,
    /// For each shape, its longest run of letters and digits: no encoder escapes those, so
    /// every match contains it. A text holding none of them needs no regex (building one costs
    /// milliseconds, and most failed runs quote nothing secret).
    anchors: Vec<String>,
    /// Built at the first scrub that needs it after a change.
    compiled: OnceLock<Option<regex::Regex>>,
}

impl Layer {
    fn add(&mut self, secret: String) {
        for form in base_forms(&secret) {
            let anchor = form
                .split(|c: char| !c.is_ascii_alphanumeric())
                .max_by_key(|run| run.len())
                .unwrap_or_default()
                .to_string();
            if !self.anchors.contains(&anchor) {
                self.anchors.push(anchor);
            }
        }
        self.secrets.push(secret);
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        self.compiled = OnceLock::new();
    }

    /// False when no shape of any secret can be in `text`.
    fn may_occur(&self, text: &str) -> bool {
        self.compiled.get().is_some()
            || self
                .anchors
                .iter()
                .any(|a| a.is_empty() || text.contains(a.as_str()))
    }

    fn longest(&self) -> usize {
        self.secrets.first().map_or(0, String::len)
    }

    fn scrub(&self, text: String) -> String {
        if self.secrets.is_empty() || !self.may_occur(&text) {
            return text;
        }
        match self.compiled.get_or_init(|| compile(&self.secrets)) {
            Some(re) => match re.replace_all(&text, REDACTED) {
                std::borrow::Cow::Borrowed(_) => text,
                std::borrow::Cow::Owned(o) => o,
            },
            // A pattern too big for the regex engine (secrets of many kilobytes): the forms a
            // template filter gives, matched literally.
            None => {
                let mut out = text;
                for s in &self.secrets {
                    for form in plain_forms(s) {
                        if out.contains(&form) {
                            out = out.replace(&form, REDACTED);
                        }
                    }
                }
                out
            }
        }
    }
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

    /// Remembers a value to scrub, in every encoding. Very short values are skipped.
    pub fn add(&mut self, secret: String) {
        if secret.len() >= MIN_SECRET_BYTES
            && !self.shared.secrets.contains(&secret)
            && !self.own.secrets.contains(&secret)
        {
            self.own.add(secret);
        }
    }

    /// True when nothing would be scrubbed.
    pub fn is_empty(&self) -> bool {
        self.shared.secrets.is_empty() && self.own.secrets.is_empty()
    }

    /// True when `text` holds some shape of a secret.
    pub fn holds_secret(&self, text: &str) -> bool {
        self.scrub(text) != text
    }

    /// `text` with every form of every secret replaced by `[redacted]`.
    pub fn scrub(&self, text: &str) -> String {
        // The set holding the longest secret goes first, so it is scrubbed whole.
        if self.own.longest() > self.shared.longest() {
            self.shared.scrub(self.own.scrub(text.to_string()))
        } else {
            self.own.scrub(self.shared.scrub(text.to_string()))
        }
    }
}

/// One alternation of every secret's every shape, longest shapes first (leftmost-first
/// matching then prefers the whole of a longer secret).
fn compile(secrets: &[String]) -> Option<regex::Regex> {
    let mut forms: Vec<String> = Vec::new();
    for s in secrets {
        for f in base_forms(s) {
            if !forms.contains(&f) {
                forms.push(f);
            }
        }
    }
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    let mut pattern = String::new();
    for (i, f) in forms.iter().enumerate() {
        if i > 0 {
            pattern.push('|');
        }
        for c in f.chars() {
            push_char(&mut pattern, c, ESCAPE_DEPTH, false);
        }
    }
    regex::RegexBuilder::new(&pattern)
        .size_limit(64 << 20)
        .build()
        .ok()
}

/// The secret and its base64 shapes; each is then matched under every escaping.
fn base_forms(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_string()];
    // A JSON body (`{"password":"pa\"ss"}`) sent or echoed in base64 carries the escaped form.
    let json = super::template::Filter::Json.apply(secret);
    let mut encoded = vec![secret];
    if json != secret {
        encoded.push(&json);
    }
    for value in encoded {
        let bytes = value.as_bytes();
        for engine in [&STANDARD, &URL_SAFE] {
            let padded = engine.encode(bytes);
            let unpadded = padded.trim_end_matches('=').to_string();
            out.push(padded);
            out.push(unpadded);
            if bytes.len() >= MIN_BASE64_CORE_BYTES {
                out.extend(base64_cores(bytes, engine));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The base64 characters that depend on `bytes` alone, for each of the three alignments the
/// secret can have inside a longer encoded blob (`Basic base64(user:password)`): the first
/// and last character or two also carry the neighbours' bits, so they are left out.
fn base64_cores(bytes: &[u8], engine: &base64::engine::GeneralPurpose) -> Vec<String> {
    let mut out = Vec::new();
    for lead in 0..3usize {
        let mut buf = vec![0u8; lead];
        buf.extend_from_slice(bytes);
        let encoded = engine.encode(&buf);
        let first = (8 * lead).div_ceil(6);
        let last = 8 * (lead + bytes.len()) / 6;
        if let Some(core) = encoded.get(first..last) {
            out.push(core.to_string());
        }
    }
    out
}

/// The shapes a template filter gives a value, for the literal fallback.
fn plain_forms(secret: &str) -> Vec<String> {
    let mut out = base_forms(secret);
    for f in super::template::encodings(secret) {
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.len()));
    out
}

/// Appends a pattern matching `c` as written or in any encoding, each encoding's own
/// characters possibly escaped again (`depth` levels in all). `in_form`: `c` is part of an
/// encoding, where hex digits come in either case (`%2f`, `%2F`).
fn push_char(pattern: &mut String, c: char, depth: u8, in_form: bool) {
    // Letters and digits are never escaped by any encoder a server uses.
    if c.is_ascii_alphanumeric() {
        if in_form && c.is_ascii_hexdigit() && c.is_ascii_alphabetic() {
            pattern.push('[');
            pattern.push(c.to_ascii_lowercase());
            pattern.push(c.to_ascii_uppercase());
            pattern.push(']');
        } else {
            pattern.push(c);
        }
        return;
    }
    let literal = regex::escape(c.encode_utf8(&mut [0; 4]));
    if depth == 0 {
        pattern.push_str(&literal);
        return;
    }
    pattern.push_str("(?:");
    pattern.push_str(&literal);
    // Each encoding's own `\`, `%`, `&`, `;` may be escaped again (`\\\"`, `%2522`,
    // `&amp;quot;`, `%26lt%3B`).
    for form in nested_forms(c).into_iter().chain(entity_forms(c)) {
        pattern.push('|');
        for inner in form.chars() {
            push_char(pattern, inner, depth - 1, true);
        }
    }
    pattern.push(')');
}

/// `\c`, `\uXXXX` (surrogate pairs above the BMP), `%XX` of the UTF-8 bytes, `+` for a space,
/// and JSON's short escapes (hex in lower case; the pattern takes either).
fn nested_forms(c: char) -> Vec<String> {
    let mut out = Vec::new();
    if c.is_ascii() && !c.is_ascii_control() {
        // JSON's `\"` `\\` `\/`, a regex's `\.`, a shell's `\ `.
        out.push(format!("\\{c}"));
    }
    match c {
        '\n' => out.push("\\n".into()),
        '\r' => out.push("\\r".into()),
        '\t' => out.push("\\t".into()),
        '\u{8}' => out.push("\\b".into()),
        '\u{c}' => out.push("\\f".into()),
        ' ' => out.push("+".into()),
        _ => {}
    }
    let mut units = [0u16; 2];
    out.push(
        c.encode_utf16(&mut units)
            .iter()
            .map(|u| format!("\\u{u:04x}"))
            .collect(),
    );
    let mut bytes = [0u8; 4];
    out.push(
        c.encode_utf8(&mut bytes)
            .bytes()
            .map(|b| format!("%{b:02x}"))
            .collect(),
    );
    out
}

/// `&amp;`-style names, `&#NN;` and `&#xHH;`.
fn entity_forms(c: char) -> Vec<String> {
    let mut out = Vec::new();
    match c {
        '&' => out.push("&amp;".to_string()),
        '<' => out.push("&lt;".to_string()),
        '>' => out.push("&gt;".to_string()),
        '"' => out.push("&quot;".to_string()),
        '\'' => out.push("&apos;".to_string()),
        _ => {}
    }
    let n = u32::from(c);
    out.push(format!("&#{n};"));
    out.push(format!("&#x{n:x};"));
    out
}

/// Strips userinfo and the query from a URL: tokens travel in query strings.
pub fn redact_url_text(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut u) => {
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
/// How much of a reply a quote keeps before the secrets are scrubbed: enough that an encoded
/// secret starting inside the shown part is whole when it is matched.
const QUOTE_KEEP: usize = 4096;

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
        out.push_str(&rest[..open]);
        let body = &rest[open + QUOTE_OPEN.len_utf8()..];
        let (header, body) = body.split_once(QUOTE_LIMIT_END).unwrap_or(("", body));
        let (text, after) = body.split_once(QUOTE_CLOSE).unwrap_or((body, ""));
        let cut_before = header.ends_with('+');
        let limit: usize = header.trim_end_matches('+').parse().unwrap_or(160);
        out.extend(
            text.chars()
                .take(limit)
                .map(|c| if c.is_control() { ' ' } else { c }),
        );
        if cut_before || text.chars().count() > limit {
            out.push('…');
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_longest_first_and_skips_tiny_values() {
        let r = Redactor::new(["tok".to_string(), "secret".into(), "secret-token".into()]);
        assert_eq!(
            r.scrub("a secret-token and secret, tok"),
            "a [redacted] and [redacted], tok"
        );
    }

    #[test]
    fn scrubs_every_shape_of_an_awkward_password() {
        let pw = "pa\"ss w\\rd&x=1+2\té";
        let r = Redactor::new([pw.to_string()]);
        let json = serde_json::Value::String(pw.into()).to_string();
        let twice = serde_json::Value::String(format!("{{\"password\":{json}}}")).to_string();
        let form: String = url::form_urlencoded::byte_serialize(pw.as_bytes()).collect();
        let ascii_json = json.replace('é', "\\u00e9");
        let b64 = STANDARD.encode(pw);
        let basic = STANDARD.encode(format!("user:{pw}"));
        for shape in [
            pw.to_string(),
            json,
            twice,
            form.clone(),
            form.to_lowercase(),
            ascii_json,
            b64,
            URL_SAFE.encode(pw).trim_end_matches('=').to_string(),
        ] {
            let out = r.scrub(&format!("before {shape} after"));
            assert_eq!(out.matches(REDACTED).count(), 1, "{shape:?} -> {out:?}");
            assert!(
                out.starts_with("before ") && out.ends_with(" after"),
                "{out:?}"
            );
        }
        // Inside a longer blob only the characters that depend on the password alone go.
        let out = r.scrub(&format!("Basic {basic}"));
        assert!(out.contains(REDACTED), "{out}");
        assert!(out.len() < "Basic ".len() + 8 + REDACTED.len(), "{out}");
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
    }
}
