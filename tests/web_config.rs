//! `--web.config.file` as exporter-toolkit reads it: basic auth (bcrypt) in front of every
//! endpoint, TLS on the listener with a certificate the test makes, and a broken file refused
//! at start-up with its name.

use std::process::Command;

use crate::support::running::Running;
use crate::support::{TempConfig, binary};

const IDLE_PROBE: &str = "schedule = \"0 0 1 1 *\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";
const PATHS: [&str; 8] = [
    "/metrics",
    "/",
    "/api/v1/status",
    "/healthz",
    "/readyz",
    "/-/healthy",
    "/-/ready",
    "/-/reload",
];

fn users() -> String {
    // Cost 4: the lowest bcrypt allows, so the test is quick; the server accepts any cost.
    let hash = bcrypt::hash("correct horse", 4).unwrap();
    format!("basic_auth_users:\n  alice: {hash}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_protects_every_endpoint() {
    let cfg = TempConfig::new("", &[("idle.toml", IDLE_PROBE)]);
    let web = cfg.dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "{}http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
            users()
        ),
    )
    .unwrap();
    let svc = tokio::task::block_in_place(|| {
        Running::start(
            &cfg.path,
            &[
                "--web.enable-lifecycle",
                "--web.config.file",
                web.to_str().unwrap(),
            ],
        )
    });
    let client = reqwest::Client::new();
    for path in PATHS {
        let url = format!("{}{path}", svc.base());
        let method = if path == "/-/reload" {
            reqwest::Method::POST
        } else {
            reqwest::Method::GET
        };
        let anonymous = client.request(method.clone(), &url).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "{path} without credentials");
        assert_eq!(anonymous.headers()["www-authenticate"], "Basic");
        assert_eq!(anonymous.headers()["x-frame-options"], "deny");
        for (user, password) in [("alice", "wrong"), ("mallory", "correct horse")] {
            let r = client
                .request(method.clone(), &url)
                .basic_auth(user, Some(password))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{path} as {user}/{password}");
        }
        if path != "/-/reload" {
            let r = client
                .get(&url)
                .basic_auth("alice", Some("correct horse"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path} with the right password");
        }
    }
    let log = svc.log();
    assert!(
        !log.contains("correct horse") && !log.contains("$2"),
        "{log}"
    );
    assert_eq!(tokio::task::block_in_place(|| svc.stop()), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_basic_auth_serves_https_only() {
    crate::support::init();
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cfg = TempConfig::new("", &[("idle.toml", IDLE_PROBE)]);
    let dir = cfg.dir.path();
    std::fs::write(dir.join("server.crt"), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.join("server.key"),
        certified.signing_key.serialize_pem(),
    )
    .unwrap();
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS12\n{}",
            users()
        ),
    )
    .unwrap();
    let svc = tokio::task::block_in_place(|| {
        Running::start(&cfg.path, &["--web.config.file", web.to_str().unwrap()])
    });
    let port = svc.addr.rsplit(':').next().unwrap().to_string();
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let https = format!("https://localhost:{port}");
    let r = client
        .get(format!("{https}/metrics"))
        .basic_auth("alice", Some("correct horse"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("joincanary_build_info"));
    let r = client.get(format!("{https}/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err() || plain.is_ok_and(|r| r.status() != 200),
        "plain HTTP gets nothing"
    );
    assert_eq!(tokio::task::block_in_place(|| svc.stop()), Some(0));
}

#[test]
fn a_broken_web_config_stops_run_with_its_name() {
    let cfg = TempConfig::new("", &[("idle.toml", IDLE_PROBE)]);
    let dir = cfg.dir.path();
    for (text, want) in [
        // `file:line:col: key: message`, as every config error (a trial found these with no
        // line, or the parser's "at line 4 column 3" at the end).
        (
            "basic_auth_users:\n  alice: not-a-hash\n",
            "web.yml:2:3: basic_auth_users.alice: not a bcrypt hash",
        ),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
            "web.yml:2:3: tls_server_config.cert_file: cannot read",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [x]\n",
            "web.yml:4:3: tls_server_config.cipher_suites: unknown field `cipher_suites`, expected one of",
        ),
        (
            "basic_auth_user:\n  alice: x\n",
            "web.yml:1:1: basic_auth_user: unknown field `basic_auth_user` (did you mean `basic_auth_users`?)",
        ),
    ] {
        let web = dir.join("web.yml");
        std::fs::write(&web, text).unwrap();
        let out = Command::new(binary())
            .args(["run", "--config"])
            .arg(&cfg.path)
            .arg("--web.config.file")
            .arg(&web)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(
            stderr.contains("web.yml") && stderr.contains(want),
            "{text}: {stderr}"
        );
        // `check` finds the same problem without starting anything.
        let out = Command::new(binary())
            .args(["check", "--config"])
            .arg(&cfg.path)
            .arg("--web.config.file")
            .arg(&web)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains(want));
    }
    std::fs::write(dir.join("web.yml"), users()).unwrap();
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(&cfg.path)
        .arg("--web.config.file")
        .arg(dir.join("web.yml"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A hash of bcrypt cost 31 (a hand-edited file): `check` ran a full bcrypt of it to see that
/// it was a hash (about a day of CPU) and so never answered, nor did `run` or `healthcheck`,
/// and every request with a wrong password would have cost as much. Refused at once, at its
/// key; cost 14 is still taken.
#[test]
fn a_bcrypt_hash_too_costly_to_check_is_refused_at_once() {
    let cfg = TempConfig::new("", &[("idle.toml", IDLE_PROBE)]);
    let web = cfg.dir.path().join("web.yml");
    let hash = bcrypt::hash("correct horse", 4).unwrap();
    for (cost, want) in [
        (
            "31",
            Some("web.yml:2:3: basic_auth_users.alice: bcrypt cost 31 is over 14"),
        ),
        (
            "15",
            Some("web.yml:2:3: basic_auth_users.alice: bcrypt cost 15 is over 14"),
        ),
        ("14", None),
    ] {
        let costly = hash.replacen("$04$", &format!("${cost}$"), 1);
        std::fs::write(&web, format!("basic_auth_users:\n  alice: {costly}\n")).unwrap();
        let mut child = Command::new(binary())
            .args(["check", "--config"])
            .arg(&cfg.path)
            .arg("--web.config.file")
            .arg(&web)
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let status = crate::support::exit_within(&mut child, std::time::Duration::from_secs(20));
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        match want {
            Some(want) => {
                assert_eq!(
                    status.and_then(|s| s.code()),
                    Some(2),
                    "cost {cost}: {stderr}"
                );
                assert!(stderr.contains(want), "cost {cost}: {stderr}");
            }
            None => assert_eq!(
                status.and_then(|s| s.code()),
                Some(0),
                "cost {cost}: {stderr}"
            ),
        }
    }
}
