//! Import speed and attribution latency of the SQLite desk store.
//!
//! `cargo run --release -p spamgate-desk --example desk_bench -- SESSIONS [CUSTOMERS] [QUERIES]`
//!
//! Synthetic RADIUS sessions (2·10^6 a day, 10 min to 24 h long) for
//! CUSTOMERS customers: half on IPv4 addresses of the three documentation
//! ranges (768 addresses, so each is reassigned thousands of times), half on
//! /56 delegated prefixes inside 2001:db8::/32. Then QUERIES random
//! attributions at a time inside a random imported session; each must name
//! that session's customer. Writes the database to a temporary directory.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use hdrhistogram::Histogram;
use ipnet::IpNet;
use spamgate_desk::attribution::{AttributionPolicy, Query};
use spamgate_desk::case::{Customer, CustomerStatus, Language};
use spamgate_desk::history::{Identity, ImportBatch, Interval, Source};
use spamgate_desk::store::DeskStore;
use spamgate_desk::store::sqlite::SqliteDeskStore;

/// SplitMix64: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const DOC_V4: [[u8; 3]; 3] = [[192, 0, 2], [198, 51, 100], [203, 0, 113]];
const T0: i64 = 1_796_083_200; // 2026-12-01T00:00:00Z

/// Session `i` of `sessions`, the same every time it is asked for.
///
/// One in ten is IPv4: the documentation ranges have only 768 addresses, so
/// each is handed from one random customer to the next back to back, with a
/// gap wider than twice the default skew (a deeper history per address than
/// any real pool has: the worst case for the index). The rest are /56
/// prefixes delegated per customer inside 2001:db8::/32.
fn session(i: u64, sessions: u64, customers: u64) -> (Interval, String) {
    let mut rng = Rng(i.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xD1B5);
    let customer = rng.below(customers);
    let span = (sessions as i64 * 86_400 / 2_000_000).max(86_400);
    let (network, start, length) = if i.is_multiple_of(10) {
        let j = i / 10;
        let per_address = (sessions / 10).div_ceil(768).max(1) as i64;
        let gap = 250;
        let period = (span / per_address).max(gap + 1);
        let slot = (j % 768) as usize;
        let range = DOC_V4[slot / 256];
        let address = IpAddr::V4(Ipv4Addr::new(
            range[0],
            range[1],
            range[2],
            (slot % 256) as u8,
        ));
        (
            IpNet::from(address),
            T0 + (j / 768) as i64 * period,
            period - gap,
        )
    } else {
        let base =
            u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)) | ((customer as u128) << 72);
        let network = IpNet::new(IpAddr::V6(Ipv6Addr::from(base)), 56).expect("valid prefix");
        let start = T0 + (i as i64 * span) / sessions as i64 + rng.below(60) as i64;
        (network, start, 600 + rng.below(86_400 - 600) as i64)
    };
    let interval = Interval {
        source: Source::Radius,
        key: format!("radius:bench/{i}:x"),
        identity: Identity::RadiusUser(format!("u{customer}@isp.example.jp")),
        network,
        ports: None,
        start,
        end: Some(start + length),
        last_seen: Some(start + length),
        nas: Some("192.0.2.254".into()),
    };
    (interval, format!("C{customer:07}"))
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number"))
        .collect();
    let sessions = args.first().copied().unwrap_or(10_000_000);
    let customers = args.get(1).copied().unwrap_or(1_000_000);
    let queries = args.get(2).copied().unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("desk.sqlite");
    let store = SqliteDeskStore::open(&path).expect("open");

    let started = Instant::now();
    for chunk in (0..customers).collect::<Vec<_>>().chunks(50_000) {
        let batch: Vec<Customer> = chunk
            .iter()
            .map(|c| Customer {
                id: format!("C{c:07}"),
                name: format!("customer {c}"),
                contact: format!("c{c}@example.jp"),
                language: if c % 5 == 0 {
                    Language::En
                } else {
                    Language::Ja
                },
                plan: "home".into(),
                status: CustomerStatus::Active,
            })
            .collect();
        store.upsert_customers(&batch).expect("customers");
        let links: Vec<(Identity, String)> = chunk
            .iter()
            .map(|c| {
                (
                    Identity::RadiusUser(format!("u{c}@isp.example.jp")),
                    format!("C{c:07}"),
                )
            })
            .collect();
        store.link_identities(&links).expect("identities");
    }
    let customers_secs = started.elapsed().as_secs_f64();
    println!("customers: {customers} with identities in {customers_secs:.1} s");

    let started = Instant::now();
    let batch_size = 20_000u64;
    let mut done = 0u64;
    while done < sessions {
        let n = batch_size.min(sessions - done);
        let batch = ImportBatch {
            intervals: (done..done + n)
                .map(|i| session(i, sessions, customers).0)
                .collect(),
            next_offset: done + n,
            ..ImportBatch::default()
        };
        store.import_batch("bench", &batch).expect("import");
        done += n;
        if done.is_multiple_of(1_000_000) {
            println!(
                "  {done} sessions, {:.0} /s so far",
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let import_secs = started.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "import: {sessions} sessions in {import_secs:.1} s = {:.0} sessions/s; file {:.2} GiB",
        sessions as f64 / import_secs,
        size as f64 / (1u64 << 30) as f64
    );

    for pass in ["cold", "warm"] {
        // The warm pass asks the same questions again: its pages are cached.
        query_pass(&store, pass, sessions, customers, queries);
    }
}

fn query_pass(store: &SqliteDeskStore, pass: &str, sessions: u64, customers: u64, queries: u64) {
    let policy = AttributionPolicy::default();
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    let mut rng = Rng(42);
    let mut exact = 0u64;
    let mut triage = 0u64;
    let started = Instant::now();
    for _ in 0..queries {
        let i = rng.below(sessions);
        let (interval, customer) = session(i, sessions, customers);
        let length = interval.end.expect("end") - interval.start;
        let at = interval.start + rng.below(length as u64) as i64;
        let address = match interval.network {
            IpNet::V4(n) => IpAddr::V4(n.addr()),
            IpNet::V6(n) => IpAddr::V6(Ipv6Addr::from(
                u128::from(n.addr()) | (rng.below(1 << 40) as u128),
            )),
        };
        let t = Instant::now();
        let answer = store
            .attribute(
                Query {
                    address,
                    port: None,
                    at,
                },
                &policy,
            )
            .expect("attribute");
        histogram
            .record(t.elapsed().as_nanos() as u64)
            .expect("record");
        match answer.customer() {
            Some(c) if c == customer => exact += 1,
            Some(other) => panic!("session {i}: attributed to {other}, held by {customer}"),
            None => triage += 1,
        }
        if triage > queries / 100 {
            panic!("too many triaged answers: the synthetic history overlaps");
        }
    }
    let query_secs = started.elapsed().as_secs_f64();
    println!(
        "attribution ({pass}): {queries} queries in {query_secs:.1} s; p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs; {exact} exact, {triage} triage",
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.value_at_quantile(0.999) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0,
    );
}
