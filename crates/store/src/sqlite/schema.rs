//! Schema versions. `PRAGMA user_version` counts the migrations applied so far.

use rusqlite::{Connection, TransactionBehavior};

/// Ordered migrations: entry `i` takes the schema from version `i` to `i + 1`.
/// Append only; never edit a released entry.
const MIGRATIONS: &[&str] = &[
    // 1: triplets and the per-address auto-whitelist. Keys are 16-byte hashes, so
    // WITHOUT ROWID tables keep one B-tree per table. The readable texts serve
    // `spamgate greylist list` only.
    "CREATE TABLE triplets (
        key BLOB PRIMARY KEY,
        network BLOB NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        passed_at INTEGER,
        expires_at INTEGER NOT NULL,
        net_text TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL
    ) WITHOUT ROWID;
    -- Pending counts per network, ignoring rows that expired but are not deleted yet.
    CREATE INDEX triplets_pending ON triplets (network, expires_at) WHERE passed_at IS NULL;
    CREATE INDEX triplets_expires ON triplets (expires_at);
    CREATE TABLE awl (
        key BLOB PRIMARY KEY,
        client TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX awl_expires ON awl (expires_at);",
    // 2: the runtime allow-list, submission accounts, their rate-limit state and the
    // abuse desk's event log.
    "CREATE TABLE allow_list (
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        note TEXT NOT NULL,
        added_at INTEGER NOT NULL,
        PRIMARY KEY (kind, value)
    ) WITHOUT ROWID;
    -- Counters that move on every change of what they name; daemons poll them.
    CREATE TABLE generations (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO generations VALUES ('allow-list', 0);
    CREATE TABLE accounts (
        username TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        messages_per_hour INTEGER,
        recipients_per_day INTEGER,
        note TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- One GCRA theoretical arrival time (ms) per account and limit.
    CREATE TABLE rate_limits (
        username TEXT NOT NULL,
        kind TEXT NOT NULL,
        tat_ms INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (username, kind)
    ) WITHOUT ROWID;
    CREATE INDEX rate_limits_expires ON rate_limits (expires_at);
    -- kind is the event's id; data its JSON form (the id included).
    CREATE TABLE account_events (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        username TEXT NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX account_events_at ON account_events (at);
    CREATE INDEX account_events_user ON account_events (username, at);",
    // 3: the pending count per network reads only the index (it used to look every
    // counted row up in the table: up to max_pending_per_network searches per new triplet).
    "DROP INDEX triplets_pending;
    CREATE INDEX triplets_pending ON triplets (network, expires_at, passed_at)
        WHERE passed_at IS NULL;",
    // 4: allow-list entries say what they skip ('greylist' or 'all'; entries of earlier
    // versions skipped everything) and may expire.
    "ALTER TABLE allow_list ADD COLUMN scope TEXT NOT NULL DEFAULT 'all';
    ALTER TABLE allow_list ADD COLUMN expires_at INTEGER;",
    // 5: learned exemptions, one row per organisational domain: the engine's record as
    // JSON, with the times the request path and the caps query.
    "CREATE TABLE learned (
        org TEXT PRIMARY KEY,
        record TEXT NOT NULL,
        learned_until INTEGER,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX learned_expires ON learned (expires_at);
    CREATE INDEX learned_until ON learned (learned_until) WHERE learned_until IS NOT NULL;",
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug)]
pub(crate) enum MigrateError {
    /// The file's version is beyond (or below) what `migrations` knows.
    Unknown {
        found: i64,
        supported: i64,
    },
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(error: rusqlite::Error) -> Self {
        MigrateError::Sqlite(error)
    }
}

/// Brings the file to [`SCHEMA_VERSION`]; returns how many migrations ran.
pub(crate) fn migrate(conn: &mut Connection) -> Result<usize, MigrateError> {
    migrate_with(conn, MIGRATIONS)
}

/// Brings the file to an older `version` only, as that release would have created it
/// (for upgrade tests). Versions beyond [`SCHEMA_VERSION`] stop at it.
pub(crate) fn migrate_to(conn: &mut Connection, version: usize) -> Result<usize, MigrateError> {
    migrate_with(conn, &MIGRATIONS[..version.min(MIGRATIONS.len())])
}

fn migrate_with(conn: &mut Connection, migrations: &[&str]) -> Result<usize, MigrateError> {
    let supported = migrations.len() as i64;
    let mut applied = 0;
    loop {
        // IMMEDIATE: two processes opening a fresh file must not both run migration 1;
        // the version is read again under the write lock.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        let next = usize::try_from(found)
            .ok()
            .filter(|&version| version <= migrations.len())
            .ok_or(MigrateError::Unknown { found, supported })?;
        let Some(sql) = migrations.get(next) else {
            return Ok(applied);
        };
        tx.execute_batch(sql)?;
        // user_version lives in the file header, so it commits with the migration.
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
        applied += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn runs_only_the_missing_migrations_in_order() {
        let mut conn = Connection::open_in_memory().unwrap();
        let first = ["CREATE TABLE a (x INTEGER)"];
        assert_eq!(migrate_with(&mut conn, &first).unwrap(), 1);
        assert_eq!(version(&conn), 1);
        conn.execute("INSERT INTO a VALUES (1)", []).unwrap();

        // A later build adds a step that depends on the first one's table.
        let second = [
            "CREATE TABLE a (x INTEGER)",
            "ALTER TABLE a ADD COLUMN y INTEGER",
        ];
        assert_eq!(migrate_with(&mut conn, &second).unwrap(), 1);
        assert_eq!(version(&conn), 2);
        assert_eq!(migrate_with(&mut conn, &second).unwrap(), 0);
        let row: (i64, Option<i64>) = conn
            .query_row("SELECT x, y FROM a", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!(row, (1, None));
    }

    #[test]
    fn a_failing_migration_leaves_the_previous_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        let broken = ["CREATE TABLE a (x INTEGER)", "CREATE TABLE b (x); NOT SQL"];
        assert!(matches!(
            migrate_with(&mut conn, &broken),
            Err(MigrateError::Sqlite(_))
        ));
        assert_eq!(version(&conn), 1);
        let b_exists: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'b'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(b_exists, 0, "the failed step was rolled back as a whole");
    }

    #[test]
    fn refuses_unknown_versions() {
        for found in [2, -1] {
            let mut conn = Connection::open_in_memory().unwrap();
            conn.pragma_update(None, "user_version", found).unwrap();
            let result = migrate_with(&mut conn, &["CREATE TABLE a (x)"]);
            assert!(
                matches!(result, Err(MigrateError::Unknown { found: f, supported: 1 }) if f == found),
                "{found}: {result:?}"
            );
        }
    }

    fn fresh() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn
    }

    fn plan(conn: &Connection, sql: &str) -> String {
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let details: Vec<String> = statement
            .query_map([], |row| row.get(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        details.join("; ")
    }

    /// The schema's indexes serve the hot queries (and the very statements the steps run).
    #[test]
    fn hot_queries_use_their_indexes() {
        let conn = fresh();
        let pending = plan(
            &conn,
            "SELECT count(*) FROM (SELECT 1 FROM triplets
             WHERE network = x'00' AND passed_at IS NULL AND expires_at > 5 LIMIT 10)",
        );
        assert!(pending.contains("triplets_pending"), "{pending}");
        // The exact statement the greylist step runs reads only the index.
        let step = plan(
            &conn,
            &crate::sqlite::greylist::PENDING_COUNT
                .replace("?1", "x'00'")
                .replace("?2", "5"),
        );
        assert!(step.contains("COVERING INDEX triplets_pending"), "{step}");
        let expire = plan(
            &conn,
            "DELETE FROM triplets WHERE key IN
             (SELECT key FROM triplets WHERE expires_at <= 5 LIMIT 10)",
        );
        assert!(expire.contains("triplets_expires"), "{expire}");
        let lookup = plan(
            &conn,
            "SELECT * FROM awl WHERE key = x'00' AND expires_at > 5",
        );
        assert!(lookup.contains("PRIMARY KEY"), "{lookup}");
        let rates = plan(
            &conn,
            "DELETE FROM rate_limits WHERE (username, kind) IN
             (SELECT username, kind FROM rate_limits WHERE expires_at <= 5 LIMIT 10)",
        );
        assert!(rates.contains("rate_limits_expires"), "{rates}");
        let old_events = plan(
            &conn,
            "DELETE FROM account_events WHERE id IN
             (SELECT id FROM account_events WHERE at <= 5 LIMIT 10)",
        );
        assert!(old_events.contains("account_events_at"), "{old_events}");
        // Newest first straight from an index: no sort step.
        let all = plan(
            &conn,
            "SELECT * FROM account_events WHERE at >= 5 ORDER BY at DESC, id DESC LIMIT 10",
        );
        assert!(
            all.contains("account_events_at") && !all.contains("TEMP B-TREE"),
            "{all}"
        );
        let one = plan(
            &conn,
            "SELECT * FROM account_events WHERE username = 'a' AND at >= 5
             ORDER BY at DESC, id DESC LIMIT 10",
        );
        assert!(
            one.contains("account_events_user") && !one.contains("TEMP B-TREE"),
            "{one}"
        );
    }
}
