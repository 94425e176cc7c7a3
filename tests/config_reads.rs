//! Config and probe files that could hang or swamp the prober (issue 9): a FIFO, a symlink to
//! `/dev/zero`, a directory named `*.toml`, an oversized file. `check` and every reload refuse
//! each with an error naming the file, the running config stays, and SIGTERM works whatever a
//! reload is doing.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use joincanary::service::Reload;

use crate::support::running::Running;
use crate::support::{Service, TempConfig, fast_sim_probe, post_reload, start_sim};

/// One hostile file: its name in the probe directory, how to make it, what the error says.
struct Bad {
    name: &'static str,
    make: fn(&Path),
    says: &'static str,
}

fn fifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo {}", path.display());
}

fn dev_zero(path: &Path) {
    std::os::unix::fs::symlink("/dev/zero", path).unwrap();
}

fn directory(path: &Path) {
    std::fs::create_dir(path).unwrap();
}

fn oversized(path: &Path) {
    // Valid TOML (comments) just past the cap: refused for its size, not its content.
    let line = "# padding padding padding padding padding padding padding padding padding\n";
    let text = line.repeat(5 * 1024 * 1024 / line.len());
    std::fs::write(path, text).unwrap();
}

const BAD: [Bad; 4] = [
    Bad {
        name: "fifo.toml",
        make: fifo,
        says: "fifo.toml: cannot read: not a regular file (a FIFO); only regular files are read",
    },
    Bad {
        name: "zero.toml",
        make: dev_zero,
        says: "zero.toml: cannot read: not a regular file (a character device); only regular files are read",
    },
    Bad {
        name: "dir.toml",
        make: directory,
        says: "dir.toml: cannot read: not a regular file (a directory); only regular files are read",
    },
    Bad {
        name: "big.toml",
        make: oversized,
        says: "big.toml: cannot read: larger than 4 MiB (",
    },
];

#[test]
fn check_refuses_each_hostile_file_naming_it() {
    let probe = fast_sim_probe("http://127.0.0.1:9");
    for bad in &BAD {
        let cfg = TempConfig::new("", &[("one.toml", &probe)]);
        (bad.make)(&cfg.probe_path(bad.name));
        let mut child = Command::new(crate::support::binary())
            .args(["check", "--config"])
            .arg(&cfg.path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = crate::support::exit_within(&mut child, Duration::from_secs(20));
        assert!(status.is_some(), "{}: check hung", bad.name);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", bad.name);
        assert!(stderr.contains(bad.says), "{}: {stderr}", bad.name);
    }

    // The config file itself.
    let cfg = TempConfig::new("", &[("one.toml", &probe)]);
    let path = cfg.dir.path().join("fifo-config.toml");
    fifo(&path);
    let mut child = Command::new(crate::support::binary())
        .args(["check", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(crate::support::exit_within(&mut child, Duration::from_secs(20)).is_some());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("fifo-config.toml: cannot read: not a regular file (a FIFO)"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refuses_each_hostile_file_and_keeps_running() {
    let sim = start_sim().await;
    let cfg = TempConfig::new("", &[("one.toml", &fast_sim_probe(&sim.base_url()))]);
    let svc = Service::reloadable(&cfg, true).await;
    let base = svc.base.clone();
    crate::support::wait_probe_runs(&base, "sim-join", 1).await;
    for (i, bad) in BAD.iter().enumerate() {
        let path = cfg.probe_path(bad.name);
        (bad.make)(&path);
        let r = tokio::time::timeout(Duration::from_secs(20), post_reload(&base))
            .await
            .unwrap_or_else(|_| panic!("{}: the reload hung", bad.name));
        assert_eq!(r.status(), 400, "{}", bad.name);
        let body = r.text().await.unwrap();
        assert!(body.contains(bad.says), "{}: {body}", bad.name);

        // The running config stays: the probe keeps running, the failure is counted.
        crate::support::wait_more_runs(&base, "sim-join", 1).await;
        let metrics = crate::support::get_text(&base, "/metrics").await;
        let want = format!(
            "joincanary_config_reloads_total{{region=\"test\",result=\"failure\"}} {}",
            i + 1
        );
        assert!(metrics.lines().any(|l| l == want), "{want}\n{metrics}");
        if path.is_dir() {
            std::fs::remove_dir(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
    // And with the files gone a reload is accepted again.
    let r = post_reload(&base).await;
    assert_eq!(r.status(), 200);
    svc.stop().await;
    sim.shutdown().await;
}

/// A reload stuck in the kernel (a hung mount, here a loader that blocks until released) holds
/// neither shutdown nor the HTTP answer: SIGTERM's path stops the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_wins_over_a_reload_that_never_returns() {
    let cfg = TempConfig::new("", &[("one.toml", &fast_sim_probe("http://127.0.0.1:9"))]);
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let hold = Arc::new(Mutex::new(hold));
    let (sender, requests) = tokio::sync::mpsc::channel(4);
    let entered = Arc::new(tokio::sync::Notify::new());
    let entered_in_loader = entered.clone();
    let reload = Reload {
        loader: Box::new(move || {
            entered_in_loader.notify_one();
            // Blocks like a read on a hung mount, until the test lets go.
            let _ = hold.lock().unwrap().recv();
            Err(joincanary::diag::ConfigErrors(vec![]))
        }),
        requests,
        sender,
        http_endpoint: true,
        watch: None,
    };
    let svc = Service::with_reload(&cfg, reload).await;
    let base = svc.base.clone();
    let client = reqwest::Client::new();
    let pending = tokio::spawn(async move {
        client
            .post(format!("{base}/-/reload"))
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    entered.notified().await;
    svc.shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), svc.task).await;
    let answer = tokio::time::timeout(Duration::from_secs(10), pending).await;
    drop(release);
    stopped
        .expect("the service stops while the reload is stuck")
        .unwrap()
        .unwrap();
    // The caller hears that the service is going away (or the connection closes with it).
    match answer.expect("the reload request is answered").unwrap() {
        Ok(code) => assert_eq!(code, 503),
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
}

/// The case from the issue, on the binary: a FIFO in the probe directory, then a reload by
/// SIGHUP, or by the file watcher noticing it; then SIGTERM. The reload refuses the FIFO by name
/// and the process exits 0 (waited for with a bound).
#[test]
fn a_fifo_then_a_reload_then_sigterm_exits() {
    for (trigger, watch) in [("SIGHUP", "0s"), ("file watcher", "200ms")] {
        let cfg = TempConfig::new("", &[("one.toml", &fast_sim_probe("http://127.0.0.1:9"))]);
        let running = Running::start(&cfg.path, &["--config.watch-interval", watch]);
        fifo(&cfg.probe_path("fifo.toml"));
        if trigger == "SIGHUP" {
            let pid = running.child.id().to_string();
            let _ = Command::new("kill").args(["-HUP", &pid]).status();
        }
        let refused = running.wait_line(Duration::from_secs(10), |l| {
            l.contains("reload refused") && l.contains("fifo.toml")
        });
        assert!(
            refused,
            "{trigger}: no refusal naming the FIFO:\n{}",
            running.log()
        );
        let log = running.log();
        // `stop` sends SIGTERM and waits at most 15 s before killing (then the code is `None`).
        assert_eq!(running.stop(), Some(0), "{trigger}: {log}");
    }
}
