//! Pagers against real loopback receivers: payload shapes, retries, isolation, the outbox,
//! secrets, and email through a real SMTP server. This file holds what the tests below share
//! (a notification, a plan of `[[pager]]` tables, a dispatcher on tokio's clock); one file per
//! area under alert_providers/: delivery.rs (every HTTP provider), alertmanager.rs, email.rs,
//! secrets.rs, config.rs.

mod alertmanager;
mod config;
mod delivery;
mod email;
mod secrets;

use std::path::Path;
use std::time::Duration;

use joincanary::alert::{Dispatcher, EventKind, Link, Notification, PagerPlan, Severity};
use joincanary::clock::Clock;
use joincanary::config::Plan;
use joincanary::report::FailureReason;
use serde_json::json;
use tokio::sync::watch;

use crate::support::TempConfig;

const PD_KEY: &str = "pd-routing-key-0123456789";
const GENIE_KEY: &str = "genie-api-key-abcdef";
const SMTP_PASSWORD: &str = "smtp-pass-word-42";

fn metrics() -> joincanary::metrics::Metrics {
    joincanary::metrics::Metrics::new("test").unwrap()
}

fn count(m: &joincanary::metrics::Metrics, sink: &str, event: &str, result: &str) -> u64 {
    m.notifications
        .with_label_values(&[sink, event, result, "test"])
        .get()
}

fn notification(kind: EventKind) -> Notification {
    let now = chrono::Utc::now();
    Notification {
        kind,
        severity: Severity::Critical,
        dedup_key: "joincanary/sim-join/test/critical".into(),
        probe: "sim-join".into(),
        region: "test".into(),
        summary: "sim-join failing in test: step \"signalling\" no_match after 5.0 s".into(),
        failed_step: Some("signalling".into()),
        reason: Some(FailureReason::NoMatch),
        details: json!({"steps": [{"name": "login", "ms": 42.0}]}),
        started_at: now - chrono::Duration::minutes(3),
        at: now,
        reminder: false,
        test: false,
        links: vec![Link {
            text: "status".into(),
            href: "http://127.0.0.1:9464/api/v1/status".into(),
        }],
    }
}

/// A probe file for plans that are about pagers (a config with zero probes is refused).
const PROBE: &str =
    "timeout = \"5s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";

/// A plan whose only content is the given `[[pager]]` tables (and one idle probe).
fn plan(pagers: &str, env: &[(&str, &str)]) -> (TempConfig, Plan) {
    let cfg = TempConfig::new(pagers, &[("p.toml", PROBE)]);
    let plan = cfg
        .load(env)
        .unwrap_or_else(|e| panic!("config loads: {e}"));
    (cfg, plan)
}

/// A dispatcher for `pagers` keeping its state in `state`, on a clock that follows tokio's (the
/// paused one where a test pauses it): it, its metrics, and its shutdown signal (held: dropping
/// the sender would close the watch).
fn dispatcher(
    pagers: Vec<PagerPlan>,
    state: &Path,
) -> (
    Dispatcher,
    joincanary::metrics::Metrics,
    watch::Sender<bool>,
) {
    let m = metrics();
    let (tx, rx) = watch::channel(false);
    let d = Dispatcher::start(pagers, state, m.clone(), Clock::system(), rx);
    (d, m, tx)
}

fn fast(mut pagers: Vec<PagerPlan>) -> Vec<PagerPlan> {
    for p in &mut pagers {
        p.retry.base = Duration::from_millis(10);
        p.retry.cap = Duration::from_millis(40);
    }
    pagers
}
