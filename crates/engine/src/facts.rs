//! What the DNS layer found out, as plain values (the engine does no lookups).

use std::net::Ipv4Addr;

use serde::Serialize;

/// The answer of one DNS list (DNSBL or DNSWL) for the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum ListAnswer {
    NotListed,
    /// Listed: the A answers that passed the zone's filter, and the TXT reason if any.
    Listed {
        answers: Vec<Ipv4Addr>,
        txt: Option<String>,
    },
    /// Timeout, server failure or a "your resolver is blocked" sentinel: never a listing.
    Error {
        error: String,
    },
    /// Not asked (e.g. an allow-list already decided, or the zone is skipped for a while).
    NotQueried,
}

/// One configured list and what it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListFact {
    pub zone: String,
    pub weight: i32,
    pub answer: ListAnswer,
}

/// What reverse DNS says about the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rdns", rename_all = "kebab-case")]
pub enum RdnsFact {
    /// The PTR name resolves back to the client address (FCrDNS).
    Confirmed { name: String },
    /// There is a PTR name but it does not resolve back to the client.
    NotConfirmed { ptr: String },
    /// No PTR record.
    NoPtr,
    /// The lookup failed temporarily.
    TempFail { error: String },
}

impl RdnsFact {
    /// Reads Postfix's view: `client_name` is the verified name, `reverse_client_name` the
    /// unverified PTR; both are `unknown` (or absent) when the PTR lookup failed, which
    /// Postfix does not tell apart from "no PTR".
    pub fn from_postfix(client_name: Option<&str>, reverse_client_name: Option<&str>) -> RdnsFact {
        let known = |n: Option<&str>| {
            n.map(str::trim)
                .filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case("unknown"))
                .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
        };
        match (known(client_name), known(reverse_client_name)) {
            (Some(name), _) => RdnsFact::Confirmed { name },
            (None, Some(ptr)) => RdnsFact::NotConfirmed { ptr },
            (None, None) => RdnsFact::NoPtr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_names() {
        let check = |c, r, expected: RdnsFact| assert_eq!(RdnsFact::from_postfix(c, r), expected);
        check(
            Some("Mail.Example.com."),
            Some("mail.example.com"),
            RdnsFact::Confirmed {
                name: "mail.example.com".into(),
            },
        );
        check(
            Some("unknown"),
            Some("host.example.net"),
            RdnsFact::NotConfirmed {
                ptr: "host.example.net".into(),
            },
        );
        check(Some("unknown"), Some("unknown"), RdnsFact::NoPtr);
        check(None, None, RdnsFact::NoPtr);
        check(Some(""), Some(""), RdnsFact::NoPtr);
    }
}
