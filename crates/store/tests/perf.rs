//! Figures for the docs, not assertions about speed (machines differ):
//! `cargo test -p spamgate-store --release --test perf -- --ignored --nocapture --test-threads 1`

mod common;

use std::time::Instant;

use common::*;

const TASKS: usize = 64;
const TRIPLETS: u32 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release with --nocapture"]
async fn figures() {
    let fixture = Fixture::new();
    let store = fixture.open();
    // 100k distinct triplets from 64 tasks.
    let keys = spread_keys(TRIPLETS);
    let new = checks_per_second(&store, &keys, T0, TASKS).await;
    let retry = checks_per_second(&store, &keys, T0 + 60, TASKS).await;
    let passed = checks_per_second(&store, &keys, T0 + 400, TASKS).await;
    let awl = checks_per_second(&store, &keys, T0 + 500, TASKS).await;
    store.close().await;
    let size = std::fs::metadata(&fixture.path).unwrap().len();
    println!(
        "greylist ops/s with {TASKS} tasks: new {new:.0}, too-early {retry:.0}, passed {passed:.0}, awl-hit {awl:.0}"
    );
    println!(
        "file size for {TRIPLETS} passed triplets + {TRIPLETS} AWL entries: {:.1} MB",
        size as f64 / 1e6
    );

    let fixture = Fixture::new();
    let store = fixture.open();
    checks_per_second(&store, &spread_keys(TRIPLETS), T0, TASKS).await;
    store.close().await;
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
    let store = fixture.open();
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
            let store = store.clone();
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
    store.close().await;
}
