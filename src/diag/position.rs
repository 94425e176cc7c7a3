//! Where a problem is: byte spans and the TOML parser's errors turned into line, column and
//! dotted key (`steps[1].url`), for files read through [`super::file`].

use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::{ConfigError, SourceFile, file};

/// Reads a config or probe file through [`file::read_text`]: a FIFO, device or directory is
/// refused without blocking, and so is a file over [`file::MAX_FILE_BYTES`]; the error names it.
pub fn read_source(path: &Path, errors: &mut Vec<ConfigError>) -> Option<SourceFile> {
    match file::read_text(path) {
        Ok(text) => Some(SourceFile {
            path: path.to_path_buf(),
            text,
        }),
        Err(e) => {
            errors.push(ConfigError {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                key: None,
                message: format!("cannot read: {e}"),
            });
            None
        }
    }
}

/// Parses TOML into `T`, turning the parser's error into a located [`ConfigError`].
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &SourceFile,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    toml::from_str::<T>(&file.text)
        .map_err(|e| errors.push(located(file, &e)))
        .ok()
}

/// The tables of the top-level array `[[name]]` as written, with their spans: for a part that
/// picks its table's shape by a key inside it (a pager's `type`), then reads it with
/// [`from_table`]. Empty when there are none, or when the file is not TOML ([`parse_toml`]
/// says why).
pub fn array_tables<'f>(file: &'f SourceFile, name: &str) -> Vec<Spanned<DeValue<'f>>> {
    let Ok(root) = DeTable::parse(&file.text) else {
        return Vec::new();
    };
    match root.get_ref().get(name).map(Spanned::get_ref) {
        Some(DeValue::Array(items)) => items.iter().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Deserialises one table from [`array_tables`] into `T` (a `deny_unknown_fields` struct). An
/// unknown key does not stop it: each is handed to `unknown` (the key, its value's span and
/// serde's `expected one of …`) and left out, so the rest of the table is still read and
/// checked. Any other error is located as [`parse_toml`] locates it.
///
/// # Errors
/// The table does not fit `T` (a missing key, a wrong type).
pub fn from_table<T: serde::de::DeserializeOwned>(
    file: &SourceFile,
    mut table: Spanned<DeValue<'_>>,
    mut unknown: impl FnMut(&str, Range<usize>, &str),
) -> Result<T, ConfigError> {
    loop {
        let e = match T::deserialize(ValueDeserializer::from(table.clone())) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let removed = unknown_field(e.message()).and_then(|(key, expected)| {
            let DeValue::Table(t) = table.get_mut() else {
                return None;
            };
            let value = t.remove(key)?;
            unknown(key, value.span(), expected);
            Some(())
        });
        if removed.is_none() {
            return Err(located(file, &e));
        }
    }
}

/// A parser's error as a located [`ConfigError`]: every one names its place and its key
/// (`steps[1].wat`, or the table for a missing field), as every other error does; with no
/// place, the file's start.
fn located(file: &SourceFile, e: &toml::de::Error) -> ConfigError {
    let (line, column) = e.span().map_or((1, 1), |s| file.locate(s.start));
    let key = match missing_field(e.message()) {
        // Placed at its table: the key is the table's and the field's.
        Some(field) => Some(
            e.span()
                .and_then(|s| {
                    header_at(&file.text, s.start).or_else(|| inline_table_at(file, s.start))
                })
                .map_or_else(|| field.to_string(), |t| format!("{t}.{field}")),
        ),
        // Inside an inline table the line's key is not enough (`extract = { a = { jsn = … } }`
        // is `steps[0].extract.a.jsn`): the parsed tables say which key holds the place.
        None => e
            .span()
            .and_then(|s| path_at(file, s.start).or_else(|| key_at(&file.text, s.start))),
    };
    let message = match unknown_field(e.message()) {
        Some((field, expected)) => format!(
            "unknown field `{field}`{}, {expected}",
            super::did_you_mean(field, expected)
        ),
        None => match key.as_deref().and_then(missing_hint) {
            Some(hint) => format!("{}: {hint}", e.message().trim()),
            None => with_list_hint(e.message().trim()),
        },
    };
    ConfigError {
        file: file.path.clone(),
        line,
        column,
        key,
        message,
    }
}

/// The dotted key (as errors name keys: `steps[0].extract.a.regex`) whose key or value is
/// written at `offset`, the deepest one; `None` off every key or when the file is not TOML.
fn path_at(file: &SourceFile, offset: usize) -> Option<String> {
    let root = DeTable::parse(&file.text).ok()?;
    deepest(root.get_ref(), "", &|key, value| {
        key.is_some_and(|k| k.contains(&offset)) || value.span().contains(&offset)
    })
}

/// The dotted key of the inline table (`{ … }`) that opens at `offset`: a missing field's
/// place when its table has no header.
fn inline_table_at(file: &SourceFile, offset: usize) -> Option<String> {
    let root = DeTable::parse(&file.text).ok()?;
    deepest(root.get_ref(), "", &|_, value| {
        matches!(value.get_ref(), DeValue::Table(_)) && value.span().start == offset
    })
}

/// What `hit` picks of a key's span (none for an element of an array) and its value.
type Hit<'h> = &'h dyn Fn(Option<Range<usize>>, &Spanned<DeValue<'_>>) -> bool;

/// The dotted key below `prefix`, the deepest, whose key or value `hit` picks; an array of
/// tables is indexed (`steps[1]`), a list of values is its key.
fn deepest(table: &DeTable<'_>, prefix: &str, hit: Hit<'_>) -> Option<String> {
    table.iter().find_map(|(k, v)| {
        let name = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        deepest_in(v, name, Some(k.span()), hit)
    })
}

fn deepest_in(
    value: &Spanned<DeValue<'_>>,
    name: String,
    key: Option<Range<usize>>,
    hit: Hit<'_>,
) -> Option<String> {
    let inner = match value.get_ref() {
        DeValue::Table(t) => deepest(t, &name, hit),
        DeValue::Array(items) => {
            items
                .iter()
                .enumerate()
                .find_map(|(i, item)| match item.get_ref() {
                    DeValue::Table(_) => deepest_in(item, format!("{name}[{i}]"), None, hit),
                    _ => None,
                })
        }
        _ => None,
    };
    inner.or_else(|| hit(key, value).then_some(name))
}

/// The span of the value written at the dotted key `path` (`peers[0].region`,
/// `steps[1].expect_binary.prefix`; a key holding `.` cannot be named), for a problem found
/// after parsing in a value whose type keeps no spans of its parts. `None` when not written.
pub fn value_span(file: &SourceFile, path: &str) -> Option<Range<usize>> {
    value_at(file, path).map(|v| v.span())
}

/// The value written at the dotted key `path`, with the spans of its parts, for reading with
/// [`from_table`] a table inside a value read without them (a `peers` entry's `tls_config`).
pub fn value_at<'f>(file: &'f SourceFile, path: &str) -> Option<Spanned<DeValue<'f>>> {
    let root = DeTable::parse(&file.text).ok()?;
    let mut table = root.get_ref();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let (name, index) = match part.strip_suffix(']').and_then(|p| p.split_once('[')) {
            Some((name, i)) => (name, Some(i.parse::<usize>().ok()?)),
            None => (part, None),
        };
        let mut value = table.get(name)?;
        if let Some(i) = index {
            let DeValue::Array(items) = value.get_ref() else {
                return None;
            };
            value = items.get(i)?;
        }
        if parts.peek().is_none() {
            return Some(value.clone());
        }
        let DeValue::Table(t) = value.get_ref() else {
            return None;
        };
        table = t;
    }
    None
}

/// The keys a `#[derive(Deserialize)]` struct reads, in the order it declares them: what a table
/// of its kind accepts, from the type itself rather than a list kept by hand.
pub fn table_keys<'de, T: serde::Deserialize<'de>>() -> &'static [&'static str] {
    #[derive(Debug)]
    struct Found(&'static [&'static str]);
    impl std::fmt::Display for Found {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("not a struct")
        }
    }
    impl std::error::Error for Found {}
    impl serde::de::Error for Found {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Found(&[])
        }
    }
    /// Answers `deserialize_struct` with the field names, and nothing else.
    struct Introspect;
    impl<'de> serde::Deserializer<'de> for Introspect {
        type Error = Found;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
            Err(Found(&[]))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Found> {
            Err(Found(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    match T::deserialize(Introspect) {
        Err(Found(fields)) => fields,
        Ok(_) => &[],
    }
}

/// serde's "invalid type: integer `200`, expected a sequence" for a one-value list written
/// bare (`expect_status = 200`, `to = "oncall@example.com"`), with the list it meant:
/// ``…: write a list in brackets, `[200]` ``. Any other message as it is.
fn with_list_hint(message: &str) -> String {
    let value = message
        .strip_suffix(", expected a sequence")
        .and_then(|m| m.strip_prefix("invalid type: "))
        .and_then(
            |m| match (m.find('`'), m.rfind('`'), m.find('"'), m.rfind('"')) {
                (Some(a), Some(b), _, _) if a < b => m.get(a + 1..b),
                (_, _, Some(a), Some(b)) if a < b => m.get(a..=b),
                _ => None,
            },
        );
    match value {
        Some(v) => format!("{message}: write a list in brackets, `[{v}]`"),
        None => message.to_string(),
    }
}

/// `X` and `expected …` of serde's "unknown field `X`, expected …".
fn unknown_field(message: &str) -> Option<(&str, &str)> {
    let rest = message.trim().strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    Some((key, rest.trim_start_matches(',').trim()))
}

/// The dotted key of the line holding `offset`: the table it is in (an array of tables with
/// its index, `steps[1]`) and the bare key written at the start of the line if it is
/// `key = ...`; on a table header, the table itself. `None` at the top level off any key.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next().unwrap_or("");
    let (table, header_here) = match table_header(line) {
        Some(_) => (table_path(text, start + line.len()), true),
        None => (table_path(text, start), false),
    };
    let key = (!header_here)
        .then(|| line.split_once('=').map(|(k, _)| k.trim()))
        .flatten()
        // `"a.total" = …` is the key `a.total`, as the checks after parsing write it.
        .map(|k| k.trim_matches(|c| c == '"' || c == '\''))
        .filter(|k| !k.is_empty() && !k.starts_with('#'));
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (Some(t), None) => Some(t),
        (None, Some(k)) => Some(k.to_string()),
        (None, None) => None,
    }
}

/// What to write for a top-level key a file cannot go without: a newcomer's first config or
/// probe file most often lacks these, and serde's "missing field" alone does not say the shape.
fn missing_hint(key: &str) -> Option<&'static str> {
    match key {
        "probes" => Some(
            "list the probe files or directories to run, `probes = [\"probes/\"]` (relative to \
             this file; config/joincanary.toml is an example)",
        ),
        "steps" => Some(
            "a probe runs at least one step: add `[[steps]]` tables, each with `name` and `kind` \
             (probes/examples/ has one per platform)",
        ),
        _ => None,
    }
}

/// `X` of serde's "missing field `X`".
fn missing_field(message: &str) -> Option<&str> {
    message
        .trim()
        .strip_prefix("missing field `")?
        .split('`')
        .next()
}

/// The table whose header is the line holding `offset` (`None` off a header: the top level).
fn header_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?;
    table_header(line)?;
    table_path(text, start + line.len())
}

/// `[name]` → (name, false), `[[name]]` → (name, true).
fn table_header(line: &str) -> Option<(&str, bool)> {
    let t = line.trim();
    let t = t.split_once('#').map_or(t, |(before, _)| before.trim_end());
    let (inner, array) = match t.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
        Some(inner) => (inner, true),
        None => (t.strip_prefix('[')?.strip_suffix(']')?, false),
    };
    // A malformed header (`[[steps]`) names no table.
    let inner = inner.trim();
    (!inner.is_empty() && !inner.contains(['[', ']'])).then_some((inner, array))
}

/// The table the text before `end` leaves open: the last header, with its index among the
/// same array-of-tables headers before it.
fn table_path(text: &str, end: usize) -> Option<String> {
    let before = text.get(..end)?;
    let (name, array) = before.lines().rev().find_map(table_header)?;
    if !array {
        return Some(name.to_string());
    }
    let index = before
        .lines()
        .filter(|l| table_header(l) == Some((name, true)))
        .count()
        .saturating_sub(1);
    Some(format!("{name}[{index}]"))
}

/// Line and column of a probe file's top-level `name = ...` (before any table); 0, 0 when the
/// name comes from the file name.
pub fn name_position(path: &std::path::Path) -> (usize, usize) {
    // The config reader: the file may have been swapped for a FIFO since it loaded.
    match file::read_text(path) {
        Ok(text) => name_position_in(&text),
        Err(_) => (0, 0),
    }
}

/// [`name_position`] in a file's text.
pub fn name_position_in(text: &str) -> (usize, usize) {
    for (i, l) in text.lines().enumerate() {
        let t = l.trim_start();
        if t.starts_with('[') {
            break;
        }
        if let Some(rest) = t.strip_prefix("name")
            && rest.trim_start().starts_with('=')
        {
            return (i + 1, l.len() - t.len() + 1);
        }
    }
    (0, 0)
}
