//! A peer prober served over mutual TLS, as `run --web.config.file` serves it in a cluster: a
//! private CA, a certificate for its service name rather than the address it is reached at,
//! `client_auth_type: RequireAndVerifyClientCert`. Another prober's fleet page reaches it through
//! the peer's `tls_config`; without each part the peer shows unreachable, with the reason.

use crate::support::{Service, TempConfig, get_text, servers};

const PROBE: &str = "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_served_over_mutual_tls_is_reached_through_its_tls_config() {
    crate::support::init();
    let pki = tempfile::tempdir().unwrap();
    servers::write_pki(pki.path(), "prober-b.monitoring.svc");
    let at = |name: &str| pki.path().join(name).display().to_string();

    // The peer: region eu-b, https only, a client certificate required.
    let peer_cfg = TempConfig::new("", &[("p.toml", PROBE)]);
    let text = std::fs::read_to_string(&peer_cfg.path).unwrap();
    std::fs::write(
        &peer_cfg.path,
        text.replace("region = \"test\"", "region = \"eu-b\""),
    )
    .unwrap();
    let web = pki.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
            at("server.pem"),
            at("server-key.pem"),
            at("ca.pem")
        ),
    )
    .unwrap();
    let mut plan = peer_cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"));
    plan.web = Some(joincanary::web::WebConfig::load(&web).unwrap());
    let peer = Service::start(plan).await;
    let port = peer.base.rsplit(':').next().unwrap().to_string();
    let url = format!("https://127.0.0.1:{port}");

    // A prober of its own for each `tls_config` (the fleet page keeps a peer's answer a while).
    let fleet_page = async |tls: &str| -> String {
        let cfg = TempConfig::new(
            &format!("peers = [{{ url = \"{url}\", region = \"eu-b\"{tls} }}]\n"),
            &[("p.toml", PROBE)],
        );
        for f in ["ca.pem", "client.pem", "client-key.pem"] {
            std::fs::copy(pki.path().join(f), cfg.dir.path().join(f)).unwrap();
        }
        let svc = Service::start(cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"))).await;
        let page = get_text(&svc.base, "/").await;
        svc.stop().await;
        page
    };

    let page = fleet_page(", tls_config = { ca_file = \"ca.pem\", cert_file = \"client.pem\", key_file = \"client-key.pem\", server_name = \"prober-b.monitoring.svc\" }").await;
    assert!(page.contains("<th scope=\"col\">eu-b</th>"), "{page}");
    assert!(!page.contains("No status from"), "{page}");

    // Without the CA: unreachable, and the reason says where the CA goes.
    let page = fleet_page("").await;
    assert!(page.contains("eu-b <small>(unreachable"), "{page}");
    assert!(
        page.contains("UnknownIssuer (a private CA goes in the peer")
            && page.contains("tls_config.ca_file"),
        "{page}"
    );

    // Without the client certificate the peer refuses the connection. (How the refusal reads
    // depends on when its alert comes past the request: `received fatal alert:
    // CertificateRequired`, hinted, or hyper's `connection was not ready`.)
    let page = fleet_page(
        ", tls_config = { ca_file = \"ca.pem\", server_name = \"prober-b.monitoring.svc\" }",
    )
    .await;
    assert!(page.contains("eu-b <small>(unreachable"), "{page}");
    peer.stop().await;
}
