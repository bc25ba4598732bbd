//! Greylist decisions through the SQLite store: state machine, caps, persistence.

mod common;

use common::*;
use spamgate_engine::greylist::{GreylistKeys, GreylistOutcome, GreylistParams};
use spamgate_store::{SqliteOptions, SqliteStore, Store, StoreCounts};

use GreylistOutcome::*;

/// One attempt: seconds after [`T0`], the keys, and the expected outcome.
struct Step {
    at: u64,
    keys: GreylistKeys,
    expected: GreylistOutcome,
}

fn step(at: u64, keys: GreylistKeys, expected: GreylistOutcome) -> Step {
    Step { at, keys, expected }
}

/// Applies the steps in order and compares every outcome.
async fn check(store: &impl Store, params: &GreylistParams, steps: &[Step]) {
    for (index, step) in steps.iter().enumerate() {
        let outcome = store
            .greylist(&step.keys, params, T0 + step.at, true)
            .await
            .unwrap();
        assert_eq!(
            outcome, step.expected,
            "step {index} at T0+{} for {} {} -> {}",
            step.at, step.keys.client, step.keys.sender, step.keys.recipient
        );
    }
}

const SENDER: &str = "news@example.com";

#[tokio::test]
async fn full_life_cycle() {
    let fixture = Fixture::new();
    let store = fixture.open();
    let first = || keys("192.0.2.10", SENDER, "alice@example.org");
    let other = || keys("192.0.2.10", SENDER, "bob@example.org");
    let neighbour = || keys("192.0.2.11", SENDER, "bob@example.org");
    check(
        &store,
        &params(),
        &[
            step(0, first(), New { retry_in: 300 }),
            step(
                60,
                first(),
                TooEarly {
                    waited: 60,
                    retry_in: 240,
                },
            ),
            step(
                299,
                first(),
                TooEarly {
                    waited: 299,
                    retry_in: 1,
                },
            ),
            step(400, first(), Passed { waited: 400 }),
            // The AWL is per address: another triplet from it passes at once...
            step(500, other(), AutoWhitelisted { since: T0 + 400 }),
            // ...but not from the neighbour in the same /24.
            step(500, neighbour(), New { retry_in: 300 }),
            // Within the refresh interval a hit rewrites nothing, so the AWL entry and
            // the passed triplet expire one lifetime after the pass.
            step(400 + 3599, other(), AutoWhitelisted { since: T0 + 400 }),
            step(400 + LIFETIME, other(), New { retry_in: 300 }),
            step(400 + LIFETIME, first(), New { retry_in: 300 }),
        ],
    )
    .await;
    let rows = store.list_triplets(10).await.unwrap();
    let first_row = rows
        .iter()
        .find(|row| row.recipient == "alice@example.org")
        .unwrap();
    assert_eq!(first_row.network, "192.0.2.0/24");
    assert_eq!(first_row.sender, SENDER);
    assert_eq!(
        (
            first_row.first_seen,
            first_row.attempts,
            first_row.passed_at
        ),
        (T0 + 400 + LIFETIME, 1, None),
        "the expired triplet started over"
    );
    store.close().await;
}

#[tokio::test]
async fn awl_use_after_the_refresh_interval_extends_its_life() {
    let fixture = Fixture::new();
    let store = fixture.open();
    let first = || keys("198.51.100.7", SENDER, "alice@example.org");
    let other = || keys("198.51.100.7", SENDER, "carol@example.org");
    check(
        &store,
        &params(),
        &[
            step(0, first(), New { retry_in: 300 }),
            step(300, first(), Passed { waited: 300 }),
            step(
                300 + LIFETIME - 10,
                other(),
                AutoWhitelisted { since: T0 + 300 },
            ),
            step(
                300 + LIFETIME + 10,
                other(),
                AutoWhitelisted { since: T0 + 300 },
            ),
        ],
    )
    .await;
    let counts = store.counts(T0 + 300 + LIFETIME + 10).await.unwrap();
    assert_eq!(counts.awl, 1);
    assert_eq!(counts.passed, 0, "only the AWL entry was refreshed");
}

#[tokio::test]
async fn a_sender_keyed_by_ptr_domain_passes_from_another_address() {
    let fixture = Fixture::new();
    let store = fixture.open();
    let from = |client, name| keys_named(client, Some(name), SENDER, "alice@example.org");
    check(
        &store,
        &params(),
        &[
            step(
                0,
                from("192.0.2.20", "out-1.mail.example.net"),
                New { retry_in: 300 },
            ),
            step(
                400,
                from("198.51.100.20", "out-2.mail.example.net"),
                Passed { waited: 400 },
            ),
            // A third address of the same domain has no AWL entry but the triplet passed.
            step(
                500,
                from("203.0.113.20", "out-3.mail.example.net"),
                KnownTriplet {
                    passed_at: T0 + 400,
                },
            ),
            step(
                600,
                from("203.0.113.20", "out-3.mail.example.net"),
                AutoWhitelisted { since: T0 + 500 },
            ),
        ],
    )
    .await;
    let rows = store.list_triplets(10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].network, "domain:example.net");
    assert_eq!(rows[0].attempts, 3);
}

#[tokio::test]
async fn a_retry_after_the_window_starts_over() {
    let fixture = Fixture::new();
    let store = fixture.open();
    let late = || keys("192.0.2.30", SENDER, "late@example.org");
    // Another address: its pass must not put the first one on the AWL.
    let just_in_time = || keys("192.0.2.31", SENDER, "ontime@example.org");
    check(
        &store,
        &params(),
        &[
            step(0, late(), New { retry_in: 300 }),
            step(0, just_in_time(), New { retry_in: 300 }),
            step(WINDOW - 1, just_in_time(), Passed { waited: WINDOW - 1 }),
            step(WINDOW + 1, late(), New { retry_in: 300 }),
            step(
                WINDOW + 200,
                late(),
                TooEarly {
                    waited: 199,
                    retry_in: 101,
                },
            ),
            step(WINDOW + 301, late(), Passed { waited: 300 }),
        ],
    )
    .await;
}

#[tokio::test]
async fn pending_triplets_per_network_are_capped() {
    let fixture = Fixture::new();
    let store = fixture.open();
    let to = |client, n: u32| keys(client, SENDER, &format!("user{n}@example.org"));
    check(
        &store,
        &params_with_cap(3),
        &[
            step(0, to("192.0.2.10", 1), New { retry_in: 300 }),
            step(0, to("192.0.2.11", 2), New { retry_in: 300 }),
            step(0, to("192.0.2.12", 3), New { retry_in: 300 }),
            step(0, to("192.0.2.13", 4), NetworkFull { pending: 3 }),
            // Not recorded: the retry is still full, not too early.
            step(400, to("192.0.2.13", 4), NetworkFull { pending: 3 }),
            // Other networks are not affected.
            step(400, to("198.51.100.13", 4), New { retry_in: 300 }),
            // A pass leaves the pending set and frees a place.
            step(400, to("192.0.2.10", 1), Passed { waited: 400 }),
            step(401, to("192.0.2.13", 4), New { retry_in: 300 }),
            step(402, to("192.0.2.14", 5), NetworkFull { pending: 3 }),
            // Triplets 2 and 3 ran out of their window: they no longer count, even
            // though expire() has not deleted them.
            step(WINDOW + 1, to("192.0.2.15", 6), New { retry_in: 300 }),
            step(WINDOW + 1, to("192.0.2.16", 7), New { retry_in: 300 }),
            step(WINDOW + 1, to("192.0.2.17", 8), NetworkFull { pending: 3 }),
        ],
    )
    .await;
    let rows = store.list_triplets(100).await.unwrap();
    let recipients: Vec<&str> = rows.iter().map(|row| row.recipient.as_str()).collect();
    assert!(!recipients.contains(&"user5@example.org"), "{recipients:?}");
    assert!(!recipients.contains(&"user8@example.org"), "{recipients:?}");
    assert_eq!(rows.len(), 7, "{recipients:?}");
}

#[tokio::test]
async fn apply_false_writes_nothing() {
    let fixture = Fixture::new();
    let store = fixture.open();
    let triplet = || keys("203.0.113.5", SENDER, "alice@example.org");
    let check_only = |at| {
        let store = &store;
        async move {
            store
                .greylist(&triplet(), &params(), T0 + at, false)
                .await
                .unwrap()
        }
    };
    assert_eq!(check_only(0).await, New { retry_in: 300 });
    assert_eq!(store.counts(T0).await.unwrap(), StoreCounts::default());
    assert!(store.list_triplets(10).await.unwrap().is_empty());

    check(
        &store,
        &params(),
        &[step(0, triplet(), New { retry_in: 300 })],
    )
    .await;
    // A dry run after the delay says it would pass, twice: no AWL entry was written.
    assert_eq!(check_only(400).await, Passed { waited: 400 });
    assert_eq!(check_only(500).await, Passed { waited: 500 });
    let rows = store.list_triplets(10).await.unwrap();
    assert_eq!((rows[0].attempts, rows[0].last_seen), (1, T0));
    assert_eq!(store.counts(T0 + 500).await.unwrap().awl, 0);
}

#[tokio::test]
async fn state_survives_closing_and_reopening() {
    let fixture = Fixture::new();
    let triplet = || keys("192.0.2.40", SENDER, "alice@example.org");
    let other = || keys("192.0.2.40", SENDER, "bob@example.org");

    let store = fixture.open();
    check(
        &store,
        &params(),
        &[step(0, triplet(), New { retry_in: 300 })],
    )
    .await;
    store.close().await;

    let store = fixture.open();
    check(
        &store,
        &params(),
        &[step(400, triplet(), Passed { waited: 400 })],
    )
    .await;
    store.close().await;

    // After close the WAL is empty, so the database file alone (as a backup or a
    // copy would take it) holds everything.
    let wal = fixture.path.with_extension("sqlite-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
    let copy = Fixture::new();
    std::fs::copy(&fixture.path, &copy.path).unwrap();

    let store = copy.open();
    check(
        &store,
        &params(),
        &[step(500, other(), AutoWhitelisted { since: T0 + 400 })],
    )
    .await;
    assert_eq!(
        store.counts(T0 + 500).await.unwrap(),
        StoreCounts {
            pending: 0,
            passed: 1,
            awl: 1
        }
    );
}

#[tokio::test]
async fn expire_removes_expired_rows_only_in_bounded_steps() {
    let fixture = Fixture::new();
    // Steps of 10 rows, so 24 expired triplets take three steps.
    let store = fixture.open_with(SqliteOptions {
        expire_batch: 10,
        ..SqliteOptions::default()
    });
    let to = |client, n: u32| keys(client, SENDER, &format!("user{n}@example.org"));
    let mut steps: Vec<Step> = (0..25)
        .map(|n| step(0, to("192.0.2.50", n), New { retry_in: 300 }))
        .collect();
    steps.push(step(400, to("192.0.2.50", 0), Passed { waited: 400 }));
    // Another address: 192.0.2.50 is on the AWL now.
    steps.extend((25..30).map(|n| step(DAY, to("198.51.100.50", n), New { retry_in: 300 })));
    check(&store, &params_with_cap(1000), &steps).await;

    let counts = |pending, passed, awl| StoreCounts {
        pending,
        passed,
        awl,
    };
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

#[tokio::test]
async fn list_is_bounded_and_latest_expiry_first() {
    let fixture = Fixture::new();
    let store = fixture.open();
    for n in 0..5u64 {
        let keys = keys("192.0.2.60", SENDER, &format!("user{n}@example.org"));
        store
            .greylist(&keys, &params(), T0 + n, true)
            .await
            .unwrap();
    }
    let rows = store.list_triplets(2).await.unwrap();
    let recipients: Vec<&str> = rows.iter().map(|row| row.recipient.as_str()).collect();
    assert_eq!(recipients, ["user4@example.org", "user3@example.org"]);
    assert_eq!(rows[0].expires_at, T0 + 4 + WINDOW + 1);
}

/// Sanity for the generic daemon code: an `Arc` of a store is a store.
fn assert_store<S: Store>() {}

#[test]
fn shared_stores_are_stores() {
    assert_store::<SqliteStore>();
    assert_store::<std::sync::Arc<SqliteStore>>();
}
