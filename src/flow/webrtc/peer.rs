//! The media path's engine: a real WebRTC peer, driven by str0m (sans-I/O)
//! over a tokio UDP socket. It makes or accepts the SDP that signalling carries, runs ICE with
//! the SFU, DTLS-SRTP with the SFU's certificate checked against `a=fingerprint`, then proves
//! media flows: messages on an unreliable, unordered data channel echoed back by the SFU (Janus
//! echotest) or the other participant, with their loss and round-trip time; or, in a room, one
//! peer publishing in the background while another receives its messages through the SFU.
//!
//! Every wait has a deadline; every phase that runs out names its layer (`ice`, `dtls`,
//! `media`). Nothing from the remote side is trusted: the SDP is size-capped and parsed under a
//! panic guard, datagrams are read into a fixed buffer, echoes are matched by a per-run nonce.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::echo::{self, EchoOptions, EchoReport, Echoes, Traffic};
use super::room::{PublishOptions, Published, Publishing, ReceiveReport, Receiving};
use super::sdp::{
    Candidates, answer_setup, dtls_role, guarded, parse_sdp, route_to, sdp_refused, unsupported,
};
use super::signalling::Signalling;
use super::trickle::{self, TrickleFrom, Trickled};
use crate::flow::StepError;
use crate::report::{FailureReason, Phase};

/// Largest datagram read; anything longer is cut (and so fails its own parsing, harmlessly).
const DATAGRAM_BYTES: usize = 2048;
/// The data channel's label, as the SFU sees it.
const LABEL: &str = "joincanary";

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
    /// Our data channel (an answerer opens one too); messages are taken on any channel.
    channel: Option<ChannelId>,
    /// Where the connection is (a publisher's background loop goes on from `Media`).
    stage: Stage,
    /// Our DTLS role and the `a=setup` that gave it, for a handshake that never completes.
    dtls_role: Option<String>,
    /// The SFU's candidates: its SDP's, then those trickled.
    remote: Candidates,
    /// Where the SFU's trickled candidates arrive (a tap on a websocket or a long poll),
    /// until connected.
    trickle: Option<Arc<Trickled>>,
    /// The websocket or long poll the tap is on, read while ICE waits for candidates.
    trickle_from: Option<TrickleFrom>,
    /// What became of the trickled candidates, for a connection that fails `ice`.
    trickled: trickle::Seen,
}

/// A run's WebRTC participant, by connection name: a peer waiting to connect, or one
/// publishing in the background (its task ends with the run, or when all its messages are out).
#[derive(Debug)]
pub enum Participant {
    /// Boxed: str0m's state is some 10 KB, a publisher's handle two pointers.
    Ready(Box<Peer>),
    Publishing(Publisher),
}

/// A peer publishing in the background: what it has sent, shared with the run's receivers.
pub struct Publisher {
    pub log: Arc<Published>,
    /// How many candidates the SFU trickled before it connected (`None`: not asked to).
    pub trickled: Option<usize>,
    _task: crate::net::AbortOnDrop,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("log", &self.log).finish()
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("local", &self.socket.as_ref().map(|(_, a)| a))
            .field("offering", &self.pending.is_some())
            .finish()
    }
}

/// Our data channel: unordered, no retransmits.
fn channel_config() -> ChannelConfig {
    ChannelConfig {
        label: LABEL.to_string(),
        ordered: false,
        // Lost is lost: a retransmitted echo would hide the loss the gauge is for.
        reliability: Reliability::MaxRetransmits { retransmits: 0 },
        negotiated: None,
        protocol: String::new(),
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
            stage: Stage::Ice,
            dtls_role: None,
            remote: Candidates::default(),
            trickle: None,
            trickle_from: None,
            trickled: trickle::Seen::default(),
        }
    }

    /// The websocket or long poll the SFU trickles its candidates on, when it does: the
    /// connection's step reads it while ICE waits for them.
    pub(crate) fn trickle_from(&self) -> Option<&TrickleFrom> {
        self.trickle_from.as_ref()
    }

    /// How many candidates the SFU trickled (`None` when it was not asked to).
    pub fn trickled_candidates(&self) -> Option<usize> {
        self.trickle_from
            .is_some()
            .then_some(self.trickled.candidates)
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
        let channel = change.add_channel_with_config(channel_config());
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
        Peer::answer_trickled(local_address, offer, None).await
    }

    /// [`Peer::answer`] to an SFU that may trickle its candidates after its offer (`trickle`):
    /// when the offer has none we can use, our candidate is gathered at connect time, towards
    /// the first trickled one.
    ///
    /// # Errors
    /// As [`Peer::answer`].
    pub(crate) async fn answer_trickled(
        local_address: Option<IpAddr>,
        offer: &str,
        trickle: Option<(Arc<Trickled>, TrickleFrom)>,
    ) -> Result<(Peer, String), StepError> {
        let mut peer = Peer::new();
        let parsed = parse_sdp(offer, "offer", SdpOffer::from_sdp_string)?;
        unsupported(offer, "offer")?;
        peer.dtls_role = Some(dtls_role(offer));
        peer.remote = Candidates::of(offer);
        let later = trickle.is_some() && !peer.remote.usable();
        peer.set_trickle(trickle);
        let ip = match local_address {
            Some(ip) => Some(ip),
            None if later => None,
            None => Some(route_to(&peer.remote).await?),
        };
        if let Some(ip) = ip {
            peer.gather(ip).await?;
        }
        let answer = guarded(|| peer.rtc.sdp_api().accept_offer(parsed))
            .map_err(|e| sdp_refused("offer", &e))?;
        let answer = answer.to_sdp_string();
        // Our own channel too, as a browser's janus.js opens one: an SFU may wait for the
        // subscriber's channel before it sends on the association (Janus videoroom does).
        if answer.contains("\nm=application") {
            peer.channel = Some(peer.rtc.direct_api().create_data_channel(channel_config()));
        }
        Ok((peer, answer))
    }

    /// From now on, the SFU's candidates also come trickled, through a tap on the websocket
    /// named, until the connection is up.
    pub(crate) fn set_trickle(&mut self, trickle: Option<(Arc<Trickled>, TrickleFrom)>) {
        if let Some((trickled, from)) = trickle {
            self.trickle = Some(trickled);
            self.trickle_from = Some(from);
        }
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
        timings: Timings<'_>,
    ) -> Result<EchoReport, StepError> {
        self.connect_over(answer, echo, deadline, timings, None)
            .await
    }

    /// [`Peer::connect`], reading `signalling` for the SFU's trickled candidates meanwhile
    /// (see [`Peer::trickle`]).
    ///
    /// # Errors
    /// As [`Peer::connect`]; `protocol` for a trickled value that is no candidate.
    pub(crate) async fn connect_over(
        &mut self,
        answer: Option<&str>,
        echo: &EchoOptions,
        deadline: Instant,
        mut timings: Timings<'_>,
        signalling: Option<Signalling<'_>>,
    ) -> Result<EchoReport, StepError> {
        let mut echoes = Echoes::new(echo);
        let result = self
            .connect_with(answer, &mut echoes, deadline, &mut timings, signalling)
            .await;
        // Whatever happened, this peer is done: no more datagrams from it.
        self.rtc.disconnect();
        result.and_then(|()| echoes.report(FailureReason::Media))
    }

    /// [`Peer::connect`] receiving another peer's messages through the SFU (`from` names that
    /// peer's connection, `log` is what it sent) instead of echoing: `count` of them from the
    /// first received on, each given `wait` after it was sent; trickled candidates read from
    /// `signalling` as [`Peer::connect_over`] does.
    ///
    /// # Errors
    /// As [`Peer::connect`]; `media` naming the publisher when none of its messages arrived.
    pub(crate) async fn receive(
        &mut self,
        answer: Option<&str>,
        (from, log): (&str, Arc<Published>),
        (count, wait): (u32, Duration),
        deadline: Instant,
        mut timings: Timings<'_>,
        signalling: Option<Signalling<'_>>,
    ) -> Result<ReceiveReport, StepError> {
        let mut receiving = Receiving::new(from, log, count, wait);
        let result = self
            .connect_with(answer, &mut receiving, deadline, &mut timings, signalling)
            .await;
        self.rtc.disconnect();
        // A publisher that panicked fails the receiver whatever it received: a bug of ours,
        // not the SFU's.
        if let Some(e) = receiving.publisher_panicked() {
            return Err(e);
        }
        result.and_then(|()| receiving.report())
    }

    /// [`Peer::connect`] up to the data channel's opening and the first message out, then
    /// publishing in the background: one message per interval until `options.count` are out
    /// or the returned [`Publisher`] is dropped (with the run).
    ///
    /// The background task is owned by the run (it ends with it) and bounded by its own count;
    /// should it panic (a bug), the panic is caught, logged, and kept in the [`Published`] log,
    /// so a receiver fails at once with `local` naming it rather than waiting out its timeout.
    /// Trickled candidates are read from `signalling` as [`Peer::connect_over`] does.
    ///
    /// # Errors
    /// As [`Peer::connect`], for ICE, DTLS and the channel's opening.
    pub(crate) async fn publish(
        mut self,
        (probe, connection): (&str, &str),
        answer: Option<&str>,
        options: &PublishOptions,
        deadline: Instant,
        mut timings: Timings<'_>,
        signalling: Option<Signalling<'_>>,
    ) -> Result<Publisher, StepError> {
        let mut publishing = Publishing::new(options);
        if let Err(e) = self
            .connect_with(answer, &mut publishing, deadline, &mut timings, signalling)
            .await
        {
            self.rtc.disconnect();
            return Err(e);
        }
        let log = publishing.log.clone();
        let trickled = self.trickled_candidates();
        publishing.background = true;
        let count = publishing.options.count;
        // Bounded by its own count too, should the run outlive it.
        let end = Instant::now() + publishing.options.interval * count + Duration::from_secs(1);
        let (probe, connection) = (probe.to_string(), connection.to_string());
        let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
            let (mut phases, mut pending) = (BTreeMap::new(), None);
            let driven = std::panic::AssertUnwindSafe(async {
                // A run's publisher: the fault key is `probe/connection`.
                crate::supervise::fault::hit(
                    crate::supervise::Task::Run,
                    format_args!("{probe}/{connection}"),
                );
                let mut timings = Timings {
                    phases: &mut phases,
                    pending: &mut pending,
                };
                self.drive(&mut publishing, end, &mut timings, None).await
            })
            .catch_unwind()
            .await;
            let why = match driven {
                Ok(Ok(())) => format!("all {count} of its messages were sent"),
                Ok(Err(e)) => e.message,
                Err(panic) => {
                    let why = format!(
                        "its task panicked: {}",
                        crate::supervise::panic_message(panic.as_ref())
                    );
                    tracing::error!(probe = %probe, connection = %connection, why = %why, "webrtc publisher failed");
                    publishing.log.panicked(why.clone());
                    why
                }
            };
            publishing.log.stop(why);
            self.rtc.disconnect();
        }));
        Ok(Publisher {
            log,
            trickled,
            _task: crate::net::AbortOnDrop(task),
        })
    }

    /// Takes the answer, then ICE, DTLS and `traffic` with every phase timed.
    /// Trickled candidates are read from `signalling` until ICE is connected; before that,
    /// when neither our offer nor the SFU's SDP gave an address to reach, until the first one
    /// (part of the `ice` phase).
    async fn connect_with<T: Traffic>(
        &mut self,
        answer: Option<&str>,
        traffic: &mut T,
        deadline: Instant,
        timings: &mut Timings<'_>,
        mut signalling: Option<Signalling<'_>>,
    ) -> Result<(), StepError> {
        self.take_answer(answer).await?;
        self.stage = Stage::Ice;
        timings.start(Some(Phase::Ice));
        let mut result = self.first_candidate(&mut signalling, deadline).await;
        if result.is_ok() {
            result = self.drive(traffic, deadline, timings, signalling).await;
        }
        timings.start(None);
        // The tap takes nothing more: later trickle messages go to the steps after.
        if self.trickle.take().is_some()
            && let Err(e) = &mut result
            && e.reason == FailureReason::Ice
        {
            e.message = format!("{} ({})", e.message, self.trickled.summary());
        }
        result
    }

    /// Hands the candidates trickled since the last look to the ICE agent (see
    /// [`trickle::hand_over`]); whether more may come.
    fn take_trickled(&mut self) -> Result<bool, StepError> {
        match &self.trickle {
            Some(t) => trickle::hand_over(t, &mut self.remote, &mut self.rtc, &mut self.trickled),
            None => Ok(false),
        }
    }

    /// Ensures our candidate is gathered: at once when an address to reach is known (our
    /// `local_address`, the SFU's SDP); else, with trickle, once the first usable candidate
    /// is trickled, reading `signalling` until then.
    ///
    /// # Errors
    /// `ice` when the SFU ends its candidates with none usable, or none came by `deadline`.
    async fn first_candidate(
        &mut self,
        signalling: &mut Option<Signalling<'_>>,
        deadline: Instant,
    ) -> Result<(), StepError> {
        loop {
            let more = self.take_trickled()?;
            if self.socket.is_some() {
                return Ok(());
            }
            if self.remote.usable() || self.trickle.is_none() {
                let ip = route_to(&self.remote).await?;
                return self.gather(ip).await;
            }
            let Some(conn) = signalling.as_mut().filter(|_| more) else {
                let why = self
                    .remote
                    .none_usable_of("the SFU's (in its SDP and trickled)")
                    .unwrap_or_else(|| {
                        "the SFU's SDP has no ICE candidate and none was trickled".to_string()
                    });
                return Err(StepError::new(FailureReason::Ice, why));
            };
            match tokio::time::timeout_at(deadline, conn.read_aside()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.trickled.signalling = Some(e.message);
                    *signalling = None;
                }
                Err(_) => {
                    return Err(StepError::new(
                        FailureReason::Ice,
                        "timed out: the SFU's SDP has no ICE candidate and none was trickled",
                    ));
                }
            }
        }
    }

    /// Applies the remote answer to our pending offer, gathering our candidate if not yet.
    async fn take_answer(&mut self, answer: Option<&str>) -> Result<(), StepError> {
        match (self.pending.take(), answer) {
            (Some(pending), Some(answer)) => {
                let answer = &answer_setup(answer);
                let parsed = parse_sdp(answer, "answer", SdpAnswer::from_sdp_string)?;
                unsupported(answer, "answer")?;
                self.dtls_role = Some(dtls_role(answer));
                self.remote = Candidates::of(answer);
                // Trickling with nothing to reach yet: gathered towards the first trickled.
                let later = self.trickle.is_some() && !self.remote.usable();
                if self.socket.is_none() && !later {
                    let ip = route_to(&self.remote).await?;
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
        Ok(())
    }

    /// The I/O loop until `traffic` is done or has expired (`Ok`), or the deadline: see
    /// [`Peer::pump`].
    async fn drive<T: Traffic>(
        &mut self,
        traffic: &mut T,
        deadline: Instant,
        timings: &mut Timings<'_>,
        signalling: Option<Signalling<'_>>,
    ) -> Result<(), StepError> {
        let Some((socket, local)) = self.socket.take() else {
            return Err(StepError::new(
                FailureReason::Protocol,
                "no local candidate: the remote SDP names no address to reach",
            ));
        };
        let result = self
            .pump(&socket, local, traffic, deadline, timings, signalling)
            .await;
        // A publisher goes on with it in the background.
        self.socket = Some((socket, local));
        result
    }

    /// Feeds str0m every datagram and timeout, sends what it transmits, follows its events
    /// through the phases; until ICE is connected, hands it the candidates trickled on
    /// `signalling`.
    async fn pump<T: Traffic>(
        &mut self,
        socket: &UdpSocket,
        local: SocketAddr,
        traffic: &mut T,
        deadline: Instant,
        timings: &mut Timings<'_>,
        mut signalling: Option<Signalling<'_>>,
    ) -> Result<(), StepError> {
        let mut buf = vec![0u8; DATAGRAM_BYTES];
        let mut trickling = self.take_trickled()?;
        loop {
            // Everything str0m has to say now, up to its next timer.
            let wake = loop {
                let output = self
                    .rtc
                    .poll_output()
                    .map_err(|e| self.stage.error(&e.to_string()))?;
                match output {
                    Output::Timeout(at) => break Instant::from_std(at),
                    Output::Transmit(t) => {
                        // A send that fails is a lost datagram: ICE and DTLS retransmit, and
                        // their deadlines name the phase. Only the prober's own exhaustion is
                        // worth stopping for.
                        if let Err(e) = socket.send_to(&t.contents, t.destination).await
                            && crate::flow::error::local_cause(&e).is_some()
                        {
                            return Err(StepError::caused_by(
                                FailureReason::Local,
                                format!("sending to {}: {e}", t.destination),
                                &e,
                            ));
                        }
                    }
                    Output::Event(event) => {
                        self.on_event(event, timings, traffic)?;
                    }
                }
            };
            if self.stage == Stage::Media {
                if let Some(id) = self.channel.filter(|_| traffic.is_open()) {
                    traffic.send_due(&mut self.rtc, id)?;
                }
                if traffic.done() {
                    return Ok(());
                }
            }
            let next = wake.min(deadline).min(traffic.next_wake());
            // Candidates matter until ICE is connected; the websocket is then the next steps'.
            let read = trickling && self.stage == Stage::Ice && signalling.is_some();
            tokio::select! {
                got = async {
                    match signalling.as_mut() {
                        Some(conn) => conn.read_aside().await,
                        None => std::future::pending().await,
                    }
                }, if read => {
                    match got {
                        Ok(()) => trickling = self.take_trickled()?,
                        Err(e) => {
                            self.trickled.signalling = Some(e.message);
                            signalling = None;
                        }
                    }
                }
                received = socket.recv_from(&mut buf) => {
                    let (n, source) = received.map_err(|e| {
                        StepError::caused_by(self.stage.reason(), format!("receiving: {e}"), &e)
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
                                .map_err(|e| self.stage.error(&e.to_string()))?;
                        }
                    }
                }
                () = tokio::time::sleep_until(next) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(self.stage.timeout(traffic, self.dtls_role.as_deref()));
                    }
                    if traffic.expired(now) {
                        return Ok(());
                    }
                    self.rtc
                        .handle_input(Input::Timeout(now.into_std()))
                        .map_err(|e| self.stage.error(&e.to_string()))?;
                }
            }
        }
    }

    fn on_event<T: Traffic>(
        &mut self,
        event: Event,
        timings: &mut Timings<'_>,
        traffic: &mut T,
    ) -> Result<(), StepError> {
        let stage = &mut self.stage;
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
                if self.channel.is_none() {
                    self.channel = Some(id);
                }
                if self.channel == Some(id) {
                    traffic.open();
                    if traffic.media_at_open() {
                        timings.start(None);
                    }
                }
            }
            // On any channel: an SFU forwards another participant's messages on a channel of
            // its own (Janus videoroom: one labelled with the publisher's id).
            Event::ChannelData(data) => {
                // The first message that counts (an echo, the publisher's) ends `first_media`.
                let ours = traffic.on_data(&data.data);
                if ours && matches!(timings.pending, Some((Phase::FirstMedia, _))) {
                    timings.start(None);
                }
                // Another joincanary peer's message, as sent (never an echo of one: that could
                // bounce forever with an echoing SFU): sent back, so two probers' peers can be
                // each other's echo.
                if !ours
                    && traffic.echoes_back()
                    && echo::is_probe_message(&data.data)
                    && let Some(mut channel) = self.rtc.channel(data.id)
                {
                    let _ = channel.write(data.binary, &data.data);
                }
            }
            Event::ChannelClose(id) if Some(id) == self.channel => {
                return Err(StepError::new(
                    FailureReason::Media,
                    format!("the SFU closed the data channel ({})", traffic.progress()),
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

/// Where the connection is: the phase a failure is blamed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Ice,
    Dtls,
    Media,
}

impl Stage {
    pub(super) fn reason(self) -> FailureReason {
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

    /// `role`: our DTLS role and the SFU's `a=setup` that gave it, named when the handshake
    /// never completed (two servers or two clients wait for each other in silence).
    fn timeout<T: Traffic>(self, traffic: &T, role: Option<&str>) -> StepError {
        let message = match self {
            Stage::Ice => "no ICE connectivity with the SFU's candidates (its checks and ours \
                           went unanswered)"
                .to_string(),
            Stage::Dtls => match role {
                Some(role) => format!(
                    "ICE connected but the DTLS handshake with the SFU never completed ({role})"
                ),
                None => {
                    "ICE connected but the DTLS handshake with the SFU never completed".to_string()
                }
            },
            Stage::Media => traffic.timeout_message(),
        };
        StepError::new(self.reason(), format!("timed out: {message}"))
    }
}

#[cfg(test)]
mod shapes;

#[cfg(test)]
mod tests;
