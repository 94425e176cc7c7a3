//! `joincanary demo`: the main job on the embedded default. The reference server runs
//! in-process on a free loopback port and the shipped probe runs against it every 5 seconds.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::diag::{EnvSource, ProcessEnv};
use crate::schedule::Schedule;

/// The shipped files, embedded so the demo runs from any directory.
const CONFIG: &str = include_str!("../config/joincanary.toml");
const SIM_PROBE: &str = include_str!("../probes/sim-join.toml");
/// Every 5 seconds, with a deadline below that.
const DEMO_SCHEDULE: &str = "*/5 * * * * *";
const DEMO_TIMEOUT: Duration = Duration::from_secs(4);

/// The process environment with `SIM_URL` pointing at the in-process server.
struct DemoEnv {
    sim_url: String,
}

impl EnvSource for DemoEnv {
    fn get(&self, name: &str) -> Option<String> {
        match name {
            "SIM_URL" => Some(self.sim_url.clone()),
            _ => ProcessEnv.get(name),
        }
    }
}

/// Runs the demo until `stop` resolves.
///
/// # Errors
/// The embedded config failing to load (a build defect) or no loopback port being free.
pub async fn run(listen: SocketAddr, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    let sim = crate::sim::SimServer::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        crate::sim::Credentials::default(),
    )
    .await
    .context("cannot start the reference server on 127.0.0.1")?;

    // Removed when the demo ends, its state (`../state` beside the config) with it: every
    // demo starts fresh, and a run of it leaves nothing behind in the temp directory.
    let scratch = Scratch(tempfile_dir()?);
    let dir = &scratch.0;
    std::fs::create_dir_all(dir.join("config")).context("creating the demo's config directory")?;
    std::fs::create_dir_all(dir.join("probes")).context("creating the demo's probe directory")?;
    std::fs::write(dir.join("config/joincanary.toml"), CONFIG)
        .context("writing the embedded config")?;
    std::fs::write(dir.join("probes/sim-join.toml"), SIM_PROBE)
        .context("writing the embedded probe")?;
    let env = DemoEnv {
        sim_url: sim.base_url(),
    };
    let mut plan = config::load(&dir.join("config/joincanary.toml"), &env)
        .map_err(|e| anyhow::anyhow!("embedded config: {e}"))?;

    let schedule = Schedule::parse(DEMO_SCHEDULE, None).map_err(|e| anyhow::anyhow!(e))?;
    plan.probes = plan
        .probes
        .iter()
        .map(|p| {
            let mut p = p.as_ref().clone();
            p.schedule = schedule.clone();
            p.timeout = DEMO_TIMEOUT;
            p.jitter = Duration::ZERO;
            Arc::new(p)
        })
        .collect();

    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("no free loopback port for metrics")?,
    };
    let addr = listener
        .local_addr()
        .context("reading the metrics address")?;
    plan.listen = addr;
    let sim_url = sim.base_url();
    let region = &plan.region;
    crate::output::print_stdout(&format!(
        "joincanary demo (region {region})
  reference server  {sim_url}
  status page       http://{addr}/
  status JSON       http://{addr}/api/v1/status
  metrics           http://{addr}/metrics
The sim-join probe runs every 5 s. Break the join flow and watch it fail at the right step:
  curl -X PUT {sim_url}/_sim/faults -d '{{\"signalling_drop\": true}}'
  curl -X DELETE {sim_url}/_sim/faults
Ctrl-C stops.
"
    ));

    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    let service = tokio::spawn(crate::service::serve(
        plan,
        listener,
        Arc::new(crate::scheduler::FlowRunner),
        crate::clock::Clock::system(),
        shutdown,
    ));
    stop.await;
    trigger.cancel();
    let result = service.await;
    sim.shutdown().await;
    drop(scratch);
    match result {
        Ok(r) => r.map_err(Into::into),
        Err(e) => Err(anyhow::anyhow!("service task failed: {e}")),
    }
}

/// The demo's directory in the temp directory, removed on drop (an error path too).
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("joincanary-demo-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
