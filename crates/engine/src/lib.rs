//! spamgate's decision engine.
//!
//! Layout:
//! - [`envelope`]: what is known about one SMTP transaction (client, sender, recipient).
//! - [`facts`]: what the DNS layer found out (list answers, reverse DNS), as plain values.
//! - [`allow`]: operator allow-lists (addresses, host names, senders, recipients).
//! - [`client`]: classification of the client from its reverse DNS.
//! - [`greylist`]: keys, stored state and the pure greylist state machine.
//! - [`learn`]: learned exemptions: organisations whose confirmed servers keep passing
//!   greylisting skip it for a while.
//! - [`outbound`]: submission accounts and the GCRA rate-limit function.
//! - [`stage`]: the SMTP stage a question is asked at.
//! - [`tarpit`]: taRgrey's tarpit: hold a first attempt instead of deferring it.
//! - [`transaction`]: one question from a front-end, and which policy answers it.
//! - [`verdict`]: the decision as a value, with machine-readable reasons.
//! - [`Engine`]: ties them together in the order the policy demands.
//!
//! **Invariant:** nothing in this crate does I/O or reads a clock. Callers pass the
//! current time in; stores apply [`greylist::decide`] inside their own transactions.
#![forbid(unsafe_code)]

pub mod allow;
pub mod client;
mod engine;
pub mod envelope;
pub mod facts;
pub mod greylist;
pub mod learn;
pub mod names;
pub mod outbound;
pub mod stage;
pub mod tarpit;
pub mod transaction;
pub mod verdict;

pub use engine::{
    Engine, EngineConfig, EngineError, Evaluation, GreylistPlan, ListRules, StoreFailMode,
    default_greylist_classes,
};
pub use envelope::Envelope;
pub use stage::Stage;
pub use transaction::{Direction, Transaction};
pub use verdict::{Action, Reason, Refusal, Verdict};

/// Seconds since the Unix epoch. The engine never reads a clock: callers pass this in.
pub type UnixTime = u64;
