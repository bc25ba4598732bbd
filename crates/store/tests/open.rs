//! Opening files: creation, WAL, schema versions, and clear errors.

mod common;

use std::io::ErrorKind;
use std::path::Path;

use common::*;
use rusqlite::Connection;
use spamgate_store::{SCHEMA_VERSION, SqliteOptions, SqliteStore, StoreError};

fn pragma(path: &Path, name: &str) -> String {
    let conn = Connection::open(path).unwrap();
    conn.query_row(&format!("PRAGMA {name}"), [], |row| {
        row.get::<_, rusqlite::types::Value>(0)
    })
    .map(|value| match value {
        rusqlite::types::Value::Integer(n) => n.to_string(),
        rusqlite::types::Value::Text(text) => text,
        other => format!("{other:?}"),
    })
    .unwrap()
}

fn open_error(path: &Path) -> StoreError {
    match SqliteStore::open(path, SqliteOptions::default()) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(error) => error,
    }
}

#[tokio::test]
async fn a_fresh_file_gets_the_current_schema_in_wal_mode() {
    let fixture = Fixture::new();
    assert!(!fixture.path.exists());
    fixture.open().close().await;
    assert_eq!(
        pragma(&fixture.path, "user_version"),
        SCHEMA_VERSION.to_string()
    );
    assert_eq!(pragma(&fixture.path, "journal_mode"), "wal");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&fixture.path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "mail addresses inside: owner only, got {mode:o}"
        );
    }
    // Reopening an up-to-date file changes nothing.
    fixture.open().close().await;
    assert_eq!(
        pragma(&fixture.path, "user_version"),
        SCHEMA_VERSION.to_string()
    );
}

#[test]
fn a_file_from_a_newer_version_is_refused_untouched() {
    let fixture = Fixture::new();
    let future = SCHEMA_VERSION + 1;
    Connection::open(&fixture.path)
        .unwrap()
        .pragma_update(None, "user_version", future)
        .unwrap();
    let error = open_error(&fixture.path);
    assert!(
        matches!(error, StoreError::SchemaTooNew { found, supported, .. }
            if found == future && supported == SCHEMA_VERSION),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&fixture.path.display().to_string()),
        "{message}"
    );
    assert_eq!(pragma(&fixture.path, "user_version"), future.to_string());
}

/// Each unusable path fails with an `Open` error that names it and the OS reason.
fn check_unopenable(path: &Path, kind: ErrorKind) {
    let error = open_error(path);
    let message = error.to_string();
    match &error {
        StoreError::Open {
            path: named,
            source,
        } => {
            assert_eq!(named, path);
            assert_eq!(source.kind(), kind, "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("os error"), "{message}");
}

#[test]
fn unusable_paths_fail_with_the_path_and_os_error() {
    let fixture = Fixture::new();
    check_unopenable(
        &fixture.dir.path().join("missing/greylist.sqlite"),
        ErrorKind::NotFound,
    );
    check_unopenable(fixture.dir.path(), ErrorKind::IsADirectory);
    assert!(
        !fixture.dir.path().join("missing").exists(),
        "no directory is created"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let fixture = Fixture::new();
    std::fs::write(&fixture.path, vec![0x5a; 8192]).unwrap();
    let error = open_error(&fixture.path);
    assert!(matches!(error, StoreError::Setup { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains(&fixture.path.display().to_string())
    );
    assert_eq!(std::fs::read(&fixture.path).unwrap(), vec![0x5a; 8192]);
}

#[tokio::test]
async fn a_database_locked_by_another_process_fails_calls_then_recovers() {
    use spamgate_engine::greylist::GreylistOutcome;
    use spamgate_store::{GreylistAdmin, GreylistStore};

    let fixture = Fixture::new();
    let store = fixture.open_with(SqliteOptions {
        busy_timeout: secs(0),
        ..SqliteOptions::default()
    });
    let keys = keys("192.0.2.70", "a@example.com", "b@example.org");

    // Another writer (say, a second spamgate on the same file) holds the write lock.
    let other = Connection::open(&fixture.path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let error = store
        .greylist(&keys, &params(), T0, true)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Sqlite(_)), "{error:?}");
    assert!(error.to_string().contains("locked"), "{error}");
    assert!(store.expire(T0).await.is_err());

    other.execute_batch("COMMIT").unwrap();
    let outcome = store.greylist(&keys, &params(), T0, true).await.unwrap();
    assert_eq!(outcome, GreylistOutcome::New { retry_in: 300 });
    assert_eq!(store.expire(T0).await.unwrap(), 0);
    store.close().await;
}
