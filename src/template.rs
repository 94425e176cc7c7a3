//! `{{name}}` and `{{name|filter}}` templates: parsed once at load time, rendered per run from
//! the run's variables.
//!
//! Parsing at load time is what lets `joincanary check` say "variable used before any step sets
//! it" without sending traffic. Filters (`json`, `xml`, `url`, `base64`, `regex`) encode a value
//! for where it goes; a template used as a regex or an XML pattern escapes its values itself.

use std::collections::HashMap;
use std::fmt;

/// Names every run provides without a step setting them.
pub const BUILTINS: [&str; 4] = ["uuid", "now_ms", "region", "probe"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Var(String, Vec<Filter>),
}

/// How a value is encoded where it is inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Escaped for the inside of a JSON string (no quotes added).
    Json,
    /// `&`, `<`, `>`, `"`, `'` as entities (attribute values and text).
    Xml,
    /// Percent-encoded: everything but `A-Z a-z 0-9 - . _ ~`.
    Url,
    /// Standard base64 with padding (SASL PLAIN's `\0user\0password`).
    Base64,
    /// Regex metacharacters escaped.
    Regex,
}

impl Filter {
    pub const ALL: [Filter; 5] = [
        Filter::Json,
        Filter::Xml,
        Filter::Url,
        Filter::Base64,
        Filter::Regex,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Filter::Json => "json",
            Filter::Xml => "xml",
            Filter::Url => "url",
            Filter::Base64 => "base64",
            Filter::Regex => "regex",
        }
    }

    pub fn apply(self, value: &str) -> String {
        match self {
            Filter::Json => {
                let quoted = serde_json::Value::String(value.to_string()).to_string();
                quoted[1..quoted.len() - 1].to_string()
            }
            Filter::Xml => xml_escape(value),
            Filter::Url => value
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect(),
            Filter::Base64 => base64(value.as_bytes()),
            Filter::Regex => regex::escape(value),
        }
    }
}

/// Where a rendered template goes: values are escaped for it after their own filters, unless
/// the last filter already did (`{{v|regex}}` in a regex is escaped once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Text,
    Regex,
    Xml,
}

fn xml_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// RFC 4648 base64 with padding; the only encoding direction a probe needs.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
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
    #[error("`{0}` is not a template filter (json, xml, url, base64, regex)")]
    BadFilter(String),
    #[error("the literal `{{{{\"…\"}}}}` at byte {0} is not a JSON string followed by `}}}}`")]
    BadLiteral(usize),
}

/// Appends literal text, joined to a literal just before it (so parsing what `Display` wrote
/// gives the same segments back).
fn push_literal(segments: &mut Vec<Segment>, text: &str) {
    if let Some(Segment::Literal(last)) = segments.last_mut() {
        last.push_str(text);
    } else {
        segments.push(Segment::Literal(text.to_string()));
    }
}

/// A JSON string at the start of `text`: its value and the bytes it took.
fn parse_literal(text: &str) -> Option<(String, usize)> {
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => {
                let value = serde_json::from_str::<String>(&text[..=i]).ok()?;
                return Some((value, i + 1));
            }
            _ => {}
        }
    }
    None
}

/// `text` as template source that renders exactly `text`: as it is when no `{` or `}` could
/// open or close a hole (alone or next to the text around it), else as a literal
/// `{{"…"}}` (JSON string syntax). This is how a value from the environment enters a
/// template as data: a password `ab{{region}}cd` stays `ab{{region}}cd`.
pub fn escape_literal(text: &str) -> String {
    if text.contains(['{', '}']) {
        format!("{{{{{}}}}}", serde_json::Value::String(text.to_string()))
    } else {
        text.to_string()
    }
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
                push_literal(&mut segments, &rest[..open]);
            }
            let after = &rest[open + 2..];
            let inner = after.trim_start();
            if inner.starts_with('"') {
                let (literal, used) =
                    parse_literal(inner).ok_or(TemplateError::BadLiteral(offset + open))?;
                let tail = inner[used..].trim_start();
                let Some(tail) = tail.strip_prefix("}}") else {
                    return Err(TemplateError::BadLiteral(offset + open));
                };
                push_literal(&mut segments, &literal);
                let consumed = rest.len() - tail.len();
                offset += consumed;
                rest = tail;
                continue;
            }
            let close = after
                .find("}}")
                .ok_or(TemplateError::Unclosed(offset + open))?;
            let mut parts = after[..close].split('|');
            let name = parts.next().unwrap_or_default().trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(TemplateError::BadName(after[..close].to_string()));
            }
            let filters = parts
                .map(|f| {
                    let f = f.trim();
                    Filter::ALL
                        .into_iter()
                        .find(|k| k.as_str() == f)
                        .ok_or_else(|| TemplateError::BadFilter(f.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            segments.push(Segment::Var(name.to_string(), filters));
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            push_literal(&mut segments, rest);
        }
        Ok(Template { segments })
    }

    /// A template that renders `text` exactly, whatever it contains.
    pub fn literal(text: &str) -> Template {
        let mut segments = Vec::new();
        if !text.is_empty() {
            segments.push(Segment::Literal(text.to_string()));
        }
        Template { segments }
    }

    /// The variable names this template reads, in order.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Var(v, _) => Some(v.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// True when the template opens with a hole: a URL whose scheme and host come from a value
    /// at run time (`{{server}}/spreed`, the signalling URL a login reply names).
    pub fn starts_with_var(&self) -> bool {
        matches!(self.segments.first(), Some(Segment::Var(..)))
    }

    /// The variable when the template is exactly one hole without a filter (`{{handle}}`):
    /// the one shape whose rendering may keep a JSON value's type ([`render_json`]).
    pub fn sole_var(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [Segment::Var(v, filters)] if filters.is_empty() => Some(v),
            _ => None,
        }
    }

    /// True when the template has no holes (a pattern can then be compiled once, at load).
    pub fn is_literal(&self) -> bool {
        self.vars().next().is_none()
    }

    /// Renders with `vars`; a missing variable renders as the empty string (load-time checks
    /// make that unreachable for validated probes) and is reported in `missing`.
    pub fn render(&self, vars: &HashMap<String, String>) -> Result<String, MissingVar> {
        self.render_in(vars, Context::Text)
    }

    /// Renders for `context`: in a regex or an XML pattern every value is escaped for it, so a
    /// room name with a `.` or a nick with a `'` matches itself and nothing else.
    pub fn render_in(
        &self,
        vars: &HashMap<String, String>,
        context: Context,
    ) -> Result<String, MissingVar> {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => out.push_str(l),
                Segment::Var(v, filters) => match vars.get(v) {
                    Some(value) => out.push_str(&encode(value, filters, context)),
                    None => return Err(MissingVar(v.clone())),
                },
            }
        }
        Ok(out)
    }

    /// Renders every hole as `placeholder`: used to validate URLs and patterns at load time.
    pub fn render_placeholder(&self, placeholder: &str) -> String {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.as_str(),
                Segment::Var(..) => placeholder,
            })
            .collect()
    }
}

fn encode(value: &str, filters: &[Filter], context: Context) -> String {
    let mut out = value.to_string();
    for f in filters {
        out = f.apply(&out);
    }
    let last = filters.last().copied();
    match context {
        Context::Regex if last != Some(Filter::Regex) => regex::escape(&out),
        Context::Xml if last != Some(Filter::Xml) => xml_escape(&out),
        _ => out,
    }
}

/// `value` under every filter: a secret must stay secret however a template encodes it.
pub fn encodings(value: &str) -> impl Iterator<Item = String> + '_ {
    Filter::ALL.into_iter().map(|f| f.apply(value))
}

/// A template read a variable that the run does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("variable `{0}` is not set")]
pub struct MissingVar(pub String);

impl fmt::Display for Template {
    /// Template source: parsing it gives this template back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for seg in &self.segments {
            match seg {
                // Written as is unless it would open a hole (a regex's `a{2}` stays readable).
                Segment::Literal(l) if l.contains("{{") || l.ends_with('{') => {
                    write!(f, "{{{{{}}}}}", serde_json::Value::String(l.clone()))?;
                }
                Segment::Literal(l) => f.write_str(l)?,
                Segment::Var(v, filters) => {
                    write!(f, "{{{{{v}")?;
                    for filter in filters {
                        write!(f, "|{}", filter.as_str())?;
                    }
                    f.write_str("}}")?;
                }
            }
        }
        Ok(())
    }
}

/// Renders every string leaf of a JSON value as a template.
///
/// A leaf that is exactly one hole without a filter (`"{{handle}}"`) takes the value's own
/// JSON type when `typed` has one (a value extracted from JSON as a number, boolean, null,
/// object or array): Janus's `sender` / `session_id` / `handle_id` are integers, and a reply
/// carrying `"sender": 4862931` never matches the string `"4862931"`, nor does Janus read an
/// id sent as a string. The value is the reply's own `serde_json` value, so a u64 id keeps
/// every digit. A hole inside a longer string (`"offer-{{uuid}}"`) or with a filter stays text.
///
/// # Errors
/// The first variable the value reads that `vars` lacks.
pub fn render_json(
    value: &serde_json::Value,
    vars: &HashMap<String, String>,
    typed: &HashMap<String, serde_json::Value>,
) -> Result<serde_json::Value, MissingVar> {
    use serde_json::Value;
    Ok(match value {
        // Nothing to render (most keys and many values): parsing would build it back as is.
        Value::String(s) if !s.contains("{{") => Value::String(s.clone()),
        Value::String(s) => match Template::parse(s) {
            Ok(t) => match t.sole_var().and_then(|v| typed.get(v).map(|j| (v, j))) {
                // Still a missing variable when the run lacks its text (the two go together).
                Some((v, j)) if vars.contains_key(v) => j.clone(),
                _ => Value::String(t.render(vars)?),
            },
            Err(_) => Value::String(s.clone()),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_json(v, vars, typed))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(v, vars, typed)?)))
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
    fn filters_encode_for_their_destination() {
        let v = vars(&[("v", "a\"b<c> d&'"), ("sasl", "\0user\0pass")]);
        let r = |t: &str| Template::parse(t).unwrap().render(&v).unwrap();
        assert_eq!(r("{{v|json}}"), "a\\\"b<c> d&'");
        assert_eq!(r("{{v|xml}}"), "a&quot;b&lt;c&gt; d&amp;&apos;");
        assert_eq!(r("{{v|url}}"), "a%22b%3Cc%3E%20d%26%27");
        assert_eq!(r("{{sasl|base64}}"), "AHVzZXIAcGFzcw==");
        assert_eq!(r("{{ v | regex }}"), regex::escape("a\"b<c> d&'"));
        for (input, b64) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v")] {
            assert_eq!(Filter::Base64.apply(input), b64);
        }
        assert_eq!(
            Template::parse("{{v|yaml}}"),
            Err(TemplateError::BadFilter("yaml".into()))
        );
    }

    #[test]
    fn patterns_escape_values_once() {
        let v = vars(&[("room", "a.b(c)"), ("nick", "o'neil")]);
        let t = Template::parse("^{{room}}$").unwrap();
        let re = regex::Regex::new(&t.render_in(&v, Context::Regex).unwrap()).unwrap();
        assert!(re.is_match("a.b(c)") && !re.is_match("axb(c)"));
        let explicit = Template::parse("^{{room|regex}}$").unwrap();
        assert_eq!(
            explicit.render_in(&v, Context::Regex),
            t.render_in(&v, Context::Regex)
        );
        let x = Template::parse("<p n='{{nick}}'/>").unwrap();
        assert_eq!(
            x.render_in(&v, Context::Xml).unwrap(),
            "<p n='o&apos;neil'/>"
        );
        assert_eq!(x.to_string(), "<p n='{{nick}}'/>");
    }

    #[test]
    fn json_leaves_are_rendered() {
        let v = serde_json::json!({"a": "{{x}}", "b": [1, "{{x}}-y"]});
        let out = render_json(&v, &vars(&[("x", "1")]), &HashMap::new()).unwrap();
        assert_eq!(out, serde_json::json!({"a": "1", "b": [1, "1-y"]}));
    }

    /// Janus's ids are integers: `{"sender": "{{handle}}"}` must render the number the
    /// handle was extracted as, every digit of a u64 past 2^53 kept; inside a longer string or
    /// through a filter a value stays text, and a value without a JSON type is a string.
    #[test]
    fn a_sole_hole_keeps_the_json_type_of_its_value() {
        let big: u64 = (1 << 53) + 1;
        let text = vars(&[("h", &big.to_string()), ("t", "true"), ("s", "7")]);
        let typed: HashMap<String, serde_json::Value> = [
            ("h".to_string(), serde_json::json!(big)),
            ("t".to_string(), serde_json::json!(true)),
        ]
        .into();
        let v = serde_json::json!({
            "sender": "{{h}}", "spaced": "{{ h }}", "flag": "{{t}}", "plain": "{{s}}",
            "inner": "id-{{h}}", "filtered": "{{h|json}}", "list": ["{{h}}"],
        });
        let out = render_json(&v, &text, &typed).unwrap();
        assert_eq!(out["sender"].as_u64(), Some(big));
        assert_eq!(out["spaced"].as_u64(), Some(big));
        assert_eq!(out["flag"], serde_json::json!(true));
        assert_eq!(out["plain"], serde_json::json!("7"));
        assert_eq!(out["inner"], serde_json::json!(format!("id-{big}")));
        assert_eq!(out["filtered"], serde_json::json!(big.to_string()));
        assert_eq!(out["list"][0].as_u64(), Some(big));
        assert_eq!(out.to_string().matches(&big.to_string()).count(), 5);
        // A typed value the run has no text for is still a missing variable.
        let only_typed = render_json(&serde_json::json!("{{h}}"), &vars(&[]), &typed);
        assert_eq!(only_typed, Err(MissingVar("h".into())));
    }
}
