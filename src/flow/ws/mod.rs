//! The websocket steps, one file each: [`connect`] (dns, connect, tls, upgrade timed
//! separately, then the protocol's handshake), [`send`], [`expect`] (skipping frames that do not
//! match, failing at once on the server's own error), [`close`]. Here: an open websocket of a
//! run (a run may hold several, by name) and what the four share.

// The kinds list names each kind's spec by its file (`ws::connect::WsConnectSpec`): no
// re-export here, so this module, which `RunContext` holds connections of, imports nothing
// that imports the context back.
pub(crate) mod close;
pub(crate) mod connect;
pub(crate) mod expect;
pub(crate) mod meter;
pub(crate) mod send;

use std::collections::VecDeque;

use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::error::{StepError, server_error, snippet};
use super::protocol::{self, Incoming, Message, Outgoing, Protocol, Setup};
use crate::report::{FailureReason, Phase};
use crate::template::Context;

/// Read buffer of a probe's websocket (see where it is set).
const WS_READ_BUFFER: usize = 8 * 1024;

/// Frames read while waiting for the peer's close reply before giving up on a clean close.
const CLOSE_FRAME_BUDGET: usize = 64;
/// How long a protocol goodbye (`<close/>`) waits for the server's before the websocket is
/// closed anyway (a server that never answers it still gets the websocket closing handshake).
const GOODBYE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);
/// Control frames (pings, other namespaces' traffic) one read may skip: they never count
/// against `max_frames`, but a flood of them must not loop unbounded either.
const CONTROL_FRAME_BUDGET: usize = 100_000;
/// Longest a closing handshake may take after the run is over.
pub(crate) const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Messages kept for the steps after a read no step asked for (the handshake's, or those a
/// `webrtc` step read while it waited for trickled ICE candidates): more, and that reading
/// stops, leaving the rest in the socket.
pub(crate) const BACKLOG_MAX: usize = 256;

/// Messages the last `ws_expect` on a connection skipped, kept for a [`Divert`] set up just
/// after it: an SFU may trickle its first ICE candidates before the event carrying its SDP
/// (Janus's subscriber offer races its own candidate gathering), and the step waiting for that
/// event skips them before the `webrtc` step that taps the stream exists. Small messages only
/// (a candidate is some 200 bytes, a JSON envelope around it a few hundred more), so a hostile
/// stream keeps at most `SKIPPED_KEPT` x `SKIPPED_KEPT_BYTES` here.
pub(crate) const SKIPPED_KEPT: usize = 32;
pub(crate) const SKIPPED_KEPT_BYTES: usize = 8 * 1024;

/// What the last step waiting on a stream (a `ws_expect`, a long poll's `batch` step) skipped:
/// the latest [`SKIPPED_KEPT`] messages under [`SKIPPED_KEPT_BYTES`], offered to a [`Divert`]
/// set up after it.
#[derive(Default)]
pub(crate) struct Skipped(VecDeque<Message>);

/// Read-only access for what looks at the kept messages (tests).
impl std::ops::Deref for Skipped {
    type Target = VecDeque<Message>;
    fn deref(&self) -> &VecDeque<Message> {
        &self.0
    }
}

impl Skipped {
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// Keeps `m` if it is small, dropping the oldest past [`SKIPPED_KEPT`].
    pub(crate) fn keep(&mut self, m: Message) {
        if m.text.len() > SKIPPED_KEPT_BYTES {
            return;
        }
        if self.0.len() >= SKIPPED_KEPT {
            self.0.pop_front();
        }
        self.0.push_back(m);
    }

    /// Offers each kept message to `d`, in order; what it takes is gone.
    pub(crate) fn offer(&mut self, d: &dyn Divert) {
        self.0.retain(|m| !d.divert(m));
    }
}

/// Takes the messages of one kind out of a websocket's stream, whichever step reads them: a
/// WebRTC peer's trickled ICE candidates, which a platform sends whenever it has them, between
/// the frames the steps wait for (see `webrtc::tap`).
pub(crate) trait Divert: Send + Sync {
    /// `true`: the message was taken (no step sees it).
    fn divert(&self, message: &Message) -> bool;
    /// `false` once nothing takes what it diverts any more (it is then dropped).
    fn live(&self) -> bool;
}

/// An open websocket of one run, with its protocol's state.
pub(crate) struct Connection {
    stream: WebSocketStream<meter::Metered<MaybeTlsStream<crate::flow::tcp::Tcp>>>,
    proto: Box<dyn Protocol>,
    /// Messages that arrived before any step asked for them: during the handshake, or while a
    /// `webrtc` step read trickled candidates ([`Connection::read_aside`]); at most
    /// [`BACKLOG_MAX`] (the handshake's: `max_frames`).
    backlog: VecDeque<Message>,
    /// What the last `ws_expect` on this connection skipped (see [`SKIPPED_KEPT`]): offered to a
    /// [`Divert`] when it is set up.
    skipped: Skipped,
    /// What takes messages out of the stream (one per WebRTC peer trickling on it, so bounded
    /// by the probe's config; dropped once not [`Divert::live`]).
    diverts: Vec<std::sync::Arc<dyn Divert>>,
    /// Where it is connected (what a value read from it came from).
    pub(crate) url: url::Url,
}

impl Connection {
    /// Says goodbye at the protocol level and waits for the server's (RFC 7395 §3.6: XMPP's
    /// `<close/>` is answered with `<close/>`), then the websocket closing handshake. Callers
    /// bound it with a timeout.
    ///
    /// The goodbye comes first because tungstenite drops data frames once our close frame is
    /// sent, so the server's `<close/>` would be lost. Once the server has said it, the session
    /// is over: a server that then drops the TCP connection without a close frame has closed
    /// cleanly, not failed.
    pub(crate) async fn close(mut self) -> Result<(), tungstenite::Error> {
        let mut said_bye = false;
        let mut closed_by_server = false;
        if let Some(bye) = self.proto.closing() {
            self.stream.send(WsMessage::text(bye)).await?;
            let until = Instant::now() + GOODBYE_WAIT;
            for _ in 0..CLOSE_FRAME_BUDGET {
                let Ok(got) = tokio::time::timeout_at(until, self.stream.next()).await else {
                    break; // no goodbye: close the websocket anyway
                };
                match got {
                    None | Some(Err(tungstenite::Error::ConnectionClosed)) => return Ok(()),
                    Some(Err(e)) if said_bye && peer_gone(&e) => return Ok(()),
                    Some(Err(e)) => return Err(e),
                    // The server closes the websocket itself (tungstenite answers the frame).
                    Some(Ok(WsMessage::Close(_))) => {
                        closed_by_server = true;
                        break;
                    }
                    Some(Ok(WsMessage::Text(t))) => {
                        if matches!(self.proto.decode(&t), Incoming::Closed(_)) {
                            said_bye = true;
                        }
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
        if !closed_by_server {
            match self.stream.close(None).await {
                Ok(()) => {}
                Err(e) if said_bye && peer_gone(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        for _ in 0..CLOSE_FRAME_BUDGET {
            match self.stream.next().await {
                None | Some(Err(tungstenite::Error::ConnectionClosed)) => return Ok(()),
                Some(Err(e)) if said_bye && peer_gone(&e) => return Ok(()),
                Some(Err(e)) => return Err(e),
                // The server's close frame ends the handshake; its TCP close (RFC 6455
                // §7.1.1: the server closes first, so TIME_WAIT stays on its side) is
                // waited for only if it has not come in with that frame already.
                Some(Ok(WsMessage::Close(_))) if self.peer_finished() => return Ok(()),
                Some(Ok(_)) => {}
            }
        }
        Ok(())
    }

    /// A step on this connection begins: the meter's per-step budgets are full again.
    pub(crate) fn begin_step(&mut self) {
        self.stream.get_mut().begin_step();
    }

    /// The server's FIN has arrived: the event loop's readiness says so, without the read
    /// that would return the end of stream (one system call per run saved). TLS: unknown.
    fn peer_finished(&self) -> bool {
        use futures_util::FutureExt as _;
        match self.stream.get_ref().get_ref() {
            MaybeTlsStream::Plain(conn) => conn
                .tcp()
                .ready(tokio::io::Interest::READABLE)
                .now_or_never()
                .is_some_and(|ready| ready.is_ok_and(|r| r.is_read_closed())),
            _ => false,
        }
    }

    /// The next message a step may match: control frames are answered and skipped; the
    /// server's protocol-level error or goodbye is an error. Diverted messages are skipped
    /// too (never counted against `max_frames`, bounded by the same budget). During the
    /// handshake or a read aside (`handshake`), `None` says the protocol has just become
    /// ready, or a message was diverted.
    async fn next_message(&mut self, handshake: bool) -> Result<Option<Message>, Read> {
        if !handshake && let Some(m) = self.backlog.pop_front() {
            return Ok(Some(m));
        }
        // Bounded: the rest of one frame.
        while let Some(m) = self.proto.pending() {
            if !self.diverted(&m) {
                return Ok(Some(m));
            }
            if handshake {
                return Ok(None);
            }
        }
        for _ in 0..CONTROL_FRAME_BUDGET {
            let Some(Data { text, bytes }) = self.read_data().await? else {
                continue;
            };
            match self.proto.decode(&text) {
                Incoming::Control(replies) => {
                    self.answer(replies).await.map_err(Read::Closed)?;
                    if handshake && self.proto.ready() {
                        return Ok(None);
                    }
                }
                Incoming::Message(mut m) => {
                    m.bytes = bytes;
                    match (self.diverted(&m), handshake) {
                        (false, _) => return Ok(Some(m)),
                        (true, true) => return Ok(None),
                        (true, false) => {}
                    }
                }
                Incoming::ServerError(what) => {
                    return Err(Read::Failed(server_error(what, &text)));
                }
                Incoming::Closed(why) => {
                    return Err(Read::Closed(StepError::new(
                        FailureReason::WsClosed,
                        format!("{why}: {}", snippet(text.as_bytes())),
                    )));
                }
            }
        }
        Err(Read::Failed(StepError::new(
            FailureReason::Protocol,
            format!("{CONTROL_FRAME_BUDGET} control frames in a row and no message"),
        )))
    }

    /// Whether a [`Divert`] took `m`; those that nothing takes from any more are dropped first.
    fn diverted(&mut self, m: &Message) -> bool {
        self.diverts.retain(|d| d.live());
        self.diverts.iter().any(|d| d.divert(m))
    }

    /// From now on, `d` takes the messages it wants out of this websocket's stream, starting
    /// with those the last `ws_expect` skipped (in their order).
    pub(crate) fn divert(&mut self, d: std::sync::Arc<dyn Divert>) {
        self.diverts.retain(|d| d.live());
        self.skipped.offer(&*d);
        self.diverts.push(d);
    }

    /// A `ws_expect` begins on this connection: what the previous one skipped is no longer
    /// the latest signalling's.
    pub(crate) fn forget_skipped(&mut self) {
        self.skipped.clear();
    }

    /// A `ws_expect` skipped `m`: kept (small ones, the latest [`SKIPPED_KEPT`]) for a
    /// [`Divert`] set up after the step.
    pub(crate) fn keep_skipped(&mut self, m: Message) {
        self.skipped.keep(m);
    }

    /// Reads one frame while no step waits for one (a `webrtc` step waiting for trickled ICE
    /// candidates): what a [`Divert`] wants is taken, any other message kept for the steps
    /// after. Cancel-safe while it waits for a frame.
    ///
    /// # Errors
    /// The websocket failing or closing, or [`BACKLOG_MAX`] messages kept already (then
    /// nothing more is read here).
    pub(crate) async fn read_aside(&mut self) -> Result<(), StepError> {
        if self.backlog.len() >= BACKLOG_MAX {
            return Err(StepError::new(
                FailureReason::Protocol,
                format!("{BACKLOG_MAX} messages came that no step has read yet"),
            ));
        }
        // `true`: the backlog is not read from (a control frame ends the read).
        match self.next_message(true).await {
            Ok(Some(m)) => self.backlog.push_back(m),
            Ok(None) => {}
            Err(Read::Closed(e) | Read::Failed(e)) => return Err(e),
        }
        Ok(())
    }

    /// Sends the protocol's answers to a control frame (Engine.IO's pong).
    async fn answer(&mut self, replies: Vec<String>) -> Result<(), StepError> {
        for r in replies {
            self.stream
                .send(WsMessage::text(r))
                .await
                .map_err(|e| classify(e, FailureReason::WsClosed))?;
        }
        Ok(())
    }

    /// The next data frame; `None` for a control frame (the transport's business, not traffic
    /// to match; tungstenite answers pings itself).
    async fn read_data(&mut self) -> Result<Option<Data>, Read> {
        match self.stream.next().await {
            None => Err(Read::Closed(StepError::new(
                FailureReason::WsClosed,
                "the server closed the websocket while a frame was awaited",
            ))),
            Some(Err(e)) => Err(Read::Closed(classify(e, FailureReason::WsClosed))),
            Some(Ok(WsMessage::Close(frame))) => {
                let why = frame
                    .map(|f| format!(" (code {}: {})", u16::from(f.code), f.reason))
                    .unwrap_or_default();
                Err(Read::Closed(StepError::new(
                    FailureReason::WsClosed,
                    format!("the server closed the websocket{why}"),
                )))
            }
            Some(Ok(WsMessage::Text(t))) => Ok(Some(Data {
                text: t.to_string(),
                bytes: None,
            })),
            Some(Ok(WsMessage::Binary(b))) => Ok(Some(Data {
                text: String::from_utf8_lossy(&b).into_owned(),
                bytes: Some(Vec::from(b).into_boxed_slice()),
            })),
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => Ok(None),
        }
    }

    /// Reads one frame of an idle resident session: the protocol's pings are answered, messages
    /// are dropped (no step waits for them), the server's error or goodbye is an error
    /// (`Err(true, _)`: the connection is gone). Cancel-safe while it waits for a frame.
    pub(crate) async fn pump(&mut self) -> Result<(), (bool, StepError)> {
        let text = match self.read_data().await {
            Ok(Some(data)) => data.text,
            Ok(None) => return Ok(()),
            Err(Read::Closed(e)) => return Err((true, e)),
            Err(Read::Failed(e)) => return Err((false, e)),
        };
        match self.proto.decode(&text) {
            Incoming::Control(replies) => self.answer(replies).await.map_err(|e| (true, e)),
            Incoming::Message(_) => {
                // No step waits for them, nor for the rest of their frame (bounded per frame).
                while self.proto.pending().is_some() {}
                Ok(())
            }
            Incoming::ServerError(what) => Err((false, server_error(what, &text))),
            Incoming::Closed(why) => Err((
                true,
                StepError::new(
                    FailureReason::WsClosed,
                    format!("{why}: {}", snippet(text.as_bytes())),
                ),
            )),
        }
    }

    /// A websocket ping, and the protocol's own where it has one (the keepalive of an idle
    /// session; any frame back counts as its answer).
    pub(crate) async fn ping(&mut self) -> Result<(), StepError> {
        self.stream
            .send(WsMessage::Ping(Default::default()))
            .await
            .map_err(|e| classify(e, FailureReason::WsClosed))?;
        if let Some(frame) = self.proto.keepalive() {
            self.stream
                .send(WsMessage::text(frame))
                .await
                .map_err(|e| classify(e, FailureReason::WsClosed))?;
        }
        Ok(())
    }
}

/// The peer has closed the connection under us (a reset, a write to a closed socket, an end
/// without the websocket closing handshake).
fn peer_gone(e: &tungstenite::Error) -> bool {
    use tungstenite::Error as E;
    use tungstenite::error::ProtocolError as P;
    matches!(
        e,
        E::ConnectionClosed
            | E::AlreadyClosed
            | E::Io(_)
            | E::Protocol(P::ResetWithoutClosingHandshake)
    )
}

/// A data frame as protocols read it: its text (a binary frame's bytes as UTF-8, invalid
/// sequences replaced: protocols speak text) and, for a binary frame, the bytes themselves.
struct Data {
    text: String,
    bytes: Option<Box<[u8]>>,
}

/// Why a read gave no message; `Closed` means the connection is gone.
enum Read {
    Closed(StepError),
    Failed(StepError),
}

/// Maps a tungstenite error to a stable reason; `io_reason` is what a broken socket means at
/// this point of the flow.
fn classify(e: tungstenite::Error, io_reason: FailureReason) -> StepError {
    use tungstenite::Error as E;
    if let E::Io(io) = &e
        && let Some(budget) = meter::exhausted(io)
    {
        return StepError::new(budget.reason, budget.message.clone());
    }
    let reason = match &e {
        E::Capacity(_) => FailureReason::TooLarge,
        E::ConnectionClosed | E::AlreadyClosed => FailureReason::WsClosed,
        E::Io(_) => io_reason,
        E::Tls(_) => FailureReason::Tls,
        E::Http(_) | E::HttpFormat(_) | E::Url(_) => FailureReason::WsHandshake,
        // A protocol error during the upgrade is a failed handshake, not a broken stream.
        E::Protocol(_) if io_reason == FailureReason::WsHandshake => FailureReason::WsHandshake,
        _ => FailureReason::Protocol,
    };
    let message = match &e {
        E::Capacity(c) => format!("a frame exceeded the cap (max_body_bytes): {c}"),
        other => format!("websocket error: {}", crate::net::error_chain(other)),
    };
    StepError::caused_by(reason, message, &e)
}
