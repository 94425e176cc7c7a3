//! The run consumer: the one place one run's data goes after the flow made it. Each `ProbeRun`
//! is recorded in the metrics, the status and the alert policy, in that order; the policy's
//! pages go to the dispatcher and its confirmation runs to the scheduler. The consumer also
//! ticks the policy for reminders and ended maintenance windows.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::alert::engine::AlertEngine;
use crate::alert::policy::Decision;
use crate::alert::{Dispatcher, Severity};
use crate::clock::Clock;
use crate::event::Event;
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::report::ProbeRun;
use crate::scheduler::Scheduler;
use crate::status::{AlertView, Status};
use crate::supervise::{Supervisor, Task};

/// How often reminders and maintenance-held triggers are looked at.
const ALERT_TICK: Duration = Duration::from_secs(5);

/// How long the consumer waits, once events come faster than one per this, before it looks at
/// the channel again: a result sent meanwhile finds no receiver waiting and wakes nobody, so one
/// wake-up of the consumer's thread records several runs instead of one each (measured in
/// BENCHMARKS.md, issue 20). A result, and so a page, is recorded at most this much later.
pub const LINGER: Duration = Duration::from_millis(250);
/// Events a linger expects at the rate they came: a quarter of the channel (256), so senders
/// never find it full and wait (at 3,200 runs a second a linger is 20 ms, not 250).
const LINGER_EXPECT: u32 = 64;
/// Most events taken after one linger before the loop looks at its tick again.
const LINGER_BATCH: usize = 256;
/// A linger that found this many events means runs come fast enough to share wake-ups anyway:
/// no more lingering until the next alert tick. Lingering at 1,600 runs a second on a loaded
/// machine filled the channel while the consumer slept, and the probes skipped ticks as
/// `backlog` (measured in BENCHMARKS.md).
const LINGER_BUSY: usize = 32;

/// What the consumer works on. Kept outside its task (see [`spawn`]), so a restarted consumer
/// carries on with the same alert state, pagers and channel.
pub(crate) struct Consumer {
    pub(crate) alerts: AlertEngine,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) scheduler: Scheduler,
    pub(crate) events: mpsc::Receiver<Event>,
    /// The alert tick ([`ticker`]).
    pub(crate) ticker: tokio::time::Interval,
    /// Beaten at every event: the scheduler's liveness, which the heartbeats and the
    /// Alertmanager watchdog read.
    pub(crate) liveness: Liveness,
    pub(crate) clock: Clock,
    pub(crate) region: String,
    pub(crate) metrics: Metrics,
    pub(crate) status: Arc<Status>,
    /// The engine stopping: no more lingering, drain and end.
    pub(crate) stop: CancellationToken,
}

/// The alert tick: every [`ALERT_TICK`], late ticks delayed rather than bunched.
pub(crate) fn ticker() -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(ALERT_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

/// The running consumer: its supervised task and the state it works on.
pub(crate) struct Consuming {
    task: tokio::task::JoinHandle<()>,
    state: Arc<tokio::sync::Mutex<Option<Consumer>>>,
}

/// Runs `consumer` as the supervised `run consumer` task. It ends normally when the event
/// channel closes, which only happens once the scheduler behind it stopped (`stop` cancelled).
pub(crate) fn spawn(consumer: Consumer, tasks: &Supervisor, stop: CancellationToken) -> Consuming {
    let state = Arc::new(tokio::sync::Mutex::new(Some(consumer)));
    let shared = state.clone();
    let task = tasks.spawn(Task::Consumer, "run consumer", true, stop, move || {
        let shared = shared.clone();
        async move {
            if let Some(c) = shared.lock().await.as_mut() {
                c.run().await;
            }
        }
    });
    Consuming { task, state }
}

impl Consuming {
    /// Waits for the consumer to drain its channel (every sender must be gone) and hands back
    /// what the next engine carries on with, even if the consumer failed while draining.
    pub(crate) async fn finish(self) -> (AlertEngine, Dispatcher) {
        let _ = self.task.await;
        let Some(Consumer {
            alerts, dispatcher, ..
        }) = self.state.lock().await.take()
        else {
            unreachable!("only finish takes the consumer's state, once");
        };
        (alerts, dispatcher)
    }
}

impl Consumer {
    /// Consumes until every sender of the channel is gone (the engine stopping).
    async fn run(&mut self) {
        // When the consumer last looked at the channel.
        let mut looked: Option<tokio::time::Instant> = None;
        // Runs came fast at the last linger: none until the next alert tick.
        let mut busy = false;
        // The last linger took events: the next look is another linger of this length, not a
        // wait on the channel. A result sent to a consumer waiting on the channel wakes its
        // thread (an `eventfd` write by the probe thread, then a wake-up of this one), so
        // while runs keep coming this thread wakes only for its lingers.
        let mut again: Option<Duration> = None;
        loop {
            self.liveness.beat();
            let wait = match again.take() {
                // The alert tick is looked at between lingers too (without waiting for it).
                Some(_) if self.ticker.tick().now_or_never().is_some() => {
                    self.tick();
                    busy = false;
                    None
                }
                Some(wait) => Some(wait),
                None => {
                    let event = tokio::select! {
                        e = self.events.recv() => match e {
                            Some(e) => e,
                            None => return,
                        },
                        _ = self.ticker.tick() => {
                            self.tick();
                            busy = false;
                            continue;
                        }
                    };
                    self.handle(event);
                    let now = tokio::time::Instant::now();
                    let gap = looked.map(|at| now.saturating_duration_since(at));
                    gap.filter(|gap| !busy && *gap < LINGER)
                        .map(|gap| LINGER.min(gap.saturating_mul(LINGER_EXPECT)))
                }
            };
            if let Some(wait) = wait {
                let taken = self.linger(wait).await;
                busy = taken >= LINGER_BUSY;
                if taken > 0 && !busy {
                    again = Some(wait);
                }
            }
            looked = Some(tokio::time::Instant::now());
        }
    }

    /// Waits `wait` (not once the engine is stopping), then records every event that came
    /// meanwhile, up to [`LINGER_BATCH`]; returns how many.
    async fn linger(&mut self, wait: Duration) -> usize {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => {}
            () = tokio::time::sleep(wait) => {}
        }
        for taken in 0..LINGER_BATCH {
            match self.events.try_recv() {
                Ok(e) => self.handle(e),
                Err(_) => return taken,
            }
        }
        LINGER_BATCH
    }

    fn handle(&mut self, event: Event) {
        let region = &self.region;
        match event {
            Event::Run { run, lag, quiet } => self.record(run, lag, quiet),
            Event::Skipped {
                probe,
                reason,
                count,
            } => {
                self.metrics
                    .record_skip(&probe, region, reason.as_str(), count);
                self.status.record_skip(&probe, count);
            }
            Event::Reconnect { probe, cause } => {
                self.metrics.count_reconnect(&probe, region, cause.as_str());
            }
            Event::NextRun { probe, at } => {
                self.liveness.due(&probe, self.clock.instant_at(at));
                self.status.set_next_run(&probe, at);
            }
        }
    }

    /// One run: into the metrics, the status and the alert policy; the policy's decisions
    /// carried out, and the probe's open alerts mirrored into the metrics and status.
    fn record(&mut self, run: ProbeRun, lag: Option<Duration>, quiet: bool) {
        crate::supervise::fault::hit(Task::Consumer, &run.probe);
        log_run(&run, quiet);
        self.metrics.record(&run, lag);
        // One copy of the run, shared by the status's last and last good.
        let run = Arc::new(run);
        self.status.record(&run);
        self.alerts.follow_system_clock(self.clock.offset());
        for decision in self.alerts.observe(&run, self.clock.now()) {
            act(
                decision,
                &run.probe,
                &self.alerts,
                &self.dispatcher,
                &self.scheduler,
            );
        }
        publish_alerts(
            &self.alerts,
            &run.probe,
            &self.region,
            &self.metrics,
            &self.status,
        );
    }

    /// Reminders and held-back triggers that are due.
    fn tick(&mut self) {
        self.alerts.follow_system_clock(self.clock.offset());
        for (probe, decision) in self.alerts.tick(self.clock.now()) {
            act(
                decision,
                &probe,
                &self.alerts,
                &self.dispatcher,
                &self.scheduler,
            );
            publish_alerts(
                &self.alerts,
                &probe,
                &self.region,
                &self.metrics,
                &self.status,
            );
        }
    }
}

/// Carries out one policy decision: a page to the probe's pagers, or a confirmation run.
fn act(
    decision: Decision,
    probe: &str,
    alerts: &AlertEngine,
    dispatcher: &Dispatcher,
    scheduler: &Scheduler,
) {
    match decision {
        Decision::Notify(n) => {
            tracing::warn!(
                probe = %n.probe,
                region = %n.region,
                event = %n.kind.as_str(),
                severity = %n.severity.as_str(),
                reminder = n.reminder,
                summary = %n.summary,
                "alert"
            );
            dispatcher.send(*n, alerts.pagers(probe));
        }
        Decision::Confirm(delay, what) => {
            let (runs, needed) = what.runs();
            tracing::info!(
                probe,
                confirming = what.as_str(),
                runs,
                needed,
                delay_ms = delay.as_millis() as u64,
                "confirming a {}: the next run within {} ({runs} of {needed} {} runs in a row so far)",
                what.as_str(),
                humantime::format_duration(delay),
                what.runs_are()
            );
            scheduler.confirm(probe, delay);
        }
    }
}

/// Mirrors a probe's open alerts into `probe_alert_firing` and the status output.
pub(crate) fn publish_alerts(
    alerts: &AlertEngine,
    probe: &str,
    region: &str,
    metrics: &Metrics,
    status: &Status,
) {
    let open = alerts.open(probe);
    let firing = [Severity::Critical, Severity::Warning]
        .map(|severity| (severity.as_str(), open.iter().any(|(s, _)| *s == severity)));
    metrics.set_alert_firing(probe, region, &firing);
    status.set_alerts(
        probe,
        open.iter()
            .map(|(severity, a)| AlertView {
                severity: *severity,
                dedup_key: a.dedup_key.clone(),
                since: a.since,
                summary: a.last.summary.clone(),
            })
            .collect(),
    );
}

/// A run's one log line; a `quiet` failure (its sender logs the state it belongs to) at debug.
fn log_run(run: &ProbeRun, quiet: bool) {
    let ms = crate::report::log_ms(run.duration_ms);
    // The same fields at either level (a level is part of a log statement, not a value).
    macro_rules! failed {
        ($level:ident) => {
            tracing::$level!(
                probe = %run.probe,
                region = %run.region,
                duration_ms = ms,
                trigger = %run.trigger.as_str(),
                step = %run.failed_step.as_deref().unwrap_or(""),
                reason = %run.reason.map(|r| r.as_str()).unwrap_or(""),
                error = %run.error.as_deref().unwrap_or(""),
                "probe run failed"
            )
        };
    }
    if run.success {
        tracing::info!(probe = %run.probe, region = %run.region, duration_ms = ms, trigger = %run.trigger.as_str(), "probe run succeeded");
    } else if quiet {
        failed!(debug);
    } else {
        failed!(warn);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use crate::report::{FailureReason, ProbeRun, Trigger};

    /// What one event writes in the `text` format (tracing's own), as `--log.format text` does.
    fn text_log(event: impl FnOnce()) -> String {
        #[derive(Clone)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf(Arc::new(Mutex::new(Vec::new())));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, event);
        String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned()
    }

    /// Every field of the run's log line reads `key=value`, as `probe=…` always did: text fields
    /// go through Display (`trigger = %…`); passed as plain `&str` they were quoted in the text
    /// format (`trigger="scheduled"`) beside unquoted ones.
    #[test]
    fn a_failed_run_logs_its_text_fields_unquoted() {
        let run = ProbeRun {
            probe: "sim-join".into(),
            region: "eu".into(),
            success: false,
            started_at: chrono::DateTime::UNIX_EPOCH,
            duration_ms: Duration::from_millis(12),
            failed_step: Some("signalling".into()),
            reason: Some(FailureReason::NoMatch),
            error: Some("no frame matched".into()),
            trigger: Trigger::Confirm,
            steps: Vec::new(),
        };
        let line = text_log(|| super::log_run(&run, false));
        assert!(line.contains(" WARN "), "{line}");
        // A resident's reconnect attempt while it is down: the resident logs the state.
        let quiet = text_log(|| super::log_run(&run, true));
        assert!(
            quiet.contains(" DEBUG ") && quiet.contains("reason=no_match"),
            "{quiet}"
        );
        for field in [
            "probe=sim-join",
            "region=eu",
            "trigger=confirm",
            "step=signalling",
            "reason=no_match",
            "error=no frame matched",
        ] {
            assert!(line.contains(field), "{field} in {line}");
        }
        assert!(!line.contains("=\""), "{line}");
    }
}
