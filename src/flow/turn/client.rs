//! A TURN client session over one [`Conn`]: request/response transactions (retransmitted on
//! UDP, RFC 8489 §6.2.1), the long-term credential challenge (RFC 8656 §9), the relayed echo,
//! and the release (Refresh with LIFETIME 0) that leaves no allocation behind.
//!
//! Nothing here is `Debug`: the session holds the long-term key.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;
use turn_types::attribute::{
    Data, Lifetime, RequestedTransport, XorPeerAddress, XorRelayedAddress,
};
use turn_types::message::{ALLOCATE, CREATE_PERMISSION, DATA, REFRESH, SEND};
use turn_types::stun::attribute::{
    AttributeStaticType as _, ErrorCode, MessageIntegrity, MessageIntegritySha256, Nonce, Realm,
    Username, XorMappedAddress,
};
use turn_types::stun::message::{
    BINDING, IntegrityAlgorithm, IntegrityKey, LongTermKeyCredentials, Message, MessageClass,
    MessageWrite as _, MessageWriteExt as _, MessageWriteVec, Method, StunWriteError,
    TransactionId,
};

use super::wire::{Conn, Incoming, WireError};

/// The first retransmission timeout on UDP (RFC 8489's default), doubled after each send.
const RTO: Duration = Duration::from_millis(500);
/// How often the echo is sent again while no copy has come back.
const ECHO_RESEND: Duration = Duration::from_millis(500);
/// Echo payloads sent at most, whatever the step's timeout.
const MAX_ECHO_SENDS: u32 = 8;
/// Messages that answer nothing this client asked (another transaction ID, ChannelData it
/// never bound, a Data indication from another peer) tolerated before the server is called
/// broken: a flood must not keep the step reading.
const MAX_STRAY: usize = 64;
/// How a response failed to be one.
#[derive(Debug)]
pub enum TxError {
    Wire(WireError),
    /// No response by the deadline: `sent` copies of the request went out.
    Timeout {
        sent: u32,
    },
    /// The server broke the protocol; the text says how.
    Protocol(String),
}

impl From<WireError> for TxError {
    fn from(e: WireError) -> TxError {
        match e {
            WireError::Timeout => TxError::Timeout { sent: 0 },
            e => TxError::Wire(e),
        }
    }
}

/// A STUN message the server sent, or `protocol` saying it is malformed.
fn parse(buf: &[u8]) -> Result<Message<'_>, TxError> {
    Message::from_bytes(buf)
        .map_err(|e| TxError::Protocol(format!("the server sent a malformed STUN message: {e}")))
}

fn write_error(e: StunWriteError) -> TxError {
    TxError::Protocol(format!("cannot encode the request: {e}"))
}

/// A response with our transaction ID, its integrity verified when the request carried one.
pub struct Response(Vec<u8>);

impl Response {
    /// The message (parsed once already in `transact`; never unwrapped all the same).
    pub fn message(&self) -> Result<Message<'_>, TxError> {
        parse(&self.0)
    }

    /// The error code and its reason phrase, for an error response (code 0: an error response
    /// without a readable ERROR-CODE).
    pub fn error(&self) -> Option<(u16, String)> {
        let msg = self.message().ok()?;
        if !msg.has_class(MessageClass::Error) {
            return None;
        }
        Some(match msg.attribute::<ErrorCode>() {
            Ok(e) => (e.code(), e.reason().to_string()),
            Err(_) => (0, String::new()),
        })
    }
}

/// The long-term credential in use after the server's challenge.
struct Auth {
    username: String,
    realm: String,
    nonce: String,
    key: IntegrityKey,
}

/// `addr` as a server announced it, refused when no peer could send to it (port 0, or the
/// unspecified address): a relay or reflexive address a client would hand its peers.
fn usable(what: &str, addr: SocketAddr) -> Result<SocketAddr, TxError> {
    if addr.port() == 0 || addr.ip().is_unspecified() {
        return Err(TxError::Protocol(format!(
            "{what} {addr} is no address a peer can send to"
        )));
    }
    Ok(addr)
}

pub struct Session {
    conn: Conn,
    auth: Option<Auth>,
    /// An allocation exists on the server: released by [`Session::release`], or by a
    /// best-effort Refresh(0) datagram if the step is cut off first.
    allocated: bool,
    pub stray: usize,
}

/// What an Allocate produced.
pub struct Allocation {
    pub relayed: SocketAddr,
    pub reflexive: Option<SocketAddr>,
    pub lifetime: Option<u32>,
}

impl Session {
    pub fn new(conn: Conn) -> Session {
        Session {
            conn,
            auth: None,
            allocated: false,
            stray: 0,
        }
    }

    pub fn allocated(&self) -> bool {
        self.allocated
    }

    pub fn realm(&self) -> Option<&str> {
        self.auth.as_ref().map(|a| a.realm.as_str())
    }

    /// Adopts the server's challenge (REALM and NONCE of a 401 or 438) for `username`.
    pub fn challenge(
        &mut self,
        response: &Response,
        username: &str,
        password: &str,
    ) -> Result<(), TxError> {
        let msg = response.message()?;
        let realm = msg
            .attribute::<Realm>()
            .map_err(|_| TxError::Protocol("the challenge carries no REALM".into()))?;
        let nonce = msg
            .attribute::<Nonce>()
            .map_err(|_| TxError::Protocol("the challenge carries no NONCE".into()))?;
        let key = LongTermKeyCredentials::new(
            username.to_string(),
            password.to_string(),
            realm.realm().to_string(),
        )
        .make_key(IntegrityAlgorithm::Sha1);
        self.auth = Some(Auth {
            username: username.to_string(),
            realm: realm.realm().to_string(),
            nonce: nonce.nonce().to_string(),
            key,
        });
        Ok(())
    }

    /// A new NONCE (438 Stale Nonce) for the credential in use.
    pub fn renew_nonce(&mut self, response: &Response) -> Result<(), TxError> {
        let msg = response.message()?;
        let nonce = msg
            .attribute::<Nonce>()
            .map_err(|_| TxError::Protocol("438 Stale Nonce carries no NONCE".into()))?;
        if let Some(auth) = &mut self.auth {
            auth.nonce = nonce.nonce().to_string();
        }
        Ok(())
    }

    /// Binding request: the server-reflexive address.
    pub async fn binding(&mut self, deadline: Instant) -> Result<SocketAddr, TxError> {
        let (response, txid) = self.transact(BINDING, &|_, _| Ok(()), deadline).await?;
        if let Some((code, reason)) = response.error() {
            return Err(TxError::Protocol(format!(
                "the Binding request got the error {code} {}",
                crate::redact::quote(&reason, 80)
            )));
        }
        let msg = response.message()?;
        let mapped = msg.attribute::<XorMappedAddress>().map_err(|_| {
            TxError::Protocol("the Binding response carries no XOR-MAPPED-ADDRESS".into())
        })?;
        usable(
            "the Binding response's XOR-MAPPED-ADDRESS",
            mapped.addr(txid),
        )
    }

    /// One Allocate request (UDP relay), with the credential if the challenge was taken.
    pub async fn allocate(&mut self, deadline: Instant) -> Result<Response, TxError> {
        let (response, _) = self
            .transact(
                ALLOCATE,
                &|msg, _| msg.add_attribute(&RequestedTransport::new(RequestedTransport::UDP)),
                deadline,
            )
            .await?;
        if response.error().is_none() {
            self.allocated = true;
        }
        Ok(response)
    }

    /// The relayed (and reflexive) address of a successful Allocate.
    pub fn allocation(response: &Response) -> Result<Allocation, TxError> {
        let msg = response.message()?;
        let txid = msg.transaction_id();
        let relayed = msg.attribute::<XorRelayedAddress>().map_err(|_| {
            TxError::Protocol("the Allocate response carries no XOR-RELAYED-ADDRESS".into())
        })?;
        let lifetime = msg.attribute::<Lifetime>().ok().map(|l| l.seconds());
        if lifetime == Some(0) {
            return Err(TxError::Protocol(
                "the Allocate response grants a LIFETIME of 0 s: the allocation is gone as it \
                 is made"
                    .into(),
            ));
        }
        Ok(Allocation {
            relayed: usable(
                "the Allocate response's XOR-RELAYED-ADDRESS",
                relayed.addr(txid),
            )?,
            reflexive: msg
                .attribute::<XorMappedAddress>()
                .ok()
                .map(|a| a.addr(txid)),
            lifetime,
        })
    }

    pub async fn create_permission(
        &mut self,
        peer: SocketAddr,
        deadline: Instant,
    ) -> Result<Response, TxError> {
        let add = move |msg: &mut MessageWriteVec, txid: TransactionId| {
            msg.add_attribute(&XorPeerAddress::new(peer, txid))
        };
        Ok(self.transact(CREATE_PERMISSION, &add, deadline).await?.0)
    }

    /// Refresh with LIFETIME 0: the allocation is gone (437 Allocation Mismatch says it
    /// already was).
    pub async fn release(&mut self, deadline: Instant) -> Result<Response, TxError> {
        let (response, _) = self
            .transact(
                REFRESH,
                &|msg, _| msg.add_attribute(&Lifetime::new(0)),
                deadline,
            )
            .await?;
        match response.error() {
            None | Some((437, _)) => self.allocated = false,
            Some(_) => {}
        }
        Ok(response)
    }

    /// Sends a payload to `peer` through the relay (Send indications) until a Data indication
    /// from `peer` brings one back: the round trip of the copy that came back. `Ok(None)`: no
    /// copy came back by `deadline`, `sent` says how many went.
    pub async fn echo(
        &mut self,
        peer: SocketAddr,
        deadline: Instant,
    ) -> Result<(Option<Duration>, u32), TxError> {
        let nonce: [u8; 8] = rand::random();
        let mut sent_at: Vec<Instant> = Vec::new();
        let payload = |seq: u32| {
            let mut p = b"joincanary-echo:".to_vec();
            p.extend_from_slice(&nonce);
            p.extend_from_slice(&seq.to_be_bytes());
            p
        };
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok((None, sent_at.len() as u32));
            }
            if (sent_at.len() as u32) < MAX_ECHO_SENDS {
                let seq = sent_at.len() as u32;
                let data = payload(seq);
                let mut msg = Message::builder_indication(SEND, MessageWriteVec::with_capacity(96));
                let txid = msg.transaction_id();
                msg.add_attribute(&XorPeerAddress::new(peer, txid))
                    .map_err(write_error)?;
                msg.add_attribute(&Data::new(&data)).map_err(write_error)?;
                msg.add_fingerprint().map_err(write_error)?;
                self.conn.send(&msg.finish()).await?;
                sent_at.push(Instant::now());
            }
            let until = (Instant::now() + ECHO_RESEND).min(deadline);
            while Instant::now() < until {
                let buf = match self.conn.recv(until).await {
                    Err(WireError::Timeout) => break,
                    Err(e) => return Err(TxError::Wire(e)),
                    Ok(Incoming::ChannelData) => {
                        self.note_stray()?;
                        continue;
                    }
                    Ok(Incoming::Stun(buf)) => buf,
                };
                let msg = parse(&buf)?;
                if !(msg.has_class(MessageClass::Indication) && msg.has_method(DATA)) {
                    self.note_stray()?;
                    continue;
                }
                let txid = msg.transaction_id();
                let from = msg.attribute::<XorPeerAddress>().map(|a| a.addr(txid));
                let data = msg.attribute::<Data>();
                let seq = match (from, data) {
                    (Ok(from), Ok(data)) if from == peer => (0..sent_at.len() as u32)
                        .find(|seq| data.data() == payload(*seq).as_slice()),
                    _ => None,
                };
                match seq {
                    Some(seq) => {
                        let rtt = sent_at[seq as usize].elapsed();
                        return Ok((Some(rtt), sent_at.len() as u32));
                    }
                    None => self.note_stray()?,
                }
            }
        }
    }

    /// Ends the connection (TCP/TLS: the server frees what it still holds for it).
    pub async fn close(&mut self) {
        self.conn.shutdown().await;
    }

    fn note_stray(&mut self) -> Result<(), TxError> {
        self.stray += 1;
        if self.stray >= MAX_STRAY {
            return Err(TxError::Protocol(format!(
                "the server sent {MAX_STRAY} messages that answer nothing this client asked"
            )));
        }
        Ok(())
    }

    /// Builds a request (`add` writes its attributes), signs it when a credential is in use,
    /// and waits for the response with its transaction ID; retransmits on UDP.
    async fn transact(
        &mut self,
        method: Method,
        add: &(dyn Fn(&mut MessageWriteVec, TransactionId) -> Result<(), StunWriteError> + Sync),
        deadline: Instant,
    ) -> Result<(Response, TransactionId), TxError> {
        let (bytes, txid) = self.request(method, add).map_err(write_error)?;
        let mut sent = 0u32;
        let mut rto = RTO;
        let mut next_send = Instant::now();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(match self.conn.unfinished() {
                    // A server that trickles its answer has answered, wrongly: not a timeout.
                    Some((got, total)) => TxError::Protocol(format!(
                        "the server sent {got} bytes of a {} message and not the rest in time",
                        total.map_or_else(|| "STUN".to_string(), |t| format!("{t}-byte"))
                    )),
                    None => TxError::Timeout { sent },
                });
            }
            if now >= next_send {
                self.conn.send(&bytes).await?;
                sent += 1;
                next_send = if self.conn.reliable() {
                    deadline
                } else {
                    let at = now + rto;
                    rto *= 2;
                    at
                };
            }
            let buf = match self.conn.recv(next_send.min(deadline)).await {
                Err(WireError::Timeout) => continue,
                Err(e) => return Err(TxError::Wire(e)),
                Ok(Incoming::ChannelData) => {
                    self.note_stray()?;
                    continue;
                }
                Ok(Incoming::Stun(buf)) => buf,
            };
            let msg = parse(&buf)?;
            if msg.transaction_id() != txid {
                self.note_stray()?;
                continue;
            }
            if !msg.is_response() || msg.method() != method {
                return Err(TxError::Protocol(format!(
                    "the answer to {method} is a {:?} {}",
                    msg.class(),
                    msg.method()
                )));
            }
            self.verify(&msg)?;
            return Ok((Response(buf), txid));
        }
    }

    /// A response to a signed request must carry a MESSAGE-INTEGRITY made with the same key
    /// (an error response may go without: 401 and 438 carry none by design).
    fn verify(&self, msg: &Message<'_>) -> Result<(), TxError> {
        let Some(auth) = &self.auth else {
            return Ok(());
        };
        let signed = msg.has_attribute(MessageIntegrity::TYPE)
            || msg.has_attribute(MessageIntegritySha256::TYPE);
        if signed {
            return msg
                .validate_integrity_with_key(&auth.key)
                .map(|_| ())
                .map_err(|_| {
                    TxError::Protocol(format!(
                        "the MESSAGE-INTEGRITY of the {} response does not verify",
                        msg.method()
                    ))
                });
        }
        if msg.has_class(MessageClass::Success) {
            return Err(TxError::Protocol(format!(
                "the {} success response carries no MESSAGE-INTEGRITY",
                msg.method()
            )));
        }
        Ok(())
    }

    /// The request's bytes: its attributes, then USERNAME, REALM, NONCE and MESSAGE-INTEGRITY
    /// once a credential is in use, then FINGERPRINT.
    fn request(
        &self,
        method: Method,
        add: &(dyn Fn(&mut MessageWriteVec, TransactionId) -> Result<(), StunWriteError> + Sync),
    ) -> Result<(Vec<u8>, TransactionId), StunWriteError> {
        let mut msg = Message::builder_request(method, MessageWriteVec::with_capacity(256));
        let txid = msg.transaction_id();
        add(&mut msg, txid)?;
        // Binding goes unsigned (RFC 8489 §9.2: a server answers it without credentials).
        if method != BINDING
            && let Some(auth) = &self.auth
        {
            msg.add_attribute(&Username::new(&auth.username)?)?;
            msg.add_attribute(&Realm::new(&auth.realm)?)?;
            msg.add_attribute(&Nonce::new(&auth.nonce)?)?;
            msg.add_message_integrity_with_key(&auth.key, IntegrityAlgorithm::Sha1)?;
        }
        msg.add_fingerprint()?;
        Ok((msg.finish(), txid))
    }
}

impl Drop for Session {
    /// A step cut off by its deadline with an allocation open still releases it on UDP (one
    /// datagram, no wait); TCP and TLS allocations end with their connection.
    fn drop(&mut self) {
        if self.allocated
            && let Ok((bytes, _)) =
                self.request(REFRESH, &|msg, _| msg.add_attribute(&Lifetime::new(0)))
        {
            self.conn.try_send(&bytes);
        }
    }
}
