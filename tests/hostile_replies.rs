//! Issue 17, a fresh round of hostile replies: heads of a megabyte or of 10,000 headers, a
//! reply trickled one byte a second, Redis replies nested 10,000 deep or counting 2^31
//! elements, an SMTP reply of endless lines, a peer whose JSON nests without end or that
//! trickles. Each ends with a reason, on time, without a panic or the memory it asked for.

use std::time::Duration;

use joincanary::report::FailureReason;
use tokio::io::AsyncWriteExt as _;

use crate::hostile::{fixed_http, login_probe, redis_flood, run, test_page_error};
use crate::support::hostile::{http_server, pouring_greeting};
use crate::support::{Service, TempConfig, fast_sim_probe, start_sim};

/// A reply head of 1 MiB in one header, or of 10,000 headers: refused on the head (hyper's
/// limits), before the step's deadline.
#[tokio::test]
async fn reply_heads_of_a_megabyte_or_ten_thousand_headers_fail_at_once() {
    let one = format!(
        "HTTP/1.1 200 OK\r\nx-a: {}\r\ncontent-length: 0\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many = format!(
        "HTTP/1.1 200 OK\r\n{}content-length: 0\r\n\r\n",
        "x-a: b\r\n".repeat(10_000)
    );
    for head in [one, many] {
        let addr = fixed_http(head.into_bytes()).await;
        let run = run(&login_probe(&addr, "")).await;
        assert_eq!(run.reason, Some(FailureReason::Protocol), "{run:#?}");
        let error = run.error.clone().unwrap_or_default();
        assert!(error.contains("too large"), "names it: {error}");
    }
}

/// A server that answers every request (up to 4) one byte a second: the head and then an
/// endless body.
async fn trickling_server() -> String {
    http_server(4, |mut s| async move {
        let reply = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 100000\r\n\r\n";
        for b in reply.iter().chain(std::iter::repeat_n(&b'x', 600)) {
            if s.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await
}

/// Slow loris: each byte resets no timer, the step's deadline holds (paused clock: the
/// server's seconds and the step's are the same clock).
#[tokio::test(start_paused = true)]
async fn a_reply_trickled_one_byte_a_second_ends_at_the_step_deadline() {
    let addr = trickling_server().await;
    let started = tokio::time::Instant::now();
    let run = run(&login_probe(&addr, "")).await;
    let took = started.elapsed();
    assert_eq!(run.reason, Some(FailureReason::Timeout), "{run:#?}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "deadline fired at {took:?}"
    );
}

/// The same trickle from a pager: the delivery gives up at the pager's `timeout`.
#[tokio::test(start_paused = true)]
async fn a_pager_trickling_its_reply_gives_up_at_its_timeout() {
    let addr = trickling_server().await;
    let started = tokio::time::Instant::now();
    let error = test_page_error(&format!(
        "[[pager]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://{addr}/hook\"\ntimeout = \"3s\"\n"
    ))
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}: {error}");
    assert!(!error.is_empty());
}

/// Nested 10,000 deep (the client's parser stops at 100 levels), or announcing 2^31 and 2^63
/// elements (nothing reserved for them): an error with a reason, the read stopped.
#[tokio::test]
async fn redis_replies_nested_deep_or_counting_billions_fail_without_a_crash() {
    let deep: &'static str = Box::leak("*1\r\n".repeat(10_000).into_boxed_str());
    for (head, filler) in [
        (deep, &b":1\r\n"[..]),
        ("*2147483648\r\n", b":1\r\n"),
        ("%2147483648\r\n", b":1\r\n:1\r\n"),
        ("*9223372036854775807\r\n", b":1\r\n"),
    ] {
        let (run, sent) = redis_flood(head, filler).await;
        let shown = &head[..head.len().min(20)];
        assert!(
            matches!(
                run.reason,
                Some(FailureReason::Protocol | FailureReason::TooLarge)
            ),
            "{shown}: {run:#?}"
        );
        assert!(sent < 32 << 20, "{shown}: the step read {sent} bytes");
    }
}

/// An SMTP greeting of endless `220-` continuation lines, each short: the reply's cap, not a
/// line's, ends it.
#[tokio::test]
async fn an_endless_multi_line_smtp_reply_is_read_only_to_the_cap() {
    let (addr, poured) =
        pouring_greeting("220-", b"hello there, more follows\r\n220-", 400_000_000).await;
    let port = addr.rsplit(':').next().unwrap_or_default();
    let error = test_page_error(&format!(
        "[[pager]]\nname = \"mail\"\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"canary@example.com\"\nto = [\"oncall@example.com\"]\n"
    ))
    .await;
    assert!(error.starts_with("SMTP: "), "{error}");
    let sent = poured.total().await;
    assert!(
        sent < 32 << 20,
        "the email pager read {sent} bytes: {error}"
    );
}

/// A peer whose status is 100,000 `[` deep, and one that trickles its reply: the fleet page
/// still answers, naming the peer unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_nesting_without_end_or_trickling_leaves_the_page_answering() {
    let deep = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {n}\r\nconnection: close\r\n\r\n{body}",
        n = 100_000 * 2,
        body = "[".repeat(100_000) + &"]".repeat(100_000),
    );
    let deep_peer = fixed_http(deep.into_bytes()).await;
    let slow_peer = trickling_server().await;
    let sim = start_sim().await;
    let cfg = TempConfig::new(
        &format!("peers = [\"http://{deep_peer}\", \"http://{slow_peer}\"]\n"),
        &[("sim.toml", &fast_sim_probe(&sim.base_url()))],
    );
    let svc = Service::start(cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"))).await;
    crate::support::wait_probe_runs(&svc.base, "sim-join", 1).await;
    let page = tokio::time::timeout(Duration::from_secs(15), async {
        crate::support::get_text(&svc.base, "/").await
    })
    .await
    .expect("GET / answers");
    assert_eq!(
        page.matches("<small>(unreachable since ").count(),
        2,
        "{page}"
    );
    assert_eq!(crate::support::status(&svc.base).await["ready"], true);
    svc.stop().await;
    sim.shutdown().await;
}
