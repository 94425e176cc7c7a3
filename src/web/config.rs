//! `--web.config.file`, in the Prometheus exporter-toolkit format: read and checked
//! ([`WebConfig::load`]: unknown keys are errors, each placed at its line), the listener's TLS
//! config, and basic auth with the configured headers on every response ([`WebConfig::protect`]).
//! As in exporter-toolkit, every path is behind the password once users are configured (health
//! checks included).
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # relative to this file
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # optional, with client_ca_file
//!   client_ca_file: clients.pem
//!   min_version: TLS12             # TLS12 (default) or TLS13
//! http_server_config:
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! basic_auth_users:
//!   alice: $2y$10$...              # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
/// Verified (user, password) pairs remembered, so a scrape every 15 s does not pay bcrypt
/// each time; a wrong password is never remembered (each guess costs a full bcrypt).
const AUTH_CACHE: usize = 64;
/// The highest bcrypt cost a hash may have. Each guess at a password costs one full bcrypt of
/// the hash's cost, and a cost of 31 is days of CPU per request (and per `check`): 14 is a
/// second or so, sixteen times the cost 10 that `htpasswd -nBC 10` and exporter-toolkit's
/// documentation use.
pub const MAX_BCRYPT_COST: u32 = 14;
/// Password checks run at once: a flood of wrong passwords (never remembered) keeps at most
/// this many cores busy, so the probes keep the rest; a remembered pair needs none.
const BCRYPT_AT_ONCE: usize = 1;

/// Compared against when the user is unknown, so an unknown user takes as long as a wrong
/// password (no user enumeration by timing), as exporter-toolkit does.
fn dummy_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash("joincanary-unknown-user", 10).unwrap_or_default())
        .clone()
}

/// Why the web config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: crate::diag::file::FileError,
    },
    /// `web.yml:3:3: basic_auth_users.alice: not a bcrypt hash …`, as every config error
    /// reads (line 0: no position found).
    #[error("{}{}: {message}", path.display(), at(*line, *column))]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

fn at(line: usize, column: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}:{column}")
    }
}

/// Where the key a message opens with (`tls_server_config.cert_file: …`) is written in the
/// YAML `text`: each part of the path looked for below the one before it, deeper indented.
/// The deepest part found, or (0, 0); the file is the small block-style YAML of
/// exporter-toolkit, not any YAML.
fn locate_key(text: &str, message: &str) -> (usize, usize) {
    let Some((path, _)) = message.split_once(": ") else {
        return (0, 0);
    };
    let mut parts = path.split('.').peekable();
    let (mut found, mut indent) = ((0, 0), None::<usize>);
    for (n, line) in text.lines().enumerate() {
        let Some(part) = parts.peek() else { break };
        let body = line.trim_start();
        let depth = line.len() - body.len();
        let key = body
            .split(':')
            .next()
            .unwrap_or("")
            .trim_matches(['"', '\'']);
        if indent.is_none_or(|i| depth > i) && body.contains(':') && key == *part {
            found = (n + 1, depth + 1);
            indent = Some(depth);
            parts.next();
        }
    }
    found
}

/// The parser's "unknown field `X`, expected …" (after the table's path, `tls_server_config:
/// unknown …`, when it is in one) keyed by the field itself, as every config error is, with the
/// accepted key it is a slip from: `tls_server_config.cipher_suite: unknown field
/// `cipher_suite` (did you mean `cipher_suites`?), expected …`. Any other message as it is.
fn keyed(message: &str) -> String {
    let (table, rest) = match message.split_once(": unknown field `") {
        Some((table, rest)) => (Some(table), rest),
        None => match message.strip_prefix("unknown field `") {
            Some(rest) => (None, rest),
            None => return message.to_string(),
        },
    };
    let Some((field, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let key = table.map_or_else(|| field.to_string(), |t| format!("{t}.{field}"));
    format!(
        "{key}: unknown field `{field}`{}{expected}",
        crate::diag::did_you_mean(field, expected)
    )
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// A loaded web config: what the listener and every response need.
#[derive(Clone)]
pub struct WebConfig {
    /// The TLS the listener speaks, shared by every clone: [`WebConfig::refresh_tls`] swaps in
    /// a renewed certificate and each new connection takes the one current then.
    tls: Option<Arc<std::sync::RwLock<Served>>>,
    /// The file this was read from and every file that read (the certificate, key and client
    /// CA files): what `run` watches for a renewed certificate.
    files: Arc<Vec<PathBuf>>,
    users: Arc<BTreeMap<String, String>>,
    headers: Arc<Vec<(HeaderName, HeaderValue)>>,
    verified: Arc<Mutex<HashSet<(String, String)>>>,
    /// [`BCRYPT_AT_ONCE`] permits, shared by every connection.
    checking: Arc<tokio::sync::Semaphore>,
}

/// The listener's TLS config and the certificate it presents (the first in `cert_file`: what
/// `joincanary healthcheck` expects to see).
struct Served {
    config: Arc<rustls::ServerConfig>,
    leaf: rustls::pki_types::CertificateDer<'static>,
}

impl Default for WebConfig {
    fn default() -> WebConfig {
        WebConfig {
            tls: None,
            files: Arc::default(),
            users: Arc::default(),
            headers: Arc::default(),
            verified: Arc::default(),
            checking: Arc::new(tokio::sync::Semaphore::new(BCRYPT_AT_ONCE)),
        }
    }
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes.
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.len())
            .finish()
    }
}

impl WebConfig {
    /// Reads and checks `path`: YAML, known keys only, readable certificate and key, valid
    /// bcrypt hashes.
    ///
    /// # Errors
    /// The first problem, naming the file.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let (loaded, files) = crate::diag::file::recording_reads(|| Self::read(path));
        let mut web = loaded?;
        web.files = Arc::new(files);
        Ok(web)
    }

    fn read(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = crate::diag::file::read_text(path).map_err(|source| WebConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| {
            let (line, column) = locate_key(&text, &message);
            WebConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        // An empty file is a valid config that changes nothing, as in exporter-toolkit.
        let raw: RawWebConfig = if text.trim().is_empty() {
            RawWebConfig::default()
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| {
                let message = e.to_string();
                match e.location() {
                    // The parser's own position, moved to the front as in every config error.
                    Some(l) => WebConfigError::Invalid {
                        path: path.to_path_buf(),
                        line: l.line(),
                        column: l.column(),
                        message: keyed(
                            message
                                .strip_suffix(&format!(
                                    " at line {} column {}",
                                    l.line(),
                                    l.column()
                                ))
                                .unwrap_or(&message),
                        ),
                    },
                    None => invalid(message),
                }
            })?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = match raw.tls_server_config {
            Some(t) => {
                let (config, leaf) = tls_config(&t, base).map_err(invalid)?;
                Some(Arc::new(std::sync::RwLock::new(Served {
                    config: Arc::new(config),
                    leaf,
                })))
            }
            None => None,
        };
        for (user, hash) in &raw.basic_auth_users {
            if user.contains(':') || user.is_empty() {
                return Err(invalid(format!(
                    "basic_auth_users: `{user}` is not a user name (empty or with `:`)"
                )));
            }
            // Read, not run: a check of the hash costs what a login does.
            let Ok(parts) = hash.parse::<bcrypt::HashParts>() else {
                return Err(invalid(format!(
                    "basic_auth_users.{user}: not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
                )));
            };
            if parts.get_cost() > MAX_BCRYPT_COST {
                return Err(invalid(format!(
                    "basic_auth_users.{user}: bcrypt cost {} is over {MAX_BCRYPT_COST}: every \
                     request with a wrong password would cost that much CPU (make one with \
                     `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)",
                    parts.get_cost()
                )));
            }
        }
        let mut headers = Vec::new();
        for (name, value) in raw
            .http_server_config
            .map(|h| h.headers)
            .unwrap_or_default()
        {
            let n = HeaderName::try_from(name.as_str()).map_err(|_| {
                invalid(format!(
                    "http_server_config.headers.{name}: is not a header name"
                ))
            })?;
            let v = HeaderValue::try_from(value.as_str()).map_err(|_| {
                invalid(format!(
                    "http_server_config.headers.{name}: not a header value"
                ))
            })?;
            headers.push((n, v));
        }
        Ok(WebConfig {
            tls,
            users: Arc::new(raw.basic_auth_users),
            headers: Arc::new(headers),
            ..WebConfig::default()
        })
    }

    /// Whether the listener speaks TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    fn served<T>(&self, f: impl FnOnce(&Served) -> T) -> Option<T> {
        let cell = self.tls.as_ref()?;
        Some(f(&cell
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)))
    }

    /// The listener's TLS config now, when it speaks TLS: what a new connection gets.
    pub(super) fn server_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.served(|s| s.config.clone())
    }

    /// The certificate the listener presents now, when it speaks TLS.
    pub fn served_certificate(&self) -> Option<rustls::pki_types::CertificateDer<'static>> {
        self.served(|s| s.leaf.clone())
    }

    /// The web config file and the certificate, key and client CA files it names, as last
    /// read: where a renewed certificate shows.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Reads the web config file again and, when the listener speaks TLS, takes its TLS
    /// settings, certificate, key and client CAs for every new connection from now on (open
    /// connections keep theirs), as exporter-toolkit reads them afresh: a certificate renewed
    /// on disk is served without a restart. `Ok(true)` when the served certificate changed.
    /// Basic auth users and headers are read at start-up only.
    ///
    /// # Errors
    /// The file is now unusable, or no longer turns TLS on (the listener cannot stop speaking
    /// it); the listener keeps what it had.
    pub fn refresh_tls(&mut self) -> Result<bool, WebConfigError> {
        let Some(path) = self.files.first().cloned() else {
            return Ok(false);
        };
        let Some(cell) = self.tls.clone() else {
            return Ok(false);
        };
        let fresh = WebConfig::load(&path)?;
        let Some(served) = fresh.tls.as_ref().map(|c| {
            let s = c.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            Served {
                config: s.config.clone(),
                leaf: s.leaf.clone(),
            }
        }) else {
            return Err(WebConfigError::Invalid {
                path,
                line: 0,
                column: 0,
                message: "tls_server_config: the listener speaks TLS; turning it off takes a \
                          restart"
                    .into(),
            });
        };
        self.files = fresh.files;
        let mut current = cell
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = current.leaf != served.leaf;
        *current = served;
        Ok(changed)
    }

    /// Whether requests need a user and password.
    pub fn auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// `app` behind basic auth (when users are configured) and with the configured headers.
    pub fn protect(&self, app: Router) -> Router {
        let web = self.clone();
        app.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let web = web.clone();
                async move { web.handle(req, next).await }
            },
        ))
    }

    async fn handle(&self, req: Request, next: Next) -> Response {
        let credentials = basic_credentials(&req);
        let mut response = if self.auth() && !self.authorized(credentials).await {
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic")],
                "Unauthorized\n",
            )
                .into_response()
        } else {
            next.run(req).await
        };
        for (name, value) in self.headers.iter() {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response
    }

    async fn authorized(&self, credentials: Option<(String, String)>) -> bool {
        let Some((user, password)) = credentials else {
            return false;
        };
        let key = (user.clone(), password.clone());
        if self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return true;
        }
        let hash = self.users.get(&user).cloned().unwrap_or_else(dummy_hash);
        let known = self.users.contains_key(&user);
        // bcrypt is deliberately slow (tens of ms): off the async workers, and one at a time
        // (the permit goes with the check, so a client that hangs up does not free it early).
        let Ok(permit) = self.checking.clone().acquire_owned().await else {
            return false;
        };
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            bcrypt::verify(password, &hash)
        })
        .await
        .is_ok_and(|r| r.unwrap_or(false))
            && known;
        if ok {
            let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= AUTH_CACHE {
                cache.clear();
            }
            cache.insert(key);
        }
        ok
    }
}

/// `Authorization: Basic base64(user:password)`.
fn basic_credentials(req: &Request) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn read_pem(base: &Path, file: &str, what: &str) -> Result<Vec<u8>, String> {
    let path = base.join(file);
    crate::diag::file::read_bytes(&path).map_err(|e| {
        format!(
            "tls_server_config.{what}: cannot read {}: {e}",
            path.display()
        )
    })
}

/// The server's TLS config and the certificate it presents.
fn tls_config(
    t: &RawTls,
    base: &Path,
) -> Result<
    (
        rustls::ServerConfig,
        rustls::pki_types::CertificateDer<'static>,
    ),
    String,
> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert_file), Some(key_file)) = (&t.cert_file, &t.key_file) else {
        return Err("tls_server_config: cert_file and key_file are both required".into());
    };
    let cert_pem = read_pem(base, cert_file, "cert_file")?;
    let key_pem = read_pem(base, key_file, "key_file")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_server_config.cert_file: {e}"))?;
    let Some(leaf) = certs.first().cloned() else {
        return Err("tls_server_config.cert_file: no certificate in it".into());
    };
    // rustls-pki-types says "no items found" for a file without a key block: name what is
    // missing instead.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            "tls_server_config.key_file: no PEM private key in it (PKCS#8, PKCS#1 or SEC1)"
                .to_string()
        }
        e => format!("tls_server_config.key_file: {e}"),
    })?;
    let version = |v: &Option<String>, key: &str| -> Result<Option<u8>, String> {
        match v.as_deref() {
            None | Some("") => Ok(None),
            Some("TLS12") => Ok(Some(12)),
            Some("TLS13") => Ok(Some(13)),
            Some(other) => Err(format!(
                "tls_server_config.{key}: `{other}` is not supported (TLS12 or TLS13)"
            )),
        }
    };
    let min = version(&t.min_version, "min_version")?.unwrap_or(12);
    let max = version(&t.max_version, "max_version")?.unwrap_or(13);
    if min > max {
        return Err("tls_server_config.min_version: is above max_version".into());
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let client_auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match client_auth {
        "NoClientCert" => builder.with_no_client_auth(),
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let Some(ca_file) = &t.client_ca_file else {
                return Err(format!(
                    "tls_server_config.client_ca_file: is required with client_auth_type {client_auth}"
                ));
            };
            let ca_pem = read_pem(base, ca_file, "client_ca_file")?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&ca_pem) {
                let cert = cert.map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if client_auth == "VerifyClientCertIfGiven" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?,
            )
        }
        other => {
            return Err(format!(
                "tls_server_config.client_auth_type: `{other}` is not supported (NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)"
            ));
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls_server_config: certificate and key do not match: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, leaf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_placed_at_its_key() {
        let text = "tls_server_config:\n  cert_file: a\n  key_file: b\nbasic_auth_users:\n  \"bob\": x\n  alice.b: y\n";
        assert_eq!(
            locate_key(text, "tls_server_config.key_file: cannot read"),
            (3, 3)
        );
        assert_eq!(
            locate_key(text, "basic_auth_users.bob: not a bcrypt hash"),
            (5, 3)
        );
        // A part the path cannot tell apart (a user named `alice.b`): the deepest found.
        assert_eq!(
            locate_key(text, "basic_auth_users.alice.b: not a bcrypt hash"),
            (4, 1)
        );
        assert_eq!(locate_key(text, "no key here"), (0, 0));
        let e = WebConfigError::Invalid {
            path: "w.yml".into(),
            line: 5,
            column: 3,
            message: "basic_auth_users.bob: not a bcrypt hash".into(),
        };
        assert_eq!(
            e.to_string(),
            "w.yml:5:3: basic_auth_users.bob: not a bcrypt hash"
        );
    }

    /// Password checks take turns: while one holds the only permit, a wrong guess waits
    /// for it rather than running a bcrypt of its own (a flood of guesses keeps one core
    /// busy, not every core the probes need).
    #[tokio::test]
    async fn password_checks_take_turns() {
        let web = WebConfig {
            users: Arc::new(BTreeMap::from([(
                "alice".to_string(),
                bcrypt::hash("right", 4).unwrap(),
            )])),
            ..WebConfig::default()
        };
        let held = web.checking.clone().acquire_owned().await.unwrap();
        let guess = || web.authorized(Some(("alice".into(), "wrong".into())));
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(500), guess())
                .await
                .is_err(),
            "a check ran beside one in progress"
        );
        drop(held);
        assert!(!guess().await);
        assert!(web.authorized(Some(("alice".into(), "right".into()))).await);
    }

    #[test]
    fn dummy_hash_is_a_bcrypt_hash() {
        assert!(bcrypt::verify("x", &dummy_hash()).is_ok_and(|ok| !ok));
    }
}
