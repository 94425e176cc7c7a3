//! `[tokens.NAME]`: credentials minted afresh for every run (a LiveKit or Jitsi JWT, a Janus
//! signed token, a BigBlueButton checksum) from a secret the probe holds, so a probe never
//! carries a static token that expires and pages for the wrong reason. Each is computed once
//! per run, after `[variables]`, and read by the steps as `{{NAME}}`; every value is a secret.
//! Here the table and its checks; `keys.rs` the signing keys (read once, at load), `mint.rs`
//! the computing, `primitives.rs` the HMAC, hashes and encodings.

mod keys;
mod mint;
mod primitives;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::{Ctx, S, did_you_mean, did_you_mean_among};
use crate::template::{BUILTINS, Template};

use keys::Signer;
pub use keys::{Alg, Curve, MIN_RSA_BITS};
pub use mint::MintError;
use mint::{Minted, Spec};
pub use primitives::{Encoding, Hash};

/// A token's `ttl` when it sets none: long enough for a slow run, short enough that a leaked
/// one is soon worthless.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);
/// The shortest and longest `ttl`: a token must outlive the run that mints it, and a canary has
/// no use for one that outlives a day.
pub const MIN_TTL: Duration = Duration::from_secs(1);
pub const MAX_TTL: Duration = Duration::from_secs(86_400);

/// The names an `hmac` token's own templates have beside the run's variables.
const EXPIRES: &str = "expires";
const MESSAGE: &str = "message";
const SIGNATURE: &str = "signature";

/// `kind` = `jwt`: a JSON Web Token signed with HMAC (LiveKit's `access_token`, Jitsi's
/// `?jwt=`) or a private key (Jitsi's ASAP, 8x8 JaaS, OIDC-style gateways).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    #[serde(rename = "kind")]
    _kind: S<String>,
    /// `HS256` (default), `HS384`, `HS512` with `secret`; `RS256`, `RS384`, `RS512`, `PS256`,
    /// `PS384`, `PS512`, `ES256`, `ES384`, `ES512` or `EdDSA` with a private key.
    pub algorithm: Option<S<String>>,
    /// The key the server verifies with (LiveKit's API secret); write it as `${ENV}`.
    pub secret: Option<S<String>>,
    /// A PEM file of the private key (PKCS#8, PKCS#1 or SEC1), relative to the probe file.
    pub private_key_file: Option<S<String>>,
    /// The private key's PEM text itself; write it as `${ENV}`.
    pub private_key: Option<S<String>>,
    /// The header's `kid`: which public key the server verifies with.
    pub kid: Option<S<String>>,
    /// `exp` is the run's start plus this (default 10m, 1s to 24h).
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub ttl: Option<S<String>>,
    /// The payload: a table whose string leaves are templates; `iat`, `nbf` and `exp` are
    /// added from the run's clock unless it sets them.
    pub claims: Option<S<toml::Value>>,
    /// Header fields beside `alg` and `typ` (`kid`).
    pub header: Option<S<toml::Value>>,
}

/// `kind` = `hmac`: an HMAC of a message (Janus' signed token, a webhook signature).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHmac {
    #[serde(rename = "kind")]
    _kind: S<String>,
    /// `sha1`, `sha256`, `sha384` or `sha512`: the server's.
    pub algorithm: Option<S<String>>,
    /// The key; write it as `${ENV}`.
    pub secret: Option<S<String>>,
    /// What is signed: a template, which may read `{{expires}}`.
    pub message: Option<S<String>>,
    /// `hex` (default), `base64` or `base64url`.
    pub encoding: Option<S<String>>,
    /// `{{expires}}` is the run's start plus this, in Unix seconds (default 10m, 1s to 24h).
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub ttl: Option<S<String>>,
    /// What `{{NAME}}` becomes (default `{{signature}}`): a template that may read
    /// `{{message}}`, `{{signature}}` and `{{expires}}`.
    pub value: Option<S<String>>,
}

/// `kind` = `digest`: a hash of a text that holds the secret (BigBlueButton's API checksum).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDigest {
    #[serde(rename = "kind")]
    _kind: S<String>,
    /// `sha1`, `sha256`, `sha384` or `sha512`: the server's.
    pub algorithm: Option<S<String>>,
    /// What is hashed: a template (`"create{{query}}${BBB_SECRET}"`).
    pub input: Option<S<String>>,
    /// `hex` (default), `base64` or `base64url`.
    pub encoding: Option<S<String>>,
}

/// The key every token table has, read first: it picks the rest.
#[derive(Deserialize)]
struct Head {
    kind: S<String>,
}

/// The keys a kind's table takes (its raw type's).
type Keys = fn() -> &'static [&'static str];

/// The kinds, with the keys each takes.
const KINDS: [(&str, Keys); 3] = [
    ("jwt", crate::diag::table_keys::<RawJwt>),
    ("hmac", crate::diag::table_keys::<RawHmac>),
    ("digest", crate::diag::table_keys::<RawDigest>),
];

/// One validated `[tokens.NAME]`.
#[derive(Clone)]
pub struct TokenPlan {
    pub name: String,
    spec: Spec,
}

impl std::fmt::Debug for TokenPlan {
    /// Its name and kind only: the secret or key, and templates that may hold a secret, stay
    /// out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.spec {
            Spec::Jwt { .. } => "jwt",
            Spec::Hmac { .. } => "hmac",
            Spec::Digest { .. } => "digest",
        };
        f.debug_struct("TokenPlan")
            .field("name", &self.name)
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

/// A minted token: the value `{{NAME}}` reads, and every part of it to scrub.
pub struct Token {
    pub value: String,
    pub secrets: Vec<String>,
}

impl TokenPlan {
    /// The token for a run that started at `now`, from its built-ins and `[variables]`.
    ///
    /// # Errors
    /// A template read a variable `vars` lacks, or the key failed to sign (`check` makes the
    /// first unreachable, and the second is not seen).
    pub fn mint(
        &self,
        vars: &HashMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<Token, MintError> {
        let Minted { value, also_secret } = self.spec.mint(vars, now)?;
        let mut secrets = vec![value.clone()];
        secrets.extend(also_secret);
        Ok(Token { value, secrets })
    }
}

/// Reads the probe file's `[tokens]` (its tables as written, for their places). `variables`:
/// the `[variables]` names, which with the built-ins are what a token's templates may read.
pub(crate) fn build(ctx: &mut Ctx<'_>, variables: &HashSet<String>) -> Vec<TokenPlan> {
    let Ok(root) = DeTable::parse(&ctx.file.text) else {
        return Vec::new();
    };
    let Some(DeValue::Table(tables)) = root.get_ref().get("tokens").map(Spanned::get_ref) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, table) in tables.iter() {
        let name_text: &str = name.get_ref().as_ref();
        let t = Entry {
            name: name_text,
            at: name.span(),
        };
        if !name_ok(ctx, &t, variables) {
            continue;
        }
        if !matches!(table.get_ref(), DeValue::Table(_)) {
            ctx.error(
                Some(table.span()),
                t.key(""),
                "must be a table: `[tokens.NAME]` with `kind` = `jwt`, `hmac` or `digest`",
            );
            continue;
        }
        if let Some(spec) = t.build(ctx, table.clone(), variables) {
            out.push(TokenPlan {
                name: name_text.to_string(),
                spec,
            });
        }
    }
    out
}

/// A token name is a template variable's (without `.`, so its keys stay dotted paths) that no
/// built-in or `[variables]` entry has.
fn name_ok(ctx: &mut Ctx<'_>, t: &Entry<'_>, variables: &HashSet<String>) -> bool {
    let key = t.key("");
    let valid = !t.name.is_empty()
        && t.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    let problem = if !valid {
        "a token's name must be letters, digits, `-` or `_` (it is read as `{{NAME}}`)".to_string()
    } else if BUILTINS.contains(&t.name) {
        format!("`{}` is a built-in and cannot be a token's name", t.name)
    } else if variables.contains(t.name) {
        format!(
            "`{}` is also under [variables]: a token and a variable cannot share a name",
            t.name
        )
    } else {
        return true;
    };
    ctx.error(Some(t.at.clone()), key, problem);
    false
}

/// One `[tokens.NAME]` being read.
struct Entry<'n> {
    name: &'n str,
    /// Where its name is written.
    at: Range<usize>,
}

impl Entry<'_> {
    /// `tokens.NAME.k` (`tokens.NAME` for `""`).
    fn key(&self, k: &str) -> String {
        if k.is_empty() {
            format!("tokens.{}", self.name)
        } else {
            format!("tokens.{}.{k}", self.name)
        }
    }

    fn build(
        &self,
        ctx: &mut Ctx<'_>,
        table: Spanned<DeValue<'_>>,
        variables: &HashSet<String>,
    ) -> Option<Spec> {
        let head: Head = crate::diag::from_table(ctx.file, table.clone(), |_, _, _| {})
            .map_err(|e| ctx.errors.push(e))
            .ok()?;
        let kind = head.kind.get_ref().as_str();
        let Some((kind, _)) = KINDS.iter().find(|(k, _)| *k == kind) else {
            let names = KINDS.map(|(k, _)| k);
            ctx.error(
                Some(head.kind.span()),
                self.key("kind"),
                format_args!(
                    "unknown token kind `{kind}`{}, expected one of {}",
                    did_you_mean_among(kind, names),
                    names.join(", ")
                ),
            );
            return None;
        };
        let mut check = Check {
            entry: self,
            variables,
        };
        match *kind {
            "jwt" => {
                let raw: RawJwt = self.read(ctx, kind, table)?;
                check.jwt(ctx, raw)
            }
            "hmac" => {
                let raw: RawHmac = self.read(ctx, kind, table)?;
                check.hmac(ctx, raw)
            }
            _ => {
                let raw: RawDigest = self.read(ctx, kind, table)?;
                check.digest(ctx, raw)
            }
        }
    }

    /// The table as `kind`'s: a key of another kind "does not apply", any other is unknown;
    /// both list the keys `kind` takes.
    fn read<T: serde::de::DeserializeOwned>(
        &self,
        ctx: &mut Ctx<'_>,
        kind: &str,
        table: Spanned<DeValue<'_>>,
    ) -> Option<T> {
        let file = ctx.file;
        let read = crate::diag::from_table(file, table, |k, span, expected| {
            let elsewhere = KINDS.iter().any(|(_, keys)| keys().contains(&k));
            let message = if elsewhere {
                format!("does not apply to {} token, {expected}", a_kind(kind))
            } else {
                format!(
                    "unknown field `{k}`{}, {expected}",
                    did_you_mean(k, expected)
                )
            };
            ctx.error(Some(span), self.key(k), message);
        });
        read.map_err(|e| ctx.errors.push(e)).ok()
    }
}

/// The checks of one token's keys.
struct Check<'e, 'n> {
    entry: &'e Entry<'n>,
    variables: &'e HashSet<String>,
}

impl Check<'_, '_> {
    fn key(&self, k: &str) -> String {
        self.entry.key(k)
    }

    fn jwt(&mut self, ctx: &mut Ctx<'_>, raw: RawJwt) -> Option<Spec> {
        let alg = match &raw.algorithm {
            Some(a) => self.pick(ctx, a, "algorithm", &Alg::NAMES),
            None => Some(Alg::Hs(Hash::Sha256)),
        };
        let signer = alg.and_then(|alg| self.signer(ctx, &raw, alg));
        let ttl = self.ttl(ctx, raw.ttl.as_ref());
        let claims = self.json_table(ctx, raw.claims.as_ref(), "claims", &[]);
        let mut header = self.json_table(ctx, raw.header.as_ref(), "header", &["alg"]);
        if let (Some(kid), Some(h)) = (&raw.kid, &mut header) {
            if h.contains_key("kid") {
                ctx.error(
                    Some(kid.span()),
                    self.key("kid"),
                    "`header` sets `kid` as well: write it once",
                );
                return None;
            }
            let text = ctx.env_str(kid, &self.key("kid"))?;
            h.insert("kid".into(), serde_json::Value::String(text));
        }
        Some(Spec::Jwt {
            signer: signer?,
            ttl: ttl?,
            claims: claims?,
            header: header?,
        })
    }

    /// What signs a `jwt` with `alg`: `secret` for HS*, else the private key, loaded here once.
    fn signer(&self, ctx: &mut Ctx<'_>, raw: &RawJwt, alg: Alg) -> Option<Signer> {
        let key = match (&raw.private_key_file, &raw.private_key) {
            (Some(_), Some(v)) => {
                ctx.error(
                    Some(v.span()),
                    self.key("private_key"),
                    "`private_key_file` is set as well: give the key once",
                );
                return None;
            }
            (Some(v), None) => Some(("private_key_file", v)),
            (None, Some(v)) => Some(("private_key", v)),
            (None, None) => None,
        };
        let keyed: Vec<&str> = Alg::NAMES
            .iter()
            .filter(|(_, a)| a.keyed())
            .map(|(n, _)| *n)
            .collect();
        let keyed = keyed.join(", ");
        let name = alg.name();
        match (&raw.secret, key) {
            (Some(secret), Some((k, _))) => {
                ctx.error(
                    Some(secret.span()),
                    self.key("secret"),
                    format_args!(
                        "`{k}` is set as well: a token is signed either with the shared `secret` (HS256, HS384, HS512) or with a private key ({keyed}), the one the server verifies"
                    ),
                );
                None
            }
            (_, Some((k, _))) if !alg.keyed() => {
                match &raw.algorithm {
                    Some(a) => ctx.error(
                        Some(a.span()),
                        self.key("algorithm"),
                        format_args!(
                            "`{name}` signs with the shared `secret`, not with `{k}`: name the server's algorithm for a private key ({keyed})"
                        ),
                    ),
                    None => ctx.error(
                        Some(self.entry.at.clone()),
                        self.key("algorithm"),
                        format_args!(
                            "is required with `{k}`: the server's, one of {keyed}"
                        ),
                    ),
                }
                None
            }
            (Some(secret), None) if alg.keyed() => {
                ctx.error(
                    Some(secret.span()),
                    self.key("secret"),
                    format_args!(
                        "`{name}` signs with a private key, not the shared `secret`: set `private_key_file` (or `private_key`) to its PEM"
                    ),
                );
                None
            }
            (None, None) if alg.keyed() => {
                ctx.error(
                    Some(self.entry.at.clone()),
                    self.key("private_key_file"),
                    format_args!(
                        "is required for `{name}` (or `private_key`): the PEM of the private key whose public half the server verifies with"
                    ),
                );
                None
            }
            (_, None) => {
                let secret = self.secret(ctx, raw.secret.as_ref(), "jwt")?;
                let Alg::Hs(hash) = alg else {
                    return None;
                };
                Some(Signer::Hmac { hash, secret })
            }
            (_, Some((k, value))) => {
                let (pem, what) = self.pem(ctx, k, value)?;
                match keys::load(&pem, alg, &what) {
                    Ok(key) => Some(Signer::Key { alg, key }),
                    Err(e) => {
                        ctx.error(Some(value.span()), self.key(k), e);
                        None
                    }
                }
            }
        }
    }

    /// The PEM text of `private_key_file` (read relative to the probe file) or `private_key`
    /// (a secret like `secret`), and how an error names it.
    fn pem(&self, ctx: &mut Ctx<'_>, k: &str, value: &S<String>) -> Option<(Vec<u8>, String)> {
        if k == "private_key" {
            let text = self.secret_text(ctx, value, k, "")?;
            return Some((text.into_bytes(), k.to_string()));
        }
        let text = ctx.env_str(value, &self.key(k))?;
        let dir = ctx.file.path.parent().unwrap_or(std::path::Path::new("."));
        let path = dir.join(&text);
        match crate::diag::file::read_bytes(&path) {
            Ok(bytes) => Some((bytes, path.display().to_string())),
            Err(e) => {
                ctx.error(
                    Some(value.span()),
                    self.key(k),
                    format_args!("cannot read `{}`: {e}", path.display()),
                );
                None
            }
        }
    }

    fn hmac(&mut self, ctx: &mut Ctx<'_>, raw: RawHmac) -> Option<Spec> {
        let hash = self.algorithm(ctx, raw.algorithm.as_ref(), "hmac");
        let secret = self.secret(ctx, raw.secret.as_ref(), "hmac");
        let encoding = self.encoding(ctx, raw.encoding.as_ref());
        let ttl = self.ttl(ctx, raw.ttl.as_ref());
        let message = self.template(ctx, raw.message.as_ref(), "message", "hmac", &[EXPIRES]);
        let value = match &raw.value {
            Some(v) => Some(Some(self.template(
                ctx,
                Some(v),
                "value",
                "hmac",
                &[EXPIRES, MESSAGE, SIGNATURE],
            )?)),
            None => Some(None),
        };
        // A `ttl` nothing reads would look like it bounds the token, and it would not.
        if let (Some(t), Some(m), Some(v)) = (&raw.ttl, &message, &value) {
            let reads = |t: &Template| t.vars().any(|v| v == EXPIRES);
            if !reads(m) && !v.as_ref().is_some_and(reads) {
                ctx.error(
                    Some(t.span()),
                    self.key("ttl"),
                    "`ttl` sets `{{expires}}`, which neither `message` nor `value` reads",
                );
                return None;
            }
        }
        Some(Spec::Hmac {
            hash: hash?,
            secret: secret?,
            ttl: ttl?,
            message: message?,
            encoding: encoding?,
            value: value?,
        })
    }

    fn digest(&mut self, ctx: &mut Ctx<'_>, raw: RawDigest) -> Option<Spec> {
        let hash = self.algorithm(ctx, raw.algorithm.as_ref(), "digest");
        let encoding = self.encoding(ctx, raw.encoding.as_ref());
        let input = self.template(ctx, raw.input.as_ref(), "input", "digest", &[]);
        Some(Spec::Digest {
            hash: hash?,
            input: input?,
            encoding: encoding?,
        })
    }

    /// A required key's absence, at the token's name.
    fn missing(&self, ctx: &mut Ctx<'_>, k: &str, kind: &str) {
        ctx.error(
            Some(self.entry.at.clone()),
            self.key(k),
            format_args!("is required for {} token", a_kind(kind)),
        );
    }

    /// `value` (`${ENV}` substituted) as one of `names`.
    fn pick<T: Copy>(
        &self,
        ctx: &mut Ctx<'_>,
        value: &S<String>,
        k: &str,
        names: &[(&'static str, T)],
    ) -> Option<T> {
        let text = ctx.env_str(value, &self.key(k))?;
        if let Some((_, v)) = names.iter().find(|(n, _)| *n == text) {
            return Some(*v);
        }
        let words: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
        ctx.error(
            Some(value.span()),
            self.key(k),
            format_args!(
                "`{text}` is not one of {}{}",
                words.join(", "),
                did_you_mean_among(&text, words.iter().copied())
            ),
        );
        None
    }

    /// `hmac`'s and `digest`'s `algorithm`: required, since it must be the server's.
    fn algorithm(&self, ctx: &mut Ctx<'_>, value: Option<&S<String>>, kind: &str) -> Option<Hash> {
        let Some(value) = value else {
            self.missing(ctx, "algorithm", kind);
            return None;
        };
        self.pick(ctx, value, "algorithm", &Hash::NAMES)
    }

    fn encoding(&self, ctx: &mut Ctx<'_>, value: Option<&S<String>>) -> Option<Encoding> {
        match value {
            Some(v) => self.pick(ctx, v, "encoding", &Encoding::NAMES),
            None => Some(Encoding::Hex),
        }
    }

    /// The required `secret`.
    fn secret(&self, ctx: &mut Ctx<'_>, value: Option<&S<String>>, kind: &str) -> Option<String> {
        let Some(value) = value else {
            self.missing(ctx, "secret", kind);
            return None;
        };
        self.secret_text(
            ctx,
            value,
            "secret",
            ": a token signed with an empty key is refused by every server",
        )
    }

    /// The text of key `k`, a secret however it is written (`secret`, `private_key`): refused
    /// when empty (`why` said after), added to what the probe scrubs when written in the file
    /// (a value from the environment already is).
    fn secret_text(
        &self,
        ctx: &mut Ctx<'_>,
        value: &S<String>,
        k: &str,
        why: &str,
    ) -> Option<String> {
        let text = ctx.env_str(value, &self.key(k))?;
        if text.is_empty() {
            ctx.error(
                Some(value.span()),
                self.key(k),
                format_args!("is empty (is its environment variable set?){why}"),
            );
            return None;
        }
        if !ctx.env_values.contains(&text) {
            ctx.env_values.push(text.clone());
        }
        Some(text)
    }

    fn ttl(&self, ctx: &mut Ctx<'_>, value: Option<&S<String>>) -> Option<Duration> {
        match value {
            Some(v) => ctx.duration_within(v, &self.key("ttl"), MIN_TTL, MAX_TTL),
            None => Some(DEFAULT_TTL),
        }
    }

    /// A required template that may read the built-ins, `[variables]` and `own` names.
    fn template(
        &self,
        ctx: &mut Ctx<'_>,
        value: Option<&S<String>>,
        k: &str,
        kind: &str,
        own: &[&str],
    ) -> Option<Template> {
        let Some(value) = value else {
            self.missing(ctx, k, kind);
            return None;
        };
        let t = ctx.template(value, &self.key(k))?;
        if let Some(var) = t.vars().find(|v| !self.readable(v, own)) {
            ctx.error(Some(value.span()), self.key(k), self.unreadable(var, own));
            return None;
        }
        Some(t)
    }

    fn readable(&self, var: &str, own: &[&str]) -> bool {
        BUILTINS.contains(&var) || self.variables.contains(var) || own.contains(&var)
    }

    fn unreadable(&self, var: &str, own: &[&str]) -> String {
        let own: String = own.iter().map(|n| format!(", `{{{{{n}}}}}`")).collect();
        format!(
            "reads `{{{{{var}}}}}`, which is not set when tokens are minted (before the first step): a token reads the built-ins, [variables]{own}"
        )
    }

    /// An optional table of JSON whose string leaves are templates (`claims`, `header`);
    /// `reserved`: keys it may not set.
    fn json_table(
        &self,
        ctx: &mut Ctx<'_>,
        value: Option<&S<toml::Value>>,
        k: &str,
        reserved: &[&str],
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let Some(value) = value else {
            return Some(serde_json::Map::new());
        };
        let key = self.key(k);
        let Some(table) = value.get_ref().as_table() else {
            ctx.error(
                Some(value.span()),
                key,
                format_args!(
                    "must be a table (`{k} = {{ … }}` or `[tokens.{}.{k}]`)",
                    self.entry.name
                ),
            );
            return None;
        };
        if let Some(r) = reserved.iter().find(|r| table.contains_key(**r)) {
            let at = ctx.written(&format!("{key}.{r}"), value.span());
            ctx.error(
                Some(at),
                format!("{key}.{r}"),
                format_args!("`{r}` is set by `algorithm`"),
            );
            return None;
        }
        let json = ctx.json(value, &key)?;
        if let Some((path, var)) = unreadable_leaf(&json, &key, &|v| self.readable(v, &[])) {
            let at = ctx.written(&path, value.span());
            ctx.error(Some(at), path, self.unreadable(&var, &[]));
            return None;
        }
        match json {
            serde_json::Value::Object(map) => Some(map),
            _ => None,
        }
    }
}

/// "a `jwt`", "an `hmac`" (said as "aitch-mac").
fn a_kind(kind: &str) -> String {
    let article = if kind == "hmac" { "an" } else { "a" };
    format!("{article} `{kind}`")
}

/// The dotted key of the first string leaf under `value` (at `key`) that reads a variable
/// `readable` refuses, and that variable.
fn unreadable_leaf(
    value: &serde_json::Value,
    key: &str,
    readable: &dyn Fn(&str) -> bool,
) -> Option<(String, String)> {
    match value {
        serde_json::Value::String(s) => Template::parse(s)
            .ok()?
            .vars()
            .find(|v| !readable(v))
            .map(|v| (key.to_string(), v.to_string())),
        serde_json::Value::Array(items) => {
            items.iter().find_map(|v| unreadable_leaf(v, key, readable))
        }
        serde_json::Value::Object(map) => map
            .iter()
            .find_map(|(k, v)| unreadable_leaf(v, &format!("{key}.{k}"), readable)),
        _ => None,
    }
}
