//! A probe file's own errors (`probes/*.toml`): its top-level keys, `[variables]`, `mode` and
//! `[resident]`, `[alerting]`, and the two that span files (a name given twice, a name taken
//! from the file's name).

use super::{Case, PROBE, check, probe};

/// `PROBE` without its first line (`timeout = "5s"`).
fn steps_only() -> &'static str {
    &PROBE[15..]
}

/// A resident probe: `mode` line 1, `[resident]` 2, `every` 3, a ws_connect 4-7, one exchange
/// step 8-11.
const RESIDENT: &str = "mode = \"resident\"\n[resident]\nevery = \"5s\"\n\
    [[steps]]\nname = \"ws\"\nkind = \"ws_connect\"\nurl = \"ws://127.0.0.1:9/\"\n\
    [[exchange]]\nname = \"ping\"\nkind = \"ws_send\"\ntext = \"x\"\n";

fn resident(from: &str, to: &str, key: &'static str, says: &'static str) -> Case {
    assert!(RESIDENT.contains(from), "{from}");
    probe(&RESIDENT.replacen(from, to, 1), key, says)
}

#[test]
fn every_probe_file_error_names_file_line_column_and_key() {
    let s = steps_only();
    let mut cases = vec![
        probe(
            &format!("‸bogus = 1\n{PROBE}"),
            "bogus",
            "unknown field `bogus`",
        ),
        probe("[[steps]‸\nname = 1\n", "", "unclosed array table"),
        probe(
            &format!("name = \"a\"\n‸name = \"b\"\n{s}"),
            "name",
            "duplicate key",
        ),
        probe(
            "‸timeout = \"5s\"\n",
            "steps",
            "missing field `steps`: a probe runs at least one step: add `[[steps]]` tables",
        ),
        probe(
            &format!("{PROBE}‸[[steps]]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n"),
            "steps[1].name",
            "missing field `name`",
        ),
        probe(
            &format!("timeout = ‸5\n{s}"),
            "timeout",
            "expected a duration in quotes",
        ),
        probe(
            &format!("timeout = ‸\"soon\"\n{s}"),
            "timeout",
            "`soon` is not a duration",
        ),
        probe(
            &format!("name = ‸\"a b\"\n{PROBE}"),
            "name",
            "`a b` must be letters, digits",
        ),
        probe(
            &format!("name = ‸\"${{JC_UNSET_NAME}}\"\n{PROBE}"),
            "name",
            "environment variable `JC_UNSET_NAME` is not set",
        ),
        probe(
            &format!("name = ‸\"${{oops\"\n{PROBE}"),
            "name",
            "is never closed",
        ),
        probe(
            &format!("timezone = ‸\"Nowhere\"\n{PROBE}"),
            "timezone",
            "`Nowhere` is not an IANA time zone",
        ),
        probe(
            &format!("schedule = ‸\"* * *\"\n{PROBE}"),
            "schedule",
            "has 3 fields",
        ),
        probe(
            &format!("schedule = \"*/10 * * * * *\"\ntimeout = ‸\"30s\"\n{s}"),
            "timeout",
            "the probe deadline (30s) must be shorter than the schedule's interval (10s)",
        ),
        // The deadline from [defaults] (here its default, 20s), the schedule from this file.
        probe(
            &format!("schedule = ‸\"*/10 * * * * *\"\n{s}"),
            "schedule",
            "the probe deadline (20s from [defaults]) must be shorter than the schedule's interval (10s)",
        ),
        probe(
            &format!("jitter = ‸\"-1s\"\n{PROBE}"),
            "jitter",
            "is not a duration",
        ),
        probe(
            &format!("max_body_bytes = ‸100000000\n{PROBE}"),
            "max_body_bytes",
            "must be a whole number from 1 to 67108864",
        ),
        probe(
            &format!("ca_file = ‸\"nope.pem\"\n{PROBE}"),
            "ca_file",
            "cannot read `",
        ),
        probe(
            &format!("ca_file = ‸\"p.toml\"\n{PROBE}"),
            "ca_file",
            "holds no PEM certificate",
        ),
        probe(
            &format!("timeout = \"5s\"\n[variables]\nregion = ‸\"x\"\n{s}"),
            "variables.region",
            "`region` is a built-in and cannot be redefined",
        ),
        probe(
            &format!("timeout = \"5s\"\n[variables]\nv = ‸\"{{{{w}}}}\"\n{s}"),
            "variables.v",
            "variables may use only the built-ins",
        ),
        probe(
            &format!("timeout = \"5s\"\n[variables]\nv = ‸\"{{{{w\"\n{s}"),
            "variables.v",
            "is never closed",
        ),
        probe(
            "timeout = \"5s\"\nsteps = ‸[]\n",
            "steps",
            "a probe needs at least one step",
        ),
        probe(
            &format!("mode = ‸\"residnt\"\n{PROBE}"),
            "mode",
            "unknown mode `residnt` (did you mean `resident`?)",
        ),
        probe(
            &format!("{PROBE}‸[resident]\nevery = \"5s\"\n"),
            "resident",
            "`resident` applies to `mode = \"resident\"` only",
        ),
        resident(
            "every = \"5s\"",
            "every = ‸\"0s\"",
            "resident.every",
            "must be greater than zero",
        ),
        resident(
            "every = \"5s\"",
            "reconnect_after = ‸0",
            "resident.reconnect_after",
            "must be a whole number greater than zero",
        ),
        resident(
            "every = \"5s\"",
            "reconnect_min = ‸\"10s\"\nreconnect_max = \"2s\"",
            "resident.reconnect_min",
            "must not be longer than `reconnect_max`",
        ),
        resident(
            "every = \"5s\"",
            "every = \"5s\"\nmax_session_age = ‸\"5s\"",
            "resident.max_session_age",
            "must be longer than `every` (5s)",
        ),
        resident(
            "every = \"5s\"",
            "every = ‸\"2h\"",
            "resident.every",
            "must be shorter than `max_session_age` (1h, the default)",
        ),
        resident(
            "[[exchange]]\nname = \"ping\"\nkind = \"ws_send\"\ntext = \"x\"\n",
            "",
            "exchange",
            "a resident probe needs at least one `[[exchange]]` step",
        )
        .mark_at("mode = ‸\"resident\""),
        resident(
            "name = \"ping\"\nkind = \"ws_send\"\ntext = \"x\"",
            "name = \"again\"\nkind = ‸\"ws_connect\"\nurl = \"ws://127.0.0.1:9/\"",
            "exchange[0].kind",
            "a ws_connect belongs in `[[steps]]`",
        ),
        resident(
            "mode = \"resident\"",
            "mode = \"resident\"\nschedule = ‸\"* * * * *\"",
            "schedule",
            "a resident probe runs every `resident.every`, not on a schedule",
        ),
        probe(
            &format!("schedule = ‸\"0 0 30 2 *\"\n{PROBE}"),
            "schedule",
            "`0 0 30 2 *` never fires: no date matches it",
        ),
        resident(
            "text = \"x\"\n",
            "text = \"x\"\n[[teardown]]\nname = \"bye\"\nkind = \"ws_send\"\ntext = ‸\"{{x\"\n",
            "teardown[0].text",
            "is never closed",
        ),
        probe(
            &format!("{PROBE}[alerting]\n‸wat = 1\n"),
            "alerting.wat",
            "unknown field `wat`",
        ),
        probe(
            &format!("{PROBE}[alerting]\npagers = ‸[\"x\"]\n"),
            "alerting.pagers",
            "no [[pager]] is named `x`",
        ),
        probe(
            &format!("{PROBE}[alerting.budgets]\n\"sig.round_trip\" = ‸\"1s\"\n"),
            "alerting.budgets.sig.round_trip",
            "no step is named `sig` (this probe's steps: a)",
        ),
    ];
    // The name taken from the file's name: no place in the file holds it.
    let mut from_file_name = probe("", "name", "`bad name` must be letters, digits");
    from_file_name.probes = vec![("bad name.toml", format!("‸{PROBE}"))];
    cases.push(from_file_name);
    // A name given twice: at the second, naming the first's place.
    let mut twice = probe(
        "",
        "name",
        "probe `dup` is also defined at probes/p.toml:1:1",
    );
    twice.probes = vec![
        ("p.toml", format!("name = \"dup\"\n{PROBE}")),
        (
            "q.toml",
            format!("description = \"x\"\n‸name = \"dup\"\n{PROBE}"),
        ),
    ];
    cases.push(twice);
    // Both taken from the file names (`dup.toml` in two directories cannot be; a name written
    // in one file and the other's file name can): the first place is that file's start.
    let mut file_and_name = probe("", "name", "probe `p` is also defined at probes/p.toml:1:1");
    file_and_name.probes = vec![
        ("p.toml", PROBE.to_string()),
        ("q.toml", format!("‸name = \"p\"\n{PROBE}")),
    ];
    cases.push(file_and_name);
    check(cases);
}

/// A probe file that cannot be read has no line of its own: the error names the file and the
/// `probes` entry of the service config that lists it (here the directory holding it).
#[test]
fn an_unreadable_probe_file_names_the_entry_that_lists_it() {
    let cfg = crate::support::TempConfig::new("", &[("p.toml", PROBE)]);
    std::fs::create_dir(cfg.probe_path("dir.toml")).expect("mkdir");
    assert_eq!(
        cfg.errors(),
        [
            "probes/dir.toml: cannot read: not a regular file (a directory); only regular files are read (listed in `probes` at joincanary.toml:3:11)"
        ]
    );
}
