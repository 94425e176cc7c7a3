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
    #[error("`${{…}}` nested more than {MAX_NESTING} deep")]
    TooDeep,
}

/// How deep `${A:-${B:-${C}}}` may nest: enough for a default built from another variable,
/// bounded so a hostile file cannot recurse without end.
pub const MAX_NESTING: usize = 4;

/// The result of substituting one string: the text, and the values that came from the
/// environment (so the caller can treat them as possible secrets).
#[derive(Debug, Default)]
pub struct Substituted {
    pub text: String,
    pub env_values: Vec<String>,
}

/// Replaces every `${VAR}` / `${VAR:-default}` in `input`. `$${` is a literal `${`. A default
/// may itself use `${…}` (`${SLACK_URL:-https://hooks.example/${REGION}}`), up to
/// [`MAX_NESTING`] deep; as in the shell, it is expanded only when the default is used.
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
    substitute_with(input, env, crate::template::escape_literal)
}

fn substitute_with(
    input: &str,
    env: &dyn EnvSource,
    write_value: fn(&str) -> String,
) -> Result<Substituted, EnvError> {
    let mut out = Substituted::default();
    substitute_into(input, env, write_value, 0, &mut out)?;
    Ok(out)
}

/// Appends `input` with its variables substituted to `out`; `depth` is how many defaults
/// enclose it.
fn substitute_into(
    input: &str,
    env: &dyn EnvSource,
    write_value: fn(&str) -> String,
    depth: usize,
    out: &mut Substituted,
) -> Result<(), EnvError> {
    if depth > MAX_NESTING {
        return Err(EnvError::TooDeep);
    }
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
        let close = closing_brace(body_start).ok_or(EnvError::Unclosed)?;
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
                Some(d) => substitute_into(d, env, write_value, depth + 1, out)?,
                None => return Err(EnvError::Unset(name.to_string())),
            },
        }
        rest = &body_start[close + 1..];
    }
    out.text.push_str(rest);
    Ok(())
}

/// The index of the `}` that closes a `${` whose body starts `body`: a `${` inside opens one
/// more level (`$${` is a literal and does not), any other `}` at the first level closes it.
fn closing_brace(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut open = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"$${") {
            i += 3;
            continue;
        }
        if bytes[i..].starts_with(b"${") {
            open += 1;
            i += 2;
            continue;
        }
        if bytes[i] == b'}' {
            if open == 0 {
                return Some(i);
            }
            open -= 1;
        }
        i += 1;
    }
    None
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
        let t = crate::template::Template::parse(&s.text).unwrap();
        assert_eq!(t.vars().collect::<Vec<_>>(), ["user"]);
        let vars = env(&[("user", "u")]);
        assert_eq!(t.render(&vars).unwrap(), "u:ab{{region}}cd\"$}");
        assert_eq!(s.env_values, ["ab{{region}}cd\"$}"]);
    }

    #[test]
    fn a_default_may_use_another_variable() {
        // Issue 16: the inner `${REGION}` was sent literally in a Slack URL's path.
        let text = "${SLACK_URL:-https://hooks.example/services/T000/B000/${REGION}}/x";
        let e = env(&[("REGION", "eu-west-1")]);
        let s = substitute(text, &e).unwrap();
        assert_eq!(
            s.text,
            "https://hooks.example/services/T000/B000/eu-west-1/x"
        );
        assert_eq!(s.env_values, ["eu-west-1"]);
        // Set: the default is not looked at (its unset variable is no error), as in the shell.
        let e = env(&[("SLACK_URL", "https://h/s")]);
        assert_eq!(substitute(text, &e).unwrap().text, "https://h/s/x");
        // Used and unset inside: the inner name is the error.
        assert_eq!(
            substitute(text, &env(&[])).unwrap_err(),
            EnvError::Unset("REGION".into())
        );
        assert_eq!(
            substitute("${A:-${B:-${C:-deep}}}!", &env(&[]))
                .unwrap()
                .text,
            "deep!"
        );
        // A `}` that opens nothing still closes, as before: a JSON default keeps its brace.
        assert_eq!(
            substitute("${A:-{\"a\":1}}", &env(&[])).unwrap().text,
            "{\"a\":1}"
        );
        assert_eq!(substitute("${A:-$${B}}", &env(&[])).unwrap().text, "${B}");
        let deep = "${A:-".repeat(MAX_NESTING + 1) + "x" + &"}".repeat(MAX_NESTING + 1);
        assert_eq!(substitute(&deep, &env(&[])).unwrap_err(), EnvError::TooDeep);
        let ok = "${A:-".repeat(MAX_NESTING) + "x" + &"}".repeat(MAX_NESTING);
        assert_eq!(substitute(&ok, &env(&[])).unwrap().text, "x");
        assert_eq!(
            substitute("${A:-${B}", &env(&[])).unwrap_err(),
            EnvError::Unclosed
        );
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
