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
        std::fs::copy(&p, dir.path().join("probes").join(p.file_name().unwrap())).unwrap();
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

#[test]
fn kubernetes_config_map_is_a_valid_service_config_shape() {
    let k = std::fs::read_to_string(root().join("deploy/kubernetes/joincanary.yaml")).unwrap();
    let start = k.find("joincanary.toml: |").unwrap();
    let body: String = k[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{}\n", &l[4..]))
        .collect();
    let parsed: Result<joincanary::config::raw::RawService, _> = toml::from_str(&body);
    assert!(parsed.is_ok(), "{body}\n{parsed:?}");
}
