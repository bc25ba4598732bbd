//! [`Dns`]: list lookups and FCrDNS over a hickory resolver.
//!
//! hickory caches answers (TTLs clamped by [`DnsConfig`]) and already merges identical queries
//! that are in flight at the same time (`NameServerPool::active_requests` in hickory-resolver
//! 0.26), so a burst of connections from one client sends one query; the test
//! `identical_lookups_share_one_query_and_the_cache` guards that.
//!
//! In front of it, finished list results are kept until their answers expire
//! (the `front_cache` module), because even a hickory cache hit costs about 10 µs. Queries that
//! do reach hickory take a permit of a semaphore first ([`DnsConfig::max_in_flight`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use hickory_resolver::config::ResolverConfig;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as ResponseError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::answers::{ListAnswer, classify, reason_text};
use crate::config::{DnsConfig, explicit_servers, resolver_opts};
use crate::front_cache::FrontCache;
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
    /// Backstop for one whole query (all attempts, and the wait for a permit).
    deadline: Duration,
    /// hickory's bounds for caching NXDOMAIN / no-data, which its error leaves unapplied.
    negative_ttl_bounds: (Duration, Duration),
    /// Finished list results; `None` when configured off.
    front: Option<FrontCache>,
    /// One permit per query in flight ([`DnsConfig::max_in_flight`]).
    in_flight: Semaphore,
}

/// One query's result; answers carry the moment they expire (hickory's clamped TTL).
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Records of the asked type (CNAMEs followed by hickory are left out); never empty.
    Records(Vec<RData>, Instant),
    NxDomain(Instant),
    /// The name exists but has no record of this type.
    NoData(Instant),
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
                negative_ttl_bounds: config.negative_ttl_bounds(),
                front: FrontCache::new(config.list_cache_size),
                in_flight: Semaphore::new(config.max_in_flight.clamp(1, Semaphore::MAX_PERMITS)),
            }),
        })
    }

    /// Looks `client` up in one list zone. NXDOMAIN is `NotListed`; failures are `Error`, never
    /// a listing. The TXT reason is fetched only for a listing and may be missing.
    ///
    /// Results are kept until their answers expire (see [`DnsConfig::list_cache_size`]);
    /// errors are not kept.
    pub async fn list_lookup(&self, zone: &ZoneSpec, client: IpAddr) -> ListResult {
        let front = self
            .inner
            .front
            .as_ref()
            .and_then(|front| Some((front, front.key(zone, client)?)));
        if let Some((front, key)) = &front
            && let Some(hit) = front.get(key, Instant::now())
        {
            return hit;
        }
        let (result, expires) = self.resolve_listing(zone, client).await;
        if let (Some((front, key)), Some(expires)) = (front, expires) {
            front.insert(key, result.clone(), expires, Instant::now());
        }
        result
    }

    /// [`Dns::list_lookup`] through the resolver, with the moment the result expires; `None`
    /// when it must not be kept (an error, or a listing whose TXT lookup failed, whose reason
    /// is worth fetching again).
    async fn resolve_listing(
        &self,
        zone: &ZoneSpec,
        client: IpAddr,
    ) -> (ListResult, Option<Instant>) {
        let qname = list_query_name(client, &zone.zone);
        let Ok(name) = Name::from_ascii(&qname) else {
            let why = format!("cannot form a query name from {qname:?}");
            return (ListResult::Error(why), None);
        };
        let (records, expires) = match self.query(name.clone(), RecordType::A).await {
            Outcome::NxDomain(expires) | Outcome::NoData(expires) => {
                return (ListResult::NotListed, Some(expires));
            }
            Outcome::Failed(why) => {
                debug!(zone = %zone.zone, %client, %why, "list lookup failed");
                return (ListResult::Error(why), None);
            }
            Outcome::Records(records, expires) => (records, expires),
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
                let why = format!("blocked-resolver sentinel {a} from {}", zone.zone);
                (ListResult::Error(why), None)
            }
            ListAnswer::NotListed => {
                if addrs.iter().any(|a| a.octets()[0] != 127) {
                    warn!(zone = %zone.zone, answers = ?addrs, "list answered outside 127.0.0.0/8; ignored");
                }
                (ListResult::NotListed, Some(expires))
            }
            ListAnswer::Listed(answers) => {
                let (txt, txt_expires) = self.reason(name).await;
                let result = ListResult::Listed { answers, txt };
                (result, txt_expires.map(|t| t.min(expires)))
            }
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
            Outcome::NxDomain(_) | Outcome::NoData(_) => return Rdns::NoPtr,
            Outcome::Failed(why) => return Rdns::TempFail(format!("PTR lookup: {why}")),
            Outcome::Records(records, _) => {
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
                Outcome::Records(records, _)
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

    /// The listing's TXT reason, bounded by one query timeout, and when the answer expires.
    /// The reason is `None` when the list has none or on failure; the expiry is `None` on
    /// failure only.
    async fn reason(&self, name: Name) -> (Option<String>, Option<Instant>) {
        match tokio::time::timeout(self.inner.timeout, self.query(name, RecordType::TXT)).await {
            Ok(Outcome::Records(records, expires)) => {
                let text = reason_text(records.iter().filter_map(|r| match r {
                    RData::TXT(t) => Some(&*t.txt_data),
                    _ => None,
                }));
                (text, Some(expires))
            }
            Ok(Outcome::NxDomain(expires) | Outcome::NoData(expires)) => (None, Some(expires)),
            Ok(Outcome::Failed(_)) | Err(_) => (None, None),
        }
    }

    /// Runs one query once a permit is free, both bounded by the whole-query deadline.
    pub(crate) async fn query(&self, name: Name, rtype: RecordType) -> Outcome {
        let permitted_lookup = async {
            // The semaphore is never closed, so this only waits.
            let _permit = self.inner.in_flight.acquire().await;
            self.inner.resolver.lookup(name, rtype).await
        };
        match tokio::time::timeout(self.inner.deadline, permitted_lookup).await {
            Err(_elapsed) => Outcome::Failed("timeout".into()),
            Ok(Ok(lookup)) => {
                let records: Vec<RData> = lookup
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == rtype)
                    .map(|r| r.data.clone())
                    .collect();
                if records.is_empty() {
                    Outcome::NoData(lookup.valid_until())
                } else {
                    Outcome::Records(records, lookup.valid_until())
                }
            }
            Ok(Err(error)) => classify_error(&error, self.inner.negative_ttl_bounds),
        }
    }
}

impl fmt::Debug for Dns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dns")
            .field("timeout", &self.inner.timeout)
            .field("deadline", &self.inner.deadline)
            .field("list_cache", &self.inner.front.is_some())
            .field(
                "in_flight_available",
                &self.inner.in_flight.available_permits(),
            )
            .finish_non_exhaustive()
    }
}

/// The outcome of a failed lookup. NXDOMAIN and no-data expire after the negative TTL (from
/// the SOA) clamped as hickory clamps it for its cache; the TTL is counted down when hickory
/// answers from its cache, so the clamp's floor can lengthen the life of a result by at most
/// that floor.
fn classify_error(error: &NetError, (negative_min, negative_max): (Duration, Duration)) -> Outcome {
    match error {
        NetError::Dns(ResponseError::NoRecordsFound(NoRecords {
            response_code,
            negative_ttl,
            ..
        })) => {
            let ttl = negative_ttl.map_or(negative_min, |secs| {
                Duration::from_secs(u64::from(secs)).clamp(negative_min, negative_max)
            });
            let expires = Instant::now() + ttl;
            match *response_code {
                ResponseCode::NXDomain => Outcome::NxDomain(expires),
                ResponseCode::NoError => Outcome::NoData(expires),
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use spamgate_testdns::TestDns;

    use super::*;

    const BL: &str = "
10.2.0.192  A   127.0.0.2
10.2.0.192  TXT \"listed\"
12.2.0.192  A   127.255.255.254
";

    fn config(addr: SocketAddr) -> DnsConfig {
        DnsConfig {
            nameservers: vec![addr],
            timeout: Duration::from_millis(100),
            attempts: 1,
            ..DnsConfig::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn front(dns: &Dns) -> &FrontCache {
        dns.inner.front.as_ref().expect("list cache on")
    }

    #[tokio::test]
    async fn a_hit_needs_no_permit_and_a_miss_waits_only_until_the_deadline() {
        let server = TestDns::start(&[("bl.test.", BL)]).await.unwrap();
        let config = DnsConfig {
            max_in_flight: 4,
            ..config(server.addr())
        };
        let dns = Dns::new(&config).unwrap();
        let zone: ZoneSpec = "bl.test".parse().unwrap();
        let first = dns.list_lookup(&zone, ip("192.0.2.10")).await;
        assert!(matches!(first, ListResult::Listed { .. }), "{first:?}");

        // With every permit taken, only the list cache can answer.
        let all = dns.inner.in_flight.acquire_many(4).await.unwrap();
        assert_eq!(dns.list_lookup(&zone, ip("192.0.2.10")).await, first);
        assert_eq!(
            dns.list_lookup(&zone, ip("192.0.2.99")).await,
            ListResult::Error("timeout".into())
        );
        assert_eq!(server.query_count("99.2.0.192.bl.test", "A"), 0);

        // The timeout was not kept: with permits free again the server is asked.
        drop(all);
        assert_eq!(
            dns.list_lookup(&zone, ip("192.0.2.99")).await,
            ListResult::NotListed
        );
        assert_eq!(server.query_count("99.2.0.192.bl.test", "A"), 1);
    }

    #[tokio::test]
    async fn only_verdicts_are_kept() {
        let server = TestDns::builder()
            .zone("bl.test.", BL)
            .servfail("broken.test.")
            .blackhole("silent.test.")
            .start()
            .await
            .unwrap();
        let dns = Dns::new(&config(server.addr())).unwrap();
        let client = ip("192.0.2.10");
        for zone in ["broken.test", "silent.test", "unknown.test"] {
            let zone: ZoneSpec = zone.parse().unwrap();
            let result = dns.list_lookup(&zone, client).await;
            assert!(matches!(result, ListResult::Error(_)), "{zone}: {result:?}");
        }
        let sentinel = dns
            .list_lookup(&"bl.test".parse().unwrap(), ip("192.0.2.12"))
            .await;
        assert!(matches!(sentinel, ListResult::Error(_)), "{sentinel:?}");
        assert_eq!(front(&dns).len(), 0);

        dns.list_lookup(&"bl.test".parse().unwrap(), client).await;
        dns.list_lookup(&"bl.test".parse().unwrap(), ip("192.0.2.99"))
            .await;
        assert_eq!(front(&dns).len(), 2);
    }

    #[tokio::test]
    async fn the_cache_stays_bounded() {
        let server = TestDns::start(&[("bl.test.", BL)]).await.unwrap();
        let config = DnsConfig {
            list_cache_size: 20,
            ..config(server.addr())
        };
        let dns = Dns::new(&config).unwrap();
        let zone: ZoneSpec = "bl.test".parse().unwrap();
        for n in 0..100u8 {
            let client = IpAddr::V4(Ipv4Addr::new(203, 0, 113, n));
            assert_eq!(dns.list_lookup(&zone, client).await, ListResult::NotListed);
            assert!(front(&dns).len() <= 20, "{} after {n}", front(&dns).len());
        }
        assert!(front(&dns).capacity() <= 20);
        // Still answers correctly, from the cache or not.
        assert!(matches!(
            dns.list_lookup(&zone, ip("192.0.2.10")).await,
            ListResult::Listed { .. }
        ));
    }

    #[tokio::test]
    async fn a_size_of_zero_turns_the_cache_off() {
        let server = TestDns::start(&[("bl.test.", BL)]).await.unwrap();
        let config = DnsConfig {
            list_cache_size: 0,
            ..config(server.addr())
        };
        let dns = Dns::new(&config).unwrap();
        assert!(dns.inner.front.is_none());
        let zone: ZoneSpec = "bl.test".parse().unwrap();
        for _ in 0..2 {
            let result = dns.list_lookup(&zone, ip("192.0.2.10")).await;
            assert!(matches!(result, ListResult::Listed { .. }), "{result:?}");
        }
        // hickory's own cache still answers the repeat.
        assert_eq!(server.query_count("10.2.0.192.bl.test", "A"), 1);
    }
}
