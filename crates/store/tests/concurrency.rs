//! Many tasks at once: every call is answered, and each decision is atomic.

mod common;

use std::sync::Arc;

use common::*;
use spamgate_engine::greylist::GreylistOutcome;
use spamgate_store::{GreylistAdmin, GreylistStore, SqliteOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_are_atomic_per_triplet() {
    let fixture = Fixture::new();
    // A small queue and batch make senders wait and batches split.
    let store = fixture.open_with(SqliteOptions {
        queue_capacity: 64,
        max_batch: 32,
        ..SqliteOptions::default()
    });
    check_concurrently(&store, 1000).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greylisting_during_a_long_expiry_is_unaffected() {
    let fixture = Fixture::new();
    let store = Arc::new(fixture.open_with(SqliteOptions {
        expire_batch: 7,
        ..SqliteOptions::default()
    }));
    let params = params_with_cap(10_000);
    for n in 0..200u32 {
        let keys = keys(
            "198.51.100.9",
            "a@example.com",
            &format!("u{n}@example.org"),
        );
        store.greylist(&keys, &params, T0, true).await.unwrap();
    }
    // Start a long expiry, and greylist while it runs: both finish correctly.
    let expiring = tokio::spawn({
        let store = Arc::clone(&store);
        // A pending triplet is valid through first_seen + WINDOW and gone one second later.
        async move { store.expire(T0 + WINDOW + 1).await }
    });
    let later = T0 + WINDOW + 1;
    for n in 0..50u32 {
        let keys = keys("203.0.113.9", "b@example.com", &format!("v{n}@example.org"));
        let outcome = store.greylist(&keys, &params, later, true).await.unwrap();
        assert_eq!(outcome, GreylistOutcome::New { retry_in: 300 });
    }
    assert_eq!(expiring.await.unwrap().unwrap(), 200);
    assert_eq!(store.counts(later).await.unwrap().pending, 50);
    assert_eq!(store.list_triplets(1000).await.unwrap().len(), 50);
}
