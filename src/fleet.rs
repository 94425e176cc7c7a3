//! Other regions' status for the fleet page: each peer's `/api/v1/status`, fetched
//! concurrently (at most [`MAX_CONCURRENT`] at once) under [`PEER_TIMEOUT`], and kept for
//! [`CACHE_FOR`] so a page load waits at most one timeout and a reload storm costs peers one
//! request each. A peer that does not answer is *unreachable*: the page never guesses, but it
//! still names it by its region (configured, or the last one it reported) and says since when.
//! What a peer sends is cut to the page's bounds ([`StatusDoc::bounded`]) before it is kept. A
//! peer with a `tls_config` is fetched by a client of its own, built once per config.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::status::StatusDoc;
use crate::status::peer::Peer;

/// A peer that has not answered in this long is shown as unreachable.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a fetched answer is reused.
pub const CACHE_FOR: Duration = Duration::from_secs(5);
/// Peers fetched at the same time.
pub const MAX_CONCURRENT: usize = 8;
/// A status document larger than this is refused (60 runs × probes is far below it).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// One peer as the page shows it.
#[derive(Debug, Clone)]
pub struct PeerView {
    /// The base URL without credentials, for people.
    pub url: String,
    /// Its region: the configured one, else the last one it reported (this process), if any.
    pub region: Option<String>,
    /// The document, or why there is none (already free of credentials).
    pub result: Result<StatusDoc, String>,
    /// The first failed fetch since it last answered (fetches happen when the page is viewed).
    pub unreachable_since: Option<DateTime<Utc>>,
    /// When it last answered.
    pub last_seen: Option<DateTime<Utc>>,
}

/// What is remembered of a peer between fetches.
#[derive(Debug, Clone, Default)]
struct Memory {
    region: Option<String>,
    last_seen: Option<DateTime<Utc>>,
    unreachable_since: Option<DateTime<Utc>>,
}

/// The last answers: when, for which peer list, what.
struct Cached {
    at: Instant,
    peers: Vec<Peer>,
    views: Vec<PeerView>,
}

/// Fetches and caches peers' status.
pub struct Fleet {
    /// For every peer without a `tls_config`.
    client: Option<reqwest::Client>,
    /// A peer's own, per URL, for its `tls_config` (kept with it: a reload that builds another
    /// builds another client).
    tls_clients: std::sync::Mutex<HashMap<String, TlsClient>>,
    /// The service's clock: when a peer was last seen, since when it is unreachable, and (by
    /// tokio's clock) how old the cache is, so all of it follows a paused clock in tests.
    clock: Clock,
    cache: tokio::sync::Mutex<Option<Cached>>,
    /// Per peer URL; only configured peers are kept, so it is bounded by the config.
    memory: std::sync::Mutex<HashMap<String, Memory>>,
}

/// A peer's `tls_config` and the client built with it.
type TlsClient = (Arc<rustls::ClientConfig>, Option<reqwest::Client>);

/// The client for peers: no redirects (a peer's URL may carry credentials, which must never
/// go to another origin), the proxy variables honoured, TLS as `tls` says.
fn client(tls: Option<&Arc<rustls::ClientConfig>>) -> Option<reqwest::Client> {
    crate::tls_client::http_builder(tls)
        .timeout(PEER_TIMEOUT)
        .connect_timeout(PEER_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "joincanary/",
            env!("CARGO_PKG_VERSION"),
            " (fleet page)"
        ))
        .build()
        .ok()
}

impl Fleet {
    /// A fleet reading time from `clock` (the service's).
    pub fn new(clock: Clock) -> Fleet {
        Fleet {
            clock,
            client: client(None),
            tls_clients: std::sync::Mutex::new(HashMap::new()),
            cache: tokio::sync::Mutex::new(None),
            memory: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The client for `peer`: the shared one, or the one built for its `tls_config`.
    fn client_for(&self, peer: &Peer) -> Option<reqwest::Client> {
        let Some(tls) = &peer.tls else {
            return self.client.clone();
        };
        let mut clients = self.tls_clients.lock().unwrap_or_else(|e| e.into_inner());
        match clients.get(&peer.url) {
            Some((built, c)) if Arc::ptr_eq(built, tls) => c.clone(),
            _ => {
                let c = client(Some(tls));
                clients.insert(peer.url.clone(), (tls.clone(), c.clone()));
                c
            }
        }
    }

    /// Every peer's status, in the order given. Concurrent callers share one refresh: the
    /// second waits for the first and reads its answers.
    pub async fn views(&self, peers: &[Peer]) -> Vec<PeerView> {
        if peers.is_empty() {
            return Vec::new();
        }
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && c.at.elapsed() < CACHE_FOR
            && c.peers.as_slice() == peers
        {
            return c.views.clone();
        }
        // Only configured peers' clients are kept, so they are bounded by the config.
        self.tls_clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|url, _| peers.iter().any(|p| &p.url == url && p.tls.is_some()));
        let fetched: Vec<PeerView> = futures_util::stream::iter(peers.iter().cloned())
            .map(|peer| self.fetch(peer))
            .buffered(MAX_CONCURRENT)
            .collect()
            .await;
        // On the system clock, as the page shows every time (the peers' own documents too).
        let views = self.remember(peers, fetched, self.clock.system_now());
        *cache = Some(Cached {
            at: Instant::now(),
            peers: peers.to_vec(),
            views: views.clone(),
        });
        views
    }

    /// Notes each answer (region, when seen, since when unreachable) and fills the views in
    /// from what is remembered.
    fn remember(
        &self,
        peers: &[Peer],
        mut views: Vec<PeerView>,
        now: DateTime<Utc>,
    ) -> Vec<PeerView> {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory.retain(|url, _| peers.iter().any(|p| &p.url == url));
        for (peer, view) in peers.iter().zip(&mut views) {
            let m = memory.entry(peer.url.clone()).or_default();
            match &view.result {
                Ok(doc) => {
                    m.region = Some(doc.region.clone());
                    m.last_seen = Some(now);
                    m.unreachable_since = None;
                }
                Err(_) => {
                    m.unreachable_since.get_or_insert(now);
                }
            }
            view.region = peer.region.clone().or_else(|| m.region.clone());
            view.unreachable_since = m.unreachable_since;
            view.last_seen = m.last_seen;
        }
        views
    }

    async fn fetch(&self, peer: Peer) -> PeerView {
        let shown = without_credentials(&peer.url);
        let result = match &self.client_for(&peer) {
            None => Err("no HTTP client".to_string()),
            // The whole fetch, body included, under one deadline.
            Some(client) => {
                match tokio::time::timeout(PEER_TIMEOUT, get(client, &peer.url)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!(
                        "no answer within {}",
                        crate::report::human_duration(PEER_TIMEOUT)
                    )),
                }
            }
        };
        PeerView {
            url: shown,
            region: None,
            result,
            unreachable_since: None,
            last_seen: None,
        }
    }
}

async fn get(client: &reqwest::Client, peer: &str) -> Result<StatusDoc, String> {
    let url = format!("{peer}/api/v1/status");
    let response = client.get(&url).send().await.map_err(|e| describe(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let body = crate::net::body_at_most(response, MAX_BODY)
        .await
        .map_err(|e| e.describe(|e| describe(&e)))?;
    serde_json::from_slice::<StatusDoc>(&body)
        .map(StatusDoc::bounded)
        .map_err(|e| {
            // serde quotes a string where a number or a list belongs whole (up to the 4 MiB
            // read): the page shows the start of it, after where it broke.
            format!(
                "not a joincanary status document (line {}, column {}): {}",
                e.line(),
                e.column(),
                crate::report::cut(&e.to_string(), MAX_REASON_CHARS)
            )
        })
}

/// Characters of a peer's parse error shown on the page.
const MAX_REASON_CHARS: usize = 300;

/// A reqwest error without its URL (which may carry credentials): the kind and the cause.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        crate::tls_client::hint(format!("{kind}: {cause}"), "the peer's")
    }
}

/// `http://user:pass@host:9464` → `http://host:9464`.
pub fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string().trim_end_matches('/').to_string()
        }
        Err(_) => "(invalid URL)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_shown() {
        assert_eq!(
            without_credentials("http://alice:s3cret@prober-us:9464"),
            "http://prober-us:9464"
        );
        assert_eq!(
            without_credentials("https://prober-eu:9464/"),
            "https://prober-eu:9464"
        );
    }

    fn answered(region: &str) -> PeerView {
        PeerView {
            url: "http://prober:9464".into(),
            region: None,
            result: Ok(StatusDoc {
                region: region.into(),
                ..StatusDoc::default()
            }),
            unreachable_since: None,
            last_seen: None,
        }
    }

    fn silent() -> PeerView {
        PeerView {
            result: Err("connection failed".into()),
            ..answered("")
        }
    }

    /// A peer is unreachable since its first failed fetch, by the clock the fleet was given;
    /// once it answers again that is cleared, and it keeps the region it last reported.
    #[test]
    fn a_peer_is_unreachable_since_its_first_failed_fetch() {
        use chrono::TimeZone as _;
        let t = |s| Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, s).unwrap();
        let fleet = Fleet::new(Clock::starting_at(t(0)));
        let peers = [Peer {
            url: "http://prober:9464".into(),
            region: None,
            tls: None,
        }];
        let v = fleet.remember(&peers, vec![answered("us-east")], t(1));
        assert_eq!((v[0].last_seen, v[0].unreachable_since), (Some(t(1)), None));
        let v = fleet.remember(&peers, vec![silent()], t(10));
        assert_eq!(v[0].unreachable_since, Some(t(10)));
        let v = fleet.remember(&peers, vec![silent()], t(20));
        assert_eq!(
            v[0].unreachable_since,
            Some(t(10)),
            "since the first failure"
        );
        assert_eq!(v[0].last_seen, Some(t(1)));
        assert_eq!(
            v[0].region.as_deref(),
            Some("us-east"),
            "named by its last report"
        );
        let v = fleet.remember(&peers, vec![answered("us-east")], t(30));
        assert_eq!(
            (v[0].last_seen, v[0].unreachable_since),
            (Some(t(30)), None)
        );
    }

    /// A real fetch of a peer that refuses, under a paused clock that reads a fixed date: the
    /// times the page shows are the service's clock's, not the system's.
    #[tokio::test(start_paused = true)]
    async fn a_refusing_peer_is_unreachable_since_the_service_clock_says() {
        use chrono::TimeZone as _;
        let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let clock = Clock::starting_at(t0);
        let fleet = Fleet::new(clock);
        // A loopback port with nobody listening.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let peers = [Peer {
            url: format!("http://127.0.0.1:{port}"),
            region: Some("ap-south".into()),
            tls: None,
        }];
        let first = fleet.views(&peers).await;
        let since = first[0].unreachable_since.unwrap();
        assert!(first[0].result.is_err());
        let limit = chrono::Duration::from_std(PEER_TIMEOUT).unwrap();
        assert!(since >= t0 && since <= t0 + limit, "{since}");
        tokio::time::advance(CACHE_FOR * 3).await;
        let again = fleet.views(&peers).await;
        assert_eq!(
            again[0].unreachable_since,
            Some(since),
            "since the first failure"
        );
    }
}
