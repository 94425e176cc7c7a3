//! `${VAR}` and `${VAR:-default}` substitution, done once at load time.
//!
//! Secrets and per-deployment values come from the environment; an unset variable without a
//! default is a load error rather than an empty password sent at 3 a.m.

use std::ops::Range;

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
/// environment with where each landed in the text (so the caller can tell which may be
/// secrets: [`Substituted::split`]).
#[derive(Debug, Default)]
pub struct Substituted {
    pub text: String,
    pub env_values: Vec<String>,
    /// Where each of `env_values` (same order) is in `text`.
    pub at: Vec<Range<usize>>,
}

/// Keys whose values say where or what, never who: a value from the environment written
/// there is shown as it is (the last part of the key, `[i]` ignored).
const PUBLIC_KEYS: &[&str] = &[
    "region",
    "listen",
    "state_dir",
    "probes",
    "ca_file",
    "private_key_file",
    "name",
    "host",
    "port",
    "domain",
    "timezone",
    "schedule",
];

impl Substituted {
    /// The text, and the values from the environment that are to be scrubbed as secrets:
    /// every one, unless it was written under a key of [`PUBLIC_KEYS`] or lies wholly in the
    /// address of a URL (`scheme://host:port`, never its user info, path, query or fragment:
    /// a webhook's path or a token in a query stays secret). Hosts and ports from the
    /// environment are then shown in errors and pages ("connect to db.internal:5432 failed")
    /// rather than `[redacted]:[redacted]`. A value also used where it may be a secret is
    /// scrubbed everywhere (the caller keeps every secret of a file in one list).
    pub fn split(self, key: &str) -> (String, Vec<String>) {
        let last = key.rsplit('.').next().unwrap_or(key);
        let last = last.split('[').next().unwrap_or(last);
        if PUBLIC_KEYS.contains(&last) {
            return (self.text, Vec::new());
        }
        let address = address_of(&self.text);
        let secrets = self
            .env_values
            .into_iter()
            .zip(self.at)
            .filter(|(_, at)| {
                !address
                    .iter()
                    .any(|a| a.start <= at.start && at.end <= a.end)
            })
            .map(|(v, _)| v)
            .collect();
        (self.text, secrets)
    }
}

/// The parts of `text`, when it is a URL, that only say where to connect: `scheme://` and
/// `host[:port]` (one range when there is no user info).
fn address_of(text: &str) -> Vec<Range<usize>> {
    let Some(sep) = text.find("://") else {
        return Vec::new();
    };
    let scheme = &text[..sep];
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !is_scheme {
        return Vec::new();
    }
    let start = sep + 3;
    let end = text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| start + i);
    match text[start..end].rfind('@') {
        Some(at) => vec![0..start, start + at + 1..end],
        None => std::iter::once(0..end).collect(),
    }
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
                let start = out.text.len();
                out.text.push_str(&write_value(&value));
                out.at.push(start..out.text.len());
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

    /// Issue 17: hosts and ports from the environment are shown; what may be a secret is not.
    #[test]
    fn only_a_url_address_or_a_public_key_makes_a_value_public() {
        let e = env(&[
            ("HOST", "db.internal"),
            ("PORT", "5432"),
            ("BASE", "https://api.example.com:8443"),
            ("USER", "alice"),
            ("PW", "hunter22"),
            ("TOKEN", "tok-1234"),
            ("HOOK", "https://hooks.example/services/T0/B0/XYZ"),
        ]);
        let secrets = |text: &str, key: &str| substitute(text, &e).unwrap().split(key).1;
        let none: Vec<String> = Vec::new();
        assert_eq!(
            secrets("http://${HOST}:${PORT}/login", "steps[0].url"),
            none
        );
        assert_eq!(secrets("${BASE}/v1/join?x=1", "steps[0].url"), none);
        assert_eq!(secrets("redis://${HOST}", "url"), none);
        assert_eq!(
            secrets("https://${USER}:${PW}@${HOST}:${PORT}/", "url"),
            ["alice", "hunter22"]
        );
        assert_eq!(
            secrets("https://${HOST}/x?token=${TOKEN}#${PW}", "url"),
            ["tok-1234", "hunter22"]
        );
        assert_eq!(
            secrets("https://${HOST}/hook/${TOKEN}", "url"),
            ["tok-1234"]
        );
        // A whole webhook URL holds its secret in the path.
        assert_eq!(
            secrets("${HOOK}", "pager[0].url"),
            ["https://hooks.example/services/T0/B0/XYZ"]
        );
        // Not a URL: a secret unless the key says where or what.
        assert_eq!(secrets("${HOST}", "headers.Authorization"), ["db.internal"]);
        assert_eq!(
            secrets("Bearer ${TOKEN}", "headers.Authorization"),
            ["tok-1234"]
        );
        assert_eq!(secrets("${PW}", "password"), ["hunter22"]);
        assert_eq!(secrets("${HOST}", "pager[1].host"), none);
        assert_eq!(secrets("${PORT}", "port"), none);
        assert_eq!(secrets("eu-${HOST}", "region"), none);
        // `${…}` nested in a default: where it landed still decides.
        assert_eq!(
            secrets("${NOPE:-http://${HOST}}/${PW}", "url"),
            ["hunter22"]
        );
        // A user info that is only a user name, `@` in the value: still not the address.
        assert_eq!(secrets("http://${USER}@${HOST}/", "url"), ["alice"]);
        let at = env(&[("H", "u:p@h.example")]);
        let split = substitute("http://${H}/", &at).unwrap().split("url");
        assert_eq!(split.1, ["u:p@h.example"]);
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
