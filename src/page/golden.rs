//! The whole page, byte for byte, for a fixed fleet at a fixed time: every part of the page
//! (banner, grid, charts of both kinds, pagers, cards, strips, step tables, peers that answered
//! and peers that did not) against `golden.html`, so a change to the page is a change to that
//! file, made on purpose. `JOINCANARY_BLESS=1 cargo test --lib page::golden` rewrites it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};

use super::render;
use crate::alerting::Severity;
use crate::delivery::PagerHealth;
use crate::fleet::PeerView;
use crate::report::{FailureReason, KindName, Phase, ProbeRun, StepReport, Trigger};
use crate::rollup::HourBucket;
use crate::status::{AlertView, HistoryEntry, ProbeStatus, StatusDoc};

const GOLDEN: &str = "src/page/golden.html";

/// The time the page is rendered at: a Sunday, mid-minute, so every span has all its parts.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 34, 56).unwrap()
}

fn ago(seconds: i64) -> DateTime<Utc> {
    now() - chrono::Duration::seconds(seconds)
}

fn step(name: &str, kind: &'static str, ms: u64, failed: Option<FailureReason>) -> StepReport {
    StepReport {
        name: name.into(),
        kind: KindName::new(kind),
        success: failed.is_none(),
        duration_ms: Duration::from_millis(ms),
        reason: failed,
        error: failed.map(|r| format!("{} <at> step \"{name}\"", r.as_str())),
        phases: [
            (Phase::Dns, Duration::from_millis(3)),
            (Phase::Connect, Duration::from_millis(7)),
            (Phase::Total, Duration::from_millis(ms)),
        ]
        .into(),
        cleanup: false,
        gauges: Default::default(),
        cert_expiry: None,
        warnings: Vec::new(),
    }
}

fn run(probe: &str, region: &str, at: i64, steps: Vec<StepReport>) -> Arc<ProbeRun> {
    let failed = steps.iter().find(|s| !s.success);
    Arc::new(ProbeRun {
        probe: probe.into(),
        region: region.into(),
        success: failed.is_none(),
        started_at: ago(at),
        duration_ms: steps.iter().map(|s| s.duration_ms).sum(),
        failed_step: failed.map(|s| s.name.clone()),
        reason: failed.and_then(|s| s.reason),
        error: failed.and_then(|s| s.error.clone()),
        trigger: Trigger::Scheduled,
        steps,
    })
}

/// `n` runs a minute apart, newest first, failing where `fails` says.
fn history(n: i64, fails: impl Fn(i64) -> bool) -> std::collections::VecDeque<HistoryEntry> {
    (0..n)
        .map(|i| HistoryEntry {
            time: ago(60 * i + 30),
            success: !fails(i),
            duration_ms: 80.0 + (i % 7) as f64 * 13.5,
            failed_step: fails(i).then(|| "signalling".into()),
            reason: fails(i).then_some(FailureReason::NoMatch),
            trigger: if i % 10 == 0 {
                Trigger::Confirm
            } else {
                Trigger::Scheduled
            },
        })
        .collect()
}

/// Hourly buckets for the last `hours` hours, oldest first, without the hours in `gap`.
fn hourly(
    hours: i64,
    gap: std::ops::Range<i64>,
    shape: impl Fn(i64) -> (u32, u32, f64),
) -> std::collections::VecDeque<HourBucket> {
    let hour = now().timestamp() / 3600 * 3600;
    (0..hours)
        .filter(|i| !gap.contains(i))
        .map(|i| {
            let (n, ok, mean) = shape(i);
            HourBucket {
                t: hour - 3600 * (hours - 1 - i),
                n,
                ok,
                ms: mean * f64::from(ok),
                max: mean * 1.8,
                first: 0,
            }
        })
        .collect()
}

fn local() -> StatusDoc {
    let join_failed = run(
        "join",
        "eu-west",
        95,
        vec![
            step("login", "http", 152, None),
            step(
                "signalling",
                "ws_connect",
                2_500,
                Some(FailureReason::Timeout),
            ),
        ],
    );
    let join_good = run(
        "join",
        "eu-west",
        3_600,
        vec![
            step("login", "http", 140, None),
            step("signalling", "ws_connect", 60, None),
            step("leave", "ws_close", 4, None),
        ],
    );
    let login_last = run(
        "login",
        "eu-west",
        40,
        vec![step("login", "http", 900, None)],
    );
    StatusDoc {
        region: "eu-west".into(),
        version: "1.4.0".into(),
        ready: true,
        pagers: 3,
        status_url: Some("https://status.example/eu".into()),
        dashboard_url: Some("https://grafana.example/d/joincanary?var-region=eu-west".into()),
        probes: vec![
            ProbeStatus {
                probe: "join".into(),
                schedule: "*/1 * * * *".into(),
                next_run: Some(ago(-25)),
                runs: 10_342,
                skipped: 2,
                last: Some(join_failed),
                last_success: Some(ago(215)),
                failing_since: Some(ago(155)),
                last_good: Some(join_good),
                history: history(60, |i| i < 3 || i == 17),
                alerts: vec![AlertView {
                    severity: Severity::Critical,
                    dedup_key: "joincanary/eu-west/join".into(),
                    since: ago(95),
                    summary: "join failing in eu-west at step signalling (timeout)".into(),
                }],
                hourly: hourly(200, 30..34, |i| {
                    (
                        60,
                        if i % 50 == 7 { 55 } else { 60 },
                        90.0 + (i % 24) as f64 * 4.0,
                    )
                }),
                ..ProbeStatus::default()
            },
            ProbeStatus {
                probe: "login".into(),
                schedule: "*/5 * * * *".into(),
                next_run: Some(ago(-260)),
                runs: 240,
                last: Some(login_last.clone()),
                last_success: Some(ago(39)),
                last_good: Some(run(
                    "login",
                    "eu-west",
                    7_200,
                    vec![step("login", "http", 1_300, None)],
                )),
                history: history(24, |_| false),
                alerts: vec![AlertView {
                    severity: Severity::Warning,
                    dedup_key: "joincanary/eu-west/login/latency".into(),
                    since: ago(1_300),
                    summary: "login slower than 800 ms".into(),
                }],
                hourly: hourly(20, 0..0, |i| (12, 12, 700.0 + i as f64 * 10.0)),
                ..ProbeStatus::default()
            },
            ProbeStatus {
                probe: "new".into(),
                schedule: "@every 30s".into(),
                next_run: Some(ago(3)),
                runs: 5,
                last: Some(run(
                    "new",
                    "eu-west",
                    33,
                    vec![step("ping", "http", 12, None)],
                )),
                last_success: Some(ago(33)),
                history: history(5, |i| i == 2),
                hourly: hourly(1, 0..0, |_| (5, 4, 12.0)),
                ..ProbeStatus::default()
            },
            ProbeStatus {
                probe: "idle".into(),
                schedule: "0 3 * * *".into(),
                ..ProbeStatus::default()
            },
        ],
        delivery: vec![
            PagerHealth {
                pager: "oncall".into(),
                kind: "pagerduty".into(),
                last_success: Some(ago(86_400 + 3_700)),
                last_error_at: Some(ago(50)),
                last_error: Some("HTTP 503 from events.pagerduty.com".into()),
                failing_since: Some(ago(95)),
                queued: 1,
                oldest_queued: Some(ago(95)),
                members: Vec::new(),
            },
            PagerHealth {
                pager: "chat".into(),
                kind: "slack".into(),
                queued: 2,
                oldest_queued: Some(ago(4)),
                ..PagerHealth::default()
            },
            PagerHealth {
                pager: "am".into(),
                kind: "alertmanager".into(),
                last_success: Some(ago(20)),
                ..PagerHealth::default()
            },
            PagerHealth {
                pager: "mail".into(),
                kind: "email".into(),
                ..PagerHealth::default()
            },
        ],
    }
}

fn peer_doc() -> StatusDoc {
    StatusDoc {
        region: "us-east".into(),
        version: "1.3.9".into(),
        ready: false,
        pagers: 0,
        status_url: None,
        dashboard_url: Some("javascript:alert(1)".into()),
        probes: vec![
            ProbeStatus {
                probe: "join".into(),
                schedule: "*/1 * * * *".into(),
                runs: 77,
                last: Some(run(
                    "join",
                    "us-east",
                    10,
                    vec![step("login", "http", 210, None)],
                )),
                last_success: Some(ago(10)),
                history: history(60, |_| false),
                hourly: hourly(200, 0..0, |i| (60, 60, 150.0 + (i % 12) as f64 * 9.0)),
                ..ProbeStatus::default()
            },
            ProbeStatus {
                probe: "us-only".into(),
                schedule: "*/2 * * * *".into(),
                last: Some(run(
                    "us-only",
                    "us-east",
                    80,
                    vec![step("check", "http", 31, None)],
                )),
                last_success: Some(ago(80)),
                // Passed since, but the critical alert is still open.
                alerts: vec![AlertView {
                    severity: Severity::Critical,
                    dedup_key: "joincanary/us-east/us-only".into(),
                    since: ago(600),
                    summary: "us-only failing in us-east".into(),
                }],
                ..ProbeStatus::default()
            },
        ],
        delivery: Vec::new(),
    }
}

fn peers() -> Vec<PeerView> {
    vec![
        PeerView {
            url: "http://prober-us:9464".into(),
            region: Some("us-east".into()),
            result: Ok(peer_doc()),
            unreachable_since: None,
            last_seen: Some(ago(2)),
        },
        // A shared peer list names this prober too: shown once.
        PeerView {
            url: "http://prober-eu:9464".into(),
            region: None,
            result: Ok(StatusDoc {
                region: "eu-west".into(),
                ..StatusDoc::default()
            }),
            unreachable_since: None,
            last_seen: Some(ago(2)),
        },
        PeerView {
            url: "http://prober-ap:9464".into(),
            region: Some("ap-south".into()),
            result: Err("no answer within 2s".into()),
            unreachable_since: Some(ago(312)),
            last_seen: Some(ago(400)),
        },
        PeerView {
            url: "http://prober-sa:9464".into(),
            region: None,
            result: Err("connection failed: connection refused".into()),
            unreachable_since: None,
            last_seen: None,
        },
    ]
}

/// The fleet page and a lone prober with nothing configured, one after the other.
fn pages() -> String {
    let lone = StatusDoc {
        region: "lab".into(),
        version: "1.4.0".into(),
        ..StatusDoc::default()
    };
    let mut out = render(&local(), &peers(), now());
    out.push('\n');
    out.push_str(&render(&lone, &[], now()));
    out.push('\n');
    out
}

#[test]
fn the_page_is_byte_for_byte_what_it_was() {
    let got = pages();
    if std::env::var_os("JOINCANARY_BLESS").is_some() {
        std::fs::write(GOLDEN, &got).unwrap();
    }
    let want = include_str!("golden.html");
    if got != want {
        let at = got
            .bytes()
            .zip(want.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        let around = |s: &str| {
            let from = s.floor_char_boundary(at.saturating_sub(120));
            let to = s.ceil_char_boundary((at + 120).min(s.len()));
            s[from..to].to_string()
        };
        panic!(
            "the page differs from {GOLDEN} at byte {at} (lengths {} and {}):\n got: {}\nwant: {}",
            got.len(),
            want.len(),
            around(&got),
            around(want)
        );
    }
}
