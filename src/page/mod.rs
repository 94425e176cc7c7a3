//! The status page at `/`, rendered on the server: a probe × region grid for the fleet, then a
//! card per probe and region with what on-call asks first (what fails, where, since when, what
//! changed). Plain HTML and CSS, no JavaScript; state is always a word beside its colour; every
//! value that came from a probe, a server or a peer is escaped.
//!
//! Data flows one way: [`model`] gathers the columns from this prober's status and its peers';
//! [`html`] renders them, with the cards from `card`, the response-time chart from `chart`, and
//! the words for times, spans and states from `format`. None of them imports this file.

mod card;
mod chart;
mod format;
mod html;
mod model;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};

use crate::fleet::PeerView;
use crate::status::StatusDoc;

pub use html::REFRESH_SECONDS;

/// The page for `local` and its peers, as of `now`.
pub fn render(local: &StatusDoc, peers: &[PeerView], now: DateTime<Utc>) -> String {
    html::page(&model::View::gather(local, peers), now)
}
