//! Certificates renewed on disk while `run` runs (cert-manager rewriting a mounted Secret every
//! few weeks): the listener serves the new one to new connections, and a pager's CA,
//! certificate or key file changing reloads the config, both through the file watcher, without
//! a restart. Before, `run` kept what it read at start-up until the old certificate expired and
//! Prometheus' scrapes (and the pager's handshakes) failed.

use std::time::{Duration, Instant};

use crate::support::TempConfig;
use crate::support::running::Running;

const IDLE_PROBE: &str = "schedule = \"0 0 1 1 *\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";

/// `joincanary healthcheck` with `env`: its exit code and output. It trusts exactly the
/// certificate in the web config's `cert_file`, so `0` says `run` serves what the file holds now.
fn healthcheck(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let (code, out, _) = crate::support::running::healthcheck(&["--timeout", "5s"], env);
    (code, out)
}

/// Polls `check` (200 ms apart, at most `within`): whether it held once.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_listener_certificate_renewed_on_disk_is_served_without_a_restart_and_a_broken_one_is_refused()
{
    let cfg = TempConfig::new("", &[("idle.toml", IDLE_PROBE)]);
    let dir = cfg.dir.path();
    std::fs::write(
        &cfg.path,
        "region = \"test\"\nprobes = [\"probes\"]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"state\"\n",
    )
    .unwrap();
    let (web, _) = crate::support::tls_web_config(dir, &["prober.example.internal"], "docker");
    let web = web.to_str().unwrap().to_string();
    std::fs::write(dir.join("password"), "correct horse\n").unwrap();
    let password = dir.join("password").to_str().unwrap().to_string();
    let svc = Running::start_with(
        &cfg.path,
        &["--config.watch-interval", "200ms"],
        &[("JOINCANARY_WEB_CONFIG_FILE", &web)],
    );
    let env = [
        ("JOINCANARY_LISTEN", svc.addr.as_str()),
        ("JOINCANARY_WEB_CONFIG_FILE", web.as_str()),
        ("JOINCANARY_HEALTHCHECK_USER", "docker"),
        ("JOINCANARY_HEALTHCHECK_PASSWORD_FILE", password.as_str()),
    ];
    let (code, out) = healthcheck(&env);
    assert_eq!(code, Some(0), "{out}");

    // Renewed: a new key and certificate written over the old ones, as a Secret update lands.
    crate::support::write_server_cert(dir, &["prober.example.internal"]);
    let mut last = String::new();
    let served = eventually(Duration::from_secs(20), || {
        let (code, out) = healthcheck(&env);
        last = out;
        code == Some(0)
    });
    assert!(
        served,
        "the renewed certificate is not served: {last}\n{}",
        svc.log()
    );
    assert!(
        svc.wait_line(Duration::from_secs(5), |l| l
            .contains("the listener's certificate changed on disk")),
        "{}",
        svc.log()
    );

    // A key that is not one: the reload is refused by file and reason, the listener keeps the
    // certificate it has. The check reads its own copy of the web config, with the good key
    // kept aside (it loads the key too), and the unchanged cert_file still matches.
    std::fs::copy(dir.join("server.key"), dir.join("kept.key")).unwrap();
    let check = dir.join("check.yml");
    std::fs::write(
        &check,
        std::fs::read_to_string(&web)
            .unwrap()
            .replace("key_file: server.key", "key_file: kept.key"),
    )
    .unwrap();
    std::fs::write(dir.join("server.key"), "not a key\n").unwrap();
    assert!(
        svc.wait_line(Duration::from_secs(20), |l| l.contains("reload refused")
            && l.contains("web.yml")
            && l.contains("key_file")
            && l.contains("the listener keeps its certificate")),
        "{}",
        svc.log()
    );
    let mut env = env;
    env[1].1 = check.to_str().unwrap();
    let (code, out) = healthcheck(&env);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(svc.stop(), Some(0));
}

#[test]
fn a_pagers_ca_file_changing_on_disk_reloads_the_config() {
    let cfg = TempConfig::new("", &[("idle.toml", IDLE_PROBE)]);
    let dir = cfg.dir.path();
    let ca = crate::support::write_server_cert(dir, &["alertmanager.example.internal"]);
    std::fs::write(dir.join("ca.pem"), &ca).unwrap();
    std::fs::write(
        &cfg.path,
        "region = \"test\"\nprobes = [\"probes\"]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"state\"\n\
         [[pager]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = \"https://127.0.0.1:9/\"\n\
         tls_config = { ca_file = \"ca.pem\", server_name = \"alertmanager.example.internal\" }\n",
    )
    .unwrap();
    let svc = Running::start(&cfg.path, &["--config.watch-interval", "200ms"]);
    // A look or two first: what is read at start-up is what the watcher compares with.
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        !svc.log().contains("configuration files changed"),
        "{}",
        svc.log()
    );

    let renewed = crate::support::write_server_cert(dir, &["alertmanager.example.internal"]);
    std::fs::write(dir.join("ca.pem"), renewed).unwrap();
    assert!(
        svc.wait_line(Duration::from_secs(20), |l| l
            .contains("configuration reloaded")),
        "{}",
        svc.log()
    );
    // A CA file that holds no certificate is refused by its key, and the running config stays.
    std::fs::write(dir.join("ca.pem"), "nothing\n").unwrap();
    assert!(
        svc.wait_line(Duration::from_secs(20), |l| l.contains("reload refused")
            && l.contains("tls_config.ca_file")),
        "{}",
        svc.log()
    );
    assert_eq!(svc.stop(), Some(0));
}

/// What the watcher looks at: the config, the probe directory (its `*.toml` files through its
/// listing, not one by one), and each file the config names once, however many keys name it.
#[test]
fn the_files_a_config_names_are_watched_once_and_probe_files_through_their_directory() {
    let cfg = TempConfig::new("", &[("idle.toml", IDLE_PROBE)]);
    let dir = cfg.dir.path();
    let ca = crate::support::write_server_cert(dir, &["hooks.example.internal"]);
    std::fs::write(dir.join("ca.pem"), ca).unwrap();
    std::fs::write(
        &cfg.path,
        "region = \"test\"\nprobes = [\"probes\"]\n\
         [[pager]]\nname = \"a\"\ntype = \"webhook\"\nurl = \"https://127.0.0.1:9/a\"\n\
         tls_config = { ca_file = \"ca.pem\" }\n\
         [[pager]]\nname = \"b\"\ntype = \"webhook\"\nurl = \"https://127.0.0.1:9/b\"\n\
         tls_config = { ca_file = \"ca.pem\", cert_file = \"server.crt\", key_file = \"server.key\" }\n",
    )
    .unwrap();
    let env = std::collections::HashMap::<String, String>::new();
    let plan = joincanary::config::load(&cfg.path, &env).unwrap();
    assert_eq!(
        plan.sources,
        [
            cfg.path.clone(),
            dir.join("probes"),
            dir.join("ca.pem"),
            dir.join("server.crt"),
            dir.join("server.key"),
        ]
    );
}
