//! The join-flow engine: run one probe's steps in order under one deadline, into a [`ProbeRun`].
//!
//! Steps share variables (extracted values, cookies, the open websockets). The first failing
//! step stops the flow; `cleanup = true` steps still run (a little past the deadline if need
//! be) and never fail the run; whatever the run opened is closed before it reports. A step's
//! timeout and the probe's deadline are enforced here, not by the step kinds, so no kind can
//! outlive them.

mod http;
pub mod matcher;
mod net;
#[cfg(test)]
mod proptests;
pub mod protocol;
mod redis;
pub mod resident;

pub use redis::{
    CounterMemory, CounterRate, DEFAULT_RATES, REDIS_COUNTERS, REDIS_GAUGES, gauge_var,
};
pub mod turn;
pub mod webrtc;
mod ws;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use crate::config::{ProbePlan, StepPlan, StepSpec};
use crate::redact::quote;
use crate::report::{FailureReason, Phase, ProbeRun, StepReport, Trigger};

/// Longest a closing handshake may take after the run is over.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How far past the probe's deadline a cleanup step may run: a flow that timed out still
/// destroys its session on the platform.
pub const CLEANUP_GRACE: Duration = Duration::from_secs(2);
/// Longest snippet of a reply quoted in an error.
const SNIPPET_CHARS: usize = 160;

/// A failed step: a stable reason and a human message (scrubbed before it leaves the engine).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub reason: FailureReason,
    pub message: String,
}

impl StepError {
    pub fn new(reason: FailureReason, message: impl Into<String>) -> StepError {
        StepError {
            reason,
            message: message.into(),
        }
    }

    /// `reason`, unless `cause` says the prober itself ran out of something (fds, memory,
    /// local ports): then `local`, so the run is not taken for a platform outage.
    pub fn caused_by(
        reason: FailureReason,
        message: impl Into<String>,
        cause: &(dyn std::error::Error + 'static),
    ) -> StepError {
        match net::local_cause(cause) {
            Some(what) => StepError::new(
                FailureReason::Local,
                format!("this prober is {what}: {}", message.into()),
            ),
            None => StepError::new(reason, message),
        }
    }
}

/// A random (v4) UUID for `{{uuid}}` and the like, from this thread's RNG (ChaCha, seeded from
/// the OS and reseeded as it goes): `Uuid::new_v4` asks the kernel (`getrandom`) every time.
pub(crate) fn new_uuid() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// A quoted, truncated, single-line view of a reply for error messages.
pub(crate) fn snippet(bytes: &[u8]) -> String {
    quote(&String::from_utf8_lossy(bytes), SNIPPET_CHARS)
}

/// State shared by the steps of one run.
pub(crate) struct RunContext<'a> {
    pub plan: &'a ProbePlan,
    pub vars: HashMap<String, String>,
    pub jar: Arc<reqwest::cookie::Jar>,
    /// Open websockets by connection name (`""` is the default one).
    pub ws: BTreeMap<String, ws::Connection>,
    /// WebRTC peers offered or answered, not yet connected, by connection name.
    pub webrtc: BTreeMap<String, webrtc::Peer>,
    /// The current step's deadline (its timeout or the probe's, whichever is first): kinds that
    /// run phases of their own stop each one there with the phase's reason.
    pub deadline: Instant,
    /// Which connection the last `ws_send` used and when it began: a following `ws_expect`
    /// records the round trip (same connection) or the fan-out (another one) from it, until a
    /// `ws_connect` ends the measurement.
    pub last_send: Option<(String, Instant)>,
    /// Phases measured so far by the current step; kept here so a timeout does not lose them.
    pub phases: BTreeMap<Phase, Duration>,
    /// The connection phase under way (dns, connect, tls) and since when: a timeout names it
    /// and still reports its time.
    pub pending: Option<(Phase, Instant)>,
    /// Frames read by the current `ws_expect` (for the no-match message after a timeout).
    pub frames_seen: usize,
    /// Why the last frame the current `ws_expect` read did not match (quoted in `no_match`).
    pub last_miss: Option<String>,
    pub redactor: crate::redact::Redactor,
    /// The current step's name, gauges read and thresholds crossed (redis, http_json).
    pub step_name: String,
    pub gauges: BTreeMap<String, f64>,
    pub warnings: Vec<String>,
    /// What the current step waits for, when it says (for the timeout message).
    pub waiting: &'static str,
}

impl RunContext<'_> {
    /// Stores an extracted value; extracted values are treated as secrets (tokens, session ids).
    pub fn set_var(&mut self, name: &str, value: String) {
        self.add_secret(&value);
        self.vars.insert(name.to_string(), value);
    }

    /// A secret is scrubbed in every encoding (the redactor's own business).
    fn add_secret(&mut self, value: &str) {
        self.redactor.add(value.to_string());
    }

    /// Renders a step's `headers` table.
    pub fn render_headers(
        &self,
        headers: &[(String, crate::template::Template)],
    ) -> Result<hyper::HeaderMap, StepError> {
        let mut out = hyper::HeaderMap::new();
        for (name, value) in headers {
            let rendered = self.render(value)?;
            let name = hyper::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                StepError::new(
                    FailureReason::Protocol,
                    format!("`{name}` is not a header name"),
                )
            })?;
            let value = hyper::header::HeaderValue::from_str(&rendered).map_err(|_| {
                StepError::new(
                    FailureReason::Protocol,
                    format!("header `{name}` has a value that cannot be sent"),
                )
            })?;
            out.insert(name, value);
        }
        Ok(out)
    }

    pub fn render(&self, t: &crate::template::Template) -> Result<String, StepError> {
        t.render(&self.vars)
            .map_err(|e| StepError::new(FailureReason::Protocol, e.to_string()))
    }
}

/// Runs `plan` once and reports. Never panics on anything a server sends; always returns
/// within the probe's deadline plus a short close grace. A resident probe runs once as a whole
/// session: its steps, one exchange, its teardown.
pub async fn run_probe(plan: &ProbePlan, region: &str, trigger: Trigger) -> ProbeRun {
    let started_at = Utc::now();
    let start = Instant::now();
    let deadline = start + plan.timeout;
    let mut ctx = new_context(plan, region, started_at);
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

/// A fresh run's state: built-ins, `[variables]` rendered once, nothing open.
pub(crate) fn new_context<'a>(
    plan: &'a ProbePlan,
    region: &str,
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
        plan,
        vars: HashMap::new(),
        jar: Arc::new(reqwest::cookie::Jar::default()),
        ws: BTreeMap::new(),
        last_send: None,
        phases: BTreeMap::new(),
        pending: None,
        frames_seen: 0,
        last_miss: None,
        redactor: plan.redactor.clone(),
        step_name: String::new(),
        gauges: BTreeMap::new(),
        warnings: Vec::new(),
        waiting: "",
        webrtc: BTreeMap::new(),
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
    ctx.vars = vars;
    ctx
}

/// Runs `steps` in order under `deadline`: the first failing step stops the others, cleanup
/// steps still run. `only_cleanup` starts as if a step had failed (a session's teardown).
pub(crate) async fn run_steps<'s>(
    ctx: &mut RunContext<'_>,
    steps: impl Iterator<Item = &'s StepPlan>,
    deadline: Instant,
    only_cleanup: bool,
) -> Vec<StepReport> {
    let plan = ctx.plan;
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
        tracing::debug!(probe = %plan.name, step = %step.name, success = report.success, reason = ?report.reason.map(|r| r.as_str()), "step finished");
        if !report.success {
            if step.cleanup {
                tracing::warn!(probe = %plan.name, step = %step.name, reason = ?report.reason.map(|r| r.as_str()), error = report.error.as_deref().unwrap_or(""), "cleanup step failed");
            } else {
                failed = true;
            }
        }
        reports.push(report);
    }
    reports
}

/// Closes whatever the run opened: a websocket gets a close handshake, bounded by
/// [`CLOSE_GRACE`] and `deadline`.
pub(crate) async fn close_all(ctx: &mut RunContext<'_>, deadline: Instant) {
    // A peer never connected just goes: its socket closes, the SFU's ICE times out.
    ctx.webrtc.clear();
    let open: Vec<ws::Connection> = std::mem::take(&mut ctx.ws).into_values().collect();
    if !open.is_empty() {
        let grace = deadline
            .saturating_duration_since(Instant::now())
            .min(CLOSE_GRACE);
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
    let conn_open = match step.spec {
        StepSpec::WsSend(_) | StepSpec::WsExpect(_) | StepSpec::WsClose => {
            ctx.ws.contains_key(&step.connection)
        }
        _ => true,
    };
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
    ctx.warnings.clear();
    ctx.waiting = "";
    ctx.last_miss = None;
    let step_deadline = step
        .timeout
        .map_or(probe_deadline, |t| (t0 + t).min(probe_deadline));
    ctx.deadline = step_deadline;
    let outcome = match tokio::time::timeout_at(step_deadline, execute(ctx, step)).await {
        Ok(result) => result,
        Err(_) => Err(timeout_error(
            ctx,
            step,
            t0,
            step_deadline == probe_deadline,
        )),
    };
    step_report(ctx, &step.name, step.kind, step.cleanup, t0, outcome)
}

/// The report of a step that began at `t0`, from what it measured into `ctx`; the error
/// scrubbed of the run's secrets.
fn step_report(
    ctx: &mut RunContext<'_>,
    name: &str,
    kind: crate::report::StepKind,
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
        kind,
        success,
        duration_ms: duration,
        reason,
        error,
        phases,
        cleanup,
        gauges: std::mem::take(&mut ctx.gauges),
        warnings: std::mem::take(&mut ctx.warnings),
    }
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
    // The rule for `ws_expect`: running out of time is `no_match` whichever clock ran out, the
    // step's timeout or the probe's deadline. The websocket was up and the frame the flow needed
    // never came (the signalling path failing, with or without other traffic); the message says
    // which clock and how many frames were skipped. A step's own `timeout` is an optional
    // refinement and must not change what the failure is called.
    if matches!(step.spec, StepSpec::WsExpect(_)) {
        let seen = ctx.frames_seen;
        return StepError::new(
            FailureReason::NoMatch,
            match &ctx.last_miss {
                Some(miss) => format!(
                    "no frame matched within {waited} ({which}; {seen} frames skipped; last: {miss})"
                ),
                None => {
                    format!("no frame matched within {waited} ({which}; {seen} frames skipped)")
                }
            },
        );
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
    let waiting_for = match (&step.spec, ctx.phases.keys().next_back()) {
        (StepSpec::Http(_) | StepSpec::HttpJson(_), None) => "waiting for the connection",
        (StepSpec::Http(_) | StepSpec::HttpJson(_), Some(Phase::FirstByte)) => "reading the body",
        (StepSpec::Http(_) | StepSpec::HttpJson(_), Some(_)) => "waiting for the reply",
        (StepSpec::WsConnect(_), _) => "opening the websocket",
        (StepSpec::Redis(_), _) if !ctx.waiting.is_empty() => ctx.waiting,
        _ => "in the step",
    };
    StepError::new(
        FailureReason::Timeout,
        format!("timed out after {waited} {waiting_for} ({which})"),
    )
}

async fn execute(ctx: &mut RunContext<'_>, step: &StepPlan) -> Result<(), StepError> {
    match &step.spec {
        StepSpec::Http(spec) => http::run(ctx, spec).await,
        StepSpec::WsConnect(spec) => ws::connect(ctx, &step.connection, spec).await,
        StepSpec::WsSend(spec) => ws::send(ctx, &step.connection, spec).await,
        StepSpec::WsExpect(spec) => ws::expect(ctx, &step.connection, spec).await,
        StepSpec::WsClose => ws::close(ctx, &step.connection).await,
        StepSpec::Webrtc(spec) => webrtc::run(ctx, &step.connection, spec).await,
        StepSpec::Redis(spec) => redis::run(ctx, spec).await,
        StepSpec::HttpJson(spec) => redis::http_json(ctx, spec).await,
        StepSpec::Turn(spec) => turn::run(ctx, spec).await,
    }
}
