//! Hostile SDP (issue 17, "everything from outside is bounded", for the `webrtc` step): what
//! a signalling server hands the step as the SFU's answer or offer, built from a real answer of
//! a second peer on 127.0.0.1 and then made hostile — a huge SDP, 10,000 candidates, ports out
//! of range, a fingerprint of the wrong length, numbers past every type's range. What the step
//! uses fails with `protocol` before any connection is tried (before: an `ice` or `dtls` wait
//! to the deadline, blaming the network); what it does not use (the `m=` port, `sctp-port`,
//! `max-message-size`) is taken as the valid answer is. No case panics; the 64 KiB cap keeps
//! every parse bounded.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use joincanary::flow::StepError;
use joincanary::flow::webrtc::{EchoOptions, Peer, Timings};
use joincanary::report::FailureReason;
use tokio::time::Instant;

const LOOPBACK: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));

/// A fresh offer and a real answer to it (from a peer that is never driven).
async fn offer_and_answer() -> (Peer, String) {
    let (peer, offer) = Peer::offer(LOOPBACK).await.expect("an offer");
    let (_far, answer) = Peer::answer(LOOPBACK, &offer).await.expect("an answer");
    (peer, answer)
}

/// `peer` connecting with `answer` under a 2 s deadline: the error, and how long it took.
async fn connect(peer: &mut Peer, answer: &str) -> (Result<(), StepError>, Duration) {
    let (mut phases, mut pending) = (BTreeMap::new(), None);
    let echo = EchoOptions {
        count: 1,
        interval: Duration::ZERO,
        wait: Duration::from_millis(100),
    };
    let started = Instant::now();
    let result = peer
        .connect(
            Some(answer),
            &echo,
            started + Duration::from_secs(2),
            Timings {
                phases: &mut phases,
                pending: &mut pending,
            },
        )
        .await
        .map(|_| ());
    (result, started.elapsed())
}

/// Each line of `sdp` passed through `edit` (which may return several lines, or none).
fn lines(sdp: &str, edit: impl Fn(&str) -> String) -> String {
    sdp.lines().map(edit).collect()
}

/// The answer's candidate lines with their `field`th field (`port` 5, `priority` 3) replaced
/// by `value`.
fn with_field(sdp: &str, field: usize, value: &str) -> String {
    lines(sdp, |l| {
        if l.starts_with("a=candidate:") {
            // foundation component transport priority address port typ …
            let mut parts: Vec<&str> = l.split(' ').collect();
            if parts.len() > field {
                parts[field] = value;
            }
            format!("{}\r\n", parts.join(" "))
        } else {
            format!("{l}\r\n")
        }
    })
}

/// The hostile answers, by name, each made from `good` (a real answer to the offer it is
/// given to): `(name, answer, refused)`, `refused` when the step must fail with `protocol`.
fn hostile(good: &str) -> Vec<(String, String, bool)> {
    let candidate = good
        .lines()
        .find(|l| l.starts_with("a=candidate:"))
        .expect("the answer has a candidate")
        .to_string();
    let replace_line = |prefix: &str, with: &str| {
        lines(good, |l| {
            if l.starts_with(prefix) {
                format!("{with}\r\n")
            } else {
                format!("{l}\r\n")
            }
        })
    };
    let candidates = |n: usize| {
        lines(good, |l| {
            if l.starts_with("a=candidate:") {
                format!("{l}\r\n").repeat(n)
            } else {
                format!("{l}\r\n")
            }
        })
    };
    let mut cases: Vec<(String, String, bool)> = vec![
        (
            "a 1 MiB SDP".into(),
            format!("{good}{}", "a=x-pad:0123456789abcdef\r\n".repeat(40_000)),
            true,
        ),
        ("10,000 candidates".into(), candidates(10_000), true),
        // Under the cap: parsed (bounded by it), the first 32 used.
        ("500 candidates".into(), candidates(500), false),
        (
            "candidate priority 2^64".into(),
            with_field(good, 3, "18446744073709551616"),
            true,
        ),
        (
            "candidate without its type".into(),
            good.replace(&candidate, candidate.split(" typ ").next().unwrap_or("")),
            true,
        ),
    ];
    for port in [
        "0",
        "65536",
        "99999",
        "-1",
        "18446744073709551617",
        "9e9",
        "x",
    ] {
        cases.push((
            format!("candidate port `{port}`"),
            with_field(good, 5, port),
            true,
        ));
    }
    for fingerprint in [
        "sha-256 AB:CD".to_string(),
        format!("sha-256 {}", ["AB"; 64].join(":")),
        format!("sha-256 {}", ["ZZ"; 32].join(":")),
        format!("sha-256 {}", ["ABC"; 32].join(":")),
        "sha-256 ".to_string(),
        "sha-256".to_string(),
    ] {
        cases.push((
            format!("a=fingerprint:{fingerprint}"),
            replace_line("a=fingerprint:", &format!("a=fingerprint:{fingerprint}")),
            true,
        ));
    }
    // Numbers past their types' range where the step uses nothing of them.
    for (prefix, line) in [
        (
            "m=application",
            "m=application 99999999999999999999 UDP/DTLS/SCTP webrtc-datachannel",
        ),
        ("a=sctp-port:", "a=sctp-port:99999999999999999999"),
        (
            "a=max-message-size:",
            "a=max-message-size:99999999999999999999999",
        ),
    ] {
        cases.push((line.to_string(), replace_line(prefix, line), false));
    }
    cases
}

/// A real answer made hostile: `protocol` at once where the step uses what was broken; taken
/// as the valid answer is (the far end is never driven, so `ice` at the deadline) where it
/// does not. Before, a malformed fingerprint or candidates waited out the deadline. On the
/// paused clock, so "at once" and "at the deadline" are the step's own timers: parsing a
/// 64 KiB answer on a loaded machine takes real time, which a wall-clock bound counted.
#[tokio::test(start_paused = true)]
async fn hostile_answers_fail_with_protocol_before_any_connection_and_never_panic() {
    let (_, sample) = offer_and_answer().await;
    let mut failures = Vec::new();
    for (i, (name, _, refused)) in hostile(&sample).into_iter().enumerate() {
        let (mut peer, good) = offer_and_answer().await;
        let answer = hostile(&good).swap_remove(i).1;
        let (result, took) = connect(&mut peer, &answer).await;
        let reason = result.as_ref().err().map(|e| e.reason);
        let ok = if refused {
            reason == Some(FailureReason::Protocol) && took < Duration::from_millis(500)
        } else {
            reason == Some(FailureReason::Ice) && took < Duration::from_secs(3)
        };
        if !ok {
            failures.push(format!("{name}: {result:?} after {took:?}"));
        }
        if let Err(e) = &result {
            assert!(e.message.len() <= 2048, "{name}: {} chars", e.message.len());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The same hostile text as the SFU's offer (`action = "answer"`): the same refusals.
#[tokio::test]
async fn hostile_offers_are_refused_as_answers_are() {
    let (_, offer) = Peer::offer(LOOPBACK).await.expect("an offer");
    let mut failures = Vec::new();
    for (name, text, refused) in hostile(&offer) {
        if !refused {
            continue;
        }
        match Peer::answer(LOOPBACK, &text).await {
            Err(e) if e.reason == FailureReason::Protocol => {}
            other => failures.push(format!("{name}: {:?}", other.map(|(_, sdp)| sdp.len()))),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
