//! The SMTP stage a question is asked at, and which stages decide what.
//!
//! The stage type is the protocol codec's own (`spamgate_policy::ProtocolState`): one
//! enum for the SMTP dialogue's stages, whichever front-end asks.

pub use spamgate_policy::ProtocolState as Stage;

/// The stages at which the inbound policy may be asked (`server.decide_at`).
pub const INBOUND_STAGES: [Stage; 5] = [
    Stage::Connect,
    Stage::Ehlo,
    Stage::Helo,
    Stage::Mail,
    Stage::Rcpt,
];

/// The stages at which a submission may be charged (`submission.charge_at`).
pub const CHARGE_STAGES: [Stage; 2] = [Stage::Data, Stage::EndOfMessage];
