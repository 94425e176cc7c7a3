//! Two participants of one run in an SFU's room: one publishes numbered messages on its data
//! channel (`action = "publish"`, kept sending in the background while the steps after it run),
//! the other receives them through the SFU (`action = "connect"` with `from`). Both peers live
//! in one process on one clock, so the receiver measures what the SFU's forwarding costs one
//! way (publisher → SFU → subscriber), and which of the publisher's messages never arrived.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use str0m::Rtc;
use str0m::channel::ChannelId;
use tokio::time::Instant;

use super::echo::{self, Traffic, far};
use crate::flow::StepError;
use crate::report::{FailureReason, human_duration};

/// How often a receiver looks whether the publisher has sent the window's last message.
const POLL: Duration = Duration::from_millis(20);

/// What a publisher sends: how many messages at most, how far apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOptions {
    pub count: u32,
    pub interval: Duration,
}

/// What the publisher has sent, shared with the receivers of the same run.
#[derive(Debug)]
pub struct Published {
    /// Random per publisher: only its messages count at the receiver.
    pub(super) nonce: u64,
    /// When each message went out, by sequence number (at most `count`, so bounded).
    sent_at: Mutex<Vec<Instant>>,
    /// Why it stopped before sending them all (its connection failed), if it did.
    stopped: Mutex<Option<String>>,
    /// Its task panicked (a bug): why, as logged.
    panicked: Mutex<Option<String>>,
}

impl Published {
    pub(super) fn new() -> Published {
        Published {
            nonce: rand::random(),
            sent_at: Mutex::new(Vec::new()),
            stopped: Mutex::new(None),
            panicked: Mutex::new(None),
        }
    }

    fn sent_at(&self) -> std::sync::MutexGuard<'_, Vec<Instant>> {
        // A panic while holding the lock leaves a Vec that is still whole.
        self.sent_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Messages sent so far.
    pub fn sent(&self) -> u32 {
        u32::try_from(self.sent_at().len()).unwrap_or(u32::MAX)
    }

    fn sent_time(&self, seq: u32) -> Option<Instant> {
        self.sent_at().get(seq as usize).copied()
    }

    fn last_sent(&self) -> Option<Instant> {
        self.sent_at().last().copied()
    }

    /// Records that the publisher stopped, and why.
    pub(super) fn stop(&self, why: String) {
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        stopped.get_or_insert(why);
    }

    pub(super) fn stopped(&self) -> Option<String> {
        self.stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records that the publisher's task panicked (it also [`Published::stop`]s).
    pub(super) fn panicked(&self, why: String) {
        let mut panicked = self.panicked.lock().unwrap_or_else(|e| e.into_inner());
        panicked.get_or_insert(why);
    }

    fn panic_message(&self) -> Option<String> {
        self.panicked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The publisher's traffic: one message per interval, `count` at most. Done once the channel
/// is open and the first message is out (the step ends there); the background loop then runs
/// it to `count`.
pub(super) struct Publishing {
    pub(super) options: PublishOptions,
    pub(super) log: Arc<Published>,
    open: bool,
    opened_at: Option<Instant>,
    /// The step is over: done only when everything is sent.
    pub(super) background: bool,
}

impl Publishing {
    pub(super) fn new(options: &PublishOptions) -> Publishing {
        Publishing {
            options: PublishOptions {
                count: options.count.clamp(1, echo::MAX_ECHOES),
                ..options.clone()
            },
            log: Arc::new(Published::new()),
            open: false,
            opened_at: None,
            background: false,
        }
    }
}

impl Traffic for Publishing {
    fn open(&mut self) {
        self.open = true;
    }

    fn is_open(&self) -> bool {
        self.open
    }

    fn send_due(&mut self, rtc: &mut Rtc, id: ChannelId) -> Result<(), StepError> {
        let now = Instant::now();
        let opened = *self.opened_at.get_or_insert(now);
        let mut sent = self.log.sent_at();
        while (sent.len() as u32) < self.options.count
            && now >= opened + self.options.interval * sent.len() as u32
        {
            let text = echo::message(self.log.nonce, sent.len() as u32);
            let Some(mut channel) = rtc.channel(id) else {
                return Err(StepError::new(
                    FailureReason::Media,
                    "the data channel is gone",
                ));
            };
            // A full send buffer drops the message: the receiver counts it lost.
            let _ = channel.write(false, text.as_bytes());
            sent.push(now);
        }
        Ok(())
    }

    fn on_data(&mut self, _data: &[u8]) -> bool {
        false
    }

    fn media_at_open(&self) -> bool {
        true
    }

    fn done(&self) -> bool {
        let sent = self.log.sent();
        if self.background {
            sent >= self.options.count
        } else {
            sent >= 1
        }
    }

    fn next_wake(&self) -> Instant {
        let sent = self.log.sent();
        match self.opened_at {
            Some(opened) if sent < self.options.count => opened + self.options.interval * sent,
            _ => far(),
        }
    }

    fn expired(&self, _now: Instant) -> bool {
        false
    }

    fn timeout_message(&self) -> String {
        "DTLS connected but the SFU never opened the publisher's data channel".to_string()
    }

    fn progress(&self) -> String {
        format!("after {} messages published", self.log.sent())
    }
}

/// What the receiver measured: the step's gauges.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiveReport {
    /// The publisher's messages expected in the window (from the first one received on).
    pub expected: u32,
    pub received: u32,
    /// Publisher → SFU → subscriber, per message received, in arrival order.
    pub latencies: Vec<Duration>,
}

impl ReceiveReport {
    /// Messages of the window that never arrived, over those expected, 0..=1.
    pub fn loss_ratio(&self) -> f64 {
        if self.expected == 0 {
            return 0.0;
        }
        f64::from(self.expected.saturating_sub(self.received)) / f64::from(self.expected)
    }

    pub fn median_latency(&self) -> Option<Duration> {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted.get(sorted.len() / 2).copied()
    }
}

/// The receiver's traffic: counts the publisher's messages as they come through the SFU,
/// `count` of them from the first one received on; sends nothing.
pub(super) struct Receiving {
    /// The publisher's connection name, for messages.
    from: String,
    log: Arc<Published>,
    count: u32,
    /// How long after the publisher sent a message it may still arrive.
    wait: Duration,
    open: bool,
    opened_at: Option<Instant>,
    /// The first sequence number received: the window is `first .. first + count`.
    first: Option<u32>,
    seen: Vec<bool>,
    latencies: Vec<Duration>,
}

impl Receiving {
    pub(super) fn new(from: &str, log: Arc<Published>, count: u32, wait: Duration) -> Receiving {
        let count = count.clamp(1, echo::MAX_ECHOES);
        Receiving {
            from: from.to_string(),
            log,
            count,
            wait,
            open: false,
            opened_at: None,
            first: None,
            seen: vec![false; count as usize],
            latencies: Vec::with_capacity(count as usize),
        }
    }

    fn received(&self) -> u32 {
        self.latencies.len() as u32
    }

    /// The last sequence number of the window the publisher has sent, or will send.
    fn window_end(&self) -> Option<u32> {
        self.first.map(|f| f.saturating_add(self.count - 1))
    }

    /// Why nothing (or not enough) came: what the publisher did meanwhile.
    fn publisher_state(&self) -> String {
        let sent = self.log.sent();
        let mut state = self.publisher_state_counts();
        if let Some(why) = self.log.stopped() {
            state.push_str(&format!("; it stopped publishing: {why}"));
        } else if sent == 0 {
            state.push_str("; it never published");
        }
        state
    }

    /// How many messages the publisher sent, and how many since this connection's channel
    /// opened.
    fn publisher_state_counts(&self) -> String {
        let sent = self.log.sent();
        let since = self
            .opened_at
            .map(|opened| {
                (0..sent)
                    .filter(|s| self.log.sent_time(*s).is_some_and(|t| t >= opened))
                    .count()
            })
            .unwrap_or(0);
        format!(
            "connection `{}` sent {sent} messages, {since} of them since this connection's data \
             channel opened",
            self.from
        )
    }

    /// The publisher's task panicked: `local` (the prober's own failure, alerted as such, never
    /// paged as the SFU's), naming it, whatever arrived.
    pub(super) fn publisher_panicked(&self) -> Option<StepError> {
        self.log.panic_message().map(|why| {
            StepError::new(
                FailureReason::Local,
                format!(
                    "connection `{}` stopped publishing: {why} (a joincanary bug, not the SFU's \
                     failure; {})",
                    self.from,
                    self.publisher_state_counts()
                ),
            )
        })
    }

    /// What was received; none fails with `media`, naming the publisher's side.
    pub(super) fn report(&self) -> Result<ReceiveReport, StepError> {
        if self.first.is_none() {
            return Err(StepError::new(
                FailureReason::Media,
                format!(
                    "none of connection `{}`'s messages arrived through the SFU ({})",
                    self.from,
                    self.publisher_state()
                ),
            ));
        }
        let sent = self.log.sent();
        let expected = match self.first {
            Some(first) => sent.saturating_sub(first).min(self.count),
            None => 0,
        };
        Ok(ReceiveReport {
            expected: expected.max(self.received()),
            received: self.received(),
            latencies: self.latencies.clone(),
        })
    }
}

impl Traffic for Receiving {
    fn open(&mut self) {
        self.open = true;
        self.opened_at.get_or_insert_with(Instant::now);
    }

    fn is_open(&self) -> bool {
        self.open
    }

    fn send_due(&mut self, _rtc: &mut Rtc, _id: ChannelId) -> Result<(), StepError> {
        Ok(())
    }

    fn on_data(&mut self, data: &[u8]) -> bool {
        let Some(seq) = echo::sequence_of(self.log.nonce, data) else {
            return false;
        };
        let Some(sent_at) = self.log.sent_time(seq) else {
            // Not sent by the publisher (forged, or another run's): not counted.
            return false;
        };
        let first = *self.first.get_or_insert(seq);
        let Some(i) = seq.checked_sub(first).map(|i| i as usize) else {
            return false;
        };
        match self.seen.get(i) {
            Some(false) => {
                self.seen[i] = true;
                self.latencies.push(sent_at.elapsed());
                true
            }
            _ => false,
        }
    }

    fn done(&self) -> bool {
        self.received() >= self.count
    }

    fn next_wake(&self) -> Instant {
        match self.window_end() {
            // Nothing yet: a look now and then whether the publisher stopped.
            None if self.open => Instant::now() + POLL,
            None => far(),
            // The window's last message had its wait; until it is sent, a look now and then
            // (the publisher's loop is not this one's to wait on).
            Some(end) => self
                .log
                .sent_time(end)
                .map_or_else(|| Instant::now() + POLL, |t| t + self.wait),
        }
    }

    fn expired(&self, now: Instant) -> bool {
        // Nothing more will come from a publisher that panicked: no wait for its last message.
        if self.log.panic_message().is_some() {
            return true;
        }
        if !self.open {
            return false;
        }
        // The publisher stopped and its last message had its wait: nothing more will come.
        let publisher_done = self.log.stopped().is_some()
            && self.log.last_sent().is_none_or(|t| now >= t + self.wait);
        match self.window_end() {
            None => publisher_done,
            Some(end) => match self.log.sent_time(end) {
                // The window's last message was sent and had its wait.
                Some(t) => now >= t + self.wait,
                None => publisher_done,
            },
        }
    }

    fn timeout_message(&self) -> String {
        if !self.open {
            return format!(
                "DTLS connected but the SFU never opened a data channel to this connection (is \
                 `{}` publishing one?)",
                self.from
            );
        }
        match self.first {
            None => format!(
                "none of connection `{}`'s messages arrived through the SFU within {} ({})",
                self.from,
                human_duration(self.opened_at.map_or(Duration::ZERO, |t| t.elapsed())),
                self.publisher_state()
            ),
            Some(_) => format!(
                "{} of connection `{}`'s {} messages arrived through the SFU ({})",
                self.received(),
                self.from,
                self.count,
                self.publisher_state()
            ),
        }
    }

    fn progress(&self) -> String {
        format!(
            "after {} of connection `{}`'s messages received",
            self.received(),
            self.from
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiving(log: &Arc<Published>, count: u32) -> Receiving {
        let mut r = Receiving::new("a", log.clone(), count, Duration::from_millis(100));
        r.open();
        r
    }

    #[test]
    fn the_window_starts_at_the_first_message_received_and_counts_what_is_missing() {
        let log = Arc::new(Published::new());
        let now = Instant::now();
        log.sent_at().extend([now; 10]);
        let mut r = receiving(&log, 4);
        let m = |seq| echo::message(log.nonce, seq);
        // Sent before this connection was subscribed: the window starts at the first received.
        assert!(r.on_data(m(3).as_bytes()));
        assert!(!r.on_data(m(3).as_bytes()), "a duplicate counts once");
        assert!(!r.on_data(m(2).as_bytes()), "before the window");
        assert!(r.on_data(m(5).as_bytes()));
        assert!(!r.on_data(m(7).as_bytes()), "after the window");
        assert!(
            !r.on_data(echo::message(log.nonce ^ 1, 4).as_bytes()),
            "another nonce"
        );
        assert!(!r.on_data(m(40).as_bytes()), "never sent");
        assert!(!r.done());
        assert!(r.expired(now + Duration::from_millis(100)));
        let report = r.report().unwrap();
        assert_eq!((report.expected, report.received), (4, 2));
        assert!((report.loss_ratio() - 0.5).abs() < 1e-9);
        assert!(report.median_latency().is_some());
    }

    #[test]
    fn nothing_received_names_the_publisher_and_what_it_did() {
        let log = Arc::new(Published::new());
        let r = receiving(&log, 4);
        let e = r.report().unwrap_err();
        assert_eq!(e.reason, FailureReason::Media);
        assert!(e.message.contains("connection `a`"), "{e:?}");
        assert!(e.message.contains("never published"), "{e:?}");
        log.sent_at().push(Instant::now());
        log.stop("ICE connectivity to the SFU was lost".to_string());
        let e = r.report().unwrap_err();
        assert!(
            e.message.contains("sent 1 messages") && e.message.contains("stopped publishing: ICE"),
            "{e:?}"
        );
    }
}
