//! The sim's Redis-backed signalling, as a real platform runs it: presence in a Redis set per
//! room, join announcements through PUBLISH/SUBSCRIBE, so sim processes sharing one Redis
//! deliver each other's joins — and a Redis fault (OOM, pause, stop, slowness) breaks joining.

use std::time::Duration;

use futures_util::StreamExt as _;
use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::event::JoinEvent;

/// The channel every sim process publishes joins to and subscribes to.
const CHANNEL: &str = "joincanary:sim:joins";
/// Presence sets are named `<prefix><room>`.
const ROOM_PREFIX: &str = "joincanary:sim:room:";
/// A room's presence set expires this long after its last join, so a sim that crashed without
/// leaving does not leave members in Redis forever.
const ROOM_TTL_SECS: i64 = 3600;
/// Deadline of every Redis operation unless the caller chooses another.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait before subscribing again after the subscription broke.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// A Redis failure as the sim answers it to a client. A server error keeps Redis's own text
/// (`OOM command not allowed ...`) so a probe's fail pattern can match what a platform would
/// pass on.
#[derive(Debug, thiserror::Error)]
pub enum RedisBusError {
    #[error("{0}")]
    Server(String),
    #[error("redis {op} timed out after {} ms", .after.as_millis())]
    Timeout { op: &'static str, after: Duration },
    #[error("redis {op} failed: {message}")]
    Other { op: &'static str, message: String },
}

impl RedisBusError {
    fn from_redis(op: &'static str, err: &redis::RedisError) -> Self {
        match (err.code(), err.detail()) {
            (Some(code), Some(detail)) => RedisBusError::Server(format!("{code} {detail}")),
            (Some(code), None) => RedisBusError::Server(code.to_owned()),
            // The client's own messages may quote the connection info; keep only the kind.
            _ if err.is_timeout() => RedisBusError::Timeout {
                op,
                after: Duration::ZERO,
            },
            _ => RedisBusError::Other {
                op,
                message: err.category().to_owned(),
            },
        }
    }
}

/// What travels on [`CHANNEL`]: one join, with the room's member count when it was made.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    room: String,
    id: String,
    participants: usize,
}

/// Commands on one auto-reconnecting connection, plus the subscriber task that feeds joins
/// published by any sim into this process's local broadcast.
pub struct RedisBus {
    conn: ConnectionManager,
    /// Distinguishes this process's members from another sim's in the shared presence sets.
    instance: String,
    op_timeout: Duration,
    subscriber: JoinHandle<()>,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("instance", &self.instance)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

/// Why the sim could not start on Redis. The URL is never part of it: it may hold a password.
#[derive(Debug, thiserror::Error)]
pub enum RedisStartError {
    #[error("invalid redis URL: {0}")]
    Url(String),
    #[error("cannot reach redis: {0}")]
    Connect(RedisBusError),
}

impl RedisBus {
    /// Connects (command connection and subscription, each under `op_timeout`) and starts the
    /// subscriber. Returns only once subscribed, so the first join after start-up is delivered.
    ///
    /// # Errors
    /// A malformed URL, or Redis not answering in time.
    pub async fn connect(
        url: &str,
        op_timeout: Duration,
        local: broadcast::Sender<JoinEvent>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<RedisBus, RedisStartError> {
        let client = redis::Client::open(url).map_err(|e| RedisStartError::Url(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(op_timeout))
            .set_response_timeout(Some(op_timeout))
            // Reconnects are our callers' business: each operation has one deadline.
            .set_number_of_retries(1);
        let conn = deadline("connect", op_timeout, async {
            ConnectionManager::new_with_config(client.clone(), config).await
        })
        .await
        .map_err(RedisStartError::Connect)?;
        let pubsub = subscribe(&client, op_timeout)
            .await
            .map_err(RedisStartError::Connect)?;
        let subscriber = tokio::spawn(relay(client, pubsub, op_timeout, local, shutdown));
        Ok(RedisBus {
            conn,
            instance: uuid::Uuid::new_v4().simple().to_string(),
            op_timeout,
            subscriber,
        })
    }

    /// Writes `conn` into `room`'s presence set and returns how many members the room has
    /// across every sim. This is the write a full Redis refuses.
    ///
    /// # Errors
    /// Redis's own error (e.g. OOM), or the deadline.
    pub async fn join(&self, room: &str, conn: u64) -> Result<usize, RedisBusError> {
        let key = room_key(room);
        let member = self.member(conn);
        let mut c = self.conn.clone();
        // SADD on its own: a refused single command keeps Redis's code and text, which a
        // pipeline's combined error does not. One deadline covers the whole join.
        let count: usize = deadline("join", self.op_timeout, async {
            let _added: i64 = c.sadd(&key, &member).await?;
            let (_, count): (i64, usize) = redis::pipe()
                .expire(&key, ROOM_TTL_SECS)
                .scard(&key)
                .query_async(&mut c)
                .await?;
            Ok(count)
        })
        .await?;
        Ok(count)
    }

    /// Announces a join to every sim sharing this Redis.
    ///
    /// # Errors
    /// Redis's own error, or the deadline.
    pub async fn publish(&self, ev: &JoinEvent) -> Result<(), RedisBusError> {
        let payload = serde_json::to_string(&Wire {
            room: ev.room.clone(),
            id: ev.id.clone(),
            participants: ev.participants,
        })
        .map_err(|e| RedisBusError::Other {
            op: "publish",
            message: e.to_string(),
        })?;
        let mut c = self.conn.clone();
        let _receivers: i64 = deadline("publish", self.op_timeout, async {
            c.publish(CHANNEL, payload).await
        })
        .await?;
        Ok(())
    }

    /// Removes `conn` from each room's presence set. A failure is only logged: the set expires.
    pub async fn leave<'a>(&self, conn: u64, rooms: impl IntoIterator<Item = &'a String>) {
        let member = self.member(conn);
        let mut pipe = redis::pipe();
        let mut any = false;
        for room in rooms {
            pipe.srem(room_key(room), &member).ignore();
            any = true;
        }
        if !any {
            return;
        }
        let mut c = self.conn.clone();
        let result: Result<(), _> = deadline("leave", self.op_timeout, async {
            pipe.query_async(&mut c).await
        })
        .await;
        if let Err(err) = result {
            tracing::debug!(conn, %err, "redis presence not removed; it expires");
        }
    }

    fn member(&self, conn: u64) -> String {
        format!("{}:{conn}", self.instance)
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

fn room_key(room: &str) -> String {
    format!("{ROOM_PREFIX}{room}")
}

/// Runs `fut` under `after`, turning the client's error into the one the sim answers.
async fn deadline<T>(
    op: &'static str,
    after: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, RedisBusError> {
    match tokio::time::timeout(after, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(match RedisBusError::from_redis(op, &err) {
            RedisBusError::Timeout { op, .. } => RedisBusError::Timeout { op, after },
            other => other,
        }),
        Err(_) => Err(RedisBusError::Timeout { op, after }),
    }
}

async fn subscribe(
    client: &redis::Client,
    op_timeout: Duration,
) -> Result<redis::aio::PubSub, RedisBusError> {
    deadline("subscribe", op_timeout, async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(CHANNEL).await?;
        Ok(pubsub)
    })
    .await
}

/// Forwards every join published on [`CHANNEL`] into the local broadcast, resubscribing (once a
/// second, each attempt under the deadline) when the subscription breaks, until shutdown.
async fn relay(
    client: redis::Client,
    first: redis::aio::PubSub,
    op_timeout: Duration,
    local: broadcast::Sender<JoinEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pubsub = Some(first);
    loop {
        if let Some(mut sub) = pubsub.take() {
            let mut stream = sub.on_message();
            loop {
                tokio::select! {
                    msg = stream.next() => match msg {
                        Some(msg) => forward(msg.get_payload_bytes(), &local),
                        None => break,
                    },
                    () = stopping(&mut shutdown) => return,
                }
            }
            tracing::warn!("redis subscription lost; resubscribing");
        }
        tokio::select! {
            () = tokio::time::sleep(RESUBSCRIBE_AFTER) => {}
            () = stopping(&mut shutdown) => return,
        }
        match subscribe(&client, op_timeout).await {
            Ok(sub) => {
                tracing::info!("redis subscription restored");
                pubsub = Some(sub);
            }
            Err(err) => tracing::debug!(%err, "redis resubscribe failed"),
        }
    }
}

fn forward(payload: &[u8], local: &broadcast::Sender<JoinEvent>) {
    match serde_json::from_slice::<Wire>(payload) {
        Ok(w) => {
            // No local subscriber is fine: nobody on this process is in a room right now.
            let _ = local.send(JoinEvent {
                room: w.room,
                id: w.id,
                participants: w.participants,
            });
        }
        Err(err) => tracing::debug!(%err, "ignoring a malformed message on the join channel"),
    }
}

async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopping| *stopping).await;
}
