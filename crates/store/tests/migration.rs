//! Upgrading files written by earlier releases keeps their greylist state.

mod common;

use common::*;
use rusqlite::{Connection, params};
use spamgate_engine::greylist::{GreylistKeys, GreylistOutcome};
use spamgate_engine::outbound::{LimitKind, Rate};
use spamgate_engine::verdict::AllowListKind;
use spamgate_store::{
    AccountStore, AllowAdmin, AllowEntry, AllowStore, GreylistAdmin, GreylistStore, SCHEMA_VERSION,
    StoreCounts, create_with_schema_version,
};

/// Writes a pending triplet and an AWL entry as schema version 1 laid them out.
fn write_version_1_rows(conn: &Connection, pending: &GreylistKeys, whitelisted: &GreylistKeys) {
    conn.execute(
        "INSERT INTO triplets (key, network, first_seen, last_seen, attempts, passed_at,
                               expires_at, net_text, sender, recipient)
         VALUES (?1, ?2, ?3, ?3, 1, NULL, ?4, ?5, ?6, ?7)",
        params![
            &pending.triplet_key[..],
            &pending.network_key[..],
            T0 as i64,
            (T0 + WINDOW) as i64,
            pending.network,
            pending.sender,
            pending.recipient,
        ],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO awl (key, client, first_seen, last_seen, expires_at)
         VALUES (?1, ?2, ?3, ?3, ?4)",
        params![
            &whitelisted.awl_key[..],
            whitelisted.client.to_string(),
            T0 as i64,
            (T0 + LIFETIME) as i64,
        ],
    )
    .unwrap();
}

fn version(fixture: &Fixture) -> i64 {
    Connection::open(&fixture.path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test]
async fn every_older_version_upgrades_and_keeps_greylist_state() {
    for old in 1..SCHEMA_VERSION {
        let fixture = Fixture::new();
        create_with_schema_version(&fixture.path, old as usize).unwrap();
        assert_eq!(version(&fixture), old);
        let pending = keys("192.0.2.40", "news@example.com", "alice@example.org");
        let whitelisted = keys("198.51.100.9", "a@example.com", "b@example.org");
        write_version_1_rows(
            &Connection::open(&fixture.path).unwrap(),
            &pending,
            &whitelisted,
        );

        let store = fixture.open();
        assert_eq!(version(&fixture), SCHEMA_VERSION, "from version {old}");
        assert_eq!(
            store.counts(T0).await.unwrap(),
            StoreCounts {
                pending: 1,
                passed: 0,
                awl: 1
            }
        );
        let rows = store.list_triplets(10).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].recipient, "alice@example.org");
        // The old pending triplet is remembered: its retry passes.
        let retried = store.greylist(&pending, &params(), T0 + 400, true).await;
        assert_eq!(retried.unwrap(), GreylistOutcome::Passed { waited: 400 });
        let other = keys("198.51.100.9", "c@example.com", "d@example.org");
        let awl = store.greylist(&other, &params(), T0 + 400, true).await;
        assert_eq!(awl.unwrap(), GreylistOutcome::AutoWhitelisted { since: T0 });

        // The tables the upgrade added work.
        assert_eq!(store.allow_generation().await.unwrap(), 0);
        let entry = AllowEntry {
            kind: AllowListKind::Sender,
            value: "a@example.com".into(),
            note: String::new(),
            added_at: T0,
            scope: spamgate_engine::verdict::AllowScope::All,
            expires_at: None,
        };
        assert!(store.allow_add(&entry).await.unwrap());
        let rate = Rate {
            limit: 1,
            period: secs(3600),
            burst: 1,
        };
        let charged = store
            .charge(
                "a@example.jp",
                &[(LimitKind::MessagesPerHour, rate, 1)],
                T0 * 1000,
                true,
            )
            .await
            .unwrap();
        assert!(charged[0].1.allowed);
        store.close().await;
    }
}
