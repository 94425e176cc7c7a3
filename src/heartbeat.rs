//! The dead man's switch: `[[heartbeat]]` pings (a Healthchecks.io / Cronitor / Better Stack
//! style URL, or Opsgenie's heartbeat API) sent while the scheduler is healthy, so that something
//! other than the prober notices when it dies, hangs or stops scheduling.
//!
//! The pings follow the scheduler's liveness ([`Liveness`]), never probe results: a platform
//! outage must page through the pagers, not look like a dead prober.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::diag::Ctx;
use crate::diag::S;
use crate::metrics::Metrics;
use crate::secret::Secret;

/// `[[heartbeat]]`: a dead man's switch pinged while the scheduler is healthy.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    pub name: S<String>,
    /// `http` (a URL that counts pings) or `opsgenie` (the heartbeat ping API).
    #[serde(rename = "type")]
    pub kind: S<String>,
    /// `http`: the ping URL; `opsgenie`: the API base URL (default by `region`).
    pub url: Option<S<String>>,
    /// `http`: `GET` (default) or `POST`.
    pub method: Option<S<String>>,
    /// `opsgenie`: the API key (sent as `GenieKey`).
    pub api_key: Option<S<String>>,
    /// `opsgenie`: `us` (default) or `eu`.
    pub region: Option<S<String>>,
    /// `opsgenie`: the heartbeat's name in Opsgenie (default: `name`).
    pub heartbeat: Option<S<String>>,
    /// Time between pings (default 1m).
    pub interval: Option<S<String>>,
    /// Per-ping timeout (default 10s).
    pub timeout: Option<S<String>>,
}

/// Default time between two pings.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default per-ping timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The scheduler counts as stuck when a probe's next run is this far overdue or the run
/// consumer has not ticked for this long (it ticks every 5 s).
pub const STALL_AFTER: Duration = Duration::from_secs(30);

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
    /// Any URL that counts requests (the URL usually holds the check's token).
    Http { url: Secret, post: bool },
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
            Target::Http { url, post } => (
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

/// Validates `[[heartbeat]]` entries; problems go to `ctx` with their line.
pub(crate) fn build(ctx: &mut Ctx<'_>, raw: &[S<RawHeartbeat>]) -> Vec<HeartbeatPlan> {
    let mut out: Vec<HeartbeatPlan> = Vec::new();
    for (i, entry) in raw.iter().enumerate() {
        let r = entry.get_ref();
        let key = |k: &str| format!("heartbeat[{i}].{k}");
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
            let span = r.timeout.as_ref().or(r.interval.as_ref()).map(|v| v.span());
            ctx.error(span, key("timeout"), "must be shorter than the interval");
        }
        let kind = ctx.env_str(&r.kind, &key("type")).unwrap_or_default();
        let not_for = |ctx: &mut Ctx<'_>, k: &str, v: &Option<S<String>>| {
            if let Some(v) = v {
                ctx.error(
                    Some(v.span()),
                    format!("heartbeat[{i}].{k}"),
                    format_args!("does not apply to a `{kind}` heartbeat"),
                );
            }
        };
        let target = match kind.as_str() {
            "http" => {
                not_for(ctx, "api_key", &r.api_key);
                not_for(ctx, "region", &r.region);
                not_for(ctx, "heartbeat", &r.heartbeat);
                let url = url_key(ctx, r.url.as_ref(), entry, &key("url"));
                let post = match &r.method {
                    None => Some(false),
                    Some(m) => match ctx.env_str(m, &key("method")).as_deref() {
                        Some("GET") => Some(false),
                        Some("POST") => Some(true),
                        Some(_) => {
                            ctx.error(Some(m.span()), key("method"), "must be `GET` or `POST`");
                            None
                        }
                        None => None,
                    },
                };
                url.zip(post).map(|(url, post)| Target::Http {
                    url: Secret::new(url),
                    post,
                })
            }
            "opsgenie" => {
                not_for(ctx, "method", &r.method);
                let base = match (&r.url, &r.region) {
                    (Some(_), _) => url_key(ctx, r.url.as_ref(), entry, &key("url"))
                        .map(|u| u.trim_end_matches('/').to_string()),
                    (None, None) => Some(OPSGENIE_US.to_string()),
                    (None, Some(reg)) => match ctx.env_str(reg, &key("region")).as_deref() {
                        Some("us") => Some(OPSGENIE_US.to_string()),
                        Some("eu") => Some(OPSGENIE_EU.to_string()),
                        Some(_) => {
                            ctx.error(Some(reg.span()), key("region"), "must be `us` or `eu`");
                            None
                        }
                        None => None,
                    },
                };
                let api_key = match &r.api_key {
                    Some(k) => ctx.env_str(k, &key("api_key")).filter(|k| {
                        let ok = !k.trim().is_empty();
                        if !ok {
                            ctx.error(
                                Some(r.api_key.as_ref().map_or(0..0, |v| v.span())),
                                key("api_key"),
                                "is empty",
                            );
                        }
                        ok
                    }),
                    None => {
                        ctx.error(
                            Some(entry.span()),
                            key("api_key"),
                            "is required for an `opsgenie` heartbeat",
                        );
                        None
                    }
                };
                let heartbeat = match &r.heartbeat {
                    Some(h) => ctx.env_str(h, &key("heartbeat")),
                    None => Some(name.clone()),
                };
                match (base, api_key, heartbeat) {
                    (Some(base), Some(api_key), Some(heartbeat)) => Some(Target::Opsgenie {
                        base,
                        heartbeat,
                        api_key: Secret::new(api_key),
                    }),
                    _ => None,
                }
            }
            _ => {
                ctx.error(
                    Some(r.kind.span()),
                    key("type"),
                    format_args!("unknown heartbeat type `{kind}`, expected `http` or `opsgenie`"),
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

/// A required `url`: http(s) with a host. The message never repeats the value (it may hold a
/// token).
fn url_key(
    ctx: &mut Ctx<'_>,
    value: Option<&S<String>>,
    entry: &S<RawHeartbeat>,
    key: &str,
) -> Option<String> {
    let Some(value) = value else {
        ctx.error(Some(entry.span()), key, "is required");
        return None;
    };
    let text = ctx.env_str(value, key)?;
    match url::Url::parse(&text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(text),
        _ => {
            ctx.error(Some(value.span()), key, "is not an http:// or https:// URL");
            None
        }
    }
}

/// Whether the scheduler is making progress: the run consumer ticks, and no probe's announced
/// next run is far overdue. Cheap to clone; shared by the consumer and the heartbeat tasks.
#[derive(Clone)]
pub struct Liveness {
    inner: Arc<Mutex<LiveState>>,
    bound: Duration,
}

struct LiveState {
    consumer: Instant,
    due: HashMap<String, Instant>,
}

impl Liveness {
    /// Healthy now; stuck once nothing progresses for `bound`.
    pub fn new(bound: Duration) -> Liveness {
        Liveness {
            inner: Arc::new(Mutex::new(LiveState {
                consumer: Instant::now(),
                due: HashMap::new(),
            })),
            bound,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        // Plain data; a panic elsewhere while holding the lock leaves it usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The run consumer went round its loop.
    pub fn beat(&self) {
        self.lock().consumer = Instant::now();
    }

    /// The scheduler announced `probe`'s next run at `at`.
    pub fn due(&self, probe: &str, at: Instant) {
        self.lock().due.insert(probe.to_string(), at);
    }

    /// `None` while healthy, else why not.
    pub fn stalled(&self) -> Option<String> {
        let now = Instant::now();
        let s = self.lock();
        let quiet = now.saturating_duration_since(s.consumer);
        if quiet > self.bound {
            return Some(format!(
                "the run consumer has not progressed for {}",
                crate::report::human_duration(quiet)
            ));
        }
        let mut overdue: Vec<(&String, Duration)> = s
            .due
            .iter()
            .map(|(p, at)| (p, now.saturating_duration_since(*at)))
            .filter(|(_, late)| *late > self.bound)
            .collect();
        overdue.sort();
        overdue.first().map(|(p, late)| {
            format!(
                "probe `{p}` should have started {} ago",
                crate::report::human_duration(*late)
            )
        })
    }
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
    let client = reqwest::Client::builder()
        .tls_backend_rustls()
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
        metrics.count_heartbeat(&plan.name, result.is_ok(), chrono::Utc::now());
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
        let task = tokio::spawn(run(plan(10), ping, live, metrics.clone(), stop.clone()));
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
