//! spamgate's application layer: what every front-end (the Postfix policy connection,
//! the CLI, later milter and HTTP) calls. Front-ends translate bytes to a
//! [`Transaction`](spamgate_engine::Transaction) and a [`Verdict`](spamgate_engine::Verdict)
//! back to bytes; everything in between is here or in the pure engine.
//!
//! Layout:
//! - [`service`]: [`Service::decide`], the one entry for decisions (routing, allow-lists,
//!   DNS, engine, store), with DNS, store and clock injected.
//! - [`settings`]: what a reload replaces, compiled from plain values.
//! - [`lists`]: the DNS lists with their circuit breakers.
//! - [`replies`]: reply templates → SMTP code and text (no front-end verbs).
//! - [`accounts`], [`allow`]: the operator commands' rules (CLI today, desk and API next).
//! - [`learned`]: the operator's commands on learned exemptions.
//! - [`desk`]: the abuse desk over `spamgate-desk`'s store, with enforcement through
//!   [`accounts`] and the hook runner.
//! - [`op25b`]: the effective OP25B exemption set (customers' exemptions left out while
//!   the desk has them suspended) for `op25b sync` and the desk's enforcement.
//! - [`decision_log`]: the one decision log line, written and read back.
//! - [`metrics`]: Prometheus metrics, one method per observable event.
//! - [`timeline`]: the last day's decisions per minute, in memory (the console's charts).
//! - [`tarpit`]: the tarpit's holds in progress and held transactions.
//! - [`charge_watch`]: notices when Postfix never asks at `[submission] charge_at`.
//! - [`users`]: the admin API's users, tokens, sessions, login limit and audit trail.
//! - [`clock`], [`resolver`]: the injected time and DNS.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod allow;
pub mod charge_watch;
pub mod clock;
pub mod decision_log;
pub mod desk;
pub mod display;
pub mod learned;
pub mod lists;
pub mod metrics;
pub mod op25b;
pub mod op25b_hits;
pub mod replies;
pub mod resolver;
pub mod service;
pub mod settings;
pub mod tarpit;
pub mod timeline;
pub mod users;

pub use clock::{Clock, ManualClock, SystemClock};
pub use replies::{Replies, ReplyHead, ReplyKind};
pub use resolver::Resolver;
pub use service::{Backend, Mode, Service};
pub use settings::{Settings, SettingsParts};
pub use tarpit::TarpitHold;
