//! `xmpp`: XMPP over websocket (RFC 7395). One stanza per frame; the stream is opened with
//! `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>` and ended with `<close/>`.
//!
//! Stanzas are parsed into a small [`Element`] tree so a step's `expect_xml` matches element
//! names, attributes (in any order) and children, not the server's spelling of them. The parser
//! reads well-formed stanzas; it is iterative and depth-capped, so a hostile frame cannot
//! exhaust the stack.

use super::{Incoming, Message, Outgoing, Protocol};

const FRAMING_NS: &str = "urn:ietf:params:xml:ns:xmpp-framing";
const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// Deeper than any stanza a join flow sees; past it a frame is refused, not parsed.
const MAX_DEPTH: usize = 64;
/// Elements and attributes in one stanza, far more than a presence or disco reply holds: a
/// frame of a million `<a/>` would otherwise take some 30 times its size as a tree.
const MAX_NODES: usize = 10_000;

/// The keys of a step on an `xmpp` connection.
pub(crate) const KEYS: super::Keys = super::Keys {
    connect: &["domain"],
    send: &["text", "event"],
    expect: &["expect_xml", "expect_regex"],
};

pub(crate) struct Xmpp {
    domain: String,
    opened: bool,
}

impl Xmpp {
    pub(crate) fn new(domain: String) -> Xmpp {
        Xmpp {
            domain,
            opened: false,
        }
    }

    fn open_frame(&self) -> String {
        format!(
            "<open xmlns='{FRAMING_NS}' to='{}' version='1.0'/>",
            crate::template::Filter::Xml.apply(&self.domain)
        )
    }
}

impl Protocol for Xmpp {
    fn subprotocol(&self) -> Option<&'static str> {
        Some("xmpp")
    }

    fn opening(&mut self) -> Vec<String> {
        vec![self.open_frame()]
    }

    fn ready(&self) -> bool {
        self.opened
    }

    fn decode(&mut self, frame: &str) -> Incoming {
        let Ok(el) = Element::parse(frame) else {
            return Incoming::Message(Message {
                text: frame.to_string(),
                ..Message::default()
            });
        };
        match (el.local_name(), el.attr("xmlns")) {
            ("open", Some(FRAMING_NS)) => {
                self.opened = true;
                return Incoming::Control(Vec::new());
            }
            ("close", Some(FRAMING_NS)) => {
                return Incoming::Closed("the server closed the XMPP stream".into());
            }
            ("failure", Some(SASL_NS)) => {
                return Incoming::ServerError("SASL authentication failed");
            }
            _ => {}
        }
        if el.name == "stream:error" {
            return Incoming::ServerError("stream error");
        }
        if el.attr("type") == Some("error") {
            return Incoming::ServerError("error stanza");
        }
        // XEP-0199: a server ping is answered, never matched.
        if el.local_name() == "iq"
            && el.attr("type") == Some("get")
            && el.children.iter().any(|c| c.local_name() == "ping")
        {
            let mut pong = String::from("<iq type='result'");
            for key in ["id", "from"] {
                if let Some(v) = el.attr(key) {
                    let attr = if key == "from" { "to" } else { key };
                    let v = crate::template::Filter::Xml.apply(v);
                    pong.push_str(&format!(" {attr}='{v}'"));
                }
            }
            pong.push_str("/>");
            return Incoming::Control(vec![pong]);
        }
        Incoming::Message(Message {
            text: frame.to_string(),
            name: Some(el.local_name().to_string()),
            xml: Some(el),
            ..Message::default()
        })
    }

    fn encode(&mut self, out: Outgoing) -> Result<Vec<String>, String> {
        match (out.text, out.event.as_deref()) {
            (Some(t), _) => Ok(vec![t]),
            // After SASL success the stream restarts with a fresh open (RFC 7395 section 3.5).
            (None, Some("open")) => Ok(vec![self.open_frame()]),
            _ => Err("an xmpp send needs `text` or `event = \"open\"`".into()),
        }
    }

    fn closing(&self) -> Option<String> {
        Some(format!("<close xmlns='{FRAMING_NS}'/>"))
    }
}

/// What an XMPP error says, condition first: `not-allowed: Room creation is restricted`
/// (RFC 6120 §8.3: a stanza's `<error>` holds a defined condition element and an optional
/// `<text>`; a `<stream:error>` and a SASL `<failure>` hold the same two). `None` when `el`
/// holds no error.
pub(crate) fn error_cause(el: &Element) -> Option<String> {
    let is_error = |e: &Element| matches!(e.local_name(), "error" | "failure");
    let error = if is_error(el) {
        el
    } else {
        el.children.iter().find(|c| is_error(c))?
    };
    let condition = error
        .children
        .iter()
        .find(|c| c.local_name() != "text")
        .map(Element::local_name);
    let text = error
        .children
        .iter()
        .find(|c| c.local_name() == "text")
        .map(|t| t.text.trim())
        .filter(|t| !t.is_empty());
    match (condition, text) {
        (Some(c), Some(t)) => Some(format!("{c}: {t}")),
        (Some(c), None) => Some(c.to_string()),
        (None, Some(t)) => Some(t.to_string()),
        (None, None) => None,
    }
}

/// One XML element: qualified name, attributes in document order, children and text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// The name without its prefix (`stream:features` -> `features`).
    pub fn local_name(&self) -> &str {
        self.name.rsplit(':').next().unwrap_or(&self.name)
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Parses exactly one element (an XML declaration, comments and whitespace around it are
    /// allowed).
    ///
    /// # Errors
    /// Where the text stops being one well-formed element.
    pub fn parse(text: &str) -> Result<Element, String> {
        let mut stack: Vec<Element> = Vec::new();
        let mut done: Option<Element> = None;
        let mut nodes = 0usize;
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("<?") {
                let end = after.find("?>").ok_or("unclosed `<?`")?;
                rest = &after[end + 2..];
            } else if let Some(after) = rest.strip_prefix("<!--") {
                let end = after.find("-->").ok_or("unclosed comment")?;
                rest = &after[end + 3..];
            } else if let Some(after) = rest.strip_prefix("<![CDATA[") {
                let end = after.find("]]>").ok_or("unclosed CDATA")?;
                let top = stack.last_mut().ok_or("text outside the element")?;
                top.text.push_str(&after[..end]);
                rest = &after[end + 3..];
            } else if let Some(after) = rest.strip_prefix("</") {
                let end = after.find('>').ok_or("unclosed end tag")?;
                let name = after[..end].trim();
                let el = stack.pop().ok_or("end tag without a start")?;
                if el.name != name {
                    return Err(format!("`</{name}>` closes `<{}>`", el.name));
                }
                rest = &after[end + 1..];
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if done.is_none() => done = Some(el),
                    None => return Err("more than one element".into()),
                }
            } else if let Some(after) = rest.strip_prefix('<') {
                if done.is_some() {
                    return Err("more than one element".into());
                }
                let (el, self_closing, consumed) = start_tag(after)?;
                nodes += 1 + el.attrs.len();
                if nodes > MAX_NODES {
                    return Err(format!("more than {MAX_NODES} elements and attributes"));
                }
                rest = &after[consumed..];
                if self_closing {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => done = Some(el),
                    }
                } else {
                    if stack.len() >= MAX_DEPTH {
                        return Err(format!("nested deeper than {MAX_DEPTH} elements"));
                    }
                    stack.push(el);
                }
            } else {
                let end = rest.find('<').unwrap_or(rest.len());
                let chunk = &rest[..end];
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&unescape(chunk)?),
                    None if chunk.trim().is_empty() => {}
                    None => return Err("text outside the element".into()),
                }
                rest = &rest[end..];
            }
        }
        if let Some(open) = stack.last() {
            return Err(format!("`<{}>` is never closed", open.name));
        }
        done.ok_or_else(|| "no element".to_string())
    }

    /// Checks that `self` (a pattern) matches `actual`: the same local name, every pattern
    /// attribute present with the same value (order and extra attributes do not matter), every
    /// pattern child matched by some child of `actual`, and the pattern's text, if any, equal.
    ///
    /// # Errors
    /// Why not, naming the element.
    pub fn matches(&self, actual: &Element) -> Result<(), String> {
        if self.local_name() != actual.local_name() {
            return Err(format!("<{}>, expected <{}>", actual.name, self.name));
        }
        for (k, v) in &self.attrs {
            match actual.attr(k) {
                Some(a) if a == v => {}
                Some(a) => {
                    return Err(format!("<{} {k}='{a}'>, expected {k}='{v}'", actual.name));
                }
                None => return Err(format!("<{}> has no `{k}`", actual.name)),
            }
        }
        for child in &self.children {
            if !actual.children.iter().any(|c| child.matches(c).is_ok()) {
                return Err(format!(
                    "<{}> has no child like <{}>",
                    actual.name, child.name
                ));
            }
        }
        let want = self.text.trim();
        if !want.is_empty() && actual.text.trim() != want {
            return Err(format!("<{}> text differs", actual.name));
        }
        Ok(())
    }
}

/// Parses a start tag after its `<`: the element, whether it closed itself, bytes consumed.
fn start_tag(s: &str) -> Result<(Element, bool, usize), String> {
    let name_end = s
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .ok_or("unclosed start tag")?;
    let name = &s[..name_end];
    if name.is_empty() {
        return Err("a tag without a name".into());
    }
    let mut el = Element {
        name: name.to_string(),
        ..Element::default()
    };
    let mut i = name_end;
    loop {
        let trimmed = s[i..].trim_start();
        if let Some(after) = trimmed.strip_prefix("/>") {
            return Ok((el, true, s.len() - after.len()));
        }
        if let Some(after) = trimmed.strip_prefix('>') {
            return Ok((el, false, s.len() - after.len()));
        }
        let eq = trimmed.find('=').ok_or("an attribute without a value")?;
        let key = trimmed[..eq].trim();
        let value_part = trimmed[eq + 1..].trim_start();
        let quote = value_part
            .chars()
            .next()
            .filter(|c| *c == '\'' || *c == '"')
            .ok_or("an unquoted attribute value")?;
        let close = value_part[1..]
            .find(quote)
            .ok_or("an unclosed attribute value")?;
        let value = unescape(&value_part[1..1 + close])?;
        if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == '<') {
            return Err(format!("a bad attribute name `{key}`"));
        }
        el.attrs.push((key.to_string(), value));
        i = s.len() - value_part[1 + close + 1..].len();
    }
}

/// Decodes the five predefined entities and character references.
fn unescape(s: &str) -> Result<String, String> {
    if !s.contains('&') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after.find(';').ok_or("an unterminated entity")?;
        let entity = &after[..semi];
        let c = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("a bad character reference `&{e};`"))?,
            e if e.starts_with('#') => e[1..]
                .parse::<u32>()
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("a bad character reference `&{e};`"))?,
            e => return Err(format!("an unknown entity `&{e};`")),
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stanzas_with_children_text_and_entities() {
        let el = Element::parse(
            "<?xml version='1.0'?><message from=\"r@muc/a\" type='groupchat'><body>hi &amp; &#x263A;</body><!-- c --><x xmlns='x:y'/></message>",
        )
        .unwrap();
        assert_eq!(el.name, "message");
        assert_eq!(el.attr("from"), Some("r@muc/a"));
        assert_eq!(el.children[0].text, "hi & \u{263A}");
        assert_eq!(el.children[1].attr("xmlns"), Some("x:y"));
        for bad in [
            "<a>",
            "<a></b>",
            "<a/><b/>",
            "text",
            "<a x=1/>",
            "<a>&nope;</a>",
        ] {
            assert!(Element::parse(bad).is_err(), "{bad}");
        }
        let wide = format!("<a>{}</a>", "<b/>".repeat(MAX_NODES));
        assert!(Element::parse(&wide).unwrap_err().contains("more than"));
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(Element::parse(&deep).is_err());
    }

    #[test]
    fn matching_ignores_attribute_order_and_extras() {
        let actual = Element::parse(
            "<presence xmlns='jabber:client' to='me@h/r' from='room@muc/nick' id='1'><x xmlns='http://jabber.org/protocol/muc#user'><item role='participant'/><status code='110'/></x></presence>",
        )
        .unwrap();
        let pattern = Element::parse(
            "<presence from='room@muc/nick'><x xmlns='http://jabber.org/protocol/muc#user'><status code='110'/></x></presence>",
        )
        .unwrap();
        assert_eq!(pattern.matches(&actual), Ok(()));
        let wrong = Element::parse("<presence from='room@muc/other'/>").unwrap();
        assert!(
            wrong
                .matches(&actual)
                .unwrap_err()
                .contains("expected from='room@muc/other'")
        );
        let features =
            Element::parse("<stream:features xmlns:stream='s'><mechanisms/></stream:features>")
                .unwrap();
        assert!(
            Element::parse("<features/>")
                .unwrap()
                .matches(&features)
                .is_ok()
        );
    }

    #[test]
    fn framing_errors_and_pings() {
        let mut x = Xmpp::new("example.com".into());
        assert_eq!(
            x.opening(),
            ["<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'/>"]
        );
        assert!(matches!(
            x.decode("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='example.com' id='1' version='1.0'/>"),
            Incoming::Control(_)
        ));
        assert!(x.ready());
        assert!(matches!(
            x.decode("<stream:error xmlns:stream='http://etherx.jabber.org/streams'><host-unknown/></stream:error>"),
            Incoming::ServerError(_)
        ));
        assert!(matches!(
            x.decode("<presence type='error' from='r@muc/n'><error type='cancel'><not-allowed/></error></presence>"),
            Incoming::ServerError(_)
        ));
        assert!(matches!(
            x.decode(
                "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
            ),
            Incoming::ServerError(_)
        ));
        let refused = Element::parse("<presence type='error' from='forbidden-1@conference.localhost/canary-0123456789abcdef' to='0123456789abcdef@guest.localhost/abcdef'><x xmlns='http://jabber.org/protocol/muc'/><error type='cancel' by='conference.localhost'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Room creation is restricted</text></error></presence>").unwrap();
        assert_eq!(
            error_cause(&refused).as_deref(),
            Some("not-allowed: Room creation is restricted")
        );
        let sasl = Element::parse(
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>",
        )
        .unwrap();
        assert_eq!(error_cause(&sasl).as_deref(), Some("not-authorized"));
        let stream = Element::parse("<stream:error xmlns:stream='http://etherx.jabber.org/streams'><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>").unwrap();
        assert_eq!(error_cause(&stream).as_deref(), Some("host-unknown"));
        assert_eq!(
            error_cause(&Element::parse("<message><body>hi</body></message>").unwrap()),
            None
        );
        let Incoming::Control(pong) = x
            .decode("<iq type='get' id='p1' from='example.com'><ping xmlns='urn:xmpp:ping'/></iq>")
        else {
            panic!()
        };
        assert_eq!(pong, ["<iq type='result' id='p1' to='example.com'/>"]);
        assert!(matches!(
            x.decode("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"),
            Incoming::Closed(_)
        ));
    }
}
