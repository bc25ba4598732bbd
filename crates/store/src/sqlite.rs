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

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use spamgate_engine::UnixTime;
use spamgate_engine::greylist::{
    AwlState, GreylistInputs, GreylistKeys, GreylistOutcome, GreylistParams, Key, TripletState,
    awl_key, decide, needs_pending_count,
};
use spamgate_engine::outbound::{
    Account, AccountStatus, GcraOutcome, LimitKind, LimitOverrides, Rate, gcra,
};
use spamgate_engine::verdict::AllowListKind;
use tokio::sync::{mpsc, oneshot};

use crate::pending::PendingCounts;
use crate::schema::{self, MigrateError};
use crate::{
    AccountEvent, AccountStore, AllowEntry, AllowStore, AwlRow, EventKind, GreylistDeleted,
    GreylistEntries, GreylistFilter, Store, StoreCounts, StoreError, TripletRow,
};

/// Tunables of [`SqliteStore`].
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

/// Greylist, allow-list and account state in one SQLite file. See the module
/// documentation.
///
/// Dropping it lets the thread commit what is queued and stop; [`SqliteStore::close`]
/// also waits for that. A call whose future is dropped after it was queued may still
/// be applied.
pub struct SqliteStore {
    path: PathBuf,
    requests: mpsc::Sender<Request>,
    reader: Arc<Mutex<Connection>>,
    /// Completes (with an error) when the thread ends and drops its sender.
    finished: oneshot::Receiver<()>,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Request {
    /// One atomic unit of work inside the batch transaction.
    Step(Box<dyn Step>),
    Expire(UnixTime, Reply<u64>),
    /// Commit what ran before it (reads on the other connection then see it).
    Sync(Reply<()>),
}

/// What a step works with on the store thread: the connection, inside the open
/// transaction, and the writer's memory of pending counts (which a step that changes
/// triplets in other ways than [`greylist_step`] must clear).
struct Tx<'a> {
    conn: &'a Connection,
    pending: &'a mut PendingCounts,
}

/// A request's work, run in the batch transaction and answered only after the commit.
trait Step: Send {
    fn run(&mut self, tx: &mut Tx<'_>) -> rusqlite::Result<()>;
    /// Committed before it is answered, whatever the durability window.
    fn durable(&self) -> bool;
    /// The batch committed: send the result.
    fn answer(self: Box<Self>);
    /// The batch failed (this step or another one): send the error.
    fn fail(self: Box<Self>, error: StoreError);
}

struct Job<T, F> {
    work: Option<F>,
    durable: bool,
    output: Option<T>,
    reply: Reply<T>,
}

impl<T, F> Step for Job<T, F>
where
    T: Send,
    F: FnOnce(&mut Tx<'_>) -> rusqlite::Result<T> + Send,
{
    fn run(&mut self, tx: &mut Tx<'_>) -> rusqlite::Result<()> {
        if let Some(work) = self.work.take() {
            self.output = Some(work(tx)?);
        }
        Ok(())
    }

    fn durable(&self) -> bool {
        self.durable
    }

    fn answer(self: Box<Self>) {
        // A receiver that went away (its caller gave up) needs no answer.
        let _ = self.reply.send(self.output.ok_or(StoreError::Closed));
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

struct GreylistJob {
    triplet_key: Key,
    network_key: Key,
    awl_key: Key,
    /// Readable texts, stored with new rows; empty when `apply` is false.
    network: String,
    sender: String,
    recipient: String,
    client: Option<IpAddr>,
    params: GreylistParams,
    now: UnixTime,
    apply: bool,
}

struct ExpireJob {
    now: UnixTime,
    /// Events at or before this are deleted.
    events_before: UnixTime,
    deleted: u64,
    reply: Reply<u64>,
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
        let (finished_tx, finished) = oneshot::channel();
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
            path: path.to_path_buf(),
            requests,
            reader: Arc::new(Mutex::new(reader)),
            finished,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting requests and waits until the thread has committed the queued
    /// ones and closed the file.
    pub async fn close(self) {
        let SqliteStore {
            requests,
            reader,
            finished,
            ..
        } = self;
        // The reader goes first, so the last connection to close can remove the WAL.
        drop(reader);
        drop(requests);
        // Err is the normal outcome: the thread drops the sender when it ends.
        let _ = finished.await;
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

impl Store for SqliteStore {
    async fn greylist(
        &self,
        keys: &GreylistKeys,
        params: &GreylistParams,
        now: UnixTime,
        apply: bool,
    ) -> Result<GreylistOutcome, StoreError> {
        let text = |s: &String| if apply { s.clone() } else { String::new() };
        let job = GreylistJob {
            triplet_key: keys.triplet_key,
            network_key: keys.network_key,
            awl_key: keys.awl_key,
            network: text(&keys.network),
            sender: text(&keys.sender),
            recipient: text(&keys.recipient),
            client: apply.then_some(keys.client),
            params: params.clone(),
            now,
            apply,
        };
        self.write(move |tx| greylist_step(tx, &job)).await
    }

    async fn expire(&self, now: UnixTime) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.call(Request::Expire(now, reply), answer).await
    }

    async fn counts(&self, now: UnixTime) -> Result<StoreCounts, StoreError> {
        self.read(move |conn| count_live(conn, now)).await
    }

    async fn list_triplets(&self, limit: usize) -> Result<Vec<TripletRow>, StoreError> {
        self.read(move |conn| list(conn, limit)).await
    }

    async fn find_greylist(
        &self,
        filter: &GreylistFilter,
        limit: usize,
    ) -> Result<GreylistEntries, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| find(conn, &filter, limit)).await
    }

    /// Finds the triplets on the read-only connection, then deletes them by key in small
    /// write steps, so a scan over a large table never holds up the request path.
    async fn delete_greylist(
        &self,
        filter: &GreylistFilter,
    ) -> Result<GreylistDeleted, StoreError> {
        let mut deleted = GreylistDeleted::default();
        if filter.names_triplets() {
            let wanted = filter.clone();
            let keys = self
                .read(move |conn| matching_triplet_keys(conn, &wanted))
                .await?;
            for chunk in keys.chunks(DELETE_CHUNK) {
                let chunk = chunk.to_vec();
                deleted.triplets += self
                    .write_durably(move |tx| {
                        // Deleted pending rows lower their networks' counts.
                        tx.pending.clear();
                        let mut statement = tx
                            .conn
                            .prepare_cached("DELETE FROM triplets WHERE key = ?1")?;
                        let mut removed = 0;
                        for key in &chunk {
                            removed += statement.execute([key])? as u64;
                        }
                        Ok(removed)
                    })
                    .await?;
            }
        }
        if let Some(client) = filter.client {
            let key = awl_key(client);
            deleted.awl = self
                .write_durably(move |tx| {
                    tx.conn
                        .prepare_cached("DELETE FROM awl WHERE key = ?1")?
                        .execute([&key[..]])
                        .map(|rows| rows as u64)
                })
                .await?;
        }
        Ok(deleted)
    }
}

/// Triplets deleted per write step by `delete_greylist`.
const DELETE_CHUNK: usize = 500;

impl AllowStore for SqliteStore {
    async fn allow_add(&self, entry: &AllowEntry) -> Result<bool, StoreError> {
        let entry = entry.clone();
        self.write_durably(move |tx| allow_add_step(tx.conn, &entry))
            .await
    }

    async fn allow_remove(&self, kind: AllowListKind, value: &str) -> Result<bool, StoreError> {
        let value = value.to_string();
        self.write_durably(move |tx| allow_remove_step(tx.conn, kind, &value))
            .await
    }

    async fn allow_list(&self) -> Result<Vec<AllowEntry>, StoreError> {
        self.read(list_allowed).await
    }

    async fn allow_generation(&self) -> Result<u64, StoreError> {
        self.read(|conn| generation(conn, ALLOW_LIST_GENERATION))
            .await
    }
}

impl AccountStore for SqliteStore {
    async fn account(&self, username: &str) -> Result<Option<Account>, StoreError> {
        let username = username.to_string();
        self.write(move |tx| account_step(tx.conn, &username)).await
    }

    async fn put_account(&self, account: &Account) -> Result<(), StoreError> {
        let account = account.clone();
        self.write_durably(move |tx| put_account_step(tx.conn, &account))
            .await
    }

    async fn list_accounts(&self, limit: usize) -> Result<Vec<Account>, StoreError> {
        self.read(move |conn| list_accounts(conn, limit)).await
    }

    async fn charge(
        &self,
        username: &str,
        charges: &[(LimitKind, Rate, u32)],
        now_ms: u64,
        apply: bool,
    ) -> Result<Vec<(LimitKind, GcraOutcome)>, StoreError> {
        let username = username.to_string();
        let charges = charges.to_vec();
        self.write(move |tx| charge_step(tx.conn, &username, &charges, now_ms, apply))
            .await
    }

    async fn record_event(&self, event: &AccountEvent) -> Result<(), StoreError> {
        let data = serde_json::to_string(&event.kind)
            .map_err(|e| StoreError::from(rusqlite::Error::ToSqlConversionFailure(e.into())))?;
        let event = event.clone();
        self.write_durably(move |tx| record_event_step(tx.conn, &event, &data))
            .await
    }

    async fn events(
        &self,
        username: Option<&str>,
        since: UnixTime,
        limit: usize,
    ) -> Result<Vec<AccountEvent>, StoreError> {
        let username = username.map(str::to_string);
        self.read(move |conn| list_events(conn, username.as_deref(), since, limit))
            .await
    }
}

/// The three connections of a store, each used by one thread at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Owned by the store thread; the only one that writes rows.
    Writer,
    /// Copies committed pages from the WAL into the file, beside the writer.
    Checkpointer,
    /// Counts and listings, behind a mutex.
    Reader,
}

fn open_connection(
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
fn run_checkpointer(conn: Connection, stop: &std::sync::mpsc::Receiver<()>, interval: Duration) {
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
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok((row.get(1)?, row.get(2)?))
    })
}

fn migrate(path: &Path, conn: &mut Connection) -> Result<(), StoreError> {
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
fn create_file(path: &Path) -> Result<(), StoreError> {
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
fn diagnose(path: &Path, error: StoreError) -> StoreError {
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

fn run_writer(
    conn: Connection,
    receiver: mpsc::Receiver<Request>,
    options: &SqliteOptions,
    wal_path: PathBuf,
) {
    // A current-thread runtime only to wait for requests with a deadline (the commit
    // of the open transaction); nothing else runs on it.
    let waiter = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "the store thread cannot start its timer");
            return;
        }
    };
    let mut writer = Writer {
        conn,
        wal_path,
        open_since: None,
        uncommitted: 0,
        window: options.durability_window,
        max_uncommitted: options.max_batch.max(1) * 16,
        expiry: ExpirySettings {
            batch: options.expire_batch.max(1),
            event_retention: options.event_retention.as_secs(),
            step_time: EXPIRY_STEP_TIME,
        },
        wal_limit: options.wal_truncate_bytes,
        pending: PendingCounts::default(),
        data_version: None,
    };
    let max_batch = options.max_batch.max(1);
    let mut receiver = receiver;
    let mut batch = Vec::with_capacity(max_batch);
    let mut expiring = VecDeque::new();
    loop {
        let open = writer.open_since.map(|since| since + writer.window);
        let received = if !expiring.is_empty() {
            // An expiry is in progress: take what is queued, without waiting.
            match try_recv_many(&mut receiver, &mut batch, max_batch) {
                Some(n) => n,
                None => {
                    // Nobody can await the expiry any more, and it is idempotent.
                    expiring.clear();
                    batch.len()
                }
            }
        } else if let Some(deadline) = open {
            // Under load requests are usually queued already: take them without arming
            // the timer (a timer registration and a park per batch otherwise).
            match try_recv_many(&mut receiver, &mut batch, max_batch) {
                None => break,
                Some(0) => {
                    let wait = async {
                        tokio::time::timeout_at(
                            tokio::time::Instant::from_std(deadline),
                            receiver.recv_many(&mut batch, max_batch),
                        )
                        .await
                    };
                    match waiter.block_on(wait) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(_) => {
                            // The window is over: make what was answered durable.
                            let _ = writer.commit();
                            continue;
                        }
                    }
                }
                Some(n) => n,
            }
        } else {
            // Blocks until at least one request; 0 means every sender is gone and the
            // queue is empty.
            match receiver.blocking_recv_many(&mut batch, max_batch) {
                0 => break,
                n => n,
            }
        };
        if received > 0 {
            writer.run_batch(&mut batch, &mut expiring);
        }
        writer.expiry_step(&mut expiring);
        if writer
            .open_since
            .is_some_and(|since| since.elapsed() >= writer.window)
            || writer.uncommitted >= writer.max_uncommitted
        {
            let _ = writer.commit();
        }
    }
    let _ = writer.commit();
    if let Err((_, error)) = writer.conn.close() {
        tracing::warn!(%error, "closing the store failed");
    }
}

/// `try_recv` up to `max` more requests; `None` when every sender is gone.
fn try_recv_many(
    receiver: &mut mpsc::Receiver<Request>,
    batch: &mut Vec<Request>,
    max: usize,
) -> Option<usize> {
    while batch.len() < max {
        match receiver.try_recv() {
            Ok(request) => batch.push(request),
            Err(mpsc::error::TryRecvError::Empty) => break,
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
        }
    }
    Some(batch.len())
}

/// How long one expiry step may delete before the requests queued behind it run.
const EXPIRY_STEP_TIME: Duration = Duration::from_millis(2);
/// Rows per DELETE within an expiry step (the step repeats them until its time is up).
const EXPIRY_CHUNK: usize = 100;

struct ExpirySettings {
    /// Rows deleted per step at most.
    batch: usize,
    /// Seconds.
    event_retention: u64,
    step_time: Duration,
}

/// The store thread's connection and its open transaction.
///
/// Each batch of requests runs inside a savepoint of one long transaction: a failing
/// batch is undone alone, without touching what earlier batches wrote. With a
/// durability window (> 0) the thread answers a batch as soon as it ran, and commits
/// when the window since the transaction began is over (or enough has piled up), so
/// many batches share one commit and nobody waits for it. A crash loses at most the
/// last window of answered changes. With a zero window every batch commits before it
/// is answered: nothing answered is ever lost.
struct Writer {
    conn: Connection,
    /// The WAL file, watched for its size.
    wal_path: PathBuf,
    /// When the open transaction began.
    open_since: Option<std::time::Instant>,
    /// Batches run in the open transaction.
    uncommitted: usize,
    window: Duration,
    max_uncommitted: usize,
    expiry: ExpirySettings,
    /// Past this WAL size the writer truncates the WAL itself after a commit.
    wal_limit: u64,
    /// Pending triplets per network, as far as this thread knows them exactly.
    pending: PendingCounts,
    /// `PRAGMA data_version` when the last transaction began: it moves when another
    /// connection (another process) commits, and then `pending` may be wrong.
    data_version: Option<i64>,
}

impl Writer {
    /// Opens the long transaction if none is open. IMMEDIATE: take the write lock now
    /// (waiting up to busy_timeout) rather than fail on upgrade if another process
    /// writes too.
    fn begin(&mut self) -> rusqlite::Result<()> {
        if self.open_since.is_none() {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.open_since = Some(std::time::Instant::now());
            self.uncommitted = 0;
            let version = self
                .conn
                .query_row("PRAGMA data_version", [], |row| row.get(0))?;
            if self.data_version.replace(version) != Some(version) {
                self.pending.clear();
            }
        }
        Ok(())
    }

    /// Commits the open transaction, if any. A failed commit rolls it back: the
    /// changes answered since it began are lost (the durability window).
    fn commit(&mut self) -> Result<(), Arc<rusqlite::Error>> {
        if self.open_since.take().is_none() {
            return Ok(());
        }
        let batches = std::mem::take(&mut self.uncommitted);
        match self.conn.execute_batch("COMMIT") {
            Ok(()) => {
                self.truncate_wal_if_large();
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, batches, "store commit failed; the changes of these batches are lost");
                self.pending.clear();
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                Err(Arc::new(error))
            }
        }
    }

    /// Forgets a transaction SQLite rolled back by itself (disk full, I/O error).
    fn notice_rollback(&mut self) {
        if self.conn.is_autocommit() {
            self.open_since = None;
            self.uncommitted = 0;
            self.pending.clear();
        }
    }

    /// A checkpoint beside a busy writer cannot restart the WAL, so under sustained
    /// writes it only grows; between transactions the writer can truncate it.
    fn truncate_wal_if_large(&self) {
        let large = std::fs::metadata(&self.wal_path).is_ok_and(|m| m.len() > self.wal_limit);
        if large {
            match checkpoint(&self.conn, "TRUNCATE") {
                Ok(_) => tracing::debug!("store WAL truncated"),
                Err(error) => tracing::warn!(%error, "store WAL truncation failed"),
            }
        }
    }

    /// Runs `batch` in a savepoint of the open transaction and answers it: at once
    /// with a durability window, after the commit without one (or when the batch
    /// holds a sync). If a step fails, the batch's changes are undone and each of its
    /// requests gets the error (later requests may have read what earlier ones wrote).
    fn run_batch(&mut self, batch: &mut Vec<Request>, expiring: &mut VecDeque<ExpireJob>) {
        let mut ran: Vec<Box<dyn Step>> = Vec::with_capacity(batch.len());
        let mut syncs = Vec::new();
        let mut requests = batch.drain(..);
        let result = (|| -> rusqlite::Result<()> {
            self.begin()?;
            self.conn.execute_batch("SAVEPOINT batch")?;
            for request in requests.by_ref() {
                match request {
                    Request::Step(mut step) => {
                        let mut tx = Tx {
                            conn: &self.conn,
                            pending: &mut self.pending,
                        };
                        let result = step.run(&mut tx);
                        ran.push(step);
                        if let Err(error) = result {
                            // The counts may include the batch's undone inserts.
                            self.pending.clear();
                            let _ = self.conn.execute_batch("ROLLBACK TO batch; RELEASE batch");
                            return Err(error);
                        }
                    }
                    Request::Expire(now, reply) => expiring.push_back(ExpireJob {
                        now,
                        events_before: now.saturating_sub(self.expiry.event_retention),
                        deleted: 0,
                        reply,
                    }),
                    Request::Sync(reply) => syncs.push(reply),
                }
            }
            self.conn.execute_batch("RELEASE batch")?;
            self.uncommitted += 1;
            Ok(())
        })();
        let result = result.map_err(Arc::new).and_then(|()| {
            if self.window.is_zero() || !syncs.is_empty() || ran.iter().any(|step| step.durable()) {
                self.commit()
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                for step in ran {
                    step.answer();
                }
                for reply in syncs {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(error) => {
                tracing::warn!(%error, "store batch failed");
                let failed = || StoreError::Sqlite(Arc::clone(&error));
                for step in ran {
                    step.fail(failed());
                }
                for reply in syncs {
                    let _ = reply.send(Err(failed()));
                }
                for request in requests {
                    match request {
                        Request::Step(step) => step.fail(failed()),
                        Request::Expire(_, reply) => {
                            let _ = reply.send(Err(failed()));
                        }
                        Request::Sync(reply) => {
                            let _ = reply.send(Err(failed()));
                        }
                    }
                }
                self.notice_rollback();
                // Earlier batches' answered changes are still in the open transaction.
                if self.window.is_zero() {
                    let _ = self.commit();
                }
            }
        }
    }

    /// After the batch was answered: deletes expired rows of the first expiry in
    /// chunks until the step's row or time budget is spent; answers that expiry when
    /// nothing is left.
    fn expiry_step(&mut self, expiring: &mut VecDeque<ExpireJob>) {
        let Some(job) = expiring.front_mut() else {
            return;
        };
        let started = std::time::Instant::now();
        let budget = self.expiry.batch;
        let step_time = self.expiry.step_time;
        let result = (|| -> rusqlite::Result<bool> {
            self.begin()?;
            let mut deleted_now = 0;
            loop {
                let chunk = EXPIRY_CHUNK.min(budget - deleted_now);
                // It deletes only rows expiring at or before `job.now` (its caller's
                // clock): counts that include such rows stop being served.
                self.pending.expired_through(job.now);
                let deleted = expire_step(&self.conn, job.now, job.events_before, chunk)?;
                job.deleted += deleted;
                deleted_now += deleted as usize;
                if deleted < chunk as u64 {
                    return Ok(true);
                }
                if deleted_now >= budget || started.elapsed() >= step_time {
                    return Ok(false);
                }
            }
        })();
        let result = result.map_err(Arc::new).and_then(|done| {
            self.uncommitted += 1;
            if self.window.is_zero() {
                self.commit()?;
            }
            Ok(done)
        });
        match result {
            Ok(false) => {}
            Ok(true) => {
                if let Some(job) = expiring.pop_front() {
                    tracing::debug!(deleted = job.deleted, "store expiry finished");
                    let _ = job.reply.send(Ok(job.deleted));
                }
            }
            // A failing expiry would fail again at once: give it up.
            Err(error) => {
                tracing::warn!(%error, "store expiry failed");
                self.notice_rollback();
                if let Some(job) = expiring.pop_front() {
                    let _ = job.reply.send(Err(StoreError::Sqlite(error)));
                }
            }
        }
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

/// A network's live pending triplets and the earliest of their expiry times (when the
/// count changes by itself).
const PENDING_COUNT: &str = "SELECT count(*), min(expires_at) FROM triplets
    WHERE network = ?1 AND passed_at IS NULL AND expires_at > ?2";

/// One greylist request inside the batch transaction.
fn greylist_step(tx: &mut Tx<'_>, job: &GreylistJob) -> rusqlite::Result<GreylistOutcome> {
    let conn = tx.conn;
    let now = sql_int(job.now);
    // Rows past expires_at count as absent even before expire() deletes them, so a
    // decision never depends on when expiry last ran.
    let awl = conn
        .prepare_cached("SELECT first_seen, last_seen FROM awl WHERE key = ?1 AND expires_at > ?2")?
        .query_row(params![&job.awl_key[..], now], |row| {
            Ok(AwlState {
                first_seen: unsigned(row.get(0)?),
                last_seen: unsigned(row.get(1)?),
            })
        })
        .optional()?;
    let stored = conn
        .prepare_cached(
            "SELECT first_seen, last_seen, attempts, passed_at, expires_at, network
             FROM triplets WHERE key = ?1 AND expires_at > ?2",
        )?
        .query_row(params![&job.triplet_key[..], now], |row| {
            let state = TripletState {
                first_seen: unsigned(row.get(0)?),
                last_seen: unsigned(row.get(1)?),
                attempts: u32::try_from(row.get::<_, i64>(2)?.max(0)).unwrap_or(u32::MAX),
                passed_at: row.get::<_, Option<i64>>(3)?.map(unsigned),
            };
            // The network whose pending cap the row counts toward: the one that
            // created it, not necessarily this client's (domain-keyed triplets).
            let network: [u8; 16] = row.get(5)?;
            Ok((state, unsigned(row.get(4)?), network))
        })
        .optional()?;
    let triplet = stored.map(|(state, _, _)| state);
    let pending_in_network =
        if needs_pending_count(&job.params, awl.as_ref(), triplet.as_ref(), job.now) {
            match tx.pending.get(&job.network_key, job.now) {
                Some(count) => count,
                None => {
                    // The range scan visits only the network's live pending rows, which
                    // this very check keeps at max_pending_per_network (a LIMIT in a
                    // subquery here made SQLite re-prepare the statement on every call).
                    let (count, earliest) = conn
                        .prepare_cached(PENDING_COUNT)?
                        .query_row(params![&job.network_key[..], now], |row| {
                            Ok((row.get::<_, i64>(0)?, row.get::<_, Option<i64>>(1)?))
                        })?;
                    let count = u32::try_from(count).unwrap_or(u32::MAX);
                    tx.pending
                        .counted(job.network_key, job.now, count, earliest.map(unsigned));
                    count
                }
            }
        } else {
            0
        };
    let inputs = GreylistInputs {
        awl,
        triplet,
        pending_in_network,
    };
    let (outcome, writes) = decide(&job.params, &inputs, job.now);
    if !job.apply {
        return Ok(outcome);
    }
    if let Some((state, expires_at)) = writes.triplet {
        match stored {
            Some((old, old_expires_at, row_network)) if old.first_seen == state.first_seen => {
                let moved = update_triplet(conn, job, &old, old_expires_at, &state, expires_at)?;
                if moved && old.passed_at.is_none() {
                    tx.pending.forget(&row_network);
                }
            }
            Some((_, _, row_network)) => {
                // Replaces a live row, which moves to this client's network.
                insert_triplet(conn, job, &state, expires_at)?;
                tx.pending.forget(&row_network);
                tx.pending.forget(&job.network_key);
            }
            None => {
                // Where no live row was: a new pending row counts one more.
                insert_triplet(conn, job, &state, expires_at)?;
                if state.passed_at.is_none() {
                    tx.pending.added(&job.network_key, expires_at);
                } else {
                    tx.pending.forget(&job.network_key);
                }
            }
        }
    }
    if let Some((state, expires_at)) = writes.awl {
        let client = job.client.map(|ip| ip.to_string()).unwrap_or_default();
        conn.prepare_cached(
            "INSERT INTO awl (key, client, first_seen, last_seen, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (key) DO UPDATE SET
                first_seen = excluded.first_seen, last_seen = excluded.last_seen,
                expires_at = excluded.expires_at",
        )?
        .execute(params![
            &job.awl_key[..],
            client,
            sql_int(state.first_seen),
            sql_int(state.last_seen),
            sql_int(expires_at),
        ])?;
    }
    Ok(outcome)
}

/// A new triplet, or one replacing an expired row. The row counts toward the pending
/// cap of the network that created it, so a replaced row takes this client's network.
fn insert_triplet(
    conn: &Connection,
    job: &GreylistJob,
    state: &TripletState,
    expires_at: UnixTime,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO triplets (key, network, first_seen, last_seen, attempts, passed_at,
                               expires_at, net_text, sender, recipient)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (key) DO UPDATE SET
            network = excluded.network, first_seen = excluded.first_seen,
            last_seen = excluded.last_seen, attempts = excluded.attempts,
            passed_at = excluded.passed_at, expires_at = excluded.expires_at",
    )?
    .execute(params![
        &job.triplet_key[..],
        &job.network_key[..],
        sql_int(state.first_seen),
        sql_int(state.last_seen),
        i64::from(state.attempts),
        state.passed_at.map(sql_int),
        sql_int(expires_at),
        job.network,
        job.sender,
        job.recipient,
    ])?;
    Ok(())
}

/// A later attempt of a live triplet. SQLite rewrites an index entry whenever its
/// columns are assigned, even to the same value, so only changed columns are set: a
/// too-early retry then touches one table page instead of also two index pages.
/// Returns whether `passed_at` or `expires_at` changed (the row moved in the indexes).
fn update_triplet(
    conn: &Connection,
    job: &GreylistJob,
    old: &TripletState,
    old_expires_at: UnixTime,
    state: &TripletState,
    expires_at: UnixTime,
) -> rusqlite::Result<bool> {
    let key = &job.triplet_key[..];
    let last_seen = sql_int(state.last_seen);
    let attempts = i64::from(state.attempts);
    let passed_at = state.passed_at.map(sql_int);
    let expires_at = sql_int(expires_at);
    let passed_changed = old.passed_at != state.passed_at;
    let expiry_changed = sql_int(old_expires_at) != expires_at;
    let moved = passed_changed || expiry_changed;
    match (passed_changed, expiry_changed) {
        (false, false) => conn
            .prepare_cached("UPDATE triplets SET last_seen = ?2, attempts = ?3 WHERE key = ?1")?
            .execute(params![key, last_seen, attempts]),
        (false, true) => conn
            .prepare_cached(
                "UPDATE triplets SET last_seen = ?2, attempts = ?3, expires_at = ?4
                 WHERE key = ?1",
            )?
            .execute(params![key, last_seen, attempts, expires_at]),
        (true, false) => conn
            .prepare_cached(
                "UPDATE triplets SET last_seen = ?2, attempts = ?3, passed_at = ?4
                 WHERE key = ?1",
            )?
            .execute(params![key, last_seen, attempts, passed_at]),
        (true, true) => conn
            .prepare_cached(
                "UPDATE triplets SET last_seen = ?2, attempts = ?3, passed_at = ?4,
                                     expires_at = ?5
                 WHERE key = ?1",
            )?
            .execute(params![key, last_seen, attempts, passed_at, expires_at]),
    }?;
    Ok(moved)
}

/// Deletes at most `limit` expired rows: triplets, AWL entries, rate-limit states
/// and events at or before `events_before`, in that order.
pub(crate) fn expire_step(
    conn: &Connection,
    now: UnixTime,
    events_before: UnixTime,
    limit: usize,
) -> rusqlite::Result<u64> {
    // Each deletes through its table's expiry index, at most ?2 rows up to time ?1.
    let deletes = [
        (
            "DELETE FROM triplets WHERE key IN
             (SELECT key FROM triplets WHERE expires_at <= ?1 LIMIT ?2)",
            now,
        ),
        (
            "DELETE FROM awl WHERE key IN
             (SELECT key FROM awl WHERE expires_at <= ?1 LIMIT ?2)",
            now,
        ),
        (
            "DELETE FROM rate_limits WHERE (username, kind) IN
             (SELECT username, kind FROM rate_limits WHERE expires_at <= ?1 LIMIT ?2)",
            now,
        ),
        (
            "DELETE FROM account_events WHERE id IN
             (SELECT id FROM account_events WHERE at <= ?1 LIMIT ?2)",
            events_before,
        ),
    ];
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut deleted = 0i64;
    for (sql, until) in deletes {
        let left = limit - deleted;
        if left <= 0 {
            break;
        }
        let rows = conn
            .prepare_cached(sql)?
            .execute(params![sql_int(until), left])?;
        deleted += rows as i64;
    }
    Ok(deleted as u64)
}

/// The `generations` row of the allow-list.
const ALLOW_LIST_GENERATION: &str = "allow-list";

fn bump_generation(conn: &Connection, name: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE generations SET value = value + 1 WHERE name = ?1")?
        .execute([name])?;
    Ok(())
}

fn generation(conn: &mut Connection, name: &str) -> rusqlite::Result<u64> {
    let value = conn
        .prepare_cached("SELECT value FROM generations WHERE name = ?1")?
        .query_row([name], |row| row.get::<_, i64>(0))
        .optional()?;
    Ok(value.map(unsigned).unwrap_or(0))
}

fn allow_add_step(conn: &Connection, entry: &AllowEntry) -> rusqlite::Result<bool> {
    let kind = entry.kind.id();
    let existed = conn
        .prepare_cached("SELECT 1 FROM allow_list WHERE kind = ?1 AND value = ?2")?
        .exists(params![kind, entry.value])?;
    conn.prepare_cached(
        "INSERT INTO allow_list (kind, value, note, added_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (kind, value) DO UPDATE SET
            note = excluded.note, added_at = excluded.added_at",
    )?
    .execute(params![
        kind,
        entry.value,
        entry.note,
        sql_int(entry.added_at)
    ])?;
    bump_generation(conn, ALLOW_LIST_GENERATION)?;
    Ok(!existed)
}

fn allow_remove_step(
    conn: &Connection,
    kind: AllowListKind,
    value: &str,
) -> rusqlite::Result<bool> {
    let removed = conn
        .prepare_cached("DELETE FROM allow_list WHERE kind = ?1 AND value = ?2")?
        .execute(params![kind.id(), value])?;
    if removed > 0 {
        bump_generation(conn, ALLOW_LIST_GENERATION)?;
    }
    Ok(removed > 0)
}

/// Ordered by the kind's id, then value. Rows of kinds this build does not know
/// (written by a newer one) are skipped, so the rest still applies.
fn list_allowed(conn: &mut Connection) -> rusqlite::Result<Vec<AllowEntry>> {
    let mut statement = conn.prepare_cached(
        "SELECT kind, value, note, added_at FROM allow_list ORDER BY kind, value",
    )?;
    let mut entries = Vec::new();
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let kind_id: String = row.get(0)?;
        let Some(kind) = AllowListKind::parse(&kind_id) else {
            tracing::warn!(kind = %kind_id, "skipping an allow-list entry of an unknown kind");
            continue;
        };
        entries.push(AllowEntry {
            kind,
            value: row.get(1)?,
            note: row.get(2)?,
            added_at: unsigned(row.get(3)?),
        });
    }
    Ok(entries)
}

/// A stored text the engine cannot parse: a corrupt row or a newer writer.
fn bad_text(column: usize, what: &str, text: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        format!("unknown {what} {text:?}").into(),
    )
}

fn optional_u32(value: Option<i64>) -> Option<u32> {
    value.map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX))
}

const ACCOUNT_COLUMNS: &str =
    "username, status, messages_per_hour, recipients_per_day, note, updated_at";

fn account_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    let status: String = row.get(1)?;
    Ok(Account {
        username: row.get(0)?,
        status: AccountStatus::parse(&status).ok_or_else(|| bad_text(1, "status", &status))?,
        limits: LimitOverrides {
            messages_per_hour: optional_u32(row.get(2)?),
            recipients_per_day: optional_u32(row.get(3)?),
        },
        note: row.get(4)?,
        updated_at: unsigned(row.get(5)?),
    })
}

fn account_step(conn: &Connection, username: &str) -> rusqlite::Result<Option<Account>> {
    conn.prepare_cached(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE username = ?1"
    ))?
    .query_row([username], account_from_row)
    .optional()
}

fn put_account_step(conn: &Connection, account: &Account) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (username) DO UPDATE SET
            status = excluded.status, messages_per_hour = excluded.messages_per_hour,
            recipients_per_day = excluded.recipients_per_day, note = excluded.note,
            updated_at = excluded.updated_at"
    ))?
    .execute(params![
        account.username,
        account.status.id(),
        account.limits.messages_per_hour,
        account.limits.recipients_per_day,
        account.note,
        sql_int(account.updated_at),
    ])?;
    Ok(())
}

fn list_accounts(conn: &mut Connection, limit: usize) -> rusqlite::Result<Vec<Account>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY username LIMIT ?1"
    ))?;
    statement.query_map([limit], account_from_row)?.collect()
}

/// All charges against the stored states; all stored, or (if one is refused or
/// `apply` is false) none.
fn charge_step(
    conn: &Connection,
    username: &str,
    charges: &[(LimitKind, Rate, u32)],
    now_ms: u64,
    apply: bool,
) -> rusqlite::Result<Vec<(LimitKind, GcraOutcome)>> {
    let mut outcomes: Vec<(LimitKind, GcraOutcome)> = Vec::with_capacity(charges.len());
    for (kind, rate, cost) in charges {
        // A kind charged twice continues from its earlier charge in this call.
        let earlier = outcomes.iter().rev().find(|(k, _)| k == kind);
        let tat_ms = match earlier {
            Some((_, outcome)) => outcome.tat_ms,
            None => conn
                .prepare_cached("SELECT tat_ms FROM rate_limits WHERE username = ?1 AND kind = ?2")?
                .query_row(params![username, kind.id()], |row| row.get::<_, i64>(0))
                .optional()?
                .map(unsigned)
                .unwrap_or(0),
        };
        outcomes.push((*kind, gcra(rate, tat_ms, *cost, now_ms)));
    }
    if !apply || !outcomes.iter().all(|(_, outcome)| outcome.allowed) {
        return Ok(outcomes);
    }
    // In input order, so a kind charged twice ends with its last state.
    for ((kind, outcome), (_, rate, _)) in outcomes.iter().zip(charges) {
        // Once now passes the TAT the row means nothing (gcra treats it as fresh);
        // keeping it one period longer than that is harmless and simple to reason about.
        let expires_at = outcome
            .tat_ms
            .div_ceil(1000)
            .saturating_add(rate.period.as_secs());
        conn.prepare_cached(
            "INSERT INTO rate_limits (username, kind, tat_ms, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (username, kind) DO UPDATE SET
                tat_ms = excluded.tat_ms, expires_at = excluded.expires_at",
        )?
        .execute(params![
            username,
            kind.id(),
            sql_int(outcome.tat_ms),
            sql_int(expires_at)
        ])?;
    }
    Ok(outcomes)
}

fn record_event_step(conn: &Connection, event: &AccountEvent, data: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO account_events (at, username, kind, data, detail)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        sql_int(event.at),
        event.username,
        event.kind.id(),
        data,
        event.detail
    ])?;
    Ok(())
}

fn list_events(
    conn: &mut Connection,
    username: Option<&str>,
    since: UnixTime,
    limit: usize,
) -> rusqlite::Result<Vec<AccountEvent>> {
    let since = sql_int(since);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let from_row = |row: &rusqlite::Row<'_>| -> rusqlite::Result<AccountEvent> {
        let data: String = row.get(2)?;
        let kind = serde_json::from_str::<EventKind>(&data).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
        })?;
        Ok(AccountEvent {
            at: unsigned(row.get(0)?),
            username: row.get(1)?,
            kind,
            detail: row.get(3)?,
        })
    };
    // Two statements, so each walks its own index backwards from the newest event.
    match username {
        Some(username) => conn
            .prepare_cached(
                "SELECT at, username, data, detail FROM account_events
                 WHERE username = ?1 AND at >= ?2 ORDER BY at DESC, id DESC LIMIT ?3",
            )?
            .query_map(params![username, since, limit], from_row)?
            .collect(),
        None => conn
            .prepare_cached(
                "SELECT at, username, data, detail FROM account_events
                 WHERE at >= ?1 ORDER BY at DESC, id DESC LIMIT ?2",
            )?
            .query_map(params![since, limit], from_row)?
            .collect(),
    }
}

fn count_live(conn: &mut Connection, now: UnixTime) -> rusqlite::Result<StoreCounts> {
    let now = sql_int(now);
    // One read transaction: the three numbers come from the same snapshot.
    let tx = conn.transaction()?;
    let count = |sql: &str| -> rusqlite::Result<u64> {
        tx.prepare_cached(sql)?
            .query_row([now], |row| row.get::<_, i64>(0))
            .map(unsigned)
    };
    let pending = count(
        "SELECT count(*) FROM triplets INDEXED BY triplets_pending
         WHERE passed_at IS NULL AND expires_at > ?1",
    )?;
    let live = count("SELECT count(*) FROM triplets WHERE expires_at > ?1")?;
    let awl = count("SELECT count(*) FROM awl WHERE expires_at > ?1")?;
    Ok(StoreCounts {
        pending,
        passed: live.saturating_sub(pending),
        awl,
    })
}

fn list(conn: &mut Connection, limit: usize) -> rusqlite::Result<Vec<TripletRow>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement = conn.prepare_cached(
        "SELECT net_text, sender, recipient, first_seen, last_seen, attempts, passed_at,
                expires_at
         FROM triplets ORDER BY expires_at DESC LIMIT ?1",
    )?;
    let rows = statement.query_map([limit], triplet_row)?;
    rows.collect()
}

/// A row of `net_text, sender, recipient, first_seen, last_seen, attempts, passed_at,
/// expires_at`.
fn triplet_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TripletRow> {
    Ok(TripletRow {
        network: row.get(0)?,
        sender: row.get(1)?,
        recipient: row.get(2)?,
        first_seen: unsigned(row.get(3)?),
        last_seen: unsigned(row.get(4)?),
        attempts: u32::try_from(row.get::<_, i64>(5)?.max(0)).unwrap_or(u32::MAX),
        passed_at: row.get::<_, Option<i64>>(6)?.map(unsigned),
        expires_at: unsigned(row.get(7)?),
    })
}

/// The triplet part of a filter as SQL: a NULL parameter matches anything.
const TRIPLET_FILTER: &str = "(?1 IS NULL OR net_text = ?1) AND (?2 IS NULL OR sender = ?2)
     AND (?3 IS NULL OR recipient = ?3)";

fn find(
    conn: &mut Connection,
    filter: &GreylistFilter,
    limit: usize,
) -> rusqlite::Result<GreylistEntries> {
    let mut entries = GreylistEntries::default();
    if filter.names_triplets() {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT net_text, sender, recipient, first_seen, last_seen, attempts, passed_at,
                    expires_at
             FROM triplets WHERE {TRIPLET_FILTER} ORDER BY expires_at DESC LIMIT ?4"
        );
        let mut statement = conn.prepare(&sql)?;
        let rows = statement.query_map(
            params![filter.network, filter.sender, filter.recipient, limit],
            triplet_row,
        )?;
        entries.triplets = rows.collect::<rusqlite::Result<_>>()?;
    }
    if let Some(client) = filter.client {
        entries.awl = conn
            .prepare_cached(
                "SELECT client, first_seen, last_seen, expires_at FROM awl WHERE key = ?1",
            )?
            .query_row([&awl_key(client)[..]], |row| {
                Ok(AwlRow {
                    client: row.get(0)?,
                    first_seen: unsigned(row.get(1)?),
                    last_seen: unsigned(row.get(2)?),
                    expires_at: unsigned(row.get(3)?),
                })
            })
            .optional()?;
    }
    Ok(entries)
}

fn matching_triplet_keys(
    conn: &mut Connection,
    filter: &GreylistFilter,
) -> rusqlite::Result<Vec<Vec<u8>>> {
    let sql = format!("SELECT key FROM triplets WHERE {TRIPLET_FILTER}");
    let mut statement = conn.prepare(&sql)?;
    let keys = statement.query_map(
        params![filter.network, filter.sender, filter.recipient],
        |row| row.get(0),
    )?;
    keys.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        conn
    }

    fn insert_triplet(conn: &Connection, n: u8, expires_at: i64) {
        conn.execute(
            "INSERT INTO triplets VALUES (?1, x'00', 0, 0, 1, NULL, ?2, 'n', 's', 'r')",
            params![vec![n; 16], expires_at],
        )
        .unwrap();
    }

    #[test]
    fn an_expiry_step_deletes_at_most_its_limit() {
        let conn = fresh();
        for n in 0..7 {
            insert_triplet(&conn, n, 100);
        }
        insert_triplet(&conn, 200, 101);
        conn.execute("INSERT INTO awl VALUES (x'01', '192.0.2.1', 0, 0, 50)", [])
            .unwrap();
        let steps: Vec<u64> = (0..4)
            .map(|_| expire_step(&conn, 100, 0, 3).unwrap())
            .collect();
        assert_eq!(
            steps,
            [3, 3, 2, 0],
            "1 triplet + 1 AWL entry share the third step"
        );
        let left: i64 = conn
            .query_row("SELECT count(*) FROM triplets", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 1, "the row expiring at 101 stays");
    }

    #[test]
    fn an_expiry_step_covers_rate_limits_and_old_events() {
        let conn = fresh();
        for (user, expires_at) in [("a", 100), ("b", 100), ("c", 101)] {
            conn.execute(
                "INSERT INTO rate_limits VALUES (?1, 'messages-per-hour', 0, ?2)",
                params![user, expires_at],
            )
            .unwrap();
        }
        for at in [10, 20, 21] {
            conn.execute(
                "INSERT INTO account_events (at, username, kind, data, detail)
                 VALUES (?1, 'a', 'rejected', '{}', '')",
                [at],
            )
            .unwrap();
        }
        // Rate-limit rows by expiry time, events by the retention cut-off.
        let steps: Vec<u64> = (0..3)
            .map(|_| expire_step(&conn, 100, 20, 3).unwrap())
            .collect();
        assert_eq!(steps, [3, 1, 0]);
        let left: (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM rate_limits), (SELECT min(at) FROM account_events)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(left, (1, 21));
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
            &PENDING_COUNT.replace("?1", "x'00'").replace("?2", "5"),
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
