//! `probe_ssl_earliest_cert_expiry`: when the first certificate a step's server presents
//! expires, from a real TLS server on 127.0.0.1 whose chain (leaf, then the CA that signed it)
//! has the CA expiring first, so the figure is the chain's earliest, not the leaf's. A plain
//! HTTP step has none; the figure reaches the step's report (status JSON) and `/metrics` by
//! step, as blackbox_exporter names it, so its alert rules work unchanged.

use std::sync::Arc;

use chrono::{DateTime, TimeZone as _, Utc};
use tokio::io::AsyncWriteExt as _;

use crate::support::{self, TempConfig};

/// The CA's and the leaf's `notAfter`: the CA's comes first.
fn ca_expires() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 6, 1, 0, 0, 0).unwrap()
}
fn leaf_expires() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2031, 1, 15, 0, 0, 0).unwrap()
}

/// Serves up to 4 TLS connections on 127.0.0.1, each one `200 {}` to its request, presenting
/// the leaf and its CA; returns the address and the CA's PEM (for the probe's `ca_file`).
async fn tls_server() -> (String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    support::init();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "joincanary expiry test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_after = rcgen::date_time_ymd(2030, 6, 1);
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    leaf.not_after = rcgen::date_time_ymd(2031, 1, 15);
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let chain = vec![cert.der().clone(), issuer.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        for _ in 0..4 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if support::hostile::read_head(&mut tls).await.is_none() {
                    return;
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, issuer.pem())
}

#[tokio::test]
async fn the_earliest_expiry_of_the_chain_is_reported_by_step_and_exported() {
    let (addr, ca_pem) = tls_server().await;
    let plain = support::serve_router(
        axum::Router::new().route("/", axum::routing::get(|| async { "ok" })),
    )
    .await;
    let probe = format!(
        "timeout = \"5s\"\nca_file = \"ca.pem\"\n\
         [[steps]]\nname = \"login\"\nkind = \"http\"\nurl = \"https://{addr}/api/login\"\n\
         [[steps]]\nname = \"plain\"\nkind = \"http\"\nurl = \"http://{plain}/\"\n"
    );
    let cfg = TempConfig::new("", &[("expiry.toml", &probe)]);
    std::fs::write(cfg.probe_path("ca.pem"), ca_pem).unwrap();
    let plan = cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"));
    let run = support::run_once(&plan.probes[0]).await;
    assert!(run.success, "{run:#?}");
    assert_eq!(
        run.steps[0].cert_expiry,
        Some(ca_expires()),
        "not the leaf's {}",
        leaf_expires()
    );
    assert_eq!(run.steps[1].cert_expiry, None);
    // In the status JSON as a date, only where there was a handshake.
    let json = serde_json::to_value(&run).unwrap();
    assert_eq!(json["steps"][0]["cert_expiry"], "2030-06-01T00:00:00Z");
    assert!(json["steps"][1].get("cert_expiry").is_none(), "{json}");

    let metrics = joincanary::metrics::Metrics::new("eu").unwrap();
    metrics.record(&run, None);
    let text = metrics.render();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("probe_ssl_earliest_cert_expiry"))
        .collect();
    assert_eq!(
        series,
        [format!(
            "probe_ssl_earliest_cert_expiry{{probe=\"expiry\",region=\"test\",step=\"login\"}} {}",
            ca_expires().timestamp()
        )],
        "{text}"
    );
}
