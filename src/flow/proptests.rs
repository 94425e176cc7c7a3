//! Property tests of the frame matchers: whatever a server sends, decoding it for any protocol
//! and matching it against JSON, regex and fail patterns never panics.

use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::Value;

use super::matcher::{Pattern, is_json_subset, json_subset, regex_capture, value_as_var};
use super::protocol::{Incoming, Protocol, actioncable, raw, socketio, sockjs, xmpp};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{0,3}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Frames as the protocols' servers send them, whole, cut short and mangled.
fn frame() -> impl Strategy<Value = String> {
    let head = prop_oneof![
        Just(""),
        Just("0"),
        Just("2"),
        Just("3"),
        Just("40"),
        Just("41"),
        Just("42"),
        Just("43"),
        Just("44"),
        Just("42/chat,"),
        Just("431"),
        Just("{\"type\":\"ping\""),
        Just("{\"type\":\"welcome\"}"),
        Just("{\"type\":\"reject_subscription\"}"),
        Just("{\"type\":\"disconnect\",\"reason\":\"x\"}"),
        Just("<stream:stream xmlns='jabber:client'>"),
        Just("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"),
        Just("<message type='error'><body>x</body></message>"),
        Just("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"),
        Just("</stream:stream>"),
        Just("<a b='&amp;&#x41;&#9999999;'>"),
    ];
    (
        head,
        prop_oneof![json_value().prop_map(|v| v.to_string()), ".{0,24}"],
    )
        .prop_map(|(h, tail)| format!("{h}{tail}"))
}

fn protocols(ping: Value) -> Vec<Box<dyn Protocol>> {
    vec![
        Box::new(raw::Raw::new(Some(ping.clone()))),
        Box::new(socketio::SocketIo::new("/".into(), None, false)),
        Box::new(socketio::SocketIo::new(
            "/chat".into(),
            Some(serde_json::json!({"t": 1})),
            false,
        )),
        // Engine.IO v3 framing reads the same hostile frames.
        Box::new(socketio::SocketIo::new(
            "/chat".into(),
            Some(serde_json::json!({"t": 1})),
            true,
        )),
        Box::new(actioncable::ActionCable::default()),
        Box::new(xmpp::Xmpp::new("example.com".into())),
        Box::new(sockjs::SockJs::new(Some(ping))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decoding_and_matching_frames_never_panics(
        frames in proptest::collection::vec(frame(), 1..6),
        pattern in json_value(),
        regex_text in ".{0,12}",
        var in ".{0,8}",
    ) {
        let vars: HashMap<String, String> = [("v".to_string(), var)].into_iter().collect();
        let patterns: Vec<Pattern> = [regex_text.as_str(), "{{v}}", "\"id\":\"(\\w+)\""]
            .iter()
            .filter_map(|t| Pattern::parse(t).ok())
            .collect();
        let regexes: Vec<regex::Regex> = patterns
            .iter()
            .filter_map(|p| p.regex(&vars).ok().map(|r| r.into_owned()))
            .collect();
        let xml_pattern = xmpp::Element::parse("<message type='error'/>").ok();
        for mut protocol in protocols(pattern.clone()) {
            let _ = protocol.opening();
            for f in &frames {
                let _ = xmpp::Element::parse(f);
                if let Incoming::Message(m) = protocol.decode(f) {
                    let actual = m.json_for(&pattern);
                    if let Some(actual) = actual {
                        let _ = json_subset(&pattern, actual);
                        let _ = json_subset(actual, &pattern);
                        let _ = value_as_var(actual);
                    }
                    for re in &regexes {
                        let _ = re.is_match(&m.text);
                        let _ = regex_capture(re, &m.text);
                    }
                    if let (Some(p), Some(x)) = (&xml_pattern, &m.xml) {
                        let _ = p.matches(x);
                    }
                    let _ = super::parts::check_fail(m.json.as_ref(), &m.text, Some(&pattern), &regexes);
                }
            }
        }
    }

    #[test]
    fn the_quick_subset_check_answers_as_the_described_one(v in json_value(), w in json_value(), keep in any::<u64>()) {
        // A pattern that is a part of `v` (some of its keys dropped, at every depth), so the
        // answer is often yes; `w` against `v`, mostly no.
        fn part(v: &Value, keep: u64) -> Value {
            match v {
                Value::Object(m) => Value::Object(
                    m.iter()
                        .enumerate()
                        .filter(|(i, _)| (keep >> (i % 64)) & 1 == 1)
                        .map(|(_, (k, x))| (k.clone(), part(x, keep.rotate_left(7))))
                        .collect(),
                ),
                Value::Array(a) => Value::Array(a.iter().map(|x| part(x, keep.rotate_left(3))).collect()),
                other => other.clone(),
            }
        }
        let p = part(&v, keep);
        for (pattern, actual) in [(&p, &v), (&v, &p), (&w, &v), (&v, &w), (&v, &v)] {
            let described = super::matcher::subset_at(pattern, actual, &mut String::new());
            prop_assert_eq!(is_json_subset(pattern, actual), described.is_ok(), "{} in {}", pattern, actual);
            prop_assert_eq!(json_subset(pattern, actual), described);
        }
    }

    #[test]
    fn json_subset_holds_for_a_value_and_itself(v in json_value()) {
        // NaN-free by construction (serde_json has no NaN), so every value matches itself.
        prop_assert!(json_subset(&v, &v).is_ok());
    }

    #[test]
    fn quoted_replies_come_out_cut_flat_and_scrubbed(
        reply in "(.|\u{E000}|\u{E001}|\u{E002}|\t|\n|pa\"ss w0rd){0,40}",
        limit in 1usize..30,
    ) {
        let redactor = crate::redact::Redactor::new(["pa\"ss w0rd".to_string()]);
        let message = format!("status 400: {} (then {})", crate::redact::quote(&reply, limit), crate::redact::quote(&reply, 5));
        let out = crate::redact::finish(&redactor, &message);
        prop_assert!(!out.contains(['\u{E000}', '\u{E001}', '\u{E002}']), "{:?}", out);
        prop_assert!(!out.contains("pa\"ss w0rd") && !out.chars().any(char::is_control), "{:?}", out);
        let shown = out.trim_start_matches("status 400: ");
        let first = shown.split(" (then ").next().unwrap_or_default();
        prop_assert!(first.chars().count() <= limit + 1, "{:?} over {}", first, limit);
    }
}
