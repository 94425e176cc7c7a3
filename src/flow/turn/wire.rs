//! The client's connection to a STUN/TURN server: a connected UDP socket, or a TCP/TLS stream
//! framed as RFC 8656 §11 says (STUN messages by their length field, ChannelData by its
//! 4-byte header, padded to 4). Every read is bounded by [`MAX_MESSAGE`] and by a deadline.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
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
    Stream(Box<MaybeTlsStream<TcpStream>>),
}

impl Conn {
    pub fn reliable(&self) -> bool {
        matches!(self, Conn::Stream(_))
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        match self {
            Conn::Udp(socket) => {
                socket.send(bytes).await?;
            }
            Conn::Stream(stream) => {
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
            Conn::Stream(stream) => read_framed(stream.as_mut()).await,
        }
    }

    /// Ends a stream politely (TLS close_notify, FIN); the caller bounds the wait.
    pub async fn shutdown(&mut self) {
        if let Conn::Stream(stream) = self {
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
/// the rest, never more than [`MAX_MESSAGE`].
async fn read_framed<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Incoming, WireError> {
    let mut head = [0u8; 4];
    read_exact(stream, &mut head).await?;
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
    let mut buf = vec![0u8; total];
    buf[..4].copy_from_slice(&head);
    read_exact(stream, &mut buf[4..]).await?;
    if head[0] >> 6 == 1 {
        return Ok(Incoming::ChannelData);
    }
    Ok(Incoming::Stun(buf))
}

async fn read_exact<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
) -> Result<(), WireError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(WireError::Closed),
        Err(e) => Err(WireError::Io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn framed(bytes: &[u8]) -> Result<Incoming, WireError> {
        let mut reader = bytes;
        read_framed(&mut reader).await
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
