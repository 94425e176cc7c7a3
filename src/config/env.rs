//! `${VAR}` and `${VAR:-default}` substitution, done once at load time.
//!
//! Secrets and per-deployment values come from the environment; an unset variable without a
//! default is a load error rather than an empty password sent at 3 a.m.

/// Where environment values come from: the process, or a map in tests (edition 2024 makes
/// `set_var` unsafe, and tests run in parallel).
pub trait EnvSource: Send + Sync {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvSource for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

/// Why substitution failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error(
        "environment variable `{0}` is not set and has no default (write `${{{0}:-default}}` to give one)"
    )]
    Unset(String),
    #[error("`${{` is never closed with `}}`")]
    Unclosed,
    #[error("`{0}` is not a valid environment variable name")]
    BadName(String),
}

/// The result of substituting one string: the text, and the values that came from the
/// environment (so the caller can treat them as possible secrets).
#[derive(Debug, Default)]
pub struct Substituted {
    pub text: String,
    pub env_values: Vec<String>,
}

/// Replaces every `${VAR}` / `${VAR:-default}` in `input`. `$${` is a literal `${`.
///
/// # Errors
/// An unset variable without a default, an unclosed `${`, a malformed name.
pub fn substitute(input: &str, env: &dyn EnvSource) -> Result<Substituted, EnvError> {
    substitute_with(input, env, str::to_string)
}

/// [`substitute`] for a string that is then parsed as a template: each value from the
/// environment is written as template text that renders to exactly that value, so a password
/// `ab{{region}}cd` is sent as written and a `{{` in it is not a syntax error. Defaults are
/// part of the file, so they stay template text.
///
/// # Errors
/// As [`substitute`].
pub fn substitute_template(input: &str, env: &dyn EnvSource) -> Result<Substituted, EnvError> {
    substitute_with(input, env, crate::flow::template::escape_literal)
}

fn substitute_with(
    input: &str,
    env: &dyn EnvSource,
    write_value: fn(&str) -> String,
) -> Result<Substituted, EnvError> {
    let mut out = Substituted::default();
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.text.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.text.push_str("${");
            rest = after;
            continue;
        }
        let Some(body_start) = tail.strip_prefix("${") else {
            out.text.push('$');
            rest = &tail[1..];
            continue;
        };
        let close = body_start.find('}').ok_or(EnvError::Unclosed)?;
        let body = &body_start[..close];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(EnvError::BadName(name.to_string()));
        }
        match env.get(name).filter(|v| !v.is_empty()) {
            Some(value) => {
                out.text.push_str(&write_value(&value));
                out.env_values.push(value);
            }
            None => match default {
                Some(d) => out.text.push_str(d),
                None => return Err(EnvError::Unset(name.to_string())),
            },
        }
        rest = &body_start[close + 1..];
    }
    out.text.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitutes_set_and_default() {
        let e = env(&[("A", "1")]);
        let s = substitute("x${A}y${B:-two}z", &e).unwrap();
        assert_eq!(s.text, "x1ytwoz");
        assert_eq!(s.env_values, ["1"]);
    }

    #[test]
    fn empty_counts_as_unset_like_the_shell() {
        let e = env(&[("A", "")]);
        assert_eq!(substitute("${A:-d}", &e).unwrap().text, "d");
    }

    #[test]
    fn unset_without_default_fails() {
        assert_eq!(
            substitute("${NOPE}", &env(&[])).unwrap_err(),
            EnvError::Unset("NOPE".into())
        );
    }

    #[test]
    fn template_values_are_data() {
        let e = env(&[("PW", "ab{{region}}cd\"$}")]);
        let s = substitute_template("{{user}}:${PW}", &e).unwrap();
        let t = crate::flow::template::Template::parse(&s.text).unwrap();
        assert_eq!(t.vars().collect::<Vec<_>>(), ["user"]);
        let vars = env(&[("user", "u")]);
        assert_eq!(t.render(&vars).unwrap(), "u:ab{{region}}cd\"$}");
        assert_eq!(s.env_values, ["ab{{region}}cd\"$}"]);
    }

    #[test]
    fn escapes_and_plain_dollars_pass_through() {
        let s = substitute("$${A} costs $5", &env(&[])).unwrap();
        assert_eq!(s.text, "${A} costs $5");
        assert_eq!(
            substitute("${A", &env(&[])).unwrap_err(),
            EnvError::Unclosed
        );
        assert!(matches!(
            substitute("${1A}", &env(&[])),
            Err(EnvError::BadName(_))
        ));
    }
}
