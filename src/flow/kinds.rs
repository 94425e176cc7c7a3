//! The step kinds: the one list of them (`kinds!` below), [`StepKind`] (a kind by its name) and
//! [`StepSpec`] (a validated step), both generated from it.
//!
//! A kind is one file under `flow/` (`http.rs`, `redis.rs`, `ws/send.rs`, ...) that owns its
//! table, its validation and its run, as `impl Kind for <Kind>Spec` (the trait is in `kind.rs`):
//! - `type Raw`: the kind's own keys, a `#[serde(deny_unknown_fields)]` struct of `Spanned`
//!   fields, read from the step's table once `kind` is known. The keys every step has (`name`,
//!   `kind`, `timeout`, `cleanup`, and `connection` for a kind on a websocket or with
//!   `PARTICIPANT`) are read before,
//!   into `steps::StepHead`.
//! - `build(raw, &mut Build) -> Option<Self>`: every check `joincanary check` promises, each
//!   problem reported through [`Build`] with file, line and key.
//! - `reads` and `extracts`: the variables its templates read and the ones it sets.
//! - `run`: one run of the step; the engine (`flow/mod.rs`) holds its timeout and deadline.
//! - `waiting` and `timed_out`: what the engine's timeout error says of it ("opening the
//!   websocket"), or the whole error when running out of time is a failure of its own.
//!
//! To add a kind: write `flow/<kind>.rs` (copy `redis.rs`'s first 150 lines for the shape),
//! declare it in `flow/mod.rs` (`pub mod <kind>;`), add one line to `kinds!` below
//! (`Name("name", super::name::NameSpec),`: its variant, the name written in probe files, its
//! spec), its keys to the README's "Keys by step kind", and tests.
//! Nothing else lists the kinds: [`StepKind`] (its `ALL`, `as_str`, `parse`) and [`StepSpec`]
//! are generated here, and a report carries only the kind's name ([`KindName`]), so `report`,
//! metrics, status and the page need no change. No list of keys is kept by hand: a key another
//! kind takes gets "`x` does not apply to a `<kind>` step", any other key "unknown field `x`,
//! expected one of …" with the keys this kind takes, both read from the `Raw` types.

use super::context::RunContext;
use super::error::StepError;
use super::kind::{Build, Kind, Reads, Websocket};
use super::parts::Extraction;
use crate::report::KindName;

macro_rules! kinds {
    ($($kind:ident($name:literal, $spec:ty),)*) => {
        /// The kind of a step: `kind = "<name>"` in a probe file.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum StepKind {
            $(#[doc = concat!("`kind = \"", $name, "\"`")] $kind,)*
        }

        impl StepKind {
            /// Every kind, in the list's order (the order an unknown kind's error names them).
            pub const ALL: &[StepKind] = &[$(StepKind::$kind,)*];

            /// The name written in probe files, reports, the status JSON and the history file.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(StepKind::$kind => $name,)*
                }
            }

            pub fn parse(name: &str) -> Option<StepKind> {
                StepKind::ALL.iter().copied().find(|k| k.as_str() == name)
            }

            /// The name a [`crate::report::StepReport`] carries.
            pub const fn name(self) -> KindName {
                KindName::new(self.as_str())
            }
        }

        /// A validated step, one variant per kind.
        #[derive(Debug, Clone)]
        pub enum StepSpec {
            $($kind($spec),)*
        }

        impl StepSpec {
            pub(crate) fn build(kind: StepKind, b: &mut Build<'_, '_, '_>) -> Option<StepSpec> {
                match kind {
                    $(StepKind::$kind => build::<$spec>(b).map(StepSpec::$kind),)*
                }
            }

            /// The keys of `kind`'s own table.
            pub(crate) fn keys(kind: StepKind) -> Vec<&'static str> {
                match kind {
                    $(StepKind::$kind => <$spec as Kind>::keys(),)*
                }
            }

            pub(crate) fn websocket(kind: StepKind) -> Websocket {
                match kind {
                    $(StepKind::$kind => <$spec as Kind>::WEBSOCKET,)*
                }
            }

            /// `connection` is one of `kind`'s keys: it runs on a websocket, or names a
            /// participant.
            pub(crate) fn takes_connection(kind: StepKind) -> bool {
                match kind {
                    $(StepKind::$kind => <$spec as Kind>::WEBSOCKET != Websocket::None
                        || <$spec as Kind>::PARTICIPANT,)*
                }
            }

            pub(crate) fn reads<'s>(&'s self, reads: &mut Reads<'s>) {
                match self {
                    $(StepSpec::$kind(s) => <$spec as Kind>::reads(s, reads),)*
                }
            }

            pub(crate) fn sets(&self) -> Option<&str> {
                match self {
                    $(StepSpec::$kind(s) => <$spec as Kind>::sets(s),)*
                }
            }

            pub(crate) fn extracts(&self) -> &[Extraction] {
                match self {
                    $(StepSpec::$kind(s) => <$spec as Kind>::extracts(s),)*
                }
            }

            /// Runs on a websocket an earlier step opened.
            pub(crate) fn uses_connection(&self) -> bool {
                match self {
                    $(StepSpec::$kind(_) => <$spec as Kind>::WEBSOCKET.uses(),)*
                }
            }

            pub(crate) fn timed_out(
                &self,
                ctx: &RunContext<'_>,
                waited: &str,
                which: &str,
            ) -> Option<StepError> {
                match self {
                    $(StepSpec::$kind(s) => <$spec as Kind>::timed_out(s, ctx, waited, which),)*
                }
            }

            pub(crate) fn waiting(&self, ctx: &RunContext<'_>) -> &'static str {
                match self {
                    $(StepSpec::$kind(s) => <$spec as Kind>::waiting(s, ctx),)*
                }
            }

            pub(crate) async fn run(
                &self,
                ctx: &mut RunContext<'_>,
                connection: &str,
            ) -> Result<(), StepError> {
                // Each kind's run on the heap at its own size: inline, every step's future
                // was the size of the largest kind's (about 20 KiB), and building, moving and
                // boxing it copied that many bytes several times a step (BENCHMARKS.md).
                match self {
                    $(StepSpec::$kind(s) => Box::pin(<$spec as Kind>::run(s, ctx, connection)).await,)*
                }
            }
        }
    };
}

kinds! {
    Http("http", super::http::HttpSpec),
    WsConnect("ws_connect", super::ws::connect::WsConnectSpec),
    WsSend("ws_send", super::ws::send::SendSpec),
    WsExpect("ws_expect", super::ws::expect::ExpectSpec),
    WsClose("ws_close", super::ws::close::CloseSpec),
    Redis("redis", super::redis::RedisSpec),
    HttpJson("http_json", super::http_json::HttpJsonSpec),
    Turn("turn", super::turn::TurnSpec),
    Webrtc("webrtc", super::webrtc::WebrtcSpec),
}

impl From<StepKind> for KindName {
    fn from(kind: StepKind) -> KindName {
        kind.name()
    }
}

/// Reads the kind's table and builds it.
fn build<K: Kind>(b: &mut Build<'_, '_, '_>) -> Option<K> {
    let raw = b.read::<K::Raw>()?;
    K::build(raw, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_one_name_that_reports_carry_and_read_back() {
        let mut seen = std::collections::HashSet::new();
        for &kind in StepKind::ALL {
            let name = kind.as_str();
            assert!(seen.insert(name), "`{name}` is listed twice");
            assert_eq!(StepKind::parse(name), Some(kind));
            // The name survives the history file and a peer's status: it is a valid one.
            assert_eq!(KindName::try_from(name.to_string()), Ok(kind.name()));
        }
        assert_eq!(StepKind::parse("ws_sned"), None);
        // The names the status JSON, the history file and peers have always carried: a kind is
        // never renamed (a new one is added freely).
        let kept = "http ws_connect ws_send ws_expect ws_close redis http_json turn webrtc";
        for name in kept.split(' ') {
            assert!(StepKind::parse(name).is_some(), "`{name}` was renamed");
        }
    }
}
