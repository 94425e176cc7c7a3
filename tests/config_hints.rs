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
