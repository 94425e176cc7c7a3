//! A real SMTP server (aiosmtpd, Debian's python3-aiosmtpd) on 127.0.0.1 for email tests, and
//! a parser (Python's `email` package) that turns a received message into JSON.

use std::time::Duration;

/// A real SMTP server (aiosmtpd, Debian's python3-aiosmtpd) on 127.0.0.1.
pub struct Smtp {
    pub port: u16,
    pub dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl Smtp {
    pub async fn start(mode: &str) -> Smtp {
        Smtp::start_with(mode, &[]).await
    }

    /// [`Smtp::start`] with TLS: `tls` is `["starttls" or "tls", cert, key]` and, to require a
    /// client certificate, its CA (files, PEM).
    pub async fn start_with(mode: &str, tls: &[String]) -> Smtp {
        use tokio::io::AsyncBufReadExt;
        let dir = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new("/usr/bin/python3")
            .arg(super::root().join("tests/support/smtp_server.py"))
            .arg(dir.path())
            .arg(mode)
            .args(tls)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("/usr/bin/python3 runs (install python3-aiosmtpd)");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("the SMTP server starts in time")
        .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!("smtp_server.py printed `{line}`; is python3-aiosmtpd installed?")
        });
        Smtp {
            port,
            dir,
            _child: child,
        }
    }

    pub fn pager(&self) -> String {
        format!(
            "[[pager]]\nname = \"mail\"\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"Canary <canary@example.com>\"\nto = [\"oncall@example.com\", \"sre@example.com\"]\n",
            self.port
        )
    }

    /// Waits (10 ms apart, at most 5 s) for `n` messages: their texts in the order they came,
    /// or none when fewer came.
    pub async fn messages(&self, n: usize) -> Vec<String> {
        let found = super::poll(
            Duration::from_secs(5),
            Duration::from_millis(10),
            async || {
                let found: Vec<_> = std::fs::read_dir(self.dir.path())
                    .unwrap()
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect();
                super::when(found, |f| f.len() >= n)
            },
        )
        .await;
        let Ok(mut found) = found else {
            return Vec::new();
        };
        found.sort();
        found
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }
}

/// A received message, parsed by Python's `email` package (`tests/support/eml_to_json.py`):
/// `{"headers": {name: [values]}, "text": str, "html": str, "attachments": [{"filename",
/// "content_type", "content"}], "structure": [content types, depth first]}`.
pub fn parse(raw: &str) -> serde_json::Value {
    use std::io::Write as _;
    let mut child = std::process::Command::new("/usr/bin/python3")
        .arg(super::root().join("tests/support/eml_to_json.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 runs (see .ci/run)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(raw.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "eml_to_json.py failed");
    serde_json::from_slice(&out.stdout).unwrap()
}
