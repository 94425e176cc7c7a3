//! `tls_config = { ca_file, cert_file, key_file, server_name }` on a pager, a heartbeat or a
//! fleet peer: how the prober's own requests (not a probe's) trust and present certificates, as
//! Prometheus' `tls_config` does for its Alertmanagers. An Alertmanager, webhook, SMTP relay or
//! peer prober inside the cluster is often served with a private CA, asks for a client
//! certificate (`client_auth_type: RequireAndVerifyClientCert`), or is reached by an address its
//! certificate does not name. A leaf: the parser, the `rustls` config it builds, the reqwest
//! builder every pager, heartbeat and peer client starts from, and the hint a failed handshake
//! gets.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;

use crate::diag::{Ctx, S};

/// The table as written. Paths are relative to the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsConfig {
    /// CAs (PEM) trusted beside the system's roots.
    pub ca_file: Option<S<String>>,
    /// A client certificate chain (PEM) offered when the server asks; with `key_file`.
    pub cert_file: Option<S<String>>,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<S<String>>,
    /// The name the server's certificate must carry, when it is not the URL's host (an
    /// Alertmanager reached by its pod address, a certificate for the service name).
    pub server_name: Option<S<String>>,
}

/// Validates `raw` (under the dotted key `key`, e.g. `pager[0].tls_config`) and builds the
/// client config, every problem reported to `ctx` with its place.
pub fn parse(
    ctx: &mut Ctx<'_>,
    raw: &S<RawTlsConfig>,
    key: &str,
) -> Option<Arc<rustls::ClientConfig>> {
    let base = ctx
        .file
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let t = raw.get_ref();
    // Any problem below is reported to `ctx`; the config is built only if none was.
    let errors_before = ctx.errors.len();
    let pem = |ctx: &mut Ctx<'_>, value: &Option<S<String>>, name: &str| {
        let value = value.as_ref()?;
        let k = format!("{key}.{name}");
        let rel = ctx.env_str(value, &k)?;
        let path = base.join(&rel);
        match crate::diag::file::read_bytes(&path) {
            Ok(bytes) => Some((bytes, path, value.span(), k)),
            Err(e) => {
                ctx.error(
                    Some(value.span()),
                    k,
                    format_args!("cannot read `{}`: {e}", path.display()),
                );
                None
            }
        }
    };
    let ca = pem(ctx, &t.ca_file, "ca_file");
    let identity = match (&t.cert_file, &t.key_file) {
        (Some(_), Some(_)) => Some((
            pem(ctx, &t.cert_file, "cert_file"),
            pem(ctx, &t.key_file, "key_file"),
        )),
        (Some(v), None) | (None, Some(v)) => {
            let name = if t.cert_file.is_some() {
                "cert_file"
            } else {
                "key_file"
            };
            ctx.error(
                Some(v.span()),
                format!("{key}.{name}"),
                "`cert_file` and `key_file` go together (a client certificate and its key)",
            );
            None
        }
        (None, None) => None,
    };
    let roots = match ca {
        Some(file) => certificates(ctx, file),
        None => Vec::new(),
    };
    let identity = match identity {
        Some((Some(cert), Some((key_bytes, key_path, key_span, kk)))) => {
            let chain = certificates(ctx, cert);
            // The key's bytes are never quoted: only where it is and what it lacks.
            match PrivateKeyDer::from_pem_slice(&key_bytes) {
                Ok(pk) => Some((chain, pk)),
                Err(_) => {
                    ctx.error(
                        Some(key_span),
                        kk,
                        format_args!(
                            "`{}` holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                            key_path.display()
                        ),
                    );
                    None
                }
            }
        }
        // Unreadable (said) or not written.
        _ => None,
    };
    let server_name = match &t.server_name {
        None => None,
        Some(v) => {
            let k = format!("{key}.server_name");
            let name = ctx.env_str(v, &k)?;
            match ServerName::try_from(name.clone()) {
                Ok(n) => Some(n.to_owned()),
                Err(_) => {
                    ctx.error(
                        Some(v.span()),
                        k,
                        format_args!("`{name}` is not a DNS name or an IP address"),
                    );
                    None
                }
            }
        }
    };
    if ctx.errors.len() > errors_before {
        return None;
    }
    match client_config(roots, identity, server_name) {
        Ok(c) => Some(c),
        Err(e) => {
            ctx.error(Some(raw.span()), key, e);
            None
        }
    }
}

/// A reqwest client builder speaking TLS as `tls` says (a `tls_config`), else with rustls and
/// the system's roots: what every pager and heartbeat client starts from.
pub fn http_builder(tls: Option<&Arc<rustls::ClientConfig>>) -> reqwest::ClientBuilder {
    match tls {
        Some(config) => reqwest::Client::builder()
            .tls_backend_preconfigured(rustls::ClientConfig::clone(config)),
        None => reqwest::Client::builder().tls_backend_rustls(),
    }
}

/// A failed TLS handshake with the key of `tls_config` that would mend it, as the operator
/// reading the error needs it (rustls names the cause in its own words); `whose` says where
/// the key goes (`the pager's`, `the peer's`).
pub fn hint(message: String, whose: &str) -> String {
    let hint = if message.contains("UnknownIssuer") {
        format!("a private CA goes in {whose} `tls_config.ca_file`")
    } else if message.contains("not valid for name") {
        format!("the name the certificate carries goes in {whose} `tls_config.server_name`")
    } else if message.contains("BadCertificate") || message.contains("CertificateRequired") {
        "the server refused the client certificate or wants one: `tls_config.cert_file` and `key_file`"
            .to_string()
    } else {
        return message;
    };
    format!("{message} ({hint})")
}

/// A file read for a key: its bytes, its path, where the key is written, the dotted key.
type ReadFile = (Vec<u8>, std::path::PathBuf, std::ops::Range<usize>, String);

/// The PEM certificates in `file`; none is an error at its key.
fn certificates(
    ctx: &mut Ctx<'_>,
    (bytes, path, span, key): ReadFile,
) -> Vec<CertificateDer<'static>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        ctx.error(
            Some(span),
            key,
            format_args!("`{}` holds no PEM certificate", path.display()),
        );
    }
    certs
}

/// The system's roots plus `extra`, the client certificate if any, and the server's name
/// checked as `server_name` when set. No ALPN: the prober's own clients speak HTTP/1.1 (or
/// SMTP), which needs none.
pub fn client_config(
    extra: Vec<CertificateDer<'static>>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    server_name: Option<ServerName<'static>>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = crate::net::root_store(extra);
    let webpki = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| format!("no trusted CA to verify servers with: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match server_name {
        Some(name) => Arc::new(NamedVerifier {
            inner: webpki,
            name,
        }),
        None => webpki,
    };
    let builder = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the client certificate and key do not go together: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Verifies the server's certificate fully (chain, validity, signatures) but for `name`
/// instead of the host the connection was made to.
#[derive(Debug)]
struct NamedVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
