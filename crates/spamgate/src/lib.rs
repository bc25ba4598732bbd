//! The spamgate daemon and its command line, as a library so tests can start it in-process.
//!
//! Layout:
//! - [`config`]: the TOML file, defaults and validation.
//! - [`service`]: the decision pipeline (allow-lists → DNS → engine → store) with DNS,
//!   store and clock injected.
//! - [`server`]: listeners, connections, the policy codec, one log line per decision.
//! - [`render`]: verdict → Postfix action text (configurable replies).
//! - [`metrics`]: Prometheus metrics, one method per observable event.
//! - [`op25b`]: the `spamgate op25b` commands (rules rendered by `spamgate-op25b`).
//! - [`stats`]: `spamgate stats`, counts from decision log lines.
//! - [`daemon`]: wiring for `spamgate serve`: open, bind, signals, reload, drain.
#![forbid(unsafe_code)]

pub mod config;
pub mod daemon;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod op25b;
pub mod render;
pub mod server;
pub mod service;
pub mod stats;
