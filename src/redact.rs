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
    compiled: OnceLock<Option<regex::Regex>>,
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
        match self.compiled.get_or_init(|| compile(&self.secrets)) {
            Some(re) => {
                let mut spans: Vec<std::ops::Range<usize>> =
                    re.find_iter(&text).map(|m| m.range()).collect();
                for d in &decoded {
                    spans.extend(re.find_iter(&d.text).map(|m| d.source(m.range())));
                }
                replace_spans(text, spans)
            }
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

/// A text with one more level of per-character encodings undone, and for each of its bytes
/// the span of the original text it stands for (a match maps back to whole encodings).
struct Decoded {
    text: String,
    spans: Vec<(usize, usize)>,
}

impl Decoded {
    /// The span of the original text that `range` of the decoded text came from.
    fn source(&self, range: std::ops::Range<usize>) -> std::ops::Range<usize> {
        match (self.spans.get(range.start), range.end.checked_sub(1)) {
            (Some(first), Some(last)) if last >= range.start => {
                first.0..self.spans.get(last).map_or(first.1, |s| s.1)
            }
            _ => 0..0,
        }
    }
}

/// The text decoded once and twice ([`ESCAPE_DEPTH`]), as far as decoding changes it. Linear
/// in the text, and nothing at all for text without `%`, `&` or `\`.
fn decodings(text: &str) -> Vec<Decoded> {
    let mut out: Vec<Decoded> = Vec::new();
    for _ in 0..ESCAPE_DEPTH {
        let next = match out.last() {
            Some(d) => decode_once(&d.text, Some(&d.spans)),
            None => decode_once(text, None),
        };
        match next {
            Some(d) => out.push(d),
            None => break,
        }
    }
    out
}

/// Digits a numeric entity may have (leading zeros included) before it is taken as text.
const MAX_ENTITY_DIGITS: usize = 32;

/// One level of `%XX` (UTF-8, hex in either case), `&#NN;` / `&#xHH;` (leading zeros, either
/// case, `;` optional as HTML allows), `&amp;`-style names and `\uXXXX` (surrogate pairs too)
/// undone. `spans` maps `text` to the original (`None`: `text` is the original). `None` when
/// nothing was decoded.
fn decode_once(text: &str, spans: Option<&[(usize, usize)]>) -> Option<Decoded> {
    if !text.contains(['%', '&', '\\']) {
        return None;
    }
    let b = text.as_bytes();
    let origin = |from: usize, to: usize| -> (usize, usize) {
        match spans {
            Some(s) => (
                s.get(from).map_or(from, |x| x.0),
                s.get(to.saturating_sub(1)).map_or(to, |x| x.1),
            ),
            None => (from, to),
        }
    };
    let mut out = Decoded {
        text: String::with_capacity(text.len()),
        spans: Vec::with_capacity(text.len()),
    };
    let mut changed = false;
    let push = |out: &mut Decoded, c: char, from: usize, to: usize| {
        let span = origin(from, to);
        out.text.push(c);
        out.spans.extend(std::iter::repeat_n(span, c.len_utf8()));
    };
    let mut i = 0;
    while i < b.len() {
        let decoded = match b[i] {
            b'%' => percent_run(b, i),
            b'&' => entity(b, i).map(|(c, end)| vec![(c, i, end)]),
            b'\\' => unicode_escape(b, i).map(|(c, end)| vec![(c, i, end)]),
            _ => None,
        };
        match decoded {
            Some(chars) if !chars.is_empty() => {
                changed = true;
                let end = chars.last().map_or(i + 1, |c| c.2);
                for (c, from, to) in chars {
                    push(&mut out, c, from, to);
                }
                i = end;
            }
            _ => {
                // Copied as it is: a whole character (`i` is always at a character boundary).
                let c = text[i..]
                    .chars()
                    .next()
                    .unwrap_or(char::REPLACEMENT_CHARACTER);
                let len = c.len_utf8();
                for k in 0..len {
                    let span = origin(i + k, i + k + 1);
                    out.spans.push(span);
                }
                out.text.push(c);
                i += len;
            }
        }
    }
    changed.then_some(out)
}

/// A run of `%XX` from `i` decoded as UTF-8: each character with its span. Bytes that are not
/// UTF-8 end the run (they are copied as text); `None` when the first one is not.
fn percent_run(b: &[u8], i: usize) -> Option<Vec<(char, usize, usize)>> {
    let hex = |at: usize| -> Option<u8> {
        let h = b.get(at + 1..at + 3)?;
        if b.get(at) != Some(&b'%') {
            return None;
        }
        u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    };
    let mut out = Vec::new();
    let mut at = i;
    while let Some(lead) = hex(at) {
        let len = match lead {
            0x00..=0x7f => 1,
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => break,
        };
        let mut bytes = [0u8; 4];
        let mut ok = true;
        for (k, slot) in bytes.iter_mut().enumerate().take(len) {
            match hex(at + 3 * k) {
                Some(v) => *slot = v,
                None => {
                    ok = false;
                    break;
                }
            }
        }
        let Some(c) = ok
            .then(|| std::str::from_utf8(&bytes[..len]).ok())
            .flatten()
            .and_then(|s| s.chars().next())
        else {
            break;
        };
        out.push((c, at, at + 3 * len));
        at += 3 * len;
    }
    (!out.is_empty()).then_some(out)
}

/// `&#NN;`, `&#xHH;` or a named entity at `i`: the character and where the entity ends.
fn entity(b: &[u8], i: usize) -> Option<(char, usize)> {
    let rest = b.get(i + 1..)?;
    if rest.first() == Some(&b'#') {
        let (radix, start) = match rest.get(1) {
            Some(b'x' | b'X') => (16, i + 3),
            _ => (10, i + 2),
        };
        let digits = b
            .get(start..)?
            .iter()
            .take(MAX_ENTITY_DIGITS + 1)
            .take_while(|d| char::from(**d).is_digit(radix))
            .count();
        if digits == 0 || digits > MAX_ENTITY_DIGITS {
            return None;
        }
        let text = std::str::from_utf8(&b[start..start + digits]).ok()?;
        let trimmed = text.trim_start_matches('0');
        let n = if trimmed.is_empty() {
            0
        } else {
            u32::from_str_radix(trimmed, radix).ok()?
        };
        let c = char::from_u32(n)?;
        let end = start + digits;
        return Some((
            c,
            if b.get(end) == Some(&b';') {
                end + 1
            } else {
                end
            },
        ));
    }
    for (name, c) in [
        (&b"amp;"[..], '&'),
        (b"lt;", '<'),
        (b"gt;", '>'),
        (b"quot;", '"'),
        (b"apos;", '\''),
    ] {
        if rest.starts_with(name) {
            return Some((c, i + 1 + name.len()));
        }
    }
    None
}

/// `\uXXXX` at `i` (hex in either case; a surrogate pair as one character).
fn unicode_escape(b: &[u8], i: usize) -> Option<(char, usize)> {
    let unit = |at: usize| -> Option<u16> {
        if b.get(at..at + 2)? != b"\\u" {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(b.get(at + 2..at + 6)?).ok()?, 16).ok()
    };
    let first = unit(i)?;
    if let Some(c) = char::from_u32(u32::from(first)) {
        return Some((c, i + 6));
    }
    let second = unit(i + 6)?;
    let c = char::decode_utf16([first, second]).next()?.ok()?;
    Some((c, i + 12))
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
    let json = crate::template::Filter::Json.apply(secret);
    let mut encoded = vec![secret];
    if json != secret {
        encoded.push(&json);
    }
    for value in encoded {
        let bytes = value.as_bytes();
        // A hex dump of what the server got (`invalid frame payload 0x546f6b…`), either case.
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        out.push(hex.to_ascii_uppercase());
        out.push(hex);
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
    for f in crate::template::encodings(secret) {
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
    fn scrubs_a_secret_with_every_character_encoded() {
        let pw = "Super5ecret!é";
        let r = Redactor::new([pw.to_string()]);
        let each = |f: &dyn Fn(char) -> String| pw.chars().map(f).collect::<String>();
        let pct = |c: char, upper: bool| {
            let mut b = [0u8; 4];
            c.encode_utf8(&mut b)
                .bytes()
                .map(|b| {
                    if upper {
                        format!("%{b:02X}")
                    } else {
                        format!("%{b:02x}")
                    }
                })
                .collect::<String>()
        };
        let shapes = [
            each(&|c| pct(c, true)),
            each(&|c| pct(c, false)),
            each(&|c| format!("&#{};", u32::from(c))),
            each(&|c| format!("&#x{:x};", u32::from(c))),
            each(&|c| format!("&#X{:04X};", u32::from(c))),
            each(&|c| format!("&#000{}", u32::from(c))),
            each(&|c| format!("\\u{:04X}", u32::from(c))),
            // Twice over: the `%` encoded again, the `&` as `&amp;`.
            each(&|c| pct(c, true).replace('%', "%25")),
            each(&|c| format!("&amp;#{};", u32::from(c))),
            // Mixed: every other character encoded, each its own way.
            pw.chars()
                .enumerate()
                .map(|(i, c)| match i % 4 {
                    0 => c.to_string(),
                    1 => pct(c, i % 8 == 1),
                    2 => format!("&#{};", u32::from(c)),
                    _ => format!("&#x{:X};", u32::from(c)),
                })
                .collect(),
        ];
        for shape in shapes {
            let out = r.scrub(&format!("before {shape} after"));
            assert_eq!(out, "before [redacted] after", "{shape}");
        }
        // Encoded text that is not the secret stays as it is.
        for other in [
            "%53%75%70%65%72",
            "&#83;&#117;per",
            "100%",
            "a & b",
            "\\u12",
        ] {
            assert_eq!(r.scrub(other), other);
        }
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
