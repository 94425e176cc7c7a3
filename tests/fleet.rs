//! A fleet: three `joincanary run` processes (regions a, b, c), each probing its own reference
//! server, all paging one loopback Alertmanager stand-in and pinging one heartbeat receiver.
//! A fault in one region pages that region only; a fault everywhere gives every region's alert
//! with the same `alertname`/`probe` (so Alertmanager groups them); `kill -9` of one prober
//! mid-incident leaves its incident firing (no resolve, `endsAt` an hour out) and stops its
//! heartbeat, which the receiver sees as silence; restarted on its state, it posts the incident
//! again (same labels, no resolve) and resolves it when the platform recovers.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::receiver::Receiver;
use joincanary::sim::SimServer;

use crate::support::{binary, eventually, fast_sim_probe, set_faults, start_sim, until};

const REGIONS: [&str; 3] = ["a", "b", "c"];
/// Heartbeat interval of the fleet (short, so the test is quick; the logic is the same at 1m).
const HEARTBEAT_MS: u64 = 500;

/// One prober process; killed (SIGKILL) if the test ends early.
struct Prober {
    child: Child,
    dir: tempfile::TempDir,
}

impl Prober {
    /// Starts the process again on the same config and state directory.
    fn respawn(&mut self) {
        self.child = spawn(&self.dir.path().join("joincanary.toml"));
    }
}

fn spawn(config: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_file_name("stderr.log"))
        .unwrap();
    Command::new(binary())
        .args(["--log-format", "json", "run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Drop for Prober {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prober(region: &str, sim: &SimServer, receiver: &str) -> Prober {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("probes")).unwrap();
    std::fs::write(
        dir.path().join("probes/sim-join.toml"),
        fast_sim_probe(&sim.base_url()),
    )
    .unwrap();
    let config = format!(
        r#"region = "{region}"
listen = "127.0.0.1:0"
probes = ["probes"]
state_dir = "state"

[alerting]
confirm_delay = "200ms"
failure_threshold = 2
success_threshold = 2

[[pager]]
name = "am"
type = "alertmanager"
url = "{receiver}"
resend_interval = "500ms"
retry_base = "50ms"

[[heartbeat]]
name = "dms"
type = "http"
url = "{receiver}/heartbeat/{region}"
interval = "{HEARTBEAT_MS}ms"
timeout = "200ms"
"#
    );
    let path = dir.path().join("joincanary.toml");
    std::fs::write(&path, config).unwrap();
    Prober {
        child: spawn(&path),
        dir,
    }
}

/// Alertmanager posts of `alertname` from `region`: `(arrived, alert)`.
fn alerts(rx: &Receiver, alertname: &str, region: &str) -> Vec<(Instant, Value)> {
    rx.timed()
        .into_iter()
        .filter(|(_, path, _)| path == "/api/v2/alerts")
        .flat_map(|(t, _, body)| {
            body.as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |a| (t, a))
        })
        .filter(|(_, a)| a["labels"]["alertname"] == alertname && a["labels"]["region"] == region)
        .collect()
}

fn ends_at(alert: &Value) -> chrono::DateTime<chrono::Utc> {
    alert["endsAt"].as_str().unwrap().parse().unwrap()
}

/// A resolve has `endsAt` = the moment it was sent; a firing post has it `hold` (1 h) ahead.
fn is_resolve(alert: &Value) -> bool {
    ends_at(alert) <= chrono::Utc::now()
}

fn heartbeats(rx: &Receiver, region: &str) -> Vec<Instant> {
    let path = format!("/heartbeat/{region}");
    rx.timed()
        .into_iter()
        .filter(|(_, p, _)| *p == path)
        .map(|(t, _, _)| t)
        .collect()
}

fn firing(rx: &Receiver, region: &str) -> bool {
    alerts(rx, "JoinFlowFailing", region)
        .last()
        .is_some_and(|(_, a)| !is_resolve(a))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_pages_per_region_and_a_killed_prober_stays_firing_and_goes_silent() {
    let sims = [start_sim().await, start_sim().await, start_sim().await];
    let (rx, url) = Receiver::start(200).await;
    let mut probers: Vec<Option<Prober>> = REGIONS
        .iter()
        .zip(&sims)
        .map(|(region, sim)| Some(start_prober(region, sim, &url)))
        .collect();
    for region in REGIONS {
        until(
            &format!("{region}'s first heartbeat"),
            Duration::from_secs(20),
            Duration::from_millis(100),
            || !heartbeats(&rx, region).is_empty(),
        )
        .await;
    }

    // 1. A fault seen by region a only: a's alert, nobody else's.
    set_faults(&sims[0], json!({"signalling_drop": true})).await;
    until(
        "a's alert",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || firing(&rx, "a"),
    )
    .await;
    for region in ["b", "c"] {
        assert!(
            alerts(&rx, "JoinFlowFailing", region).is_empty(),
            "{region} paged for a's fault"
        );
    }
    let (_, a_alert) = alerts(&rx, "JoinFlowFailing", "a").pop().unwrap();
    assert_eq!(a_alert["annotations"]["step"], "signalling");
    assert_eq!(a_alert["annotations"]["reason"], "no_match");
    set_faults(&sims[0], json!({"signalling_drop": false})).await;
    until(
        "a's resolve",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            alerts(&rx, "JoinFlowFailing", "a")
                .last()
                .is_some_and(|(_, a)| is_resolve(a))
        },
    )
    .await;

    // 2. A fault everywhere: each region's alert, one label set but for the region, so
    //    Alertmanager (grouping by probe) makes one notification of the three.
    for sim in &sims {
        set_faults(sim, json!({"signalling_drop": true})).await;
    }
    for region in REGIONS {
        until(
            &format!("{region}'s alert"),
            Duration::from_secs(20),
            Duration::from_millis(100),
            || firing(&rx, region),
        )
        .await;
    }
    let labels: Vec<Value> = REGIONS
        .iter()
        .map(|r| {
            let (_, a) = alerts(&rx, "JoinFlowFailing", r).pop().unwrap();
            let mut l = a["labels"].clone();
            assert_eq!(l["region"], *r);
            l.as_object_mut().unwrap().remove("region");
            l
        })
        .collect();
    assert_eq!(
        labels[0],
        json!({"alertname": "JoinFlowFailing", "probe": "sim-join", "severity": "critical", "source": "joincanary"})
    );
    assert!(labels.iter().all(|l| *l == labels[0]), "{labels:?}");

    // 3. kill -9 of b mid-incident.
    let mut b = probers[1].take().unwrap();
    b.child.kill().unwrap(); // SIGKILL on Unix
    let killed = Instant::now();
    b.child.wait().unwrap();
    // The receiver's dead man's switch: b counts as silent once no ping came for two intervals
    // (the usual "period + grace" of Healthchecks.io-style checks, at this test's period).
    let grace = Duration::from_millis(2 * HEARTBEAT_MS);
    until(
        "b's heartbeat silence to be noticed",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let last = heartbeats(&rx, "b").last().copied().unwrap();
            last.elapsed() > grace
        },
    )
    .await;
    let detected = killed.elapsed();
    let last_b = *heartbeats(&rx, "b").last().unwrap();
    let after_kill = heartbeats(&rx, "b").iter().filter(|t| **t > killed).count();
    // At most a ping already on the wire when the process died.
    assert!(after_kill <= 1, "{after_kill} pings from b after kill -9");
    // a and c go on pinging through b's silence.
    for region in ["a", "c"] {
        until(
            &format!("{region} to ping on through b's silence"),
            Duration::from_secs(10),
            Duration::from_millis(100),
            || heartbeats(&rx, region).iter().any(|t| *t > last_b + grace),
        )
        .await;
    }
    // b's incident stays firing: nothing resolved it, and its last post holds it for an hour.
    let b_alerts = alerts(&rx, "JoinFlowFailing", "b");
    assert!(b_alerts.iter().all(|(_, a)| !is_resolve(a)), "b resolved");
    let (_, last) = b_alerts.last().unwrap();
    let held = ends_at(last) - chrono::Utc::now();
    assert!(
        held >= chrono::Duration::minutes(59),
        "endsAt only {held} away"
    );
    // The watchdog of b lapses too (its last post ends a few resend intervals later).
    let b_watchdog = alerts(&rx, "JoinCanaryWatchdog", "b");
    assert!(!b_watchdog.is_empty());
    let watchdogs_after = b_watchdog.iter().filter(|(t, _)| *t > killed).count();
    assert!(
        watchdogs_after <= 1,
        "{watchdogs_after} watchdog posts from b after kill -9"
    );
    let last_ping_before_kill = killed.saturating_duration_since(last_b);
    eprintln!(
        "fleet: kill -9 -> b's last heartbeat {} ms before the kill; silence noticed {} ms after the kill (grace {} ms, interval {} ms)",
        last_ping_before_kill.as_millis(),
        detected.as_millis(),
        grace.as_millis(),
        HEARTBEAT_MS
    );

    // 4. b restarts mid-incident on its state: the incident is posted again at once with the
    //    same labels and no resolve; when the platform recovers, every region resolves.
    b.respawn();
    let restarted = Instant::now();
    until(
        "b's post after the restart",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            alerts(&rx, "JoinFlowFailing", "b")
                .iter()
                .any(|(t, _)| *t > restarted)
        },
    )
    .await;
    let b_alerts = alerts(&rx, "JoinFlowFailing", "b");
    assert!(
        b_alerts.iter().all(|(_, a)| !is_resolve(a)),
        "b resolved on restart"
    );
    for sim in &sims {
        set_faults(sim, json!({"signalling_drop": false})).await;
    }
    for region in REGIONS {
        until(
            &format!("{region}'s resolve"),
            Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                alerts(&rx, "JoinFlowFailing", region)
                    .last()
                    .is_some_and(|(_, a)| is_resolve(a))
            },
        )
        .await;
    }
    let b_alerts = alerts(&rx, "JoinFlowFailing", "b");
    assert_eq!(
        b_alerts.first().unwrap().1["labels"],
        b_alerts.last().unwrap().1["labels"],
        "the resolve names the alert the trigger opened"
    );
    probers[1] = Some(b);

    // The probers stop cleanly on SIGTERM.
    for p in probers.iter_mut().flatten() {
        let _ = Command::new("kill")
            .args(["-TERM", &p.child.id().to_string()])
            .status();
    }
    for p in probers.iter_mut().flatten() {
        let status = eventually(
            "the prober to stop on SIGTERM",
            Duration::from_secs(15),
            Duration::from_millis(100),
            async || p.child.try_wait().unwrap().ok_or("still running"),
        )
        .await;
        assert_eq!(status.code(), Some(0));
    }
    for sim in sims {
        sim.shutdown().await;
    }
}
