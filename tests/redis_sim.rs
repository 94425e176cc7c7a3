//! The reference server on a real Redis (`sim --redis`): joins cross sim processes through
//! PUBLISH/SUBSCRIBE, a Redis refusal (OOM) reaches the client as an error frame carrying
//! Redis's text, and a paused Redis stalls a join until the operation's deadline.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use joincanary::sim::{Backend, Credentials, SimServer};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::sim_server::{Ws, close, connect_to, join, next_app_frame};
use crate::support;
use crate::support::servers::{self, PauseMode, Redis, Reply};

/// Bound on anything that should happen "at once" (start-up, a reply), generous for a loaded box.
const PROMPT: Duration = Duration::from_secs(10);

async fn redis() -> Redis {
    servers::running_redis().await
}

/// An in-process sim on `redis`, with `op_timeout` on every Redis operation.
async fn sim_on(redis: &Redis, op_timeout: Duration) -> SimServer {
    support::init();
    SimServer::start_with(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        Credentials::default(),
        Backend::Redis {
            url: redis.url(),
            op_timeout,
        },
    )
    .await
    .expect("sim starts on redis")
}

/// A `joincanary sim --redis` process; its base URL is read from its first stdout line.
async fn sim_process(redis: &Redis) -> (Child, String) {
    let mut child = Command::new(support::binary())
        .args(["sim", "--listen", "127.0.0.1:0", "--redis", &redis.url()])
        .env("JOINCANARY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("joincanary sim starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    tokio::time::timeout(PROMPT, BufReader::new(stdout).read_line(&mut line))
        .await
        .expect("sim prints its address in time")
        .expect("sim stdout is readable");
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, base)
}

/// The next `joined` frame for `id`. Another participant's join published just before this
/// connection joined may still be in flight to this process (delivery is filtered by the
/// rooms a connection is in when the message arrives, as on a real pub/sub), so it is skipped.
async fn joined_of(ws: &mut Ws, id: &str) -> Value {
    for _ in 0..5 {
        let frame = next_app_frame(ws).await;
        if frame["type"] != "joined" || frame["id"] == id {
            return frame;
        }
    }
    panic!("no joined frame for {id} among the next 5");
}

fn assert_joined(frame: &Value, room: &str, id: &str, participants: u64) {
    assert_eq!(frame["type"], "joined", "{frame}");
    assert_eq!(frame["room"], room, "{frame}");
    assert_eq!(frame["id"], id, "{frame}");
    assert_eq!(frame["participants"], participants, "{frame}");
}

#[tokio::test]
async fn joins_cross_sim_processes_through_redis() {
    let redis = redis().await;
    let (_a_proc, a_url) = sim_process(&redis).await;
    let (_b_proc, b_url) = sim_process(&redis).await;
    let mut a = connect_to(&a_url).await;
    let mut b = connect_to(&b_url).await;

    join(&mut b, "shared", "bob").await;
    assert_joined(&next_app_frame(&mut b).await, "shared", "bob", 1);
    // Alice is on the other process: her join reaches Bob only through Redis.
    join(&mut a, "shared", "alice").await;
    assert_joined(&joined_of(&mut a, "alice").await, "shared", "alice", 2);
    assert_joined(&next_app_frame(&mut b).await, "shared", "alice", 2);

    let members = redis
        .ok(&["SCARD", "joincanary:sim:room:shared"])
        .await
        .expect("presence set is readable");
    assert_eq!(
        members,
        Reply::Int(2),
        "presence holds both processes' members"
    );
    close(a).await;
    close(b).await;
}

#[tokio::test]
async fn redis_out_of_memory_is_answered_as_an_error_frame() {
    let redis = redis().await;
    let sim = sim_on(&redis, Duration::from_secs(5)).await;
    let mut ws = connect_to(&sim.base_url()).await;
    // maxmemory + noeviction, filled with data until Redis refuses writes.
    let oom = redis.fill_to_oom().await.expect("redis fills up");

    join(&mut ws, "r", "x").await;
    let frame = next_app_frame(&mut ws).await;
    assert_eq!(frame["type"], "error", "{frame}");
    let text = frame["error"].as_str().expect("error text");
    assert_eq!(text, oom, "Redis's own text reaches the client");
    assert!(text.starts_with("OOM command not allowed"), "{text}");

    // Memory freed: the same connection joins again.
    redis.restore().await.expect("redis restored");
    join(&mut ws, "r", "y").await;
    assert_joined(&next_app_frame(&mut ws).await, "r", "y", 1);
    close(ws).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn paused_redis_stalls_the_join_until_its_deadline() {
    let redis = redis().await;
    let sim = sim_on(&redis, Duration::from_millis(300)).await;
    let mut ws = connect_to(&sim.base_url()).await;
    // Writes wait for the pause (60 s, far past the deadline); reads and CLIENT still answer.
    redis
        .pause(60_000, PauseMode::Write)
        .await
        .expect("redis pauses");

    join(&mut ws, "r", "x").await;
    let frame = next_app_frame(&mut ws).await;
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["error"], "redis join timed out after 300 ms");

    redis.restore().await.expect("redis unpaused");
    join(&mut ws, "r", "y").await;
    assert_joined(&next_app_frame(&mut ws).await, "r", "y", 1);
    close(ws).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn unreachable_redis_stops_the_sim_without_showing_the_password() {
    // Port 1 on loopback: refused at once, nothing leaves the machine.
    let out = tokio::time::timeout(
        PROMPT,
        Command::new(support::binary())
            .args([
                "sim",
                "--listen",
                "127.0.0.1:0",
                "--redis",
                "redis://:s3cret-pw@127.0.0.1:1",
                "--redis-timeout",
                "1s",
            ])
            .output(),
    )
    .await
    .expect("sim gives up in time")
    .expect("sim runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach redis"), "{stderr}");
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
}
