//! The step kinds: the one list of them (`kinds!` below), and [`StepSpec`], a validated step.
//!
//! A kind is one file under `flow/` (`http.rs`, `redis.rs`, `ws/send.rs`, ...) that owns its
//! table, its validation and its run, as `impl Kind for <Kind>Spec` (the trait is in `kind.rs`):
//! - `type Raw`: the kind's own keys, a `#[serde(deny_unknown_fields)]` struct of `Spanned`
//!   fields, read from the step's table once `kind` is known. The keys every step has (`name`,
//!   `kind`, `timeout`, `cleanup`, and `connection` for a kind on a websocket) are read before,
//!   into `steps::StepHead`.
//! - `build(raw, &mut Build) -> Option<Self>`: every check `joincanary check` promises, each
//!   problem reported through [`Build`] with file, line and key.
//! - `reads` and `extracts`: the variables its templates read and the ones it sets.
//! - `run`: one run of the step; the engine (`flow/mod.rs`) holds its timeout and deadline.
//!
//! To add a kind: write `flow/<kind>.rs` (copy `redis.rs`'s first 150 lines for the shape), add
//! its name to [`crate::report::StepKind`], one line to `kinds!` below, its keys to the README,
//! and tests. No list of keys is kept by hand: a key another kind takes gets "`x` does not apply
//! to a <kind> step", any other key "unknown field `x`, expected one of …" with the keys this
//! kind takes, both read from the `Raw` types.

use super::context::RunContext;
use super::error::StepError;
use super::kind::{Build, Kind, Reads, Websocket};
use super::parts::Extraction;
use crate::report::StepKind;

macro_rules! kinds {
    ($($kind:ident($spec:ty),)*) => {
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
                    $(StepSpec::$kind(_) => <$spec as Kind>::WEBSOCKET == Websocket::Uses,)*
                }
            }

            pub(crate) async fn run(
                &self,
                ctx: &mut RunContext<'_>,
                connection: &str,
            ) -> Result<(), StepError> {
                match self {
                    $(StepSpec::$kind(s) => <$spec as Kind>::run(s, ctx, connection).await,)*
                }
            }
        }
    };
}

kinds! {
    Http(super::http::HttpSpec),
    WsConnect(super::ws::connect::WsConnectSpec),
    WsSend(super::ws::send::SendSpec),
    WsExpect(super::ws::expect::ExpectSpec),
    WsClose(super::ws::close::CloseSpec),
    Redis(super::redis::RedisSpec),
    HttpJson(super::http_json::HttpJsonSpec),
    Webrtc(super::webrtc::WebrtcSpec),
    Turn(super::turn::TurnSpec),
}

/// Reads the kind's table and builds it.
fn build<K: Kind>(b: &mut Build<'_, '_, '_>) -> Option<K> {
    let raw = b.read::<K::Raw>()?;
    K::build(raw, b)
}
