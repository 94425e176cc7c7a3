//! The `turn` step: the media relay a participant's client would use. A STUN Binding (phase
//! `binding`, the server-reflexive address), then for `turn:`/`turns:` a TURN Allocate
//! answering the 401 challenge with the long-term credential (`allocate`), a CreatePermission
//! for the echo peer (`permission`), a payload sent through the relay and echoed back by the
//! peer (`relay_rtt`), and a Refresh with LIFETIME 0 so no allocation is left behind, after a
//! failure too.
//!
//! Credentials are the ones the join handed out (`username`, `credential`, templates) or TURN
//! REST API ephemeral ones computed from a shared `secret` (`"<expiry>:<user>"`, base64
//! HMAC-SHA1). The credential, the secret, the derived password and the long-term key are
//! registered with the run's redactor; none is ever formatted into a message.

mod client;
mod spec;
mod uri;
mod wire;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::context::RunContext;
use super::error::StepError;
use super::net::{add_phase, begin_phase};
use crate::redact::quote;
use crate::report::{CAUSE_END, FailureReason, Phase, human_duration};
use client::{Response, Session, TxError};
pub use spec::{RawTurn, TurnSpec};
pub use uri::{IceUri, Transport};
use wire::{Conn, WireError};

/// The user part of a REST credential when the step names none.
pub const DEFAULT_REST_USER: &str = "joincanary";
/// How long a computed REST credential is valid (its `<expiry>` is now plus this).
pub const DEFAULT_CREDENTIAL_TTL: Duration = Duration::from_secs(3600);
/// The longest time kept from a step's time for the release: Refresh(0) still goes out when
/// a phase ran out of time.
const RELEASE_RESERVE: Duration = Duration::from_millis(500);
/// Local addresses an Allocate answered 437 (Allocation Mismatch) is tried from (RFC 8656 §7.4).
const ALLOCATE_ADDRESSES: u32 = 3;
/// ALPN of TURN over TLS (RFC 7443).
const ALPN_TURN: &[u8] = b"stun.turn";

/// A TURN REST API credential (draft-uberti-behave-turn-rest): the username
/// `"<expiry>:<user>"` and the password base64(HMAC-SHA1(secret, username)).
pub fn rest_credential(secret: &str, user: &str, expiry_unix: i64) -> (String, String) {
    use crate::flow::tokens::{Encoding, Hash};
    let username = format!("{expiry_unix}:{user}");
    let tag = Hash::Sha1.hmac(secret.as_bytes(), username.as_bytes());
    (username, Encoding::Base64.encode(&tag))
}

/// The long-term key MD5(username:realm:password), hex: registered with the redactor.
fn long_term_key_hex(username: &str, realm: &str, password: &str) -> String {
    use md5::Digest as _;
    let digest = md5::Md5::digest(format!("{username}:{realm}:{password}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

struct Credential {
    username: String,
    password: String,
    /// A REST username's `<expiry>`, for a 401's explanation.
    expiry: Option<i64>,
}

/// The step's credential, rendered and registered with the redactor.
fn credential(ctx: &mut RunContext<'_>, spec: &TurnSpec) -> Result<Option<Credential>, StepError> {
    let user = match &spec.username {
        Some(t) => Some(ctx.render(t)?),
        None => None,
    };
    if let Some(secret) = &spec.secret {
        ctx.redactor.add(secret.clone());
        // The run's own clock (`now_ms`), so a run and its report agree on "now".
        let now = ctx
            .vars
            .get("now_ms")
            .and_then(|v| v.parse::<i64>().ok())
            .map_or_else(|| ctx.clock.now().timestamp(), |ms| ms / 1000);
        let ttl = i64::try_from(spec.credential_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let expiry = now.saturating_add(ttl);
        let user = user.unwrap_or_else(|| DEFAULT_REST_USER.to_string());
        let (username, password) = rest_credential(secret, &user, expiry);
        ctx.redactor.add(password.clone());
        return Ok(Some(Credential {
            username,
            password,
            expiry: Some(expiry),
        }));
    }
    let password = match &spec.credential {
        Some(t) => ctx.render(t)?,
        None => return Ok(None),
    };
    ctx.redactor.add(password.clone());
    let username = user.unwrap_or_default();
    // A REST username handed out by the join says when it expires.
    let expiry = username
        .split_once(':')
        .and_then(|(e, _)| e.parse::<i64>().ok());
    Ok(Some(Credential {
        username,
        password,
        expiry,
    }))
}

/// What a refused REST credential's `<expiry>` says. The username may come from the join's
/// reply (`-9223372036854775808:user` included): the subtraction saturates, it cannot overflow.
fn expiry_note(expiry: i64, now: i64) -> String {
    if expiry <= now {
        format!(
            "; the REST username expired {} ago",
            human_duration(Duration::from_secs(
                now.saturating_sub(expiry).unsigned_abs()
            ))
        )
    } else {
        "; a REST credential: check the shared secret".to_string()
    }
}

pub(super) async fn run(ctx: &mut RunContext<'_>, spec: &TurnSpec) -> Result<(), StepError> {
    let text = ctx.render(&spec.url)?;
    let uri = uri::pick(&text, spec.transport).map_err(|e| match e {
        uri::PickError::Bad(e) => StepError::new(FailureReason::Protocol, format!("url: {e}")),
        uri::PickError::NoTurn(e) => {
            StepError::new(FailureReason::BodyMismatch, format!("url: {e}"))
        }
    })?;
    // The server the step talked to, when the error does not say: with a join's `iceServers`
    // list it is one of several, and the page must say which.
    let listed = text.trim_start().starts_with('[');
    probe(ctx, spec, &text, &uri).await.map_err(|mut e| {
        let shown = uri.to_string();
        if !e.message.contains(&shown) {
            let from = match (listed, spec.transport) {
                (false, _) => String::new(),
                (true, None) => ", the first TURN URI of the list".to_string(),
                (true, Some(t)) => format!(", the first TURN URI over {} of the list", t.as_str()),
            };
            e.message.push_str(&format!(" ({shown}{from})"));
        }
        e
    })
}

/// The step on the URI it took (`text`: its `url` as rendered): binding, then allocate,
/// permission, echo and release.
async fn probe(
    ctx: &mut RunContext<'_>,
    spec: &TurnSpec,
    text: &str,
    uri: &IceUri,
) -> Result<(), StepError> {
    let credential = credential(ctx, spec)?;
    if let Some(named) = crate::flow::origin::named(ctx, &spec.url, text) {
        let sent = credential.as_ref().map(|c| {
            [
                ("username", c.username.as_str()),
                ("credential", c.password.as_str()),
            ]
        });
        named.check_turn(
            ctx,
            spec.secret.is_some(),
            sent.as_ref().map_or(&[], |c| &c[..]),
        )?;
    }
    let peer = match &spec.peer {
        Some(t) => Some(ctx.render(t)?),
        None => None,
    };
    let deadline = ctx.deadline;
    let left = deadline.saturating_duration_since(Instant::now());
    let work = deadline - (left / 5).min(RELEASE_RESERVE);

    // RFC 8656 §7.4: a 437 to Allocate means the server still holds an allocation for this
    // 5-tuple (the system handed out a local port a just-released allocation used); another
    // local address is tried, three in all. The phases add up over the attempts.
    let mut attempt = 0;
    let (mut session, outcome) = loop {
        attempt += 1;
        let target = match tokio::time::timeout_at(work, connect(ctx, uri)).await {
            Ok(target) => target?,
            Err(_) => return Err(connect_timeout(ctx, uri)),
        };
        let t = begin_phase(ctx, Phase::Binding);
        let bound = bind(target, uri, work).await;
        add_phase(ctx, Phase::Binding, t);
        let (mut session, reflexive) = bound?;
        tracing::debug!(step = %ctx.step_name, %reflexive, "STUN binding answered");
        if !uri.turn {
            break (session, Ok(()));
        }
        let mut mismatch = false;
        let outcome = relay(
            ctx,
            uri,
            credential.as_ref(),
            peer.as_deref(),
            &mut session,
            work,
            &mut mismatch,
        )
        .await;
        if !(mismatch && attempt < ALLOCATE_ADDRESSES && uri.transport == Transport::Udp) {
            break (session, outcome);
        }
        tracing::debug!(step = %ctx.step_name, attempt, "allocate: 437, trying another local port");
    };
    let outcome = outcome.map_err(|mut e| {
        if e.reason == FailureReason::TurnAuth && credential.is_none() && spec.secret_empty {
            e.message.push_str(
                "; `secret` is set but empty: its environment variable is unset or empty",
            );
        }
        e
    });
    let released = if session.allocated() {
        release(&mut session, deadline).await
    } else {
        Ok(())
    };
    let _ = tokio::time::timeout_at(deadline, session.close()).await;
    match (outcome, released) {
        (Err(e), Err(cleanup)) => {
            tracing::debug!(
                step = %ctx.step_name,
                error = %crate::redact::finish(&ctx.redactor, &cleanup.message),
                "turn release after a failure failed"
            );
            Err(e)
        }
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// After the Binding: allocate, permission and echo; each phase timed on its own.
async fn relay(
    ctx: &mut RunContext<'_>,
    uri: &IceUri,
    credential: Option<&Credential>,
    peer: Option<&str>,
    session: &mut Session,
    work: Instant,
    mismatch: &mut bool,
) -> Result<(), StepError> {
    let t = begin_phase(ctx, Phase::Allocate);
    let allocated = allocate(ctx, session, credential, work).await;
    add_phase(ctx, Phase::Allocate, t);
    let response = allocated.map_err(|e| match e {
        Failure::Tx(e) => tx_error("allocate", uri, e, t, session.stray),
        Failure::Step(e) => e,
        Failure::Mismatch(e) => {
            *mismatch = true;
            e
        }
    })?;
    let allocation =
        Session::allocation(&response).map_err(|e| tx_error("allocate", uri, e, t, 0))?;
    tracing::debug!(
        step = %ctx.step_name,
        relayed = %allocation.relayed,
        reflexive = ?allocation.reflexive,
        lifetime = ?allocation.lifetime,
        "TURN allocation made"
    );

    let Some(peer) = peer else {
        return Ok(());
    };
    let peer = resolve_peer(ctx, peer, allocation.relayed).await?;
    let t = begin_phase(ctx, Phase::Permission);
    let permitted = authed(session, work, |s, d| Box::pin(s.create_permission(peer, d))).await;
    add_phase(ctx, Phase::Permission, t);
    let response = permitted.map_err(|e| tx_error("permission", uri, e, t, session.stray))?;
    if let Some((code, phrase)) = response.error() {
        return Err(refused(
            "permission",
            code,
            &phrase,
            &format!("the TURN server refused a permission for the peer {peer}"),
        ));
    }

    let t = begin_phase(ctx, Phase::RelayRtt);
    let echoed = session.echo(peer, work).await;
    ctx.pending = None;
    match echoed {
        Ok((Some(rtt), _)) => {
            *ctx.phases.entry(Phase::RelayRtt).or_default() += rtt;
            Ok(())
        }
        Ok((None, sent)) => {
            add_phase(ctx, Phase::RelayRtt, t);
            Err(StepError::new(
                FailureReason::TurnRelay,
                format!(
                    "relay_rtt: no echo from the peer {peer} through the relay {} within {} ({sent} sent; binding, allocate and permission passed)",
                    allocation.relayed,
                    human_duration(t.elapsed())
                ),
            ))
        }
        Err(e) => {
            add_phase(ctx, Phase::RelayRtt, t);
            Err(tx_error("relay_rtt", uri, e, t, session.stray))
        }
    }
}

enum Failure {
    Tx(TxError),
    Step(StepError),
    /// 437 Allocation Mismatch: worth another local address.
    Mismatch(StepError),
}

impl From<TxError> for Failure {
    fn from(e: TxError) -> Failure {
        Failure::Tx(e)
    }
}

/// Allocate: unsigned first; a 401 challenge is answered with the credential (once); a 438
/// Stale Nonce takes the new nonce (twice at most).
async fn allocate(
    ctx: &mut RunContext<'_>,
    session: &mut Session,
    credential: Option<&Credential>,
    work: Instant,
) -> Result<Response, Failure> {
    let mut response = session.allocate(work).await?;
    let mut challenged = false;
    let mut stale = 0;
    loop {
        let Some((code, phrase)) = response.error() else {
            return Ok(response);
        };
        match (code, credential) {
            (401, Some(c)) if !challenged => {
                session.challenge(&response, &c.username, &c.password)?;
                if let Some(realm) = session.realm() {
                    let key = long_term_key_hex(&c.username, realm, &c.password);
                    ctx.redactor.add(key);
                }
                challenged = true;
            }
            (401, None) => {
                return Err(Failure::Step(refused(
                    "allocate",
                    code,
                    &phrase,
                    "the TURN server wants credentials and the step has none (username and credential, or secret)",
                )));
            }
            (438, Some(_)) if challenged && stale < 2 => {
                session.renew_nonce(&response)?;
                stale += 1;
            }
            (438, Some(_)) if challenged => {
                // A server that never takes its own nonce: bounded, and broken, not a refusal.
                return Err(Failure::Tx(TxError::Protocol(format!(
                    "438 Stale Nonce again after {stale} new nonces: the server takes none of its own nonces"
                ))));
            }
            (401 | 441, Some(c)) => {
                let realm = session.realm().unwrap_or_default();
                let mut why = format!(
                    "the TURN server refused the credential of user `{}` (realm `{realm}`) after the challenge",
                    c.username
                );
                if let Some(expiry) = c.expiry {
                    why.push_str(&expiry_note(expiry, ctx.clock.now().timestamp()));
                }
                return Err(Failure::Step(refused("allocate", code, &phrase, &why)));
            }
            _ => {
                let why = match code {
                    486 => "the user's allocation quota is used up",
                    508 => "the TURN server is out of relay capacity",
                    403 => "the TURN server refuses this client an allocation",
                    437 => "an allocation already exists for this client's address and port",
                    442 => "the TURN server does not relay UDP",
                    300 => "the TURN server redirects to another server (ALTERNATE-SERVER)",
                    _ => "the TURN server refused the allocation",
                };
                let e = refused("allocate", code, &phrase, why);
                return Err(if code == 437 {
                    Failure::Mismatch(e)
                } else {
                    Failure::Step(e)
                });
            }
        }
        response = session.allocate(work).await?;
    }
}

/// A signed request, retried once with the new nonce after a 438 Stale Nonce.
async fn authed<'s, F>(
    session: &'s mut Session,
    deadline: Instant,
    send: F,
) -> Result<Response, TxError>
where
    F: for<'a> Fn(
        &'a mut Session,
        Instant,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response, TxError>> + Send + 'a>,
    >,
{
    let response = send(session, deadline).await?;
    if !matches!(response.error(), Some((438, _))) {
        return Ok(response);
    }
    session.renew_nonce(&response)?;
    let response = send(session, deadline).await?;
    if matches!(response.error(), Some((438, _))) {
        return Err(TxError::Protocol(
            "438 Stale Nonce again after the new nonce: the server takes none of its own nonces"
                .into(),
        ));
    }
    Ok(response)
}

/// Refresh(0), bounded by the step's own deadline.
async fn release(session: &mut Session, deadline: Instant) -> Result<(), StepError> {
    let t = Instant::now();
    let response = authed(session, deadline, |s, d| Box::pin(s.release(d)))
        .await
        .map_err(|e| match e {
            TxError::Timeout { sent } => StepError::new(
                FailureReason::Timeout,
                format!(
                    "release: no answer to Refresh(0) within {} ({sent} sent): the allocation may stay until it expires",
                    human_duration(t.elapsed())
                ),
            ),
            e => tx_error_text("release", e),
        })?;
    match response.error() {
        None | Some((437, _)) => Ok(()),
        Some((code, phrase)) => Err(refused(
            "release",
            code,
            &phrase,
            "the TURN server refused Refresh(0): the allocation stays until it expires",
        )),
    }
}

/// An error response as a step error: the server's code and words first, then what it means.
fn refused(phase: &str, code: u16, phrase: &str, why: &str) -> StepError {
    if code == 0 {
        return StepError::new(
            FailureReason::Protocol,
            format!("{phase}: an error response without a readable ERROR-CODE"),
        );
    }
    let reason = match code {
        401 | 441 => FailureReason::TurnAuth,
        486 | 508 => FailureReason::TurnCapacity,
        403 => FailureReason::TurnForbidden,
        _ => FailureReason::ServerError,
    };
    let phrase = if phrase.is_empty() {
        String::new()
    } else {
        format!(" {}", quote(phrase, 80))
    };
    StepError::new(reason, format!("{phase}: {code}{phrase}{CAUSE_END}{why}"))
}

/// A failed transaction as a step error naming the phase.
fn tx_error(phase: &str, uri: &IceUri, e: TxError, since: Instant, stray: usize) -> StepError {
    match e {
        TxError::Timeout { .. } if stray > 0 => StepError::new(
            FailureReason::Protocol,
            format!(
                "{phase}: no answer with the request's transaction ID within {}, but {stray} messages answering nothing asked",
                human_duration(since.elapsed())
            ),
        ),
        TxError::Timeout { sent } => StepError::new(
            FailureReason::Timeout,
            format!(
                "{phase}: no answer from {uri} within {} ({sent} sent over {})",
                human_duration(since.elapsed()),
                uri.transport.as_str()
            ),
        ),
        e => tx_error_text(phase, e),
    }
}

fn tx_error_text(phase: &str, e: TxError) -> StepError {
    match e {
        TxError::Timeout { sent } => StepError::new(
            FailureReason::Timeout,
            format!("{phase}: no answer ({sent} sent)"),
        ),
        TxError::Protocol(m) => StepError::new(FailureReason::Protocol, format!("{phase}: {m}")),
        TxError::Wire(WireError::Io(io)) => {
            let what = if io.kind() == std::io::ErrorKind::ConnectionRefused {
                format!("{phase}: nothing answers at the server's port: {io}")
            } else {
                format!("{phase}: {io}")
            };
            StepError::caused_by(FailureReason::Connect, what, &io)
        }
        TxError::Wire(WireError::Closed) => StepError::new(
            FailureReason::Connect,
            format!("{phase}: the server closed the connection"),
        ),
        TxError::Wire(e) => StepError::new(FailureReason::Protocol, format!("{phase}: {e}")),
    }
}

/// A connection that did not open in time, named by the phase under way.
fn connect_timeout(ctx: &mut RunContext<'_>, uri: &IceUri) -> StepError {
    let pending = ctx.pending.take();
    if let Some((phase, since)) = pending {
        *ctx.phases.entry(phase).or_default() += since.elapsed();
    }
    match pending.map(|(p, _)| p) {
        Some(Phase::Dns) => StepError::new(
            FailureReason::Dns,
            format!("timed out resolving `{}`", uri.host),
        ),
        Some(Phase::Tls) => StepError::new(
            FailureReason::Tls,
            format!("timed out waiting for the TLS handshake with {uri}"),
        ),
        _ => StepError::new(
            FailureReason::Timeout,
            format!("timed out connecting to {uri}"),
        ),
    }
}

/// `host` as the URL crate's host (an IPv6 literal in brackets).
fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// What the Binding goes to: the server's addresses (UDP), or the one TCP/TLS connection.
enum Target {
    Udp(Vec<SocketAddr>),
    Stream(Conn),
}

/// Opens what the URI names: for UDP the server's addresses (sockets are opened by
/// [`bind`]), for TCP a connection (TLS for `turns:`); the name lookup timed as `dns`, TCP as
/// `connect`, the handshake as `tls`.
async fn connect(ctx: &mut RunContext<'_>, uri: &IceUri) -> Result<Target, StepError> {
    let scheme = match uri.transport {
        Transport::Udp => "udp",
        Transport::Tcp => "http",
        Transport::Tls => "https",
    };
    let url = url::Url::parse(&format!("{scheme}://{}:{}/", url_host(&uri.host), uri.port))
        .map_err(|e| StepError::new(FailureReason::Protocol, format!("url: `{uri}`: {e}")))?;
    if uri.transport != Transport::Udp {
        let alpn = (uri.transport == Transport::Tls).then_some(ALPN_TURN);
        let stream = super::net::open_with_alpn(ctx, &url, alpn).await?;
        return Ok(Target::Stream(Conn::Stream(Box::new(stream), Vec::new())));
    }
    Ok(Target::Udp(resolve(ctx, &uri.host, uri.port).await?))
}

/// The STUN Binding (phase `binding`): the session that answered and our server-reflexive
/// address. Over UDP nothing but an answer tells a live address from a dead one, so every
/// address of the server's name is tried as a browser's ICE agent would, one after another
/// within the step's time (Happy Eyeballs, the ordering and delay TCP connects use): a name
/// whose first address (an AAAA, or one A of several) is dead still gets its relay tested.
async fn bind(
    target: Target,
    uri: &IceUri,
    work: Instant,
) -> Result<(Session, SocketAddr), StepError> {
    let since = Instant::now();
    let addrs = match target {
        Target::Stream(conn) => {
            let mut session = Session::new(conn);
            return match session.binding(work).await {
                Ok(reflexive) => Ok((session, reflexive)),
                Err(e) => Err(tx_error("binding", uri, e, since, session.stray)),
            };
        }
        Target::Udp(addrs) => addrs,
    };
    let attempt = |addr: SocketAddr| async move {
        let socket = udp_socket(addr).await.map_err(|e| {
            StepError::caused_by(
                FailureReason::Connect,
                format!("binding: cannot open a UDP socket to {addr}: {e}"),
                &e,
            )
        })?;
        let mut session = Session::new(Conn::Udp(socket));
        match session.binding(work).await {
            Ok(reflexive) => Ok((session, reflexive)),
            Err(e) => Err(tx_error("binding", uri, e, since, session.stray)),
        }
    };
    let mut failed = match super::net::first_answering(&addrs, attempt).await {
        Ok(bound) => return Ok(bound),
        Err(failed) => failed,
    };
    if failed.len() <= 1 {
        return Err(failed.pop().map_or_else(
            || StepError::new(FailureReason::Connect, "binding: no address to send to"),
            |(_, e)| e,
        ));
    }
    // Each address named with what it did; the reason is the last one's.
    let reason = failed
        .last()
        .map_or(FailureReason::Connect, |(_, e)| e.reason);
    let each: Vec<String> = failed
        .iter()
        .map(|(addr, e)| {
            let what = e.message.strip_prefix("binding: ").unwrap_or(&e.message);
            format!("{addr}: {what}")
        })
        .collect();
    Err(StepError::new(
        reason,
        format!(
            "binding: none of the {} addresses of `{}` answered: {}",
            failed.len(),
            uri.host,
            each.join("; ")
        ),
    ))
}

async fn udp_socket(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let local: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(local).await?;
    socket.connect(addr).await?;
    Ok(socket)
}

/// `host`'s addresses: an IP literal as it is, a name looked up (timed as `dns`).
async fn resolve(
    ctx: &mut RunContext<'_>,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, StepError> {
    let parsed = url::Host::parse(&url_host(host))
        .map_err(|e| StepError::new(FailureReason::Protocol, format!("`{host}`: {e}")))?;
    let host = match &parsed {
        url::Host::Domain(d) => url::Host::Domain(d.as_str()),
        url::Host::Ipv4(ip) => url::Host::Ipv4(*ip),
        url::Host::Ipv6(ip) => url::Host::Ipv6(*ip),
    };
    super::net::resolve_host(ctx, host, port).await
}

/// The echo peer's address, of the relay's address family.
async fn resolve_peer(
    ctx: &mut RunContext<'_>,
    text: &str,
    relayed: SocketAddr,
) -> Result<SocketAddr, StepError> {
    let bad = |e: String| StepError::new(FailureReason::Protocol, format!("peer: {e}"));
    let (host, port) = uri::split_host_port(text).map_err(bad)?;
    let port = port.ok_or_else(|| bad(format!("`{text}` has no port (`host:port`)")))?;
    let addrs = resolve(ctx, &host, port).await?;
    addrs
        .iter()
        .find(|a| a.is_ipv4() == relayed.is_ipv4())
        .copied()
        .ok_or_else(|| {
            bad(format!(
                "`{text}` has no address of the relay's family (relayed address {relayed})"
            ))
        })
}

#[cfg(test)]
mod tests;
