//! The HTTP listener's own settings, so `/api/v1/status`, the status page, `/metrics` and
//! `/-/reload` are not open to anyone who reaches the port and no client can starve the
//! probes: `config.rs` reads `--web.config.file` (TLS and basic auth, in the Prometheus
//! exporter-toolkit format) and puts auth and headers in front of the router; `listen.rs`
//! serves that router within [`Limits`] (connection cap, header-read and idle timeouts).

mod config;
mod listen;

pub use config::{WebConfig, WebConfigError};
pub use listen::{ConnectionMetrics, DEFAULT_MAX_CONNECTIONS, Limits, serve};
