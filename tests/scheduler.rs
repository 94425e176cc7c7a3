//! The scheduler under tokio's paused clock: cron fire times, jitter, no overlap, confirm runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use joincanary::clock::Clock;
use joincanary::config::ProbePlan;
use joincanary::report::{ProbeRun, Trigger};
use joincanary::schedule::Schedule;
use joincanary::scheduler::{Event, Runner, Scheduler};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// When each run started, and why.
type Starts = Arc<Mutex<Vec<(DateTime<Utc>, Trigger)>>>;

/// A runner that takes `takes` (virtual time) and records when each run started.
struct Scripted {
    takes: Duration,
    clock: Clock,
    starts: Starts,
}

impl Runner for Scripted {
    fn run(
        &self,
        probe: Arc<ProbePlan>,
        region: String,
        trigger: Trigger,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ProbeRun> + Send>> {
        let takes = self.takes;
        let started_at = self.clock.now();
        self.starts.lock().unwrap().push((started_at, trigger));
        Box::pin(async move {
            tokio::time::sleep(takes).await;
            ProbeRun {
                probe: probe.name.clone(),
                region,
                success: true,
                started_at,
                duration_ms: takes,
                failed_step: None,
                reason: None,
                error: None,
                trigger,
                steps: Vec::new(),
            }
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

struct Harness {
    starts: Starts,
    events: mpsc::Receiver<Event>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    scheduler: Scheduler,
}

fn start(p: Arc<ProbePlan>, takes: Duration, origin: DateTime<Utc>) -> Harness {
    let clock = Clock::starting_at(origin);
    let starts = Arc::new(Mutex::new(Vec::new()));
    let runner = Arc::new(Scripted {
        takes,
        clock,
        starts: starts.clone(),
    });
    let (tx, rx) = mpsc::channel(1024);
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let scheduler = Scheduler::spawn(
        &[p],
        "eu-west-1",
        clock,
        runner,
        tx,
        shutdown.clone(),
        &tracker,
    );
    tracker.close();
    Harness {
        starts,
        events: rx,
        shutdown,
        tracker,
        scheduler,
    }
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
    let starts: Vec<_> = h
        .starts
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| t.format("%H:%M:%S").to_string())
        .collect();
    assert_eq!(starts, ["00:01:00", "00:02:00", "00:03:00"]);
    h.shutdown.cancel();
    h.tracker.wait().await;
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_each_tick_by_the_fixed_offset() {
    let h = start(
        probe("* * * * *", Duration::from_millis(7_250)),
        Duration::from_secs(1),
        origin(),
    );
    tokio::time::sleep(Duration::from_secs(100)).await;
    let starts: Vec<_> = h
        .starts
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| t.format("%H:%M:%S%.3f").to_string())
        .collect();
    assert_eq!(starts, ["00:01:07.250", "00:02:07.250"]);
    h.shutdown.cancel();
    h.tracker.wait().await;
}

#[tokio::test(start_paused = true)]
async fn a_run_still_going_makes_the_next_tick_skip_and_count() {
    let mut h = start(
        probe("*/10 * * * * *", Duration::ZERO),
        Duration::from_secs(15),
        origin(),
    );
    tokio::time::sleep(Duration::from_secs(61)).await;
    h.shutdown.cancel();
    h.tracker.wait().await;
    drop(h.scheduler);
    let mut runs = 0;
    let mut skipped = 0;
    while let Ok(e) = h.events.try_recv() {
        match e {
            Event::Run { .. } => runs += 1,
            Event::Skipped { .. } => skipped += 1,
            Event::NextRun { .. } | Event::Reconnect { .. } => {}
        }
    }
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
    let starts: Vec<_> = h
        .starts
        .lock()
        .unwrap()
        .iter()
        .map(|(t, tr)| (t.format("%H:%M:%S").to_string(), *tr))
        .collect();
    assert_eq!(
        starts,
        [
            ("00:01:00".to_string(), Trigger::Scheduled),
            ("00:01:11".to_string(), Trigger::Confirm)
        ]
    );
    h.shutdown.cancel();
    h.tracker.wait().await;
}

#[tokio::test(start_paused = true)]
async fn scheduled_runs_report_their_lag() {
    let mut h = start(
        probe("*/10 * * * * *", Duration::ZERO),
        Duration::from_secs(1),
        origin(),
    );
    tokio::time::sleep(Duration::from_secs(12)).await;
    h.shutdown.cancel();
    h.tracker.wait().await;
    drop(h.scheduler);
    let mut lags = Vec::new();
    while let Ok(e) = h.events.try_recv() {
        if let Event::Run { lag, .. } = e {
            lags.push(lag);
        }
    }
    assert_eq!(lags, [Some(Duration::ZERO)]);
}

/// A run consumer that stops reading (a platform-wide incident keeping it busy) never stops the
/// schedule: every probe still starts, and the ticks that cannot start because a result waits
/// are counted as skipped with the reason `backlog` (issue 9).
#[tokio::test(start_paused = true)]
async fn a_stalled_consumer_never_stops_the_schedule() {
    use joincanary::scheduler::SkipReason;
    let clock = Clock::starting_at(origin());
    let starts: Starts = Arc::new(Mutex::new(Vec::new()));
    let runner = Arc::new(Scripted {
        takes: Duration::from_millis(100),
        clock,
        starts: starts.clone(),
    });
    let probes: Vec<Arc<ProbePlan>> = (0..20)
        .map(|i| {
            let mut p = probe("* * * * * *", Duration::ZERO).as_ref().clone();
            p.name = format!("p{i}");
            Arc::new(p)
        })
        .collect();
    // Room for one event: the consumer below reads nothing for ten seconds.
    let (tx, mut rx) = mpsc::channel(1);
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let _scheduler = Scheduler::spawn(
        &probes,
        "eu-west-1",
        clock,
        runner,
        tx,
        shutdown.clone(),
        &tracker,
    );
    tracker.close();
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let started: Vec<Trigger> = starts.lock().unwrap().iter().map(|(_, t)| *t).collect();
    assert_eq!(started.len(), 20, "every probe started: {started:?}");
    // The consumer reads again: every run result arrives, and the skips are reported.
    let mut backlog = 0;
    let mut runs = 0;
    let drain = async {
        while let Some(e) = rx.recv().await {
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
    shutdown.cancel();
}
