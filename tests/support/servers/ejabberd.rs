//! ejabberd (XMPP over websocket, RFC 7395) with a MUC: a second XMPP server beside Prosody,
//! so the `xmpp` protocol and the XMPP examples are held to two implementations
//! (tests/servers/ejabberd/start.sh).

use super::{Process, Result, require_program, start_on_free_port, start_script, temp_dir};

/// ejabberd (tests/servers/ejabberd/start.sh): hosts `localhost` (SASL PLAIN user `alice` /
/// [`PASSWORD`](super::PASSWORD), through its external authentication program) and
/// `guest.localhost` (SASL ANONYMOUS); MUC `conference.localhost` (anyone may create rooms)
/// and `conference.guest.localhost` (room creation refused by service policy).
pub struct Ejabberd {
    process: Process,
    http_port: u16,
    _dir: tempfile::TempDir,
}

/// The MUC service where ejabberd refuses to create any room.
pub const EJABBERD_NO_ROOMS: &str = "conference.guest.localhost";

pub async fn start_ejabberd() -> Result<Ejabberd> {
    require_program("ejabberd", "erl", "ejabberd")?;
    require_program("ejabberd", "curl", "curl")?;
    start_on_free_port("ejabberd", |http_port| async move {
        let dir = temp_dir("ejabberd")?;
        let args = [http_port.to_string(), dir.path().display().to_string()];
        let process = start_script("ejabberd", "ejabberd/start.sh", &args, dir.path()).await?;
        Ok(Ejabberd {
            process,
            http_port,
            _dir: dir,
        })
    })
    .await
}

impl Ejabberd {
    /// `ws://127.0.0.1:PORT/xmpp-websocket` (RFC 7395; subprotocol `xmpp`).
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/xmpp-websocket", self.http_port)
    }

    pub fn process(&self) -> &Process {
        &self.process
    }
}
