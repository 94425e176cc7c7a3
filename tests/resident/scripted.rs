//! The resident session loop under tokio's paused clock, with scripted sessions that open,
//! exchange and break as each test says: reconnects back off (bounded, full jitter, capped at
//! `every` by default), a broken session waits the confirm delay before the run that could
//! page, old sessions are rotated without backoff, and a mended platform is back within two
//! exchanges whatever the outage grew the backoff to.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use joincanary::event::{Event, ReconnectCause};
use joincanary::flow::{ProbePlan, ResidentPlan};
use joincanary::report::{FailureReason, ProbeRun, Trigger};
use joincanary::resident::{Resident, Session, Sessions};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support;

/// What the scripted sessions did, when.
#[derive(Default)]
struct Log {
    opens: Vec<Instant>,
    exchanges: Vec<Instant>,
    closes: usize,
}

/// Sessions that open, exchange and break as the test says.
struct Script {
    log: Arc<Mutex<Log>>,
    /// Opening fails while this is true.
    open_fails: bool,
    /// Every exchange fails.
    exchange_fails: bool,
    /// A failed exchange leaves the session broken.
    breaks: bool,
    /// When set, opening and exchanges fail before this instant and pass from it on (the
    /// platform mended), whatever `open_fails` and `exchange_fails` say.
    mend_at: Option<Instant>,
}

impl Script {
    fn new(log: &Arc<Mutex<Log>>, open_fails: bool, exchange_fails: bool, breaks: bool) -> Script {
        Script {
            log: log.clone(),
            open_fails,
            exchange_fails,
            breaks,
            mend_at: None,
        }
    }
}

struct ScriptSession {
    log: Arc<Mutex<Log>>,
    opened: Instant,
    fails: bool,
    breaks: bool,
    mend_at: Option<Instant>,
    broken: bool,
    probe: String,
}

fn run_of(probe: &str, success: bool, trigger: Trigger) -> ProbeRun {
    ProbeRun {
        probe: probe.to_string(),
        region: "test".into(),
        success,
        started_at: chrono::Utc::now(),
        duration_ms: Duration::from_millis(10),
        failed_step: (!success).then(|| "signalling".to_string()),
        reason: (!success).then_some(FailureReason::NoMatch),
        error: (!success).then(|| "no frame matched".to_string()),
        trigger,
        steps: Vec::new(),
    }
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

impl Sessions for Script {
    fn open<'a>(
        &'a self,
        plan: &'a ProbePlan,
        _resident: &'a ResidentPlan,
        _region: &'a str,
        _clock: joincanary::clock::Clock,
    ) -> BoxFuture<'a, Result<Box<dyn Session<'a> + 'a>, ProbeRun>> {
        Box::pin(async move {
            self.log.lock().unwrap().opens.push(Instant::now());
            let failing = match self.mend_at {
                Some(mend) => Instant::now() < mend,
                None => self.open_fails,
            };
            if failing {
                return Err(run_of(&plan.name, false, Trigger::Scheduled));
            }
            Ok(Box::new(ScriptSession {
                log: self.log.clone(),
                opened: Instant::now(),
                fails: self.exchange_fails,
                breaks: self.breaks,
                mend_at: self.mend_at,
                broken: false,
                probe: plan.name.clone(),
            }) as Box<dyn Session<'a> + 'a>)
        })
    }
}

impl<'a> Session<'a> for ScriptSession {
    fn age(&self) -> Duration {
        self.opened.elapsed()
    }
    fn broken(&self) -> bool {
        self.broken
    }
    fn exchange(&mut self, trigger: Trigger) -> BoxFuture<'_, ProbeRun> {
        Box::pin(async move {
            self.log.lock().unwrap().exchanges.push(Instant::now());
            let fails = self
                .mend_at
                .map_or(self.fails, |mend| Instant::now() < mend);
            tokio::time::sleep(Duration::from_millis(10)).await;
            if fails && self.breaks {
                self.broken = true;
            }
            run_of(&self.probe, !fails, trigger)
        })
    }
    fn idle(&mut self, until: Instant) -> BoxFuture<'_, Result<(), ProbeRun>> {
        Box::pin(async move {
            tokio::time::sleep_until(until).await;
            Ok(())
        })
    }
    fn close(self: Box<Self>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.log.lock().unwrap().closes += 1;
        })
    }
}

/// A resident probe with these `[resident]` lines (an exchange that is never really run).
fn scripted_plan(resident: &str) -> Arc<ProbePlan> {
    support::probe_from(
        &format!(
            "name = \"r\"\nmode = \"resident\"\n[resident]\n{resident}\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\n[[exchange]]\nname = \"b\"\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\n"
        ),
        &[],
    )
}

/// Runs the loop with `script` until `enough` says so (or 10,000 events); returns the events.
async fn drive(
    plan: Arc<ProbePlan>,
    script: Script,
    seed: u64,
    confirm_after_failure: Option<Duration>,
    enough: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let (events, mut rx) = mpsc::channel(64);
    let (confirm_tx, confirm_rx) = mpsc::channel(4);
    let stop = CancellationToken::new();
    let task = tokio::spawn(
        Resident {
            probe: plan,
            region: "test".into(),
            clock: joincanary::clock::Clock::system(),
            sessions: Arc::new(script),
            events,
            shutdown: stop.clone(),
            seed,
        }
        .run(confirm_rx),
    );
    let mut seen = Vec::new();
    while seen.len() < 10_000 && !enough(&seen) {
        let Some(ev) = rx.recv().await else { break };
        if let (Some(d), Event::Run { run, .. }) = (confirm_after_failure, &ev)
            && !run.success
        {
            let _ = confirm_tx.try_send(d);
        }
        seen.push(ev);
    }
    stop.cancel();
    // Drain so the task is never stuck sending.
    while tokio::time::timeout(Duration::from_secs(1), rx.recv())
        .await
        .is_ok_and(|e| e.is_some())
    {}
    task.await.unwrap();
    seen
}

fn reconnects(events: &[Event], want: ReconnectCause) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Reconnect { cause, .. } if *cause == want))
        .count()
}

#[tokio::test(start_paused = true)]
async fn reconnects_back_off_exponentially_with_full_jitter_up_to_the_cap() {
    let plan = scripted_plan("reconnect_min = \"1s\"\nreconnect_max = \"30s\"");
    let log = Arc::new(Mutex::new(Log::default()));
    let script = Script::new(&log, true, false, false);
    let events = drive(plan, script, 3, None, |ev| {
        ev.iter().filter(|e| matches!(e, Event::Run { .. })).count() >= 40
    })
    .await;
    let opens = log.lock().unwrap().opens.clone();
    assert!(opens.len() >= 40);
    // Every failed open is a failed run, and every open after the first a counted reconnect.
    let failed_runs = events
        .iter()
        .filter(|e| matches!(e, Event::Run { run, .. } if !run.success))
        .count();
    assert_eq!(failed_runs, 40);
    assert_eq!(reconnects(&events, ReconnectCause::Failure), 39);
    let gaps: Vec<Duration> = opens.windows(2).map(|w| w[1] - w[0]).collect();
    // The first attempt is the confirming run: the resident confirm delay (2 s), then its draw.
    let confirm = Duration::from_secs(2);
    for (i, gap) in gaps.iter().enumerate() {
        let bound = Duration::from_secs(1 << i.min(5)).min(Duration::from_secs(30));
        let (lo, hi) = if i == 0 {
            (confirm, confirm + bound)
        } else {
            (Duration::ZERO, bound)
        };
        assert!(
            *gap >= lo && *gap <= hi,
            "gap {i} = {gap:?} outside {lo:?}..={hi:?}: {gaps:?}"
        );
    }
    // Full jitter: capped gaps are spread over [0, 30 s], not all at the cap.
    let capped = &gaps[6..];
    let (lo, hi) = (capped.iter().min().unwrap(), capped.iter().max().unwrap());
    assert!(
        *lo < Duration::from_secs(10) && *hi > Duration::from_secs(20),
        "{capped:?}"
    );
    // A different seed draws different delays: probers do not reconnect in lock-step.
    let log2 = Arc::new(Mutex::new(Log::default()));
    let script2 = Script::new(&log2, true, false, false);
    drive(
        scripted_plan("reconnect_min = \"1s\"\nreconnect_max = \"30s\""),
        script2,
        4,
        None,
        |ev| ev.iter().filter(|e| matches!(e, Event::Run { .. })).count() >= 5,
    )
    .await;
    let opens2 = log2.lock().unwrap().opens.clone();
    let gaps2: Vec<Duration> = opens2.windows(2).map(|w| w[1] - w[0]).collect();
    assert_ne!(gaps[..4], gaps2[..4]);
}

/// Seen in a trial: a resident probe paged 21 ms after its first failure, because the
/// reconnect's full-jitter draw (uniform from 0 s) made the confirming run come at once. A
/// session that breaks on a blip (a server restarting for a second) now waits the confirm
/// delay before the run that could page, whatever the draw, with every seed.
#[tokio::test(start_paused = true)]
async fn a_broken_session_is_confirmed_no_sooner_than_the_confirm_delay() {
    for seed in 0..20 {
        let plan = scripted_plan("every = \"5s\"\nreconnect_min = \"1s\"\nreconnect_max = \"5s\"");
        let log = Arc::new(Mutex::new(Log::default()));
        // Exchanges fail and break the session, on the reopened one too: the second failed
        // run, the one that pages, comes no sooner than the reopen.
        let script = Script::new(&log, false, true, true);
        let events = drive(plan, script, seed, None, |ev| {
            ev.iter()
                .filter(|e| matches!(e, Event::Run { run, .. } if !run.success))
                .count()
                >= 2
        })
        .await;
        let log = log.lock().unwrap();
        let broke = log.exchanges[0];
        let reopened = log.opens[1];
        assert!(
            reopened - broke >= Duration::from_secs(2),
            "seed {seed}: reopened {:?} after the break: {events:?}",
            reopened - broke
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_session_older_than_max_session_age_is_rotated_without_backoff() {
    let plan = scripted_plan("every = \"1s\"\nmax_session_age = \"10s\"");
    let log = Arc::new(Mutex::new(Log::default()));
    let script = Script::new(&log, false, false, false);
    let events = drive(plan, script, 1, None, |ev| {
        reconnects(ev, ReconnectCause::Rotation) >= 2
    })
    .await;
    assert_eq!(reconnects(&events, ReconnectCause::Failure), 0);
    let log = log.lock().unwrap();
    assert!(log.opens.len() >= 3, "{:?}", log.opens);
    assert!(log.closes >= 2, "every rotated session is closed");
    // Each session lived max_session_age (10 exchanges, 1 s apart), and the next opened at once.
    let first_life = log.opens[1] - log.opens[0];
    assert!(
        first_life >= Duration::from_secs(10) && first_life < Duration::from_secs(12),
        "{first_life:?}"
    );
    let in_first: Vec<_> = log
        .exchanges
        .iter()
        .filter(|t| **t < log.opens[1])
        .collect();
    assert_eq!(
        in_first.len(),
        10,
        "exchanges at 0, 1, … 9 s; at 10 s it is rotated"
    );
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, Event::Run { run, .. } if !run.success))
    );
}

#[tokio::test(start_paused = true)]
async fn failed_exchanges_reconnect_after_reconnect_after_or_at_once_when_broken() {
    // Alive but failing: re-established after 3 failed exchanges in a row, each confirmed 2 s
    // after the last (the policy's confirm request brings the next exchange forward).
    let plan = scripted_plan("every = \"5s\"");
    let log = Arc::new(Mutex::new(Log::default()));
    let script = Script::new(&log, false, true, false);
    let events = drive(plan, script, 1, Some(Duration::from_secs(2)), |ev| {
        reconnects(ev, ReconnectCause::Failure) >= 1
    })
    .await;
    let (exchanges, opens, closes) = {
        let log = log.lock().unwrap();
        (log.exchanges.clone(), log.opens.clone(), log.closes)
    };
    let first: Vec<Instant> = exchanges
        .iter()
        .copied()
        .filter(|t| opens.get(1).is_none_or(|second| t < second))
        .collect();
    assert_eq!(first.len(), 3, "{exchanges:?}");
    assert!(closes >= 1);
    let gaps: Vec<Duration> = first.windows(2).map(|w| w[1] - w[0]).collect();
    for g in &gaps {
        assert!(
            *g >= Duration::from_secs(2) && *g < Duration::from_millis(2100),
            "confirming exchanges 2 s apart: {gaps:?}"
        );
    }
    let triggers: Vec<Trigger> = events
        .iter()
        .filter_map(|e| match e {
            Event::Run { run, .. } => Some(run.trigger),
            _ => None,
        })
        .take(3)
        .collect();
    assert_eq!(
        triggers,
        [Trigger::Scheduled, Trigger::Confirm, Trigger::Confirm]
    );

    // Broken: re-established after the first failure.
    let log = Arc::new(Mutex::new(Log::default()));
    let script = Script::new(&log, false, true, true);
    drive(scripted_plan("every = \"5s\""), script, 1, None, |ev| {
        reconnects(ev, ReconnectCause::Failure) >= 1
    })
    .await;
    let log = log.lock().unwrap();
    let second = log.opens[1];
    assert_eq!(log.exchanges.iter().filter(|t| **t < second).count(), 1);
}

/// Issue 17: the resident participant resolved 5–42 s after the mend, not in "two passing
/// exchanges (about 10 s)": the reconnect backoff had grown to 25 s and more during the outage.
/// By default it is capped at `every`, so after any outage the session is back within `every`
/// of the mend and the second passing exchange (what resolves) comes within another `every`.
#[tokio::test(start_paused = true)]
async fn a_mended_platform_is_back_within_two_exchanges_whatever_the_outage_grew_the_backoff_to() {
    let mut worst = Duration::ZERO;
    for seed in 0..8 {
        let plan = scripted_plan("every = \"5s\"");
        assert_eq!(
            plan.resident.as_ref().unwrap().reconnect_max,
            Duration::from_secs(5)
        );
        let log = Arc::new(Mutex::new(Log::default()));
        // 90 s of outage: every open fails, and the backoff would grow past 60 s uncapped.
        let mend = Instant::now() + Duration::from_secs(90);
        let mut script = Script::new(&log, false, false, false);
        script.mend_at = Some(mend);
        let events = drive(plan, script, seed, Some(Duration::from_secs(2)), |ev| {
            ev.iter()
                .filter(|e| matches!(e, Event::Run { run, .. } if run.success))
                .count()
                >= 2
        })
        .await;
        let failed = events
            .iter()
            .filter(|e| matches!(e, Event::Run { run, .. } if !run.success))
            .count();
        assert!(failed >= 5, "an outage of failed opens: {failed}");
        let passed: Vec<Instant> = log
            .lock()
            .unwrap()
            .exchanges
            .iter()
            .copied()
            .filter(|t| *t >= mend)
            .collect();
        assert!(passed.len() >= 2, "{passed:?}");
        worst = worst.max(passed[1] - mend);
    }
    println!("worst time from the mend to the second passing exchange, 8 seeds: {worst:?}");
    // The next attempt within `reconnect_max` (5 s), then an exchange at once and one `every`
    // later (the real policy asks for it 2 s later; this loop is not told to).
    assert!(
        worst <= Duration::from_millis(10_100),
        "second passing exchange {worst:?} after the mend"
    );
}

/// A resident participant that stays down: the first failure and each change of state are
/// logged, with one "still down" line every 5 minutes at most, not a WARN on every reconnect
/// attempt (a session down for an hour with a 5 s backoff cap was 700+ WARN lines). Each
/// attempt is still a failed run and a counted reconnect.
#[tokio::test(start_paused = true)]
async fn a_session_that_stays_down_logs_its_changes_not_every_attempt() {
    let logs = support::logs::Capture::start();
    let plan = scripted_plan("every = \"5s\"");
    let log = Arc::new(Mutex::new(Log::default()));
    let start = Instant::now();
    let mend = start + Duration::from_secs(12 * 60);
    let mut script = Script::new(&log, false, false, false);
    script.mend_at = Some(mend);
    let events = drive(plan, script, 1, Some(Duration::from_secs(2)), |ev| {
        ev.iter()
            .filter(|e| matches!(e, Event::Run { run, .. } if run.success))
            .count()
            >= 1
    })
    .await;
    let attempts = reconnects(&events, ReconnectCause::Failure);
    assert!(attempts >= 100, "12 minutes of 5 s backoffs: {attempts}");
    // Every attempt is a failed run; the consumer warns of the first (its step and reason),
    // the others are `quiet` (a debug line): the resident says what they add up to.
    let failed = |q: bool| {
        events
            .iter()
            .filter(|e| matches!(e, Event::Run { run, quiet, .. } if !run.success && *quiet == q))
            .count()
    };
    assert_eq!(failed(false), 1);
    assert!(failed(true) >= 100, "{}", failed(true));
    let text = logs.take();
    let lines = |level: &str, what: &str| -> Vec<&str> {
        text.lines()
            .filter(|l| l.contains(level) && l.contains(what))
            .collect()
    };
    let warns: Vec<&str> = text.lines().filter(|l| l.contains(" WARN ")).collect();
    let down = lines(" WARN ", "resident session down");
    let still = lines(" WARN ", "resident session still down");
    let up = lines(" INFO ", "resident session up again");
    assert_eq!(down.len(), 1, "{text}");
    // At 5 and 10 minutes down; mended at 12.
    assert_eq!(still.len(), 2, "{warns:#?}");
    assert_eq!(warns.len(), 3, "{warns:#?}");
    assert!(still[0].contains("reconnects="), "{}", still[0]);
    assert!(still[0].contains("reason=no_match"), "{}", still[0]);
    assert_eq!(up.len(), 1, "{text}");
    assert!(up[0].contains("down_for=12m"), "{}", up[0]);
    // The attempts themselves are debug lines.
    assert!(lines(" INFO ", "re-establishing").is_empty(), "{text}");
    assert!(lines(" DEBUG ", "re-establishing").len() >= 100, "{text}");
}
