//! `protocol = "sockjs"` against the reference SockJS server (sockjs-node, npm `sockjs`; two app
//! processes whose rooms meet only in a real Redis' pub/sub, tests/servers/sockjs/server.js),
//! probed by the shipped example `probes/examples/sockjs-redis.toml`: the join passes with A's
//! signal reaching B through Redis; a stalled Redis fails the room join (`a-joined`,
//! `no_match`: the instance subscribes to the new room in Redis) while every login and auth
//! passes; a refused token fails `authed-a` with the server's words first, and the token never
//! shows.

use std::time::Duration;

use joincanary::flow::ProbePlan;
use joincanary::report::{FailureReason, Phase};

use crate::support::servers::{self, NodeServer, Redis};
use crate::support::{cut_step, example, passed, run_once, step};

/// Redis and two SockJS app processes.
struct Stack {
    redis: Redis,
    a: NodeServer,
    b: NodeServer,
}

async fn start() -> Stack {
    crate::support::init();
    let redis = servers::running_redis().await;
    let (a, b) = servers::start_sockjs(&redis)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Stack { redis, a, b }
}

impl Stack {
    fn plan(&self, env: &[(&str, &str)]) -> ProbePlan {
        let (a, b) = (self.a.base_url(), self.b.base_url());
        let mut all = vec![("SOCKJS_A_URL", a.as_str()), ("SOCKJS_B_URL", b.as_str())];
        all.extend_from_slice(env);
        let mut plan = example("sockjs-redis.toml", &all);
        cut_step(&mut plan.steps, "signalling", Duration::from_secs(1));
        plan
    }
}

#[tokio::test]
async fn two_participants_pass_through_redis_and_a_stalled_redis_fails_the_room_join() {
    let stack = start().await;
    let plan = stack.plan(&[]);
    let run = run_once(&plan).await;
    assert!(run.steps.iter().all(|s| s.success), "{run:#?}");
    assert!(step(&run, "signalling").phases.contains_key(&Phase::FanOut));
    assert!(
        step(&run, "authed-a")
            .phases
            .contains_key(&Phase::RoundTrip)
    );

    stack.redis.freeze().unwrap_or_else(|e| panic!("{e}"));
    let stalled = run_once(&plan).await;
    stack.redis.thaw().unwrap_or_else(|e| panic!("{e}"));
    // Joining a room this process has not subscribed to yet waits on Redis too: a fresh room
    // per run means `a-joined` is where a stalled Redis shows first.
    passed(
        &stalled,
        &[
            "login-a",
            "login-b",
            "websocket-a",
            "auth-a",
            "authed-a",
            "websocket-b",
            "auth-b",
            "authed-b",
            "a-join",
        ],
    );
    assert_eq!(
        stalled.failed_step.as_deref(),
        Some("a-joined"),
        "{stalled:#?}"
    );
    assert_eq!(stalled.reason, Some(FailureReason::NoMatch));
    passed(&stalled, &["close-a", "close-b"]);

    assert!(run_once(&plan).await.success);
}

#[tokio::test]
async fn a_refused_token_ends_the_session_with_the_servers_words_and_never_shows() {
    let stack = start().await;
    // A's token loses its last two characters (its signature no longer holds).
    let text = std::fs::read_to_string(crate::support::example_path("sockjs-redis.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let from = r#"extract = { token_a = { json = "$.token" } }"#;
    assert!(text.contains(from));
    let text = text.replace(
        from,
        r#"extract = { token_a = { json = "$.token", regex = '^(.*)..$' } }"#,
    );
    let (a, b) = (stack.a.base_url(), stack.b.base_url());
    let plan = crate::support::probe_from(&text, &[("SOCKJS_A_URL", &a), ("SOCKJS_B_URL", &b)]);
    let run = run_once(&plan).await;
    passed(&run, &["login-a", "websocket-a", "auth-a"]);
    assert_eq!(run.failed_step.as_deref(), Some("authed-a"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::ServerError));
    let error = run.error.clone().unwrap_or_default();
    assert!(error.starts_with("unauthorized — "), "{error}");
    // The tokens (`base64url({"user":…`) are nowhere in the report.
    let out = serde_json::to_string(&run).unwrap_or_default();
    assert!(!out.contains("eyJ1c2Vy"), "{out}");
}
