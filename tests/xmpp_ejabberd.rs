//! The XMPP examples against ejabberd, the second XMPP server beside Prosody (tests/examples.rs):
//! the same probe files, unchanged but for their environment, join a MUC anonymously and with
//! SASL PLAIN, and fail the way on-call needs (the server's words first, at once) when ejabberd
//! refuses the login or the room.

use joincanary::report::FailureReason;

use crate::support::servers::{self, EJABBERD_NO_ROOMS};
use crate::support::{self, example};

#[tokio::test]
async fn the_xmpp_examples_join_a_muc_on_ejabberd_and_its_refusals_fail_at_once_in_its_words() {
    support::init();
    let ejabberd = servers::start_ejabberd()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = ejabberd.ws_url();

    let anonymous = example("xmpp-muc-anonymous.toml", &[("XMPP_WS_URL", &url)]);
    let run = support::run_once(&anonymous).await;
    // Every step, the close too: ejabberd answers `<close/>` and then ends the websocket itself.
    assert!(run.steps.iter().all(|s| s.success), "{run:#?}");

    let plain = example(
        "xmpp-muc-sasl-plain.toml",
        &[("XMPP_WS_URL", &url), ("XMPP_PASSWORD", servers::PASSWORD)],
    );
    let run = support::run_once(&plain).await;
    assert!(run.steps.iter().all(|s| s.success), "{run:#?}");

    // A wrong password: ejabberd's SASL <failure/>, its condition and text first, nothing of the
    // password in any form.
    let wrong = example(
        "xmpp-muc-sasl-plain.toml",
        &[("XMPP_WS_URL", &url), ("XMPP_PASSWORD", "hunter2-wrong")],
    );
    let run = support::run_once(&wrong).await;
    assert_eq!(
        run.failed_step.as_deref(),
        Some("authenticated"),
        "{run:#?}"
    );
    assert_eq!(run.reason, Some(FailureReason::ServerError));
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("not-authorized: Invalid username or password — "),
        "{error}"
    );
    let out = serde_json::to_string(&run).unwrap_or_default();
    assert!(!out.contains("hunter2-wrong"), "{out}");
    support::ended_before_its_timeout(&wrong, &run, "authenticated");

    // A MUC service that creates no room: the error presence fails `in-room` at once, with
    // ejabberd's condition and text opening the error.
    let refused = example(
        "xmpp-muc-anonymous.toml",
        &[
            ("XMPP_WS_URL", &url),
            ("XMPP_MUC_DOMAIN", EJABBERD_NO_ROOMS),
        ],
    );
    let run = support::run_once(&refused).await;
    assert_eq!(run.failed_step.as_deref(), Some("in-room"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::ServerError));
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.starts_with(
            "forbidden: Room creation is denied by service policy — error stanza: <presence"
        ),
        "{error}"
    );
    support::ended_before_its_timeout(&refused, &run, "in-room");
}
