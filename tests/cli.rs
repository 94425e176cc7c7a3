//! The binary as users run it: `once`, `check`, `sim`, exit codes and output shapes.

use std::io::BufRead;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::support::{self, TempConfig, binary, set_faults, start_sim};

fn once(sim_url: &str, extra: &[&str]) -> std::process::Output {
    Command::new(binary())
        .current_dir(support::root())
        .env("SIM_URL", sim_url)
        .env_remove("JOINCANARY_CONFIG")
        .args(["once", "--config", "config/joincanary.toml"])
        .args(extra)
        .output()
        .expect("binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_json_passes_against_the_sim() {
    let sim = start_sim().await;
    let out = once(&sim.base_url(), &["--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &v["probes"][0];
    assert_eq!(p["probe"], "sim-join");
    assert_eq!(p["region"], "local");
    assert_eq!(p["success"], true);
    assert!(p["duration_ms"].is_number());
    assert!(p["failed_step"].is_null() && p["reason"].is_null() && p["error"].is_null());
    let steps = p["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 5);
    // Exactly the keys README's shape lists, both ways: a key added to the output without the
    // shape (`cleanup` was) is drift a tool author finds first.
    let (run_keys, step_keys) = readme_once_json_shape();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(p),
        run_keys,
        "README's `once --format json` shape, run"
    );
    for s in steps {
        assert_eq!(
            keys(s),
            step_keys,
            "README's `once --format json` shape, step"
        );
    }
    assert_eq!(steps[1]["kind"], "ws_connect");
    assert!(steps[3]["phases"]["round_trip"].is_number());
    sim.shutdown().await;
}

/// The keys of a run and of a step in README's `once --format json` shape, sorted.
fn readme_once_json_shape() -> (Vec<String>, Vec<String>) {
    let readme = std::fs::read_to_string(support::root().join("README.md")).unwrap();
    let shape = readme
        .lines()
        .find(|l| l.starts_with("`{\"probes\":[{"))
        .expect("README shows the `once --format json` shape");
    let (run, step) = shape.split_once("\"steps\":[{").unwrap();
    let names = |s: &str| -> Vec<String> {
        let mut k: Vec<String> = regex::Regex::new(r#""([a-z_]+)""#)
            .unwrap()
            .captures_iter(s)
            .map(|c| c[1].to_string())
            .filter(|k| k != "probes")
            .collect();
        k.sort();
        k
    };
    let mut run = names(run);
    run.push("steps".into());
    run.sort();
    (run, names(step))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_fails_at_the_faulted_step_with_exit_1() {
    let sim = start_sim().await;
    set_faults(&sim, json!({"ws_reject_status": 401})).await;
    let out = once(&sim.base_url(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["probes"][0]["failed_step"], "websocket");
    assert_eq!(v["probes"][0]["reason"], "ws_handshake");

    let table = once(&sim.base_url(), &[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("FAIL")
            && text.contains("ws_handshake")
            && text.contains("FAILED at step \"websocket\""),
        "{text}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_never_appears_in_output() {
    // The websocket URL carries the session token in its query; a failing upgrade must not
    // print it.
    let sim = start_sim().await;
    set_faults(&sim, json!({"ws_reject_status": 500})).await;
    let out = once(&sim.base_url(), &["--format", "json"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !stdout.contains("token=") || stdout.contains("token=[redacted]"),
        "{stdout}"
    );
    // Tokens the sim issues are UUIDs; none may be in the output.
    let uuid =
        regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    assert!(
        uuid.find(&stdout).is_none(),
        "a UUID-shaped value (the sim's tokens are UUIDs) leaked: {stdout}"
    );
    assert!(!stderr.contains("canary-pass"));
    sim.shutdown().await;
}

#[test]
fn broken_config_exits_2_with_file_and_line() {
    let cfg = TempConfig::new(
        "",
        &[(
            "p.toml",
            "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"::\"\n",
        )],
    );
    for cmd in ["once", "check"] {
        let out = Command::new(binary())
            .args([cmd, "--config"])
            .arg(&cfg.path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("p.toml:4:7: steps[0].url:"), "{cmd}: {err}");
    }
}

#[test]
fn check_accepts_the_shipped_config_and_reads_joincanary_config() {
    let out = Command::new(binary())
        .current_dir(support::root())
        .env("JOINCANARY_CONFIG", "config/joincanary.toml")
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sim-join"));
}

#[test]
fn unknown_probe_and_bad_usage_exit_2() {
    let out = Command::new(binary())
        .current_dir(support::root())
        .args(["once", "--probe", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no probe named `nope`"));
    let out = Command::new(binary())
        .args(["once", "--format", "yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sim_prints_its_address_first_and_serves() {
    let mut child = Command::new(binary())
        .args(["sim", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let ok = line.starts_with("listening on http://127.0.0.1:") && !line.trim_end().ends_with(":0");
    let url = line
        .trim_end()
        .trim_start_matches("listening on ")
        .to_string();
    let health = std::process::Command::new("curl")
        .args(["-sf", &format!("{url}/healthz")])
        .output();
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "first line: {line:?}");
    if let Ok(h) = health {
        assert!(h.status.success(), "healthz answers");
    }
}

/// Seen in a trial: the shipped probe reads `SIM_USERNAME` and `SIM_PASSWORD`, the sim read
/// only the password, so `SIM_USERNAME=alice` made the probe fail against a sim started in the
/// same environment. One environment now sets both sides.
#[test]
fn the_sim_and_the_shipped_probe_read_the_same_credentials_from_the_environment() {
    let creds = [("SIM_USERNAME", "alice"), ("SIM_PASSWORD", "pw-for-alice")];
    let mut child = Command::new(binary())
        .args(["sim", "--listen", "127.0.0.1:0"])
        .envs(creds)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim_end()
        .trim_start_matches("listening on ")
        .to_string();
    let out = Command::new(binary())
        .current_dir(support::root())
        .env_remove("JOINCANARY_CONFIG")
        .env("SIM_URL", &url)
        .envs(creds)
        .args(["once", "--config", "config/joincanary.toml"])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_the_shipped_probe_and_serves_metrics() {
    // The demo's own temp directory, to see that it leaves nothing behind there.
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary())
        .args(["demo", "--listen", "127.0.0.1:0"])
        .current_dir(std::env::temp_dir())
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let metrics_url = tokio::task::spawn_blocking(move || {
        let reader = std::io::BufReader::new(stdout);
        reader.lines().take(20).map_while(Result::ok).find_map(|l| {
            l.trim()
                .strip_prefix("metrics")
                .map(|u| u.trim().to_string())
        })
    })
    .await
    .unwrap()
    .expect("demo prints its metrics URL");
    // The probe runs every 5 s: poll for up to 15 s.
    let ms = std::time::Duration::from_millis;
    let ok = support::poll(ms(15_000), ms(250), async || {
        if let Ok(r) = reqwest::get(&metrics_url).await
            && let Ok(text) = r.text().await
            && text
                .lines()
                .any(|l| l.starts_with("probe_success{") && l.ends_with(" 1"))
        {
            Ok(())
        } else {
            Err(())
        }
    })
    .await
    .is_ok();
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(ok, "demo's probe succeeded");
    assert_eq!(status.code(), Some(0), "Ctrl-C stops the demo cleanly");
    // Regression: each demo left its config and state in a `joincanary-demo-*` directory.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "the demo left {left:?} in its temp directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_the_environment_never_reach_output_or_debug_logs() {
    let sim = start_sim().await;
    let secret = "s3cret-canary-password-42";
    let out = Command::new(binary())
        .current_dir(support::root())
        .env("SIM_URL", sim.base_url())
        .env("SIM_PASSWORD", secret)
        .env("JOINCANARY_LOG", "trace")
        .args([
            "once",
            "--format",
            "json",
            "--config",
            "config/joincanary.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the wrong password fails the login"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("http_status"), "{stdout}");
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "secret leaked:\n{stdout}\n{stderr}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_page_sends_a_marked_trigger_and_resolve_through_each_pager() {
    use crate::support::receiver::Receiver;
    let (hook, hook_url) = Receiver::start(200).await;
    let (down, down_url) = Receiver::start(404).await;
    let pagers = format!(
        "status_url = \"http://canary.example/\"\ndashboard_url = \"http://grafana.example/d/jc\"\n[[pager]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{hook_url}/hook\"\n\n[[pager]]\nname = \"broken\"\ntype = \"webhook\"\nurl = \"{down_url}/hook\"\n"
    );
    let cfg = TempConfig::new(
        &pagers,
        &[(
            "p.toml",
            "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n",
        )],
    );
    let run = |extra: &[&str]| {
        Command::new(binary())
            .args(["test-page", "--config"])
            .arg(&cfg.path)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = tokio::task::block_in_place(|| run(&["--pager", "hook"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let got = hook.accepted();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0]["event"].as_str(), got[1]["event"].as_str()),
        (Some("trigger"), Some("resolve"))
    );
    assert_eq!(got[0]["test"], true);
    assert_eq!(
        got[0]["links"],
        serde_json::json!([
            {"text": "joincanary status", "href": "http://canary.example/"},
            {"text": "dashboard", "href": "http://grafana.example/d/jc"},
        ]),
        "the test page carries the status and dashboard links"
    );
    assert!(
        got[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("[TEST] joincanary test page from test")
    );
    assert!(down.all().is_empty(), "--pager selects");

    let out = tokio::task::block_in_place(|| run(&[]));
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("hook: ok") && text.contains("broken: FAILED"),
        "{text}"
    );
    let out = tokio::task::block_in_place(|| run(&["--pager", "nope"]));
    assert_eq!(out.status.code(), Some(2));
}

/// Pagers go out through the egress proxy the environment names (a locked-down cluster reaches
/// Slack or PagerDuty only that way), and `NO_PROXY` exempts a host, as curl does; a probe
/// never uses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_page_goes_through_the_environments_proxy_and_no_proxy_exempts_a_host() {
    use crate::support::receiver::Receiver;
    let (proxy, proxy_url) = Receiver::start(200).await;
    // Port 9 (discard) has no listener: only the proxy can take the page.
    let cfg = TempConfig::new(
        "[[pager]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n",
        &[(
            "p.toml",
            "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n",
        )],
    );
    let run = |no_proxy: &str| {
        Command::new(binary())
            .args(["test-page", "--config"])
            .arg(&cfg.path)
            .env_remove("http_proxy")
            .env_remove("no_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env("HTTP_PROXY", &proxy_url)
            .env("NO_PROXY", no_proxy)
            .output()
            .unwrap()
    };
    let out = tokio::task::block_in_place(|| run(""));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let got = proxy.requests();
    assert_eq!(got.len(), 2, "trigger and resolve, through the proxy");
    assert!(
        got.iter()
            .all(|r| r.headers.get("host").map(String::as_str) == Some("127.0.0.1:9")),
        "{got:?}"
    );

    let out = tokio::task::block_in_place(|| run("127.0.0.1"));
    assert_eq!(
        out.status.code(),
        Some(1),
        "exempt: straight to port 9, refused"
    );
    assert_eq!(proxy.requests().len(), 2, "nothing more through the proxy");

    // A probe connects as a participant does, never through the proxy.
    let out = tokio::task::block_in_place(|| {
        Command::new(binary())
            .args(["once", "--config"])
            .arg(&cfg.path)
            .env("HTTP_PROXY", &proxy_url)
            .env("NO_PROXY", "")
            .output()
            .unwrap()
    });
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("connect"), "{text}");
    assert_eq!(
        proxy.requests().len(),
        2,
        "the probe went straight to port 9"
    );
}

/// Regression: the demo died of a broken pipe when whoever read its banner stopped reading
/// (`println!` panics on a closed stdout), which made `demo_runs_…` flaky under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_survives_its_stdout_closing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(binary())
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let ms = std::time::Duration::from_millis;
    let served = support::poll(ms(5_000), ms(100), async || {
        match reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await {
            Ok(r) if r.status() == 200 => Ok(()),
            _ => Err(()),
        }
    })
    .await
    .is_ok();
    let alive = child.try_wait().unwrap().is_none();
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert!(
        served && alive,
        "the demo kept serving after its stdout closed"
    );
    assert_eq!(status.code(), Some(0));
}

/// The options of one `--help`, each as its line, with its description (`""` when it has none).
fn options_of(help: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Options:"))
        .skip(1)
        .collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if !t.starts_with('-') {
            continue;
        }
        // One-line layout: `--flag <V>  text`; long layout: the text on the next line.
        let text = match t.find("  ") {
            Some(k) => t[k..].trim(),
            None => lines
                .get(i + 1)
                .map(|n| n.trim())
                .filter(|n| !n.starts_with('-'))
                .unwrap_or(""),
        };
        let flag = t.split("  ").next().unwrap_or(t).to_string();
        out.push((flag, text.to_string()));
    }
    out
}

/// What a user reads first about each command agrees with README's Commands table: its exit
/// codes are in the first line of its `--help`, every option says what it is, and values are
/// named for what they are (`<NAME>`, `<DURATION>`), never after a field (`<PROBES>`).
#[test]
fn every_command_s_help_names_its_exit_codes_and_describes_every_option() {
    let readme = std::fs::read_to_string(support::root().join("README.md")).unwrap();
    let table = readme
        .split("## Commands")
        .nth(1)
        .and_then(|t| t.split("\n\n").nth(1))
        .expect("README has a Commands table");
    let row = regex::Regex::new(r"^\| `joincanary ([a-z-]+)[^`]*` \|.*\| ([^|]+) \|$").unwrap();
    let digit = regex::Regex::new(r"\b([0-9])\b").unwrap();
    let aside = regex::Regex::new(r"\([^)]*\)").unwrap();
    let metavar = regex::Regex::new(r"<([A-Z_]+)>").unwrap();
    let metavars = [
        "PATH", "ADDR", "DIR", "N", "NAME", "DURATION", "FORMAT", "LEVEL", "URL", "USER",
        "PASSWORD",
    ];
    let mut problems = Vec::new();
    let mut commands = 0;
    for line in table.lines() {
        let Some(c) = row.captures(line) else {
            continue;
        };
        commands += 1;
        // A parenthesis explains (`Docker reserves 2`): its numbers are no exit codes.
        let (cmd, exit) = (&c[1], aside.replace_all(&c[2], ""));
        let out = Command::new(binary())
            .args([cmd, "--help"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{cmd} --help");
        let help = String::from_utf8_lossy(&out.stdout).to_string();
        let about = help.lines().next().unwrap_or_default();
        for code in digit.captures_iter(&exit) {
            let code = &code[1];
            if !about.contains("exit") || !about.contains(code) {
                problems.push(format!(
                    "{cmd}: README says exit {exit:?}; its help's first line does not name {code}: {about:?}"
                ));
            }
        }
        for (flag, text) in options_of(&help) {
            if text.is_empty() || text.starts_with('[') {
                problems.push(format!("{cmd} {flag}: no description"));
            }
            for m in metavar.captures_iter(&flag) {
                if !metavars.contains(&&m[1]) {
                    problems.push(format!("{cmd} {flag}: value named <{}>", &m[1]));
                }
            }
        }
    }
    assert_eq!(commands, 7, "README's Commands table: {table}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let out = Command::new(binary()).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("joincanary {}\n", env!("CARGO_PKG_VERSION"))
    );
}
