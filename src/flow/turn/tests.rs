//! Unit tests of the `turn` step that need its private helpers (the REST expiry note, the UDP address race).

use super::*;

/// A REST username from a hostile join (`i64::MIN:user`) explains itself without an
/// overflow (a panic in a debug build, a wrapped number in release).
#[test]
fn an_expiry_from_outside_cannot_overflow() {
    let now = 1_800_000_000;
    assert_eq!(
        expiry_note(now - 90, now),
        "; the REST username expired 90.0 s ago"
    );
    assert!(expiry_note(i64::MIN, now).starts_with("; the REST username expired "));
    assert!(expiry_note(i64::MIN, i64::MAX).starts_with("; the REST username expired "));
    assert!(expiry_note(i64::MAX, now).contains("check the shared secret"));
}
use crate::template::Template;

/// A STUN server on 127.0.0.1 answering up to 16 Binding requests, for 10 s at most.
async fn answering() -> SocketAddr {
    use turn_types::stun::attribute::XorMappedAddress;
    use turn_types::stun::message::{
        Message, MessageWrite as _, MessageWriteExt as _, MessageWriteVec,
    };
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = vec![0u8; 2048];
            for _ in 0..16 {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(request) = Message::from_bytes(&buf[..n]) else {
                    continue;
                };
                let mut reply = Message::builder_success(&request, MessageWriteVec::new());
                let mapped = XorMappedAddress::new(from, request.transaction_id());
                reply.add_attribute(&mapped).unwrap();
                let _ = socket.send_to(&reply.finish(), from).await;
            }
        })
        .await;
    });
    addr
}

/// A name's addresses over UDP are each tried, as a browser's ICE agent would: one where
/// nothing listens (ICMP port unreachable), one that swallows every datagram (a dead path),
/// and the live one last still bind within the step's time; all dead, each is named.
#[tokio::test]
async fn udp_binding_tries_every_address_of_the_name() {
    let good = answering().await;
    let refused = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let silent_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent = silent_socket.local_addr().unwrap();
    let uri = uri::pick("turn:relay.example:3478", None).unwrap();
    for addrs in [vec![refused, silent, good], vec![silent, good]] {
        let work = Instant::now() + Duration::from_secs(3);
        let (session, reflexive) = bind(Target::Udp(addrs.clone()), &uri, work)
            .await
            .unwrap_or_else(|e| panic!("{addrs:?}: {e:?}"));
        assert!(reflexive.ip().is_loopback(), "{reflexive}");
        assert!(!session.allocated());
    }
    let work = Instant::now() + Duration::from_millis(600);
    let e = bind(Target::Udp(vec![refused, silent]), &uri, work)
        .await
        .err()
        .expect("no address answers");
    assert!(
        e.message.starts_with(&format!(
            "binding: none of the 2 addresses of `relay.example` answered: {refused}: nothing answers"
        )),
        "{e:?}"
    );
    assert!(
        e.message.contains(&format!("; {silent}: no answer")),
        "{e:?}"
    );
    assert_eq!(e.reason, FailureReason::Timeout, "the last one's: {e:?}");
}

#[test]
fn rest_credentials_match_the_reference_computation() {
    // Python: base64(hmac.new(b"north", b"1700000000:canary", sha1).digest())
    assert_eq!(
        rest_credential("north", "canary", 1_700_000_000),
        (
            "1700000000:canary".to_string(),
            "cALSHScwSHrmz+3+9oz3hgxSgSM=".to_string()
        )
    );
    // Python: hashlib.md5(b"1700000000:canary:example.org:pw").hexdigest()
    assert_eq!(
        long_term_key_hex("1700000000:canary", "example.org", "pw"),
        "cd6c98cea2f964f9ac293008dcc98a86"
    );
}

#[test]
fn error_codes_name_the_layer() {
    for (code, reason) in [
        (401, FailureReason::TurnAuth),
        (441, FailureReason::TurnAuth),
        (486, FailureReason::TurnCapacity),
        (508, FailureReason::TurnCapacity),
        (403, FailureReason::TurnForbidden),
        (437, FailureReason::ServerError),
        (500, FailureReason::ServerError),
    ] {
        let e = refused("allocate", code, "Words", "why");
        assert_eq!(e.reason, reason, "{code}");
        // The server's code and words open the message; the explanation follows.
        let shown = crate::redact::finish(&Default::default(), &e.message);
        assert_eq!(shown, format!("allocate: {code} Words{CAUSE_END}why"));
    }
}

#[test]
fn debug_never_shows_the_secret() {
    let spec = TurnSpec {
        url: Template::literal("turn:127.0.0.1"),
        username: None,
        credential: Some(Template::literal("hunter2-credential")),
        secret: Some("hunter2-secret".into()),
        credential_ttl: DEFAULT_CREDENTIAL_TTL,
        peer: None,
        transport: None,
        secret_empty: false,
    };
    let shown = format!("{spec:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}
