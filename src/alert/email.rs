//! Email over SMTP (lettre): a multipart text + HTML message per notification. A 4xx reply or a
//! network failure is retried; a 5xx reply (including one after DATA) is a failed delivery.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::notify::{DeliveryError, Notifier, Secret, SendFuture};
use super::{EventKind, Notification};
use crate::config::Ctx;
use crate::config::raw::{RawPager, S};
use crate::flow::error_chain;

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS at all: only for a relay on loopback or a trusted network (port 25).
    None,
}

impl TlsMode {
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::StartTls => 587,
            TlsMode::Tls => 465,
            TlsMode::None => 25,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Email {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
}

impl Email {
    pub(crate) fn build(ctx: &mut Ctx<'_>, p: &S<RawPager>, i: usize) -> Option<Email> {
        let r = p.get_ref();
        let key = |k: &str| format!("pager[{i}].{k}");
        super::reject_keys(
            ctx,
            r,
            i,
            &["host", "port", "tls", "username", "password", "from", "to"],
        );
        let host = super::required(ctx, p, r.host.as_ref(), i, "host");
        let tls = match super::optional(ctx, r.tls.as_ref(), i, "tls").as_deref() {
            None | Some("starttls") => Some(TlsMode::StartTls),
            Some("tls") => Some(TlsMode::Tls),
            Some("none") => Some(TlsMode::None),
            Some(other) => {
                ctx.error(
                    r.tls.as_ref().map(|v| v.span()),
                    key("tls"),
                    format_args!(
                        "unknown tls mode `{other}`; expected `starttls`, `tls` or `none`"
                    ),
                );
                None
            }
        };
        let port = match &r.port {
            Some(v) => match u16::try_from(*v.get_ref()) {
                Ok(port) if port > 0 => Some(Some(port)),
                _ => {
                    ctx.error(
                        Some(v.span()),
                        key("port"),
                        "must be a port from 1 to 65535",
                    );
                    None
                }
            },
            None => Some(None),
        };
        let username = super::optional(ctx, r.username.as_ref(), i, "username");
        let password = super::optional(ctx, r.password.as_ref(), i, "password");
        if username.is_some() != password.is_some() {
            ctx.error(
                Some(p.span()),
                key(if username.is_some() {
                    "password"
                } else {
                    "username"
                }),
                "`username` and `password` go together",
            );
        }
        let mut mailbox = |v: &S<String>, k: &str| -> Option<Mailbox> {
            let text = ctx.env_str(v, k)?;
            match text.parse::<Mailbox>() {
                Ok(m) => Some(m),
                Err(e) => {
                    ctx.error(
                        Some(v.span()),
                        k,
                        format_args!("`{text}` is not an email address ({e})"),
                    );
                    None
                }
            }
        };
        let from = match &r.from {
            Some(v) => mailbox(v, &key("from")),
            None => None,
        };
        let mut to = Vec::new();
        let mut to_ok = true;
        if let Some(list) = &r.to {
            for (j, v) in list.get_ref().iter().enumerate() {
                match mailbox(v, &format!("pager[{i}].to[{j}]")) {
                    Some(m) => to.push(m),
                    None => to_ok = false,
                }
            }
        }
        if r.from.is_none() {
            ctx.error(
                Some(p.span()),
                key("from"),
                "is required for an `email` pager",
            );
        }
        if to.is_empty() && to_ok {
            let span = r.to.as_ref().map_or(p.span(), |v| v.span());
            ctx.error(
                Some(span),
                key("to"),
                "is required for an `email` pager: a list of at least one address",
            );
        }
        let tls = tls?;
        Some(Email {
            host: host?,
            port: port?.unwrap_or(tls.default_port()),
            tls,
            username,
            password: password.map(Secret::new),
            from: from?,
            to: if to_ok && !to.is_empty() {
                to
            } else {
                return None;
            },
        })
    }
}

/// `[FIRING] summary`, `[RESOLVED] summary`, `[TEST] summary` (a test summary already starts
/// with `[TEST]`).
pub fn subject(n: &Notification) -> String {
    let prefix = if n.test {
        "[TEST]"
    } else {
        match n.kind {
            EventKind::Trigger => "[FIRING]",
            EventKind::Resolve => "[RESOLVED]",
        }
    };
    let summary = n.summary.strip_prefix(prefix).unwrap_or(&n.summary).trim();
    // A header line break would let text inject headers; lettre encodes, this keeps it one line.
    let line: String = format!("{prefix} {summary}")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    super::truncate(&line, 250)
}

/// The plain-text body.
pub fn text_body(n: &Notification) -> String {
    let mut out = format!("{}\n\n", subject(n));
    out.push_str(&format!(
        "probe: {}\nregion: {}\nseverity: {}\n",
        n.probe,
        n.region,
        n.severity.as_str()
    ));
    if let Some(s) = &n.failed_step {
        out.push_str(&format!("failed step: {s}\n"));
    }
    if let Some(r) = n.reason {
        out.push_str(&format!("reason: {r}\n"));
    }
    out.push_str(&format!(
        "started: {}\nat: {}\nincident: {}\n",
        n.started_at.to_rfc3339(),
        n.at.to_rfc3339(),
        n.dedup_key
    ));
    for l in &n.links {
        out.push_str(&format!("{}: {}\n", l.text, l.href));
    }
    let details = n.details_text();
    if !details.is_empty() {
        out.push_str(&format!("\ndetails:\n{details}\n"));
    }
    out
}

/// The HTML body; every interpolated value is escaped.
pub fn html_body(n: &Notification) -> String {
    let e = html_escape;
    let mut rows = vec![
        ("probe", n.probe.clone()),
        ("region", n.region.clone()),
        ("severity", n.severity.as_str().to_string()),
    ];
    if let Some(s) = &n.failed_step {
        rows.push(("failed step", s.clone()));
    }
    if let Some(r) = n.reason {
        rows.push(("reason", r.as_str().to_string()));
    }
    rows.push(("started", n.started_at.to_rfc3339()));
    rows.push(("at", n.at.to_rfc3339()));
    rows.push(("incident", n.dedup_key.clone()));
    let mut out = format!(
        "<!DOCTYPE html><html><body><h2>{}</h2><table>",
        e(&subject(n))
    );
    for (k, v) in rows {
        out.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            e(k),
            e(&v)
        ));
    }
    out.push_str("</table>");
    if !n.links.is_empty() {
        out.push_str("<p>");
        for l in &n.links {
            out.push_str(&format!("<a href=\"{}\">{}</a> ", e(&l.href), e(&l.text)));
        }
        out.push_str("</p>");
    }
    let details = n.details_text();
    if !details.is_empty() {
        out.push_str(&format!("<pre>{}</pre>", e(&details)));
    }
    out.push_str("</body></html>");
    out
}

pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The message: multipart/alternative, text then HTML.
///
/// # Errors
/// lettre refusing the message (cannot happen with validated addresses; permanent if it does).
pub fn build_message(plan: &Email, n: &Notification) -> Result<Message, DeliveryError> {
    let mut builder = Message::builder()
        .from(plan.from.clone())
        .subject(subject(n));
    for to in &plan.to {
        builder = builder.to(to.clone());
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            text_body(n),
            html_body(n),
        ))
        .map_err(|e| DeliveryError::Permanent(format!("cannot build the email: {e}")))
}

/// Sends through a fresh SMTP connection per notification (pages are rare; a pooled
/// connection would only add a stale-connection failure mode).
pub struct EmailNotifier {
    plan: Email,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
    redactor: crate::flow::Redactor,
}

impl EmailNotifier {
    /// # Errors
    /// The TLS settings cannot be built (no usable root certificates).
    pub fn new(
        plan: &Email,
        timeout: Duration,
        redactor: crate::flow::Redactor,
    ) -> Result<EmailNotifier, DeliveryError> {
        let tls = match plan.tls {
            TlsMode::None => Tls::None,
            mode => {
                let params = TlsParameters::new(plan.host.clone()).map_err(|e| {
                    DeliveryError::Permanent(format!("cannot set up TLS: {}", error_chain(&e)))
                })?;
                if mode == TlsMode::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&plan.host)
            .port(plan.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let (Some(user), Some(pass)) = (&plan.username, &plan.password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), pass.expose().to_string()));
        }
        Ok(EmailNotifier {
            plan: plan.clone(),
            transport: builder.build(),
            timeout,
            redactor,
        })
    }
}

impl Notifier for EmailNotifier {
    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move {
            let message = build_message(&self.plan, n)?;
            // lettre's timeout is per command; this bounds the whole conversation.
            let whole = self.timeout.saturating_mul(3);
            match tokio::time::timeout(whole, self.transport.send(message)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(classify(&e).scrub(&self.redactor)),
                Err(_) => Err(DeliveryError::Retryable(format!(
                    "the SMTP server did not finish within {}",
                    crate::report::human_duration(whole)
                ))),
            }
        })
    }
}

/// 5xx replies (also the one after DATA) and client-side errors are permanent; 4xx replies,
/// timeouts, network and TLS trouble are retried.
pub fn classify(e: &lettre::transport::smtp::Error) -> DeliveryError {
    let text = format!("SMTP: {}", error_chain(e));
    if e.is_permanent() || e.is_client() {
        DeliveryError::Permanent(text)
    } else {
        DeliveryError::Retryable(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::sample;

    fn plan() -> Email {
        Email {
            host: "127.0.0.1".into(),
            port: 25,
            tls: TlsMode::None,
            username: None,
            password: None,
            from: "Canary <canary@example.com>"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
            to: vec![
                "oncall@example.com"
                    .parse()
                    .unwrap_or_else(|_| unreachable!()),
            ],
        }
    }

    #[test]
    fn message_has_both_parts_and_escapes_html() {
        let mut n = sample(EventKind::Trigger);
        n.summary = "probe <b>&</b> failing".into();
        let bytes = build_message(&plan(), &n)
            .map(|m| m.formatted())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("Subject: [FIRING] probe <b>&</b> failing"),
            "{text}"
        );
        assert!(text.contains("multipart/alternative"));
        assert!(text.contains("text/plain"));
        assert!(text.contains("text/html"));
        assert!(html_body(&n).contains("probe &lt;b&gt;&amp;&lt;/b&gt; failing"));
        assert!(!html_body(&n).contains("<b>"));
    }

    #[test]
    fn subjects() {
        assert!(subject(&sample(EventKind::Resolve)).starts_with("[RESOLVED] sim-join"));
        let mut t = sample(EventKind::Trigger);
        t.test = true;
        t.summary = "[TEST] joincanary test page from eu-west-1".into();
        assert_eq!(subject(&t), "[TEST] joincanary test page from eu-west-1");
    }
}
