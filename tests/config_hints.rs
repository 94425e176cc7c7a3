//! What `check` says to help the writer of a config: "did you mean …?" for a value one slip
//! from an accepted one, the range a number must be in, and warnings about what a config
//! promises.

use crate::support::TempConfig;

const PROBE: &str =
    "timeout = \"5s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";

/// An unknown word from a closed list (step `kind`, `protocol`, pager `type`, heartbeat
/// `type`, `mode`) one slip from an accepted one names it, placed and listed as before.
#[test]
fn an_unknown_kind_or_type_one_slip_from_a_known_one_is_named() {
    let steps = "[[steps]]\nname = \"a\"\nkind = \"ws_expct\"\n\
                 [[steps]]\nname = \"b\"\nkind = \"HTTP\"\n\
                 [[steps]]\nname = \"c\"\nkind = \"teleport\"\n";
    assert_eq!(
        TempConfig::new("", &[("p.toml", steps)]).errors(),
        [
            "probes/p.toml:3:8: steps[0].kind: unknown step kind `ws_expct` (did you mean `ws_expect`?), expected one of http, ws_connect, ws_send, ws_expect, ws_close, redis, http_json, turn, webrtc",
            "probes/p.toml:6:8: steps[1].kind: unknown step kind `HTTP` (did you mean `http`?), expected one of http, ws_connect, ws_send, ws_expect, ws_close, redis, http_json, turn, webrtc",
            // Far from every kind: no guess.
            "probes/p.toml:9:8: steps[2].kind: unknown step kind `teleport`, expected one of http, ws_connect, ws_send, ws_expect, ws_close, redis, http_json, turn, webrtc",
        ]
    );
    let protocol = "[[steps]]\nname = \"ws\"\nkind = \"ws_connect\"\nurl = \"ws://127.0.0.1:9/\"\nprotocol = \"socket.io\"\n";
    let errs = TempConfig::new("", &[("p.toml", protocol)]).errors();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "probes/p.toml:5:12: steps[0].protocol: unknown protocol `socket.io` (did you mean `socketio`?), expected one of raw, "
        ),
        "{}",
        errs[0]
    );
    let mode = format!("mode = \"residnet\"\n{PROBE}");
    assert_eq!(
        TempConfig::new("", &[("p.toml", &mode)]).errors(),
        [
            "probes/p.toml:1:8: mode: unknown mode `residnet` (did you mean `resident`?), expected `scheduled` or `resident`"
        ]
    );
    let service = "[[pager]]\nname = \"pd\"\ntype = \"pagerduty\"\nrouting_key = \"k\"\n\
                   [[pager]]\nname = \"og\"\ntype = \"opsgenei\"\napi_key = \"k\"\n\
                   [[heartbeat]]\nname = \"hc\"\ntype = \"htp\"\nurl = \"http://127.0.0.1:9/\"\ninterval = \"1m\"\n";
    let errs = TempConfig::new(service, &[("p.toml", PROBE)]).errors();
    for want in [
        "joincanary.toml:11:8: pager[1].type: unknown pager type `opsgenei` (did you mean `opsgenie`?); expected one of: pagerduty, opsgenie, alertmanager, slack, webhook, email",
        "joincanary.toml:15:8: heartbeat[0].type: unknown heartbeat type `htp` (did you mean `http`?), expected `http` or `opsgenie`",
    ] {
        assert!(errs.iter().any(|e| e == want), "{want}\nnot in\n{errs:#?}");
    }
}

/// A key written with another case is one slip from the accepted one (it was compared in
/// lower case with the lower-cased key, so `Timeout` matched `timeout` exactly and was left
/// out).
#[test]
fn a_key_in_another_case_is_named() {
    let errs = TempConfig::new("", &[("p.toml", &PROBE.replace("timeout", "Timeout"))]).errors();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "probes/p.toml:1:1: Timeout: unknown field `Timeout` (did you mean `timeout`?), expected one of"
        ),
        "{}",
        errs[0]
    );
}

/// A status outside 100–599 is named where it is written, with the range; an empty list (which
/// read as "any 2xx", as if the key were not there) is refused.
#[test]
fn an_expect_status_outside_100_to_599_is_placed_with_the_range() {
    let step = "timeout = \"5s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";
    let probes = [
        ("p.toml", format!("{step}expect_status = [200, 2000, 99]\n")),
        ("q.toml", format!("{step}expect_status = [-1]\n")),
        ("r.toml", format!("{step}expect_status = []\n")),
    ];
    let probes: Vec<(&str, &str)> = probes.iter().map(|(n, t)| (*n, t.as_str())).collect();
    assert_eq!(
        TempConfig::new("", &probes).errors(),
        [
            "probes/p.toml:6:23: steps[0].expect_status: `2000` is not an HTTP status: must be from 100 to 599",
            "probes/p.toml:6:29: steps[0].expect_status: `99` is not an HTTP status: must be from 100 to 599",
            "probes/q.toml:6:18: steps[0].expect_status: `-1` is not an HTTP status: must be from 100 to 599",
            "probes/r.toml:6:17: steps[0].expect_status: an empty list accepts no status: list the statuses, or leave the key out for any 2xx",
        ]
    );
}

/// `check` warns (and still passes) when a probe's settings put its first page past the 90 s
/// promise, with the figure, its parts and the keys to change; the shipped shape (every minute,
/// 5 s step timeouts, the default policy: 60 + 5 + 10 + 5 = 80 s) passes quietly.
#[test]
fn check_warns_when_the_first_page_would_come_after_90_seconds() {
    let step = "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";
    let cfg = TempConfig::new(
        "[[pager]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n",
        &[
            // A hung step takes the whole 30 s deadline, twice: 60 + 30 + (10 + 30) = 130 s.
            (
                "slow.toml",
                &format!("name = \"slow\"\ntimeout = \"30s\"\n{step}"),
            ),
            // The same deadline, but the step's own 5 s timeout and a 2 s cleanup bound it.
            (
                "bounded.toml",
                &format!(
                    "name = \"bounded\"\ntimeout = \"30s\"\n{step}timeout = \"5s\"\n[[steps]]\nname = \"bye\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/bye\"\ncleanup = true\ntimeout = \"2s\"\n"
                ),
            ),
            // Every two minutes, paging on the first failure: 120 + 5 = 125 s.
            (
                "sparse.toml",
                &format!(
                    "name = \"sparse\"\nschedule = \"*/2 * * * *\"\ntimeout = \"5s\"\n{step}[alerting]\nfailure_threshold = 1\n"
                ),
            ),
            // Three confirmations a minute apart (`confirm_delay` past the next tick counts
            // as the tick): 60 + 5 + 3 × (60 + 5) = 260 s.
            (
                "late.toml",
                &format!(
                    "name = \"late\"\ntimeout = \"5s\"\n{step}[alerting]\nfailure_threshold = 4\nconfirm_delay = \"5m\"\n"
                ),
            ),
        ],
    );
    let out = std::process::Command::new(crate::support::binary())
        .args(["check", "--config"])
        .arg(&cfg.path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    let advice = "; run it more often, shorten the timeouts, or lower `[alerting] confirm_delay` or `failure_threshold`";
    assert_eq!(
        warnings,
        [
            format!(
                "warning: probe `late`: its first page can come 260 s after a fault, past the 90 s promise: the next run up to 60 s later (`schedule` `* * * * *`) + 5 s to fail (step `timeout`s, the probe's `timeout`) + 3 confirming runs for `failure_threshold = 4`, each 60 s later (the next run, before `confirm_delay`) + 5 s to fail{advice}"
            ),
            format!(
                "warning: probe `slow`: its first page can come 130 s after a fault, past the 90 s promise: the next run up to 60 s later (`schedule` `* * * * *`) + 30 s to fail (step `timeout`s, the probe's `timeout`) + 1 confirming run for `failure_threshold = 2`, each 10 s later (`confirm_delay`) + 30 s to fail{advice}"
            ),
            format!(
                "warning: probe `sparse`: its first page can come 125 s after a fault, past the 90 s promise: the next run up to 120 s later (`schedule` `*/2 * * * *`) + 5 s to fail (step `timeout`s, the probe's `timeout`){advice}"
            ),
        ],
        "{err}"
    );
}
