//! The client's connection to a STUN/TURN server: a connected UDP socket, or a TCP/TLS stream
//! framed as RFC 8656 §11 says (STUN messages by their length field, ChannelData by its
//! 4-byte header, padded to 4). Every read is bounded by [`MAX_MESSAGE`] and by a deadline.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_tungstenite::MaybeTlsStream;

/// The largest message accepted from the server. What a TURN client gets back is small (a
/// response, or a Data indication around the probe's own 24-byte echo); anything longer is a
/// broken or hostile server and fails the step (`protocol`) rather than being buffered.
pub const MAX_MESSAGE: usize = 4096;

/// One message from the server, undecoded.
#[derive(Debug)]
pub enum Incoming {
    Stun(Vec<u8>),
    /// ChannelData (RFC 8656 §12.4): never asked for by this client, counted as stray.
    ChannelData,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("a message of {0} bytes or more is over the {MAX_MESSAGE}-byte cap")]
    TooLarge(usize),
    #[error("the server sent bytes that are neither STUN nor ChannelData (first byte 0x{0:02x})")]
    NotStun(u8),
}

pub enum Conn {
    Udp(UdpSocket),
    /// A TCP or TLS stream, and the part of a frame read before a deadline cut the read.
    Stream(Box<MaybeTlsStream<crate::flow::tcp::Tcp>>, Vec<u8>),
}

impl Conn {
    pub fn reliable(&self) -> bool {
        matches!(self, Conn::Stream(..))
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        match self {
            Conn::Udp(socket) => {
                socket.send(bytes).await?;
            }
            Conn::Stream(stream, _) => {
                stream.write_all(bytes).await?;
                stream.flush().await?;
            }
        }
        Ok(())
    }

    /// Sends without waiting (UDP only): for the last-resort release when the step is dropped.
    pub fn try_send(&self, bytes: &[u8]) {
        if let Conn::Udp(socket) = self {
            let _ = socket.try_send(bytes);
        }
    }

    /// The next message, by `deadline`.
    pub async fn recv(&mut self, deadline: Instant) -> Result<Incoming, WireError> {
        match tokio::time::timeout_at(deadline, self.recv_unbounded()).await {
            Ok(r) => r,
            Err(_) => Err(WireError::Timeout),
        }
    }

    async fn recv_unbounded(&mut self) -> Result<Incoming, WireError> {
        match self {
            Conn::Udp(socket) => {
                // One byte more than the cap: a longer datagram is cut there and refused.
                let mut buf = vec![0u8; MAX_MESSAGE + 1];
                let n = socket.recv(&mut buf).await?;
                if n > MAX_MESSAGE {
                    return Err(WireError::TooLarge(n));
                }
                buf.truncate(n);
                classify(buf)
            }
            Conn::Stream(stream, partial) => read_framed(stream.as_mut(), partial).await,
        }
    }

    /// A stream's message begun and not finished: the bytes read, and the whole length once
    /// its first 4 bytes told it. `None` when nothing is pending (always on UDP).
    pub fn unfinished(&self) -> Option<(usize, Option<usize>)> {
        match self {
            Conn::Stream(_, partial) if !partial.is_empty() => Some((
                partial.len(),
                (partial.len() >= 4)
                    .then(|| frame_length(partial).ok())
                    .flatten(),
            )),
            _ => None,
        }
    }

    /// Ends a stream politely (TLS close_notify, FIN); the caller bounds the wait.
    pub async fn shutdown(&mut self) {
        if let Conn::Stream(stream, _) = self {
            let _ = stream.shutdown().await;
        }
    }
}

/// A datagram's kind, from its first two bits.
fn classify(buf: Vec<u8>) -> Result<Incoming, WireError> {
    match buf.first() {
        None => Err(WireError::NotStun(0)),
        Some(b) if b >> 6 == 0 => Ok(Incoming::Stun(buf)),
        Some(b) if b >> 6 == 1 => Ok(Incoming::ChannelData),
        Some(b) => Err(WireError::NotStun(*b)),
    }
}

/// One framed message from a stream: the 4 bytes that carry its length first, then exactly
/// the rest, never more than [`MAX_MESSAGE`]. Cancel-safe: what was read before the caller's
/// deadline cut the read stays in `partial` for the next call (the echo reads in 0.5 s windows;
/// a frame split across two of them must not leave the stream out of step).
async fn read_framed<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    partial: &mut Vec<u8>,
) -> Result<Incoming, WireError> {
    let mut chunk = [0u8; 512];
    loop {
        let need = if partial.len() < 4 {
            4
        } else {
            frame_length(partial)?
        };
        if partial.len() >= need {
            let frame = std::mem::take(partial);
            if frame[0] >> 6 == 1 {
                return Ok(Incoming::ChannelData);
            }
            return Ok(Incoming::Stun(frame));
        }
        // Never past this frame; `read` is cancel-safe, and the bytes join `partial` only
        // once it returned.
        let want = (need - partial.len()).min(chunk.len());
        match stream.read(&mut chunk[..want]).await {
            Ok(0) => return Err(WireError::Closed),
            Ok(n) => partial.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(WireError::Closed);
            }
            Err(e) => return Err(WireError::Io(e)),
        }
    }
}

/// A frame's whole length from its first 4 bytes, refused over [`MAX_MESSAGE`].
fn frame_length(head: &[u8]) -> Result<usize, WireError> {
    let length = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let total = match head[0] >> 6 {
        // STUN: a 20-byte header, then `length` bytes of attributes.
        0 => 20 + length,
        // ChannelData over a stream is padded to a multiple of 4.
        1 => 4 + length.div_ceil(4) * 4,
        _ => return Err(WireError::NotStun(head[0])),
    };
    if total > MAX_MESSAGE {
        return Err(WireError::TooLarge(total));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn framed(bytes: &[u8]) -> Result<Incoming, WireError> {
        let mut reader = bytes;
        read_framed(&mut reader, &mut Vec::new()).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_split_across_two_deadlines_is_read_whole() {
        let (mut server, mut client) = tokio::io::duplex(4096);
        let mut msg = vec![0x01, 0x15, 0x00, 0x08];
        msg.extend([9u8; 16 + 8]);
        let mut partial = Vec::new();
        server.write_all(&msg[..10]).await.unwrap();
        let cut = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            read_framed(&mut client, &mut partial),
        )
        .await;
        assert!(cut.is_err(), "half a frame is no message");
        server.write_all(&msg[10..]).await.unwrap();
        server.write_all(&msg).await.unwrap();
        for _ in 0..2 {
            let whole = read_framed(&mut client, &mut partial).await;
            assert!(
                matches!(whole, Ok(Incoming::Stun(ref b)) if *b == msg),
                "{whole:?}"
            );
        }
    }

    #[tokio::test]
    async fn stream_frames_are_bounded_and_classified() {
        // A STUN header announcing 8 bytes of attributes, and those 8 bytes.
        let mut msg = vec![0x01, 0x01, 0x00, 0x08];
        msg.extend([0u8; 16 + 8]);
        assert!(matches!(framed(&msg).await, Ok(Incoming::Stun(b)) if b.len() == 28));
        // ChannelData of 5 bytes is padded to 8 on a stream.
        let mut cd = vec![0x40, 0x00, 0x00, 0x05];
        cd.extend([7u8; 8]);
        assert!(matches!(framed(&cd).await, Ok(Incoming::ChannelData)));
        // The largest STUN length is refused before anything is buffered.
        let huge = [0x01, 0x01, 0xff, 0xff];
        assert!(matches!(
            framed(&huge).await,
            Err(WireError::TooLarge(65555))
        ));
        // Bytes whose first two bits are 10 or 11 are neither (HTTP's `H` reads as ChannelData
        // and is then refused by its length).
        assert!(matches!(
            framed(&[0x80, 0, 0, 0]).await,
            Err(WireError::NotStun(0x80))
        ));
        assert!(matches!(
            framed(b"HTTP/1.1 200").await,
            Err(WireError::TooLarge(_))
        ));
        // A message cut short is a closed connection.
        assert!(matches!(framed(&msg[..10]).await, Err(WireError::Closed)));
        assert!(matches!(framed(&[]).await, Err(WireError::Closed)));
    }

    #[test]
    fn datagrams_are_classified() {
        assert!(matches!(classify(vec![0x01, 0x01]), Ok(Incoming::Stun(_))));
        assert!(matches!(classify(vec![0x40, 0]), Ok(Incoming::ChannelData)));
        assert!(matches!(
            classify(vec![0xff]),
            Err(WireError::NotStun(0xff))
        ));
        assert!(matches!(classify(vec![]), Err(WireError::NotStun(0))));
    }
}
