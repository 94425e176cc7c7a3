//! A resident session on the flow engine: a probe's `steps` run once to open it, its `exchange`
//! runs on the open session whenever asked (each time one [`ProbeRun`]), and between exchanges
//! the session is kept alive — the protocol's pings answered, a websocket ping sent every
//! `keepalive` — and watched for the server closing it or reporting an error.

use std::collections::BTreeMap;

use crate::clock::Clock;
use tokio::time::Instant;

use super::StepKind;
use super::{RunContext, StepError, assemble, close_all, new_context, run_steps};
use crate::flow::{ProbePlan, ResidentPlan};
use crate::report::{FailureReason, Phase, ProbeRun, StepReport, Trigger};

/// The step name of a failure found between exchanges (the session dropped, an error frame).
pub const SESSION_STEP: &str = "session";

/// An open resident session; borrows its probe's plan.
pub struct Session<'a> {
    plan: &'a ProbePlan,
    ctx: RunContext<'a>,
    resident: &'a ResidentPlan,
    region: String,
    opened: Instant,
    /// The connections the session opened: one missing means the session is broken.
    connections: Vec<String>,
    next_ping: Instant,
    /// Connections pinged and not heard from since (name -> when pinged).
    awaiting: BTreeMap<String, Instant>,
}

impl<'a> Session<'a> {
    /// Runs the probe's `steps` under `resident.setup_timeout`. `Ok` carries the setup's own
    /// report (every step passed); `Err` is the failed setup as a run, with everything it
    /// opened closed.
    ///
    /// # Errors
    /// The failed run when a step of the setup failed.
    pub async fn open(
        plan: &'a ProbePlan,
        resident: &'a ResidentPlan,
        region: &str,
        trigger: Trigger,
        clock: Clock,
    ) -> Result<(Session<'a>, ProbeRun), ProbeRun> {
        let started_at = clock.now();
        let start = Instant::now();
        let deadline = start + resident.setup_timeout;
        let mut ctx = new_context(plan, region, clock, started_at);
        let steps = run_steps(&mut ctx, plan.steps.iter(), deadline, false).await;
        let run = assemble(plan, region, started_at, start, trigger, steps);
        if !run.success {
            close_all(&mut ctx, deadline).await;
            return Err(run);
        }
        // What the session logged in with is scrubbed for as long as it lives, however many
        // values its exchanges add (those are kept to `redact::MAX_RUN_SECRETS`).
        ctx.redactor.freeze();
        let now = Instant::now();
        let connections = ctx.ws.keys().cloned().collect();
        Ok((
            Session {
                plan,
                ctx,
                resident,
                region: region.to_string(),
                opened: now,
                connections,
                next_ping: now + resident.keepalive,
                awaiting: BTreeMap::new(),
            },
            run,
        ))
    }

    /// How many values the session scrubs from what leaves it: bounded by what it opened
    /// with plus [`crate::redact::MAX_RUN_SECRETS`], however long it lives.
    pub fn secrets_held(&self) -> usize {
        self.ctx.redactor.len()
    }

    /// How long the session has been open.
    pub fn age(&self) -> std::time::Duration {
        self.opened.elapsed()
    }

    /// True when a connection the session opened is gone (closed by the server, or after a
    /// failure that lost it): exchanges on it cannot pass any more.
    pub fn broken(&self) -> bool {
        self.connections
            .iter()
            .any(|c| !self.ctx.ws.contains_key(c))
    }

    /// Runs the exchange once under the probe's `timeout`. `{{uuid}}` and `{{now_ms}}` are
    /// fresh per exchange (so a late answer to the last one never matches this one);
    /// `[variables]` and extracted values stay as the session set them.
    pub async fn exchange(&mut self, trigger: Trigger) -> ProbeRun {
        let started_at = self.ctx.clock.now();
        let start = Instant::now();
        let plan = self.plan;
        self.ctx.vars.insert("uuid".to_string(), super::new_uuid());
        self.ctx.vars.insert(
            "now_ms".to_string(),
            started_at.timestamp_millis().to_string(),
        );
        self.ctx.last_send = None;
        let steps = run_steps(
            &mut self.ctx,
            self.resident.exchange.iter(),
            start + plan.timeout,
            false,
        )
        .await;
        // Frames the exchange read prove the connections alive as well as a pong would.
        self.awaiting.clear();
        assemble(plan, &self.region, started_at, start, trigger, steps)
    }

    /// Keeps the session alive until `until`: answers the protocol's pings, drops stray
    /// messages, pings every connection each `keepalive`. Returns early with a failed run
    /// (step `session`) when the server closes a connection, reports an error, or a connection
    /// answers no ping within `keepalive`. Cancel-safe while it waits for frames.
    ///
    /// # Errors
    /// The failed run when the session broke while idle.
    pub async fn idle(&mut self, until: Instant) -> Result<(), ProbeRun> {
        let started_at = self.ctx.clock.now();
        let start = Instant::now();
        let Err(e) = self.keep_alive(until).await else {
            return Ok(());
        };
        let plan = self.plan;
        let mut phases = BTreeMap::new();
        phases.insert(Phase::Total, start.elapsed());
        let step = StepReport {
            name: SESSION_STEP.to_string(),
            kind: StepKind::WsExpect.name(),
            success: false,
            duration_ms: start.elapsed(),
            reason: Some(e.reason),
            error: Some(crate::redact::finish(&self.ctx.redactor, &e.message)),
            phases,
            cleanup: false,
            gauges: BTreeMap::new(),
            cert_expiry: None,
            warnings: Vec::new(),
        };
        Err(assemble(
            plan,
            &self.region,
            started_at,
            start,
            Trigger::Scheduled,
            vec![step],
        ))
    }

    async fn keep_alive(&mut self, until: Instant) -> Result<(), StepError> {
        let keepalive = self.resident.keepalive;
        let Session {
            ctx,
            next_ping,
            awaiting,
            ..
        } = self;
        // Bounded by `until`: every pass either reads a frame or reaches a wake-up time.
        loop {
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            if now >= *next_ping {
                for (name, conn) in &mut ctx.ws {
                    if awaiting.contains_key(name) {
                        return Err(StepError::new(
                            FailureReason::Timeout,
                            format!(
                                "connection `{name}` answered no keepalive ping within {}",
                                crate::report::human_duration(keepalive)
                            ),
                        ));
                    }
                    // An idle session's frames are metered per keepalive round, as a step's.
                    conn.begin_step();
                    match tokio::time::timeout(keepalive, conn.ping()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(e),
                        Err(_) => {
                            return Err(StepError::new(
                                FailureReason::Timeout,
                                format!("connection `{name}` took the keepalive ping too slowly"),
                            ));
                        }
                    }
                    awaiting.insert(name.clone(), now);
                }
                *next_ping = now + keepalive;
            }
            let wake = until.min(*next_ping);
            if ctx.ws.is_empty() {
                tokio::time::sleep_until(wake).await;
                continue;
            }
            let reads = ctx
                .ws
                .iter_mut()
                .map(|(name, conn)| Box::pin(async move { (name.clone(), conn.pump().await) }));
            let read = tokio::time::timeout_at(wake, futures_util::future::select_all(reads))
                .await
                .map(|(read, _, _)| read);
            match read {
                Err(_) => {}
                Ok((name, Ok(()))) => {
                    awaiting.remove(&name);
                }
                Ok((name, Err((gone, e)))) => {
                    if gone {
                        ctx.ws.remove(&name);
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Ends the session: the teardown steps (each bounded by its timeout and the probe's
    /// `timeout`), then every connection closed. Returns the teardown's reports (for logs).
    pub async fn close(mut self) -> Vec<StepReport> {
        let deadline = Instant::now() + self.plan.timeout;
        let reports = run_steps(&mut self.ctx, self.resident.teardown.iter(), deadline, true).await;
        close_all(&mut self.ctx, deadline).await;
        reports
    }
}
