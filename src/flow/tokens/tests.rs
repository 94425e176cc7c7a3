//! The primitives against published vectors (RFC 2202, RFC 4231, FIPS 180), a JWT against one
//! signed by another implementation, a run's tokens from its injected clock, and a JWT signed
//! with each kind of private key (PKCS#8, PKCS#1, SEC1) verified with its public key. (Another
//! implementation, jose, verifies them in tests/tokens_keyed.rs.)

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
            "[tokens.lk]\nkind = \"jwt\"\nsecret = \"abcd\"\nalgorithm = \"RS265\"\n",
            "tokens.lk.algorithm: `RS265` is not one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA",
        ),
        (
            "[tokens.lk]\nkind = \"jwt\"\nsecret = \"abcd\"\nalgorithm = \"RS256\"\n",
            "tokens.lk.secret: `RS256` signs with a private key, not the shared `secret`",
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

/// A `jwt` table signing with `alg` and the private key in `${KEY}`, its `kid` `k1`.
fn keyed(alg: &str) -> String {
    format!(
        "[tokens.lk]\nkind = \"jwt\"\nalgorithm = \"{alg}\"\nprivate_key = \"${{KEY}}\"\nkid = \"k1\"\n\
         claims = {{ sub = \"{{{{room}}}}\" }}\n"
    )
}

/// `der` as PEM under `label`.
fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The contents of the DER element at the start of `der`, and what follows it.
fn der_element(der: &[u8]) -> (&[u8], &[u8]) {
    let (len, at) = match der[1] {
        n if n < 0x80 => (usize::from(n), 2),
        0x81 => (usize::from(der[2]), 3),
        0x82 => (usize::from(der[2]) << 8 | usize::from(der[3]), 4),
        n => panic!("length form {n:#x}"),
    };
    (&der[at..at + len], &der[at + len..])
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (its third element).
fn pkcs1_of(pkcs8: &[u8]) -> Vec<u8> {
    let (info, _) = der_element(pkcs8);
    let (_, rest) = der_element(info);
    let (_, rest) = der_element(rest);
    der_element(rest).0.to_vec()
}

/// The token's header and claims decoded, and whether `public` (raw, as aws-lc-rs takes it)
/// verifies its signature under `verify`.
fn verify(
    token: &str,
    verify: &'static dyn aws_lc_rs::signature::VerificationAlgorithm,
    public: &[u8],
) -> (serde_json::Value, serde_json::Value, bool) {
    let (input, signature) = token.rsplit_once('.').unwrap();
    let decode = |p: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap()
    };
    let header: serde_json::Value =
        serde_json::from_slice(&decode(input.split('.').next().unwrap())).unwrap();
    let ok = aws_lc_rs::signature::UnparsedPublicKey::new(verify, public)
        .verify(input.as_bytes(), &decode(signature))
        .is_ok();
    (header, claims(token), ok)
}

#[test]
fn each_private_key_algorithm_signs_what_its_public_key_verifies() {
    use aws_lc_rs::signature as sig;
    use rcgen::{KeyPair, PublicKeyData as _};
    let rsa = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let p256 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let p521 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
    let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    // The same RSA key as PKCS#1 (`RSA PRIVATE KEY`), and a P-256 key as SEC1 (`EC PRIVATE
    // KEY`): the forms older tools (`openssl genrsa`, `openssl ecparam -genkey`) write.
    let rsa_pkcs1 = pem("RSA PRIVATE KEY", &pkcs1_of(&rsa.serialize_der()));
    let ec_key = sig::EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let ec_sec1 = {
        use aws_lc_rs::encoding::AsDer as _;
        let der = ec_key.private_key().as_der().unwrap();
        pem("EC PRIVATE KEY", der.as_ref())
    };
    let ec_public = sig::KeyPair::public_key(&ec_key).as_ref().to_vec();
    type Case<'k> = (
        &'static str,
        String,
        &'static dyn sig::VerificationAlgorithm,
        &'k [u8],
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "RS256",
            rsa.serialize_pem(),
            &sig::RSA_PKCS1_2048_8192_SHA256,
            rsa.der_bytes(),
        ),
        (
            "RS384",
            rsa_pkcs1.clone(),
            &sig::RSA_PKCS1_2048_8192_SHA384,
            rsa.der_bytes(),
        ),
        (
            "RS512",
            rsa.serialize_pem(),
            &sig::RSA_PKCS1_2048_8192_SHA512,
            rsa.der_bytes(),
        ),
        (
            "PS256",
            rsa_pkcs1,
            &sig::RSA_PSS_2048_8192_SHA256,
            rsa.der_bytes(),
        ),
        (
            "PS384",
            rsa.serialize_pem(),
            &sig::RSA_PSS_2048_8192_SHA384,
            rsa.der_bytes(),
        ),
        (
            "PS512",
            rsa.serialize_pem(),
            &sig::RSA_PSS_2048_8192_SHA512,
            rsa.der_bytes(),
        ),
        (
            "ES256",
            p256.serialize_pem(),
            &sig::ECDSA_P256_SHA256_FIXED,
            p256.der_bytes(),
        ),
        ("ES256", ec_sec1, &sig::ECDSA_P256_SHA256_FIXED, &ec_public),
        (
            "ES384",
            p384.serialize_pem(),
            &sig::ECDSA_P384_SHA384_FIXED,
            p384.der_bytes(),
        ),
        (
            "ES512",
            p521.serialize_pem(),
            &sig::ECDSA_P521_SHA512_FIXED,
            p521.der_bytes(),
        ),
        ("EdDSA", ed.serialize_pem(), &sig::ED25519, ed.der_bytes()),
    ];
    for (alg, key, algorithm, public) in cases {
        let loaded = plan(&keyed(alg), &[("KEY", &key)]).unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        let token = loaded.tokens[0].mint(&vars(), at(1_700_000_000)).unwrap();
        let (header, claims, ok) = verify(&token.value, algorithm, public);
        assert!(ok, "{alg}: {header}");
        assert_eq!(
            header,
            serde_json::json!({ "alg": alg, "kid": "k1", "typ": "JWT" })
        );
        assert_eq!(claims["sub"], "canary-eu");
        assert_eq!(claims["exp"], 1_700_000_600);
        // The JWS signature is the fixed r || s for ECDSA (RFC 7518 3.4), not DER.
        let len = token.value.rsplit('.').next().unwrap().len();
        let want = match alg {
            "ES256" => Some(86),
            "ES384" => Some(128),
            "ES512" => Some(176),
            "EdDSA" => Some(86),
            _ => None,
        };
        assert!(want.is_none_or(|w| w == len), "{alg}: {len}");
        // Another key's public half does not verify it.
        assert!(
            !verify(&token.value, algorithm, other.der_bytes()).2,
            "{alg}"
        );
        // The key stays out of the plan's Debug and is scrubbed as any value from the
        // environment.
        assert!(!format!("{:?}", loaded.tokens).contains("PRIVATE"));
        assert!(loaded.redactor.holds_secret(&key), "{alg}");
    }
}

#[test]
fn check_refuses_a_key_that_cannot_sign_its_algorithm() {
    use rcgen::{KeyPair, PublicKeyData as _};
    let p256 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let public = pem("PUBLIC KEY", &p256.subject_public_key_info());
    let encrypted = pem("ENCRYPTED PRIVATE KEY", &p256.serialize_der());
    let cases = [
        (
            keyed("RS256"),
            p256.serialize_pem(),
            "tokens.lk.private_key: `private_key` is an EC P-256 key; `RS256` signs with an RSA key (an EC P-256 key signs ES256)",
        ),
        (
            keyed("ES384"),
            p256.serialize_pem(),
            "`ES384` signs with an EC P-384 key (an EC P-256 key signs ES256)",
        ),
        (
            keyed("ES256"),
            ed.serialize_pem(),
            "is an Ed25519 key; `ES256` signs with an EC P-256 key (an Ed25519 key signs EdDSA)",
        ),
        (
            keyed("ES256"),
            public,
            "holds a `PUBLIC KEY`, not a private key (the server's half: the private key signs)",
        ),
        (
            keyed("ES256"),
            encrypted,
            "holds an encrypted private key, which is not read",
        ),
        (
            keyed("ES256"),
            "not a key at all".into(),
            "`private_key` holds no PEM private key: a PKCS#8 `PRIVATE KEY`",
        ),
        (
            keyed("ES256").replace("kid = \"k1\"", "secret = \"abcd\""),
            p256.serialize_pem(),
            "tokens.lk.secret: `private_key` is set as well",
        ),
        (
            keyed("HS256"),
            p256.serialize_pem(),
            "tokens.lk.algorithm: `HS256` signs with the shared `secret`, not with `private_key`",
        ),
        (
            keyed("ES256").replace("algorithm = \"ES256\"\n", ""),
            p256.serialize_pem(),
            "tokens.lk.algorithm: is required with `private_key`",
        ),
        (
            "[tokens.lk]\nkind = \"jwt\"\nalgorithm = \"ES256\"\n".to_string(),
            String::new(),
            "tokens.lk.private_key_file: is required for `ES256` (or `private_key`)",
        ),
        (
            keyed("ES256").replace("kid = \"k1\"", "header = { kid = \"k2\" }\nkid = \"k1\""),
            p256.serialize_pem(),
            "tokens.lk.kid: `header` sets `kid` as well",
        ),
    ];
    for (text, key, want) in cases {
        let errors = plan(&text, &[("KEY", &key)]).unwrap_err();
        assert!(
            errors.len() == 1 && errors[0].contains(want),
            "{want}: {errors:#?}"
        );
        // No line of the key shows in what `check` says.
        let body = key.lines().find(|l| l.len() > 40);
        assert!(body.is_none_or(|b| !errors[0].contains(b)), "{errors:?}");
    }
}
