//! https and wss against a real TLS server on 127.0.0.1 with a certificate made by the test:
//! untrusted it fails with reason `tls` (saying a private CA goes in `ca_file`); trusted through
//! the probe's `ca_file` it passes, and the `tls` phase is timed on its own; a certificate for
//! another name fails naming both names; SNI carries the host name (none for an IP).

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use joincanary::report::{FailureReason, Phase};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{self, TempConfig};

struct TlsServer {
    addr: String,
    cert_pem: String,
    /// The server name (SNI) each handshake asked for, `None` without one.
    sni: Arc<std::sync::Mutex<Vec<Option<String>>>>,
}

/// [`tls_server_for`] 127.0.0.1 and localhost.
async fn tls_server() -> TlsServer {
    tls_server_for(&["127.0.0.1", "localhost"]).await
}

/// Serves up to 8 TLS connections with a certificate for `names`: HTTP requests get a JSON
/// token, websocket upgrades get an echo of `joined`.
async fn tls_server_for(names: &[&str]) -> TlsServer {
    support::init();
    let certified =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let sni = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = sni.clone();
    let cert_der = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        for _ in 0..8 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let name = tls.get_ref().1.server_name().map(str::to_string);
                seen.lock().unwrap().push(name);
                let Some(buf) = crate::support::hostile::read_head(&mut tls).await else {
                    return;
                };
                let request = String::from_utf8_lossy(&buf).to_string();
                if request.to_ascii_lowercase().contains("upgrade: websocket") {
                    // The request head is consumed: answer the upgrade by hand, then speak frames.
                    let key = request
                        .lines()
                        .find_map(|l| {
                            l.split_once(':')
                                .filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-key"))
                                .map(|(_, v)| v.trim().to_string())
                        })
                        .unwrap_or_default();
                    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(
                        key.as_bytes(),
                    );
                    let response = format!(
                        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
                    );
                    if tls.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                        tls,
                        tokio_tungstenite::tungstenite::protocol::Role::Server,
                        None,
                    )
                    .await;
                    for _ in 0..4 {
                        match ws.next().await {
                            Some(Ok(Message::Text(_))) => {
                                let _ = ws.send(Message::text(r#"{"type":"joined"}"#)).await;
                            }
                            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                            _ => {}
                        }
                    }
                } else {
                    let body = r#"{"token":"t0k3n-over-tls"}"#;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    TlsServer {
        addr,
        cert_pem: certified.cert.pem(),
        sni,
    }
}

fn probe_text(addr: &str, ca_line: &str) -> String {
    format!(
        r#"
timeout = "5s"
{ca_line}
[[steps]]
name = "login"
kind = "http"
method = "POST"
url = "https://{addr}/api/login"
json = {{ username = "u" }}
extract = {{ token = {{ json = "/token" }} }}

"#
    ) + &support::ws_join_steps(
        &format!("wss://{addr}/ws?token={{{{token}}}}"),
        "join",
        "expect_json = { type = \"joined\" }\ntimeout = \"2s\"",
    )
}

#[tokio::test]
async fn untrusted_certificate_is_reason_tls_with_the_tls_phase_timed() {
    let server = tls_server().await;
    let probe = support::probe_from(&probe_text(&server.addr, ""), &[]);
    let run = crate::support::run_once(&probe).await;
    assert_eq!(run.failed_step.as_deref(), Some("login"));
    assert_eq!(run.reason, Some(FailureReason::Tls), "{run:#?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains("UnknownIssuer")
            && error
                .ends_with("(no trusted CA issued it: a private CA goes in the probe's `ca_file`)"),
        "{error}"
    );
    let login = &run.steps[0];
    assert!(login.phases.contains_key(&Phase::Connect) && login.phases.contains_key(&Phase::Tls));
    assert!(
        !login.phases.contains_key(&Phase::FirstByte),
        "no request was sent"
    );
}

#[tokio::test]
async fn trusted_through_ca_file_https_and_wss_pass_with_every_phase() {
    let server = tls_server().await;
    let cfg = TempConfig::new(
        "",
        &[("p.toml", &probe_text(&server.addr, "ca_file = \"ca.pem\""))],
    );
    std::fs::write(cfg.probe_path("ca.pem"), &server.cert_pem).unwrap();
    let plan = cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"));
    let run = crate::support::run_once(&plan.probes[0]).await;
    assert!(run.success, "{run:#?}");
    for phase in [Phase::Connect, Phase::Tls, Phase::FirstByte, Phase::Total] {
        assert!(
            run.steps[0].phases.contains_key(&phase),
            "login has {phase:?}"
        );
    }
    for phase in [Phase::Connect, Phase::Tls, Phase::Upgrade] {
        assert!(
            run.steps[1].phases.contains_key(&phase),
            "websocket has {phase:?}"
        );
    }
    assert!(run.steps[3].phases.contains_key(&Phase::RoundTrip));
    assert!(
        !serde_json::to_string(&run)
            .unwrap()
            .contains("t0k3n-over-tls")
    );
}

/// The probe of [`probe_text`] with the server's certificate trusted through `ca_file`.
async fn run_trusting(server: &TlsServer, addr: &str) -> joincanary::report::ProbeRun {
    let cfg = TempConfig::new("", &[("p.toml", &probe_text(addr, "ca_file = \"ca.pem\""))]);
    std::fs::write(cfg.probe_path("ca.pem"), &server.cert_pem).unwrap();
    let plan = cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"));
    crate::support::run_once(&plan.probes[0]).await
}

#[tokio::test]
async fn a_certificate_for_another_name_is_reason_tls_naming_both_names() {
    // A trusted CA, the wrong certificate: served for meet.example.com, reached as localhost.
    let server = tls_server_for(&["meet.example.com"]).await;
    let port = server.addr.rsplit(':').next().unwrap();
    let run = run_trusting(&server, &format!("localhost:{port}")).await;
    assert_eq!(run.failed_step.as_deref(), Some("login"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::Tls));
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("TLS handshake with `localhost` failed")
            && error.contains("not valid for name \"localhost\"")
            && error.contains("meet.example.com"),
        "{error}"
    );
}

#[tokio::test]
async fn https_and_wss_send_the_host_name_as_sni_and_an_ip_sends_none() {
    let server = tls_server().await;
    let port = server.addr.rsplit(':').next().unwrap();
    let run = run_trusting(&server, &format!("localhost:{port}")).await;
    assert!(run.success, "{run:#?}");
    let by_ip = run_trusting(&server, &server.addr).await;
    assert!(by_ip.success, "{by_ip:#?}");
    // RFC 6066: SNI is a host name; an IP literal is checked against the certificate's IP
    // entries and sends none.
    let localhost = Some("localhost".to_string());
    assert_eq!(
        server.sni.lock().unwrap().as_slice(),
        [localhost.clone(), localhost, None, None]
    );
}

#[test]
fn ca_file_that_is_not_pem_is_a_config_error() {
    let cfg = TempConfig::new(
        "",
        &[("p.toml", &probe_text("127.0.0.1:1", "ca_file = \"ca.pem\""))],
    );
    std::fs::write(cfg.probe_path("ca.pem"), "not a certificate").unwrap();
    let err = cfg.load(&[]).unwrap_err().to_string();
    assert!(
        err.contains("p.toml:3:11: ca_file: `") && err.contains("holds no PEM certificate"),
        "{err}"
    );
}
