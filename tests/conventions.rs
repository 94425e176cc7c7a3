//! The conventions of the Prometheus ecosystem, as users of exporters expect them: flag names,
//! `/-/healthy` and `/-/ready`, logfmt, no colour codes off a terminal, a closed stdout, help
//! that documents `--config`, and CPU seconds with fractions.

use std::process::{Command, Stdio};

use crate::support::running::Running;
use crate::support::{self, TempConfig, binary, start_sim};

/// A probe that never sends traffic anywhere that answers (a closed loopback port), every
/// second, so `run` has something to schedule.
const IDLE_PROBE: &str = "schedule = \"* * * * * *\"\ntimeout = \"500ms\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";

/// Runs the binary with stdout closed before it writes (the reader went away, as with
/// `| head -1`): it must exit with its normal code and never panic.
fn with_closed_stdout(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .current_dir(support::root())
        .env_remove("JOINCANARY_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_survives_a_closed_stdout() {
    let sim = start_sim().await;
    let url = sim.base_url();
    let env = [("SIM_URL", url.as_str())];
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["check", "--config", "config/joincanary.toml"], 0),
        (vec!["once", "--config", "config/joincanary.toml"], 0),
        (
            vec![
                "once",
                "--format",
                "json",
                "--config",
                "config/joincanary.toml",
            ],
            0,
        ),
        (vec!["--help"], 0),
        (vec!["run", "--help"], 0),
        (vec!["--version"], 0),
    ];
    for (args, want) in cases {
        let (code, stderr) = tokio::task::block_in_place(|| with_closed_stdout(&args, &env));
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        assert_eq!(code, Some(want), "{args:?}: {stderr}");
    }
    // And through a real shell pipe, as the issue reported it.
    let out = tokio::task::block_in_place(|| {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "'{}' check --config config/joincanary.toml | head -1",
                binary().display()
            ))
            .current_dir(support::root())
            .output()
            .unwrap()
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok (region"));
    sim.shutdown().await;
}

#[test]
fn help_of_every_command_that_reads_a_config_documents_config() {
    for cmd in ["once", "check", "run", "test-page"] {
        let out = Command::new(binary())
            .args([cmd, "--help"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        // clap puts the help beside the flag or, when any help is long, on the next line.
        let lines: Vec<&str> = text.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.trim_start().starts_with("--config <PATH>"))
            .unwrap_or_else(|| panic!("{cmd} --help lists --config:\n{text}"));
        let line = lines[at..(at + 2).min(lines.len())].join(" ");
        assert!(
            line.contains("service config") && line.contains("--config.file"),
            "{cmd}: {line}"
        );
    }
    let run = Command::new(binary())
        .args(["run", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    for flag in [
        "--web.listen-address",
        "--web.config.file",
        "--web.enable-lifecycle",
        "--log.level",
        "--log.format",
    ] {
        assert!(text.contains(flag), "run --help lists {flag}:\n{text}");
    }
}

#[test]
fn config_file_flag_is_accepted_and_a_bad_log_level_is_a_usage_error() {
    let out = Command::new(binary())
        .current_dir(support::root())
        .args(["check", "--config.file", "config/joincanary.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let out = Command::new(binary())
        .current_dir(support::root())
        .args(["--log.level", "loud", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log.level `loud`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_speaks_logfmt_serves_prometheus_health_paths_and_takes_the_listen_flag() {
    // The config's own address is unusable: only the flag can make it listen.
    let cfg = TempConfig::new("", &[("idle.toml", IDLE_PROBE)]);
    let text = std::fs::read_to_string(&cfg.path)
        .unwrap()
        .replace("listen = \"127.0.0.1:0\"", "listen = \"192.0.2.1:1\"");
    std::fs::write(&cfg.path, text).unwrap();
    let svc = tokio::task::block_in_place(|| {
        Running::start(&cfg.path, &["--web.listen-address", "127.0.0.1:0"])
    });
    let base = svc.base();
    for (path, want) in [
        ("/-/healthy", 200),
        ("/-/ready", 200),
        ("/healthz", 200),
        ("/readyz", 200),
    ] {
        let r = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(r.status(), want, "{path}");
    }
    let metrics = crate::support::get_text(&base, "/metrics").await;
    let cpu: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("process_cpu_seconds_total"))
        .collect();
    assert_eq!(cpu.len(), 1, "{metrics}");
    let value: f64 = cpu[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value >= 0.0);
    assert!(metrics.contains("# TYPE process_cpu_seconds_total counter"));
    assert!(metrics.contains("process_resident_memory_bytes "));

    let log = svc.log();
    assert!(!log.contains('\u{1b}'), "no colour codes in a pipe:\n{log}");
    for line in log.lines() {
        let pairs = joincanary::logging::parse_pairs(line);
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(&keys[..3], ["ts", "level", "msg"], "{line}");
        assert!(
            pairs.iter().any(|(k, v)| k == "region" && v == "test"),
            "every line names the region: {line}"
        );
        assert_eq!(
            keys.iter().filter(|k| **k == "region").count(),
            1,
            "region once: {line}"
        );
    }
    assert_eq!(tokio::task::block_in_place(|| svc.stop()), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_carry_no_colour_off_a_terminal() {
    let cfg = TempConfig::new("", &[("idle.toml", IDLE_PROBE)]);
    let mut child = Command::new(binary())
        .args([
            "--log.format",
            "text",
            "--log.level",
            "debug",
            "check",
            "--config",
        ])
        .arg(&cfg.path)
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert_eq!(child.status.code(), Some(0));
    // `sim` logs at start: its stderr is a pipe here.
    let mut sim = Command::new(binary())
        .args(["--log.format", "text", "sim", "--listen", "127.0.0.1:0"])
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = sim.stdout.take().unwrap();
    tokio::task::block_in_place(|| {
        use std::io::BufRead as _;
        let mut first = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut first);
        assert!(first.starts_with("listening on"), "{first}");
    });
    let _ = Command::new("kill")
        .args(["-TERM", &sim.id().to_string()])
        .status();
    child = tokio::task::block_in_place(|| sim.wait_with_output()).unwrap();
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(stderr.contains("sim server listening"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}
