//! joincanary: a synthetic canary for video-conferencing join flows.
//!
//! Leaves every part takes: [`diag`] (config errors with file, line and key; `${ENV}`; bounded
//! file reads), [`template`], [`redact`], [`schedule`], [`net`].
//!
//! A tour, in the order data flows: [`config`] loads the service config and probe files into a
//! validated plan; [`flow`] runs one probe (HTTP login, websocket handshake, signalling
//! round-trip) into a [`report::ProbeRun`]; [`scheduler`] runs probes on their cron schedules (and [`resident`] the resident ones), telling the rest by [`event`]s;
//! [`service`] wires them into `joincanary run` (every long-lived task under [`supervise`];
//! [`reload`] reads a changed configuration), where the [`consumer`] records every run in
//! [`metrics`], [`status`] and [`alert`], and [`heartbeat`] pings dead man's switches while the scheduler is healthy ([`liveness`]).
//! [`server`] serves `/metrics`, the status API and the [`page`] (with [`fleet`]: peers' status; [`rollup`]: a week of hourly availability; [`html`]: the one HTML escaper, shared with the email pager); [`sim`] is the reference
//! conference server used by [`demo`] and the tests; [`clock`] lets schedules run on tokio's
//! (pausable) clock; [`output`] formats `once`; [`shutdown`] waits for SIGTERM or Ctrl-C; [`backoff`] is the one capped exponential backoff every retry waits by;
//! [`logging`] sets up `--log.level`/`--log.format`; [`web`] is `--web.config.file` (TLS, basic auth); [`healthcheck`] asks a running service for `/healthz` as it is configured (the container's HEALTHCHECK); `process` exports `process_*` metrics.

pub mod alert;
pub mod alerting;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod delivery;
#[cfg(feature = "sim")]
pub mod demo;
pub mod diag;
pub mod event;
pub mod fleet;
pub mod flow;
pub mod healthcheck;
pub mod heartbeat;
pub mod html;
pub mod liveness;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod output;
pub mod page;
#[cfg(target_os = "linux")]
pub mod process;
pub mod redact;
pub mod reload;
pub mod report;
pub mod resident;
pub mod rollup;
pub mod schedule;
pub mod scheduler;
pub mod secret;
pub mod server;
pub mod service;
pub mod shutdown;
#[cfg(feature = "sim")]
pub mod sim;
pub mod status;
pub mod store;
pub mod supervise;
pub mod template;
pub mod tls_client;
pub mod web;
