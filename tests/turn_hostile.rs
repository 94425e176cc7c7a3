//! The `turn` step against hostile STUN/TURN servers on 127.0.0.1 (UDP and TCP): garbage, a
//! message whose attributes overrun it, 64 KiB replies, answers with another transaction ID,
//! a MESSAGE-INTEGRITY that does not verify, a flood of indications of other transactions, 438
//! Stale Nonce to every fresh nonce, a 401 without REALM, an error without ERROR-CODE, a TCP
//! answer trickled past the deadline; numbers no server may send: a mapped or relayed address
//! with port 0 or the unspecified address, a LIFETIME of 0, an ERROR-CODE outside 300–699.
//! Each fails with `protocol`, within the step's time, without a panic.

use std::net::SocketAddr;
use std::time::Duration;

use joincanary::report::{FailureReason, Phase, StepReport};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use turn_types::attribute::{Lifetime, XorRelayedAddress};
use turn_types::message::ALLOCATE;
use turn_types::stun::attribute::{
    AttributeStaticType as _, ErrorCode, Nonce, Realm, XorMappedAddress,
};
use turn_types::stun::message::{
    BINDING, IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageWrite as _,
    MessageWriteExt as _, MessageWriteVec,
};

use crate::support::probe_from;

const TIMEOUT: Duration = Duration::from_secs(2);
const PASSWORD: &str = "hostile-pass-3c1";

/// How the hostile server answers one request (`None`: not at all).
type Behave = fn(&Message<'_>) -> Vec<Vec<u8>>;

/// A UDP server on 127.0.0.1 answering up to 64 datagrams with `behave`, for 10 s at most.
async fn udp_server(behave: Behave) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = vec![0u8; 2048];
            for _ in 0..64 {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(request) = Message::from_bytes(&buf[..n]) else {
                    continue;
                };
                for reply in behave(&request) {
                    let _ = socket.send_to(&reply, from).await;
                }
            }
        })
        .await;
    });
    addr
}

/// A TCP server on 127.0.0.1 answering up to 16 requests on each of up to 4 connections
/// with `behave`, for 10 s at most.
async fn tcp_server(behave: Behave) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            for _ in 0..4 {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(tokio::time::timeout(
                    Duration::from_secs(10),
                    serve_tcp(conn, behave),
                ));
            }
        })
        .await;
    });
    addr
}

/// One STUN message off a TCP stream (RFC 8489 §6.2.2: the header's length field frames it).
async fn read_stun_message(conn: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut head = [0u8; 20];
    conn.read_exact(&mut head).await.ok()?;
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let mut msg = head.to_vec();
    msg.resize(20 + len, 0);
    conn.read_exact(&mut msg[20..]).await.ok()?;
    Some(msg)
}

async fn serve_tcp(mut conn: tokio::net::TcpStream, behave: Behave) {
    for _ in 0..16 {
        let Some(msg) = read_stun_message(&mut conn).await else {
            return;
        };
        let Ok(request) = Message::from_bytes(&msg) else {
            return;
        };
        for reply in behave(&request) {
            if conn.write_all(&reply).await.is_err() {
                return;
            }
        }
    }
    // Held open: the client decides when it is over.
    std::future::pending::<()>().await;
}

async fn run(url: &str) -> StepReport {
    let probe = format!(
        r#"
name = "hostile-turn"
schedule = "* * * * *"
timeout = "10s"

[[steps]]
name = "relay"
kind = "turn"
url = "{url}"
username = "canary"
credential = "{PASSWORD}"
peer = "127.0.0.1:9"
timeout = "{}s"
"#,
        TIMEOUT.as_secs()
    );
    let plan = probe_from(&probe, &[]);
    let run = crate::support::run_once(&plan).await;
    run.steps.into_iter().next().expect("the step ran")
}

/// The step against a hostile UDP server behaving as `behave`.
async fn over_udp(behave: Behave) -> StepReport {
    run(&format!("turn:{}", udp_server(behave).await)).await
}

/// The step against a hostile TCP server behaving as `behave`.
async fn over_tcp(behave: Behave) -> StepReport {
    run(&format!("turn:{}?transport=tcp", tcp_server(behave).await)).await
}

fn assert_protocol(step: &StepReport, phase: &str, words: &str) {
    assert_eq!(step.reason, Some(FailureReason::Protocol), "{step:#?}");
    let error = step.error.as_deref().unwrap_or_default();
    assert!(error.starts_with(&format!("{phase}: ")), "{error}");
    assert!(error.contains(words), "{words} in {error}");
    assert!(
        step.duration_ms <= TIMEOUT + Duration::from_millis(300),
        "{step:#?}"
    );
}

fn binding_success(request: &Message<'_>) -> Vec<u8> {
    binding_answer(request, "127.0.0.1:4242")
}

/// A Binding success response mapping the client to `mapped`.
fn binding_answer(request: &Message<'_>, mapped: &str) -> Vec<u8> {
    let mut reply = Message::builder_success(request, MessageWriteVec::new());
    let addr: SocketAddr = mapped.parse().unwrap();
    reply
        .add_attribute(&XorMappedAddress::new(addr, request.transaction_id()))
        .unwrap();
    reply.finish()
}

/// A success response carrying `relayed` and `lifetime` (none: no attribute), signed with
/// `password` ([`signed`]).
fn signed_success(
    request: &Message<'_>,
    relayed: Option<&str>,
    lifetime: Option<u32>,
    password: &str,
) -> Vec<u8> {
    let mut reply = Message::builder_success(request, MessageWriteVec::new());
    if let Some(relayed) = relayed {
        let relayed: SocketAddr = relayed.parse().unwrap();
        reply
            .add_attribute(&XorRelayedAddress::new(relayed, request.transaction_id()))
            .unwrap();
    }
    if let Some(seconds) = lifetime {
        reply.add_attribute(&Lifetime::new(seconds)).unwrap();
    }
    signed(reply, password)
}

fn garbage(_: &Message<'_>) -> Vec<Vec<u8>> {
    vec![b"\xffHTTP/1.1 400 Bad Request\r\n\r\n".to_vec()]
}

/// A success response whose one attribute claims more bytes than the message has.
fn overrun(request: &Message<'_>) -> Vec<Vec<u8>> {
    let mut reply = binding_success(request);
    // The XOR-MAPPED-ADDRESS length (offset 22) now runs past the end.
    reply[22] = 0x0f;
    vec![reply]
}

/// 64,000 bytes for every request (about the largest datagram UDP carries): a STUN header
/// announcing that length, then filler.
fn huge(request: &Message<'_>) -> Vec<Vec<u8>> {
    let mut reply = binding_success(request);
    let len: u16 = 64_000 - 20;
    reply[2..4].copy_from_slice(&len.to_be_bytes());
    reply.resize(64_000, 0x41);
    vec![reply]
}

/// A valid answer, but with another transaction ID.
fn wrong_transaction(request: &Message<'_>) -> Vec<Vec<u8>> {
    let mut reply = binding_success(request);
    reply[8] ^= 0xff;
    vec![reply]
}

/// Binding answered; Allocate challenged; the credentialed Allocate answered with a
/// MESSAGE-INTEGRITY made with another password.
fn bad_integrity(request: &Message<'_>) -> Vec<Vec<u8>> {
    if !request.has_method(ALLOCATE) {
        return vec![binding_success(request)];
    }
    if !request.has_attribute(Realm::TYPE) {
        return vec![allocate_error(request, Some(401), true)];
    }
    vec![signed_success(
        request,
        Some("127.0.0.1:4343"),
        None,
        "not-it",
    )]
}

/// `reply` with a MESSAGE-INTEGRITY made with `password` (the client's is [`PASSWORD`]) in
/// the realm `hostile`.
fn signed(mut reply: MessageWriteVec, password: &str) -> Vec<u8> {
    let key = LongTermKeyCredentials::new("canary".into(), password.into(), "hostile".into())
        .make_key(IntegrityAlgorithm::Sha1);
    reply
        .add_message_integrity_with_key(&key, IntegrityAlgorithm::Sha1)
        .unwrap();
    reply.finish()
}

/// A server that answers the first Allocate it sees with 437 (an allocation still held for
/// that 5-tuple) and behaves from then on: the client must try another local port.
fn mismatch_once(request: &Message<'_>) -> Vec<Vec<u8>> {
    static MISMATCHED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if request.has_method(BINDING) {
        return vec![binding_success(request)];
    }
    if request.has_method(ALLOCATE) && !request.has_attribute(Realm::TYPE) {
        let code = if MISMATCHED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            401
        } else {
            437
        };
        return vec![allocate_error(request, Some(code), true)];
    }
    if !request.has_class(MessageClass::Request) {
        return Vec::new();
    }
    // Allocate, CreatePermission, Refresh: success, signed with the client's own key.
    let relayed = request.has_method(ALLOCATE).then_some("127.0.0.1:4343");
    vec![signed_success(request, relayed, None, PASSWORD)]
}

/// An error response to Allocate: `code` (none: no ERROR-CODE), with REALM and NONCE when
/// `challenge`; the nonce differs each time.
fn allocate_error(request: &Message<'_>, code: Option<u16>, challenge: bool) -> Vec<u8> {
    static NONCES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let mut reply = Message::builder_error(request, MessageWriteVec::new());
    if let Some(code) = code {
        reply
            .add_attribute(&ErrorCode::new(code, "Nope").unwrap())
            .unwrap();
    }
    if challenge {
        let n = NONCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        reply
            .add_attribute(&Realm::new("hostile").unwrap())
            .unwrap();
        reply
            .add_attribute(&Nonce::new(&format!("n0nce-{n}")).unwrap())
            .unwrap();
    }
    reply.finish()
}

/// Binding answered; Allocate challenged, then answered 438 Stale Nonce (with a fresh nonce)
/// however often the client takes the new one.
fn stale_forever(request: &Message<'_>) -> Vec<Vec<u8>> {
    if !request.has_method(ALLOCATE) {
        return vec![binding_success(request)];
    }
    let code = if request.has_attribute(Realm::TYPE) {
        438
    } else {
        401
    };
    vec![allocate_error(request, Some(code), true)]
}

/// Binding answered; Allocate answered 401 without REALM and NONCE.
fn challenge_without_realm(request: &Message<'_>) -> Vec<Vec<u8>> {
    if !request.has_method(ALLOCATE) {
        return vec![binding_success(request)];
    }
    vec![allocate_error(request, Some(401), false)]
}

/// Binding answered; Allocate answered with an error response carrying no ERROR-CODE.
fn error_without_code(request: &Message<'_>) -> Vec<Vec<u8>> {
    if !request.has_method(ALLOCATE) {
        return vec![binding_success(request)];
    }
    vec![allocate_error(request, None, true)]
}

/// Every request answered by 70 indications of other transactions, never by a response.
fn flood(request: &Message<'_>) -> Vec<Vec<u8>> {
    let mut reply = binding_success(request);
    // A Binding indication (class bits 0x0010), another transaction ID.
    reply[0] = 0x00;
    reply[1] = 0x11;
    reply[8] ^= 0xff;
    vec![reply; 70]
}

/// Binding answered with `mapped`; Allocate challenged, then answered with `relayed` and
/// `lifetime` (none: no attribute), signed with the client's own key.
fn allocation_of(
    request: &Message<'_>,
    mapped: &str,
    relayed: Option<&str>,
    lifetime: Option<u32>,
) -> Vec<Vec<u8>> {
    if request.has_method(BINDING) {
        return vec![binding_answer(request, mapped)];
    }
    if !request.has_attribute(Realm::TYPE) {
        return vec![allocate_error(request, Some(401), true)];
    }
    vec![signed_success(request, relayed, lifetime, PASSWORD)]
}

fn mapped_port_zero(request: &Message<'_>) -> Vec<Vec<u8>> {
    allocation_of(request, "127.0.0.1:0", Some("127.0.0.1:4343"), Some(600))
}

fn mapped_unspecified(request: &Message<'_>) -> Vec<Vec<u8>> {
    allocation_of(request, "0.0.0.0:4242", Some("127.0.0.1:4343"), Some(600))
}

fn relayed_port_zero(request: &Message<'_>) -> Vec<Vec<u8>> {
    allocation_of(request, "127.0.0.1:4242", Some("127.0.0.1:0"), Some(600))
}

fn relayed_unspecified(request: &Message<'_>) -> Vec<Vec<u8>> {
    allocation_of(request, "127.0.0.1:4242", Some("[::]:4343"), Some(600))
}

fn no_relayed_address(request: &Message<'_>) -> Vec<Vec<u8>> {
    allocation_of(request, "127.0.0.1:4242", None, Some(600))
}

fn lifetime_zero(request: &Message<'_>) -> Vec<Vec<u8>> {
    allocation_of(request, "127.0.0.1:4242", Some("127.0.0.1:4343"), Some(0))
}

/// Allocate answered with an ERROR-CODE whose class is 9 (999): no such code exists.
fn error_code_out_of_range(request: &Message<'_>) -> Vec<Vec<u8>> {
    if !request.has_method(ALLOCATE) {
        return vec![binding_success(request)];
    }
    let mut reply = allocate_error(request, Some(499), true);
    // ERROR-CODE is the first attribute: type, length, 2 reserved bytes, class, number.
    assert_eq!(&reply[20..22], &[0x00, 0x09], "ERROR-CODE first");
    reply[26] = 9;
    reply[27] = 99;
    vec![reply]
}

/// Numbers no server may send fail with `protocol` naming them (before: a mapped or relayed
/// port 0, the unspecified address or a LIFETIME of 0 were taken as an allocation, the step
/// then failing as `turn_relay` or passing on an address no peer could reach).
#[tokio::test]
async fn addresses_and_numbers_no_server_may_send_fail_with_protocol() {
    let cases: [(Behave, &str, &str); 7] = [
        (
            mapped_port_zero,
            "binding",
            "XOR-MAPPED-ADDRESS 127.0.0.1:0 is no address",
        ),
        (
            mapped_unspecified,
            "binding",
            "XOR-MAPPED-ADDRESS 0.0.0.0:4242 is no address",
        ),
        (
            relayed_port_zero,
            "allocate",
            "XOR-RELAYED-ADDRESS 127.0.0.1:0 is no address",
        ),
        (
            relayed_unspecified,
            "allocate",
            "XOR-RELAYED-ADDRESS [::]:4343 is no address",
        ),
        (
            no_relayed_address,
            "allocate",
            "carries no XOR-RELAYED-ADDRESS",
        ),
        (lifetime_zero, "allocate", "LIFETIME of 0 s"),
        (error_code_out_of_range, "allocate", "ERROR-CODE"),
    ];
    for (behave, phase, words) in cases {
        let step = over_udp(behave).await;
        assert_protocol(&step, phase, words);
    }
}

#[tokio::test]
async fn garbage_and_broken_messages_fail_with_protocol() {
    let step = over_udp(garbage).await;
    assert_protocol(&step, "binding", "neither STUN nor ChannelData");

    let step = over_udp(overrun).await;
    assert_protocol(&step, "binding", "malformed STUN message");

    let step = over_tcp(garbage).await;
    assert_protocol(&step, "binding", "neither STUN nor ChannelData");
}

#[tokio::test]
async fn huge_replies_fail_with_protocol_before_they_are_read() {
    let step = over_udp(huge).await;
    assert_protocol(&step, "binding", "over the 4096-byte cap");

    let step = over_tcp(huge).await;
    assert_protocol(&step, "binding", "over the 4096-byte cap");
}

#[tokio::test]
async fn answers_with_another_transaction_id_fail_with_protocol() {
    let step = over_udp(wrong_transaction).await;
    assert_protocol(&step, "binding", "answering nothing asked");
    assert!(step.phases.contains_key(&Phase::Binding), "{step:#?}");
}

#[tokio::test]
async fn a_message_integrity_that_does_not_verify_fails_with_protocol() {
    for url in ["udp", "tcp"] {
        let addr = if url == "udp" {
            udp_server(bad_integrity).await
        } else {
            tcp_server(bad_integrity).await
        };
        let step = run(&format!("turn:{addr}?transport={url}")).await;
        assert_protocol(&step, "allocate", "MESSAGE-INTEGRITY");
        assert!(step.phases.contains_key(&Phase::Binding), "{step:#?}");
        assert!(!format!("{step:?}").contains(PASSWORD));
    }
}

#[tokio::test]
async fn allocation_mismatch_is_retried_from_another_local_port() {
    let step = over_udp(mismatch_once).await;
    // Past allocate and permission; the hostile server echoes nothing.
    assert_eq!(step.reason, Some(FailureReason::TurnRelay), "{step:#?}");
    assert!(step.phases.contains_key(&Phase::Permission), "{step:#?}");
}

#[tokio::test]
async fn a_flood_of_indications_fails_with_protocol() {
    let step = over_udp(flood).await;
    assert_protocol(&step, "binding", "64 messages that answer nothing");
}

#[tokio::test]
async fn an_endless_stale_nonce_or_a_challenge_without_realm_fails_with_protocol() {
    let step = over_udp(stale_forever).await;
    assert_protocol(
        &step,
        "allocate",
        "438 Stale Nonce again after 2 new nonces",
    );

    let step = over_tcp(stale_forever).await;
    assert_protocol(&step, "allocate", "438 Stale Nonce again");

    let step = over_udp(challenge_without_realm).await;
    assert_protocol(&step, "allocate", "the challenge carries no REALM");

    let step = over_udp(error_without_code).await;
    assert_protocol(&step, "allocate", "without a readable ERROR-CODE");
}

/// A TCP server that answers the Binding with a header announcing 100 bytes of attributes,
/// then trickles them one every 300 ms (20 at most).
#[tokio::test]
async fn a_tcp_answer_trickled_past_the_deadline_fails_with_protocol() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tokio::time::timeout(Duration::from_secs(10), async move {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let Some(msg) = read_stun_message(&mut conn).await else {
            return;
        };
        let Ok(request) = Message::from_bytes(&msg) else {
            return;
        };
        let mut reply = binding_success(&request);
        reply[2] = 0;
        reply[3] = 100;
        let _ = conn.write_all(&reply[..20]).await;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if conn.write_all(&[0]).await.is_err() {
                return;
            }
        }
    }));
    let step = run(&format!("turn:{addr}?transport=tcp")).await;
    assert_protocol(
        &step,
        "binding",
        "bytes of a 120-byte message and not the rest",
    );
}
