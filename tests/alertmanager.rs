//! The Alertmanager pager: its config ranges, the watchdog (dead man's switch) and
//! `test-page` against a real Debian `prometheus-alertmanager` on 127.0.0.1.

use std::time::Duration;

use crate::support::TempConfig;

const PROBE: &str =
    "timeout = \"5s\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";

fn am_pager(extra: &str) -> TempConfig {
    am_pager_at("http://127.0.0.1:9/", extra)
}

/// Issue 17: `hold = "100000000years"` passed `check` and then panicked the pager task in `run`
/// (`DateTime + TimeDelta overflowed`). Both durations are range-checked when read.
#[test]
fn hold_and_resend_interval_out_of_range_are_config_errors() {
    assert_eq!(
        am_pager("hold = \"100000000years\"\n").errors(),
        ["joincanary.toml:9:8: pager[0].hold: must be between 10ms and 30days"]
    );
    assert_eq!(
        am_pager("resend_interval = \"18446744073709551615s\"\nhold = \"1ms\"\n").errors(),
        [
            "joincanary.toml:9:19: pager[0].resend_interval: must be between 10ms and 1h",
            "joincanary.toml:10:8: pager[0].hold: must be between 10ms and 30days",
        ]
    );
    assert_eq!(
        am_pager("resend_interval = \"1us\"\n").errors(),
        ["joincanary.toml:9:19: pager[0].resend_interval: must be between 10ms and 1h"]
    );
    // The edges are accepted, and the default hold of a long interval is 4 resends.
    let plan = am_pager("resend_interval = \"1h\"\n")
        .load(&[])
        .unwrap_or_else(|e| panic!("{e}"));
    match &plan.pagers[0].kind {
        joincanary::alert::PagerKind::Alertmanager(a) => {
            assert_eq!(a.resend_interval, Duration::from_secs(3600));
            assert_eq!(a.hold, Duration::from_secs(4 * 3600));
        }
        other => panic!("{other:?}"),
    }
    let plan = am_pager("resend_interval = \"10ms\"\nhold = \"30days\"\n")
        .load(&[])
        .unwrap_or_else(|e| panic!("{e}"));
    match &plan.pagers[0].kind {
        joincanary::alert::PagerKind::Alertmanager(a) => {
            assert_eq!(a.hold, Duration::from_secs(30 * 24 * 3600));
        }
        other => panic!("{other:?}"),
    }
}

/// The shipped default: posted every 30 s, so the watchdog (1.5 intervals) lapses within 45 s.
#[test]
fn default_resend_interval_keeps_the_watchdog_inside_a_minute() {
    let plan = am_pager("").load(&[]).unwrap_or_else(|e| panic!("{e}"));
    match &plan.pagers[0].kind {
        joincanary::alert::PagerKind::Alertmanager(a) => {
            assert_eq!(a.resend_interval, Duration::from_secs(30));
            assert_eq!(
                joincanary::alert::alertmanager::watchdog_ttl(a.resend_interval),
                Duration::from_secs(45)
            );
        }
        other => panic!("{other:?}"),
    }
}

/// Alertmanager's config: `page` gets everything with a short group_wait, the watchdog goes to
/// `switch` every second (group_interval 1s, repeat_interval shorter, as the shipped route).
/// A webhook receiver and a real Alertmanager routing to it ([`am_config`]).
async fn receiver_behind_alertmanager() -> (
    crate::support::receiver::Receiver,
    crate::support::servers::Alertmanager,
) {
    let (hook, hook_url) = crate::support::receiver::Receiver::start(200).await;
    let am = crate::support::servers::start_alertmanager(&am_config(&hook_url))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (hook, am)
}

fn am_config(hook: &str) -> String {
    format!(
        "route:\n  receiver: page\n  group_by: [probe]\n  group_wait: 1s\n  group_interval: 1m\n  repeat_interval: 1h\n  routes:\n    - receiver: switch\n      matchers: ['alertname=\"JoinCanaryWatchdog\"']\n      group_by: [region]\n      group_wait: 0s\n      group_interval: 1s\n      repeat_interval: 500ms\n\
         receivers:\n  - name: page\n    webhook_configs: [{{url: '{hook}/page', send_resolved: true}}]\n  - name: switch\n    webhook_configs: [{{url: '{hook}/switch', send_resolved: false}}]\n"
    )
}

/// Issue 16: `test-page` through an alertmanager pager reached no receiver (trigger and resolve
/// 3 ms apart, inside group_wait). Against Debian's Alertmanager with a 1 s group_wait: as
/// before (`--wait 0s`) nobody hears; by default it reads group_wait from Alertmanager, says
/// Alertmanager accepted and lists the alert, keeps it firing 4 s, and the receiver gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_page_reaches_the_receiver_behind_a_real_alertmanager() {
    use crate::support::receiver::Receiver;
    let (hook, am) = receiver_behind_alertmanager().await;
    let cfg = am_pager_at(&am.url(), "");
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(crate::support::binary())
            .args(["test-page", "--config"])
            .arg(&cfg.path)
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        stdout
    };
    let page = |hook: &Receiver| -> Vec<serde_json::Value> {
        hook.all()
            .into_iter()
            .filter(|(path, _, _)| path == "/page")
            .map(|(_, body, _)| body)
            .collect()
    };

    let out = tokio::task::block_in_place(|| run(&["--wait", "0s"]));
    assert!(out.contains("am: ok"), "{out}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(page(&hook), Vec::<serde_json::Value>::new(), "{out}");

    let started = std::time::Instant::now();
    let out = tokio::task::block_in_place(|| run(&[]));
    let took = started.elapsed();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "am: Alertmanager routes it to `page` (group_wait 1s); will keep it firing 4s",
            "am: Alertmanager accepted the test alert (POST /api/v2/alerts answered 2xx)",
            "am: Alertmanager lists it as active, for receiver(s) page",
            "am: kept it firing 4s for Alertmanager to notify; resolving",
            "am: ok (test trigger and resolve delivered)",
        ],
        "{out}"
    );
    assert!(took >= Duration::from_secs(4), "{took:?}");
    // Alertmanager sent it 3 s before the resolve (NOTIFY_MARGIN); waited for all the same,
    // bounded, so a loaded machine's slow delivery is not taken for none.
    crate::support::holds_within(Duration::from_secs(10), Duration::from_millis(100), || {
        !page(&hook).is_empty()
    })
    .await;
    let got = page(&hook);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["status"], "firing");
    let labels = &got[0]["alerts"][0]["labels"];
    assert_eq!(labels["alertname"], "JoinFlowFailing");
    assert_eq!(labels["test"], "true");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["source"], "joincanary");
    assert!(
        labels["probe"].as_str().unwrap().starts_with("test-page-"),
        "{labels}"
    );
}

fn am_pager_at(url: &str, extra: &str) -> TempConfig {
    TempConfig::new(
        &format!("[[pager]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = \"{url}\"\n{extra}"),
        &[("p.toml", PROBE)],
    )
}

/// With the shipped routes, `test-page`'s alert takes the `page` route (the one a real
/// `JoinFlowFailing` takes), so a test page proves the path on-call is paged through.
#[test]
fn the_shipped_routes_send_the_test_page_where_a_real_page_goes() {
    let yaml = std::fs::read_to_string(
        crate::support::root().join("deploy/alertmanager/alertmanager.yml"),
    )
    .unwrap();
    let labels = |probe: &str, test: bool| {
        let mut l: std::collections::BTreeMap<String, String> = [
            ("alertname", "JoinFlowFailing"),
            ("probe", probe),
            ("region", "eu-west-1"),
            ("severity", "critical"),
            ("source", "joincanary"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if test {
            l.insert("test".into(), "true".into());
        }
        l
    };
    let route = |l| joincanary::alert::am_route::routes_for(&yaml, &l).unwrap();
    let real = route(labels("sim-join", false));
    let test = route(labels("test-page-0123abcd", true));
    assert_eq!(real[0].receiver, "page");
    assert_eq!(
        test.iter().map(|r| &r.receiver).collect::<Vec<_>>(),
        real.iter().map(|r| &r.receiver).collect::<Vec<_>>()
    );
    assert_eq!(test[0].group_wait, real[0].group_wait);
}

/// Issue 16: the watchdog had no `startsAt` (Alertmanager then starts it at its `endsAt`, in the
/// future) and ended 4 resend intervals after its last post, so a dead man's switch kept hearing
/// a `kill -9`ed prober for 140 s. Against Debian's Alertmanager with the switch notified every
/// second, a prober posting every 2 s (so `endsAt` 3 s ahead): the watchdog started in the past,
/// and after `kill -9` the switch hears nothing once the last `endsAt` (3 s) and one
/// `group_interval` (1 s) have passed. `cargo test the_dead_mans_switch -- --nocapture` prints
/// the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_mans_switch_stops_within_the_watchdogs_end_after_kill_9() {
    use crate::support::receiver::Receiver;
    let (hook, am) = receiver_behind_alertmanager().await;
    let cfg = am_pager_at(&am.url(), "resend_interval = \"2s\"\n");
    let ttl = joincanary::alert::alertmanager::watchdog_ttl(Duration::from_secs(2));
    assert_eq!(ttl, Duration::from_secs(3));
    let mut prober =
        tokio::task::block_in_place(|| crate::support::running::Running::start(&cfg.path, &[]));
    let switch = |hook: &Receiver| -> Vec<std::time::Instant> {
        hook.timed()
            .into_iter()
            .filter(|(_, path, _)| path == "/switch")
            .map(|(t, _, _)| t)
            .collect()
    };
    crate::support::holds_within(Duration::from_secs(20), Duration::from_millis(100), || {
        switch(&hook).len() >= 3
    })
    .await;
    let heard = switch(&hook);
    assert!(heard.len() >= 3, "{:?}\n{}", hook.all(), prober.log());
    let gaps: Vec<f64> = heard
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();

    let watchdog = format!(
        "{}/api/v2/alerts?filter=alertname%3D%22JoinCanaryWatchdog%22",
        am.url()
    );
    let alerts: serde_json::Value = reqwest::get(&watchdog).await.unwrap().json().await.unwrap();
    let at = |key: &str| {
        chrono::DateTime::parse_from_rfc3339(alerts[0][key].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{key}: {e}: {alerts}"))
            .with_timezone(&chrono::Utc)
    };
    let now = chrono::Utc::now();
    assert!(at("startsAt") <= now, "starts in the future: {alerts}");
    let ahead = (at("endsAt") - now).num_milliseconds();
    assert!(
        (0..=3_500).contains(&ahead),
        "endsAt {ahead} ms ahead: {alerts}"
    );

    let killed = std::time::Instant::now();
    prober.child.kill().unwrap();
    prober.child.wait().unwrap();
    let quiet_after = ttl + Duration::from_secs(1);
    // Watched for 10 s: the old watchdog (ending 4 resend intervals, 8 s, after its last post)
    // would be heard until some 9 s after the kill.
    tokio::time::sleep(quiet_after + Duration::from_secs(6)).await;
    let after: Vec<f64> = switch(&hook)
        .into_iter()
        .filter(|t| *t > killed)
        .map(|t| (t - killed).as_secs_f64())
        .collect();
    println!(
        "dead man's switch: notified every {gaps:.2?} s while alive; after kill -9 at {after:.2?} s (watchdog endsAt {ahead} ms ahead of the last look)"
    );
    // The last notification comes at the latest on the group_interval tick before the last
    // post's endsAt; 2 s of slack for a loaded machine's Alertmanager (0.5 s was tight), still
    // well short of the old watchdog's 9 s.
    assert!(
        after.iter().all(|s| *s <= quiet_after.as_secs_f64() + 2.0),
        "the switch still heard the dead prober {after:?} s after kill -9"
    );
}

/// The host clock stepped forward after the prober started (NTP correcting a clock that booted
/// behind, a VM resumed): the prober's own clock reads on from its start, here 10 minutes behind
/// the host's. Alertmanager judges `startsAt`/`endsAt` by its own clock, and the prober posted
/// them from its own: the watchdog's `endsAt` (3 s after the post) and a firing alert's (`hold`,
/// 1 m) were 10 minutes past when they arrived, so the dead man's switch never heard the
/// prober and the page arrived already RESOLVED. Against Debian's Alertmanager, through the
/// dispatcher on such a clock: the switch hears the watchdog, `page` gets the alert firing, and
/// Alertmanager lists both with `startsAt` past and `endsAt` ahead of its now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_clock_stepped_after_start_still_pages_and_feeds_the_switch() {
    use joincanary::alert::{Dispatcher, EventKind, Notification, Severity};
    let (hook, am) = receiver_behind_alertmanager().await;
    let cfg = am_pager_at(&am.url(), "resend_interval = \"2s\"\nhold = \"1m\"\n");
    let plan = cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"));
    let step = chrono::Duration::minutes(10);
    let clock = joincanary::clock::Clock::starting_at(chrono::Utc::now() - step);
    clock.step_system(step);
    let state = tempfile::tempdir().unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let metrics = joincanary::metrics::Metrics::new("eu-west-1").unwrap();
    let dispatcher = Dispatcher::start(plan.pagers, state.path(), metrics, clock, shutdown);
    let now = clock.now();
    dispatcher.send(
        Notification {
            kind: EventKind::Trigger,
            severity: Severity::Critical,
            dedup_key: "joincanary/sim-join/eu-west-1/critical".into(),
            probe: "sim-join".into(),
            region: "eu-west-1".into(),
            summary: "sim-join failing in eu-west-1: step \"signalling\" no_match".into(),
            failed_step: Some("signalling".into()),
            reason: Some(joincanary::report::FailureReason::NoMatch),
            details: serde_json::Value::Null,
            started_at: now - chrono::Duration::seconds(20),
            at: now,
            reminder: false,
            test: false,
            links: Vec::new(),
        },
        None,
    );
    let heard = |path: &str| -> Vec<serde_json::Value> {
        hook.all()
            .into_iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, body, _)| body)
            .collect()
    };
    let both =
        crate::support::holds_within(Duration::from_secs(15), Duration::from_millis(100), || {
            !heard("/page").is_empty() && !heard("/switch").is_empty()
        })
        .await;
    let alerts: serde_json::Value = reqwest::get(format!("{}/api/v2/alerts", am.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let _ = stop.send(true);
    dispatcher.shutdown().await;
    assert!(
        both,
        "page {:#?}\nswitch {:#?}\nlisted {alerts:#}",
        heard("/page"),
        heard("/switch")
    );
    let page = heard("/page");
    assert_eq!(page[0]["status"], "firing", "{page:#?}");
    assert_eq!(
        page[0]["alerts"][0]["labels"]["alertname"],
        "JoinFlowFailing"
    );
    let host_now = chrono::Utc::now();
    let listed = alerts.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{alerts:#}");
    for a in listed {
        let at = |key: &str| {
            chrono::DateTime::parse_from_rfc3339(a[key].as_str().unwrap_or_default())
                .unwrap_or_else(|e| panic!("{key}: {e}: {a}"))
                .with_timezone(&chrono::Utc)
        };
        assert_eq!(a["status"]["state"], "active", "{a:#}");
        assert!(at("startsAt") <= host_now, "{a:#}");
        assert!(
            at("startsAt") > host_now - chrono::Duration::minutes(5),
            "{a:#}"
        );
        assert!(at("endsAt") > host_now, "{a:#}");
    }
}

/// Issue 16 re-audit: an Alertmanager behind an authenticating reverse proxy at a path
/// (`https://ops.example/am` with a bearer token, or Mimir's with `X-Scope-OrgID`) could not be
/// reached: the pager had no way to send a header (`headers` was "does not apply"). Here a
/// proxy on `/am` that answers 401 without both headers, in front of Debian's Alertmanager:
/// `test-page` reads the route, posts, lists and resolves through it, the `page` receiver gets
/// the test alert, every request carried both headers, and nothing it says shows the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_reach_an_alertmanager_behind_a_token_proxy_at_a_path() {
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    const TOKEN: &str = "am-bearer-token-31337";
    let (hook, am) = receiver_behind_alertmanager().await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, bool)>::new()));
    let (upstream, log) = (am.url(), seen.clone());
    let client = reqwest::Client::new();
    let proxy = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: axum::body::Bytes| {
            let (upstream, log, client) = (upstream.clone(), log.clone(), client.clone());
            async move {
                let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
                    == Some(&format!("Bearer {TOKEN}"))
                    && headers.get("x-scope-orgid").and_then(|v| v.to_str().ok()) == Some("ops");
                let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                log.lock().unwrap().push((path.to_string(), authorized));
                let Some(rest) = path.strip_prefix("/am/") else {
                    return (StatusCode::NOT_FOUND, String::new());
                };
                if !authorized {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                let answer = client
                    .request(method, format!("{upstream}/{rest}"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
                (status, answer.text().await.unwrap())
            }
        },
    );
    let addr = crate::support::serve_router(proxy).await;
    let cfg = am_pager_at(
        &format!("http://{addr}/am/"),
        "headers = { Authorization = \"Bearer ${AM_TOKEN}\", X-Scope-OrgID = \"ops\" }\n",
    );
    let plan = cfg
        .load(&[("AM_TOKEN", TOKEN)])
        .unwrap_or_else(|e| panic!("{e}"));
    let results = joincanary::alert::test_page(
        &plan.pagers,
        "eu-west-1",
        &[],
        None,
        joincanary::clock::Clock::system(),
    )
    .await;
    let notes = results[0].1.as_ref().unwrap_or_else(|e| panic!("{e}"));
    let text = notes.join("\n");
    assert!(text.contains("Alertmanager routes it to `page`"), "{text}");
    assert!(text.contains("lists it as active"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    let requests = seen.lock().unwrap().clone();
    assert!(requests.len() >= 4, "{requests:?}");
    assert!(requests.iter().all(|(_, ok)| *ok), "{requests:?}");
    assert!(
        requests.iter().all(|(p, _)| p.starts_with("/am/api/v2/")),
        "{requests:?}"
    );
    let pages = || -> Vec<_> {
        hook.all()
            .into_iter()
            .filter(|(path, _, _)| path == "/page")
            .collect()
    };
    // Sent before the resolve; waited for all the same, bounded, as in
    // test_page_reaches_the_receiver_behind_a_real_alertmanager.
    crate::support::holds_within(Duration::from_secs(10), Duration::from_millis(100), || {
        !pages().is_empty()
    })
    .await;
    let page = pages();
    assert_eq!(page.len(), 1, "{page:?}");
    assert_eq!(page[0].1["alerts"][0]["labels"]["test"], "true");
}

/// An Alertmanager behind basic auth (credentials in the pager's `url`, from the environment):
/// `test-page` sends them on every request, reads the route, and what it reports about the
/// calls that failed (the groups answering 401, the alert list 500) never shows the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_page_reports_alertmanager_errors_without_its_credentials() {
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    const PASSWORD: &str = "am-pass-word-7";
    let auth = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = auth.clone();
    let record = move |h: &HeaderMap| {
        let value = h
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        seen.lock().unwrap().push(value.to_string());
    };
    let (r1, r2, r3, r4) = (record.clone(), record.clone(), record.clone(), record);
    let config = "route: {receiver: page, group_wait: 0s}\nreceivers: [{name: page}]\n";
    let app = axum::Router::new()
        .route(
            "/api/v2/status",
            get(move |h: HeaderMap| async move {
                r1(&h);
                axum::Json(serde_json::json!({"config": {"original": config}}))
            }),
        )
        .route(
            "/api/v2/alerts/groups",
            get(move |h: HeaderMap| async move {
                r2(&h);
                (StatusCode::UNAUTHORIZED, format!("bad password {PASSWORD}"))
            }),
        )
        .route(
            "/api/v2/alerts",
            get(move |h: HeaderMap| async move {
                r3(&h);
                (StatusCode::INTERNAL_SERVER_ERROR, PASSWORD)
            })
            .post(move |h: HeaderMap| async move {
                r4(&h);
                StatusCode::OK
            }),
        );
    let addr = crate::support::serve_router(app).await;
    let cfg = am_pager_at("${AM_URL}", "");
    let plan = cfg
        .load(&[("AM_URL", &format!("http://canary:{PASSWORD}@{addr}"))])
        .unwrap_or_else(|e| panic!("{e}"));
    let results = joincanary::alert::test_page(
        &plan.pagers,
        "test",
        &[],
        None,
        joincanary::clock::Clock::system(),
    )
    .await;
    let notes = results[0].1.as_ref().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        notes,
        &[
            "Alertmanager routes it to `page` (group_wait 0s); will keep it firing 3s",
            "Alertmanager accepted the test alert (POST /api/v2/alerts answered 2xx)",
            "could not list Alertmanager's alerts to confirm it: HTTP 500 Internal Server Error",
            "kept it firing 3s for Alertmanager to notify; resolving",
        ]
    );
    let text = format!("{results:?}");
    assert!(!text.contains(PASSWORD), "{text}");
    // status, groups, POST, alerts, POST: each with the credentials.
    let auth = auth.lock().unwrap().clone();
    assert_eq!(auth.len(), 5, "{auth:?}");
    assert!(auth.iter().all(|a| a.starts_with("Basic ")), "{auth:?}");
}

/// `urls`, the members of an HA pair or cluster: instead of `url`, never both; each checked
/// with its place; none twice (never repeated: a URL may hold credentials); 1 to 10.
#[test]
fn alertmanager_urls_are_checked_each_with_its_place() {
    let cfg = |keys: &str| {
        TempConfig::new(
            &format!("[[pager]]\nname = \"am\"\ntype = \"alertmanager\"\n{keys}"),
            &[("p.toml", PROBE)],
        )
    };
    assert_eq!(
        cfg("url = \"http://a:9093\"\nurls = [\"http://b:9093\"]\n").errors(),
        [
            "joincanary.toml:9:8: pager[0].urls: give `url` (one Alertmanager) or `urls` (each member of an HA pair or cluster), not both"
        ]
    );
    assert_eq!(
        cfg("urls = [\"http://a:9093\", \"ftp://b\", \"http://a:9093/\"]\n").errors(),
        [
            "joincanary.toml:8:26: pager[0].urls[1]: is not an http:// or https:// URL",
            "joincanary.toml:8:37: pager[0].urls[2]: lists the same Alertmanager twice",
        ]
    );
    assert_eq!(
        cfg("urls = []\n").errors(),
        ["joincanary.toml:8:8: pager[0].urls: must list 1 to 10 Alertmanager base URLs"]
    );
    assert_eq!(
        cfg("").errors(),
        [
            "joincanary.toml:5:1: pager[0].url: is required for an `alertmanager` pager (or `urls`, one per member of an HA pair or cluster)"
        ]
    );
    let plan = cfg("urls = [\"http://am-0.am:9093/\", \"https://am-1.am\"]\n")
        .load(&[])
        .unwrap_or_else(|e| panic!("{e}"));
    match &plan.pagers[0].kind {
        joincanary::alert::PagerKind::Alertmanager(a) => {
            let urls: Vec<&str> = a.urls.iter().map(|u| u.expose()).collect();
            assert_eq!(urls, ["http://am-0.am:9093", "https://am-1.am"]);
            assert_eq!(
                joincanary::alert::alertmanager::member_names(&a.urls),
                ["am-0.am:9093", "am-1.am:443"]
            );
        }
        other => panic!("{other:?}"),
    }
}
