//! An email pager's `tls_config` against a real SMTP server (aiosmtpd) as an internal relay is
//! served: a private CA, over STARTTLS and over TLS from the first byte, a certificate for the
//! relay's name rather than the address it is reached at, a client certificate required. Each
//! part is needed, a handshake that fails says which key mends it, and the client key never
//! shows in the output. Through `joincanary test-page`, as an operator checks a pager.

use std::path::Path;

use crate::support::smtp::{self, Smtp};
use crate::support::{self, TempConfig, servers};

const PROBE: &str = "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";

/// `joincanary test-page` through an email pager to 127.0.0.1:`port` with `tls` and the line
/// `tls_config` (the files of `pki` copied beside the config): the exit code and the output.
fn test_page(pki: &Path, port: u16, tls: &str, tls_config: &str) -> (Option<i32>, String) {
    let pager = format!(
        "[[pager]]\nname = \"mail\"\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\nfrom = \"canary@example.com\"\nto = [\"oncall@example.com\"]\n{tls_config}"
    );
    let cfg = TempConfig::new(&pager, &[("p.toml", PROBE)]);
    for f in ["ca.pem", "client.pem", "client-key.pem"] {
        std::fs::copy(pki.join(f), cfg.dir.path().join(f)).unwrap();
    }
    // At debug level: the client key must not show in the most talkative log either.
    support::run_logged("debug", "test-page", &cfg.path, &[])
}

/// The server's certificate, its key and the CA's, as `smtp_server.py` takes them.
fn server_files(pki: &Path, mode: &str, client_ca: bool) -> Vec<String> {
    let at = |name: &str| pki.join(name).display().to_string();
    let mut args = vec![mode.to_string(), at("server.pem"), at("server-key.pem")];
    if client_ca {
        args.push(at("ca.pem"));
    }
    args
}

/// The test page's two mails (trigger and resolve) arrived, as a mail client reads them.
async fn assert_delivered(server: &Smtp, out: &str) {
    assert!(
        out.contains("mail: ok (test trigger and resolve delivered)"),
        "{out}"
    );
    let mails = server.messages(2).await;
    assert_eq!(mails.len(), 2, "{out}");
    let first = smtp::parse(&mails[0]);
    let text = first["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("[TEST] joincanary test page from test"),
        "{first:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_pager_trusts_a_private_ca_over_starttls() {
    let pki = tempfile::tempdir().unwrap();
    servers::write_pki(pki.path(), "127.0.0.1");
    let server = Smtp::start_with("accept", &server_files(pki.path(), "starttls", false)).await;

    let (code, out) = test_page(
        pki.path(),
        server.port,
        "starttls",
        "tls_config = { ca_file = \"ca.pem\" }\n",
    );
    assert_eq!(code, Some(0), "{out}");
    assert_delivered(&server, &out).await;

    // Without the CA: the system's roots do not know it, and the failure says where it goes.
    let (code, out) = test_page(pki.path(), server.port, "starttls", "");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("mail: FAILED: SMTP: TLS handshake with `127.0.0.1` failed: invalid peer certificate: UnknownIssuer (a private CA goes in the pager's `tls_config.ca_file`)"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_pager_speaks_mutual_tls_to_a_relay_named_otherwise() {
    let pki = tempfile::tempdir().unwrap();
    servers::write_pki(pki.path(), "smtp.internal");
    let server = Smtp::start_with("accept", &server_files(pki.path(), "tls", true)).await;
    let key = std::fs::read_to_string(pki.path().join("client-key.pem")).unwrap();
    // A line of the key's base64 (not the BEGIN line): never in any output.
    let key_line = key.lines().nth(1).unwrap().to_string();

    let full = "tls_config = { ca_file = \"ca.pem\", cert_file = \"client.pem\", key_file = \"client-key.pem\", server_name = \"smtp.internal\" }\n";
    let (code, out) = test_page(pki.path(), server.port, "tls", full);
    assert_eq!(code, Some(0), "{out}");
    assert_delivered(&server, &out).await;
    assert!(!out.contains(&key_line), "{out}");

    // Reached by its address, the relay's certificate names something else.
    let (code, out) = test_page(
        pki.path(),
        server.port,
        "tls",
        "tls_config = { ca_file = \"ca.pem\", cert_file = \"client.pem\", key_file = \"client-key.pem\" }\n",
    );
    assert_eq!(code, Some(1), "{out}");
    let hint = "(the name the certificate carries goes in the pager's `tls_config.server_name`)";
    assert!(
        out.contains(&format!(
            "certificate is only valid for DnsName(\"smtp.internal\") {hint}"
        )),
        "no server_name: {out}"
    );

    // No client certificate: the relay refuses the handshake, and the failure says so.
    let (code, out) = test_page(
        pki.path(),
        server.port,
        "tls",
        "tls_config = { ca_file = \"ca.pem\", server_name = \"smtp.internal\" }\n",
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("`tls_config.cert_file` and `key_file`)"),
        "no client certificate: {out}"
    );
    assert!(!out.contains(&key_line), "{out}");
}
