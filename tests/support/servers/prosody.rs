//! Prosody (XMPP over websocket, RFC 7395) with a MUC and Jitsi's host layout
//! (tests/servers/prosody/start.sh).

use super::{
    Process, Result, free_port, require_program, start_on_free_port, start_script, temp_dir,
};

/// Prosody with a MUC (tests/servers/prosody/start.sh): hosts `localhost` (SASL PLAIN user
/// [`XMPP_USER`] / [`PASSWORD`](super::PASSWORD)), `guest.localhost` (SASL ANONYMOUS), `conference.localhost`
/// (MUC; rooms named `forbidden*` cannot be created); and Jitsi's layout: `meet.jitsi`,
/// `guest.meet.jitsi`, `conference.meet.jitsi`, `focus.meet.jitsi` (a jicofo stand-in).
pub struct Prosody {
    process: Process,
    http_port: u16,
    c2s_port: u16,
    _dir: tempfile::TempDir,
}

/// The account the Prosody start script creates on `localhost`.
pub const XMPP_USER: &str = "alice";

pub async fn start_prosody() -> Result<Prosody> {
    require_program("prosody", "prosody", "prosody")?;
    require_program("prosody", "curl", "curl")?;
    start_on_free_port("prosody", |http_port| async move {
        let c2s_port = free_port()?;
        let dir = temp_dir("prosody")?;
        let args = [
            c2s_port.to_string(),
            http_port.to_string(),
            dir.path().display().to_string(),
        ];
        let process = start_script("prosody", "prosody/start.sh", &args, dir.path()).await?;
        Ok(Prosody {
            process,
            http_port,
            c2s_port,
            _dir: dir,
        })
    })
    .await
}

impl Prosody {
    /// `ws://127.0.0.1:PORT/xmpp-websocket` (RFC 7395; subprotocol `xmpp`).
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/xmpp-websocket", self.http_port)
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Plain XMPP client port (not needed by websocket probes).
    pub fn c2s_port(&self) -> u16 {
        self.c2s_port
    }

    pub fn process(&self) -> &Process {
        &self.process
    }
}
