//! Real-clock runs that must end in a timeout. A step whose timer fired a second or more after
//! it was due is the prober's own failure (`local`, "the prober was late": `LATE_TIMER` in
//! src/flow/mod.rs), whatever the server did, so on a loaded machine such a run says nothing
//! of the server and is run again (a few times at most): a test that needs a real process's
//! clock (Redis paused, a kernel's SYN retry) still proves its `timeout` or `no_match`. A run
//! late every time fails the test as before. Tests on tokio's paused clock need none of this.

use joincanary::report::{FailureReason, ProbeRun};

/// Runs of one case at most, the late ones included.
const TRIES: usize = 3;

/// Whether `run` failed because the prober's own timer was late (not the server's doing).
pub fn was_late(run: &ProbeRun) -> bool {
    run.reason == Some(FailureReason::Local)
        && run
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("the prober was late: "))
}

/// The first run from `run` the prober was not late for; the last one if it was late every
/// time (the caller's assertions then show it).
pub async fn on_time(mut run: impl AsyncFnMut() -> ProbeRun) -> ProbeRun {
    let mut tried = 1;
    loop {
        let r = run().await;
        if !was_late(&r) || tried == TRIES {
            return r;
        }
        eprintln!("the prober was late (a loaded machine), running again: {r:?}");
        tried += 1;
    }
}
