//! One websocket connection of the reference server: reads join frames, relays bus events for
//! the rooms it is in, pings every second, and leaves its rooms when it ends.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::bus::{Bus, ConnId};
use super::event::JoinEvent;
use super::faults::Faults;

const PING_EVERY: Duration = Duration::from_secs(1);
/// Caps what one connection can make the server remember.
const MAX_ROOMS_PER_CONN: usize = 64;
/// How long to wait for the peer's half of a close handshake before just dropping it.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// WebSocket close code 1001: the server is going away.
const GOING_AWAY: u16 = 1001;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientMsg {
    Join { room: String, id: String },
}

/// What the connection needs from the server, cloned per connection.
pub struct ConnCtx {
    pub id: ConnId,
    pub bus: Arc<Bus>,
    pub faults: Arc<std::sync::Mutex<Faults>>,
    pub shutdown: watch::Receiver<bool>,
}

/// Why the main loop stopped, which decides how the socket is closed.
enum End {
    /// The peer sent a close; its reply is queued and goes out on the next read.
    PeerClosed,
    /// The server is stopping: we start the close handshake.
    Shutdown,
    /// The socket broke; nothing more can be sent.
    Broken,
}

pub async fn run(mut socket: WebSocket, ctx: ConnCtx) {
    tracing::debug!(conn = ctx.id, "websocket connected");
    let mut rooms: HashSet<String> = HashSet::new();
    let mut events = ctx.bus.subscribe();
    let mut shutdown = ctx.shutdown.clone();
    // First ping one period after connecting, like a real server's keepalive, not at once.
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);

    let end = loop {
        tokio::select! {
            incoming = socket.recv() => {
                let msg = match incoming {
                    Some(Ok(msg)) => msg,
                    Some(Err(err)) => {
                        tracing::debug!(conn = ctx.id, %err, "websocket read failed");
                        break End::Broken;
                    }
                    None => break End::Broken,
                };
                let reply = match msg {
                    Message::Text(text) => handle_text(text.as_str(), &ctx, &mut rooms).await,
                    Message::Binary(_) => Some(error_frame("binary frames are not supported")),
                    // tungstenite answers pings itself; pongs need nothing.
                    Message::Ping(_) | Message::Pong(_) => None,
                    Message::Close(_) => break End::PeerClosed,
                };
                if let Some(reply) = reply
                    && socket.send(reply).await.is_err()
                {
                    break End::Broken;
                }
            }
            event = events.recv() => {
                match event {
                    Ok(ev) if rooms.contains(&ev.room) => {
                        if socket.send(joined_frame(&ev)).await.is_err() {
                            break End::Broken;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        tracing::warn!(conn = ctx.id, skipped, "connection fell behind the bus");
                    }
                    // The bus lives as long as the server state; closed means we are stopping.
                    Err(broadcast::error::RecvError::Closed) => break End::Shutdown,
                }
            }
            _ = ping.tick() => {
                if socket.send(text(json!({"type": "ping"}))).await.is_err() {
                    break End::Broken;
                }
            }
            // `wait_for` also sees a shutdown that began before this connection subscribed; an
            // error means the server handle is gone, which is a shutdown too.
            () = stopping(&mut shutdown) => break End::Shutdown,
        }
    };

    // Leave rooms before the close handshake so a join by someone else right after this
    // connection goes away already sees the smaller count.
    ctx.bus.leave(ctx.id, &rooms);

    match end {
        End::PeerClosed => drain(&mut socket).await,
        End::Shutdown => {
            let frame = CloseFrame {
                code: GOING_AWAY,
                reason: "server shutting down".into(),
            };
            if socket.send(Message::Close(Some(frame))).await.is_ok() {
                drain(&mut socket).await;
            }
        }
        End::Broken => {}
    }
    tracing::debug!(conn = ctx.id, "websocket closed");
}

/// Keeps reading until the close handshake completes: tungstenite flushes its queued close
/// reply on the next read, and a peer that has started closing sends nothing else worth
/// handling. Bounded so a silent peer cannot hold the connection open.
async fn drain(socket: &mut WebSocket) {
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = socket.recv().await {}
    })
    .await;
}

async fn handle_text(raw: &str, ctx: &ConnCtx, rooms: &mut HashSet<String>) -> Option<Message> {
    let (room, id) = match serde_json::from_str::<ClientMsg>(raw) {
        Ok(ClientMsg::Join { room, id }) => (room, id),
        Err(err) => return Some(error_frame(&format!("malformed message: {err}"))),
    };
    if room.is_empty() {
        return Some(error_frame("room must not be empty"));
    }
    if !rooms.contains(&room) && rooms.len() >= MAX_ROOMS_PER_CONN {
        return Some(error_frame("too many rooms on one connection"));
    }
    // Snapshot now: a fault set after this frame arrived must not affect it.
    let faults = ctx
        .faults
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take_join();
    // Presence first, as a platform writes it: on Redis this is the write an out-of-memory
    // Redis refuses, and its error goes back to the client as the platform's would.
    let joined_count = match ctx.bus.join(&room, ctx.id).await {
        Ok(n) => n,
        Err(err) => {
            tracing::debug!(conn = ctx.id, %err, "join refused by the bus");
            return Some(error_frame(&err.to_string()));
        }
    };
    rooms.insert(room.clone());
    if faults.drop {
        // Membership stays (it lives in the room store, not the pub/sub), only the
        // announcement is lost, as in a pub/sub outage.
        tracing::debug!(conn = ctx.id, "signalling_drop fault: join dropped");
        return None;
    }
    if faults.delay_ms == 0 {
        return match ctx.bus.announce(room, id, joined_count).await {
            Ok(()) => None,
            Err(err) => Some(error_frame(&err.to_string())),
        };
    }
    let delay = Duration::from_millis(faults.delay_ms);
    let bus = Arc::clone(&ctx.bus);
    let mut shutdown = ctx.shutdown.clone();
    let conn = ctx.id;
    // Delay in a task of its own so this connection keeps reading and pinging meanwhile; a
    // failure then can only be logged, the client sees the join go unanswered.
    tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(delay) => {
                if let Err(err) = bus.announce(room, id, joined_count).await {
                    tracing::debug!(conn, %err, "delayed announcement failed");
                }
            }
            () = stopping(&mut shutdown) => {}
        }
    });
    None
}

/// Resolves once the server is stopping. The `watch::Ref` that `wait_for` yields is not
/// `Send`, so it is dropped here rather than held across a `select!`.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopping| *stopping).await;
}

fn joined_frame(ev: &JoinEvent) -> Message {
    text(json!({
        "type": "joined",
        "room": ev.room,
        "id": ev.id,
        "participants": ev.participants,
    }))
}

fn error_frame(error: &str) -> Message {
    text(json!({"type": "error", "error": error}))
}

fn text(value: serde_json::Value) -> Message {
    Message::text(value.to_string())
}
