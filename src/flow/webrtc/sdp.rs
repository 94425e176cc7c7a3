//! Remote SDP, taken with care: size-capped, parsed and applied under a panic guard, and the
//! addresses of its candidates (to find our own route towards them).

use std::net::{IpAddr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};

use str0m::RtcError;
use tokio::net::UdpSocket;

use crate::flow::StepError;
use crate::redact::quote;
use crate::report::FailureReason;

/// Largest remote SDP accepted: a conference SDP with a dozen m-lines is a few KiB.
pub const MAX_SDP_BYTES: usize = 64 * 1024;

/// Parses a remote SDP, capped in size and guarded against a parser panic.
pub(super) fn parse_sdp<T>(
    text: &str,
    what: &str,
    parse: impl FnOnce(&str) -> Result<T, str0m::error::SdpError>,
) -> Result<T, StepError> {
    if text.len() > MAX_SDP_BYTES {
        return Err(StepError::new(
            FailureReason::Protocol,
            format!(
                "the remote SDP {what} is {} bytes, more than the {MAX_SDP_BYTES} accepted",
                text.len()
            ),
        ));
    }
    // Signalling carries SDP in JSON, where `\r\n` may have become `\n`: both are accepted.
    let normalized = text.replace("\r\n", "\n").replace('\n', "\r\n");
    match catch_unwind(AssertUnwindSafe(|| parse(&normalized))) {
        Ok(Ok(sdp)) => Ok(sdp),
        Ok(Err(e)) => Err(StepError::new(
            FailureReason::Protocol,
            format!(
                "the remote SDP {what} does not parse: {}",
                quote(&e.to_string(), 200)
            ),
        )),
        Err(_) => Err(StepError::new(
            FailureReason::Protocol,
            format!("the remote SDP {what} could not be parsed"),
        )),
    }
}

/// Runs a str0m call that takes remote input, turning a panic into an error.
pub(super) fn guarded<T>(f: impl FnOnce() -> Result<T, RtcError>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the SDP could not be applied".to_string()),
    }
}

pub(super) fn sdp_refused(what: &str, e: &str) -> StepError {
    StepError::new(
        FailureReason::Protocol,
        format!("the remote SDP {what} cannot be used: {}", quote(e, 200)),
    )
}

/// An SDP's ICE passwords (`a=ice-pwd:`, session- or media-level; at most 32): secrets of
/// the run from the moment the step sees them, in every encoding (every SDP's are also hidden
/// by shape, see `redact::scrub_ice_passwords`).
pub(super) fn ice_passwords(sdp: &str) -> impl Iterator<Item = &str> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=ice-pwd:"))
        .map(str::trim)
        .take(32)
}

/// The UDP addresses of an SDP's `a=candidate` lines (at most 32; others are ignored).
pub(super) fn candidate_addrs(sdp: &str) -> Vec<SocketAddr> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=candidate:"))
        .filter_map(|l| {
            // foundation component transport priority address port typ ...
            let f: Vec<&str> = l.split_whitespace().take(6).collect();
            if f.len() < 6 || !f[2].eq_ignore_ascii_case("udp") {
                return None;
            }
            let ip: IpAddr = f[4].parse().ok()?;
            let port: u16 = f[5].parse().ok()?;
            Some(SocketAddr::new(ip, port))
        })
        .take(32)
        .collect()
}

/// The local address the system routes towards the first reachable of `remote` (a UDP
/// `connect` sends nothing: it only asks the routing table).
pub(super) async fn route_to(remote: &[SocketAddr]) -> Result<IpAddr, StepError> {
    let mut last = None;
    for addr in remote {
        let any: SocketAddr = if addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let probe = match UdpSocket::bind(any).await {
            Ok(s) => s,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        match probe.connect(addr).await.and_then(|()| probe.local_addr()) {
            Ok(local) => return Ok(local.ip()),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => StepError::caused_by(
            FailureReason::Ice,
            format!("no route to the SFU's ICE candidates: {e}"),
            &e,
        ),
        None => StepError::new(
            FailureReason::Ice,
            "the remote SDP has no UDP ICE candidate (set `local_address` to offer one of ours)",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_passwords_are_read_at_every_level() {
        let sdp = "v=0\r\na=ice-pwd:sessionlevelpassword0123\r\nm=application 9 UDP/DTLS/SCTP x\r\n\
                   a=ice-ufrag:Ab3d\r\na=ice-pwd:medialevel+/password0123 \r\n";
        assert_eq!(
            ice_passwords(sdp).collect::<Vec<_>>(),
            ["sessionlevelpassword0123", "medialevel+/password0123"]
        );
    }

    #[test]
    fn candidates_are_read_from_udp_lines_only_and_bounded() {
        let sdp = "a=candidate:1 1 udp 2015363327 10.200.0.1 40000 typ host\r\n\
                   a=candidate:2 1 TCP 1 10.200.0.1 9 typ host tcptype active\r\n\
                   a=candidate:3 1 udp x not-an-ip 1 typ host\r\n";
        assert_eq!(
            candidate_addrs(sdp),
            vec!["10.200.0.1:40000".parse::<SocketAddr>().unwrap()]
        );
        let many = "a=candidate:1 1 udp 1 127.0.0.1 9 typ host\n".repeat(1000);
        assert_eq!(candidate_addrs(&many).len(), 32);
    }
}
