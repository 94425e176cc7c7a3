//! The media path over Janus's HTTP transport (janus.js's default): the shipped
//! probes/examples/janus-echotest-http-media.toml against the real Janus, with its HTTP
//! transport on a free port in its own network namespace. Janus answers the offer in its long
//! poll; with `full_trickle` its candidates come there too, as events of their own, which the
//! `offer` step's tap takes out of the `answer` step's replies and the `media` step's own reads.

use joincanary::report::{FailureReason, Phase, ProbeRun};

use crate::support::servers::{self, Janus};
use crate::support::{self, example, step};

async fn start(full_trickle: bool) -> Janus {
    support::init();
    servers::start_janus_media_http(full_trickle)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The shipped probe against `janus`, with `env` besides its URL.
async fn run(janus: &Janus, env: &[(&str, &str)]) -> ProbeRun {
    let url = janus.http_url();
    let mut all = vec![("JANUS_HTTP_URL", url.as_str())];
    all.extend_from_slice(env);
    let plan = example("janus-echotest-http-media.toml", &all);
    janus
        .inside(move || async move { support::run_once(&plan).await })
        .await
}

/// Connected, echoed, its session destroyed; `trickled`: Janus's candidates all came in the
/// long poll (none otherwise).
async fn assert_echoed(janus: &Janus, run: &ProbeRun, trickled: bool) {
    assert!(run.success, "{run:#?}");
    let media = step(run, "media");
    for phase in [Phase::Ice, Phase::Dtls, Phase::FirstMedia] {
        assert!(media.phases.contains_key(&phase), "{phase:?}: {media:#?}");
    }
    assert!(media.gauges["echo_loss_ratio"] < 1.0, "{media:#?}");
    assert!(media.gauges["echo_rtt_seconds"] > 0.0, "{media:#?}");
    let candidates = media.gauges["trickled_candidates"];
    assert_eq!(candidates > 0.0, trickled, "{media:#?}");
    assert!(step(run, "destroy").success, "{run:#?}");
    janus.assert_no_sessions().await;
}

#[tokio::test]
async fn janus_echotest_over_http_connects_echoes_and_destroys_its_session() {
    let janus = start(false).await;
    let run = run(&janus, &[]).await;
    assert_echoed(&janus, &run, false).await;
}

/// Janus with `full_trickle = true`: its answer has no candidate; each comes in a
/// `{"janus":"trickle"}` event of the long poll (in the reply that carries the answer, or one
/// before it). Before the long poll was read as events for the tap: `media` failed `ice`, "the
/// remote SDP has no ICE candidate".
#[tokio::test]
async fn janus_echotest_over_http_connects_through_candidates_trickled_in_the_long_poll() {
    let janus = start(true).await;
    let run = run(&janus, &[]).await;
    assert_echoed(&janus, &run, true).await;
}

/// Janus refusing a request answers 200 with `{"janus":"error","error":{"reason":…}}`: the step
/// fails `server_error` with Janus's reason first, as over the websocket, and the cleanup still
/// destroys the session.
#[tokio::test]
async fn janus_over_http_refusing_the_plugin_fails_with_its_reason_first() {
    let janus = start(false).await;
    let run = run(&janus, &[("JANUS_PLUGIN", "janus.plugin.nosuch")]).await;
    assert_eq!(run.failed_step.as_deref(), Some("handle"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::ServerError), "{run:#?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(error.starts_with("No such plugin"), "{error}");
    assert!(step(&run, "destroy").success, "{run:#?}");
    janus.assert_no_sessions().await;
}
