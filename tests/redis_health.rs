//! The `redis` and `http_json` steps against a real `redis-server` and a real HTTP server:
//! gauges exported, thresholds raising the degraded warning while the step succeeds, a paused
//! Redis failing the pub/sub round trip, and refused credentials never quoting the password;
//! counter rates between runs (evictions, a restart); and the same over TLS (`rediss://`, the
//! probe's `ca_file`, an ACL user) against a redis-server with a certificate made by the test.

use joincanary::alert::Severity;
use joincanary::alert::policy::{Decision, ProbeAlertState};
use joincanary::flow::ProbePlan;
use joincanary::flow::run_probe;
use joincanary::metrics::Metrics;
use joincanary::report::{FailureReason, ProbeRun, Trigger};

use crate::support::servers::{self, PauseMode, Redis};
use crate::support::{self, TempConfig, binary, confirmed_page};

async fn redis() -> Redis {
    servers::running_redis().await
}

/// The shipped example, pointed at `redis` (`env` comes after, so it may point elsewhere).
fn example(redis: &Redis, env: &[(&str, &str)]) -> ProbePlan {
    let url = redis.url();
    let mut pairs = vec![("REDIS_URL", url.as_str())];
    pairs.extend_from_slice(env);
    support::example("redis-health.toml", &pairs)
}

/// The warnings the alert policy raises for `run` (the example warns after one run).
fn warnings(plan: &ProbePlan, run: &ProbeRun) -> Vec<String> {
    let cx = support::alert_context(plan);
    let mut state = ProbeAlertState::default();
    state
        .observe(&cx, run, run.finished_at())
        .into_iter()
        .filter_map(|d| match d {
            Decision::Notify(n) if n.severity == Severity::Warning => Some(n.summary),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn healthy_redis_passes_with_gauges_exported() {
    let redis = redis().await;
    let plan = example(&redis, &[]);
    let run = crate::support::run_once(&plan).await;
    assert!(run.success, "{run:#?}");
    let step = &run.steps[0];
    assert!(step.warnings.is_empty(), "{step:#?}");
    for name in [
        "used_memory",
        "connected_clients",
        "blocked_clients",
        "evicted_keys",
    ] {
        assert!(
            step.gauges.contains_key(name),
            "{name} in {:?}",
            step.gauges
        );
    }
    // No maxmemory on a fresh server: no ratio rather than a meaningless one.
    assert!(!step.gauges.contains_key("memory_ratio"));
    assert!(
        step.phases
            .contains_key(&joincanary::report::Phase::RoundTrip)
    );
    assert!(warnings(&plan, &run).is_empty());
    let metrics = Metrics::new("test").expect("metrics");
    metrics.record(&run, None);
    let text = metrics.render();
    assert!(
        text.contains(r#"probe_gauge_value{name="connected_clients",probe="redis-health",region="test",step="redis"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn memory_past_the_threshold_warns_while_the_step_succeeds() {
    let redis = redis().await;
    redis
        .fill_to(64 * 1024 * 1024, 0.9)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let plan = example(&redis, &[]);
    let run = crate::support::run_once(&plan).await;
    assert!(run.success, "the join path still works: {run:#?}");
    let step = &run.steps[0];
    let ratio = step.gauges["memory_ratio"];
    assert!(ratio >= 0.8, "{ratio}");
    let warned = warnings(&plan, &run);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("step \"redis\" memory_ratio") && warned[0].contains("at or above 0.80"),
        "{warned:?}"
    );
    let metrics = Metrics::new("test").expect("metrics");
    metrics.record(&run, None);
    assert!(metrics.render().contains(r#"name="memory_ratio""#));

    // Issue 17: `maxmemory` back to 0 leaves no ratio to read, and the series goes with it
    // (a kept 0.9 would keep a rule on it firing for ever) while `used_memory` is fresh.
    redis.restore().await.unwrap_or_else(|e| panic!("{e}"));
    let run = crate::support::run_once(&plan).await;
    assert!(run.success, "{run:#?}");
    assert!(!run.steps[0].gauges.contains_key("memory_ratio"));
    metrics.record(&run, None);
    let text = metrics.render();
    assert!(!text.contains(r#"name="memory_ratio""#), "{text}");
    assert!(text.contains(r#"name="used_memory""#), "{text}");
    // A run that read nothing (Redis gone) leaves no gauge of that step at all.
    let mut failed = run.clone();
    failed.success = false;
    failed.steps[0].success = false;
    failed.steps[0].gauges.clear();
    metrics.record(&failed, None);
    assert!(!metrics.render().contains("probe_gauge_value{"));
}

#[tokio::test]
async fn evictions_between_two_runs_warn_with_their_rate() {
    let redis = redis().await;
    let plan = example(&redis, &[]);
    let first = crate::support::run_once(&plan).await;
    assert!(first.success, "{first:#?}");
    // The first run has nothing to compare with: no rate, no warning.
    assert!(
        !first.steps[0]
            .gauges
            .contains_key("evicted_keys_per_second"),
        "{:?}",
        first.steps[0].gauges
    );
    let evicted = redis.evict(100).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(evicted > 0, "allkeys-lru evicted nothing");

    let run = crate::support::run_once(&plan).await;
    assert!(run.success, "evictions warn, they do not fail: {run:#?}");
    let step = &run.steps[0];
    let per_minute = step.gauges["evicted_keys_per_minute"];
    let per_second = step.gauges["evicted_keys_per_second"];
    assert!(per_second > 0.0, "{:?}", step.gauges);
    assert!((per_minute - per_second * 60.0).abs() < 1e-6 * per_minute);
    // The total is still there beside its rate; no memory_ratio (the limit is off again).
    assert!(step.gauges["evicted_keys"] >= 1.0);
    let warned = warnings(&plan, &run);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("step \"redis\" evicted_keys_per_minute ")
            && warned[0].contains("at or above 1"),
        "{warned:?}"
    );
    assert!(!warned[0].contains("memory_ratio"), "{warned:?}");
    let metrics = Metrics::new("test").expect("metrics");
    metrics.record(&run, None);
    let text = metrics.render();
    for name in ["evicted_keys_per_second", "evicted_keys_per_minute"] {
        assert!(text.contains(&format!(r#"name="{name}""#)), "{text}");
    }
}

#[tokio::test]
async fn a_restart_resets_the_counters_without_a_negative_or_huge_rate() {
    let mut redis = redis().await;
    let plan = example(&redis, &[]);
    redis.evict(100).await.unwrap_or_else(|e| panic!("{e}"));
    let before = crate::support::run_once(&plan).await;
    assert!(before.steps[0].gauges["evicted_keys"] > 0.0, "{before:#?}");

    redis.restart().await.unwrap_or_else(|e| panic!("{e}"));
    let after = crate::support::run_once(&plan).await;
    assert!(after.success, "{after:#?}");
    let step = &after.steps[0];
    assert_eq!(step.gauges["evicted_keys"], 0.0, "a fresh Redis");
    // Counters began again: no rate this run (not a negative one, not `0 - N`).
    for name in ["evicted_keys_per_second", "evicted_keys_per_minute"] {
        assert!(!step.gauges.contains_key(name), "{:?}", step.gauges);
    }
    assert!(warnings(&plan, &after).is_empty());

    // The next run compares with the restarted Redis: a rate again, and it is zero.
    let next = crate::support::run_once(&plan).await;
    assert_eq!(next.steps[0].gauges["evicted_keys_per_second"], 0.0);
    assert!(warnings(&plan, &next).is_empty());
}

#[tokio::test]
async fn paused_redis_fails_the_pub_sub_round_trip() {
    let redis = redis().await;
    // Writes (PUBLISH among them) wait; PING and INFO are still served.
    redis
        .pause(20_000, PauseMode::Write)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let plan = example(&redis, &[]);
    // On time: Redis's pause is on the real clock (three 3 s runs at most inside its 20 s).
    let run = support::on_time::on_time(|| crate::support::run_once(&plan)).await;
    redis.restore().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!run.success);
    assert_eq!(run.failed_step.as_deref(), Some("redis"));
    assert_eq!(run.reason, Some(FailureReason::Timeout), "{run:#?}");
    let error = run.error.unwrap_or_default();
    assert!(error.contains("pub/sub round trip"), "{error}");
}

#[tokio::test]
async fn wrong_password_fails_clearly_without_quoting_it() {
    let redis = redis().await;
    redis
        .ok(&["CONFIG", "SET", "requirepass", "the-right-password"])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let wrong = "a-wrong-password-42";
    let plan = example(&redis, &[("REDIS_PASSWORD", wrong)]);
    let run = crate::support::run_once(&plan).await;
    assert!(!run.success);
    assert_eq!(run.reason, Some(FailureReason::ServerError));
    let error = run.error.clone().unwrap_or_default();
    assert!(error.contains("refused the credentials"), "{error}");
    let json = serde_json::to_string(&run).expect("json");
    assert!(!json.contains(wrong), "{json}");
}

#[tokio::test]
async fn unreachable_redis_fails_with_connect() {
    let redis = redis().await;
    let url = redis.url();
    drop(redis);
    let path = support::root().join("probes/examples/redis-health.toml");
    let text = std::fs::read_to_string(path).expect("example exists");
    let cfg = TempConfig::new("", &[("redis-health.toml", &text)]);
    let plan = cfg.load(&[("REDIS_URL", url.as_str())]).expect("loads");
    let run = crate::support::run_once(&plan.probes[0]).await;
    assert!(!run.success);
    assert_eq!(run.reason, Some(FailureReason::Connect), "{run:#?}");
}

#[tokio::test]
async fn http_json_gauges_with_thresholds() {
    let app = axum::Router::new().route(
        "/asg",
        axum::routing::get(|| async {
            axum::Json(
                serde_json::json!({"group": {"desired": 4, "in_service": 2}, "queue": "x",
                                          "nan": "NaN", "inf": "-inf"}),
            )
        }),
    );
    let base = support::serve_router(app).await;
    let probe = format!(
        r#"
name = "capacity"
[[steps]]
name = "asg"
kind = "http_json"
url = "http://{base}/asg"
gauges = {{ desired = "$.group.desired", in_service = "/group/in_service" }}
warn_below = {{ in_service = 3 }}
warn_above = {{ desired = 10 }}
"#
    );
    let plan = support::probe_from(&probe, &[]);
    let run = crate::support::run_once(&plan).await;
    assert!(run.success, "{run:#?}");
    let step = &run.steps[0];
    assert_eq!(step.gauges["desired"], 4.0);
    assert_eq!(step.gauges["in_service"], 2.0);
    assert_eq!(
        step.warnings,
        vec!["step \"asg\" in_service 2 below 3".to_string()]
    );

    let not_a_number = probe.replace("/group/in_service", "/queue");
    let run = crate::support::run_once(&support::probe_from(&not_a_number, &[])).await;
    assert_eq!(run.reason, Some(FailureReason::BodyMismatch), "{run:#?}");
    assert!(run.error.unwrap_or_default().contains("gauge `in_service`"));

    // Rust parses `NaN` and `-inf` as numbers; the status document could not carry them.
    for pointer in ["/nan", "/inf"] {
        let not_finite = probe.replace("/group/in_service", pointer);
        let run = crate::support::run_once(&support::probe_from(&not_finite, &[])).await;
        assert_eq!(run.reason, Some(FailureReason::BodyMismatch), "{run:#?}");
        assert!(
            run.error
                .as_deref()
                .unwrap_or_default()
                .contains("is not a number"),
            "{run:#?}"
        );
    }
}

/// `check`'s messages for the new keys, with file:line.
fn errors_for(probe: &str) -> Vec<String> {
    TempConfig::new("", &[("p.toml", probe)]).errors()
}

#[test]
fn bad_redis_and_http_json_keys_are_rejected_with_their_line() {
    let errs = errors_for("[[steps]]\nname = \"r\"\nkind = \"redis\"\nurl = \"http://h/\"\n");
    assert_eq!(
        errs,
        ["probes/p.toml:4:7: steps[0].url: `http://h/` must be a redis or rediss URL with a host"]
    );
    let errs = errors_for(
        "[[steps]]\nname = \"r\"\nkind = \"redis\"\nurl = \"redis://h\"\nwarn_above = { memory = 0.9 }\n",
    );
    assert_eq!(
        errs,
        [
            "probes/p.toml:5:25: steps[0].warn_above.memory: `memory` is not a gauge of this step (it has used_memory, maxmemory, memory_ratio, rejected_connections, evicted_keys, connected_clients, blocked_clients, or the rate of an INFO counter, <counter>_per_second or <counter>_per_minute, for the counters evicted_keys, rejected_connections, expired_keys, evicted_clients, total_connections_received, total_commands_processed, total_net_input_bytes, total_net_output_bytes, total_error_replies, unexpected_error_replies, keyspace_hits, keyspace_misses, total_eviction_exceeded_time, total_forks, sync_full, sync_partial_ok, sync_partial_err, total_reads_processed, total_writes_processed, expired_time_cap_reached_count, acl_access_denied_auth, client_query_buffer_limit_disconnections, client_output_buffer_limit_disconnections)"
        ]
    );
    // A rate of something that is not a counter (memory goes down as well as up).
    let errs = errors_for(
        "[[steps]]\nname = \"r\"\nkind = \"redis\"\nurl = \"redis://h\"\nwarn_above = { used_memory_per_second = 9 }\n",
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("probes/p.toml:5:41: steps[0].warn_above.used_memory_per_second: `used_memory_per_second` is not a gauge of this step"),
        "{errs:?}"
    );
    let errs = errors_for(
        "[[steps]]\nname = \"h\"\nkind = \"http\"\nurl = \"http://h/\"\npassword = \"x\"\n",
    );
    assert_eq!(
        errs,
        [
            "probes/p.toml:5:12: steps[0].password: `password` does not apply to an http step (it is a key of redis)"
        ]
    );
    let errs = errors_for("[[steps]]\nname = \"j\"\nkind = \"http_json\"\nurl = \"http://h/\"\n");
    assert_eq!(
        errs,
        [
            "probes/p.toml:2:8: steps[0].gauges: an http_json step needs `gauges` (name = JSON pointer of a number)"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// TLS

/// The ACL user the TLS tests log in as (not `default`: ACL users are what production uses).
const ACL_USER: &str = "canary";
const ACL_PASSWORD: &str = "tls-canary-secret-31";

async fn redis_tls() -> Redis {
    let redis = servers::start_redis_tls()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    redis
        .ok(&[
            "ACL",
            "SETUSER",
            ACL_USER,
            "on",
            &format!(">{ACL_PASSWORD}"),
            // What docs/cause-checks.md tells operators to grant, and nothing more.
            "resetchannels",
            "&joincanary:canary:*",
            "-@all",
            "+ping",
            "+info",
            "+publish",
            "+subscribe",
        ])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A run that forgot to log in (as `default`) would fail at INFO, not pass unnoticed.
    redis
        .ok(&["ACL", "SETUSER", "default", "-info"])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    redis
}

/// The shipped example with `ca_file = "ca.pem"` (holding `ca_pem`), in a config directory of
/// its own, pointed at the TLS port.
fn tls_config(ca_pem: &str) -> TempConfig {
    let path = support::root().join("probes/examples/redis-health.toml");
    let text = std::fs::read_to_string(path).expect("example exists");
    let text = text.replacen(
        "timeout = \"10s\"",
        "timeout = \"10s\"\nca_file = \"ca.pem\"",
        1,
    );
    assert!(text.contains("ca_file"), "the example sets a probe timeout");
    let cfg = TempConfig::new("", &[("redis-health.toml", &text)]);
    std::fs::write(cfg.probe_path("ca.pem"), ca_pem).expect("write ca.pem");
    cfg
}

fn tls_plan(cfg: &TempConfig, redis: &Redis, password: &str) -> ProbePlan {
    let url = redis.tls_url();
    let plan = cfg
        .load(&[
            ("REDIS_URL", url.as_str()),
            ("REDIS_USERNAME", ACL_USER),
            ("REDIS_PASSWORD", password),
        ])
        .unwrap_or_else(|e| panic!("loads: {e}"));
    plan.probes[0].as_ref().clone()
}

#[tokio::test]
async fn tls_ping_info_and_pub_sub_with_an_acl_user() {
    support::init();
    let redis = redis_tls().await;
    let cfg = tls_config(redis.ca_pem());
    let plan = tls_plan(&cfg, &redis, ACL_PASSWORD);
    let run = crate::support::run_once(&plan).await;
    assert!(run.success, "{run:#?}");
    let step = &run.steps[0];
    assert!(step.gauges.contains_key("connected_clients"), "{step:#?}");
    assert!(
        step.phases
            .contains_key(&joincanary::report::Phase::RoundTrip)
    );
    // Over TLS (the port speaks nothing else) as that user: `default` may not run INFO here.
}

#[tokio::test]
async fn tls_with_the_wrong_ca_fails_with_reason_tls() {
    support::init();
    let redis = redis_tls().await;
    let other = servers::test_ca().unwrap_or_else(|e| panic!("{e}"));
    let cfg = tls_config(&other.ca_pem);
    let plan = tls_plan(&cfg, &redis, ACL_PASSWORD);
    let run = crate::support::run_once(&plan).await;
    assert!(!run.success);
    assert_eq!(run.failed_step.as_deref(), Some("redis"));
    assert_eq!(run.reason, Some(FailureReason::Tls), "{run:#?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("TLS handshake with `") && error.contains("certificate"),
        "{error}"
    );

    // System roots only (no ca_file): the test CA is trusted by nobody either.
    let url = redis.tls_url();
    let bare = example(&redis, &[("REDIS_URL", url.as_str())]);
    let run = crate::support::run_once(&bare).await;
    assert_eq!(run.reason, Some(FailureReason::Tls), "{run:#?}");

    // Plain redis:// to the TLS port is not a TLS failure: the server hangs up.
    let plain = url.replace("rediss://", "redis://");
    let run = run_probe(
        &example(&redis, &[("REDIS_URL", plain.as_str())]),
        "test",
        Trigger::Manual,
        &joincanary::clock::Clock::system(),
    )
    .await;
    assert!(!run.success);
    assert_ne!(run.reason, Some(FailureReason::Tls), "{run:#?}");
}

#[tokio::test]
async fn tls_wrong_password_fails_clearly_and_is_never_shown() {
    support::init();
    let redis = redis_tls().await;
    let cfg = tls_config(redis.ca_pem());
    let wrong = "tls-wrong-password-77";
    let plan = tls_plan(&cfg, &redis, wrong);
    let run = crate::support::run_once(&plan).await;
    assert!(!run.success);
    assert_eq!(run.reason, Some(FailureReason::ServerError), "{run:#?}");
    let error = run.error.clone().unwrap_or_default();
    assert_eq!(
        error, "connect: redis refused the credentials: authentication failed",
        "{run:#?}"
    );
    // Status JSON (the run as the status API serves it) and the page on-call would get.
    let json = serde_json::to_string(&run).expect("json");
    assert!(!json.contains(wrong), "{json}");
    let page = confirmed_page(&plan, &run);
    assert!(page.contains("refused the credentials"), "{page}");
    assert!(!page.contains(wrong), "{page}");

    // Logs and output of the binary, at debug level, in every format.
    let url = redis.tls_url();
    for format in ["text", "json"] {
        let out = std::process::Command::new(binary())
            .env_remove("JOINCANARY_CONFIG")
            .env("REDIS_URL", &url)
            .env("REDIS_USERNAME", ACL_USER)
            .env("REDIS_PASSWORD", wrong)
            .args(["once", "--config"])
            .arg(&cfg.path)
            .args([
                "--format",
                "json",
                "--log.level",
                "debug",
                "--log.format",
                format,
            ])
            .output()
            .expect("binary runs");
        assert_eq!(out.status.code(), Some(1));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stdout.contains("refused the credentials"), "{stdout}");
        assert!(!stdout.contains(wrong), "{stdout}");
        assert!(!stderr.contains(wrong), "{stderr}");
    }
}

/// Issue 17: a refused Redis connection read `connect failed: I/O error` where the http and
/// websocket steps say `Connection refused (os error 111)`; it says the same now.
#[tokio::test]
async fn a_refused_connection_is_worded_as_for_http_and_websockets() {
    let (_held, port) = support::hostile::refusing_port();
    let url = format!("redis://127.0.0.1:{port}");
    let text = std::fs::read_to_string(support::root().join("probes/examples/redis-health.toml"))
        .expect("example exists");
    let cfg = TempConfig::new("", &[("redis-health.toml", &text)]);
    let plan = cfg
        .load(&[("REDIS_URL", url.as_str())])
        .unwrap_or_else(|e| panic!("{e}"));
    let run = crate::support::run_once(&plan.probes[0]).await;
    assert_eq!(run.reason, Some(FailureReason::Connect), "{run:#?}");
    let error = run.error.unwrap_or_default();
    // The step opens its connection as the http step does, and says it the same way.
    assert_eq!(
        error,
        format!("cannot connect to 127.0.0.1:{port}: Connection refused (os error 111)")
    );
    let http = support::probe_from(
        &format!("[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\n"),
        &[],
    );
    let run = crate::support::run_once(&http).await;
    assert!(
        run.error
            .unwrap_or_default()
            .ends_with(": Connection refused (os error 111)"),
        "the same words as an http step"
    );
}
