//! The fleet status page in a real browser: two `joincanary run` processes (eu-west-1 lists
//! us-east-1 as a peer), each probing its own reference server. Headless Chromium takes a
//! screenshot healthy, degraded, failing and with the peer gone, kept under
//! `target/screenshots/` as CI artifacts, and the rendered DOM (`--dump-dom`) must show the
//! failing probe, step and region, the pagers that cannot deliver (Slack answering 403,
//! Alertmanager answering 503) with their errors, availability and a response-time chart per
//! probe, and the dead peer as unreachable by its region and since when, never as passing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::receiver::Receiver;
use crate::support::running::Running;
use crate::support::{
    TempConfig, eventually, fast_sim_probe, get_text, set_faults, start_sim, status, when,
};

const CHROMIUM: &str = "/usr/bin/chromium";

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::support::root().join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Chromium with everything that would talk to the outside switched off; a profile of its own.
fn chromium(args: &[&str], url: &str) -> std::process::Output {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: `bash .ci/run` installs it (.ci/apt.d/status.txt)"
    );
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn screenshot(url: &str, name: &str) -> PathBuf {
    let path = screenshots_dir().join(format!("{name}.png"));
    let _ = std::fs::remove_file(&path);
    chromium(
        &[
            &format!("--screenshot={}", path.display()),
            "--window-size=1280,2600",
        ],
        url,
    );
    let png = std::fs::read(&path).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    path
}

fn dump_dom(url: &str) -> String {
    String::from_utf8_lossy(&chromium(&["--dump-dom"], url).stdout).to_string()
}

/// Every key of a status document (an open alert, both kinds of pager, a peer too) is named in
/// README's `/api/v1/status` row: what a dashboard author reads there is what the API has.
/// `last` and `last_good` are the `once --format json` shape (tests/cli.rs checks that);
/// `phases` and `gauges` are maps named by their values.
fn assert_keys_documented(doc: &serde_json::Value) {
    fn keys(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    out.insert(k.clone());
                    if !["last", "last_good", "phases", "gauges"].contains(&k.as_str()) {
                        keys(v, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
            _ => {}
        }
    }
    let readme = std::fs::read_to_string(crate::support::root().join("README.md")).unwrap();
    let row = readme
        .lines()
        .find(|l| l.starts_with("| `/api/v1/status` |"))
        .expect("README's Endpoints table has /api/v1/status");
    let mut found = std::collections::BTreeSet::new();
    keys(doc, &mut found);
    let missing: Vec<_> = found
        .iter()
        .filter(|k| !row.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README's /api/v1/status row does not name {missing:?}: {doc}"
    );
}

/// Polls (250 ms apart, at most 30 s) until `pred` holds for the service's status document.
async fn wait_status(base: &str, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
    eventually(what, PATIENCE, EVERY, async || {
        when(status(base).await, &pred)
    })
    .await;
}

fn state_of(doc: &serde_json::Value) -> String {
    doc["probes"][0]["state"].as_str().unwrap_or("").to_string()
}

/// Polls the page itself until `pred` holds (the peer cache lives a few seconds).
async fn wait_page(base: &str, what: &str, pred: impl Fn(&str) -> bool) {
    eventually(what, PATIENCE, EVERY, async || {
        when(get_text(base, "/").await, |p| pred(p))
    })
    .await;
}

/// How long (and how often) the polls above look: a probe runs every second, and on a loaded
/// machine some of its runs fail that would pass.
const PATIENCE: Duration = Duration::from_secs(30);
const EVERY: Duration = Duration::from_millis(250);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_page_in_chromium_healthy_degraded_failing_and_peer_unreachable() {
    let sim_eu = start_sim().await;
    let sim_us = start_sim().await;
    // Roomy step timeouts: a slowed signalling step must stay slow, not fail, on a busy machine.
    let probe = |url: &str| {
        let p = fast_sim_probe(url)
            .replace("timeout = \"900ms\"", "timeout = \"950ms\"")
            .replace("timeout = \"200ms\"", "timeout = \"700ms\"")
            // The degraded stage delays signalling 400 ms: its step timeout must leave room
            // above that, or a busy machine turns "slow" into "failing".
            .replace(
                "fail_json = { type = \"error\" }\ntimeout = \"400ms\"",
                "fail_json = { type = \"error\" }\ntimeout = \"750ms\"",
            );
        assert!(
            p.contains("timeout = \"750ms\""),
            "signalling timeout widened: {p}"
        );
        p
    };
    let us = TempConfig::new("", &[("sim-join.toml", &probe(&sim_us.base_url()))]);
    let text = std::fs::read_to_string(&us.path)
        .unwrap()
        .replace("region = \"test\"", "region = \"us-east-1\"");
    std::fs::write(&us.path, text).unwrap();
    let us_run = tokio::task::block_in_place(|| Running::start(&us.path, &[]));

    // eu-west-1's pagers: a Slack and an Alertmanager on loopback, both accepting at first.
    let (slack, slack_url) = Receiver::start(200).await;
    let (am, am_url) = Receiver::start(200).await;
    let eu = TempConfig::new(
        &format!(
            "peers = [\"{}\"]\ndashboard_url = \"https://grafana.example/d/joincanary\"\n\
             [alerting]\ndegraded_threshold = 2\n[alerting.budgets]\n\"signalling.round_trip\" = \"200ms\"\n\
             [[pager]]\nname = \"slack\"\ntype = \"slack\"\nurl = \"{slack_url}/services/T0/B0/secretpath\"\n\
             [[pager]]\nname = \"alertmanager\"\ntype = \"alertmanager\"\nurl = \"{am_url}\"\nresend_interval = \"1s\"\n",
            us_run.base()
        ),
        &[("sim-join.toml", &probe(&sim_eu.base_url()))],
    );
    let text = std::fs::read_to_string(&eu.path)
        .unwrap()
        .replace("region = \"test\"", "region = \"eu-west-1\"");
    std::fs::write(&eu.path, text).unwrap();
    let eu_run = tokio::task::block_in_place(|| Running::start(&eu.path, &[]));
    let eu_base = eu_run.base();
    let page = format!("{eu_base}/");

    // Healthy: both regions up.
    for base in [&eu_base, &us_run.base()] {
        wait_status(base, "a passing run", |d| state_of(d) == "up").await;
    }
    wait_page(&eu_base, "both regions up", |p| {
        p.matches("class=\"cell up\"").count() == 2
    })
    .await;
    // A busy machine can slow a run past its budget between the check and the shot: take it
    // again until the state held across it.
    let mut healthy = PathBuf::new();
    for attempt in 0..3 {
        healthy = tokio::task::block_in_place(|| screenshot(&page, "fleet-healthy"));
        let (eu_doc, us_doc) = (status(&eu_base).await, status(&us_run.base()).await);
        if state_of(&eu_doc) == "up" && state_of(&us_doc) == "up" {
            break;
        }
        assert!(attempt < 2, "never healthy across a screenshot: {eu_doc}");
        wait_status(&eu_base, "up again", |d| state_of(d) == "up").await;
    }

    // Degraded: signalling slower than its budget, twice in a row.
    set_faults(&sim_eu, json!({"signalling_delay_ms": 400})).await;
    wait_status(&eu_base, "a degraded warning", |d| {
        state_of(d) == "degraded"
    })
    .await;
    let degraded = tokio::task::block_in_place(|| screenshot(&page, "fleet-degraded"));

    // Failing: signalling dropped (the Redis pub/sub outage), while Slack refuses the
    // webhook and Alertmanager answers 503.
    slack.set_fallback(403);
    am.set_fallback(503);
    set_faults(
        &sim_eu,
        json!({"signalling_delay_ms": null, "signalling_drop": true}),
    )
    .await;
    wait_status(&eu_base, "a failing run", |d| {
        state_of(d) == "failing" && d["probes"][0]["last"]["failed_step"] == "signalling"
    })
    .await;
    // The page (the trigger) reached neither: the status says so per pager.
    wait_status(&eu_base, "both pagers failing", |d| {
        d["delivery"]
            .as_array()
            .is_some_and(|ps| ps.len() == 2 && ps.iter().all(|p| p["failing_since"].is_string()))
    })
    .await;
    let doc = status(&eu_base).await;
    let pager = |name: &str| {
        doc["delivery"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pager"] == name)
            .unwrap()
            .clone()
    };
    assert!(
        pager("slack")["last_error"]
            .as_str()
            .unwrap()
            .contains("403"),
        "{doc}"
    );
    // The degraded warning went through before Slack started refusing.
    let slack = pager("slack");
    assert!(
        slack["last_success"].as_str().unwrap() < slack["failing_since"].as_str().unwrap(),
        "{doc}"
    );
    assert!(
        pager("alertmanager")["last_error"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{doc}"
    );
    assert!(
        pager("alertmanager")["last_success"].is_string(),
        "the watchdog went through before: {doc}"
    );
    assert_eq!(pager("slack")["type"], "slack");
    assert_keys_documented(&doc);
    let failing = tokio::task::block_in_place(|| screenshot(&page, "fleet-failing"));
    let dom = tokio::task::block_in_place(|| dump_dom(&page));
    let cell = dom
        .split("<td class=\"cell failing\">")
        .nth(1)
        .unwrap_or_else(|| panic!("a failing cell in the grid:\n{dom}"));
    let cell = &cell[..cell.find("</td>").unwrap()];
    assert!(
        cell.contains("href=\"#eu-west-1/sim-join\"")
            && cell.contains("failing")
            && cell.contains("<strong>signalling</strong>")
            && cell.contains("no_match"),
        "the failing cell names probe, region, step and reason: {cell}"
    );
    let card = dom
        .split("id=\"eu-west-1/sim-join\"")
        .nth(1)
        .expect("a card for the failing probe");
    let card = &card[..card.find("</article>").unwrap()];
    assert!(card.contains("failing since") && card.contains("last success"));
    assert!(card.contains("✕ FAILED</strong> no_match"), "{card}");
    assert!(
        dom.contains("failing: sim-join in eu-west-1"),
        "the banner says what fails where"
    );
    assert!(
        dom.contains("class=\"cell up\"><a href=\"#us-east-1/sim-join\""),
        "the other region is still up"
    );
    assert!(dom.contains("href=\"https://grafana.example/d/joincanary\""));
    // Delivery trouble is on the page: in the banner, and per pager with its error.
    assert!(dom.contains("pages not delivered: "), "{dom}");
    let pagers = dom
        .split("<table class=\"pagers\">")
        .nth(1)
        .expect("the pagers table of eu-west-1");
    let pagers = &pagers[..pagers.find("</table>").unwrap()];
    assert!(
        pagers.contains("slack <small>slack</small>")
            && pagers.contains("403")
            && pagers.contains("503")
            && pagers.contains("failing for"),
        "{pagers}"
    );
    assert!(!dom.contains("secretpath"), "the webhook URL never shows");
    // Availability per probe × region, and one response-time chart per probe with a line
    // (here: points) for each region.
    let avail =
        regex::Regex::new(r"24 h (\d+(\.\d+)? %|no runs) · 7 d (\d+(\.\d+)? %|no runs)").unwrap();
    assert!(avail.find_iter(&dom).count() >= 4, "{dom}");
    let chart = dom
        .split("<figure class=\"chart\">")
        .nth(1)
        .expect("a response-time chart");
    let chart = &chart[..chart.find("</figure>").unwrap()];
    assert!(
        chart.contains("<svg")
            && chart.contains("<circle")
            && chart.contains("eu-west-1")
            && chart.contains("us-east-1"),
        "{chart}"
    );
    assert!(
        chart.contains("failed at signalling (no_match)"),
        "failed runs are marked: {chart}"
    );

    // Peer unreachable: stop us-east-1; its column must never show as passing.
    let us_addr = us_run.addr.clone();
    assert_eq!(tokio::task::block_in_place(|| us_run.stop()), Some(0));
    wait_page(&eu_base, "the peer unreachable", |p| {
        p.contains("class=\"cell unreachable\"")
    })
    .await;
    let unreachable = tokio::task::block_in_place(|| screenshot(&page, "fleet-peer-unreachable"));
    let dom = tokio::task::block_in_place(|| dump_dom(&page));
    assert!(dom.contains("class=\"cell unreachable\""), "{dom}");
    // Named by the region it last reported, with since when; its URL in its section.
    assert!(
        dom.contains("us-east-1 <small>(unreachable since "),
        "the dead peer's column is named and marked: {dom}"
    );
    assert!(
        dom.contains("unreachable: us-east-1 (since "),
        "the banner names it"
    );
    assert!(
        dom.contains(&format!("No status from http://{us_addr}")),
        "its section gives its URL"
    );
    assert!(dom.contains("last answered "), "{dom}");
    assert!(
        !dom.contains("#us-east-1/sim-join"),
        "no stale green for it"
    );
    assert_eq!(dom.matches("class=\"cell up\"").count(), 0);

    for shot in [healthy, degraded, failing, unreachable] {
        assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "{shot:?}");
    }
    assert_eq!(tokio::task::block_in_place(|| eu_run.stop()), Some(0));
    sim_eu.shutdown().await;
    sim_us.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_history_survives_a_restart() {
    let sim = start_sim().await;
    let probe = fast_sim_probe(&sim.base_url());
    let cfg = TempConfig::new("", &[("sim-join.toml", &probe)]);
    let first = tokio::task::block_in_place(|| Running::start(&cfg.path, &[]));
    crate::support::wait_probe_runs(&first.base(), "sim-join", 3).await;
    set_faults(&sim, json!({"signalling_drop": true})).await;
    wait_status(&first.base(), "a failed run", |d| state_of(d) == "failing").await;
    assert_eq!(tokio::task::block_in_place(|| first.stop()), Some(0));
    let file = cfg.dir.path().join("state/status-history.json");
    let size = std::fs::metadata(&file).expect("history saved").len();
    assert!(size < 64 * 1024, "{size} bytes");

    // Restarted with a schedule that will not fire during the test: all it shows comes
    // from the file.
    std::fs::write(
        cfg.probe_path("sim-join.toml"),
        probe.replace("schedule = \"* * * * * *\"", "schedule = \"0 0 1 1 *\""),
    )
    .unwrap();
    let second = tokio::task::block_in_place(|| Running::start(&cfg.path, &[]));
    let doc = status(&second.base()).await;
    let p = &doc["probes"][0];
    assert!(p["runs"].as_u64().unwrap() >= 4, "{doc}");
    assert!(p["history"].as_array().unwrap().len() >= 4);
    assert_eq!(p["state"], "failing");
    assert!(p["failing_since"].is_string() && p["last_success"].is_string());
    // Which step failed last depends on the machine's load (tight timeouts); that one did.
    assert!(p["last"]["failed_step"].is_string(), "{doc}");
    assert_eq!(tokio::task::block_in_place(|| second.stop()), Some(0));
    sim.shutdown().await;
}

/// The load errors of a config with this `peers` line.
fn peer_errors(peers: &str) -> String {
    let cfg = TempConfig::new(
        &format!("{peers}\n"),
        &[(
            "p.toml",
            "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n",
        )],
    );
    cfg.load(&[]).unwrap_err().to_string()
}

#[test]
fn peers_must_be_http_base_urls_listed_once() {
    let errors = peer_errors(
        "peers = [\"http://prober-us:9464\", \"ftp://prober-ap\", \"http://prober-us:9464/\"]",
    );
    assert!(
        errors.contains(":5:")
            && errors.contains("peers[1]: must be a prober's base URL like http://prober-us:9464")
            && errors.contains("peers[2]: listed twice"),
        "{errors}"
    );
    // The table form: `url` (required), `region` and `tls_config`, nothing else.
    let errors = peer_errors(
        "peers = [{ url = \"http://prober-us:9464\", zone = \"us\" }, { region = \"x\" }]",
    );
    assert!(
        errors.contains(":5:")
            && errors.contains(
                "peers[0].zone: unknown key (a peer has `url`, `region` and `tls_config`)"
            )
            && errors.contains("peers[1].url: is required"),
        "{errors}"
    );
}

/// A configured peer region names a peer that never answered, with since when; the status API
/// carries delivery health, availability and the hourly roll-ups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answered_is_named_by_its_configured_region() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let sim = start_sim().await;
    let cfg = TempConfig::new(
        &format!("peers = [{{ url = \"http://{dead_addr}\", region = \"ap-southeast-1\" }}]\n"),
        &[("sim-join.toml", &fast_sim_probe(&sim.base_url()))],
    );
    let svc = tokio::task::block_in_place(|| Running::start(&cfg.path, &[]));
    crate::support::wait_probe_runs(&svc.base(), "sim-join", 2).await;
    let page = crate::support::get_text(&svc.base(), "/").await;
    assert!(
        page.contains("ap-southeast-1 <small>(unreachable since "),
        "{page}"
    );
    assert!(
        page.contains("has not answered since this prober started"),
        "{page}"
    );
    assert!(
        !page.contains(&format!("http://{dead_addr} <small>")),
        "{page}"
    );
    let doc = status(&svc.base()).await;
    let p = &doc["probes"][0];
    assert!(
        p["availability"]["day"]["runs"].as_u64().unwrap() >= 2,
        "{doc}"
    );
    assert!(p["availability"]["week"]["ratio"].is_number(), "{doc}");
    assert!(p["hourly"][0]["n"].as_u64().unwrap() >= 2, "{doc}");
    assert_eq!(
        doc["delivery"],
        serde_json::json!([]),
        "no pagers configured"
    );
    assert_eq!(tokio::task::block_in_place(|| svc.stop()), Some(0));
    sim.shutdown().await;
}
