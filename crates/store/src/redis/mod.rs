//! The Redis store: greylist state shared by several MX hosts.
//!
//! The engine's [`decide`](spamgate_engine::greylist::decide) runs here, in Rust; Redis
//! makes each transition atomic. A compare-and-set script writes the decision's result
//! only if the client's AWL entry and the triplet still hold what the decision was made
//! on (and the network still has room, when that mattered); else it answers with the
//! current values, as the read script would, and the decision is made again. A check
//! starts from a guess (what this process last saw, or "nothing stored", see
//! `recent`), so a first attempt or an unchanged retry takes one round trip and
//! anything else two. Decisions that write nothing are made on values read atomically
//! (the read script). Within one process, checks that would write the same entries
//! wait for each other (striped locks), so conflicts only come from other hosts.
//!
//! Expiry: every value carries its `expires_at`, and a value past it reads as absent,
//! as in SQLite, so no decision depends on when an entry was deleted. Redis deletes
//! keys by their TTL (set relative to the caller's clock), so
//! [`crate::GreylistAdmin::expire`] has only the event log left to trim.
//!
//! Files: `greylist` (the check), `admin` (counts, listings, finding and deleting by
//! SCAN), `allow`, `accounts`, `dump` (export and import of a [`crate::StoreDump`]),
//! `codec` (key names and value encodings), `recent` (this process's memory of recent
//! entries) and `link` (the connection, following Sentinel failovers).
//!
//! Key layout and Redis Cluster: `docs/cluster.md`.

mod accounts;
mod admin;
mod allow;
mod codec;
mod dump;
mod greylist;
mod learn;
mod link;
mod recent;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{RedisError, Script};
use spamgate_engine::UnixTime;
use spamgate_engine::greylist::{AwlState, TripletState};

use crate::StoreError;
use codec::Names;
use link::Link;

/// Where the Redis store is and how long an operation may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port/db` (`unix:///path?db=N` for a socket). With
    /// Sentinel only its database number and credentials are used.
    pub url: String,
    /// Find the master through Redis Sentinel and follow its failovers.
    pub sentinel: Option<SentinelOptions>,
    /// Put before every key name; the hosts of one spamgate cluster share it.
    pub key_prefix: String,
    /// Bound on one store operation (connecting included); slower ones fail.
    pub timeout: Duration,
    /// Account events older than this go at the next [`crate::GreylistAdmin::expire`].
    pub event_retention: Duration,
    /// Triplets and AWL entries (each) this process remembers to save round trips
    /// (about 80 bytes each); 0 turns that off.
    pub recent_entries: usize,
}

/// The sentinels watching the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelOptions {
    /// The name in the sentinels' `sentinel monitor NAME ...`.
    pub master_name: String,
    /// Sentinel URLs, `redis://host:26379`.
    pub addresses: Vec<String>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            url: "redis://127.0.0.1:6379/0".into(),
            sentinel: None,
            key_prefix: "spamgate:".into(),
            timeout: Duration::from_secs(1),
            event_retention: Duration::from_secs(90 * 86_400),
            recent_entries: 200_000,
        }
    }
}

/// Compare-and-set attempts one check may make before it fails: each lost race means
/// another host wrote the same entries in between.
const CAS_ATTEMPTS: usize = 16;
/// Striped locks serialising writers of the same entries within this process.
const LOCK_STRIPES: usize = 1024;
/// Keys asked per SCAN step by counts and listings.
const SCAN_BATCH: usize = 1000;
/// Entries written per pipeline by an import.
const RECORD_BATCH: usize = 500;

/// Greylist state in one Redis (or a Sentinel-managed master), shared by several
/// hosts. See the module documentation.
///
/// A handle: clones share the connection, the striped locks and the memory of recent
/// entries, as one process should.
#[derive(Clone)]
pub struct RedisStore {
    link: Link,
    names: Names,
    timeout: Duration,
    event_retention: Duration,
    read: Script,
    cas: Script,
    locks: Arc<[tokio::sync::Mutex<()>]>,
    recent_triplets: Arc<recent::Recent<(TripletState, UnixTime)>>,
    recent_awl: Arc<recent::Recent<(AwlState, UnixTime)>>,
}

impl RedisStore {
    /// Connects and checks that Redis answers, within `options.timeout`.
    pub async fn connect(options: &RedisOptions) -> Result<RedisStore, StoreError> {
        let link = Link::connect(options).await.map_err(redis_error)?;
        Ok(RedisStore {
            link,
            names: Names::new(&options.key_prefix),
            timeout: options.timeout,
            event_retention: options.event_retention,
            read: Script::new(greylist::READ_LUA),
            cas: Script::new(greylist::CAS_LUA),
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            recent_triplets: Arc::new(recent::Recent::new(options.recent_entries)),
            recent_awl: Arc::new(recent::Recent::new(options.recent_entries)),
        })
    }

    pub fn key_prefix(&self) -> &str {
        self.names.prefix()
    }

    /// Runs one operation within the timeout; failures reach the link (failover).
    async fn bounded<T>(
        &self,
        operation: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, operation).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                self.link.failed(&error);
                Err(redis_error(error))
            }
            Err(_) => {
                let error = RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {:?}", self.timeout),
                ));
                self.link.failed(&error);
                Err(redis_error(error))
            }
        }
    }

    /// Sends a pipeline unless it is empty (Redis refuses an empty one).
    async fn run_pipe(
        &self,
        conn: &mut ConnectionManager,
        pipe: &redis::Pipeline,
    ) -> Result<(), StoreError> {
        if pipe.is_empty() {
            return Ok(());
        }
        self.bounded(pipe.exec_async(conn)).await
    }

    /// Bounds a whole operation of several steps (each step is bounded too).
    async fn within<T>(
        &self,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, operation)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Redis(format!(
                    "no answer within {:?}",
                    self.timeout
                )))
            })
    }

    /// Every live key of one kind, with its value, in SCAN batches. Each command is
    /// bounded by the timeout; the whole walk is not (it grows with the data).
    async fn scan_values(
        &self,
        kind: &str,
        mut each: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), StoreError> {
        let pattern = self.names.pattern(kind);
        let mut conn = self.link.conn();
        let mut cursor: u64 = 0;
        loop {
            let (next, names): (u64, Vec<Vec<u8>>) = self
                .bounded(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(SCAN_BATCH)
                        .query_async(&mut conn),
                )
                .await?;
            if !names.is_empty() {
                let values: Vec<Option<Vec<u8>>> = self
                    .bounded(redis::cmd("MGET").arg(&names).query_async(&mut conn))
                    .await?;
                for (name, value) in names.iter().zip(values) {
                    // Gone since the SCAN: its TTL ran out.
                    if let Some(value) = value {
                        each(name, &value);
                    }
                }
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

fn redis_error(error: RedisError) -> StoreError {
    StoreError::Redis(error.to_string())
}
