//! The store the daemon runs on, chosen in `[store]`: the embedded SQLite file (one host)
//! or Redis (several MX hosts sharing state).

use spamgate_engine::UnixTime;
use spamgate_engine::greylist::{GreylistKeys, GreylistOutcome, GreylistParams};
use spamgate_engine::outbound::{Account, GcraOutcome, LimitKind, Rate};
use spamgate_engine::verdict::AllowListKind;
use spamgate_store::{
    AccountEvent, AccountStore, AllowEntry, AllowStore, GreylistDeleted, GreylistEntries,
    GreylistFilter, RedisStore, SqliteStore, Store, StoreCounts, StoreError, TripletRow,
};

/// Either backend, behind the same traits.
pub enum AnyStore {
    Sqlite(SqliteStore),
    Redis(RedisStore),
}

impl AnyStore {
    pub fn describe(&self) -> String {
        match self {
            AnyStore::Sqlite(s) => format!("sqlite:{}", s.path().display()),
            AnyStore::Redis(r) => format!("redis (key prefix {:?})", r.key_prefix()),
        }
    }

    /// Flush and stop (SQLite commits what it has; Redis needs nothing).
    pub async fn close(self) {
        match self {
            AnyStore::Sqlite(s) => s.close().await,
            AnyStore::Redis(_) => {}
        }
    }
}

/// Forward one trait method to whichever backend this is.
macro_rules! both {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($store) => $call.await,
            AnyStore::Redis($store) => $call.await,
        }
    };
}

impl Store for AnyStore {
    async fn greylist(
        &self,
        keys: &GreylistKeys,
        params: &GreylistParams,
        now: UnixTime,
        apply: bool,
    ) -> Result<GreylistOutcome, StoreError> {
        both!(self, s => s.greylist(keys, params, now, apply))
    }
    async fn expire(&self, now: UnixTime) -> Result<u64, StoreError> {
        both!(self, s => s.expire(now))
    }
    async fn counts(&self, now: UnixTime) -> Result<StoreCounts, StoreError> {
        both!(self, s => s.counts(now))
    }
    async fn list_triplets(&self, limit: usize) -> Result<Vec<TripletRow>, StoreError> {
        both!(self, s => s.list_triplets(limit))
    }
    async fn find_greylist(
        &self,
        filter: &GreylistFilter,
        limit: usize,
    ) -> Result<GreylistEntries, StoreError> {
        both!(self, s => s.find_greylist(filter, limit))
    }
    async fn delete_greylist(
        &self,
        filter: &GreylistFilter,
    ) -> Result<GreylistDeleted, StoreError> {
        both!(self, s => s.delete_greylist(filter))
    }
}

impl AllowStore for AnyStore {
    async fn allow_add(&self, entry: &AllowEntry) -> Result<bool, StoreError> {
        both!(self, s => s.allow_add(entry))
    }
    async fn allow_remove(&self, kind: AllowListKind, value: &str) -> Result<bool, StoreError> {
        both!(self, s => s.allow_remove(kind, value))
    }
    async fn allow_list(&self) -> Result<Vec<AllowEntry>, StoreError> {
        both!(self, s => s.allow_list())
    }
    async fn allow_generation(&self) -> Result<u64, StoreError> {
        both!(self, s => s.allow_generation())
    }
}

impl AccountStore for AnyStore {
    async fn account(&self, username: &str) -> Result<Option<Account>, StoreError> {
        both!(self, s => s.account(username))
    }
    async fn put_account(&self, account: &Account) -> Result<(), StoreError> {
        both!(self, s => s.put_account(account))
    }
    async fn list_accounts(&self, limit: usize) -> Result<Vec<Account>, StoreError> {
        both!(self, s => s.list_accounts(limit))
    }
    async fn charge(
        &self,
        username: &str,
        charges: &[(LimitKind, Rate, u32)],
        now_ms: u64,
        apply: bool,
    ) -> Result<Vec<(LimitKind, GcraOutcome)>, StoreError> {
        both!(self, s => s.charge(username, charges, now_ms, apply))
    }
    async fn record_event(&self, event: &AccountEvent) -> Result<(), StoreError> {
        both!(self, s => s.record_event(event))
    }
    async fn events(
        &self,
        username: Option<&str>,
        since: UnixTime,
        limit: usize,
    ) -> Result<Vec<AccountEvent>, StoreError> {
        both!(self, s => s.events(username, since, limit))
    }
}
