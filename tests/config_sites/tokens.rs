//! A probe's `[tokens.NAME]` (credentials minted per run): every error its table can draw,
//! each at its `file:line:col: key:`, a private key's (read once, at load) among them.

use super::{Case, PROBE, check, probe};

/// A probe with `[variables] room` and the token tables `tokens` after its steps (TOML tables
/// may follow the array of tables): `[tokens.…]` from line 7.
fn token(tokens: &str, key: &'static str, says: &'static str) -> Case {
    probe(
        &format!("{PROBE}[variables]\nroom = \"r\"\n{tokens}"),
        key,
        says,
    )
}

const JWT: &str = "[tokens.lk]\nkind = \"jwt\"\nsecret = \"abcd\"\n";
const HMAC: &str =
    "[tokens.j]\nkind = \"hmac\"\nalgorithm = \"sha1\"\nsecret = \"abcd\"\nmessage = \"m\"\n";
const DIGEST: &str = "[tokens.b]\nkind = \"digest\"\nalgorithm = \"sha1\"\ninput = \"x\"\n";

/// `base` with `from` replaced by `to` (which carries the mark).
fn edit(base: &str, from: &str, to: &str, key: &'static str, says: &'static str) -> Case {
    assert!(base.contains(from), "{from}");
    token(&base.replacen(from, to, 1), key, says)
}

#[test]
fn every_token_error_names_file_line_column_and_key() {
    let cases = vec![
        probe(
            &format!("tokens = ‸5\n{PROBE}"),
            "tokens",
            "invalid type: integer `5`, expected a map",
        ),
        token("[tokens]\nlk = ‸5\n", "tokens.lk", "must be a table"),
        token(
            "[tokens.‸\"a.b\"]\nkind = \"jwt\"\n",
            "tokens.a.b",
            "a token's name must be letters, digits, `-` or `_`",
        ),
        token(
            "[tokens.‸region]\nkind = \"jwt\"\n",
            "tokens.region",
            "`region` is a built-in and cannot be a token's name",
        ),
        token(
            "[tokens.‸room]\nkind = \"jwt\"\n",
            "tokens.room",
            "`room` is also under [variables]",
        ),
        token(
            "‸[tokens.lk]\nsecret = \"abcd\"\n",
            "tokens.lk.kind",
            "missing field `kind`",
        ),
        edit(
            JWT,
            "kind = \"jwt\"",
            "kind = ‸\"jwtt\"",
            "tokens.lk.kind",
            "unknown token kind `jwtt` (did you mean `jwt`?), expected one of jwt, hmac, digest",
        ),
        edit(
            JWT,
            "secret = \"abcd\"\n",
            "secret = \"abcd\"\nclaim = ‸{ sub = \"x\" }\n",
            "tokens.lk.claim",
            "unknown field `claim` (did you mean `claims`?), expected one of `kind`, `algorithm`, `secret`, `private_key_file`, `private_key`, `kid`, `ttl`, `claims`, `header`",
        ),
        edit(
            JWT,
            "secret = \"abcd\"\n",
            "secret = \"abcd\"\nmessage = ‸\"m\"\n",
            "tokens.lk.message",
            "does not apply to a `jwt` token, expected one of `kind`",
        ),
        edit(
            DIGEST,
            "input = \"x\"\n",
            "input = \"x\"\nsecret = ‸\"abcd\"\n",
            "tokens.b.secret",
            "does not apply to a `digest` token",
        ),
        edit(
            JWT,
            "secret = \"abcd\"\n",
            "secret = \"abcd\"\nalgorithm = ‸\"RS-256\"\n",
            "tokens.lk.algorithm",
            "`RS-256` is not one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA",
        ),
        edit(
            HMAC,
            "algorithm = \"sha1\"",
            "algorithm = ‸\"sha-256\"",
            "tokens.j.algorithm",
            "`sha-256` is not one of sha1, sha256, sha384, sha512 (did you mean `sha256`?)",
        ),
        edit(
            HMAC,
            "[tokens.j]\nkind = \"hmac\"\nalgorithm = \"sha1\"\n",
            "[tokens.‸j]\nkind = \"hmac\"\n",
            "tokens.j.algorithm",
            "is required for an `hmac` token",
        ),
        edit(
            DIGEST,
            "input = \"x\"\n",
            "input = \"x\"\nencoding = ‸\"b64\"\n",
            "tokens.b.encoding",
            "`b64` is not one of hex, base64, base64url",
        ),
        edit(
            DIGEST,
            "[tokens.b]\nkind = \"digest\"\nalgorithm = \"sha1\"\ninput = \"x\"\n",
            "[tokens.‸b]\nkind = \"digest\"\nalgorithm = \"sha1\"\n",
            "tokens.b.input",
            "is required for a `digest` token",
        ),
        edit(
            JWT,
            "[tokens.lk]\nkind = \"jwt\"\nsecret = \"abcd\"\n",
            "[tokens.‸lk]\nkind = \"jwt\"\n",
            "tokens.lk.secret",
            "is required for a `jwt` token",
        ),
        edit(
            JWT,
            "secret = \"abcd\"",
            "secret = ‸\"${JC_TOKEN_SECRET:-}\"",
            "tokens.lk.secret",
            "is empty (is its environment variable set?)",
        ),
        edit(
            JWT,
            "secret = \"abcd\"",
            "secret = ‸\"${JC_UNSET_TOKEN_SECRET}\"",
            "tokens.lk.secret",
            "environment variable `JC_UNSET_TOKEN_SECRET` is not set",
        ),
        edit(
            JWT,
            "secret = \"abcd\"\n",
            "secret = \"abcd\"\nttl = ‸\"2d\"\n",
            "tokens.lk.ttl",
            "must be between 1s and 1day",
        ),
        edit(
            JWT,
            "secret = \"abcd\"\n",
            "secret = \"abcd\"\nttl = ‸\"500ms\"\n",
            "tokens.lk.ttl",
            "must be between 1s and 1day",
        ),
        edit(
            JWT,
            "secret = \"abcd\"\n",
            "secret = \"abcd\"\nttl = ‸600\n",
            "tokens.lk.ttl",
            "expected a duration in quotes",
        ),
        edit(
            HMAC,
            "message = \"m\"\n",
            "message = \"m\"\nttl = ‸\"5m\"\n",
            "tokens.j.ttl",
            "`ttl` sets `{{expires}}`, which neither `message` nor `value` reads",
        ),
        edit(
            HMAC,
            "message = \"m\"",
            "message = ‸\"{{expires}}:{{signature}}\"",
            "tokens.j.message",
            "reads `{{signature}}`, which is not set when tokens are minted (before the first step): a token reads the built-ins, [variables], `{{expires}}`",
        ),
        edit(
            HMAC,
            "message = \"m\"\n",
            "message = \"m\"\nvalue = ‸\"{{message}}:{{sig}}\"\n",
            "tokens.j.value",
            "reads `{{sig}}`",
        ),
        edit(
            HMAC,
            "message = \"m\"",
            "message = ‸\"{{expires\"",
            "tokens.j.message",
            "is never closed",
        ),
        edit(
            DIGEST,
            "input = \"x\"",
            "input = ‸\"{{a}}\"",
            "tokens.b.input",
            "reads `{{a}}`, which is not set when tokens are minted",
        ),
        edit(
            JWT,
            "secret = \"abcd\"\n",
            "secret = \"abcd\"\n[tokens.lk.claims]\niss = \"k\"\nvideo = { room = ‸\"{{later}}\" }\n",
            "tokens.lk.claims.video.room",
            "reads `{{later}}`",
        ),
        edit(
            JWT,
            "secret = \"abcd\"\n",
            "secret = \"abcd\"\nclaims = ‸\"sub=x\"\n",
            "tokens.lk.claims",
            "must be a table (`claims = { … }` or `[tokens.lk.claims]`)",
        ),
        edit(
            JWT,
            "secret = \"abcd\"\n",
            "secret = \"abcd\"\nheader = ‸[\"kid\"]\n",
            "tokens.lk.header",
            "must be a table",
        ),
        edit(
            JWT,
            "secret = \"abcd\"\n",
            "secret = \"abcd\"\nheader = { kid = \"k\", alg = ‸\"none\" }\n",
            "tokens.lk.header.alg",
            "`alg` is set by `algorithm`",
        ),
    ];
    check(cases);
}

/// A step reads a token as it reads a variable; one that reads a token never declared is
/// told so at the step, as for any variable.
#[test]
fn steps_read_tokens_and_only_declared_ones() {
    let text = format!(
        "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/?t={{{{lk}}}}\"\n{JWT}"
    );
    crate::support::probe_from(&text, &[]);
    check(vec![probe(
        "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = ‸\"http://127.0.0.1:9/?t={{lk}}\"\n",
        "steps[0].url",
        "uses `{{lk}}` before any step sets it",
    )]);
}

/// A test-only 512-bit RSA key (Node's `generateKeyPairSync`), refused for its size: it signs
/// nothing and verifies nothing.
const RSA_512_TEST_ONLY: &str = "-----BEGIN PRIVATE KEY-----
MIIBVgIBADANBgkqhkiG9w0BAQEFAASCAUAwggE8AgEAAkEA2EpRFSpqsdyACF/O
vis7guSaMf8e/r00ij2OS3f94mn5G1DauoEtACVfcfMM4R8HACub53lwPyKTcF1e
MvrxiwIDAQABAkAb7iTgVdTnWPETo8Of3RdXRMwArtBC1w4E2AQbDMi1Rvs0TY6P
feZZWCOOOky+uTkJP6LhDioKUEu66PyT3l1RAiEA9oYDfaCuRsbwucu0xCBGpxC8
g3uj+HQtRztXGg+yitkCIQDgmsjYdMUFCkYx2Am98D8zD7CNEmph6HirTgTcJSE5
AwIhAJWVX4zc8KJ1mB/EoRzYUMaSezB011uscsTkFsfzemyRAiEA2t77CbQAqkCw
1rGoDKepbqDDczWW5YIc1RJaOg0UqvECIQDaiu9+Gu4usP74A7huld3QCmqj6Yhy
66H5iv4J7z4eEQ==
-----END PRIVATE KEY-----
";

/// An ES256 table signing with `probes/ec.pem` (a P-256 key; `rsa.pem` a 512-bit RSA key and
/// `pub.pem` a public key lie beside it), edited as `edit` does: `[tokens.…]` from line 7.
fn keyed(from: &str, to: &str, key: &'static str, says: &'static str) -> Case {
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let base =
        "[tokens.lk]\nkind = \"jwt\"\nalgorithm = \"ES256\"\nprivate_key_file = \"ec.pem\"\n";
    let mut case = edit(base, from, to, key, says);
    case.probes.extend([
        ("ec.pem", ec.serialize_pem()),
        ("rsa.pem", RSA_512_TEST_ONLY.to_string()),
        ("pub.pem", ec.public_key_pem()),
    ]);
    case
}

#[test]
fn every_private_key_error_names_file_line_column_and_key() {
    let file = "private_key_file = \"ec.pem\"";
    let cases = vec![
        keyed(
            file,
            "private_key_file = ‸\"gone.pem\"",
            "tokens.lk.private_key_file",
            "cannot read `probes/gone.pem`: No such file or directory",
        ),
        keyed(
            file,
            "private_key_file = ‸\"pub.pem\"",
            "tokens.lk.private_key_file",
            "`probes/pub.pem` holds a `PUBLIC KEY`, not a private key (the server's half: the private key signs)",
        ),
        keyed(
            file,
            "private_key_file = ‸\"p.toml\"",
            "tokens.lk.private_key_file",
            "`probes/p.toml` holds no PEM private key: a PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY` PEM is read",
        ),
        keyed(
            "algorithm = \"ES256\"\nprivate_key_file = \"ec.pem\"",
            "algorithm = \"RS256\"\nprivate_key_file = ‸\"ec.pem\"",
            "tokens.lk.private_key_file",
            "`probes/ec.pem` is an EC P-256 key; `RS256` signs with an RSA key (an EC P-256 key signs ES256)",
        ),
        keyed(
            "algorithm = \"ES256\"\nprivate_key_file = \"ec.pem\"",
            "algorithm = \"RS256\"\nprivate_key_file = ‸\"rsa.pem\"",
            "tokens.lk.private_key_file",
            "`probes/rsa.pem` is an RSA key under 2048 bits, which is refused: RFC 7518 3.3 asks at least 2048",
        ),
        keyed(
            "algorithm = \"ES256\"",
            "algorithm = ‸\"HS256\"",
            "tokens.lk.algorithm",
            "`HS256` signs with the shared `secret`, not with `private_key_file`: name the server's algorithm for a private key (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)",
        ),
        keyed(
            "[tokens.lk]\nkind = \"jwt\"\nalgorithm = \"ES256\"\n",
            "[tokens.‸lk]\nkind = \"jwt\"\n",
            "tokens.lk.algorithm",
            "is required with `private_key_file`: the server's, one of RS256",
        ),
        keyed(
            file,
            "private_key_file = \"ec.pem\"\nsecret = ‸\"abcd\"",
            "tokens.lk.secret",
            "`private_key_file` is set as well: a token is signed either with the shared `secret` (HS256, HS384, HS512) or with a private key",
        ),
        keyed(
            file,
            "private_key_file = \"ec.pem\"\nprivate_key = ‸\"${JC_KEY}\"",
            "tokens.lk.private_key",
            "`private_key_file` is set as well: give the key once",
        ),
        keyed(
            file,
            "private_key = ‸\"${JC_UNSET_KEY:-}\"",
            "tokens.lk.private_key",
            "is empty (is its environment variable set?)",
        ),
        keyed(
            "[tokens.lk]\nkind = \"jwt\"\nalgorithm = \"ES256\"\nprivate_key_file = \"ec.pem\"\n",
            "[tokens.‸lk]\nkind = \"jwt\"\nalgorithm = \"ES256\"\n",
            "tokens.lk.private_key_file",
            "is required for `ES256` (or `private_key`)",
        ),
        keyed(
            file,
            "private_key_file = \"ec.pem\"\nheader = { kid = \"a\" }\nkid = ‸\"b\"",
            "tokens.lk.kid",
            "`header` sets `kid` as well: write it once",
        ),
        keyed(
            file,
            "private_key_file = \"ec.pem\"\nkid = ‸\"${JC_UNSET_KID}\"",
            "tokens.lk.kid",
            "environment variable `JC_UNSET_KID` is not set",
        ),
    ];
    check(cases);
}
