//! The primitives against published vectors (RFC 2202, RFC 4231, FIPS 180), a JWT against one
//! signed by another implementation, and a run's tokens from its injected clock.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::diag::SourceFile;

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap()
}

#[test]
fn hmac_matches_rfc_2202_and_rfc_4231() {
    let key_0b = [0x0b; 20];
    let jefe = (&b"Jefe"[..], &b"what do ya want for nothing?"[..]);
    let big = b"Test Using Larger Than Block-Size Key - Hash Key First";
    // RFC 2202 (HMAC-SHA-1): test cases 1, 2 and 6.
    let sha1 = [
        (
            &key_0b[..],
            &b"Hi There"[..],
            "b617318655057264e28bc0b6fb378c8ef146be00",
        ),
        (jefe.0, jefe.1, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
        (
            &[0xaa; 80][..],
            &big[..],
            "aa4ae5e15272d00e95705637ce8a3b55ed402112",
        ),
    ];
    for (key, data, mac) in sha1 {
        assert_eq!(Hash::Sha1.hmac(key, data), unhex(mac));
    }
    // RFC 4231: test cases 1, 2 and 6 (a key longer than the block).
    let cases: [(Hash, [&str; 3]); 3] = [
        (
            Hash::Sha256,
            [
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ],
        ),
        (
            Hash::Sha384,
            [
                "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6",
                "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
                "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952",
            ],
        ),
        (
            Hash::Sha512,
            [
                "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
                "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
            ],
        ),
    ];
    for (hash, [tc1, tc2, tc6]) in cases {
        assert_eq!(hash.hmac(&key_0b, b"Hi There"), unhex(tc1), "{hash:?}");
        assert_eq!(hash.hmac(jefe.0, jefe.1), unhex(tc2), "{hash:?}");
        assert_eq!(hash.hmac(&[0xaa; 131], big), unhex(tc6), "{hash:?}");
    }
}

#[test]
fn digests_match_fips_180() {
    let abc = [
        (Hash::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
        (
            Hash::Sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            Hash::Sha512,
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        ),
    ];
    for (hash, want) in abc {
        assert_eq!(Encoding::Hex.encode(&hash.digest(b"abc")), want, "{hash:?}");
    }
    assert_eq!(Encoding::Base64.encode(&[0xfb, 0xff]), "+/8=");
    assert_eq!(Encoding::Base64Url.encode(&[0xfb, 0xff]), "-_8");
}

/// A probe of `tokens` (TOML) and `[variables] room`, loaded as `check` loads it.
fn plan(tokens: &str, env: &[(&str, &str)]) -> Result<crate::flow::ProbePlan, Vec<String>> {
    let file = SourceFile {
        path: "p.toml".into(),
        text: format!(
            "[variables]\nroom = \"canary-{{{{region}}}}\"\n{tokens}\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n"
        ),
    };
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut errors = Vec::new();
    let plan = crate::flow::load::build(
        &file,
        &env,
        &crate::flow::defaults::Defaults::default(),
        &crate::alerting::PolicyConfig::default(),
        &[],
        "eu",
        &mut errors,
    );
    plan.ok_or_else(|| errors.iter().map(ToString::to_string).collect())
}

const LIVEKIT: &str = "[tokens.lk]\nkind = \"jwt\"\nsecret = \"${LK_SECRET}\"\nttl = \"10m\"\n\
    header = { kid = \"k1\" }\n\
    [tokens.lk.claims]\niss = \"APIkey\"\nsub = \"canary\"\nvideo = { room = \"{{room}}\", roomJoin = true }\n";
const SECRET: &str = "secret-of-at-least-32-bytes-long!!";

fn at(unix: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(unix, 0).unwrap()
}

/// The run's variables as `new_context` has them before minting.
fn vars() -> HashMap<String, String> {
    [("region", "eu"), ("room", "canary-eu"), ("probe", "p")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_jwt_is_the_one_another_implementation_signs() {
    let plan = plan(LIVEKIT, &[("LK_SECRET", SECRET)]).unwrap();
    let token = plan.tokens[0].mint(&vars(), at(1_700_000_000)).unwrap();
    // Python's json (sorted keys, no spaces), base64 and hmac modules over the same header
    // and claims: `hmac.new(secret, signing_input, 'sha256')`.
    let other = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.\
        eyJleHAiOjE3MDAwMDA2MDAsImlhdCI6MTcwMDAwMDAwMCwiaXNzIjoiQVBJa2V5IiwibmJmIjoxNzAwMDAwMDAwLCJzdWIiOiJjYW5hcnkiLCJ2aWRlbyI6eyJyb29tIjoiY2FuYXJ5LWV1Iiwicm9vbUpvaW4iOnRydWV9fQ.\
        nFscCYigynxTrm7lK4BMwI1b3c8sGbO5uodvw1fKkKo";
    assert_eq!(token.value, other);
    // Both the token and its signature alone are scrubbed.
    assert_eq!(
        token.secrets,
        [
            other.to_string(),
            "nFscCYigynxTrm7lK4BMwI1b3c8sGbO5uodvw1fKkKo".into()
        ]
    );
}

/// The claims of a JWT, decoded.
fn claims(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(start_paused = true)]
async fn iat_nbf_and_exp_come_from_the_runs_injected_clock() {
    let plan = plan(LIVEKIT, &[("LK_SECRET", SECRET)]).unwrap();
    let clock = crate::clock::Clock::starting_at(at(1_800_000_000));
    tokio::time::advance(Duration::from_secs(90)).await;
    let ctx = crate::flow::new_context(&plan, "eu", clock, clock.now());
    let c = claims(&ctx.vars["lk"]);
    assert_eq!(c["iat"], 1_800_000_090);
    assert_eq!(c["nbf"], 1_800_000_090);
    assert_eq!(c["exp"], 1_800_000_690);
    // Typed leaves stay typed; string leaves are rendered.
    assert_eq!(c["video"]["roomJoin"], true);
    assert_eq!(c["video"]["room"], "canary-eu");
    // What a run learnt is scrubbed, and counts as the plan's own (no server-chosen origin).
    let text = format!("echo: {}", ctx.vars["lk"]);
    assert_eq!(ctx.redactor.scrub(&text), "echo: [redacted]");
    assert!(ctx.plan_redactor.holds_secret(&ctx.vars["lk"]));
    assert!(ctx.redactor.holds_secret(SECRET));
}

#[test]
fn claims_that_set_exp_keep_it() {
    let text = LIVEKIT.replace("iss = \"APIkey\"", "iss = \"APIkey\"\nexp = 42\nnbf = 7");
    let plan = plan(&text, &[("LK_SECRET", SECRET)]).unwrap();
    let c = claims(
        &plan.tokens[0]
            .mint(&vars(), at(1_700_000_000))
            .unwrap()
            .value,
    );
    assert_eq!((c["exp"].clone(), c["nbf"].clone()), (42.into(), 7.into()));
    assert_eq!(c["iat"], 1_700_000_000);
}

#[test]
fn a_janus_signed_token_and_a_bigbluebutton_checksum() {
    let janus = "[tokens.janus]\nkind = \"hmac\"\nalgorithm = \"sha1\"\nsecret = \"${JANUS_SECRET}\"\n\
        ttl = \"10m\"\nmessage = \"{{expires}},janus,janus.plugin.echotest\"\nencoding = \"base64\"\n\
        value = \"{{message}}:{{signature}}\"\n\
        [tokens.bbb]\nkind = \"digest\"\nalgorithm = \"sha1\"\n\
        input = \"createname=Test&meetingID=abc${BBB_SECRET}\"\n";
    let plan = plan(
        janus,
        &[("JANUS_SECRET", "janussecret"), ("BBB_SECRET", "bbbsecret")],
    )
    .unwrap();
    let minted: HashMap<&str, Token> = plan
        .tokens
        .iter()
        .map(|t| (t.name.as_str(), t.mint(&vars(), at(1_700_000_000)).unwrap()))
        .collect();
    // Python: base64(hmac.new(b'janussecret', b'1700000600,janus,janus.plugin.echotest',
    // 'sha1').digest()) and hashlib.sha1(b'createname=Test&meetingID=abcbbbsecret').
    assert_eq!(
        minted["janus"].value,
        "1700000600,janus,janus.plugin.echotest:0FGBPtIaShS3MzY2rRuM0on53EA="
    );
    assert_eq!(minted["janus"].secrets[1], "0FGBPtIaShS3MzY2rRuM0on53EA=");
    assert_eq!(
        minted["bbb"].value,
        "1d77397dfdb59577bb48cad2dff29cd0683ceb67"
    );
}

#[test]
fn a_plans_debug_shows_no_secret() {
    let loaded = plan(LIVEKIT, &[("LK_SECRET", SECRET)]).unwrap();
    let debug = format!("{:?}", loaded.tokens);
    assert!(debug.contains("lk") && !debug.contains(SECRET), "{debug}");
    // A secret written in the file, not through `${ENV}`, is scrubbed as well.
    let literal = LIVEKIT.replace("${LK_SECRET}", "literal-secret-9q");
    let written = plan(&literal, &[]).unwrap();
    assert!(written.redactor.holds_secret("literal-secret-9q"));
}

#[test]
fn check_refuses_what_cannot_mint_a_token() {
    let cases = [
        (
            "[tokens.lk]\nkind = \"jwt\"\nsecret = \"\"\n",
            "tokens.lk.secret: is empty",
        ),
        (
            "[tokens.lk]\nkind = \"jwt\"\nsecret = \"abcd\"\nalgorithm = \"RS256\"\n",
            "tokens.lk.algorithm: `RS256` is not one of HS256, HS384, HS512",
        ),
        (
            "[tokens.lk]\nkind = \"jwt\"\nsecret = \"abcd\"\nttl = \"2d\"\n",
            "tokens.lk.ttl: must be between 1s and 1day",
        ),
        (
            "[tokens.lk]\nkind = \"jwt\"\nsecret = \"abcd\"\nclaims = { sub = \"{{later}}\" }\n",
            "tokens.lk.claims.sub: reads `{{later}}`",
        ),
        (
            "[tokens.room]\nkind = \"digest\"\nalgorithm = \"sha1\"\ninput = \"x\"\n",
            "tokens.room: `room` is also under [variables]",
        ),
        (
            "[tokens.lk]\nkind = \"digest\"\nalgorithm = \"sha1\"\ninput = \"x\"\nsecret = \"abcd\"\n",
            "tokens.lk.secret: does not apply to a `digest` token",
        ),
    ];
    for (text, want) in cases {
        let errors = plan(text, &[]).unwrap_err();
        assert!(
            errors.len() == 1 && errors[0].contains(want),
            "{want}: {errors:#?}"
        );
    }
}
