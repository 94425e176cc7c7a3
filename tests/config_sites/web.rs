//! The web config's errors (`--web.config.file`, exporter-toolkit's YAML): each named
//! `web.yml:line:col: key: message` as the TOML files' are, at the offending key (marked `‸`).
//! It stops at its first problem, so each case has one.

use super::MARK;

/// A TLS block whose certificate and key are written by the test (`server.crt`, `server.key`).
const TLS: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

#[test]
fn every_web_config_error_names_file_line_column_and_key() {
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "‸basic_auth_user:\n  alice: x\n".into(),
            "basic_auth_user",
            "unknown field `basic_auth_user` (did you mean `basic_auth_users`?), expected one of",
        ),
        (
            format!("{TLS}  ‸min_versoin: TLS12\n"),
            "tls_server_config.min_versoin",
            "unknown field `min_versoin` (did you mean `min_version`?)",
        ),
        (
            "http_server_config:\n  ‸header: {}\n".into(),
            "http_server_config.header",
            "unknown field `header` (did you mean `headers`?)",
        ),
        (
            "basic_auth_users: ‸[a]\n".into(),
            "basic_auth_users",
            "invalid type",
        ),
        (
            "‸tls_server_config:\n  cert_file: server.crt\n".into(),
            "tls_server_config",
            "cert_file and key_file are both required",
        ),
        (
            "tls_server_config:\n  ‸cert_file: nope.crt\n  key_file: server.key\n".into(),
            "tls_server_config.cert_file",
            "cannot read",
        ),
        (
            "tls_server_config:\n  ‸cert_file: server.key\n  key_file: server.key\n".into(),
            "tls_server_config.cert_file",
            "no certificate in it",
        ),
        (
            format!("{TLS}  ‸min_version: TLS10\n"),
            "tls_server_config.min_version",
            "`TLS10` is not supported (TLS12 or TLS13)",
        ),
        (
            format!("{TLS}  ‸min_version: TLS13\n  max_version: TLS12\n"),
            "tls_server_config.min_version",
            "is above max_version",
        ),
        // A key the table needs: at the table, as a missing field is.
        (
            format!("‸{TLS}  client_auth_type: RequireAndVerifyClientCert\n"),
            "tls_server_config.client_ca_file",
            "is required with client_auth_type RequireAndVerifyClientCert",
        ),
        (
            "basic_auth_users:\n  ‸alice: not-a-hash\n".into(),
            "basic_auth_users.alice",
            "not a bcrypt hash",
        ),
        (
            "http_server_config:\n  headers:\n    ‸\"a b\": x\n".into(),
            "http_server_config.headers.a b",
            "is not a header name",
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    crate::support::write_server_cert(dir.path(), &["localhost"]);
    let web = dir.path().join("web.yml");
    let mut failures = Vec::new();
    for (i, (text, key, says)) in cases.iter().enumerate() {
        let at = text.find(MARK).expect("a mark");
        let line = text[..at].matches('\n').count() + 1;
        let column = text[..at]
            .rsplit('\n')
            .next()
            .map_or(0, |l| l.chars().count())
            + 1;
        std::fs::write(&web, text.replace(MARK, "")).expect("write web.yml");
        let got = match joincanary::web::WebConfig::load(&web) {
            Ok(_) => "(it loads)".to_string(),
            Err(e) => e
                .to_string()
                .replace(&format!("{}/", dir.path().display()), ""),
        };
        let want = format!("web.yml:{line}:{column}: {key}: ");
        if !(got.starts_with(&want) && got.contains(says)) {
            failures.push(format!("case {i}: want `{want}…{says}…`\n    got `{got}`"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
