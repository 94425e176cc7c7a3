//! The HMAC and hash primitives under every token kind (aws-lc-rs, the one crypto provider),
//! and how a signature or hash is written.

use aws_lc_rs::{digest, hmac};
use base64::Engine as _;

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
