//! One integration test binary (as ripgrep does): every module below links into it.

mod support;

mod alert_providers;
mod alerting;
mod cli;
mod config_errors;
mod config_reads;
mod container;
mod conventions;
mod cookies;
mod examples;
mod fleet;
mod flow;
mod footprint;
mod headline;
mod hostile;
mod never_silent;
mod pages;
mod proptest_config;
mod proptest_redact;
mod proptest_template;
mod reasons;
mod redis_health;
mod redis_sim;
mod reload;
mod retry_after;
mod scheduler;
mod secrets;
mod servers_smoke;
mod service;
mod signalling;
mod sim_server;
mod state;
mod status_page;
mod tls;
mod web_config;
