//! Reasons that point at the right layer (issue 9): each hostile loopback server or broken local
//! resource gets the reason on-call should read — `protocol`, `tls`, `dns`, `no_match`, `local`.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use joincanary::report::{FailureReason, Phase, ProbeRun};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::hostile::{http_server, silent_server, ws_server};
use crate::support::receiver::Receiver;
use crate::support::running::Running;
use crate::support::{self, TempConfig, probe_from};

/// Reads one request head on up to 4 connections and answers with `raw` bytes as they are,
/// then holds the connection (`hold`) or closes it.
async fn raw_http(raw: &'static [u8], hold: bool) -> String {
    http_server(4, move |mut s| async move {
        let _ = s.write_all(raw).await;
        if hold {
            // The reason must come from the bytes, not from a close.
            let mut buf = [0u8; 64];
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        }
    })
    .await
}

async fn run(text: &str) -> ProbeRun {
    crate::support::run_once(&probe_from(text, &[])).await
}

fn http_probe(url: &str) -> String {
    one_step("http", url, "1s")
}

/// A probe of one step `login` of `kind` at `url`, with its own `timeout`, under a 3 s deadline.
fn one_step(kind: &str, url: &str, timeout: &str) -> String {
    format!(
        "timeout = \"3s\"\n[[steps]]\nname = \"login\"\nkind = \"{kind}\"\nurl = \"{url}\"\ntimeout = \"{timeout}\"\n"
    )
}

/// A websocket flow; `expect_extra` goes into the `ws_expect` step (its own timeout, say).
fn ws_probe(addr: &str, probe_timeout: &str, expect_extra: &str) -> String {
    support::ws_join_probe(
        addr,
        &format!("timeout = \"{probe_timeout}\""),
        expect_extra,
    )
}

/// HTTP replies that break the protocol in the body, not the head: each is `protocol`. A reply
/// cut short by a close is the connection failing (`connect`), not the protocol.
#[tokio::test]
async fn malformed_bodies_are_protocol() {
    let cut_short = raw_http(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello",
        false,
    )
    .await;
    let cut = run(&http_probe(&format!("http://{cut_short}/"))).await;
    assert_eq!(cut.reason, Some(FailureReason::Connect), "{cut:#?}");
    let cases: [(&str, &'static [u8]); 3] = [
        (
            "chunk size that is not hex",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk without its CRLF",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        ),
        (
            "garbage instead of a status line",
            b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        ),
    ];
    for (name, raw) in cases {
        let addr = raw_http(raw, true).await;
        let run = run(&http_probe(&format!("http://{addr}/"))).await;
        assert_eq!(
            run.reason,
            Some(FailureReason::Protocol),
            "{name}: {run:#?}"
        );
        assert_eq!(run.failed_step.as_deref(), Some("login"), "{name}");
    }
}

/// A TLS peer that accepts and never speaks is a TLS stall, not "waiting for the reply". On the
/// paused clock (the servers are in this runtime): on the real one, a timer a second late made
/// the run the prober's own failure (`local`), not the server's.
#[tokio::test(start_paused = true)]
async fn stalled_tls_handshake_is_tls() {
    for kind in ["http", "ws_connect"] {
        let addr = silent_server().await;
        let scheme = if kind == "http" { "https" } else { "wss" };
        let run = run(&one_step(kind, &format!("{scheme}://{addr}/"), "500ms")).await;
        assert_eq!(run.reason, Some(FailureReason::Tls), "{kind}: {run:#?}");
        let error = run.error.clone().unwrap_or_default();
        assert!(
            error.contains("waiting for the TLS handshake") && error.contains("step's timeout"),
            "{kind}: {error}"
        );
        let phases = &run.steps[0].phases;
        assert!(phases.contains_key(&Phase::Connect), "{kind}: {phases:?}");
        assert!(
            phases.get(&Phase::Tls).is_some_and(|d| !d.is_zero()),
            "the stalled handshake's time is reported: {phases:?}"
        );
    }
}

/// A step that runs out of time past its connection says what it was waiting for, in the kind's
/// own words (each kind's `waiting`), and which clock ran out. On the paused clock (the servers
/// are in this runtime): the step's 1 s is then the step's own, not a loaded machine's time to
/// connect and read the head, and no timer is late (which makes the run `local`).
#[tokio::test(start_paused = true)]
async fn a_timeout_names_what_the_step_was_waiting_for() {
    let stalled_body = raw_http(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello", true).await;
    let cases = [
        (
            "http",
            format!("http://{}/", silent_server().await),
            "waiting for the reply",
        ),
        (
            "http",
            format!("http://{stalled_body}/"),
            "reading the body",
        ),
        (
            "ws_connect",
            format!("ws://{}/", silent_server().await),
            "opening the websocket",
        ),
    ];
    for (kind, url, words) in cases {
        let run = run(&one_step(kind, &url, "1s")).await;
        assert_eq!(run.reason, Some(FailureReason::Timeout), "{kind}: {run:#?}");
        let error = run.error.clone().unwrap_or_default();
        assert!(
            error.starts_with("timed out after ")
                && error.ends_with(&format!(" {words} (the step's timeout)")),
            "{kind} {url}: {error}"
        );
    }
}

/// The rule: a `ws_expect` that runs out of time is `no_match` whichever clock ran out (its
/// own timeout or the probe's deadline), with or without other frames; the message names the
/// clock and counts the frames skipped.
#[tokio::test]
async fn ws_expect_out_of_time_is_no_match_whichever_clock() {
    struct Case {
        name: &'static str,
        probe_timeout: &'static str,
        expect_extra: &'static str,
        /// Non-matching frames the server sends after the join.
        noise: usize,
        clock: &'static str,
        skipped: &'static str,
    }
    let cases = [
        Case {
            name: "silent, step timeout",
            probe_timeout: "5s",
            expect_extra: "timeout = \"300ms\"",
            noise: 0,
            clock: "the step's timeout",
            skipped: "0 frames skipped",
        },
        Case {
            name: "silent, probe deadline",
            probe_timeout: "1s",
            expect_extra: "",
            noise: 0,
            clock: "the probe's deadline",
            skipped: "0 frames skipped",
        },
        Case {
            name: "noise, step timeout",
            probe_timeout: "5s",
            expect_extra: "timeout = \"300ms\"",
            noise: 3,
            clock: "the step's timeout",
            skipped: "3 frames skipped",
        },
        Case {
            name: "noise, probe deadline",
            probe_timeout: "1s",
            expect_extra: "timeout = \"4s\"",
            noise: 3,
            clock: "the probe's deadline",
            skipped: "3 frames skipped",
        },
    ];
    for case in cases {
        let noise = case.noise;
        let addr = ws_server(move |mut ws| async move {
            let _ = ws.next().await;
            for i in 0..noise {
                let _ = ws
                    .send(Message::text(format!(r#"{{"type":"other","n":{i}}}"#)))
                    .await;
            }
            // Then nothing until the client gives up (bounded).
            let _ = tokio::time::timeout(Duration::from_secs(6), ws.next()).await;
        })
        .await;
        let run = run(&ws_probe(&addr, case.probe_timeout, case.expect_extra)).await;
        assert_eq!(
            run.failed_step.as_deref(),
            Some("signalling"),
            "{}",
            case.name
        );
        assert_eq!(
            run.reason,
            Some(FailureReason::NoMatch),
            "{}: {run:#?}",
            case.name
        );
        let error = run.error.clone().unwrap_or_default();
        assert!(
            error.contains(case.clock) && error.contains(case.skipped),
            "{}: {error}",
            case.name
        );
    }
}

/// WebSocket ping/pong control frames are the transport's business: a flood of them never
/// counts against `max_frames`.
#[tokio::test]
async fn ws_control_frames_do_not_count_against_max_frames() {
    let addr = ws_server(|mut ws| async move {
        let _ = ws.next().await;
        for i in 0..50u8 {
            let frame = if i % 2 == 0 {
                Message::Ping(vec![i].into())
            } else {
                Message::Pong(vec![i].into())
            };
            if ws.send(frame).await.is_err() {
                return;
            }
        }
        let _ = ws.send(Message::text(r#"{"type":"joined"}"#)).await;
        let _ = tokio::time::timeout(Duration::from_secs(3), ws.next()).await;
    })
    .await;
    let run = run(&ws_probe(&addr, "5s", "timeout = \"3s\"\nmax_frames = 2")).await;
    assert!(run.success, "{run:#?}");
}

/// Runs `commands` (sh, with `$BIN` and `$CONFIG` set) in a network and mount namespace of the
/// test's own (`unshare -n -m`) where name lookups never come back: lo up, a resolv.conf naming
/// 127.0.0.1 with a 30 s timeout and 5 attempts, and a UDP listener there that never answers.
/// Returns the output, or `None` when it was still running after 20 s (then it is killed): the
/// lookups would block for minutes, so this bound asserts "it stops", not a timing.
fn with_silent_dns(config: &std::path::Path, commands: &str) -> Option<std::process::Output> {
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions timeout:30 attempts:5\n",
    )
    .unwrap();
    let ready = dir.path().join("ready");
    // The listener stops by itself after 60 s; the script stops it as soon as it is done.
    let silent_dns = "import socket,sys\n\
        s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
        s.bind(('127.0.0.1',53))\n\
        open(sys.argv[1],'w').close()\n\
        s.settimeout(60)\n\
        try:\n\
        \x20   [s.recvfrom(512) for _ in range(1000)]\n\
        except OSError:\n\
        \x20   pass\n";
    let script = format!(
        r#"
set -e
ip link set lo up
mount --bind "$RESOLV" /etc/resolv.conf
/usr/bin/python3 -c "$SILENT_DNS" "$READY" &
dns=$!
trap 'kill $dns 2>/dev/null' EXIT
for _ in $(seq 200); do [ -e "$READY" ] && break; sleep 0.05; done
[ -e "$READY" ] || {{ echo "silent DNS server did not start" >&2; exit 99; }}
set +e
{commands}
"#
    );
    let mut child = Command::new("unshare")
        .args(["-n", "-m", "--", "sh", "-c", &script])
        .env("RESOLV", &resolv)
        .env("SILENT_DNS", silent_dns)
        .env("READY", &ready)
        .env("BIN", support::binary())
        .env("CONFIG", config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "this test needs `unshare` (util-linux, root), `ip` and /usr/bin/python3: see .ci/run",
        );
    let exited = support::exit_within(&mut child, Duration::from_secs(20)).is_some();
    let out = child.wait_with_output().unwrap();
    assert_ne!(
        out.status.code(),
        Some(99),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exited.then_some(out)
}

/// A lookup that never comes back: `dns` within the step's timeout, the `dns` phase reported,
/// for `http`, `ws_connect` and `redis` steps alike, and `once` exits at its deadline although
/// getaddrinfo is still blocked in threads.
#[test]
fn resolver_that_never_answers_is_dns_within_the_deadline() {
    let probe = |kind: &str, url: &str| {
        format!(
            "timeout = \"2s\"\n[[steps]]\nname = \"login\"\nkind = \"{kind}\"\nurl = \"{url}\"\ntimeout = \"1s\"\n"
        )
    };
    let cfg = TempConfig::new(
        "",
        &[
            (
                "a-http.toml",
                &probe("http", "http://canary.joincanary.test/api/login"),
            ),
            (
                "b-ws.toml",
                &probe("ws_connect", "wss://canary.joincanary.test/ws"),
            ),
            (
                "c-redis.toml",
                &probe("redis", "redis://canary-redis.joincanary.test:6379"),
            ),
        ],
    );
    let out = with_silent_dns(&cfg.path, r#""$BIN" once --format json --config "$CONFIG""#)
        .expect("`once` still running 20 s after three 2 s deadlines");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("json output; stderr: {stderr}"));
    assert_eq!(out.status.code(), Some(1), "{json} {stderr}");
    let probes = json["probes"].as_array().cloned().unwrap_or_default();
    assert_eq!(probes.len(), 3, "{json}");
    for probe in &probes {
        assert_eq!(probe["reason"], "dns", "{probe}");
        assert_eq!(probe["failed_step"], "login");
        let error = probe["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("resolving the host name") && error.contains("step's timeout"),
            "{error}"
        );
        assert!(
            probe["steps"][0]["phases"]["dns"].as_f64().is_some(),
            "the dns phase is reported: {probe}"
        );
    }
}

/// SIGTERM while lookups hang: `run` stops cleanly, without waiting for the blocked threads.
#[test]
fn run_stops_on_sigterm_while_lookups_hang() {
    let cfg = TempConfig::new(
        "",
        &[(
            "p.toml",
            "schedule = \"* * * * * *\"\ntimeout = \"900ms\"\n[[steps]]\nname = \"login\"\nkind = \"http\"\nurl = \"http://canary.joincanary.test/api/login\"\n",
        )],
    );
    // Waits for two failed runs (so lookups are stuck in threads), then SIGTERM.
    let out = with_silent_dns(
        &cfg.path,
        r#"
"$BIN" --log.format logfmt run --config "$CONFIG" 2>"$CONFIG.log" &
pid=$!
for _ in $(seq 300); do
  [ "$(grep -c 'reason=dns' "$CONFIG.log")" -ge 2 ] && break
  sleep 0.05
done
kill -TERM $pid
wait $pid
code=$?
cat "$CONFIG.log" >&2
exit $code
"#,
    )
    .expect("`run` still running 20 s after SIGTERM with lookups hanging");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr
            .lines()
            .filter(|l| l.contains("msg=\"probe run failed\"") && l.contains("reason=dns"))
            .count()
            >= 2,
        "{stderr}"
    );
}

/// A run that fails because the prober is out of file descriptors says `local` (in status and
/// metrics) and pages nobody, while a real failure in the same process still pages. `run` is
/// started with a hard limit of 64 open files; the `local` probe holds 80 websockets to the
/// sim at once, so one of its connects fails with EMFILE. Its deadline is far beyond that: with
/// 1.5 s, a machine loaded to 29 opened some 30 websockets in that time, and the run timed out
/// (and paged) before it ran out of descriptors; it has 9 s now, every 10 s.
#[tokio::test]
async fn out_of_file_descriptors_is_local_and_never_pages() {
    let sim = support::start_sim().await;
    let (hook, hook_url) = Receiver::start(200).await;
    let base = sim.base_url();
    let mut local = format!(
        r#"schedule = "*/10 * * * * *"
timeout = "9s"
[[steps]]
name = "login"
kind = "http"
method = "POST"
url = "{base}/api/login"
json = {{ username = "canary", password = "canary-pass" }}
extract = {{ token = {{ json = "$.token" }} }}
"#
    );
    for i in 0..80 {
        local.push_str(&format!(
            "[[steps]]\nname = \"ws{i}\"\nkind = \"ws_connect\"\nconnection = \"c{i}\"\nurl = \"{base}/ws?token={{{{token}}}}\"\n"
        ));
    }
    // The control: a platform failure (nothing listens on port 1) in the same process pages.
    let broken = "schedule = \"*/2 * * * * *\"\ntimeout = \"1s\"\n[[steps]]\nname = \"login\"\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\n";
    let cfg = TempConfig::new(
        &format!(
            r#"[alerting]
confirm_delay = "200ms"
failure_threshold = 2

[[pager]]
name = "hook"
type = "webhook"
url = "{hook_url}/hook"
retry_base = "50ms"
"#
        ),
        &[("local.toml", &local), ("broken.toml", broken)],
    );
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=64:64")
        .arg("--")
        .arg(support::binary())
        .args(["--log.format", "logfmt", "run", "--config"])
        .arg(&cfg.path)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let svc = Running::spawn(cmd);
    let local_failures = |log: &str| {
        log.lines()
            .filter(|l| {
                l.contains("msg=\"probe run failed\"")
                    && l.contains("probe=local")
                    && l.contains("reason=local")
            })
            .count()
    };
    // Bounded: runs every 10 s; three local failures (the confirming run one of them) take
    // 10 to 20 s.
    support::holds_within(Duration::from_secs(60), Duration::from_millis(100), || {
        local_failures(&svc.log()) >= 3 && !hook.accepted().is_empty()
    })
    .await;
    let log = svc.log();
    assert!(local_failures(&log) >= 3, "{log}");
    assert!(
        log.contains("out of file descriptors"),
        "the error names the cause: {log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("probe=local") && l.contains("reason=connect")),
        "no local failure disguised as connect: {log}"
    );
    let pages = hook.accepted();
    assert!(
        pages.iter().any(|p| p["probe"] == "broken"),
        "the control probe pages: {pages:?}"
    );
    assert!(
        pages.iter().all(|p| p["probe"] != "local"),
        "a local failure paged: {pages:?}"
    );
    let metrics = crate::support::get_text(&svc.base(), "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("probe_failures_total{")
                && l.contains("probe=\"local\"")
                && l.contains("reason=\"local\"")),
        "{metrics}"
    );
    let code = svc.stop();
    assert_eq!(code, Some(0));
}

/// A 401 with an empty body, as an API gateway or a bearer-token check sends it (RFC 6750):
/// the error says the challenge's own words, for an `http` step and for a refused websocket
/// upgrade alike. Before: `status 401 (expected 2xx): ` and nothing else.
#[tokio::test]
async fn a_401_without_a_body_says_the_servers_challenge() {
    const REPLY: &[u8] = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"meet\", \
        error=\"invalid_token\", error_description=\"The access token expired\"\r\n\
        Content-Length: 0\r\nConnection: close\r\n\r\n";
    let addr = raw_http(REPLY, false).await;
    for (kind, url, reason) in [
        (
            "http",
            format!("http://{addr}/api"),
            FailureReason::HttpStatus,
        ),
        (
            "ws_connect",
            format!("ws://{addr}/ws"),
            FailureReason::WsHandshake,
        ),
    ] {
        let run = run(&format!(
            "timeout = \"5s\"\n[[steps]]\nname = \"s\"\nkind = \"{kind}\"\nurl = \"{url}\"\n"
        ))
        .await;
        assert_eq!(run.reason, Some(reason), "{run:#?}");
        let error = run.error.unwrap_or_default();
        assert!(
            error.starts_with("HTTP 401: invalid_token: The access token expired — "),
            "{kind}: {error}"
        );
    }
}
