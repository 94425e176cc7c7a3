//! Minting: the HMAC and hash primitives (aws-lc-rs, the one crypto provider), a JWT signed
//! with HS256/384/512, and each token kind's value for one run from the run's variables and
//! its start time.

use std::collections::HashMap;
use std::time::Duration;

use aws_lc_rs::{digest, hmac};
use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::template::{MissingVar, Template, render_json};

/// The hash under an HMAC or a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// The names `algorithm` takes for `hmac` and `digest`.
    pub const NAMES: [(&'static str, Hash); 4] = [
        ("sha1", Hash::Sha1),
        ("sha256", Hash::Sha256),
        ("sha384", Hash::Sha384),
        ("sha512", Hash::Sha512),
    ];
    /// The names `algorithm` takes for `jwt` (RFC 7518 3.2; SHA-1 has none).
    pub const JWT_NAMES: [(&'static str, Hash); 3] = [
        ("HS256", Hash::Sha256),
        ("HS384", Hash::Sha384),
        ("HS512", Hash::Sha512),
    ];

    /// HMAC of `message` keyed with `key`.
    pub fn hmac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        let algorithm = match self {
            // Janus' signed tokens and TURN REST credentials are HMAC-SHA1: the platform picks.
            Hash::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Hash::Sha256 => hmac::HMAC_SHA256,
            Hash::Sha384 => hmac::HMAC_SHA384,
            Hash::Sha512 => hmac::HMAC_SHA512,
        };
        hmac::sign(&hmac::Key::new(algorithm, key), message)
            .as_ref()
            .to_vec()
    }

    /// The hash of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        let algorithm = match self {
            // BigBlueButton's API checksum is SHA-1 unless the server is told otherwise.
            Hash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha384 => &digest::SHA384,
            Hash::Sha512 => &digest::SHA512,
        };
        digest::digest(algorithm, data).as_ref().to_vec()
    }

    fn jwt_name(self) -> &'static str {
        Hash::JWT_NAMES
            .iter()
            .find(|(_, h)| *h == self)
            .map_or("HS256", |(n, _)| n)
    }
}

/// How a signature or hash is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Lower-case hex (BigBlueButton's checksum).
    Hex,
    /// Standard base64 with padding (Janus' signed token, TURN REST).
    Base64,
    /// URL-safe base64 without padding (RFC 4648 5, as in a JWT).
    Base64Url,
}

impl Encoding {
    pub const NAMES: [(&'static str, Encoding); 3] = [
        ("hex", Encoding::Hex),
        ("base64", Encoding::Base64),
        ("base64url", Encoding::Base64Url),
    ];

    pub fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Hex => hex::encode(bytes),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
            Encoding::Base64Url => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        }
    }
}

/// A compact JWS (RFC 7515) signed with HMAC: `header` gets `alg` (and `typ: JWT` unless it
/// has one), then `base64url(header).base64url(claims).base64url(HMAC(secret, both))`.
pub fn jwt(
    hash: Hash,
    secret: &[u8],
    header: &serde_json::Map<String, serde_json::Value>,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> String {
    let mut header = header.clone();
    header.insert("alg".into(), hash.jwt_name().into());
    header.entry("typ").or_insert_with(|| "JWT".into());
    let part = |map: &serde_json::Map<String, serde_json::Value>| {
        // A map of JSON values always serialises; the empty object is never reached.
        Encoding::Base64Url.encode(&serde_json::to_vec(map).unwrap_or_else(|_| b"{}".to_vec()))
    };
    let signing_input = format!("{}.{}", part(&header), part(claims));
    let signature = Encoding::Base64Url.encode(&hash.hmac(secret, signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

/// What a token kind computes, validated (see `super::TokenPlan`).
#[derive(Clone)]
pub(crate) enum Spec {
    Jwt {
        hash: Hash,
        secret: String,
        ttl: Duration,
        /// String leaves are templates.
        claims: serde_json::Map<String, serde_json::Value>,
        header: serde_json::Map<String, serde_json::Value>,
    },
    Hmac {
        hash: Hash,
        secret: String,
        ttl: Duration,
        message: Template,
        encoding: Encoding,
        /// What `{{NAME}}` becomes; `None`: the signature.
        value: Option<Template>,
    },
    Digest {
        hash: Hash,
        input: Template,
        encoding: Encoding,
    },
}

/// One token of one run: its value, and what of it is secret beyond the value (a JWT's
/// signature, which a server may quote alone).
pub(crate) struct Minted {
    pub value: String,
    pub also_secret: Option<String>,
}

/// Unix seconds `ttl` after `now` (a ttl is at most a day: no overflow).
fn expires(now: DateTime<Utc>, ttl: Duration) -> i64 {
    now.timestamp()
        .saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
}

impl Spec {
    /// The token for a run that started at `now` with `vars` (built-ins and `[variables]`).
    ///
    /// # Errors
    /// A template read a variable the run lacks (load-time checks make that unreachable).
    pub fn mint(
        &self,
        vars: &HashMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<Minted, MissingVar> {
        match self {
            Spec::Jwt {
                hash,
                secret,
                ttl,
                claims,
                header,
            } => {
                let typed = HashMap::new();
                let render = |map: &serde_json::Map<String, serde_json::Value>| match render_json(
                    &serde_json::Value::Object(map.clone()),
                    vars,
                    &typed,
                )? {
                    serde_json::Value::Object(m) => Ok(m),
                    _ => Ok(serde_json::Map::new()),
                };
                let mut claims = render(claims)?;
                let header = render(header)?;
                // The run's clock, unless the claims set their own.
                let iat = now.timestamp();
                claims.entry("iat").or_insert_with(|| iat.into());
                claims.entry("nbf").or_insert_with(|| iat.into());
                claims
                    .entry("exp")
                    .or_insert_with(|| expires(now, *ttl).into());
                let value = jwt(*hash, secret.as_bytes(), &header, &claims);
                let signature = value.rsplit('.').next().map(str::to_string);
                Ok(Minted {
                    value,
                    also_secret: signature,
                })
            }
            Spec::Hmac {
                hash,
                secret,
                ttl,
                message,
                encoding,
                value,
            } => {
                let mut vars = vars.clone();
                vars.insert("expires".into(), expires(now, *ttl).to_string());
                let text = message.render(&vars)?;
                let signature = encoding.encode(&hash.hmac(secret.as_bytes(), text.as_bytes()));
                let Some(value) = value else {
                    return Ok(Minted {
                        value: signature,
                        also_secret: None,
                    });
                };
                vars.insert("message".into(), text);
                vars.insert("signature".into(), signature.clone());
                Ok(Minted {
                    value: value.render(&vars)?,
                    also_secret: Some(signature),
                })
            }
            Spec::Digest {
                hash,
                input,
                encoding,
            } => Ok(Minted {
                value: encoding.encode(&hash.digest(input.render(vars)?.as_bytes())),
                also_secret: None,
            }),
        }
    }
}
