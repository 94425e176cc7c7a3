//! The listener cannot page on-call (issue 9): slowloris and idle connections are closed after
//! the header-read timeout, connections past the cap are closed at once while the cap's holders
//! stay, and with a low open-files limit a flood of idle connections leaves the probes their
//! descriptors (no false page).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use joincanary::metrics::Metrics;
use joincanary::status::Status;
use joincanary::web::{ConnectionMetrics, Limits, WebConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::support::receiver::Receiver;
use crate::support::running::Running;
use crate::support::{TempConfig, eventually, fast_sim_probe, poll, start_sim, when};

/// The real router behind `web::serve` on 127.0.0.1:0 with `limits`: its address, its metrics
/// (read in-process, so a test can look while the listener is full) and its stop token.
async fn listen(
    limits: Limits,
    web: Option<WebConfig>,
) -> (SocketAddr, Metrics, CancellationToken) {
    let metrics = Metrics::new("test").unwrap();
    let status = Arc::new(Status::new("test"));
    let app = joincanary::server::router(
        metrics.clone(),
        status,
        None,
        joincanary::supervise::Supervisor::detached("test"),
    );
    let app = match &web {
        Some(w) => w.protect(app),
        None => app,
    };
    let connections = ConnectionMetrics::register(&metrics.registry, "test", &limits).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        joincanary::web::serve(listener, app, web.as_ref(), limits, connections, token).await
    });
    (addr, metrics, stop)
}

/// Reads until the server closes (EOF or reset); everything read.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// How a slow client behaves.
#[derive(Clone, Copy, Debug)]
enum Slow {
    /// Connects and sends nothing.
    Silent,
    /// Sends part of a request head and stops.
    PartialHead,
    /// Sends a request head one byte every 2 s, never finishing.
    Trickle,
    /// One whole request, reads the answer, then keeps the connection open and quiet.
    IdleKeepAlive,
}

/// One slow client on `s` (connected at `connected`): how long from the moment the server's
/// timer can have started at the earliest (the connect; for a keep-alive, the request) until
/// the server closed the connection.
async fn slow_client(mut s: TcpStream, how: Slow, connected: tokio::time::Instant) -> Duration {
    let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let start = match how {
        Slow::Silent => connected,
        Slow::PartialHead => {
            s.write_all(&head[..30]).await.unwrap();
            connected
        }
        Slow::Trickle => {
            // Bounded: the head is 90 bytes; the server closes long before the end.
            for b in head {
                if s.write_all(&[*b]).await.is_err() {
                    return connected.elapsed();
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            connected
        }
        Slow::IdleKeepAlive => {
            let asked = tokio::time::Instant::now();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.ends_with(b"ok\n") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed before answering");
                got.extend_from_slice(&buf[..n]);
            }
            asked
        }
    };
    let _ = read_to_close(&mut s).await;
    start.elapsed()
}

/// 500 slow clients of four kinds at once, on the paused clock: each is closed, by the
/// header-read timeout (the idle timeout is out of reach), and a fresh client is then served.
#[tokio::test(start_paused = true)]
async fn slowloris_connections_are_closed_after_the_header_timeout() {
    let limits = Limits {
        max_connections: 1000,
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(3600),
    };
    let (addr, metrics, stop) = listen(limits, None).await;
    let mut clients = Vec::new();
    for how in [
        Slow::Silent,
        Slow::PartialHead,
        Slow::Trickle,
        Slow::IdleKeepAlive,
    ] {
        for _ in 0..125 {
            let connected = tokio::time::Instant::now();
            let s = TcpStream::connect(addr).await.unwrap();
            // One at a time into the server's hands: the listen backlog is 128, and a SYN it
            // drops is retried on the kernel's real clock, which the paused one outruns.
            wait_open(&metrics, clients.len() + 1).await;
            clients.push((how, tokio::spawn(slow_client(s, how, connected))));
        }
    }
    for (how, client) in clients {
        // The server's timer starts at its accept, which may come after the client's start,
        // never before.
        let closed_after = finish(client, Duration::from_secs(600))
            .await
            .unwrap_or_else(|| panic!("{how:?}: never closed"));
        // Trickle too: bytes do not reset the timer, only a whole head does.
        assert!(
            closed_after >= limits.header_read_timeout,
            "{how:?}: closed after {closed_after:?}"
        );
    }
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    fresh
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8(read_to_close(&mut fresh).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("joincanary_http_connections_rejected_total{region=\"test\"} 0"));
    assert!(
        metrics
            .render()
            .contains("joincanary_http_connections_open{region=\"test\"} 0")
    );
    stop.cancel();
}

/// Waits for `task` on the paused clock in 10 ms steps, at most `limit` of virtual time. Each
/// step lets the runtime poll the sockets: one long timeout would let the clock jump past a
/// close the kernel had not yet delivered, and call it "never".
async fn finish<T>(task: tokio::task::JoinHandle<T>, limit: Duration) -> Option<T> {
    if !crate::support::holds_within(limit, Duration::from_millis(10), || task.is_finished()).await
    {
        return None;
    }
    task.await.ok()
}

/// Waits (bounded) until the listener counts `n` open connections.
async fn wait_open(metrics: &Metrics, n: usize) {
    let want = format!("joincanary_http_connections_open{{region=\"test\"}} {n}");
    eventually(
        &want,
        Duration::from_secs(5),
        Duration::from_millis(10),
        async || when(metrics.render(), |m| m.lines().any(|l| l == want)),
    )
    .await;
}

/// A TLS web config with one basic-auth user, and a client that trusts it.
fn tls_web(dir: &std::path::Path) -> (WebConfig, reqwest::Client) {
    let (web, pem) = crate::support::tls_web_config(dir, &["127.0.0.1", "localhost"], "alice");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    (WebConfig::load(&web).unwrap(), client)
}

/// Past the cap, a connection is closed at once (and counted) while the cap's holders stay
/// open; once they go, a fresh client gets `/metrics`. Plain HTTP, and TLS with basic auth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_closed_and_metrics_answers_after() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, tls_client) = tls_web(dir.path());
    for (name, web, client, scheme) in [
        ("plain", None, reqwest::Client::new(), "http"),
        ("tls+auth", Some(tls), tls_client, "https"),
    ] {
        let limits = Limits {
            max_connections: 4,
            // Longer than the test: nothing here is closed by a timeout.
            header_read_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(120),
        };
        let (addr, metrics, stop) = listen(limits, web).await;
        let mut holders = Vec::new();
        for _ in 0..4 {
            // Silent: on TLS a handshake that never starts, on plain HTTP a head that never
            // comes; either holds its slot until the header-read timeout.
            holders.push(TcpStream::connect(addr).await.unwrap());
        }
        wait_open(&metrics, 4).await;
        for _ in 0..10 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let got = tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut s))
                .await
                .unwrap_or_else(|_| panic!("{name}: a connection past the cap was kept open"));
            assert!(got.is_empty(), "{name}: {got:?}");
        }
        assert!(
            metrics
                .render()
                .contains("joincanary_http_connections_rejected_total{region=\"test\"} 10"),
            "{name}: {}",
            metrics.render()
        );
        drop(holders);
        wait_open(&metrics, 0).await;
        let port = addr.port();
        let host = if scheme == "https" {
            "localhost"
        } else {
            "127.0.0.1"
        };
        let r = client
            .get(format!("{scheme}://{host}:{port}/metrics"))
            .basic_auth("alice", Some("correct horse"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("joincanary_http_connections_rejected_total{region=\"test\"} 10"),
            "{name}: {body}"
        );
        assert!(body.contains("joincanary_http_connections_max{region=\"test\"} 4"));
        stop.cancel();
    }
}

/// The incident from the issue on the binary: `joincanary run` under a 256 open-files limit
/// (soft and hard, so it cannot raise it) and 400 idle connections held against it. The cap
/// (64, a quarter) keeps the listener's share; the probe keeps passing against the sim and the
/// webhook pager hears nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_under_a_low_fd_limit_pages_no_one() {
    // This process holds the flood: give it room (its own hard limit allows it).
    let _ = joincanary::process::raise_fd_limit();
    let sim = start_sim().await;
    let (receiver, hook) = Receiver::start(202).await;
    let cfg = TempConfig::new(
        &format!(
            "[alerting]\nfailure_threshold = 1\n\n[[pager]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{hook}/hook\"\n"
        ),
        &[("one.toml", &fast_sim_probe(&sim.base_url()))],
    );
    let config = cfg.path.to_str().unwrap().to_string();
    let run =
        tokio::task::block_in_place(|| Running::start_prlimit(std::path::Path::new(&config), 256));
    let addr: SocketAddr = run.addr.parse().unwrap();
    let mut flood = Vec::new();
    for _ in 0..400 {
        // Connect may fail once the kernel's queue is full: that too is the flood.
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
        {
            flood.push(s);
        }
    }
    let successes = |log: &str| {
        log.lines()
            .filter(|l| l.contains("msg=\"probe run succeeded\""))
            .count()
    };
    let before = successes(&run.log());
    // Five more runs (one a second) while the flood is held.
    let ran = poll(
        Duration::from_secs(15),
        Duration::from_millis(50),
        async || {
            (successes(&run.log()) >= before + 5)
                .then_some(())
                .ok_or(())
        },
    )
    .await;
    let log = run.log();
    assert!(
        ran.is_ok(),
        "the probe stopped passing under the flood:\n{log}"
    );
    assert!(!log.contains("probe run failed"), "{log}");
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(log.contains("max_connections=64"), "{log}");
    drop(flood);
    // Once the flood goes, /metrics answers and shows the rejections.
    let body = poll(
        Duration::from_secs(5),
        Duration::from_millis(50),
        async || match reqwest::get(format!("http://{addr}/metrics")).await {
            Ok(r) => Ok(r.text().await.unwrap_or_default()),
            Err(_) => Err(String::new()),
        },
    )
    .await
    .unwrap_or_else(|none| none);
    let rejected = body
        .lines()
        .find_map(|l| {
            l.strip_prefix("joincanary_http_connections_rejected_total{region=\"test\"} ")
        })
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no rejected count:\n{body}"));
    assert!(rejected >= 300, "{rejected} rejected");
    assert!(
        body.contains("probe_success{probe=\"sim-join\",region=\"test\"} 1"),
        "{body}"
    );
    assert_eq!(tokio::task::block_in_place(|| run.stop()), Some(0));
    assert!(
        receiver.all().is_empty(),
        "a page went out: {:?}",
        receiver.all()
    );
    sim.shutdown().await;
}
