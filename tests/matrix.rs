//! Matrix: Synapse from PyPI, a main process and a sync worker replicating over a real Redis
//! (tests/support/synapse.rs), probed by the shipped example `probes/examples/matrix.toml`: the
//! join passes with B's event reaching A's long-poll sync on the worker; with Redis stalled or
//! killed every login and join passes and the run fails on the path Redis carries: B's event
//! never reaches A (`signalling`, `no_match`) or the send hangs (`b-sends`, `timeout`) — the
//! incident this project exists for, on a real homeserver; a wrong password fails the login
//! with Synapse's words first, a stopped homeserver with `connect`; no password or access
//! token shows up in the output.

use std::time::Duration;

use joincanary::flow::ProbePlan;
use joincanary::report::{FailureReason, Trigger};

use crate::support::synapse::{self, Synapse};
use crate::support::{confirmed_page, cut_step, env_pairs, example, passed, run_once};

const EXAMPLE: &str = "matrix.toml";

/// Every step before A's long poll.
const JOINED: [&str; 6] = [
    "login-a", "login-b", "join-a", "join-b", "sync-a", "b-sends",
];

/// The example pointed at `synapse`, its long poll cut to `signalling`.
fn plan(synapse: &Synapse, env: &[(&str, &str)], signalling: Duration) -> ProbePlan {
    let base = synapse.env();
    let mut all = env_pairs(&base);
    all.extend_from_slice(env);
    let mut plan = example(EXAMPLE, &all);
    cut_step(&mut plan.steps, "signalling", signalling);
    plan
}

/// Synapse's access tokens open with `syt_`: none may be in a report.
fn assert_no_token(out: &str) {
    assert!(!out.contains("syt_"), "an access token leaked: {out}");
}

#[tokio::test]
async fn the_join_passes_through_the_sync_worker_a_wrong_password_or_a_down_server_fails_the_login()
{
    let Some(synapse) = synapse::start_or_skip().await else {
        return;
    };
    let plan = plan(&synapse, &[], Duration::from_secs(8));
    let run = run_once(&plan).await;
    assert!(run.steps.iter().all(|s| s.success), "{run:#?}");
    assert_no_token(&serde_json::to_string(&run).unwrap_or_default());
    // Again: the previous run's event, still in the room, is not taken for this one's (each
    // run waits for its own uuid), and the previous run's logout left nothing behind.
    let again = run_once(&plan).await;
    assert!(again.success, "{again:#?}");

    // A wrong password: Synapse's 403 M_FORBIDDEN, its words first, the password nowhere.
    let wrong = "hunter2-matrix-password";
    let run = run_once(&self::plan(
        &synapse,
        &[("MATRIX_PASSWORD_A", wrong)],
        Duration::from_secs(8),
    ))
    .await;
    assert_eq!(run.failed_step.as_deref(), Some("login-a"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::ServerError));
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("M_FORBIDDEN: Invalid username or password"),
        "{error}"
    );
    let out = serde_json::to_string(&run).unwrap_or_default();
    assert!(!out.contains(wrong), "{out}");
    let page = confirmed_page(&plan, &run);
    assert!(!page.contains(wrong), "{page}");
    assert!(page.contains("M_FORBIDDEN"), "{page}");

    // The homeserver down: the first login cannot connect.
    synapse
        .main()
        .signal("KILL")
        .unwrap_or_else(|e| panic!("{e}"));
    let run = run_once(&plan).await;
    assert_eq!(run.failed_step.as_deref(), Some("login-a"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::Connect));
}

#[tokio::test]
async fn a_stalled_or_killed_redis_fails_the_send_or_signalling_while_logins_and_joins_pass() {
    let Some(synapse) = synapse::start_or_skip().await else {
        return;
    };
    let plan = plan(&synapse, &[], Duration::from_secs(3));
    let run = run_once(&plan).await;
    assert!(run.success, "{run:#?}");

    // Redis stops answering (SIGSTOP): Synapse still logs both in and joins them, and the run
    // fails on the path Redis carries (see `broken_after_the_joins`; mostly the send hangs).
    synapse.redis.freeze().unwrap_or_else(|e| panic!("{e}"));
    let stalled = run_once(&plan).await;
    synapse.redis.thaw().unwrap_or_else(|e| panic!("{e}"));
    broken_after_the_joins(&stalled);
    let error = stalled.error.clone().unwrap_or_default();
    if stalled.failed_step.as_deref() == Some("signalling") {
        assert!(
            error.starts_with("no reply matched within 3.0 s (the step's timeout;"),
            "{error}"
        );
    }
    // The cleanup logged both accounts out anyway.
    passed(&stalled, &["logout-a", "logout-b"]);
    assert_no_token(&serde_json::to_string(&stalled).unwrap_or_default());
    let page = confirmed_page(&plan, &stalled);
    let failed = stalled.failed_step.clone().unwrap_or_default();
    assert!(page.contains(&failed), "{page}");
    assert_no_token(&page);

    // Thawed, replication catches up and a run passes again (bounded: the worker reconnects).
    let mut recovered = None;
    for _ in 0..5 {
        let run = run_once(&plan).await;
        if run.success {
            recovered = Some(run);
            break;
        }
    }
    assert!(recovered.is_some(), "no run passed after the thaw");

    // Redis gone (SIGKILL): the same (in our runs the send hangs every time).
    synapse
        .redis
        .process()
        .signal("KILL")
        .unwrap_or_else(|e| panic!("{e}"));
    let gone = run_once(&plan).await;
    broken_after_the_joins(&gone);
    passed(&gone, &["logout-a", "logout-b"]);
}

/// A run that logged in and joined, then failed on a step whose path Redis carries. Each was
/// seen in our runs (which one depends on what Synapse's processes had in hand): B's send
/// hanging on its Redis write (`b-sends`, `timeout`; most runs), A's first sync hanging on the
/// worker (`sync-a`, `timeout`), or B's event persisted and never reaching the worker
/// (`signalling`, `no_match`, the long poll running out).
fn broken_after_the_joins(run: &joincanary::report::ProbeRun) {
    passed(run, &JOINED[..4]);
    match run.failed_step.as_deref() {
        Some("sync-a" | "b-sends") => {
            assert_eq!(run.reason, Some(FailureReason::Timeout), "{run:#?}")
        }
        Some("signalling") => assert_eq!(run.reason, Some(FailureReason::NoMatch), "{run:#?}"),
        _ => panic!("failed at none of sync-a, b-sends, signalling: {run:#?}"),
    }
}

/// The resident example (`matrix-resident.toml`): one login per session, an exchange (B's
/// event to A's long poll) every few seconds. A stalled Redis fails the very next exchange on
/// the path it carries; after the thaw an exchange on the same session passes again, and the
/// teardown logs both accounts out.
#[tokio::test]
async fn the_resident_session_fails_an_exchange_while_redis_stalls_and_recovers_on_it() {
    let Some(synapse) = synapse::start_or_skip().await else {
        return;
    };
    let env = synapse.env();
    let plan = example("matrix-resident.toml", &env_pairs(&env));
    let (mut session, setup) = crate::support::open_session(&plan).await;
    assert!(setup.success, "{setup:#?}");
    for _ in 0..2 {
        let run = session.exchange(Trigger::Scheduled).await;
        assert!(run.success, "{run:#?}");
    }

    synapse.redis.freeze().unwrap_or_else(|e| panic!("{e}"));
    let stalled = session.exchange(Trigger::Scheduled).await;
    synapse.redis.thaw().unwrap_or_else(|e| panic!("{e}"));
    match stalled.failed_step.as_deref() {
        Some("b-sends") => assert_eq!(stalled.reason, Some(FailureReason::Timeout)),
        Some("signalling") => assert_eq!(stalled.reason, Some(FailureReason::NoMatch)),
        _ => panic!("the exchange failed at neither b-sends nor signalling: {stalled:#?}"),
    }

    // Bounded: replication catches up within a few exchanges on the same session.
    let mut recovered = false;
    for _ in 0..5 {
        if session.exchange(Trigger::Confirm).await.success {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "no exchange passed after the thaw");
    let teardown = session.close().await;
    assert!(teardown.iter().all(|s| s.success), "{teardown:#?}");
}
