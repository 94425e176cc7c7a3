//! The join flow against the real reference server: success, and each fault at the right step.

use std::time::Duration;

use joincanary::report::{FailureReason, Phase};
use serde_json::json;

use crate::support::{self, set_faults, sim_probe, start_sim, step};

#[tokio::test]
async fn shipped_probe_passes_against_the_sim_with_phase_timings() {
    let sim = start_sim().await;
    let run = crate::support::run_once(&sim_probe(&sim)).await;
    assert!(run.success, "{run:#?}");
    assert_eq!(run.steps.len(), 5);
    assert_eq!(run.failed_step, None);
    let login = step(&run, "login");
    assert!(
        login.phases.contains_key(&Phase::Connect) && login.phases.contains_key(&Phase::FirstByte)
    );
    // 127.0.0.1 is an IP literal: no DNS was done, so none is reported (absent, not zero).
    assert!(!login.phases.contains_key(&Phase::Dns));
    let ws = step(&run, "websocket");
    assert!(ws.phases.contains_key(&Phase::Connect) && ws.phases.contains_key(&Phase::Upgrade));
    assert!(!ws.phases.contains_key(&Phase::Tls));
    assert!(
        step(&run, "signalling")
            .phases
            .contains_key(&Phase::RoundTrip)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn login_status_fault_fails_login_with_http_status() {
    let sim = start_sim().await;
    set_faults(&sim, json!({"login_status": 503})).await;
    let run = crate::support::run_once(&sim_probe(&sim)).await;
    assert!(!run.success);
    assert_eq!(run.failed_step.as_deref(), Some("login"));
    assert_eq!(run.reason, Some(FailureReason::HttpStatus));
    assert!(
        run.error.as_deref().unwrap_or_default().contains("503"),
        "{:?}",
        run.error
    );
    assert_eq!(
        run.steps.len(),
        1,
        "the run stops at the first failing step"
    );
    sim.shutdown().await;
}

/// On the paused clock: the sim's delay and the step's deadline are both virtual, so the
/// deadline is exact whatever the machine's load.
#[tokio::test(start_paused = true)]
async fn login_delay_beyond_the_step_timeout_is_a_timeout() {
    let sim = start_sim().await;
    set_faults(&sim, json!({"login_delay_ms": 3000})).await;
    let mut probe = sim_probe(&sim);
    probe.steps[0].timeout = Some(Duration::from_millis(300));
    let run = crate::support::run_once(&probe).await;
    assert_eq!(run.failed_step.as_deref(), Some("login"));
    assert_eq!(run.reason, Some(FailureReason::Timeout));
    let login = crate::support::step(&run, "login").duration_ms;
    assert!(
        login >= Duration::from_millis(300) && login < Duration::from_millis(400),
        "the step deadline fired at 300 ms: {login:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn ws_reject_fault_fails_the_websocket_step() {
    let sim = start_sim().await;
    set_faults(&sim, json!({"ws_reject_status": 503})).await;
    let run = crate::support::run_once(&sim_probe(&sim)).await;
    assert_eq!(run.failed_step.as_deref(), Some("websocket"));
    assert_eq!(run.reason, Some(FailureReason::WsHandshake));
    assert!(run.error.as_deref().unwrap_or_default().contains("503"));
    sim.shutdown().await;
}

/// On the paused clock (the sim is in this runtime): the step's 1.5 s is its own, and no timer
/// is late (which makes the run the prober's own failure, `local`).
#[tokio::test(start_paused = true)]
async fn signalling_drop_fails_signalling_with_no_match() {
    let sim = start_sim().await;
    set_faults(&sim, json!({"signalling_drop": true})).await;
    let mut probe = sim_probe(&sim);
    probe.steps[3].timeout = Some(Duration::from_millis(1500));
    let run = crate::support::run_once(&probe).await;
    assert_eq!(run.failed_step.as_deref(), Some("signalling"));
    assert_eq!(run.reason, Some(FailureReason::NoMatch));
    assert!(
        step(&run, "login").success
            && step(&run, "websocket").success
            && step(&run, "join").success
    );
    sim.shutdown().await;
}

/// On the paused clock: the sim's 400 ms and the step's 200 ms are the same clock.
#[tokio::test(start_paused = true)]
async fn signalling_delay_shows_in_the_round_trip_and_fails_past_the_timeout() {
    let sim = start_sim().await;
    set_faults(&sim, json!({"signalling_delay_ms": 400})).await;
    let run = crate::support::run_once(&sim_probe(&sim)).await;
    assert!(run.success, "{run:#?}");
    let rt = step(&run, "signalling").phases[&Phase::RoundTrip];
    assert!(
        rt >= Duration::from_millis(400),
        "round trip {rt:?} includes the delay"
    );

    let mut probe = sim_probe(&sim);
    probe.steps[3].timeout = Some(Duration::from_millis(200));
    let run = crate::support::run_once(&probe).await;
    assert_eq!(run.failed_step.as_deref(), Some("signalling"));
    assert_eq!(run.reason, Some(FailureReason::NoMatch));
    sim.shutdown().await;
}

#[tokio::test]
async fn clearing_faults_makes_the_flow_pass_again() {
    let sim = start_sim().await;
    set_faults(&sim, json!({"login_status": 500})).await;
    assert!(!crate::support::run_once(&sim_probe(&sim)).await.success);
    reqwest::Client::new()
        .delete(format!("{}/_sim/faults", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert!(crate::support::run_once(&sim_probe(&sim)).await.success);
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_password_fails_login_and_never_shows_the_password() {
    let sim = start_sim().await;
    let plan = joincanary::config::load(
        &support::root().join("config/joincanary.toml"),
        &support::env(&[
            ("SIM_URL", &sim.base_url()),
            ("SIM_PASSWORD", "hunter2-wrong"),
        ]),
    )
    .unwrap();
    let run = crate::support::run_once(&plan.probes[0]).await;
    assert_eq!(run.reason, Some(FailureReason::HttpStatus));
    let out = serde_json::to_string(&run).unwrap();
    assert!(!out.contains("hunter2-wrong"), "{out}");
    sim.shutdown().await;
}

/// A run reads the time from its caller's clock (the scheduler's), not the system's: under a
/// paused clock set to 2030 the run starts in 2030.
#[tokio::test(start_paused = true)]
async fn a_run_reads_the_time_from_the_callers_clock() {
    use chrono::TimeZone as _;
    let fixed = chrono::Utc
        .with_ymd_and_hms(2030, 1, 2, 3, 4, 5)
        .single()
        .unwrap();
    let clock = joincanary::clock::Clock::starting_at(fixed);
    // A refused port: the run fails at once.
    let text = "timeout = \"2s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";
    let plan = support::probe_from(text, &[]);
    let run =
        joincanary::flow::run_probe(&plan, "test", joincanary::report::Trigger::Manual, &clock)
            .await;
    assert_eq!(run.started_at, fixed, "{run:#?}");
    assert!(!run.success, "{run:#?}");
}

/// A URL that opens with a value (a login reply naming the signalling server: Nextcloud's
/// `server`) is checked when the run has it; `regex` beside `json` keeps part of a value, and
/// a value it does not match fails the step saying both.
#[tokio::test]
async fn a_url_from_a_value_and_a_narrowed_extract_work_and_fail_clearly() {
    let sim = start_sim().await;
    let probe = |base: &str, narrow: &str| {
        format!(
            r#"
[variables]
base = "{base}/"
[[steps]]
name = "login"
kind = "http"
method = "POST"
url = "{{{{base}}}}api/login"
json = {{ username = "canary", password = "canary-pass" }}
extract = {{ token = {{ json = "$.token" }}, origin = {{ json = "$.token", regex = '{narrow}' }} }}
[[steps]]
name = "websocket"
kind = "ws_connect"
url = "{{{{base}}}}ws?token={{{{token}}}}"
"#
        )
    };
    let base = sim.base_url();
    let run = support::run_once(&support::probe_from(&probe(&base, "^(.*)$"), &[])).await;
    assert!(run.success, "{run:#?}");

    let run = support::run_once(&support::probe_from(&probe(&base, "^never$"), &[])).await;
    assert_eq!(run.failed_step.as_deref(), Some("login"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::BodyMismatch));
    assert_eq!(
        run.error.as_deref(),
        Some("the reply has no JSON value at `/token` matching `^never$` for `origin`")
    );

    let run = support::run_once(&support::probe_from(&probe("ftp://127.0.0.1:1", "x"), &[])).await;
    assert_eq!(run.failed_step.as_deref(), Some("login"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::Protocol));
    assert_eq!(
        run.error.as_deref(),
        Some("`ftp://127.0.0.1:1/api/login` is not an http or https URL with a host")
    );
    sim.shutdown().await;
}
