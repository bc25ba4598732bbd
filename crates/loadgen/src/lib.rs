#![forbid(unsafe_code)]
//! Load generation for Postfix policy servers (spamgate and its peers), and the
//! protocol-limit baseline they are measured against.
//!
//! # Layout
//! - [`workload`]: the seeded request mix; request `i` is a pure function of the
//!   configuration and `i`, so a run is reproducible whatever the concurrency.
//! - [`driver`]: C persistent connections, one outstanding request each (as Postfix's
//!   smtpd processes do), latency histogram and action mix.
//! - [`report`]: what a run measured, as text or JSON; [`table`]: many runs as one
//!   Markdown table with the headline ratios.
//! - [`baseline`]: a server that frames requests and answers `DUNNO` with no other work.
//! - [`zones`]: DNS data (rbldnsd, dnsmasq) that answers the workload's lookups locally.
//!
//! **Invariant:** the workload only uses documentation and benchmarking address ranges
//! (198.18.0.0/15, 2001:db8::/32) and `.test` / `example.*` names.

pub mod baseline;
pub mod driver;
pub mod report;
pub mod rng;
pub mod table;
pub mod workload;
pub mod zones;

pub use driver::{RunOptions, Target, run};
pub use report::{ActionMix, Report};
pub use workload::{ClientKind, Mode, Workload, WorkloadConfig};
