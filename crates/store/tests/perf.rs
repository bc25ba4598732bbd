//! Figures for the docs, not assertions about speed (machines differ):
//! `cargo test -p spamgate-store --release --test perf -- --ignored --nocapture --test-threads 1`

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::*;
use spamgate_engine::greylist::GreylistKeys;
use spamgate_store::{GreylistStore, SqliteStore};

const TASKS: usize = 64;
const TRIPLETS: u32 = 100_000;

/// 100k distinct triplets from 64 tasks: one per client address, spread over many
/// networks like real first attempts.
fn all_keys() -> Vec<GreylistKeys> {
    (0..TRIPLETS)
        .map(|n| {
            let [_, a, b, c] = n.to_be_bytes();
            let client = format!("2001:db8:{a:x}{b:02x}:{c:x}::25");
            keys(
                &client,
                "newsletter@example.com",
                &format!("user{n}@example.org"),
            )
        })
        .collect()
}

async fn run_all(store: &Arc<SqliteStore>, keys: Vec<GreylistKeys>, now: u64) -> f64 {
    let mut per_task: Vec<Vec<GreylistKeys>> = vec![Vec::new(); TASKS];
    for (index, keys) in keys.into_iter().enumerate() {
        per_task[index % TASKS].push(keys);
    }
    let count: usize = per_task.iter().map(Vec::len).sum();
    let start = Instant::now();
    let tasks: Vec<_> = per_task
        .into_iter()
        .map(|batch| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                for keys in batch {
                    store.greylist(&keys, &params(), now, true).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    count as f64 / start.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release with --nocapture"]
async fn figures() {
    let fixture = Fixture::new();
    let store = Arc::new(fixture.open());
    let keys = all_keys();
    let new = run_all(&store, keys.clone(), T0).await;
    let retry = run_all(&store, keys.clone(), T0 + 60).await;
    let passed = run_all(&store, keys.clone(), T0 + 400).await;
    let awl = run_all(&store, keys, T0 + 500).await;
    Arc::into_inner(store).unwrap().close().await;
    let size = std::fs::metadata(&fixture.path).unwrap().len();
    println!(
        "greylist ops/s with {TASKS} tasks: new {new:.0}, too-early {retry:.0}, passed {passed:.0}, awl-hit {awl:.0}"
    );
    println!(
        "file size for {TRIPLETS} passed triplets + {TRIPLETS} AWL entries: {:.1} MB",
        size as f64 / 1e6
    );

    let fixture = Fixture::new();
    let store = Arc::new(fixture.open());
    run_all(&store, all_keys(), T0).await;
    Arc::into_inner(store).unwrap().close().await;
    let size = std::fs::metadata(&fixture.path).unwrap().len();
    println!(
        "file size for {TRIPLETS} pending triplets: {:.1} MB",
        size as f64 / 1e6
    );
}

/// A submission's calls (status lookup, then two limits charged at once) for 10k
/// accounts from 64 tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release with --nocapture"]
async fn account_figures() {
    use spamgate_engine::outbound::{LimitKind, Rate};
    use spamgate_store::AccountStore;

    const MESSAGES: usize = 100_000;
    let fixture = Fixture::new();
    let store = Arc::new(fixture.open());
    let rate = |limit, period| Rate {
        limit,
        period: secs(period),
        burst: limit,
    };
    let charges = [
        (LimitKind::MessagesPerHour, rate(100, 3600), 1),
        (LimitKind::RecipientsPerDay, rate(1000, DAY), 3),
    ];
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for n in (task..MESSAGES).step_by(TASKS) {
                    let username = format!("user{}@example.jp", n % 10_000);
                    store.account(&username).await.unwrap();
                    let now_ms = T0 * 1000 + n as u64;
                    store
                        .charge(&username, &charges, now_ms, true)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let rate = MESSAGES as f64 / start.elapsed().as_secs_f64();
    println!("submissions/s (account + 2-limit charge) with {TASKS} tasks: {rate:.0}");
    Arc::into_inner(store).unwrap().close().await;
}
