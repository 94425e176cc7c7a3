//! The page at 3 a.m.: a real failure of each kind on-call meets (a login answering 500, a
//! websocket upgrade refused with 503, signalling that never answers, Redis out of memory, a
//! TLS handshake with a port that does not speak TLS, a name that does not resolve), confirmed
//! by the alert policy and laid out by every pager as it would be sent. The first line each
//! provider shows names the probe, the region, the failing step and the cause in the server's
//! own words; every field is within the provider's documented limit; trigger and resolve pair
//! up (the same dedup key, alias, label set, subject); the links lead where the config says.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use joincanary::alert::policy::{Decision, ProbeAlertState};
use joincanary::alert::trigger::AlertContext;
use joincanary::alert::{
    EventKind, Notification, PagerKind, alertmanager, email, limits, opsgenie, pagerduty, webhook,
};
use joincanary::flow::ProbePlan;
use joincanary::report::{FailureReason, ProbeRun, Trigger};
use joincanary::sim::{Backend, Credentials, SimServer};
use serde_json::Value;

use crate::support::limits::chars;
use crate::support::{self, TempConfig, servers};

const STATUS_URL: &str = "https://canary.example.com/status?region=eu-west-1&probe=sim-join";
const DASHBOARD_URL: &str = "https://grafana.example.com/d/joincanary?var-region=eu-west-1";
const REGION: &str = "eu-west-1";

/// One failure as on-call meets it: the run, and the words that must reach every first line.
struct Case {
    what: &'static str,
    run: ProbeRun,
    step: &'static str,
    reason: FailureReason,
    /// The cause as the server (or, when the server said nothing, the prober) put it.
    cause: &'static str,
    /// The part of it that must survive Opsgenie's 130-character message.
    short: &'static str,
}

/// The shipped probe against `base` with short timeouts (the signalling one 400 ms).
fn probe(base: &str) -> std::sync::Arc<ProbePlan> {
    support::probe_from(&support::fast_sim_probe(base), &[])
}

async fn run(plan: &ProbePlan) -> ProbeRun {
    support::run_once(plan).await
}

/// A real run of every failure kind.
async fn cases() -> Vec<Case> {
    support::init();
    let sim = support::start_sim().await;
    let plan = probe(&sim.base_url());
    let mut out = Vec::new();

    support::set_faults(&sim, serde_json::json!({"login_status": 500})).await;
    out.push(Case {
        what: "login 500",
        run: run(&plan).await,
        step: "login",
        reason: FailureReason::HttpStatus,
        cause: "HTTP 500: injected fault: login_status",
        short: "HTTP 500: injected fault: login_status",
    });
    support::set_faults(
        &sim,
        serde_json::json!({"login_status": null, "ws_reject_status": 503}),
    )
    .await;
    out.push(Case {
        what: "websocket 503",
        run: run(&plan).await,
        step: "websocket",
        reason: FailureReason::WsHandshake,
        cause: "HTTP 503: injected fault: ws_reject_status",
        short: "HTTP 503: injected fault: ws_reject_status",
    });
    support::set_faults(
        &sim,
        serde_json::json!({"ws_reject_status": null, "signalling_drop": true}),
    )
    .await;
    out.push(Case {
        what: "signalling timeout",
        run: run(&plan).await,
        step: "signalling",
        reason: FailureReason::NoMatch,
        cause: "no frame matched within",
        short: "no frame matched",
    });

    // Redis out of memory under a sim that keeps its signalling there: the join's error frame.
    let redis = servers::running_redis().await;
    let on_redis = SimServer::start_with(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        Credentials::default(),
        Backend::Redis {
            url: redis.url(),
            op_timeout: Duration::from_secs(5),
        },
    )
    .await
    .expect("sim starts on redis");
    redis.fill_to_oom().await.unwrap_or_else(|e| panic!("{e}"));
    out.push(Case {
        what: "Redis OOM",
        run: run(&probe(&on_redis.base_url())).await,
        step: "signalling",
        reason: FailureReason::ServerError,
        cause: "OOM command not allowed when used memory > 'maxmemory'",
        short: "OOM command not allowed",
    });

    // https:// to the sim's plain-HTTP port.
    let plain = sim.base_url().replace("http://", "https://");
    out.push(Case {
        what: "TLS to a plain-HTTP port",
        run: run(&probe(&plain)).await,
        step: "login",
        reason: FailureReason::Tls,
        cause: "the reply is not TLS",
        short: "the reply is not TLS",
    });
    out.push(Case {
        what: "DNS failure",
        run: unresolvable_run(),
        step: "login",
        reason: FailureReason::Dns,
        cause: "cannot resolve `canary-host.invalid`",
        short: "cannot resolve `canary-host.invalid`",
    });
    for c in &out {
        assert_eq!(
            c.run.failed_step.as_deref(),
            Some(c.step),
            "{}: {:#?}",
            c.what,
            c.run
        );
        assert_eq!(c.run.reason, Some(c.reason), "{}: {:#?}", c.what, c.run);
    }
    out
}

/// The shipped probe against a name that does not resolve, run by `joincanary once` in a network
/// namespace of its own (`unshare -n`): the lookup fails without a packet leaving the machine.
fn unresolvable_run() -> ProbeRun {
    let text = support::fast_sim_probe("http://canary-host.invalid");
    let cfg = TempConfig::new("", &[("sim-join.toml", &text)]);
    let out = support::once_without_network(&cfg.path);
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", support::output_text(&out)));
    serde_json::from_value(json["probes"][0].clone()).expect("once prints a probe run")
}

/// The trigger the policy sends after the confirming run, and the resolve after two passes.
fn incident(plan: &ProbePlan, run: &ProbeRun) -> (Notification, Notification) {
    incident_as(plan, run, &plan.name, REGION)
}

/// [`incident`] for a probe and region of these names.
fn incident_as(
    plan: &ProbePlan,
    run: &ProbeRun,
    probe: &str,
    region: &str,
) -> (Notification, Notification) {
    let links = joincanary::alert::links(Some(STATUS_URL), Some(DASHBOARD_URL));
    let cx = AlertContext {
        probe,
        region,
        links: &links,
        ..support::alert_context(plan)
    };
    let mut state = ProbeAlertState::default();
    let start = run.finished_at();
    let mut sent = Vec::new();
    let mut observe = |r: ProbeRun, at: chrono::DateTime<chrono::Utc>| {
        for d in state.observe(&cx, &r, at) {
            if let Decision::Notify(n) = d {
                sent.push(n);
            }
        }
    };
    for (i, trigger) in [Trigger::Scheduled, Trigger::Confirm]
        .into_iter()
        .enumerate()
    {
        let mut r = run.clone();
        r.region = region.into();
        r.trigger = trigger;
        observe(r, start + chrono::Duration::seconds(10 * i as i64));
    }
    for i in 0..2 {
        let at = start + chrono::Duration::seconds(60 + 10 * i);
        let pass = support::passing_run(
            probe,
            region.into(),
            at,
            Duration::from_millis(40),
            Trigger::Scheduled,
        );
        observe(pass, at);
    }
    assert_eq!(sent.len(), 2, "one trigger, one resolve: {sent:#?}");
    let resolve = sent.pop().expect("two");
    let trigger = sent.pop().expect("two");
    assert_eq!(
        (trigger.kind, resolve.kind),
        (EventKind::Trigger, EventKind::Resolve)
    );
    (*trigger, *resolve)
}

/// Every pager type, configured as a user would.
fn pagers() -> Vec<joincanary::alert::PagerPlan> {
    let cfg = TempConfig::new(
        r#"
[[pager]]
name = "pd"
type = "pagerduty"
routing_key = "R0UTINGKEY"

[[pager]]
name = "og"
type = "opsgenie"
api_key = "GENIEKEY"

[[pager]]
name = "am"
type = "alertmanager"
url = "http://127.0.0.1:9093"

[[pager]]
name = "slack"
type = "slack"
url = "https://hooks.slack.com/services/T0/B0/SECRETPATH"

[[pager]]
name = "hook"
type = "webhook"
url = "https://hooks.example.com/joincanary"

[[pager]]
name = "mail"
type = "email"
host = "smtp.example.com"
from = "joincanary <canary@example.com>"
to = ["oncall@example.com"]
"#,
        &[(
            "p.toml",
            "timeout = \"5s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n",
        )],
    );
    cfg.load(&[]).expect("config loads").pagers
}

/// What one provider shows first, and the fields with a limit, as it would be sent.
struct Shown {
    first_line: String,
    /// (field, length in characters, the provider's limit)
    fields: Vec<(&'static str, usize, usize)>,
    /// What ties a resolve to its trigger at this provider.
    pairing: String,
    links: Vec<String>,
}

fn shown(kind: &PagerKind, n: &Notification) -> Shown {
    let clock = joincanary::clock::Clock::system();
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    match kind {
        PagerKind::PagerDuty(p) => {
            let b = pagerduty::build_request(p, n).body;
            let summary = s(&b["payload"]["summary"]);
            Shown {
                fields: vec![
                    ("summary", chars(&summary), limits::PD_SUMMARY),
                    (
                        "dedup_key",
                        chars(&s(&b["dedup_key"])),
                        limits::PD_DEDUP_KEY,
                    ),
                ],
                first_line: summary,
                pairing: s(&b["dedup_key"]),
                links: link_hrefs(&b["links"], "href"),
            }
        }
        PagerKind::Opsgenie(p) => {
            let r = opsgenie::build_request(p, n);
            let message = s(&r.body["message"]);
            let alias = match n.kind {
                EventKind::Trigger => s(&r.body["alias"]),
                // Closed by alias in the URL: `/v2/alerts/<alias>/close?identifierType=alias`.
                EventKind::Resolve => {
                    let path = url::Url::parse(&r.url).expect("a URL");
                    let segs: Vec<String> = path
                        .path_segments()
                        .expect("segments")
                        .map(String::from)
                        .collect();
                    assert_eq!(segs.last().map(String::as_str), Some("close"), "{segs:?}");
                    percent_decode(&segs[segs.len() - 2])
                }
            };
            let description = s(&r.body["description"]);
            Shown {
                fields: vec![
                    ("message", chars(&message), limits::OG_MESSAGE),
                    ("alias", chars(&alias), limits::OG_ALIAS),
                    ("description", chars(&description), limits::OG_DESCRIPTION),
                ],
                first_line: if n.kind == EventKind::Trigger {
                    message
                } else {
                    s(&r.body["note"])
                },
                pairing: alias,
                links: [STATUS_URL, DASHBOARD_URL]
                    .into_iter()
                    .filter(|u| description.contains(u))
                    .map(String::from)
                    .collect(),
            }
        }
        PagerKind::Alertmanager(p) => {
            let b = alertmanager::build_alert(p, n, &clock);
            let alert = &b[0];
            let summary = s(&alert["annotations"]["summary"]);
            Shown {
                fields: vec![("annotation summary", chars(&summary), limits::AM_SUMMARY)],
                first_line: summary,
                pairing: alert["labels"].to_string(),
                links: vec![s(&alert["generatorURL"])],
            }
        }
        PagerKind::Slack(p) => {
            let b = webhook::build_slack_request(p, n).body;
            // The header block is the first line a channel shows; `text` is the notification.
            // As the channel shows it: Slack turns its three escapes back into characters.
            let header = s(&b["blocks"][0]["text"]["text"])
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&");
            assert_eq!(b["blocks"][0]["type"], "header", "{b:#}");
            let mut fields = vec![
                ("header", chars(&header), limits::SLACK_HEADER_TEXT),
                ("text", chars(&s(&b["text"])), limits::SLACK_TOP_TEXT),
            ];
            for block in b["blocks"].as_array().into_iter().flatten() {
                if block["type"] == "section" && block["text"].is_object() {
                    fields.push((
                        "section",
                        chars(&s(&block["text"]["text"])),
                        limits::SLACK_SECTION_TEXT,
                    ));
                }
            }
            let links = b["blocks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|block| block["type"] == "context")
                .flat_map(|block| block["elements"].as_array().cloned().unwrap_or_default())
                .filter_map(|e| {
                    let t = s(&e["text"]);
                    t.strip_prefix('<')?
                        .split('|')
                        .next()
                        .map(|h| h.replace("&amp;", "&"))
                })
                .collect();
            Shown {
                first_line: header,
                fields,
                // A Slack message stands alone: the probe and region in the header tie them.
                pairing: format!("{} {}", n.probe, n.region),
                links,
            }
        }
        PagerKind::Webhook(p) => {
            let b = webhook::build_request(p, n).body;
            Shown {
                first_line: s(&b["summary"]),
                fields: Vec::new(),
                pairing: s(&b["dedup_key"]),
                links: link_hrefs(&b["links"], "href"),
            }
        }
        PagerKind::Email(p) => {
            let subject = email::subject(n);
            let body = email::text_body(n);
            let (_id, in_reply_to) = email::message_ids(p, n);
            assert_eq!(
                in_reply_to.is_some(),
                n.kind == EventKind::Resolve,
                "a resolve replies to its trigger"
            );
            Shown {
                first_line: body.lines().next().unwrap_or_default().to_string(),
                fields: vec![("subject", chars(&subject), limits::EMAIL_SUBJECT)],
                pairing: subject,
                links: [STATUS_URL, DASHBOARD_URL]
                    .into_iter()
                    .filter(|u| body.contains(u))
                    .map(String::from)
                    .collect(),
            }
        }
    }
}

fn link_hrefs(links: &Value, key: &str) -> Vec<String> {
    links
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l[key].as_str().map(String::from))
        .collect()
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Every case through every pager: the problems are collected, so one run lists them all.
#[tokio::test]
async fn every_pager_s_first_line_names_the_cause_step_region_and_probe() {
    let cases = cases().await;
    let pagers = pagers();
    assert_eq!(pagers.len(), 6);
    let mut report = Vec::new();
    let mut problems = Vec::new();
    let mut check = |ok: bool, problem: String| {
        if !ok {
            problems.push(problem);
        }
    };
    for c in &cases {
        let plan = support::probe_from(&support::fast_sim_probe("http://127.0.0.1:9"), &[]);
        let (trigger, resolve) = incident(&plan, &c.run);
        for pager in &pagers {
            let who = format!("{} / {}", c.what, pager.type_name());
            let t = shown(&pager.kind, &trigger);
            let r = shown(&pager.kind, &resolve);
            let line = &t.first_line;
            report.push(format!("{who}: {line}"));
            check(
                !line.contains('\n'),
                format!("{who}: not one line: {line:?}"),
            );
            for word in [
                "sim-join",
                REGION,
                &format!("\"{}\"", c.step),
                c.reason.as_str(),
            ] {
                check(
                    line.contains(word),
                    format!("{who}: `{word}` missing from {line:?}"),
                );
            }
            // Opsgenie's message (130) and Slack's header (150): the short form must fit.
            let cause = if matches!(pager.type_name(), "opsgenie" | "slack") {
                c.short
            } else {
                c.cause
            };
            check(
                line.contains(cause),
                format!("{who}: `{cause}` missing from {line:?}"),
            );
            // The state comes first where the provider shows none of its own.
            if matches!(pager.type_name(), "slack" | "email") {
                check(
                    line.starts_with("[FIRING critical] ")
                        && r.first_line.starts_with("[RESOLVED] "),
                    format!("{who}: state first: {line:?} / {:?}", r.first_line),
                );
            }
            // Only the steps the flow passed before it failed, never the cleanup after it.
            check(
                !line.contains("leave"),
                format!("{who}: a cleanup step in the first line: {line:?}"),
            );
            // PagerDuty's resolve carries only its key: the incident shows it resolved.
            check(
                pager.type_name() == "pagerduty"
                    || r.first_line.contains("sim-join recovered in eu-west-1"),
                format!("{who}: the resolve says {:?}", r.first_line),
            );
            for (field, len, max) in t.fields.iter().chain(&r.fields) {
                check(
                    len <= max,
                    format!("{who}: {field} is {len} characters, over {max}"),
                );
            }
            check(
                t.pairing == r.pairing,
                format!(
                    "{who}: the resolve does not find its trigger: {:?} / {:?}",
                    t.pairing, r.pairing
                ),
            );
            let links = if pager.type_name() == "alertmanager" {
                vec![STATUS_URL.to_string()]
            } else {
                vec![STATUS_URL.to_string(), DASHBOARD_URL.to_string()]
            };
            check(t.links == links, format!("{who}: links {:?}", t.links));
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Long probe and region names (a team's naming scheme: `<team>-<service>-<env>-join-flow`, a
/// cloud's zone name) take the room of the cause in the fields with the tightest limits, which
/// are the first line on-call reads: Opsgenie's `message` (130 characters) and Slack's header
/// (150). The names are cut there, not the cause: the failing step, the reason and the server's
/// words stay, each field within the provider's documented limit, and the names keep a
/// recognisable start. PagerDuty's event names its client and links back to the status page.
#[tokio::test]
async fn long_probe_and_region_names_are_cut_before_the_cause() {
    support::init();
    let sim = support::start_sim().await;
    let plan = probe(&sim.base_url());
    let probe_name = format!(
        "payments-team-video-{}-join-flow",
        "conferencing-production".repeat(3)
    );
    let region = "europe-west3-frankfurt-availability-zone-c-dedicated-tenancy";
    let pagers = pagers();
    let mut problems = Vec::new();
    let mut report = Vec::new();
    for (faults, step, reason, short) in [
        (
            serde_json::json!({"login_status": 500}),
            "login",
            FailureReason::HttpStatus,
            "HTTP 500: injected fault: login_status",
        ),
        (
            serde_json::json!({"login_status": null, "signalling_drop": true}),
            "signalling",
            FailureReason::NoMatch,
            "no frame matched",
        ),
    ] {
        support::set_faults(&sim, faults).await;
        let run = run(&plan).await;
        assert_eq!(run.failed_step.as_deref(), Some(step), "{run:#?}");
        let (trigger, resolve) = incident_as(&plan, &run, &probe_name, region);
        assert!(
            chars(&trigger.summary) > limits::SLACK_HEADER_TEXT,
            "the names alone must push the cause out of an uncut line: {}",
            trigger.summary
        );
        for pager in &pagers {
            let who = format!("{step} / {}", pager.type_name());
            let t = shown(&pager.kind, &trigger);
            let r = shown(&pager.kind, &resolve);
            let line = &t.first_line;
            report.push(format!("{who}: {line}"));
            for (field, len, max) in t.fields.iter().chain(&r.fields) {
                if len > max {
                    problems.push(format!("{who}: {field} is {len} characters, over {max}"));
                }
            }
            // Email's first line and the others have no tight limit: the whole line.
            let step_words = format!("step \"{step}\" {}", reason.as_str());
            for word in [step_words.as_str(), short] {
                if !line.contains(word) {
                    problems.push(format!("{who}: `{word}` missing from {line:?}"));
                }
            }
            // At least NAME_FLOOR characters of each, the `…` included.
            let keep = limits::NAME_FLOOR - 1;
            if !line.contains(&probe_name[..keep]) || !line.contains(&region[..keep]) {
                problems.push(format!("{who}: the names' start missing from {line:?}"));
            }
        }
        let pd = pagers
            .iter()
            .find_map(|p| match &p.kind {
                PagerKind::PagerDuty(pd) => Some(pagerduty::build_request(pd, &trigger).body),
                _ => None,
            })
            .expect("a pagerduty pager");
        assert_eq!(pd["client"], "joincanary", "{pd:#}");
        assert_eq!(pd["client_url"], STATUS_URL, "{pd:#}");
    }
    eprintln!("{}", report.join("\n"));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
