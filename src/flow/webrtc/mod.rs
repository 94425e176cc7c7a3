//! The `webrtc` step: the media path after signalling. One peer connection per `connection`
//! name, in two halves around the signalling steps that carry its SDP:
//!
//! - `action = "offer"` gathers and makes our SDP offer (one data channel) into a variable;
//!   `action = "answer"` does the same from the SFU's offer (`remote_sdp`);
//! - `action = "connect"` takes the SFU's answer (`remote_sdp`, after an offer), runs ICE and
//!   DTLS-SRTP (the certificate checked against `a=fingerprint`) and echoes `echo` messages on
//!   the data channel: phases `ice`, `dtls`, `first_media`; gauges `echo_loss_ratio`,
//!   `echo_rtt_seconds`; with `from = "a"` it receives connection `a`'s messages through the
//!   SFU instead: gauges `media_received`, `media_loss_ratio`, `media_latency_seconds`;
//! - `action = "publish"` connects as `connect` does up to the data channel's opening, then
//!   keeps sending numbered messages in the background while the steps after it run (a room's
//!   publisher that a second participant subscribes to).

mod echo;
// The run context holds open peers by connection name and takes their type from here, not
// from this module, which builds on the context (and the `Kind` trait): the one-way road is
// context -> peer, kind -> context, webrtc -> kind.
pub(crate) mod peer;
mod room;
mod sdp;
mod signalling;
mod tap;
mod trickle;

use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;

pub use echo::{EchoOptions, EchoReport, MAX_ECHOES};
pub use peer::{Participant, Peer, Publisher, Timings};
pub use room::{PublishOptions, Published, ReceiveReport};
pub use sdp::MAX_SDP_BYTES;
pub use tap::{RawTrickle, TrickleSpec};
pub use trickle::{MAX_CANDIDATES, read_candidate};

use super::context::RunContext;
use super::error::StepError;
use super::long_poll::{Events, Fetch, Fetcher};
use super::ws::Connection;
use crate::diag::{Ctx, S, valid_label};
use crate::report::FailureReason;
use crate::template::Template;
use signalling::Signalling;
use std::collections::BTreeMap;
use trickle::TrickleFrom;

/// The longest `echo_interval` and `echo_wait` a step may ask for.
pub const MAX_ECHO_WAIT: Duration = Duration::from_secs(30);

/// The variable our SDP goes into unless `save_as` names another.
pub const DEFAULT_SAVE_AS: &str = "local_sdp";

/// What a `webrtc` step does.
#[derive(Debug, Clone, PartialEq)]
pub enum WebrtcAction {
    /// Make our offer.
    Offer,
    /// Answer the remote offer (rendered from the template).
    Answer(Template),
    /// Connect: ICE, DTLS, the echo (or, `from` a publishing connection, its messages); with
    /// the remote answer after an `offer`.
    Connect(Option<Template>),
    /// Connect up to the data channel, then publish in the background.
    Publish(Option<Template>),
}

/// A validated `webrtc` step.
#[derive(Debug, Clone, PartialEq)]
pub struct WebrtcSpec {
    pub action: WebrtcAction,
    /// `offer`/`answer`: the variable our SDP is stored in (for the signalling steps).
    pub save_as: String,
    /// Our host candidate's address; none: the address routed towards the SFU's candidates.
    pub local_address: Option<IpAddr>,
    pub echo: EchoOptions,
    /// `connect`: the publishing connection whose messages are received instead of an echo.
    pub from: Option<String>,
    /// `offer`/`answer`: where the SFU's trickled candidates come from.
    pub trickle: Option<TrickleSpec>,
}

/// The default number of messages a publisher sends: as many as a step may, one per
/// `echo_interval` (20 s at 20 ms), so a slow subscriber's signalling still finds it sending.
pub const DEFAULT_PUBLISH: u32 = MAX_ECHOES;

/// Runs one `webrtc` step on `connection`.
pub(crate) async fn run(
    ctx: &mut RunContext<'_>,
    connection: &str,
    spec: &WebrtcSpec,
) -> Result<(), StepError> {
    match &spec.action {
        WebrtcAction::Offer | WebrtcAction::Answer(_) => {
            // The tap goes on first: a candidate trickled right after the SFU's offer is
            // taken by whichever step reads the websocket next.
            let trickle = match &spec.trickle {
                Some(t) => Some(t.tap(ctx, connection)?),
                None => None,
            };
            let (peer, sdp) = match &spec.action {
                WebrtcAction::Answer(remote) => {
                    let offer = ctx.render(remote)?;
                    add_ice_passwords(ctx, &offer);
                    Peer::answer_trickled(spec.local_address, &offer, trickle).await?
                }
                _ => {
                    let (mut peer, sdp) = Peer::offer(spec.local_address).await?;
                    peer.set_trickle(trickle);
                    (peer, sdp)
                }
            };
            add_ice_passwords(ctx, &sdp);
            // A peer made again on the same connection replaces (and closes) the old one.
            ctx.webrtc
                .insert(connection.to_string(), Participant::Ready(Box::new(peer)));
            ctx.set_var(&spec.save_as, sdp, None, None);
            Ok(())
        }
        WebrtcAction::Publish(remote) => {
            let answer = render_answer(ctx, remote.as_ref())?;
            let peer = ready_peer(ctx, connection)?;
            let deadline = ctx.deadline;
            let options = PublishOptions {
                count: spec.echo.count,
                interval: spec.echo.interval,
            };
            let fetch = fetcher(ctx, peer.trickle_from());
            let signalling =
                signalling(&mut ctx.ws, &mut ctx.long_polls, peer.trickle_from(), fetch);
            let publisher = peer
                .publish(
                    (ctx.probe, connection),
                    answer.as_deref(),
                    &options,
                    deadline,
                    Timings {
                        phases: &mut ctx.phases,
                        pending: &mut ctx.pending,
                    },
                    signalling,
                )
                .await?;
            if let Some(n) = publisher.trickled {
                ctx.gauge("trickled_candidates", n as f64);
            }
            ctx.webrtc
                .insert(connection.to_string(), Participant::Publishing(publisher));
            Ok(())
        }
        WebrtcAction::Connect(remote) if spec.from.is_some() => {
            let from = spec.from.as_deref().unwrap_or_default();
            let answer = render_answer(ctx, remote.as_ref())?;
            let log = match ctx.webrtc.get(from) {
                Some(Participant::Publishing(p)) => p.log.clone(),
                _ => {
                    return Err(StepError::new(
                        FailureReason::Protocol,
                        format!(
                            "connection `{from}` is not publishing (a `webrtc` step with action \
                             \"publish\" on it comes first, and passed)"
                        ),
                    ));
                }
            };
            let mut peer = ready_peer(ctx, connection)?;
            let deadline = ctx.deadline;
            let fetch = fetcher(ctx, peer.trickle_from());
            let signalling =
                signalling(&mut ctx.ws, &mut ctx.long_polls, peer.trickle_from(), fetch);
            let report = peer
                .receive(
                    answer.as_deref(),
                    (from, log),
                    (spec.echo.count, spec.echo.wait),
                    deadline,
                    Timings {
                        phases: &mut ctx.phases,
                        pending: &mut ctx.pending,
                    },
                    signalling,
                )
                .await;
            trickled_gauge(ctx, &peer);
            let report = report?;
            ctx.gauge("media_received", f64::from(report.received));
            ctx.gauge("media_loss_ratio", report.loss_ratio());
            if let Some(latency) = report.median_latency() {
                ctx.gauge("media_latency_seconds", latency.as_secs_f64());
            }
            Ok(())
        }
        WebrtcAction::Connect(remote) => {
            let answer = render_answer(ctx, remote.as_ref())?;
            let mut peer = ready_peer(ctx, connection)?;
            let deadline = ctx.deadline;
            let fetch = fetcher(ctx, peer.trickle_from());
            let signalling =
                signalling(&mut ctx.ws, &mut ctx.long_polls, peer.trickle_from(), fetch);
            let report = peer
                .connect_over(
                    answer.as_deref(),
                    &spec.echo,
                    deadline,
                    Timings {
                        phases: &mut ctx.phases,
                        pending: &mut ctx.pending,
                    },
                    signalling,
                )
                .await;
            trickled_gauge(ctx, &peer);
            let report = report?;
            ctx.gauge("echo_loss_ratio", report.loss_ratio());
            if let Some(rtt) = report.median_rtt() {
                ctx.gauge("echo_rtt_seconds", rtt.as_secs_f64());
            }
            Ok(())
        }
    }
}

/// How a `connect` or `publish` asks a long poll for more candidates (`None` when its tap is
/// on a websocket): a GET of the tap's `poll` URL with the connection's cookies, under the
/// run's TLS settings and body cap.
fn fetcher(ctx: &RunContext<'_>, from: Option<&TrickleFrom>) -> Option<Box<Fetcher>> {
    let Some(TrickleFrom::LongPoll(connection)) = from else {
        return None;
    };
    let url = ctx.long_polls.get(connection)?.url.clone()?;
    let cookie = ctx.cookies.header(connection, &url);
    let (tls, cap) = (ctx.tls.clone(), ctx.max_body_bytes);
    Some(Box::new(move || -> Fetch {
        Box::pin(super::http_wire::get_untimed(
            url.clone(),
            tls.clone(),
            cookie.clone(),
            cap,
        ))
    }))
}

/// What a `connect` or `publish` reads while ICE waits for trickled candidates: the websocket
/// or long poll its tap is on (`fetch` asks the latter again).
fn signalling<'c>(
    ws: &'c mut BTreeMap<String, Connection>,
    long_polls: &'c mut BTreeMap<String, Events>,
    from: Option<&TrickleFrom>,
    fetch: Option<Box<Fetcher>>,
) -> Option<Signalling<'c>> {
    match from? {
        TrickleFrom::Websocket(name) => ws.get_mut(name).map(Signalling::Websocket),
        TrickleFrom::LongPoll(name) => {
            Some(Signalling::LongPoll(long_polls.get_mut(name)?, fetch?))
        }
    }
}

/// A key naming a connection (`from`, `trickle.websocket`), checked; `None` when it is not one.
fn connection_name(ctx: &mut Ctx<'_>, v: Option<&S<String>>, key: &str) -> Option<Option<String>> {
    match v {
        Some(v) if !valid_label(v.get_ref()) => {
            ctx.error(
                Some(v.span()),
                key,
                "must be a connection name: letters, digits, `-`, `_` or `.`",
            );
            None
        }
        Some(v) => Some(Some(v.get_ref().clone())),
        None => Some(None),
    }
}

/// `trickled_candidates`: how many candidates the SFU trickled, for a peer told to take them
/// (kept with a failed step too: none trickled is what an `ice` failure then means).
fn trickled_gauge(ctx: &mut RunContext<'_>, peer: &Peer) {
    if let Some(n) = peer.trickled_candidates() {
        ctx.gauge("trickled_candidates", n as f64);
    }
}

/// The remote answer a `connect` or `publish` takes, rendered; its ICE password a secret.
fn render_answer(
    ctx: &mut RunContext<'_>,
    remote: Option<&Template>,
) -> Result<Option<String>, StepError> {
    let answer = remote.map(|t| ctx.render(t)).transpose()?;
    if let Some(answer) = &answer {
        add_ice_passwords(ctx, answer);
    }
    Ok(answer)
}

/// The peer an offer or answer made on `connection`, taken out to connect.
fn ready_peer(ctx: &mut RunContext<'_>, connection: &str) -> Result<Peer, StepError> {
    match ctx.webrtc.remove(connection) {
        Some(Participant::Ready(peer)) => Ok(*peer),
        Some(publishing @ Participant::Publishing(_)) => {
            ctx.webrtc.insert(connection.to_string(), publishing);
            Err(StepError::new(
                FailureReason::Protocol,
                format!("connection `{connection}` is connected and publishing already"),
            ))
        }
        None => Err(StepError::new(
            FailureReason::Protocol,
            format!(
                "no WebRTC offer or answer on connection `{connection}` to connect (a `webrtc` \
                 step with action \"offer\" or \"answer\" comes first)"
            ),
        )),
    }
}

/// Our SDP's and the SFU's ICE passwords are secrets of the run: they key the connectivity
/// checks (see `redact::scrub_ice_passwords`).
fn add_ice_passwords(ctx: &mut RunContext<'_>, sdp: &str) {
    for password in sdp::ice_passwords(sdp) {
        ctx.add_secret(password);
    }
}

/// A `webrtc` step's own keys, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebrtc {
    /// `offer`, `answer` or `connect`.
    pub action: Option<S<String>>,
    /// `answer`: the SFU's offer; `connect` after an offer: the SFU's answer.
    pub remote_sdp: Option<S<String>>,
    /// `offer`/`answer`: the variable our SDP goes into (default `local_sdp`).
    pub save_as: Option<S<String>>,
    /// Our host candidate's IP (default: the address routed towards the SFU's candidates).
    pub local_address: Option<S<String>>,
    /// `connect`: data channel messages echoed (default 10), or received `from` a publisher;
    /// `publish`: messages sent at most (default 1000).
    pub echo: Option<S<i64>>,
    /// `connect`, `publish`: between two messages (default 20ms).
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub echo_interval: Option<S<String>>,
    /// `connect`: how long the last message's echo may take, or a publisher's message to
    /// arrive (default 1s).
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub echo_wait: Option<S<String>>,
    /// `connect`: receive this publishing connection's messages instead of an echo.
    pub from: Option<S<String>>,
    /// `offer`/`answer`: the SFU trickles its candidates in signalling messages after its
    /// SDP; where they come from.
    pub trickle: Option<S<RawTrickle>>,
}

impl WebrtcSpec {
    /// Checks a step's keys: every problem is reported through `ctx` with its key (`key`
    /// makes `steps[3].echo` of `echo`); `name` is where a missing key is placed.
    pub fn build(
        ctx: &mut Ctx<'_>,
        raw: &RawWebrtc,
        name: Range<usize>,
        key: &dyn Fn(&str) -> String,
    ) -> Option<WebrtcSpec> {
        let remote = match &raw.remote_sdp {
            Some(t) => Some(ctx.template(t, &key("remote_sdp"))?),
            None => None,
        };
        let action = match raw
            .action
            .as_ref()
            .map(|a| (a.get_ref().as_str(), a.span()))
        {
            Some(("offer", _)) => WebrtcAction::Offer,
            Some(("connect", _)) => WebrtcAction::Connect(remote.clone()),
            Some(("publish", _)) => WebrtcAction::Publish(remote.clone()),
            Some(("answer", span)) => {
                let Some(offer) = remote.clone() else {
                    ctx.error(
                        Some(span),
                        key("remote_sdp"),
                        "action \"answer\" needs `remote_sdp`: the SFU's offer",
                    );
                    return None;
                };
                WebrtcAction::Answer(offer)
            }
            Some((other, span)) => {
                ctx.error(
                    Some(span),
                    key("action"),
                    format_args!(
                        "`{other}` is not a webrtc action: offer, answer, connect or publish"
                    ),
                );
                return None;
            }
            None => {
                ctx.error(
                    Some(name),
                    key("action"),
                    "a webrtc step needs `action`: offer, answer, connect or publish",
                );
                return None;
            }
        };
        let connect = matches!(action, WebrtcAction::Connect(_));
        let publish = matches!(action, WebrtcAction::Publish(_));
        let receive = connect && raw.from.is_some();
        let offer = matches!(action, WebrtcAction::Offer);
        let mut ok = true;
        // Keys of the other half of the connection are refused, not ignored.
        let mut misplaced = |written: Option<Range<usize>>, name: &str, applies: bool| {
            if let (Some(span), false) = (written, applies) {
                let which = match action {
                    WebrtcAction::Offer => "offer",
                    WebrtcAction::Answer(_) => "answer",
                    WebrtcAction::Connect(_) if receive => "connect with `from`",
                    WebrtcAction::Connect(_) => "connect",
                    WebrtcAction::Publish(_) => "publish",
                };
                ctx.error(
                    Some(span),
                    key(name),
                    format_args!("`{name}` does not apply to action {which}"),
                );
                ok = false;
            }
        };
        misplaced(raw.remote_sdp.as_ref().map(S::span), "remote_sdp", !offer);
        misplaced(
            raw.save_as.as_ref().map(S::span),
            "save_as",
            !connect && !publish,
        );
        misplaced(raw.echo.as_ref().map(S::span), "echo", connect || publish);
        misplaced(
            raw.echo_interval.as_ref().map(S::span),
            "echo_interval",
            (connect && !receive) || publish,
        );
        misplaced(raw.echo_wait.as_ref().map(S::span), "echo_wait", connect);
        misplaced(raw.from.as_ref().map(S::span), "from", connect);
        misplaced(
            raw.trickle.as_ref().map(S::span),
            "trickle",
            !connect && !publish,
        );
        let trickle = match &raw.trickle {
            Some(t) => match TrickleSpec::build(ctx, t, &key("trickle")) {
                Some(t) => Some(t),
                None => return None,
            },
            None => None,
        };
        let from = connection_name(ctx, raw.from.as_ref(), &key("from"))?;
        let save_as = match &raw.save_as {
            Some(v) if !valid_label(v.get_ref()) => {
                ctx.error(
                    Some(v.span()),
                    key("save_as"),
                    "must be a variable name: letters, digits, `-`, `_` or `.`",
                );
                return None;
            }
            Some(v) => v.get_ref().clone(),
            None => DEFAULT_SAVE_AS.to_string(),
        };
        let local_address = match &raw.local_address {
            Some(a) => match a.get_ref().parse::<IpAddr>() {
                Ok(ip) if !ip.is_unspecified() && !ip.is_multicast() => Some(ip),
                _ => {
                    ctx.error(
                        Some(a.span()),
                        key("local_address"),
                        "must be an IP address of this host (not 0.0.0.0, :: or multicast)",
                    );
                    return None;
                }
            },
            None => None,
        };
        let mut echo = EchoOptions::default();
        if publish {
            echo.count = DEFAULT_PUBLISH;
        }
        if let Some(n) = &raw.echo {
            match u32::try_from(*n.get_ref()) {
                Ok(count) if (1..=MAX_ECHOES).contains(&count) => echo.count = count,
                _ => {
                    ctx.error(
                        Some(n.span()),
                        key("echo"),
                        format_args!("must be between 1 and {MAX_ECHOES}"),
                    );
                    ok = false;
                }
            }
        }
        if let Some(d) = &raw.echo_interval {
            match ctx.duration_within(d, &key("echo_interval"), Duration::ZERO, MAX_ECHO_WAIT) {
                Some(v) => echo.interval = v,
                None => ok = false,
            }
        }
        if let Some(d) = &raw.echo_wait {
            match ctx.duration_within(d, &key("echo_wait"), Duration::ZERO, MAX_ECHO_WAIT) {
                Some(v) => echo.wait = v,
                None => ok = false,
            }
        }
        ok.then_some(WebrtcSpec {
            action,
            save_as,
            local_address,
            echo,
            from,
            trickle,
        })
    }

    /// The template the step renders, if any (its variables must be set by earlier steps).
    pub fn reads(&self) -> Option<&Template> {
        match &self.action {
            WebrtcAction::Answer(t)
            | WebrtcAction::Connect(Some(t))
            | WebrtcAction::Publish(Some(t)) => Some(t),
            _ => None,
        }
    }

    /// The variable the step sets for the steps after it: our SDP, after an offer or answer.
    pub fn sets(&self) -> Option<&str> {
        match self.action {
            WebrtcAction::Connect(_) | WebrtcAction::Publish(_) => None,
            _ => Some(&self.save_as),
        }
    }
}

impl crate::flow::kind::Kind for WebrtcSpec {
    type Raw = RawWebrtc;
    /// It names a connection of its own (its peer), not a websocket an earlier step opened.
    const WEBSOCKET: crate::flow::kind::Websocket = crate::flow::kind::Websocket::Opens;

    fn build(raw: RawWebrtc, b: &mut crate::flow::kind::Build<'_, '_, '_>) -> Option<WebrtcSpec> {
        let prefix = b.prefix.clone();
        WebrtcSpec::build(b.ctx, &raw, b.name.clone(), &|k: &str| {
            format!("{prefix}.{k}")
        })
    }

    fn reads<'s>(&'s self, r: &mut crate::flow::kind::Reads<'s>) {
        r.templates.extend(WebrtcSpec::reads(self));
        r.templates
            .extend(self.trickle.iter().filter_map(TrickleSpec::template));
        r.json
            .extend(self.trickle.iter().flat_map(TrickleSpec::json));
    }

    fn sets(&self) -> Option<&str> {
        WebrtcSpec::sets(self)
    }

    async fn run(&self, ctx: &mut RunContext<'_>, connection: &str) -> Result<(), StepError> {
        run(ctx, connection, self).await
    }
}
