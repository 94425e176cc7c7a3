//! The join-flow engine: run one probe's steps in order under one deadline, into a [`ProbeRun`].
//!
//! Steps share variables (extracted values, cookies, the open websockets). The first failing
//! step stops the flow; `cleanup = true` steps still run (a little past the deadline if need
//! be) and never fail the run; whatever the run opened is closed before it reports. A step's
//! timeout and the probe's deadline are enforced here, not by the step kinds, so no kind can
//! outlive them.

pub mod context;
pub mod defaults;
pub mod error;
pub mod http;
pub mod http_json;
mod http_wire;
pub mod kind;
pub mod kinds;
pub mod load;
mod long_poll;
pub mod matcher;
mod net;
mod origin;
pub mod parts;
pub mod plan;
#[cfg(test)]
mod proptests;
pub mod protocol;
mod redirect;
pub mod redis;
pub mod resident;
pub mod steps;
mod tcp;
pub mod tokens;
pub mod ws;

pub mod turn;
pub mod webrtc;

pub(crate) use context::RunContext;
pub use error::StepError;

pub use kinds::{StepKind, StepSpec};
pub use plan::{ProbePlan, ResidentPlan, StepPlan};

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::Utc;

use crate::clock::Clock;
use tokio::time::Instant;

use crate::report::{FailureReason, Phase, ProbeRun, StepReport, Trigger};

/// How far past the probe's deadline a cleanup step may run: a flow that timed out still
/// destroys its session on the platform.
pub const CLEANUP_GRACE: Duration = Duration::from_secs(2);

/// A random (v4) UUID for `{{uuid}}` and the like, from this thread's RNG (ChaCha, seeded from
/// the OS and reseeded as it goes): `Uuid::new_v4` asks the kernel (`getrandom`) every time.
pub(crate) fn new_uuid() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// Runs `plan` once and reports. Never panics on anything a server sends; always returns
/// within the probe's deadline plus a short close grace. A resident probe runs once as a whole
/// session: its steps, one exchange, its teardown. `clock` is the caller's (the scheduler's):
/// the run starts at its `now`, and its steps read the time from it.
pub async fn run_probe(
    plan: &ProbePlan,
    region: &str,
    trigger: Trigger,
    clock: &Clock,
) -> ProbeRun {
    let started_at = clock.now();
    let start = Instant::now();
    let deadline = start + plan.timeout;
    let mut ctx = new_context(plan, region, *clock, started_at);
    let resident = plan.resident.as_ref();
    let all = plan
        .steps
        .iter()
        .chain(resident.into_iter().flat_map(|r| &r.exchange))
        .chain(resident.into_iter().flat_map(|r| &r.teardown));
    let steps = run_steps(&mut ctx, all, deadline, false).await;
    close_all(&mut ctx, deadline).await;
    assemble(plan, region, started_at, start, trigger, steps)
}

/// A fresh run's state: built-ins, `[variables]` rendered once, nothing open; `started_at` is
/// `clock`'s now.
pub(crate) fn new_context<'a>(
    plan: &'a ProbePlan,
    region: &str,
    clock: Clock,
    started_at: chrono::DateTime<Utc>,
) -> RunContext<'a> {
    let mut vars = HashMap::new();
    vars.insert("uuid".to_string(), new_uuid());
    vars.insert(
        "now_ms".to_string(),
        started_at.timestamp_millis().to_string(),
    );
    vars.insert("region".to_string(), region.to_string());
    vars.insert("probe".to_string(), plan.name.clone());
    let mut ctx = RunContext {
        probe: &plan.name,
        max_body_bytes: plan.max_body_bytes,
        tls: plan.tls.clone(),
        vars: HashMap::new(),
        typed: HashMap::new(),
        cookies: context::Cookies::default(),
        ws: BTreeMap::new(),
        last_send: None,
        phases: BTreeMap::new(),
        pending: None,
        frames_seen: 0,
        last_miss: None,
        redactor: plan.redactor.clone(),
        plan_redactor: plan.redactor.clone(),
        sources: HashMap::new(),
        server_chosen: false,
        step_name: String::new(),
        gauges: BTreeMap::new(),
        cert_expiry: None,
        warnings: Vec::new(),
        waiting: "",
        clock,
        webrtc: BTreeMap::new(),
        long_polls: BTreeMap::new(),
        deadline: Instant::now() + plan.timeout,
    };
    for (name, t) in &plan.variables {
        let value = t.render(&vars).unwrap_or_default();
        // A variable built from a secret (SASL's `\0user\0password`) is a secret in every
        // encoding too.
        if ctx.redactor.holds_secret(&value) {
            ctx.add_secret(&value);
        }
        vars.insert(name.clone(), value);
    }
    mint_tokens(plan, &mut ctx, &mut vars, started_at);
    ctx.vars = vars;
    ctx
}

/// Mints the probe's `[tokens]` for this run from the variables and the run's start. Every
/// part of a token is a secret of the plan's kind (derived from its key): scrubbed from what
/// leaves the run, and refused to an origin a server chose, as a value from the environment
/// is. A token that cannot be minted (unreachable after `check`) stays unset, so the step
/// reading it fails saying so.
fn mint_tokens(
    plan: &ProbePlan,
    ctx: &mut RunContext<'_>,
    vars: &mut HashMap<String, String>,
    started_at: chrono::DateTime<Utc>,
) {
    for t in &plan.tokens {
        let Ok(token) = t.mint(vars, started_at) else {
            continue;
        };
        for s in token.secrets {
            ctx.plan_redactor.add(s.clone());
            ctx.add_secret(&s);
        }
        vars.insert(t.name.clone(), token.value);
    }
}

/// Runs `steps` in order under `deadline`: the first failing step stops the others, cleanup
/// steps still run. `only_cleanup` starts as if a step had failed (a session's teardown).
pub(crate) async fn run_steps<'s>(
    ctx: &mut RunContext<'_>,
    steps: impl Iterator<Item = &'s StepPlan>,
    deadline: Instant,
    only_cleanup: bool,
) -> Vec<StepReport> {
    let mut reports = Vec::new();
    let mut failed = only_cleanup;
    for step in steps {
        if failed && !(step.cleanup && can_clean_up(ctx, step)) {
            continue;
        }
        let step_deadline = if step.cleanup {
            deadline + CLEANUP_GRACE
        } else {
            deadline
        };
        let report = run_step(ctx, step, step_deadline).await;
        // A reason only when the step failed (`reason=` on every passing step was noise), and
        // the step's time, which is what a reader at debug level came for.
        tracing::debug!(probe = %ctx.probe, step = %step.name, success = report.success, duration_ms = crate::report::log_ms(report.duration_ms), reason = report.reason.map(|r| r.as_str()), "step finished");
        if !report.success {
            if step.cleanup {
                tracing::warn!(probe = %ctx.probe, step = %step.name, reason = %report.reason.map_or("", |r| r.as_str()), error = %report.error.as_deref().unwrap_or(""), "cleanup step failed");
            } else {
                failed = true;
            }
        }
        reports.push(report);
    }
    reports
}

/// Closes whatever the run opened: a websocket gets a close handshake, bounded by
/// [`ws::CLOSE_GRACE`] and `deadline`.
pub(crate) async fn close_all(ctx: &mut RunContext<'_>, deadline: Instant) {
    // A peer never connected just goes: its socket closes, the SFU's ICE times out.
    ctx.webrtc.clear();
    let open: Vec<ws::Connection> = std::mem::take(&mut ctx.ws).into_values().collect();
    if !open.is_empty() {
        let grace = deadline
            .saturating_duration_since(Instant::now())
            .min(ws::CLOSE_GRACE);
        if !grace.is_zero() {
            let _ = tokio::time::timeout(
                grace,
                futures_util::future::join_all(open.into_iter().map(ws::Connection::close)),
            )
            .await;
        }
    }
}

/// The run's report from its steps' reports.
pub(crate) fn assemble(
    plan: &ProbePlan,
    region: &str,
    started_at: chrono::DateTime<Utc>,
    start: Instant,
    trigger: Trigger,
    steps: Vec<StepReport>,
) -> ProbeRun {
    let failed = steps.iter().find(|s| !s.success && !s.cleanup);
    ProbeRun {
        probe: plan.name.clone(),
        region: region.to_string(),
        success: failed.is_none(),
        started_at,
        duration_ms: start.elapsed(),
        failed_step: failed.map(|s| s.name.clone()),
        reason: failed.and_then(|s| s.reason),
        error: failed.and_then(|s| s.error.clone()),
        trigger,
        steps,
    }
}

/// After a failure a cleanup step runs only if what it needs exists: the values it reads were
/// set and its websocket is still open (a `destroy` for a session never created is skipped).
fn can_clean_up(ctx: &RunContext<'_>, step: &StepPlan) -> bool {
    let vars_set = step.uses.iter().all(|v| ctx.vars.contains_key(v));
    let conn_open = !step.spec.uses_connection() || ctx.ws.contains_key(&step.connection);
    vars_set && conn_open
}

async fn run_step(
    ctx: &mut RunContext<'_>,
    step: &StepPlan,
    probe_deadline: Instant,
) -> StepReport {
    let t0 = Instant::now();
    ctx.phases.clear();
    ctx.pending = None;
    ctx.frames_seen = 0;
    ctx.step_name.clone_from(&step.name);
    ctx.gauges.clear();
    ctx.cert_expiry = None;
    ctx.warnings.clear();
    ctx.waiting = "";
    ctx.last_miss = None;
    let step_deadline = step
        .timeout
        .map_or(probe_deadline, |t| (t0 + t).min(probe_deadline));
    ctx.deadline = step_deadline;
    let outcome = match tokio::time::timeout_at(step_deadline, execute(ctx, step)).await {
        Ok(result) => result,
        Err(_) => {
            let late = Instant::now().saturating_duration_since(step_deadline);
            let e = timeout_error(ctx, step, t0, step_deadline == probe_deadline);
            Err(if late >= LATE_TIMER {
                prober_was_late(e, late)
            } else {
                e
            })
        }
    };
    step_report(ctx, &step.name, step.kind, step.cleanup, t0, outcome)
}

/// The report of a step that began at `t0`, from what it measured into `ctx`; the error
/// scrubbed of the run's secrets.
fn step_report(
    ctx: &mut RunContext<'_>,
    name: &str,
    kind: StepKind,
    cleanup: bool,
    t0: Instant,
    outcome: Result<(), StepError>,
) -> StepReport {
    if let Some((phase, since)) = ctx.pending.take() {
        *ctx.phases.entry(phase).or_default() += since.elapsed();
    }
    let duration = t0.elapsed();
    let mut phases = std::mem::take(&mut ctx.phases);
    phases.insert(Phase::Total, duration);
    let (success, reason, error) = match outcome {
        Ok(()) => (true, None, None),
        Err(e) => (
            false,
            Some(e.reason),
            Some(crate::redact::finish(&ctx.redactor, &e.message)),
        ),
    };
    StepReport {
        name: name.to_string(),
        kind: kind.name(),
        success,
        duration_ms: duration,
        reason,
        error,
        phases,
        cleanup,
        gauges: std::mem::take(&mut ctx.gauges),
        cert_expiry: ctx.cert_expiry.take(),
        warnings: std::mem::take(&mut ctx.warnings),
    }
}

/// How late a step's timer may fire before the run is taken as the prober's own failure. The
/// timer wheel keeps time to the millisecond; a second late means the prober's thread did not
/// run for that long (CPU starved or throttled, the VM paused, the machine suspended), so every
/// wait it measured includes its own stall, and the sends it owed the server went out late.
const LATE_TIMER: Duration = Duration::from_secs(1);

/// A timeout the prober was late for is `local`: it never pages as a platform outage (an
/// overloaded prober paged twice with "timed out after 52.6 s" on a 5 s step), and the rules
/// report the prober itself (`JoinCanaryUnhealthy`). The cause comes first, then what was waited
/// for.
fn prober_was_late(e: StepError, late: Duration) -> StepError {
    StepError::new(
        FailureReason::Local,
        format!(
            "the prober was late: its timer fired {} after it was due (this machine starved it of CPU), so the server is not blamed; {}",
            crate::report::human_duration(late),
            e.message
        ),
    )
}

fn timeout_error(
    ctx: &RunContext<'_>,
    step: &StepPlan,
    t0: Instant,
    probe_deadline: bool,
) -> StepError {
    let waited = crate::report::human_duration(t0.elapsed());
    let which = if probe_deadline {
        "the probe's deadline"
    } else {
        "the step's timeout"
    };
    if let Some(e) = step.spec.timed_out(ctx, &waited, which) {
        return e;
    }
    // A connection phase under way names its layer: a resolver or a TLS peer that never
    // answers is not "waiting for the reply".
    match ctx.pending.map(|(phase, _)| phase) {
        Some(Phase::Dns) => {
            return StepError::new(
                FailureReason::Dns,
                format!("timed out after {waited} resolving the host name ({which})"),
            );
        }
        Some(Phase::Tls) => {
            return StepError::new(
                FailureReason::Tls,
                format!("timed out after {waited} waiting for the TLS handshake ({which})"),
            );
        }
        Some(Phase::Connect) => {
            return StepError::new(
                FailureReason::Timeout,
                format!("timed out after {waited} waiting for the connection ({which})"),
            );
        }
        // The webrtc step stops itself at the deadline with these; this is the backstop.
        Some(phase @ (Phase::Ice | Phase::Dtls | Phase::FirstMedia)) => {
            let reason = match phase {
                Phase::Ice => FailureReason::Ice,
                Phase::Dtls => FailureReason::Dtls,
                _ => FailureReason::Media,
            };
            return StepError::new(
                reason,
                format!(
                    "timed out after {waited} in WebRTC phase {} ({which})",
                    phase.as_str()
                ),
            );
        }
        _ => {}
    }
    let waiting_for = step.spec.waiting(ctx);
    StepError::new(
        FailureReason::Timeout,
        format!("timed out after {waited} {waiting_for} ({which})"),
    )
}

async fn execute(ctx: &mut RunContext<'_>, step: &StepPlan) -> Result<(), StepError> {
    // A step of any kind that panics is the run's panic (the `run` task): key `probe/step`.
    crate::supervise::fault::hit(
        crate::supervise::Task::Run,
        format_args!("{}/{}", ctx.probe, step.name),
    );
    if step.spec.uses_connection()
        && let Some(conn) = ctx.ws.get_mut(&step.connection)
    {
        conn.begin_step();
    }
    step.spec.run(ctx, &step.connection).await
}
