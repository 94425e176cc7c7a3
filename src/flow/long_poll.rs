//! An HTTP long poll read as a stream of events, one per connection (Janus's `GET
//! /janus/<session>?maxev=N`, janus.js's default transport): what an `http` step with `batch`
//! read and did not take, what the last one skipped, the WebRTC taps on it, and a request a
//! `webrtc` step started aside and that has not answered yet. The long poll's twin of a
//! websocket's backlog and diverts (`ws::Connection`), bounded the same way.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use super::error::StepError;
use super::protocol::Message;
use super::ws::{BACKLOG_MAX, Divert, Skipped};
use crate::net::AbortOnDrop;
use crate::report::FailureReason;

/// Events one reply is read as at most (a JSON array longer than that is cut: Janus sends
/// `maxev` of them, janus.js asks for 10; the reply is bounded by `max_body_bytes` anyway).
pub(crate) const EVENTS_PER_REPLY: usize = 1000;

/// Longest a request started aside may take: Janus holds a long poll 30 s before it answers
/// a keepalive. The run's end aborts it sooner.
pub(crate) const ASIDE_REQUEST_MAX: Duration = Duration::from_secs(60);

/// One long-poll request, as a `webrtc` step starts it aside: the reply's body, or why none.
pub(crate) type Fetch = Pin<Box<dyn Future<Output = Result<Vec<u8>, StepError>> + Send>>;
/// A request started aside: the task running it, and where its reply comes.
type InFlight = (AbortOnDrop, oneshot::Receiver<Result<Vec<u8>, StepError>>);

/// What starts one such request, again and again.
pub(crate) type Fetcher = dyn Fn() -> Fetch + Send + Sync;

/// The events of one connection's long poll (see the module doc).
#[derive(Default)]
pub(crate) struct Events {
    /// Read and not yet handed to a step: those after the event a step matched in the same
    /// reply, and those a `webrtc` step read aside. Its reads aside stop at [`BACKLOG_MAX`].
    backlog: VecDeque<Message>,
    /// What the last `batch` step skipped (the latest `SKIPPED_KEPT`, each under
    /// `SKIPPED_KEPT_BYTES`): offered to a tap set up after it, as a websocket's are.
    skipped: Skipped,
    /// The WebRTC taps (one per peer trickling here, so bounded by the probe's config).
    diverts: Vec<Arc<dyn Divert>>,
    /// A request started aside whose reply has not been read: the next read takes it, so no
    /// event the server sent into it is lost when the `webrtc` step stops reading.
    in_flight: Option<InFlight>,
    /// Where reads aside ask (a tap's `poll`, rendered when the tap was set up).
    pub(crate) url: Option<url::Url>,
}

impl Events {
    /// The next event read and not yet taken.
    pub(crate) fn next_unread(&mut self) -> Option<Message> {
        self.backlog.pop_front()
    }

    /// Whether a request started aside is still to be answered.
    pub(crate) fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The reply of the request started aside (`None` when there is none). Cancel-safe: the
    /// request goes on, and the next call waits for it again.
    pub(crate) async fn finish_in_flight(&mut self) -> Option<Result<Vec<u8>, StepError>> {
        let (_, reply) = self.in_flight.as_mut()?;
        let got = reply.await;
        self.in_flight = None;
        Some(got.unwrap_or_else(|_| {
            Err(StepError::new(
                FailureReason::Connect,
                "the long-poll request was cut off",
            ))
        }))
    }

    /// One reply's events: what a tap wants is taken, the others are queued for the steps.
    pub(crate) fn accept(&mut self, body: &[u8]) {
        for m in events_of(body) {
            if !self.diverted(&m) {
                self.backlog.push_back(m);
            }
        }
    }

    /// A `batch` step begins: what the previous one skipped is no longer the latest.
    pub(crate) fn forget_skipped(&mut self) {
        self.skipped.clear();
    }

    /// A `batch` step skipped `m`: kept (small ones, the latest few) for a tap set up after.
    pub(crate) fn keep_skipped(&mut self, m: Message) {
        self.skipped.keep(m);
    }

    /// From now on `d` takes what it wants, starting with what the last `batch` step skipped
    /// and what is read and not yet taken (in their order).
    pub(crate) fn divert(&mut self, d: Arc<dyn Divert>) {
        self.diverts.retain(|d| d.live());
        self.skipped.offer(&*d);
        self.backlog.retain(|m| !d.divert(m));
        self.diverts.push(d);
    }

    /// Whether a tap took `m`; those nothing takes from any more are dropped first.
    fn diverted(&mut self, m: &Message) -> bool {
        self.diverts.retain(|d| d.live());
        self.diverts.iter().any(|d| d.divert(m))
    }

    /// Reads one reply while no step waits for one (a `webrtc` step waiting for trickled ICE
    /// candidates): the request in flight, or one `fetch` starts (on a task of its own, so
    /// dropping this read, as the step does once ICE is connected, does not lose its reply).
    ///
    /// # Errors
    /// The request failing, or [`BACKLOG_MAX`] events kept already (nothing more is read).
    pub(crate) async fn read_aside(&mut self, fetch: &Fetcher) -> Result<(), StepError> {
        if self.backlog.len() >= BACKLOG_MAX {
            return Err(StepError::new(
                FailureReason::Protocol,
                format!("{BACKLOG_MAX} events came that no step has read yet"),
            ));
        }
        if self.in_flight.is_none() {
            let (tx, rx) = oneshot::channel();
            let request = fetch();
            let task = tokio::spawn(async move {
                let reply = match tokio::time::timeout(ASIDE_REQUEST_MAX, request).await {
                    Ok(reply) => reply,
                    Err(_) => Err(StepError::new(
                        FailureReason::Timeout,
                        format!("no reply in {} s", ASIDE_REQUEST_MAX.as_secs()),
                    )),
                };
                let _ = tx.send(reply);
            });
            self.in_flight = Some((AbortOnDrop(task), rx));
        }
        match self.finish_in_flight().await {
            Some(Ok(body)) => {
                self.accept(&body);
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => Ok(()),
        }
    }
}

/// A reply's events: the elements of a JSON array (Janus with `maxev`), else the reply as one
/// (a JSON object, or text that is not JSON, for `expect_regex`).
pub(crate) fn events_of(body: &[u8]) -> Vec<Message> {
    let message = |text: String, json: Option<Value>| Message {
        text,
        json,
        args: false,
        name: None,
        ack: None,
        xml: None,
        bytes: None,
    };
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .take(EVENTS_PER_REPLY)
            .map(|item| message(item.to_string(), Some(item)))
            .collect(),
        Ok(json) => vec![message(
            String::from_utf8_lossy(body).into_owned(),
            Some(json),
        )],
        Err(_) if body.iter().all(u8::is_ascii_whitespace) => Vec::new(),
        Err(_) => vec![message(String::from_utf8_lossy(body).into_owned(), None)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::ws::{SKIPPED_KEPT, SKIPPED_KEPT_BYTES};

    struct Takes(&'static str);

    impl Divert for Takes {
        fn divert(&self, m: &Message) -> bool {
            m.text.contains(self.0)
        }
        fn live(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_reply_is_read_as_its_events_and_a_tap_set_up_later_sees_the_skipped_and_unread() {
        let texts = |v: &[Message]| v.iter().map(|m| m.text.clone()).collect::<Vec<_>>();
        assert_eq!(
            texts(&events_of(br#"[{"a":1},{"b":2}]"#)),
            [r#"{"a":1}"#, r#"{"b":2}"#]
        );
        assert_eq!(texts(&events_of(br#"{"a":1}"#)).len(), 1);
        assert!(events_of(b" \n").is_empty());
        assert_eq!(events_of(b"not json")[0].json, None);
        let many = format!("[{}]", vec!["1"; EVENTS_PER_REPLY + 5].join(","));
        assert_eq!(events_of(many.as_bytes()).len(), EVENTS_PER_REPLY);

        let mut e = Events::default();
        e.accept(br#"[{"t":"cand1"},{"t":"sdp"},{"t":"cand2"}]"#);
        let first = e.next_unread().unwrap();
        e.keep_skipped(first);
        assert_eq!(e.next_unread().unwrap().text, r#"{"t":"sdp"}"#);
        // cand1 was skipped, cand2 not read yet: the tap takes both.
        e.divert(Arc::new(Takes("cand")));
        assert!(e.next_unread().is_none());
        e.accept(br#"[{"t":"cand3"},{"t":"other"}]"#);
        assert_eq!(e.next_unread().unwrap().text, r#"{"t":"other"}"#);
        // Skipped ones are bounded in count and size.
        for i in 0..SKIPPED_KEPT + 3 {
            e.keep_skipped(events_of(format!(r#"{{"n":{i}}}"#).as_bytes()).remove(0));
        }
        let big = format!(r#"{{"x":"{}"}}"#, "y".repeat(SKIPPED_KEPT_BYTES));
        e.keep_skipped(events_of(big.as_bytes()).remove(0));
        assert_eq!(e.skipped.len(), SKIPPED_KEPT);
        assert_eq!(e.skipped[0].text, r#"{"n":3}"#);
    }
}
