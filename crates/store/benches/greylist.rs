//! Greylist decisions per second through the SQLite store, 64 tasks at once on a
//! 2-worker runtime (the daemon's shape on a small box).

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spamgate_engine::greylist::{GreylistKeys, GreylistOutcome, GreylistParams, KeyScheme};
use spamgate_store::{GreylistStore, SqliteOptions, SqliteStore};
use tokio::runtime::Runtime;

const TASKS: u64 = 64;
const T0: u64 = 1_700_000_000;
/// Clients put on the AWL before the "awl hit" runs.
const AWL_CLIENTS: u32 = 4096;

/// A distinct client (its own /64) for every `n`, in 2001:db8::/32.
fn client(n: u32) -> IpAddr {
    let [a, b, c, d] = n.to_be_bytes();
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        u16::from_be_bytes([a, b]),
        u16::from_be_bytes([c, d]),
        0,
        0,
        0,
        1,
    ))
}

fn keys(client_n: u32, recipient_n: u32) -> GreylistKeys {
    GreylistKeys::new(
        &KeyScheme::default(),
        client(client_n),
        None,
        "news@example.com",
        &format!("user{recipient_n}@example.org"),
    )
}

/// Runs `ops` prepared calls spread over [`TASKS`] tasks; returns the wall time.
fn run(
    runtime: &Runtime,
    store: &Arc<SqliteStore>,
    params: &Arc<GreylistParams>,
    now: u64,
    all_keys: Vec<GreylistKeys>,
) -> Duration {
    let mut per_task: Vec<Vec<GreylistKeys>> = (0..TASKS).map(|_| Vec::new()).collect();
    for (index, keys) in all_keys.into_iter().enumerate() {
        per_task[index % TASKS as usize].push(keys);
    }
    runtime.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = per_task
            .into_iter()
            .map(|batch| {
                let store = Arc::clone(store);
                let params = Arc::clone(params);
                tokio::spawn(async move {
                    for keys in batch {
                        store.greylist(&keys, &params, now, true).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("bench.sqlite"), SqliteOptions::default()).unwrap(),
    );
    let params = Arc::new(GreylistParams {
        max_pending_per_network: u32::MAX,
        ..GreylistParams::default()
    });

    // Put AWL_CLIENTS clients on the AWL: first attempt, then a retry after the delay.
    for (at, expected) in [(T0, "new"), (T0 + 400, "passed")] {
        let warm: Vec<_> = (0..AWL_CLIENTS).map(|n| keys(n, 0)).collect();
        runtime.block_on(async {
            for keys in &warm {
                let outcome = store.greylist(keys, &params, at, true).await.unwrap();
                assert_eq!(outcome.id(), expected);
            }
        });
    }

    let mut group = c.benchmark_group("greylist_64_tasks");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);

    // Worst case for the store: every call inserts a new triplet.
    let next = AtomicU32::new(AWL_CLIENTS);
    group.bench_function("new_triplet", |b| {
        b.iter_custom(|iters| {
            let first = next.fetch_add(iters as u32, Ordering::Relaxed);
            let batch = (first..first + iters as u32).map(|n| keys(n, n)).collect();
            run(&runtime, &store, &params, T0 + 500, batch)
        })
    });

    // The common case for known senders: a lookup and no write.
    group.bench_function("awl_hit", |b| {
        b.iter_custom(|iters| {
            let batch = (0..iters as u32)
                .map(|n| keys(n % AWL_CLIENTS, n))
                .collect();
            run(&runtime, &store, &params, T0 + 500, batch)
        })
    });
    group.finish();

    let check = runtime.block_on(store.greylist(&keys(1, 7), &params, T0 + 500, false));
    assert!(matches!(check, Ok(GreylistOutcome::AutoWhitelisted { .. })));
}

criterion_group!(benches, bench);
criterion_main!(benches);
