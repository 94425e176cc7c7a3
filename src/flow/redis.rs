//! The `redis` step, a cause-side check: PING, INFO gauges against thresholds, an optional
//! PUBLISH/SUBSCRIBE round trip on a canary channel. A failure fails the step; a crossed
//! threshold is a warning only. Counter
//! rates (`evicted_keys_per_second`, ...) come from the previous run's INFO, kept per step.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::time::Instant;

use serde::Deserialize;

use super::context::RunContext;
use super::error::StepError;
use super::kind::{Build, Kind, Reads};
use super::parts::{self, GaugeChecks, RawGauges};
use crate::diag::{S, table_keys};
use crate::report::{FailureReason, Phase};
use crate::template::Template;

/// A `redis` step's own keys; `warn_above` and `warn_below` are read as [`RawGauges`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://` or `rediss://` (TLS).
    pub url: Option<S<String>>,
    /// The ACL user (`${ENV}` expanded at load time).
    pub username: Option<S<String>>,
    /// The password (`${ENV}` expanded at load time; scrubbed from every error).
    pub password: Option<S<String>>,
    /// The canary channel of the PUBLISH/SUBSCRIBE round trip (none: no round trip).
    pub channel: Option<S<String>>,
}

/// A `redis` step: PING, INFO gauges, optionally a pub/sub round trip on `channel`.
#[derive(Debug, Clone)]
pub struct RedisSpec {
    /// `redis://` or `rediss://` (TLS).
    pub url: Template,
    pub username: Option<String>,
    pub password: Option<String>,
    pub channel: Option<Template>,
    pub checks: GaugeChecks,
    /// INFO counter rates to compute: the defaults and every rate a threshold names.
    pub rates: Vec<CounterRate>,
    /// The previous run's counters (shared by the plan's clones; a reload starts afresh).
    pub memory: std::sync::Arc<CounterMemory>,
}

/// The memory warning of the incident's action plan: `used_memory / maxmemory` at 80 %.
pub const DEFAULT_MEMORY_RATIO_WARNING: f64 = 0.8;

impl Kind for RedisSpec {
    type Raw = RawRedis;

    /// Its own keys and the thresholds (`warn_above`, `warn_below`).
    fn keys() -> Vec<&'static str> {
        [table_keys::<RawRedis>(), table_keys::<RawGauges>()].concat()
    }

    fn build(s: RawRedis, b: &mut Build<'_, '_, '_>) -> Option<RedisSpec> {
        let Some(url_raw) = &s.url else {
            b.ctx.error(
                Some(b.name.clone()),
                b.key("url"),
                "a redis step needs `url` (redis:// or rediss://)",
            );
            return None;
        };
        let url = parts::url_template(b.ctx, url_raw, &b.key("url"), &["redis", "rediss"])?;
        let username = s
            .username
            .as_ref()
            .and_then(|u| b.ctx.env_str(u, &b.key("username")))
            // `${REDIS_PASSWORD:-}` unset: no AUTH at all, not AUTH with "".
            .filter(|v| !v.is_empty());
        let password = s
            .password
            .as_ref()
            .and_then(|p| b.ctx.env_str(p, &b.key("password")))
            // `${REDIS_PASSWORD:-}` unset: no AUTH at all, not AUTH with "".
            .filter(|v| !v.is_empty());
        let channel = match &s.channel {
            Some(c) => Some(b.ctx.template(c, &b.key("channel"))?),
            None => None,
        };
        let known = |name: &str| REDIS_GAUGES.contains(&name) || CounterRate::parse(name).is_some();
        let has = format!(
            "{}, or the rate of an INFO counter, <counter>_per_second or <counter>_per_minute, for the counters {}",
            REDIS_GAUGES.join(", "),
            REDIS_COUNTERS.join(", ")
        );
        let thresholds = b.read::<RawGauges>()?;
        let mut checks = parts::gauge_checks(b.ctx, &thresholds, &b.prefix, &known, &has)?;
        if !checks.warn_above.iter().any(|(n, _)| n == "memory_ratio") {
            checks
                .warn_above
                .push(("memory_ratio".into(), DEFAULT_MEMORY_RATIO_WARNING));
        }
        let mut rates: Vec<CounterRate> = Vec::new();
        let named = checks.warn_above.iter().chain(&checks.warn_below);
        for name in DEFAULT_RATES
            .into_iter()
            .chain(named.map(|(n, _)| n.as_str()))
        {
            if let Some(rate) = CounterRate::parse(name)
                && !rates.contains(&rate)
            {
                rates.push(rate);
            }
        }
        Some(RedisSpec {
            url,
            username,
            password,
            channel,
            checks,
            rates,
            memory: std::sync::Arc::default(),
        })
    }

    fn reads<'s>(&'s self, r: &mut Reads<'s>) {
        r.templates.push(&self.url);
        r.templates.extend(&self.channel);
    }

    /// The exchange under way (`waiting for INFO`), as `run` marks it.
    fn waiting(&self, ctx: &RunContext<'_>) -> &'static str {
        if ctx.waiting.is_empty() {
            "in the step"
        } else {
            ctx.waiting
        }
    }

    async fn run(&self, ctx: &mut RunContext<'_>, _: &str) -> Result<(), StepError> {
        run(ctx, self).await
    }
}

/// Messages read from the canary channel before the round trip gives up: other probes (other
/// regions) publish there too, and a busy channel must not keep the step reading forever.
const MAX_CHANNEL_MESSAGES: usize = 1000;

/// The gauges a `redis` step exports (and the names its thresholds may use).
pub const REDIS_GAUGES: [&str; 7] = [
    "used_memory",
    "maxmemory",
    "memory_ratio",
    "rejected_connections",
    "evicted_keys",
    "connected_clients",
    "blocked_clients",
];

/// INFO fields that only ever grow while Redis runs (Stats section, Redis 7): the counters whose
/// rate a step can compute. Missing ones (an older Redis) simply have no rate.
pub const REDIS_COUNTERS: [&str; 23] = [
    "evicted_keys",
    "rejected_connections",
    "expired_keys",
    "evicted_clients",
    "total_connections_received",
    "total_commands_processed",
    "total_net_input_bytes",
    "total_net_output_bytes",
    "total_error_replies",
    "unexpected_error_replies",
    "keyspace_hits",
    "keyspace_misses",
    "total_eviction_exceeded_time",
    "total_forks",
    "sync_full",
    "sync_partial_ok",
    "sync_partial_err",
    "total_reads_processed",
    "total_writes_processed",
    "expired_time_cap_reached_count",
    "acl_access_denied_auth",
    "client_query_buffer_limit_disconnections",
    "client_output_buffer_limit_disconnections",
];

/// The rates every `redis` step exports (from its second run on), thresholds or not: the two
/// counters of the incident's action plan.
pub const DEFAULT_RATES: [&str; 2] = ["evicted_keys_per_second", "rejected_connections_per_second"];

/// The rate of an INFO counter between two runs, exported as the gauge `name`
/// (`<counter>_per_second` or `<counter>_per_minute`).
#[derive(Debug, Clone, PartialEq)]
pub struct CounterRate {
    pub name: String,
    pub counter: &'static str,
    /// The unit: one second or one minute.
    pub per: Duration,
}

impl CounterRate {
    /// `evicted_keys_per_minute` -> the rate of `evicted_keys` per minute; `None` for a name
    /// that is not a known counter with one of the two suffixes.
    pub fn parse(name: &str) -> Option<CounterRate> {
        let (counter, per) = if let Some(c) = name.strip_suffix("_per_second") {
            (c, Duration::from_secs(1))
        } else if let Some(c) = name.strip_suffix("_per_minute") {
            (c, Duration::from_secs(60))
        } else {
            return None;
        };
        let counter = REDIS_COUNTERS.iter().find(|k| **k == counter)?;
        Some(CounterRate {
            name: name.to_string(),
            counter,
            per,
        })
    }
}

/// The counters one step read at its previous run. Shared by the clones of a plan (the
/// scheduler's and a confirmation run's), so "previous" is the previous run of this probe's
/// step, whoever ran it; a reload builds a new plan and starts again without a rate.
#[derive(Debug, Default)]
pub struct CounterMemory(Mutex<Option<CounterSample>>);

#[derive(Debug, Clone)]
struct CounterSample {
    /// Redis's `run_id`: a new one means a restart, and every counter began again at 0.
    run_id: Option<String>,
    at: Instant,
    values: BTreeMap<&'static str, f64>,
}

impl CounterMemory {
    /// Stores this run's sample and returns the rates since the previous one. No rate on the
    /// first run, after a restart (new `run_id`), for a counter that went down (`CONFIG
    /// RESETSTAT`) or when no time passed: a reset must never read as a negative or huge rate.
    fn rates(
        &self,
        rates: &[CounterRate],
        run_id: Option<String>,
        at: Instant,
        values: BTreeMap<&'static str, f64>,
    ) -> Vec<(String, f64)> {
        let sample = CounterSample { run_id, at, values };
        let previous = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(sample.clone());
        let Some(previous) = previous else {
            return Vec::new();
        };
        if previous.run_id != sample.run_id {
            tracing::info!(
                "redis restarted since the previous run (new run_id): counter rates start again"
            );
            return Vec::new();
        }
        let elapsed = sample.at.saturating_duration_since(previous.at);
        if elapsed.is_zero() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for rate in rates {
            let (Some(old), Some(new)) = (
                previous.values.get(rate.counter),
                sample.values.get(rate.counter),
            ) else {
                continue;
            };
            if new < old {
                continue;
            }
            let value = (new - old) / elapsed.as_secs_f64() * rate.per.as_secs_f64();
            out.push((rate.name.clone(), value));
        }
        out
    }
}

/// The links of a client error's source chain, with the layers `source()` skips unwrapped: the
/// client keeps its I/O error as `Arc<dyn Error>`, and an `io::Error` wraps the handshake's
/// `rustls::Error`. Bounded: a chain is a handful of links; a cyclic one stops at 16.
fn chain(err: &redis::RedisError) -> Vec<&(dyn std::error::Error + 'static)> {
    let mut out: Vec<&(dyn std::error::Error + 'static)> = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source
        && out.len() < 16
    {
        out.push(e);
        let shared = e
            .downcast_ref::<std::sync::Arc<dyn std::error::Error + Send + Sync>>()
            .map(|a| &**a as &(dyn std::error::Error + 'static));
        out.extend(shared);
        let io = e
            .downcast_ref::<std::io::Error>()
            .or_else(|| shared.and_then(|s| s.downcast_ref::<std::io::Error>()));
        out.extend(io.and_then(std::io::Error::get_ref).map(|inner| {
            let inner: &(dyn std::error::Error + 'static) = inner;
            inner
        }));
        source = e.source();
    }
    out
}

/// The TLS failure behind a client error, if that is what it is: the redis client hands the
/// handshake's `rustls::Error` up inside an I/O error, which alone would read as `connect`.
fn tls_failure(err: &redis::RedisError) -> Option<String> {
    chain(err)
        .into_iter()
        .find_map(|e| e.downcast_ref::<rustls::Error>())
        .map(ToString::to_string)
}

/// The operating system's words for an I/O failure behind a client error (`Connection refused
/// (os error 111)`, as the http and websocket steps say it). Only an OS error: the client's own
/// I/O errors may quote connection details.
fn os_failure(err: &redis::RedisError) -> Option<String> {
    chain(err)
        .into_iter()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .find_map(|io| {
            let code = io.raw_os_error()?;
            Some(std::io::Error::from_raw_os_error(code).to_string())
        })
}

/// A Redis error as a step error. The client's own text may quote connection details, so only
/// the server's reply (code and detail), a TLS failure or the error's category is kept.
fn step_error(op: &str, err: &redis::RedisError) -> StepError {
    if let Some(code) = err.code() {
        let detail = err.detail().unwrap_or_default();
        let what = if matches!(code, "WRONGPASS" | "NOAUTH" | "NOPERM") {
            "redis refused the credentials"
        } else {
            "redis answered an error"
        };
        return StepError::new(
            FailureReason::ServerError,
            format!("{op}: {what}: {code} {detail}")
                .trim_end()
                .to_string(),
        );
    }
    if matches!(err.kind(), redis::ErrorKind::AuthenticationFailed) {
        return StepError::new(
            FailureReason::ServerError,
            format!(
                "{op}: redis refused the credentials: {}",
                err.detail().unwrap_or("authentication failed")
            ),
        );
    }
    if let Some(tls) = tls_failure(err) {
        return StepError::new(
            FailureReason::Tls,
            format!("{op}: TLS handshake failed: {tls}"),
        );
    }
    let reason = if err.is_timeout() {
        FailureReason::Timeout
    } else if err.is_io_error() || err.is_connection_refusal() {
        FailureReason::Connect
    } else {
        FailureReason::Protocol
    };
    // The client's text may quote connection details, so only the operating system's words
    // (or else the category) are shown; the source chain still tells the prober's own
    // exhaustion (`local`) from Redis failing.
    let why = os_failure(err).unwrap_or_else(|| err.category().to_string());
    StepError::caused_by(reason, format!("{op} failed: {why}"), err)
}

/// `redis://host:port` as the `http(s)://host:port/` URL [`crate::flow::net::open`] connects to
/// (TLS for `rediss://`).
fn connection_url(addr: &redis::ConnectionAddr) -> Result<url::Url, StepError> {
    let (scheme, host, port) = match addr {
        redis::ConnectionAddr::Tcp(host, port) => ("http", host, port),
        redis::ConnectionAddr::TcpTls { host, port, .. } => ("https", host, port),
        _ => {
            return Err(StepError::new(
                FailureReason::Protocol,
                "only redis:// and rediss:// URLs are supported",
            ));
        }
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
        _ => host.to_string(),
    };
    url::Url::parse(&format!("{scheme}://{host}:{port}/")).map_err(|e| {
        StepError::new(
            FailureReason::Protocol,
            format!("`{host}:{port}` is not a host and port: {e}"),
        )
    })
}

/// The cap on what one Redis reply may take: the step's `max_body_bytes`, as for an HTTP body
/// or a websocket message. The client reads a reply whole before it hands it over (a 200 MiB
/// `INFO` took 400 MiB), so the cap sits under it, on the stream: more than `cap` bytes since
/// the last command was sent fails the read, the client gives up the connection, and the step
/// fails `too_large`. On the pub/sub connection everything after SUBSCRIBE counts as one
/// reply: the canary message must come within `cap` bytes of channel traffic.
struct ReplyCap {
    cap: usize,
    exceeded: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ReplyCap {
    fn new(cap: usize) -> ReplyCap {
        ReplyCap {
            cap,
            exceeded: Default::default(),
        }
    }

    fn wrap<S>(&self, inner: S) -> crate::net::Capped<S> {
        crate::net::Capped::new(inner, self.cap, self.exceeded.clone())
    }

    fn exceeded(&self) -> bool {
        self.exceeded.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn too_large(&self, op: &str) -> StepError {
        StepError::new(
            FailureReason::TooLarge,
            format!(
                "{op}: the reply is larger than the {}-byte cap (max_body_bytes)",
                self.cap
            ),
        )
    }

    /// `too_large` when the cap is why the client failed, else what the client says.
    fn error(&self, op: &str, err: &redis::RedisError) -> StepError {
        if self.exceeded() {
            self.too_large(op)
        } else {
            step_error(op, err)
        }
    }
}

async fn run(ctx: &mut RunContext<'_>, spec: &RedisSpec) -> Result<(), StepError> {
    use redis::IntoConnectionInfo as _;
    let url_text = ctx.render(&spec.url)?;
    let info = url_text.as_str().into_connection_info().map_err(|e| {
        StepError::new(
            FailureReason::Protocol,
            format!(
                "`{}` is not a redis URL: {}",
                crate::redact::redact_url_text(&url_text),
                e.category()
            ),
        )
    })?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &spec.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &spec.password {
        ctx.redactor.add(password.clone());
        settings = settings.set_password(password);
    }
    let info = info.set_redis_settings(settings);
    // The step opens its own connections, as http and ws steps do: the lookup is timed as
    // `dns` (a name that does not resolve, or a resolver that never answers, fails `dns`),
    // TCP as `connect`, the handshake as `tls`; and every reply is read through a cap.
    let url = connection_url(info.addr())?;
    let cap = ReplyCap::new(ctx.max_body_bytes);

    ctx.waiting = "connecting to redis";
    // No client-side timeouts: the step's timeout and the probe's deadline bound every
    // operation (the engine cancels the step), and a stall must read as one, not as I/O.
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(None)
        .set_response_timeout(None);
    let stream = crate::flow::net::open(ctx, &url).await?;
    // AUTH and HELLO count as connecting.
    let t = Instant::now();
    let (mut conn, driver) = redis::aio::MultiplexedConnection::new_with_config(
        info.redis_settings(),
        cap.wrap(stream),
        config,
    )
    .await
    .map_err(|e| cap.error("connect", &e))?;
    let _driver = crate::net::AbortOnDrop(tokio::spawn(driver));
    crate::flow::net::add_phase(ctx, Phase::Connect, t);

    ctx.waiting = "waiting for PING";
    let t = Instant::now();
    let pong: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(|e| cap.error("PING", &e))?;
    crate::flow::net::add_phase(ctx, Phase::FirstByte, t);
    if pong != "PONG" {
        return Err(StepError::new(
            FailureReason::Protocol,
            format!("PING answered {}", crate::redact::quote(&pong, 40)),
        ));
    }

    ctx.waiting = "waiting for INFO";
    let text: String = redis::cmd("INFO")
        .query_async(&mut conn)
        .await
        .map_err(|e| cap.error("INFO", &e))?;
    let read_at = Instant::now();
    let gauges = info_gauges(&text);
    for (name, value) in &gauges {
        ctx.gauge(*name, *value);
    }
    let counters = spec
        .rates
        .iter()
        .filter_map(|r| info_field(&text, r.counter).map(|v| (r.counter, v)))
        .collect();
    let run_id = text
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("run_id:"))
        .map(str::to_string);
    for (name, value) in spec.memory.rates(&spec.rates, run_id, read_at, counters) {
        ctx.gauge(name, value);
    }

    if let Some(channel) = &spec.channel {
        round_trip(ctx, channel, &url, &info, &cap, &mut conn).await?;
    }
    ctx.waiting = "";
    spec.checks.warn(ctx);
    Ok(())
}

/// The pub/sub round trip: a connection of its own subscribes to `channel`, `conn` publishes
/// a fresh uuid on it, and the subscriber must see it among the next [`MAX_CHANNEL_MESSAGES`].
async fn round_trip(
    ctx: &mut RunContext<'_>,
    channel: &Template,
    url: &url::Url,
    info: &redis::ConnectionInfo,
    cap: &ReplyCap,
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<(), StepError> {
    let channel = ctx.render(channel)?;
    ctx.waiting = "waiting for the pub/sub round trip";
    let t = Instant::now();
    let stream = crate::flow::net::open(ctx, url).await?;
    let mut pubsub = redis::aio::PubSub::new(info.redis_settings(), cap.wrap(stream))
        .await
        .map_err(|e| cap.error("SUBSCRIBE", &e))?;
    pubsub
        .subscribe(&channel)
        .await
        .map_err(|e| cap.error("SUBSCRIBE", &e))?;
    let payload = super::new_uuid();
    let _receivers: i64 = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg(&payload)
        .query_async(conn)
        .await
        .map_err(|e| cap.error("PUBLISH", &e))?;
    let mut messages = pubsub.on_message();
    let mut seen = 0;
    loop {
        let Some(msg) = messages.next().await else {
            if cap.exceeded() {
                return Err(cap.too_large("SUBSCRIBE"));
            }
            return Err(StepError::new(
                FailureReason::Connect,
                "the subscription closed before the canary message came back",
            ));
        };
        if msg.get_payload::<String>().is_ok_and(|p| p == payload) {
            break;
        }
        seen += 1;
        if seen >= MAX_CHANNEL_MESSAGES {
            return Err(StepError::new(
                FailureReason::NoMatch,
                format!("the canary message was not among {seen} messages on the channel"),
            ));
        }
    }
    crate::flow::net::add_phase(ctx, Phase::RoundTrip, t);
    Ok(())
}

/// The exported numbers out of an `INFO` reply. `memory_ratio` only when a limit is set: with
/// `maxmemory 0` Redis grows until the host kills it, and the ratio would mean nothing.
pub fn info_gauges(text: &str) -> Vec<(&'static str, f64)> {
    let field = |name: &str| info_field(text, name);
    let mut out = Vec::new();
    for name in REDIS_GAUGES {
        if name == "memory_ratio" {
            continue;
        }
        if let Some(v) = field(name) {
            out.push((name, v));
        }
    }
    if let (Some(used), Some(max)) = (field("used_memory"), field("maxmemory"))
        && max > 0.0
    {
        out.push(("memory_ratio", used / max));
    }
    out
}

/// One numeric field of an `INFO` reply.
fn info_field(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.trim_end().split_once(':'))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse::<f64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_and_the_memory_ratio() {
        let text = "# Memory\r\nused_memory:900\r\nmaxmemory:1000\r\n# Stats\r\nevicted_keys:3\r\nrejected_connections:0\r\nconnected_clients:7\r\nblocked_clients:1\r\n";
        let g: std::collections::BTreeMap<_, _> = info_gauges(text).into_iter().collect();
        assert_eq!(g["used_memory"], 900.0);
        assert_eq!(g["memory_ratio"], 0.9);
        assert_eq!(g["evicted_keys"], 3.0);
        assert_eq!(g["blocked_clients"], 1.0);
        assert_eq!(g.len(), 7);
        let unlimited = info_gauges("used_memory:900\r\nmaxmemory:0\r\n");
        assert!(!unlimited.iter().any(|(n, _)| *n == "memory_ratio"));
    }

    fn sample(evicted: f64) -> BTreeMap<&'static str, f64> {
        BTreeMap::from([("evicted_keys", evicted)])
    }

    #[tokio::test(start_paused = true)]
    async fn rates_need_a_previous_run_of_the_same_redis_and_never_go_negative() {
        let memory = CounterMemory::default();
        let rates = [
            CounterRate::parse("evicted_keys_per_second").expect("known"),
            CounterRate::parse("evicted_keys_per_minute").expect("known"),
        ];
        let id = || Some("a".to_string());
        let t0 = Instant::now();
        assert!(memory.rates(&rates, id(), t0, sample(100.0)).is_empty());
        let got = memory.rates(&rates, id(), t0 + Duration::from_secs(60), sample(220.0));
        assert_eq!(
            got,
            [
                ("evicted_keys_per_second".to_string(), 2.0),
                ("evicted_keys_per_minute".to_string(), 120.0)
            ]
        );
        // No time passed: no rate rather than a division by zero.
        let same = t0 + Duration::from_secs(60);
        assert!(memory.rates(&rates, id(), same, sample(230.0)).is_empty());
        // Restarted (new run_id): counters began again, no rate this run...
        let t = t0 + Duration::from_secs(120);
        assert!(
            memory
                .rates(&rates, Some("b".into()), t, sample(5.0))
                .is_empty()
        );
        // ...and the next run's rate is from the restarted Redis's own sample.
        let t = t0 + Duration::from_secs(180);
        let got = memory.rates(&rates[..1], Some("b".into()), t, sample(65.0));
        assert_eq!(got, [("evicted_keys_per_second".to_string(), 1.0)]);
        // CONFIG RESETSTAT (same run_id, counter went down): no rate either.
        let t = t0 + Duration::from_secs(240);
        assert!(
            memory
                .rates(&rates, Some("b".into()), t, sample(0.0))
                .is_empty()
        );
    }

    #[test]
    fn rate_names_are_known_counters_with_a_unit() {
        let r = CounterRate::parse("rejected_connections_per_minute").expect("known");
        assert_eq!(r.counter, "rejected_connections");
        assert_eq!(r.per, Duration::from_secs(60));
        assert!(CounterRate::parse("evicted_keyz_per_second").is_none());
        assert!(CounterRate::parse("evicted_keys").is_none());
        assert!(CounterRate::parse("used_memory_per_second").is_none());
        for name in DEFAULT_RATES {
            assert!(CounterRate::parse(name).is_some(), "{name}");
        }
    }
}
