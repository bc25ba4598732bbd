//! `spamgate store migrate`: SQLite → Redis → SQLite loses nothing, and each target
//! goes on deciding where the source left off.

mod common;
mod redis_server;

use std::time::Duration;

use common::*;
use redis_server::RedisServer;
use spamgate_engine::greylist::GreylistOutcome::*;
use spamgate_engine::outbound::{Account, AccountStatus, LimitKind};
use spamgate_engine::verdict::AllowListKind;
use spamgate_store::{
    AccountEvent, AllowEntry, AllowStore, EventKind, FullStore, RedisOptions, RedisStore,
    StoreDump, export_sqlite, import_sqlite,
};

const SENDER: &str = "news@example.com";
const NOW_MS: u64 = (T0 + 400) * 1000;

/// What a host has after a while: a passed triplet (and its AWL entry), a pending one,
/// allow-list entries, accounts, a rate state and events.
async fn fill(store: &impl FullStore) {
    let passed = keys("192.0.2.10", SENDER, "alice@example.org");
    let pending = keys_named(
        "198.51.100.20",
        Some("out.mail.example.net"),
        SENDER,
        "bob@example.org",
    );
    store.greylist(&passed, &params(), T0, true).await.unwrap();
    store
        .greylist(&pending, &params(), T0 + 100, true)
        .await
        .unwrap();
    store
        .greylist(&passed, &params(), T0 + 400, true)
        .await
        .unwrap();
    for (kind, value) in [
        (AllowListKind::Sender, "ceo@example.com"),
        (AllowListKind::ClientAddress, "203.0.113.0/24"),
    ] {
        store
            .allow_add(&AllowEntry {
                kind,
                value: value.into(),
                note: "partner".into(),
                added_at: T0,
                scope: spamgate_engine::verdict::AllowScope::All,
                expires_at: None,
            })
            .await
            .unwrap();
    }
    let mut suspended = Account::new("bob@example.jp", T0);
    suspended.status = AccountStatus::Suspended;
    store.put_account(&suspended).await.unwrap();
    store
        .put_account(&Account::new("alice@example.jp", T0))
        .await
        .unwrap();
    store
        .charge(
            "alice@example.jp",
            &[(LimitKind::MessagesPerHour, hourly(10), 7)],
            NOW_MS,
            true,
        )
        .await
        .unwrap();
    for (at, detail) in [(T0, "first"), (T0 + 5, "second"), (T0 + 5, "third")] {
        store
            .record_event(&AccountEvent {
                at,
                username: "bob@example.jp".into(),
                kind: EventKind::Rejected {
                    status: AccountStatus::Suspended,
                },
                detail: detail.into(),
            })
            .await
            .unwrap();
    }
}

/// The target decides as the source would have.
async fn goes_on(store: &impl FullStore) {
    let other = keys("192.0.2.10", SENDER, "carol@example.org");
    assert_eq!(
        store
            .greylist(&other, &params(), T0 + 500, true)
            .await
            .unwrap(),
        AutoWhitelisted { since: T0 + 400 }
    );
    let pending = keys_named(
        "198.51.100.21",
        Some("out2.mail.example.net"),
        SENDER,
        "bob@example.org",
    );
    assert_eq!(
        store
            .greylist(&pending, &params(), T0 + 500, true)
            .await
            .unwrap(),
        Passed { waited: 400 }
    );
    let charged = store
        .charge(
            "alice@example.jp",
            &[(LimitKind::MessagesPerHour, hourly(10), 4)],
            NOW_MS,
            true,
        )
        .await
        .unwrap();
    assert!(!charged[0].1.allowed, "7 of 10 were used before the move");
    assert_eq!(store.allow_list().await.unwrap().len(), 2);
    let events = store
        .events(Some("bob@example.jp"), 0, None, 10)
        .await
        .unwrap();
    let details: Vec<&str> = events.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(details, ["third", "second", "first"]);
}

fn summary(dump: &StoreDump) -> [usize; 6] {
    [
        dump.triplets.len(),
        dump.awl.len(),
        dump.allow.len(),
        dump.accounts.len(),
        dump.rates.len(),
        dump.events.len(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_redis_and_back_loses_nothing() {
    let source = Fixture::new();
    let store = source.open();
    fill(&store).await;
    store.close().await;

    let from_sqlite = export_sqlite(&source.path).await.unwrap();
    assert_eq!(summary(&from_sqlite), [2, 1, 2, 2, 1, 3]);

    let server = RedisServer::start();
    let redis = RedisStore::connect(&RedisOptions {
        url: server.url(),
        timeout: Duration::from_secs(5),
        ..RedisOptions::default()
    })
    .await
    .unwrap();
    let before = redis.allow_generation().await.unwrap();
    redis.import(&from_sqlite, T0 + 400).await.unwrap();
    assert!(
        redis.allow_generation().await.unwrap() > from_sqlite.allow_generation.max(before),
        "running daemons notice the new list"
    );
    let from_redis = redis.export().await.unwrap();
    assert_eq!(
        StoreDump {
            allow_generation: 0,
            ..from_redis.clone()
        },
        StoreDump {
            allow_generation: 0,
            ..from_sqlite.clone()
        }
    );

    let target = Fixture::new();
    import_sqlite(&target.path, &from_redis).await.unwrap();
    let back = export_sqlite(&target.path).await.unwrap();
    assert_eq!(
        StoreDump {
            allow_generation: 0,
            ..back
        },
        StoreDump {
            allow_generation: 0,
            ..from_sqlite
        }
    );

    // Both targets go on where the source stopped.
    goes_on(&redis).await;
    let store = target.open();
    goes_on(&store).await;
    store.close().await;
}

#[tokio::test]
async fn entries_expired_at_import_time_are_left_out_of_redis() {
    let source = Fixture::new();
    let store = source.open();
    fill(&store).await;
    store.close().await;
    let dump = export_sqlite(&source.path).await.unwrap();

    let server = RedisServer::start();
    let redis = RedisStore::connect(&RedisOptions {
        url: server.url(),
        key_prefix: "moved:".into(),
        ..RedisOptions::default()
    })
    .await
    .unwrap();
    // Past the pending triplet's window and the rate state's period, before the
    // passed triplet's lifetime ends.
    redis.import(&dump, T0 + 3 * DAY).await.unwrap();
    let moved = redis.export().await.unwrap();
    assert_eq!(summary(&moved), [1, 1, 2, 2, 0, 3]);
    assert!(moved.triplets[0].state.passed_at.is_some());
    assert!(
        server
            .cli(&["--scan", "--pattern", "*"])
            .lines()
            .all(|key| key.starts_with("moved:")),
        "everything under the prefix"
    );
}

#[tokio::test]
async fn a_missing_source_file_is_an_error_not_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo.db");
    let result = export_sqlite(&missing).await;
    assert!(
        matches!(result, Err(spamgate_store::StoreError::Open { .. })),
        "{result:?}"
    );
    assert!(!missing.exists());
}
