//! `stun:`, `stuns:`, `turn:` and `turns:` URIs (RFC 7064, RFC 7065) as WebRTC's
//! `RTCIceServer.urls` carries them: `turn:host[:port][?transport=udp|tcp]`.

use std::fmt;

/// The default port of `stun:`/`turn:` (RFC 8489) and of `stuns:`/`turns:` (TLS).
const PORT: u16 = 3478;
const TLS_PORT: u16 = 5349;

/// How the client talks to the server (not how the relay talks to the peer: that is UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// `udp`, `tcp` or `tls`, as the step's `transport` key names it.
    pub fn parse(text: &str) -> Option<Transport> {
        match text.to_ascii_lowercase().as_str() {
            "udp" => Some(Transport::Udp),
            "tcp" => Some(Transport::Tcp),
            "tls" => Some(Transport::Tls),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// A parsed URI: STUN only (`stun:`) or STUN + TURN (`turn:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceUri {
    /// `turn:`/`turns:`: allocate a relay after the binding.
    pub turn: bool,
    /// A host name, an IPv4 literal or an IPv6 literal without brackets.
    pub host: String,
    pub port: u16,
    pub transport: Transport,
}

impl fmt::Display for IceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match (self.turn, self.transport) {
            (true, Transport::Tls) => "turns",
            (true, _) => "turn",
            (false, Transport::Tls) => "stuns",
            (false, _) => "stun",
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{scheme}:{host}:{}", self.port)?;
        if self.transport == Transport::Tcp {
            f.write_str("?transport=tcp")?;
        }
        Ok(())
    }
}

/// Parses `text`; the error says what is wrong, for `file:line: url: ...` and step errors.
pub fn parse(text: &str) -> Result<IceUri, String> {
    let (scheme, rest) = text
        .split_once(':')
        .ok_or_else(|| "expected a stun:, stuns:, turn: or turns: URI".to_string())?;
    let (turn, tls) = match scheme.to_ascii_lowercase().as_str() {
        "stun" => (false, false),
        "stuns" => (false, true),
        "turn" => (true, false),
        "turns" => (true, true),
        other => {
            return Err(format!(
                "`{other}:` is not a STUN/TURN scheme (expected stun:, stuns:, turn: or turns:)"
            ));
        }
    };
    if rest.starts_with("//") {
        return Err("a STUN/TURN URI has no `//` (write `turn:host:port`)".to_string());
    }
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let mut transport = if tls { Transport::Tls } else { Transport::Udp };
    if let Some(query) = query {
        if !turn {
            return Err("a stun: URI takes no `?transport=` (RFC 7064)".to_string());
        }
        match query.to_ascii_lowercase().as_str() {
            "transport=udp" if tls => {
                return Err(
                    "`turns:` over UDP would be DTLS, which is not supported: use `?transport=tcp` or leave it out"
                        .to_string(),
                );
            }
            "transport=udp" => transport = Transport::Udp,
            "transport=tcp" if tls => {}
            "transport=tcp" => transport = Transport::Tcp,
            _ => {
                return Err(format!(
                    "`?{query}` is not `?transport=udp` or `?transport=tcp`"
                ));
            }
        }
    }
    let (host, port) = split_host_port(authority)?;
    let port = port.unwrap_or(if tls { TLS_PORT } else { PORT });
    Ok(IceUri {
        turn,
        host,
        port,
        transport,
    })
}

/// URIs of a JSON array looked at, at most: a join reply lists a handful.
const MAX_LISTED: usize = 32;

/// Why no URI was picked.
#[derive(Debug, PartialEq, Eq)]
pub enum PickError {
    /// The text is no URI, or no JSON array of URIs.
    Bad(String),
    /// Readable, but none is the TURN server the step wants (only `stun:`, another transport).
    NoTurn(String),
}

/// `RTCIceServer.urls` as a join reply carries it and an extraction yields it: one URI, or a
/// JSON array of URIs (`["stun:…", "turn:…?transport=udp", "turns:…"]`). From an array, the
/// first `turn:`/`turns:` URI over `want` (any transport without it); a single URI is taken
/// as it is, and must be over `want` when given.
pub fn pick(text: &str, want: Option<Transport>) -> Result<IceUri, PickError> {
    let text = text.trim();
    if !text.starts_with('[') {
        let uri = parse(text).map_err(PickError::Bad)?;
        return match want {
            Some(w) if w != uri.transport => Err(PickError::NoTurn(format!(
                "`{uri}` is over {}, the step wants {} (`transport`)",
                uri.transport.as_str(),
                w.as_str()
            ))),
            _ => Ok(uri),
        };
    }
    let list: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| {
        PickError::Bad(format!(
            "starts with `[` but is not a JSON array of URIs ({e})"
        ))
    })?;
    let mut seen = Vec::new();
    for item in list.iter().take(MAX_LISTED) {
        let Some(text) = item.as_str() else {
            let hint = if item.get("urls").is_some() {
                ": an RTCIceServer object, extract its `urls` (`$.iceServers[1].urls`)"
            } else {
                ""
            };
            return Err(PickError::Bad(format!(
                "a list of URIs holds {}{hint}",
                crate::redact::quote(&item.to_string(), 60)
            )));
        };
        match parse(text) {
            Ok(uri) if uri.turn && want.is_none_or(|w| w == uri.transport) => return Ok(uri),
            _ => seen.push(crate::redact::quote(text, 80)),
        }
    }
    let wanted = match want {
        Some(w) => format!("a TURN server over {} (`transport`)", w.as_str()),
        None => "a TURN server (turn: or turns:)".to_string(),
    };
    Err(PickError::NoTurn(if seen.is_empty() {
        format!("the list of URIs is empty: it names no {wanted}")
    } else {
        format!("none of {} names {wanted}", seen.join(", "))
    }))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` (a bare IPv6 literal is ambiguous and refused).
pub fn split_host_port(text: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{text}`: `[` without `]`"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{host}` is not an IPv6 address"));
        }
        match after {
            "" => (host, None),
            p => (
                host,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("`{text}`: expected `:port` after `]`"))?,
                ),
            ),
        }
    } else {
        match text.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err(format!(
                    "`{text}`: write an IPv6 address in brackets (`[::1]:3478`)"
                ));
            }
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(format!("`{text}` has no host"));
    }
    if host
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')))
    {
        return Err(format!("`{host}` is not a host name or IP address"));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("`{p}` is not a port (1 to 65535)")),
        },
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_as_webrtc_writes_them() {
        let cases = [
            (
                "stun:stun.example.com",
                false,
                "stun.example.com",
                3478,
                Transport::Udp,
            ),
            (
                "turn:127.0.0.1:3479",
                true,
                "127.0.0.1",
                3479,
                Transport::Udp,
            ),
            (
                "turn:t.example:80?transport=tcp",
                true,
                "t.example",
                80,
                Transport::Tcp,
            ),
            (
                "turn:t.example?transport=udp",
                true,
                "t.example",
                3478,
                Transport::Udp,
            ),
            ("turns:t.example", true, "t.example", 5349, Transport::Tls),
            (
                "turns:t.example:443?transport=tcp",
                true,
                "t.example",
                443,
                Transport::Tls,
            ),
            ("TURN:[::1]:3478", true, "::1", 3478, Transport::Udp),
            (
                "stuns:[2001:db8::1]",
                false,
                "2001:db8::1",
                5349,
                Transport::Tls,
            ),
        ];
        for (text, turn, host, port, transport) in cases {
            let uri = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                uri,
                IceUri {
                    turn,
                    host: host.to_string(),
                    port,
                    transport
                },
                "{text}"
            );
            // Display reads back as the same URI.
            assert_eq!(parse(&uri.to_string()), Ok(uri), "{text}");
        }
    }

    #[test]
    fn bad_uris_say_why() {
        let cases = [
            ("http://x", "`http:` is not a STUN/TURN scheme"),
            ("turn://x:3478", "has no `//`"),
            ("turn:x?transport=sctp", "`?transport=sctp` is not"),
            ("turns:x?transport=udp", "DTLS"),
            ("stun:x?transport=tcp", "takes no `?transport=`"),
            ("turn:x:0", "`0` is not a port"),
            ("turn:x:99999", "`99999` is not a port"),
            ("turn:::1", "in brackets"),
            ("turn:[::1", "without `]`"),
            ("turn:[nope]:1", "not an IPv6 address"),
            ("turn::3478", "has no host"),
            ("turn:a b", "not a host name"),
            ("turn", "expected a stun:"),
        ];
        for (text, want) in cases {
            let e = parse(text).expect_err(text);
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn a_list_of_uris_gives_the_turn_uri_of_the_wanted_transport() {
        let list = r#"["stun:s.example", "turn:t.example?transport=udp",
            "turn:t.example?transport=tcp", "turns:t.example:443?transport=tcp"]"#;
        let host = |transport| {
            pick(list, transport)
                .map(|u| (u.to_string(), u.transport))
                .unwrap_or_else(|e| panic!("{e:?}"))
        };
        assert_eq!(host(None).1, Transport::Udp, "the first TURN URI");
        assert_eq!(host(Some(Transport::Tcp)).1, Transport::Tcp);
        assert_eq!(host(Some(Transport::Tls)).0, "turns:t.example:443");
        // One URI: as it is, of the wanted transport when one is named.
        assert_eq!(pick(" turn:[::1]:3478 ", None).map(|u| u.port), Ok(3478));
        assert!(matches!(
            pick("turn:t.example", Some(Transport::Tls)),
            Err(PickError::NoTurn(e)) if e.contains("over udp, the step wants tls")
        ));
        // No TURN URI: said, apart from a list that does not read.
        let only_stun = pick(r#"["stun:a.example", "stun:b.example"]"#, None);
        assert!(
            matches!(&only_stun, Err(PickError::NoTurn(e)) if e.contains("stun:b.example") && e.contains("names a TURN server")),
            "{only_stun:?}"
        );
        assert!(matches!(pick("[]", None), Err(PickError::NoTurn(e)) if e.contains("empty")));
        assert!(matches!(
            pick(r#"["turn:t.example?transport=udp"]"#, Some(Transport::Tls)),
            Err(PickError::NoTurn(e)) if e.contains("over tls")
        ));
        assert!(
            matches!(pick("[\"turn:x", None), Err(PickError::Bad(e)) if e.contains("JSON array"))
        );
        assert!(matches!(
            pick(r#"[{"urls": "turn:x"}]"#, None),
            Err(PickError::Bad(e)) if e.contains("extract its `urls`")
        ));
    }
}
