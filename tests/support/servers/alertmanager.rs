//! Debian's `prometheus-alertmanager` on 127.0.0.1 (no clustering, no gossip port), started
//! with a test's YAML and waited for on `/-/ready`.

use std::time::Duration;

use tokio::time::{Instant, timeout};

use super::{
    Process, Result, START_DEADLINE, ServerError, err, require_program, start_on_free_port,
    temp_dir,
};

/// Debian's `prometheus-alertmanager` on 127.0.0.1 (no clustering), with a temporary data dir.
pub struct Alertmanager {
    process: Process,
    port: u16,
    _dir: tempfile::TempDir,
}

/// Starts Alertmanager with `config` (YAML) and waits (bounded) until `/-/ready` answers 200.
pub async fn start_alertmanager(config: &str) -> Result<Alertmanager> {
    start_alertmanager_with(config, None).await
}

/// [`start_alertmanager`] serving HTTPS as `web` (exporter-toolkit's web config YAML, its paths
/// absolute) says; ready once its port accepts (a plain `/-/ready` cannot ask it).
pub async fn start_alertmanager_tls(config: &str, web: &str) -> Result<Alertmanager> {
    start_alertmanager_with(config, Some(web)).await
}

async fn start_alertmanager_with(config: &str, web: Option<&str>) -> Result<Alertmanager> {
    require_program(
        "alertmanager",
        "prometheus-alertmanager",
        "prometheus-alertmanager",
    )?;
    start_on_free_port("alertmanager", |port| async move {
        let dir = temp_dir("alertmanager")?;
        let file = dir.path().join("alertmanager.yml");
        std::fs::write(&file, config)
            .map_err(|e| ServerError(format!("alertmanager: writing its config: {e}")))?;
        let mut args = vec![
            format!("--config.file={}", file.display()),
            format!("--storage.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            // No gossip port: nothing but the API on loopback.
            "--cluster.listen-address=".to_string(),
            "--log.level=warn".to_string(),
        ];
        if let Some(web) = web {
            let path = dir.path().join("web.yml");
            std::fs::write(&path, web)
                .map_err(|e| ServerError(format!("alertmanager: writing its web config: {e}")))?;
            args.push(format!("--web.config.file={}", path.display()));
        }
        let (mut process, _) = Process::launch(
            "alertmanager",
            "prometheus-alertmanager",
            &args,
            dir.path(),
            false,
        )
        .await?;
        let client = reqwest::Client::new();
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let up = if web.is_some() {
                let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
                matches!(timeout(Duration::from_secs(2), connect).await, Ok(Ok(_)))
            } else {
                let answer = timeout(Duration::from_secs(2), client.get(&ready).send()).await;
                matches!(&answer, Ok(Ok(r)) if r.status().is_success())
            };
            if up {
                return Ok(Alertmanager {
                    process,
                    port,
                    _dir: dir,
                });
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                // "address already in use" makes start_on_free_port try another port.
                return err(format!(
                    "alertmanager exited before it was ready ({status}); its output:\n{}",
                    process.output()
                ));
            }
            if Instant::now() > deadline {
                return err(format!(
                    "alertmanager not ready within {START_DEADLINE:?}; its output:\n{}",
                    process.output()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

impl Alertmanager {
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn process(&self) -> &Process {
        &self.process
    }
}
