//! The conformance suite against the SQLite store, on real files.

use spamgate_desk::store::DeskStore;
use spamgate_desk::store::conformance::Opener;
use spamgate_desk::store::sqlite::SqliteDeskStore;

fn sqlite_opener() -> Box<Opener> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("desk.sqlite");
    // The directory lives as long as the opener: it is moved into it.
    Box::new(move || {
        let _keep = &dir;
        Box::new(SqliteDeskStore::open(&path).unwrap()) as Box<dyn DeskStore>
    })
}

spamgate_desk::desk_store_conformance!(sqlite_opener);

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("desk.sqlite");
    drop(SqliteDeskStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    assert!(SqliteDeskStore::open(&path).is_err());
}
