//! The `turn` step against a real coturn (`turnserver` with a static user or a TURN REST
//! shared secret, `turnutils_peer` echoing through the relay) on 127.0.0.1: a healthy pass
//! over UDP, TCP and TLS with every phase timed; refused credentials (wrong password, wrong
//! secret, an expired REST username) failing `allocate` with `turn_auth` and never quoting a
//! secret; the user's and the server's quota (`user-quota`, `total-quota`) failing with
//! `turn_capacity`; credentials (the secret, a join reply's `iceServers`) kept out of trace
//! logs (turn/secrets.rs); the echo peer down failing `turn_relay` after
//! allocate passed; the server down failing `binding`; `turns:` by name with the probe's CA,
//! and failing `tls` against a re-issued one; the server on `[::1]`; a REST credential expiring
//! while its allocation is held; an error naming the URI taken from a list. After each, the
//! server's CLI shows no allocation left behind.

mod secrets;

use std::time::Duration;

use joincanary::flow::run_probe;
use joincanary::flow::turn::rest_credential;
use joincanary::report::{FailureReason, Phase, StepReport, Trigger};

use crate::support::TempConfig;
use crate::support::coturn::{self, Auth, Coturn, PASSWORD, Peer, USER};

const TIMEOUT: Duration = Duration::from_secs(5);
/// The phases of a relay that got as far as its echo.
const RELAYED: [Phase; 4] = [
    Phase::Binding,
    Phase::Allocate,
    Phase::Permission,
    Phase::RelayRtt,
];
const SECRET: &str = "rest-secret-91c4e2";
/// `--log.level` with the STUN/TURN crates at trace too.
const TRACE_TURN: &str = "trace,turn_types=trace,stun_types=trace";

/// A `turn` step's keys as a probe file writes them; `secret` goes through the environment
/// (`secret = "${TURN_SECRET}"`), as a deployment passes it.
#[derive(Clone)]
struct Spec {
    url: String,
    username: Option<String>,
    credential: Option<String>,
    secret: Option<String>,
    peer: Option<String>,
}

fn spec(url: &str, username: Option<&str>, credential: Option<&str>, peer: Option<&str>) -> Spec {
    Spec {
        url: url.to_string(),
        username: username.map(str::to_string),
        credential: credential.map(str::to_string),
        secret: None,
        peer: peer.map(str::to_string),
    }
}

/// The static user's step relaying to `peer`.
fn user_spec(url: &str, peer: &str) -> Spec {
    spec(url, Some(USER), Some(PASSWORD), Some(peer))
}

/// [`user_spec`] through `peer`, run on `server`: it must pass.
async fn relays(server: &Coturn, url: &str, peer: &Peer) -> StepReport {
    let step = run(server, &user_spec(url, &peer.addr())).await;
    assert!(step.success, "{url}: {step:#?}\n{}", server.output());
    step
}

/// The probe file: one `turn` step, the test CA trusted (for `turns:`).
fn probe(spec: &Spec) -> String {
    let mut text = format!(
        "name = \"turn\"\nschedule = \"* * * * *\"\nca_file = \"ca.pem\"\ntimeout = \"10s\"\n\n\
         [[steps]]\nname = \"relay\"\nkind = \"turn\"\nurl = \"{}\"\ntimeout = \"{}s\"\n",
        spec.url,
        TIMEOUT.as_secs()
    );
    for (key, value) in [
        ("username", &spec.username),
        ("credential", &spec.credential),
        ("peer", &spec.peer),
    ] {
        if let Some(v) = value {
            text.push_str(&format!("{key} = \"{v}\"\n"));
        }
    }
    if spec.secret.is_some() {
        text.push_str("secret = \"${TURN_SECRET}\"\n");
    }
    text
}

/// Loads the probe file as `check` does and runs it once; the `turn` step's report.
async fn run_with(ca_pem: &str, spec: &Spec) -> StepReport {
    let cfg = TempConfig::new("", &[("turn.toml", &probe(spec))]);
    std::fs::write(cfg.probe_path("ca.pem"), ca_pem).expect("write ca.pem");
    let env: Vec<(&str, &str)> = spec
        .secret
        .iter()
        .map(|s| ("TURN_SECRET", s.as_str()))
        .collect();
    let plan = cfg.load(&env).unwrap_or_else(|e| panic!("loads: {e}"));
    let run = crate::support::run_once(&plan.probes[0]).await;
    run.steps.into_iter().next().expect("the step ran")
}

async fn server(auth: Auth, extra: &[&str]) -> Coturn {
    coturn::start_coturn(auth, extra)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn peer() -> Peer {
    coturn::start_peer().await.unwrap_or_else(|e| panic!("{e}"))
}

async fn run(server: &Coturn, spec: &Spec) -> StepReport {
    run_with(server.ca_pem(), spec).await
}

/// No allocation stays on `server` after the step.
async fn assert_released(server: &Coturn) {
    let left = server
        .wait_no_sessions()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        left,
        0,
        "allocations left on the server:\n{}",
        server.output()
    );
}

fn assert_phases(step: &StepReport, phases: &[Phase]) {
    for p in phases {
        assert!(step.phases.contains_key(p), "{p:?} in {step:#?}");
    }
}

#[tokio::test]
async fn healthy_relay_over_udp_tcp_and_tls_with_every_phase() {
    let server = server(Auth::Static, &[]).await;
    let peer = peer().await;
    for url in [server.udp_url(), server.tcp_url(), server.tls_url()] {
        let step = relays(&server, &url, &peer).await;
        assert_phases(&step, &RELAYED);
        // An IP literal is not looked up.
        assert!(!step.phases.contains_key(&Phase::Dns), "{step:#?}");
        if url.starts_with("turns:") {
            assert_phases(&step, &[Phase::Connect, Phase::Tls]);
        }
        assert_released(&server).await;
    }
}

/// A host name is looked up (`dns`) and its addresses tried in turn for the UDP Binding: where
/// `localhost` is `::1` and `127.0.0.1` (Debian's /etc/hosts), the `::1` nothing listens at is
/// passed over for coturn on `127.0.0.1`, as a browser's ICE agent would.
#[tokio::test]
async fn a_turn_host_name_is_looked_up_and_its_addresses_tried_in_turn() {
    let server = server(Auth::Static, &[]).await;
    let peer = peer().await;
    let url = format!("turn:localhost:{}", server.port);
    let step = relays(&server, &url, &peer).await;
    assert_phases(&step, &[Phase::Dns, Phase::Binding, Phase::RelayRtt]);
    assert_released(&server).await;
}

#[tokio::test]
async fn stun_url_only_binds() {
    let server = server(Auth::Static, &[]).await;
    let url = format!("stun:127.0.0.1:{}", server.port);
    let step = run(&server, &spec(&url, None, None, None)).await;
    assert!(step.success, "{step:#?}");
    assert_phases(&step, &[Phase::Binding]);
    assert!(!step.phases.contains_key(&Phase::Allocate), "{step:#?}");
}

#[tokio::test]
async fn wrong_password_fails_allocate_with_turn_auth_and_is_never_shown() {
    let server = server(Auth::Static, &[]).await;
    let peer = peer().await;
    let wrong = "wrong-pass-d81b";
    for url in [server.udp_url(), server.tcp_url()] {
        let step = run(
            &server,
            &spec(&url, Some(USER), Some(wrong), Some(&peer.addr())),
        )
        .await;
        assert!(!step.success);
        assert_eq!(step.reason, Some(FailureReason::TurnAuth), "{step:#?}");
        let error = step.error.clone().unwrap_or_default();
        assert!(error.starts_with("allocate: 401"), "{error}");
        assert!(error.contains(USER), "names the user: {error}");
        let shown = format!("{step:?}");
        assert!(!shown.contains(wrong), "{shown}");
        assert!(!step.phases.contains_key(&Phase::Permission));
        assert_released(&server).await;
    }
}

#[tokio::test]
async fn rest_credentials_pass_and_a_wrong_secret_or_an_expired_username_fail() {
    let server = server(Auth::Secret(SECRET.to_string()), &[]).await;
    let peer = peer().await;
    let mut computed = spec(
        &server.udp_url(),
        Some("canary-rest"),
        None,
        Some(&peer.addr()),
    );
    computed.secret = Some(SECRET.to_string());
    let step = run(&server, &computed).await;
    assert!(step.success, "{step:#?}\n{}", server.output());
    assert_released(&server).await;

    // The same credential handed out by a join (username and credential as the join says).
    let expiry = chrono::Utc::now().timestamp() + 600;
    let (user, pass) = rest_credential(SECRET, "joined", expiry);
    let step = run(
        &server,
        &spec(
            &server.tcp_url(),
            Some(&user),
            Some(&pass),
            Some(&peer.addr()),
        ),
    )
    .await;
    assert!(step.success, "{step:#?}");

    let mut wrong = computed.clone();
    wrong.secret = Some("not-the-secret-55".to_string());
    let step = run(&server, &wrong).await;
    assert_eq!(step.reason, Some(FailureReason::TurnAuth), "{step:#?}");
    let error = step.error.clone().unwrap_or_default();
    assert!(error.contains("check the shared secret"), "{error}");
    assert!(!format!("{step:?}").contains("not-the-secret-55"));

    let expired = chrono::Utc::now().timestamp() - 120;
    let (user, pass) = rest_credential(SECRET, "joined", expired);
    let step = run(
        &server,
        &spec(
            &server.udp_url(),
            Some(&user),
            Some(&pass),
            Some(&peer.addr()),
        ),
    )
    .await;
    assert_eq!(step.reason, Some(FailureReason::TurnAuth), "{step:#?}");
    let error = step.error.clone().unwrap_or_default();
    assert!(error.starts_with("allocate: 401"), "{error}");
    assert!(error.contains("expired"), "{error}");
    assert!(!format!("{step:?}").contains(&pass));
    assert_released(&server).await;
}

#[tokio::test]
async fn exhausted_quota_fails_with_turn_capacity() {
    // Two allocations per user, or two on the whole server, both held by coturn's own client:
    // the step finds the user's quota, or the server's, used up.
    for quota in ["--user-quota=2", "--total-quota=2"] {
        exhausted(quota).await;
    }
}

async fn exhausted(quota: &str) {
    let server = server(Auth::Static, &[quota]).await;
    let peer = peer().await;
    let holder = std::process::Command::new("turnutils_uclient")
        .args(["-u", USER, "-w", PASSWORD, "-p"])
        .arg(server.port.to_string())
        .args(["-e", "127.0.0.1", "-r"])
        .arg(peer.port.to_string())
        .args(["-c", "-n", "1", "-m", "1", "-l", "32", "127.0.0.1"])
        .output()
        .expect("turnutils_uclient runs");
    assert!(holder.status.success(), "{holder:?}");
    // turnutils_uclient leaves its two allocations to expire: they hold the user's quota.
    assert_eq!(server.sessions().await.unwrap_or_else(|e| panic!("{e}")), 2);
    let step = run(
        &server,
        &spec(
            &server.udp_url(),
            Some(USER),
            Some(PASSWORD),
            Some(&peer.addr()),
        ),
    )
    .await;
    assert_eq!(
        step.reason,
        Some(FailureReason::TurnCapacity),
        "{quota}: {step:#?}"
    );
    let error = step.error.clone().unwrap_or_default();
    assert!(error.starts_with("allocate: 486"), "{quota}: {error}");
    // The step's own refused allocation left nothing: the two are uclient's.
    assert_eq!(server.sessions().await.unwrap_or_else(|e| panic!("{e}")), 2);
}

#[tokio::test]
async fn echo_peer_down_fails_the_relay_after_allocate_passed() {
    let server = server(Auth::Static, &[]).await;
    let peer = peer().await;
    let gone = peer.addr();
    drop(peer);
    let step = run(&server, &user_spec(&server.udp_url(), &gone)).await;
    assert_eq!(step.reason, Some(FailureReason::TurnRelay), "{step:#?}");
    assert_phases(&step, &RELAYED);
    let error = step.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("relay_rtt: no echo from the peer"),
        "{error}"
    );
    // The release still ran within the step's time (give or take the 1 s a timer may be late
    // before the run is the prober's own failure; 200 ms was tight on a loaded machine). A
    // release past it would have been cut by the step's timeout: reason `timeout`, above.
    assert!(
        step.duration_ms <= TIMEOUT + Duration::from_secs(1),
        "{step:#?}"
    );
    assert_released(&server).await;
}

#[tokio::test]
async fn server_down_fails_binding() {
    let server = server(Auth::Static, &[]).await;
    let port = server.port;
    let ca_pem = server.ca_pem().to_string();
    drop(server);
    for url in [
        format!("turn:127.0.0.1:{port}"),
        format!("turn:127.0.0.1:{port}?transport=tcp"),
    ] {
        let step = run_with(&ca_pem, &spec(&url, Some(USER), Some(PASSWORD), None)).await;
        assert_eq!(
            step.reason,
            Some(FailureReason::Connect),
            "{url}: {step:#?}"
        );
        let error = step.error.clone().unwrap_or_default();
        if url.ends_with("udp") || !url.contains('?') {
            assert!(error.starts_with("binding: "), "{error}");
            assert!(step.phases.contains_key(&Phase::Binding));
        }
        assert!(!step.phases.contains_key(&Phase::Allocate));
    }
}

#[tokio::test]
async fn shipped_turn_rest_example_passes_and_fails_turn_auth_with_another_secret() {
    let server = server(Auth::Secret(SECRET.to_string()), &[]).await;
    let peer = peer().await;
    let path = crate::support::root().join("probes/examples/turn-rest.toml");
    let text = std::fs::read_to_string(path).expect("example exists");
    // The TLS step trusts the test CA, as a deployment's `ca_file` would.
    let text = text.replacen(
        "timeout = \"10s\"",
        "timeout = \"10s\"\nca_file = \"ca.pem\"",
        1,
    );
    assert!(text.contains("ca_file"), "the example sets a probe timeout");
    let cfg = TempConfig::new("", &[("turn-rest.toml", &text)]);
    std::fs::write(cfg.probe_path("ca.pem"), server.ca_pem()).expect("write ca.pem");
    let (udp, tls, echo) = (server.udp_url(), server.tls_url(), peer.addr());
    // The third time TURN_SECRET is unset: the example's `${TURN_SECRET:-}` is empty, the
    // server asks for credentials, and the failure says why there were none.
    for (secret, passes) in [(SECRET, true), ("another-secret-0d2", false), ("", false)] {
        let mut env = vec![
            ("TURN_URL", udp.as_str()),
            ("TURNS_URL", tls.as_str()),
            ("TURN_ECHO_PEER", echo.as_str()),
        ];
        if !secret.is_empty() {
            env.push(("TURN_SECRET", secret));
        }
        let plan = cfg.load(&env).unwrap_or_else(|e| panic!("loads: {e}"));
        let run = run_probe(
            &plan.probes[0],
            "eu-west-1",
            Trigger::Manual,
            &joincanary::clock::Clock::system(),
        )
        .await;
        if passes {
            assert!(run.success, "{run:#?}\n{}", server.output());
            assert_eq!(run.steps.len(), 2);
            for step in &run.steps {
                assert_phases(step, &RELAYED);
            }
        } else {
            assert_eq!(run.failed_step.as_deref(), Some("turn-udp"), "{run:#?}");
            assert_eq!(run.reason, Some(FailureReason::TurnAuth), "{run:#?}");
            let error = run.error.clone().unwrap_or_default();
            if secret.is_empty() {
                assert!(error.starts_with("allocate: 401"), "{error}");
                assert!(error.contains("`secret` is set but empty"), "{error}");
            } else {
                assert!(
                    error.contains("joincanary-eu-west-1"),
                    "the REST user: {error}"
                );
                let shown = format!("{run:?}");
                assert!(!shown.contains(secret), "{shown}");
            }
        }
        assert_released(&server).await;
    }
}

/// A join reply's `iceServers` as platforms hand them out: a STUN entry, then one TURN entry
/// whose `urls` list UDP, TCP and TLS. The `turn` steps take that `urls` array as extracted and
/// pick the URI of their `transport` (the first TURN one without); a reply with STUN alone
/// fails with words that say so.
#[tokio::test]
async fn ice_servers_from_a_join_reply_pick_the_turn_uri_of_the_wanted_transport() {
    use axum::{Json, Router, routing::get};
    let server = server(Auth::Static, &[]).await;
    let peer = peer().await;
    let stun = format!("stun:127.0.0.1:{}", server.port);
    let turn_urls = serde_json::json!([
        stun.clone(),
        server.udp_url() + "?transport=udp",
        server.tcp_url(),
        server.tls_url() + "?transport=tcp",
    ]);
    let full = serde_json::json!({ "iceServers": [
        { "urls": stun.clone() },
        { "urls": turn_urls, "username": USER, "credential": PASSWORD },
    ]});
    let stun_only = serde_json::json!({ "iceServers": [
        { "urls": [stun.clone()] },
        { "urls": [stun], "username": USER, "credential": PASSWORD },
    ]});
    let app = Router::new()
        .route("/join", get(move || async move { Json(full) }))
        .route("/join-stun", get(move || async move { Json(stun_only) }));
    let base = crate::support::serve_router(app).await;
    let probe = |path: &str| {
        let mut text = format!(
            "name = \"ice\"\nschedule = \"* * * * *\"\nca_file = \"ca.pem\"\ntimeout = \"20s\"\n\n\
             [[steps]]\nname = \"join\"\nkind = \"http\"\nurl = \"http://{base}{path}\"\n\
             extract = {{ urls = {{ json = \"$.iceServers[1].urls\" }}, user = {{ json = \"$.iceServers[1].username\" }}, \
             pass = {{ json = \"$.iceServers[1].credential\" }} }}\ntimeout = \"2s\"\n"
        );
        for (name, transport) in [("first", ""), ("tcp", "tcp"), ("tls", "TLS")] {
            text.push_str(&format!(
                "\n[[steps]]\nname = \"{name}\"\nkind = \"turn\"\nurl = \"{{{{urls}}}}\"\n\
                 username = \"{{{{user}}}}\"\ncredential = \"{{{{pass}}}}\"\npeer = \"{}\"\ntimeout = \"4s\"\n",
                peer.addr()
            ));
            if !transport.is_empty() {
                text.push_str(&format!("transport = \"{transport}\"\n"));
            }
        }
        text
    };
    let cfg = TempConfig::new("", &[("ice.toml", &probe("/join"))]);
    std::fs::write(cfg.probe_path("ca.pem"), server.ca_pem()).expect("write ca.pem");
    let plan = cfg.load(&[]).unwrap_or_else(|e| panic!("loads: {e}"));
    let run = crate::support::run_once(&plan.probes[0]).await;
    assert!(run.success, "{run:#?}\n{}", server.output());
    // The first TURN URI is UDP (no connect phase); the others open TCP, and TLS.
    assert!(
        !run.steps[1].phases.contains_key(&Phase::Connect),
        "{run:#?}"
    );
    assert!(
        run.steps[2].phases.contains_key(&Phase::Connect),
        "{run:#?}"
    );
    assert!(!run.steps[2].phases.contains_key(&Phase::Tls), "{run:#?}");
    assert!(run.steps[3].phases.contains_key(&Phase::Tls), "{run:#?}");
    assert_released(&server).await;

    let cfg = TempConfig::new("", &[("ice.toml", &probe("/join-stun"))]);
    std::fs::write(cfg.probe_path("ca.pem"), server.ca_pem()).expect("write ca.pem");
    let plan = cfg.load(&[]).unwrap_or_else(|e| panic!("loads: {e}"));
    let run = crate::support::run_once(&plan.probes[0]).await;
    assert_eq!(run.failed_step.as_deref(), Some("first"), "{run:#?}");
    assert_eq!(run.reason, Some(FailureReason::BodyMismatch), "{run:#?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(error.starts_with("url: none of "), "{error}");
    assert!(error.contains("names a TURN server"), "{error}");
}

/// The probe's deadline (3 s) cuts the step (30 s) while the echo waits for a peer that is
/// gone, over UDP, TCP and TLS: the step still releases its allocation inside the probe's
/// time, and the server holds no session afterwards.
#[tokio::test]
async fn the_probe_deadline_cutting_the_echo_still_releases_the_allocation() {
    let server = server(Auth::Static, &[]).await;
    let peer = peer().await;
    let gone = peer.addr();
    drop(peer);
    for url in [server.udp_url(), server.tcp_url(), server.tls_url()] {
        let text = probe(&user_spec(&url, &gone))
            .replacen("timeout = \"10s\"", "timeout = \"3s\"", 1)
            .replacen("timeout = \"5s\"", "timeout = \"30s\"", 1);
        let cfg = TempConfig::new("", &[("turn.toml", &text)]);
        std::fs::write(cfg.probe_path("ca.pem"), server.ca_pem()).expect("write ca.pem");
        let plan = cfg.load(&[]).unwrap_or_else(|e| panic!("loads: {e}"));
        let run = crate::support::run_once(&plan.probes[0]).await;
        assert_eq!(
            run.reason,
            Some(FailureReason::TurnRelay),
            "{url}: {run:#?}"
        );
        // Cut by the probe's 3 s, not the step's 30 s: far below the one, whatever the
        // machine's load (1 s with 2 s allowed left 1 s for a loaded machine's late timers).
        assert!(run.duration_ms < Duration::from_secs(15), "{url}: {run:#?}");
        assert_released(&server).await;
    }
}

/// A REST credential that expires while its allocation is held (the join handed out a short
/// one; the echo peer is down, so the step holds the allocation for its whole time): the
/// release at the end must still free the allocation, and the failure is the relay's.
#[tokio::test]
async fn a_rest_credential_expiring_mid_step_still_releases_its_allocation() {
    let server = server(Auth::Secret(SECRET.to_string()), &[]).await;
    let peer = peer().await;
    let gone = peer.addr();
    drop(peer);
    let expiry = chrono::Utc::now().timestamp() + 2;
    let (user, pass) = rest_credential(SECRET, "short", expiry);
    let step = run(
        &server,
        &spec(&server.udp_url(), Some(&user), Some(&pass), Some(&gone)),
    )
    .await;
    // The allocation was made before the expiry, the echo waited past it.
    assert!(chrono::Utc::now().timestamp() > expiry, "{step:#?}");
    assert_eq!(step.reason, Some(FailureReason::TurnRelay), "{step:#?}");
    assert_released(&server).await;
}

/// `turns:` is TLS with the certificate checked: a server name in the certificate passes with
/// the probe's CA trusted; a server whose CA was re-issued (same name, another key) since the
/// probe's `ca_file` was written fails `tls`, saying so, before any STUN is sent.
#[tokio::test]
async fn turns_checks_the_servers_certificate_against_the_probes_ca() {
    let server = server(Auth::Static, &[]).await;
    let peer = peer().await;
    let by_name = format!("turns:localhost:{}", server.tls_port);
    let step = relays(&server, &by_name, &peer).await;
    assert_phases(&step, &[Phase::Tls, Phase::Allocate, Phase::RelayRtt]);

    // Another CA of the same name: rustls alone says only "BadSignature".
    let other = crate::support::servers::test_ca().unwrap_or_else(|e| panic!("{e}"));
    let step = run_with(&other.ca_pem, &user_spec(&by_name, &peer.addr())).await;
    assert_eq!(step.reason, Some(FailureReason::Tls), "{step:#?}");
    let error = step.error.clone().unwrap_or_default();
    assert!(
        error.contains("BadSignature")
            && error.contains("re-issued")
            && error.contains("`ca_file`"),
        "{error}"
    );
    assert!(!step.phases.contains_key(&Phase::Binding), "{step:#?}");
    assert_released(&server).await;
}

/// The TURN server on the IPv6 loopback: `turn:[::1]` over UDP and TCP and `turns:[::1]`
/// bind (an IPv6 server-reflexive address), allocate (an IPv4 relay, RFC 6156's default) and
/// echo through it.
#[tokio::test]
async fn a_turn_server_on_ipv6_loopback_relays_over_udp_tcp_and_tls() {
    let server = server(Auth::Static, &["--listening-ip=::1"]).await;
    let peer = peer().await;
    for url in [
        format!("turn:[::1]:{}", server.port),
        format!("turn:[::1]:{}?transport=tcp", server.port),
        format!("turns:[::1]:{}", server.tls_port),
    ] {
        let step = relays(&server, &url, &peer).await;
        assert_phases(&step, &RELAYED);
    }
    assert_released(&server).await;
}

/// A step given a join's list of URIs names the one it took in its error: the page says
/// which TURN server (and transport) refused, not only that one did.
#[tokio::test]
async fn an_error_names_the_turn_uri_taken_from_a_list() {
    let server = server(Auth::Static, &[]).await;
    let peer = peer().await;
    let list = format!(
        "[\\\"stun:127.0.0.1:{port}\\\", \\\"{udp}\\\", \\\"{tcp}\\\"]",
        port = server.port,
        udp = server.udp_url(),
        tcp = server.tcp_url()
    );
    let step = run(
        &server,
        &spec(
            &list,
            Some(USER),
            Some("not-the-password"),
            Some(&peer.addr()),
        ),
    )
    .await;
    assert_eq!(step.reason, Some(FailureReason::TurnAuth), "{step:#?}");
    let error = step.error.clone().unwrap_or_default();
    assert!(error.starts_with("allocate: 401"), "{error}");
    assert!(
        error.ends_with(&format!(
            "({}, the first TURN URI of the list)",
            server.udp_url()
        )),
        "{error}"
    );
    // A single URI is named too (a page shows the step's name, not its `url`).
    let step = run(
        &server,
        &spec(
            &server.tcp_url(),
            Some(USER),
            Some("not-the-password"),
            None,
        ),
    )
    .await;
    let error = step.error.clone().unwrap_or_default();
    assert!(
        error.ends_with(&format!("({})", server.tcp_url())),
        "{error}"
    );
    assert_released(&server).await;
}
