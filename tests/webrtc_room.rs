//! The second participant against a real Janus videoroom, through the shipped probe
//! (`probes/examples/janus-videoroom-media.toml`; its passing run is in tests/examples.rs): `a`
//! publishing one message and then nothing fails `b` at `first_media` with `media`, naming `a`
//! and what it did; Janus frozen after b's subscription fails `b` at `ice`; a's background
//! publishing task panicking fails `b` at once with `local`, naming it.

use joincanary::report::{FailureReason, Phase};

use crate::support::{self, servers, step};

/// The shipped videoroom probe's text with `edit` applied (the edit must change it).
fn videoroom_probe(edit: impl Fn(&str) -> String) -> String {
    let text = std::fs::read_to_string(support::example_path("janus-videoroom-media.toml"))
        .expect("the example exists");
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit changed nothing");
    edited
}

#[tokio::test]
async fn a_publisher_that_stops_sending_fails_b_at_first_media_naming_a() {
    let janus = support::start_janus_media().await;
    // `a` connects and publishes, but sends its one message before `b` is subscribed.
    let text = videoroom_probe(|t| {
        t.replace(
            "echo_interval = \"20ms\"                      # one message every 20 ms until the run ends",
            "echo = 1",
        )
    });
    let run = b_media_fails_soon(&janus, text, FailureReason::Media).await;
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains("none of connection `a`'s messages arrived through the SFU")
            && error.contains("stopped publishing: all 1 of its messages were sent"),
        "{error}"
    );
    let media = step(&run, "b-media");
    for phase in [Phase::Ice, Phase::Dtls] {
        assert!(media.phases.contains_key(&phase), "{phase:?}: {media:#?}");
    }
}

/// Runs the probe `text` against `janus`: `a-media` passes, `b-media` fails with `reason`
/// soon (once `a` had stopped, not at the step's timeout), both sessions are destroyed.
async fn b_media_fails_soon(
    janus: &servers::Janus,
    text: String,
    reason: FailureReason,
) -> joincanary::report::ProbeRun {
    let url = janus.ws_url();
    let run = janus
        .inside(move || async move {
            let plan = support::probe_from(&text, &[("JANUS_URL", &url)]);
            support::run_once(&plan).await
        })
        .await;
    assert!(step(&run, "a-media").success, "{run:#?}");
    assert_eq!(run.failed_step.as_deref(), Some("b-media"), "{run:#?}");
    assert_eq!(run.reason, Some(reason), "{run:#?}");
    let media = step(&run, "b-media");
    assert!(
        media.duration_ms < std::time::Duration::from_secs(4),
        "{media:#?}"
    );
    assert!(step(&run, "a-destroyed").success && step(&run, "b-destroyed").success);
    janus.assert_no_sessions().await;
    run
}

#[tokio::test]
async fn janus_frozen_after_b_subscribed_fails_b_at_ice() {
    use axum::{Router, routing::post};
    use tokio::sync::{mpsc, oneshot};
    let janus = support::start_janus_media().await;
    // A step between b's subscription and b's connect asks the test to freeze Janus (SIGSTOP)
    // and waits until it is: the probe stops Janus mid-flow at a known point.
    let (tell, mut told) = mpsc::channel::<oneshot::Sender<()>>(1);
    let url = janus.ws_url();
    let run = janus.inside(move || async move {
        let app = Router::new().route(
            "/freeze",
            post(move || async move {
                let (go, wait) = oneshot::channel();
                tell.send(go).await.expect("the test listens");
                wait.await.expect("the test froze janus");
                "frozen"
            }),
        );
        let hook = support::serve_router(app).await;
        let text = videoroom_probe(|t| {
            t.replace(
                "[[steps]]\nname = \"b-media\"",
                &format!(
                    "[[steps]]\nname = \"freeze\"\nkind = \"http\"\nmethod = \"POST\"\n\
                     url = \"http://{hook}/freeze\"\ntimeout = \"3s\"\n\n\
                     [[steps]]\nname = \"b-media\""
                ),
            )
        });
        let plan = support::probe_from(&text, &[("JANUS_URL", &url)]);
        support::run_once(&plan).await
    });
    let freeze = async {
        let go = told.recv().await.expect("the probe asks");
        janus.process().freeze().unwrap();
        go.send(()).unwrap();
    };
    let (run, ()) = tokio::join!(run, freeze);
    janus.process().thaw().unwrap();
    assert!(step(&run, "a-media").success, "{run:#?}");
    assert_eq!(run.failed_step.as_deref(), Some("b-media"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::Ice), "{run:#?}");
    let media = step(&run, "b-media");
    assert!(media.phases.contains_key(&Phase::Ice), "{media:#?}");
    assert!(!media.phases.contains_key(&Phase::Dtls), "{media:#?}");
}

/// Before, a panic in a's background publishing task was silent: `b` waited out its timeout
/// and the run blamed Janus (`media`). Now `b` fails at once with `local` (the prober's own
/// failure, alerted as such, never paged as the SFU's), naming the panic; both sessions are
/// still destroyed.
#[tokio::test]
async fn a_publisher_task_that_panics_fails_b_at_once_with_local() {
    use joincanary::supervise::{Task, fault};
    let janus = support::start_janus_media().await;
    let text = videoroom_probe(|t| {
        t.replace(
            "name = \"janus-videoroom-media\"",
            "name = \"videoroom-publisher-panics\"",
        )
    });
    fault::arm(Task::Run, "videoroom-publisher-panics/a", 1);
    let run = b_media_fails_soon(&janus, text, FailureReason::Local).await;
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains(
            "connection `a` stopped publishing: its task panicked: injected fault in the run \
             task for videoroom-publisher-panics/a"
        ),
        "{error}"
    );
}
