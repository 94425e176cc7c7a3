//! Reloading the configuration of a running service (`POST /-/reload`, SIGHUP): a valid config
//! takes over, an invalid one is refused and the running one stays.

use std::time::Duration;

use crate::support::{
    Service, TempConfig, fast_sim_probe, metric_value, poll, probe_runs, start_sim, status,
    wait_probe_runs, when,
};

/// `joincanary_config_last_reload_successful` in `metrics`.
fn reload_ok(metrics: &str) -> Option<f64> {
    metric_value(
        metrics,
        "joincanary_config_last_reload_successful{region=\"test\"}",
    )
}

/// `joincanary_config_reloads_total` of `result` (`success`, `failure`) in `metrics`.
fn reloads(metrics: &str, result: &str) -> Option<f64> {
    metric_value(
        metrics,
        &format!("joincanary_config_reloads_total{{region=\"test\",result=\"{result}\"}}"),
    )
}

#[tokio::test(start_paused = true)]
async fn reload_adds_probes_and_refuses_a_broken_config() {
    let sim = start_sim().await;
    let one = fast_sim_probe(&sim.base_url());
    let cfg = TempConfig::new("", &[("one.toml", &one)]);
    let svc = Service::reloadable(&cfg, true).await;
    let base = svc.base.clone();
    wait_probe_runs(&base, "sim-join", 2).await;

    // A second probe appears; the first keeps its history.
    std::fs::write(
        cfg.probe_path("two.toml"),
        one.replace("name = \"sim-join\"", "name = \"second\""),
    )
    .unwrap();
    let r = crate::support::post_reload(&base).await;
    assert_eq!(r.status(), 200);
    wait_probe_runs(&base, "second", 2).await;
    let s = status(&base).await;
    assert!(probe_runs(&s, "sim-join") >= 2, "history kept: {s}");
    let metrics = crate::support::get_text(&base, "/metrics").await;
    assert!(metrics.contains("probe=\"second\""));
    assert_eq!(reloads(&metrics, "success"), Some(1.0), "{metrics}");
    assert_eq!(reload_ok(&metrics), Some(1.0), "{metrics}");
    let loaded_at = metric_value(
        &metrics,
        "joincanary_config_last_reload_success_timestamp_seconds",
    );
    assert!(loaded_at.is_some_and(|t| t > 1.0e9), "{metrics}");

    // A broken file is refused with its location; both probes keep running.
    std::fs::write(
        cfg.probe_path("three.toml"),
        "[[steps]]\nname = \"x\"\nkind = \"teleport\"\n",
    )
    .unwrap();
    let r = crate::support::post_reload(&base).await;
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("three.toml:3:8: steps[0].kind: unknown step kind `teleport`"),
        "{body}"
    );
    crate::support::wait_more_runs(&base, "second", 2).await;
    let metrics = crate::support::get_text(&base, "/metrics").await;
    assert_eq!(reloads(&metrics, "failure"), Some(1.0), "{metrics}");
    // The refusal stays visible for as long as it stands, not only as a counter's increase.
    assert_eq!(reload_ok(&metrics), Some(0.0), "{metrics}");
    assert_eq!(
        metric_value(
            &metrics,
            "joincanary_config_last_reload_success_timestamp_seconds"
        ),
        loaded_at,
        "the running configuration is still the one loaded then"
    );

    // Removing a probe removes it from the status.
    std::fs::remove_file(cfg.probe_path("three.toml")).unwrap();
    std::fs::remove_file(cfg.probe_path("two.toml")).unwrap();
    assert_eq!(crate::support::post_reload(&base).await.status(), 200);
    let s = status(&base).await;
    assert_eq!(s["probes"].as_array().unwrap().len(), 1, "{s}");
    let metrics = crate::support::get_text(&base, "/metrics").await;
    assert_eq!(reload_ok(&metrics), Some(1.0), "{metrics}");

    // A reload that would leave zero probes (every file gone) is refused like any broken
    // config: the running probe stays, and the gauge says so.
    std::fs::remove_file(cfg.probe_path("one.toml")).unwrap();
    let r = crate::support::post_reload(&base).await;
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(body.contains("found no probe files"), "{body}");
    crate::support::wait_more_runs(&base, "sim-join", 1).await;
    let metrics = crate::support::get_text(&base, "/metrics").await;
    assert_eq!(reload_ok(&metrics), Some(0.0), "{metrics}");

    svc.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_running_binary() {
    let sim = start_sim().await;
    let one = fast_sim_probe(&sim.base_url());
    let cfg = TempConfig::new("", &[("one.toml", &one)]);
    // The binary needs a fixed port: take a free one and hand it over.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = std::fs::read_to_string(&cfg.path)
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&cfg.path, text).unwrap();
    let mut child = std::process::Command::new(crate::support::binary())
        .args(["run", "--config"])
        .arg(&cfg.path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    crate::support::eventually(
        "the service to come up",
        Duration::from_secs(5),
        Duration::from_millis(100),
        async || match reqwest::get(format!("{base}/readyz")).await {
            Ok(r) if r.status() == 200 => Ok(()),
            Ok(r) => Err(r.status().to_string()),
            Err(e) => Err(e.to_string()),
        },
    )
    .await;
    let r = crate::support::post_reload(&base).await;
    assert_eq!(
        r.status(),
        501,
        "the endpoint is off without --web.enable-lifecycle"
    );
    std::fs::write(
        cfg.probe_path("two.toml"),
        one.replace("name = \"sim-join\"", "name = \"second\""),
    )
    .unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status();
    wait_probe_runs(&base, "second", 1).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert_eq!(status.code(), Some(0));
    sim.shutdown().await;
}

/// A pager added by a reload hears of the incident already open (its trigger), so on-call using
/// it sees the incident and its resolve later closes something; the pagers that knew are not
/// paged again.
#[tokio::test(start_paused = true)]
async fn a_pager_added_by_reload_gets_the_open_incidents() {
    use crate::support::receiver::Receiver;
    let sim = start_sim().await;
    crate::support::set_faults(&sim, serde_json::json!({"signalling_drop": true})).await;
    let (a, a_url) = Receiver::start(200).await;
    let (b, b_url) = Receiver::start(200).await;
    let service = |pagers: &str| {
        format!("[alerting]\nconfirm_delay = \"200ms\"\nfailure_threshold = 2\n{pagers}")
    };
    let pager_a = format!("[[pager]]\nname = \"a\"\ntype = \"webhook\"\nurl = \"{a_url}/hook\"\n");
    let pager_b = format!("[[pager]]\nname = \"b\"\ntype = \"webhook\"\nurl = \"{b_url}/hook\"\n");
    let cfg = TempConfig::new(
        &service(&pager_a),
        &[("one.toml", &fast_sim_probe(&sim.base_url()))],
    );
    let svc = Service::reloadable(&cfg, true).await;
    let base = svc.base.clone();
    let triggers = |r: &Receiver| r.events("trigger");
    let _ = poll(
        Duration::from_secs(15),
        Duration::from_millis(100),
        async || when(triggers(&a), |t| !t.is_empty()),
    )
    .await;
    let first = triggers(&a);
    assert_eq!(first.len(), 1, "pager a paged");

    // The config is rewritten in place (the file at the old path), with a second pager.
    let text = std::fs::read_to_string(&cfg.path).unwrap();
    std::fs::write(&cfg.path, format!("{text}\n{pager_b}")).unwrap();
    let r = crate::support::post_reload(&base).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let _ = poll(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || when(triggers(&b), |t| !t.is_empty()),
    )
    .await;
    let told = triggers(&b);
    assert_eq!(told.len(), 1, "the new pager hears of the open incident");
    assert_eq!(told[0]["dedup_key"], first[0]["dedup_key"]);
    assert_eq!(told[0]["started_at"], first[0]["started_at"]);
    crate::support::wait_more_runs(&base, "sim-join", 2).await;
    assert_eq!(triggers(&a).len(), 1, "pager a is not paged again");
    assert_eq!(triggers(&b).len(), 1);

    svc.stop().await;
    sim.shutdown().await;
}
