//! The SDP that real SFUs send, fed to a peer whose far end is a second str0m peer built as
//! that SFU is (ICE-lite or full, DTLS client or server), its SDP reshaped the way that SFU
//! writes it: Jitsi Videobridge (ICE-lite, one bundled transport, ICE-TCP on 443, ssrc-groups),
//! LiveKit / pion (full ICE, `actpass`, many m-lines, simulcast rids, `extmap-allow-mixed`,
//! mDNS and IPv6 candidates), mediasoup (ICE-lite, `setup:active`, `end-of-candidates`), line
//! endings. Each shape either connects and echoes, or fails before anything is sent with the
//! reason and the words that name what is not supported: never a panic, never a bare timeout.

use proptest::prelude::*;
use str0m::media::{Direction, MediaKind};

use super::*;

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// The far end: str0m as the SFU's ICE agent is (`lite`), with a host candidate on loopback.
async fn far_end(lite: bool) -> Peer {
    far_end_on(LOOPBACK, lite).await
}

/// [`far_end`] with its host candidate on `ip`.
async fn far_end_on(ip: IpAddr, lite: bool) -> Peer {
    let mut far = Peer::new();
    far.rtc = Rtc::builder()
        .set_ice_lite(lite)
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .build(std::time::Instant::now());
    far.gather(ip).await.unwrap();
    far
}

/// Connects `ours` (taking `answer` if it offered) and `far` at once, each echoing the other;
/// our result and the phases we went through.
async fn connect_both(
    ours: &mut Peer,
    answer: Option<&str>,
    far: &mut Peer,
) -> (Result<EchoReport, StepError>, BTreeMap<Phase, Duration>) {
    let echo = EchoOptions {
        count: 3,
        interval: Duration::from_millis(5),
        wait: Duration::from_secs(1),
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let (mut phases, mut pending) = (BTreeMap::new(), None);
    let (mut far_phases, mut far_pending) = (BTreeMap::new(), None);
    let (ours, _) = tokio::join!(
        ours.connect(
            answer,
            &echo,
            deadline,
            Timings {
                phases: &mut phases,
                pending: &mut pending,
            },
        ),
        far.connect(
            None,
            &echo,
            deadline,
            Timings {
                phases: &mut far_phases,
                pending: &mut far_pending,
            },
        ),
    );
    (ours, phases)
}

/// Which DTLS role the SFU's answer takes: `passive` (Janus, JVB, str0m) or `active`
/// (mediasoup, pion's default).
#[derive(Clone, Copy)]
enum Setup {
    Passive,
    Active,
}

/// Our offer (no candidate, as the step makes it by default), answered by an SFU built as
/// `lite` and `setup` say, its answer reshaped by `shape`; then both connect.
async fn answered_by(
    lite: bool,
    setup: Setup,
    shape: impl Fn(&str) -> String,
) -> (Result<EchoReport, StepError>, BTreeMap<Phase, Duration>) {
    let (mut ours, offer) = Peer::offer(None).await.unwrap();
    let mut far = far_end(lite).await;
    // str0m answers `actpass` with `passive`; offered `passive`, it answers `active`.
    let seen = match setup {
        Setup::Passive => offer,
        Setup::Active => offer.replace("a=setup:actpass", "a=setup:passive"),
    };
    let answer = far
        .rtc
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&seen).unwrap())
        .unwrap()
        .to_sdp_string();
    if let Setup::Active = setup {
        assert!(answer.contains("a=setup:active"), "{answer}");
    }
    let shaped = shape(&answer);
    connect_both(&mut ours, Some(&shaped), &mut far).await
}

/// An SFU's offer (`lite`; `media` m-lines before its data channel) reshaped by `shape`,
/// answered by our peer (the route found from its candidates); then both connect.
async fn offered_by(
    lite: bool,
    media: &[MediaKind],
    shape: impl Fn(&str) -> String,
) -> (Result<EchoReport, StepError>, BTreeMap<Phase, Duration>) {
    let mut far = far_end(lite).await;
    let mut change = far.rtc.sdp_api();
    for kind in media {
        change.add_media(*kind, Direction::SendRecv, None, None, None);
    }
    let channel = change.add_channel_with_config(channel_config());
    let (offer, pending) = change.apply().unwrap();
    far.channel = Some(channel);
    far.pending = Some(pending);
    let (mut ours, answer) = match Peer::answer(None, &shape(&offer.to_sdp_string())).await {
        Ok(answered) => answered,
        Err(e) => return (Err(e), BTreeMap::new()),
    };
    far.take_answer(Some(&answer)).await.unwrap();
    connect_both(&mut ours, None, &mut far).await
}

/// `sdp` with `extra` lines written before (`before`) or after each candidate line.
fn around_candidates(sdp: &str, extra: &str, before: bool) -> String {
    let mut out = String::new();
    for line in sdp.lines() {
        if before && line.starts_with("a=candidate:") {
            out.push_str(extra);
        }
        out.push_str(line);
        out.push_str("\r\n");
        if !before && line.starts_with("a=candidate:") {
            out.push_str(extra);
        }
    }
    out
}

/// `sdp` with its candidate lines replaced by `candidates`.
fn only_candidates(sdp: &str, candidates: &str) -> String {
    let mut out = String::new();
    for line in sdp.lines() {
        if line.starts_with("a=candidate:") {
            out.push_str(candidates);
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out
}

/// `sdp` with `extra` lines after each line starting with `at`.
fn after(sdp: &str, at: &str, extra: &str) -> String {
    let mut out = String::new();
    for line in sdp.lines() {
        out.push_str(line);
        out.push_str("\r\n");
        if line.starts_with(at) {
            out.push_str(extra);
        }
    }
    out
}

/// The far end's own candidate line and address (the made-up candidates that the shapes
/// add are all on port 9, or TCP).
fn real_candidate(sdp: &str) -> (&str, SocketAddr) {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate:") && l.contains(" typ host"))
        .find_map(|l| {
            let udp = Candidates::of(l).udp.first().copied()?;
            (udp.port() != 9).then_some((l, udp))
        })
        .expect("the far end's candidate")
}

/// The far end's UDP address, as the SFU would put it on its m-lines.
fn first_udp(sdp: &str) -> SocketAddr {
    real_candidate(sdp).1
}

/// Jitsi Videobridge as lib-jitsi-meet renders its Jingle: the m-lines' port and `c=` those
/// of its UDP candidate, `generation`/`network-id`, an ICE-TCP candidate on 443 (its
/// `TcpHarvester`), `rtcp-mux`, `ssrc-group:FID` and `end-of-candidates`.
fn jitsi(sdp: &str) -> String {
    let udp = first_udp(sdp);
    let sdp = around_candidates(
        sdp,
        "a=candidate:2 1 tcp 1694498815 127.0.0.1 443 typ host tcptype passive generation 0\r\n",
        false,
    )
    .replace(" ufrag ", " generation 0 network-id 1 ufrag ")
    .replace(" 9 UDP/", &format!(" {} UDP/", udp.port()))
    .replace("c=IN IP4 0.0.0.0", &format!("c=IN IP4 {}", udp.ip()));
    let sdp = after(&sdp, "a=mid:", "a=end-of-candidates\r\n");
    after(
        &sdp,
        "a=rtcp-mux",
        "a=ssrc-group:FID 1111 2222\r\na=ssrc:1111 cname:jvb\r\na=ssrc:2222 cname:jvb\r\n",
    )
}

/// LiveKit / pion: `extmap-allow-mixed` per media too, `ice-options:trickle ice2`, a server
/// reflexive candidate with `raddr`, an mDNS name and an IPv6 host candidate written first
/// (higher priority), `end-of-candidates`.
fn pion(sdp: &str) -> String {
    let (real, udp) = real_candidate(sdp);
    let candidates = format!(
        "a=candidate:1 1 udp 2130706431 ::1 9 typ host\r\n\
         a=candidate:2 1 udp 2130706431 3f2a9c1e-5b8d-4e1f-9c2a-7d6e5f4a3b2c.local 9 typ host\r\n\
         {real}\r\n\
         a=candidate:3 1 udp 1694498815 127.0.0.1 9 typ srflx raddr {} rport {}",
        udp.ip(),
        udp.port()
    );
    let sdp = sdp
        .replacen(real, &candidates, 1)
        .replace("a=ice-options:trickle", "a=ice-options:trickle ice2");
    after(
        &sdp,
        "a=mid:",
        "a=extmap-allow-mixed\r\na=end-of-candidates\r\n",
    )
}

/// mediasoup: ICE-lite, `ice-options:renomination`, its UDP and TCP candidates named as it
/// names them, `end-of-candidates`.
fn mediasoup(sdp: &str) -> String {
    let udp = first_udp(sdp);
    let sdp = only_candidates(
        sdp,
        &format!(
            "a=candidate:udpcandidate 1 udp 1076302079 {} {} typ host\r\n\
             a=candidate:tcpcandidate 1 tcp 1076276479 {} 40001 typ host tcptype passive\r\n\
             a=end-of-candidates\r\n",
            udp.ip(),
            udp.port(),
            udp.ip()
        ),
    );
    sdp.replace("a=ice-options:trickle", "a=ice-options:renomination")
}

/// Simulcast as LiveKit offers it: rids and `a=simulcast` on each video m-line.
fn simulcast(sdp: &str) -> String {
    let mut out = String::new();
    let mut video = false;
    for line in sdp.lines() {
        if line.starts_with("m=") {
            video = line.starts_with("m=video");
        }
        out.push_str(line);
        out.push_str("\r\n");
        if video && line.starts_with("a=mid:") {
            out.push_str(
                "a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\n",
            );
        }
    }
    out
}

fn lf(sdp: &str) -> String {
    sdp.replace("\r\n", "\n")
}

fn assert_echoed(result: (Result<EchoReport, StepError>, BTreeMap<Phase, Duration>), what: &str) {
    let (result, phases) = result;
    let report = result.unwrap_or_else(|e| panic!("{what}: {e:?} after {phases:?}"));
    assert!(report.received > 0, "{what}: {report:?}");
    for phase in [Phase::Ice, Phase::Dtls, Phase::FirstMedia] {
        assert!(
            phases.contains_key(&phase),
            "{what}: {phase:?} in {phases:?}"
        );
    }
}

/// Fails with `reason`, its message containing `words`, before ICE started.
fn assert_refused(
    result: (Result<EchoReport, StepError>, BTreeMap<Phase, Duration>),
    reason: FailureReason,
    words: &str,
) {
    let (result, phases) = result;
    let e = result.expect_err(words);
    assert_eq!(e.reason, reason, "{e:?}");
    assert!(e.message.contains(words), "{words}: {e:?}");
    assert!(phases.is_empty(), "refused before ICE: {phases:?}");
}

#[tokio::test]
async fn jitsi_videobridge_shaped_sdp_connects_both_ways() {
    assert_echoed(
        answered_by(true, Setup::Passive, jitsi).await,
        "JVB's answer",
    );
    assert_echoed(
        offered_by(true, &[MediaKind::Audio, MediaKind::Video], jitsi).await,
        "JVB's offer",
    );
}

#[tokio::test]
async fn livekit_and_pion_shaped_sdp_connects_both_ways() {
    // pion answers `actpass` as the DTLS client.
    assert_echoed(
        answered_by(false, Setup::Active, pion).await,
        "pion's answer",
    );
    // A LiveKit subscriber's offer: full ICE, `actpass`, one audio and many video m-lines with
    // simulcast rids, the data channel last.
    let mut media = vec![MediaKind::Audio];
    media.extend([MediaKind::Video; 8]);
    assert_echoed(
        offered_by(false, &media, |s| pion(&simulcast(s))).await,
        "LiveKit's offer",
    );
}

#[tokio::test]
async fn mediasoup_shaped_answers_connect_as_dtls_server_and_client() {
    assert_echoed(
        answered_by(true, Setup::Active, mediasoup).await,
        "setup:active",
    );
    assert_echoed(
        answered_by(true, Setup::Passive, mediasoup).await,
        "setup:passive",
    );
}

#[tokio::test]
async fn line_endings_lf_crlf_mixed_or_unterminated_all_connect() {
    assert_echoed(answered_by(true, Setup::Passive, lf).await, "LF");
    assert_echoed(
        answered_by(false, Setup::Passive, |s| {
            s.lines()
                .enumerate()
                .map(|(i, l)| format!("{l}{}", if i % 2 == 0 { "\n" } else { "\r\n" }))
                .collect()
        })
        .await,
        "mixed",
    );
    assert_echoed(
        answered_by(true, Setup::Active, |s| s.trim_end().to_string()).await,
        "no final line ending",
    );
    assert_echoed(
        offered_by(true, &[MediaKind::Video], |s| lf(&jitsi(s))).await,
        "JVB's offer, LF",
    );
}

#[tokio::test]
async fn ice_tcp_only_candidates_fail_ice_at_once_naming_ice_tcp() {
    const TCP_443: &str =
        "a=candidate:1 1 tcp 1694498815 127.0.0.1 443 typ host tcptype passive generation 0\r\n";
    // Our offer has no candidate: the route cannot be found.
    let result = answered_by(false, Setup::Passive, |s| only_candidates(s, TCP_443)).await;
    assert_refused(result, FailureReason::Ice, "ICE-TCP is not supported");
    let result = offered_by(true, &[MediaKind::Audio], |s| {
        only_candidates(&jitsi(s), TCP_443)
    })
    .await;
    assert_refused(result, FailureReason::Ice, "ICE-TCP is not supported");
    // With `local_address`, our candidate is in the offer, but an ICE-lite SFU never checks it.
    let (mut ours, offer) = Peer::offer(Some(LOOPBACK)).await.unwrap();
    let mut far = far_end(true).await;
    let answer = far
        .rtc
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer).unwrap())
        .unwrap()
        .to_sdp_string();
    let e = ours
        .take_answer(Some(&only_candidates(&answer, TCP_443)))
        .await
        .unwrap_err();
    assert_eq!(e.reason, FailureReason::Ice, "{e:?}");
    assert!(
        e.message.contains("ICE-TCP is not supported") && e.message.contains("ICE-lite"),
        "{e:?}"
    );
}

#[tokio::test]
async fn mdns_only_candidates_fail_ice_at_once_naming_mdns() {
    let result = answered_by(false, Setup::Active, |s| {
        only_candidates(
            s,
            "a=candidate:1 1 udp 2122262783 3f2a9c1e-5b8d-4e1f-9c2a-7d6e5f4a3b2c.local 9 typ host\r\n",
        )
    })
    .await;
    assert_refused(
        result,
        FailureReason::Ice,
        "mDNS `.local` names are not resolved",
    );
}

#[tokio::test]
async fn fingerprints_in_a_hash_str0m_does_not_check_fail_with_protocol_naming_the_hash() {
    // aiortc and others send sha-384 and sha-512 beside sha-256: the sha-256 one is checked.
    assert_echoed(
        answered_by(true, Setup::Passive, |s| {
            after(s, "a=fingerprint:", "a=fingerprint:sha-512 AB:CD\r\n")
        })
        .await,
        "sha-256 and sha-512",
    );
    let result = answered_by(true, Setup::Passive, |s| {
        s.replace("a=fingerprint:sha-256", "a=fingerprint:sha-512")
    })
    .await;
    assert_refused(result, FailureReason::Protocol, "a=fingerprint is sha-512");
    // sha-1 is checked: sha-256's bytes under its name do not match the certificate.
    let (result, phases) = answered_by(true, Setup::Passive, |s| {
        s.replace("a=fingerprint:sha-256", "a=fingerprint:sha-1")
    })
    .await;
    let e = result.unwrap_err();
    assert_eq!(e.reason, FailureReason::Dtls, "{e:?}");
    assert!(e.message.contains("a=fingerprint"), "{e:?}");
    assert!(phases.contains_key(&Phase::Ice), "{phases:?}");
}

#[tokio::test]
async fn an_sdp_without_a_data_channel_or_refusing_ours_fails_with_protocol() {
    let result = answered_by(true, Setup::Passive, |s| {
        s.replace("m=application 9 ", "m=application 0 ")
    })
    .await;
    assert_refused(result, FailureReason::Protocol, "refuses the data channel");
    // An offer of audio and video only (a subscriber's offer with no data channel).
    let result = offered_by(false, &[MediaKind::Audio, MediaKind::Video], |s| {
        s.split("m=application")
            .next()
            .unwrap_or_default()
            .to_string()
    })
    .await;
    assert_refused(result, FailureReason::Protocol, "no data channel");
}

#[tokio::test]
async fn the_dtls_roles_of_an_answer_are_taken_or_refused_by_name() {
    // An answerer must choose active or passive; one that says actpass leaves the choice to
    // us, and we take the client's role (str0m alone would wait as a server, as the SFU does).
    assert_echoed(
        answered_by(false, Setup::Passive, |s| {
            s.replace("a=setup:passive", "a=setup:actpass")
        })
        .await,
        "an answer saying actpass",
    );
    let result = answered_by(true, Setup::Passive, |s| {
        s.replace("a=setup:passive", "a=setup:holdconn")
    })
    .await;
    assert_refused(result, FailureReason::Protocol, "a=setup:holdconn");
    // No a=setup means active (RFC 4145): this far end is passive all the same, so both wait
    // as servers; the timeout says which role we took and why.
    let (result, phases) = answered_by(true, Setup::Passive, |s| {
        s.replace("a=setup:passive\r\n", "")
    })
    .await;
    let e = result.unwrap_err();
    assert_eq!(e.reason, FailureReason::Dtls, "{e:?}");
    assert!(
        e.message
            .contains("the prober as DTLS server, the SFU's SDP having no a=setup"),
        "{e:?}"
    );
    assert!(phases.contains_key(&Phase::Dtls), "{phases:?}");
}

#[tokio::test]
async fn an_offer_whose_m_lines_are_not_bundled_fails_with_protocol() {
    let result = offered_by(true, &[MediaKind::Audio, MediaKind::Video], |s| {
        s.lines()
            .filter(|l| !l.starts_with("a=group:BUNDLE"))
            .map(|l| format!("{l}\r\n"))
            .collect()
    })
    .await;
    assert_refused(
        result,
        FailureReason::Protocol,
        "does not bundle its 3 m-lines",
    );
}

/// An SFU announcing only an IPv6 candidate (`::1` here): the prober's host candidate takes
/// the IPv6 route, both ways.
#[tokio::test]
async fn an_sfu_with_only_an_ipv6_candidate_is_reached_over_ipv6() {
    let v6 = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    if std::net::UdpSocket::bind((v6, 0)).is_err() {
        // A kernel without IPv6 (`ipv6.disable=1`): nothing to route; said, not hidden.
        eprintln!("skipped: no IPv6 on this host (::1 cannot be bound)");
        return;
    }
    let (mut ours, offer) = Peer::offer(None).await.unwrap();
    let mut far = far_end_on(v6, true).await;
    let answer = far
        .rtc
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer).unwrap())
        .unwrap()
        .to_sdp_string();
    assert!(answer.contains(" ::1 "), "{answer}");
    let result = connect_both(&mut ours, Some(&jitsi_v6(&answer)), &mut far).await;
    assert_echoed(result, "IPv6 answer");
    assert!(
        ours.socket.as_ref().is_some_and(|(_, a)| a.is_ipv6()),
        "{ours:?}"
    );
}

/// JVB's shape with the IPv6 `c=` line its m-lines carry for an IPv6 candidate.
fn jitsi_v6(sdp: &str) -> String {
    let udp = first_udp(sdp);
    jitsi(sdp).replace(
        &format!("c=IN IP4 {}", udp.ip()),
        &format!("c=IN IP6 {}", udp.ip()),
    )
}

/// `sdp` with the media-level lines that `moved` picks written once, at session level.
fn to_session_level(sdp: &str, moved: impl Fn(&str) -> bool) -> String {
    let mut seen = std::collections::BTreeSet::new();
    let session: String = sdp
        .lines()
        .filter(|l| moved(l) && seen.insert(l.to_string()))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let without: String = sdp
        .lines()
        .filter(|l| !moved(l))
        .map(|l| format!("{l}\r\n"))
        .collect();
    after(&without, "t=", &session)
}

/// One harmless change an SFU's SDP may carry, by number (see [`decorate`]).
const DECORATIONS: u8 = 10;

/// Applies decoration `which` to `sdp`: each is written by one SFU or another and must not
/// stop the connection.
fn decorate(sdp: &str, which: u8) -> String {
    match which {
        0 => lf(sdp),
        1 => jitsi(sdp),
        2 => pion(sdp),
        3 => mediasoup(sdp),
        // The fingerprint at session level (Janus, older JVB).
        4 => to_session_level(sdp, |l| l.starts_with("a=fingerprint:")),
        // `rtcp-mux-only`, `msid-semantic` with a stream, an unknown attribute.
        5 => after(
            sdp,
            "a=mid:",
            "a=rtcp-mux-only\r\na=x-google-flag:conference\r\na=msid-semantic: WMS *\r\n",
        ),
        // Candidates with an uppercase transport (libnice, Janus) and trailing blanks.
        6 => sdp
            .lines()
            .map(|l| format!("{} \r\n", l.replace(" udp ", " UDP ")))
            .collect(),
        // Candidate extensions in Chrome's order (str0m's parser takes one order only).
        7 => sdp
            .replace(" ufrag ", " generation 0 ufrag ")
            .replace(" typ host", " typ host network-cost 10"),
        // ICE credentials at session level (one ICE agent for the bundle).
        8 => to_session_level(sdp, |l| {
            l.starts_with("a=ice-ufrag:") || l.starts_with("a=ice-pwd:")
        }),
        // An IPv6 candidate nothing answers at, written first.
        _ => around_candidates(
            sdp,
            "a=candidate:9 1 udp 2130706431 ::1 9 typ host\r\n",
            true,
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Any mix of the SFUs' harmless decorations, in any order, on an answer of an ICE-lite
    /// or full SFU in either DTLS role: the connection is made and echoes.
    #[test]
    fn any_mix_of_sfu_decorations_connects(
        lite in any::<bool>(),
        active in any::<bool>(),
        mix in proptest::collection::vec(0..DECORATIONS, 0..5),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let setup = if active { Setup::Active } else { Setup::Passive };
        let result = runtime.block_on(answered_by(lite, setup, |s| {
            mix.iter().fold(s.to_string(), |s, d| decorate(&s, *d))
        }));
        assert_echoed(result, &format!("lite {lite}, {mix:?}"));
    }
}
