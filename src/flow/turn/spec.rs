//! A `turn` step's table and its validation: `url` (checked now when it holds no template),
//! the credential or the REST secret (not both), the echo peer.

use std::time::Duration;

use serde::Deserialize;

use super::{DEFAULT_CREDENTIAL_TTL, uri};
use crate::diag::S;
use crate::flow::context::RunContext;
use crate::flow::error::StepError;
use crate::flow::kind::{Build, Kind, Reads};
use crate::template::Template;

/// A `turn` step's own keys, named as WebRTC's `RTCIceServer` names them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTurn {
    /// `stun:`, `stuns:`, `turn:` or `turns:` (RFC 7064/7065), `?transport=udp|tcp` (a template).
    pub url: Option<S<String>>,
    /// The TURN username (a template), or with `secret` the user part of the REST username.
    pub username: Option<S<String>>,
    /// The TURN password, `RTCIceServer.credential` (a template; scrubbed from every error).
    pub credential: Option<S<String>>,
    /// The TURN REST API shared secret (`${ENV}` expanded at load time): the step computes an
    /// ephemeral username and password from it.
    pub secret: Option<S<String>>,
    /// How long a computed REST credential is valid (default 1h).
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub credential_ttl: Option<S<String>>,
    /// `host:port` of the UDP echo peer the relay sends to (a template).
    pub peer: Option<S<String>>,
    /// `udp`, `tcp` or `tls`: which of the URIs a list in `url` names is taken.
    pub transport: Option<S<String>>,
}

/// A `turn` step, validated.
#[derive(Clone)]
pub struct TurnSpec {
    /// `stun:`, `stuns:`, `turn:` or `turns:` (RFC 7064/7065), `?transport=udp|tcp`.
    pub url: Template,
    /// The TURN username; with `secret`, the user part of the REST username.
    pub username: Option<Template>,
    /// The TURN password (`RTCIceServer.credential`).
    pub credential: Option<Template>,
    /// TURN REST API: the shared secret the server checks REST credentials with.
    pub secret: Option<String>,
    /// TURN REST API: how long the computed credential is valid.
    pub credential_ttl: Duration,
    /// `host:port` of a UDP echo peer the relay sends to (none: no permission, no echo).
    pub peer: Option<Template>,
    /// From a list of URIs in `url`, the TURN server over this transport (any without).
    pub transport: Option<uri::Transport>,
    /// `secret` was given and came out empty (`${TURN_SECRET:-}` with the variable unset):
    /// said when the server then asks for credentials.
    pub secret_empty: bool,
}

impl std::fmt::Debug for TurnSpec {
    /// Without the secret: a plan's `Debug` must not carry it into a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnSpec")
            .field("url", &self.url)
            .field("username", &self.username)
            .field(
                "credential",
                &self.credential.as_ref().map(|_| "[redacted]"),
            )
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("credential_ttl", &self.credential_ttl)
            .field("peer", &self.peer)
            .field("transport", &self.transport)
            .field("secret_empty", &self.secret_empty)
            .finish()
    }
}

impl Kind for TurnSpec {
    type Raw = RawTurn;

    fn build(s: RawTurn, b: &mut Build<'_, '_, '_>) -> Option<TurnSpec> {
        let Some(url_raw) = &s.url else {
            b.ctx.error(
                Some(b.name.clone()),
                b.key("url"),
                "a turn step needs `url` (stun:, stuns:, turn: or turns:)",
            );
            return None;
        };
        let transport = match &s.transport {
            Some(t) => match uri::Transport::parse(t.get_ref()) {
                Some(t) => Some(t),
                None => {
                    b.ctx.error(
                        Some(t.span()),
                        b.key("transport"),
                        format_args!("`{}` is not `udp`, `tcp` or `tls`", t.get_ref()),
                    );
                    return None;
                }
            },
            None => None,
        };
        let url = b.ctx.template(url_raw, &b.key("url"))?;
        if url.is_literal()
            && let Err(uri::PickError::Bad(e) | uri::PickError::NoTurn(e)) =
                uri::pick(&url.render_placeholder(""), transport)
        {
            b.ctx.error(Some(url_raw.span()), b.key("url"), e);
            return None;
        }
        let mut template = |raw: &Option<S<String>>, name: &str| match raw {
            Some(r) => b.ctx.template(r, &b.key(name)).map(Some),
            None => Some(None),
        };
        let username = template(&s.username, "username")?;
        let credential = template(&s.credential, "credential")?;
        let peer = template(&s.peer, "peer")?;
        let secret = s
            .secret
            .as_ref()
            .and_then(|v| b.ctx.env_str(v, &b.key("secret")))
            // `${TURN_SECRET:-}` unset: no REST credential, not one signed with "".
            .filter(|v| !v.is_empty());
        if let (Some(_), Some(c)) = (&secret, &s.credential) {
            b.ctx.error(
                Some(c.span()),
                b.key("credential"),
                "`secret` computes the credential (TURN REST API): set `credential` or `secret`, not both",
            );
            return None;
        }
        let secret_empty = s.secret.is_some() && secret.is_none();
        let credential_ttl = match &s.credential_ttl {
            Some(v) => b.ctx.duration(v, &b.key("credential_ttl"))?,
            None => DEFAULT_CREDENTIAL_TTL,
        };
        Some(TurnSpec {
            url,
            username,
            credential,
            secret,
            credential_ttl,
            peer,
            transport,
            secret_empty,
        })
    }

    fn reads<'s>(&'s self, r: &mut Reads<'s>) {
        r.templates.push(&self.url);
        r.templates.extend(&self.username);
        r.templates.extend(&self.credential);
        r.templates.extend(&self.peer);
    }

    async fn run(&self, ctx: &mut RunContext<'_>, _: &str) -> Result<(), StepError> {
        super::run(ctx, self).await
    }
}
