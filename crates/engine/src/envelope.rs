//! What the engine is told about one SMTP transaction.

use std::net::IpAddr;

/// The client and message facts a front-end (policy protocol, milter, SMTP) hands over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub client_address: IpAddr,
    /// Forward-confirmed reverse name (Postfix `client_name`), when known.
    pub client_name: Option<String>,
    /// Unverified PTR name (Postfix `reverse_client_name`), when known.
    pub reverse_client_name: Option<String>,
    pub helo: Option<String>,
    /// Envelope sender; empty for the null sender (bounces).
    pub sender: String,
    pub recipient: String,
}

impl Envelope {
    /// An envelope with only the client address set; handy for tests and `check`.
    pub fn new(client_address: IpAddr) -> Envelope {
        Envelope {
            client_address,
            client_name: None,
            reverse_client_name: None,
            helo: None,
            sender: String::new(),
            recipient: String::new(),
        }
    }

    /// Domain part of an address, lowercased; `None` when there is no `@`.
    pub fn domain_of(address: &str) -> Option<String> {
        address
            .rsplit_once('@')
            .map(|(_, domain)| domain.trim_end_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
    }

    /// Local part of an address, lowercased (the whole string when there is no `@`).
    pub fn local_part_of(address: &str) -> String {
        address
            .rsplit_once('@')
            .map_or(address, |(local, _)| local)
            .to_ascii_lowercase()
    }
}
