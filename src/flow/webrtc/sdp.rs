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
    malformed(text, what)?;
    // Signalling carries SDP in JSON, where `\r\n` may have become `\n`, and hand-built SDP
    // (an SFU's templates) may leave blanks at a line's end or blank lines: all are accepted.
    let mut normalized = String::with_capacity(text.len() + text.len() / 16);
    for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        match line.strip_prefix("a=candidate:") {
            Some(candidate) => {
                normalized.push_str("a=candidate:");
                canonical_candidate(candidate, &mut normalized);
            }
            None => normalized.push_str(line),
        }
        normalized.push_str("\r\n");
    }
    match catch_unwind(AssertUnwindSafe(|| parse(&normalized))) {
        Ok(Ok(sdp)) => Ok(sdp),
        Ok(Err(e)) => Err(StepError::new(
            FailureReason::Protocol,
            format!(
                "the remote SDP {what} does not parse: {}",
                quote(&without_pointers(&e.to_string()), 200)
            ),
        )),
        Err(_) => Err(StepError::new(
            FailureReason::Protocol,
            format!("the remote SDP {what} could not be parsed"),
        )),
    }
}

/// The extensions of a candidate line (RFC 8839: name-value pairs after `typ`, in any order)
/// that str0m reads, in the one order its parser takes them.
const CANDIDATE_EXTENSIONS: [&str; 4] = ["raddr", "rport", "tcptype", "ufrag"];

/// A candidate line's value (after `a=candidate:`) written as str0m's parser reads it: the six
/// fields and `typ`, then `raddr`/`rport`, `tcptype` and `ufrag` whatever order the SFU gave
/// them in, and no other extension (`generation`, `network-id`, `network-cost` and the like,
/// which str0m reads only in one order and otherwise drops the whole candidate, silently).
/// A line that is not a candidate's shape is written as it came (str0m drops it).
pub(super) fn canonical_candidate(candidate: &str, out: &mut String) {
    let fields: Vec<&str> = candidate.split_whitespace().collect();
    if fields.len() < 8 || fields[6] != "typ" || !fields.len().is_multiple_of(2) {
        out.push_str(candidate);
        return;
    }
    out.push_str(&fields[..8].join(" "));
    let pairs: Vec<(&str, &str)> = fields[8..].chunks(2).map(|p| (p[0], p[1])).collect();
    for name in CANDIDATE_EXTENSIONS {
        if let Some((_, value)) = pairs.iter().find(|(n, _)| *n == name) {
            out.push(' ');
            out.push_str(name);
            out.push(' ');
            out.push_str(value);
        }
    }
}

/// The parser's error without the memory address it gives as the position
/// (`Parse error at PointerOffset(0x7f..)`), which would make every run's message another.
fn without_pointers(error: &str) -> String {
    let mut out = String::with_capacity(error.len());
    let mut rest = error;
    while let Some(at) = rest.find(" at PointerOffset(") {
        out.push_str(&rest[..at]);
        rest = rest[at..].find(')').map_or("", |end| &rest[at + end + 1..]);
    }
    out.push_str(rest);
    out
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

/// UDP addresses a route is looked for towards, at most.
const MAX_ROUTED: usize = 32;

/// What an SDP's `a=candidate` lines (and those trickled after it) offer this prober: the UDP
/// addresses (IPv4 before IPv6, at most [`MAX_ROUTED`]), and what was passed over, so that an
/// SDP with nothing usable says why.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Candidates {
    pub(super) udp: Vec<SocketAddr>,
    /// How many of `udp` (its first) are IPv4.
    v4: usize,
    /// ICE-TCP (RFC 6544: `tcp`, `ssltcp`), which str0m's agent never pairs with our UDP.
    tcp: usize,
    /// A name where the address goes (an mDNS `.local` name, RFC 8828), not resolved here.
    names: usize,
    /// Lines that do not parse.
    malformed: usize,
}

impl Candidates {
    /// Reads `sdp`'s candidate lines (session- or media-level, `\n` or `\r\n`).
    pub(super) fn of(sdp: &str) -> Candidates {
        let mut found = Candidates::default();
        for line in sdp
            .lines()
            .filter_map(|l| l.trim().strip_prefix("a=candidate:"))
        {
            found.add(line);
        }
        found
    }

    /// One candidate (the line after `candidate:`), from the SDP or trickled; `true` when it
    /// is a UDP address (one the prober's ICE can use).
    pub(super) fn add(&mut self, line: &str) -> bool {
        // foundation component transport priority address port typ ...
        let f: Vec<&str> = line.split_whitespace().take(6).collect();
        let port = f.get(5).and_then(|p| p.parse::<u16>().ok());
        let (Some(transport), Some(address), Some(port)) = (f.get(2), f.get(4), port) else {
            self.malformed += 1;
            return false;
        };
        if !transport.eq_ignore_ascii_case("udp") {
            self.tcp += 1;
            return false;
        }
        let Ok(ip) = address.parse::<IpAddr>() else {
            self.names += 1;
            return false;
        };
        if self.udp.len() >= MAX_ROUTED {
            return true;
        }
        // IPv4 first: a host routing IPv6 towards an SFU that announces both is common, the
        // SFU answering there less so, and our one host candidate takes the family of the
        // first address routed.
        if ip.is_ipv4() {
            self.udp.insert(self.v4, SocketAddr::new(ip, port));
            self.v4 += 1;
        } else {
            self.udp.push(SocketAddr::new(ip, port));
        }
        true
    }

    /// Whether one of them is a UDP address (a route can be found towards it).
    pub(super) fn usable(&self) -> bool {
        !self.udp.is_empty()
    }

    /// Why none of the candidates can be used, when there are some and none can.
    pub(super) fn none_usable(&self) -> Option<String> {
        self.none_usable_of("the remote SDP's")
    }

    /// [`Candidates::none_usable`], saying whose candidates they are (`the remote SDP's`).
    pub(super) fn none_usable_of(&self, whose: &str) -> Option<String> {
        if !self.udp.is_empty() || self.tcp + self.names + self.malformed == 0 {
            return None;
        }
        let mut why = Vec::new();
        if self.tcp > 0 {
            why.push(format!(
                "{} over TCP (ICE-TCP is not supported: the prober's ICE runs over UDP)",
                self.tcp
            ));
        }
        if self.names > 0 {
            why.push(format!(
                "{} with a host name instead of an address (mDNS `.local` names are not \
                 resolved)",
                self.names
            ));
        }
        if self.malformed > 0 {
            why.push(format!("{} malformed", self.malformed));
        }
        Some(format!(
            "none of {whose} ICE candidates can be used: {}",
            why.join(", ")
        ))
    }
}

/// The remote answer with `a=setup:actpass` read as `a=setup:passive`: an answerer must choose
/// (RFC 5763 §5), and one that did not leaves the choice to us; str0m would take the server's
/// role, as for an offer, and two DTLS servers wait for each other in silence. We take the
/// client's, as browsers' lenient paths do.
pub(super) fn answer_setup(answer: &str) -> std::borrow::Cow<'_, str> {
    if answer.contains("a=setup:actpass") {
        answer.replace("a=setup:actpass", "a=setup:passive").into()
    } else {
        answer.into()
    }
}

/// Our DTLS role as str0m takes it from the remote SDP's `a=setup` (the first one), and why:
/// for a message when the handshake never completes.
pub(super) fn dtls_role(remote: &str) -> String {
    let setup = remote
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=setup:"))
        .map(str::trim);
    match setup {
        Some(s) if s.eq_ignore_ascii_case("passive") => {
            "the prober as DTLS client, the SFU's SDP saying a=setup:passive".to_string()
        }
        Some(s) if s.eq_ignore_ascii_case("active") => {
            "the prober as DTLS server, the SFU's SDP saying a=setup:active".to_string()
        }
        Some(s) if s.eq_ignore_ascii_case("actpass") => {
            "the prober as DTLS server, the SFU's SDP saying a=setup:actpass".to_string()
        }
        _ => "the prober as DTLS server, the SFU's SDP having no a=setup (RFC 4145: active)"
            .to_string(),
    }
}

/// Refuses, before anything is sent, a remote SDP this peer could only time out with, naming
/// what it lacks: certificate fingerprints in no hash str0m checks (sha-256, sha-1) or no data channel or a refused one (the media proof is a data channel):
/// `protocol`; an ICE-lite SFU with no candidate this prober can use (`ice`: such an SFU sends
/// no checks of its own, so nothing else can connect).
pub(super) fn unsupported(text: &str, what: &str) -> Result<(), StepError> {
    let attr = |name: &str| -> Vec<&str> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix(name))
            .map(str::trim)
            .take(32)
            .collect()
    };
    let hashes: Vec<&str> = attr("a=fingerprint:")
        .into_iter()
        .filter_map(|f| f.split_whitespace().next())
        .collect();
    if let Some(other) = hashes.first()
        && !hashes
            .iter()
            .any(|h| h.eq_ignore_ascii_case("sha-256") || h.eq_ignore_ascii_case("sha-1"))
    {
        // The SFU's word, kept to what a hash name is made of.
        let hash: String = other
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(16)
            .collect();
        return Err(StepError::new(
            FailureReason::Protocol,
            format!(
                "the remote SDP {what}'s a=fingerprint is {hash}: only sha-256 (the hash every \
                 browser sends) and sha-1 certificate fingerprints are supported"
            ),
        ));
    }
    let applications = attr("m=application ");
    if applications.is_empty() {
        return Err(StepError::new(
            FailureReason::Protocol,
            format!(
                "the remote SDP {what} has no data channel (no m=application line): the step \
                 proves media with data channel messages"
            ),
        ));
    }
    if applications.iter().all(|m| m.starts_with("0 ")) {
        return Err(StepError::new(
            FailureReason::Protocol,
            format!(
                "the remote SDP {what} refuses the data channel (m=application with port 0): the \
                 step proves media with data channel messages"
            ),
        ));
    }
    let setups = attr("a=setup:");
    if let Some(hold) = setups.iter().find(|s| s.eq_ignore_ascii_case("holdconn")) {
        return Err(StepError::new(
            FailureReason::Protocol,
            format!(
                "the remote SDP {what} says a=setup:{hold}: the SFU holds the DTLS connection \
                 back (RFC 4145), so it cannot be made"
            ),
        ));
    }
    let lines = attr("m=").len();
    if lines > 1
        && !text
            .lines()
            .any(|l| l.trim().starts_with("a=group:BUNDLE "))
    {
        return Err(StepError::new(
            FailureReason::Protocol,
            format!(
                "the remote SDP {what} does not bundle its {lines} m-lines (no \
                 a=group:BUNDLE): the step runs one ICE and DTLS transport for all of them, as \
                 every SFU that bundles does"
            ),
        ));
    }
    if text.lines().any(|l| l.trim() == "a=ice-lite")
        && let Some(why) = Candidates::of(text).none_usable()
    {
        return Err(StepError::new(
            FailureReason::Ice,
            format!("{why}; the SFU is ICE-lite, so it sends no checks that could connect"),
        ));
    }
    Ok(())
}

/// The local address the system routes towards the first reachable of `remote`'s candidates
/// (a UDP `connect` sends nothing: it only asks the routing table).
pub(super) async fn route_to(remote: &Candidates) -> Result<IpAddr, StepError> {
    if let Some(why) = remote.none_usable() {
        return Err(StepError::new(FailureReason::Ice, why));
    }
    let mut last = None;
    for addr in &remote.udp {
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
            "the remote SDP has no ICE candidate (an SFU that trickles its candidates in later \
             messages needs `trickle` on the offer or answer step)",
        ),
    })
}

/// The bytes of a sha-256 certificate fingerprint (RFC 8122 §5).
const SHA256_BYTES: usize = 32;

/// Refuses what no SDP may hold, whoever wrote it, with `protocol` before anything is sent
/// (issue 17: everything from outside is checked): a sha-256 certificate fingerprint (the hash
/// every browser sends, and the one the step checks) that is not 32 hex pairs (fingerprints in
/// other hashes are `unsupported`'s, or str0m's, to judge); candidate lines none of which is well-formed (a port
/// outside 1–65535, a component or priority that is not a number, `typ` missing). Before,
/// the step took such an SDP and then waited out ICE or DTLS, blaming the network. One bad
/// candidate among good ones is dropped, as browsers drop it.
fn malformed(text: &str, what: &str) -> Result<(), StepError> {
    let refuse = |why: String| {
        Err(StepError::new(
            FailureReason::Protocol,
            format!("the remote SDP {what} is malformed: {why}"),
        ))
    };
    for line in text.lines().map(str::trim) {
        let Some(value) = line.strip_prefix("a=fingerprint:") else {
            continue;
        };
        let (hash, digest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        if !hash.eq_ignore_ascii_case("sha-256") {
            continue;
        }
        let pairs: Vec<&str> = digest.trim().split(':').collect();
        let hex = pairs
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
        if !hex || pairs.len() != SHA256_BYTES {
            return refuse(format!(
                "its a=fingerprint sha-256 is {}, not {SHA256_BYTES} bytes as hex pairs",
                if hex {
                    format!("{} bytes", pairs.len())
                } else {
                    format!("`{}`", quote(digest.trim(), 40))
                }
            ));
        }
    }
    let (mut seen, mut first_bad) = (0usize, None);
    for candidate in text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=candidate:"))
    {
        seen += 1;
        let Some(fault) = candidate_fault(candidate) else {
            return Ok(());
        };
        first_bad.get_or_insert_with(|| match fault {
            CandidateFault::Fields => "fields missing or not numbers".to_string(),
            CandidateFault::Port => format!(
                "port `{}` is not 1 to 65535",
                quote(candidate.split_whitespace().nth(5).unwrap_or_default(), 24)
            ),
        });
    }
    match first_bad {
        Some(why) => refuse(format!(
            "none of its {seen} ICE candidates is well-formed (the first: {why})"
        )),
        None => Ok(()),
    }
}

/// What is wrong with a candidate line (the value after `candidate:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CandidateFault {
    /// Fewer than 8 fields, no `typ`, or a component or priority that is not a number.
    Fields,
    /// A port that is not 1 to 65535.
    Port,
}

/// Whether a candidate line is well-formed (RFC 8839: foundation component transport priority
/// address port `typ` type, then name-value pairs), and if not, why.
pub(super) fn candidate_fault(candidate: &str) -> Option<CandidateFault> {
    let f: Vec<&str> = candidate.split_whitespace().take(8).collect();
    let numbers_ok = f.get(1).is_some_and(|c| c.parse::<u16>().is_ok())
        && f.get(3).is_some_and(|p| p.parse::<u32>().is_ok());
    if f.len() < 8 || f[6] != "typ" || !numbers_ok {
        return Some(CandidateFault::Fields);
    }
    match f[5].parse::<u16>() {
        Ok(p) if p > 0 => None,
        _ => Some(CandidateFault::Port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_extensions_are_put_in_the_order_str0m_reads() {
        let canonical = |line: &str| {
            let mut out = String::new();
            canonical_candidate(line, &mut out);
            out
        };
        // Chrome's order: generation, ufrag, network-id, network-cost.
        assert_eq!(
            canonical(
                "1 1 udp 2122260223 10.0.0.1 5000 typ host generation 0 ufrag Ab3d network-id 1 network-cost 10"
            ),
            "1 1 udp 2122260223 10.0.0.1 5000 typ host ufrag Ab3d"
        );
        assert_eq!(
            canonical(
                "2 1 tcp 1 10.0.0.1 443 typ srflx generation 0 tcptype passive rport 9 raddr 10.0.0.2"
            ),
            "2 1 tcp 1 10.0.0.1 443 typ srflx raddr 10.0.0.2 rport 9 tcptype passive"
        );
        // Not a candidate's shape: left for str0m to drop.
        assert_eq!(canonical("1 1 udp x"), "1 1 udp x");
        assert_eq!(
            canonical("1 1 udp 1 h 9 typ host odd"),
            "1 1 udp 1 h 9 typ host odd"
        );
    }

    #[test]
    fn a_parse_error_names_no_memory_address() {
        let e = parse_sdp(
            "v=0\r\nx",
            "answer",
            str0m::change::SdpAnswer::from_sdp_string,
        )
        .unwrap_err();
        assert!(e.message.contains("does not parse"), "{e:?}");
        assert!(!e.message.contains("0x"), "{e:?}");
        assert_eq!(
            without_pointers("error at PointerOffset(0x7f00) here at PointerOffset(0x1)"),
            "error here"
        );
    }

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
    fn candidates_are_read_from_udp_lines_only_ipv4_first_and_bounded() {
        let sdp = "a=candidate:0 1 UDP 2122262783 2001:db8::1 40000 typ host\r\n\
                   a=candidate:1 1 udp 2015363327 10.200.0.1 40000 typ host\r\n\
                   a=candidate:2 1 TCP 1 10.200.0.1 9 typ host tcptype active\r\n\
                   a=candidate:3 1 udp 1 3f2a9c1e-5b8d.local 9 typ host\n\
                   a=candidate:4 1 udp x\r\n";
        let c = Candidates::of(sdp);
        let want: Vec<SocketAddr> = vec![
            "10.200.0.1:40000".parse().unwrap(),
            "[2001:db8::1]:40000".parse().unwrap(),
        ];
        assert_eq!(c.udp, want);
        assert_eq!((c.tcp, c.names, c.malformed), (1, 1, 1));
        assert_eq!(c.none_usable(), None);
        let many = "a=candidate:1 1 udp 1 127.0.0.1 9 typ host\n".repeat(1000);
        assert_eq!(Candidates::of(&many).udp.len(), 32);
    }

    #[test]
    fn an_sdp_with_candidates_and_none_usable_says_why() {
        assert_eq!(Candidates::of("v=0\r\n").none_usable(), None);
        let why = Candidates::of(
            "a=candidate:1 1 tcp 1 127.0.0.1 443 typ host tcptype passive\r\n\
             a=candidate:2 1 ssltcp 1 127.0.0.1 443 typ host\r\n\
             a=candidate:3 1 udp 1 x.local 9 typ host\r\n",
        )
        .none_usable()
        .unwrap();
        assert_eq!(
            why,
            "none of the remote SDP's ICE candidates can be used: 2 over TCP (ICE-TCP is not \
             supported: the prober's ICE runs over UDP), 1 with a host name instead of an \
             address (mDNS `.local` names are not resolved)"
        );
    }
}
