//! The durability window of the SQLite store, observed the way another process would:
//! through its own connection to the same file.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rusqlite::Connection;
use spamgate_engine::greylist::GreylistOutcome;
use spamgate_store::{GreylistAdmin, GreylistStore, SqliteOptions};

/// Triplets committed to the file, as a separate connection (process) sees them.
fn committed_triplets(fixture: &Fixture) -> i64 {
    Connection::open(&fixture.path)
        .unwrap()
        .query_row("SELECT count(*) FROM triplets", [], |row| row.get(0))
        .unwrap()
}

fn with_window(window: Duration) -> SqliteOptions {
    SqliteOptions {
        durability_window: window,
        ..SqliteOptions::default()
    }
}

async fn new_triplet(store: &impl GreylistStore, n: u32) {
    let outcome = store
        .greylist(
            &keys("192.0.2.10", "a@example.org", &format!("u{n}@example.net")),
            &params(),
            T0,
            true,
        )
        .await
        .unwrap();
    assert_eq!(outcome, GreylistOutcome::New { retry_in: 300 });
}

#[tokio::test]
async fn without_a_window_an_answer_is_committed_before_it_is_given() {
    let fixture = Fixture::new();
    let store = fixture.open_with(with_window(Duration::ZERO));
    for n in 1..=3 {
        new_triplet(&store, n).await;
        assert_eq!(committed_triplets(&fixture), i64::from(n));
    }
    store.close().await;
}

#[tokio::test]
async fn within_the_window_answers_come_before_the_commit_and_reads_commit_first() {
    let fixture = Fixture::new();
    // A window far longer than the test: only a read or close can commit.
    let store = fixture.open_with(with_window(Duration::from_secs(3600)));
    for n in 1..=3 {
        new_triplet(&store, n).await;
    }
    assert_eq!(
        committed_triplets(&fixture),
        0,
        "answered, not yet committed"
    );
    // A read through the store commits what it answered first: it reads its own writes.
    let counts = store.counts(T0).await.unwrap();
    assert_eq!(counts.pending, 3);
    assert_eq!(committed_triplets(&fixture), 3);
    new_triplet(&store, 4).await;
    store.close().await;
    assert_eq!(committed_triplets(&fixture), 4, "close commits the rest");
}

#[tokio::test]
async fn the_window_ends_in_a_commit_without_further_requests() {
    let fixture = Fixture::new();
    let store = fixture.open_with(with_window(Duration::from_millis(100)));
    new_triplet(&store, 1).await;
    let start = Instant::now();
    while committed_triplets(&fixture) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the window never ended in a commit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The store keeps working after the commit (a new transaction opens).
    new_triplet(&store, 2).await;
    store.close().await;
    assert_eq!(committed_triplets(&fixture), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_expiry_finishes_in_capped_steps_while_requests_are_answered() {
    let fixture = Fixture::new();
    let store = std::sync::Arc::new(fixture.open());
    let roomy = params_with_cap(10_000);
    for n in 0..3000u32 {
        let client = format!("198.51.100.{}", n % 250 + 1);
        store
            .greylist(
                &keys(&client, "a@example.org", &format!("u{n}@example.net")),
                &roomy,
                T0,
                true,
            )
            .await
            .unwrap();
    }
    let later = T0 + WINDOW + 10;
    let expiry = tokio::spawn({
        let store = std::sync::Arc::clone(&store);
        async move { store.expire(later).await }
    });
    // Requests keep being answered while the expiry runs in steps between them.
    for n in 0..50u32 {
        let outcome = store
            .greylist(
                &keys("203.0.113.5", "b@example.org", &format!("v{n}@example.net")),
                &roomy,
                later,
                true,
            )
            .await
            .unwrap();
        assert_eq!(outcome, GreylistOutcome::New { retry_in: 300 });
    }
    assert_eq!(expiry.await.unwrap().unwrap(), 3000);
    assert_eq!(store.counts(later).await.unwrap().pending, 50);
    let store = std::sync::Arc::into_inner(store).unwrap();
    store.close().await;
    assert_eq!(committed_triplets(&fixture), 50);
}

#[tokio::test]
async fn operator_records_are_committed_before_they_are_answered() {
    use spamgate_engine::verdict::AllowListKind;
    use spamgate_store::{AllowAdmin, AllowEntry};
    let fixture = Fixture::new();
    let store = fixture.open_with(with_window(Duration::from_secs(3600)));
    new_triplet(&store, 1).await;
    store
        .allow_add(&AllowEntry {
            kind: AllowListKind::ClientAddress,
            value: "192.0.2.0/28".into(),
            note: "partner".into(),
            added_at: T0,
            scope: spamgate_engine::verdict::AllowScope::All,
            expires_at: None,
        })
        .await
        .unwrap();
    let allowed: i64 = Connection::open(&fixture.path)
        .unwrap()
        .query_row("SELECT count(*) FROM allow_list", [], |row| row.get(0))
        .unwrap();
    assert_eq!(allowed, 1, "another process sees the entry at once");
    // The greylist change answered before it shared that commit.
    assert_eq!(committed_triplets(&fixture), 1);
    store.close().await;
}
