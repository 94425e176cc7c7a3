//! Issue 17, numbers from outside: a huge duration in the config is a `check` error with its
//! range; a peer's or the history file's `duration_ms: 1e300` costs the document it came in
//! (the peer is shown unreachable, the history starts empty), never a task or the process.

use std::time::Duration;

use crate::support::{Service, TempConfig, fast_sim_probe, start_sim};

const PROBE: &str =
    "timeout = \"5s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";

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
