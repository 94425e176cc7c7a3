//! Pages that always arrive and read well: hostile bodies through every pager against a receiver
//! that enforces the providers' documented limits, and email threading through a real SMTP
//! server.

use joincanary::alert::{Dispatcher, EventKind, Link, Notification, Severity};
use joincanary::report::FailureReason;
use serde_json::json;
use tokio::sync::watch;

use crate::support::limits::{LimitReceiver, chars};
use crate::support::smtp::{self, Smtp};
use crate::support::{self, TempConfig};

const NGINX_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n";

/// One idle probe: a config with none is refused.
const PROBE: &str =
    "timeout = \"5s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";

fn metrics() -> joincanary::metrics::Metrics {
    joincanary::metrics::Metrics::new("test").unwrap()
}

/// What the policy would send for a 6-step probe with a long multi-byte name failing on an
/// nginx 502 page, every text full of `& < >`.
fn hostile(kind: EventKind) -> Notification {
    let at = chrono::Utc::now();
    let started_at = at - chrono::Duration::minutes(7);
    let probe = format!("join-{}", "ü".repeat(20) + &"x".repeat(600));
    let region = "eu-west-1 <&> 東京🙂".to_string();
    let steps: Vec<_> = (0..6)
        .map(|i| {
            json!({
                "name": format!("step-{i}-{}-<&>-{}", "名前".repeat(40), "&".repeat(200)),
                "kind": "http",
                "success": i < 5,
                "duration_ms": 12.5 * f64::from(i + 1),
                "reason": if i < 5 { None } else { Some("http_status") },
                "error": if i < 5 { None } else { Some(NGINX_502.repeat(30)) },
                "phases": {"dns": 1.0, "connect": 2.5, "tls": 8.0, "first_byte": 40.0, "total": 51.5},
            })
        })
        .collect();
    let names: Vec<String> = steps
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    Notification {
        kind,
        severity: Severity::Critical,
        dedup_key: format!("joincanary/{region}/{probe}/critical"),
        probe: probe.clone(),
        region: region.clone(),
        summary: format!(
            "{probe} failing in {region}: step \"{}\" http_status after 51 ms ({} OK)",
            names[5],
            names[..5].join(", ")
        ),
        failed_step: Some(names[5].clone()),
        reason: Some(FailureReason::HttpStatus),
        details: json!({
            "failed_step": names[5],
            "error": format!("HTTP 502 Bad Gateway: {}", NGINX_502.repeat(30)),
            "steps": steps,
            "last_success": {
                "steps": names.iter().map(|n| json!([n, 40.0])).collect::<Vec<_>>(),
                "phases": names.iter().map(|n| json!([n, {"connect": 2.0, "tls": 7.0}])).collect::<Vec<_>>(),
            },
            "confirming_runs": [1, 2, 3],
        }),
        started_at,
        at,
        reminder: false,
        test: false,
        links: vec![
            Link {
                text: "joincanary status <&>".into(),
                href: "http://127.0.0.1:9464/?a=1&b=2".into(),
            },
            Link {
                text: "dashboard".into(),
                href: "http://grafana.example/d/joincanary?var-region=eu&from=now-1h".into(),
            },
        ],
    }
}

#[tokio::test]
async fn hostile_bodies_fit_every_provider_limit() {
    support::init();
    let (recv, base) = LimitReceiver::start().await;
    let cfg = TempConfig::new(
        r#"
[[pager]]
name = "slack"
type = "slack"
url = "${U}/slack/services/T0/B0/x"

[[pager]]
name = "pd"
type = "pagerduty"
url = "${U}/v2/enqueue"
routing_key = "R0UTING"

[[pager]]
name = "og"
type = "opsgenie"
url = "${U}"
api_key = "GENIE"

[[pager]]
name = "am"
type = "alertmanager"
url = "${U}"
resend_interval = "1h"

[[pager]]
name = "hook"
type = "webhook"
url = "${U}/hook"
"#,
        &[("p.toml", PROBE)],
    );
    let plan = cfg.load(&[("U", &base)]).expect("config loads");
    let (_tx, rx) = watch::channel(false);
    let d = Dispatcher::start(
        plan.pagers,
        &cfg.dir.path().join("state"),
        metrics(),
        joincanary::clock::Clock::system(),
        rx,
    );
    // An error page of 600 KB: more than PagerDuty takes in a whole event.
    let mut trigger = hostile(EventKind::Trigger);
    trigger.details["error"] = json!(NGINX_502.repeat(3000));
    d.send(trigger, None);
    d.send(hostile(EventKind::Resolve), None);
    // Five pagers, a trigger and a resolve each, plus the Alertmanager pager's watchdog.
    let all = recv.wait_for(11).await;
    d.shutdown().await;
    for c in &all {
        assert!(c.violations.is_empty(), "{}: {:?}", c.path, c.violations);
        eprintln!("{} {:?}", c.path, c.lengths);
    }
    let seen: Vec<_> = all
        .into_iter()
        .filter(|c| c.body[0]["labels"]["alertname"] != "JoinCanaryWatchdog")
        .collect();
    // At least once: on a loaded machine an answer to the 600 KB trigger can come after the
    // pager's timeout, and the retry is a second (equally checked) delivery.
    assert!(seen.len() >= 10, "{seen:#?}");
    // The limits were pressed, not avoided: the long texts were cut to just under them.
    let slack = seen.iter().find(|c| c.path.starts_with("/slack")).unwrap();
    assert!(slack.lengths["section text"] > 2900, "{:?}", slack.lengths);
    let pd = seen
        .iter()
        .find(|c| c.path == "/v2/enqueue" && c.body["event_action"] == "trigger")
        .unwrap();
    assert_eq!(pd.lengths["dedup_key"], 255);
    assert!(pd.lengths["event bytes"] > 500 * 1024, "{:?}", pd.lengths);
    assert!(pd.lengths["summary"] > 1000);
    let og = seen.iter().find(|c| c.path == "/v2/alerts").unwrap();
    assert_eq!(og.lengths["alias"], 512);
    assert_eq!(og.lengths["tag"], 50);
    assert_eq!(og.lengths["message"], 130);
    // Alertmanager documents no annotation limit; ours keeps what its receivers template short.
    let am = seen.iter().find(|c| c.path == "/api/v2/alerts").unwrap();
    assert!(
        am.lengths["annotation description"] <= 8000,
        "{:?}",
        am.lengths
    );
    assert!(am.lengths["annotation summary"] <= 1024, "{:?}", am.lengths);
    // A resolve finds its trigger: the same fitted keys.
    let pd_resolve = seen
        .iter()
        .find(|c| c.path == "/v2/enqueue" && c.body["event_action"] == "resolve")
        .unwrap();
    assert_eq!(pd_resolve.body["dedup_key"], pd.body["dedup_key"]);
    let close = seen.iter().find(|c| c.path.ends_with("/close")).unwrap();
    let alias = og.body["alias"].as_str().unwrap();
    assert!(close.lengths.contains_key(&format!("alias={alias}")));
}

fn header<'a>(m: &'a serde_json::Value, name: &str) -> &'a str {
    m["headers"][name][0].as_str().unwrap_or("")
}

#[tokio::test]
async fn email_threads_resolve_under_trigger_across_a_restart() {
    support::init();
    let smtp = Smtp::start("accept").await;
    let cfg = TempConfig::new(&smtp.pager(), &[("p.toml", PROBE)]);
    let plan = cfg.load(&[]).expect("config loads");
    let state = cfg.dir.path().join("state");
    let trigger = hostile(EventKind::Trigger);
    let (_tx, rx) = watch::channel(false);
    let d = Dispatcher::start(
        plan.pagers.clone(),
        &state,
        metrics(),
        joincanary::clock::Clock::system(),
        rx.clone(),
    );
    d.send(trigger.clone(), None);
    let first = smtp.messages(1).await;
    // The server keeps the mail before it answers; stopping before the answer would send it
    // again (at least once is the outbox's promise), so wait for the dispatcher to see it.
    let ms = std::time::Duration::from_millis;
    support::holds_within(ms(5_000), ms(10), || d.pending() == 0).await;
    d.shutdown().await;
    // A new process: the resolve is built from the persisted incident (key and start).
    let d = Dispatcher::start(
        plan.pagers,
        &state,
        metrics(),
        joincanary::clock::Clock::system(),
        rx,
    );
    let mut resolve = trigger.clone();
    resolve.kind = EventKind::Resolve;
    resolve.at = trigger.at + chrono::Duration::minutes(3);
    resolve.summary = "recovered".into();
    resolve.details = json!({"lasted_seconds": 600});
    d.send(resolve, None);
    let msgs = smtp.messages(2).await;
    d.shutdown().await;
    assert_eq!(first.len(), 1);
    assert_eq!(msgs.len(), 2);
    for raw in &msgs {
        let longest = raw.lines().map(str::len).max().unwrap_or(0);
        assert!(longest <= 998, "RFC 5322 §2.1.1 line limit: {longest}");
    }
    let t = smtp::parse(&msgs[0]);
    let r = smtp::parse(&msgs[1]);
    assert_eq!(t["defects"], json!([]), "{t:#}");
    let id = header(&t, "Message-ID");
    assert!(
        id.starts_with("<joincanary.") && id.ends_with("@example.com>"),
        "{id}"
    );
    for h in ["Date", "From", "To", "Subject"] {
        assert!(!header(&t, h).is_empty(), "{h} missing: {t:#}");
    }
    assert!(chars(header(&t, "Subject")) <= 200);
    // Issue 16: one subject for the incident, so Gmail (same subject + References) and Outlook
    // (same conversation topic) thread the resolve under its trigger; the state opens the body.
    assert!(header(&t, "Subject").starts_with("[joincanary] join-"));
    assert_eq!(header(&r, "Subject"), header(&t, "Subject"));
    assert_eq!(header(&r, "In-Reply-To"), id);
    assert_eq!(header(&r, "References"), id);
    assert_ne!(header(&r, "Message-ID"), id);
    assert!(
        t["text"]
            .as_str()
            .unwrap_or_default()
            .starts_with("[FIRING critical] join-")
    );
    assert!(
        r["text"]
            .as_str()
            .unwrap_or_default()
            .starts_with("[RESOLVED] recovered")
    );
    assert_eq!(
        t["structure"],
        json!([
            "multipart/mixed",
            "multipart/alternative",
            "text/plain",
            "text/html",
            "application/json"
        ])
    );
    let text = t["text"].as_str().unwrap();
    assert!(text.contains("STEP"), "{text}");
    assert!(text.contains("http_status"), "{text}");
    assert!(text.contains("connect 2.5 ms (2.0 ms)"), "{text}");
    assert!(text.contains("502 Bad Gateway"), "{text}");
    assert!(
        text.contains("the whole error is in details.json"),
        "{text}"
    );
    assert!(text.contains("http://127.0.0.1:9464/?a=1&b=2"), "{text}");
    // To the second: milliseconds are noise to a person (the JSON keeps them).
    let secs = regex::Regex::new(r"\d{2}:\d{2}:\d{2} UTC").unwrap();
    assert!(secs.is_match(text), "timestamps to the second: {text}");
    assert!(!text.contains(".000 UTC"), "no milliseconds: {text}");
    assert!(!text.contains("confirming_runs"), "raw JSON only attached");
    let html = t["html"].as_str().unwrap();
    assert!(html.contains("<th align=\"left\">step</th>"), "{html}");
    assert!(html.contains("&lt;&amp;&gt;"), "escaped: {html}");
    assert!(
        !html.contains("<center>"),
        "the 502 page is text, not markup"
    );
    let attached = &t["attachments"][0];
    assert_eq!(attached["filename"], "details.json");
    let details: serde_json::Value =
        serde_json::from_str(attached["content"].as_str().unwrap_or("null")).unwrap();
    assert_eq!(details["confirming_runs"], json!([1, 2, 3]));
    eprintln!(
        "subject {} chars, text part {} chars, html part {} chars, longest raw line {}",
        chars(header(&t, "Subject")),
        chars(text),
        chars(html),
        msgs[0].lines().map(str::len).max().unwrap_or(0)
    );
}

/// issue 7: a probe name that makes the PagerDuty dedup key pass 255 characters and the Opsgenie
/// tag pass 50 is not a silent 400 at 3 a.m.: `check` says, at the probe's `name`, what will be
/// hashed or cut, and the pages sent fit (see `hostile_bodies_fit_every_provider_limit`).
#[test]
fn check_names_what_a_pager_will_hash_or_cut() {
    let name = format!("join-{}", "x".repeat(260));
    let cfg = TempConfig::new(
        "[[pager]]\nname = \"pd\"\ntype = \"pagerduty\"\nrouting_key = \"k\"\n\n[[pager]]\nname = \"og\"\ntype = \"opsgenie\"\napi_key = \"k\"\n",
        &[(
            "long.toml",
            &format!("# a long name\nname = \"{name}\"\n{PROBE}"),
        )],
    );
    let plan = cfg.load(&[]).expect("config loads");
    let notes: Vec<String> = joincanary::alert::limit_notes(&plan.alerts(), &plan.pagers)
        .iter()
        .map(ToString::to_string)
        .collect();
    let file = cfg.probe_path("long.toml").display().to_string();
    assert_eq!(notes.len(), 3, "{notes:#?}");
    for n in &notes {
        assert!(n.starts_with(&format!("{file}:2:1: name: ")), "{n}");
    }
    assert!(notes[0].contains("pagerduty pager `pd`: the dedup_key is 290 characters, over the provider's 255; it is sent hashed as `joincanary/test/join-xxx"), "{}", notes[0]);
    assert!(notes.iter().any(|n| {
        n.contains("opsgenie pager `og`: the probe tag is 265 characters, over Opsgenie's 50")
    }));
    assert!(
        notes
            .iter()
            .any(|n| n.contains("opsgenie pager `og`: the probe and region names take 287 of the message's 130 characters; they are cut there (to 16 characters at least) so that the failing step and the server's words fit"))
    );
    let out = std::process::Command::new(support::binary())
        .args(["check", "--config"])
        .arg(&cfg.path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("note: {file}:2:1: name: pagerduty pager `pd`")),
        "{stderr}"
    );
}
