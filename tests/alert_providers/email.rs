//! The email pager through a real SMTP server: text and HTML parts arrive, and a rejection
//! after DATA is a failed delivery.

use joincanary::alert::{DeliveryError, EventKind, test_page};
use joincanary::clock::Clock;

use super::{count, dispatcher, notification, plan};
use crate::support;
use crate::support::smtp::Smtp;

#[tokio::test]
async fn email_arrives_with_text_and_html_parts() {
    support::init();
    let smtp = Smtp::start("accept").await;
    let (cfg, plan) = plan(&smtp.pager(), &[]);
    let (d, m, _tx) = dispatcher(plan.pagers, &cfg.dir.path().join("state"));
    let mut n = notification(EventKind::Trigger);
    n.summary = "sim-join failing in test: <script>".into();
    d.send(n, None);
    let msgs = smtp.messages(1).await;
    assert_eq!(msgs.len(), 1);
    let msg = &msgs[0];
    assert!(
        msg.contains("Subject: [joincanary] sim-join in test: join flow failing since "),
        "{msg}"
    );
    assert!(
        msg.contains("[FIRING critical] sim-join failing in test: <script>"),
        "{msg}"
    );
    assert!(msg.contains("multipart/alternative"), "{msg}");
    assert!(msg.contains("Content-Type: text/plain"), "{msg}");
    assert!(msg.contains("Content-Type: text/html"), "{msg}");
    // Undo quoted-printable's soft line breaks before looking into the HTML part.
    let unwrapped = msg.replace("=\r\n", "").replace("=\n", "");
    assert!(
        unwrapped.contains("&lt;script&gt;"),
        "HTML is escaped: {msg}"
    );
    assert!(
        msg.contains("To: oncall@example.com, sre@example.com"),
        "{msg}"
    );
    d.shutdown().await;
    assert_eq!(count(&m, "mail", "trigger", "delivered"), 1);
}

#[tokio::test]
async fn email_rejected_after_data_is_a_failed_delivery() {
    support::init();
    let smtp = Smtp::start("reject").await;
    let (_cfg, plan) = plan(&smtp.pager(), &[]);
    let results = test_page(&plan.pagers, "test", &[], None, Clock::system()).await;
    match &results[0].1 {
        Err(DeliveryError::Permanent(msg)) => assert!(msg.contains("554"), "{msg}"),
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    assert_eq!(std::fs::read_dir(smtp.dir.path()).unwrap().count(), 0);
}
