//! The account rules, on a real SQLite store: what each command does from each standing,
//! and that a refused command writes nothing.

use spamgate_app::accounts::{AccountError, AccountService, StatusChange};
use spamgate_engine::outbound::{Account, AccountStatus};
use spamgate_store::{AccountAdmin, AccountStore, SqliteOptions, SqliteStore};

const USER: &str = "taro@example.jp";
const NOW: u64 = 1_800_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Now(AccountStatus),
    Unknown,
    NeedsForce,
}

/// From `before` (None: not in the store), set `to` with `change`: the outcome, and the
/// stored account and event count afterwards.
async fn check(
    before: Option<AccountStatus>,
    to: AccountStatus,
    change: StatusChange,
    expected: Outcome,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db"), SqliteOptions::default()).unwrap();
    if let Some(status) = before {
        let account = Account {
            status,
            note: "earlier".into(),
            ..Account::new(USER, NOW - 10)
        };
        store.put_account(&account).await.unwrap();
    }
    let service = AccountService::new(&store);
    let got = service
        .set_status(USER, to, "ticket 42".into(), change, NOW)
        .await;
    let outcome = match &got {
        Ok(account) => Outcome::Now(account.status),
        Err(AccountError::Unknown(name)) => {
            assert_eq!(name, USER);
            Outcome::Unknown
        }
        Err(AccountError::Terminated(_)) => Outcome::NeedsForce,
        Err(e) => panic!("unexpected {e}"),
    };
    let case = format!("{before:?} -> {to:?} with {change:?}");
    assert_eq!(outcome, expected, "{case}");
    let stored = store.account(USER).await.unwrap();
    let events = store.events(Some(USER), 0, None, 10).await.unwrap();
    match expected {
        Outcome::Now(status) => {
            let stored = stored.expect("stored");
            assert_eq!(
                (stored.status, stored.note.as_str()),
                (status, "ticket 42"),
                "{case}"
            );
            assert_eq!(events.len(), 1, "one status-changed event: {case}");
        }
        _ => {
            assert_eq!(stored.map(|a| a.status), before, "nothing changed: {case}");
            assert!(events.is_empty(), "no event: {case}");
        }
    }
    store.close().await;
}

#[tokio::test]
async fn status_changes_from_every_standing() {
    use AccountStatus::*;
    let plain = StatusChange::default();
    let create = StatusChange {
        create: true,
        ..plain
    };
    let force = StatusChange {
        force: true,
        ..plain
    };
    let cases = [
        (None, Suspended, plain, Outcome::Unknown),
        (None, Terminated, plain, Outcome::Unknown),
        (None, Active, plain, Outcome::Unknown),
        (None, Suspended, create, Outcome::Now(Suspended)),
        (Some(Active), Suspended, plain, Outcome::Now(Suspended)),
        (Some(Suspended), Active, plain, Outcome::Now(Active)),
        (Some(Active), Terminated, plain, Outcome::Now(Terminated)),
        (Some(Terminated), Active, plain, Outcome::NeedsForce),
        (Some(Terminated), Suspended, create, Outcome::NeedsForce),
        (Some(Terminated), Active, force, Outcome::Now(Active)),
        (
            Some(Terminated),
            Terminated,
            plain,
            Outcome::Now(Terminated),
        ),
    ];
    for (before, to, change, expected) in cases {
        check(before, to, change, expected).await;
    }
}

#[tokio::test]
async fn show_names_an_unknown_account_and_limits_keep_what_is_not_given() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db"), SqliteOptions::default()).unwrap();
    let service = AccountService::new(&store);
    assert!(matches!(
        service.show(USER).await,
        Err(AccountError::Unknown(_))
    ));
    let limits = spamgate_engine::outbound::LimitOverrides {
        messages_per_hour: Some(500),
        recipients_per_day: None,
    };
    service
        .put_limits(USER, limits, String::new(), NOW)
        .await
        .unwrap();
    let raised = spamgate_engine::outbound::LimitOverrides {
        messages_per_hour: None,
        recipients_per_day: Some(5000),
    };
    let account = service
        .put_limits(USER, raised, "ok".into(), NOW)
        .await
        .unwrap();
    assert_eq!(account.limits.messages_per_hour, Some(500));
    assert_eq!(account.limits.recipients_per_day, Some(5000));
    assert_eq!(service.show(USER).await.unwrap(), account);
    store.close().await;
}
