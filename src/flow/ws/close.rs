//! The `ws_close` step: the closing handshake of an open websocket (its protocol's goodbye
//! first).

use serde::Deserialize;

use super::*;
use crate::flow::context::RunContext;
use crate::flow::kind::{Build, Kind, Websocket};

/// A `ws_close` step has no keys of its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWsClose {}

/// A `ws_close` step.
#[derive(Debug, Clone)]
pub struct CloseSpec;

impl Kind for CloseSpec {
    type Raw = RawWsClose;
    const WEBSOCKET: Websocket = Websocket::Closes;

    fn build(_: RawWsClose, _: &mut Build<'_, '_, '_>) -> Option<CloseSpec> {
        Some(CloseSpec)
    }

    async fn run(&self, ctx: &mut RunContext<'_>, connection: &str) -> Result<(), StepError> {
        close(ctx, connection).await
    }
}

async fn close(ctx: &mut RunContext<'_>, name: &str) -> Result<(), StepError> {
    let conn = ctx
        .ws
        .remove(name)
        .ok_or_else(|| StepError::new(FailureReason::WsClosed, "no websocket is open to close"))?;
    conn.close()
        .await
        .map_err(|e| classify(e, FailureReason::WsClosed))
}
