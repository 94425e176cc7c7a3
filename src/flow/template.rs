//! `{{name}}` templates: parsed once at load time, rendered per run from the run's variables.
//!
//! Parsing at load time is what lets `joincanary check` say "variable used before any step sets
//! it" without sending traffic.

use std::collections::HashMap;
use std::fmt;

/// Names every run provides without a step setting them.
pub const BUILTINS: [&str; 4] = ["uuid", "now_ms", "region", "probe"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Var(String),
}

/// A string with `{{name}}` holes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

/// Why a template string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`{{{{` at byte {0} is never closed with `}}}}`")]
    Unclosed(usize),
    #[error("`{{{{{0}}}}}` is not a valid variable name (letters, digits, `_`, `-`, `.`)")]
    BadName(String),
}

impl Template {
    /// Parses `text`.
    ///
    /// # Errors
    /// An unclosed `{{` or a name with characters outside `[A-Za-z0-9_.-]`.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                segments.push(Segment::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or(TemplateError::Unclosed(offset + open))?;
            let name = after[..close].trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(TemplateError::BadName(after[..close].to_string()));
            }
            segments.push(Segment::Var(name.to_string()));
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_string()));
        }
        Ok(Template { segments })
    }

    /// The variable names this template reads, in order.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Var(v) => Some(v.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Renders with `vars`; a missing variable renders as the empty string (load-time checks
    /// make that unreachable for validated probes) and is reported in `missing`.
    pub fn render(&self, vars: &HashMap<String, String>) -> Result<String, MissingVar> {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => out.push_str(l),
                Segment::Var(v) => match vars.get(v) {
                    Some(value) => out.push_str(value),
                    None => return Err(MissingVar(v.clone())),
                },
            }
        }
        Ok(out)
    }

    /// Renders every hole as `placeholder`: used to validate URLs at load time.
    pub fn render_placeholder(&self, placeholder: &str) -> String {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.as_str(),
                Segment::Var(_) => placeholder,
            })
            .collect()
    }
}

/// A template read a variable that the run does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("variable `{0}` is not set")]
pub struct MissingVar(pub String);

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => f.write_str(l)?,
                Segment::Var(v) => write!(f, "{{{{{v}}}}}")?,
            }
        }
        Ok(())
    }
}

/// Renders every string leaf of a JSON value as a template.
///
/// # Errors
/// The first variable the value reads that `vars` lacks.
pub fn render_json(
    value: &serde_json::Value,
    vars: &HashMap<String, String>,
) -> Result<serde_json::Value, MissingVar> {
    use serde_json::Value;
    Ok(match value {
        Value::String(s) => match Template::parse(s) {
            Ok(t) => Value::String(t.render(vars)?),
            Err(_) => Value::String(s.clone()),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_json(v, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(v, vars)?)))
                .collect::<Result<_, MissingVar>>()?,
        ),
        other => other.clone(),
    })
}

/// Every template string inside a JSON value (for load-time checks).
pub fn json_templates(value: &serde_json::Value) -> Result<Vec<Template>, TemplateError> {
    use serde_json::Value;
    let mut out = Vec::new();
    match value {
        Value::String(s) => out.push(Template::parse(s)?),
        Value::Array(items) => {
            for v in items {
                out.extend(json_templates(v)?);
            }
        }
        Value::Object(map) => {
            for v in map.values() {
                out.extend(json_templates(v)?);
            }
        }
        _ => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_holes_and_literals() {
        let t = Template::parse("ws://h/ws?token={{ token }}&r={{region}}").unwrap();
        assert_eq!(t.vars().collect::<Vec<_>>(), ["token", "region"]);
        let out = t
            .render(&vars(&[("token", "abc"), ("region", "eu")]))
            .unwrap();
        assert_eq!(out, "ws://h/ws?token=abc&r=eu");
    }

    #[test]
    fn missing_variable_is_an_error() {
        let t = Template::parse("{{a}}").unwrap();
        assert_eq!(t.render(&vars(&[])), Err(MissingVar("a".into())));
    }

    #[test]
    fn rejects_unclosed_and_bad_names() {
        assert_eq!(Template::parse("x {{a"), Err(TemplateError::Unclosed(2)));
        assert!(matches!(
            Template::parse("{{a b}}"),
            Err(TemplateError::BadName(_))
        ));
        assert!(matches!(
            Template::parse("{{}}"),
            Err(TemplateError::BadName(_))
        ));
    }

    #[test]
    fn json_leaves_are_rendered() {
        let v = serde_json::json!({"a": "{{x}}", "b": [1, "{{x}}-y"]});
        let out = render_json(&v, &vars(&[("x", "1")])).unwrap();
        assert_eq!(out, serde_json::json!({"a": "1", "b": [1, "1-y"]}));
    }
}
