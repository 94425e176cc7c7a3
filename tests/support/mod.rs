//! Shared test helpers: the real reference server on 127.0.0.1:0, temporary configs, the binary.

#![allow(dead_code)]

pub mod aiortc;
pub mod coturn;
pub mod hostile;
pub mod limits;
pub mod logs;
pub mod nextcloud;
pub mod on_time;
pub mod receiver;
pub mod running;
pub mod servers;
pub mod smtp;
pub mod synapse;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use joincanary::config::{self, Plan};
use joincanary::flow::ProbePlan;
use joincanary::sim::{Credentials, SimServer};

/// Installs the crypto provider the binary installs at start-up, and keeps log captures
/// ([`logs::Capture`]) whole (idempotent).
pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    logs::pin_dispatchers();
}

pub async fn start_sim() -> SimServer {
    init();
    SimServer::start("127.0.0.1:0".parse().unwrap(), Credentials::default())
        .await
        .expect("sim starts on a free port")
}

/// [`init`], then Janus for the media path in its own network namespace
/// ([`servers::start_janus_media`]); panics saying why it did not start.
pub async fn start_janus_media() -> servers::Janus {
    init();
    servers::start_janus_media()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// [`start_janus_media`] with Janus's `full_trickle = true` (its candidates trickled only).
pub async fn start_janus_media_full_trickle() -> servers::Janus {
    init();
    servers::start_janus_media_full_trickle()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The project root (shipped config and probes live there).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The shipped config, pointed at `sim`.
pub fn shipped_plan(sim: &SimServer) -> Plan {
    config::load(
        &root().join("config/joincanary.toml"),
        &env(&[("SIM_URL", &sim.base_url())]),
    )
    .expect("shipped config loads")
}

/// The shipped sim-join probe, pointed at `sim`.
pub fn sim_probe(sim: &SimServer) -> ProbePlan {
    shipped_plan(sim)
        .probe("sim-join")
        .expect("sim-join is shipped")
        .as_ref()
        .clone()
}

/// A temporary directory with a service config naming the given probe files.
pub struct TempConfig {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TempConfig {
    /// `service_extra` is appended to a minimal service config; probes are (file name, text).
    pub fn new(service_extra: &str, probes: &[(&str, &str)]) -> TempConfig {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("probes")).unwrap();
        for (name, text) in probes {
            std::fs::write(dir.path().join("probes").join(name), text).unwrap();
        }
        let path = dir.path().join("joincanary.toml");
        std::fs::write(
            &path,
            format!("region = \"test\"\nlisten = \"127.0.0.1:0\"\nprobes = [\"probes\"]\nstate_dir = \"state\"\n{service_extra}"),
        )
        .unwrap();
        TempConfig { dir, path }
    }

    pub fn load(&self, env_pairs: &[(&str, &str)]) -> Result<Plan, joincanary::diag::ConfigErrors> {
        config::load(&self.path, &env(env_pairs))
    }

    /// The errors loading it gives (as `check` prints them), with the temporary directory cut
    /// from the paths; panics if it loads.
    pub fn errors(&self) -> Vec<String> {
        self.errors_with(&[])
    }

    /// [`TempConfig::errors`] with these environment variables.
    pub fn errors_with(&self, env_pairs: &[(&str, &str)]) -> Vec<String> {
        let prefix = format!("{}/", self.dir.path().display());
        match self.load(env_pairs) {
            Ok(_) => panic!("config should be rejected"),
            Err(e) => {
                e.0.iter()
                    .map(|e| e.to_string().replace(&prefix, ""))
                    .collect()
            }
        }
    }

    pub fn probe_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("probes").join(name)
    }
}

/// The three steps of a websocket join, as probe TOML: `websocket` opens `url`, `join` sends
/// `text` (a TOML literal string: no escapes), and `signalling` waits for what `expect` says
/// (the ws_expect step's own lines: `expect_json = …`, a `timeout`, `max_frames`, …).
pub fn ws_join_steps(url: &str, text: &str, expect: &str) -> String {
    format!(
        "[[steps]]\nname = \"websocket\"\nkind = \"ws_connect\"\nurl = \"{url}\"\n\
         [[steps]]\nname = \"join\"\nkind = \"ws_send\"\ntext = '{text}'\n\
         [[steps]]\nname = \"signalling\"\nkind = \"ws_expect\"\n{expect}\n"
    )
}

/// [`ws_join_steps`] against a server that answers `{"type":"join"}` with
/// `{"type":"joined"}` at `ws://ADDR/ws` (the reference server, the hostile ones), under
/// `head` (the probe's own keys: `timeout`, caps).
pub fn ws_join_probe(addr: &str, head: &str, expect_extra: &str) -> String {
    format!(
        "{head}\n{}",
        ws_join_steps(
            &format!("ws://{addr}/ws"),
            r#"{"type":"join"}"#,
            &format!("expect_json = {{ type = \"joined\" }}\n{expect_extra}"),
        )
    )
}

/// What the alert policy takes for `plan` in region `test`: no links, the system clock.
pub fn alert_context(plan: &ProbePlan) -> joincanary::alert::trigger::AlertContext<'_> {
    joincanary::alert::trigger::AlertContext {
        probe: &plan.name,
        region: "test",
        config: &plan.alerting,
        links: &[],
        system_offset: chrono::TimeDelta::zero(),
    }
}

/// The page on-call would get: the run and its confirming run through the probe's alert
/// policy, as the generic webhook body.
pub fn confirmed_page(plan: &ProbePlan, run: &joincanary::report::ProbeRun) -> String {
    use joincanary::alert::policy::{Decision, ProbeAlertState};
    use joincanary::report::Trigger;
    let cx = alert_context(plan);
    let mut state = ProbeAlertState::default();
    let now = run.finished_at();
    let mut pages = Vec::new();
    for (i, at) in [now, now + chrono::Duration::seconds(10)]
        .into_iter()
        .enumerate()
    {
        let mut r = run.clone();
        r.trigger = if i == 0 {
            Trigger::Scheduled
        } else {
            Trigger::Confirm
        };
        for d in state.observe(&cx, &r, at) {
            if let Decision::Notify(n) = d {
                pages.push(joincanary::alert::webhook::payload(&n).to_string());
            }
        }
    }
    assert_eq!(pages.len(), 1, "one page after the confirming run");
    pages.remove(0)
}

/// `probes/examples/NAME`.
pub fn example_path(name: &str) -> PathBuf {
    root().join("probes/examples").join(name)
}

/// Loads an example probe as `check` does, with `env`.
pub fn example(name: &str, env: &[(&str, &str)]) -> ProbePlan {
    let text = std::fs::read_to_string(example_path(name)).expect("example exists");
    let cfg = TempConfig::new("", &[(name, &text)]);
    let plan = cfg
        .load(env)
        .unwrap_or_else(|e| panic!("{name} loads: {e}"));
    plan.probes[0].as_ref().clone()
}

/// Cuts the timeout of the step named `name` among `steps` (a probe's, or a resident
/// probe's exchange) to `timeout`: a stall the test makes then costs that, not the example's
/// whole wait.
pub fn cut_step(steps: &mut [joincanary::flow::StepPlan], name: &str, timeout: Duration) {
    for s in steps.iter_mut().filter(|s| s.name == name) {
        s.timeout = Some(timeout);
    }
}

/// A server's environment (`NAME`, value) as the `(&str, &str)` pairs [`example`] takes.
pub fn env_pairs<'a>(env: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The report of the step `name` of `run` (panics, showing the run, when it did not run).
pub fn step<'a>(
    run: &'a joincanary::report::ProbeRun,
    name: &str,
) -> &'a joincanary::report::StepReport {
    run.steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("step {name} ran: {run:#?}"))
}

/// Asserts that step `name` of `run` ended before the deadline `plan` gives it (its own
/// timeout, within the probe's): the server's answer ended it, not the timeout. A fixed bound
/// ("under a second") would measure the machine instead, and a loaded one fails it.
pub fn ended_before_its_timeout(plan: &ProbePlan, run: &joincanary::report::ProbeRun, name: &str) {
    let resident = plan.resident.iter().flat_map(|r| r.exchange.iter());
    let spec = plan
        .steps
        .iter()
        .chain(resident)
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{} has no step {name}", plan.name));
    let deadline = spec.timeout.map_or(plan.timeout, |t| t.min(plan.timeout));
    let took = step(run, name).duration_ms;
    assert!(
        took < deadline,
        "{name} ended after {took:?}, at its {deadline:?} deadline: {run:#?}"
    );
}

/// Asserts that each of `steps` ran and passed.
pub fn passed(run: &joincanary::report::ProbeRun, steps: &[&str]) {
    for name in steps {
        assert!(step(run, name).success, "{name} passed: {run:#?}");
    }
}

/// Overrides one `[variables]` entry of a loaded probe.
pub fn set_variable(plan: &mut ProbePlan, name: &str, template: &str) {
    let slot = plan
        .variables
        .iter_mut()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{} has no variable {name}", plan.name));
    slot.1 = joincanary::template::Template::parse(template).unwrap_or_else(|e| panic!("{e}"));
}

/// Loads one probe from text (with a default service config).
pub fn probe_from(text: &str, env_pairs: &[(&str, &str)]) -> Arc<ProbePlan> {
    let cfg = TempConfig::new("", &[("p.toml", text)]);
    let plan = cfg
        .load(env_pairs)
        .unwrap_or_else(|e| panic!("probe loads: {e}"));
    plan.probes[0].clone()
}

/// Writes `server.crt` and `server.key` (self-signed for `names`) into `dir`; the certificate's
/// PEM, for a client to trust.
pub fn write_server_cert(dir: &Path, names: &[&str]) -> String {
    init();
    let certified =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    std::fs::write(dir.join("server.crt"), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.join("server.key"),
        certified.signing_key.serialize_pem(),
    )
    .unwrap();
    certified.cert.pem()
}

/// A web config in `dir/web.yml`: TLS with [`write_server_cert`] for `names`, and the basic-auth
/// `user` with the password `correct horse` (bcrypt cost 4, the lowest, so tests are quick).
/// The path and the certificate's PEM.
pub fn tls_web_config(dir: &Path, names: &[&str], user: &str) -> (PathBuf, String) {
    let pem = write_server_cert(dir, names);
    let hash = bcrypt::hash("correct horse", 4).unwrap();
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  {user}: {hash}\n"),
    )
    .unwrap();
    (web, pem)
}

/// Waits (blocking, 20 ms apart) for `child` to exit, at most `limit`, killing it past that:
/// its exit status, or `None` when it had to be killed.
pub fn exit_within(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_joincanary"))
}

/// `joincanary once --format json` on `config` in a network namespace of its own
/// (`unshare -n`: no network, so no name resolves), for a DNS failure without a real resolver.
pub fn once_without_network(config: &Path) -> std::process::Output {
    let out = std::process::Command::new("unshare")
        .args(["-n", "--"])
        .arg(binary())
        .args(["once", "--format", "json", "--config"])
        .arg(config)
        .output();
    match out {
        Ok(o) if !String::from_utf8_lossy(&o.stderr).contains("unshare failed") => o,
        other => panic!("this test needs `unshare -n` (root, util-linux): {other:?}"),
    }
}

/// PUTs sim faults.
pub async fn set_faults(sim: &SimServer, faults: serde_json::Value) {
    let status = reqwest::Client::new()
        .put(format!("{}/_sim/faults", sim.base_url()))
        .json(&faults)
        .send()
        .await
        .expect("faults endpoint answers")
        .status();
    assert!(status.is_success(), "setting faults: {status}");
}

/// The shipped sim-join probe against `sim_url`, every second, with short timeouts.
pub fn fast_sim_probe(sim_url: &str) -> String {
    std::fs::read_to_string(root().join("probes/sim-join.toml"))
        .unwrap()
        .replace("${SIM_URL:-http://127.0.0.1:7480}", sim_url)
        .replace(
            "timeout = \"20s\"",
            "timeout = \"900ms\"\nschedule = \"* * * * * *\"",
        )
        .replace("timeout = \"5s\"", "timeout = \"400ms\"")
        .replace("timeout = \"2s\"", "timeout = \"200ms\"")
}

/// Serves `app` on 127.0.0.1 at a free port; returns `127.0.0.1:PORT`.
pub async fn serve_router(app: axum::Router) -> String {
    serve_router_on("127.0.0.1", app).await
}

/// Serves `app` on the loopback address `ip` (`127.0.0.2`: another host for redirect tests) at
/// a free port; returns `IP:PORT`.
pub async fn serve_router_on(ip: &str, app: axum::Router) -> String {
    let l = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("{ip}:{}", addr.port())
}

/// The body of `GET {base}{path}` as text (`/metrics`, the status page).
pub async fn get_text(base: &str, path: &str) -> String {
    reqwest::get(format!("{base}{path}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `POST {base}/-/reload` (the lifecycle endpoint): its answer.
pub async fn post_reload(base: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .expect("POST /-/reload answers")
}

/// `/api/v1/status` of a running service at `base` (`http://…`).
pub async fn status(base: &str) -> serde_json::Value {
    reqwest::get(format!("{base}/api/v1/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Scrapes `{base}/metrics` (100 ms apart, at most `within`) until `ok` holds: that scrape.
pub async fn wait_metrics(
    base: &str,
    what: &str,
    within: Duration,
    ok: impl Fn(&str) -> bool,
) -> String {
    eventually(what, within, Duration::from_millis(100), async || {
        when(get_text(base, "/metrics").await, |m| ok(m))
    })
    .await
}

/// How many runs of `probe` a status document counts.
pub fn probe_runs(status: &serde_json::Value, probe: &str) -> u64 {
    status["probes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["probe"] == probe)
        .and_then(|p| p["runs"].as_u64())
        .unwrap_or(0)
}

/// Checks `check` up to `within / every` times (at least once), `every` apart on tokio's clock
/// (so a paused test waits no real time), until it gives `Ok`: that value, or the last `Err`.
/// Bounded in count, and so in time: about `within` when each check is quick.
pub async fn poll<T, E>(
    within: Duration,
    every: Duration,
    mut check: impl AsyncFnMut() -> Result<T, E>,
) -> Result<T, E> {
    let tries = (within.as_millis() / every.as_millis().max(1)).max(1);
    let mut tried = 0;
    loop {
        let not_yet = match check().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        tried += 1;
        if tried >= tries {
            return Err(not_yet);
        }
        tokio::time::sleep(every).await;
    }
}

/// [`poll`] that must succeed: panics naming `what` and showing the last `Err` (the last
/// scrape, say) when `check` never gives `Ok`.
pub async fn eventually<T, E: std::fmt::Display>(
    what: &str,
    within: Duration,
    every: Duration,
    check: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    match poll(within, every, check).await {
        Ok(v) => v,
        Err(last) => panic!("never {what} (polled {within:?}, every {every:?}); last:\n{last}"),
    }
}

/// [`eventually`] for a plain condition.
pub async fn until(what: &str, within: Duration, every: Duration, mut ok: impl FnMut() -> bool) {
    eventually(what, within, every, async || {
        ok().then_some(()).ok_or("false")
    })
    .await
}

/// [`poll`] for a plain condition: whether it came to hold (the caller asserts what it needs,
/// or goes on either way when the wait only lets a task catch up).
pub async fn holds_within(within: Duration, every: Duration, mut ok: impl FnMut() -> bool) -> bool {
    poll(within, every, async || ok().then_some(()).ok_or(()))
        .await
        .is_ok()
}

/// `Ok(value)` when `ok(&value)` holds, else `Err(value)`: a check for [`eventually`] that
/// shows the last value it saw.
pub fn when<T>(value: T, ok: impl FnOnce(&T) -> bool) -> Result<T, T> {
    if ok(&value) { Ok(value) } else { Err(value) }
}

/// Polls (100 ms apart, at most 10 s) until `probe` has run at least `at_least` times.
pub async fn wait_probe_runs(base: &str, probe: &str, at_least: u64) {
    eventually(
        &format!("{at_least} runs of {probe}"),
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || when(status(base).await, |s| probe_runs(s, probe) >= at_least),
    )
    .await;
}

/// Waits (as [`wait_probe_runs`]) until `probe` has run `more` more times than now.
pub async fn wait_more_runs(base: &str, probe: &str, more: u64) {
    let now = probe_runs(&status(base).await, probe);
    wait_probe_runs(base, probe, now + more).await;
}

/// The value of the series written as `name{a="1",b="2"}`, whatever order the exposition
/// puts the labels in.
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    let (name, labels) = split_series(series);
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (s, v) = l.rsplit_once(' ')?;
            let (n, ls) = split_series(s);
            (n == name && labels.iter().all(|x| ls.contains(x))).then(|| v.parse().ok())?
        })
}

fn split_series(s: &str) -> (&str, Vec<&str>) {
    match s.split_once('{') {
        Some((n, rest)) => (
            n,
            rest.trim_end_matches('}')
                .split(',')
                .filter(|x| !x.is_empty())
                .collect(),
        ),
        None => (s, Vec::new()),
    }
}

/// Opens `plan`'s resident session on the system's clock, as the scheduler would; panics with
/// the failed setup.
pub async fn open_session(
    plan: &ProbePlan,
) -> (
    joincanary::flow::resident::Session<'_>,
    joincanary::report::ProbeRun,
) {
    let resident = plan.resident.as_ref().unwrap();
    let clock = joincanary::clock::Clock::system();
    joincanary::flow::resident::Session::open(
        plan,
        resident,
        "test",
        joincanary::report::Trigger::Scheduled,
        clock,
    )
    .await
    .unwrap_or_else(|run| panic!("session opens: {run:#?}"))
}

/// `joincanary --log.level LEVEL COMMAND --config CONFIG` with `env` and without
/// `JOINCANARY_LOG` (so the flag sets the level), to its end: its exit code and what it wrote
/// ([`output_text`]). Blocks in place: for a test on the multi-thread runtime.
pub fn run_logged(
    level: &str,
    command: &str,
    config: &Path,
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(binary())
            .args(["--log.level", level, command, "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .env_remove("JOINCANARY_LOG")
            .output()
            .expect("joincanary runs")
    });
    (out.status.code(), output_text(&out))
}

/// What a finished `joincanary` process wrote: stderr (the log), then stdout (the report).
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    )
}

/// The task of an in-process [`Service`].
pub type ServiceTask = tokio::task::JoinHandle<Result<(), joincanary::service::ServiceError>>;

/// `joincanary run` in-process on 127.0.0.1:0 with the real flow runner and wall clock (which
/// follows tokio's, so a paused test pauses it too).
pub struct Service {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Cancelling it is SIGTERM's path.
    pub shutdown: tokio_util::sync::CancellationToken,
    pub task: ServiceTask,
    /// Asks for a reload as SIGHUP does (a service started by [`Service::reloadable`]).
    sighup: Option<tokio::sync::mpsc::Sender<joincanary::service::ReloadRequest>>,
}

impl Service {
    pub async fn start(plan: Plan) -> Service {
        Service::start_on(plan, joincanary::clock::Clock::system()).await
    }

    /// [`Service::start`] on `clock` (a fixed date: `Clock::starting_at`).
    pub async fn start_on(plan: Plan, clock: joincanary::clock::Clock) -> Service {
        let flow = Arc::new(joincanary::scheduler::FlowRunner);
        Service::scripted(plan, flow, clock).await.0
    }

    /// `run` in-process with `runner` in the flow's place (a scripted platform) on `clock`, and
    /// the service's handles, to read its metrics and status without a scrape.
    pub async fn scripted(
        plan: Plan,
        runner: Arc<dyn joincanary::scheduler::Runner>,
        clock: joincanary::clock::Clock,
    ) -> (Service, joincanary::service::Handles) {
        let handles = joincanary::service::handles(&plan, clock).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(joincanary::service::serve_with(
            plan,
            listener,
            runner,
            clock,
            shutdown.clone(),
            handles.clone(),
        ));
        let service = Service {
            base,
            shutdown,
            task,
            sighup: None,
        };
        (service, handles)
    }

    /// `cfg`'s plan, reloaded from `cfg`'s file on [`Service::reload`] (SIGHUP's path) and, when
    /// `http_endpoint`, on `POST /-/reload`.
    pub async fn reloadable(cfg: &TempConfig, http_endpoint: bool) -> Service {
        let (reload, sender) = reload_for(cfg, http_endpoint);
        let mut svc = Service::with_reload(cfg, reload).await;
        svc.sighup = Some(sender);
        svc
    }

    /// `cfg`'s plan with the given reload channel (a test's own loader, say).
    pub async fn with_reload(cfg: &TempConfig, reload: joincanary::service::Reload) -> Service {
        let plan = cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"));
        Service::serve_reloadable(plan, reload).await
    }

    /// The config at `path` (a mounted ConfigMap, say), reloaded when the config watcher sees
    /// its files change (every 100 ms), as `run --config.watch-interval` does.
    pub async fn watching(path: &std::path::Path) -> Service {
        let loader_path = path.to_path_buf();
        Service::watching_with(
            path,
            Box::new(move || config::load(&loader_path, &env(&[]))),
        )
        .await
    }

    /// [`Service::watching`] with the test's own loader (one that changes the files as it
    /// reads them, say).
    pub async fn watching_with(path: &std::path::Path, loader: Loader) -> Service {
        let plan = config::load(path, &env(&[])).unwrap_or_else(|e| panic!("{e}"));
        let (sender, requests) = tokio::sync::mpsc::channel(4);
        let reload = joincanary::service::Reload {
            loader,
            requests,
            sender,
            http_endpoint: false,
            watch: Some(std::time::Duration::from_millis(100)),
        };
        Service::serve_reloadable(plan, reload).await
    }

    async fn serve_reloadable(plan: Plan, reload: joincanary::service::Reload) -> Service {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(joincanary::service::serve_reloadable(
            plan,
            listener,
            Arc::new(joincanary::scheduler::FlowRunner),
            joincanary::clock::Clock::system(),
            shutdown.clone(),
            reload,
        ));
        Service {
            base,
            shutdown,
            task,
            sighup: None,
        }
    }

    /// `/metrics` as text.
    pub async fn metrics(&self) -> String {
        get_text(&self.base, "/metrics").await
    }

    /// What SIGHUP does: the reload's outcome.
    pub async fn reload(&self) -> Result<(), String> {
        let sighup = self
            .sighup
            .as_ref()
            .expect("started by Service::reloadable");
        let (tx, rx) = tokio::sync::oneshot::channel();
        sighup.send(tx).await.expect("the service takes reloads");
        rx.await.expect("the reload is answered")
    }

    /// Stops it (SIGTERM's path) and checks it ended cleanly within 15 s (runs in flight end
    /// under their deadlines, then at most 5 s of flush).
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(15), self.task)
            .await
            .expect("service stops within 15 s")
            .expect("service task")
            .expect("service ends cleanly");
    }
}

/// How a reload reads the configuration again ([`joincanary::service::Reload::loader`]).
pub type Loader = Box<dyn Fn() -> Result<Plan, joincanary::diag::ConfigErrors> + Send + Sync>;

/// A reload channel for `cfg`'s file (`POST /-/reload` on when `http_endpoint`), and a sender
/// that asks for a reload as SIGHUP would.
fn reload_for(
    cfg: &TempConfig,
    http_endpoint: bool,
) -> (
    joincanary::service::Reload,
    tokio::sync::mpsc::Sender<joincanary::service::ReloadRequest>,
) {
    let (sender, requests) = tokio::sync::mpsc::channel(4);
    let path = cfg.path.clone();
    let reload = joincanary::service::Reload {
        loader: Box::new(move || config::load(&path, &env(&[]))),
        requests,
        sender: sender.clone(),
        http_endpoint,
        watch: None,
    };
    (reload, sender)
}

/// A passing run of `probe` with no steps, started at `started_at` and `took` long: what a
/// scripted [`joincanary::scheduler::Runner`] reports.
pub fn passing_run(
    probe: &str,
    region: String,
    started_at: chrono::DateTime<chrono::Utc>,
    took: Duration,
    trigger: joincanary::report::Trigger,
) -> joincanary::report::ProbeRun {
    joincanary::report::ProbeRun {
        probe: probe.to_string(),
        region,
        success: true,
        started_at,
        duration_ms: took,
        failed_step: None,
        reason: None,
        error: None,
        trigger,
        steps: Vec::new(),
    }
}

/// One manual run of `plan` in region `test`, on the system's clock (as `joincanary once` runs).
pub async fn run_once(plan: &ProbePlan) -> joincanary::report::ProbeRun {
    let clock = joincanary::clock::Clock::system();
    joincanary::flow::run_probe(plan, "test", joincanary::report::Trigger::Manual, &clock).await
}
