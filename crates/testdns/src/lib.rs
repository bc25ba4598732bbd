#![forbid(unsafe_code)]
//! An in-process authoritative DNS server for spamgate's tests.
//!
//! Zones are given as RFC 1035 master-file text and served by hickory-server's `Catalog` on an
//! ephemeral loopback port, over UDP and TCP on the same port number. A thin request handler in
//! front of the catalog records every query, tracks how many are in flight at once (so a test can
//! prove parallelism without timing), and can delay answers, answer SERVFAIL for a zone, or never
//! answer for a zone (to provoke timeouts).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let dns = spamgate_testdns::TestDns::start(&[(
//!     "bl.test.",
//!     "2.0.0.127 A 127.0.0.2\n2.0.0.127 TXT \"listed\"\n",
//! )])
//! .await?;
//! println!("resolver at {}", dns.addr());
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use hickory_server::Server;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::SOA;
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::proto::serialize::txt::Parser;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, MessageResponseBuilder, ZoneType};
use tokio::net::{TcpListener, UdpSocket};

/// TTL given to records that have none when the zone text sets no `$TTL`.
const DEFAULT_TTL: u32 = 300;
/// The query log keeps at most this many entries (tests only need a few).
const QUERY_LOG_LIMIT: usize = 100_000;

/// A running test DNS server. Dropping it (or calling [`TestDns::shutdown`]) stops it.
pub struct TestDns {
    addr: SocketAddr,
    stats: Arc<Stats>,
    server: Server<TestHandler>,
}

impl TestDns {
    /// Starts an authoritative server on `127.0.0.1:0` (UDP and TCP on one port) serving
    /// the given `(origin, zone text)` pairs.
    pub async fn start(zones: &[(&str, &str)]) -> anyhow::Result<TestDns> {
        zones
            .iter()
            .fold(TestDns::builder(), |b, (origin, text)| b.zone(origin, text))
            .start()
            .await
    }

    /// Like [`TestDns::start`], but every answer is held back for `delay`.
    pub async fn start_with_delay(
        zones: &[(&str, &str)],
        delay: Duration,
    ) -> anyhow::Result<TestDns> {
        zones
            .iter()
            .fold(TestDns::builder().delay(delay), |b, (origin, text)| {
                b.zone(origin, text)
            })
            .start()
            .await
    }

    /// A builder for servers with failing zones or delays.
    pub fn builder() -> TestDnsBuilder {
        TestDnsBuilder::default()
    }

    /// The address (UDP and TCP) the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every query received so far, oldest first, as `"name. TYPE"` with the name in lower case
    /// (for example `"2.0.0.127.bl.test. A"`).
    pub fn queries(&self) -> Vec<String> {
        self.stats.log().clone()
    }

    /// How many queries for exactly this name (case-insensitive, trailing dot optional) and type
    /// (e.g. `"A"`, `"TXT"`, `"PTR"`) were received.
    pub fn query_count(&self, name: &str, qtype: &str) -> usize {
        let wanted = query_key(name, qtype);
        self.stats.log().iter().filter(|q| **q == wanted).count()
    }

    /// The largest number of queries that were being handled at the same moment.
    pub fn peak_in_flight(&self) -> usize {
        self.stats.peak.load(Ordering::SeqCst)
    }

    /// Forgets the query log and the in-flight peak.
    pub fn clear_stats(&self) {
        self.stats.log().clear();
        self.stats.peak.store(0, Ordering::SeqCst);
    }

    /// Stops the server and waits until its tasks have ended.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.server
            .shutdown_gracefully()
            .await
            .map_err(|e| anyhow!("{e}"))
    }
}

/// Collects zones and failure modes, then starts a [`TestDns`].
#[derive(Default)]
pub struct TestDnsBuilder {
    zones: Vec<(String, String)>,
    delay: Duration,
    servfail: Vec<String>,
    blackhole: Vec<String>,
}

impl TestDnsBuilder {
    /// Serves `origin` (e.g. `"bl.test."`) from master-file `text`. Relative names are relative to
    /// the origin. Without an SOA record one is made up (negative TTL 60 s); without `$TTL`,
    /// records that carry no TTL get 300 s.
    pub fn zone(mut self, origin: &str, text: &str) -> Self {
        self.zones.push((origin.to_owned(), text.to_owned()));
        self
    }

    /// Holds every answer back for `delay` before answering.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Answers SERVFAIL for every name at or below `zone`.
    pub fn servfail(mut self, zone: &str) -> Self {
        self.servfail.push(zone.to_owned());
        self
    }

    /// Never answers queries for names at or below `zone` (the client times out).
    pub fn blackhole(mut self, zone: &str) -> Self {
        self.blackhole.push(zone.to_owned());
        self
    }

    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start(self) -> anyhow::Result<TestDns> {
        let mut catalog = Catalog::new();
        for (origin, text) in &self.zones {
            let (name, handler) = load_zone(origin, text)?;
            catalog.upsert(LowerName::new(&name), vec![Arc::new(handler)]);
        }
        let stats = Arc::new(Stats::default());
        let handler = TestHandler {
            catalog,
            delay: self.delay,
            servfail: parse_names(&self.servfail)?,
            blackhole: parse_names(&self.blackhole)?,
            stats: stats.clone(),
        };
        let (udp, tcp) = bind_udp_and_tcp().await?;
        let addr = udp.local_addr()?;
        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64 * 1024);
        Ok(TestDns {
            addr,
            stats,
            server,
        })
    }
}

/// Binds UDP on an ephemeral loopback port, then TCP on the same port number; retries when
/// that TCP port happens to be taken.
async fn bind_udp_and_tcp() -> anyhow::Result<(UdpSocket, TcpListener)> {
    let mut last_error = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = udp.local_addr()?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last_error = Some(e),
        }
    }
    Err(anyhow!(
        "no loopback port free for both UDP and TCP: {last_error:?}"
    ))
}

fn parse_names(zones: &[String]) -> anyhow::Result<Vec<LowerName>> {
    zones
        .iter()
        .map(|z| fqdn(z).map(|n| LowerName::new(&n)))
        .collect()
}

fn fqdn(name: &str) -> anyhow::Result<Name> {
    let mut name = Name::from_ascii(name).with_context(|| format!("bad domain name {name:?}"))?;
    name.set_fqdn(true);
    Ok(name)
}

fn load_zone(origin: &str, text: &str) -> anyhow::Result<(Name, InMemoryZoneHandler)> {
    let origin = fqdn(origin)?;
    let text = if text.to_ascii_uppercase().contains("$TTL") {
        text.to_owned()
    } else {
        format!("$TTL {DEFAULT_TTL}\n{text}")
    };
    let (_, records) = Parser::new(text, None, Some(origin.clone()))
        .parse()
        .with_context(|| format!("zone {origin}: cannot parse zone text"))?;

    let mut handler = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    let has_soa = records
        .values()
        .any(|set| set.record_type() == RecordType::SOA && *set.name() == origin);
    if !has_soa {
        let soa = SOA::new(
            fqdn("ns.test.")?,
            fqdn("hostmaster.test.")?,
            1,
            3600,
            600,
            86400,
            60,
        );
        handler.upsert_mut(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1);
    }
    for set in records.values() {
        for record in set.records_without_rrsigs() {
            if !origin.zone_of(&record.name) {
                bail!("zone {origin}: record {} is outside the zone", record.name);
            }
            if !handler.upsert_mut(record.clone(), 1) {
                bail!(
                    "zone {origin}: cannot add {} {}",
                    record.name,
                    record.record_type()
                );
            }
        }
    }
    Ok((origin, handler))
}

fn query_key(name: &str, qtype: &str) -> String {
    let name = name.to_ascii_lowercase();
    let dot = if name.ends_with('.') { "" } else { "." };
    format!("{name}{dot} {}", qtype.to_ascii_uppercase())
}

#[derive(Default)]
struct Stats {
    log: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

impl Stats {
    fn log(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        // A panicking test thread must not hide the log from the others.
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enter(self: &Arc<Self>) -> InFlight {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        InFlight(self.clone())
    }
}

/// Counts one query as in flight until dropped (also when the handler future is cancelled).
struct InFlight(Arc<Stats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

struct TestHandler {
    catalog: Catalog,
    delay: Duration,
    servfail: Vec<LowerName>,
    blackhole: Vec<LowerName>,
    stats: Arc<Stats>,
}

enum Mode {
    Answer,
    ServFail,
    Blackhole,
}

impl TestHandler {
    fn mode_for(&self, name: &LowerName) -> Mode {
        if self.blackhole.iter().any(|z| z.zone_of(name)) {
            Mode::Blackhole
        } else if self.servfail.iter().any(|z| z.zone_of(name)) {
            Mode::ServFail
        } else {
            Mode::Answer
        }
    }
}

// `RequestHandler` is declared with `#[async_trait]`; this is the signature that macro expects,
// written out so the crate needs no proc-macro dependency of its own.
impl RequestHandler for TestHandler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        mut response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        T: 'async_trait + Time,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let _in_flight = self.stats.enter();
            let mode = match request.request_info() {
                Ok(info) => {
                    let key = query_key(
                        &info.query.name().to_string(),
                        &info.query.query_type().to_string(),
                    );
                    let mut log = self.stats.log();
                    if log.len() < QUERY_LOG_LIMIT {
                        log.push(key);
                    }
                    self.mode_for(info.query.name())
                }
                Err(_) => Mode::Answer,
            };
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            match mode {
                Mode::Answer => {
                    self.catalog
                        .handle_request::<R, T>(request, response_handle)
                        .await
                }
                Mode::ServFail => {
                    let response = MessageResponseBuilder::from_message_request(request)
                        .error_msg(&request.metadata, ResponseCode::ServFail);
                    match response_handle.send_response(response).await {
                        Ok(info) => info,
                        Err(_) => servfail_info(request),
                    }
                }
                Mode::Blackhole => servfail_info(request),
            }
        })
    }
}

/// What the handler reports (to the server's bookkeeping only) for a query it did not answer.
fn servfail_info(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}
