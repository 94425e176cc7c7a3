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
        let probe = Regex::new(&template.render_placeholder("x"))
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
        Regex::new(&text)
            .map(Cow::Owned)
            .map_err(|e| format!("pattern `{}`: {e}", self.template))
    }
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
    subset_at(pattern, actual, &mut String::new())
}

fn subset_at(pattern: &Value, actual: &Value, path: &mut String) -> Result<(), String> {
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
        (Value::Number(p), Value::Number(a)) if p.as_f64() == a.as_f64() => Ok(()),
        (p, a) if p == a => Ok(()),
        (p, a) => {
            let at = if path.is_empty() { "/" } else { path.as_str() };
            Err(format!("{at} is {}, expected {}", short(a), short(p)))
        }
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
        assert!(json_subset(&json!([1, 2]), &json!([1])).is_err());
    }

    #[test]
    fn regex_capture_prefers_group_one() {
        let re = regex::Regex::new(r"token=(\w+)").unwrap();
        assert_eq!(regex_capture(&re, "x token=abc y").as_deref(), Some("abc"));
        let whole = regex::Regex::new(r"\d+").unwrap();
        assert_eq!(regex_capture(&whole, "a 42").as_deref(), Some("42"));
    }
}
