//! The media path's engine (the `webrtc` step): a real WebRTC peer, driven by str0m (sans-I/O)
//! over a tokio UDP socket. It makes or accepts the SDP that signalling carries, runs ICE with
//! the SFU, DTLS-SRTP with the SFU's certificate checked against `a=fingerprint`, then proves
//! media flows: messages on an unreliable, unordered data channel echoed back by the SFU (Janus
//! echotest) or the other participant, with their loss and round-trip time.
//!
//! Every wait has a deadline; every phase that runs out names its layer (`ice`, `dtls`,
//! `media`). Nothing from the remote side is trusted: the SDP is size-capped and parsed under a
//! panic guard, datagrams are read into a fixed buffer, echoes are matched by a per-run nonce.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcError};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::StepError;
use crate::report::{FailureReason, Phase};

/// Largest remote SDP accepted: a conference SDP with a dozen m-lines is a few KiB.
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// Largest datagram read; anything longer is cut (and so fails its own parsing, harmlessly).
const DATAGRAM_BYTES: usize = 2048;
/// The data channel's label, as the SFU sees it.
const LABEL: &str = "joincanary";
/// Most echo messages one step may send (the config refuses more).
pub const MAX_ECHOES: u32 = 1000;

/// What the media part sends and how long it waits for the echoes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoOptions {
    /// Messages sent, one per `interval`; the first one's echo ends `first_media`.
    pub count: u32,
    pub interval: Duration,
    /// How long after the last message its echo may still come back before it counts as lost.
    pub wait: Duration,
}

impl Default for EchoOptions {
    fn default() -> Self {
        EchoOptions {
            count: 10,
            interval: Duration::from_millis(20),
            wait: Duration::from_secs(1),
        }
    }
}

/// What came back from the echo: the step's gauges.
#[derive(Debug, Clone, PartialEq)]
pub struct EchoReport {
    pub sent: u32,
    pub received: u32,
    /// Round-trip times of the echoed messages, in the order they came back.
    pub rtts: Vec<Duration>,
}

impl EchoReport {
    /// Lost messages over sent ones, 0..=1.
    pub fn loss_ratio(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        f64::from(self.sent.saturating_sub(self.received)) / f64::from(self.sent)
    }

    /// The median round-trip time, when anything came back.
    pub fn median_rtt(&self) -> Option<Duration> {
        let mut sorted = self.rtts.clone();
        sorted.sort();
        sorted.get(sorted.len() / 2).copied()
    }
}

/// Where the phases of a step are written as they happen, so that a step cut short by its
/// timeout still reports them (the flow engine's `phases` and `pending`).
pub struct Timings<'a> {
    pub phases: &'a mut BTreeMap<Phase, Duration>,
    pub pending: &'a mut Option<(Phase, Instant)>,
}

impl Timings<'_> {
    /// Ends the phase under way (if any) and starts `next`.
    fn start(&mut self, next: Option<Phase>) {
        let now = Instant::now();
        if let Some((phase, since)) = self.pending.take() {
            *self.phases.entry(phase).or_default() += now.saturating_duration_since(since);
        }
        *self.pending = next.map(|p| (p, now));
    }
}

/// One WebRTC peer connection: made by [`Peer::offer`] or [`Peer::answer`], connected by
/// [`Peer::connect`] once signalling has carried the SDP.
pub struct Peer {
    rtc: Rtc,
    /// Bound at gathering when the local address is known, else at connect time towards the
    /// SFU's candidates.
    socket: Option<(UdpSocket, SocketAddr)>,
    /// Our offer awaiting the remote answer.
    pending: Option<SdpPendingOffer>,
    /// Our data channel (offerer); an answerer uses the first channel the remote opens.
    channel: Option<ChannelId>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("local", &self.socket.as_ref().map(|(_, a)| a))
            .field("offering", &self.pending.is_some())
            .finish()
    }
}

impl Peer {
    fn new() -> Peer {
        let rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .build(std::time::Instant::now());
        Peer {
            rtc,
            socket: None,
            pending: None,
            channel: None,
        }
    }

    /// A new peer offering one data channel; returns it with its SDP offer. With a
    /// `local_address` its host candidate is in the offer; without, it is gathered at connect
    /// time (the address routed towards the SFU's candidates) and the SFU learns it from our
    /// connectivity checks (a peer-reflexive candidate, as with trickle ICE).
    ///
    /// # Errors
    /// `local` when no UDP socket can be bound.
    pub async fn offer(local_address: Option<IpAddr>) -> Result<(Peer, String), StepError> {
        let mut peer = Peer::new();
        if let Some(ip) = local_address {
            peer.gather(ip).await?;
        }
        let mut change = peer.rtc.sdp_api();
        let channel = change.add_channel_with_config(ChannelConfig {
            label: LABEL.to_string(),
            ordered: false,
            // Lost is lost: a retransmitted echo would hide the loss the gauge is for.
            reliability: Reliability::MaxRetransmits { retransmits: 0 },
            negotiated: None,
            protocol: String::new(),
        });
        let Some((offer, pending)) = change.apply() else {
            return Err(StepError::new(
                FailureReason::Protocol,
                "the WebRTC offer could not be made",
            ));
        };
        peer.pending = Some(pending);
        peer.channel = Some(channel);
        Ok((peer, offer.to_sdp_string()))
    }

    /// A new peer answering the remote `offer`; returns it with its SDP answer.
    ///
    /// # Errors
    /// `protocol` for an offer that is too large, does not parse or cannot be accepted;
    /// `local` when no UDP socket can be bound.
    pub async fn answer(
        local_address: Option<IpAddr>,
        offer: &str,
    ) -> Result<(Peer, String), StepError> {
        let mut peer = Peer::new();
        let parsed = parse_sdp(offer, "offer", SdpOffer::from_sdp_string)?;
        let ip = match local_address {
            Some(ip) => ip,
            None => route_to(&candidate_addrs(offer)).await?,
        };
        peer.gather(ip).await?;
        let answer = guarded(|| peer.rtc.sdp_api().accept_offer(parsed))
            .map_err(|e| sdp_refused("offer", &e))?;
        Ok((peer, answer.to_sdp_string()))
    }

    /// Binds the UDP socket on `ip` and adds it as our host candidate.
    async fn gather(&mut self, ip: IpAddr) -> Result<(), StepError> {
        let socket = UdpSocket::bind((ip, 0)).await.map_err(|e| {
            StepError::caused_by(
                FailureReason::Local,
                format!("cannot bind a UDP socket on {ip}: {e}"),
                &e,
            )
        })?;
        let addr = socket.local_addr().map_err(|e| {
            StepError::caused_by(FailureReason::Local, format!("UDP socket: {e}"), &e)
        })?;
        let candidate = Candidate::host(addr, "udp").map_err(|e| {
            StepError::new(
                FailureReason::Local,
                format!("{addr} cannot be a host candidate: {e}"),
            )
        })?;
        self.rtc.add_local_candidate(candidate);
        self.socket = Some((socket, addr));
        Ok(())
    }

    /// Takes the remote answer (after [`Peer::offer`]; `None` after [`Peer::answer`]), then
    /// runs ICE, DTLS and the echo, each phase written to `timings` as it ends. Stops at
    /// `deadline` with the reason of the phase under way.
    ///
    /// # Errors
    /// `protocol` for a bad or missing answer; `ice`, `dtls`, `media` for the phase that
    /// failed or ran out of time; `local` for the prober's own socket failing.
    pub async fn connect(
        &mut self,
        answer: Option<&str>,
        echo: &EchoOptions,
        deadline: Instant,
        mut timings: Timings<'_>,
    ) -> Result<EchoReport, StepError> {
        match (self.pending.take(), answer) {
            (Some(pending), Some(answer)) => {
                let parsed = parse_sdp(answer, "answer", SdpAnswer::from_sdp_string)?;
                if self.socket.is_none() {
                    let ip = route_to(&candidate_addrs(answer)).await?;
                    self.gather(ip).await?;
                }
                let rtc = &mut self.rtc;
                guarded(|| rtc.sdp_api().accept_answer(pending, parsed))
                    .map_err(|e| sdp_refused("answer", &e))?;
            }
            (Some(_), None) => {
                return Err(StepError::new(
                    FailureReason::Protocol,
                    "this connection made an offer: `remote_sdp` must give the SFU's answer",
                ));
            }
            (None, Some(_)) => {
                return Err(StepError::new(
                    FailureReason::Protocol,
                    "this connection answered an offer already: it takes no `remote_sdp`",
                ));
            }
            (None, None) => {}
        }
        let result = self.drive(echo, deadline, &mut timings).await;
        timings.start(None);
        // Whatever happened, this peer is done: no more datagrams from it.
        self.rtc.disconnect();
        result
    }

    /// The I/O loop: feed str0m every datagram and timeout, send what it transmits, follow its
    /// events through the phases.
    async fn drive(
        &mut self,
        echo: &EchoOptions,
        deadline: Instant,
        timings: &mut Timings<'_>,
    ) -> Result<EchoReport, StepError> {
        // The socket leaves the peer: after this run the connection is over either way.
        let Some((socket, local)) = self.socket.take() else {
            return Err(StepError::new(
                FailureReason::Protocol,
                "no local candidate: the remote SDP names no address to reach",
            ));
        };
        let mut stage = Stage::Ice;
        timings.start(Some(Phase::Ice));
        let mut echoes = Echoes::new(echo);
        let mut buf = vec![0u8; DATAGRAM_BYTES];
        loop {
            // Everything str0m has to say now, up to its next timer.
            let wake = loop {
                let output = self
                    .rtc
                    .poll_output()
                    .map_err(|e| stage.error(&e.to_string()))?;
                match output {
                    Output::Timeout(at) => break Instant::from_std(at),
                    Output::Transmit(t) => {
                        // A send that fails is a lost datagram: ICE and DTLS retransmit, and
                        // their deadlines name the phase. Only the prober's own exhaustion is
                        // worth stopping for.
                        if let Err(e) = socket.send_to(&t.contents, t.destination).await
                            && super::net::local_cause(&e).is_some()
                        {
                            return Err(StepError::caused_by(
                                FailureReason::Local,
                                format!("sending to {}: {e}", t.destination),
                                &e,
                            ));
                        }
                    }
                    Output::Event(event) => {
                        self.on_event(event, &mut stage, timings, &mut echoes)?;
                    }
                }
            };
            if stage == Stage::Media {
                if let Some(id) = self.channel.filter(|_| echoes.open) {
                    echoes.send_due(&mut self.rtc, id)?;
                }
                if echoes.done() {
                    return echoes.report(stage);
                }
            }
            let next = wake.min(deadline).min(echoes.next_wake());
            tokio::select! {
                received = socket.recv_from(&mut buf) => {
                    let (n, source) = received.map_err(|e| {
                        StepError::caused_by(stage.reason(), format!("receiving: {e}"), &e)
                    })?;
                    // Anything that is not STUN, DTLS, RTP or RTCP is dropped, never fatal:
                    // a stray or hostile datagram must not end the connection.
                    if let Ok(contents) = buf[..n.min(DATAGRAM_BYTES)].try_into() {
                        let input = Input::Receive(
                            std::time::Instant::now(),
                            Receive { proto: Protocol::Udp, source, destination: local, contents },
                        );
                        if self.rtc.accepts(&input) {
                            self.rtc
                                .handle_input(input)
                                .map_err(|e| stage.error(&e.to_string()))?;
                        }
                    }
                }
                () = tokio::time::sleep_until(next) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(stage.timeout(&echoes));
                    }
                    if echoes.expired(now) {
                        return echoes.report(stage);
                    }
                    self.rtc
                        .handle_input(Input::Timeout(now.into_std()))
                        .map_err(|e| stage.error(&e.to_string()))?;
                }
            }
        }
    }

    fn on_event(
        &mut self,
        event: Event,
        stage: &mut Stage,
        timings: &mut Timings<'_>,
        echoes: &mut Echoes,
    ) -> Result<(), StepError> {
        match event {
            Event::IceConnectionStateChange(
                IceConnectionState::Connected | IceConnectionState::Completed,
            ) if *stage == Stage::Ice => {
                *stage = Stage::Dtls;
                timings.start(Some(Phase::Dtls));
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                return Err(StepError::new(
                    FailureReason::Ice,
                    format!(
                        "ICE connectivity to the SFU was lost during {}",
                        stage.doing()
                    ),
                ));
            }
            Event::Connected => {
                if *stage == Stage::Ice {
                    timings.start(Some(Phase::Dtls));
                }
                *stage = Stage::Media;
                timings.start(Some(Phase::FirstMedia));
            }
            Event::ChannelOpen(id, _) => {
                // An answerer echoes on the channel the remote opened.
                if self.channel.is_none() {
                    self.channel = Some(id);
                }
                if self.channel == Some(id) {
                    echoes.open = true;
                }
            }
            Event::ChannelData(data) if Some(data.id) == self.channel => {
                if echoes.on_data(&data.data) && echoes.received == 1 {
                    timings.start(None);
                }
            }
            Event::ChannelClose(id) if Some(id) == self.channel => {
                return Err(StepError::new(
                    FailureReason::Media,
                    format!(
                        "the SFU closed the data channel after {} of {} echoes",
                        echoes.received, echoes.sent
                    ),
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

/// Where the connection is: the phase a failure is blamed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Ice,
    Dtls,
    Media,
}

impl Stage {
    fn reason(self) -> FailureReason {
        match self {
            Stage::Ice => FailureReason::Ice,
            Stage::Dtls => FailureReason::Dtls,
            Stage::Media => FailureReason::Media,
        }
    }

    fn doing(self) -> &'static str {
        match self {
            Stage::Ice => "ICE connectivity checks",
            Stage::Dtls => "the DTLS handshake",
            Stage::Media => "the media echo",
        }
    }

    /// An error str0m reported during this stage.
    fn error(self, what: &str) -> StepError {
        let what = if what.contains("fingerprint") {
            format!("the SFU's DTLS certificate does not match the SDP's a=fingerprint ({what})")
        } else {
            what.to_string()
        };
        StepError::new(self.reason(), format!("{} failed: {what}", self.doing()))
    }

    fn timeout(self, echoes: &Echoes) -> StepError {
        let message = match self {
            Stage::Ice => "no ICE connectivity with the SFU's candidates (its checks and ours \
                           went unanswered)"
                .to_string(),
            Stage::Dtls => {
                "ICE connected but the DTLS handshake with the SFU never completed".to_string()
            }
            Stage::Media if !echoes.open => {
                "DTLS connected but the data channel never opened".to_string()
            }
            Stage::Media => format!(
                "no echo came back ({} of {} messages sent)",
                echoes.sent, echoes.options.count
            ),
        };
        StepError::new(self.reason(), format!("timed out: {message}"))
    }
}

/// The echo's bookkeeping: what was sent when, what came back.
struct Echoes {
    options: EchoOptions,
    /// Random per peer: an echo of another run's message (or a forged one) is not ours.
    nonce: u64,
    open: bool,
    opened_at: Option<Instant>,
    sent: u32,
    received: u32,
    sent_at: Vec<Instant>,
    seen: Vec<bool>,
    rtts: Vec<Duration>,
}

impl Echoes {
    fn new(options: &EchoOptions) -> Echoes {
        let count = options.count.clamp(1, MAX_ECHOES);
        Echoes {
            options: EchoOptions {
                count,
                ..options.clone()
            },
            nonce: rand::random(),
            open: false,
            opened_at: None,
            sent: 0,
            received: 0,
            sent_at: Vec::with_capacity(count as usize),
            seen: vec![false; count as usize],
            rtts: Vec::with_capacity(count as usize),
        }
    }

    /// `jc <nonce> <seq>` is what we send; the echo may carry a prefix (Janus echotest says
    /// "Janus EchoTest here! You wrote: "), so it is looked for at the end.
    fn message(&self, seq: u32) -> String {
        format!("joincanary-echo {:016x} {seq}", self.nonce)
    }

    fn send_due(&mut self, rtc: &mut Rtc, id: ChannelId) -> Result<(), StepError> {
        let now = Instant::now();
        let opened = *self.opened_at.get_or_insert(now);
        while self.sent < self.options.count && now >= opened + self.options.interval * self.sent {
            let text = self.message(self.sent);
            let Some(mut channel) = rtc.channel(id) else {
                return Err(StepError::new(
                    FailureReason::Media,
                    "the data channel is gone",
                ));
            };
            // A full send buffer drops the message: it counts as lost, as on the wire.
            let _ = channel.write(false, text.as_bytes());
            self.sent_at.push(now);
            self.sent += 1;
        }
        Ok(())
    }

    /// Records an echo; true when it was one of ours, seen for the first time.
    fn on_data(&mut self, data: &[u8]) -> bool {
        let tail = &data[data.len().saturating_sub(64)..];
        let Ok(text) = std::str::from_utf8(tail) else {
            return false;
        };
        let mine = format!("joincanary-echo {:016x} ", self.nonce);
        let Some(at) = text.rfind(&mine) else {
            return false;
        };
        let Ok(seq) = text[at + mine.len()..].trim().parse::<u32>() else {
            return false;
        };
        let i = seq as usize;
        match (self.sent_at.get(i), self.seen.get(i)) {
            (Some(sent), Some(false)) => {
                self.rtts.push(sent.elapsed());
                self.seen[i] = true;
                self.received += 1;
                true
            }
            _ => false,
        }
    }

    fn done(&self) -> bool {
        self.received >= self.options.count
    }

    /// When the loop must wake for the next message or the end of the wait.
    fn next_wake(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        match self.opened_at {
            Some(opened) if self.sent < self.options.count => {
                opened + self.options.interval * self.sent
            }
            Some(_) => self.sent_at.last().map_or(far, |t| *t + self.options.wait),
            None => far,
        }
    }

    /// Everything was sent and the last message's wait is over.
    fn expired(&self, now: Instant) -> bool {
        self.sent >= self.options.count
            && self
                .sent_at
                .last()
                .is_some_and(|t| now >= *t + self.options.wait)
    }

    fn report(&self, stage: Stage) -> Result<EchoReport, StepError> {
        if self.received == 0 {
            return Err(StepError::new(
                stage.reason(),
                format!(
                    "none of {} data channel messages came back within {} of the last",
                    self.sent,
                    crate::report::human_duration(self.options.wait)
                ),
            ));
        }
        Ok(EchoReport {
            sent: self.sent,
            received: self.received,
            rtts: self.rtts.clone(),
        })
    }
}

/// Parses a remote SDP, capped in size and guarded against a parser panic.
fn parse_sdp<T>(
    text: &str,
    what: &str,
    parse: impl FnOnce(&str) -> Result<T, str0m::error::SdpError>,
) -> Result<T, StepError> {
    if text.len() > MAX_SDP_BYTES {
        return Err(StepError::new(
            FailureReason::Protocol,
            format!(
                "the remote SDP {what} is {} bytes, more than the {MAX_SDP_BYTES} accepted",
                text.len()
            ),
        ));
    }
    // Signalling carries SDP in JSON, where `\r\n` may have become `\n`: both are accepted.
    let normalized = text.replace("\r\n", "\n").replace('\n', "\r\n");
    match catch_unwind(AssertUnwindSafe(|| parse(&normalized))) {
        Ok(Ok(sdp)) => Ok(sdp),
        Ok(Err(e)) => Err(StepError::new(
            FailureReason::Protocol,
            format!(
                "the remote SDP {what} does not parse: {}",
                crate::redact::quote(&e.to_string(), 200)
            ),
        )),
        Err(_) => Err(StepError::new(
            FailureReason::Protocol,
            format!("the remote SDP {what} could not be parsed"),
        )),
    }
}

/// Runs a str0m call that takes remote input, turning a panic into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, RtcError>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the SDP could not be applied".to_string()),
    }
}

fn sdp_refused(what: &str, e: &str) -> StepError {
    StepError::new(
        FailureReason::Protocol,
        format!(
            "the remote SDP {what} cannot be used: {}",
            crate::redact::quote(e, 200)
        ),
    )
}

/// The UDP addresses of an SDP's `a=candidate` lines (at most 32; others are ignored).
fn candidate_addrs(sdp: &str) -> Vec<SocketAddr> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=candidate:"))
        .filter_map(|l| {
            // foundation component transport priority address port typ ...
            let f: Vec<&str> = l.split_whitespace().take(6).collect();
            if f.len() < 6 || !f[2].eq_ignore_ascii_case("udp") {
                return None;
            }
            let ip: IpAddr = f[4].parse().ok()?;
            let port: u16 = f[5].parse().ok()?;
            Some(SocketAddr::new(ip, port))
        })
        .take(32)
        .collect()
}

/// The local address the system routes towards the first reachable of `remote` (a UDP
/// `connect` sends nothing: it only asks the routing table).
async fn route_to(remote: &[SocketAddr]) -> Result<IpAddr, StepError> {
    let mut last = None;
    for addr in remote {
        let any: SocketAddr = if addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let probe = match UdpSocket::bind(any).await {
            Ok(s) => s,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        match probe.connect(addr).await.and_then(|()| probe.local_addr()) {
            Ok(local) => return Ok(local.ip()),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => StepError::caused_by(
            FailureReason::Ice,
            format!("no route to the SFU's ICE candidates: {e}"),
            &e,
        ),
        None => StepError::new(
            FailureReason::Ice,
            "the remote SDP has no UDP ICE candidate (set `local_address` to offer one of ours)",
        ),
    })
}
