//! A pager's `tls_config` against a real Alertmanager served as clusters serve it: HTTPS with a
//! private CA, a certificate for its service name (not the address it is reached at) and
//! client certificates required (`client_auth_type: RequireAndVerifyClientCert`). Each part of
//! `tls_config` is needed, and a handshake that fails says why in the pager's result.

use std::process::Command;

use crate::support::servers;
use crate::support::{TempConfig, binary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alertmanager_pager_reaches_alertmanager_over_mutual_tls_with_a_private_ca() {
    let pki = tempfile::tempdir().unwrap();
    servers::write_pki(pki.path(), "alertmanager.monitoring.svc");
    let at = |name: &str| pki.path().join(name).display().to_string();
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
        at("server.pem"),
        at("server-key.pem"),
        at("ca.pem"),
    );
    let am_config = "route:\n  receiver: none\nreceivers:\n  - name: none\n";
    let am = servers::start_alertmanager_tls(am_config, &web)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!("https://127.0.0.1:{}", am.port());
    let probe = "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";
    let test_page = |tls: &str| {
        let pager =
            format!("[[pager]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = \"{url}\"\n{tls}");
        let cfg = TempConfig::new(&pager, &[("p.toml", probe)]);
        for f in ["ca.pem", "client.pem", "client-key.pem"] {
            std::fs::copy(pki.path().join(f), cfg.dir.path().join(f)).unwrap();
        }
        let out = tokio::task::block_in_place(|| {
            Command::new(binary())
                .args(["test-page", "--wait", "0s", "--config"])
                .arg(&cfg.path)
                .output()
                .unwrap()
        });
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };

    // Everything: the CA, the client certificate, the name Alertmanager's certificate carries.
    let full = "tls_config = { ca_file = \"ca.pem\", cert_file = \"client.pem\", key_file = \"client-key.pem\", server_name = \"alertmanager.monitoring.svc\" }\n";
    let (code, out) = test_page(full);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("am: Alertmanager accepted the test alert"),
        "{out}"
    );

    // Each part left out fails the page, saying why.
    let (code, out) = test_page("");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("UnknownIssuer (a private CA goes in the pager's `tls_config.ca_file`)"),
        "no CA: {out}"
    );
    let (code, out) = test_page(
        "tls_config = { ca_file = \"ca.pem\", cert_file = \"client.pem\", key_file = \"client-key.pem\" }\n",
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("certificate not valid for name \"127.0.0.1\"; certificate is only valid for DnsName(\"alertmanager.monitoring.svc\")"),
        "no server_name: {out}"
    );
    assert!(
        out.contains("goes in the pager's `tls_config.server_name`"),
        "{out}"
    );
    let (code, out) = test_page(
        "tls_config = { ca_file = \"ca.pem\", server_name = \"alertmanager.monitoring.svc\" }\n",
    );
    // (How the refusal reads depends on the TLS version and on when the server's alert comes
    // past the request: `notify`'s unit test checks the hint for each wording.)
    assert_eq!(code, Some(1), "no client certificate: {out}");
    assert!(out.contains("am: FAILED: "), "{out}");

    // A self-hosted dead man's switch behind the same TLS: an `http` heartbeat takes the same
    // `tls_config` (Alertmanager's `/-/healthy` stands in for the ping URL).
    let heartbeat = |tls: &str| {
        let hb = format!(
            "[[heartbeat]]\nname = \"hb\"\ntype = \"http\"\nurl = \"{url}/-/healthy\"\ninterval = \"1m\"\n{tls}"
        );
        let cfg = TempConfig::new(&hb, &[("p.toml", probe)]);
        for f in ["ca.pem", "client.pem", "client-key.pem"] {
            std::fs::copy(pki.path().join(f), cfg.dir.path().join(f)).unwrap();
        }
        let plan = cfg.load(&[]).unwrap();
        joincanary::heartbeat::http_pinger(&plan.heartbeats[0]).unwrap()
    };
    assert_eq!(heartbeat(full).as_ref()().await, Ok(()));
    let err = heartbeat("").as_ref()().await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[test]
fn a_tls_config_that_cannot_work_is_refused_at_its_key() {
    let probe = "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";
    let pager = |tls: &str| {
        format!(
            "[[pager]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"https://127.0.0.1:9/\"\ntls_config = {tls}\n"
        )
    };
    let errors = |tls: &str| TempConfig::new(&pager(tls), &[("p.toml", probe)]).errors();
    let one = |tls: &str, want: &str| {
        let got = errors(tls);
        assert!(
            got.len() == 1 && got[0].contains(want),
            "{tls}: want one error with {want:?}, got {got:#?}"
        );
    };
    one(
        "{ ca_file = \"missing.pem\" }",
        ":9:26: pager[0].tls_config.ca_file: cannot read `missing.pem`",
    );
    one(
        "{ cert_file = \"c.pem\" }",
        "pager[0].tls_config.cert_file: `cert_file` and `key_file` go together",
    );
    one(
        "{ server_name = \"not a name\" }",
        "pager[0].tls_config.server_name: `not a name` is not a DNS name or an IP address",
    );
    one("{ ca = \"x\" }", "unknown field `ca`");
    let probe_cfg = TempConfig::new(&pager("{ ca_file = \"p.toml\" }"), &[("p.toml", probe)]);
    std::fs::copy(
        probe_cfg.dir.path().join("probes/p.toml"),
        probe_cfg.dir.path().join("p.toml"),
    )
    .unwrap();
    let got = probe_cfg.errors();
    assert!(
        got.len() == 1 && got[0].contains("holds no PEM certificate"),
        "{got:#?}"
    );
    let email = "[[pager]]\nname = \"mail\"\ntype = \"email\"\nhost = \"127.0.0.1\"\nto = [\"a@example.com\"]\nfrom = \"c@example.com\"\ntls = \"none\"\ntls_config = { ca_file = \"x.pem\" }\n";
    let got = TempConfig::new(email, &[("p.toml", probe)]).errors();
    assert!(
        got.len() == 1
            && got[0].contains(
                "joincanary.toml:12:14: pager[0].tls_config: does not apply with `tls = \"none\"`"
            ),
        "{got:#?}"
    );
}
