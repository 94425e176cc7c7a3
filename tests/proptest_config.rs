//! Property tests of the config and probe loader: whatever a probe file holds, loading never
//! panics, and a file that does not load gets errors that say where (file and line).

use joincanary::config;
use proptest::prelude::*;

use crate::support::TempConfig;

/// Probe-file lines: real keys with values of every kind, section headers, and junk.
fn line() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("name"),
        Just("kind"),
        Just("url"),
        Just("timeout"),
        Just("schedule"),
        Just("method"),
        Just("json"),
        Just("form"),
        Just("body"),
        Just("headers"),
        Just("expect_status"),
        Just("expect_json"),
        Just("expect_regex"),
        Just("fail_regex"),
        Just("extract"),
        Just("text"),
        Just("connection"),
        Just("protocol"),
        Just("cleanup"),
        Just("jitter"),
        Just("max_body_bytes"),
        Just("room"),
        Just("bogus"),
    ];
    let value = prop_oneof![
        Just("\"http\"".to_string()),
        Just("\"ws_connect\"".to_string()),
        Just("\"ws_send\"".to_string()),
        Just("\"ws_expect\"".to_string()),
        Just("\"http://127.0.0.1:1/x?t={{token}}\"".to_string()),
        Just("\"ws://127.0.0.1:1/ws\"".to_string()),
        Just("\"5s\"".to_string()),
        Just("\"* * * * *\"".to_string()),
        Just("\"${NOPE}\"".to_string()),
        Just("\"${SET:-d}\"".to_string()),
        Just("\"{{room}}\"".to_string()),
        Just("\"{{\"".to_string()),
        Just("{ a = \"{{uuid}}\" }".to_string()),
        Just("{ t = { json = \"/token\" } }".to_string()),
        Just("[200, 201]".to_string()),
        Just("true".to_string()),
        Just("-1".to_string()),
        Just("1e400".to_string()),
        "\"[^\"\\\\\\n]{0,12}\"",
        "[ -~]{0,12}",
    ];
    prop_oneof![
        4 => (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => Just("[[steps]]".to_string()),
        1 => Just("[variables]".to_string()),
        1 => Just("[alerting]".to_string()),
        1 => "[ -~]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn loading_never_panics_and_errors_say_where(lines in proptest::collection::vec(line(), 0..16)) {
        let text = lines.join("\n");
        let cfg = TempConfig::new("", &[("p.toml", &text)]);
        let loaded = std::panic::catch_unwind(|| cfg.load(&[("SET", "x")]));
        let result = loaded.map_err(|_| TestCaseError::fail(format!("panicked on:\n{text}")))?;
        if let Err(errors) = result {
            prop_assert!(!errors.0.is_empty());
            for e in &errors.0 {
                let whole_file = e.message.contains("also defined") || e.message.contains("cannot read");
                prop_assert!(
                    e.line > 0 || whole_file,
                    "no line for `{}` in:\n{}",
                    e,
                    text
                );
            }
        }
    }
}

/// The loader's own entry point with the same input as a service config.
#[test]
fn service_config_junk_is_an_error_with_a_line() {
    let cfg = TempConfig::new("listen = [", &[]);
    let errors = config::load(&cfg.path, &crate::support::env(&[])).expect_err("junk");
    assert!(errors.0.iter().all(|e| e.line > 0), "{errors}");
}
