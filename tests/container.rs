//! What a test can check of the Dockerfile and deploy examples without a container engine.

use crate::support::root;

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
    assert!(d.contains("HEALTHCHECK") && d.contains("/healthz"));
    assert!(d.contains("USER joincanary") && d.contains("ca-certificates"));
    assert!(d.contains("JOINCANARY_LISTEN=0.0.0.0:9464"));
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
    let env = crate::support::env(&[
        ("JOINCANARY_LISTEN", "0.0.0.0:9464"),
        ("JOINCANARY_STATE_DIR", "/var/lib/joincanary"),
    ]);
    let plan = joincanary::config::load(&dir.path().join("config/joincanary.toml"), &env).unwrap();
    assert_eq!(plan.listen.to_string(), "0.0.0.0:9464");
    assert_eq!(
        plan.state_dir,
        std::path::PathBuf::from("/var/lib/joincanary")
    );
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
    use joincanary::report::{FailureReason, Phase, ProbeRun, StepKind, StepReport, Trigger};
    let m = joincanary::metrics::Metrics::new("test").unwrap();
    m.register_probe("p", "test", Some(std::time::Duration::from_secs(60)));
    // Vectors without a child are not exported at all: give each one.
    let step = StepReport {
        name: "s".into(),
        kind: StepKind::Http,
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
    m.register_heartbeat("h");
    m.count_heartbeat("h", true, chrono::Utc::now());
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
    assert!(rules.len() >= 18, "{rules:?}");
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
