//! The scheduler under tokio's paused clock: cron fire times, jitter, no overlap, confirm runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use joincanary::clock::Clock;
use joincanary::event::Event;
use joincanary::flow::ProbePlan;
use joincanary::report::{ProbeRun, Trigger};
use joincanary::schedule::Schedule;
use joincanary::scheduler::{Runner, Scheduler};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// When each run started, and why.
type Starts = Arc<Mutex<Vec<(DateTime<Utc>, Trigger)>>>;

/// A runner that takes `takes` (virtual time) and records when each run started.
struct Scripted {
    takes: Duration,
    starts: Starts,
}

impl Runner for Scripted {
    fn run(
        &self,
        probe: Arc<ProbePlan>,
        region: String,
        trigger: Trigger,
        clock: Clock,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ProbeRun> + Send>> {
        let takes = self.takes;
        // The time the scheduler's clock says, which the real flow stamps its run with.
        let started_at = clock.now();
        self.starts.lock().unwrap().push((started_at, trigger));
        Box::pin(async move {
            tokio::time::sleep(takes).await;
            crate::support::passing_run(&probe.name, region, started_at, takes, trigger)
        })
    }
}

fn probe(schedule: &str, jitter: Duration) -> Arc<ProbePlan> {
    let mut p = crate::support::probe_from(
        "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n",
        &[],
    )
    .as_ref()
    .clone();
    p.schedule = Schedule::parse(schedule, None).unwrap();
    p.jitter = jitter;
    Arc::new(p)
}

/// A scheduler running `probes` in region `eu-west-1`, with its events, its stop and its tasks.
struct Harness {
    starts: Starts,
    events: mpsc::Receiver<Event>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    scheduler: Scheduler,
}

impl Harness {
    /// `probes` run by `runner` on `clock`, events on a channel of `capacity`.
    fn spawn(
        probes: &[Arc<ProbePlan>],
        clock: Clock,
        runner: Arc<dyn Runner>,
        capacity: usize,
    ) -> Harness {
        let (tx, events) = mpsc::channel(capacity);
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let scheduler = Scheduler::spawn(
            probes,
            "eu-west-1",
            clock,
            runner,
            tx,
            shutdown.clone(),
            &tracker,
        );
        tracker.close();
        Harness {
            starts: Starts::default(),
            events,
            shutdown,
            tracker,
            scheduler,
        }
    }

    /// `probes` on [`Scripted`] runs that take `takes`, on a clock starting at `origin`.
    fn scripted(
        probes: &[Arc<ProbePlan>],
        takes: Duration,
        origin: DateTime<Utc>,
        capacity: usize,
    ) -> Harness {
        let starts = Starts::default();
        let runner = Arc::new(Scripted {
            takes,
            starts: starts.clone(),
        });
        Harness {
            starts,
            ..Harness::spawn(probes, Clock::starting_at(origin), runner, capacity)
        }
    }

    /// The events sent so far.
    fn drain(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }

    /// The start times of the runs so far, in `format`.
    fn starts(&self, format: &str) -> Vec<String> {
        let starts = self.starts.lock().unwrap();
        starts
            .iter()
            .map(|(t, _)| t.format(format).to_string())
            .collect()
    }

    /// The runs so far: start time as `%H:%M:%S` and trigger.
    fn timeline(&self) -> Vec<(String, Trigger)> {
        let starts = self.starts.lock().unwrap();
        starts
            .iter()
            .map(|(t, tr)| (t.format("%H:%M:%S").to_string(), *tr))
            .collect()
    }

    /// Stops it and waits (at most `within`) for its loops and the runs in flight to end.
    async fn stop(&self, within: Duration) {
        self.shutdown.cancel();
        tokio::time::timeout(within, self.tracker.wait())
            .await
            .expect("the scheduler's loops and runs end when stopped");
    }
}

/// One probe `p` on [`Harness::scripted`] runs that take `takes`.
fn start(p: Arc<ProbePlan>, takes: Duration, origin: DateTime<Utc>) -> Harness {
    Harness::scripted(&[p], takes, origin, 1024)
}

fn origin() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 30).unwrap()
}

#[tokio::test(start_paused = true)]
async fn every_minute_fires_on_the_minute() {
    let h = start(
        probe("* * * * *", Duration::ZERO),
        Duration::from_secs(1),
        origin(),
    );
    tokio::time::sleep(Duration::from_secs(155)).await;
    let starts = h.starts("%H:%M:%S");
    assert_eq!(starts, ["00:01:00", "00:02:00", "00:03:00"]);
    h.stop(Duration::from_secs(60)).await;
}

/// A cron schedule is written in wall-clock time: after the host's clock is stepped (NTP after
/// boot, a VM resumed), its ticks follow the system clock, also when the step comes while the
/// loop sleeps towards a tick. Before, an hourly probe went on firing at the hour of the clock
/// read at start, 30 minutes off the host's after a 30-minute step.
#[tokio::test(start_paused = true)]
async fn cron_ticks_follow_the_system_clock_after_a_step() {
    let clock = Clock::starting_at(origin());
    let starts = Starts::default();
    let runner = Arc::new(Scripted {
        takes: Duration::from_secs(1),
        starts: starts.clone(),
    });
    let h = Harness {
        starts,
        ..Harness::spawn(&[probe("0 * * * *", Duration::ZERO)], clock, runner, 1024)
    };
    // 00:00:30 on both clocks; asleep until 01:00. At 00:10:30 the host's clock jumps 30
    // minutes ahead: 01:00 by the host is 00:30 by the service.
    tokio::time::sleep(Duration::from_secs(600)).await;
    clock.step_system(chrono::TimeDelta::minutes(30));
    tokio::time::sleep(Duration::from_secs(1200)).await;
    assert_eq!(h.starts("%H:%M:%S"), ["00:30:00"]);
    assert_eq!(
        clock
            .on_system(h.starts.lock().unwrap()[0].0)
            .format("%H:%M")
            .to_string(),
        "01:00"
    );
    // Then 45 minutes back: the host reads 00:15:30 at 00:45:30 by the service, so the next
    // tick, 01:00 by the host, is 01:15 by the service (not 01:30: no hour run twice early,
    // none bunched).
    clock.step_system(chrono::TimeDelta::minutes(-45));
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(h.starts("%H:%M:%S"), ["00:30:00", "01:15:00"]);
    h.stop(Duration::from_secs(60)).await;
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_each_tick_by_the_fixed_offset() {
    let h = start(
        probe("* * * * *", Duration::from_millis(7_250)),
        Duration::from_secs(1),
        origin(),
    );
    tokio::time::sleep(Duration::from_secs(100)).await;
    let starts = h.starts("%H:%M:%S%.3f");
    assert_eq!(starts, ["00:01:07.250", "00:02:07.250"]);
    h.stop(Duration::from_secs(60)).await;
}

#[tokio::test(start_paused = true)]
async fn a_run_still_going_makes_the_next_tick_skip_and_count() {
    let mut h = start(
        probe("*/10 * * * * *", Duration::ZERO),
        Duration::from_secs(15),
        origin(),
    );
    tokio::time::sleep(Duration::from_secs(61)).await;
    h.stop(Duration::from_secs(60)).await;
    let events = h.drain();
    let runs = events
        .iter()
        .filter(|e| matches!(e, Event::Run { .. }))
        .count();
    let skipped = events
        .iter()
        .filter(|e| matches!(e, Event::Skipped { .. }))
        .count();
    // Ticks at :40 :50 :00 :10 :20 :30; each 15 s run makes the following tick skip.
    let starts = h.starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 3, "{starts:?}");
    assert_eq!(skipped, 3);
    assert_eq!(
        runs, 3,
        "runs in flight at shutdown still finish and report"
    );
}

#[tokio::test(start_paused = true)]
async fn confirm_runs_happen_after_the_delay_between_ticks() {
    let h = start(
        probe("* * * * *", Duration::ZERO),
        Duration::from_secs(1),
        origin(),
    );
    tokio::time::sleep(Duration::from_secs(31)).await; // 00:01:01, first run done
    h.scheduler.confirm("p", Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        h.timeline(),
        [
            ("00:01:00".to_string(), Trigger::Scheduled),
            ("00:01:11".to_string(), Trigger::Confirm)
        ]
    );
    h.stop(Duration::from_secs(60)).await;
}

#[tokio::test(start_paused = true)]
async fn scheduled_runs_report_their_lag() {
    let mut h = start(
        probe("*/10 * * * * *", Duration::ZERO),
        Duration::from_secs(1),
        origin(),
    );
    tokio::time::sleep(Duration::from_secs(12)).await;
    h.stop(Duration::from_secs(60)).await;
    let lags: Vec<_> = h
        .drain()
        .into_iter()
        .filter_map(|e| match e {
            Event::Run { lag, .. } => Some(lag),
            _ => None,
        })
        .collect();
    assert_eq!(lags, [Some(Duration::ZERO)]);
}

/// A run consumer that stops reading (a platform-wide incident keeping it busy) never stops the
/// schedule: every probe still starts, and the ticks that cannot start because a result waits
/// are counted as skipped with the reason `backlog` (issue 9).
#[tokio::test(start_paused = true)]
async fn a_stalled_consumer_never_stops_the_schedule() {
    use joincanary::event::SkipReason;
    let probes: Vec<Arc<ProbePlan>> = (0..20)
        .map(|i| {
            let mut p = probe("* * * * * *", Duration::ZERO).as_ref().clone();
            p.name = format!("p{i}");
            Arc::new(p)
        })
        .collect();
    // Room for one event: the consumer below reads nothing for ten seconds.
    let mut h = Harness::scripted(&probes, Duration::from_millis(100), origin(), 1);
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let started: Vec<Trigger> = h.starts.lock().unwrap().iter().map(|(_, t)| *t).collect();
    assert_eq!(started.len(), 20, "every probe started: {started:?}");
    // The consumer reads again: every run result arrives, and the skips are reported.
    let mut backlog = 0;
    let mut runs = 0;
    let drain = async {
        while let Some(e) = h.events.recv().await {
            match e {
                Event::Run { .. } => runs += 1,
                Event::Skipped { reason, count, .. } => {
                    assert_eq!(reason, SkipReason::Backlog);
                    backlog += count;
                }
                Event::NextRun { .. } | Event::Reconnect { .. } => {}
            }
            if runs >= 20 && backlog > 0 {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .expect("results and skips arrive");
    assert!(
        runs >= 20 && backlog > 0,
        "runs {runs}, backlog skips {backlog}"
    );
    // Not waited for: the runs still sending into the full channel hold the tracker open.
    h.shutdown.cancel();
}

/// Records the thread each run is polled on; each run holds its probe for `takes` (real time:
/// probe threads have runtimes of their own, which a paused clock cannot reach).
struct OnWhichThread {
    takes: Duration,
    threads: Arc<Mutex<Vec<String>>>,
}

impl Runner for OnWhichThread {
    fn run(
        &self,
        probe: Arc<ProbePlan>,
        region: String,
        trigger: Trigger,
        clock: Clock,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ProbeRun> + Send>> {
        let (takes, threads) = (self.takes, self.threads.clone());
        let started_at = clock.now();
        Box::pin(async move {
            let name = std::thread::current().name().unwrap_or("").to_string();
            threads.lock().unwrap().push(name);
            tokio::time::sleep(takes).await;
            crate::support::passing_run(&probe.name, region, started_at, takes, trigger)
        })
    }
}

#[tokio::test]
async fn on_probe_threads_a_probe_stays_on_one_thread_never_overlaps_and_stops_at_once() {
    let threads = Arc::new(Mutex::new(Vec::new()));
    let runner = joincanary::scheduler::OnThreads::start(
        OnWhichThread {
            takes: Duration::from_millis(1500),
            threads: threads.clone(),
        },
        2,
    )
    .unwrap();
    let probes = [
        probe("* * * * * *", Duration::ZERO),
        probe("* * * * * *", Duration::ZERO),
    ];
    let mut h = Harness::spawn(&probes, Clock::system(), Arc::new(runner), 1024);
    // Every second a tick; each run takes 1.5 s: runs alternate with skipped ticks (about 5 s
    // for these; the bound only ends a test that never sees them).
    let (mut runs, mut skipped, mut next) = (0, 0, 0);
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    while runs < 4 || skipped < 2 {
        match tokio::time::timeout_at(until, h.events.recv()).await {
            Ok(Some(Event::Run { .. })) => runs += 1,
            Ok(Some(Event::Skipped { reason, count, .. })) => {
                assert_eq!(reason, joincanary::event::SkipReason::Overlap);
                skipped += count;
            }
            Ok(Some(Event::NextRun { .. })) => next += 1,
            Ok(Some(Event::Reconnect { .. })) | Ok(None) => {}
            Err(_) => panic!("60 s: {runs} runs, {skipped} skipped"),
        }
    }
    assert!(
        next >= runs,
        "every run is followed by its next fire time: {next} < {runs}"
    );
    let seen = threads.lock().unwrap().clone();
    assert!(
        seen.iter().all(|t| t.starts_with("joincanary-probes-")),
        "{seen:?}"
    );
    // Two probes, two threads: each on its own.
    assert!(seen.iter().any(|t| t == "joincanary-probes-0"), "{seen:?}");
    assert!(seen.iter().any(|t| t == "joincanary-probes-1"), "{seen:?}");
    // Stopping waits only for the runs in flight (at most one 1.5 s run each).
    h.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn on_a_probe_thread_a_hung_server_is_still_cut_at_the_deadline() {
    // Accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            open.push(conn);
        }
    });
    let mut p = crate::support::probe_from(
        &format!(
            "timeout = \"300ms\"\n[[steps]]\nname = \"login\"\nkind = \"http\"\nurl = \"{url}\"\n"
        ),
        &[],
    )
    .as_ref()
    .clone();
    p.schedule = Schedule::parse("* * * * * *", None).unwrap();
    let runner =
        joincanary::scheduler::OnThreads::start(joincanary::scheduler::FlowRunner, 1).unwrap();
    let mut h = Harness::spawn(&[Arc::new(p)], Clock::system(), Arc::new(runner), 1024);
    // Uncut, no run would ever come. A run whose timer the prober was late for (`local`, on a
    // loaded machine) says nothing of the cut: the next one is taken (one a second, 3 at most).
    let mut late = 0;
    let run = loop {
        match tokio::time::timeout(Duration::from_secs(30), h.events.recv()).await {
            Ok(Some(Event::Run { run, .. }))
                if late < 2 && crate::support::on_time::was_late(&run) =>
            {
                late += 1;
            }
            Ok(Some(Event::Run { run, .. })) => break run,
            Ok(Some(_)) => {}
            other => panic!("no run within 30 s: {other:?}"),
        }
    };
    assert!(!run.success);
    assert_eq!(
        run.reason,
        Some(joincanary::report::FailureReason::Timeout),
        "{run:?}"
    );
    // Cut at the 300 ms deadline, not by anything later (the server holds the connection for
    // as long as the test runs); 1 s left a loaded machine 0.7 s.
    assert!(
        run.duration_ms < Duration::from_secs(5),
        "cut at the 300 ms deadline: {:?}",
        run.duration_ms
    );
    h.stop(Duration::from_secs(5)).await;
    held.abort();
}

/// A confirmation asked for past the next tick (`confirm_delay` longer than the interval, as
/// in the demo: every 5 s, confirm after 10 s) is served by the scheduled runs: no extra run
/// that would collide with a later tick, so no run skipped and warned about.
#[tokio::test(start_paused = true)]
async fn a_confirmation_due_after_the_next_tick_is_left_to_the_tick() {
    let mut h = start(
        probe("*/5 * * * * *", Duration::ZERO),
        Duration::from_secs(1),
        origin(),
    );
    tokio::time::sleep(Duration::from_millis(6500)).await; // 00:00:36.5, the 00:00:35 run done
    h.scheduler.confirm("p", Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(15)).await; // 00:00:51.5, the 00:00:50 run done
    // A confirmation due before the next tick still runs.
    h.scheduler.confirm("p", Duration::from_secs(2));
    tokio::time::sleep(Duration::from_secs(5)).await; // 00:00:56.5
    assert_eq!(
        h.timeline(),
        [
            ("00:00:35".to_string(), Trigger::Scheduled),
            ("00:00:40".to_string(), Trigger::Scheduled),
            ("00:00:45".to_string(), Trigger::Scheduled),
            ("00:00:50".to_string(), Trigger::Scheduled),
            ("00:00:53".to_string(), Trigger::Confirm),
            ("00:00:55".to_string(), Trigger::Scheduled),
        ]
    );
    h.stop(Duration::from_secs(60)).await;
    let skips = h
        .drain()
        .into_iter()
        .filter(|e| matches!(e, Event::Skipped { .. }))
        .count();
    assert_eq!(skips, 0);
}
