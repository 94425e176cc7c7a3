//! A `[[pager]]` table: the keys every kind shares ([`Common`]), the macro that declares each
//! kind's own `deny_unknown_fields` table ([`pager_table!`]), and the checks of one key that
//! every kind uses ([`Entry`]). A leaf of `alert/`: the providers take it, it takes none of them.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use crate::diag::{Ctx, S};

/// The keys every pager has, read before its `type` picks the rest. Other keys are left to
/// the kind's table, which rejects what it does not know.
#[derive(Debug, Deserialize)]
pub struct Common {
    /// The pager's name, for `alerting.pagers`, logs and metrics.
    pub name: S<String>,
    /// `pagerduty`, `opsgenie`, `alertmanager`, `slack`, `webhook` or `email`.
    #[serde(rename = "type")]
    pub kind: S<String>,
    /// Per-request timeout (default 10s).
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub timeout: Option<S<String>>,
    /// First retry delay after a retryable failure; doubles per attempt up to 60 s (default 1s).
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub retry_base: Option<S<String>>,
    /// Give up on a notification this long after it was queued (default 1h).
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub retry_max_age: Option<S<String>>,
    /// How its HTTPS requests trust and present certificates (a private CA, a client
    /// certificate, the name to check): [`crate::tls_client`].
    pub tls_config: Option<S<crate::tls_client::RawTlsConfig>>,
}

/// Declares a pager kind's table: `name` and `type`, the kind's own keys, then `timeout`,
/// `retry_base`, `retry_max_age` and `tls_config`, unknown keys rejected. The shared keys are read by
/// [`Common`]; here they are only accepted (and listed when a key is not).
macro_rules! pager_table {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            #[serde(rename = "name")]
            _name: Option<serde::de::IgnoredAny>,
            #[serde(rename = "type")]
            _type: Option<serde::de::IgnoredAny>,
            $($(#[$fm])* pub $field: $ty,)*
            #[serde(rename = "timeout")]
            _timeout: Option<serde::de::IgnoredAny>,
            #[serde(rename = "retry_base")]
            _retry_base: Option<serde::de::IgnoredAny>,
            #[serde(rename = "retry_max_age")]
            _retry_max_age: Option<serde::de::IgnoredAny>,
            #[serde(rename = "tls_config")]
            _tls_config: Option<serde::de::IgnoredAny>,
        }
    };
}
pub(crate) use pager_table;

/// One `[[pager]]` entry while its keys are checked: its index (`pager[i]`), its table's span
/// (where a missing key is reported) and its `type`.
pub struct Entry<'a> {
    pub i: usize,
    pub span: Range<usize>,
    pub kind: &'a str,
}

impl Entry<'_> {
    /// `pager[i].k`.
    pub fn key(&self, k: &str) -> String {
        format!("pager[{}].{k}", self.i)
    }

    /// "a `slack` pager", "an `email` pager".
    pub fn a_pager(&self) -> String {
        let article = if self.kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        format!("{article} `{}` pager", self.kind)
    }

    /// The kind's table `T` read from `table`; every key `T` does not know is reported at its
    /// value as not applying to this kind, with the keys it takes (serde's list).
    pub fn read<T: serde::de::DeserializeOwned>(
        &self,
        ctx: &mut Ctx<'_>,
        table: Spanned<DeValue<'_>>,
    ) -> Option<T> {
        let file = ctx.file;
        let read = crate::diag::from_table(file, table, |k, span, expected| {
            ctx.error(
                Some(span),
                self.key(k),
                format_args!(
                    "does not apply to {}{}, {expected}",
                    self.a_pager(),
                    crate::diag::did_you_mean(k, expected)
                ),
            );
        });
        read.map_err(|e| ctx.errors.push(e)).ok()
    }

    /// A required string key, `${ENV}`-substituted; reports its absence (at the pager's table).
    pub fn required(
        &self,
        ctx: &mut Ctx<'_>,
        value: Option<&S<String>>,
        k: &str,
    ) -> Option<String> {
        match value {
            Some(v) => non_empty(ctx, v, &self.key(k)),
            None => {
                ctx.error(
                    Some(self.span.clone()),
                    self.key(k),
                    format_args!("is required for {}", self.a_pager()),
                );
                None
            }
        }
    }

    /// An optional string key, `${ENV}`-substituted (`None` when absent or invalid; invalid is
    /// reported).
    pub fn optional(
        &self,
        ctx: &mut Ctx<'_>,
        value: Option<&S<String>>,
        k: &str,
    ) -> Option<String> {
        non_empty(ctx, value?, &self.key(k))
    }

    /// Checks an http(s) URL. The message never repeats the URL: webhook URLs are secrets.
    pub fn url(
        &self,
        ctx: &mut Ctx<'_>,
        text: String,
        value: Option<&S<String>>,
        k: &str,
    ) -> Option<String> {
        match url::Url::parse(&text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(text),
            _ => {
                ctx.error(
                    value.map(|s| s.span()),
                    self.key(k),
                    "is not an http:// or https:// URL",
                );
                None
            }
        }
    }

    /// A `headers` table (`{ Authorization = "Bearer ${TOKEN}" }`), `${ENV}`-substituted: every
    /// name and value must be sendable; the values are secrets and never repeated. `None` when
    /// any is not (each reported).
    pub fn headers(
        &self,
        ctx: &mut Ctx<'_>,
        raw: &std::collections::BTreeMap<String, S<String>>,
    ) -> Option<Vec<(String, crate::secret::Secret)>> {
        let mut headers = Vec::new();
        let mut ok = true;
        for (name, value) in raw {
            let key = self.key(&format!("headers.{name}"));
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                ctx.error(Some(value.span()), &key, "is not a valid header name");
                ok = false;
                continue;
            }
            let Some(v) = ctx.env_str(value, &key) else {
                ok = false;
                continue;
            };
            if reqwest::header::HeaderValue::from_str(&v).is_err() {
                // The value may be a secret: never repeat it.
                ctx.error(Some(value.span()), &key, "has a value that cannot be sent");
                ok = false;
                continue;
            }
            headers.push((name.clone(), crate::secret::Secret::new(v)));
        }
        ok.then_some(headers)
    }
}

fn non_empty(ctx: &mut Ctx<'_>, v: &S<String>, key: &str) -> Option<String> {
    let text = ctx.env_str(v, key)?;
    if text.trim().is_empty() {
        ctx.error(Some(v.span()), key, "must not be empty");
        return None;
    }
    Some(text.trim().to_string())
}
