//! The store thread: it owns the writing connection and runs queued requests in
//! savepoints of one long transaction, committed when the durability window is over.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use spamgate_engine::UnixTime;
use tokio::sync::{mpsc, oneshot};

use super::SqliteOptions;
use super::expire::{EXPIRY_STEP_TIME, ExpireJob, ExpirySettings};
use super::open::checkpoint;
use super::pending::PendingCounts;
use crate::StoreError;

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Request {
    /// One atomic unit of work inside the batch transaction.
    Step(Box<dyn Step>),
    Expire(UnixTime, Reply<u64>),
    /// Commit what ran before it (reads on the other connection then see it).
    Sync(Reply<()>),
}

/// What a step works with on the store thread: the connection, inside the open
/// transaction, and the writer's memory of pending counts (which a step that changes
/// triplets in other ways than [`greylist_step`] must clear).
pub(super) struct Tx<'a> {
    pub(super) conn: &'a Connection,
    pub(super) pending: &'a mut PendingCounts,
}

/// A request's work, run in the batch transaction and answered only after the commit.
pub(super) trait Step: Send {
    fn run(&mut self, tx: &mut Tx<'_>) -> rusqlite::Result<()>;
    /// Committed before it is answered, whatever the durability window.
    fn durable(&self) -> bool;
    /// The batch committed: send the result.
    fn answer(self: Box<Self>);
    /// The batch failed (this step or another one): send the error.
    fn fail(self: Box<Self>, error: StoreError);
}

pub(super) struct Job<T, F> {
    pub(super) work: Option<F>,
    pub(super) durable: bool,
    pub(super) output: Option<T>,
    pub(super) reply: Reply<T>,
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

pub(super) fn run_writer(
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
pub(super) fn try_recv_many(
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

/// The store thread's connection and its open transaction.
///
/// Each batch of requests runs inside a savepoint of one long transaction: a failing
/// batch is undone alone, without touching what earlier batches wrote. With a
/// durability window (> 0) the thread answers a batch as soon as it ran, and commits
/// when the window since the transaction began is over (or enough has piled up), so
/// many batches share one commit and nobody waits for it. A crash loses at most the
/// last window of answered changes. With a zero window every batch commits before it
/// is answered: nothing answered is ever lost.
pub(super) struct Writer {
    pub(super) conn: Connection,
    /// The WAL file, watched for its size.
    pub(super) wal_path: PathBuf,
    /// When the open transaction began.
    pub(super) open_since: Option<std::time::Instant>,
    /// Batches run in the open transaction.
    pub(super) uncommitted: usize,
    pub(super) window: Duration,
    pub(super) max_uncommitted: usize,
    pub(super) expiry: ExpirySettings,
    /// Past this WAL size the writer truncates the WAL itself after a commit.
    pub(super) wal_limit: u64,
    /// Pending triplets per network, as far as this thread knows them exactly.
    pub(super) pending: PendingCounts,
    /// `PRAGMA data_version` when the last transaction began: it moves when another
    /// connection (another process) commits, and then `pending` may be wrong.
    pub(super) data_version: Option<i64>,
}

impl Writer {
    /// Opens the long transaction if none is open. IMMEDIATE: take the write lock now
    /// (waiting up to busy_timeout) rather than fail on upgrade if another process
    /// writes too.
    pub(super) fn begin(&mut self) -> rusqlite::Result<()> {
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
    pub(super) fn commit(&mut self) -> Result<(), Arc<rusqlite::Error>> {
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
    pub(super) fn notice_rollback(&mut self) {
        if self.conn.is_autocommit() {
            self.open_since = None;
            self.uncommitted = 0;
            self.pending.clear();
        }
    }

    /// A checkpoint beside a busy writer cannot restart the WAL, so under sustained
    /// writes it only grows; between transactions the writer can truncate it.
    pub(super) fn truncate_wal_if_large(&self) {
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
    pub(super) fn run_batch(
        &mut self,
        batch: &mut Vec<Request>,
        expiring: &mut VecDeque<ExpireJob>,
    ) {
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
}
