//! Issue 7, "never silent": configs that could never page are refused with `file:line`, a prober
//! without a pager says so, and the delivery series exist before anything happens.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use joincanary::clock::Clock;
use joincanary::scheduler::FlowRunner;
use tokio_util::sync::CancellationToken;

use crate::support::{TempConfig, binary, fast_sim_probe, start_sim};

fn load_errors(cfg: &TempConfig) -> Vec<String> {
    let prefix = format!("{}/", cfg.dir.path().display());
    match cfg.load(&[]) {
        Ok(_) => panic!("config should be rejected"),
        Err(e) => {
            e.0.iter()
                .map(|e| e.to_string().replace(&prefix, ""))
                .collect()
        }
    }
}

#[test]
fn an_empty_probe_directory_is_refused_with_its_line() {
    let cfg = TempConfig::new("", &[]);
    assert_eq!(
        load_errors(&cfg),
        [
            "joincanary.toml:3:10: probes: found no probe files (`*.toml`); a prober with zero probes can never page"
        ]
    );
}

#[test]
fn a_schedule_that_never_fires_is_refused_with_its_line() {
    let probe = "schedule = \"0 0 30 2 *\"\ntimeout = \"5s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";
    let cfg = TempConfig::new("", &[("p.toml", probe)]);
    assert_eq!(
        load_errors(&cfg),
        [
            "probes/p.toml:1:12: schedule: `0 0 30 2 *` never fires: no date matches it (e.g. 30 February)"
        ]
    );
    let cfg = TempConfig::new(
        "[defaults]\nschedule = \"0 0 31 4 *\"\n",
        &[("p.toml", &probe.replace("schedule = \"0 0 30 2 *\"\n", ""))],
    );
    assert_eq!(
        load_errors(&cfg),
        [
            "joincanary.toml:6:12: defaults.schedule: `0 0 31 4 *` never fires: no date matches it (e.g. 30 February)"
        ]
    );
}

#[test]
fn check_and_run_refuse_zero_probes_with_exit_2() {
    let cfg = TempConfig::new("", &[]);
    for cmd in ["check", "run"] {
        let out = Command::new(binary())
            .args([cmd, "--config"])
            .arg(&cfg.path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("joincanary.toml:3:10: probes: found no probe files"),
            "{cmd}: {err}"
        );
    }
}

#[test]
fn check_warns_when_no_pager_is_configured() {
    let probe = "timeout = \"5s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";
    let cfg = TempConfig::new("", &[("p.toml", probe)]);
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(&cfg.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "warning: no pager configured: alerts show only in metrics and status; nobody is paged"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_a_pager_is_ready_but_says_it_cannot_page() {
    let sim = start_sim().await;
    let cfg = TempConfig::new("", &[("sim.toml", &fast_sim_probe(&sim.base_url()))]);
    let plan = cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let task = tokio::spawn(joincanary::service::serve(
        plan,
        listener,
        Arc::new(FlowRunner),
        Clock::system(),
        stop.clone(),
    ));
    crate::support::wait_probe_runs(&base, "sim-join", 1).await;
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.text().await.unwrap(),
        "ready; no pager configured: alerts show only in metrics and status; nobody is paged\n"
    );
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("joincanary_pagers_configured{region=\"test\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("probe_interval_seconds{probe=\"sim-join\",region=\"test\"} 1"),
        "{metrics}"
    );
    assert_eq!(crate::support::status(&base).await["pagers"], 0);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    sim.shutdown().await;
}
