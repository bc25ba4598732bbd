//! Opening the file: the three connections and their pragmas, the checkpoint thread,
//! migrations, and telling an unopenable file apart from an unwritable directory.

use std::fs::OpenOptions;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::schema::{self, MigrateError};
use crate::StoreError;

/// Tunables of [`super::SqliteStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// How long to wait for another process's write lock before failing.
    pub busy_timeout: Duration,
    /// Requests that may wait for the store thread; senders wait when it is full.
    pub queue_capacity: usize,
    /// Requests committed together at most.
    pub max_batch: usize,
    /// Rows deleted per expiry step; other requests run between steps.
    pub expire_batch: usize,
    /// SQLite page cache of the writing connection, in KiB.
    pub cache_kib: u32,
    /// How often a second thread copies committed pages from the WAL into the file.
    pub checkpoint_interval: Duration,
    /// WAL length (pages) at which the writer checkpoints by itself.
    pub wal_pages: u32,
    /// How long account events are kept; `expire` deletes older ones.
    pub event_retention: Duration,
    /// Answered changes may stay uncommitted this long, so many batches share one
    /// commit and no request waits for one; a crash of the process loses at most this
    /// much. Zero: commit every batch before answering it.
    pub durability_window: Duration,
    /// WAL size past which the writer truncates it after a commit.
    pub wal_truncate_bytes: u64,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(5),
            queue_capacity: 4096,
            max_batch: 256,
            expire_batch: 1000,
            cache_kib: 16 * 1024,
            checkpoint_interval: Duration::from_millis(100),
            wal_pages: 10_000,
            event_retention: Duration::from_secs(90 * 86_400),
            durability_window: Duration::from_millis(50),
            wal_truncate_bytes: 128 * 1024 * 1024,
        }
    }
}

/// The three connections of a store, each used by one thread at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Owned by the store thread; the only one that writes rows.
    Writer,
    /// Copies committed pages from the WAL into the file, beside the writer.
    Checkpointer,
    /// Counts and listings, behind a mutex.
    Reader,
}

pub(super) fn open_connection(
    path: &Path,
    options: &SqliteOptions,
    role: Role,
) -> Result<Connection, StoreError> {
    let setup = |source| StoreError::Setup {
        path: path.to_path_buf(),
        source,
    };
    let mode = if role == Role::Reader {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    // NO_MUTEX: no connection is used by two threads at once.
    let conn =
        Connection::open_with_flags(path, mode | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(setup)?;
    conn.busy_timeout(options.busy_timeout).map_err(setup)?;
    if role == Role::Reader {
        return Ok(conn);
    }
    // The journal mode is stored in the file; setting it on each read-write
    // connection also checks that WAL works here.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(setup)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::JournalMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(setup)?;
    // After a checkpoint, truncate the WAL back to this size so a burst does not leave
    // a huge file behind.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .map_err(setup)?;
    if role == Role::Writer {
        conn.pragma_update(None, "cache_size", -i64::from(options.cache_kib))
            .map_err(setup)?;
        // The checkpoint thread does this work; the writer checkpoints itself only if
        // the WAL grows this long anyway (its checkpoint then also lets the WAL restart
        // from the beginning, which a checkpoint beside a busy writer cannot).
        conn.pragma_update(None, "wal_autocheckpoint", options.wal_pages.max(1))
            .map_err(setup)?;
        // The writer runs every batch in a savepoint inside its long transaction, so
        // each page a batch first touches is copied to the savepoint's sub-journal.
        // In memory that copy is a memcpy; in a temp file (the default) it was a
        // pwrite per page, a quarter of the writer's time (profile finding 9).
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(setup)?;
        conn.set_prepared_statement_cache_capacity(32);
    }
    Ok(conn)
}

/// Copies committed pages back into the database file every `interval`, so neither
/// the copying nor its fsync runs on the writer thread. Ends when `stop` is dropped.
pub(super) fn run_checkpointer(
    conn: Connection,
    stop: &std::sync::mpsc::Receiver<()>,
    interval: Duration,
) {
    use std::sync::mpsc::RecvTimeoutError;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(interval) {
        // PASSIVE: never waits for, nor blocks, the writer or readers.
        if let Err(error) = checkpoint(&conn, "PASSIVE") {
            tracing::warn!(%error, "store checkpoint failed");
        }
    }
    // The writer has closed: leave everything in the database file and an empty WAL.
    if let Err(error) = checkpoint(&conn, "TRUNCATE") {
        tracing::warn!(%error, "final store checkpoint failed");
    }
    if let Err((_, error)) = conn.close() {
        tracing::warn!(%error, "closing the store checkpointer failed");
    }
}

/// Returns (WAL frames, frames copied).
pub(super) fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok((row.get(1)?, row.get(2)?))
    })
}

pub(super) fn migrate(path: &Path, conn: &mut Connection) -> Result<(), StoreError> {
    match schema::migrate(conn) {
        Ok(0) => Ok(()),
        Ok(applied) => {
            tracing::info!(path = %path.display(), applied, "store schema migrated");
            Ok(())
        }
        Err(MigrateError::Unknown { found, supported }) => Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported,
        }),
        Err(MigrateError::Sqlite(source)) => Err(diagnose(
            path,
            StoreError::Setup {
                path: path.to_path_buf(),
                source,
            },
        )),
    }
}

/// Creates the file ourselves: SQLite's "unable to open database file" names neither
/// the path nor the OS reason. Owner-only, as it holds mail addresses.
pub(super) fn create_file(path: &Path) -> Result<(), StoreError> {
    let mut create = OpenOptions::new();
    create.read(true).write(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
    create.open(path).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(())
}

/// Creates (or brings) `path` to an older schema `version`, as that release left its
/// files, so upgrade tests can fill it with old rows and open it with this one.
#[doc(hidden)]
pub fn create_with_schema_version(path: &Path, version: usize) -> Result<(), StoreError> {
    create_file(path)?;
    let mut conn = open_connection(path, &SqliteOptions::default(), Role::Writer)?;
    let setup = |source| StoreError::Setup {
        path: path.to_path_buf(),
        source,
    };
    match schema::migrate_to(&mut conn, version) {
        Ok(_) => conn.close().map_err(|(_, error)| setup(error)),
        Err(MigrateError::Sqlite(error)) => Err(setup(error)),
        Err(MigrateError::Unknown { found, supported }) => Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported,
        }),
    }
}

/// SQLite reports an unwritable directory (no room for the `-wal` and `-shm` files)
/// only as "unable to open database file": probe the directory for the OS reason.
pub(super) fn diagnose(path: &Path, error: StoreError) -> StoreError {
    if !matches!(error, StoreError::Setup { .. }) {
        return error;
    }
    let probe = path.with_file_name(format!(
        ".{}.spamgate-probe-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("store"),
        std::process::id()
    ));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            error
        }
        Err(source) if source.kind() == std::io::ErrorKind::AlreadyExists => error,
        Err(source) => StoreError::Open {
            path: probe.parent().unwrap_or(path).to_path_buf(),
            source,
        },
    }
}
