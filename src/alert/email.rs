//! Email over SMTP (lettre): per notification a text + HTML message (facts, step table, error,
//! links) with the raw details attached, threaded per incident by Message-ID. A 4xx reply or a
//! network failure is retried; a 5xx reply (including one after DATA) is a failed delivery.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};

use super::notify::{DeliveryError, Notifier, SendFuture};
use super::table::{Entry, pager_table};
use super::{EventKind, Notification, limits, render};
use crate::diag::{Ctx, S};
use crate::secret::Secret;

pub use super::smtp::TlsMode;

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

pager_table! {
    /// `type = "email"`.
    pub struct RawEmail {
        /// The SMTP server.
        pub host: Option<S<String>>,
        /// Default by `tls`: 587, 465 or 25.
        pub port: Option<S<i64>>,
        /// `starttls` (default), `tls` or `none`.
        pub tls: Option<S<String>>,
        /// SMTP login (with `password`).
        pub username: Option<S<String>>,
        /// SMTP password (a secret).
        pub password: Option<S<String>>,
        /// The sender address.
        pub from: Option<S<String>>,
        /// The recipients: a list of at least one address.
        pub to: Option<S<Vec<S<String>>>>,
    }
}

impl Email {
    pub(crate) fn build(ctx: &mut Ctx<'_>, e: &Entry<'_>, r: &RawEmail) -> Option<Email> {
        let key = |k: &str| e.key(k);
        let host = e.required(ctx, r.host.as_ref(), "host");
        let tls = match e.optional(ctx, r.tls.as_ref(), "tls").as_deref() {
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
        let username = e.optional(ctx, r.username.as_ref(), "username");
        let password = e.optional(ctx, r.password.as_ref(), "password");
        if username.is_some() != password.is_some() {
            ctx.error(
                Some(e.span.clone()),
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
                match mailbox(v, &key(&format!("to[{j}]"))) {
                    Some(m) => to.push(m),
                    None => to_ok = false,
                }
            }
        }
        if r.from.is_none() {
            ctx.error(
                Some(e.span.clone()),
                key("from"),
                "is required for an `email` pager",
            );
        }
        if to.is_empty() && to_ok {
            let span = r.to.as_ref().map_or(e.span.clone(), |v| v.span());
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

/// The incident's subject, the same on every mail about it — trigger, reminders, resolve — so
/// that mail clients thread them: Gmail puts a mail in a conversation only when its subject is
/// the same (bar a `Re:`/`Fwd:`-style prefix) and its `References` name a mail already there;
/// Outlook groups by the conversation topic, the subject without such a prefix. A `[RESOLVED]`
/// in front changes both, so the state (`[FIRING critical] …`, `[RESOLVED] …`) opens the body
/// instead, where both clients show it as the mail's preview. Built from what every mail of
/// the incident carries (probe, region, severity, start), never from the summary, which changes;
/// the start keeps two incidents of one probe apart. One line, at most
/// [`limits::EMAIL_SUBJECT`] characters.
pub fn subject(n: &Notification) -> String {
    let since = super::timestamp(n.started_at);
    let line = if n.test {
        format!("[TEST] joincanary test page from {} at {since}", n.region)
    } else {
        let what = match n.severity {
            super::Severity::Critical => "join flow failing",
            super::Severity::Warning => "join flow degraded",
        };
        format!(
            "[joincanary] {} in {}: {what} since {since}",
            n.probe, n.region
        )
    };
    // A header line break would let text inject headers; lettre encodes, this keeps it one line.
    let line: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    limits::fit_plain(&line, limits::EMAIL_SUBJECT)
}

/// The body's first line: what this mail says about the incident, state first
/// (`[FIRING critical] sim-join failing in …: step "signalling" server_error …`,
/// `[RESOLVED] sim-join recovered …`, `[FIRING critical, reminder] …`, `[TEST] …`).
pub fn first_line(n: &Notification) -> String {
    let marker = if n.reminder && n.kind == EventKind::Trigger && !n.test {
        format!("[FIRING {}, reminder]", n.severity.as_str())
    } else {
        n.marker()
    };
    let summary = n.unmarked_summary().trim();
    format!("{marker} {summary}")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The incident's thread id (left of the `@`): the same for every mail about one incident, from
/// its dedup key and start, both kept in the alert state, so a resolve sent after a restart
/// still threads under its trigger.
pub fn thread_id(n: &Notification) -> String {
    let safe: String = n
        .dedup_key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    // The cleaned key alone could match another incident's (`a/b` and `a.b`); the hash of the
    // real key keeps them apart, and bounds the length.
    let key = limits::fit_key(&safe, 120);
    format!(
        "joincanary.{key}.{}.{}",
        limits::short_hash(&n.dedup_key),
        n.started_at.timestamp_millis()
    )
}

/// `<id@domain>` with the sender's domain (RFC 5322 §3.6.4: the right side names the host that
/// made the id; ours is unique per incident and event).
pub fn message_ids(plan: &Email, n: &Notification) -> (String, Option<String>) {
    let domain = plan.from.email.domain();
    let thread = thread_id(n);
    let root = format!("<{thread}@{domain}>");
    let first = n.kind == EventKind::Trigger && !n.reminder;
    if first {
        (root, None)
    } else {
        let what = match n.kind {
            EventKind::Trigger => "reminder",
            EventKind::Resolve => "resolve",
        };
        (
            format!("<{thread}.{what}.{}@{domain}>", n.at.timestamp_millis()),
            Some(root),
        )
    }
}

/// The plain-text part: the facts, the step table, the error, the links. The raw details go in
/// the `details.json` attachment.
pub fn text_body(n: &Notification) -> String {
    let mut out = format!("{}\n\n", first_line(n));
    for (k, v) in render::facts(n) {
        out.push_str(&format!("{:<14} {v}\n", format!("{k}:")));
    }
    let table = render::table_text(&render::step_rows(n));
    if !table.is_empty() {
        out.push('\n');
        out.push_str(&table);
    }
    if let Some(e) = error_excerpt(n) {
        out.push_str("\nerror:\n");
        for line in e.lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    if !n.links.is_empty() {
        out.push_str("\nlinks:\n");
        for l in &n.links {
            out.push_str(&format!("  {}: {}\n", l.text, l.href));
        }
    }
    if !n.details.is_null() {
        out.push_str("\nThe run's full details are attached as details.json.\n");
    }
    out
}

/// The HTML part: the same as the text part, as tables; every interpolated value is escaped.
/// Failed rows say so in words as well as colour.
pub fn html_body(n: &Notification) -> String {
    let e = crate::html::escape;
    let mut out = format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><h2>{}</h2><table>",
        e(&first_line(n))
    );
    for (k, v) in render::facts(n) {
        out.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            e(k),
            e(&v)
        ));
    }
    out.push_str("</table>");
    let rows = render::step_rows(n);
    if !rows.is_empty() {
        out.push_str(
            "<h3>Steps</h3><table border=\"1\" cellpadding=\"4\" cellspacing=\"0\" style=\"border-collapse:collapse\"><tr>",
        );
        for h in render::TABLE_HEADER {
            out.push_str(&format!("<th align=\"left\">{}</th>", e(&h.to_lowercase())));
        }
        out.push_str("</tr>");
        for r in &rows {
            let style = if r.ok { "" } else { " style=\"color:#b00020\"" };
            out.push_str(&format!(
                "<tr><td>{}</td><td{style}><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                e(&r.name),
                e(&r.result),
                e(&render::ms_text(r.ms)),
                e(&render::ms_text(r.last_good_ms)),
                e(&render::phases_text(r)),
            ));
        }
        out.push_str("</table>");
    }
    if let Some(err) = error_excerpt(n) {
        out.push_str(&format!("<h3>Error</h3><pre>{}</pre>", e(&err)));
    }
    if !n.links.is_empty() {
        out.push_str("<h3>Links</h3><ul>");
        for l in &n.links {
            out.push_str(&format!(
                "<li><a href=\"{}\">{}</a></li>",
                e(&l.href),
                e(&l.text)
            ));
        }
        out.push_str("</ul>");
    }
    if !n.details.is_null() {
        out.push_str("<p>The run's full details are attached as details.json.</p>");
    }
    out.push_str("</body></html>");
    out
}

/// The error as a mail shows it: an HTML error page can be megabytes, so the body keeps the
/// first [`EMAIL_ERROR`] characters and points to the attachment, which has all of it.
fn error_excerpt(n: &Notification) -> Option<String> {
    let e = render::error(n)?;
    let cut = limits::fit_plain(&e, EMAIL_ERROR);
    Some(if cut.len() < e.len() {
        format!("{cut}\n(cut here; the whole error is in details.json)")
    } else {
        cut
    })
}

/// How much of the error a mail's body shows.
const EMAIL_ERROR: usize = 4000;

/// The message: RFC 5322 headers (From, To, Subject, Date, Message-ID, and for a reminder or a
/// resolve In-Reply-To and References naming the trigger), multipart/mixed of the text + HTML
/// alternative and the raw details as `details.json`.
///
/// # Errors
/// lettre refusing the message (cannot happen with validated addresses; permanent if it does).
pub fn build_message(plan: &Email, n: &Notification) -> Result<Message, DeliveryError> {
    let (id, parent) = message_ids(plan, n);
    let mut builder = Message::builder()
        .from(plan.from.clone())
        .subject(subject(n))
        .date(SystemTime::from(n.at))
        .message_id(Some(id));
    if let Some(parent) = parent {
        builder = builder.in_reply_to(parent.clone()).references(parent);
    }
    for to in &plan.to {
        builder = builder.to(to.clone());
    }
    let alternative = MultiPart::alternative_plain_html(text_body(n), html_body(n));
    let body = if n.details.is_null() {
        alternative
    } else {
        let json = serde_json::to_string_pretty(&n.details).unwrap_or_default();
        MultiPart::mixed().multipart(alternative).singlepart(
            Attachment::new("details.json".to_string()).body(
                json,
                ContentType::parse("application/json").unwrap_or(ContentType::TEXT_PLAIN),
            ),
        )
    };
    builder
        .multipart(body)
        .map_err(|e| DeliveryError::Permanent(format!("cannot build the email: {e}")))
}

/// Sends through a fresh SMTP connection per notification (pages are rare; a pooled
/// connection would only add a stale-connection failure mode). The connection is opened by
/// [`super::smtp`], not by lettre's transport: its TLS is the pager's `tls_config` and every
/// reply is read through a size cap; lettre speaks SMTP over it (EHLO, AUTH, the message).
pub struct EmailNotifier {
    plan: Email,
    /// How TLS trusts and identifies: the pager's `tls_config`, else the system's roots
    /// (unused for `tls = "none"`).
    tls: Arc<rustls::ClientConfig>,
    credentials: Option<Credentials>,
    timeout: Duration,
    redactor: crate::redact::Redactor,
}

impl EmailNotifier {
    /// `tls`: the pager's `tls_config`, if it has one.
    pub fn new(
        plan: &Email,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
        redactor: crate::redact::Redactor,
    ) -> EmailNotifier {
        let credentials = match (&plan.username, &plan.password) {
            (Some(user), Some(pass)) => {
                Some(Credentials::new(user.clone(), pass.expose().to_string()))
            }
            _ => None,
        };
        EmailNotifier {
            plan: plan.clone(),
            tls: tls.unwrap_or_else(super::smtp::system_tls_config),
            credentials,
            timeout,
            redactor,
        }
    }

    /// One conversation: connect (TLS first for `tls = "tls"`), EHLO, STARTTLS when asked,
    /// AUTH when configured, the message, QUIT.
    async fn deliver(&self, message: &Message) -> Result<(), DeliveryError> {
        let mut session = super::smtp::open(
            &self.plan.host,
            self.plan.port,
            self.plan.tls,
            &self.tls,
            self.timeout,
        )
        .await?;
        if let Some(credentials) = &self.credentials {
            let authed = session.conn.auth(DEFAULT_MECHANISMS, credentials).await;
            authed.map_err(|e| session.failed(e))?;
        }
        let sent = session
            .conn
            .send(message.envelope(), &message.formatted())
            .await;
        sent.map_err(|e| session.failed(e))?;
        session.conn.abort().await;
        Ok(())
    }
}

impl Notifier for EmailNotifier {
    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move {
            let message = build_message(&self.plan, n)?;
            // The whole conversation, each reply capped in size.
            let whole = self.timeout.saturating_mul(3);
            match tokio::time::timeout(whole, self.deliver(&message)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.scrub(&self.redactor)),
                Err(_) => Err(DeliveryError::Retryable(format!(
                    "the SMTP server did not finish within {}",
                    crate::report::human_duration(whole)
                ))),
            }
        })
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
            text.contains("Subject: [joincanary] sim-join in eu-west-1: join flow failing"),
            "{text}"
        );
        assert!(text_body(&n).starts_with("[FIRING critical] probe <b>&</b> failing\n"));
        assert!(text.contains("multipart/alternative"));
        assert!(text.contains("text/plain"));
        assert!(text.contains("text/html"));
        assert!(html_body(&n).contains("probe &lt;b&gt;&amp;&lt;/b&gt; failing"));
        assert!(!html_body(&n).contains("<b>&</b>"));
    }

    #[test]
    fn every_mail_of_an_incident_has_its_subject() {
        let trigger = sample(EventKind::Trigger);
        let mut reminder = trigger.clone();
        reminder.reminder = true;
        reminder.summary = "another step failing now".into();
        let mut resolve = sample(EventKind::Resolve);
        resolve.started_at = trigger.started_at;
        let want = subject(&trigger);
        assert_eq!(subject(&reminder), want);
        assert_eq!(subject(&resolve), want);
        assert!(text_body(&resolve).starts_with("[RESOLVED] "));
        assert!(text_body(&reminder).starts_with("[FIRING critical, reminder] another step"));
        // Another incident of the same probe (another start) is another thread.
        let mut later = trigger.clone();
        later.started_at += chrono::Duration::hours(2);
        assert_ne!(subject(&later), want);
        let mut t = sample(EventKind::Trigger);
        t.test = true;
        t.summary = "[TEST] joincanary test page from eu-west-1".into();
        assert!(subject(&t).starts_with("[TEST] joincanary test page from eu-west-1 at "));
        assert!(text_body(&t).starts_with("[TEST] joincanary test page from eu-west-1\n"));
    }
}
