//! `[[pager]]` tables as loaded: bad ones reported with file, line and key; variables nested
//! in a default expanded in the pager's URL.

use joincanary::alert::test_page;
use joincanary::clock::Clock;

use super::{PROBE, plan};
use crate::support::TempConfig;
use crate::support::receiver::Receiver;

#[test]
fn bad_pager_configs_are_reported_with_keys() {
    let cfg = TempConfig::new(
        r#"
[[pager]]
name = "a"
type = "pagerduty"

[[pager]]
name = "a"
type = "carrier-pigeon"

[[pager]]
name = "mail"
type = "email"
tls = "sometimes"

[[pager]]
name = "hook"
type = "webhook"
url = "${HOOK_URL}"
routing_key = "x"
"#,
        &[],
    );
    let errors = cfg
        .load(&[("HOOK_URL", "not a url with secret-in-it")])
        .unwrap_err()
        .0;
    let got: Vec<(String, String)> = errors
        .iter()
        .map(|e| (e.key.clone().unwrap_or_default(), e.message.clone()))
        .collect();
    let want = |key: &str, msg: &str| {
        assert!(
            got.iter().any(|(k, m)| k == key && m.contains(msg)),
            "no `{key}: {msg}` in {got:#?}"
        );
    };
    want(
        "pager[0].routing_key",
        "is required for a `pagerduty` pager",
    );
    want("pager[1].name", "another pager is already named `a`");
    want(
        "pager[1].type",
        "unknown pager type `carrier-pigeon`; expected one of: pagerduty, opsgenie, alertmanager, slack, webhook, email",
    );
    want("pager[2].host", "is required for an `email` pager");
    want("pager[2].from", "is required for an `email` pager");
    want("pager[2].to", "is required for an `email` pager");
    want("pager[2].tls", "unknown tls mode `sometimes`");
    want("pager[3].url", "is not an http:// or https:// URL");
    want(
        "pager[3].routing_key",
        "does not apply to a `webhook` pager",
    );
    assert!(errors.iter().all(|e| e.line > 0), "{errors:#?}");
    assert!(!format!("{errors:?}").contains("secret-in-it"));
}

/// Issue 16: a `${REGION}` inside a default was sent literally (a Slack URL path became
/// `/services/T000/B000/${REGION}`); it is expanded, and an unset one is refused at load.
#[tokio::test]
async fn a_variable_nested_in_a_default_is_expanded_in_the_pager_url() {
    let slack = Receiver::statuses(&[], 200).await;
    let pager = r#"
[[pager]]
name = "slack"
type = "slack"
url = "${SLACK_URL:-${HOOKS}/services/T000/B000/${REGION}}"
"#;
    let (_cfg, plan) = plan(pager, &[("HOOKS", &slack.url()), ("REGION", "eu-west-1")]);
    let results = test_page(&plan.pagers, "test", &[], None, Clock::system()).await;
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    let paths: Vec<String> = slack.requests().into_iter().map(|s| s.path).collect();
    assert!(!paths.is_empty());
    assert!(
        paths.iter().all(|p| p == "/services/T000/B000/eu-west-1"),
        "{paths:?}"
    );
    // The default is used and names a variable that is not set: a load error naming it.
    let cfg = TempConfig::new(pager, &[("p.toml", PROBE)]);
    let err = cfg
        .load(&[("HOOKS", &slack.url())])
        .expect_err("REGION is not set")
        .to_string();
    assert!(
        err.contains("joincanary.toml:9:7: pager[0].url: environment variable `REGION`"),
        "{err}"
    );
}
