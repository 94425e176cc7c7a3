//! Which Alertmanager route an alert takes and when that route first notifies, read from
//! Alertmanager's own configuration (`GET /api/v2/status`, `config.original`): what
//! `joincanary test-page` needs to know how long to keep its test alert firing.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_yaml_ng::Value;

/// Alertmanager's defaults for the root route.
const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Routes deeper than this are not followed (a configuration is a handful of levels deep).
const MAX_DEPTH: usize = 32;

/// The settings of one route that matched, as Alertmanager inherits them from its parents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTiming {
    pub receiver: String,
    /// `None`: group by every label (`group_by: ['...']`).
    pub group_by: Option<Vec<String>>,
    /// How long a new group waits before its first notification.
    pub group_wait: Duration,
    /// How long an existing group waits before it notifies again (a new alert in it included).
    pub group_interval: Duration,
}

impl RouteTiming {
    /// The labels of the group an alert with `labels` joins on this route.
    pub fn group_labels(&self, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        match &self.group_by {
            None => labels.clone(),
            Some(by) => labels
                .iter()
                .filter(|(k, _)| by.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

/// Every route an alert with `labels` is sent to (more than one with `continue: true`), in
/// Alertmanager's order: a route matches when its matchers do; then its children are tried in
/// order, stopping at the first that matches unless it says `continue`; a route none of whose
/// children match is itself the match.
///
/// # Errors
/// The YAML does not parse, or a matcher or duration is not understood.
pub fn routes_for(
    config_yaml: &str,
    labels: &BTreeMap<String, String>,
) -> Result<Vec<RouteTiming>, String> {
    let config: Value =
        serde_yaml_ng::from_str(config_yaml).map_err(|e| format!("not YAML: {e}"))?;
    let root = config
        .get("route")
        .ok_or("the configuration has no `route`")?;
    let defaults = RouteTiming {
        receiver: String::new(),
        group_by: Some(Vec::new()),
        group_wait: DEFAULT_GROUP_WAIT,
        group_interval: DEFAULT_GROUP_INTERVAL,
    };
    let mut out = Vec::new();
    walk(root, &defaults, labels, 0, &mut out)?;
    Ok(out)
}

/// Whether `route` matched (its matches pushed to `out`).
fn walk(
    route: &Value,
    parent: &RouteTiming,
    labels: &BTreeMap<String, String>,
    depth: usize,
    out: &mut Vec<RouteTiming>,
) -> Result<bool, String> {
    if depth > MAX_DEPTH {
        return Err(format!("routes nested deeper than {MAX_DEPTH}"));
    }
    if !matches(route, labels)? {
        return Ok(false);
    }
    let here = inherit(route, parent)?;
    let before = out.len();
    if let Some(children) = route.get("routes").and_then(Value::as_sequence) {
        for child in children {
            let matched = walk(child, &here, labels, depth + 1, out)?;
            let cont = child
                .get("continue")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if matched && !cont {
                break;
            }
        }
    }
    if out.len() == before {
        out.push(here);
    }
    Ok(true)
}

fn inherit(route: &Value, parent: &RouteTiming) -> Result<RouteTiming, String> {
    let duration = |key: &str, default: Duration| -> Result<Duration, String> {
        match route.get(key).and_then(Value::as_str) {
            None => Ok(default),
            Some(text) => humantime::parse_duration(text.trim())
                .map_err(|e| format!("{key} `{text}` is not a duration: {e}")),
        }
    };
    let group_by = match route.get("group_by").and_then(Value::as_sequence) {
        None => parent.group_by.clone(),
        Some(list) => {
            let names: Vec<String> = list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            (!names.iter().any(|n| n == "...")).then_some(names)
        }
    };
    Ok(RouteTiming {
        receiver: route
            .get("receiver")
            .and_then(Value::as_str)
            .map_or_else(|| parent.receiver.clone(), str::to_string),
        group_by,
        group_wait: duration("group_wait", parent.group_wait)?,
        group_interval: duration("group_interval", parent.group_interval)?,
    })
}

/// A route's `matchers`, `match` and `match_re` against the labels (an absent label is "").
fn matches(route: &Value, labels: &BTreeMap<String, String>) -> Result<bool, String> {
    let value = |name: &str| labels.get(name).map_or("", String::as_str);
    if let Some(list) = route.get("matchers").and_then(Value::as_sequence) {
        for item in list {
            let text = item.as_str().ok_or("a matcher is not a string")?;
            for m in parse_matchers(text)? {
                if !m.matches(value(&m.name)) {
                    return Ok(false);
                }
            }
        }
    }
    if let Some(map) = route.get("match").and_then(Value::as_mapping) {
        for (k, v) in map {
            if value(k.as_str().unwrap_or_default()) != v.as_str().unwrap_or_default() {
                return Ok(false);
            }
        }
    }
    if let Some(map) = route.get("match_re").and_then(Value::as_mapping) {
        for (k, v) in map {
            let m = Matcher::new(
                k.as_str().unwrap_or_default(),
                Op::Re,
                v.as_str().unwrap_or_default(),
            )?;
            if !m.matches(value(&m.name)) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Re,
    NotRe,
}

#[derive(Debug)]
struct Matcher {
    name: String,
    op: Op,
    value: String,
    /// For `=~` and `!~`: anchored, as Alertmanager anchors them.
    re: Option<regex::Regex>,
}

impl Matcher {
    fn new(name: &str, op: Op, value: &str) -> Result<Matcher, String> {
        let re = match op {
            Op::Re | Op::NotRe => Some(
                crate::diag::compile_regex(&format!("^(?:{value})$"))
                    .map_err(|e| format!("matcher `{name}`: bad regex: {e}"))?,
            ),
            Op::Eq | Op::Ne => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    fn matches(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            (Op::Eq, _) => v == self.value,
            (Op::Ne, _) => v != self.value,
            (Op::Re, Some(re)) => re.is_match(v),
            (Op::NotRe, Some(re)) => !re.is_match(v),
            _ => false,
        }
    }
}

/// One `matchers` entry: `name="value"`, `name=~"re"`, `name!=value`, …, several separated by
/// commas, optionally in braces (`{a="b", c=~"d"}`), as Alertmanager's `ParseMatchers` reads them.
fn parse_matchers(text: &str) -> Result<Vec<Matcher>, String> {
    let inner = text.trim();
    let inner = inner
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(inner);
    split_outside_quotes(inner)
        .into_iter()
        .filter(|part| !part.trim().is_empty())
        .map(|part| parse_matcher(&part))
        .collect()
}

fn split_outside_quotes(text: &str) -> Vec<String> {
    let (mut parts, mut current) = (Vec::new(), String::new());
    let (mut quoted, mut escaped) = (false, false);
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

fn parse_matcher(text: &str) -> Result<Matcher, String> {
    let text = text.trim();
    // Alertmanager 0.27+ (its UTF-8 matcher parser) also takes a quoted name, `"alertname"="x"`
    // or `"service.name"=~"…"`: the name is read up to its closing quote.
    let (name, rest) = match text.strip_prefix('"') {
        Some(quoted) => {
            let end = closing_quote(quoted)
                .ok_or_else(|| format!("matcher `{text}`: its name's quote is not closed"))?;
            let name = serde_json::from_str::<String>(&text[..end + 2])
                .map_err(|e| format!("matcher `{text}`: {e}"))?;
            (name, text[end + 2..].trim_start())
        }
        None => {
            let at = text
                .find(['=', '!'])
                .ok_or_else(|| format!("matcher `{text}` has no operator"))?;
            (text[..at].trim().to_string(), &text[at..])
        }
    };
    let name = name.as_str();
    let (op, value) = [
        ("=~", Op::Re),
        ("!~", Op::NotRe),
        ("!=", Op::Ne),
        ("=", Op::Eq),
    ]
    .into_iter()
    .find_map(|(sym, op)| rest.strip_prefix(sym).map(|v| (op, v.trim())))
    .ok_or_else(|| format!("matcher `{text}` has no operator"))?;
    let value = if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        serde_json::from_str::<String>(value).unwrap_or_else(|_| value[1..value.len() - 1].into())
    } else {
        value.to_string()
    };
    Matcher::new(name, op, &value)
}

/// The byte offset in `s` (the text after an opening quote) of the closing `"`, escapes skipped.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const CONFIG: &str = r#"
route:
  receiver: warning
  group_by: [probe]
  group_wait: 30s
  routes:
    - receiver: deadmans-switch
      matchers: ['alertname="JoinCanaryWatchdog"']
      group_by: [region]
      group_wait: 0s
      group_interval: 1m
    - receiver: audit
      matchers: ['{source="joincanary", test="true"}']
      group_wait: 1s
      continue: true
    - receiver: page
      matchers: ['alertname=~"JoinFlowFailing|JoinFlowFailingInRegion"', severity!=none]
      group_wait: 5s
      routes:
        - receiver: page-eu
          match: {region: eu-west-1}
          group_by: ['...']
    - receiver: legacy
      match_re: {severity: "crit.*"}
receivers: [{name: warning}, {name: page}, {name: page-eu}, {name: audit}, {name: legacy}, {name: deadmans-switch}]
"#;

    #[test]
    fn first_match_with_inherited_timing() {
        let l = labels(&[
            ("alertname", "JoinFlowFailing"),
            ("severity", "critical"),
            ("region", "us"),
        ]);
        let r = routes_for(CONFIG, &l).unwrap();
        assert_eq!(
            r,
            [RouteTiming {
                receiver: "page".into(),
                group_by: Some(vec!["probe".into()]),
                group_wait: Duration::from_secs(5),
                group_interval: Duration::from_secs(300),
            }]
        );
        // A child route inherits group_wait; `...` groups by every label.
        let mut eu = l.clone();
        eu.insert("region".into(), "eu-west-1".into());
        let r = routes_for(CONFIG, &eu).unwrap();
        assert_eq!(r[0].receiver, "page-eu");
        assert_eq!(r[0].group_wait, Duration::from_secs(5));
        assert_eq!(r[0].group_by, None);
        assert_eq!(r[0].group_labels(&eu), eu);
    }

    #[test]
    fn continue_gives_every_route_and_no_match_is_the_root() {
        let l = labels(&[
            ("alertname", "JoinFlowFailing"),
            ("severity", "critical"),
            ("source", "joincanary"),
            ("test", "true"),
            ("probe", "test-page"),
        ]);
        let r = routes_for(CONFIG, &l).unwrap();
        let receivers: Vec<_> = r.iter().map(|r| r.receiver.as_str()).collect();
        assert_eq!(receivers, ["audit", "page"]);
        assert_eq!(r[1].group_labels(&l), labels(&[("probe", "test-page")]));
        let r = routes_for(CONFIG, &labels(&[("alertname", "Other")])).unwrap();
        assert_eq!(r[0].receiver, "warning");
        assert_eq!(r[0].group_wait, Duration::from_secs(30));
        let r = routes_for(CONFIG, &labels(&[("severity", "critical")])).unwrap();
        assert_eq!(r[0].receiver, "legacy");
        // `=~` is anchored, as in Alertmanager: `xcritical` does not match `crit.*`.
        let r = routes_for(CONFIG, &labels(&[("severity", "xcritical")])).unwrap();
        assert_eq!(r[0].receiver, "warning");
    }

    #[test]
    fn defaults_and_errors() {
        let r = routes_for("route: {receiver: x}\n", &labels(&[])).unwrap();
        assert_eq!(r[0].group_wait, Duration::from_secs(30));
        assert_eq!(r[0].group_interval, Duration::from_secs(300));
        assert!(routes_for("receivers: []\n", &labels(&[])).is_err());
        assert!(routes_for("route: {group_wait: soon}\n", &labels(&[])).is_err());
        assert!(routes_for(": : :\n", &labels(&[])).is_err());
        // Quoted names (Alertmanager 0.27+), one holding an operator's characters.
        let quoted = "route: {receiver: x, routes: [{receiver: q, matchers: ['\"alertname\"=\"A\"', '\"a=b!\" !~ \"z\"']}]}\n";
        let r = routes_for(quoted, &labels(&[("alertname", "A"), ("a=b!", "y")])).unwrap();
        assert_eq!(r[0].receiver, "q");
        let r = routes_for(quoted, &labels(&[("alertname", "A"), ("a=b!", "z")])).unwrap();
        assert_eq!(r[0].receiver, "x");
        assert!(routes_for("route: {routes: [{matchers: ['\"a=1']}]}\n", &labels(&[])).is_err());
        assert!(
            routes_for(
                "route: {routes: [{matchers: ['a=~\"(\"']}]}\n",
                &labels(&[])
            )
            .is_err()
        );
    }
}
