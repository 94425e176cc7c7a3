//! The Alertmanager pager: its config ranges, the watchdog (dead man's switch) and
//! `test-page` against a real Debian `prometheus-alertmanager` on 127.0.0.1.

use std::time::Duration;

use crate::support::TempConfig;

const PROBE: &str =
    "timeout = \"5s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";

fn am_pager(extra: &str) -> TempConfig {
    TempConfig::new(
        &format!(
            "[[pager]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = \"http://127.0.0.1:9/\"\n{extra}"
        ),
        &[("p.toml", PROBE)],
    )
}

/// Issue 17: `hold = "100000000years"` passed `check` and then panicked the pager task in `run`
/// (`DateTime + TimeDelta overflowed`). Both durations are range-checked when read.
#[test]
fn hold_and_resend_interval_out_of_range_are_config_errors() {
    assert_eq!(
        am_pager("hold = \"100000000years\"\n").errors(),
        ["joincanary.toml:9:8: pager[0].hold: must be between 10ms and 30days"]
    );
    assert_eq!(
        am_pager("resend_interval = \"18446744073709551615s\"\nhold = \"1ms\"\n").errors(),
        [
            "joincanary.toml:9:19: pager[0].resend_interval: must be between 10ms and 1h",
            "joincanary.toml:10:8: pager[0].hold: must be between 10ms and 30days",
        ]
    );
    assert_eq!(
        am_pager("resend_interval = \"1us\"\n").errors(),
        ["joincanary.toml:9:19: pager[0].resend_interval: must be between 10ms and 1h"]
    );
    // The edges are accepted, and the default hold of a long interval is 4 resends.
    let plan = am_pager("resend_interval = \"1h\"\n")
        .load(&[])
        .unwrap_or_else(|e| panic!("{e}"));
    match &plan.pagers[0].kind {
        joincanary::alert::PagerKind::Alertmanager(a) => {
            assert_eq!(a.resend_interval, Duration::from_secs(3600));
            assert_eq!(a.hold, Duration::from_secs(4 * 3600));
        }
        other => panic!("{other:?}"),
    }
    let plan = am_pager("resend_interval = \"10ms\"\nhold = \"30days\"\n")
        .load(&[])
        .unwrap_or_else(|e| panic!("{e}"));
    match &plan.pagers[0].kind {
        joincanary::alert::PagerKind::Alertmanager(a) => {
            assert_eq!(a.hold, Duration::from_secs(30 * 24 * 3600));
        }
        other => panic!("{other:?}"),
    }
}

/// The shipped default: posted every 30 s, so the watchdog (1.5 intervals) lapses within 45 s.
#[test]
fn default_resend_interval_keeps_the_watchdog_inside_a_minute() {
    let plan = am_pager("").load(&[]).unwrap_or_else(|e| panic!("{e}"));
    match &plan.pagers[0].kind {
        joincanary::alert::PagerKind::Alertmanager(a) => {
            assert_eq!(a.resend_interval, Duration::from_secs(30));
            assert_eq!(
                joincanary::alert::alertmanager::watchdog_ttl(a.resend_interval),
                Duration::from_secs(45)
            );
        }
        other => panic!("{other:?}"),
    }
}
