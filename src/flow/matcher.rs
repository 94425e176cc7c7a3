//! Does a reply match what a step expects (or what the step calls the server's error), and
//! which values does it carry.

use std::borrow::Cow;
use std::collections::HashMap;

use regex::Regex;
use serde_json::Value;

use crate::template::{Context, Template};

/// A regex written as a template: `{{var}}` values are regex-escaped when it is rendered. A
/// pattern without holes is compiled once, at load time.
#[derive(Debug, Clone)]
pub struct Pattern {
    template: Template,
    fixed: Option<Regex>,
}

impl Pattern {
    /// Parses and checks `text` (holes are checked with a placeholder value).
    ///
    /// # Errors
    /// A bad template or a regex that does not compile.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let template = Template::parse(text).map_err(|e| e.to_string())?;
        let probe = crate::diag::compile_regex(&template.render_placeholder("x"))
            .map_err(|e| format!("not a valid regex: {e}"))?;
        let fixed = template.is_literal().then_some(probe);
        Ok(Pattern { template, fixed })
    }

    pub fn template(&self) -> &Template {
        &self.template
    }

    /// The regex for this run's values.
    ///
    /// # Errors
    /// A variable the run lacks, or a value that made the regex too big.
    pub fn regex(&self, vars: &HashMap<String, String>) -> Result<Cow<'_, Regex>, String> {
        if let Some(re) = &self.fixed {
            return Ok(Cow::Borrowed(re));
        }
        let text = self
            .template
            .render_in(vars, Context::Regex)
            .map_err(|e| e.to_string())?;
        crate::diag::compile_regex(&text)
            .map(Cow::Owned)
            .map_err(|e| format!("pattern `{}`: {e}", self.template))
    }
}

/// Bytes written as hex in a probe file: pairs of hex digits, with whitespace or `:` between
/// them allowed (`0a 1f`, `0a:1f`, as hex dumps print them).
///
/// # Errors
/// A character that is not a hex digit, or an odd count of digits.
pub fn hex_bytes(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    hex::decode(&digits).map_err(|e| format!("not hex: {e}"))
}

/// What a binary frame must be (`expect_binary`): a protobuf or other binary signalling reply
/// matched by its leading bytes, bytes it contains and its length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BinaryPattern {
    pub prefix: Vec<u8>,
    pub contains: Vec<u8>,
    pub min_bytes: Option<usize>,
    pub max_bytes: Option<usize>,
}

/// Bytes shown of a binary frame in a mismatch.
const HEX_SHOWN: usize = 24;

impl BinaryPattern {
    /// `Ok` if `bytes` (a binary frame's; `None`: a text frame) matches; `Err(why not)`,
    /// without the frame's bytes (the caller shows them where no secret is among them).
    pub fn matches(&self, bytes: Option<&[u8]>) -> Result<(), String> {
        let Some(bytes) = bytes else {
            return Err("a text frame, not binary".into());
        };
        let n = bytes.len();
        let why = if !bytes.starts_with(&self.prefix) {
            format!("does not start with {}", hex::encode(&self.prefix))
        } else if !self.contains.is_empty()
            && !bytes
                .windows(self.contains.len())
                .any(|w| w == self.contains.as_slice())
        {
            format!("does not contain {}", hex::encode(&self.contains))
        } else if self.min_bytes.is_some_and(|min| n < min) {
            format!(
                "is shorter than {} bytes",
                self.min_bytes.unwrap_or_default()
            )
        } else if self.max_bytes.is_some_and(|max| n > max) {
            format!(
                "is longer than {} bytes",
                self.max_bytes.unwrap_or_default()
            )
        } else {
            return Ok(());
        };
        Err(format!("a binary frame of {n} bytes {why}"))
    }
}

/// The first bytes of a binary frame in hex, for error messages.
pub fn hex_view(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(HEX_SHOWN)];
    let more = if bytes.len() > HEX_SHOWN { "…" } else { "" };
    format!("hex {}{more}", hex::encode(shown))
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.template.fmt(f)
    }
}

/// Checks that `pattern` is a subset of `actual`: every key of a pattern object must be present
/// with a matching value; arrays match element-wise with equal length; scalars must be equal
/// (numbers compared by value, so `2` matches `2.0`).
///
/// # Errors
/// The JSON pointer of the first mismatch and what was there.
pub fn json_subset(pattern: &Value, actual: &Value) -> Result<(), String> {
    if is_json_subset(pattern, actual) {
        return Ok(());
    }
    subset_at(pattern, actual, &mut String::new())
}

/// [`json_subset`] without the mismatch's description: where only the answer counts (a
/// `fail_json` or heartbeat pattern checked against every frame, most of which differ), no
/// message is built and thrown away.
pub fn is_json_subset(pattern: &Value, actual: &Value) -> bool {
    match (pattern, actual) {
        (Value::Object(p), Value::Object(a)) => p
            .iter()
            .all(|(k, pv)| a.get(k).is_some_and(|av| is_json_subset(pv, av))),
        (Value::Array(p), Value::Array(a)) if p.len() == a.len() => {
            p.iter().zip(a).all(|(pv, av)| is_json_subset(pv, av))
        }
        (Value::Number(p), Value::Number(a)) => same_number(p, a),
        (p, a) => p == a,
    }
}

pub(super) fn subset_at(pattern: &Value, actual: &Value, path: &mut String) -> Result<(), String> {
    match (pattern, actual) {
        (Value::Object(p), Value::Object(a)) => {
            for (k, pv) in p {
                let len = path.len();
                path.push('/');
                path.push_str(k);
                match a.get(k) {
                    Some(av) => subset_at(pv, av, path)?,
                    None => return Err(format!("{path} is missing")),
                }
                path.truncate(len);
            }
            Ok(())
        }
        (Value::Array(p), Value::Array(a)) if p.len() == a.len() => {
            for (i, (pv, av)) in p.iter().zip(a).enumerate() {
                let len = path.len();
                path.push_str(&format!("/{i}"));
                subset_at(pv, av, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        (Value::Number(p), Value::Number(a)) if same_number(p, a) => Ok(()),
        (p, a) if p == a => Ok(()),
        (p, a) => {
            let at = if path.is_empty() { "/" } else { path.as_str() };
            Err(format!("{at} is {}, expected {}", short(a), short(p)))
        }
    }
}

/// Two JSON numbers are the same value: integers exactly (Janus's u64 ids past 2^53 differ in
/// digits an f64 drops, and two sessions must not match), `2` and `2.0` by value.
fn same_number(p: &serde_json::Number, a: &serde_json::Number) -> bool {
    let int = |n: &serde_json::Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (int(p), int(a)) {
        (Some(p), Some(a)) => p == a,
        _ => p.as_f64() == a.as_f64(),
    }
}

/// A value quoted for a mismatch message (cut after the secrets are scrubbed, see `quote`).
fn short(v: &Value) -> String {
    crate::redact::quote(&v.to_string(), 60)
}

/// A JSON value as a variable: strings bare, everything else as JSON text.
pub fn value_as_var(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The first capture group of `re` in `text`, or the whole match when there is no group.
pub fn regex_capture(re: &regex::Regex, text: &str) -> Option<String> {
    let caps = re.captures(text)?;
    caps.get(1)
        .or_else(|| caps.get(0))
        .map(|m| m.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_read_as_dumps_print_it() {
        assert_eq!(
            hex_bytes("0a 06:FF\n1f").unwrap(),
            vec![0x0a, 0x06, 0xff, 0x1f]
        );
        assert_eq!(hex_bytes("").unwrap(), Vec::<u8>::new());
        assert!(hex_bytes("0a0").unwrap_err().starts_with("not hex: "));
        assert!(hex_bytes("zz").is_err());
    }

    #[test]
    fn a_binary_pattern_says_why_a_frame_is_not_it() {
        let p = BinaryPattern {
            prefix: vec![0x0a],
            contains: b"room".to_vec(),
            min_bytes: Some(6),
            max_bytes: Some(8),
        };
        assert_eq!(p.matches(Some(b"\x0a\x00room")), Ok(()));
        for (frame, why) in [
            (None, "a text frame, not binary"),
            (
                Some(&b"\x12room.."[..]),
                "a binary frame of 7 bytes does not start with 0a",
            ),
            (
                Some(b"\x0axxxxxx"),
                "a binary frame of 7 bytes does not contain 726f6f6d",
            ),
            (
                Some(b"\x0aroom"),
                "a binary frame of 5 bytes is shorter than 6 bytes",
            ),
            (
                Some(b"\x0aroom....."),
                "a binary frame of 10 bytes is longer than 8 bytes",
            ),
        ] {
            assert_eq!(p.matches(frame).unwrap_err(), why);
        }
        // No condition but binary: any binary frame, never a text one.
        assert_eq!(BinaryPattern::default().matches(Some(b"")), Ok(()));
        assert!(BinaryPattern::default().matches(None).is_err());
        assert_eq!(hex_view(&[0xab; 30]), format!("hex {}…", "ab".repeat(24)));
        assert_eq!(hex_view(&[1, 2]), "hex 0102");
    }
    use serde_json::json;

    #[test]
    fn patterns_are_templates_with_escaped_values() {
        let p = Pattern::parse(r#""room":"{{room}}""#).unwrap();
        let vars: HashMap<String, String> = [("room".to_string(), "a.b+".to_string())].into();
        let re = p.regex(&vars).unwrap();
        assert!(re.is_match(r#"{"room":"a.b+"}"#));
        assert!(!re.is_match(r#"{"room":"axbb"}"#));
        assert!(Pattern::parse("(").is_err());
        assert!(Pattern::parse("{{a|nope}}").is_err());
        assert!(matches!(
            Pattern::parse("x+")
                .unwrap()
                .regex(&HashMap::new())
                .unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn subset_ignores_extra_keys() {
        let p = json!({"type": "joined", "room": "r"});
        let a = json!({"type": "joined", "room": "r", "participants": 2});
        assert!(json_subset(&p, &a).is_ok());
    }

    #[test]
    fn subset_reports_first_mismatch_path() {
        let p = json!({"type": "joined", "room": "r"});
        assert_eq!(
            crate::redact::finish(
                &crate::redact::Redactor::default(),
                &json_subset(&json!({"type": "joined"}), &json!({"type": "ping"})).unwrap_err()
            ),
            "/type is \"ping\", expected \"joined\""
        );
        assert_eq!(
            json_subset(&p, &json!({"type": "joined"})).unwrap_err(),
            "/room is missing"
        );
        assert!(json_subset(&json!({"n": 2}), &json!({"n": 2.0})).is_ok());
        // Integer ids compare by every digit: 2^53 and 2^53 + 1 are one f64.
        let (id, next) = (1u64 << 53, (1u64 << 53) + 1);
        assert!(json_subset(&json!({"sender": id}), &json!({"sender": next})).is_err());
        assert!(!is_json_subset(
            &json!({"sender": id}),
            &json!({"sender": next})
        ));
        assert!(is_json_subset(
            &json!({"s": u64::MAX}),
            &json!({"s": u64::MAX})
        ));
        assert!(!is_json_subset(&json!({"s": -1}), &json!({"s": u64::MAX})));
        assert!(json_subset(&json!([1, 2]), &json!([1])).is_err());
    }

    #[test]
    fn regex_capture_prefers_group_one() {
        let re = regex::Regex::new(r"token=(\w+)").unwrap();
        assert_eq!(regex_capture(&re, "x token=abc y").as_deref(), Some("abc"));
        let whole = regex::Regex::new(r"\d+").unwrap();
        assert_eq!(regex_capture(&whole, "a 42").as_deref(), Some("42"));
    }

    /// Regexes from config compile under `REGEX_SIZE_LIMIT` (2 MiB): the shapes probes use
    /// pass, a repeated Unicode class past it is refused with a hint, its ASCII form passes.
    #[test]
    fn config_regexes_are_size_limited() {
        for ok in [
            r"\w+",
            r"\w{40}",
            r"[A-Za-z0-9_]{64}",
            r"(?-u:\w){64}",
            r#""body":"[^"]*""#,
        ] {
            assert!(crate::diag::compile_regex(ok).is_ok(), "{ok}");
        }
        let err = crate::diag::compile_regex(r"\w{100}").unwrap_err();
        assert!(err.contains("would exceed 2097152 bytes"), "{err}");
        assert!(err.contains("[A-Za-z0-9_]{64}"), "{err}");
        // The crate's own default would take it: the limit is ours.
        assert!(regex::Regex::new(r"\w{100}").is_ok());
        // A pattern that is not a regex says so, as before.
        assert!(
            crate::diag::compile_regex("(")
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(
            Pattern::parse(r"x\w{100}")
                .unwrap_err()
                .contains("would exceed")
        );
    }
}
