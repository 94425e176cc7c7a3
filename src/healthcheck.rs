//! `joincanary healthcheck`, the container's HEALTHCHECK: asks the `joincanary run` on this host
//! for `/healthz` the way it is configured to answer — on the address it binds (an unspecified
//! one becomes loopback), over TLS when the web config serves TLS, with basic auth when given a
//! user and password — all under one short deadline, so the image needs no curl and the check
//! works with any mounted config and `--web.config.file`.
//!
//! TLS trusts exactly the certificate `run` presents (the first one in the web config's
//! `cert_file`, the same file `run` reads), so no CA or host name has to be configured for a
//! connection to 127.0.0.1; the handshake's signatures are still checked against it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt as _;
use rustls::pki_types::CertificateDer;

/// What to check.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where `run` listens (as configured; [`loopback`] makes it connectable).
    pub addr: SocketAddr,
    /// The certificate `run` presents, when it speaks TLS.
    pub pinned: Option<CertificateDer<'static>>,
    /// `(user, password)` for basic auth.
    pub credentials: Option<(String, String)>,
    /// Whether the web config asks for basic auth (to explain a 401).
    pub auth_required: bool,
}

/// A healthy answer.
#[derive(Debug)]
pub struct Healthy {
    pub url: String,
    pub took: Duration,
}

/// Why the service is not healthy (or cannot be asked).
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("{url}: no answer within {}", crate::report::human_duration(*deadline))]
    Timeout { url: String, deadline: Duration },
    #[error("{url}: cannot connect: {cause}")]
    Connect { url: String, cause: String },
    #[error("{url}: TLS failed: {cause}")]
    Tls { url: String, cause: String },
    #[error("{url}: HTTP failed: {cause}")]
    Http { url: String, cause: String },
    #[error("{url}: answered {status}{hint}")]
    Status {
        url: String,
        status: u16,
        hint: String,
    },
}

/// The address to connect to for a listener bound to `listen`: `0.0.0.0` and `[::]` accept on
/// loopback too, so the check asks there.
pub fn loopback(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Asks `/healthz` once, everything (connect, TLS, request, answer) within `deadline`.
///
/// # Errors
/// Anything but a 200 within the deadline, saying which layer failed.
pub async fn check(target: &Target, deadline: Duration) -> Result<Healthy, HealthError> {
    let addr = loopback(target.addr);
    let scheme = if target.pinned.is_some() {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{addr}/healthz");
    let started = Instant::now();
    match tokio::time::timeout(deadline, ask(target, addr, &url)).await {
        Ok(Ok(())) => Ok(Healthy {
            url,
            took: started.elapsed(),
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(HealthError::Timeout { url, deadline }),
    }
}

async fn ask(target: &Target, addr: SocketAddr, url: &str) -> Result<(), HealthError> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| HealthError::Connect {
            url: url.to_string(),
            cause: e.to_string(),
        })?;
    match &target.pinned {
        None => request(tcp, target, addr, url).await,
        Some(cert) => {
            let verifier = Arc::new(Pinned::new(cert.clone()));
            let config = client_config(verifier.clone()).map_err(|e| HealthError::Tls {
                url: url.to_string(),
                cause: e.to_string(),
            })?;
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let tls = connector.connect(name, tcp).await.map_err(|e| {
                let cause = if verifier.mismatch.load(Ordering::Relaxed) {
                    "the server presents a certificate other than the one in the web config's cert_file (replaced since `run` started? it reads the file at start-up)".to_string()
                } else {
                    e.to_string()
                };
                HealthError::Tls {
                    url: url.to_string(),
                    cause,
                }
            })?;
            request(tls, target, addr, url).await
        }
    }
}

/// `GET /healthz` on an open connection; 200 is healthy.
async fn request<I>(io: I, target: &Target, addr: SocketAddr, url: &str) -> Result<(), HealthError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper::header;
    let http = |e: &dyn std::fmt::Display| HealthError::Http {
        url: url.to_string(),
        cause: e.to_string(),
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| http(&e))?;
    // Ends with the request (or with the deadline dropping this future).
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut builder = hyper::Request::get("/healthz")
        .header(header::HOST, addr.to_string())
        .header(
            header::USER_AGENT,
            concat!("joincanary/", env!("CARGO_PKG_VERSION"), " (healthcheck)"),
        );
    if let Some((user, password)) = &target.credentials {
        let token = crate::net::basic_credentials(user, password);
        builder = builder.header(header::AUTHORIZATION, format!("Basic {token}"));
    }
    let req = builder
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| http(&e))?;
    let answer = sender.send_request(req).await;
    let result = match answer {
        Err(e) => Err(http(&e)),
        Ok(response) => {
            let status = response.status().as_u16();
            // Our own server's few bytes; bounded all the same.
            let body = http_body_util::Limited::new(response.into_body(), 1024)
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
                .unwrap_or_default();
            if status == 200 {
                Ok(())
            } else {
                let hint = match status {
                    401 if target.credentials.is_none() && target.auth_required => {
                        ": the web config asks for basic auth; give the check a user and password (JOINCANARY_HEALTHCHECK_USER and JOINCANARY_HEALTHCHECK_PASSWORD_FILE)".to_string()
                    }
                    401 => ": the user or password was not accepted".to_string(),
                    _ if body.is_empty() => String::new(),
                    _ => format!(": {}", body.chars().take(200).collect::<String>()),
                };
                Err(HealthError::Status {
                    url: url.to_string(),
                    status,
                    hint,
                })
            }
        }
    };
    driver.abort();
    result
}

fn client_config(verifier: Arc<Pinned>) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(verifier.provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Trusts exactly one certificate: the one `run` was started with.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// Set when the server presented another certificate, to say so plainly.
    mismatch: AtomicBool,
}

impl Pinned {
    fn new(cert: CertificateDer<'static>) -> Pinned {
        Pinned {
            cert,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            mismatch: AtomicBool::new(false),
        }
    }
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            self.mismatch.store(true, Ordering::Relaxed);
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_asked_on_loopback() {
        for (listen, asked) in [
            ("0.0.0.0:9464", "127.0.0.1:9464"),
            ("[::]:9464", "[::1]:9464"),
            ("10.1.2.3:9464", "10.1.2.3:9464"),
            ("127.0.0.1:1", "127.0.0.1:1"),
        ] {
            assert_eq!(loopback(listen.parse().unwrap()).to_string(), asked);
        }
    }
}
