//! DNSBL parallelism, measured: three zones on a DNS server that delays every answer.
//!
//! `cargo run --release -p spamgate-loadgen --example dns_parallel [-- DELAY_MS [CLIENTS]]`
//!
//! 1. One cold request (one client, three zones) should take about one delay, not three.
//! 2. CLIENTS cold requests at once (3 x CLIENTS queries) should take a few delays, not
//!    CLIENTS x delay: the server's peak of queries in flight shows they overlap.
//! 3. The same requests again are answered from the cache.
//!
//! Figures, not assertions: timing on a shared machine is reported, never tested.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use futures_lite::join_all;
use spamgate_dns::{Dns, DnsConfig, ListResult, ZoneSpec};
use spamgate_testdns::TestDns;

const ZONES: [&str; 3] = ["bl1.test", "bl2.test", "bl3.test"];

/// A tiny `join_all` so the example needs no extra dependency.
mod futures_lite {
    use std::future::Future;

    pub async fn join_all<F: Future + Send + 'static>(futures: Vec<F>) -> Vec<F::Output>
    where
        F::Output: Send + 'static,
    {
        let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
        let mut out = Vec::with_capacity(handles.len());
        for handle in handles {
            out.push(handle.await.expect("lookup task"));
        }
        out
    }
}

fn client(n: u32) -> IpAddr {
    // 198.18.0.0/15: the benchmarking range.
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + n))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let delay_ms: u64 = args.next().map_or(Ok(50), |a| a.parse())?;
    let clients: u32 = args.next().map_or(Ok(1000), |a| a.parse())?;
    let delay = Duration::from_millis(delay_ms);

    let server = ZONES
        .iter()
        .fold(TestDns::builder().delay(delay), |b, zone| {
            // An empty zone: every client is NXDOMAIN (not listed), one query per zone.
            b.zone(&format!("{zone}."), "")
        })
        .start()
        .await?;
    let dns = Dns::new(&DnsConfig {
        nameservers: vec![server.addr()],
        timeout: Duration::from_secs(5),
        attempts: 1,
        ..DnsConfig::default()
    })?;
    let zones: Vec<ZoneSpec> = ZONES.iter().map(|z| z.parse()).collect::<Result<_, _>>()?;

    println!("DNS server delay {delay_ms} ms, zones {}", ZONES.join(", "));

    let started = Instant::now();
    let results = dns.list_lookup_all(&zones, client(0)).await;
    let one = started.elapsed();
    check_not_listed(&results)?;
    println!(
        "1 cold request, 3 zones: {:.1} ms = {:.2} delays (serial would be 3); peak in flight {}",
        ms(one),
        one.as_secs_f64() / delay.as_secs_f64(),
        server.peak_in_flight()
    );

    server.clear_stats();
    let started = Instant::now();
    let lookups: Vec<_> = (1..=clients)
        .map(|n| {
            let dns = dns.clone();
            let zones = zones.clone();
            async move { dns.list_lookup_all(&zones, client(n)).await }
        })
        .collect();
    let all = join_all(lookups).await;
    let cold = started.elapsed();
    let failed: Vec<&String> = all
        .iter()
        .flatten()
        .filter_map(|(_, r)| match r {
            ListResult::Error(why) => Some(why),
            _ => None,
        })
        .collect();
    let errors = failed.len();
    if let Some(first) = failed.first() {
        println!("first error: {first}");
    }
    println!(
        "{clients} cold requests at once ({} queries): {:.1} ms = {:.2} delays (serial would be {}); \
         peak in flight {}; errors {errors}",
        clients * 3,
        ms(cold),
        cold.as_secs_f64() / delay.as_secs_f64(),
        clients * 3,
        server.peak_in_flight(),
    );

    server.clear_stats();
    let started = Instant::now();
    let lookups: Vec<_> = (1..=clients)
        .map(|n| {
            let dns = dns.clone();
            let zones = zones.clone();
            async move { dns.list_lookup_all(&zones, client(n)).await }
        })
        .collect();
    join_all(lookups).await;
    let warm = started.elapsed();
    println!(
        "the same {clients} requests again: {:.1} ms, {} queries reached the server (cache)",
        ms(warm),
        server.queries().len()
    );
    server.shutdown().await?;
    Ok(())
}

fn check_not_listed(results: &[(usize, ListResult)]) -> anyhow::Result<()> {
    for (index, result) in results {
        anyhow::ensure!(
            *result == ListResult::NotListed,
            "zone {}: {result:?}",
            ZONES[*index]
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
