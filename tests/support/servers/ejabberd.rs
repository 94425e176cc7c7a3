//! ejabberd (XMPP over websocket, RFC 7395) with a MUC: a second XMPP server beside Prosody,
//! so the `xmpp` protocol and the XMPP examples are held to two implementations
//! (tests/servers/ejabberd/start.sh).

use std::time::Duration;

use super::{
    Process, Result, ServerError, require_program, start_on_free_port, start_script, temp_dir,
};

/// How long the first XMPP stream may take to open (see [`warm_up`]).
const WARM_UP: Duration = Duration::from_secs(60);

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
        let ejabberd = Ejabberd {
            process,
            http_port,
            _dir: dir,
        };
        warm_up(&ejabberd.ws_url()).await?;
        Ok(ejabberd)
    })
    .await
}

/// Opens one XMPP stream and waits (bounded) for its features. The Erlang VM loads ejabberd's
/// XMPP modules on the first stream, after its HTTP listener already answers: on a loaded
/// machine the first example's `websocket` step ran out of its 3 s waiting for them.
async fn warm_up(url: &str) -> Result<()> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};
    let fail = |e: String| ServerError(format!("ejabberd: the first XMPP stream: {e}"));
    let mut req = url.into_client_request().map_err(|e| fail(e.to_string()))?;
    req.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("xmpp"));
    tokio::time::timeout(WARM_UP, async {
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let open =
            r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="1.0"/>"#;
        ws.send(Message::text(open))
            .await
            .map_err(|e| fail(e.to_string()))?;
        // Bounded: the open and the features come first.
        for _ in 0..10 {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.contains("mechanism") => {
                    let _ = ws.close(None).await;
                    return Ok(());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(fail(e.to_string())),
                None => break,
            }
        }
        Err(fail("no stream features".into()))
    })
    .await
    .map_err(|_| fail(format!("no stream features within {WARM_UP:?}")))?
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
