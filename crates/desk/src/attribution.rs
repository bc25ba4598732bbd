//! Attribution: (address[, port], time) → exactly one customer, or triage.
//!
//! Never a guess: zero candidates, or candidates belonging to several
//! customers, go to a person with every record that was considered.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::history::{Identity, Interval};
use crate::time::UnixTime;

/// The question a report asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = AttributionQuery))]
pub struct Query {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub address: IpAddr,
    pub port: Option<u16>,
    pub at: UnixTime,
}

/// How strict the answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributionPolicy {
    /// Seconds the reporter's clock may be off either way.
    pub skew: i64,
    /// How long an open session counts after its last Start/Interim when its Stop was lost.
    pub lost_stop_grace: i64,
}

impl Default for AttributionPolicy {
    fn default() -> Self {
        AttributionPolicy {
            skew: 120,
            lost_stop_grace: 3600,
        }
    }
}

/// One interval that matched, with the customer its holder maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Candidate {
    pub interval: Interval,
    /// `None` when no mapping names a customer for the identity.
    pub customer: Option<String>,
    /// The end used for the decision (known, lost-Stop grace, or cut by a later holder).
    pub effective_end: Option<UnixTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum TriageReason {
    /// No record covers the address at that time.
    NoCandidate,
    /// Records of several customers (or of unmapped holders) cover it.
    SeveralCandidates,
    /// The only holder maps to no customer.
    UnknownHolder,
    /// A shared (CGNAT / MAP-E) address without a source port: ambiguous by nature.
    PortRequired,
}

/// The answer, with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Attribution {
    Customer {
        customer: String,
        query: Query,
        evidence: Vec<Candidate>,
    },
    Triage {
        reason: TriageReason,
        query: Query,
        evidence: Vec<Candidate>,
    },
}

impl Attribution {
    pub fn customer(&self) -> Option<&str> {
        match self {
            Attribution::Customer { customer, .. } => Some(customer),
            Attribution::Triage { .. } => None,
        }
    }

    pub fn evidence(&self) -> &[Candidate] {
        match self {
            Attribution::Customer { evidence, .. } | Attribution::Triage { evidence, .. } => {
                evidence
            }
        }
    }
}

fn ports_overlap(a: Option<(u16, u16)>, b: Option<(u16, u16)>) -> bool {
    match (a, b) {
        (Some((a0, a1)), Some((b0, b1))) => a0 <= b1 && b0 <= a1,
        _ => true,
    }
}

/// Decides who held `query.address` at `query.at`.
///
/// `intervals` are the records the store found for the address (any order;
/// extra ones are filtered here). `customer_of` maps a holder identity to a
/// customer id. An open session is cut short by the next session on the same
/// network and ports (the address was reassigned, so its Stop was lost).
pub fn attribute(
    query: Query,
    intervals: &[Interval],
    customer_of: impl Fn(&Identity) -> Option<String>,
    policy: &AttributionPolicy,
) -> Attribution {
    let relevant: Vec<&Interval> = intervals
        .iter()
        .filter(|i| i.network.contains(&query.address))
        .filter(|i| match (i.ports, query.port) {
            (Some((first, last)), Some(port)) => first <= port && port <= last,
            _ => true,
        })
        .collect();
    let mut candidates: Vec<Candidate> = Vec::new();
    for interval in &relevant {
        let mut end = interval.effective_end(policy.lost_stop_grace);
        if interval.end.is_none() {
            // Reassigned: a later holder of the same network starts where this one stopped.
            let next_start = relevant
                .iter()
                .filter(|o| {
                    o.network == interval.network
                        && o.start > interval.start
                        && o.key != interval.key
                        && ports_overlap(o.ports, interval.ports)
                })
                .map(|o| o.start)
                .min();
            if let Some(next) = next_start {
                end = Some(end.map_or(next, |e| e.min(next)));
            }
        }
        let covers = interval.start.saturating_sub(policy.skew) <= query.at
            && end.is_none_or(|e| query.at <= e.saturating_add(policy.skew));
        if covers {
            candidates.push(Candidate {
                interval: (*interval).clone(),
                customer: customer_of(&interval.identity),
                effective_end: end,
            });
        }
    }
    candidates.sort_by(|a, b| {
        a.interval
            .start
            .cmp(&b.interval.start)
            .then(a.interval.key.cmp(&b.interval.key))
    });
    let mut customers: Vec<Option<&str>> =
        candidates.iter().map(|c| c.customer.as_deref()).collect();
    customers.sort();
    customers.dedup();
    if query.port.is_none() && candidates.iter().any(|c| c.interval.ports.is_some()) {
        return Attribution::Triage {
            reason: TriageReason::PortRequired,
            query,
            evidence: candidates,
        };
    }
    match customers.as_slice() {
        [] => Attribution::Triage {
            reason: TriageReason::NoCandidate,
            query,
            evidence: candidates,
        },
        [Some(customer)] => Attribution::Customer {
            customer: customer.to_string(),
            query,
            evidence: candidates,
        },
        [None] => Attribution::Triage {
            reason: TriageReason::UnknownHolder,
            query,
            evidence: candidates,
        },
        _ => Attribution::Triage {
            reason: TriageReason::SeveralCandidates,
            query,
            evidence: candidates,
        },
    }
}
