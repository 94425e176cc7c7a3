//! Pagers' keys and passwords echoed back by providers never reach errors, `Debug` output or
//! logs; the log capture those checks stand on sees every line.

use std::time::Duration;

use joincanary::alert::{DeliveryError, EventKind, test_page};
use joincanary::clock::Clock;

use super::{GENIE_KEY, PD_KEY, SMTP_PASSWORD, count, dispatcher, fast, notification, plan};
use crate::support;
use crate::support::receiver::Receiver;

#[tokio::test]
async fn secrets_never_reach_errors_debug_or_logs() {
    support::init();
    let logs = support::logs::Capture::start();

    // Receivers that echo the secrets back in an error body, as some providers do.
    let pd = Receiver::echoing(400, format!("bad routing key {PD_KEY}")).await;
    let og = Receiver::echoing(403, format!("key {GENIE_KEY} is revoked")).await;
    let slack = Receiver::echoing(404, "no_service /services/T0/B0/hookpath".into()).await;
    let (cfg, plan) = plan(
        r#"
[[pager]]
name = "pd"
type = "pagerduty"
url = "${PD}"
routing_key = "${PD_KEY}"

[[pager]]
name = "og"
type = "opsgenie"
url = "${OG}"
api_key = "${GENIE_KEY}"

[[pager]]
name = "slack"
type = "slack"
url = "${SLACK}/services/T0/B0/hookpath"

[[pager]]
name = "mail"
type = "email"
host = "127.0.0.1"
port = 1
tls = "none"
username = "canary"
password = "${SMTP_PASSWORD}"
from = "canary@example.com"
to = ["oncall@example.com"]
"#,
        &[
            ("PD", &pd.url()),
            ("PD_KEY", PD_KEY),
            ("OG", &og.url()),
            ("GENIE_KEY", GENIE_KEY),
            ("SLACK", &slack.url()),
            ("SMTP_PASSWORD", SMTP_PASSWORD),
        ],
    );
    let secrets = [PD_KEY, GENIE_KEY, SMTP_PASSWORD, "hookpath"];
    let debug = format!("{:?}", plan.pagers);
    for s in secrets {
        assert!(!debug.contains(s), "Debug shows {s}: {debug}");
    }
    let results = test_page(&plan.pagers, "test", &[], None, Clock::system()).await;
    assert_eq!(results.len(), 4);
    let mut errors = String::new();
    for (name, r) in &results {
        let e = r.as_ref().expect_err("every pager fails here");
        errors.push_str(&format!("{name}: {e} / {e:?}\n"));
    }
    assert!(matches!(results[0].1, Err(DeliveryError::Permanent(_))));
    // A refused connection is worth retrying.
    assert!(matches!(results[3].1, Err(DeliveryError::Retryable(_))));
    // Checked on its own: the dispatcher's lines below must not pass on the test page's.
    let page_logs = logs.take();
    for sink in ["pd", "og", "slack", "mail"] {
        assert!(
            page_logs.contains(&format!("test page failed sink={sink} ")),
            "{page_logs}"
        );
    }
    assert!(
        page_logs.contains("[redacted]"),
        "the echoed key is scrubbed: {page_logs}"
    );

    // And through the dispatcher, whose failures are logged.
    let (d, m, _tx) = dispatcher(fast(plan.pagers), &cfg.dir.path().join("state"));
    d.send(
        notification(EventKind::Trigger),
        Some(&["pd".into(), "og".into(), "slack".into()]),
    );
    // Waited for, not assumed within a fixed time: on a loaded machine the first attempts
    // can take seconds, and the logs are only read once all three have failed.
    support::until(
        "a failed trigger on pd, og and slack",
        Duration::from_secs(20),
        Duration::from_millis(10),
        || {
            ["pd", "og", "slack"]
                .iter()
                .all(|s| count(&m, s, "trigger", "failed") >= 1)
        },
    )
    .await;
    // Written by the pager's task right after it counted the failure, on this thread (the
    // test runtime has one), so the line is there once the count is.
    d.shutdown().await;
    let logs = logs.take();
    for sink in ["pd", "og", "slack"] {
        assert!(
            logs.lines()
                .any(|l| l.contains("the pager refused") && l.contains(&format!("sink={sink} "))),
            "{logs}"
        );
    }
    assert!(
        logs.contains("[redacted]"),
        "the echoed key is scrubbed: {logs}"
    );
    for s in secrets {
        assert!(!errors.contains(s), "an error shows {s}: {errors}");
        assert!(!page_logs.contains(s), "a log line shows {s}: {page_logs}");
        assert!(!logs.contains(s), "a log line shows {s}: {logs}");
    }
}

/// The capture sees a line even when another thread, one without a subscriber, reached that
/// log statement first while the capture was on (tracing caches "nobody wants this line" per
/// statement; `support::logs` explains why a lone capture used to get that answer).
#[test]
fn log_capture_sees_lines_another_thread_reached_first() {
    fn line() {
        tracing::warn!("reached first elsewhere");
    }
    support::init();
    let logs = support::logs::Capture::start();
    std::thread::spawn(line).join().unwrap();
    line();
    assert!(logs.take().contains("reached first elsewhere"));
}
