//! Diagnostics for the config and probe files: the located error every part reports
//! (`file:line:col: key: message`), the [`Ctx`] each part validates its own table with, and the
//! helpers beneath it (source positions, `${ENV}` substitution, bounded file reads). A leaf:
//! it imports nothing of the crate but [`crate::template`], so every part can take it.

mod ctx;
pub mod env;
pub mod file;
mod position;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use ctx::Ctx;
pub use env::{EnvError, EnvSource, ProcessEnv, substitute, substitute_template};
pub use position::{
    array_tables, from_table, name_position, name_position_in, parse_toml, read_source, table_keys,
    value_at, value_span,
};

/// A value with its byte span in the file, for errors that point at it.
pub type S<T> = toml::Spanned<T>;

/// The longest duration any key accepts: a year (365.25 days, humantime's `1year`), so a
/// yearly maintenance window fits. A longer one is a slip of the unit, and bounding every
/// duration here keeps each time calculation downstream (dates, timers, backoffs) far from
/// overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(31_557_600);
/// The shortest duration a key that must be greater than zero accepts.
pub(crate) const MIN_DURATION: Duration = Duration::from_nanos(1);

/// ` (did you mean `timeout`?)` when one of the keys named in `expected` (`` `a`, `b` ``, as
/// serde and every "expected one of" list write them) is a slip away from `key`: a letter
/// missed, doubled, swapped or changed, `-` for `_`, another case. Empty otherwise, so an
/// unknown key far from every accepted one reads as before.
pub fn did_you_mean(key: &str, expected: &str) -> String {
    let lower = key.to_lowercase();
    // One slip in a short key, two in a longer one: `wat` is not `url`.
    let reach = if lower.chars().count() <= 4 { 1 } else { 2 };
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|name| (strsim::damerau_levenshtein(&lower, name), name))
        // Compared with the key as written: `Timeout` is one slip (the case) from `timeout`.
        .filter(|(d, name)| *d <= reach && *name != key)
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| format!(" (did you mean `{name}`?)"))
        .unwrap_or_default()
}

/// [`did_you_mean`] for a value picked from a closed list (a step `kind`, a pager or heartbeat
/// `type`, a `protocol`, a `mode`): `names` are the accepted words as they are written.
pub fn did_you_mean_among<'a>(word: &str, names: impl IntoIterator<Item = &'a str>) -> String {
    let expected: String = names.into_iter().map(|n| format!("`{n}`, ")).collect();
    did_you_mean(word, &expected)
}

/// A duration key as written, for `#[serde(default, deserialize_with = "crate::diag::duration")]`
/// on an `Option<S<String>>`: a number written bare (`timeout = 5`) is refused saying what a
/// duration looks like (serde's own words were "invalid type: integer `5`, expected a
/// string"). The text is parsed later, with `${ENV}`, by [`Ctx::duration`].
///
/// # Errors
/// The value is not a string.
pub fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<S<String>>, D::Error> {
    required_duration(d).map(Some)
}

/// [`duration`] for a key that must be present.
///
/// # Errors
/// The value is not a string.
pub fn required_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<S<String>, D::Error> {
    struct Text(String);
    impl<'de> serde::Deserialize<'de> for Text {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl serde::de::Visitor<'_> for Visit {
                type Value = Text;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a duration in quotes with its unit, such as \"10s\", \"500ms\" or \"1m30s\"")
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
            }
            d.deserialize_str(Visit)
        }
    }
    let text = <S<Text> as serde::Deserialize>::deserialize(d)?;
    let span = text.span();
    Ok(S::new(span, text.into_inner().0))
}

/// "must be between 10ms and 1h": the accepted range, as every out-of-range error says it.
pub(crate) fn out_of_range(min: Duration, max: Duration) -> String {
    format!(
        "must be between {} and {}",
        humantime::format_duration(min),
        humantime::format_duration(max)
    )
}

/// A duration flag (`--config.watch-interval`, `--redis-timeout`): as in the files, at most
/// [`MAX_DURATION`] (a timer of a longer period overflows when it is re-armed).
///
/// # Errors
/// Not a duration, or out of range.
pub fn parse_flag_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        Ok(_) => Err(out_of_range(Duration::ZERO, MAX_DURATION)),
        Err(e) => Err(e.to_string()),
    }
}

/// A label a metric or page carries (a probe, pager or heartbeat name): ASCII letters, digits,
/// `-`, `_` and `.`.
pub fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// One problem in a config or probe file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no position (an unreadable file).
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `steps[2].url`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl ConfigError {
    /// `file:line:col`, where another error can point to this one's place (a name given twice
    /// names the first one).
    pub fn place(&self) -> String {
        place(&self.file, self.line, self.column)
    }
}

/// `file:line:col` (`file` alone with no line), as every error writes its place.
pub fn place(file: &std::path::Path, line: usize, column: usize) -> String {
    if line > 0 {
        format!("{}:{line}:{column}", file.display())
    } else {
        file.display().to_string()
    }
}

/// Every problem found while loading; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A file's text, kept to turn byte spans into line and column.
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    pub(crate) fn locate(&self, offset: usize) -> (usize, usize) {
        let upto = &self.text[..offset.min(self.text.len())];
        let line = upto.matches('\n').count() + 1;
        let column = upto.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }
}

/// How big a regex from a config or probe file may compile (its NFA; the lazy DFA keeps the
/// crate's own 2 MiB cache cap): a fifth of the `regex` crate's default. Measured with regex
/// 1: `\w+` takes 50 KB, each Unicode `\w` about 50 KB more (`\w{10}` 0.5 MB, `\w{40}` 2.0 MB
/// passes, `\w{100}` 5.0 MB does not): a few such patterns per probe, in up to 10,000 probes
/// (and compiled again at every run when one holds a `{{var}}`), are what this bounds. Past
/// it the file is refused with the key and a hint; a run whose values make a pattern too big
/// fails `protocol`.
pub const REGEX_SIZE_LIMIT: usize = 2 << 20;

/// Compiles a regex from a config or probe file (or one rendered from it) under
/// [`REGEX_SIZE_LIMIT`]: the one way such a regex is built.
///
/// # Errors
/// Not a regex, or too big once compiled (the message then says how to make it smaller).
pub fn compile_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => format!(
                "the compiled regex would exceed {limit} bytes (a repeated Unicode class such \
                 as `\\w{{64}}` is large: write `[A-Za-z0-9_]{{64}}` or `(?-u:\\w){{64}}`)"
            ),
            e => e.to_string(),
        })
}
