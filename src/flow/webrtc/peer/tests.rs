//! The peer's tests: two str0m peers on loopback (ICE, DTLS, echoes), hostile SDP, a
//! certificate that does not match its fingerprint, deadlines, a publisher whose task panics.

use rand::{Rng as _, SeedableRng as _};

use super::*;

const LOOPBACK: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

/// A valid answer to `offer`, from a second str0m peer (never connected).
async fn valid_answer(offer: &str) -> String {
    Peer::answer(LOOPBACK, offer).await.unwrap().1
}

#[tokio::test]
async fn hostile_sdp_never_panics_and_fails_with_protocol() {
    let (mut offerer, offer) = Peer::offer(LOOPBACK).await.unwrap();
    let good = valid_answer(&offer).await;
    let mut cases: Vec<String> = [
        "",
        "v=0",
        "\r\n\r\n",
        "garbage",
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n",
        "v=0\r\na=fingerprint:sha-256 zz\r\nm=audio 1 RTP/AVP 999999999999\r\n",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    cases.push(good.replace("a=fingerprint", "a=fingerprint-gone"));
    cases.push(good.replace("a=ice-ufrag", "a=x"));
    cases.push(good.replace("a=setup:", "a=setup:nonsense-"));
    cases.push(good.replace("m=application", "m=video"));
    cases.push(good.replace("a=candidate:", "a=candidate:\u{1F4A9} 1 udp x y z typ host"));
    cases.push(format!("{good}{}", "a=x\r\n".repeat(20_000)));
    // Seeded mutations of the valid answer: cut short, bytes flipped, lines dropped or
    // doubled. Only parsing and the SDP state change run: nothing is sent.
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    let lines: Vec<&str> = good.lines().collect();
    for _ in 0..200 {
        let mut bytes = good.clone().into_bytes();
        match rng.random_range(0..4) {
            0 => bytes.truncate(rng.random_range(0..bytes.len())),
            1 => {
                for _ in 0..rng.random_range(1..8) {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] = rng.random();
                }
            }
            2 => {
                let drop = rng.random_range(0..lines.len());
                let kept: Vec<&str> = (0..lines.len())
                    .filter(|i| *i != drop)
                    .map(|i| lines[i])
                    .collect();
                bytes = kept.join("\r\n").into_bytes();
            }
            _ => {
                let twice = rng.random_range(0..lines.len());
                let mut all = lines.clone();
                all.insert(twice, lines[twice]);
                bytes = all.join("\r\n").into_bytes();
            }
        }
        cases.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    let mut refused = 0;
    for case in &cases {
        let (mut peer, _) = Peer::offer(LOOPBACK).await.unwrap();
        if let Err(e) = peer.take_answer(Some(case)).await {
            assert_eq!(e.reason, FailureReason::Protocol, "{e:?} for {case:?}");
            refused += 1;
        }
        // The other way round: the same text as a remote offer.
        if let Err(e) = Peer::answer(LOOPBACK, case).await {
            assert_eq!(e.reason, FailureReason::Protocol, "{e:?} for {case:?}");
        }
    }
    // The hand-written cases and most mutations are refused before any I/O.
    assert!(refused > cases.len() / 4, "{refused} of {}", cases.len());
    // The valid answer itself is taken by the peer it answers.
    offerer.take_answer(Some(&good)).await.unwrap();
}

/// Offerer `a` and answerer `b` on 127.0.0.1, connected at once, each echoing the other's
/// messages; `forge` may change the answer `a` takes.
async fn pair(
    forge: impl Fn(&str) -> String,
) -> (
    Result<EchoReport, StepError>,
    Result<EchoReport, StepError>,
    BTreeMap<Phase, Duration>,
) {
    let (mut a, offer) = Peer::offer(LOOPBACK).await.unwrap();
    let (mut b, answer) = Peer::answer(LOOPBACK, &offer).await.unwrap();
    let echo = EchoOptions {
        count: 5,
        interval: Duration::from_millis(5),
        // Ample on a loaded machine (300 ms lost echoes with a build beside it): the
        // passing case ends when the last echo is back, not after the wait.
        wait: Duration::from_secs(1),
    };
    // A peer echoes only until its own traffic is done, and on a loaded machine one
    // side's data channel can open tens of ms after the other's: `b` sends 40 messages
    // (200 ms) and waits 500 ms after its last, so it is still there, echoing, when every
    // one of `a`'s five arrives, whichever side opened first.
    let echo_b = EchoOptions {
        count: 40,
        wait: Duration::from_millis(500),
        ..echo.clone()
    };
    let deadline = Instant::now() + Duration::from_secs(4);
    let (mut phases_a, mut pending_a) = (BTreeMap::new(), None);
    let (mut phases_b, mut pending_b) = (BTreeMap::new(), None);
    let answer = forge(&answer);
    let (ra, rb) = tokio::join!(
        a.connect(
            Some(&answer),
            &echo,
            deadline,
            Timings {
                phases: &mut phases_a,
                pending: &mut pending_a,
            },
        ),
        b.connect(
            None,
            &echo_b,
            deadline,
            Timings {
                phases: &mut phases_b,
                pending: &mut pending_b,
            },
        ),
    );
    (ra, rb, phases_a)
}

#[tokio::test]
async fn two_peers_on_loopback_connect_and_echo_each_other() {
    let (a, b, phases) = pair(str::to_string).await;
    let a = a.unwrap();
    assert_eq!((a.sent, a.received), (5, 5), "{a:?}");
    // `a` leaves once its own five are back, so `b` hears the echoes of those of its 40
    // that `a` was there for: some, or none if all five of `a`'s went first.
    match &b {
        Ok(b) => assert!(b.sent == 40 && b.received >= 1, "{b:?}"),
        Err(e) => assert_eq!(e.reason, FailureReason::Media, "{e:?}"),
    }
    assert_eq!(a.loss_ratio(), 0.0);
    for phase in [Phase::Ice, Phase::Dtls, Phase::FirstMedia] {
        assert!(phases.contains_key(&phase), "{phase:?}: {phases:?}");
    }
}

#[tokio::test]
async fn a_certificate_not_matching_the_fingerprint_fails_dtls() {
    let (a, _, phases) = pair(|sdp| {
        sdp.lines()
            .map(|l| match l.strip_prefix("a=fingerprint:sha-256 ") {
                Some(hex) => format!(
                    "a=fingerprint:sha-256 {}{}",
                    if hex.starts_with("00") { "11" } else { "00" },
                    &hex[2..]
                ),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\r\n")
    })
    .await;
    let e = a.unwrap_err();
    assert_eq!(e.reason, FailureReason::Dtls, "{e:?}");
    assert!(e.message.contains("a=fingerprint"), "{e:?}");
    assert!(phases.contains_key(&Phase::Ice) && !phases.contains_key(&Phase::FirstMedia));
}

#[tokio::test]
async fn connect_without_the_answer_or_with_one_too_many_is_refused() {
    let (mut a, _) = Peer::offer(LOOPBACK).await.unwrap();
    let e = a.take_answer(None).await.unwrap_err();
    assert_eq!(e.reason, FailureReason::Protocol);
    let (_, offer) = Peer::offer(LOOPBACK).await.unwrap();
    let (mut b, answer) = Peer::answer(LOOPBACK, &offer).await.unwrap();
    let e = b.take_answer(Some(&answer)).await.unwrap_err();
    assert_eq!(e.reason, FailureReason::Protocol);
}

/// Our offer carries no candidate (the default); the answer names none, or only one that
/// nothing answers at (127.0.0.1:9): `ice` fails, at once or by the deadline, never later.
#[tokio::test]
async fn an_answer_without_a_reachable_candidate_fails_ice_by_the_deadline() {
    fn without(answer: &str) -> String {
        answer
            .lines()
            .filter(|l| !l.starts_with("a=candidate:"))
            .map(|l| format!("{l}\r\n"))
            .collect()
    }
    fn unreachable(answer: &str) -> String {
        answer
            .lines()
            .map(|l| match l.strip_prefix("a=candidate:") {
                Some(_) => "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n".to_string(),
                None => format!("{l}\r\n"),
            })
            .collect()
    }
    let echo = EchoOptions {
        count: 1,
        interval: Duration::ZERO,
        wait: Duration::from_millis(100),
    };
    for (forge, words) in [
        (without as fn(&str) -> String, "no ICE candidate"),
        (unreachable, "no ICE connectivity"),
    ] {
        let (mut a, offer) = Peer::offer(None).await.unwrap();
        // The answerer is never driven: it answers no check either.
        let (_b, answer) = Peer::answer(LOOPBACK, &offer).await.unwrap();
        let answer = forge(&answer);
        let (mut phases, mut pending) = (BTreeMap::new(), None);
        let deadline = Instant::now() + Duration::from_millis(800);
        let e = a
            .connect(
                Some(&answer),
                &echo,
                deadline,
                Timings {
                    phases: &mut phases,
                    pending: &mut pending,
                },
            )
            .await
            .unwrap_err();
        assert_eq!(e.reason, FailureReason::Ice, "{e:?}");
        assert!(e.message.contains(words), "{words}: {e:?}");
        assert!(
            Instant::now() <= deadline + Duration::from_millis(300),
            "{e:?}"
        );
    }
}

/// Before, a panic in the publisher's background task ended it without a word: the
/// receiver waited out its whole timeout and blamed the SFU (`media`). Now the panic is
/// caught and kept, the task ends (its socket closed), and a receiver fails at once with
/// `local`, naming it.
#[tokio::test]
async fn a_publisher_whose_task_panics_fails_its_receiver_at_once_with_local() {
    crate::supervise::fault::arm(crate::supervise::Task::Run, "peer-tests/pub", 1);
    let (a, offer) = Peer::offer(LOOPBACK).await.unwrap();
    let (mut b, answer) = Peer::answer(LOOPBACK, &offer).await.unwrap();
    // `b` is driven meanwhile so that `a` connects and publishes its first message.
    let deadline = Instant::now() + Duration::from_secs(10);
    let echo = EchoOptions {
        count: 1,
        interval: Duration::ZERO,
        wait: Duration::from_secs(1),
    };
    let driven = tokio::spawn(async move {
        let (mut phases, mut pending) = (BTreeMap::new(), None);
        let timings = Timings {
            phases: &mut phases,
            pending: &mut pending,
        };
        let _ = b.connect(None, &echo, deadline, timings).await;
    });
    let (mut phases, mut pending) = (BTreeMap::new(), None);
    let options = PublishOptions {
        count: 1000,
        interval: Duration::from_millis(20),
    };
    let publisher = a
        .publish(
            ("peer-tests", "pub"),
            Some(&answer),
            &options,
            deadline,
            Timings {
                phases: &mut phases,
                pending: &mut pending,
            },
            None,
        )
        .await
        .unwrap();
    driven.abort();
    // The background task panicked at its start: recorded, not lost (bounded wait).
    let log = publisher.log.clone();
    for _ in 0..200 {
        if log.stopped().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopped = log.stopped().unwrap_or_default();
    assert!(
        stopped.contains("its task panicked: injected fault in the run task for peer-tests/pub"),
        "{stopped:?}"
    );
    // A receiver (never connected: its remote is not driven) fails at once, not at its
    // deadline, with the prober's own reason.
    let (mut c, offer) = Peer::offer(LOOPBACK).await.unwrap();
    let (_d, answer) = Peer::answer(LOOPBACK, &offer).await.unwrap();
    let started = Instant::now();
    let (mut phases, mut pending) = (BTreeMap::new(), None);
    let e = c
        .receive(
            Some(&answer),
            ("pub", log),
            (10, Duration::from_secs(1)),
            started + Duration::from_secs(10),
            Timings {
                phases: &mut phases,
                pending: &mut pending,
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.reason, FailureReason::Local, "{e:?}");
    assert!(
        e.message
            .starts_with("connection `pub` stopped publishing: its task panicked: injected fault")
            && e.message.contains("a joincanary bug"),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{e:?}");
}
