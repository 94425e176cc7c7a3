//! A pager receiver on 127.0.0.1 that checks what arrives against the providers' documented
//! limits and answers as the provider would: 400 with the broken limits, else 2xx. Every request
//! is recorded with the measured lengths, so tests can report how close a page came.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use serde_json::Value;

/// One request: its path, the measured lengths (field -> characters or bytes), what broke.
#[derive(Debug, Clone)]
pub struct Checked {
    pub path: String,
    pub body: Value,
    pub lengths: BTreeMap<String, usize>,
    pub violations: Vec<String>,
}

#[derive(Clone, Default)]
pub struct LimitReceiver {
    seen: Arc<Mutex<Vec<Checked>>>,
}

/// Characters as UTF-16 code units (what the providers' backends count; never fewer than code
/// points).
pub fn chars(s: &str) -> usize {
    s.encode_utf16().count()
}

impl LimitReceiver {
    /// Serves `/slack/...`, `/v2/enqueue` (PagerDuty), `/v2/alerts...` (Opsgenie),
    /// `/api/v2/alerts` (Alertmanager), anything else as a generic webhook.
    pub async fn start() -> (LimitReceiver, String) {
        let r = LimitReceiver::default();
        let app = axum::Router::new().fallback(check).with_state(r.clone());
        let base = format!("http://{}", super::serve_router(app).await);
        (r, base)
    }

    pub fn seen(&self) -> Vec<Checked> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (at most 15 s) for `n` requests.
    pub async fn wait_for(&self, n: usize) -> Vec<Checked> {
        let ms = std::time::Duration::from_millis;
        super::poll(ms(15_000), ms(10), async || {
            super::when(self.seen(), |seen| seen.len() >= n)
        })
        .await
        .unwrap_or_else(|seen| seen)
    }
}

async fn check(State(r): State<LimitReceiver>, uri: Uri, body: Bytes) -> (StatusCode, String) {
    let path = uri.path().to_string();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut c = Checked {
        path: path.clone(),
        body: json.clone(),
        lengths: BTreeMap::new(),
        violations: Vec::new(),
    };
    if json.is_null() {
        c.violations.push("body is not JSON".into());
    } else if path.starts_with("/slack") {
        slack(&json, &mut c);
    } else if path == "/v2/enqueue" {
        c.measure("event bytes", body.len(), 512 * 1024);
        pagerduty(&json, &mut c);
    } else if path.starts_with("/v2/alerts") {
        opsgenie(&path, &json, &mut c);
    } else if path == "/api/v2/alerts" {
        alertmanager(&json, &mut c);
    }
    let answer = if c.violations.is_empty() {
        (StatusCode::ACCEPTED, String::new())
    } else {
        (StatusCode::BAD_REQUEST, c.violations.join("; "))
    };
    r.seen.lock().unwrap().push(c);
    answer
}

impl Checked {
    fn measure(&mut self, field: &str, len: usize, max: usize) {
        let e = self.lengths.entry(field.to_string()).or_default();
        *e = (*e).max(len);
        if len > max {
            self.violations.push(format!("{field}: {len} > {max}"));
        }
    }

    fn text(&mut self, field: &str, v: &Value, max: usize) {
        match v.as_str() {
            Some(s) => self.measure(field, chars(s), max),
            None => self
                .violations
                .push(format!("{field}: missing or not a string")),
        }
    }
}

/// docs.slack.dev block kit: section text 3000, fields 10 × 2000, header 150, context 10
/// elements, 50 blocks; mrkdwn `&`, `<`, `>` escaped (a raw `<` outside a link breaks it).
fn slack(v: &Value, c: &mut Checked) {
    c.text("text", &v["text"], 40_000);
    let blocks = v["blocks"].as_array().cloned().unwrap_or_default();
    c.measure("blocks", blocks.len(), 50);
    for b in &blocks {
        match b["type"].as_str() {
            Some("header") => c.text("header", &b["text"]["text"], 150),
            Some("section") => {
                if !b["text"].is_null() {
                    c.text("section text", &b["text"]["text"], 3000);
                    unescaped(c, &b["text"]["text"]);
                }
                if let Some(fields) = b["fields"].as_array() {
                    c.measure("section fields", fields.len(), 10);
                    for f in fields {
                        c.text("section field text", &f["text"], 2000);
                        unescaped(c, &f["text"]);
                    }
                }
            }
            Some("context") => {
                let el = b["elements"].as_array().cloned().unwrap_or_default();
                c.measure("context elements", el.len(), 10);
                for e in &el {
                    c.text("context text", &e["text"], 3000);
                }
            }
            other => c.violations.push(format!("unexpected block {other:?}")),
        }
    }
}

/// A `<` or `>` in mrkdwn that is not an escape: Slack would parse it as a link or mention.
fn unescaped(c: &mut Checked, v: &Value) {
    let s = v.as_str().unwrap_or_default();
    if s.contains('<') || s.contains('>') {
        c.violations.push("mrkdwn with an unescaped < or >".into());
    }
    let bare_amp = s.match_indices('&').any(|(i, _)| {
        !["&amp;", "&lt;", "&gt;"]
            .iter()
            .any(|e| s[i..].starts_with(e))
    });
    if bare_amp {
        c.violations.push("mrkdwn with an unescaped &".into());
    }
}

/// developer.pagerduty.com Events API v2: dedup_key 255, summary 1024, event 512 KB.
fn pagerduty(v: &Value, c: &mut Checked) {
    c.text("dedup_key", &v["dedup_key"], 255);
    if v["event_action"] == "trigger" {
        c.text("summary", &v["payload"]["summary"], 1024);
        for k in ["source", "severity"] {
            if !v["payload"][k].is_string() {
                c.violations.push(format!("payload.{k} missing"));
            }
        }
    }
}

/// docs.opsgenie.com Alert API: message 130, alias 512, description 15000, tags 20 × 50,
/// details 8000 in total, source 100; close: note 25000, alias in the path.
fn opsgenie(path: &str, v: &Value, c: &mut Checked) {
    if path == "/v2/alerts" {
        c.text("message", &v["message"], 130);
        c.text("alias", &v["alias"], 512);
        c.text("description", &v["description"], 15000);
        c.text("source", &v["source"], 100);
        let tags = v["tags"].as_array().cloned().unwrap_or_default();
        c.measure("tags", tags.len(), 20);
        for t in &tags {
            c.text("tag", t, 50);
        }
        let details = serde_json::to_string(&v["details"]).unwrap_or_default();
        c.measure("details (serialized)", chars(&details), 8000);
        if v["details"]
            .as_object()
            .is_some_and(|m| m.values().any(|x| !x.is_string()))
        {
            c.violations.push("details values must be strings".into());
        }
    } else if let Some(alias) = path
        .strip_prefix("/v2/alerts/")
        .and_then(|p| p.strip_suffix("/close"))
    {
        let alias = percent_decode(alias);
        c.measure("alias", chars(&alias), 512);
        c.lengths.insert(format!("alias={alias}"), 0);
        c.text("note", &v["note"], 25000);
    } else {
        c.violations.push(format!("unknown Opsgenie path {path}"));
    }
}

/// prometheus/alertmanager `Alert.Validate`: labels present and named `[a-zA-Z_][a-zA-Z0-9_]*`,
/// startsAt before endsAt.
fn alertmanager(v: &Value, c: &mut Checked) {
    for a in v.as_array().into_iter().flatten() {
        let labels = a["labels"].as_object().cloned().unwrap_or_default();
        if labels.is_empty() {
            c.violations.push("alert without labels".into());
        }
        for (k, val) in &labels {
            let ok = k.chars().enumerate().all(|(i, ch)| {
                ch == '_' || ch.is_ascii_alphabetic() || (i > 0 && ch.is_ascii_digit())
            });
            if !ok || !val.is_string() {
                c.violations.push(format!("bad label {k}"));
            }
        }
        for (k, val) in a["annotations"].as_object().into_iter().flatten() {
            c.measure(
                &format!("annotation {k}"),
                val.as_str().map_or(0, chars),
                usize::MAX,
            );
        }
    }
}

/// `%XX` sequences back to bytes (a path segment, so `+` stays `+`).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
