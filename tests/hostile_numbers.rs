//! Issue 17, numbers from outside: a huge duration in the config is a `check` error with its
//! range; a peer's or the history file's `duration_ms: 1e300` costs the document it came in
//! (the peer is shown unreachable, the history starts empty), never a task or the process; a
//! peer's hourly roll-ups dated at the ends of `i64` are dropped, and the page answers.

use std::time::Duration;

use crate::support::{Service, TempConfig, fast_sim_probe, start_sim};

const PROBE: &str =
    "timeout = \"5s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";

/// `run` with a sim probe that has run once and a peer answering `/api/v1/status` with `doc`
/// (the config kept while the service runs).
async fn with_peer(doc: serde_json::Value) -> (Service, joincanary::sim::SimServer, TempConfig) {
    let peer = crate::support::serve_router(axum::Router::new().route(
        "/api/v1/status",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc) }
        }),
    ))
    .await;
    let sim = start_sim().await;
    let cfg = TempConfig::new(
        &format!("peers = [\"http://{peer}\"]\n"),
        &[("sim.toml", &fast_sim_probe(&sim.base_url()))],
    );
    let svc = Service::start(cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"))).await;
    crate::support::wait_probe_runs(&svc.base, "sim-join", 1).await;
    (svc, sim, cfg)
}

/// Before: `check` passed it and the run consumer panicked on the first run (`DateTime -
/// TimeDelta` overflowed), so runs stopped being recorded while `/-/ready` said 200.
#[test]
fn a_hundred_million_year_maintenance_window_is_refused_with_its_range() {
    let cfg = TempConfig::new(
        "[[alerting.maintenance]]\nstart = \"0 3 * * *\"\nduration = \"100000000years\"\n",
        &[("p.toml", PROBE)],
    );
    assert_eq!(
        cfg.errors(),
        ["joincanary.toml:7:12: alerting.maintenance[0].duration: must be between 1ns and 1year"]
    );
}

/// A peer whose status holds `"duration_ms": 1e300` made `GET /` panic in
/// `Duration::from_secs_f64` and never answer; now its document is refused when read and the
/// peer shows as unreachable, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_a_huge_duration_is_shown_unreachable_and_the_page_answers() {
    let doc = serde_json::json!({
        "region": "far",
        "ready": true,
        "probes": [{
            "probe": "sim-join",
            "history": [{"time": "2026-01-01T00:00:00Z", "success": true, "duration_ms": 1e300,
                         "failed_step": null, "reason": null}],
        }],
    });
    let (svc, sim, _cfg) = with_peer(doc).await;
    let page = tokio::time::timeout(Duration::from_secs(10), async {
        crate::support::get_text(&svc.base, "/").await
    })
    .await
    .expect("GET / answers");
    assert!(page.contains("<small>(unreachable since "), "{page}");
    assert!(page.contains("out of range"), "{page}");
    // The process is still whole: its own status answers and it stops cleanly.
    assert_eq!(crate::support::status(&svc.base).await["ready"], true);
    svc.stop().await;
    sim.shutdown().await;
}

/// A peer's hourly roll-ups dated at the ends of `i64` (whole hours, so they pass the
/// alignment check): `t + 3600` overflowed, and "data since" panicked on the wrapped bound in
/// any build, so `GET /` answered 500 for as long as the peer sent them. Now those hours are
/// dropped and the peer's card and chart are drawn from the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_hours_at_the_ends_of_time_are_dropped_and_the_page_answers() {
    const HOUR: i64 = 3600;
    let last = i64::MAX - i64::MAX.rem_euclid(HOUR);
    let first = i64::MIN + (HOUR - i64::MIN.rem_euclid(HOUR));
    let now = chrono::Utc::now().timestamp();
    let hour = now - now.rem_euclid(HOUR);
    let bucket = |t: i64| {
        serde_json::json!({"t": t, "n": 4_000_000_000u32, "ok": 4_000_000_000u32,
                           "ms": 1e308, "max": -1e308, "first": t.wrapping_add(1)})
    };
    let doc = serde_json::json!({
        "region": "far",
        "ready": true,
        "probes": [{
            "probe": "sim-join",
            "hourly": [bucket(first), bucket(hour - HOUR), bucket(hour), bucket(last)],
        }],
    });
    let (svc, sim, _cfg) = with_peer(doc).await;
    let page = tokio::time::timeout(Duration::from_secs(10), async {
        reqwest::get(format!("{}/", svc.base)).await.unwrap()
    })
    .await
    .expect("GET / answers");
    assert_eq!(page.status().as_u16(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("far"), "the peer's region is shown: {page}");
    assert!(!page.contains("unreachable since"), "{page}");
    let metrics = crate::support::get_text(&svc.base, "/metrics").await;
    assert!(
        metrics.contains("joincanary_task_restarts_total{region=\"test\",task=\"http\"} 0"),
        "no handler panicked: {metrics}"
    );
    svc.stop().await;
    sim.shutdown().await;
}

/// The same number in `state/status-history.json` made `run` exit 101 at start-up; an
/// unreadable history is logged and ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_file_with_a_huge_duration_is_ignored_at_start() {
    let sim = start_sim().await;
    let cfg = TempConfig::new("", &[("sim.toml", &fast_sim_probe(&sim.base_url()))]);
    let state = cfg.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join(joincanary::status::HISTORY_FILE),
        r#"{"version":1,"probes":{"sim-join":{"runs":7,"last":null,"last_success":null,"failing_since":null,"last_good":null,
            "history":[{"time":"2026-01-01T00:00:00Z","success":true,"duration_ms":1e300,"failed_step":null,"reason":null}]}}}"#,
    )
    .unwrap();
    let svc = Service::start(cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"))).await;
    crate::support::wait_probe_runs(&svc.base, "sim-join", 1).await;
    let status = crate::support::status(&svc.base).await;
    // Started empty: the 7 saved runs were not taken.
    assert!(
        crate::support::probe_runs(&status, "sim-join") < 7,
        "{status}"
    );
    svc.stop().await;
    sim.shutdown().await;
}

/// A Redis (or a proxy, or a Redis-alike) whose `INFO` says `nan`, `inf`, or numbers whose
/// ratio overflows: Rust parses them all as `f64`, and the status document wrote the gauge as
/// `null` (JSON has no NaN), which no reader takes as a number. Every peer then refused this
/// prober's whole document (shown unreachable on every region's page) and the next start
/// refused the history file. Now a gauge that is not a finite number is not kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_info_of_nan_and_infinity_leaves_a_status_document_peers_can_read() {
    let redis = crate::support::hostile::redis_answering_info(
        "# Memory\r\nused_memory:1e308\r\nmaxmemory:1e-300\r\n# Clients\r\n\
         connected_clients:nan\r\nblocked_clients:-inf\r\n# Stats\r\nevicted_keys:7\r\n",
    )
    .await;
    let probe = format!(
        "timeout = \"900ms\"\nschedule = \"* * * * * *\"\n[[steps]]\nname = \"redis\"\n\
         kind = \"redis\"\nurl = \"redis://{redis}\"\n"
    );
    let cfg = TempConfig::new("", &[("r.toml", &probe)]);
    let svc = Service::start(cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"))).await;
    crate::support::wait_probe_runs(&svc.base, "r", 1).await;
    let body = crate::support::get_text(&svc.base, "/api/v1/status").await;
    // What a peer does with it (`fleet::get`).
    let doc = serde_json::from_str::<joincanary::status::StatusDoc>(&body)
        .unwrap_or_else(|e| panic!("a peer refuses this document: {e}\n{body}"));
    assert_eq!(doc.probes.len(), 1, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let gauges = &status["probes"][0]["last"]["steps"][0]["gauges"];
    assert_eq!(gauges["evicted_keys"], 7.0, "{body}");
    assert_eq!(gauges["used_memory"], 1e308, "{body}");
    for dropped in ["connected_clients", "blocked_clients", "memory_ratio"] {
        assert!(gauges.get(dropped).is_none(), "{dropped}: {body}");
    }
    svc.stop().await;
    // The history file the stop saved is read back whole.
    let history = cfg
        .dir
        .path()
        .join("state")
        .join(joincanary::status::HISTORY_FILE);
    let saved = std::fs::read_to_string(&history).unwrap();
    assert!(!saved.contains("null}"), "{saved}");
    let status = joincanary::status::Status::new("test");
    status
        .restore(&history)
        .unwrap_or_else(|e| panic!("the history is refused: {e}\n{saved}"));
}

/// A peer whose document does not parse is shown unreachable with serde's reason, and serde
/// quotes a string where a number or list belongs whole: a 1 MB string went whole into the
/// reason, and so into every load of the status page (4 MiB per peer at the read cap). The
/// reason is cut, and still says where the document broke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_unparsable_document_is_quoted_cut_on_the_page() {
    let doc = serde_json::json!({"region": "far", "probes": "x".repeat(1_000_000)});
    let (svc, sim, _cfg) = with_peer(doc).await;
    let page = crate::support::get_text(&svc.base, "/").await;
    let start = page
        .find("No status from")
        .expect("the peer's reason is shown");
    let reason = &page[start..start + page[start..].find("</p>").unwrap()];
    assert!(
        reason.contains("not a joincanary status document"),
        "{reason}"
    );
    assert!(reason.contains("line 1, column"), "{reason}");
    assert!(
        reason.len() < 1000,
        "{} bytes: {}…",
        reason.len(),
        &reason[..300]
    );
    svc.stop().await;
    sim.shutdown().await;
}
