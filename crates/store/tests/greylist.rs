//! What only the SQLite store does: expiry deletes rows, in bounded steps (Redis lets
//! TTLs do it); the writer remembers pending counts and must notice what changes them. The greylist cases every backend shares (life cycle, caps, persistence,
//! listings) are in conformance.rs, which runs them against SQLite and Redis.

mod common;

use common::*;
use spamgate_engine::greylist::GreylistOutcome;
use spamgate_store::{GreylistAdmin, SqliteOptions};

use GreylistOutcome::*;

#[tokio::test]
async fn expire_removes_expired_rows_only_in_bounded_steps() {
    let fixture = Fixture::new();
    // Steps of 10 rows, so 24 expired triplets take three steps.
    let store = fixture.open_with(SqliteOptions {
        expire_batch: 10,
        ..SqliteOptions::default()
    });
    check(&store, &params_with_cap(1000), &expiring_mix()).await;

    // A pending triplet is valid through first_seen + WINDOW, gone a second later.
    let gone = T0 + WINDOW + 1;
    // Counts ignore expired rows before they are deleted.
    assert_eq!(store.counts(T0 + WINDOW).await.unwrap(), counts(29, 1, 1));
    assert_eq!(store.counts(gone).await.unwrap(), counts(5, 1, 1));
    assert_eq!(store.list_triplets(100).await.unwrap().len(), 30);

    assert_eq!(store.expire(T0 + WINDOW).await.unwrap(), 0);
    assert_eq!(store.expire(gone).await.unwrap(), 24);
    assert_eq!(store.expire(gone).await.unwrap(), 0);
    let rows = store.list_triplets(100).await.unwrap();
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|row| row.expires_at > gone));
    assert_eq!(store.counts(gone).await.unwrap(), counts(5, 1, 1));

    assert_eq!(store.expire(T0 + DAY + WINDOW + 1).await.unwrap(), 5);
    // The passed triplet and its AWL entry go together, one lifetime after the pass.
    assert_eq!(store.expire(T0 + 400 + LIFETIME - 1).await.unwrap(), 0);
    assert_eq!(store.expire(T0 + 400 + LIFETIME).await.unwrap(), 2);
    assert_eq!(store.counts(T0).await.unwrap(), counts(0, 0, 0));
}

/// The writer keeps each network's pending count in memory once counted. Rows that
/// another process adds, or that an expiry deletes with its own clock, must still count
/// exactly as the query would.
#[tokio::test]
async fn pending_counts_follow_other_processes_and_expiry() {
    let fixture = Fixture::new();
    let first = fixture.open();
    let to = |client, n: u32| keys(client, SENDER, &format!("user{n}@example.org"));
    let cap = params_with_cap(3);
    check(
        &first,
        &cap,
        &[
            step(0, to("192.0.2.10", 1), New { retry_in: 300 }),
            step(1, to("192.0.2.11", 2), New { retry_in: 300 }),
        ],
    )
    .await;
    // Another daemon on the same file (it waits for the first one's commit).
    let second = fixture.open();
    check(
        &second,
        &cap,
        &[step(2, to("192.0.2.12", 3), New { retry_in: 300 })],
    )
    .await;
    second.close().await;
    check(
        &first,
        &cap,
        &[step(3, to("192.0.2.13", 4), NetworkFull { pending: 3 })],
    )
    .await;
    // An expiry run that deletes the first triplet (its window is over at WINDOW + 1)
    // frees a place even for a request whose clock is a second behind the expiry's.
    assert_eq!(first.expire(T0 + WINDOW + 1).await.unwrap(), 1);
    check(
        &first,
        &cap,
        &[
            step(WINDOW, to("192.0.2.13", 4), New { retry_in: 300 }),
            step(WINDOW, to("192.0.2.14", 5), NetworkFull { pending: 3 }),
        ],
    )
    .await;
    first.close().await;
}
