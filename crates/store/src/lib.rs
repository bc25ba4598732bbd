//! Persistent state for spamgate: greylist triplets, the runtime allow-list, and
//! submission accounts with their rate limits and events.
//!
//! Traits, each a request-path side and an administration side, so a front-end asks
//! for no more than it uses (the abuse desk's own state will be one more pair):
//! - [`GreylistStore`] (the check) and [`GreylistAdmin`] (expiry, counts, listing,
//!   finding and deleting entries).
//! - [`AllowStore`] (the runtime allow-list and the generation number daemons poll to
//!   notice changes made by other processes or hosts) and [`AllowAdmin`] (add, remove).
//! - [`AccountStore`] (look up, atomic all-or-nothing GCRA charges, record an event) and
//!   [`AccountAdmin`] (put, list, read the abuse desk's event log).
//! - [`LearnStore`] (an organisation's learned record, one atomic observation) and
//!   [`LearnAdmin`] (list, remove, clear).
//! - [`RequestStore`]: all a daemon's request path needs; [`FullStore`]: everything.
//!   Both are implemented for every type with the parts.
//!
//! Backends, one folder each, every store a cheaply cloned handle:
//! - `sqlite/`: [`SqliteStore`], one file. One thread owns the writing connection and
//!   runs queued requests in group-committed transactions; listings and polls use a
//!   read-only connection. One file per concern (see its module documentation).
//! - `redis/`: [`RedisStore`], shared by several MX hosts; the engine decides here and
//!   compare-and-set scripts make each transition atomic.
//! - `any`: [`AnyStore`], the backend chosen at run time, forwarding every trait.
//! - `users/`: the admin API's users, tokens, sessions and audit trail ([`users::UserStore`],
//!   [`users::SqliteUserStore`] in its own file).
//! - `dump`: [`StoreDump`], everything a store holds, backend-neutral, for
//!   `spamgate store migrate`; each backend exports and imports it in its own `dump`.
//!
//! **Invariant:** policies live in the engine ([`spamgate_engine::greylist::decide`],
//! [`spamgate_engine::outbound::gcra`]); a store only reads the inputs, calls them and
//! writes what they return, atomically.
#![forbid(unsafe_code)]

mod any;
mod dump;
mod redis;
mod sqlite;
pub mod users;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use spamgate_engine::UnixTime;
use spamgate_engine::greylist::{GreylistKeys, GreylistOutcome, GreylistParams};
use spamgate_engine::learn::{LearnEvent, LearnParams, LearnRecord, Observation};
use spamgate_engine::outbound::{Account, AccountStatus, GcraOutcome, LimitKind, Rate};
use spamgate_engine::verdict::{AllowListKind, AllowScope};

pub use any::{AnyStore, Recovering};
pub use dump::{AwlRecord, RateRecord, StoreDump, TripletRecord};
pub use redis::{RedisOptions, RedisStore, SentinelOptions};
#[doc(hidden)]
pub use sqlite::create_with_schema_version;
pub use sqlite::schema::SCHEMA_VERSION;
pub use sqlite::{SqliteOptions, SqliteStore, export_sqlite, import_sqlite};

/// The greylist check: what the inbound request path needs.
pub trait GreylistStore: Send + Sync + 'static {
    /// Atomically reads the client's auto-whitelist entry and the triplet (and the
    /// network's pending count when [`spamgate_engine::greylist::needs_pending_count`]
    /// asks for it), applies [`spamgate_engine::greylist::decide`] and, when `record`,
    /// writes its result. `record = false` is the read-only mode of `spamgate check`.
    fn greylist(
        &self,
        keys: &GreylistKeys,
        params: &GreylistParams,
        now: UnixTime,
        record: bool,
    ) -> impl Future<Output = Result<GreylistOutcome, StoreError>> + Send;
}

/// Maintenance and administration of the stored state: expiry (the daemon's cleanup
/// loop), counts (metrics, `spamgate stats`) and the `spamgate greylist` commands.
pub trait GreylistAdmin: Send + Sync + 'static {
    /// Deletes rows with `expires_at <= now` (greylist and rate-limit state, in
    /// backends that keep it here too) and events past their retention, in small
    /// batches; returns how many.
    fn expire(&self, now: UnixTime) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Live (unexpired) entries, for metrics and `spamgate stats`.
    fn counts(&self, now: UnixTime)
    -> impl Future<Output = Result<StoreCounts, StoreError>> + Send;

    /// At most `limit` triplets, the latest-expiring first, for `spamgate greylist list`.
    fn list_triplets(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<TripletRow>, StoreError>> + Send;

    /// The entries `filter` names (`spamgate greylist show`), unexpired or not yet
    /// deleted, at most `limit` triplets, the latest-expiring first. A scan over every
    /// triplet (an admin command, not the request path).
    fn find_greylist(
        &self,
        filter: &GreylistFilter,
        limit: usize,
    ) -> impl Future<Output = Result<GreylistEntries, StoreError>> + Send;

    /// Deletes the entries `filter` names (`spamgate greylist delete`), so the next
    /// attempt starts over as new. Returns how many of each kind went.
    fn delete_greylist(
        &self,
        filter: &GreylistFilter,
    ) -> impl Future<Output = Result<GreylistDeleted, StoreError>> + Send;
}

/// Learned exemptions on the request path: read an organisation's record, record one
/// observation atomically (the engine's [`spamgate_engine::learn::observe`]).
pub trait LearnStore: Send + Sync + 'static {
    /// The stored record of `org`, unless it is past its expiry at `now`.
    fn learned(
        &self,
        org: &str,
        now: UnixTime,
    ) -> impl Future<Output = Result<Option<LearnRecord>, StoreError>> + Send;

    /// Atomically reads the record of `observation.org` and the counts of learned and
    /// tracked organisations at `now`, applies [`spamgate_engine::learn::observe`] and
    /// writes its result.
    fn learn_observe(
        &self,
        observation: &Observation,
        params: &LearnParams,
        now: UnixTime,
    ) -> impl Future<Output = Result<LearnEvent, StoreError>> + Send;
}

/// The operator's view of learned exemptions (`spamgate learned list|remove|clear`).
pub trait LearnAdmin: Send + Sync + 'static {
    /// Records unexpired at `now`, learned ones first (latest-expiring first), then the
    /// rest by organisation; at most `limit`.
    fn learned_list(
        &self,
        now: UnixTime,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LearnRecord>, StoreError>> + Send;

    /// Forgets `org` (its exemption and what it earned). True if it was there.
    fn learned_remove(&self, org: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Forgets every organisation; returns how many.
    fn learned_clear(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Everything a daemon's request path needs from a store: the greylist check, the
/// runtime allow-list it polls, the submission accounts it charges and the learned
/// exemptions.
pub trait RequestStore: GreylistStore + AllowStore + AccountStore + LearnStore {}
impl<T: GreylistStore + AllowStore + AccountStore + LearnStore> RequestStore for T {}

/// Everything a backend offers: the request path and the administration beside it
/// (cleanup loop, CLI, migration). The abuse desk's own state will be one more
/// request/admin pair of traits beside these, leaving the request path alone.
pub trait FullStore: RequestStore + GreylistAdmin + AllowAdmin + AccountAdmin + LearnAdmin {}
impl<T: RequestStore + GreylistAdmin + AllowAdmin + AccountAdmin + LearnAdmin> FullStore for T {}

/// Which greylist entries an admin command means. Triplets are named by any of
/// `network`, `sender`, `recipient` (every one given must equal the stored, normalised
/// text); the auto-whitelist entry by `client`. A filter with no triplet field names no
/// triplet, and one without `client` no AWL entry: nothing is ever matched by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GreylistFilter {
    /// `192.0.2.0/24`, `2001:db8::/64` or `domain:example.net`, as `greylist list` shows.
    pub network: Option<String>,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub client: Option<std::net::IpAddr>,
}

impl GreylistFilter {
    pub fn names_triplets(&self) -> bool {
        self.network.is_some() || self.sender.is_some() || self.recipient.is_some()
    }

    /// Whether a stored triplet's texts match.
    pub fn matches(&self, network: &str, sender: &str, recipient: &str) -> bool {
        self.names_triplets()
            && self.network.as_deref().is_none_or(|n| n == network)
            && self.sender.as_deref().is_none_or(|s| s == sender)
            && self.recipient.as_deref().is_none_or(|r| r == recipient)
    }
}

/// What `find_greylist` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GreylistEntries {
    pub triplets: Vec<TripletRow>,
    pub awl: Option<AwlRow>,
}

/// How many entries `delete_greylist` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GreylistDeleted {
    pub triplets: u64,
    pub awl: u64,
}

/// One auto-whitelist entry in readable form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwlRow {
    pub client: String,
    pub first_seen: UnixTime,
    pub last_seen: UnixTime,
    pub expires_at: UnixTime,
}

/// A runtime allow-list entry (`spamgate allow add|remove|list`), effective on every
/// MX host sharing the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    pub kind: AllowListKind,
    pub value: String,
    pub note: String,
    pub added_at: UnixTime,
    /// What a match skips (greylisting only, or every check).
    pub scope: AllowScope,
    /// When the entry stops applying; `None`: until removed.
    pub expires_at: Option<UnixTime>,
}

/// The runtime allow-list as a daemon reads it.
pub trait AllowStore: Send + Sync + 'static {
    /// A number that changes whenever the list changes. Read it before
    /// [`AllowStore::allow_list`]: a change in between shows as a later move.
    fn allow_generation(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// All entries, ordered by kind then value.
    fn allow_list(&self) -> impl Future<Output = Result<Vec<AllowEntry>, StoreError>> + Send;
}

/// Changes to the runtime allow-list (`spamgate allow add|remove`).
pub trait AllowAdmin: Send + Sync + 'static {
    /// Insert or replace (same kind+value: note/added_at updated). Returns true if it
    /// was new. Bumps the generation.
    fn allow_add(
        &self,
        entry: &AllowEntry,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Returns true if it existed. Bumps the generation when it did.
    fn allow_remove(
        &self,
        kind: AllowListKind,
        value: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// One recorded event for the abuse desk.
///
/// JSON: `{"at":..,"username":..,"kind":"limit-exceeded","limit":..,"used":..,
/// "limit_value":..,"detail":..}` (the kind's fields sit beside the others).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountEvent {
    pub at: UnixTime,
    pub username: String,
    #[serde(flatten)]
    pub kind: EventKind,
    /// Free text for people (e.g. the client address, the reason given).
    pub detail: String,
}

/// What happened to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EventKind {
    /// A charge was refused: `used` units of `limit_value` were already used.
    LimitExceeded {
        limit: LimitKind,
        used: u64,
        limit_value: u32,
    },
    StatusChanged {
        from: AccountStatus,
        to: AccountStatus,
    },
    /// A suspended or terminated account tried to send.
    Rejected { status: AccountStatus },
}

impl EventKind {
    /// The serde tag (`limit-exceeded`, `status-changed`, `rejected`).
    pub fn id(&self) -> &'static str {
        match self {
            EventKind::LimitExceeded { .. } => "limit-exceeded",
            EventKind::StatusChanged { .. } => "status-changed",
            EventKind::Rejected { .. } => "rejected",
        }
    }
}

/// Submission accounts as the request path uses them: look one up, charge its
/// limits, record what happened.
pub trait AccountStore: Send + Sync + 'static {
    fn account(
        &self,
        username: &str,
    ) -> impl Future<Output = Result<Option<Account>, StoreError>> + Send;

    /// Atomically: for each `(kind, rate, cost)` reads the stored TAT for
    /// `(username, kind)` (0 if none) and applies [`spamgate_engine::outbound::gcra`];
    /// only if every charge is allowed and `record` are the new TATs stored. Returns
    /// the outcomes in input order; when one is refused, the allowed ones say what would
    /// have been stored, and nothing was. A kind given twice sees its first charge.
    fn charge(
        &self,
        username: &str,
        charges: &[(LimitKind, Rate, u32)],
        now_ms: u64,
        record: bool,
    ) -> impl Future<Output = Result<Vec<(LimitKind, GcraOutcome)>, StoreError>> + Send;

    fn record_event(
        &self,
        event: &AccountEvent,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Account administration (`spamgate account ...`, later the abuse desk).
pub trait AccountAdmin: Send + Sync + 'static {
    /// Insert or replace.
    fn put_account(&self, account: &Account)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Ordered by username; at most `limit`.
    fn list_accounts(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Account>, StoreError>> + Send;

    /// Newest first; `username` None = all accounts; only events at or after `since` and
    /// (with `until`) at or before `until`; at most `limit` of those.
    fn events(
        &self,
        username: Option<&str>,
        since: UnixTime,
        until: Option<UnixTime>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<AccountEvent>, StoreError>> + Send;
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
    /// Redis failed, did not answer within the timeout, or (rarely) other hosts kept
    /// changing the same entry during one check.
    #[error("redis store: {0}")]
    Redis(String),
    /// The store could not be opened at start and is being retried ([`Recovering`]).
    #[error("store unavailable (retrying): {0}")]
    Unavailable(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Sqlite(Arc::new(error))
    }
}
