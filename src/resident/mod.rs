//! The resident participant (`mode = "resident"`): one task per resident probe keeps a session
//! open in a canary room and runs the probe's exchange on it every `every`. Each exchange is a
//! run on the scheduler's channel — metrics, status and the alert policy treat it like any
//! run — and so is each failed attempt to open a session and each break found while idle.
//! A session that fails is re-established after a capped, fully jittered exponential backoff
//! ([`crate::backoff`]); one older than `max_session_age` is rotated. Every reconnect is counted
//! ([`Event::Reconnect`] -> `probe_resident_reconnects_total`). A participant that stays down
//! logs its changes (down, still down every [`STILL_DOWN_EVERY`], up again), not every attempt.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::event::{Event, ReconnectCause};
use crate::flow::{ProbePlan, ResidentPlan};
use crate::report::{ProbeRun, Trigger};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// While a resident participant stays down, at most one "still down" line this often: its
/// failed attempts (one every `reconnect_max` at most, 5 s by default) are counted, not logged
/// one by one.
pub const STILL_DOWN_EVERY: Duration = Duration::from_secs(300);

/// A participant that is down: from its session's failure until an exchange passes again.
struct Down {
    since: Instant,
    /// Reconnect attempts since.
    reconnects: u32,
    /// When it was last logged.
    said: Instant,
}

impl Down {
    /// A failed run while down: logged once every [`STILL_DOWN_EVERY`], with the latest failure.
    fn failed(&mut self, run: &ProbeRun) {
        let now = Instant::now();
        if now.duration_since(self.said) < STILL_DOWN_EVERY {
            return;
        }
        self.said = now;
        tracing::warn!(
            probe = %run.probe,
            region = %run.region,
            down_for = %down_for(now.duration_since(self.since)),
            reconnects = self.reconnects,
            step = %run.failed_step.as_deref().unwrap_or(""),
            reason = %run.reason.map(|r| r.as_str()).unwrap_or(""),
            error = %run.error.as_deref().unwrap_or(""),
            "resident session still down"
        );
    }
}

/// `12m 3s`: how long it was down, to the second.
fn down_for(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// Opens sessions. The real one is [`FlowSessions`]; tests script one to drive the loop under
/// a paused clock.
pub trait Sessions: Send + Sync + 'static {
    /// Opens a session (the probe's `steps`).
    ///
    /// # Errors
    /// The failed setup as a run.
    /// `clock`: the scheduler's, which the session's runs read the time from.
    fn open<'a>(
        &'a self,
        plan: &'a ProbePlan,
        resident: &'a ResidentPlan,
        region: &'a str,
        clock: Clock,
    ) -> BoxFuture<'a, Result<Box<dyn Session<'a> + 'a>, ProbeRun>>;
}

/// One open session.
pub trait Session<'a>: Send {
    /// How long it has been open.
    fn age(&self) -> Duration;
    /// A connection it opened is gone: exchanges on it cannot pass.
    fn broken(&self) -> bool;
    /// Runs the exchange once.
    fn exchange(&mut self, trigger: Trigger) -> BoxFuture<'_, ProbeRun>;
    /// Keeps it alive until `until`; `Err` is the break found meanwhile, as a failed run.
    fn idle(&mut self, until: Instant) -> BoxFuture<'_, Result<(), ProbeRun>>;
    /// Teardown and close, bounded.
    fn close(self: Box<Self>) -> BoxFuture<'a, ()>;
}

/// Sessions on the real flow engine.
pub struct FlowSessions;

impl Sessions for FlowSessions {
    fn open<'a>(
        &'a self,
        plan: &'a ProbePlan,
        resident: &'a ResidentPlan,
        region: &'a str,
        clock: Clock,
    ) -> BoxFuture<'a, Result<Box<dyn Session<'a> + 'a>, ProbeRun>> {
        Box::pin(async move {
            let (session, setup) = crate::flow::resident::Session::open(
                plan,
                resident,
                region,
                Trigger::Scheduled,
                clock,
            )
            .await?;
            tracing::debug!(probe = %plan.name, region = %region, duration_ms = setup.duration_ms.as_millis() as u64, "resident session opened");
            Ok(Box::new(session) as Box<dyn Session<'a> + 'a>)
        })
    }
}

impl<'a> Session<'a> for crate::flow::resident::Session<'a> {
    fn age(&self) -> Duration {
        crate::flow::resident::Session::age(self)
    }
    fn broken(&self) -> bool {
        crate::flow::resident::Session::broken(self)
    }
    fn exchange(&mut self, trigger: Trigger) -> BoxFuture<'_, ProbeRun> {
        Box::pin(crate::flow::resident::Session::exchange(self, trigger))
    }
    fn idle(&mut self, until: Instant) -> BoxFuture<'_, Result<(), ProbeRun>> {
        Box::pin(crate::flow::resident::Session::idle(self, until))
    }
    fn close(self: Box<Self>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let _ = crate::flow::resident::Session::close(*self).await;
        })
    }
}

/// The task of one resident probe.
pub struct Resident {
    pub probe: Arc<ProbePlan>,
    pub region: String,
    pub clock: Clock,
    pub sessions: Arc<dyn Sessions>,
    pub events: mpsc::Sender<Event>,
    pub shutdown: CancellationToken,
    /// Seeds the reconnect jitter (tests fix it; the service draws one).
    pub seed: u64,
}

/// What ended a session.
enum Ended {
    /// Stop: the service is shutting down.
    Stop,
    /// Open again after a backoff.
    Failed,
    /// Open again now.
    Rotate,
}

impl Resident {
    /// Runs until `shutdown`. `confirm` carries the alert policy's requests for a confirming
    /// run: the next exchange is brought forward to that delay.
    pub async fn run(self, mut confirm: mpsc::Receiver<Duration>) {
        self.run_with(&mut confirm).await;
    }

    /// [`Resident::run`] on a borrowed receiver, so a supervisor can start it again.
    pub async fn run_with(&self, confirm: &mut mpsc::Receiver<Duration>) {
        let probe = self.probe.clone();
        let Some(resident) = probe.resident.as_ref() else {
            return;
        };
        let mut backoff = Backoff::new(resident.reconnect_min, resident.reconnect_max);
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let mut cause: Option<ReconnectCause> = None;
        let mut down: Option<Down> = None;
        // Bounded by `shutdown`; every pass opens one session, and failed ones wait a backoff.
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            crate::supervise::fault::hit(crate::supervise::Task::Resident, &probe.name);
            if let Some(c) = cause {
                // A rotation is news (once per `max_session_age`); an attempt while down is
                // counted (`probe_resident_reconnects_total`) and summed up by `Down`.
                match (c, &mut down) {
                    (ReconnectCause::Failure, Some(d)) => {
                        d.reconnects = d.reconnects.saturating_add(1);
                        tracing::debug!(probe = %probe.name, region = %self.region, cause = %c.as_str(), attempt = backoff.attempt(), "re-establishing the resident session");
                    }
                    _ => {
                        tracing::info!(probe = %probe.name, region = %self.region, cause = %c.as_str(), attempt = backoff.attempt(), "re-establishing the resident session");
                    }
                }
                let _ = self.events.try_send(Event::Reconnect {
                    probe: probe.name.clone(),
                    cause: c,
                });
            }
            let ended = match self
                .sessions
                .open(&probe, resident, &self.region, self.clock)
                .await
            {
                Ok(session) => {
                    self.exchanges(session, resident, confirm, &mut backoff, &mut down)
                        .await
                }
                Err(run) => {
                    self.report(run, None, &mut down).await;
                    Ended::Failed
                }
            };
            cause = match ended {
                Ended::Stop => return,
                Ended::Rotate => Some(ReconnectCause::Rotation),
                Ended::Failed => {
                    if down.is_none() {
                        // The run that failed it was logged as any failed run, with its step
                        // and reason; what follows is summed up.
                        tracing::warn!(
                            probe = %probe.name,
                            region = %self.region,
                            reconnect_max = %down_for(resident.reconnect_max),
                            "resident session down; re-establishing it with backoff"
                        );
                        let now = Instant::now();
                        down = Some(Down {
                            since: now,
                            reconnects: 0,
                            said: now,
                        });
                    }
                    // The first attempt after a working session is the run that confirms its
                    // failure: it waits the policy's `confirm_delay` first, as a scheduled
                    // probe's confirming run does. A draw near 0 s would otherwise page on a
                    // blip (a server restarting for a second: broken session, refused reopen,
                    // two failed runs 20 ms apart). The jitter still spreads a fleet after it.
                    let confirming = backoff.attempt() == 0;
                    let mut delay = backoff.next_jittered(&mut rng);
                    if confirming {
                        delay += probe.alerting.confirm_delay;
                    }
                    tracing::debug!(probe = %probe.name, region = %self.region, delay_ms = delay.as_millis() as u64, "resident session failed; backing off");
                    if !self.pause(delay).await {
                        return;
                    }
                    Some(ReconnectCause::Failure)
                }
            };
        }
    }

    /// Exchanges on an open session until it fails, ages out or the service stops; closes it.
    async fn exchanges<'a>(
        &self,
        mut session: Box<dyn Session<'a> + 'a>,
        resident: &ResidentPlan,
        confirm: &mut mpsc::Receiver<Duration>,
        backoff: &mut Backoff,
        down: &mut Option<Down>,
    ) -> Ended {
        let mut next = Instant::now();
        let mut trigger = Trigger::Scheduled;
        let mut failures = 0u32;
        // Bounded by `shutdown`: every pass idles until `next` (at least `every` after the
        // last exchange, or a confirm delay) or ends the session.
        let ended = loop {
            self.announce(next);
            let idle = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break Ended::Stop,
                Some(delay) = confirm.recv() => {
                    let at = Instant::now() + delay;
                    if at < next {
                        next = at;
                        trigger = Trigger::Confirm;
                    }
                    continue;
                }
                idle = session.idle(next) => idle,
            };
            if let Err(run) = idle {
                self.report(run, None, down).await;
                break Ended::Failed;
            }
            if session.age() >= resident.max_session_age {
                break Ended::Rotate;
            }
            let lag = Instant::now().saturating_duration_since(next);
            let started = Instant::now();
            let run = session.exchange(trigger).await;
            let success = run.success;
            self.report(run, Some(lag), down).await;
            next = started + resident.every;
            trigger = Trigger::Scheduled;
            if success {
                failures = 0;
                backoff.reset();
                continue;
            }
            failures += 1;
            if session.broken() || failures >= resident.reconnect_after {
                break Ended::Failed;
            }
        };
        session.close().await;
        ended
    }

    /// Waits out a reconnect delay; `false` when the service stops meanwhile. Confirmation
    /// requests are dropped: the backoff wins, never a reconnect storm.
    async fn pause(&self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        self.announce(until);
        tokio::select! {
            () = self.shutdown.cancelled() => false,
            () = tokio::time::sleep_until(until) => true,
        }
    }

    /// Tells the status page and the liveness watch when the next run is due (never waits).
    fn announce(&self, at: Instant) {
        let _ = self.events.try_send(Event::NextRun {
            probe: self.probe.name.clone(),
            at: self.clock.wall_at(at),
        });
    }

    /// Sends a run to the consumer. While down, a failed one is `quiet` (logged by [`Down`]), and
    /// the first pass ends it.
    async fn report(&self, run: ProbeRun, lag: Option<Duration>, down: &mut Option<Down>) {
        let quiet = match down {
            Some(_) if run.success => {
                if let Some(d) = down.take() {
                    tracing::info!(
                        probe = %run.probe,
                        region = %run.region,
                        down_for = %down_for(d.since.elapsed()),
                        reconnects = d.reconnects,
                        "resident session up again"
                    );
                }
                false
            }
            Some(d) => {
                d.failed(&run);
                true
            }
            None => false,
        };
        // The consumer drains this channel quickly; it only closes when the service stops.
        let _ = self.events.send(Event::Run { run, lag, quiet }).await;
    }
}
