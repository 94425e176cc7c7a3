//! Issue 17, "tasks that die quietly": the real service on tokio's paused clock, with a task
//! made to panic (a run that panics in the runner; the run consumer and a probe's schedule
//! loop through the `sim` feature's fault hook, which no config or request reaches). Each time:
//! logged, counted in `joincanary_task_restarts_total{task}`, `/-/ready` 503 naming the task,
//! probing and recording go on, and readiness comes back once the task is healthy again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use joincanary::clock::Clock;
use joincanary::flow::ProbePlan;
use joincanary::report::{ProbeRun, Trigger};
use joincanary::scheduler::Runner;
use joincanary::supervise::{HEALTHY_AFTER, Task, fault};

use crate::support::TempConfig;

/// Passes in 5 ms, except the runs numbered in `panic_on` (1-based), which panic.
struct Runs {
    count: AtomicU32,
    panic_on: Vec<u32>,
}

impl Runner for Runs {
    fn run(
        &self,
        probe: Arc<ProbePlan>,
        region: String,
        trigger: Trigger,
        clock: Clock,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ProbeRun> + Send>> {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        let panics = self.panic_on.contains(&n);
        let started_at = clock.now();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert!(!panics, "deliberate panic in run {n}");
            crate::support::passing_run(
                &probe.name,
                region,
                started_at,
                Duration::from_millis(5),
                trigger,
            )
        })
    }
}

struct Running {
    service: crate::support::Service,
    handles: joincanary::service::Handles,
    _cfg: TempConfig,
}

fn origin() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 3, 0, 0).unwrap()
}

/// A probe file: `probe`, every 10 s, one `http` step to a port nothing listens at.
fn every_10s(probe: &str) -> String {
    format!(
        "name = \"{probe}\"\nschedule = \"*/10 * * * * *\"\ntimeout = \"5s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n"
    )
}

/// Runs that pass, but for those numbered in `panic_on`.
fn runs(panic_on: Vec<u32>) -> Arc<Runs> {
    Arc::new(Runs {
        count: AtomicU32::new(0),
        panic_on,
    })
}

/// `run` in-process with one probe named `probe`, every 10 s, on the paused clock.
async fn start(probe: &str, panic_on: Vec<u32>) -> Running {
    start_with(&every_10s(probe), runs(panic_on)).await
}

/// `run` in-process with the probe file `text`, its runs by `runner`, on the paused clock.
async fn start_with(text: &str, runner: Arc<dyn Runner>) -> Running {
    let cfg = TempConfig::new("", &[("p.toml", text)]);
    start_config(cfg, runner).await
}

/// `run` in-process with `cfg` (whose state directory a test may arm a fault in first), its
/// runs by `runner`, on the paused clock.
async fn start_config(cfg: TempConfig, runner: Arc<dyn Runner>) -> Running {
    let plan = cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"));
    let clock = Clock::starting_at(origin());
    let (service, handles) = crate::support::Service::scripted(plan, runner, clock).await;
    Running {
        service,
        handles,
        _cfg: cfg,
    }
}

impl Running {
    fn restarts(&self, task: Task) -> f64 {
        self.value("joincanary_task_restarts_total", task)
    }

    fn failing(&self, task: Task) -> f64 {
        self.value("joincanary_task_failing", task)
    }

    fn value(&self, family: &str, task: Task) -> f64 {
        self.series(
            family,
            &format!("region=\"test\",task=\"{}\"", task.as_str()),
        )
    }

    /// The value of `family{labels}`.
    fn series(&self, family: &str, labels: &str) -> f64 {
        let text = self.handles.metrics.render();
        let series = format!("{family}{{{labels}}}");
        crate::support::metric_value(&text, &series)
            .unwrap_or_else(|| panic!("no {series} in {text}"))
    }

    fn runs(&self, probe: &str) -> u64 {
        self.handles
            .status
            .snapshot()
            .iter()
            .find(|p| p.probe == probe)
            .map_or(0, |p| p.runs)
    }

    async fn ready(&self) -> (u16, String) {
        ready_at(&self.service.base).await
    }

    /// `task` failed `restarts` times so far, and `/-/ready` is 503 with the line `line`.
    async fn assert_failing(&self, task: Task, restarts: f64, line: &str) {
        assert_eq!(self.restarts(task), restarts, "{}", task.as_str());
        let (code, body) = self.ready().await;
        assert_eq!(code, 503, "{body}");
        assert!(body.lines().any(|l| l == line), "{line:?} not in {body:?}");
    }

    async fn stop(self) {
        self.service.shutdown.cancel();
        self.service.task.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn every_task_kind_has_a_restart_series_at_zero_from_start() {
    let svc = start("quiet-start", Vec::new()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for task in Task::ALL {
        assert_eq!(svc.restarts(task), 0.0, "{}", task.as_str());
        assert_eq!(svc.failing(task), 0.0, "{}", task.as_str());
    }
    assert_eq!(
        svc.ready().await,
        (
            200,
            "ready; no pager configured: alerts show only in metrics and status; nobody is paged\n"
                .to_string()
        )
    );
    svc.stop().await;
}

/// Before: a panic in the consumer (the 100000000-year maintenance window) stopped every run
/// from being recorded or paged while `/-/ready` stayed 200.
#[tokio::test(start_paused = true)]
async fn a_panicking_run_consumer_is_restarted_and_holds_readiness_until_healthy() {
    let probe = "consumer-fault";
    fault::arm(Task::Consumer, probe, 1);
    let svc = start(probe, Vec::new()).await;
    // The first run (at :10) reaches the consumer, which panics on it.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(svc.restarts(Task::Consumer), 1.0);
    assert_eq!(svc.failing(Task::Consumer), 1.0);
    let (code, body) = svc.ready().await;
    assert_eq!(code, 503);
    assert_eq!(
        body,
        format!(
            "not ready: a supervised task failed\nrun consumer panicked: injected fault in the consumer task for {probe}; restarting\n"
        )
    );
    // Restarted after 1 s: the next runs are recorded again (the panicking one was lost).
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(svc.runs(probe), 2);
    assert_eq!(svc.ready().await.0, 503);
    // Healthy again after running a minute without failing.
    tokio::time::sleep(HEALTHY_AFTER).await;
    assert_eq!(svc.ready().await.0, 200);
    assert_eq!(svc.restarts(Task::Consumer), 1.0);
    assert_eq!(svc.failing(Task::Consumer), 0.0);
    svc.stop().await;
}

/// A run that panics used to leave its probe marked running for ever: every later tick was
/// skipped as an overlap. Now the probe is freed, the panic counted, and the next run that
/// ends makes it ready again.
#[tokio::test(start_paused = true)]
async fn a_panicking_run_frees_its_probe_and_readiness_returns_with_the_next_run() {
    let probe = "run-fault";
    let svc = start(probe, vec![1]).await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    svc.assert_failing(
        Task::Run,
        1.0,
        &format!("run of probe {probe} panicked: deliberate panic in run 1; restarting"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(svc.runs(probe), 1);
    assert_eq!(svc.ready().await.0, 200);
    let skipped = svc.handles.status.snapshot()[0].skipped;
    assert_eq!(skipped, 0);
    svc.stop().await;
}

/// The real flow: a `turn` step that panics (the fault hook at the step's start) is the run's
/// panic, counted and named like any run's, and the probe runs again at its next tick (where
/// the step fails on its own: nothing answers at 127.0.0.1:9).
#[tokio::test(start_paused = true)]
async fn a_turn_step_that_panics_is_a_failing_run_task_and_the_probe_runs_again() {
    let probe = "turn-fault";
    let text = format!(
        "name = \"{probe}\"\nschedule = \"*/10 * * * * *\"\ntimeout = \"5s\"\n[[steps]]\nname = \"relay\"\nkind = \"turn\"\nurl = \"turn:127.0.0.1:9?transport=udp\"\nusername = \"u\"\ncredential = \"p\"\ntimeout = \"2s\"\n"
    );
    fault::arm(Task::Run, &format!("{probe}/relay"), 1);
    let svc = start_with(&text, Arc::new(joincanary::scheduler::FlowRunner)).await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    svc.assert_failing(
        Task::Run,
        1.0,
        &format!("run of probe {probe} panicked: injected fault in the run task for {probe}/relay; restarting"),
    )
    .await;
    assert_eq!(svc.runs(probe), 0);
    // The next run is the step's own failure, recorded; readiness is back.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(svc.runs(probe), 1);
    assert_eq!(svc.ready().await.0, 200);
    svc.stop().await;
}

/// A resident probe's session loop that panics (at its first pass) is restarted after 1 s;
/// its session is then opened (and fails: nothing listens at 127.0.0.1:9), so runs are
/// recorded again; readiness comes back after a quiet minute.
#[tokio::test(start_paused = true)]
async fn a_panicking_resident_loop_is_restarted_and_its_runs_recorded() {
    let probe = "resident-fault";
    let text =
        std::fs::read_to_string(crate::support::root().join("probes/examples/resident-sim.toml"))
            .unwrap()
            .replace("${SIM_URL:-http://127.0.0.1:7480}", "http://127.0.0.1:9")
            .replacen("name = \"sim-resident\"", &format!("name = \"{probe}\""), 1);
    assert!(text.contains(probe), "the example names its probe");
    fault::arm(Task::Resident, probe, 1);
    let svc = start_with(&text, Arc::new(joincanary::scheduler::FlowRunner)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    svc.assert_failing(
        Task::Resident,
        1.0,
        &format!("resident probe {probe} panicked: injected fault in the resident task for {probe}; restarting"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(svc.runs(probe) >= 1, "{}", svc.runs(probe));
    tokio::time::sleep(HEALTHY_AFTER).await;
    assert_eq!(svc.ready().await.0, 200);
    assert_eq!(svc.restarts(Task::Resident), 1.0);
    svc.stop().await;
}

/// A probe's schedule loop that panics is restarted with the same confirm channel and keeps
/// its cadence; two panics in a row double the backoff and count twice.
#[tokio::test(start_paused = true)]
async fn a_panicking_schedule_loop_is_restarted_and_the_probe_keeps_running() {
    let probe = "schedule-fault";
    fault::arm(Task::Scheduler, probe, 2);
    let svc = start(probe, Vec::new()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    svc.assert_failing(
        Task::Scheduler,
        1.0,
        &format!("scheduler of probe {probe} panicked: injected fault in the scheduler task for {probe}; restarting"),
    )
    .await;
    // 1 s later it panics again (2 times), then runs after 2 s more.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(svc.restarts(Task::Scheduler), 2.0);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(svc.runs(probe) >= 2, "{}", svc.runs(probe));
    tokio::time::sleep(HEALTHY_AFTER).await;
    assert_eq!(svc.ready().await.0, 200);
    svc.stop().await;
}

/// `/-/ready`'s status and body (real time).
async fn ready_at(base: &str) -> (u16, String) {
    let r = reqwest::get(format!("{base}/-/ready")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Before, a look of the config watcher that panicked only warned, at every tick: the watcher
/// was dead (no change would ever be reloaded) while `/-/ready` said 200. Now each panic is a
/// failing `reload` task named `config watcher` (counted, `/-/ready` 503 naming it) until a
/// look succeeds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_watcher_whose_look_panics_holds_readiness_until_a_look_succeeds() {
    let probe = "name = \"watched\"\nschedule = \"0 0 * * *\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";
    let cfg = TempConfig::new("", &[("p.toml", probe)]);
    let svc = crate::support::Service::watching(&cfg.path).await;
    // The watcher looks every 100 ms: the next 10 looks panic.
    fault::arm(Task::Reload, &cfg.path.display().to_string(), 10);
    let failing = crate::support::poll(
        Duration::from_secs(20),
        Duration::from_millis(20),
        async || {
            let (code, body) = ready_at(&svc.base).await;
            crate::support::when((code, body), |(code, body)| {
                *code == 503
                    && body.contains("config watcher panicked looking at the configuration files")
            })
        },
    )
    .await;
    assert!(failing.is_ok(), "{failing:?}");
    // The tenth panic, then a look that works: ready again, every panic counted.
    let healthy = crate::support::poll(
        Duration::from_secs(30),
        Duration::from_millis(50),
        async || crate::support::when(ready_at(&svc.base).await, |(code, _)| *code == 200),
    )
    .await;
    assert!(healthy.is_ok(), "{healthy:?}");
    let metrics = svc.metrics().await;
    assert!(
        metrics.contains("joincanary_task_restarts_total{region=\"test\",task=\"reload\"} 10"),
        "{metrics}"
    );
    assert!(
        metrics.contains("joincanary_task_failing{region=\"test\",task=\"reload\"} 0"),
        "{metrics}"
    );
    svc.stop().await;
}

/// The state log's writer is a thread of its own, outside the supervisor: before, a panic in
/// it stopped every disk write while memory went on and `/-/ready` stayed 200. Now the batch's
/// panic is caught, counted as `history` (the state writers), `/-/ready` is 503 naming it,
/// and the writer carries on: the log is written once the fault is gone and readiness returns.
#[tokio::test(start_paused = true)]
async fn a_panicking_state_log_writer_holds_readiness_and_keeps_writing() {
    let cfg = TempConfig::new("", &[("p.toml", &every_10s("state-fault"))]);
    let log = cfg
        .load(&[])
        .unwrap_or_else(|e| panic!("{e}"))
        .state_dir
        .join("state.log");
    // Every batch panics until the fault is disarmed: the writer's retries wait real time
    // (0.5 s, then doubling), so a fixed count could run out before a loaded machine gets
    // to look at readiness.
    const ARMED: u32 = 1_000;
    let key = log.display().to_string();
    fault::arm(Task::History, &key, ARMED);
    let svc = start_config(cfg, runs(Vec::new())).await;
    // The writer is an OS thread: its retries wait real time. Each pause runs on the
    // blocking pool, so the service's tasks (which open the store) go on meanwhile and the
    // paused clock does not jump ahead.
    for _ in 0..400 {
        if svc.restarts(Task::History) >= 1.0 {
            break;
        }
        real_pause(Duration::from_millis(5)).await;
    }
    let (code, body) = svc.ready().await;
    assert_eq!(code, 503, "{body}");
    // The writer retries 0.5 s later on the real clock: a loaded machine may read readiness
    // after its next panic, and the line then counts them (` (2 times)`).
    let panicked = format!(
        "state log writer panicked: injected fault in the history task for {}",
        log.display()
    );
    let named = |l: &str| {
        let times = l
            .strip_prefix(&panicked)
            .and_then(|rest| rest.strip_suffix("; restarting"));
        times.is_some_and(|t| {
            t.is_empty()
                || t.strip_prefix(" (")
                    .and_then(|t| t.strip_suffix(" times)"))
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|n| n >= 2)
        })
    };
    assert!(body.lines().any(named), "{panicked:?} not in {body:?}");
    assert_eq!(
        svc.series(
            "joincanary_state_write_failing",
            "file=\"state.log\",region=\"test\""
        ),
        1.0
    );
    let panics = f64::from(ARMED - fault::disarm(Task::History, &key));
    // The next retry (at most 4 s away unless the machine stalled for long) writes.
    for _ in 0..800 {
        if svc.ready().await.0 == 200 {
            break;
        }
        real_pause(Duration::from_millis(50)).await;
    }
    assert_eq!(svc.ready().await.0, 200);
    assert!(panics >= 1.0, "{panics}");
    assert_eq!(svc.restarts(Task::History), panics);
    assert_eq!(svc.failing(Task::History), 0.0);
    assert_eq!(
        svc.series(
            "joincanary_state_write_failing",
            "file=\"state.log\",region=\"test\""
        ),
        0.0
    );
    assert!(log.exists(), "the state log is written after the panics");
    svc.stop().await;
}

/// Waits `pause` of real time without holding up the test's runtime: a blocking sleep on the
/// runtime's own thread would stop every task of the service under test, and tokio does not
/// move its paused clock while a blocking task runs.
async fn real_pause(pause: Duration) {
    tokio::task::spawn_blocking(move || std::thread::sleep(pause))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}
