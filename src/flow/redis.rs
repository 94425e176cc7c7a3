//! Cause-side checks: the `redis` step (PING, INFO gauges against thresholds, an optional
//! PUBLISH/SUBSCRIBE round trip on a canary channel) and the `http_json` step (numbers read
//! from a JSON reply). A failure fails the step; a crossed threshold is a warning only.

use futures_util::StreamExt as _;
use tokio::time::Instant;

use super::{RunContext, StepError};
use crate::config::{GaugeChecks, HttpJsonSpec, RedisSpec};
use crate::report::{FailureReason, Phase};

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

/// A Redis error as a step error. The client's own text may quote connection details, so only
/// the server's reply (code and detail) or the error's category is kept.
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
    let reason = if err.is_timeout() {
        FailureReason::Timeout
    } else if err.is_io_error() || err.is_connection_refusal() {
        FailureReason::Connect
    } else {
        FailureReason::Protocol
    };
    // The client's text may quote connection details, so only the category is shown; the
    // source chain still tells the prober's own exhaustion (`local`) from Redis failing.
    StepError::caused_by(reason, format!("{op} failed: {}", err.category()), err)
}

pub(super) async fn run(ctx: &mut RunContext<'_>, spec: &RedisSpec) -> Result<(), StepError> {
    use redis::IntoConnectionInfo as _;
    let url_text = ctx.render(&spec.url)?;
    let info = url_text.as_str().into_connection_info().map_err(|e| {
        StepError::new(
            FailureReason::Protocol,
            format!(
                "`{}` is not a redis URL: {}",
                super::redact_url_text(&url_text),
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
    let client = redis::Client::open(info.set_redis_settings(settings))
        .map_err(|e| step_error("connect", &e))?;

    ctx.waiting = "connecting to redis";
    let t = Instant::now();
    // No client-side timeouts: the step's timeout and the probe's deadline bound every
    // operation (the engine cancels the step), and a stall must read as one, not as I/O.
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(None)
        .set_response_timeout(None);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| step_error("connect", &e))?;
    super::net::add_phase(ctx, Phase::Connect, t);

    ctx.waiting = "waiting for PING";
    let t = Instant::now();
    let pong: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(|e| step_error("PING", &e))?;
    super::net::add_phase(ctx, Phase::FirstByte, t);
    if pong != "PONG" {
        return Err(StepError::new(
            FailureReason::Protocol,
            format!("PING answered {}", super::quote(&pong, 40)),
        ));
    }

    ctx.waiting = "waiting for INFO";
    let text: String = redis::cmd("INFO")
        .query_async(&mut conn)
        .await
        .map_err(|e| step_error("INFO", &e))?;
    let gauges = info_gauges(&text);
    for (name, value) in &gauges {
        ctx.gauges.insert((*name).to_string(), *value);
    }

    if let Some(channel) = &spec.channel {
        let channel = ctx.render(channel)?;
        ctx.waiting = "waiting for the pub/sub round trip";
        let t = Instant::now();
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .map_err(|e| step_error("SUBSCRIBE", &e))?;
        pubsub
            .subscribe(&channel)
            .await
            .map_err(|e| step_error("SUBSCRIBE", &e))?;
        let payload = uuid::Uuid::new_v4().to_string();
        let _receivers: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(&payload)
            .query_async(&mut conn)
            .await
            .map_err(|e| step_error("PUBLISH", &e))?;
        let mut messages = pubsub.on_message();
        let mut seen = 0;
        loop {
            let Some(msg) = messages.next().await else {
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
        super::net::add_phase(ctx, Phase::RoundTrip, t);
    }
    ctx.waiting = "";
    check(ctx, &spec.checks);
    Ok(())
}

/// The exported numbers out of an `INFO` reply. `memory_ratio` only when a limit is set: with
/// `maxmemory 0` Redis grows until the host kills it, and the ratio would mean nothing.
pub fn info_gauges(text: &str) -> Vec<(&'static str, f64)> {
    let field = |name: &str| {
        text.lines()
            .filter_map(|l| l.trim_end().split_once(':'))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse::<f64>().ok())
    };
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

/// The `http_json` step: the request as an `http` step makes it, its JSON values extracted
/// into gauges, then the thresholds.
pub(super) async fn http_json(
    ctx: &mut RunContext<'_>,
    spec: &HttpJsonSpec,
) -> Result<(), StepError> {
    super::http::run(ctx, &spec.http).await?;
    for (name, _) in &spec.gauges {
        let var = gauge_var(name);
        let text = ctx.vars.get(&var).cloned().unwrap_or_default();
        let value = text.trim().parse::<f64>().map_err(|_| {
            StepError::new(
                FailureReason::BodyMismatch,
                format!(
                    "gauge `{name}`: `{}` is not a number",
                    super::quote(&text, 40)
                ),
            )
        })?;
        ctx.gauges.insert(name.clone(), value);
    }
    check(ctx, &spec.checks);
    Ok(())
}

/// The variable an `http_json` gauge is extracted into (not a valid template name, so no
/// template can collide with it).
pub fn gauge_var(name: &str) -> String {
    format!("gauge:{name}")
}

/// Compares the step's gauges with its thresholds; each crossing becomes a warning.
fn check(ctx: &mut RunContext<'_>, checks: &GaugeChecks) {
    let step = ctx.step_name.clone();
    for (name, limit) in &checks.warn_above {
        if let Some(v) = ctx.gauges.get(name)
            && *v >= *limit
        {
            ctx.warnings.push(format!(
                "step \"{step}\" {name} {} at or above {}",
                number(*v),
                number(*limit)
            ));
        }
    }
    for (name, limit) in &checks.warn_below {
        if let Some(v) = ctx.gauges.get(name)
            && *v < *limit
        {
            ctx.warnings.push(format!(
                "step \"{step}\" {name} {} below {}",
                number(*v),
                number(*limit)
            ));
        }
    }
}

/// Whole numbers without a fraction, ratios with two decimals.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
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

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(0.8), "0.80");
        assert_eq!(number(12.0), "12");
    }
}
