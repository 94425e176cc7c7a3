//! The page's own tests: links, spans, the chart's two kinds, and hostile input from probes,
//! servers and peers (`golden.rs` holds the whole page byte for byte). Pages are rendered at a
//! fixed time: nothing here reads the system clock.

use chrono::{DateTime, TimeZone as _, Utc};

/// The time every page here is rendered at.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 34, 56).unwrap()
}

mod parts {
    use super::now;

    /// Seen in a trial: the axis read `0.0 ms`, `5.0 ms`, `10 ms` (and `0.0 ms`, `1.0 s`,
    /// `2.0 s`): each axis now speaks one unit, without a stray `.0`.
    #[test]
    fn the_y_axis_has_one_unit_and_no_stray_decimals() {
        use crate::page::chart::axis_label;
        let axis = |top: f64| {
            [0.0, 0.5, 1.0]
                .map(|f| axis_label(top * f, top))
                .join(" | ")
        };
        assert_eq!(axis(10.0), "0 ms | 5 ms | 10 ms");
        assert_eq!(axis(500.0), "0 ms | 250 ms | 500 ms");
        assert_eq!(axis(1000.0), "0 s | 0.5 s | 1 s");
        assert_eq!(axis(5000.0), "0 s | 2.5 s | 5 s");
        assert_eq!(axis(20_000.0), "0 s | 10 s | 20 s");
    }

    use crate::page::format::{link, span};
    use crate::page::render;
    use crate::status::{ProbeStatus, StatusDoc};

    #[test]
    fn only_http_links_are_links() {
        assert!(link("https://grafana.example/d/x", "dashboard").starts_with("<a href="));
        assert!(!link("javascript:alert(1)", "dashboard").contains("href"));
    }

    /// Two days kept, with a gap of three hours: the chart spans 7 days by hourly means and the
    /// line breaks at the gap; a newly started prober's chart is its last runs instead.
    #[test]
    fn the_chart_is_hourly_once_hours_are_kept_and_breaks_at_gaps() {
        use crate::rollup::HourBucket;
        use crate::status::HistoryEntry;
        let now = now();
        let hour = now.timestamp() / 3600 * 3600;
        let hourly = (0..48)
            .filter(|i| !(10..13).contains(i))
            .map(|i| HourBucket {
                t: hour - 3600 * (47 - i),
                n: 60,
                ok: if i == 20 { 57 } else { 60 },
                ms: 60.0 * 100.0,
                max: 140.0,
                first: 0,
            })
            .collect();
        let probe = |hourly, history| ProbeStatus {
            probe: "join".into(),
            hourly,
            history,
            ..ProbeStatus::default()
        };
        let doc = StatusDoc {
            region: "eu".into(),
            probes: vec![probe(hourly, Default::default())],
            ..StatusDoc::default()
        };
        let html = render(&doc, &[], now);
        let chart = &html[html.find("<figure class=\"chart\">").unwrap()..];
        assert!(
            chart.contains("hourly mean of passing runs, last 7 days"),
            "{chart}"
        );
        let path = chart.split("<path d=\"").nth(1).unwrap();
        let path = &path[..path.find('"').unwrap()];
        assert_eq!(path.matches('M').count(), 2, "one break at the gap: {path}");
        assert!(chart.contains("eu: 3 of 60 runs failed") || chart.contains("57 of 60 passed"));
        assert!(
            chart.contains("100 ms"),
            "the axis reads in durations: {chart}"
        );

        let history = (0..5)
            .map(|i| HistoryEntry {
                time: now - chrono::Duration::seconds(60 * i),
                success: i != 2,
                duration_ms: 80.0,
                failed_step: (i == 2).then(|| "signalling".into()),
                reason: (i == 2).then_some(crate::report::FailureReason::NoMatch),
                trigger: crate::report::Trigger::Scheduled,
            })
            .collect();
        let doc = StatusDoc {
            region: "eu".into(),
            probes: vec![probe(
                [HourBucket {
                    t: hour,
                    n: 5,
                    ok: 4,
                    ms: 320.0,
                    max: 80.0,
                    first: 0,
                }]
                .into(),
                history,
            )],
            ..StatusDoc::default()
        };
        let html = render(&doc, &[], now);
        assert!(html.contains("each of the last 60 runs"), "{html}");
        assert_eq!(html.matches("passed in 80 ms").count(), 4);
        assert!(html.contains("failed at signalling (no_match)"));
    }

    /// Seen in a trial: 5 failed of 30 runs read `16.66 %` (and 4 of 5 `80.00 %`), a
    /// precision one run cannot give; and the cut went through a float (29 of 100 read 28 %).
    #[test]
    fn availability_claims_no_more_precision_than_one_run_moves() {
        use crate::page::format::percent;
        use crate::rollup::Availability;
        let pct = |passed: u64, runs: u64| {
            percent(&Availability {
                runs,
                passed,
                ratio: Some(passed as f64 / runs as f64),
                covered_seconds: 0,
            })
        };
        assert_eq!(pct(4, 5), "80 %");
        assert_eq!(pct(5, 30), "16 %");
        assert_eq!(pct(29, 100), "29 %");
        assert_eq!(pct(287, 288), "99.6 %");
        assert_eq!(pct(1439, 1440), "99.93 %");
        assert_eq!(pct(9999, 10_000), "99.99 %");
        assert_eq!(
            pct(99_999, 100_000),
            "99.99 %",
            "cut, never rounded up to 100"
        );
        assert_eq!(pct(10_000, 10_000), "100 %");
        assert_eq!(pct(0, 7), "0 %");
        assert_eq!(percent(&Availability::default()), "no runs");
    }

    /// Seen in a trial: a step 0.02 ms faster than when it last worked showed a change of
    /// `−0.0 ms` (a change that rounds to nothing has no sign now), and a healthy probe's last
    /// run was set beside itself (now shown alone).
    #[test]
    fn the_step_table_shows_only_real_changes() {
        use crate::report::{KindName, ProbeRun, StepReport, Trigger};
        use std::sync::Arc;
        use std::time::Duration;
        let run = |micros: u64| {
            let d = Duration::from_micros(micros);
            Arc::new(ProbeRun {
                probe: "join".into(),
                region: "eu".into(),
                success: true,
                started_at: now(),
                duration_ms: d,
                failed_step: None,
                reason: None,
                error: None,
                trigger: Trigger::Scheduled,
                steps: ["login", "join"]
                    .map(|name| StepReport {
                        name: name.into(),
                        kind: KindName::new("http"),
                        success: true,
                        duration_ms: if name == "login" { d } else { d * 100 },
                        reason: None,
                        error: None,
                        phases: Default::default(),
                        cleanup: false,
                        gauges: Default::default(),
                        cert_expiry: None,
                        warnings: Vec::new(),
                    })
                    .to_vec(),
            })
        };
        let doc = StatusDoc {
            region: "eu".into(),
            probes: vec![ProbeStatus {
                probe: "join".into(),
                last: Some(run(1_480)),
                last_good: Some(run(1_500)),
                ..ProbeStatus::default()
            }],
            ..StatusDoc::default()
        };
        let html = render(&doc, &[], now());
        assert!(!html.contains("−0.0"), "{html}");
        assert!(html.contains("<td>±0.0 ms</td>"), "{html}");
        // 148 ms against 150 ms: a real change keeps its sign.
        assert!(html.contains("<td>−2.0 ms</td>"), "{html}");

        // Seen in a trial: healthy, the last run is the last good one, and the card set it
        // beside itself ("19 ms | 19 ms | +0.0 ms" on every row). Now it is shown alone.
        let healthy = run(1_500);
        let doc = StatusDoc {
            region: "eu".into(),
            probes: vec![ProbeStatus {
                probe: "join".into(),
                last: Some(healthy.clone()),
                last_good: Some(healthy),
                ..ProbeStatus::default()
            }],
            ..StatusDoc::default()
        };
        let html = render(&doc, &[], now());
        let table = &html[html.find("<table class=\"steps\">").unwrap()..];
        let table = &table[..table.find("</table>").unwrap()];
        assert!(
            table.contains("<caption>Step timings: last run (the last good run)</caption>"),
            "{table}"
        );
        assert!(!table.contains("last good run</th>"), "{table}");
        assert!(
            table.contains("<th scope=\"row\">login</th><td>✓ 1.5 ms</td><td class=\"phases\">"),
            "{table}"
        );
    }

    #[test]
    fn spans_read_well() {
        assert_eq!(span(chrono::Duration::seconds(42)), "42s");
        assert_eq!(span(chrono::Duration::seconds(192)), "3m 12s");
        assert_eq!(span(chrono::Duration::seconds(7500)), "2h 05m");
        assert_eq!(span(chrono::Duration::seconds(-5)), "0s");
    }
}

mod hostile {
    use super::now;

    use crate::delivery::PagerHealth;
    use crate::fleet::PeerView;
    use crate::page::render;
    use crate::report::ProbeRun;
    use crate::report::{FailureReason, KindName, StepReport, Trigger};
    use crate::status::{AlertView, HistoryEntry};
    use crate::status::{ProbeStatus, StatusDoc};
    use std::time::Duration;

    fn run(error: &str) -> ProbeRun {
        ProbeRun {
            probe: "<img src=x onerror=alert(1)>".into(),
            region: "r".into(),
            success: false,
            started_at: now(),
            duration_ms: Duration::from_millis(12),
            failed_step: Some("<b>step</b>".into()),
            reason: Some(FailureReason::HttpStatus),
            error: Some(error.into()),
            trigger: Trigger::Scheduled,
            steps: vec![StepReport {
                name: "<b>step</b>".into(),
                kind: KindName::new("http"),
                success: false,
                duration_ms: Duration::from_millis(12),
                reason: Some(FailureReason::HttpStatus),
                error: Some(error.into()),
                phases: Default::default(),
                cleanup: false,
                gauges: Default::default(),
                cert_expiry: None,
                warnings: Vec::new(),
            }],
        }
    }

    #[test]
    fn nothing_from_a_probe_a_server_or_a_peer_becomes_markup() {
        let bad = "<script>alert('x')</script>\"><iframe>";
        let r = run(bad);
        let doc = StatusDoc {
            region: "<i>eu</i>".into(),
            version: "<v>".into(),
            dashboard_url: Some("javascript:alert(1)".into()),
            status_url: Some("https://ok.example/?a=\"><script>".into()),
            probes: vec![ProbeStatus {
                probe: r.probe.clone(),
                schedule: "<s>".into(),
                failing_since: Some(r.started_at),
                history: [HistoryEntry {
                    time: r.started_at,
                    success: false,
                    duration_ms: 12.0,
                    failed_step: Some(bad.into()),
                    reason: r.reason,
                    trigger: r.trigger,
                }]
                .into(),
                alerts: vec![AlertView {
                    severity: crate::alerting::Severity::Critical,
                    dedup_key: bad.into(),
                    since: r.started_at,
                    summary: bad.into(),
                }],
                last: Some(std::sync::Arc::new(r)),
                hourly: [crate::rollup::HourBucket {
                    t: now().timestamp() / 3600 * 3600,
                    n: 3,
                    ok: 2,
                    ms: 40.0,
                    max: 30.0,
                    first: 0,
                }]
                .into(),
                ..ProbeStatus::default()
            }],
            delivery: vec![PagerHealth {
                pager: bad.into(),
                kind: "<k>".into(),
                last_error: Some(bad.into()),
                last_error_at: Some(now()),
                failing_since: Some(now()),
                ..PagerHealth::default()
            }],
            ..StatusDoc::default()
        };
        let peer = PeerView {
            url: "http://peer<script>:9464".into(),
            region: Some(bad.into()),
            result: Err(bad.into()),
            unreachable_since: Some(now()),
            last_seen: None,
        };
        let peer_doc = PeerView {
            url: "http://peer2:9464".into(),
            region: None,
            result: Ok(StatusDoc {
                region: bad.into(),
                ..doc.clone()
            }
            .bounded()),
            unreachable_since: None,
            last_seen: None,
        };
        let html = render(&doc, &[peer, peer_doc], now());
        for tag in [
            "<script", "<iframe", "<img", "<b>", "<i>", "<v>", "<s>", "<k>",
        ] {
            assert!(!html.contains(tag), "{tag} got through");
        }
        assert!(!html.contains("href=\"javascript:"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    }

    /// A peer that sends a document as big as it may: what is kept and rendered is cut to
    /// the page's bounds.
    #[test]
    fn a_huge_peer_document_is_cut_to_bounds() {
        let long = "x".repeat(1500);
        let probe = ProbeStatus {
            probe: long.clone(),
            history: (0..100)
                .map(|_| HistoryEntry {
                    time: now(),
                    success: true,
                    duration_ms: f64::MAX,
                    failed_step: Some(long.clone().into()),
                    reason: None,
                    trigger: Trigger::Scheduled,
                })
                .collect(),
            alerts: (0..25)
                .map(|_| AlertView {
                    severity: crate::alerting::Severity::Warning,
                    dedup_key: long.clone(),
                    since: now(),
                    summary: long.clone(),
                })
                .collect(),
            ..ProbeStatus::default()
        };
        let doc = StatusDoc {
            region: long.clone(),
            probes: vec![probe; 510],
            delivery: vec![
                PagerHealth {
                    pager: long.clone(),
                    last_error: Some(long.clone()),
                    ..PagerHealth::default()
                };
                60
            ],
            ..StatusDoc::default()
        }
        .bounded();
        assert_eq!(doc.probes.len(), 500);
        assert!(doc.region.chars().count() <= 101);
        let p = &doc.probes[0];
        assert_eq!(p.history.len(), crate::status::HISTORY_LEN);
        assert_eq!(p.alerts.len(), 20);
        assert!(p.alerts[0].summary.chars().count() <= 1001);
        assert!(doc.delivery.len() <= 50);
        let html = render(
            &StatusDoc::default(),
            &[PeerView {
                url: "http://peer:9464".into(),
                region: None,
                result: Ok(doc),
                unreachable_since: None,
                last_seen: None,
            }],
            now(),
        );
        assert!(html.len() < 40 * 1024 * 1024, "{} bytes", html.len());
    }
}
