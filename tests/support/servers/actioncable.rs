//! Rails ActionCable on puma with the Redis subscription adapter
//! (tests/servers/actioncable/start.sh).

use super::{
    Process, Redis, Result, require_program, servers_dir, start_on_free_port, start_script,
};

/// Rails ActionCable on puma with the Redis subscription adapter
/// (tests/servers/actioncable/start.sh).
pub struct ActionCable {
    process: Process,
    port: u16,
}

/// ActionCable over `redis`: `POST /api/login`, `/cable?token=T`, `RoomChannel`.
pub async fn start_actioncable(redis: &Redis) -> Result<ActionCable> {
    require_program("actioncable", "puma", "puma")?;
    require_program("actioncable", "curl", "curl")?;
    let redis_url = redis.url();
    start_on_free_port("actioncable", |port| {
        let redis_url = redis_url.clone();
        async move {
            let args = [port.to_string(), redis_url];
            let process =
                start_script("actioncable", "actioncable/start.sh", &args, &servers_dir()).await?;
            Ok(ActionCable { process, port })
        }
    })
    .await
}

impl ActionCable {
    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `ws://127.0.0.1:PORT/cable?token=T` (subprotocol `actioncable-v1-json`).
    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://127.0.0.1:{}/cable?token={token}", self.port)
    }

    pub fn process(&self) -> &Process {
        &self.process
    }
}
