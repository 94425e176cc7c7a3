//! What an SRE deploying joincanary meets first: flags and environment variables with values out
//! of range (a Kubernetes manifest sets the variable, not the flag), refused with the range and
//! the variable's name before anything starts.

use std::process::{Command, Output};

use crate::support::{TempConfig, binary};

/// A probe that sends nothing anywhere that answers; `run` needs one to start.
const IDLE_PROBE: &str = "schedule = \"* * * * *\"\ntimeout = \"1s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";

/// The binary with `args` and `env`, none of the caller's JOINCANARY_* variables. Under
/// `timeout`: a value that is not refused starts the service, which would never exit (124).
fn joincanary(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", "30"])
        .arg(binary())
        .current_dir(crate::support::root());
    for (k, _) in std::env::vars() {
        if k.starts_with("JOINCANARY_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).envs(env.iter().copied());
    cmd.output().expect("binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_number_from_the_environment_names_the_variable_and_the_range() {
    let cfg = TempConfig::new("", &[("idle.toml", IDLE_PROBE)]);
    let config = cfg.path.to_str().unwrap();
    let run = [
        "run",
        "--config",
        config,
        "--web.listen-address",
        "127.0.0.1:0",
    ];
    // Each would start (or fail late, after logging it started): refused before anything runs.
    for (var, value, says) in [
        (
            "JOINCANARY_PROBE_THREADS",
            "100000",
            "must be a whole number from 0 to 64",
        ),
        (
            "JOINCANARY_PROBE_THREADS",
            "-1",
            "must be a whole number from 0 to 64",
        ),
        (
            "JOINCANARY_PROBE_THREADS",
            "two",
            "must be a whole number from 0 to 64",
        ),
        ("JOINCANARY_CONFIG_WATCH_INTERVAL", "banana", "banana"),
        (
            "JOINCANARY_CONFIG_WATCH_INTERVAL",
            "1000years",
            "must be between 0s and 1year",
        ),
    ] {
        let out = joincanary(&run, &[(var, value)]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
        assert!(
            err.contains(&format!("(from the environment variable {var})")),
            "{var}={value} names the variable: {err}"
        );
        assert!(err.contains(says), "{var}={value}: {err}");
        assert!(!err.contains("joincanary running"), "{var}={value}: {err}");
    }
    let out = joincanary(
        &["run", "--config", config],
        &[("JOINCANARY_LISTEN", "nope")],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "'--web.listen-address <ADDR>' (from the environment variable JOINCANARY_LISTEN)"
        ),
        "{err}"
    );
    // A global flag's variable too.
    let out = joincanary(
        &["check", "--config", config],
        &[("JOINCANARY_LOG_FORMAT", "xml")],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("JOINCANARY_LOG_FORMAT"), "{err}");
}

#[test]
fn a_bad_number_on_the_command_line_names_the_flag_and_the_range() {
    let cfg = TempConfig::new("", &[("idle.toml", IDLE_PROBE)]);
    let config = cfg.path.to_str().unwrap();
    for (flag, value, says) in [
        (
            "--probe.threads",
            "65",
            "must be a whole number from 0 to 64",
        ),
        (
            "--web.max-connections",
            "0",
            "must be a whole number from 1 to 1048576",
        ),
    ] {
        // The variable set as well: the flag wins, and the message is about the flag.
        let out = joincanary(
            &["run", "--config", config, flag, value],
            &[("JOINCANARY_PROBE_THREADS", "1")],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(&format!("'{flag} <N>'")), "{err}");
        assert!(err.contains(says), "{flag} {value}: {err}");
        assert!(!err.contains("environment variable"), "{err}");
    }
    // A deadline of zero fails every attempt.
    let out = joincanary(&["sim", "--redis-timeout", "0s"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("must be between 1ms and 1year"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn healthcheck_never_exits_2_which_docker_reserves() {
    let cfg = TempConfig::new("", &[("idle.toml", IDLE_PROBE)]);
    let config = cfg.path.to_str().unwrap();
    for (args, env) in [
        (
            vec!["healthcheck", "--config", config, "--timeout", "0s"],
            vec![],
        ),
        (
            vec!["healthcheck", "--config", config, "--no-such-flag"],
            vec![],
        ),
        (
            vec!["healthcheck", "--config", config],
            vec![("JOINCANARY_LISTEN", "nope")],
        ),
        (
            vec!["healthcheck", "--config", config],
            vec![("JOINCANARY_LOG", "loud")],
        ),
    ] {
        let out = joincanary(&args, &env);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} {env:?}: {}",
            stderr(&out)
        );
    }
    let out = joincanary(&["healthcheck", "--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn an_unset_region_variable_is_one_error_not_two() {
    let cfg = TempConfig::new("", &[("idle.toml", IDLE_PROBE)]);
    let text = std::fs::read_to_string(&cfg.path).unwrap().replace(
        "region = \"test\"",
        "region = \"${CANARY_TEST_UNSET_REGION}\"",
    );
    std::fs::write(&cfg.path, text).unwrap();
    // Not also "must be a non-empty label": the region was never read, it is not empty.
    assert_eq!(
        cfg.errors(),
        [
            "joincanary.toml:1:10: region: environment variable `CANARY_TEST_UNSET_REGION` is not set and has no default (write `${CANARY_TEST_UNSET_REGION:-default}` to give one)"
        ]
    );
}

#[test]
fn alert_thresholds_are_refused_past_100_runs_with_the_range() {
    let cfg = TempConfig::new(
        "[alerting]\nfailure_threshold = 99999999999\nsuccess_threshold = 101\ndegraded_threshold = 0\n",
        &[("idle.toml", IDLE_PROBE)],
    );
    assert_eq!(
        cfg.errors(),
        [
            "joincanary.toml:6:21: alerting.failure_threshold: must be a whole number from 1 to 100",
            "joincanary.toml:7:21: alerting.success_threshold: must be a whole number from 1 to 100",
            "joincanary.toml:8:22: alerting.degraded_threshold: must be a whole number from 1 to 100",
        ]
    );
    let ok = TempConfig::new(
        "[alerting]\nfailure_threshold = 100\n",
        &[("idle.toml", IDLE_PROBE)],
    );
    assert!(ok.load(&[]).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_give_each_step_its_time_and_a_reason_only_when_it_failed() {
    let sim = crate::support::start_sim().await;
    let url = sim.base_url();
    let once = move || {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let out = joincanary(
                &[
                    "--log.level",
                    "debug",
                    "once",
                    "--config",
                    "config/joincanary.toml",
                ],
                &[("SIM_URL", url.as_str())],
            );
            stderr(&out)
        })
    };
    let log = once().await.unwrap();
    let steps: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("step finished"))
        .collect();
    assert_eq!(steps.len(), 5, "{log}");
    for line in steps {
        assert!(line.contains(" duration_ms="), "{line}");
        assert!(
            !line.contains("reason="),
            "a passing step has no reason: {line}"
        );
    }
    crate::support::set_faults(&sim, serde_json::json!({"signalling_drop": true})).await;
    let log = once().await.unwrap();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("step finished") && l.contains("success=false"))
        .collect();
    assert_eq!(failed.len(), 1, "{log}");
    assert!(failed[0].contains("step=signalling"), "{}", failed[0]);
    assert!(failed[0].ends_with(" reason=no_match"), "{}", failed[0]);
    sim.shutdown().await;
}

#[test]
fn an_empty_joincanary_config_counts_as_unset_and_a_missing_default_says_how_to_set_it() {
    // In the checkout: the default config is there.
    let out = joincanary(&["check"], &[("JOINCANARY_CONFIG", "")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Elsewhere: the error says which path was read and why that one.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(binary())
        .arg("check")
        .current_dir(dir.path())
        .env_remove("JOINCANARY_CONFIG")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("error: config/joincanary.toml: cannot read:"),
        "{err}"
    );
    assert!(
        err.contains("hint: no --config given and JOINCANARY_CONFIG not set"),
        "{err}"
    );
    // It says where it looked and what to do (it said the missing file "was read").
    let cwd = dir.path().canonicalize().unwrap();
    assert!(
        err.contains(&format!(
            "was looked for in the working directory ({}): pass --config PATH",
            cwd.display()
        )),
        "{err}"
    );
}
