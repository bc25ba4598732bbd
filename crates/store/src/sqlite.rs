//! The SQLite store.
//!
//! One OS thread owns the writing connection. Requests arrive on a bounded channel;
//! the thread takes everything queued (up to `max_batch`), runs it in one transaction,
//! commits, and only then replies. Each request is atomic because one thread runs them
//! in order; under load, many requests share one commit (group commit).
//!
//! Durability: WAL with `synchronous=NORMAL`. A process crash (even `kill -9`) loses
//! nothing that was committed, hence nothing a caller got an answer for. A power loss
//! or kernel crash can lose the transactions committed since the last WAL checkpoint
//! (fsync): for greylisting that means a few senders are deferred once more.
//!
//! Two more connections keep slow work off the writer thread: a checkpoint thread
//! copies committed pages from the WAL into the file (and pays for the fsync), and a
//! read-only connection on the blocking pool serves counts and listings, which scan.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use spamgate_engine::UnixTime;
use spamgate_engine::greylist::{
    AwlState, GreylistInputs, GreylistKeys, GreylistOutcome, GreylistParams, Key, TripletState,
    decide, needs_pending_count,
};
use tokio::sync::{mpsc, oneshot};

use crate::schema::{self, MigrateError};
use crate::{Store, StoreCounts, StoreError, TripletRow};

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
        }
    }
}

/// Greylist state in one SQLite file. See the module documentation.
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
    Greylist(Box<GreylistJob>, Reply<GreylistOutcome>),
    Expire(UnixTime, Reply<u64>),
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
        // Create the file ourselves: SQLite's "unable to open database file" names
        // neither the path nor the OS reason. Owner-only, as it holds mail addresses.
        let mut create = OpenOptions::new();
        create.read(true).write(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
        create.open(path).map_err(open_error)?;

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
        let (finished_tx, finished) = oneshot::channel();
        std::thread::Builder::new()
            .name("spamgate-store".into())
            .spawn(move || {
                run_writer(writer, receiver, &options);
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

    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
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
        let (reply, answer) = oneshot::channel();
        self.call(Request::Greylist(Box::new(job), reply), answer)
            .await
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
        conn.set_prepared_statement_cache_capacity(16);
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
    mut conn: Connection,
    mut receiver: mpsc::Receiver<Request>,
    options: &SqliteOptions,
) {
    let max_batch = options.max_batch.max(1);
    let expire_batch = options.expire_batch.max(1);
    let mut batch = Vec::with_capacity(max_batch);
    let mut expiring = VecDeque::new();
    loop {
        if expiring.is_empty() {
            // Blocks until at least one request; 0 means every sender is gone and the
            // queue is empty.
            if receiver.blocking_recv_many(&mut batch, max_batch) == 0 {
                break;
            }
        } else {
            // An expiry is in progress: take what is queued, without waiting.
            while batch.len() < max_batch {
                match receiver.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        // Nobody can await the expiry any more, and it is idempotent.
                        expiring.clear();
                        break;
                    }
                }
            }
        }
        run_batch(&mut conn, &mut batch, &mut expiring, expire_batch);
    }
    if let Err((_, error)) = conn.close() {
        tracing::warn!(%error, "closing the store failed");
    }
}

/// Runs `batch` and one expiry step in one transaction, then replies. If anything
/// fails, the whole transaction rolls back and every request of the batch gets the
/// error: later requests may have read what earlier ones wrote.
fn run_batch(
    conn: &mut Connection,
    batch: &mut Vec<Request>,
    expiring: &mut VecDeque<ExpireJob>,
    expire_batch: usize,
) {
    let mut answered = Vec::with_capacity(batch.len());
    let mut failing = None;
    let mut requests = batch.drain(..);
    let result = (|| -> rusqlite::Result<bool> {
        // IMMEDIATE: take the write lock now (waiting up to busy_timeout) rather than
        // fail on upgrade if another process writes too.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for request in requests.by_ref() {
            match request {
                Request::Greylist(job, reply) => match greylist_step(&tx, &job) {
                    Ok(outcome) => answered.push((reply, outcome)),
                    Err(error) => {
                        failing = Some(reply);
                        return Err(error);
                    }
                },
                Request::Expire(now, reply) => expiring.push_back(ExpireJob {
                    now,
                    deleted: 0,
                    reply,
                }),
            }
        }
        let mut expiry_done = false;
        if let Some(job) = expiring.front_mut() {
            let deleted = expire_step(&tx, job.now, expire_batch)?;
            job.deleted += deleted;
            expiry_done = deleted < expire_batch as u64;
        }
        tx.commit()?;
        Ok(expiry_done)
    })();

    match result {
        Ok(expiry_done) => {
            for (reply, outcome) in answered {
                let _ = reply.send(Ok(outcome));
            }
            if expiry_done && let Some(job) = expiring.pop_front() {
                tracing::debug!(deleted = job.deleted, "store expiry finished");
                let _ = job.reply.send(Ok(job.deleted));
            }
        }
        Err(error) => {
            tracing::warn!(%error, "store batch failed");
            let error = Arc::new(error);
            let failed = || StoreError::Sqlite(Arc::clone(&error));
            let greylist_replies = answered.into_iter().map(|(reply, _)| reply).chain(failing);
            for reply in greylist_replies {
                let _ = reply.send(Err(failed()));
            }
            for request in requests {
                match request {
                    Request::Greylist(_, reply) => {
                        let _ = reply.send(Err(failed()));
                    }
                    Request::Expire(_, reply) => {
                        let _ = reply.send(Err(failed()));
                    }
                }
            }
            // A failing expiry would fail every batch after it: give it up.
            if let Some(job) = expiring.pop_front() {
                let _ = job.reply.send(Err(failed()));
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

/// One greylist request inside the batch transaction.
fn greylist_step(conn: &Connection, job: &GreylistJob) -> rusqlite::Result<GreylistOutcome> {
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
            "SELECT first_seen, last_seen, attempts, passed_at, expires_at FROM triplets
             WHERE key = ?1 AND expires_at > ?2",
        )?
        .query_row(params![&job.triplet_key[..], now], |row| {
            let state = TripletState {
                first_seen: unsigned(row.get(0)?),
                last_seen: unsigned(row.get(1)?),
                attempts: u32::try_from(row.get::<_, i64>(2)?.max(0)).unwrap_or(u32::MAX),
                passed_at: row.get::<_, Option<i64>>(3)?.map(unsigned),
            };
            Ok((state, unsigned(row.get(4)?)))
        })
        .optional()?;
    let triplet = stored.map(|(state, _)| state);
    let pending_in_network =
        if needs_pending_count(&job.params, awl.as_ref(), triplet.as_ref(), job.now) {
            // The range scan visits only the network's live pending rows, which this
            // very check keeps at max_pending_per_network (a LIMIT in a subquery here
            // made SQLite re-prepare the statement on every call).
            conn.prepare_cached(
                "SELECT count(*) FROM triplets
                 WHERE network = ?1 AND passed_at IS NULL AND expires_at > ?2",
            )?
            .query_row(params![&job.network_key[..], now], |row| {
                row.get::<_, i64>(0)
            })
            .map(|count| u32::try_from(count).unwrap_or(u32::MAX))?
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
            Some((old, old_expires_at)) if old.first_seen == state.first_seen => {
                update_triplet(conn, job, &old, old_expires_at, &state, expires_at)?;
            }
            _ => insert_triplet(conn, job, &state, expires_at)?,
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

/// A new triplet, or one replacing an expired row.
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
            first_seen = excluded.first_seen,
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
fn update_triplet(
    conn: &Connection,
    job: &GreylistJob,
    old: &TripletState,
    old_expires_at: UnixTime,
    state: &TripletState,
    expires_at: UnixTime,
) -> rusqlite::Result<()> {
    let key = &job.triplet_key[..];
    let last_seen = sql_int(state.last_seen);
    let attempts = i64::from(state.attempts);
    let passed_at = state.passed_at.map(sql_int);
    let expires_at = sql_int(expires_at);
    let passed_changed = old.passed_at != state.passed_at;
    let expiry_changed = sql_int(old_expires_at) != expires_at;
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
    Ok(())
}

/// Deletes at most `limit` expired rows (triplets first, then AWL entries).
pub(crate) fn expire_step(conn: &Connection, now: UnixTime, limit: usize) -> rusqlite::Result<u64> {
    let now = sql_int(now);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let triplets = conn
        .prepare_cached(
            "DELETE FROM triplets WHERE key IN
             (SELECT key FROM triplets WHERE expires_at <= ?1 LIMIT ?2)",
        )?
        .execute(params![now, limit])?;
    let left = limit - triplets as i64;
    let awl = if left > 0 {
        conn.prepare_cached(
            "DELETE FROM awl WHERE key IN (SELECT key FROM awl WHERE expires_at <= ?1 LIMIT ?2)",
        )?
        .execute(params![now, left])?
    } else {
        0
    };
    Ok((triplets + awl) as u64)
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
    let rows = statement.query_map([limit], |row| {
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
    })?;
    rows.collect()
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
            .map(|_| expire_step(&conn, 100, 3).unwrap())
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
    }
}
