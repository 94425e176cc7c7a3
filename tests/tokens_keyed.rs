//! `[tokens]` JWTs signed with a private key (RS*, PS*, ES*, EdDSA), checked by a verifier that
//! is not ours: npm `jose` (tests/servers/jwt/) verifies each with the PUBLIC key its `kid`
//! names, its `alg`, `iss`, `aud`, `exp` and `nbf`. A token signed by another key, or minted on a
//! clock an hour behind, is refused; the key, the tokens and their signatures never show in the
//! run, the page, or a running service's status, metrics, trace log and pages. The Jitsi
//! example's commented key-pair table mints a token jose accepts. Keys are generated per test
//! (rcgen on aws-lc-rs) and written to the test's temporary directory.

use std::path::Path;

use base64::Engine as _;
use joincanary::clock::Clock;
use joincanary::flow::{ProbePlan, run_probe};
use joincanary::report::{FailureReason, Trigger};
use rcgen::{KeyPair, SignatureAlgorithm};

use crate::secrets::leaks_in;
use crate::support::receiver::Receiver;
use crate::support::servers::{self, NodeServer};
use crate::support::{self, TempConfig, passed, step};
use crate::tokens::{jitsi_table, refused_every_second, seen, shown_while_refused};

const ISSUER: &str = "joincanary";
const AUDIENCE: &str = "canary-api";

/// Each algorithm and the kind of key it signs with (the file name under `probes/keys/`).
const ALGS: [(&str, &str); 10] = [
    ("RS256", "rsa"),
    ("RS384", "rsa"),
    ("RS512", "rsa"),
    ("PS256", "rsa"),
    ("PS384", "rsa"),
    ("PS512", "rsa"),
    ("ES256", "p256"),
    ("ES384", "p384"),
    ("ES512", "p521"),
    ("EdDSA", "ed25519"),
];

fn generate(kind: &str) -> KeyPair {
    let alg: &'static SignatureAlgorithm = match kind {
        "rsa" => &rcgen::PKCS_RSA_SHA256,
        "p256" => &rcgen::PKCS_ECDSA_P256_SHA256,
        "p384" => &rcgen::PKCS_ECDSA_P384_SHA384,
        "p521" => &rcgen::PKCS_ECDSA_P521_SHA512,
        _ => &rcgen::PKCS_ED25519,
    };
    KeyPair::generate_for(alg).unwrap()
}

/// A private key's shapes to look for: its PEM, and its base64 body on one line.
fn key_secrets(key: &KeyPair) -> [String; 2] {
    let der = base64::engine::general_purpose::STANDARD.encode(key.serialize_der());
    [key.serialize_pem(), der]
}

/// `[tokens.NAME]` for `alg` signed with `probes/keys/<file>.pem`, its `kid` `canary-<name>`.
fn token(name: &str, alg: &str, file: &str) -> String {
    format!(
        "[tokens.{name}]\nkind = \"jwt\"\nalgorithm = \"{alg}\"\nprivate_key_file = \"keys/{file}.pem\"\n\
         kid = \"canary-{name}\"\nttl = \"5m\"\n\
         claims = {{ iss = \"{ISSUER}\", aud = \"{AUDIENCE}\", sub = \"canary-{{{{region}}}}\" }}\n"
    )
}

/// A step that has the verifier check token `name`.
fn verify_step(name: &str, alg: &str) -> String {
    format!(
        "[[steps]]\nname = \"verify-{name}\"\nkind = \"http\"\nurl = \"${{JWT_URL}}/verify\"\n\
         headers = {{ Authorization = \"Bearer {{{{{name}}}}}\" }}\nexpect_status = [200]\n\
         expect_json = {{ alg = \"{alg}\", kid = \"canary-{name}\", claims = {{ sub = \"canary-local\", aud = \"{AUDIENCE}\" }} }}\n\
         timeout = \"5s\"\n"
    )
}

/// A probe of a token and its check for each of `algs` (`(alg, key file)`).
fn probe(algs: &[(&str, &str)]) -> String {
    let mut text = String::from("timeout = \"30s\"\n");
    for (alg, file) in algs {
        text.push_str(&token(&alg.to_lowercase(), alg, file));
    }
    for (alg, _) in algs {
        text.push_str(&verify_step(&alg.to_lowercase(), alg));
    }
    text
}

/// Writes each `(file, key)`'s private key to `dir/probes/keys/<file>.pem`, and what the
/// verifier knows, `{"canary-<alg>": {alg, spki}}` for `public` (`(alg, key)`), to
/// `dir/keys.json`.
fn write_keys(dir: &Path, private: &[(&str, &KeyPair)], public: &[(&str, &KeyPair)]) {
    let keys = dir.join("probes/keys");
    std::fs::create_dir_all(&keys).unwrap();
    for (file, key) in private {
        std::fs::write(keys.join(format!("{file}.pem")), key.serialize_pem()).unwrap();
    }
    let known: serde_json::Map<String, serde_json::Value> = public
        .iter()
        .map(|(alg, key)| {
            (
                format!("canary-{}", alg.to_lowercase()),
                serde_json::json!({ "alg": alg, "spki": key.public_key_pem() }),
            )
        })
        .collect();
    std::fs::write(
        dir.join("keys.json"),
        serde_json::Value::Object(known).to_string(),
    )
    .unwrap();
}

async fn verifier(dir: &Path) -> NodeServer {
    support::init();
    servers::start_jwt(&dir.join("keys.json"), ISSUER, AUDIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn load(cfg: &TempConfig, server: &NodeServer) -> ProbePlan {
    let url = server.base_url();
    let plan = cfg
        .load(&[("JWT_URL", &url)])
        .unwrap_or_else(|e| panic!("{e}"));
    (*plan.probes[0]).clone()
}

#[tokio::test]
async fn each_key_algorithm_signs_a_token_jose_verifies_with_the_public_key() {
    let kinds = ["rsa", "p256", "p384", "p521", "ed25519"];
    let keys: Vec<(&str, KeyPair)> = kinds.iter().map(|k| (*k, generate(k))).collect();
    let key = |kind: &str| &keys.iter().find(|(k, _)| *k == kind).unwrap().1;
    let cfg = TempConfig::new("", &[("keyed.toml", &probe(&ALGS))]);
    let private: Vec<(&str, &KeyPair)> = keys.iter().map(|(k, p)| (*k, p)).collect();
    let public: Vec<(&str, &KeyPair)> = ALGS.iter().map(|(a, k)| (*a, key(k))).collect();
    write_keys(cfg.dir.path(), &private, &public);
    let server = verifier(cfg.dir.path()).await;
    let plan = load(&cfg, &server);
    let run = run_probe(&plan, "local", Trigger::Manual, &Clock::system()).await;
    let names: Vec<String> = ALGS
        .iter()
        .map(|(a, _)| format!("verify-{}", a.to_lowercase()))
        .collect();
    passed(&run, &names.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(run.success, "{run:#?}");
    assert_eq!(seen(&server).await.len(), 2 * ALGS.len());
}

#[tokio::test]
async fn a_token_signed_by_another_key_or_on_a_clock_an_hour_behind_is_refused_and_stays_secret() {
    let (good, other, rsa) = (generate("p256"), generate("p256"), generate("rsa"));
    let algs = [("ES256", "p256"), ("RS256", "rsa")];
    let cfg = TempConfig::new("", &[("keyed.toml", &probe(&algs))]);
    // The verifier knows `canary-es256` as `good`; the probe signs with `other`.
    write_keys(
        cfg.dir.path(),
        &[("p256", &other), ("rsa", &rsa)],
        &[("ES256", &good), ("RS256", &rsa)],
    );
    let server = verifier(cfg.dir.path()).await;
    let mut plan = load(&cfg, &server);
    let run = run_probe(&plan, "local", Trigger::Manual, &Clock::system()).await;
    assert_eq!(run.failed_step.as_deref(), Some("verify-es256"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::HttpStatus));
    let error = step(&run, "verify-es256").error.clone().unwrap();
    assert!(
        error.starts_with("HTTP 401: invalid token: signature verification failed"),
        "{error}"
    );
    assert!(
        error.contains("[redacted]"),
        "the echoed token is scrubbed: {error}"
    );
    let page = support::confirmed_page(&plan, &run);

    // The right key, on a clock an hour behind: expired when it arrives.
    plan.steps.retain(|s| s.name == "verify-rs256");
    let behind = Clock::starting_at(chrono::Utc::now() - chrono::Duration::hours(1));
    let late = run_probe(&plan, "local", Trigger::Manual, &behind).await;
    let error = step(&late, "verify-rs256").error.clone().unwrap();
    assert!(
        error.starts_with("HTTP 401: invalid token: \"exp\" claim timestamp check failed"),
        "{error}"
    );

    let tokens = seen(&server).await;
    assert_eq!(tokens.len(), 4, "{tokens:?}");
    let texts = [
        ("run", format!("{run:?}")),
        ("late run", format!("{late:?}")),
        ("page", page),
        ("plan", format!("{plan:?}")),
    ];
    let keys = [key_secrets(&other), key_secrets(&rsa)];
    let mut secrets: Vec<&str> = tokens.iter().map(String::as_str).collect();
    secrets.extend(keys.iter().flatten().map(String::as_str));
    let leaks = leaks_in(&texts, &secrets);
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

/// A running service, its probe refused every second (signed by another key): its status,
/// page, metrics, trace log and the pages it sent hold no shape of the key nor of a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_service_shows_no_private_key_nor_its_tokens() {
    let (good, other) = (generate("ed25519"), generate("ed25519"));
    let (receiver, hook) = Receiver::start(200).await;
    let text = probe(&[("EdDSA", "ed25519")]).replacen("timeout = \"30s\"", "", 1);
    let cfg = refused_every_second(&hook, "keyed.toml", &text);
    write_keys(cfg.dir.path(), &[("ed25519", &other)], &[("EdDSA", &good)]);
    let server = verifier(cfg.dir.path()).await;
    let url = server.base_url();
    let env = [("JWT_URL", url.as_str())];
    let refusal = "signature verification failed";
    let texts = shown_while_refused(&cfg, &env, &receiver, "keyed", refusal).await;
    let tokens = seen(&server).await;
    assert!(!tokens.is_empty());
    let key = key_secrets(&other);
    let mut secrets: Vec<&str> = tokens.iter().map(String::as_str).collect();
    secrets.extend(key.iter().map(String::as_str));
    let leaks = leaks_in(&texts, &secrets);
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

/// The key-pair table jitsi-meet.toml shows in a comment (Jitsi's ASAP, 8x8 JaaS), with a key
/// file and `kid` from the environment, mints a token jose accepts with the public key.
#[tokio::test]
async fn the_jitsi_examples_key_pair_table_mints_a_token_jose_accepts() {
    let (_, table) = jitsi_table("jitsi_asap_token");
    assert!(table.contains("algorithm = \"RS256\""), "{table}");
    let rsa = generate("rsa");
    let kid = "vpaas-magic-cookie-0123abcd/4f5e6d";
    let probe = format!(
        "[variables]\nroom = \"canary-{{{{region}}}}\"\n{table}\n\
         [[steps]]\nname = \"verify\"\nkind = \"http\"\nurl = \"${{JWT_URL}}/verify\"\n\
         headers = {{ Authorization = \"Bearer {{{{jitsi_asap_token}}}}\" }}\n\
         expect_json = {{ alg = \"RS256\", kid = \"{kid}\", claims = {{ room = \"canary-local\" }} }}\n"
    );
    let cfg = TempConfig::new("", &[("jitsi.toml", &probe)]);
    let dir = cfg.dir.path();
    std::fs::write(dir.join("jitsi.pem"), rsa.serialize_pem()).unwrap();
    let known = serde_json::json!({ kid: { "alg": "RS256", "spki": rsa.public_key_pem() } });
    std::fs::write(dir.join("keys.json"), known.to_string()).unwrap();
    support::init();
    let server = servers::start_jwt(&dir.join("keys.json"), "canary-app", "jitsi")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let key_file = dir.join("jitsi.pem").display().to_string();
    let url = server.base_url();
    let plan = cfg
        .load(&[
            ("JWT_URL", &url),
            ("JITSI_PRIVATE_KEY_FILE", &key_file),
            ("JITSI_KID", kid),
            ("JITSI_APP_ID", "canary-app"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    let run = run_probe(&plan.probes[0], "local", Trigger::Manual, &Clock::system()).await;
    assert!(run.success, "{run:#?}");
}
