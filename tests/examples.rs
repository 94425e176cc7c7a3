//! The example probes in probes/examples/ against the real servers they are written for
//! (tests/support/servers/): each passes `check`, passes against its server, and fails the
//! way on-call needs when the server's backend breaks.

use std::time::Duration;

use joincanary::flow::ProbePlan;
use joincanary::report::{FailureReason, Phase};

use crate::support::on_time::on_time;
use crate::support::servers::{self, PauseMode, SocketIoOptions};
use crate::support::{
    self, confirmed_page as page, cut_step, example, example_path, passed, set_variable, step,
};

#[test]
fn every_example_passes_check() {
    let mut seen = 0;
    for entry in std::fs::read_dir(support::root().join("probes/examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let plan = example(path.file_name().unwrap().to_str().unwrap(), &[]);
            // What users copy keeps the promise: `check` warns about none of them.
            let late = joincanary::config::promise::TimeToPage::of(&plan, chrono::Utc::now())
                .and_then(|t| t.warning(&plan));
            assert_eq!(late, None, "{}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 2, "examples found: {seen}");
    // The shipped config does not load them: probes/ is read one level deep.
    let shipped = joincanary::config::load(
        &support::root().join("config/joincanary.toml"),
        &support::env(&[]),
    )
    .unwrap();
    assert!(
        shipped
            .probes
            .iter()
            .all(|p| !p.source.starts_with(example_path("")))
    );
}

/// Redis and two Socket.IO processes, with the example probes pointed at them.
struct SocketIoStack {
    redis: servers::Redis,
    _sio: servers::SocketIo,
    env: [(&'static str, String); 2],
}

impl SocketIoStack {
    async fn start(pubsub: Option<&servers::Redis>) -> SocketIoStack {
        support::init();
        let redis = servers::running_redis().await;
        let opts = SocketIoOptions {
            pubsub_redis_url: pubsub.map(servers::Redis::url),
            ..SocketIoOptions::default()
        };
        let sio = servers::start_socketio_with(&redis, &opts)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let env = [
            ("SOCKETIO_A_URL", sio.a.base_url()),
            ("SOCKETIO_B_URL", sio.b.base_url()),
        ];
        SocketIoStack {
            redis,
            _sio: sio,
            env,
        }
    }

    fn plan(&self, name: &str) -> ProbePlan {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        example(name, &env)
    }
}

#[tokio::test]
async fn socketio_two_participants_pass_across_two_processes_through_redis() {
    let stack = SocketIoStack::start(None).await;
    let plan = stack.plan("socketio-redis.toml");
    let run = crate::support::run_once(&plan).await;
    assert!(run.success, "{run:#?}");
    let signalling = step(&run, "signalling");
    assert!(
        signalling.phases.contains_key(&Phase::FanOut),
        "{signalling:#?}"
    );
    assert!(
        step(&run, "b-joined")
            .phases
            .contains_key(&Phase::RoundTrip)
    );
    assert!(step(&run, "close-a").success && step(&run, "close-b").success);

    let one = stack.plan("socketio-one-participant.toml");
    let run = crate::support::run_once(&one).await;
    assert!(run.success, "{run:#?}");

    // A refused namespace connect (CONNECT_ERROR) fails the connect step with the reason.
    let refused = support::probe_from(
        &format!(
            "[[steps]]\nname = \"websocket\"\nkind = \"ws_connect\"\nprotocol = \"socketio\"\nurl = \"{}\"\nauth = {{ token = \"forged\" }}\n",
            stack.env[0].1
        ),
        &[],
    );
    let run = crate::support::run_once(&refused).await;
    assert_eq!(run.reason, Some(FailureReason::ServerError), "{run:#?}");
    assert!(run.error.unwrap_or_default().contains("unauthorized"));
}

#[tokio::test]
async fn redis_out_of_memory_fails_the_join_at_once_with_the_oom_text_in_the_page() {
    let stack = SocketIoStack::start(None).await;
    let redis = &stack.redis;
    let oom = redis.fill_to_oom().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(oom.starts_with("OOM"), "{oom}");
    let plan = stack.plan("socketio-redis.toml");
    let run = crate::support::run_once(&plan).await;
    passed(
        &run,
        &["login-a", "login-b", "websocket-a", "websocket-b", "b-join"],
    );
    assert_eq!(run.failed_step.as_deref(), Some("b-joined"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::ServerError));
    let error = run.error.clone().unwrap_or_default();
    assert!(error.contains("OOM command not allowed"), "{error}");
    // The server's answer, not the step's 3 s timeout, ended it.
    let took = step(&run, "b-joined").duration_ms;
    println!("Redis OOM: b-joined failed with server_error after {took:?}");
    support::ended_before_its_timeout(&plan, &run, "b-joined");
    // Cleanup still closed both sockets.
    assert!(step(&run, "close-a").success && step(&run, "close-b").success);

    // Issue 17: the server's words come first, and reach the page's one line: Opsgenie's
    // 130-character message (and Slack's notification) named only `server_error` before.
    assert!(error.starts_with("OOM command not allowed"), "{error}");
    let page = page(&plan, &run);
    assert!(page.contains("OOM command not allowed"), "{page}");
    assert!(page.contains("server_error"), "{page}");
    let page: serde_json::Value = serde_json::from_str(&page).unwrap_or_default();
    let summary = page["summary"].as_str().unwrap_or_default();
    let message =
        joincanary::alert::limits::fit_plain(summary, joincanary::alert::limits::OG_MESSAGE);
    assert!(message.contains("server_error after "), "{message}");
    assert!(message.contains(": OOM command not allowed"), "{message}");
    redis.restore().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(crate::support::run_once(&plan).await.success);
}

#[tokio::test]
async fn redis_paused_fails_the_join_with_no_match_while_login_and_handshake_pass() {
    let stack = SocketIoStack::start(None).await;
    let redis = &stack.redis;
    let mut plan = stack.plan("socketio-redis.toml");
    cut_step(&mut plan.steps, "b-joined", Duration::from_millis(800));
    // Writes wait behind the pause (the presence write of `join`); reads and connects do not.
    // Long enough for a run again when the prober was late (restored at once after).
    redis
        .pause(30_000, PauseMode::Write)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let run = on_time(|| crate::support::run_once(&plan)).await;
    redis.restore().await.unwrap_or_else(|e| panic!("{e}"));
    passed(
        &run,
        &["login-a", "login-b", "websocket-a", "websocket-b", "b-join"],
    );
    assert_eq!(run.failed_step.as_deref(), Some("b-joined"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::NoMatch), "{run:#?}");
}

#[tokio::test]
async fn a_pubsub_stall_fails_the_two_participant_probe_and_not_the_one_participant_probe() {
    let pubsub = servers::running_redis().await;
    let stack = SocketIoStack::start(Some(&pubsub)).await;
    let one = stack.plan("socketio-one-participant.toml");
    let mut two = stack.plan("socketio-redis.toml");
    cut_step(&mut two.steps, "signalling", Duration::from_millis(1500));
    assert!(crate::support::run_once(&two).await.success);

    // The adapter's Redis stops answering; presence (the main Redis) is fine.
    pubsub.freeze().unwrap_or_else(|e| panic!("{e}"));
    let one_run = crate::support::run_once(&one).await;
    let two_run = on_time(|| crate::support::run_once(&two)).await;
    pubsub.thaw().unwrap_or_else(|e| panic!("{e}"));

    assert!(
        one_run.success,
        "one participant sees nothing: {one_run:#?}"
    );
    assert!(!two_run.success);
    assert_eq!(
        two_run.failed_step.as_deref(),
        Some("signalling"),
        "{two_run:#?}"
    );
    assert_eq!(two_run.reason, Some(FailureReason::NoMatch), "{two_run:#?}");
    passed(&two_run, &["b-joined", "a-joined", "a-signals"]);
}

#[tokio::test]
async fn actioncable_subscribes_performs_and_gets_the_broadcast_through_redis() {
    support::init();
    let redis = servers::running_redis().await;
    let cable = servers::start_actioncable(&redis)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = cable.base_url();
    let plan = example("actioncable.toml", &[("CABLE_URL", &url)]);
    let run = crate::support::run_once(&plan).await;
    assert!(run.success, "{run:#?}");
    assert!(
        step(&run, "broadcast")
            .phases
            .contains_key(&Phase::RoundTrip)
    );

    // A room the channel refuses: the reject fails the step at once.
    let mut refused = plan.clone();
    set_variable(&mut refused, "room", "forbidden-{{uuid}}");
    let run = crate::support::run_once(&refused).await;
    assert_eq!(run.failed_step.as_deref(), Some("subscribed"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::ServerError));
    assert!(
        run.error
            .unwrap_or_default()
            .contains("reject_subscription")
    );
}

#[tokio::test]
async fn janus_echotest_passes_and_its_session_is_destroyed_even_when_the_flow_fails() {
    support::init();
    let janus = servers::start_janus()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = janus.ws_url();
    let plan = example("janus-echotest.toml", &[("JANUS_URL", &url)]);
    let run = crate::support::run_once(&plan).await;
    assert!(run.success, "{run:#?}");
    assert!(step(&run, "destroyed").success);
    janus.assert_no_sessions().await;

    // The gateway refuses the plugin: `handle` fails at once with Janus's error, and the
    // cleanup still destroys the session.
    let bad = example(
        "janus-echotest.toml",
        &[("JANUS_URL", &url), ("JANUS_PLUGIN", "janus.plugin.nosuch")],
    );
    let run = crate::support::run_once(&bad).await;
    assert_eq!(run.failed_step.as_deref(), Some("handle"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::ServerError));
    assert!(
        run.error.clone().unwrap_or_default().contains("error"),
        "{run:#?}"
    );
    assert!(
        step(&run, "destroy").success && step(&run, "destroyed").success,
        "{run:#?}"
    );
    janus.assert_no_sessions().await;
}

#[tokio::test]
async fn janus_echotest_media_connects_echoes_and_destroys_its_session() {
    let janus = support::start_janus_media().await;
    echotest_media_against(&janus, false).await;
}

/// The same probe against a Janus with `full_trickle = true`: its answer has no candidate,
/// its candidates come in trickle events (before the answer) that the `offer` step's tap takes.
#[tokio::test]
async fn janus_echotest_media_connects_through_janus_full_trickle_candidates() {
    let janus = support::start_janus_media_full_trickle().await;
    echotest_media_against(&janus, true).await;
}

/// The shipped echotest media probe against `janus`: connected, echoed, its session gone;
/// `trickled`: Janus's candidates all came trickled (none otherwise).
async fn echotest_media_against(janus: &servers::Janus, trickled: bool) {
    let plan = example(
        "janus-echotest-media.toml",
        &[("JANUS_URL", &janus.ws_url())],
    );
    let run = janus
        .inside(move || async move { crate::support::run_once(&plan).await })
        .await;
    assert!(run.success, "{run:#?}");
    let media = step(&run, "media");
    for phase in [Phase::Ice, Phase::Dtls, Phase::FirstMedia] {
        assert!(media.phases.contains_key(&phase), "{phase:?}: {media:#?}");
    }
    let loss = media.gauges["echo_loss_ratio"];
    assert!((0.0..1.0).contains(&loss), "{media:#?}");
    assert!(media.gauges["echo_rtt_seconds"] > 0.0, "{media:#?}");
    let candidates = media.gauges["trickled_candidates"];
    assert_eq!(candidates > 0.0, trickled, "{media:#?}");
    assert!(step(&run, "destroyed").success);
    janus.assert_no_sessions().await;
}

/// The shipped videoroom probe against a real Janus: `a` publishes a data channel, `b`
/// subscribes to a's feed and receives a's messages through Janus; both sessions destroyed.
#[tokio::test]
async fn janus_videoroom_media_b_receives_a_through_the_sfu_and_destroys_both_sessions() {
    let janus = support::start_janus_media().await;
    videoroom_media_against(&janus, false).await;
}

/// The same probe against a Janus with `full_trickle = true`: a's candidates (for its
/// publisher connection) and b's (for its subscription) come only in trickle events.
#[tokio::test]
async fn janus_videoroom_media_connects_both_participants_through_full_trickle_candidates() {
    let janus = support::start_janus_media_full_trickle().await;
    videoroom_media_against(&janus, true).await;
}

/// The shipped videoroom media probe against `janus`: b received a's messages, both sessions
/// gone; `trickled`: both peers' candidates came trickled (none otherwise).
async fn videoroom_media_against(janus: &servers::Janus, trickled: bool) {
    let plan = example(
        "janus-videoroom-media.toml",
        &[("JANUS_URL", &janus.ws_url())],
    );
    let run = janus
        .inside(move || async move { crate::support::run_once(&plan).await })
        .await;
    assert!(run.success, "{run:#?}");
    let publish = step(&run, "a-media");
    let media = step(&run, "b-media");
    for phase in [Phase::Ice, Phase::Dtls, Phase::FirstMedia] {
        assert!(
            publish.phases.contains_key(&phase),
            "{phase:?}: {publish:#?}"
        );
        assert!(media.phases.contains_key(&phase), "{phase:?}: {media:#?}");
    }
    assert!(media.gauges["media_received"] >= 1.0, "{media:#?}");
    let loss = media.gauges["media_loss_ratio"];
    assert!((0.0..1.0).contains(&loss), "{media:#?}");
    assert!(media.gauges["media_latency_seconds"] > 0.0, "{media:#?}");
    for peer in [publish, media] {
        let candidates = peer.gauges["trickled_candidates"];
        assert_eq!(candidates > 0.0, trickled, "{peer:#?}");
    }
    assert!(step(&run, "a-destroyed").success && step(&run, "b-destroyed").success);
    janus.assert_no_sessions().await;
}

#[tokio::test]
async fn protoo_requests_get_responses_and_a_signal_reaches_the_other_peer() {
    support::init();
    let protoo = servers::start_protoo()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = protoo.base_url();
    let plan = example("protoo.toml", &[("PROTOO_URL", &url)]);
    let run = crate::support::run_once(&plan).await;
    assert!(run.success, "{run:#?}");
    assert!(step(&run, "signalling").phases.contains_key(&Phase::FanOut));

    // The server refuses the join (ok: false): server_error at once, with its reason.
    let mut refused = plan.clone();
    set_variable(&mut refused, "room", "forbidden");
    let run = crate::support::run_once(&refused).await;
    assert_eq!(run.failed_step.as_deref(), Some("b-joined"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::ServerError));
    assert!(run.error.unwrap_or_default().contains("room forbidden"));
}

#[tokio::test]
async fn xmpp_muc_joins_anonymously_and_with_sasl_plain_and_a_refused_room_fails_at_once() {
    support::init();
    let prosody = servers::start_prosody()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = prosody.ws_url();
    let anonymous = example("xmpp-muc-anonymous.toml", &[("XMPP_WS_URL", &url)]);
    let run = crate::support::run_once(&anonymous).await;
    assert!(run.success, "{run:#?}");
    // Issue 17: Prosody answers `<close/>` and then closes the TCP connection; that is a clean
    // close, not a failed cleanup step (a WARN and a probe_failures_total count every run).
    assert!(
        run.steps.iter().all(|s| s.success),
        "every step passes, the close too: {run:#?}"
    );

    let plain = example(
        "xmpp-muc-sasl-plain.toml",
        &[("XMPP_WS_URL", &url), ("XMPP_PASSWORD", servers::PASSWORD)],
    );
    let run = crate::support::run_once(&plain).await;
    assert!(run.steps.iter().all(|s| s.success), "{run:#?}");

    // A wrong password: SASL <failure/> is a server_error, and no encoding of it leaks.
    let wrong = example(
        "xmpp-muc-sasl-plain.toml",
        &[("XMPP_WS_URL", &url), ("XMPP_PASSWORD", "hunter2-wrong")],
    );
    let run = crate::support::run_once(&wrong).await;
    assert_eq!(
        run.failed_step.as_deref(),
        Some("authenticated"),
        "{run:#?}"
    );
    assert_eq!(run.reason, Some(FailureReason::ServerError));
    let out = serde_json::to_string(&run).unwrap_or_default();
    assert!(!out.contains("hunter2-wrong"), "{out}");

    // A room the server will not create: the error presence fails `in-room` at once.
    let mut refused = anonymous.clone();
    set_variable(&mut refused, "room", "forbidden-{{uuid}}");
    let run = crate::support::run_once(&refused).await;
    assert_eq!(run.failed_step.as_deref(), Some("in-room"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::ServerError));
    let error = run.error.clone().unwrap_or_default();
    // Issue 17: the condition and the server's text open the error; the JIDs around them had
    // filled the quote, and "Room creation is restricted" never reached the page.
    assert!(
        error.starts_with("not-allowed: Room creation is restricted — error stanza: <presence"),
        "{error}"
    );
    support::ended_before_its_timeout(&refused, &run, "in-room");
}

/// The Jitsi Meet example adapted by its environment alone to a Jitsi-style layout
/// (`meet.jitsi`, `conference.meet.jitsi`, `focus.meet.jitsi`; the guest domain too) on Prosody,
/// with a stand-in for jicofo answering the conference request.
#[tokio::test]
async fn jitsi_meet_joins_through_focus_on_a_jitsi_style_prosody_and_focus_down_fails_at_once() {
    support::init();
    let prosody = servers::start_prosody()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = prosody.ws_url();
    for login in ["meet.jitsi", "guest.meet.jitsi"] {
        let env = [
            ("JITSI_DOMAIN", "meet.jitsi"),
            ("JITSI_WS_URL", url.as_str()),
            ("JITSI_LOGIN_DOMAIN", login),
        ];
        let run = crate::support::run_once(&example("jitsi-meet.toml", &env)).await;
        assert!(run.steps.iter().all(|s| s.success), "{login}: {run:#?}");
        assert!(
            step(&run, "focus-ready")
                .phases
                .contains_key(&Phase::RoundTrip)
        );
    }

    // Jicofo not connected: the focus answers service-unavailable, named first, at once.
    let env = [
        ("JITSI_DOMAIN", "meet.jitsi"),
        ("JITSI_WS_URL", url.as_str()),
        ("JITSI_ROOM_PREFIX", "nofocus"),
    ];
    let nofocus = example("jitsi-meet.toml", &env);
    let run = crate::support::run_once(&nofocus).await;
    assert_eq!(run.failed_step.as_deref(), Some("focus-ready"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::ServerError));
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("service-unavailable: jicofo is not connected — "),
        "{error}"
    );
    support::ended_before_its_timeout(&nofocus, &run, "focus-ready");
}

#[tokio::test]
async fn nextcloud_talk_joins_through_the_real_signalling_server_and_a_missing_room_fails_at_once()
{
    let Some(talk) = support::nextcloud::start_or_skip().await else {
        return;
    };
    let env = talk.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let plan = example("nextcloud-talk.toml", &env);
    let run = crate::support::run_once(&plan).await;
    assert!(run.steps.iter().all(|s| s.success), "{run:#?}");
    assert!(step(&run, "signalling").phases.contains_key(&Phase::FanOut));

    // A conversation that does not exist: Nextcloud's 404 fails the HTTP join at once.
    let mut missing = plan.clone();
    set_variable(&mut missing, "room", "forbidden-{{uuid}}");
    let run = crate::support::run_once(&missing).await;
    assert_eq!(run.failed_step.as_deref(), Some("settings-a"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::HttpStatus));
}
