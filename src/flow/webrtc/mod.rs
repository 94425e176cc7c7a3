//! The `webrtc` step: the media path after signalling. One peer connection per `connection`
//! name, in two halves around the signalling steps that carry its SDP:
//!
//! - `action = "offer"` gathers and makes our SDP offer (one data channel) into a variable;
//!   `action = "answer"` does the same from the SFU's offer (`remote_sdp`);
//! - `action = "connect"` takes the SFU's answer (`remote_sdp`, after an offer), runs ICE and
//!   DTLS-SRTP (the certificate checked against `a=fingerprint`) and echoes `echo` messages on
//!   the data channel: phases `ice`, `dtls`, `first_media`; gauges `echo_loss_ratio`,
//!   `echo_rtt_seconds`.

mod echo;
mod peer;
mod sdp;

use std::net::IpAddr;
use std::time::Duration;

pub use echo::{EchoOptions, EchoReport, MAX_ECHOES};
pub use peer::{Peer, Timings};
pub use sdp::MAX_SDP_BYTES;

use super::{RunContext, StepError};
use crate::report::FailureReason;
use crate::template::Template;

/// The variable our SDP goes into unless `save_as` names another.
pub const DEFAULT_SAVE_AS: &str = "local_sdp";

/// What a `webrtc` step does.
#[derive(Debug, Clone, PartialEq)]
pub enum WebrtcAction {
    /// Make our offer.
    Offer,
    /// Answer the remote offer (rendered from the template).
    Answer(Template),
    /// Connect: ICE, DTLS, the echo; with the remote answer after an `offer`.
    Connect(Option<Template>),
}

/// A validated `webrtc` step.
#[derive(Debug, Clone, PartialEq)]
pub struct WebrtcSpec {
    pub action: WebrtcAction,
    /// `offer`/`answer`: the variable our SDP is stored in (for the signalling steps).
    pub save_as: String,
    /// Our host candidate's address; none: the address routed towards the SFU's candidates.
    pub local_address: Option<IpAddr>,
    pub echo: EchoOptions,
}

/// Runs one `webrtc` step on `connection`.
#[expect(
    dead_code,
    reason = "the step is hooked into the kinds when their one-list shape lands (issue 18)"
)]
pub(crate) async fn run(
    ctx: &mut RunContext<'_>,
    connection: &str,
    spec: &WebrtcSpec,
) -> Result<(), StepError> {
    match &spec.action {
        WebrtcAction::Offer | WebrtcAction::Answer(_) => {
            let (peer, sdp) = match &spec.action {
                WebrtcAction::Answer(remote) => {
                    let offer = ctx.render(remote)?;
                    Peer::answer(spec.local_address, &offer).await?
                }
                _ => Peer::offer(spec.local_address).await?,
            };
            // A peer made again on the same connection replaces (and closes) the old one.
            ctx.webrtc.insert(connection.to_string(), peer);
            ctx.set_var(&spec.save_as, sdp);
            Ok(())
        }
        WebrtcAction::Connect(remote) => {
            let answer = remote.as_ref().map(|t| ctx.render(t)).transpose()?;
            let Some(mut peer) = ctx.webrtc.remove(connection) else {
                return Err(StepError::new(
                    FailureReason::Protocol,
                    format!(
                        "no WebRTC offer or answer on connection `{connection}` to connect (a \
                         `webrtc` step with action \"offer\" or \"answer\" comes first)"
                    ),
                ));
            };
            let deadline = ctx.deadline;
            let report = peer
                .connect(
                    answer.as_deref(),
                    &spec.echo,
                    deadline,
                    Timings {
                        phases: &mut ctx.phases,
                        pending: &mut ctx.pending,
                    },
                )
                .await?;
            ctx.gauges
                .insert("echo_loss_ratio".to_string(), report.loss_ratio());
            if let Some(rtt) = report.median_rtt() {
                ctx.gauges
                    .insert("echo_rtt_seconds".to_string(), rtt.as_secs_f64());
            }
            Ok(())
        }
    }
}

/// The longest `echo_interval` and `echo_wait` a step may ask for.
pub const MAX_ECHO_WAIT: Duration = Duration::from_secs(30);
