//! The Postfix front-end: SMTPD access policy delegation connections translated to the
//! application layer and back. Bytes → [`PolicyRequest`](spamgate_policy::PolicyRequest)
//! (the sans-IO codec) → [`Transaction`](spamgate_engine::Transaction) ([`request`]) →
//! [`Service::decide`](spamgate_app::Service::decide) → Postfix action text ([`action`])
//! → bytes, plus one decision log line ([`answer`]). No policy is decided here.
#![forbid(unsafe_code)]

pub mod action;
pub mod answer;
pub mod connection;
pub mod request;

pub use answer::{Answer, answer};
pub use connection::{ConnectionLimits, PostfixFrontEnd};
