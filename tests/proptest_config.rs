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

// ---------------------------------------------------------------------------------------------
// Issue 17: extreme numbers through every duration key and every deserialised float.
// ---------------------------------------------------------------------------------------------

/// Every duration key of the service config and the probe files: (which file, the text with
/// `{}` where the value goes, the key an error must name).
const DURATION_KEYS: &[(&str, &str, &str)] = &[
    ("service", "[defaults]\ntimeout = {}\n", "defaults.timeout"),
    (
        "service",
        "[defaults]\nstep_timeout = {}\n",
        "defaults.step_timeout",
    ),
    ("service", "[defaults]\njitter = {}\n", "defaults.jitter"),
    (
        "service",
        "[alerting]\nconfirm_delay = {}\n",
        "alerting.confirm_delay",
    ),
    (
        "service",
        "[alerting]\nreminder_interval = {}\n",
        "alerting.reminder_interval",
    ),
    (
        "service",
        "[alerting.budgets]\n\"a.total\" = {}\n",
        "alerting.budgets.a.total",
    ),
    (
        "service",
        "[[alerting.maintenance]]\nstart = \"0 3 * * *\"\nduration = {}\n",
        "alerting.maintenance[0].duration",
    ),
    (
        "service",
        "[[pager]]\nname = \"w\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\ntimeout = {}\n",
        "pager[0].timeout",
    ),
    (
        "service",
        "[[pager]]\nname = \"w\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nretry_base = {}\n",
        "pager[0].retry_base",
    ),
    (
        "service",
        "[[pager]]\nname = \"w\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nretry_max_age = {}\n",
        "pager[0].retry_max_age",
    ),
    (
        "service",
        "[[pager]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = \"http://127.0.0.1:9/\"\nresend_interval = {}\n",
        "pager[0].resend_interval",
    ),
    (
        "service",
        "[[pager]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = \"http://127.0.0.1:9/\"\nhold = {}\n",
        "pager[0].hold",
    ),
    (
        "service",
        "[[heartbeat]]\nname = \"h\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\ninterval = {}\n",
        "heartbeat[0].interval",
    ),
    (
        "service",
        "[[heartbeat]]\nname = \"h\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\ntimeout = {}\n",
        "heartbeat[0].timeout",
    ),
    (
        "probe",
        "timeout = {}\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n",
        "timeout",
    ),
    (
        "probe",
        "jitter = {}\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n",
        "jitter",
    ),
    (
        "probe",
        "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\ntimeout = {}\n",
        "steps[0].timeout",
    ),
    (
        "probe",
        "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n[alerting]\nconfirm_delay = {}\n",
        "alerting.confirm_delay",
    ),
    (
        "probe",
        "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n[alerting]\nreminder_interval = {}\n",
        "alerting.reminder_interval",
    ),
    (
        "probe",
        "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n[[alerting.maintenance]]\nstart = \"0 3 * * *\"\nduration = {}\n",
        "alerting.maintenance[0].duration",
    ),
    (
        "probe",
        "mode = \"resident\"\n[resident]\nevery = {}\n[[steps]]\nname = \"c\"\nkind = \"ws_connect\"\nurl = \"ws://127.0.0.1:9/\"\n[[exchange]]\nname = \"s\"\nkind = \"ws_send\"\ntext = \"x\"\n",
        "resident.every",
    ),
    (
        "probe",
        "mode = \"resident\"\n[resident]\nmax_session_age = {}\n[[steps]]\nname = \"c\"\nkind = \"ws_connect\"\nurl = \"ws://127.0.0.1:9/\"\n[[exchange]]\nname = \"s\"\nkind = \"ws_send\"\ntext = \"x\"\n",
        "resident.max_session_age",
    ),
    (
        "probe",
        "mode = \"resident\"\n[resident]\nkeepalive = {}\n[[steps]]\nname = \"c\"\nkind = \"ws_connect\"\nurl = \"ws://127.0.0.1:9/\"\n[[exchange]]\nname = \"s\"\nkind = \"ws_send\"\ntext = \"x\"\n",
        "resident.keepalive",
    ),
    (
        "probe",
        "mode = \"resident\"\n[resident]\nsetup_timeout = {}\n[[steps]]\nname = \"c\"\nkind = \"ws_connect\"\nurl = \"ws://127.0.0.1:9/\"\n[[exchange]]\nname = \"s\"\nkind = \"ws_send\"\ntext = \"x\"\n",
        "resident.setup_timeout",
    ),
    (
        "probe",
        "mode = \"resident\"\n[resident]\nreconnect_min = {}\n[[steps]]\nname = \"c\"\nkind = \"ws_connect\"\nurl = \"ws://127.0.0.1:9/\"\n[[exchange]]\nname = \"s\"\nkind = \"ws_send\"\ntext = \"x\"\n",
        "resident.reconnect_min",
    ),
    (
        "probe",
        "mode = \"resident\"\n[resident]\nreconnect_max = {}\n[[steps]]\nname = \"c\"\nkind = \"ws_connect\"\nurl = \"ws://127.0.0.1:9/\"\n[[exchange]]\nname = \"s\"\nkind = \"ws_send\"\ntext = \"x\"\n",
        "resident.reconnect_max",
    ),
    // The keys added with the media steps and the caps (the fresh round of issue 17).
    (
        "probe",
        "[[steps]]\nname = \"t\"\nkind = \"turn\"\nurl = \"turn:127.0.0.1:9\"\nsecret = \"s3cret\"\ncredential_ttl = {}\n",
        "steps[0].credential_ttl",
    ),
    (
        "probe",
        "[[steps]]\nname = \"o\"\nkind = \"webrtc\"\naction = \"offer\"\n[[steps]]\nname = \"c\"\nkind = \"webrtc\"\naction = \"connect\"\nremote_sdp = \"x\"\necho_interval = {}\n",
        "steps[1].echo_interval",
    ),
    (
        "probe",
        "[[steps]]\nname = \"o\"\nkind = \"webrtc\"\naction = \"offer\"\n[[steps]]\nname = \"c\"\nkind = \"webrtc\"\naction = \"connect\"\nremote_sdp = \"x\"\necho_wait = {}\n",
        "steps[1].echo_wait",
    ),
    (
        "probe",
        "[[steps]]\nname = \"o\"\nkind = \"webrtc\"\naction = \"offer\"\n[[steps]]\nname = \"c\"\nkind = \"webrtc\"\naction = \"connect\"\nremote_sdp = \"x\"\necho = {}\n",
        "steps[1].echo",
    ),
    (
        "probe",
        "max_body_bytes = {}\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n",
        "max_body_bytes",
    ),
    (
        "service",
        "[defaults]\nmax_body_bytes = {}\n",
        "defaults.max_body_bytes",
    ),
];

/// Extreme values as TOML: durations of every unit and size, and numbers where a string goes.
fn extreme() -> impl Strategy<Value = String> {
    let unit = prop_oneof![
        Just("ns"),
        Just("us"),
        Just("ms"),
        Just("s"),
        Just("m"),
        Just("h"),
        Just("d"),
        Just("w"),
        Just("months"),
        Just("years"),
    ];
    prop_oneof![
        Just("\"0s\"".to_string()),
        Just("\"-1s\"".to_string()),
        Just("\"NaN\"".to_string()),
        Just("\"1e300s\"".to_string()),
        Just("\"100000000years\"".to_string()),
        Just(format!("\"{}s\"", i64::MAX)),
        Just(format!("\"{}s\"", u64::MAX)),
        Just(format!("\"{}ns\"", u64::MAX)),
        Just("\"1year\"".to_string()),
        Just("\"366d\"".to_string()),
        Just("nan".to_string()),
        Just("-inf".to_string()),
        Just("1e300".to_string()),
        Just(i64::MAX.to_string()),
        Just("-1".to_string()),
        (any::<u64>(), unit.clone()).prop_map(|(n, u)| format!("\"{n}{u}\"")),
        (0u64..100_000, unit).prop_map(|(n, u)| format!("\"{n}{u}\"")),
    ]
}

/// Every time calculation the service does with a configured duration must be possible.
fn usable(d: std::time::Duration) -> bool {
    d <= joincanary::diag::MAX_DURATION
        && tokio::time::Instant::now().checked_add(d).is_some()
        && chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| chrono::Utc::now().checked_add_signed(d))
            .is_some()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever number a duration key holds: never a panic; the load either gives a value every
    /// time calculation can use, or an error at `file:line:col` naming the key.
    #[test]
    fn every_duration_key_takes_extreme_values(
        which in 0..DURATION_KEYS.len(),
        value in extreme(),
    ) {
        let (file, template, key) = DURATION_KEYS[which];
        let text = template.replacen("{}", &value, 1);
        let probe_ok = "timeout = \"5s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";
        let cfg = if file == "service" {
            TempConfig::new(&text, &[("p.toml", probe_ok)])
        } else {
            TempConfig::new("", &[("p.toml", &text)])
        };
        let loaded = std::panic::catch_unwind(|| cfg.load(&[]))
            .map_err(|_| TestCaseError::fail(format!("panicked on:\n{text}")))?;
        match loaded {
            Ok(plan) => {
                let p = &plan.probes[0];
                let mut all = vec![p.timeout, p.jitter, p.alerting.confirm_delay];
                all.extend(p.alerting.reminder_interval);
                all.extend(p.alerting.maintenance.iter().map(|m| m.duration));
                all.extend(p.alerting.budgets.values().flat_map(|b| b.values().copied()));
                all.extend(p.steps.iter().filter_map(|s| s.timeout));
                if let Some(r) = &p.resident {
                    all.extend([r.every, r.max_session_age, r.keepalive, r.setup_timeout, r.reconnect_min, r.reconnect_max]);
                }
                for pager in &plan.pagers {
                    all.extend([pager.timeout, pager.retry.base, pager.retry.cap, pager.retry.max_age]);
                    if let joincanary::alert::PagerKind::Alertmanager(a) = &pager.kind {
                        all.extend([a.resend_interval, a.hold]);
                    }
                }
                for hb in &plan.heartbeats {
                    all.extend([hb.interval, hb.timeout]);
                }
                for d in all {
                    prop_assert!(usable(d), "{key} = {value} gave {d:?}");
                }
                // A memory cap cannot be configured away.
                prop_assert!(p.max_body_bytes <= 64 << 20, "{key} = {value} gave {}", p.max_body_bytes);
                // The date arithmetic on them, at both ends of time.
                for at in [chrono::Utc::now(), chrono::DateTime::<chrono::Utc>::MAX_UTC, chrono::DateTime::<chrono::Utc>::MIN_UTC] {
                    let _ = p.alerting.in_maintenance(at);
                }
            }
            Err(errors) => {
                // Every error is placed and names a key (another one when the value is valid
                // but breaks a rule between keys: `max_session_age` longer than `every`)...
                for e in &errors.0 {
                    prop_assert!(e.line > 0 && e.column > 0 && e.key.is_some(), "{key} = {value}: {e}");
                }
                // ...and an absurd value is refused at its own key.
                let absurd = ["100000000years", "1e300", &i64::MAX.to_string(), &u64::MAX.to_string(), "NaN", "nan", "inf"]
                    .iter()
                    .any(|a| value.contains(a));
                if absurd {
                    prop_assert!(errors.0.iter().any(|e| e.key.as_deref() == Some(key)), "{key} = {value}: {errors}");
                }
            }
        }
    }

    /// Every float a peer's status or the history file carries (run, step and phase durations,
    /// history entries): never a panic; either every duration is in range (and the page renders
    /// it), or an error naming the key, line and column.
    #[test]
    fn every_deserialised_float_is_range_checked(
        field in 0..4usize,
        ms in prop_oneof![
            Just("1e300".to_string()),
            Just("-1".to_string()),
            Just("-0.0".to_string()),
            Just("1e-320".to_string()),
            Just(i64::MAX.to_string()),
            Just(u64::MAX.to_string()),
            Just("31557600000".to_string()),
            Just("31557600000.5".to_string()),
            any::<f64>().prop_filter("JSON holds finite numbers", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
        ],
    ) {
        let n = |i: usize| if i == field { ms.as_str() } else { "5" };
        let doc = format!(
            r#"{{"region":"far","probes":[{{"probe":"p",
              "last":{{"probe":"p","region":"far","success":false,"started_at":"2026-01-01T00:00:00Z",
                       "duration_ms":{},"failed_step":"a","reason":"timeout","error":"x",
                       "steps":[{{"name":"a","kind":"http","success":false,"duration_ms":{},
                                  "reason":"timeout","error":"x","phases":{{"total":{}}}}}]}},
              "history":[{{"time":"2026-01-01T00:00:00Z","success":true,"duration_ms":{},
                           "failed_step":null,"reason":null}}]}}]}}"#,
            n(0), n(1), n(2), n(3)
        );
        let parsed = std::panic::catch_unwind(|| serde_json::from_str::<joincanary::status::StatusDoc>(&doc))
            .map_err(|_| TestCaseError::fail(format!("panicked on {ms} in field {field}")))?;
        match parsed {
            Ok(peer) => {
                let p = &peer.probes[0];
                let last = p.last.as_ref().expect("last run");
                prop_assert!(last.duration_ms <= joincanary::diag::MAX_DURATION);
                prop_assert!(last.steps[0].duration_ms <= joincanary::diag::MAX_DURATION);
                prop_assert!(last.steps[0].phases.values().all(|d| *d <= joincanary::diag::MAX_DURATION));
                prop_assert!((0.0..=3.2e10).contains(&p.history[0].duration_ms));
                let view = joincanary::fleet::PeerView {
                    url: "http://peer".into(),
                    region: None,
                    result: Ok(peer.clone()),
                    unreachable_since: None,
                    last_seen: None,
                };
                let local = joincanary::status::StatusDoc { region: "here".into(), ..Default::default() };
                let page = std::panic::catch_unwind(|| joincanary::page::render(&local, &[view], chrono::Utc::now()));
                prop_assert!(page.is_ok(), "the page panicked on {ms} in field {field}");
            }
            Err(e) => {
                let text = e.to_string();
                let key = if field == 2 { "phases.total:" } else { "duration_ms:" };
                prop_assert!(text.contains(key) && e.line() > 0 && e.column() > 0, "{text}");
            }
        }
    }

    /// Any gauge a step read (NaN, the infinities, subnormals, any finite number) in a run as
    /// the status document or the history file writes it: read back, never refused whole for
    /// it (JSON writes a NaN as `null`; a peer refused the whole document for one), finite
    /// values kept as they were (to serde_json's last digit).
    #[test]
    fn any_gauge_value_reads_back(
        values in proptest::collection::vec(
            prop_oneof![
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(f64::MAX),
                Just(f64::MIN_POSITIVE / 2.0),
                // A subnormal that CI once drew: its last digit is an absolute
                // 5e-324, far more than 1e-15 of its value.
                Just(-2.2198254728018e-309),
                any::<f64>(),
            ],
            0..8,
        ),
    ) {
        let mut run = joincanary::report::ProbeRun {
            probe: "p".into(),
            region: "far".into(),
            success: true,
            started_at: chrono::DateTime::UNIX_EPOCH,
            duration_ms: std::time::Duration::from_millis(5),
            failed_step: None,
            reason: None,
            error: None,
            trigger: Default::default(),
            steps: vec![joincanary::report::StepReport {
                name: "redis".into(),
                kind: joincanary::report::KindName::new("redis"),
                success: true,
                duration_ms: std::time::Duration::from_millis(5),
                reason: None,
                error: None,
                phases: Default::default(),
                cleanup: false,
                gauges: Default::default(),
                cert_expiry: None,
                warnings: Vec::new(),
            }],
        };
        for (i, v) in values.iter().enumerate() {
            run.steps[0].gauges.insert(format!("g{i}"), *v);
        }
        let text = serde_json::to_string(&run).unwrap();
        let back: joincanary::report::ProbeRun = serde_json::from_str(&text)
            .map_err(|e| TestCaseError::fail(format!("refused: {e}: {text}")))?;
        let kept = &back.steps[0].gauges;
        for (i, v) in values.iter().enumerate() {
            let got = kept.get(&format!("g{i}"));
            if v.is_finite() {
                // serde_json reads the last digit back to within an ulp or two:
                // relative for a normal number, a few absolute 5e-324 steps
                // for a subnormal one (below f64::MIN_POSITIVE).
                let got = got.copied().unwrap_or(f64::NAN);
                let tolerance = (v.abs() * 1e-15).max(f64::MIN_POSITIVE * 1e-15);
                prop_assert!((got - v).abs() <= tolerance, "{} read back as {}", v, got);
            } else {
                prop_assert!(got.is_none(), "{:?} kept as {:?}", v, got);
            }
        }
    }
}
