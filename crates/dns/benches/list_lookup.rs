//! Cost of a cached list lookup: `cargo bench -p spamgate-dns --bench list_lookup`.
//!
//! `list_cache` is a hit in the list cache in front of the resolver (the normal path);
//! `resolver_cache` is the same lookup with that cache off (`list_cache_size = 0`), answered
//! from hickory's cache: query-name construction, hickory's lookup machinery, its moka cache.
//! Every answer is cached before measuring; the test server sees no queries while measuring.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use spamgate_dns::{Dns, DnsConfig, ListResult, ZoneSpec};
use spamgate_testdns::TestDns;

const ZONE: &str = "
10.2.0.192  A   127.0.0.2
10.2.0.192  TXT \"192.0.2.10 is listed\"
";

fn bench(c: &mut Criterion) {
    // One worker serves the test DNS server; the measured lookups run on the bench thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime
        .block_on(TestDns::start(&[("bl.test.", ZONE)]))
        .unwrap();
    let zone: ZoneSpec = "bl.test".parse().unwrap();
    let clients: [(&str, IpAddr); 2] = [
        ("listed", "192.0.2.10".parse().unwrap()),
        ("not_listed", "192.0.2.99".parse().unwrap()),
    ];

    let mut group = c.benchmark_group("list_lookup_hit");
    for (label, list_cache_size) in [("list_cache", 100_000), ("resolver_cache", 0)] {
        let dns = Dns::new(&DnsConfig {
            nameservers: vec![server.addr()],
            timeout: Duration::from_secs(2),
            attempts: 1,
            list_cache_size,
            ..DnsConfig::default()
        })
        .unwrap();
        for (_, client) in clients {
            let first = runtime.block_on(dns.list_lookup(&zone, client));
            assert!(!matches!(first, ListResult::Error(_)), "{first:?}");
        }
        server.clear_stats();
        for (client_label, client) in clients {
            group.bench_function(format!("{label}/{client_label}"), |b| {
                b.iter_custom(|iterations| {
                    runtime.block_on(async {
                        let started = Instant::now();
                        for _ in 0..iterations {
                            black_box(dns.list_lookup(black_box(&zone), black_box(client)).await);
                        }
                        started.elapsed()
                    })
                })
            });
        }
        // Answers last longer than the run (min_ttl 60 s, the zone's TTL 300 s).
        let queries = server.queries();
        assert!(queries.is_empty(), "{label}: lookups went out: {queries:?}");
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
