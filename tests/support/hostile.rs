//! Hostile loopback servers for reason tests: silent peers and scripted websockets, each
//! bounded in the connections it accepts and how long it holds them.

use std::time::Duration;

use tokio::net::TcpListener;

/// A listener on 127.0.0.1 at a free port, and its `127.0.0.1:PORT`.
pub async fn listener() -> (TcpListener, String) {
    super::init();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, format!("127.0.0.1:{port}"))
}

/// Accepts up to 4 connections and never says a word; lets go of them after 10 s.
pub async fn silent_server() -> String {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let mut held = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            for _ in 0..4 {
                if let Ok((s, _)) = l.accept().await {
                    held.push(s);
                }
            }
            std::future::pending::<()>().await;
        })
        .await;
    });
    addr
}

/// A websocket server running `behave` on each of up to 4 connections. It accepts the first
/// subprotocol the client offers (an `xmpp` client requires one back).
pub async fn ws_server<F, Fut>(behave: F) -> String
where
    F: Fn(tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (l, addr) = listener().await;
    let behave = std::sync::Arc::new(behave);
    tokio::spawn(async move {
        for _ in 0..4 {
            let Ok((s, _)) = l.accept().await else { return };
            let behave = behave.clone();
            tokio::spawn(async move {
                use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
                let echo = |req: &Request, mut resp: Response| {
                    let first = req
                        .headers()
                        .get("sec-websocket-protocol")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.split(',').next())
                        .and_then(|p| p.trim().parse().ok());
                    if let Some(p) = first {
                        resp.headers_mut().insert("sec-websocket-protocol", p);
                    }
                    Ok(resp)
                };
                if let Ok(ws) = tokio_tungstenite::accept_hdr_async(s, echo).await {
                    behave(ws).await;
                }
            });
        }
    });
    addr
}
