//! [`Ctx`]: what each part validates its own table with. It collects every problem of one
//! file (so `joincanary check` reports them all at once) and the values that came from the
//! environment where they may be secrets (scrubbed from every error string a run produces;
//! hosts and ports are not: `env::Substituted::split`).

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use super::env::{self, EnvError, EnvSource, substitute, substitute_template};
use super::{ConfigError, MAX_DURATION, MIN_DURATION, S, SourceFile, out_of_range};
use crate::template::Template;

/// [`substitute`] or [`substitute_template`].
type SubstituteFn = fn(&str, &dyn EnvSource) -> Result<env::Substituted, EnvError>;

/// Collects errors for one file while it is validated, and the values that came from the
/// environment where they may be secrets (scrubbed from every error string a run produces).
pub struct Ctx<'a> {
    pub file: &'a SourceFile,
    pub env: &'a dyn EnvSource,
    pub errors: &'a mut Vec<ConfigError>,
    pub env_values: Vec<String>,
}

impl Ctx<'_> {
    pub fn error(
        &mut self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl fmt::Display,
    ) {
        // A problem of values that are not written in this file (a name taken from the file
        // name, a deadline and schedule both from `[defaults]`) is placed at the file's start.
        let (line, column) = span.map_or((1, 1), |s| self.file.locate(s.start));
        let key = key.into();
        self.errors.push(ConfigError {
            file: self.file.path.clone(),
            line,
            column,
            key: (!key.is_empty()).then_some(key),
            message: message.to_string(),
        });
    }

    /// `file:line:col` of `span` in this file, for an error in another file to name it.
    pub fn place(&self, span: Range<usize>) -> String {
        let (line, column) = self.file.locate(span.start);
        super::place(&self.file.path, line, column)
    }

    /// Where the value of the dotted key `key` is written in this file (see
    /// [`super::value_span`]), else `fallback`: for a problem in a part of a value whose type
    /// keeps no spans of its own (`extract = { a = { regex = "(" } }`).
    pub fn written(&self, key: &str, fallback: Range<usize>) -> Range<usize> {
        super::value_span(self.file, key).unwrap_or(fallback)
    }

    /// `${ENV}` substitution of one spanned string.
    pub fn env_str(&mut self, value: &S<String>, key: &str) -> Option<String> {
        self.env_str_with(value, key, substitute)
    }

    /// `${ENV}` substitution for a string that is then parsed as a template: values from the
    /// environment are data, never template syntax (see [`substitute_template`]).
    pub fn env_template_str(&mut self, value: &S<String>, key: &str) -> Option<String> {
        self.env_str_with(value, key, substitute_template)
    }

    /// One spanned string through `subst`, keeping the values it took from the environment.
    fn env_str_with(
        &mut self,
        value: &S<String>,
        key: &str,
        subst: SubstituteFn,
    ) -> Option<String> {
        match subst(value.get_ref(), self.env) {
            Ok(s) => {
                let (text, secrets) = s.split(key);
                self.env_values.extend(secrets);
                Some(text)
            }
            Err(e) => {
                self.error(Some(value.span()), key, e);
                None
            }
        }
    }

    /// `${ENV}` substitution, then `{{var}}` parsing.
    pub fn template(&mut self, value: &S<String>, key: &str) -> Option<Template> {
        let text = self.env_template_str(value, key)?;
        match Template::parse(&text) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(Some(value.span()), key, e);
                None
            }
        }
    }

    /// A duration greater than zero, at most [`MAX_DURATION`].
    pub fn duration(&mut self, value: &S<String>, key: &str) -> Option<Duration> {
        self.duration_from(value, key, MIN_DURATION, MAX_DURATION)
    }

    /// A duration in `min..=max` (within 1ns ..= [`MAX_DURATION`] whatever is asked): a value
    /// outside it (`100000000years`) is an error that states the accepted range, rather than
    /// an overflow later in a date calculation.
    pub fn duration_within(
        &mut self,
        value: &S<String>,
        key: &str,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        self.duration_from(value, key, min.max(MIN_DURATION), max.min(MAX_DURATION))
    }

    /// A duration where zero means "none" (jitter), at most [`MAX_DURATION`].
    pub fn duration_or_zero(&mut self, value: &S<String>, key: &str) -> Option<Duration> {
        self.duration_from(value, key, Duration::ZERO, MAX_DURATION)
    }

    fn duration_from(
        &mut self,
        value: &S<String>,
        key: &str,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let text = self.env_str(value, key)?;
        let message = match humantime::parse_duration(text.trim()) {
            Ok(d) if (min..=max).contains(&d) => return Some(d),
            Ok(d) if d.is_zero() && min == MIN_DURATION => "must be greater than zero".to_string(),
            Ok(_) => out_of_range(min, max),
            Err(e) => format!("`{text}` is not a duration ({e}); write e.g. `500ms`, `10s`, `1m`"),
        };
        self.error(Some(value.span()), key, message);
        None
    }

    pub fn positive(&mut self, value: &S<i64>, key: &str) -> Option<usize> {
        match usize::try_from(*value.get_ref()) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                self.error(
                    Some(value.span()),
                    key,
                    "must be a whole number greater than zero",
                );
                None
            }
        }
    }

    /// A whole number from 1 to `max`: a cap that bounds memory must not be configurable away
    /// (`max_body_bytes = 9223372036854775807` would let one reply fill the machine).
    pub fn positive_at_most(&mut self, value: &S<i64>, key: &str, max: usize) -> Option<usize> {
        match usize::try_from(*value.get_ref()) {
            Ok(n) if (1..=max).contains(&n) => Some(n),
            _ => {
                self.error(
                    Some(value.span()),
                    key,
                    format_args!("must be a whole number from 1 to {max}"),
                );
                None
            }
        }
    }

    /// `${ENV}` substitution inside every string of a TOML value, then conversion to JSON whose
    /// string leaves are templates (rendered per run: values from the environment are written
    /// so that rendering gives them back as they are).
    pub fn json(&mut self, value: &S<toml::Value>, key: &str) -> Option<serde_json::Value> {
        self.json_in(value, key, substitute_template)
    }

    /// As [`Ctx::json`] for JSON that is used as written, never rendered (`ping_json`).
    pub fn json_data(&mut self, value: &S<toml::Value>, key: &str) -> Option<serde_json::Value> {
        self.json_in(value, key, substitute)
    }

    fn json_in(
        &mut self,
        value: &S<toml::Value>,
        key: &str,
        subst: SubstituteFn,
    ) -> Option<serde_json::Value> {
        let substituted = self.env_in_value(value.get_ref(), value.span(), key, subst)?;
        match serde_json::to_value(&substituted) {
            Ok(v) => {
                if let Err(e) = crate::template::json_templates(&v) {
                    self.error(Some(value.span()), key, e);
                    return None;
                }
                Some(v)
            }
            Err(e) => {
                self.error(Some(value.span()), key, e);
                None
            }
        }
    }

    fn env_in_value(
        &mut self,
        value: &toml::Value,
        span: Range<usize>,
        key: &str,
        subst: SubstituteFn,
    ) -> Option<toml::Value> {
        Some(match value {
            toml::Value::String(s) => match subst(s, self.env) {
                Ok(sub) => {
                    let (text, secrets) = sub.split(key);
                    self.env_values.extend(secrets);
                    toml::Value::String(text)
                }
                Err(e) => {
                    self.error(Some(span), key, e);
                    return None;
                }
            },
            toml::Value::Array(items) => toml::Value::Array(
                items
                    .iter()
                    .map(|v| self.env_in_value(v, span.clone(), key, subst))
                    .collect::<Option<_>>()?,
            ),
            toml::Value::Table(t) => {
                let mut out = toml::Table::new();
                for (k, v) in t {
                    out.insert(
                        k.clone(),
                        self.env_in_value(v, span.clone(), &format!("{key}.{k}"), subst)?,
                    );
                }
                toml::Value::Table(out)
            }
            other => other.clone(),
        })
    }
}
