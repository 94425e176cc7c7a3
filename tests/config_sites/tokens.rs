//! A probe's `[tokens.NAME]` (credentials minted per run): every error its table can draw,
//! each at its `file:line:col: key:`.

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
            "unknown field `claim` (did you mean `claims`?), expected one of `kind`, `algorithm`, `secret`, `ttl`, `claims`, `header`",
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
            "secret = \"abcd\"\nalgorithm = ‸\"RS256\"\n",
            "tokens.lk.algorithm",
            "`RS256` is not one of HS256, HS384, HS512",
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
