//! The fleet status page in a real browser: two `joincanary run` processes (eu-west-1 lists
//! us-east-1 as a peer), each probing its own reference server. Headless Chromium takes a
//! screenshot healthy, degraded, failing and with the peer gone, kept under
//! `target/screenshots/` as CI artifacts, and the rendered DOM (`--dump-dom`) must show the
//! failing probe, step and region, and the dead peer as unreachable, never as passing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::running::Running;
use crate::support::{TempConfig, fast_sim_probe, set_faults, start_sim};

const CHROMIUM: &str = "/usr/bin/chromium";

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::support::root().join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Chromium with everything that would talk to the outside switched off; a profile of its own.
fn chromium(args: &[&str], url: &str) -> std::process::Output {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: `bash .ci/run` installs it (.ci/apt.d/status.txt)"
    );
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn screenshot(url: &str, name: &str) -> PathBuf {
    let path = screenshots_dir().join(format!("{name}.png"));
    let _ = std::fs::remove_file(&path);
    chromium(
        &[
            &format!("--screenshot={}", path.display()),
            "--window-size=1280,1700",
        ],
        url,
    );
    let png = std::fs::read(&path).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    path
}

fn dump_dom(url: &str) -> String {
    String::from_utf8_lossy(&chromium(&["--dump-dom"], url).stdout).to_string()
}

async fn status(base: &str) -> serde_json::Value {
    crate::support::status(base).await
}

/// Polls (250 ms apart, at most 30 s) until `pred` holds for the service's status document.
async fn wait_status(base: &str, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
    for _ in 0..120 {
        if pred(&status(base).await) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what} never happened: {}", status(base).await);
}

fn state_of(doc: &serde_json::Value) -> String {
    doc["probes"][0]["state"].as_str().unwrap_or("").to_string()
}

/// Polls the page itself until `pred` holds (the peer cache lives a few seconds).
async fn wait_page(base: &str, what: &str, pred: impl Fn(&str) -> bool) {
    for _ in 0..120 {
        let page = reqwest::get(format!("{base}/"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if pred(&page) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("page never showed {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_page_in_chromium_healthy_degraded_failing_and_peer_unreachable() {
    let sim_eu = start_sim().await;
    let sim_us = start_sim().await;
    // Roomy step timeouts: a slowed signalling step must stay slow, not fail, on a busy machine.
    let probe = |url: &str| {
        let p = fast_sim_probe(url)
            .replace("timeout = \"900ms\"", "timeout = \"950ms\"")
            .replace("timeout = \"200ms\"", "timeout = \"700ms\"")
            // The degraded stage delays signalling 400 ms: its step timeout must leave room
            // above that, or a busy machine turns "slow" into "failing".
            .replace(
                "fail_json = { type = \"error\" }\ntimeout = \"400ms\"",
                "fail_json = { type = \"error\" }\ntimeout = \"750ms\"",
            );
        assert!(
            p.contains("timeout = \"750ms\""),
            "signalling timeout widened: {p}"
        );
        p
    };
    let us = TempConfig::new("", &[("sim-join.toml", &probe(&sim_us.base_url()))]);
    let text = std::fs::read_to_string(&us.path)
        .unwrap()
        .replace("region = \"test\"", "region = \"us-east-1\"");
    std::fs::write(&us.path, text).unwrap();
    let us_run = tokio::task::block_in_place(|| Running::start(&us.path, &[]));

    let eu = TempConfig::new(
        &format!(
            "peers = [\"{}\"]\ndashboard_url = \"https://grafana.example/d/joincanary\"\n\
             [alerting]\ndegraded_threshold = 2\n[alerting.budgets]\n\"signalling.round_trip\" = \"200ms\"\n",
            us_run.base()
        ),
        &[("sim-join.toml", &probe(&sim_eu.base_url()))],
    );
    let text = std::fs::read_to_string(&eu.path)
        .unwrap()
        .replace("region = \"test\"", "region = \"eu-west-1\"");
    std::fs::write(&eu.path, text).unwrap();
    let eu_run = tokio::task::block_in_place(|| Running::start(&eu.path, &[]));
    let eu_base = eu_run.base();
    let page = format!("{eu_base}/");

    // Healthy: both regions up.
    for base in [&eu_base, &us_run.base()] {
        wait_status(base, "a passing run", |d| state_of(d) == "up").await;
    }
    wait_page(&eu_base, "both regions up", |p| {
        p.matches("class=\"cell up\"").count() == 2
    })
    .await;
    // A busy machine can slow a run past its budget between the check and the shot: take it
    // again until the state held across it.
    let mut healthy = PathBuf::new();
    for attempt in 0..3 {
        healthy = tokio::task::block_in_place(|| screenshot(&page, "fleet-healthy"));
        let (eu_doc, us_doc) = (status(&eu_base).await, status(&us_run.base()).await);
        if state_of(&eu_doc) == "up" && state_of(&us_doc) == "up" {
            break;
        }
        assert!(attempt < 2, "never healthy across a screenshot: {eu_doc}");
        wait_status(&eu_base, "up again", |d| state_of(d) == "up").await;
    }

    // Degraded: signalling slower than its budget, twice in a row.
    set_faults(&sim_eu, json!({"signalling_delay_ms": 400})).await;
    wait_status(&eu_base, "a degraded warning", |d| {
        state_of(d) == "degraded"
    })
    .await;
    let degraded = tokio::task::block_in_place(|| screenshot(&page, "fleet-degraded"));

    // Failing: signalling dropped (the Redis pub/sub outage).
    set_faults(
        &sim_eu,
        json!({"signalling_delay_ms": null, "signalling_drop": true}),
    )
    .await;
    wait_status(&eu_base, "a failing run", |d| {
        state_of(d) == "failing" && d["probes"][0]["last"]["failed_step"] == "signalling"
    })
    .await;
    let failing = tokio::task::block_in_place(|| screenshot(&page, "fleet-failing"));
    let dom = tokio::task::block_in_place(|| dump_dom(&page));
    let cell = dom
        .split("<td class=\"cell failing\">")
        .nth(1)
        .unwrap_or_else(|| panic!("a failing cell in the grid:\n{dom}"));
    let cell = &cell[..cell.find("</td>").unwrap()];
    assert!(
        cell.contains("href=\"#eu-west-1/sim-join\"")
            && cell.contains("failing")
            && cell.contains("<strong>signalling</strong>")
            && cell.contains("no_match"),
        "the failing cell names probe, region, step and reason: {cell}"
    );
    let card = dom
        .split("id=\"eu-west-1/sim-join\"")
        .nth(1)
        .expect("a card for the failing probe");
    let card = &card[..card.find("</article>").unwrap()];
    assert!(card.contains("failing since") && card.contains("last success"));
    assert!(card.contains("✕ FAILED</strong> no_match"), "{card}");
    assert!(
        dom.contains("failing: sim-join in eu-west-1"),
        "the banner says what fails where"
    );
    assert!(
        dom.contains("class=\"cell up\"><a href=\"#us-east-1/sim-join\""),
        "the other region is still up"
    );
    assert!(dom.contains("href=\"https://grafana.example/d/joincanary\""));

    // Peer unreachable: stop us-east-1; its column must never show as passing.
    let us_addr = us_run.addr.clone();
    assert_eq!(tokio::task::block_in_place(|| us_run.stop()), Some(0));
    wait_page(&eu_base, "the peer unreachable", |p| {
        p.contains("class=\"cell unreachable\"")
    })
    .await;
    let unreachable = tokio::task::block_in_place(|| screenshot(&page, "fleet-peer-unreachable"));
    let dom = tokio::task::block_in_place(|| dump_dom(&page));
    assert!(dom.contains("class=\"cell unreachable\""), "{dom}");
    assert!(
        dom.contains(&format!("http://{us_addr} <small>(unreachable)</small>")),
        "the dead peer's column is named and marked"
    );
    assert!(
        !dom.contains("#us-east-1/sim-join"),
        "no stale green for it"
    );
    assert_eq!(dom.matches("class=\"cell up\"").count(), 0);

    for shot in [healthy, degraded, failing, unreachable] {
        assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "{shot:?}");
    }
    assert_eq!(tokio::task::block_in_place(|| eu_run.stop()), Some(0));
    sim_eu.shutdown().await;
    sim_us.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_history_survives_a_restart() {
    let sim = start_sim().await;
    let probe = fast_sim_probe(&sim.base_url());
    let cfg = TempConfig::new("", &[("sim-join.toml", &probe)]);
    let first = tokio::task::block_in_place(|| Running::start(&cfg.path, &[]));
    crate::support::wait_probe_runs(&first.base(), "sim-join", 3).await;
    set_faults(&sim, json!({"signalling_drop": true})).await;
    wait_status(&first.base(), "a failed run", |d| state_of(d) == "failing").await;
    assert_eq!(tokio::task::block_in_place(|| first.stop()), Some(0));
    let file = cfg.dir.path().join("state/status-history.json");
    let size = std::fs::metadata(&file).expect("history saved").len();
    assert!(size < 64 * 1024, "{size} bytes");

    // Restarted with a schedule that will not fire during the test: all it shows comes
    // from the file.
    std::fs::write(
        cfg.probe_path("sim-join.toml"),
        probe.replace("schedule = \"* * * * * *\"", "schedule = \"0 0 1 1 *\""),
    )
    .unwrap();
    let second = tokio::task::block_in_place(|| Running::start(&cfg.path, &[]));
    let doc = status(&second.base()).await;
    let p = &doc["probes"][0];
    assert!(p["runs"].as_u64().unwrap() >= 4, "{doc}");
    assert!(p["history"].as_array().unwrap().len() >= 4);
    assert_eq!(p["state"], "failing");
    assert!(p["failing_since"].is_string() && p["last_success"].is_string());
    // Which step failed last depends on the machine's load (tight timeouts); that one did.
    assert!(p["last"]["failed_step"].is_string(), "{doc}");
    assert_eq!(tokio::task::block_in_place(|| second.stop()), Some(0));
    sim.shutdown().await;
}

#[test]
fn peers_must_be_http_base_urls_listed_once() {
    let cfg = TempConfig::new(
        "peers = [\"http://prober-us:9464\", \"ftp://prober-ap\", \"http://prober-us:9464/\"]\n",
        &[(
            "p.toml",
            "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n",
        )],
    );
    let errors = cfg.load(&[]).unwrap_err().to_string();
    assert!(
        errors.contains(":5:")
            && errors.contains("peers[1]: must be a prober's base URL like http://prober-us:9464")
            && errors.contains("peers[2]: listed twice"),
        "{errors}"
    );
}
