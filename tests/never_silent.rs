//! Issue 7, "never silent": configs that could never page are refused with `file:line`, a prober
//! without a pager says so, and the delivery series exist before anything happens.

use std::process::Command;
use std::time::Duration;

use crate::support::{
    Service, TempConfig, binary, fast_sim_probe, metric_value as value, start_sim,
};

/// A probe's one step against a closed port (these tests load or check it, never run it).
const ONE_STEP: &str =
    "timeout = \"5s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";

fn load_errors(cfg: &TempConfig) -> Vec<String> {
    cfg.errors()
}

/// `joincanary check --config` on `cfg`.
fn check(cfg: &TempConfig) -> std::process::Output {
    Command::new(binary())
        .args(["check", "--config"])
        .arg(&cfg.path)
        .output()
        .unwrap()
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
    let probe: &str = &format!("schedule = \"0 0 30 2 *\"\n{ONE_STEP}");
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
    let probe = ONE_STEP;
    let cfg = TempConfig::new(
        "[[heartbeat]]\nname = \"hc\"\ntype = \"http\"\nurl = \"https://hc.example/ping/secret-token\"\n",
        &[("p.toml", probe)],
    );
    let out = check(&cfg);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Configured durations as they are written, in every line alike (not `60.0 s` here and
    // `1h` on a resident probe's), and counts in words a person would write.
    assert!(
        stdout.contains("  heartbeat hc: http every 1m, timeout 10s\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  p: `* * * * *` no jitter, deadline 5s, 1 step, next run "),
        "{stdout}"
    );
    assert!(
        stdout.ends_with(" UTC, pages to nobody (no pager configured)\n  heartbeat hc: http every 1m, timeout 10s\n"),
        "{stdout}"
    );
    // The next run to the second, as a person reads a clock: `2026-12-07 15:35:03 UTC`, not
    // `15:35:03.266` (a precision the timer does not keep).
    let next = stdout
        .split("next run ")
        .nth(1)
        .and_then(|rest| rest.split(" UTC").next())
        .unwrap_or_default();
    assert!(
        chrono::NaiveDateTime::parse_from_str(next, "%Y-%m-%d %H:%M:%S").is_ok(),
        "next run `{next}` is not to the second: {stdout}"
    );
    assert!(!stdout.contains("secret-token"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "warning: no pager configured: alerts show only in metrics and status; nobody is paged"
        ),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn run_without_a_pager_is_ready_but_says_it_cannot_page() {
    let sim = start_sim().await;
    let cfg = TempConfig::new("", &[("sim.toml", &fast_sim_probe(&sim.base_url()))]);
    let plan = cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"));
    let svc = Service::start(plan).await;
    let base = svc.base.clone();
    crate::support::wait_probe_runs(&base, "sim-join", 1).await;
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.text().await.unwrap(),
        "ready; no pager configured: alerts show only in metrics and status; nobody is paged\n"
    );
    let metrics = svc.metrics().await;
    assert!(
        metrics.contains("joincanary_pagers_configured{region=\"test\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("probe_interval_seconds{probe=\"sim-join\",region=\"test\"} 1"),
        "{metrics}"
    );
    assert_eq!(crate::support::status(&base).await["pagers"], 0);
    svc.stop().await;
    sim.shutdown().await;
}

/// Valid configs that page nobody in practice: `check` says so for each probe and cause (and
/// `run` logs the same lines), while an ordinary weekly window or daily schedule passes quietly.
#[test]
fn check_warns_about_probes_that_would_page_nobody() {
    let steps = ONE_STEP;
    let cfg = TempConfig::new(
        "[[pager]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n",
        &[
            // Feb 29: every four years.
            (
                "leap.toml",
                &format!("name = \"leap\"\nschedule = \"0 0 29 2 *\"\n{steps}"),
            ),
            // A window every minute lasting an hour: never out of maintenance.
            (
                "held.toml",
                &format!(
                    "name = \"held\"\n{steps}[alerting]\n[[alerting.maintenance]]\nstart = \"* * * * *\"\nduration = \"1h\"\n"
                ),
            ),
            (
                "off.toml",
                &format!("name = \"off\"\n{steps}[alerting]\nenabled = false\n"),
            ),
            // Pages, if late: daily, and a weekly hour of maintenance (a day between runs is
            // past the 90 s promise: that warning, not one of these).
            (
                "fine.toml",
                &format!(
                    "name = \"fine\"\nschedule = \"0 3 * * *\"\n{steps}[alerting]\n[[alerting.maintenance]]\nstart = \"0 2 * * sun\"\nduration = \"1h\"\n"
                ),
            ),
        ],
    );
    let out = check(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 4, "{err}");
    assert!(
        warnings.iter().any(|w| w.starts_with(
            "warning: probe `leap`: `0 0 29 2 *` runs only every 1461 days (next 2028-02-29 00:00 UTC)"
        )),
        "{err}"
    );
    assert!(
        warnings.contains(&"warning: probe `held`: its maintenance windows hold every page for the next 7 days (`alerting.maintenance`): it pages nobody"),
        "{err}"
    );
    assert!(
        warnings.contains(
            &"warning: probe `off`: alerting is disabled (`enabled = false`): its failures page nobody"
        ),
        "{err}"
    );
    let fine: Vec<_> = warnings.iter().filter(|w| w.contains("`fine`")).collect();
    assert!(
        matches!(fine[..], [w] if w.starts_with("warning: probe `fine`: its first page can come 1day ")),
        "{err}"
    );
}

/// `run` tells Prometheus how many probes page nobody (JoinCanaryPagesNobody), beside the log.
#[tokio::test]
async fn run_counts_the_probes_that_page_nobody() {
    let steps = ONE_STEP;
    let cfg = TempConfig::new(
        "[[pager]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n",
        &[
            (
                "off.toml",
                &format!("name = \"off\"\n{steps}[alerting]\nenabled = false\n"),
            ),
            (
                "held.toml",
                &format!(
                    "name = \"held\"\n{steps}[alerting]\n[[alerting.maintenance]]\nstart = \"0 0 1 1 *\"\nduration = \"1year\"\n"
                ),
            ),
            ("fine.toml", &format!("name = \"fine\"\n{steps}")),
        ],
    );
    let plan = cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"));
    let svc = Service::start(plan).await;
    let m = svc.metrics().await;
    assert_eq!(
        value(&m, "joincanary_probes_paging_nobody{region=\"test\"}"),
        Some(2.0),
        "{m}"
    );
    svc.stop().await;
}

/// Maintenance windows are judged on the service's clock, as the alert policy judges them: a
/// window that holds every page at the service's date counts, whatever the host's date says.
#[tokio::test(start_paused = true)]
async fn run_judges_maintenance_windows_on_its_own_clock() {
    use chrono::TimeZone as _;
    let cfg = TempConfig::new(
        "[[pager]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n",
        &[(
            "june.toml",
            "name = \"june\"\ntimeout = \"5s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n\
             [alerting]\n[[alerting.maintenance]]\nstart = \"0 0 1 6 *\"\nduration = \"30d\"\n",
        )],
    );
    let plan = cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"));
    // Inside the June window, with more than the warning's 7 days of it left.
    let june = chrono::Utc.with_ymd_and_hms(2030, 6, 2, 12, 0, 0).unwrap();
    let svc = Service::start_on(plan.clone(), joincanary::clock::Clock::starting_at(june)).await;
    let m = svc.metrics().await;
    assert_eq!(
        value(&m, "joincanary_probes_paging_nobody{region=\"test\"}"),
        Some(1.0),
        "{m}"
    );
    svc.stop().await;
    // In December the window is months away: the probe pages.
    let december = chrono::Utc.with_ymd_and_hms(2030, 12, 2, 12, 0, 0).unwrap();
    let svc = Service::start_on(plan, joincanary::clock::Clock::starting_at(december)).await;
    let m = svc.metrics().await;
    assert_eq!(
        value(&m, "joincanary_probes_paging_nobody{region=\"test\"}"),
        Some(0.0),
        "{m}"
    );
    svc.stop().await;
}

#[test]
fn heartbeat_config_errors_name_line_and_key() {
    let probe = ONE_STEP;
    let cfg = TempConfig::new(
        "[[heartbeat]]\nname = \"hc\"\ntype = \"http\"\nurl = \"not a url/secret-token\"\ninterval = \"10s\"\ntimeout = \"10s\"\n\
         [[heartbeat]]\nname = \"og\"\ntype = \"opsgenie\"\nregion = \"mars\"\nmethod = \"POST\"\n\
         [[heartbeat]]\nname = \"x\"\ntype = \"carrier-pigeon\"\n",
        &[("p.toml", probe)],
    );
    let errors = load_errors(&cfg);
    assert_eq!(
        errors,
        [
            "joincanary.toml:8:7: heartbeat[0].url: is not an http:// or https:// URL",
            "joincanary.toml:10:11: heartbeat[0].timeout: must be shorter than the interval",
            "joincanary.toml:11:1: heartbeat[1].api_key: is required for an `opsgenie` heartbeat",
            "joincanary.toml:14:10: heartbeat[1].region: must be `us` or `eu`",
            "joincanary.toml:15:10: heartbeat[1].method: does not apply to an `opsgenie` heartbeat, expected one of `name`, `type`, `url`, `api_key`, `region`, `heartbeat`, `interval`, `timeout`",
            "joincanary.toml:18:8: heartbeat[2].type: unknown heartbeat type `carrier-pigeon`, expected `http` or `opsgenie`",
        ]
    );
    assert!(!errors.concat().contains("secret-token"));
}

/// A running service pings its heartbeats (a generic POST URL and the Opsgenie ping API) and
/// posts the Alertmanager watchdog, with no secret in metrics or status.
#[tokio::test(start_paused = true)]
async fn run_pings_heartbeats_and_posts_the_watchdog() {
    use crate::support::receiver::Receiver;
    let sim = start_sim().await;
    let (rx, url) = Receiver::start(200).await;
    let cfg = TempConfig::new(
        &format!(
            "[[pager]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = \"{url}\"\nresend_interval = \"200ms\"\n\
             [[heartbeat]]\nname = \"hc\"\ntype = \"http\"\nmethod = \"POST\"\nurl = \"{url}/ping/${{HC_TOKEN}}\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\n\
             [[heartbeat]]\nname = \"og\"\ntype = \"opsgenie\"\nurl = \"{url}\"\napi_key = \"${{GENIE}}\"\nheartbeat = \"canary test\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\n"
        ),
        &[("sim.toml", &fast_sim_probe(&sim.base_url()))],
    );
    let plan = cfg
        .load(&[
            ("HC_TOKEN", "hc-secret-token"),
            ("GENIE", "genie-secret-key"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    let svc = Service::start(plan).await;
    let base = svc.base.clone();
    let count = |path: &str| rx.all().iter().filter(|(p, _, _)| p == path).count();
    crate::support::holds_within(Duration::from_secs(10), Duration::from_millis(100), || {
        count("/ping/hc-secret-token") >= 3 && count("/v2/heartbeats/canary%20test/ping") >= 3
    })
    .await;
    assert!(count("/ping/hc-secret-token") >= 3);
    assert!(count("/v2/heartbeats/canary%20test/ping") >= 3);
    let watchdogs: Vec<_> = rx
        .all()
        .into_iter()
        .filter(|(p, b, _)| {
            p == "/api/v2/alerts" && b[0]["labels"]["alertname"] == "JoinCanaryWatchdog"
        })
        .collect();
    assert!(!watchdogs.is_empty());
    assert_eq!(watchdogs[0].1[0]["labels"]["region"], "test");
    let metrics = svc.metrics().await;
    let status = crate::support::status(&base).await.to_string();
    for secret in ["hc-secret-token", "genie-secret-key"] {
        assert!(!metrics.contains(secret) && !status.contains(secret));
    }
    assert!(metrics.contains(
        "joincanary_heartbeat_last_success_timestamp_seconds{heartbeat=\"og\",region=\"test\"}"
    ));
    assert!(metrics.contains(
        "joincanary_heartbeats_total{heartbeat=\"hc\",region=\"test\",result=\"failure\"} 0"
    ));
    svc.stop().await;
    sim.shutdown().await;
}

/// Writes one version of a Kubernetes-style ConfigMap volume and points `..data` at it the way
/// the kubelet does (its atomic writer): a new timestamped directory, a temporary symlink renamed
/// over `..data`, a `key -> ..data/key` symlink for each new top-level entry, the symlinks of
/// entries gone removed, and the previous version's directory deleted.
fn configmap_version(dir: &std::path::Path, version: &str, files: &[(&str, &str)]) {
    let previous = std::fs::read_link(dir.join("..data")).ok();
    let v = dir.join(format!("..{version}"));
    for (name, text) in files {
        let path = v.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let tops: std::collections::BTreeSet<&str> = files
        .iter()
        .map(|(name, _)| name.split('/').next().unwrap())
        .collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{top}"), &link).unwrap();
        }
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if !name.starts_with("..") && !tops.contains(name.as_str()) {
            std::fs::remove_file(dir.join(&name)).unwrap();
        }
    }
    if let Some(old) = previous {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

/// A ConfigMap update (the `..data` swap) is picked up without a restart or a signal; a broken
/// one is refused and the running configuration stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_update_reloads_without_a_restart() {
    use crate::support::wait_probe_runs;
    let sim = start_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let service = "region = \"test\"\nlisten = \"127.0.0.1:0\"\nprobes = [\"probes\"]\nstate_dir = \"../state\"\n";
    let one = fast_sim_probe(&sim.base_url());
    let two = one.replace("name = \"sim-join\"", "name = \"second\"");
    configmap_version(
        dir.path(),
        "v1",
        &[("joincanary.toml", service), ("probes/one.toml", &one)],
    );
    let path = dir.path().join("joincanary.toml");
    let svc = Service::watching(&path).await;
    let base = svc.base.clone();
    wait_probe_runs(&base, "sim-join", 1).await;

    // v2 adds a probe file: it runs, with no signal and no restart.
    configmap_version(
        dir.path(),
        "v2",
        &[
            ("joincanary.toml", service),
            ("probes/one.toml", &one),
            ("probes/two.toml", &two),
        ],
    );
    wait_probe_runs(&base, "second", 1).await;

    // v3 is broken: refused, counted, and both probes go on.
    configmap_version(
        dir.path(),
        "v3",
        &[
            ("joincanary.toml", &format!("{service}bogus = 1\n")),
            ("probes/one.toml", &one),
            ("probes/two.toml", &two),
        ],
    );
    let refused = "joincanary_config_reloads_total{region=\"test\",result=\"failure\"} 1";
    let metrics = crate::support::poll(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || {
            crate::support::when(crate::support::get_text(&base, "/metrics").await, |m| {
                m.contains(refused)
            })
        },
    )
    .await
    .unwrap_or_else(|last| last);
    assert!(metrics.contains(refused), "{metrics}");
    assert!(
        metrics.contains("joincanary_config_reloads_total{region=\"test\",result=\"success\"} 1")
    );
    crate::support::wait_more_runs(&base, "second", 1).await;

    svc.stop().await;
    sim.shutdown().await;
}

/// Waits (100 ms apart, at most `within`) until the status at `base` shows the `dashboard_url`
/// the changed service configs set.
async fn wait_dashboard(base: &str, what: &str, within: Duration) {
    crate::support::eventually(what, within, Duration::from_millis(100), async || {
        let s = crate::support::status(base).await;
        crate::support::when(s, |s| s["dashboard_url"] == "http://grafana.test/d/jc")
    })
    .await;
}

/// The service config of the shipped Kubernetes layout: probe files in the `probes/` mount beside it.
const KUBERNETES_SERVICE: &str = "region = \"test\"\nlisten = \"127.0.0.1:0\"\nprobes = [\"../probes\"]\nstate_dir = \"../state\"\n";

/// The shipped Kubernetes layout's two ConfigMap mounts under `root`: `config/` and `probes/`.
fn kubernetes_mounts(root: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (config, probes) = (root.join("config"), root.join("probes"));
    std::fs::create_dir_all(&config).unwrap();
    std::fs::create_dir_all(&probes).unwrap();
    (config, probes)
}

/// The shipped Kubernetes layout (deploy/kubernetes/base/statefulset.yaml): two ConfigMap
/// volumes, the config at `config/` (`probes = ["../probes"]`) and the probe files flat at
/// `probes/`, each updated by the kubelet on its own. A probe added, then one removed (its key
/// symlink deleted, the old version's directory gone), then the config changed: each is
/// picked up without a restart or a signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_kubernetes_layout_reloads_each_configmap() {
    use crate::support::{status, wait_probe_runs};
    let sim = start_sim().await;
    let root = tempfile::tempdir().unwrap();
    let (config, probes) = kubernetes_mounts(root.path());
    let service = KUBERNETES_SERVICE;
    let one = fast_sim_probe(&sim.base_url());
    let two = one.replace("name = \"sim-join\"", "name = \"second\"");
    configmap_version(
        &config,
        "2026_12_07_07_00_00.1",
        &[("joincanary.toml", service)],
    );
    configmap_version(&probes, "2026_12_07_07_00_00.2", &[("sim-join.toml", &one)]);
    let path = config.join("joincanary.toml");
    let svc = Service::watching(&path).await;
    let base = svc.base.clone();
    wait_probe_runs(&base, "sim-join", 1).await;

    configmap_version(
        &probes,
        "2026_12_07_07_01_00.3",
        &[("sim-join.toml", &one), ("second.toml", &two)],
    );
    wait_probe_runs(&base, "second", 1).await;

    configmap_version(&probes, "2026_12_07_07_02_00.4", &[("second.toml", &two)]);
    let names = |s: &serde_json::Value| -> Vec<String> {
        s["probes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["probe"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    crate::support::eventually(
        "the removed probe gone",
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || {
            let s = status(&base).await;
            crate::support::when(names(&s), |n| n == &["second".to_string()])
                .map_err(|n| format!("{n:?}"))
        },
    )
    .await;

    configmap_version(
        &config,
        "2026_12_07_07_03_00.5",
        &[(
            "joincanary.toml",
            &format!("{service}dashboard_url = \"http://grafana.test/d/jc\"\n"),
        )],
    );
    wait_dashboard(&base, "the config change in force", Duration::from_secs(10)).await;

    svc.stop().await;
    sim.shutdown().await;
}

/// A change that lands while a reload is reading the files (Kubernetes updates the config and
/// the probes ConfigMaps as two volumes, each on its own, so the second swap can come during
/// the reload the first started): after the reload the watcher took the files' fingerprint
/// afresh, the changed file included, and never reloaded it: the config running stayed the one
/// before the change until some other edit (found by
/// `the_shipped_kubernetes_layout_reloads_each_configmap`, about one run in six). Here the
/// loader itself swaps the config right after its first reload has read the files: a second
/// reload must follow and put the new `dashboard_url` in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_landing_during_a_reload_is_reloaded_too() {
    use crate::support::wait_probe_runs;
    let sim = start_sim().await;
    let root = tempfile::tempdir().unwrap();
    let (config, probes) = kubernetes_mounts(root.path());
    let service = KUBERNETES_SERVICE;
    let changed = format!("{service}dashboard_url = \"http://grafana.test/d/jc\"\n");
    let one = fast_sim_probe(&sim.base_url());
    let two = one.replace("name = \"sim-join\"", "name = \"second\"");
    configmap_version(&config, "c1", &[("joincanary.toml", service)]);
    configmap_version(&probes, "p1", &[("sim-join.toml", &one)]);
    let path = config.join("joincanary.toml");
    let (loader_path, config_dir) = (path.clone(), config.clone());
    let loads = std::sync::atomic::AtomicUsize::new(0);
    let svc = Service::watching_with(
        &path,
        Box::new(move || {
            let plan = joincanary::config::load(&loader_path, &crate::support::env(&[]));
            if loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                configmap_version(&config_dir, "c2", &[("joincanary.toml", &changed)]);
            }
            plan
        }),
    )
    .await;
    let base = svc.base.clone();
    wait_probe_runs(&base, "sim-join", 1).await;
    configmap_version(
        &probes,
        "p2",
        &[("sim-join.toml", &one), ("second.toml", &two)],
    );
    wait_probe_runs(&base, "second", 1).await;
    wait_dashboard(
        &base,
        "the config swapped during the reload in force",
        Duration::from_secs(5),
    )
    .await;
    svc.stop().await;
    sim.shutdown().await;
}

#[test]
fn alertmanager_hold_is_checked_with_its_line() {
    let probe = ONE_STEP;
    let cfg = TempConfig::new(
        "[[pager]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = \"http://127.0.0.1:9/\"\nresend_interval = \"5m\"\nhold = \"5m\"\n\
         [[pager]]\nname = \"pd\"\ntype = \"pagerduty\"\nrouting_key = \"k\"\nhold = \"1h\"\n",
        &[("p.toml", probe)],
    );
    assert_eq!(
        load_errors(&cfg),
        [
            "joincanary.toml:10:8: pager[0].hold: must be longer than resend_interval, or a firing alert would lapse between posts",
            "joincanary.toml:15:8: pager[1].hold: does not apply to a `pagerduty` pager, expected one of `name`, `type`, `url`, `routing_key`, `timeout`, `retry_base`, `retry_max_age`, `tls_config`",
        ]
    );
    // The default holds a firing alert an hour, or 4 resends if that is longer.
    let cfg = TempConfig::new(
        "[[pager]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = \"http://127.0.0.1:9/\"\nresend_interval = \"30m\"\n",
        &[("p.toml", probe)],
    );
    let plan = cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"));
    match &plan.pagers[0].kind {
        joincanary::alert::PagerKind::Alertmanager(a) => {
            assert_eq!(a.hold, Duration::from_secs(2 * 3600));
        }
        other => panic!("{other:?}"),
    }
}

/// A pager that fails shows within seconds: each failed attempt counts as `retry`, the outbox
/// gauges say what waits and for how long, and `joincanary_pager_failing` (what
/// `JoinFlowFailingInRegion` reads) is 1; once it answers, all drop back.
#[tokio::test(start_paused = true)]
async fn a_failing_pager_shows_in_retry_count_and_outbox_gauges() {
    use crate::support::receiver::Receiver;
    // The platform is healthy until the first scrape has shown the series at zero: otherwise a
    // slow start lets the first failed delivery happen before that scrape.
    let sim = start_sim().await;
    let (rx, url) = Receiver::start(503).await;
    let cfg = TempConfig::new(
        &format!(
            "[alerting]\nconfirm_delay = \"200ms\"\n[[pager]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{url}/hook\"\nretry_base = \"50ms\"\n"
        ),
        &[("sim.toml", &fast_sim_probe(&sim.base_url()))],
    );
    let svc = Service::start(cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"))).await;
    let retry = "joincanary_notifications_total{event=\"trigger\",region=\"test\",result=\"retry\",sink=\"hook\"}";
    let delivered = "joincanary_notifications_total{event=\"trigger\",region=\"test\",result=\"delivered\",sink=\"hook\"}";
    let pending = "joincanary_outbox_pending{region=\"test\",sink=\"hook\"}";
    let oldest = "joincanary_outbox_oldest_seconds{region=\"test\",sink=\"hook\"}";
    let failing = "joincanary_pager_failing{region=\"test\",sink=\"hook\",type=\"webhook\"}";
    let first = svc.metrics().await;
    assert_eq!(value(&first, failing), Some(0.0), "{first}");
    assert_eq!(value(&first, retry), Some(0.0), "{first}");
    assert_eq!(value(&first, pending), Some(0.0));
    crate::support::set_faults(&sim, serde_json::json!({"signalling_drop": true})).await;
    let scrape = async |ok: &dyn Fn(&String) -> bool| {
        crate::support::poll(
            Duration::from_secs(10),
            Duration::from_millis(100),
            async || crate::support::when(svc.metrics().await, ok),
        )
        .await
        .unwrap_or_else(|last| last)
    };
    let m =
        scrape(&|m| value(m, retry).unwrap_or(0.0) >= 2.0 && value(m, oldest).unwrap_or(0.0) > 0.0)
            .await;
    assert!(value(&m, retry).unwrap_or(0.0) >= 2.0, "{m}");
    assert_eq!(value(&m, pending), Some(1.0), "{m}");
    assert!(value(&m, oldest).unwrap_or(0.0) > 0.0, "{m}");
    assert_eq!(value(&m, failing), Some(1.0), "{m}");
    assert_eq!(value(&m, delivered), Some(0.0));
    rx.set_fallback(200);
    let m = scrape(&|m| value(m, delivered) == Some(1.0)).await;
    assert_eq!(value(&m, delivered), Some(1.0), "{m}");
    assert_eq!(value(&m, pending), Some(0.0), "{m}");
    assert_eq!(value(&m, oldest), Some(0.0), "{m}");
    assert_eq!(value(&m, failing), Some(0.0), "{m}");
    svc.stop().await;
    sim.shutdown().await;
}
