//! The spamgate daemon and its command line, as a library so tests can start it in-process.
//!
//! Layout:
//! - [`cli`]: the command line definition (clap), walked by tests and rendered as man
//!   pages and completions.
//! - [`config`]: the TOML file, defaults and validation, and its mapping onto the
//!   application's settings.
//! - [`op25b`]: the `spamgate op25b` commands (rules rendered by `spamgate-op25b`).
//! - [`stats`]: `spamgate stats`, counts from decision log lines.
//! - [`desk_cli`]: the abuse desk's commands (`abuse`, `customer`, `sessions`), over
//!   `spamgate_app::desk`.
//! - [`daemon`]: wiring for `spamgate serve`: open, bind, signals, reload, drain.
//! - [`http`]: the `/metrics` and `/health` listener.
//! - [`logging`]: the log writer thread.
//!
//! Decisions live in `spamgate-app` (over the pure `spamgate-engine`); the Postfix
//! front-end in `spamgate-postfix`; listeners in `spamgate-net`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admin_cli;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod desk_cli;
pub mod http;
pub mod logging;
pub mod op25b;
pub mod stats;
