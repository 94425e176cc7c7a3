//! Nextcloud Talk for the integration tests: Debian's `nextcloud-spreed-signaling` (the
//! standalone signalling server, tests/servers/nextcloud/start.sh) on its NATS bus (a real
//! `nats-server`, tests/servers/nats/start.sh), validating hellos and room joins against a
//! loopback stand-in for Nextcloud (tests/servers/nextcloud/backend.js), all on 127.0.0.1.
//! Each part is its own process group, so a test can stall the bus, stop the signalling server
//! or rotate the backend's secret and leave the rest running. See docs/test-servers.md.

use std::time::Duration;

use super::servers::{
    NodeServer, Process, Result, ServerError, require_program, start_node, start_on_free_port,
    start_script, temp_dir,
};

/// The shared secret Nextcloud and the signalling server sign backend requests with.
pub const SECRET: &str = "talk-backend-secret-5d1e";
/// The app password backend.js accepts (any user name).
pub const APP_PASSWORD: &str = super::servers::PASSWORD;

/// Why the Nextcloud Talk tests cannot run here (a program not installed), or `None`.
pub fn missing() -> Option<String> {
    [
        (
            "nextcloud-spreed-signaling-server",
            "nextcloud-spreed-signaling",
        ),
        ("nats-server", "nats-server"),
        ("node", "nodejs"),
    ]
    .into_iter()
    .find_map(|(program, package)| {
        require_program("nextcloud-talk", program, package)
            .err()
            .map(|e| e.0)
    })
}

/// A throw-away `nats-server` on 127.0.0.1.
pub struct Nats {
    process: Process,
    port: u16,
}

impl Nats {
    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn process(&self) -> &Process {
        &self.process
    }
}

pub async fn start_nats() -> Result<Nats> {
    require_program("nats", "nats-server", "nats-server")?;
    start_on_free_port("nats", |port| async move {
        let process =
            start_script("nats", "nats/start.sh", &[port.to_string()], &super::root()).await?;
        Ok(Nats { process, port })
    })
    .await
}

/// The signalling server, its NATS and the Nextcloud it asks.
pub struct NextcloudTalk {
    pub nats: Nats,
    nextcloud: NodeServer,
    signaling: Process,
    signaling_port: u16,
    _dir: tempfile::TempDir,
}

/// Starts NATS, the Nextcloud stand-in and the signalling server (configured for both).
pub async fn start_nextcloud_talk() -> Result<NextcloudTalk> {
    if let Some(why) = missing() {
        return Err(ServerError(why));
    }
    let nats = start_nats().await?;
    let nats_url = nats.url();
    let nats_url = &nats_url;
    let (nextcloud, signaling, signaling_port, dir) =
        start_on_free_port("nextcloud-spreed-signaling", |port| async move {
            // Nextcloud's settings name the signalling server, so it starts first, told the port.
            let nextcloud = start_node(
                "nextcloud",
                "nextcloud/backend.js",
                &[
                    "--port".into(),
                    "0".into(),
                    "--secret".into(),
                    SECRET.into(),
                    // As an admin writes it in Talk's settings: http(s), a trailing `/`.
                    "--signaling-url".into(),
                    format!("http://127.0.0.1:{port}/"),
                ],
            )
            .await?;
            let dir = temp_dir("nextcloud-spreed-signaling")?;
            let args = [
                port.to_string(),
                dir.path().join("conf").display().to_string(),
                nextcloud.base_url(),
                SECRET.to_string(),
                nats_url.clone(),
            ];
            let signaling = start_script(
                "nextcloud-spreed-signaling",
                "nextcloud/start.sh",
                &args,
                dir.path(),
            )
            .await?;
            Ok((nextcloud, signaling, port, dir))
        })
        .await?;
    Ok(NextcloudTalk {
        nats,
        nextcloud,
        signaling,
        signaling_port,
        _dir: dir,
    })
}

impl NextcloudTalk {
    /// The Nextcloud base URL (`NEXTCLOUD_URL` of the example probe).
    pub fn nextcloud_url(&self) -> String {
        self.nextcloud.base_url()
    }

    /// The example probe's environment (the signalling server's URL comes from Nextcloud's
    /// settings, as the Talk client takes it).
    pub fn env(&self) -> [(&'static str, String); 1] {
        [("NEXTCLOUD_URL", self.nextcloud_url())]
    }

    pub fn signaling(&self) -> &Process {
        &self.signaling
    }

    pub fn nextcloud(&self) -> &Process {
        self.nextcloud.process()
    }

    /// Stops the signalling server (SIGKILL to its group); NATS and Nextcloud keep running.
    pub fn stop_signaling(&self) -> Result<()> {
        self.signaling.signal("KILL")?;
        // Bounded: the port is closed once the process is gone.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.signaling_port)).is_err() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(ServerError(
            "nextcloud-spreed-signaling: still listening 2 s after SIGKILL".into(),
        ))
    }

    /// Sets Nextcloud's side of the shared secret: another value than the signalling server's
    /// is the admin rotating it in Talk's settings but not in the server's config.
    pub async fn set_nextcloud_secret(&self, secret: &str) -> Result<()> {
        let url = format!("{}/test/secret", self.nextcloud_url());
        let fail = |e: String| ServerError(format!("nextcloud: setting the secret: {e}"));
        let answer = reqwest::Client::new()
            .post(url)
            .json(&serde_json::json!({ "secret": secret }))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(fail(answer.status().to_string()))
        }
    }
}

/// The stack for a test, or `None` with the reason on stderr where a program is not installed
/// on this machine. Never in CI: with `CI` set a missing program fails the test, and
/// .ci/checks.d/nextcloud.sh fails CI when `bash .ci/run` did not install them.
pub async fn start_or_skip() -> Option<NextcloudTalk> {
    super::init();
    if let Some(why) = missing() {
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("skipped (Nextcloud Talk not installed): {why}");
        return None;
    }
    Some(
        start_nextcloud_talk()
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
}
