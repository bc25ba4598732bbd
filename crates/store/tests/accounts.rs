//! Submission accounts through the SQLite store: what conformance.rs (every backend) does
//! not cover: exact counters across a reopen, many tasks charging one store at once, the
//! events' JSON form, and expiry deleting rows.

mod common;

use common::*;
use rusqlite::Connection;
use spamgate_engine::outbound::{AccountStatus, LimitKind};
use spamgate_store::{AccountAdmin, AccountStore, EventKind, GreylistAdmin, SqliteOptions};

use LimitKind::{MessagesPerHour, RecipientsPerDay};

#[tokio::test]
async fn counters_are_exact_across_close_and_reopen() {
    let fixture = Fixture::new();
    let rate = daily(10);
    let store = fixture.open();
    charge(
        &store,
        "f@example.jp",
        NOW_MS,
        &[(RecipientsPerDay, rate, 7)],
        &[(true, 7)],
    )
    .await;
    store.close().await;

    let store = fixture.open();
    for used in 8..=10 {
        charge(
            &store,
            "f@example.jp",
            NOW_MS,
            &[(RecipientsPerDay, rate, 1)],
            &[(true, used)],
        )
        .await;
    }
    charge(
        &store,
        "f@example.jp",
        NOW_MS,
        &[(RecipientsPerDay, rate, 1)],
        &[(false, 10)],
    )
    .await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_charges_never_exceed_the_limit() {
    let fixture = Fixture::new();
    // A small batch: the charges spread over several transactions.
    let store = fixture.open_with(SqliteOptions {
        max_batch: 8,
        ..SqliteOptions::default()
    });
    charge_concurrently(std::slice::from_ref(&store)).await;
    store.close().await;
}

#[test]
fn events_serialise_flat_with_kebab_case_kinds() {
    let cases = [
        (
            event(T0, "a@example.jp", exceeded(101)),
            serde_json::json!({"at": T0, "username": "a@example.jp", "kind": "limit-exceeded",
                "limit": "messages-per-hour", "used": 101, "limit_value": 100,
                "detail": "client 192.0.2.0"}),
        ),
        (
            event(
                T0,
                "a@example.jp",
                EventKind::StatusChanged {
                    from: AccountStatus::Suspended,
                    to: AccountStatus::Terminated,
                },
            ),
            serde_json::json!({"at": T0, "username": "a@example.jp", "kind": "status-changed",
                "from": "suspended", "to": "terminated", "detail": "client 192.0.2.0"}),
        ),
        (
            event(
                T0,
                "a@example.jp",
                EventKind::Rejected {
                    status: AccountStatus::Terminated,
                },
            ),
            serde_json::json!({"at": T0, "username": "a@example.jp", "kind": "rejected",
                "status": "terminated", "detail": "client 192.0.2.0"}),
        ),
    ];
    for (event, json) in cases {
        assert_eq!(serde_json::to_value(&event).unwrap(), json);
        assert_eq!(json["kind"], event.kind.id());
    }
}

fn rate_rows(fixture: &Fixture) -> i64 {
    Connection::open(&fixture.path)
        .unwrap()
        .query_row("SELECT count(*) FROM rate_limits", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test]
async fn expire_removes_idle_rate_states_and_old_events() {
    let fixture = Fixture::new();
    let store = fixture.open_with(SqliteOptions {
        event_retention: secs(10 * DAY),
        expire_batch: 2,
        // rate_rows reads the file on its own connection: commit before answering.
        durability_window: secs(0),
        ..SqliteOptions::default()
    });
    // Hourly state of 3 accounts, and one daily state.
    for user in ["h1@example.jp", "h2@example.jp", "h3@example.jp"] {
        charge(
            &store,
            user,
            NOW_MS,
            &[(MessagesPerHour, hourly(10), 5)],
            &[(true, 5)],
        )
        .await;
    }
    charge(
        &store,
        "h1@example.jp",
        NOW_MS,
        &[(RecipientsPerDay, daily(10), 5)],
        &[(true, 5)],
    )
    .await;
    for at in [T0, T0 + 1, T0 + 5 * DAY] {
        store
            .record_event(&event(at, "h1@example.jp", exceeded(10)))
            .await
            .unwrap();
    }
    assert_eq!(rate_rows(&fixture), 4);

    // While a state still matters (half an hour on), nothing goes.
    assert_eq!(store.expire(T0 + 1800).await.unwrap(), 0);
    assert_eq!(rate_rows(&fixture), 4);
    // A period after its TAT the hourly state is gone, in steps of 2.
    assert_eq!(store.expire(T0 + 1800 + 3600).await.unwrap(), 3);
    assert_eq!(rate_rows(&fixture), 1);
    // A fresh state after expiry: the whole limit again.
    charge(
        &store,
        "h2@example.jp",
        (T0 + 1800 + 3600) * 1000,
        &[(MessagesPerHour, hourly(10), 10)],
        &[(true, 10)],
    )
    .await;

    // Events older than 10 days go; the newer one stays.
    assert_eq!(store.expire(T0 + 10 * DAY + 1).await.unwrap(), 1 + 1 + 2);
    let left = store.events(None, 0, None, 10).await.unwrap();
    assert_eq!(left, [event(T0 + 5 * DAY, "h1@example.jp", exceeded(10))]);
    assert_eq!(rate_rows(&fixture), 0);
    store.close().await;
}
