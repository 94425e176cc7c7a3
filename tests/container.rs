//! What a test can check of the Dockerfile and deploy examples without a container engine, and
//! what the image relies on from the binary: `JOINCANARY_LISTEN` / `JOINCANARY_STATE_DIR` over
//! any mounted config, and `joincanary healthcheck` (its HEALTHCHECK) against a real `run`,
//! plain and with TLS + basic auth.

use std::process::Command;
use std::time::Duration;

use crate::support::running::{Running, healthcheck};
use crate::support::{TempConfig, binary, root};

fn dockerfile() -> String {
    std::fs::read_to_string(root().join("Dockerfile")).unwrap()
}

#[test]
fn every_path_the_dockerfile_copies_exists() {
    for line in dockerfile()
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(
                root().join(src).exists(),
                "Dockerfile copies `{src}`, which does not exist"
            );
        }
    }
}

#[test]
fn the_binary_it_runs_is_the_crates() {
    let d = dockerfile();
    let name = env!("CARGO_PKG_NAME");
    assert!(d.contains(&format!("target/release/{name} /usr/local/bin/{name}")));
    assert!(d.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{name}\"]")));
    assert!(d.contains("--bin joincanary"));
}

#[test]
fn runtime_image_has_the_documented_shape() {
    let d = dockerfile();
    assert!(d.contains("EXPOSE 9464"));
    assert!(
        d.contains("HEALTHCHECK")
            && d.contains("CMD [\"/usr/local/bin/joincanary\", \"healthcheck\"]")
    );
    // Numeric, so Pod Security's runAsNonRoot can verify it; the same uid the StatefulSet runs as.
    assert!(d.contains("USER 10001:10001") && d.contains("ca-certificates"));
    assert!(d.contains("--uid 10001 --gid 10001"));
    let sts =
        std::fs::read_to_string(root().join("deploy/kubernetes/base/statefulset.yaml")).unwrap();
    assert!(sts.contains("runAsUser: 10001"));
    // The health check is the binary itself: nothing else needs curl.
    assert!(!d.contains("curl"), "curl is not installed any more");
    assert!(d.contains("JOINCANARY_LISTEN=0.0.0.0:9464"));
    assert!(d.contains("JOINCANARY_STATE_DIR=/var/lib/joincanary"));
}

#[test]
fn the_config_the_image_uses_resolves_its_probes_like_the_image_lays_them_out() {
    // The image puts config/ and probes/ side by side under /etc/joincanary, as in the repo.
    let d = dockerfile();
    assert!(
        d.contains("/etc/joincanary/config/joincanary.toml")
            && d.contains("/etc/joincanary/probes/")
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::copy(
        root().join("config/joincanary.toml"),
        dir.path().join("config/joincanary.toml"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("probes")).unwrap();
    for e in std::fs::read_dir(root().join("probes")).unwrap() {
        let p = e.unwrap().path();
        // probes/examples/ is documentation, not shipped in the image.
        if p.is_file() {
            std::fs::copy(&p, dir.path().join("probes").join(p.file_name().unwrap())).unwrap();
        }
    }
    let env = crate::support::env(&[]);
    let plan = joincanary::config::load(&dir.path().join("config/joincanary.toml"), &env).unwrap();
    assert!(!plan.probes.is_empty());
    // The image's address and state directory come from its environment through the `run`
    // flags (see env_beats_config_and_the_flag_beats_env), not from this file.
    assert_eq!(plan.listen.to_string(), "127.0.0.1:9464");
}

/// `KEY=VALUE` literals of a kustomization's configMapGenerator (the layout writes them one per
/// line as `- KEY=VALUE`).
fn literals(kustomization: &str) -> Vec<(String, String)> {
    kustomization
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The environment a region's pod gets: the base's `joincanary-env` literals merged with the
/// overlay's, plus every plain `env` entry and a stand-in for every Secret key of the StatefulSet.
fn pod_env(region: &str) -> Vec<(String, String)> {
    let k8s = root().join("deploy/kubernetes");
    let mut env: Vec<(String, String)> = Vec::new();
    for file in [
        k8s.join("base/kustomization.yaml"),
        k8s.join("overlays").join(region).join("kustomization.yaml"),
    ] {
        for (k, v) in literals(&std::fs::read_to_string(file).unwrap()) {
            env.retain(|(name, _)| *name != k);
            env.push((k, v));
        }
    }
    let sts = std::fs::read_to_string(k8s.join("base/statefulset.yaml")).unwrap();
    let mut lines = sts.lines().map(str::trim).peekable();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("- name: ") else {
            continue;
        };
        if !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            continue;
        }
        let value = match lines.peek().and_then(|l| l.strip_prefix("value: ")) {
            Some(v) => v.to_string(),
            None => format!("https://secret.example.invalid/{name}"),
        };
        env.push((name.to_string(), value));
    }
    env
}

#[test]
fn every_kubernetes_region_passes_check_with_the_pods_environment() {
    // The ConfigMaps are generated from these files; the pod mounts config/ and probes/ side by
    // side under /etc/joincanary, as here.
    let base = root().join("deploy/kubernetes/base");
    let regions: Vec<String> = std::fs::read_dir(root().join("deploy/kubernetes/overlays"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(regions.len(), 3, "{regions:?}");
    for region in &regions {
        let env = pod_env(region);
        let out = std::process::Command::new(crate::support::binary())
            .arg("check")
            .arg("--config")
            .arg(base.join("config/joincanary.toml"))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{region}: joincanary check failed with {env:?}\n{stdout}\n{stderr}"
        );
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let plan = joincanary::config::load(
            &base.join("config/joincanary.toml"),
            &crate::support::env(&pairs),
        )
        .unwrap();
        assert_eq!(&plan.region, region);
        assert_eq!(plan.listen.to_string(), "0.0.0.0:9464");
        assert_eq!(
            plan.state_dir,
            std::path::PathBuf::from("/var/lib/joincanary")
        );
        assert_eq!(
            plan.pagers.len(),
            2,
            "alertmanager and the secret-keyed pager"
        );
        assert!(!plan.probes.is_empty());
    }
}

#[test]
fn the_compose_config_passes_check_for_each_region() {
    // Compose mounts deploy/compose/joincanary.toml and probes/ side by side under /etc/joincanary.
    let compose = std::fs::read_to_string(root().join("deploy/compose.yaml")).unwrap();
    assert!(
        compose.contains("./compose/joincanary.toml:/etc/joincanary/config/joincanary.toml:ro")
    );
    assert!(compose.contains("../probes:/etc/joincanary/probes:ro"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::create_dir_all(dir.path().join("probes")).unwrap();
    std::fs::copy(
        root().join("deploy/compose/joincanary.toml"),
        dir.path().join("config/joincanary.toml"),
    )
    .unwrap();
    // The probe directory's own files (its examples/ folder is not loaded as probes).
    for e in std::fs::read_dir(root().join("probes")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.path().join("probes").join(p.file_name().unwrap())).unwrap();
        }
    }
    let regions = ["eu-west-1", "us-east-1", "ap-southeast-1"];
    for (i, region) in regions.iter().enumerate() {
        assert!(compose.contains(&format!("REGION: {region}")));
        // Each service's own STATUS_URL and peers (deploy/tools/check_compose.py checks that
        // compose.yaml sets these very values).
        let peers: Vec<String> = regions
            .iter()
            .filter(|r| *r != region)
            .map(|r| format!("http://prober-{r}:9464"))
            .collect();
        let out = std::process::Command::new(crate::support::binary())
            .arg("check")
            .arg("--config")
            .arg(dir.path().join("config/joincanary.toml"))
            .env_clear()
            .env("REGION", region)
            .env("SIM_URL", "http://sim:7480")
            .env("STATUS_URL", format!("http://127.0.0.1:{}/", 9464 + i))
            .env("PEER_1", &peers[0])
            .env("PEER_2", &peers[1])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{region}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn kubernetes_probes_are_the_shipped_probes() {
    // kustomize reads only below the kustomization, so the probes are a copy: keep it one.
    for e in std::fs::read_dir(root().join("deploy/kubernetes/base/probes")).unwrap() {
        let p = e.unwrap().path();
        let shipped = root().join("probes").join(p.file_name().unwrap());
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            std::fs::read_to_string(&shipped).unwrap_or_default(),
            "{} differs from {}",
            p.display(),
            shipped.display()
        );
    }
}

/// Metric names a PromQL expression mentions: identifiers that start with one of our prefixes,
/// not the inside of a recorded `level:metric:operation` name.
fn metric_names(expr: &str) -> Vec<String> {
    let re = regex::Regex::new(r"(?:^|[^:\w])((?:probe|joincanary)_[a-z_]+)").unwrap();
    re.captures_iter(expr).map(|c| c[1].to_string()).collect()
}

/// Every metric the service exports (with histogram series names).
fn exported() -> Vec<String> {
    use joincanary::report::{FailureReason, Phase, ProbeRun, StepReport, Trigger};
    let m = joincanary::metrics::Metrics::new("test").unwrap();
    m.register_probe("p", "test", Some(std::time::Duration::from_secs(60)));
    // Vectors without a child are not exported at all: give each one.
    let step = StepReport {
        name: "s".into(),
        kind: joincanary::flow::StepKind::Http.name(),
        success: false,
        duration_ms: std::time::Duration::from_millis(5),
        reason: Some(FailureReason::Timeout),
        error: None,
        phases: [(Phase::Total, std::time::Duration::from_millis(5))].into(),
        cleanup: false,
        gauges: Default::default(),
        warnings: Vec::new(),
    };
    let run = ProbeRun {
        probe: "p".into(),
        region: "test".into(),
        success: false,
        started_at: chrono::Utc::now(),
        duration_ms: std::time::Duration::from_millis(5),
        failed_step: Some("s".into()),
        reason: Some(FailureReason::Timeout),
        error: None,
        trigger: Trigger::Scheduled,
        steps: vec![step],
    };
    m.record(&run, Some(std::time::Duration::ZERO));
    m.record(
        &ProbeRun {
            success: true,
            failed_step: None,
            reason: None,
            ..run
        },
        None,
    );
    m.register_pagers(&["x".into()]);
    // `joincanary_pager_failing` appears once the dispatcher has built the pager (its type).
    m.delivery.set_kind("x", "alertmanager");
    // `joincanary_alertmanager_member_failing`: one series per member of its `urls`.
    m.delivery.set_members("x", &["am-0:9093".into()]);
    m.register_heartbeat("h");
    m.count_heartbeat("h", true, chrono::Utc::now());
    // The service registers the supervisor's families beside these.
    joincanary::supervise::Supervisor::register(&m.registry, "test").unwrap();
    let mut names = Vec::new();
    for line in m.render().lines() {
        let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|l| l.split(' ').next())
        else {
            continue;
        };
        for suffix in ["", "_bucket", "_count", "_sum"] {
            names.push(format!("{name}{suffix}"));
        }
    }
    names
}

/// The `expr:` of every rule in a rules file, single-line or a `|` block (no YAML parser in the
/// dev-dependencies; the rules file keeps to these two forms).
fn rule_exprs(rules: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        if rest.trim() != "|" {
            exprs.push(rest.trim().to_string());
            continue;
        }
        let mut block = String::new();
        while let Some(next) =
            lines.next_if(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
        {
            block.push_str(next.trim());
            block.push('\n');
        }
        exprs.push(block);
    }
    exprs
}

#[test]
fn dashboard_and_rules_use_only_metrics_joincanary_exports() {
    let exported = exported();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/joincanary-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    let mut rules = Vec::new();
    for file in [
        "deploy/prometheus/joincanary-rules.yaml",
        "deploy/prometheus/global/joincanary-global-rules.yaml",
    ] {
        rules.extend(rule_exprs(
            &std::fs::read_to_string(root().join(file)).unwrap(),
        ));
    }
    assert!(rules.len() >= 16, "{rules:?}");
    exprs.extend(rules);
    for expr in &exprs {
        for name in metric_names(expr) {
            assert!(
                exported.contains(&name),
                "`{name}` in `{expr}` is not exported"
            );
        }
    }
}

const IDLE_PROBE: &str = "schedule = \"0 0 1 1 *\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";

/// A service config without `listen` or `state_dir` beyond what is given, as a user mounts it.
fn mounted(service: &str) -> TempConfig {
    let cfg = TempConfig::new("", &[("idle.toml", IDLE_PROBE)]);
    std::fs::write(
        &cfg.path,
        format!("region = \"test\"\nprobes = [\"probes\"]\n{service}"),
    )
    .unwrap();
    cfg
}

/// Starts `run` with `extra` flags and `env`, with none of the image's variables inherited.
fn start(cfg: &TempConfig, extra: &[&str], env: &[(&str, &str)]) -> Running {
    let mut cmd = Command::new(binary());
    cmd.args(["--log.format", "logfmt", "run", "--config"])
        .arg(&cfg.path)
        .args(extra)
        .env_remove("JOINCANARY_LISTEN")
        .env_remove("JOINCANARY_STATE_DIR")
        .env_remove("JOINCANARY_WEB_CONFIG_FILE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Running::spawn(cmd)
}

fn ip_of(addr: &str) -> &str {
    addr.rsplit_once(':').unwrap().0
}

/// flag > `JOINCANARY_LISTEN` > the config's `listen` > 127.0.0.1:9464; and the same for
/// `--state.dir` / `JOINCANARY_STATE_DIR` over `state_dir`. Loopback addresses tell them apart.
#[test]
fn env_beats_config_and_the_flag_beats_env() {
    // The issue's case: a mounted config without `listen`; the image's variable must win.
    let cfg = mounted("state_dir = \"state\"\n");
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("from-env");
    let svc = start(
        &cfg,
        &[],
        &[
            ("JOINCANARY_LISTEN", "127.0.0.3:0"),
            ("JOINCANARY_STATE_DIR", state_dir.to_str().unwrap()),
        ],
    );
    assert_eq!(ip_of(&svc.addr), "127.0.0.3", "env over the default");
    assert_eq!(svc.stop(), Some(0));
    assert!(
        state_dir.join(joincanary::status::HISTORY_FILE).exists(),
        "state in JOINCANARY_STATE_DIR, not the config's state_dir"
    );
    assert!(!cfg.dir.path().join("state").exists());

    let cfg = mounted("listen = \"127.0.0.2:0\"\nstate_dir = \"state\"\n");
    for (flags, env, want) in [
        (&[][..], &[][..], "127.0.0.2"),
        (
            &[],
            &[("JOINCANARY_LISTEN", "127.0.0.3:0")][..],
            "127.0.0.3",
        ),
        (
            &["--web.listen-address", "127.0.0.4:0"][..],
            &[("JOINCANARY_LISTEN", "127.0.0.3:0")][..],
            "127.0.0.4",
        ),
        // Empty is unset, as `${VAR}` is in the config: the file's address again.
        (&[], &[("JOINCANARY_LISTEN", "")][..], "127.0.0.2"),
    ] {
        let svc = start(&cfg, flags, env);
        assert_eq!(ip_of(&svc.addr), want, "{flags:?} {env:?}");
        // A reload keeps the flag's address: no "takes effect at the next restart" warning.
        let _ = Command::new("kill")
            .args(["-HUP", &svc.child.id().to_string()])
            .status();
        let reloaded = svc.wait_line(Duration::from_secs(20), |l| {
            l.contains("configuration reloaded")
        });
        let log = svc.log();
        assert!(reloaded, "{flags:?} {env:?}: no reload:\n{log}");
        assert!(
            !log.contains("next restart"),
            "{flags:?} {env:?}: a reload saw `listen` change:\n{log}"
        );
        assert_eq!(svc.stop(), Some(0));
    }
    assert!(
        cfg.dir.path().join("state").exists(),
        "the config's state_dir"
    );
}

#[test]
fn healthcheck_asks_the_running_service_where_its_config_says() {
    let cfg = mounted("listen = \"127.0.0.1:0\"\nstate_dir = \"state\"\n");
    let svc = start(&cfg, &[], &[]);
    // The check reads `listen` from the same config: give it the port `run` picked.
    let text = std::fs::read_to_string(&cfg.path)
        .unwrap()
        .replace("127.0.0.1:0", &svc.addr);
    let checked = cfg.dir.path().join("checked.toml");
    std::fs::write(&checked, text).unwrap();
    let (code, out, _) = healthcheck(&["--config", checked.to_str().unwrap()], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("ok: http://{}/healthz answered 200", svc.addr)),
        "{out}"
    );
    // The variable wins over the file, as it does for `run`.
    let (code, out, _) = healthcheck(
        &["--config", checked.to_str().unwrap()],
        &[("JOINCANARY_LISTEN", "127.0.0.1:1")],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("unhealthy: http://127.0.0.1:1/healthz: cannot connect"),
        "{out}"
    );
    assert_eq!(svc.stop(), Some(0));

    // The service gone: exit 1 at once (refused), never Docker's reserved 2.
    let (code, out, took) = healthcheck(&["--config", checked.to_str().unwrap()], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cannot connect"), "{out}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    // A broken config is unhealthy too (exit 1), with its file and line.
    std::fs::write(&checked, "listen = 9464\nprobes = []\n").unwrap();
    let (code, out, _) = healthcheck(&["--config", checked.to_str().unwrap()], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("checked.toml:1:"), "{out}");
}

#[test]
fn healthcheck_gives_up_on_a_silent_port_at_its_deadline() {
    // Accepts the connection and never answers: only the check's own deadline ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let (code, out, took) =
        healthcheck(&["--web.listen-address", &addr, "--timeout", "500ms"], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no answer within 500 ms"), "{out}");
    assert!(
        took < Duration::from_secs(10),
        "bounded by --timeout: {took:?}"
    );
    drop(silent);
}

#[test]
fn healthcheck_speaks_tls_and_basic_auth_from_the_web_config() {
    let cfg = mounted("listen = \"127.0.0.1:0\"\nstate_dir = \"state\"\n");
    let dir = cfg.dir.path();
    // A name that is not 127.0.0.1: the check trusts the certificate `run` serves, not a name.
    let (web, _) = crate::support::tls_web_config(dir, &["prober-eu.example.internal"], "docker");
    let web = web.to_str().unwrap().to_string();
    // One variable configures the service and its health check alike. No file watcher, so the
    // certificate replaced below stays unseen by `run` (tests/cert_rotation.rs: with it).
    let svc = start(
        &cfg,
        &["--config.watch-interval", "0s"],
        &[("JOINCANARY_WEB_CONFIG_FILE", &web)],
    );
    std::fs::write(dir.join("password"), "correct horse\n").unwrap();
    std::fs::write(dir.join("wrong"), "battery staple\n").unwrap();
    let password = dir.join("password").to_str().unwrap().to_string();
    let wrong = dir.join("wrong").to_str().unwrap().to_string();
    let base = [
        ("JOINCANARY_LISTEN", svc.addr.as_str()),
        ("JOINCANARY_WEB_CONFIG_FILE", web.as_str()),
    ];
    let with = |extra: &[(&'static str, &str)]| {
        let mut env: Vec<(&str, &str)> = base.to_vec();
        env.extend_from_slice(extra);
        healthcheck(&[], &env)
    };
    let (code, out, _) = with(&[
        ("JOINCANARY_HEALTHCHECK_USER", "docker"),
        ("JOINCANARY_HEALTHCHECK_PASSWORD_FILE", &password),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("ok: https://{}/healthz", svc.addr)),
        "{out}"
    );

    let (code, out, _) = with(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("answered 401: the web config asks for basic auth")
            && out.contains("JOINCANARY_HEALTHCHECK_PASSWORD_FILE"),
        "{out}"
    );
    let (code, out, _) = with(&[
        ("JOINCANARY_HEALTHCHECK_USER", "docker"),
        ("JOINCANARY_HEALTHCHECK_PASSWORD_FILE", &wrong),
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("answered 401: the user or password was not accepted"),
        "{out}"
    );
    assert!(
        !out.contains("battery") && !out.contains("correct horse"),
        "{out}"
    );

    // Plain HTTP against the TLS listener (no web config for the check) is not healthy.
    let (code, out, _) = healthcheck(&["--web.listen-address", &svc.addr], &[]);
    assert_eq!(code, Some(1), "{out}");

    // The certificate on disk replaced since `run` started and not reloaded: the check says so.
    crate::support::write_server_cert(dir, &["prober-eu.example.internal"]);
    let (code, out, _) = with(&[
        ("JOINCANARY_HEALTHCHECK_USER", "docker"),
        ("JOINCANARY_HEALTHCHECK_PASSWORD_FILE", &password),
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("presents a certificate other than the one in the web config's cert_file"),
        "{out}"
    );
    assert_eq!(svc.stop(), Some(0));
}
