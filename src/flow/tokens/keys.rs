//! A `jwt` token's algorithm and what signs it: the shared `secret` (HS256/384/512) or a
//! private key (RS*, PS*, ES*, EdDSA), read from PEM once when the probe is loaded and kept
//! parsed in the plan. aws-lc-rs signs (the crate's one crypto provider); rustls-pki-types reads
//! the PEM. A key that does not fit its algorithm is told apart here, for `check` to say why.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::{self, PemObject};

use super::primitives::Hash;

/// The smallest RSA key signed with: RFC 7518 3.3 asks 2048 bits, and smaller ones are
/// factorable.
pub const MIN_RSA_BITS: usize = 2048;

/// A JWS `alg` (RFC 7518 3.1, RFC 8037 for EdDSA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Hs(Hash),
    Rs(Hash),
    Ps(Hash),
    Es(Curve),
    EdDsa,
}

/// An ECDSA curve, with the hash its JWS algorithm fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    const ALL: [Curve; 3] = [Curve::P256, Curve::P384, Curve::P521];

    fn signing(self) -> &'static signature::EcdsaSigningAlgorithm {
        // JWS takes ECDSA signatures as r || s (RFC 7518 3.4), the `FIXED` form, not DER.
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            Curve::P521 => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }
}

impl Alg {
    /// The names `algorithm` takes for `jwt`, the HMAC ones first (SHA-1 has none).
    pub const NAMES: [(&'static str, Alg); 13] = [
        ("HS256", Alg::Hs(Hash::Sha256)),
        ("HS384", Alg::Hs(Hash::Sha384)),
        ("HS512", Alg::Hs(Hash::Sha512)),
        ("RS256", Alg::Rs(Hash::Sha256)),
        ("RS384", Alg::Rs(Hash::Sha384)),
        ("RS512", Alg::Rs(Hash::Sha512)),
        ("PS256", Alg::Ps(Hash::Sha256)),
        ("PS384", Alg::Ps(Hash::Sha384)),
        ("PS512", Alg::Ps(Hash::Sha512)),
        ("ES256", Alg::Es(Curve::P256)),
        ("ES384", Alg::Es(Curve::P384)),
        ("ES512", Alg::Es(Curve::P521)),
        ("EdDSA", Alg::EdDsa),
    ];

    pub fn name(self) -> &'static str {
        Alg::NAMES
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("HS256", |(n, _)| n)
    }

    /// Signed with a private key rather than the shared `secret`.
    pub fn keyed(self) -> bool {
        !matches!(self, Alg::Hs(_))
    }

    /// The key it signs with, as `check` names it.
    fn wants(self) -> &'static str {
        match self {
            Alg::Hs(_) => "the shared `secret`",
            Alg::Rs(_) | Alg::Ps(_) => "an RSA key",
            Alg::Es(Curve::P256) => "an EC P-256 key",
            Alg::Es(Curve::P384) => "an EC P-384 key",
            Alg::Es(Curve::P521) => "an EC P-521 key",
            Alg::EdDsa => "an Ed25519 key",
        }
    }
}

/// A parsed private key.
enum Key {
    Rsa(RsaKeyPair),
    Ec(Curve, EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl Key {
    /// What it is, for `check` ("an EC P-256 key") and the algorithms it would sign.
    fn describe(&self) -> (String, &'static str) {
        match self {
            Key::Rsa(k) => (
                format!("a {}-bit RSA key", k.public_modulus_len() * 8),
                "RS256, RS384, RS512, PS256, PS384 or PS512",
            ),
            Key::Ec(c, _) => (
                format!("an EC {} key", c.name()),
                match c {
                    Curve::P256 => "ES256",
                    Curve::P384 => "ES384",
                    Curve::P521 => "ES512",
                },
            ),
            Key::Ed25519(_) => ("an Ed25519 key".into(), "EdDSA"),
        }
    }
}

/// What signs a token: the shared secret, or a private key parsed once (shared by the plan's
/// clones).
#[derive(Clone)]
pub(crate) enum Signer {
    Hmac { hash: Hash, secret: String },
    Key { alg: Alg, key: Arc<KeyFor> },
}

/// A private key, checked to fit its algorithm.
pub(crate) struct KeyFor(Key);

impl fmt::Debug for Signer {
    /// The algorithm only: neither the secret nor the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alg = match self {
            Signer::Hmac { hash, .. } => Alg::Hs(*hash),
            Signer::Key { alg, .. } => *alg,
        };
        write!(f, "Signer({})", alg.name())
    }
}

impl Signer {
    pub fn alg(&self) -> Alg {
        match self {
            Signer::Hmac { hash, .. } => Alg::Hs(*hash),
            Signer::Key { alg, .. } => *alg,
        }
    }

    /// The JWS signature of `input`; `None` only when the crypto library fails to sign with a
    /// key it accepted at load (not seen: the token is then left unset).
    pub fn sign(&self, input: &[u8]) -> Option<Vec<u8>> {
        let rng = SystemRandom::new();
        match self {
            Signer::Hmac { hash, secret } => Some(hash.hmac(secret.as_bytes(), input)),
            Signer::Key { alg, key } => match (&key.0, alg) {
                (Key::Rsa(k), Alg::Rs(h) | Alg::Ps(h)) => {
                    let padding: &'static dyn signature::RsaEncoding = match (alg, h) {
                        (Alg::Rs(_), Hash::Sha384) => &signature::RSA_PKCS1_SHA384,
                        (Alg::Rs(_), Hash::Sha512) => &signature::RSA_PKCS1_SHA512,
                        (Alg::Rs(_), _) => &signature::RSA_PKCS1_SHA256,
                        // PSS with a salt as long as the hash (RFC 7518 3.5).
                        (_, Hash::Sha384) => &signature::RSA_PSS_SHA384,
                        (_, Hash::Sha512) => &signature::RSA_PSS_SHA512,
                        _ => &signature::RSA_PSS_SHA256,
                    };
                    let mut out = vec![0; k.public_modulus_len()];
                    k.sign(padding, &rng, input, &mut out).ok()?;
                    Some(out)
                }
                (Key::Ec(_, k), _) => Some(k.sign(&rng, input).ok()?.as_ref().to_vec()),
                (Key::Ed25519(k), _) => Some(k.sign(input).as_ref().to_vec()),
                // `load` pairs every key with its algorithm.
                _ => None,
            },
        }
    }
}

/// Reads the private key in `pem` (the text of `what`, a file's path or the key named) for
/// `alg`. The errors name `what`, never a byte of the key.
///
/// # Errors
/// Why it cannot sign `alg`: no private key in it (a certificate, a public or an encrypted
/// key), a key of another type or curve, an RSA key under [`MIN_RSA_BITS`].
pub(crate) fn load(pem: &[u8], alg: Alg, what: &str) -> Result<Arc<KeyFor>, String> {
    let der = match PrivateKeyDer::from_pem_slice(pem) {
        Ok(der) => der,
        Err(e) => return Err(no_private_key(pem, what, &e)),
    };
    let key = parse(&der).map_err(|e| match e {
        Parse::TooSmall => format!(
            "`{what}` is an RSA key under {MIN_RSA_BITS} bits, which is refused: RFC 7518 3.3 asks at least {MIN_RSA_BITS} (a shorter key can be factored, and servers refuse its tokens)"
        ),
        Parse::TooLarge => format!("`{what}` is an RSA key over 8192 bits, which is not read"),
        Parse::Unknown => format!(
            "`{what}` holds a private key of a type not read: RSA, EC P-256, P-384, P-521 and Ed25519 are"
        ),
    })?;
    let fits = match (&key, alg) {
        (Key::Rsa(_), Alg::Rs(_) | Alg::Ps(_)) | (Key::Ed25519(_), Alg::EdDsa) => true,
        (Key::Ec(c, _), Alg::Es(want)) => *c == want,
        _ => false,
    };
    if !fits {
        let (is, signs) = key.describe();
        return Err(format!(
            "`{what}` is {is}; `{}` signs with {} ({is} signs {signs})",
            alg.name(),
            alg.wants()
        ));
    }
    Ok(Arc::new(KeyFor(key)))
}

/// Why `pem` held no private key: what it holds instead, when that is a PEM section.
fn no_private_key(pem: &[u8], what: &str, e: &pem::Error) -> String {
    let read =
        "a PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY` PEM is read";
    // The labels only (`-----BEGIN CERTIFICATE-----`): never a byte of what follows them.
    let labels: Vec<String> = String::from_utf8_lossy(pem)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("-----BEGIN ")?.strip_suffix("-----"))
        .filter(|l| l.len() <= 40 && l.chars().all(|c| c.is_ascii_uppercase() || c == ' '))
        .map(str::to_string)
        .collect();
    if labels.iter().any(|l| l.contains("ENCRYPTED")) {
        return format!(
            "`{what}` holds an encrypted private key, which is not read: {read} (`openssl pkcs8 -topk8 -nocrypt` writes one)"
        );
    }
    if let Some(l) = labels.first() {
        let half = if l.contains("PUBLIC KEY") || l == "CERTIFICATE" {
            " (the server's half: the private key signs)"
        } else {
            ""
        };
        return format!("`{what}` holds a `{l}`, not a private key{half}: {read}");
    }
    let why = match e {
        pem::Error::Io(e) => format!(" ({e})"),
        // Only a missing or broken section: the PEM parser's own words could quote the text.
        _ => String::new(),
    };
    format!("`{what}` holds no PEM private key{why}: {read}")
}

enum Parse {
    TooSmall,
    TooLarge,
    Unknown,
}

/// The key in `der`, whatever its type: RSA, an EC curve, Ed25519.
fn parse(der: &PrivateKeyDer<'_>) -> Result<Key, Parse> {
    let rsa = |r: Result<RsaKeyPair, aws_lc_rs::error::KeyRejected>| match r {
        Ok(k) => Ok(Key::Rsa(k)),
        Err(e) if e.description_() == "TooSmall" => Err(Parse::TooSmall),
        Err(e) if e.description_() == "TooLarge" => Err(Parse::TooLarge),
        Err(_) => Err(Parse::Unknown),
    };
    let ec = |from: &dyn Fn(&'static signature::EcdsaSigningAlgorithm) -> Option<EcdsaKeyPair>| {
        Curve::ALL
            .iter()
            .find_map(|c| from(c.signing()).map(|k| Key::Ec(*c, k)))
            .ok_or(Parse::Unknown)
    };
    match der {
        PrivateKeyDer::Pkcs1(k) => rsa(RsaKeyPair::from_der(k.secret_pkcs1_der())),
        PrivateKeyDer::Sec1(k) => {
            ec(&|alg| EcdsaKeyPair::from_private_key_der(alg, k.secret_sec1_der()).ok())
        }
        PrivateKeyDer::Pkcs8(k) => {
            let bytes = k.secret_pkcs8_der();
            match rsa(RsaKeyPair::from_pkcs8(bytes)) {
                Err(Parse::Unknown) => {}
                done => return done,
            }
            if let Ok(k) = Ed25519KeyPair::from_pkcs8(bytes) {
                return Ok(Key::Ed25519(k));
            }
            ec(&|alg| EcdsaKeyPair::from_pkcs8(alg, bytes).ok())
        }
        _ => Err(Parse::Unknown),
    }
}
