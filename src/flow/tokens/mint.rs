//! Minting: a JWT signed as `keys.rs` signs (HMAC or a private key), and each token kind's
//! value for one run from the run's variables and its start time.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::keys::Signer;
use super::primitives::{Encoding, Hash};
use crate::template::{MissingVar, Template, render_json};

/// A compact JWS (RFC 7515): `header` gets `alg` (and `typ: JWT` unless it has one), then
/// `base64url(header).base64url(claims).base64url(signature of both)`. `None` when the key
/// fails to sign (see [`Signer::sign`]).
pub(crate) fn jwt(
    signer: &Signer,
    header: &serde_json::Map<String, serde_json::Value>,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Option<String> {
    let mut header = header.clone();
    header.insert("alg".into(), signer.alg().name().into());
    header.entry("typ").or_insert_with(|| "JWT".into());
    let part = |map: &serde_json::Map<String, serde_json::Value>| {
        // A map of JSON values always serialises; the empty object is never reached.
        Encoding::Base64Url.encode(&serde_json::to_vec(map).unwrap_or_else(|_| b"{}".to_vec()))
    };
    let signing_input = format!("{}.{}", part(&header), part(claims));
    let signature = Encoding::Base64Url.encode(&signer.sign(signing_input.as_bytes())?);
    Some(format!("{signing_input}.{signature}"))
}

/// Why a token was not minted (both unreachable after `check`: the token is left unset, and
/// the step reading it fails saying so).
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error(transparent)]
    Missing(#[from] MissingVar),
    /// The crypto library refused to sign with a key it parsed at load.
    #[error("the private key failed to sign")]
    Unsigned,
}

/// What a token kind computes, validated (see `super::TokenPlan`).
#[derive(Clone)]
pub(crate) enum Spec {
    Jwt {
        signer: Signer,
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
    ) -> Result<Minted, MintError> {
        match self {
            Spec::Jwt {
                signer,
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
                    serde_json::Value::Object(m) => Ok::<_, MissingVar>(m),
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
                let value = jwt(signer, &header, &claims).ok_or(MintError::Unsigned)?;
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
