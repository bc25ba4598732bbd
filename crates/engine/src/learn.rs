//! Learned exemptions: an organisational domain whose forward-confirmed servers keep
//! passing greylisting is exempted from it for a while.
//!
//! Pure: a [`LearnRecord`] (what the store holds for one organisational domain), one
//! [`Observation`] and `now` in, the record to store and what happened out
//! ([`observe`]); [`exemption`] says whether a record exempts a client now. Stores apply
//! [`observe`] atomically, as they apply the greylist's `decide`.
//!
//! What counts (see docs/learning.md for the reasons):
//! - only a retry that passed greylisting ([`ObservationKind::Passed`]) from a client whose
//!   PTR name is forward-confirmed, whose name no strong (dynamic) rule matches, and that
//!   no DNSBL lists; the subject is the name's organisational domain (public suffix);
//! - `min_networks` distinct networks (`/ipv4_prefix`, `/ipv6_prefix`) seen within
//!   `window`, the first and the last at least `min_span` apart;
//! - a dynamic-looking name of the same organisation that passes, or a listed client, is
//!   evidence against: the organisation is refused (and its exemption revoked) for
//!   `refuse_for`;
//! - at most `max_entries` organisations are exempted at once and at most `max_tracked`
//!   are followed; each record keeps at most `max_networks_per_org` networks.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::UnixTime;
use crate::client::ClientClass;
use crate::facts::{ListAnswer, ListFact, RdnsFact};
use crate::greylist::{KeyScheme, client_network, organisational_domain};
use spamgate_rdns::Classifier;

/// The thresholds and caps (`[greylist.learn]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnParams {
    pub enabled: bool,
    /// Distinct networks whose passes make an organisation learned.
    pub min_networks: usize,
    /// Prefix lengths that make two addresses one network.
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// The first counted pass and the last at least this far apart.
    pub min_span: Duration,
    /// Passes older than this are forgotten.
    pub window: Duration,
    /// How long a learned exemption lasts.
    pub ttl: Duration,
    /// How long evidence against an organisation (a dynamic name, a listing) blocks it.
    pub refuse_for: Duration,
    /// Organisations exempted at once.
    pub max_entries: usize,
    /// Organisations followed at once (learned or not).
    pub max_tracked: usize,
    /// Networks remembered per organisation.
    pub max_networks_per_org: usize,
}

impl Default for LearnParams {
    fn default() -> Self {
        LearnParams {
            enabled: false,
            min_networks: 3,
            ipv4_prefix: 24,
            ipv6_prefix: 48,
            min_span: Duration::from_secs(24 * 3600),
            window: Duration::from_secs(30 * 24 * 3600),
            ttl: Duration::from_secs(30 * 24 * 3600),
            refuse_for: Duration::from_secs(30 * 24 * 3600),
            max_entries: 1000,
            max_tracked: 20_000,
            max_networks_per_org: 16,
        }
    }
}

impl LearnParams {
    pub fn validate(&self) -> Result<(), String> {
        if self.min_networks < 2 {
            return Err("min_networks must be at least 2".into());
        }
        if self.max_networks_per_org < self.min_networks {
            return Err("max_networks_per_org must be at least min_networks".into());
        }
        if self.ipv4_prefix > 32 || self.ipv6_prefix > 128 {
            return Err("ipv4_prefix must be 0..=32 and ipv6_prefix 0..=128".into());
        }
        if self.min_span >= self.window {
            return Err("min_span must be shorter than window".into());
        }
        if self.ttl.is_zero() || self.max_entries == 0 || self.max_tracked == 0 {
            return Err("ttl, max_entries and max_tracked must be above zero".into());
        }
        if self.max_tracked < self.max_entries {
            return Err("max_tracked must be at least max_entries".into());
        }
        Ok(())
    }

    fn network(&self, client: IpAddr) -> String {
        let scheme = KeyScheme {
            ipv4_prefix: self.ipv4_prefix,
            ipv6_prefix: self.ipv6_prefix,
            ..KeyScheme::default()
        };
        client_network(client, &scheme).to_string()
    }
}

/// One network of an organisation that passed greylisting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSeen {
    /// `192.0.2.0/24`, `2001:db8:1::/48`.
    pub network: String,
    pub first_seen: UnixTime,
    pub last_seen: UnixTime,
    pub passes: u32,
}

/// What the store holds for one organisational domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnRecord {
    pub org: String,
    pub networks: Vec<NetworkSeen>,
    /// Set while the organisation is exempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned_at: Option<UnixTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned_until: Option<UnixTime>,
    /// Evidence against it blocks learning until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_until: Option<UnixTime>,
    /// Why (`dynamic(dyn-keyword):host.example.net`, `listed(zone)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl LearnRecord {
    fn new(org: &str) -> LearnRecord {
        LearnRecord {
            org: org.to_string(),
            networks: Vec::new(),
            learned_at: None,
            learned_until: None,
            refused_until: None,
            refused: None,
        }
    }

    /// Exempted at `now`.
    pub fn is_learned(&self, now: UnixTime) -> bool {
        self.learned_until.is_some_and(|until| until > now) && !self.is_refused(now)
    }

    pub fn is_refused(&self, now: UnixTime) -> bool {
        self.refused_until.is_some_and(|until| until > now)
    }

    /// When the store may forget the record: nothing in it matters any more.
    pub fn expires_at(&self, params: &LearnParams) -> UnixTime {
        let window = params.window.as_secs();
        let last = self
            .networks
            .iter()
            .map(|n| n.last_seen.saturating_add(window))
            .max()
            .unwrap_or(0);
        last.max(self.learned_until.unwrap_or(0))
            .max(self.refused_until.unwrap_or(0))
    }

    /// The record as it stands at `now`: networks past the window gone, an ended
    /// exemption or refusal cleared. `None` when nothing is left.
    pub fn current(mut self, params: &LearnParams, now: UnixTime) -> Option<LearnRecord> {
        let window = params.window.as_secs();
        self.networks
            .retain(|n| n.last_seen.saturating_add(window) > now);
        if self.learned_until.is_none_or(|until| until <= now) {
            self.learned_at = None;
            self.learned_until = None;
        }
        if !self.is_refused(now) {
            self.refused_until = None;
            self.refused = None;
        }
        let empty = self.networks.is_empty()
            && self.learned_until.is_none()
            && self.refused_until.is_none();
        (!empty).then_some(self)
    }
}

/// What a request says about its client's organisation, for learning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LearnSubject {
    /// A confirmed, non-dynamic, unlisted name: may be exempted, and counts when it passes.
    Eligible { org: String, network: String },
    /// Evidence against the organisation when this client passes greylisting.
    Against {
        org: String,
        network: String,
        why: String,
    },
    /// Says nothing (no PTR, unconfirmed, no organisational domain, the organisation is
    /// itself a dynamic zone).
    Ignored { why: &'static str },
}

impl LearnSubject {
    /// Reads the request's facts. `dnsbl` listings below the reject threshold make the
    /// client evidence against its organisation.
    pub fn of(
        client: IpAddr,
        rdns: &RdnsFact,
        class: &ClientClass,
        dnsbl: &[ListFact],
        classifier: &Classifier,
        params: &LearnParams,
    ) -> LearnSubject {
        let RdnsFact::Confirmed { name } = rdns else {
            return LearnSubject::Ignored {
                why: "not-confirmed",
            };
        };
        if !matches!(
            class,
            ClientClass::Generic { .. } | ClientClass::Proper { .. }
        ) {
            return LearnSubject::Ignored {
                why: "not-confirmed",
            };
        }
        let Some(org) = organisational_domain(name) else {
            return LearnSubject::Ignored { why: "no-org" };
        };
        if classifier.is_dynamic_zone_domain(&org) {
            return LearnSubject::Ignored {
                why: "dynamic-zone-org",
            };
        }
        let network = params.network(client);
        if let Some(rule) = classifier.dynamic_rule(name) {
            return LearnSubject::Against {
                org,
                network,
                why: format!("dynamic({rule}):{name}"),
            };
        }
        if let Some(listed) = dnsbl
            .iter()
            .find(|fact| matches!(fact.answer, ListAnswer::Listed { .. }))
        {
            return LearnSubject::Against {
                org,
                network,
                why: format!("listed({}):{client}", listed.zone),
            };
        }
        LearnSubject::Eligible { org, network }
    }

    pub fn org(&self) -> Option<&str> {
        match self {
            LearnSubject::Eligible { org, .. } | LearnSubject::Against { org, .. } => Some(org),
            LearnSubject::Ignored { .. } => None,
        }
    }

    /// The observation to record when this client passed greylisting.
    pub fn observation(&self) -> Option<Observation> {
        match self {
            LearnSubject::Eligible { org, network } => Some(Observation {
                org: org.clone(),
                network: network.clone(),
                kind: ObservationKind::Passed,
            }),
            LearnSubject::Against { org, network, why } => Some(Observation {
                org: org.clone(),
                network: network.clone(),
                kind: ObservationKind::Against { why: why.clone() },
            }),
            LearnSubject::Ignored { .. } => None,
        }
    }
}

/// One client of `org` passed greylisting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub org: String,
    pub network: String,
    pub kind: ObservationKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObservationKind {
    /// An eligible client: counts toward learning.
    Passed,
    /// A dynamic-looking name or a listed client: refuses the organisation.
    Against { why: String },
}

/// What the store knows besides the record, read in the same atomic step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LearnCounts {
    /// Organisations exempted at `now` (this one included if it is).
    pub learned: usize,
    /// Organisations with a record (this one included if it has one).
    pub tracked: usize,
}

/// What [`observe`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum LearnEvent {
    /// Counted; `networks` distinct networks now.
    Counted { networks: usize },
    /// Became exempted until `until`.
    Learned { until: UnixTime },
    /// Qualified, but `max_entries` organisations are exempted already.
    Capped { max_entries: usize },
    /// Evidence against it: refused until `until` (an exemption it had is gone).
    Refused { until: UnixTime, revoked: bool },
    /// Refused earlier and still: nothing counted.
    StillRefused,
    /// `max_tracked` organisations are followed already: not followed.
    NotTracked { max_tracked: usize },
}

impl LearnEvent {
    pub fn id(&self) -> &'static str {
        match self {
            LearnEvent::Counted { .. } => "counted",
            LearnEvent::Learned { .. } => "learned",
            LearnEvent::Capped { .. } => "capped",
            LearnEvent::Refused { .. } => "refused",
            LearnEvent::StillRefused => "still-refused",
            LearnEvent::NotTracked { .. } => "not-tracked",
        }
    }
}

/// The result of [`observe`]: the record to store (`None`: leave the store as it is)
/// and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub write: Option<LearnRecord>,
    pub event: LearnEvent,
}

/// Applies one observation to the stored record (`None` if there is none, or it is past
/// its expiry).
pub fn observe(
    stored: Option<LearnRecord>,
    observation: &Observation,
    counts: LearnCounts,
    params: &LearnParams,
    now: UnixTime,
) -> Observed {
    let stored = stored.and_then(|r| r.current(params, now));
    if stored.is_none() && counts.tracked >= params.max_tracked {
        return Observed {
            write: None,
            event: LearnEvent::NotTracked {
                max_tracked: params.max_tracked,
            },
        };
    }
    let mut record = stored.unwrap_or_else(|| LearnRecord::new(&observation.org));
    match &observation.kind {
        ObservationKind::Against { why } => {
            let revoked = record.is_learned(now);
            let until = now.saturating_add(params.refuse_for.as_secs());
            record.learned_at = None;
            record.learned_until = None;
            record.refused_until = Some(until);
            record.refused = Some(why.clone());
            // What it earned before the evidence does not count after it.
            record.networks.clear();
            Observed {
                write: Some(record),
                event: LearnEvent::Refused { until, revoked },
            }
        }
        ObservationKind::Passed if record.is_refused(now) => Observed {
            write: None,
            event: LearnEvent::StillRefused,
        },
        ObservationKind::Passed => {
            match record
                .networks
                .iter_mut()
                .find(|n| n.network == observation.network)
            {
                Some(seen) => {
                    seen.last_seen = now;
                    seen.passes = seen.passes.saturating_add(1);
                }
                None => {
                    if record.networks.len() >= params.max_networks_per_org {
                        // The longest-unseen network makes room.
                        if let Some(oldest) = record
                            .networks
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, n)| n.last_seen)
                            .map(|(i, _)| i)
                        {
                            record.networks.remove(oldest);
                        }
                    }
                    record.networks.push(NetworkSeen {
                        network: observation.network.clone(),
                        first_seen: now,
                        last_seen: now,
                        passes: 1,
                    });
                }
            }
            let networks = record.networks.len();
            let first = record.networks.iter().map(|n| n.first_seen).min();
            let span_ok =
                first.is_some_and(|first| now - first.min(now) >= params.min_span.as_secs());
            let event = if record.is_learned(now) || networks < params.min_networks || !span_ok {
                LearnEvent::Counted { networks }
            } else if counts.learned >= params.max_entries {
                LearnEvent::Capped {
                    max_entries: params.max_entries,
                }
            } else {
                let until = now.saturating_add(params.ttl.as_secs());
                record.learned_at = Some(now);
                record.learned_until = Some(until);
                LearnEvent::Learned { until }
            };
            Observed {
                write: Some(record),
                event,
            }
        }
    }
}

/// Whether `stored` exempts its organisation's clients at `now`: when it does, until when.
pub fn exemption(stored: Option<&LearnRecord>, now: UnixTime) -> Option<UnixTime> {
    stored
        .filter(|r| r.is_learned(now))
        .and_then(|r| r.learned_until)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_follow_the_prefixes() {
        let params = LearnParams::default();
        assert_eq!(
            params.network("192.0.2.77".parse().unwrap()),
            "192.0.2.0/24"
        );
        assert_eq!(
            params.network("2001:db8:1:2::5".parse().unwrap()),
            "2001:db8:1::/48"
        );
    }

    #[test]
    fn records_round_trip_as_json() {
        let record = LearnRecord {
            org: "example.com".into(),
            networks: vec![NetworkSeen {
                network: "192.0.2.0/24".into(),
                first_seen: 1,
                last_seen: 2,
                passes: 3,
            }],
            learned_at: Some(4),
            learned_until: Some(5),
            refused_until: None,
            refused: None,
        };
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<LearnRecord>(&text).unwrap(), record);
    }
}
