//! Peers: the `peers` key of the service config ([`Peer`], parsed here by [`parse_peers`]), and
//! a peer's status document read back by the fleet page: its lists are cut while they are
//! parsed ([`first`]) and its texts and numbers after ([`StatusDoc::bounded`]), so a hostile or
//! broken peer cannot make the page huge or the prober's memory grow. The saved history is cut
//! while parsed with the same helpers ([`last`], [`first_entries`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::Deserialize;

use super::{HISTORY_LEN, StatusDoc};
use crate::diag::{Ctx, S};
use crate::report::cut;

/// What a peer's document may hold before it is cut: enough for any real fleet, little enough
/// that a hostile peer cannot make the page huge. The lists are cut as they are parsed
/// ([`first`]), the texts after.
pub(super) const PEER_MAX_PROBES: usize = 500;
pub(super) const PEER_MAX_ALERTS: usize = 20;
const PEER_MAX_STEPS: usize = 50;
pub(super) const PEER_MAX_PAGERS: usize = 50;
/// Names and labels; summaries and errors.
const PEER_MAX_NAME: usize = 100;
const PEER_MAX_TEXT: usize = 1000;

/// A prober in another region, for the fleet status page.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its base URL (may carry `user:password@`, never shown).
    pub url: String,
    /// Its region as configured: the page's name for it until it answers (and after, if it
    /// never does).
    pub region: Option<String>,
    /// `tls_config`: how its https is trusted and what client certificate is offered; `None`,
    /// the system's roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// The same peer: the same URL, region and `tls_config` as built (a config read again builds
/// another, so a reload refetches once).
impl PartialEq for Peer {
    fn eq(&self, other: &Peer) -> bool {
        let same_tls = match (&self.tls, &other.tls) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        self.url == other.url && self.region == other.region && same_tls
    }
}

impl Eq for Peer {}

/// `peers`: http(s) base URLs, each once, as a string or `{ url, region, tls_config }`.
/// Credentials in a URL (`http://user:pass@host`) are allowed for peers behind basic auth; the
/// page never shows them.
pub(crate) fn parse_peers(ctx: &mut Ctx<'_>, raw: Option<&S<Vec<S<toml::Value>>>>) -> Vec<Peer> {
    let mut peers: Vec<Peer> = Vec::new();
    for (i, entry) in raw
        .map(|r| r.get_ref().as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let key = format!("peers[{i}]");
        let span = entry.span();
        // A part of an entry (`{ url = …, region = … }`) is placed at its own value.
        let string = |ctx: &mut Ctx<'_>, v: &toml::Value, key: &str| {
            let at = ctx.written(key, span.clone());
            match v.as_str() {
                Some(text) => ctx.env_str(&S::new(at, text.to_string()), key),
                None => {
                    ctx.error(Some(at), key, "must be a string");
                    None
                }
            }
        };
        let (url, region, tls) = match entry.get_ref() {
            toml::Value::Table(t) => {
                if let Some(unknown) = t
                    .keys()
                    .find(|k| !matches!(k.as_str(), "url" | "region" | "tls_config"))
                {
                    let unknown = format!("{key}.{unknown}");
                    ctx.error(
                        Some(ctx.written(&unknown, span.clone())),
                        unknown,
                        "unknown key (a peer has `url`, `region` and `tls_config`)",
                    );
                    continue;
                }
                let Some(url) = t.get("url") else {
                    ctx.error(Some(span.clone()), format!("{key}.url"), "is required");
                    continue;
                };
                let region = match t.get("region") {
                    Some(r) => {
                        let rkey = format!("{key}.region");
                        let Some(region) = string(ctx, r, &rkey) else {
                            continue;
                        };
                        if region.is_empty() || region.chars().any(|c| c.is_control() || c == '"') {
                            ctx.error(
                                Some(ctx.written(&rkey, span.clone())),
                                rkey,
                                "must be a non-empty label without quotes or control characters",
                            );
                            continue;
                        }
                        Some(region)
                    }
                    None => None,
                };
                let tls = if t.contains_key("tls_config") {
                    let Some(c) = tls_config(ctx, &key, span.clone()) else {
                        continue;
                    };
                    Some(c)
                } else {
                    None
                };
                (string(ctx, url, &format!("{key}.url")), region, tls)
            }
            other => (string(ctx, other, &key), None, None),
        };
        let Some(text) = url else {
            continue;
        };
        let text = text.trim().trim_end_matches('/').to_string();
        match url::Url::parse(&text) {
            // No query or fragment: `/api/v1/status` is appended to the base, and a query
            // (`?token=…`) swallowed the path and was shown on the fleet page whole.
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.query().is_none()
                    && u.fragment().is_none() =>
            {
                if peers.iter().any(|p| p.url == text) {
                    ctx.error(Some(span), key, "listed twice");
                } else {
                    peers.push(Peer {
                        url: text,
                        region,
                        tls,
                    });
                }
            }
            _ => ctx.error(
                Some(span),
                key,
                "must be a prober's base URL like http://prober-us:9464",
            ),
        }
    }
    peers
}

/// A peer's `tls_config` (at `{key}.tls_config`), read from the file with its spans so that
/// each problem is placed at its own key, as a pager's is.
fn tls_config(
    ctx: &mut Ctx<'_>,
    key: &str,
    entry: std::ops::Range<usize>,
) -> Option<Arc<rustls::ClientConfig>> {
    let key = format!("{key}.tls_config");
    let Some(value) = crate::diag::value_at(ctx.file, &key) else {
        ctx.error(Some(entry), key, "cannot be read here");
        return None;
    };
    let span = value.span();
    let file = ctx.file;
    let read = crate::diag::from_table::<crate::tls_client::RawTlsConfig>(
        file,
        value,
        |k, at, expected| {
            ctx.error(
                Some(at),
                format!("{key}.{k}"),
                format_args!(
                    "unknown key{}, {expected}",
                    crate::diag::did_you_mean(k, expected)
                ),
            );
        },
    );
    match read {
        Ok(raw) => crate::tls_client::parse(ctx, &S::new(span, raw), &key),
        Err(e) => {
            ctx.errors.push(e);
            None
        }
    }
}

/// A list read from a peer (only peers' documents are parsed into these types), keeping its
/// first `N` elements: the rest are parsed past without being kept. Every field of a
/// [`ProbeStatus`](super::ProbeStatus) has a default, so 4 MiB of `{},` is 1.4 million probes of some 400 bytes
/// each: cut only after parsing, one peer took the prober from 36 to 434 MB (8 are fetched at
/// once).
pub(super) fn first<'de, D, C, const N: usize>(d: D) -> Result<C, D::Error>
where
    D: serde::Deserializer<'de>,
    C: Default + IntoIterator + Extend<<C as IntoIterator>::Item>,
    C::Item: Deserialize<'de>,
{
    struct Bounded<T, C, const N: usize>(std::marker::PhantomData<(T, C)>);
    impl<'de, T: Deserialize<'de>, C: Default + Extend<T>, const N: usize> serde::de::Visitor<'de>
        for Bounded<T, C, N>
    {
        type Value = C;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<C, A::Error> {
            let mut out = C::default();
            for _ in 0..N {
                match seq.next_element::<T>()? {
                    Some(t) => out.extend(Some(t)),
                    None => return Ok(out),
                }
            }
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(out)
        }
    }
    d.deserialize_seq(Bounded::<C::Item, C, N>(std::marker::PhantomData))
}

/// [`first`] for a list kept newest last (the hourly roll-ups): its last `N` elements, the
/// older ones dropped as the newer arrive, so at most `N` are ever held.
pub(super) fn last<'de, D, T, const N: usize>(d: D) -> Result<VecDeque<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<T, const N: usize>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>, const N: usize> serde::de::Visitor<'de> for Bounded<T, N> {
        type Value = VecDeque<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = VecDeque::new();
            while let Some(t) = seq.next_element::<T>()? {
                if out.len() == N {
                    out.pop_front();
                }
                out.push_back(t);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Bounded::<T, N>(std::marker::PhantomData))
}

/// [`first`] for a map: its first `N` entries, the rest parsed past without being kept.
pub(super) fn first_entries<'de, D, V, const N: usize>(
    d: D,
) -> Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Bounded<V, const N: usize>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>, const N: usize> serde::de::Visitor<'de> for Bounded<V, N> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while out.len() < N {
                match map.next_entry::<String, V>()? {
                    Some((k, v)) => {
                        out.insert(k, v);
                    }
                    None => return Ok(out),
                }
            }
            while map
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            Ok(out)
        }
    }
    d.deserialize_map(Bounded::<V, N>(std::marker::PhantomData))
}

impl StatusDoc {
    /// The document with every list and text cut to the page's bounds and every number made
    /// sane: what the page renders of a peer (everything is escaped there as well).
    pub fn bounded(mut self) -> StatusDoc {
        let name = |s: &mut String| *s = cut(s, PEER_MAX_NAME);
        let text = |s: &mut Option<String>| {
            if let Some(t) = s {
                *t = cut(t, PEER_MAX_TEXT);
            }
        };
        name(&mut self.region);
        name(&mut self.version);
        text(&mut self.status_url);
        text(&mut self.dashboard_url);
        self.probes.truncate(PEER_MAX_PROBES);
        for p in &mut self.probes {
            name(&mut p.probe);
            name(&mut p.schedule);
            p.history.truncate(HISTORY_LEN);
            for h in &mut p.history {
                if let Some(step) = &mut h.failed_step {
                    *step = cut(step, PEER_MAX_NAME).into();
                }
                if !h.duration_ms.is_finite() || h.duration_ms < 0.0 {
                    h.duration_ms = 0.0;
                }
            }
            p.alerts.truncate(PEER_MAX_ALERTS);
            for a in &mut p.alerts {
                name(&mut a.dedup_key);
                a.summary = cut(&a.summary, PEER_MAX_TEXT);
            }
            for run in [&mut p.last, &mut p.last_good].into_iter().flatten() {
                let r = Arc::make_mut(run);
                name(&mut r.probe);
                name(&mut r.region);
                text(&mut r.error);
                if let Some(step) = &mut r.failed_step {
                    *step = cut(step, PEER_MAX_NAME);
                }
                r.steps.truncate(PEER_MAX_STEPS);
                for step in &mut r.steps {
                    name(&mut step.name);
                    text(&mut step.error);
                    step.warnings.truncate(PEER_MAX_ALERTS);
                    for w in &mut step.warnings {
                        *w = cut(w, PEER_MAX_TEXT);
                    }
                    step.gauges.clear();
                }
            }
            crate::rollup::sanitize(&mut p.hourly);
        }
        self.delivery.truncate(PEER_MAX_PAGERS);
        for d in &mut self.delivery {
            name(&mut d.pager);
            name(&mut d.kind);
            if let Some(e) = &mut d.last_error {
                *e = cut(e, crate::delivery::MAX_ERROR_CHARS);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer's lists are cut while they are parsed: what is past the bound is parsed past,
    /// never built (a hostile peer's 4 MiB of `{}` probes cost 400 MB before).
    #[test]
    fn a_peers_lists_are_cut_while_they_are_parsed() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        static BUILT: AtomicUsize = AtomicUsize::new(0);
        struct Counted;
        impl<'de> Deserialize<'de> for Counted {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Counted, D::Error> {
                serde::de::IgnoredAny::deserialize(d)?;
                BUILT.fetch_add(1, SeqCst);
                Ok(Counted)
            }
        }
        let list = format!("[{}]", vec!["{}"; 10_000].join(","));
        let kept: Vec<Counted> =
            first::<_, _, 3>(&mut serde_json::Deserializer::from_str(&list)).unwrap();
        assert_eq!((kept.len(), BUILT.load(SeqCst)), (3, 3));
        let short: Vec<Counted> =
            first::<_, _, 3>(&mut serde_json::Deserializer::from_str("[{}, 1]")).unwrap();
        assert_eq!(short.len(), 2);

        let doc = format!(
            r#"{{"region":"x","probes":[{}],"delivery":[{}]}}"#,
            vec![r#"{"hourly":[{},{}],"history":[]}"#; 2 * PEER_MAX_PROBES].join(","),
            vec!["{}"; 2 * PEER_MAX_PAGERS].join(",")
        );
        let d: StatusDoc = serde_json::from_str(&doc).unwrap();
        assert_eq!(
            (d.probes.len(), d.delivery.len(), d.probes[0].hourly.len()),
            (PEER_MAX_PROBES, PEER_MAX_PAGERS, 2)
        );
        assert!(serde_json::from_str::<StatusDoc>(r#"{"probes":{}}"#).is_err());
    }
}
