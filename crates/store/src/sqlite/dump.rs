//! The whole SQLite file as a [`StoreDump`] and back, on plain connections.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use spamgate_engine::greylist::{AwlState, Key, TripletState};
use spamgate_engine::outbound::{Account, AccountStatus, LimitKind, LimitOverrides};
use spamgate_engine::verdict::AllowListKind;

use super::schema::SCHEMA_VERSION;
use super::{SqliteOptions, SqliteStore};
use crate::{
    AccountEvent, AllowEntry, AwlRecord, EventKind, RateRecord, StoreDump, StoreError,
    TripletRecord,
};

fn sqlite_error(error: rusqlite::Error) -> StoreError {
    StoreError::from(error)
}

/// Opens (creating or upgrading) the file as spamgate would, then a plain connection
/// on it for the bulk copy.
async fn open_sqlite(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    SqliteStore::open(path, SqliteOptions::default())?
        .close()
        .await;
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite_error)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sqlite_error)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sqlite_error)?;
    if version != SCHEMA_VERSION {
        return Err(StoreError::Redis(format!(
            "cannot migrate {}: schema version {version}, this build copies version {SCHEMA_VERSION}",
            path.display()
        )));
    }
    Ok(conn)
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Everything in the SQLite store at `path` (its schema upgraded first, if older).
pub async fn export_sqlite(path: &Path) -> Result<StoreDump, StoreError> {
    // A mistyped source must not become a new, empty store.
    if let Err(source) = std::fs::metadata(path) {
        return Err(StoreError::Open {
            path: path.to_path_buf(),
            source,
        });
    }
    let conn = open_sqlite(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .await?;
    tokio::task::spawn_blocking(move || read_sqlite(conn))
        .await
        .map_err(|_| StoreError::Closed)?
}

fn read_sqlite(mut conn: Connection) -> Result<StoreDump, StoreError> {
    // One read transaction: one consistent snapshot.
    let tx = conn.transaction().map_err(sqlite_error)?;
    let triplets = all_rows(
        &tx,
        "SELECT key, network, net_text, sender, recipient, first_seen, last_seen,
                attempts, passed_at, expires_at FROM triplets",
        |row| {
            Ok(TripletRecord {
                key: key_of(row, 0)?,
                network_key: key_of(row, 1)?,
                network: row.get(2)?,
                sender: row.get(3)?,
                recipient: row.get(4)?,
                state: TripletState {
                    first_seen: unsigned(row.get(5)?),
                    last_seen: unsigned(row.get(6)?),
                    attempts: u32::try_from(row.get::<_, i64>(7)?.max(0)).unwrap_or(u32::MAX),
                    passed_at: row.get::<_, Option<i64>>(8)?.map(unsigned),
                },
                expires_at: unsigned(row.get(9)?),
            })
        },
    );
    let awl = all_rows(
        &tx,
        "SELECT key, client, first_seen, last_seen, expires_at FROM awl",
        |row| {
            Ok(AwlRecord {
                key: key_of(row, 0)?,
                client: row.get(1)?,
                state: AwlState {
                    first_seen: unsigned(row.get(2)?),
                    last_seen: unsigned(row.get(3)?),
                },
                expires_at: unsigned(row.get(4)?),
            })
        },
    );
    let allow = all_rows(
        &tx,
        "SELECT kind, value, note, added_at, scope, expires_at FROM allow_list",
        |row| {
            Ok(AllowEntry {
                kind: parsed(row, 0, AllowListKind::parse)?,
                value: row.get(1)?,
                note: row.get(2)?,
                added_at: unsigned(row.get(3)?),
                scope: super::allow::scope_of(&row.get::<_, String>(4)?),
                expires_at: row.get::<_, Option<i64>>(5)?.map(unsigned),
            })
        },
    );
    let accounts = all_rows(
        &tx,
        "SELECT username, status, messages_per_hour, recipients_per_day, note, updated_at
         FROM accounts",
        |row| {
            let limit = |n: Option<i64>| n.map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX));
            Ok(Account {
                username: row.get(0)?,
                status: parsed(row, 1, AccountStatus::parse)?,
                limits: LimitOverrides {
                    messages_per_hour: limit(row.get(2)?),
                    recipients_per_day: limit(row.get(3)?),
                },
                note: row.get(4)?,
                updated_at: unsigned(row.get(5)?),
            })
        },
    );
    let rates = all_rows(
        &tx,
        "SELECT username, kind, tat_ms, expires_at FROM rate_limits",
        |row| {
            Ok(RateRecord {
                username: row.get(0)?,
                kind: parsed(row, 1, LimitKind::parse)?,
                tat_ms: unsigned(row.get(2)?),
                expires_at: unsigned(row.get(3)?),
            })
        },
    );
    let events = all_rows(
        &tx,
        "SELECT at, username, data, detail FROM account_events ORDER BY at, id",
        |row| {
            Ok(AccountEvent {
                at: unsigned(row.get(0)?),
                username: row.get(1)?,
                kind: parsed(row, 2, |data| serde_json::from_str::<EventKind>(data).ok())?,
                detail: row.get(3)?,
            })
        },
    );
    let allow_generation = tx
        .query_row(
            "SELECT value FROM generations WHERE name = 'allow-list'",
            [],
            |row| row.get::<_, i64>(0),
        )
        .optional();
    let mut dump = StoreDump {
        triplets: triplets.map_err(sqlite_error)?,
        awl: awl.map_err(sqlite_error)?,
        allow: allow.map_err(sqlite_error)?,
        allow_generation: allow_generation.map_err(sqlite_error)?.map_or(0, unsigned),
        accounts: accounts.map_err(sqlite_error)?,
        rates: rates.map_err(sqlite_error)?,
        events: events.map_err(sqlite_error)?,
    };
    dump.sort();
    Ok(dump)
}

fn all_rows<T>(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    tx.prepare(sql)?.query_map([], row)?.collect()
}

fn key_of(row: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<Key> {
    let bytes: Vec<u8> = row.get(column)?;
    Key::try_from(bytes.as_slice()).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Blob,
            format!("a key of {} bytes", bytes.len()).into(),
        )
    })
}

/// A text column the engine must understand (kinds, statuses, event data).
fn parsed<T>(
    row: &rusqlite::Row<'_>,
    column: usize,
    parse: impl Fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            format!("cannot migrate {text:?}").into(),
        )
    })
}

/// Writes `dump` into the SQLite store at `path` (created if missing), in one
/// transaction; rows with the same keys are replaced. The allow-list generation moves
/// past both the file's and the dump's, so running daemons reload the list.
pub async fn import_sqlite(path: &Path, dump: &StoreDump) -> Result<(), StoreError> {
    let conn = open_sqlite(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .await?;
    let dump = dump.clone();
    tokio::task::spawn_blocking(move || write_sqlite(conn, &dump).map_err(sqlite_error))
        .await
        .map_err(|_| StoreError::Closed)?
}

fn write_sqlite(mut conn: Connection, dump: &StoreDump) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare(
            "INSERT OR REPLACE INTO triplets (key, network, first_seen, last_seen, attempts,
                passed_at, expires_at, net_text, sender, recipient)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for t in &dump.triplets {
            insert.execute(params![
                &t.key[..],
                &t.network_key[..],
                signed(t.state.first_seen),
                signed(t.state.last_seen),
                i64::from(t.state.attempts),
                t.state.passed_at.map(signed),
                signed(t.expires_at),
                t.network,
                t.sender,
                t.recipient,
            ])?;
        }
        let mut insert = tx.prepare(
            "INSERT OR REPLACE INTO awl (key, client, first_seen, last_seen, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for a in &dump.awl {
            insert.execute(params![
                &a.key[..],
                a.client,
                signed(a.state.first_seen),
                signed(a.state.last_seen),
                signed(a.expires_at),
            ])?;
        }
        let mut insert = tx.prepare(
            "INSERT OR REPLACE INTO allow_list (kind, value, note, added_at, scope, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for e in &dump.allow {
            insert.execute(params![
                e.kind.id(),
                e.value,
                e.note,
                signed(e.added_at),
                e.scope.id(),
                e.expires_at.map(signed),
            ])?;
        }
        tx.execute(
            "UPDATE generations SET value = max(value, ?1) + 1 WHERE name = 'allow-list'",
            [signed(dump.allow_generation)],
        )?;
        let mut insert = tx.prepare(
            "INSERT OR REPLACE INTO accounts (username, status, messages_per_hour,
                recipients_per_day, note, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for a in &dump.accounts {
            insert.execute(params![
                a.username,
                a.status.id(),
                a.limits.messages_per_hour,
                a.limits.recipients_per_day,
                a.note,
                signed(a.updated_at),
            ])?;
        }
        let mut insert = tx.prepare(
            "INSERT OR REPLACE INTO rate_limits (username, kind, tat_ms, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for r in &dump.rates {
            insert.execute(params![
                r.username,
                r.kind.id(),
                signed(r.tat_ms),
                signed(r.expires_at)
            ])?;
        }
        let mut insert = tx.prepare(
            "INSERT INTO account_events (at, username, kind, data, detail)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for e in &dump.events {
            let data = serde_json::to_string(&e.kind)
                .map_err(|error| rusqlite::Error::ToSqlConversionFailure(error.into()))?;
            insert.execute(params![
                signed(e.at),
                e.username,
                e.kind.id(),
                data,
                e.detail
            ])?;
        }
    }
    tx.commit()
}
