//! The dead man's switch: `[[heartbeat]]` pings (a Healthchecks.io / Cronitor / Better Stack
//! style URL, or Opsgenie's heartbeat API) sent while the scheduler is healthy, so that something
//! other than the prober notices when it dies, hangs or stops scheduling.
//!
//! The pings follow the scheduler's liveness ([`Liveness`]), never probe results: a platform
//! outage must page through the pagers, not look like a dead prober.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::clock::Clock;
use crate::diag::{Ctx, S, table_keys};
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::secret::Secret;

/// The keys every `[[heartbeat]]` has, read before its `type` picks the rest (the type's own
/// table, [`RawHttp`] or [`RawOpsgenie`]).
#[derive(Debug, Deserialize)]
pub struct Common {
    pub name: S<String>,
    /// `http` (a URL that counts pings) or `opsgenie` (the heartbeat ping API).
    #[serde(rename = "type")]
    pub kind: S<String>,
    /// Time between pings (default 1m).
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub interval: Option<S<String>>,
    /// Per-ping timeout (default 10s).
    #[serde(default, deserialize_with = "crate::diag::duration")]
    pub timeout: Option<S<String>>,
}

/// `type = "http"`: any URL that counts requests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// The ping URL.
    pub url: Option<S<String>>,
    /// `GET` (default) or `POST`.
    pub method: Option<S<String>>,
    /// A private CA, a client certificate, the name to check ([`crate::tls_client`]), as on
    /// an HTTP pager: for a self-hosted dead man's switch.
    pub tls_config: Option<S<crate::tls_client::RawTlsConfig>>,
}

/// `type = "opsgenie"`: Opsgenie's heartbeat ping API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpsgenie {
    /// The API base URL (default by `region`).
    pub url: Option<S<String>>,
    /// The API key (sent as `GenieKey`).
    pub api_key: Option<S<String>>,
    /// `us` (default) or `eu`.
    pub region: Option<S<String>>,
    /// The heartbeat's name in Opsgenie (default: `name`).
    pub heartbeat: Option<S<String>>,
}

/// Reads a type's table from a `[[heartbeat]]` entry and validates it into its target.
type Parse = fn(&mut Ctx<'_>, &Entry<'_>, Spanned<DeValue<'_>>) -> Option<Target>;
/// The keys of a type's own table ([`table_keys`] of it).
type Keys = fn() -> &'static [&'static str];

/// Every heartbeat type: its `type` word, the keys of its own table, and its parser (the
/// type's `deny_unknown_fields` table, read once `type` is known, as pagers' `KINDS` do).
const TYPES: [(&str, Keys, Parse); 2] = [
    ("http", table_keys::<RawHttp>, |c, e, t| {
        e.read(c, t).and_then(|r| RawHttp::build(c, e, &r))
    }),
    ("opsgenie", table_keys::<RawOpsgenie>, |c, e, t| {
        e.read(c, t).and_then(|r| RawOpsgenie::build(c, e, &r))
    }),
];

/// Default time between two pings.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default per-ping timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

const OPSGENIE_US: &str = "https://api.opsgenie.com";
const OPSGENIE_EU: &str = "https://api.eu.opsgenie.com";

/// One configured heartbeat. `Debug` shows no secret (URLs and keys are [`Secret`]s).
#[derive(Debug, Clone)]
pub struct HeartbeatPlan {
    pub name: String,
    pub target: Target,
    pub interval: Duration,
    pub timeout: Duration,
}

/// Where a ping goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// Any URL that counts requests (the URL usually holds the check's token); `tls`: its
    /// `tls_config`.
    Http {
        url: Secret,
        post: bool,
        tls: Option<Arc<rustls::ClientConfig>>,
    },
    /// `GET {base}/v2/heartbeats/{heartbeat}/ping` with `Authorization: GenieKey {api_key}`.
    Opsgenie {
        base: String,
        heartbeat: String,
        api_key: Secret,
    },
}

impl Target {
    /// The `type` word: `http` or `opsgenie`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Http { .. } => "http",
            Target::Opsgenie { .. } => "opsgenie",
        }
    }

    /// Method, URL and headers of one ping.
    fn request(&self) -> (reqwest::Method, String, Option<String>) {
        match self {
            Target::Http { url, post, .. } => (
                if *post {
                    reqwest::Method::POST
                } else {
                    reqwest::Method::GET
                },
                url.expose().to_string(),
                None,
            ),
            Target::Opsgenie {
                base,
                heartbeat,
                api_key,
            } => {
                let name: String = url::form_urlencoded::byte_serialize(heartbeat.as_bytes())
                    .collect::<String>()
                    .replace('+', "%20");
                (
                    reqwest::Method::GET,
                    format!("{base}/v2/heartbeats/{name}/ping"),
                    Some(format!("GenieKey {}", api_key.expose())),
                )
            }
        }
    }
}

/// One `[[heartbeat]]` entry while its keys are checked: its index (`heartbeat[i]`), its
/// table's span (where a missing key is reported), its `type` and its `name`.
pub(crate) struct Entry<'a> {
    i: usize,
    span: Range<usize>,
    kind: &'a str,
    name: &'a str,
}

impl Entry<'_> {
    /// `heartbeat[i].k`.
    fn key(&self, k: &str) -> String {
        format!("heartbeat[{}].{k}", self.i)
    }

    /// "an `http` heartbeat", "an `opsgenie` heartbeat" (both read with "an", "an aitch").
    fn a_heartbeat(&self) -> String {
        format!("an `{}` heartbeat", self.kind)
    }

    /// The type's table `T`, read from the entry's keys that are not [`Common`]'s. A key of
    /// another type does not apply to this one (reported at its value); any other key is
    /// unknown (reported at the key). Both list every key this type takes.
    fn read<T: serde::de::DeserializeOwned>(
        &self,
        ctx: &mut Ctx<'_>,
        table: Spanned<DeValue<'_>>,
    ) -> Option<T> {
        let common = table_keys::<Common>();
        let own = table_keys::<T>();
        // Listed as written in a table: `name`, `type`, the type's own, `interval`, `timeout`.
        let takes: Vec<String> = common[..2]
            .iter()
            .chain(own)
            .chain(&common[2..])
            .map(|k| format!("`{k}`"))
            .collect();
        let takes = takes.join(", ");
        let span = table.span();
        let DeValue::Table(keys) = table.into_inner() else {
            return None;
        };
        let mut mine = DeTable::new();
        for (key, value) in keys {
            let k: &str = key.get_ref().as_ref();
            if common.contains(&k) {
                continue;
            }
            if own.contains(&k) {
                mine.insert(key, value);
            } else if TYPES.iter().any(|(_, keys, _)| keys().contains(&k)) {
                ctx.error(
                    Some(value.span()),
                    self.key(k),
                    format_args!(
                        "does not apply to {}{}, expected one of {takes}",
                        self.a_heartbeat(),
                        crate::diag::did_you_mean(k, &takes)
                    ),
                );
            } else {
                ctx.error(
                    Some(key.span()),
                    self.key(k),
                    format_args!(
                        "unknown field `{k}`{}, expected one of {takes}",
                        crate::diag::did_you_mean(k, &takes)
                    ),
                );
            }
        }
        // Every key left is `T`'s: only a wrong type can fail here.
        crate::diag::from_table(
            ctx.file,
            Spanned::new(span, DeValue::Table(mine)),
            |_, _, _| {},
        )
        .map_err(|e| ctx.errors.push(e))
        .ok()
    }

    /// A required `url`: http(s) with a host. The message never repeats the value (it may hold
    /// a token).
    fn url(&self, ctx: &mut Ctx<'_>, value: Option<&S<String>>) -> Option<String> {
        let key = self.key("url");
        let Some(value) = value else {
            ctx.error(Some(self.span.clone()), key, "is required");
            return None;
        };
        let text = ctx.env_str(value, &key)?;
        match url::Url::parse(&text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(text),
            _ => {
                ctx.error(Some(value.span()), key, "is not an http:// or https:// URL");
                None
            }
        }
    }
}

impl RawHttp {
    fn build(ctx: &mut Ctx<'_>, e: &Entry<'_>, r: &RawHttp) -> Option<Target> {
        let url = e.url(ctx, r.url.as_ref());
        let post = match &r.method {
            None => Some(false),
            Some(m) => match ctx.env_str(m, &e.key("method")).as_deref() {
                Some("GET") => Some(false),
                Some("POST") => Some(true),
                Some(_) => {
                    ctx.error(Some(m.span()), e.key("method"), "must be `GET` or `POST`");
                    None
                }
                None => None,
            },
        };
        let tls = match &r.tls_config {
            None => Some(None),
            Some(t) => crate::tls_client::parse(ctx, t, &e.key("tls_config")).map(Some),
        };
        let (url, post, tls) = (url?, post?, tls?);
        Some(Target::Http {
            url: Secret::new(url),
            post,
            tls,
        })
    }
}

impl RawOpsgenie {
    fn build(ctx: &mut Ctx<'_>, e: &Entry<'_>, r: &RawOpsgenie) -> Option<Target> {
        let base = match (&r.url, &r.region) {
            (Some(_), _) => e
                .url(ctx, r.url.as_ref())
                .map(|u| u.trim_end_matches('/').to_string()),
            (None, None) => Some(OPSGENIE_US.to_string()),
            (None, Some(reg)) => match ctx.env_str(reg, &e.key("region")).as_deref() {
                Some("us") => Some(OPSGENIE_US.to_string()),
                Some("eu") => Some(OPSGENIE_EU.to_string()),
                Some(_) => {
                    ctx.error(Some(reg.span()), e.key("region"), "must be `us` or `eu`");
                    None
                }
                None => None,
            },
        };
        let api_key = match &r.api_key {
            Some(k) => ctx.env_str(k, &e.key("api_key")).filter(|text| {
                let ok = !text.trim().is_empty();
                if !ok {
                    ctx.error(Some(k.span()), e.key("api_key"), "is empty");
                }
                ok
            }),
            None => {
                ctx.error(
                    Some(e.span.clone()),
                    e.key("api_key"),
                    format_args!("is required for {}", e.a_heartbeat()),
                );
                None
            }
        };
        let heartbeat = match &r.heartbeat {
            Some(h) => ctx.env_str(h, &e.key("heartbeat")),
            None => Some(e.name.to_string()),
        };
        Some(Target::Opsgenie {
            base: base?,
            heartbeat: heartbeat?,
            api_key: Secret::new(api_key?),
        })
    }
}

/// Reads the `[[heartbeat]]` tables (from [`crate::diag::array_tables`]): the keys every
/// heartbeat has, then its type's own; problems go to `ctx` with their line.
pub(crate) fn parse(ctx: &mut Ctx<'_>, tables: Vec<Spanned<DeValue<'_>>>) -> Vec<HeartbeatPlan> {
    let mut out: Vec<HeartbeatPlan> = Vec::new();
    for (i, table) in tables.into_iter().enumerate() {
        let key = |k: &str| format!("heartbeat[{i}].{k}");
        let r: Common = match crate::diag::from_table(ctx.file, table.clone(), |_, _, _| {}) {
            Ok(c) => c,
            Err(e) => {
                ctx.errors.push(e);
                continue;
            }
        };
        let name = ctx.env_str(&r.name, &key("name")).unwrap_or_default();
        if !crate::diag::valid_label(&name) {
            ctx.error(
                Some(r.name.span()),
                key("name"),
                "must be letters, digits, `-`, `_` or `.`",
            );
        } else if out.iter().any(|h| h.name == name) {
            ctx.error(
                Some(r.name.span()),
                key("name"),
                format_args!("another heartbeat is named `{name}`"),
            );
        }
        let interval = r.interval.as_ref().map_or(Some(DEFAULT_INTERVAL), |v| {
            ctx.duration(v, &key("interval"))
        });
        let timeout = r
            .timeout
            .as_ref()
            .map_or(Some(DEFAULT_TIMEOUT), |v| ctx.duration(v, &key("timeout")));
        if let (Some(i_), Some(t)) = (interval, timeout)
            && t >= i_
        {
            // At the one written (the timeout first): the other may be its default.
            match (&r.timeout, &r.interval) {
                (Some(t), _) => ctx.error(
                    Some(t.span()),
                    key("timeout"),
                    "must be shorter than the interval",
                ),
                (None, v) => ctx.error(
                    v.as_ref().map(|v| v.span()),
                    key("interval"),
                    format_args!(
                        "must be longer than the timeout ({}, the default)",
                        humantime::format_duration(t)
                    ),
                ),
            }
        }
        let kind = ctx.env_str(&r.kind, &key("type")).unwrap_or_default();
        let e = Entry {
            i,
            span: table.span(),
            kind: &kind,
            name: &name,
        };
        let target = match TYPES.iter().find(|(word, _, _)| *word == kind) {
            Some((_, _, parse)) => parse(ctx, &e, table),
            None => {
                ctx.error(
                    Some(r.kind.span()),
                    key("type"),
                    format_args!(
                        "unknown heartbeat type `{kind}`{}, expected {}",
                        crate::diag::did_you_mean_among(&kind, TYPES.map(|(word, _, _)| word)),
                        TYPES.map(|(word, _, _)| format!("`{word}`")).join(" or ")
                    ),
                );
                None
            }
        };
        if let (Some(target), Some(interval), Some(timeout)) = (target, interval, timeout) {
            out.push(HeartbeatPlan {
                name,
                target,
                interval,
                timeout,
            });
        }
    }
    out
}

/// One ping, under its timeout: `Err` is a message without URL or key.
pub type PingFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
/// Sends one ping (the real one is [`http_pinger`]; tests count calls under a paused clock).
pub type Pinger = Arc<dyn Fn() -> PingFuture + Send + Sync>;

/// The real pinger for `plan`: redirects are not followed (they would carry the key elsewhere).
///
/// # Errors
/// The HTTP client cannot be built (TLS set-up).
pub fn http_pinger(plan: &HeartbeatPlan) -> Result<Pinger, String> {
    let tls = match &plan.target {
        Target::Http { tls, .. } => tls.as_ref(),
        Target::Opsgenie { .. } => None,
    };
    let client = crate::tls_client::http_builder(tls)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("joincanary/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| crate::net::error_chain(&e.without_url()))?;
    let (method, url, auth) = plan.target.request();
    let timeout = plan.timeout;
    Ok(Arc::new(move || {
        let mut req = client
            .request(method.clone(), &url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_LENGTH, "0");
        if let Some(a) = &auth {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        Box::pin(async move {
            match req.send().await {
                Ok(resp) if resp.status().is_success() => Ok(()),
                Ok(resp) => Err(format!("HTTP {}", resp.status())),
                Err(e) if e.is_timeout() => Err("no reply in time".to_string()),
                Err(e) => Err(crate::net::error_chain(&e.without_url())),
            }
        })
    }))
}

/// Pings every `interval` (the first at once) while `liveness` says the scheduler is healthy;
/// a stuck scheduler's pings stop, so the receiving end raises the alarm. Returns on `stop`.
pub async fn run(
    plan: HeartbeatPlan,
    ping: Pinger,
    liveness: Liveness,
    metrics: Metrics,
    clock: Clock,
    stop: CancellationToken,
) {
    metrics.register_heartbeat(&plan.name);
    let mut next = Instant::now();
    let mut withheld = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(next) => {}
        }
        // A late wake-up (a busy machine) does not make a burst of pings.
        next = (next + plan.interval).max(Instant::now());
        if let Some(why) = liveness.stalled() {
            if !withheld {
                tracing::error!(heartbeat = %plan.name, why = %why, "the scheduler is stuck: heartbeat pings withheld until it recovers");
            }
            withheld = true;
            continue;
        }
        if withheld {
            tracing::info!(heartbeat = %plan.name, "the scheduler recovered: heartbeat pings resume");
            withheld = false;
        }
        let result = tokio::select! {
            () = stop.cancelled() => return,
            r = tokio::time::timeout(plan.timeout, ping()) => r.unwrap_or_else(|_| Err("no reply in time".to_string())),
        };
        metrics.count_heartbeat(&plan.name, result.is_ok(), clock.system_now());
        match result {
            Ok(()) => tracing::debug!(heartbeat = %plan.name, "heartbeat ping sent"),
            Err(e) => tracing::warn!(heartbeat = %plan.name, error = %e, "heartbeat ping failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting() -> (Pinger, Arc<AtomicUsize>) {
        let n = Arc::new(AtomicUsize::new(0));
        let c = n.clone();
        let p: Pinger = Arc::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(()) })
        });
        (p, n)
    }

    fn plan(interval: u64) -> HeartbeatPlan {
        HeartbeatPlan {
            name: "hb".into(),
            target: Target::Http {
                url: Secret::new("http://127.0.0.1:9/ping/token"),
                post: false,
                tls: None,
            },
            interval: Duration::from_secs(interval),
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pings_every_interval_while_healthy_and_stop_while_stuck() {
        let live = Liveness::new(Duration::from_secs(30));
        let (ping, count) = counting();
        let metrics = Metrics::new("t").unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            plan(10),
            ping,
            live.clone(),
            metrics.clone(),
            Clock::system(),
            stop.clone(),
        ));
        // Healthy for 60 s: the consumer beats every 5 s; a probe due every 10 s keeps moving.
        for s in 0..60u64 {
            if s % 5 == 0 {
                live.beat();
            }
            live.due("p", Instant::now() + Duration::from_secs(10 - s % 10));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // Pings at 0, 10, ..., 50 s.
        assert_eq!(count.load(Ordering::SeqCst), 6);
        // The scheduler hangs: nothing beats after 55 s, the probe's run at 60 s never starts.
        tokio::time::sleep(Duration::from_secs(125)).await;
        // 60, 70 and 80 go out (stuck only 30 s after the last progress), then none.
        assert_eq!(count.load(Ordering::SeqCst), 9);
        assert_eq!(
            live.stalled().as_deref(),
            Some("the run consumer has not progressed for 130.0 s")
        );
        // It recovers: pings resume at the next interval.
        live.beat();
        live.due("p", Instant::now() + Duration::from_secs(10));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(count.load(Ordering::SeqCst), 10);
        let text = metrics.render();
        assert!(
            text.contains(
                "joincanary_heartbeats_total{heartbeat=\"hb\",region=\"t\",result=\"success\"} 10"
            ),
            "{text}"
        );
        assert!(text.contains(
            "joincanary_heartbeats_total{heartbeat=\"hb\",region=\"t\",result=\"failure\"} 0"
        ));
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_overdue_probe_counts_as_stuck_even_if_the_consumer_ticks() {
        let live = Liveness::new(Duration::from_secs(30));
        live.due("sim-join", Instant::now() + Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(35)).await;
        live.beat();
        assert_eq!(live.stalled(), None, "30 s late is within the bound");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            live.stalled().as_deref(),
            Some("probe `sim-join` should have started 31.0 s ago")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_ping_is_counted_and_the_next_one_still_goes() {
        let live = Liveness::new(Duration::from_secs(3600));
        let n = Arc::new(AtomicUsize::new(0));
        let c = n.clone();
        let ping: Pinger = Arc::new(move || {
            let k = c.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if k == 0 {
                    // Hangs past the timeout.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok(())
            })
        });
        let metrics = Metrics::new("t").unwrap();
        let stop = CancellationToken::new();
        // The stamp of the last success is the service's clock as the system clock reads it
        // (here stepped an hour forward since start): dashboards compare it with `time()`.
        let clock = Clock::starting_at("2026-01-01T00:00:00Z".parse().unwrap());
        clock.step_system(chrono::Duration::hours(1));
        let task = tokio::spawn(run(
            plan(10),
            ping,
            live,
            metrics.clone(),
            clock,
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(15)).await;
        stop.cancel();
        task.await.unwrap();
        let text = metrics.render();
        assert!(text.contains(
            "joincanary_heartbeats_total{heartbeat=\"hb\",region=\"t\",result=\"failure\"} 1"
        ));
        assert!(text.contains(
            "joincanary_heartbeats_total{heartbeat=\"hb\",region=\"t\",result=\"success\"} 1"
        ));
        // The second ping went out 10 s after the clock's 2026-01-01T00:00:00Z, which the
        // system clock calls 01:00:10.
        assert!(
            text.contains(
                "joincanary_heartbeat_last_success_timestamp_seconds{heartbeat=\"hb\",region=\"t\"} 1767229210\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn opsgenie_ping_request() {
        let t = Target::Opsgenie {
            base: OPSGENIE_EU.into(),
            heartbeat: "canary eu".into(),
            api_key: Secret::new("k-123"),
        };
        let (m, url, auth) = t.request();
        assert_eq!(m, reqwest::Method::GET);
        assert_eq!(
            url,
            "https://api.eu.opsgenie.com/v2/heartbeats/canary%20eu/ping"
        );
        assert_eq!(auth.as_deref(), Some("GenieKey k-123"));
        assert!(!format!("{t:?}").contains("k-123"));
    }
}
