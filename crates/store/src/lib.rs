//! Persistent greylist state for spamgate.
//!
//! Layout:
//! - [`Store`]: what the daemon needs from any backend (SQLite now, Redis later).
//! - [`SqliteStore`]: one dedicated thread owns the connection and applies queued
//!   requests in group-committed transactions.
//! - `schema`: the ordered migrations behind `PRAGMA user_version`.
//!
//! **Invariant:** the greylist policy lives in [`spamgate_engine::greylist::decide`];
//! a store only reads the inputs, calls it and writes what it returns, atomically.
#![forbid(unsafe_code)]

mod schema;
mod sqlite;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use spamgate_engine::UnixTime;
use spamgate_engine::greylist::{GreylistKeys, GreylistOutcome, GreylistParams};

pub use schema::SCHEMA_VERSION;
pub use sqlite::{SqliteOptions, SqliteStore};

/// Greylist state storage. The daemon is generic over this trait.
pub trait Store: Send + Sync + 'static {
    /// Atomically reads the client's auto-whitelist entry and the triplet (and the
    /// network's pending count when [`spamgate_engine::greylist::needs_pending_count`]
    /// asks for it), applies [`spamgate_engine::greylist::decide`] and, when `apply`,
    /// writes its result. `apply = false` is the read-only mode of `spamgate check`.
    fn greylist(
        &self,
        keys: &GreylistKeys,
        params: &GreylistParams,
        now: UnixTime,
        apply: bool,
    ) -> impl Future<Output = Result<GreylistOutcome, StoreError>> + Send;

    /// Deletes rows with `expires_at <= now` in small batches; returns how many.
    fn expire(&self, now: UnixTime) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Live (unexpired) entries, for metrics and `spamgate stats`.
    fn counts(&self, now: UnixTime)
    -> impl Future<Output = Result<StoreCounts, StoreError>> + Send;

    /// At most `limit` triplets, the latest-expiring first, for `spamgate greylist list`.
    fn list_triplets(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<TripletRow>, StoreError>> + Send;
}

/// Numbers of live entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Triplets waiting for their retry.
    pub pending: u64,
    /// Triplets that passed and are still remembered.
    pub passed: u64,
    /// Auto-whitelisted client addresses.
    pub awl: u64,
}

/// One stored triplet in readable form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TripletRow {
    pub network: String,
    pub sender: String,
    pub recipient: String,
    pub first_seen: UnixTime,
    pub last_seen: UnixTime,
    pub attempts: u32,
    pub passed_at: Option<UnixTime>,
    pub expires_at: UnixTime,
}

/// Store failures. The daemon maps every one of them to its configured fail mode.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file (or its directory) cannot be opened or created.
    #[error("cannot open store {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file opened but could not be configured or migrated.
    #[error("cannot set up store {path}: {source}")]
    Setup {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// SQLite refused write-ahead logging (e.g. a read-only medium).
    #[error("store {path}: journal mode is {mode:?}, not WAL")]
    JournalMode { path: PathBuf, mode: String },
    /// The file was written by a newer spamgate (or is not a spamgate store).
    #[error(
        "store {path} has schema version {found}; this spamgate knows versions 0 to {supported}"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// A query or commit failed; every request of the failed batch gets this.
    #[error("store database error: {0}")]
    Sqlite(#[source] Arc<rusqlite::Error>),
    /// The store thread has stopped (closed, or it failed).
    #[error("store thread has stopped")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Sqlite(Arc::new(error))
    }
}

/// Lets the daemon share one store between tasks.
impl<S: Store> Store for Arc<S> {
    fn greylist(
        &self,
        keys: &GreylistKeys,
        params: &GreylistParams,
        now: UnixTime,
        apply: bool,
    ) -> impl Future<Output = Result<GreylistOutcome, StoreError>> + Send {
        (**self).greylist(keys, params, now, apply)
    }

    fn expire(&self, now: UnixTime) -> impl Future<Output = Result<u64, StoreError>> + Send {
        (**self).expire(now)
    }

    fn counts(
        &self,
        now: UnixTime,
    ) -> impl Future<Output = Result<StoreCounts, StoreError>> + Send {
        (**self).counts(now)
    }

    fn list_triplets(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<TripletRow>, StoreError>> + Send {
        (**self).list_triplets(limit)
    }
}
