//! A websocket's incoming bytes metered below tungstenite: bytes and frames per step, fragments
//! per message. tungstenite joins fragments and answers pings inside one read, so a server
//! sending endless empty continuation frames (two bytes each) never hands back a message a step
//! could count; the meter fails that read instead, naming the budget that ran out.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::report::FailureReason;

/// Frames (data, continuation and control alike) one step may read: a step matching within
/// `max_frames` (default 1000) messages needs far fewer; a ping flood reaches it in well under
/// a second.
pub(crate) const STEP_FRAMES: u64 = 100_000;
/// Bytes one step may read, at least (or twice `max_body_bytes` where that is more).
pub(crate) const STEP_BYTES: u64 = 64 << 20;
/// Fragments of one message: servers fragment at kilobytes, not at bytes.
pub(crate) const MESSAGE_FRAGMENTS: u64 = 4096;

/// The budget that ran out, as the error tungstenite passes back (an I/O error's payload).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Exhausted {
    pub reason: FailureReason,
    pub message: String,
}

/// Where the byte stream is: the HTTP upgrade reply's head (up to its blank line, as httparse
/// ends it: `\n\r\n` or `\n\n`), then frames.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// In the head; `0`: anywhere, `1`: just after `\n`, `2`: after `\n\r`.
    Head(u8),
    /// A frame header being read: the bytes so far.
    Header { buf: [u8; 14], have: usize },
    /// A frame's payload: bytes still to come.
    Payload(u64),
}

/// A stream that counts what the server sends (see the module doc).
pub(crate) struct Metered<S> {
    inner: S,
    stage: Stage,
    bytes_left: u64,
    frames_left: u64,
    step_bytes: u64,
    fragments: u64,
    exhausted: Option<Exhausted>,
}

impl<S> Metered<S> {
    /// `inner`, with a step's byte budget of `step_bytes` (see [`step_bytes`]).
    pub(crate) fn new(inner: S, step_bytes: u64) -> Self {
        Metered {
            inner,
            stage: Stage::Head(0),
            bytes_left: step_bytes,
            frames_left: STEP_FRAMES,
            step_bytes,
            fragments: 0,
            exhausted: None,
        }
    }

    /// A new step begins: its budgets are full again (a message's fragments still count).
    pub(crate) fn begin_step(&mut self) {
        self.bytes_left = self.step_bytes;
        self.frames_left = STEP_FRAMES;
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Counts `data` (just read); `Err` once a budget is exceeded.
    fn count(&mut self, mut data: &[u8]) -> Result<(), Exhausted> {
        let n = data.len() as u64;
        if n > self.bytes_left {
            return Err(Exhausted {
                reason: FailureReason::TooLarge,
                message: format!(
                    "the server sent more than {} bytes in one step (byte budget)",
                    self.step_bytes
                ),
            });
        }
        self.bytes_left -= n;
        while !data.is_empty() {
            match &mut self.stage {
                Stage::Head(seen) => {
                    let b = data[0];
                    data = &data[1..];
                    self.stage = match (*seen, b) {
                        (1 | 2, b'\n') => Stage::Header {
                            buf: [0; 14],
                            have: 0,
                        },
                        (1, b'\r') => Stage::Head(2),
                        (_, b'\n') => Stage::Head(1),
                        _ => Stage::Head(0),
                    };
                }
                Stage::Payload(left) => {
                    let take = (*left).min(data.len() as u64);
                    *left -= take;
                    // `take` is at most `data.len()`, a usize.
                    data = &data[take as usize..];
                    if *left == 0 {
                        self.stage = Stage::Header {
                            buf: [0; 14],
                            have: 0,
                        };
                    }
                }
                Stage::Header { buf, have } => {
                    buf[*have] = data[0];
                    *have += 1;
                    data = &data[1..];
                    let Some(len) = header_len(&buf[..*have]) else {
                        continue;
                    };
                    if *have < len {
                        continue;
                    }
                    let (b0, payload) = (buf[0], payload_len(&buf[..len]));
                    self.frame(b0)?;
                    self.stage = if payload == 0 {
                        Stage::Header {
                            buf: [0; 14],
                            have: 0,
                        }
                    } else {
                        Stage::Payload(payload)
                    };
                }
            }
        }
        Ok(())
    }

    /// A frame's header is in: counts the frame, and its fragment of a message.
    fn frame(&mut self, b0: u8) -> Result<(), Exhausted> {
        if self.frames_left == 0 {
            return Err(Exhausted {
                reason: FailureReason::Protocol,
                message: format!(
                    "the server sent more than {STEP_FRAMES} frames in one step (frame budget)"
                ),
            });
        }
        self.frames_left -= 1;
        let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0f);
        // Data frames (continuation, text, binary); control frames may come between fragments.
        if opcode <= 2 {
            if fin {
                self.fragments = 0;
            } else {
                self.fragments += 1;
                if self.fragments > MESSAGE_FRAGMENTS {
                    return Err(Exhausted {
                        reason: FailureReason::Protocol,
                        message: format!(
                            "the server sent a message in more than {MESSAGE_FRAGMENTS} fragments \
                             (continuation frames without end)"
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A step's byte budget for a cap on one message of `max_body_bytes`.
pub(crate) fn step_bytes(max_body_bytes: usize) -> u64 {
    STEP_BYTES.max((max_body_bytes as u64).saturating_mul(2))
}

/// The length of a frame header whose first bytes are `h`, once they tell it.
fn header_len(h: &[u8]) -> Option<usize> {
    let b1 = *h.get(1)?;
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    Some(2 + ext + mask)
}

/// The payload length a complete frame header `h` declares.
fn payload_len(h: &[u8]) -> u64 {
    match h[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
        127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
        n => u64::from(n),
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = &self.exhausted {
            return Poll::Ready(Err(io::Error::other(e.clone())));
        }
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Err(e) = this.count(&buf.filled()[before..]) {
                    // What was read stays unread for tungstenite: the budget ends the stream.
                    buf.set_filled(before);
                    this.exhausted = Some(e.clone());
                    return Poll::Ready(Err(io::Error::other(e)));
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The budget behind a tungstenite I/O error, if a budget ended the read.
pub(crate) fn exhausted(e: &io::Error) -> Option<&Exhausted> {
    e.get_ref()?.downcast_ref::<Exhausted>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metered() -> Metered<()> {
        let mut m = Metered::new((), 1 << 20);
        m.count(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
            .unwrap();
        m
    }

    #[test]
    fn frames_are_found_across_reads_after_the_head() {
        let mut m = metered();
        // A 300-byte text frame (16-bit length), split mid-header and mid-payload, then a ping.
        let mut frame = vec![0x81, 126, 0x01, 0x2c];
        frame.extend([b'x'; 300]);
        frame.extend([0x89, 0x00]);
        for part in frame.chunks(3) {
            m.count(part).unwrap();
        }
        assert_eq!(STEP_FRAMES - m.frames_left, 2);
        assert!(matches!(m.stage, Stage::Header { have: 0, .. }));
    }

    #[test]
    fn a_head_ended_by_bare_newlines_still_starts_the_frames() {
        let mut m = Metered::new((), 1 << 20);
        m.count(b"HTTP/1.1 101 OK\nUpgrade: websocket\n\n\x89\x00")
            .unwrap();
        assert_eq!(STEP_FRAMES - m.frames_left, 1);
    }

    #[test]
    fn endless_fragments_exhaust_the_message() {
        let mut m = metered();
        m.count(&[0x01, 0x00]).unwrap();
        let mut result = Ok(());
        for _ in 0..=MESSAGE_FRAGMENTS {
            result = m.count(&[0x00, 0x00]);
        }
        let e = result.unwrap_err();
        assert_eq!(e.reason, FailureReason::Protocol);
        assert!(e.message.contains("fragments"), "{}", e.message);
    }

    #[test]
    fn a_final_fragment_ends_the_message_and_pings_between_do_not_count() {
        let mut m = metered();
        for _ in 0..MESSAGE_FRAGMENTS * 2 {
            m.count(&[0x01, 0x00, 0x89, 0x00, 0x80, 0x00]).unwrap();
        }
    }

    #[test]
    fn a_2_pow_63_length_is_counted_without_overflow() {
        let mut m = metered();
        m.count(&[
            0x81, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, b'x',
        ])
        .unwrap();
        assert!(matches!(m.stage, Stage::Payload(n) if n == (1u64 << 63) - 2));
    }

    #[test]
    fn the_step_budgets_end_a_read_and_fill_again() {
        let mut m = Metered::new((), 100);
        m.count(&[0u8; 60]).unwrap();
        let e = m.count(&[0u8; 60]).unwrap_err();
        assert_eq!(e.reason, FailureReason::TooLarge);
        m.begin_step();
        m.count(&[0u8; 60]).unwrap();
        assert_eq!(step_bytes(1 << 30), 2 << 30);
        assert_eq!(step_bytes(1), STEP_BYTES);
    }
}
