//! The pattern that matches a secret in every shape a server may echo it: as written, escaped
//! (backslash, `\uXXXX`, percent or form, HTML/XML entities, each up to twice over), in
//! base64 (whole, or the characters that depend on it alone inside a longer blob) and in hex.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

/// Base64 pieces of a secret inside a longer blob (`base64("user:" + password)`) are scrubbed
/// from this length on; shorter pieces would match ordinary words.
const MIN_BASE64_CORE_BYTES: usize = 6;
/// How many times a character may have been escaped: a JSON body echoed as a string inside a
/// JSON error is escaped twice (`"` becomes `\\\"`).
pub(super) const ESCAPE_DEPTH: u8 = 2;

/// Bytes of pattern one secret may take. Every character that is not a letter or digit costs
/// about 480 bytes (each of its encodings, each escaped again), and compiling costs time and
/// memory with the pattern: a login token of 30,000 `!` took 38 s and 2 GB to scrub (a debug
/// build), one of a megabyte (within `max_body_bytes`) could not have been. A secret past
/// this (some 130 such characters; a password or a token has a handful) is matched by the
/// forms a template filter gives it instead, [`plain_forms`].
const MAX_SECRET_PATTERN: usize = 64 * 1024;
/// Bytes of pattern one set of secrets may take; the secrets past it are matched by their
/// plain forms too (a server setting 180 cookies of punctuation).
const MAX_PATTERN: usize = 256 * 1024;
/// A secret matched by its plain forms is matched as written only from this length on: the
/// forms of a megabyte would take tens of megabytes.
const MAX_PLAIN_FORMS_BYTES: usize = 64 * 1024;

/// A set of secrets' matcher: one regex for every shape of each secret it could afford, and the
/// plain forms of the others, longest first.
#[derive(Debug, Clone, Default)]
pub(super) struct Compiled {
    pub(super) re: Option<regex::Regex>,
    pub(super) plain: Vec<String>,
}

/// The pattern of `form` with every character in any of its encodings; `None` past `budget`
/// bytes.
fn form_pattern(form: &str, budget: usize) -> Option<String> {
    let mut pattern = String::new();
    for c in form.chars() {
        push_char(&mut pattern, c, ESCAPE_DEPTH, false);
        if pattern.len() > budget {
            return None;
        }
    }
    Some(pattern)
}

/// The plain forms a secret past the pattern's budget is matched by.
fn plain_of(secret: &str) -> Vec<String> {
    if secret.len() > MAX_PLAIN_FORMS_BYTES {
        vec![secret.to_string()]
    } else {
        plain_forms(secret)
    }
}

/// One alternation of every secret's every shape, longest shapes first (leftmost-first
/// matching then prefers the whole of a longer secret), within [`MAX_SECRET_PATTERN`] per
/// secret and [`MAX_PATTERN`] in all; the plain forms of the rest. A pattern too big for the
/// regex engine all the same: every secret by its plain forms.
pub(super) fn compile(secrets: &[String]) -> Compiled {
    let mut seen = std::collections::HashSet::new();
    let mut pieces: Vec<(usize, String)> = Vec::new();
    let mut plain: Vec<String> = Vec::new();
    let mut total = 0usize;
    for s in secrets {
        let budget = MAX_SECRET_PATTERN.min(MAX_PATTERN.saturating_sub(total));
        let mut mine = Vec::new();
        let mut cost = 0usize;
        let mut fits = true;
        for f in base_forms(s) {
            if seen.contains(&f) || mine.iter().any(|(g, _)| *g == f) {
                continue;
            }
            match form_pattern(&f, budget.saturating_sub(cost)) {
                Some(p) => {
                    cost += p.len() + 1;
                    mine.push((f, p));
                }
                None => {
                    fits = false;
                    break;
                }
            }
        }
        if fits {
            total += cost;
            for (f, p) in mine {
                pieces.push((f.len(), p));
                seen.insert(f);
            }
        } else {
            plain.extend(plain_of(s));
        }
    }
    pieces.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
    let pattern = pieces
        .iter()
        .map(|(_, p)| p.as_str())
        .collect::<Vec<_>>()
        .join("|");
    let re = (!pieces.is_empty())
        .then(|| {
            regex::RegexBuilder::new(&pattern)
                .size_limit(64 << 20)
                .build()
                .ok()
        })
        .flatten();
    if re.is_none() && !pieces.is_empty() {
        plain = secrets.iter().flat_map(|s| plain_of(s)).collect();
    }
    let mut kept = std::collections::HashSet::new();
    plain.retain(|f| kept.insert(f.clone()));
    plain.sort_by_key(|f| std::cmp::Reverse(f.len()));
    Compiled { re, plain }
}

/// The secret and its base64 shapes; each is then matched under every escaping.
pub(super) fn base_forms(secret: &str) -> Vec<String> {
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
        out.push(hex::encode_upper(bytes));
        out.push(hex::encode(bytes));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::{REDACTED, Redactor};

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

    /// A secret whose every-shape pattern would cost too much (a login token of 48,000
    /// characters, most of them escaped by some encoder) is matched by its plain forms,
    /// as written and as each template filter writes it; the short password beside it keeps
    /// its pattern, every character encoded its own way included. Before, the token's pattern
    /// was about 17 MB and its compile minutes and gigabytes per scrub.
    #[test]
    fn a_secret_too_costly_for_the_pattern_is_matched_by_its_plain_forms() {
        let token = "a\"b!".repeat(12_000);
        let pw = "pa\"ss!wd";
        let compiled = compile(&[token.clone(), pw.to_string()]);
        assert!(compiled.re.is_some());
        assert!(compiled.plain.contains(&token));
        assert!(!compiled.plain.iter().any(|f| f.contains("pa")));
        let r = Redactor::new([token.clone(), pw.to_string()]);
        let json = serde_json::Value::String(token.clone()).to_string();
        assert_eq!(
            r.scrub(&format!("before {token} after")),
            format!("before {REDACTED} after")
        );
        assert_eq!(
            r.scrub(&format!("before {json} after")),
            format!("before \"{REDACTED}\" after")
        );
        let every: String = pw.bytes().map(|b| format!("%{b:02X}")).collect();
        assert_eq!(r.scrub(&every), REDACTED);
        // 180 cookies of 100 escaped characters: past the set's budget, the rest by their
        // plain forms; each is still scrubbed.
        let cookies: Vec<String> = (0..180)
            .map(|i| format!("{i:03}{}", "!".repeat(100)))
            .collect();
        let compiled = compile(&cookies);
        assert!(!compiled.plain.is_empty() && compiled.re.is_some());
        let r = Redactor::new(cookies.clone());
        for c in &cookies {
            assert_eq!(r.scrub(&format!("x={c};")), format!("x={REDACTED};"), "{c}");
        }
    }
}
