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
    use tracing_subscriber::util::SubscriberInitExt as _;
    let ansi = use_color(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    subscriber(format, level, ansi, std::io::stderr)?
        .try_init()
        .map_err(|_| LogError::AlreadySet)
}

/// The logger [`init`] installs, writing to `writer` (tests give it a buffer).
///
/// Every format writes the service span's fields (its `region`) into the line itself, once:
/// after the event's own fields, and not at all when the event names the same key. tracing's
/// own text format printed the span as a prefix (`joincanary{region=eu}: … region=eu`, the
/// region twice), its JSON a `spans` list that log pipelines do not index.
///
/// # Errors
/// An unparsable level.
pub fn subscriber<W>(
    format: Format,
    level: &str,
    ansi: bool,
    writer: W,
) -> Result<Box<dyn Subscriber + Send + Sync>, LogError>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level)?)
        .with_writer(writer)
        .with_ansi(false)
        .fmt_fields(LogfmtFields);
    Ok(match format {
        Format::Text => Box::new(builder.event_format(Text { ansi }).finish()),
        Format::Logfmt => Box::new(builder.event_format(Logfmt).finish()),
        Format::Json => Box::new(builder.event_format(Json).finish()),
    })
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
            write_pair(&mut writer, k, &val.text())?;
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
        let mut fields = Collect::of(event);
        let ts = written_at("%Y-%m-%dT%H:%M:%S%.3fZ");
        write_pair(&mut writer, "ts", &ts)?;
        writer.write_char(' ')?;
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        write_pair(&mut writer, "level", &level)?;
        let msg = fields.message.take().unwrap_or_default();
        writer.write_char(' ')?;
        write_pair(&mut writer, "msg", &msg)?;
        for (k, v) in &fields.pairs {
            writer.write_char(' ')?;
            write_pair(&mut writer, k, &v.text())?;
        }
        for (k, v) in span_fields(ctx, &fields) {
            writer.write_char(' ')?;
            write_pair(&mut writer, &k, &v)?;
        }
        writeln!(writer)
    }
}

/// Fields of the enclosing spans (the service's `region`) that the event does not say itself,
/// outermost span first.
fn span_fields<S, N>(ctx: &FmtContext<'_, S, N>, event: &Collect) -> Vec<(String, String)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let mut out: Vec<(String, String)> = Vec::new();
    let Some(scope) = ctx.event_scope() else {
        return out;
    };
    for span in scope.from_root() {
        let ext = span.extensions();
        let Some(formatted) = ext.get::<FormattedFields<N>>() else {
            continue;
        };
        for (k, v) in parse_pairs(formatted) {
            let said = event.pairs.iter().any(|(key, _)| *key == k)
                || out.iter().any(|(key, _)| *key == k);
            if !said {
                out.push((k, v));
            }
        }
    }
    out
}

/// `2026-11-29T21:50:00.123456Z  INFO joincanary::consumer: probe run failed probe=x step=y
/// region=eu`: tracing's text layout, with the span's fields merged into the line (not a
/// `joincanary{region=eu}:` prefix repeating what the event says) and every value written as
/// it reads, unquoted (a bare `&str` field too, which tracing would quote).
struct Text {
    ansi: bool,
}

impl<S, N> FormatEvent<S, N> for Text
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
        let fields = Collect::of(event);
        let ts = written_at("%Y-%m-%dT%H:%M:%S%.6fZ");
        let meta = event.metadata();
        let level = *meta.level();
        let (dim, italic, reset) = if self.ansi {
            ("\x1b[2m", "\x1b[3m", "\x1b[0m")
        } else {
            ("", "", "")
        };
        let colour = match (self.ansi, level) {
            (false, _) => "",
            (true, tracing::Level::ERROR) => "\x1b[31m",
            (true, tracing::Level::WARN) => "\x1b[33m",
            (true, tracing::Level::INFO) => "\x1b[32m",
            (true, tracing::Level::DEBUG) => "\x1b[34m",
            (true, tracing::Level::TRACE) => "\x1b[35m",
        };
        write!(
            writer,
            "{dim}{ts}{reset} {colour}{:>5}{reset} {dim}{}:{reset}",
            level.as_str(),
            meta.target()
        )?;
        if let Some(msg) = &fields.message {
            write!(writer, " {msg}")?;
        }
        let own = fields.pairs.iter().map(|(k, v)| (k.clone(), v.text()));
        for (k, v) in own.chain(span_fields(ctx, &fields)) {
            write!(writer, " {italic}{k}{reset}{dim}={reset}{v}")?;
        }
        writeln!(writer)
    }
}

/// One JSON object per line: `timestamp`, `level`, `message`, the event's fields (numbers and
/// booleans as such), `target`, then the span's fields the event does not say (its `region`),
/// so every line carries the region at the top level where a log pipeline indexes it.
struct Json;

impl<S, N> FormatEvent<S, N> for Json
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
        let mut fields = Collect::of(event);
        let meta = event.metadata();
        let ts = written_at("%Y-%m-%dT%H:%M:%S%.6fZ");
        let mut line: Vec<(String, serde_json::Value)> = Vec::new();
        let mut put = |k: String, v: serde_json::Value| {
            // The first of two same-named keys wins: JSON readers disagree on duplicates.
            if !line.iter().any(|(key, _)| *key == k) {
                line.push((k, v));
            }
        };
        put("timestamp".into(), ts.into());
        put("level".into(), meta.level().as_str().into());
        if let Some(msg) = fields.message.take() {
            put("message".into(), msg.into());
        }
        let spans = span_fields(ctx, &fields);
        for (k, v) in std::mem::take(&mut fields.pairs) {
            put(k, v.0);
        }
        put("target".into(), meta.target().into());
        for (k, v) in spans {
            put(k, v.into());
        }
        writer.write_char('{')?;
        for (i, (k, v)) in line.iter().enumerate() {
            if i > 0 {
                writer.write_char(',')?;
            }
            let key = serde_json::to_string(k).map_err(|_| std::fmt::Error)?;
            let value = serde_json::to_string(v).map_err(|_| std::fmt::Error)?;
            write!(writer, "{key}:{value}")?;
        }
        writeln!(writer, "}}")
    }
}

#[derive(Default)]
struct Collect {
    message: Option<String>,
    pairs: Vec<(String, Value)>,
}

/// A field's value as recorded: numbers and booleans stay typed for JSON; everything else is
/// its Display (or Debug) text.
struct Value(serde_json::Value);

impl Value {
    /// As written in `text` and `logfmt`.
    fn text(&self) -> String {
        match &self.0 {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, serde_json::Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, serde_json::Value::String(format!("{value:?}")));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // NaN and infinities are no JSON number: their Debug text instead.
        let v = serde_json::Number::from_f64(value)
            .map_or_else(|| format!("{value:?}").into(), serde_json::Value::Number);
        self.put(field, v);
    }
}

/// Now, in `format`: the real clock, not the service's `Clock`: a log line says when it was
/// written, to be read beside other programs' logs, and logging is set up before any clock
/// exists.
fn written_at(format: &str) -> String {
    chrono::Utc::now().format(format).to_string()
}

impl Collect {
    /// The fields `event` carries.
    fn of(event: &Event<'_>) -> Collect {
        let mut fields = Collect::default();
        event.record(&mut fields);
        fields
    }

    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = Some(Value(value).text());
        } else {
            self.pairs.push((field.name().to_string(), Value(value)));
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

    /// A writer into a shared buffer, so a test reads what the logger wrote.
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What the service logs: inside its `region` span, one event naming the region too (as
    /// the consumer's "probe run succeeded" does), one not (the flow's "step finished").
    fn service_lines(format: Format, ansi: bool) -> Vec<String> {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = subscriber(format, "info", ansi, move || out.clone()).unwrap();
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("joincanary", region = %"eu-west-1");
            let _in = span.enter();
            let probe = "sim-join";
            tracing::info!(probe, region = %"eu-west-1", duration_ms = 12.5, ok = true, "probe run succeeded");
            tracing::warn!(probe = %probe, step = %"signalling", error = %"no frame matched", "step finished");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn every_format_names_the_region_once_per_line() {
        for format in [Format::Text, Format::Logfmt, Format::Json] {
            let lines = service_lines(format, false);
            assert_eq!(lines.len(), 2, "{format:?}: {lines:#?}");
            for line in &lines {
                assert_eq!(
                    line.matches("eu-west-1").count(),
                    1,
                    "{format:?}, the region once: {line}"
                );
            }
        }
    }

    #[test]
    fn text_reads_as_pairs_unquoted_with_the_span_s_region_at_the_end() {
        let lines = service_lines(Format::Text, false);
        let tail = |l: &str| {
            l.split_once(" joincanary::logging::tests: ")
                .unwrap()
                .1
                .to_string()
        };
        assert!(
            lines[0].contains("  INFO joincanary::logging::tests: "),
            "{}",
            lines[0]
        );
        assert_eq!(
            tail(&lines[0]),
            "probe run succeeded probe=sim-join region=eu-west-1 duration_ms=12.5 ok=true"
        );
        assert_eq!(
            tail(&lines[1]),
            "step finished probe=sim-join step=signalling error=no frame matched region=eu-west-1"
        );
        // Colour for a terminal, never in the words themselves.
        let coloured = service_lines(Format::Text, true);
        assert!(
            coloured[0].contains("\x1b[32m INFO\x1b[0m"),
            "{:?}",
            coloured[0]
        );
        assert!(!service_lines(Format::Text, false)[0].contains('\x1b'));
    }

    #[test]
    fn json_lines_carry_the_region_at_the_top_level_and_keep_numbers() {
        let lines = service_lines(Format::Json, false);
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["region"], "eu-west-1", "{line}");
            assert!(v.get("spans").is_none(), "{line}");
            assert_eq!(v["target"], "joincanary::logging::tests", "{line}");
        }
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["duration_ms"], 12.5);
        assert_eq!(first["ok"], true);
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["message"], "probe run succeeded");
        assert!(lines[0].starts_with("{\"timestamp\":"), "{}", lines[0]);
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
