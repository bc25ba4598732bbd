#![forbid(unsafe_code)]
//! spamgate's DNS layer: DNSBL/DNSWL lookups and forward-confirmed reverse DNS (FCrDNS).
//!
//! Layout:
//! - [`zonespec`]: list zones in postscreen syntax (`zone[=filter][*weight]`).
//! - [`names`]: pure construction of query names (reversed IPv4 octets, IPv6 nibbles).
//! - [`answers`]: pure reading of list answers (127/8 only, filters, blocked-resolver
//!   sentinels) and of TXT reasons.
//! - [`config`]: [`DnsConfig`] and its mapping onto hickory's resolver options.
//! - [`lookup`]: [`Dns`], the async front: a hickory resolver (TTL cache with clamped TTLs)
//!   plus coalescing of identical in-flight queries, a cap on queries in flight, and in front
//!   of it all a cache of finished list results (`front_cache`), since even a hickory cache
//!   hit is costly per request.
//!
//! **Invariant:** a DNS failure is never a listing and never a verdict about the client: it is
//! [`ListResult::Error`] or [`Rdns::TempFail`]. A per-zone circuit breaker can wrap
//! [`Dns::list_lookup`] by counting those errors; none exists yet.

pub mod answers;
pub mod config;
mod front_cache;
pub mod lookup;
pub mod names;
pub mod spf;
pub mod zonespec;

use std::net::Ipv4Addr;

pub use config::DnsConfig;
pub use lookup::Dns;
pub use names::{list_query_name, reverse_query_name};
pub use spf::{Matched, MechanismKind, NarrowRule, SpfOutcome, SpfResult};
pub use zonespec::{AddrFilter, ZoneSpec, ZoneSpecError};

/// The outcome of looking one client up in one list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListResult {
    /// NXDOMAIN, no A record, or only answers that are not listings (outside 127/8 or filtered
    /// out).
    NotListed,
    /// Listed: the answers that passed the zone's filter, and the list's TXT reason (printable
    /// ASCII, at most 255 characters) when it could be fetched.
    Listed {
        answers: Vec<Ipv4Addr>,
        txt: Option<String>,
    },
    /// The lookup failed (timeout, SERVFAIL, REFUSED, blocked-resolver sentinel answer): no
    /// verdict either way.
    Error(String),
}

/// The outcome of forward-confirmed reverse DNS for a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rdns {
    /// A PTR name whose A/AAAA records include the client (lower case, no trailing dot).
    Confirmed { name: String },
    /// PTR names exist but none resolves back to the client; `ptr` is the first PTR name.
    NotConfirmed { ptr: String },
    /// NXDOMAIN, or no PTR records.
    NoPtr,
    /// The PTR lookup, or a forward lookup that could have confirmed, failed temporarily.
    TempFail(String),
}

/// Why the DNS layer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("invalid DNS configuration: {0}")]
    Config(String),
    #[error("cannot read the system resolver configuration: {0}")]
    SystemConfig(String),
    #[error("no name servers configured (and none in the system resolver configuration)")]
    NoNameservers,
    #[error("cannot build the resolver: {0}")]
    Resolver(String),
}
