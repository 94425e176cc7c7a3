//! The echo that proves media flows: numbered messages on the data channel, matched when they
//! come back (by a per-peer nonce, whatever prefix the echoing side adds), into loss and
//! round-trip time; and [`Traffic`], what a connected peer does on its channel (this echo, or
//! a room's publishing and receiving: `room.rs`).

use std::time::Duration;

use str0m::Rtc;
use str0m::channel::ChannelId;
use tokio::time::Instant;

use crate::flow::StepError;
use crate::report::FailureReason;

/// What every echo message starts with.
const PREFIX: &str = "joincanary-echo ";

/// Whether `data` is a probe's echo message exactly as sent (`joincanary-echo <nonce> <seq>`),
/// not wrapped by an echoing server.
pub(super) fn is_probe_message(data: &[u8]) -> bool {
    data.len() <= 64
        && std::str::from_utf8(data).is_ok_and(|t| {
            t.strip_prefix(PREFIX).is_some_and(|rest| {
                let mut parts = rest.split(' ');
                matches!(
                    (parts.next(), parts.next(), parts.next()),
                    (Some(nonce), Some(seq), None)
                        if nonce.len() == 16
                            && nonce.bytes().all(|b| b.is_ascii_hexdigit())
                            && seq.parse::<u32>().is_ok()
                )
            })
        })
}

/// What a connected peer does on its data channel, driven by the peer's I/O loop: send what is
/// due, take what arrives, say when it is done and why it ran out of time.
pub(super) trait Traffic {
    /// The data channel opened.
    fn open(&mut self);
    fn is_open(&self) -> bool;
    /// Sends the messages due by now on channel `id`.
    fn send_due(&mut self, rtc: &mut Rtc, id: ChannelId) -> Result<(), StepError>;
    /// A message arrived; true when it counts as media (the first one ends `first_media`).
    fn on_data(&mut self, data: &[u8]) -> bool;
    /// Whether `first_media` ends when the channel opens (a publisher hears nothing back).
    fn media_at_open(&self) -> bool {
        false
    }
    /// Whether another prober's message, as sent, goes back to it (the echo only).
    fn echoes_back(&self) -> bool {
        false
    }
    fn done(&self) -> bool;
    /// When the loop must wake for the next message or the end of the wait.
    fn next_wake(&self) -> Instant;
    /// Nothing more can come: the loop ends and the caller reports.
    fn expired(&self, now: Instant) -> bool;
    /// What was missing when the step ran out of time after DTLS.
    fn timeout_message(&self) -> String;
    /// How far it got, for a channel closed under it.
    fn progress(&self) -> String;
}

/// A wake-up far enough to mean none.
pub(super) fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

/// The message numbered `seq` of the peer with `nonce`: `joincanary-echo <nonce> <seq>`.
pub(super) fn message(nonce: u64, seq: u32) -> String {
    format!("{PREFIX}{nonce:016x} {seq}")
}

/// The sequence number in `data` when it carries the message of `nonce` (at its end, whatever
/// prefix an echoing side added).
pub(super) fn sequence_of(nonce: u64, data: &[u8]) -> Option<u32> {
    let tail = &data[data.len().saturating_sub(64)..];
    let text = std::str::from_utf8(tail).ok()?;
    let mine = format!("{PREFIX}{nonce:016x} ");
    let at = text.rfind(&mine)?;
    text[at + mine.len()..].trim().parse::<u32>().ok()
}

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

/// The echo's bookkeeping: what was sent when, what came back.
pub(super) struct Echoes {
    pub(super) options: EchoOptions,
    /// Random per peer: an echo of another run's message (or a forged one) is not ours.
    nonce: u64,
    pub(super) open: bool,
    opened_at: Option<Instant>,
    pub(super) sent: u32,
    pub(super) received: u32,
    sent_at: Vec<Instant>,
    seen: Vec<bool>,
    rtts: Vec<Duration>,
}

impl Echoes {
    pub(super) fn new(options: &EchoOptions) -> Echoes {
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

    /// The echo may carry a prefix (Janus echotest says "Janus EchoTest here! You wrote: "),
    /// so it is looked for at the end.
    #[cfg(test)]
    fn message(&self, seq: u32) -> String {
        message(self.nonce, seq)
    }

    /// What the echo measured; none came back fails with `reason` (the peer's stage, which
    /// this file does not know about: the peer drives the echo, not the other way round).
    pub(super) fn report(&self, reason: FailureReason) -> Result<EchoReport, StepError> {
        if self.received == 0 {
            return Err(StepError::new(
                reason,
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

impl Traffic for Echoes {
    fn open(&mut self) {
        self.open = true;
    }

    fn is_open(&self) -> bool {
        self.open
    }

    fn echoes_back(&self) -> bool {
        true
    }

    fn send_due(&mut self, rtc: &mut Rtc, id: ChannelId) -> Result<(), StepError> {
        let now = Instant::now();
        let opened = *self.opened_at.get_or_insert(now);
        while self.sent < self.options.count && now >= opened + self.options.interval * self.sent {
            let text = message(self.nonce, self.sent);
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
        let Some(seq) = sequence_of(self.nonce, data) else {
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

    fn next_wake(&self) -> Instant {
        let far = far();
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

    fn timeout_message(&self) -> String {
        if !self.open {
            return "DTLS connected but the data channel never opened".to_string();
        }
        format!(
            "no echo came back ({} of {} messages sent)",
            self.sent, self.options.count
        )
    }

    fn progress(&self) -> String {
        format!("after {} of {} echoes", self.received, self.sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echo_counts_loss_and_ignores_what_is_not_ours() {
        let mut echoes = Echoes::new(&EchoOptions {
            count: 4,
            interval: Duration::ZERO,
            wait: Duration::ZERO,
        });
        let now = Instant::now();
        echoes.sent_at = vec![now; 4];
        echoes.sent = 4;
        let ours = |seq: u32| format!("Janus EchoTest here! You wrote: {}", echoes.message(seq));
        let (m0, m2) = (ours(0), ours(2));
        assert!(echoes.on_data(m0.as_bytes()));
        assert!(!echoes.on_data(m0.as_bytes()), "a duplicate counts once");
        assert!(echoes.on_data(m2.as_bytes()));
        assert!(!echoes.on_data(b"joincanary-echo 0000000000000000 1"));
        assert!(!echoes.on_data(b"joincanary-echo"));
        assert!(!echoes.on_data(&[0xff; 100]));
        let seq_out_of_range = format!("joincanary-echo {:016x} 99", echoes.nonce);
        assert!(!echoes.on_data(seq_out_of_range.as_bytes()));
        let report = echoes.report(FailureReason::Media).unwrap();
        assert_eq!((report.sent, report.received), (4, 2));
        assert!((report.loss_ratio() - 0.5).abs() < 1e-9);
        assert!(report.median_rtt().is_some());
    }

    #[test]
    fn only_a_probe_message_as_sent_is_echoed_to_another_peer() {
        assert!(is_probe_message(b"joincanary-echo 0123456789abcdef 7"));
        assert!(!is_probe_message(
            b"Janus EchoTest here! You wrote: joincanary-echo 0123456789abcdef 7"
        ));
        assert!(!is_probe_message(b"joincanary-echo 0123456789abcdef 7 x"));
        assert!(!is_probe_message(b"joincanary-echo 0123 7"));
        assert!(!is_probe_message(b"joincanary-echo 0123456789abcdeg 7"));
        assert!(!is_probe_message(&[0xff; 40]));
    }
}
