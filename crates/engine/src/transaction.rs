//! One question from a front-end: the client, the envelope, the stage, the login and the
//! port. Every front-end (Postfix policy connection, `spamgate check`, later milter and
//! HTTP) builds one of these; [`Direction::of`] is the one place that says which policy
//! answers it.

use crate::envelope::Envelope;
use crate::outbound::SubmissionRules;
use crate::stage::Stage;

/// Everything the decision needs about one SMTP transaction at one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub envelope: Envelope,
    pub stage: Stage,
    /// The SASL login name, when the client authenticated (never empty).
    pub sasl_username: Option<String>,
    /// The local port the client connected to (Postfix `server_port`).
    pub server_port: Option<u16>,
    /// Recipients of the message so far (Postfix `recipient_count`); at least 1.
    pub recipient_count: u32,
    /// The front-end's id of the mail transaction (Postfix `instance`), the same for every
    /// request of one message: how the tarpit sees a held client's next step.
    pub instance: Option<String>,
}

impl Transaction {
    /// An inbound transaction at RCPT with nothing but the envelope.
    pub fn at_rcpt(envelope: Envelope) -> Transaction {
        Transaction {
            envelope,
            stage: Stage::Rcpt,
            sasl_username: None,
            server_port: None,
            recipient_count: 1,
            instance: None,
        }
    }
}

/// Which policy answers a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Mail arriving at the MX: lists, reverse DNS, selective greylisting.
    Inbound,
    /// The ISP's customers sending out: account status and limits.
    Submission,
}

impl Direction {
    /// A transaction is a submission when the submission policy is on and the client
    /// logged in, or came in on a submission port; everything else is inbound.
    pub fn of(transaction: &Transaction, submission: Option<&SubmissionRules>) -> Direction {
        match submission {
            Some(rules)
                if transaction.sasl_username.is_some()
                    || transaction
                        .server_port
                        .is_some_and(|port| rules.ports.contains(&port)) =>
            {
                Direction::Submission
            }
            _ => Direction::Inbound,
        }
    }
}
