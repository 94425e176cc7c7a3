//! What the page shows, gathered from this prober's status and its peers' answers: a column
//! per region (a peer that did not answer is a column too, shown as unreachable, never as
//! passing) and every probe any of them runs. Plain data: the rendering modules read it, it
//! reads none of them.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::fleet::PeerView;
use crate::status::StatusDoc;

/// One column of the grid: a region that answered, or a peer that did not.
pub(super) struct Column<'a> {
    /// The region; for a peer that did not answer, its configured or last reported region,
    /// else its URL.
    pub name: String,
    pub doc: Option<&'a StatusDoc>,
    pub error: Option<&'a str>,
    pub url: Option<&'a str>,
    pub local: bool,
    /// A peer that did not answer: since when (first failed fetch), and when it last did.
    pub unreachable_since: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
}

/// The page's data: this prober's document, a column per region (this prober first, then its
/// peers in the order configured), and the probes of all of them, by name.
pub(super) struct View<'a> {
    pub local: &'a StatusDoc,
    pub columns: Vec<Column<'a>>,
    pub probes: BTreeSet<&'a str>,
}

impl<'a> View<'a> {
    /// `local` and its peers' answers as columns.
    pub fn gather(local: &'a StatusDoc, peers: &'a [PeerView]) -> View<'a> {
        let mut columns = vec![Column {
            name: local.region.clone(),
            doc: Some(local),
            error: None,
            url: None,
            local: true,
            unreachable_since: None,
            last_seen: None,
        }];
        for p in peers {
            match &p.result {
                // A shared peer list names this prober too: show it once.
                Ok(doc) if doc.region == local.region => {}
                Ok(doc) => columns.push(Column {
                    name: doc.region.clone(),
                    doc: Some(doc),
                    error: None,
                    url: Some(&p.url),
                    local: false,
                    unreachable_since: None,
                    last_seen: None,
                }),
                Err(e) => columns.push(Column {
                    name: p.region.clone().unwrap_or_else(|| p.url.clone()),
                    doc: None,
                    error: Some(e),
                    url: Some(&p.url),
                    local: false,
                    unreachable_since: p.unreachable_since,
                    last_seen: p.last_seen,
                }),
            }
        }
        let probes: BTreeSet<&str> = columns
            .iter()
            .filter_map(|c| c.doc)
            .flat_map(|d| d.probes.iter().map(|p| p.probe.as_str()))
            .collect();
        View {
            local,
            columns,
            probes,
        }
    }
}
