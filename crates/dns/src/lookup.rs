//! [`Dns`]: list lookups and FCrDNS over a hickory resolver.
//!
//! hickory caches answers (TTLs clamped by [`DnsConfig`]) and already merges identical queries
//! that are in flight at the same time (`NameServerPool::active_requests` in hickory-resolver
//! 0.26), so a burst of connections from one client sends one query; the test
//! `identical_lookups_share_one_query_and_the_cache` guards that.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use hickory_resolver::config::ResolverConfig;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as ResponseError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use tracing::{debug, warn};

use crate::answers::{ListAnswer, classify, reason_text};
use crate::config::{DnsConfig, explicit_servers, resolver_opts};
use crate::names::{list_query_name, reverse_query_name};
use crate::zonespec::ZoneSpec;
use crate::{DnsError, ListResult, Rdns};

/// PTR names tried for forward confirmation (a client with more is not worth more queries).
pub const MAX_PTR_NAMES: usize = 10;

/// The DNS layer: cheap to clone (shared state behind an `Arc`), `Send + Sync`.
#[derive(Clone)]
pub struct Dns {
    inner: Arc<Inner>,
}

struct Inner {
    resolver: TokioResolver,
    /// Per-attempt timeout; also bounds the optional TXT lookup of a listing.
    timeout: Duration,
    /// Backstop for one whole query (all attempts).
    deadline: Duration,
}

/// One query's result.
#[derive(Debug)]
enum Outcome {
    /// Records of the asked type (CNAMEs followed by hickory are left out); never empty.
    Records(Vec<RData>),
    NxDomain,
    /// The name exists but has no record of this type.
    NoData,
    /// Timeout, SERVFAIL, REFUSED, network error: no answer either way.
    Failed(String),
}

impl Dns {
    /// Builds the resolver. With no configured name servers, the servers (only) are read from
    /// the system configuration (`/etc/resolv.conf`); search domains never apply.
    pub fn new(config: &DnsConfig) -> Result<Dns, DnsError> {
        config.validate().map_err(DnsError::Config)?;
        let servers = if config.nameservers.is_empty() {
            let (system, _options) = hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| DnsError::SystemConfig(e.to_string()))?;
            let (_domain, _search, servers) = system.into_parts();
            ResolverConfig::from_parts(None, Vec::new(), servers)
        } else {
            explicit_servers(config)
        };
        if servers.name_servers().is_empty() {
            return Err(DnsError::NoNameservers);
        }
        let resolver = Resolver::builder_with_config(servers, TokioRuntimeProvider::default())
            .with_options(resolver_opts(config))
            .build()
            .map_err(|e| DnsError::Resolver(e.to_string()))?;
        Ok(Dns {
            inner: Arc::new(Inner {
                resolver,
                timeout: config.timeout,
                deadline: config.query_deadline(),
            }),
        })
    }

    /// Looks `client` up in one list zone. NXDOMAIN is `NotListed`; failures are `Error`, never
    /// a listing. The TXT reason is fetched only for a listing and may be missing.
    pub async fn list_lookup(&self, zone: &ZoneSpec, client: IpAddr) -> ListResult {
        let qname = list_query_name(client, &zone.zone);
        let Ok(name) = Name::from_ascii(&qname) else {
            return ListResult::Error(format!("cannot form a query name from {qname:?}"));
        };
        let records = match self.query(name.clone(), RecordType::A).await {
            Outcome::NxDomain | Outcome::NoData => return ListResult::NotListed,
            Outcome::Failed(why) => {
                debug!(zone = %zone.zone, %client, %why, "list lookup failed");
                return ListResult::Error(why);
            }
            Outcome::Records(records) => records,
        };
        let addrs: Vec<Ipv4Addr> = records
            .iter()
            .filter_map(|r| match r {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        match classify(zone, &addrs) {
            ListAnswer::Sentinel(a) => {
                warn!(zone = %zone.zone, answer = %a, "list says our resolver is blocked or over quota");
                ListResult::Error(format!("blocked-resolver sentinel {a} from {}", zone.zone))
            }
            ListAnswer::NotListed => {
                if addrs.iter().any(|a| a.octets()[0] != 127) {
                    warn!(zone = %zone.zone, answers = ?addrs, "list answered outside 127.0.0.0/8; ignored");
                }
                ListResult::NotListed
            }
            ListAnswer::Listed(answers) => ListResult::Listed {
                answers,
                txt: self.reason(name).await,
            },
        }
    }

    /// Looks `client` up in all `zones` at once; results are in zone order, each with its
    /// index into `zones`.
    pub async fn list_lookup_all(
        &self,
        zones: &[ZoneSpec],
        client: IpAddr,
    ) -> Vec<(usize, ListResult)> {
        join_all(
            zones
                .iter()
                .enumerate()
                .map(|(i, zone)| async move { (i, self.list_lookup(zone, client).await) }),
        )
        .await
    }

    /// Forward-confirmed reverse DNS: the client's PTR names (at most [`MAX_PTR_NAMES`]) are
    /// looked up (A for IPv4 clients, AAAA for IPv6) until one leads back to the client.
    ///
    /// A forward lookup that fails temporarily, with no other name confirming, makes the
    /// result `TempFail` rather than `NotConfirmed`: that name might have confirmed, and a
    /// transient error must not turn into a verdict. A name that does not exist (NXDOMAIN) or
    /// has no address simply does not confirm.
    pub async fn reverse_confirm(&self, client: IpAddr) -> Rdns {
        let client = client.to_canonical();
        let qname = reverse_query_name(client);
        let Ok(name) = Name::from_ascii(&qname) else {
            return Rdns::TempFail(format!("cannot form a query name from {qname:?}"));
        };
        let ptrs: Vec<Name> = match self.query(name, RecordType::PTR).await {
            Outcome::NxDomain | Outcome::NoData => return Rdns::NoPtr,
            Outcome::Failed(why) => return Rdns::TempFail(format!("PTR lookup: {why}")),
            Outcome::Records(records) => {
                let mut names: Vec<Name> = Vec::new();
                for ptr in records.iter().filter_map(|r| match r {
                    RData::PTR(p) => Some(p.0.to_lowercase()),
                    _ => None,
                }) {
                    if !names.contains(&ptr) {
                        names.push(ptr);
                    }
                    if names.len() == MAX_PTR_NAMES {
                        break;
                    }
                }
                names
            }
        };
        let Some(first) = ptrs.first() else {
            return Rdns::NoPtr;
        };
        let rtype = if client.is_ipv4() {
            RecordType::A
        } else {
            RecordType::AAAA
        };
        let forward = join_all(ptrs.iter().map(|ptr| self.query(ptr.clone(), rtype))).await;
        let mut failure = None;
        for (ptr, outcome) in ptrs.iter().zip(forward) {
            match outcome {
                Outcome::Records(records)
                    if records.iter().any(|r| rdata_ip(r) == Some(client)) =>
                {
                    return Rdns::Confirmed {
                        name: display_name(ptr),
                    };
                }
                Outcome::Failed(why) if failure.is_none() => {
                    failure = Some(format!("forward lookup of {}: {why}", display_name(ptr)));
                }
                _ => {}
            }
        }
        match failure {
            Some(why) => Rdns::TempFail(why),
            None => Rdns::NotConfirmed {
                ptr: display_name(first),
            },
        }
    }

    /// The listing's TXT reason, bounded by one query timeout; `None` on any failure.
    async fn reason(&self, name: Name) -> Option<String> {
        match tokio::time::timeout(self.inner.timeout, self.query(name, RecordType::TXT)).await {
            Ok(Outcome::Records(records)) => reason_text(records.iter().filter_map(|r| match r {
                RData::TXT(t) => Some(&*t.txt_data),
                _ => None,
            })),
            _ => None,
        }
    }

    /// Runs one query, bounded by the whole-query deadline.
    async fn query(&self, name: Name, rtype: RecordType) -> Outcome {
        let lookup = self.inner.resolver.lookup(name, rtype);
        match tokio::time::timeout(self.inner.deadline, lookup).await {
            Err(_elapsed) => Outcome::Failed("timeout".into()),
            Ok(Ok(lookup)) => {
                let records: Vec<RData> = lookup
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == rtype)
                    .map(|r| r.data.clone())
                    .collect();
                if records.is_empty() {
                    Outcome::NoData
                } else {
                    Outcome::Records(records)
                }
            }
            Ok(Err(error)) => classify_error(&error),
        }
    }
}

impl fmt::Debug for Dns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dns")
            .field("timeout", &self.inner.timeout)
            .field("deadline", &self.inner.deadline)
            .finish_non_exhaustive()
    }
}

fn classify_error(error: &NetError) -> Outcome {
    match error {
        NetError::Dns(ResponseError::NoRecordsFound(NoRecords { response_code, .. })) => {
            match *response_code {
                ResponseCode::NXDomain => Outcome::NxDomain,
                ResponseCode::NoError => Outcome::NoData,
                code => Outcome::Failed(rcode_name(code)),
            }
        }
        NetError::Dns(ResponseError::ResponseCode(code)) => Outcome::Failed(rcode_name(*code)),
        NetError::Timeout => Outcome::Failed("timeout".into()),
        other => Outcome::Failed(other.to_string()),
    }
}

fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        other => format!("response code {}", u16::from(other)),
    }
}

fn rdata_ip(rdata: &RData) -> Option<IpAddr> {
    match rdata {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
        _ => None,
    }
}

/// Lower case, without the trailing dot.
fn display_name(name: &Name) -> String {
    let text = name.to_lowercase().to_ascii();
    text.strip_suffix('.').unwrap_or(&text).to_owned()
}
