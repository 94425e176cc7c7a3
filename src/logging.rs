//! Log set-up for every command: `--log.level` and `--log.format` as Prometheus exporters take
//! them (`logfmt` and `json`), plus `text` for people at a terminal. Colour only when stderr is a
//! terminal and `NO_COLOR` is unset, so log files and journald never get escape codes.

use std::io::IsTerminal as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// tracing's human format (coloured on a terminal).
    Text,
    /// `ts=… level=info msg="…" key=value`, the Prometheus ecosystem's default.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("--log.level `{level}`: {detail}")]
    Level { level: String, detail: String },
    #[error("a logger is already installed")]
    AlreadySet,
}

/// Colour codes only for a person looking at a terminal: never in files or pipes, never when
/// `NO_COLOR` is set to something (<https://no-color.org>).
pub fn use_color(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the global logger writing to stderr. `level` is `debug`, `info`, `warn`, `error`
/// or a tracing filter such as `joincanary=debug,info`.
///
/// # Errors
/// An unparsable level, or a logger already installed.
pub fn init(format: Format, level: &str) -> Result<(), LogError> {
    let filter = filter(level)?;
    let ansi = use_color(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let result = match format {
        Format::Text => builder.try_init(),
        Format::Logfmt => builder
            .with_ansi(false)
            .fmt_fields(LogfmtFields)
            .event_format(Logfmt)
            .try_init(),
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    result.map_err(|_| LogError::AlreadySet)
}

/// A bare word must be a level: tracing would take `loud` as a target name and log nothing,
/// where Prometheus refuses an unknown level. Anything with `=` or `,` is a filter.
fn filter(level: &str) -> Result<tracing_subscriber::EnvFilter, LogError> {
    let bare = !level.contains(['=', ',']);
    let known = ["trace", "debug", "info", "warn", "error", "off"]
        .contains(&level.to_ascii_lowercase().as_str());
    if bare && !known {
        return Err(LogError::Level {
            level: level.to_string(),
            detail: "not one of debug, info, warn, error".to_string(),
        });
    }
    tracing_subscriber::EnvFilter::try_new(scoped(level)).map_err(|e| LogError::Level {
        level: level.to_string(),
        detail: e.to_string(),
    })
}

/// `debug` and `trace` are for joincanary's own logs: every other crate stays at `info` unless
/// the filter names it (`trace,tungstenite=trace` is a deliberate choice, with its risk).
///
/// Libraries log what goes over the wire at those levels: tungstenite the websocket upgrade
/// request (URL token, `Authorization`), lettre the SMTP dialogue (`AUTH PLAIN`), reqwest
/// redirect URLs (a Slack webhook URL is its secret), cookie_store every `Set-Cookie` it
/// stores (the session cookie). A list of such crates misses the next one a dependency pulls
/// in; capping all of them but joincanary cannot.
fn scoped(level: &str) -> String {
    let mut verbose = None;
    let mut named_self = false;
    let mut parts: Vec<String> = Vec::new();
    for part in level.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((target, _)) => {
                let target = target.split('[').next().unwrap_or(target).trim();
                // A module of joincanary (`joincanary::flow=trace`) is more specific and wins
                // over the crate-wide directive added below.
                named_self |= target == "joincanary";
                parts.push(part.to_string());
            }
            None if !part.starts_with('[')
                && matches!(part.to_ascii_lowercase().as_str(), "debug" | "trace") =>
            {
                verbose = Some(part.to_ascii_lowercase());
                parts.push("info".to_string());
            }
            None => parts.push(part.to_string()),
        }
    }
    if let Some(verbose) = verbose
        && !named_self
    {
        parts.push(format!("joincanary={verbose}"));
    }
    parts.join(",")
}

/// `ts=2026-11-29T21:50:00.123Z level=info msg="probe run succeeded" region=eu probe=x`.
struct Logfmt;

/// Span fields in logfmt, so the span's `region` can be merged into each line.
struct LogfmtFields;

impl<'w> FormatFields<'w> for LogfmtFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut v = Collect::default();
        fields.record(&mut v);
        let mut first = true;
        for (k, val) in &v.pairs {
            if !first {
                writer.write_char(' ')?;
            }
            first = false;
            write_pair(&mut writer, k, val)?;
        }
        Ok(())
    }
}

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Collect::default();
        event.record(&mut fields);
        // The real clock, not the service's `Clock`: a log line says when it was written, to be
        // read beside other programs' logs, and logging is set up before any clock exists.
        let ts = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        write_pair(&mut writer, "ts", &ts)?;
        writer.write_char(' ')?;
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        write_pair(&mut writer, "level", &level)?;
        let msg = fields.message.take().unwrap_or_default();
        writer.write_char(' ')?;
        write_pair(&mut writer, "msg", &msg)?;
        for (k, v) in &fields.pairs {
            writer.write_char(' ')?;
            write_pair(&mut writer, k, v)?;
        }
        // Fields of the enclosing spans (the service's `region`) unless the event says it too.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                let Some(formatted) = ext.get::<FormattedFields<N>>() else {
                    continue;
                };
                for (k, v) in parse_pairs(formatted) {
                    if !fields.pairs.iter().any(|(key, _)| *key == k) {
                        writer.write_char(' ')?;
                        write_pair(&mut writer, &k, &v)?;
                    }
                }
            }
        }
        writeln!(writer)
    }
}

#[derive(Default)]
struct Collect {
    message: Option<String>,
    pairs: Vec<(String, String)>,
}

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl Collect {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = Some(value);
        } else {
            self.pairs.push((field.name().to_string(), value));
        }
    }
}

/// `key=value`, the value quoted when it holds a space, `=`, a quote or a control character.
fn write_pair(w: &mut impl std::fmt::Write, key: &str, value: &str) -> std::fmt::Result {
    w.write_str(key)?;
    w.write_char('=')?;
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control());
    if plain {
        return w.write_str(value);
    }
    w.write_char('"')?;
    for c in value.chars() {
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            '\n' => w.write_str("\\n")?,
            '\r' => w.write_str("\\r")?,
            '\t' => w.write_str("\\t")?,
            c if c.is_control() => write!(w, "\\u{{{:x}}}", c as u32)?,
            c => w.write_char(c)?,
        }
    }
    w.write_char('"')
}

/// Reads back what [`write_pair`] wrote (span fields arrive as one formatted string).
pub fn parse_pairs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ' ' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some('n') => value.push('\n'),
                            Some('r') => value.push('\r'),
                            Some('t') => value.push('\t'),
                            Some(other) => value.push(other),
                            None => break,
                        },
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ' ' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_filters() {
        for ok in [
            "debug",
            "INFO",
            "warn",
            "error",
            "joincanary=debug,info",
            "off",
        ] {
            assert!(filter(ok).is_ok(), "{ok}");
        }
        for bad in ["loud", "verbose", "info=bogus=x"] {
            assert!(filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn other_crates_stay_at_info_unless_named() {
        assert_eq!(scoped("trace"), "info,joincanary=trace");
        assert_eq!(scoped("DEBUG"), "info,joincanary=debug");
        assert_eq!(
            scoped("debug,tungstenite=trace"),
            "info,tungstenite=trace,joincanary=debug"
        );
        assert_eq!(
            scoped("joincanary::flow=trace,debug"),
            "joincanary::flow=trace,info,joincanary=debug"
        );
        // joincanary named: its own directive decides.
        assert_eq!(scoped("joincanary=warn,trace"), "joincanary=warn,info");
        // Quieter than debug already: unchanged (a cap would raise them to info).
        for quiet in [
            "warn",
            "joincanary=trace",
            "info,joincanary::scheduler=debug",
            "off",
        ] {
            assert_eq!(scoped(quiet), quiet);
        }
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(use_color(true, None));
        assert!(use_color(true, Some(OsStr::new(""))));
        assert!(!use_color(true, Some(OsStr::new("1"))));
        assert!(!use_color(false, None));
    }

    #[test]
    fn logfmt_values_are_quoted_when_needed_and_read_back() {
        let mut line = String::new();
        write_pair(&mut line, "a", "plain").unwrap();
        line.push(' ');
        write_pair(&mut line, "b", "two words \"quoted\"\nnext").unwrap();
        line.push(' ');
        write_pair(&mut line, "c", "").unwrap();
        assert_eq!(line, r#"a=plain b="two words \"quoted\"\nnext" c="""#);
        assert_eq!(
            parse_pairs(&line),
            vec![
                ("a".into(), "plain".into()),
                ("b".into(), "two words \"quoted\"\nnext".into()),
                ("c".into(), String::new()),
            ]
        );
    }
}
