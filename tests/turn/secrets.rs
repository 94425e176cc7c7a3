//! TURN credentials stay secrets of the run: `joincanary once` and `run` at `--log.level
//! trace`, with the STUN/TURN crates at trace too, log none of the REST secret, the passwords
//! it derives, a refused credential, a long-term key, credentials a join reply handed out, or a
//! pager's, in any encoding.

use std::time::Duration;

use joincanary::flow::turn::rest_credential;

use super::{SECRET, TRACE_TURN, assert_released, peer, server};
use crate::support::TempConfig;
use crate::support::coturn::{self, Auth};

/// `joincanary once` at `--log.level trace`, with the STUN/TURN crates at trace too: a REST
/// credential computed from the secret (passing) and a static credential refused (failing).
/// Neither the secret, the derived password, the refused credential nor a long-term key
/// appears in the whole log, in any encoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_of_a_turn_run_hold_no_secret() {
    let server = server(Auth::Secret(SECRET.to_string()), &[]).await;
    let peer = peer().await;
    const WRONG: &str = "refused-cred-6e1f";
    let probe = format!(
        "timeout = \"10s\"\n\n\
         [[steps]]\nname = \"rest\"\nkind = \"turn\"\nurl = \"{}\"\nsecret = \"${{TURN_SECRET}}\"\n\
         username = \"traced\"\npeer = \"{}\"\ntimeout = \"3s\"\n\n\
         [[steps]]\nname = \"refused\"\nkind = \"turn\"\nurl = \"{}\"\nusername = \"traced\"\n\
         credential = \"{WRONG}\"\ntimeout = \"3s\"\n",
        server.udp_url(),
        peer.addr(),
        server.tcp_url(),
    );
    let cfg = TempConfig::new("", &[("t.toml", &probe)]);
    let now = chrono::Utc::now().timestamp();
    let (code, log) =
        crate::support::run_logged(TRACE_TURN, "once", &cfg.path, &[("TURN_SECRET", SECRET)]);
    // The first step passed, the second failed on the refused credential.
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "{log}");
    assert!(log.contains("turn_auth"), "{log}");
    assert_no_turn_secret(&log, WRONG, now + 3590..now + 3630, Vec::new());
    assert_released(&server).await;
}

/// TURN credentials a join reply hands out (`iceServers`: urls, username, credential), the way
/// platforms do, taken into `turn` steps by templates against a real coturn: one passing, one
/// signed with another secret and refused (`turn_auth`), then a cleanup step whose server quotes
/// both credentials back in its error. `joincanary once` at `--log.level trace` with the
/// STUN/TURN crates at trace too: neither credential nor either long-term key appears in the
/// log or the run's output, in any encoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_a_join_reply_are_secrets_of_the_run() {
    use axum::{Json, Router, http::StatusCode, routing::get, routing::post};
    let server = server(Auth::Secret(SECRET.to_string()), &[]).await;
    let peer = peer().await;
    let expiry = chrono::Utc::now().timestamp() + 600;
    let (user, pass) = rest_credential(SECRET, "joined", expiry);
    let (other_user, other_pass) = rest_credential("another-secret-7b2", "joined", expiry);
    let ice = |user: &str, pass: &str| {
        serde_json::json!({ "iceServers": [
            { "urls": [server.udp_url() + "?transport=udp"], "username": user, "credential": pass },
        ]})
    };
    let (good, refused) = (ice(&user, &pass), ice(&other_user, &other_pass));
    let app = Router::new()
        .route("/join", get(move || async move { Json(good) }))
        .route("/join-refused", get(move || async move { Json(refused) }))
        // A server that quotes what it was sent in its error.
        .route(
            "/echo",
            post(|body: String| async move {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("bad request: {body}"),
                )
            }),
        );
    let base = crate::support::serve_router(app).await;
    let join = |name: &str, path: &str, prefix: &str| {
        format!(
            "[[steps]]\nname = \"{name}\"\nkind = \"http\"\nurl = \"http://{base}{path}\"\ntimeout = \"2s\"\n\
             extract = {{ {prefix}urls = {{ json = \"$.iceServers[0].urls\" }}, \
             {prefix}user = {{ json = \"$.iceServers[0].username\" }}, \
             {prefix}pass = {{ json = \"$.iceServers[0].credential\" }} }}\n\n"
        )
    };
    let relay = |name: &str, prefix: &str| {
        format!(
            "[[steps]]\nname = \"{name}\"\nkind = \"turn\"\nurl = \"{{{{{prefix}urls}}}}\"\n\
             username = \"{{{{{prefix}user}}}}\"\ncredential = \"{{{{{prefix}pass}}}}\"\n\
             peer = \"{}\"\ntimeout = \"3s\"\n\n",
            peer.addr()
        )
    };
    let probe = format!(
        "timeout = \"15s\"\n\n{}{}{}{}\
         [[steps]]\nname = \"quoted\"\nkind = \"http\"\ncleanup = true\nmethod = \"POST\"\n\
         url = \"http://{base}/echo\"\nbody = \"{{{{pass}}}} {{{{other_pass}}}}\"\ntimeout = \"2s\"\n",
        join("join", "/join", ""),
        relay("relay", ""),
        join("join-refused", "/join-refused", "other_"),
        relay("refused", "other_"),
    );
    let cfg = TempConfig::new("", &[("t.toml", &probe)]);
    let (code, log) = crate::support::run_logged(TRACE_TURN, "once", &cfg.path, &[]);
    // The first relay passed, the second was refused, the cleanup step's error was logged.
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("turn_auth"), "{log}");
    assert!(log.contains("cleanup step failed"), "{log}");
    assert!(log.contains("bad request: "), "the echo is quoted: {log}");
    let key = long_term_key;
    for secret in [
        pass.clone(),
        other_pass.clone(),
        key(&user, &pass),
        key(&other_user, &other_pass),
    ] {
        if let Some(found) = crate::secrets::leak(&log, &secret) {
            panic!("{secret} as {found:?} in:\n{log}");
        }
    }
    assert_released(&server).await;
}

/// The long-term key (RFC 8489 §9.2.2: MD5 of `user:realm:password`, hex) of a credential on
/// the test's coturn.
fn long_term_key(user: &str, pass: &str) -> String {
    use md5::Digest as _;
    md5::Md5::digest(format!("{user}:{}:{pass}", coturn::REALM).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `run` (the service, not `once`) at `--log.level trace` with the STUN/TURN crates at trace
/// too: a `turn` step with a REST credential (passing), one with a refused static credential
/// (failing, so the run pages), and an Alertmanager pager reached with basic auth in its URL.
/// Once the page is taken, the whole log holds none of the REST secret, the HMAC passwords it
/// derived, either long-term key, the refused credential, the pager's password or its
/// `Authorization` value, in any encoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_of_run_with_turn_steps_and_an_alertmanager_pager_hold_no_secret() {
    use crate::support::receiver::Receiver;
    use base64::Engine as _;
    const WRONG: &str = "refused-cred-7a2c";
    const AM_PASS: &str = "am-basic-pass-5d1";
    let server = server(Auth::Secret(SECRET.to_string()), &[]).await;
    let peer = peer().await;
    let am = Receiver::statuses(&[], 200).await;
    let am_url = am
        .url()
        .replace("http://", &format!("http://ops:{AM_PASS}@"));
    let probe = format!(
        "schedule = \"*/5 * * * * *\"\ntimeout = \"4s\"\n\n\
         [[steps]]\nname = \"rest\"\nkind = \"turn\"\nurl = \"{}\"\nsecret = \"${{TURN_SECRET}}\"\n\
         username = \"traced\"\npeer = \"{}\"\ntimeout = \"1500ms\"\n\n\
         [[steps]]\nname = \"refused\"\nkind = \"turn\"\nurl = \"{}\"\nusername = \"traced\"\n\
         credential = \"{WRONG}\"\ntimeout = \"1500ms\"\n",
        server.udp_url(),
        peer.addr(),
        server.tcp_url(),
    );
    let cfg = TempConfig::new(
        "[alerting]\nconfirm_delay = \"200ms\"\nfailure_threshold = 1\n\
         [[pager]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = \"${AM_URL}\"\n",
        &[("t.toml", &probe)],
    );
    let started = chrono::Utc::now().timestamp();
    let running = tokio::task::block_in_place(|| {
        crate::support::running::Running::start_with(
            &cfg.path,
            &["--log.level", TRACE_TURN],
            &[("TURN_SECRET", SECRET), ("AM_URL", &am_url)],
        )
    });
    let paged =
        crate::support::holds_within(Duration::from_secs(30), Duration::from_millis(100), || {
            am.requests().iter().any(|r| {
                r.body[0]["labels"]["alertname"] == "JoinFlowFailing"
                    && r.headers.contains_key("authorization")
            })
        })
        .await;
    let log = running.log();
    drop(running);
    let ended = chrono::Utc::now().timestamp();
    assert!(
        paged,
        "the refused credential paged the Alertmanager: {log}"
    );
    assert!(log.contains("turn_auth"), "{log}");
    assert!(
        log.contains("level=trace") || log.contains("level=debug"),
        "{log}"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("ops:{AM_PASS}"));
    assert_no_turn_secret(
        &log,
        WRONG,
        started + 3590..ended + 3610,
        vec![AM_PASS.to_string(), basic],
    );
    assert_released(&server).await;
}

/// `log` holds, in no encoding, the REST secret, the refused credential `wrong` (user
/// `traced`) or its long-term key, any REST credential of user `traced` expiring in
/// `expiries` (an hour from a run's start) or its long-term key, nor any of `more`.
fn assert_no_turn_secret(
    log: &str,
    wrong: &str,
    expiries: std::ops::Range<i64>,
    more: Vec<String>,
) {
    let mut secrets = more;
    secrets.extend([
        SECRET.to_string(),
        wrong.to_string(),
        long_term_key("traced", wrong),
    ]);
    for expiry in expiries {
        let (user, pass) = rest_credential(SECRET, "traced", expiry);
        secrets.push(long_term_key(&user, &pass));
        secrets.push(pass);
    }
    for secret in &secrets {
        if let Some(found) = crate::secrets::leak(log, secret) {
            panic!("{secret} as {found:?} in:\n{log}");
        }
    }
}
