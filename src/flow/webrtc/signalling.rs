//! What a `webrtc` step reads while ICE waits for the SFU's trickled candidates: the
//! websocket its tap is on, or the long poll (each read one request, started aside so that
//! stopping it loses no event; see `long_poll::Events::read_aside`).

use crate::flow::StepError;
use crate::flow::long_poll::{Events, Fetcher};
use crate::flow::ws::Connection;

/// Where trickled candidates are read from, borrowed for one `connect` or `publish`.
pub(crate) enum Signalling<'a> {
    Websocket(&'a mut Connection),
    /// The connection's long poll, and how to ask it again.
    LongPoll(&'a mut Events, Box<Fetcher>),
}

impl Signalling<'_> {
    /// Reads one frame or one reply: candidates go to the tap, the rest is kept for the steps
    /// after. Cancel-safe.
    ///
    /// # Errors
    /// The read failing, its message saying what was read (`reading the websocket failed: …`,
    /// `reading the long poll failed: …`).
    pub(crate) async fn read_aside(&mut self) -> Result<(), StepError> {
        let (what, result) = match self {
            Signalling::Websocket(conn) => ("the websocket", conn.read_aside().await),
            Signalling::LongPoll(events, fetch) => {
                ("the long poll", events.read_aside(fetch.as_ref()).await)
            }
        };
        result.map_err(|mut e| {
            e.message = format!("reading {what} failed: {}", e.message);
            e
        })
    }
}
