//! Every error a config or probe file can draw, one case per place in the loader that reports
//! one, each checked for the promised `file:line:col: key: message` (README, "Service config";
//! docs/reliability.md): the line and column of the offending key or value (marked `‸` in the
//! case's text), the dotted key, and a fragment of the message. A case that loads, draws more
//! than one error or another place fails; all failures are listed together.

mod probe;
mod service;
mod steps;
mod steps_ws;
mod tokens;
mod web;

use crate::support::TempConfig;

/// Where a case expects its error: the `‸` in one of its files marks the line and column.
pub(crate) const MARK: char = '‸';

/// A valid one-step probe: cases that break the service config use it.
pub(crate) const PROBE: &str =
    "timeout = \"5s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";

/// The lines `TempConfig` writes before a case's service config.
const SERVICE_HEAD_LINES: usize = 4;

/// One bad config and the one error it must draw.
pub(crate) struct Case {
    /// Appended to `TempConfig`'s service config.
    pub service: String,
    /// Probe files (name, text) in `probes/`.
    pub probes: Vec<(&'static str, String)>,
    /// The dotted key the error names.
    pub key: &'static str,
    /// A fragment of the message.
    pub says: &'static str,
    /// Environment variables the load sees.
    pub env: Vec<(&'static str, &'static str)>,
    /// `service` is the whole service config (`state_dir` appended), not an addition.
    pub whole: bool,
}

/// A case in the service config (probe `p.toml` valid).
pub(crate) fn service(text: &str, key: &'static str, says: &'static str) -> Case {
    Case {
        service: text.to_string(),
        probes: vec![("p.toml", PROBE.to_string())],
        key,
        says,
        env: Vec::new(),
        whole: false,
    }
}

/// A case in probe file `p.toml` (the service config valid).
pub(crate) fn probe(text: &str, key: &'static str, says: &'static str) -> Case {
    Case {
        service: String::new(),
        probes: vec![("p.toml", text.to_string())],
        key,
        says,
        env: Vec::new(),
        whole: false,
    }
}

/// A probe whose only step is of `kind`, with `lines` after its `name` and `kind` (the
/// `[[steps]]` header is line 1, `kind` line 3, `lines` from line 4).
pub(crate) fn step(kind: &str, lines: &str, key: &'static str, says: &'static str) -> Case {
    probe(
        &format!("[[steps]]\nname = \"s\"\nkind = \"{kind}\"\n{lines}"),
        key,
        says,
    )
}

/// A probe that opens a websocket (`steps[0]`, lines 1-4) and then runs a step of `kind`
/// (`steps[1]`: header line 5, `kind` line 7, `lines` from line 8).
pub(crate) fn on_ws(kind: &str, lines: &str, key: &'static str, says: &'static str) -> Case {
    probe(
        &format!(
            "[[steps]]\nname = \"ws\"\nkind = \"ws_connect\"\nurl = \"ws://127.0.0.1:9/\"\n\
             [[steps]]\nname = \"s\"\nkind = \"{kind}\"\n{lines}"
        ),
        key,
        says,
    )
}

impl Case {
    /// The mark moved to where `at` (written with the mark) shows it, in whichever file holds
    /// `at` without it.
    pub(crate) fn mark_at(mut self, at: &str) -> Case {
        let bare = at.replace(MARK, "");
        let strip = |t: &mut String| *t = t.replace(MARK, "");
        strip(&mut self.service);
        self.probes.iter_mut().for_each(|(_, t)| strip(t));
        let texts =
            std::iter::once(&mut self.service).chain(self.probes.iter_mut().map(|(_, t)| t));
        for t in texts {
            if t.contains(&bare) {
                *t = t.replacen(&bare, at, 1);
                return self;
            }
        }
        panic!("`{bare}` is in no file of the case");
    }

    /// No probe file at all.
    pub(crate) fn without_probes(mut self) -> Case {
        self.probes.clear();
        self
    }

    pub(crate) fn with_env(mut self, env: &[(&'static str, &'static str)]) -> Case {
        self.env = env.to_vec();
        self
    }
}

/// `file:line:col` of the mark in `text` (written under `file`, after `skip` lines).
fn mark_in(file: &str, text: &str, skip: usize) -> Option<String> {
    let at = text.find(MARK)?;
    let before = &text[..at];
    let line = before.matches('\n').count() + 1 + skip;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some(format!("{file}:{line}:{column}"))
}

/// Runs every case; panics listing each that did not draw exactly its error.
pub(crate) fn check(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let head = if case.whole { 0 } else { SERVICE_HEAD_LINES };
        let marks: Vec<String> = std::iter::once(mark_in("joincanary.toml", &case.service, head))
            .chain(
                case.probes
                    .iter()
                    .map(|(name, text)| mark_in(&format!("probes/{name}"), text, 0)),
            )
            .flatten()
            .collect();
        let [place] = marks.as_slice() else {
            failures.push(format!("case {i} ({}): needs one `{MARK}`", case.key));
            continue;
        };
        let strip = |t: &str| t.replace(MARK, "");
        let probes: Vec<(&str, String)> = case.probes.iter().map(|(n, t)| (*n, strip(t))).collect();
        let probes: Vec<(&str, &str)> = probes.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let cfg = if case.whole {
            let cfg = TempConfig::new("", &probes);
            // Inside the temporary directory, whatever the case leaves out.
            let text = format!("{}state_dir = \"state\"\n", strip(&case.service));
            std::fs::write(&cfg.path, text).expect("write the service config");
            cfg
        } else {
            TempConfig::new(&strip(&case.service), &probes)
        };
        // A syntax error on a line without a key names none.
        let want = match case.key {
            "" => format!("{place}: "),
            key => format!("{place}: {key}: "),
        };
        let got = match cfg.load(&case.env) {
            Ok(_) => vec!["(it loads)".to_string()],
            Err(e) => {
                let prefix = format!("{}/", cfg.dir.path().display());
                e.0.iter()
                    .map(|e| e.to_string().replace(&prefix, ""))
                    .collect()
            }
        };
        let right =
            matches!(got.as_slice(), [one] if one.starts_with(&want) && one.contains(case.says));
        if !right {
            failures.push(format!(
                "case {i}: want `{want}…{}…`\n    got {got:#?}",
                case.says
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
