//! The SQLite store.
//!
//! One OS thread owns the writing connection. Requests arrive on a bounded channel;
//! the thread takes everything queued (up to `max_batch`) and runs it in a savepoint of
//! one long transaction. Each request is atomic because one thread runs them in order.
//!
//! Durability window (`durability_window`, default 50 ms): a batch is answered as soon
//! as it ran, and the transaction commits when the window since it began is over, so
//! every request of the window shares one commit and none waits for it. A process
//! crash (even `kill -9`) loses at most the answered changes of the last window: for
//! greylisting, a few senders are deferred once more. With a zero window each batch
//! commits before it is answered and a crash loses nothing answered. Reads through the
//! store commit first (a caller reads its own writes); other processes see changes at
//! most one window late. WAL with `synchronous=NORMAL`: a power loss or kernel crash
//! can also lose what was committed since the last checkpoint's fsync.
//!
//! Expiry runs after the batch is answered, in steps capped by rows and by time
//! (2 ms), so a large cleanup delays requests by one step at most. Past a size bound
//! the writer truncates the WAL itself between transactions: a checkpoint beside a
//! busy writer cannot.
//!
//! Two more connections keep slow work off the writer thread: a checkpoint thread
//! copies committed pages from the WAL into the file (and pays for the fsync), and a
//! read-only connection on the blocking pool serves counts, listings and the
//! allow-list generation. Reads that decide a write (an account's status before a
//! charge, say) go through the writer, in order with the writes.
//!
//! Files, one concern each:
//! - `open`: [`SqliteOptions`], the three connections and their pragmas, the
//!   checkpoint thread, migrations on open and what an unopenable file is told apart by.
//! - `writer`: the store thread, its batches of savepoints in one long transaction and
//!   the durability window.
//! - `greylist`: the greylist check on the writer (and its pending-count memory, `pending`).
//! - `admin`: counts, listings, finding and deleting greylist entries.
//! - `expire`: expiry in small steps between batches.
//! - `allow`: the runtime allow-list and its generation.
//! - `learn`: learned exemptions (read, observe on the writer, list, remove).
//! - `accounts`: accounts, GCRA charges and the event log.
//! - `dump`: export and import of the whole file ([`crate::StoreDump`]).
//! - `schema`: the ordered migrations behind `PRAGMA user_version`.

mod accounts;
mod admin;
mod allow;
mod dump;
mod expire;
mod greylist;
mod learn;
mod open;
mod pending;
pub(crate) mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use crate::StoreError;
pub use dump::{export_sqlite, import_sqlite};
pub use open::SqliteOptions;
#[doc(hidden)]
pub use open::create_with_schema_version;
use open::{Role, create_file, diagnose, migrate, open_connection, run_checkpointer};
use writer::{Job, Request, Tx, run_writer};

/// Greylist, allow-list and account state in one SQLite file. See the module
/// documentation.
///
/// A handle: clones share the one store thread and its connections, so the daemon,
/// its background tasks and (later) the abuse desk can each hold one. When the last
/// clone is dropped the thread commits what is queued and stops;
/// [`SqliteStore::close`] also waits for that. A call whose future is dropped after
/// it was queued may still be applied.
#[derive(Clone)]
pub struct SqliteStore {
    /// Declared first so it is dropped first: the last connection to close removes
    /// the WAL.
    reader: Arc<Mutex<Connection>>,
    requests: mpsc::Sender<Request>,
    path: Arc<Path>,
    /// Closed (`changed` fails) when the thread ends and drops its sender.
    finished: watch::Receiver<()>,
}

impl SqliteStore {
    /// Opens or creates the file (not its directory), switches it to WAL, applies
    /// pending migrations and starts the store thread.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        create_file(path)?;

        let mut writer =
            open_connection(path, &options, Role::Writer).map_err(|e| diagnose(path, e))?;
        migrate(path, &mut writer)?;
        let reader =
            open_connection(path, &options, Role::Reader).map_err(|e| diagnose(path, e))?;
        let checkpointer =
            open_connection(path, &options, Role::Checkpointer).map_err(|e| diagnose(path, e))?;
        let (stop_checkpoints, stopped) = std::sync::mpsc::channel::<()>();
        let interval = options.checkpoint_interval;
        let checkpoints = std::thread::Builder::new()
            .name("spamgate-store-checkpoint".into())
            .spawn(move || run_checkpointer(checkpointer, &stopped, interval))
            .map_err(open_error)?;

        let (requests, receiver) = mpsc::channel(options.queue_capacity.max(1));
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let wal_path = PathBuf::from(wal_path);
        let (finished_tx, finished) = watch::channel(());
        std::thread::Builder::new()
            .name("spamgate-store".into())
            .spawn(move || {
                run_writer(writer, receiver, &options, wal_path);
                // The writer is closed: the checkpointer's last checkpoint empties the WAL.
                drop(stop_checkpoints);
                if checkpoints.join().is_err() {
                    tracing::error!("the store checkpoint thread panicked");
                }
                drop(finished_tx);
            })
            .map_err(open_error)?;
        tracing::info!(path = %path.display(), schema = schema::SCHEMA_VERSION, "store opened");
        Ok(SqliteStore {
            path: Arc::from(path),
            requests,
            reader: Arc::new(Mutex::new(reader)),
            finished,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting requests through this handle and waits until the thread has
    /// committed the queued ones and closed the file: once every other clone is
    /// closed or dropped too.
    pub async fn close(self) {
        let SqliteStore {
            requests,
            reader,
            mut finished,
            ..
        } = self;
        // The reader goes first, so the last connection to close can remove the WAL.
        drop(reader);
        drop(requests);
        // Err is the normal outcome: the thread drops the sender when it ends.
        let _ = finished.changed().await;
    }

    async fn call<T>(
        &self,
        request: Request,
        answer: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.requests
            .send(request)
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `work` on the store thread, atomically, in order with every other write;
    /// answered within the durability window.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Tx<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_with(false, work).await
    }

    /// As [`SqliteStore::write`], but committed before it is answered: for the rare
    /// records an operator or another process must find at once (account status,
    /// events, allow-list entries, deletions).
    async fn write_durably<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Tx<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_with(true, work).await
    }

    async fn write_with<T: Send + 'static>(
        &self,
        durable: bool,
        work: impl FnOnce(&mut Tx<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            durable,
            work: Some(work),
            output: None,
            reply,
        };
        self.call(Request::Step(Box::new(job)), answer).await
    }

    /// Reads on the read-only connection, after committing what this store answered
    /// before (so a caller reads its own writes, whatever the durability window).
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.call(Request::Sync(reply), answer).await?;
        let reader = Arc::clone(&self.reader);
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = reader.lock().map_err(|_| StoreError::Closed)?;
            query(&mut conn).map_err(StoreError::from)
        })
        .await;
        result.map_err(|_| StoreError::Closed)?
    }
}

/// SQLite integers are signed; times beyond i64 cannot occur in practice but must
/// not wrap.
fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
