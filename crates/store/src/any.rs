//! [`AnyStore`]: the backend chosen at run time (`[store] backend`), behind the same
//! traits as each backend.

use spamgate_engine::UnixTime;
use spamgate_engine::greylist::{GreylistKeys, GreylistOutcome, GreylistParams};
use spamgate_engine::outbound::{Account, GcraOutcome, LimitKind, Rate};
use spamgate_engine::verdict::AllowListKind;

use crate::{
    AccountAdmin, AccountEvent, AccountStore, AllowAdmin, AllowEntry, AllowStore, GreylistAdmin,
    GreylistDeleted, GreylistEntries, GreylistFilter, GreylistStore, RedisStore, SqliteStore,
    StoreCounts, StoreError, TripletRow,
};

/// Either backend. Clones share the backend's state, as each backend's clones do.
#[derive(Clone)]
pub enum AnyStore {
    /// The embedded file (one host).
    Sqlite(SqliteStore),
    /// Redis, shared by several MX hosts.
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

/// Implements each listed trait for [`AnyStore`] by handing every method to the
/// backend inside: the one place the methods are forwarded.
macro_rules! forward {
    ($($trait:ident { $($method:ident($($arg:ident: $ty:ty),*) -> $out:ty;)* })*) => {$(
        impl $trait for AnyStore {$(
            async fn $method(&self, $($arg: $ty),*) -> Result<$out, StoreError> {
                match self {
                    AnyStore::Sqlite(store) => store.$method($($arg),*).await,
                    AnyStore::Redis(store) => store.$method($($arg),*).await,
                }
            }
        )*}
    )*};
}

forward! {
    GreylistStore {
        greylist(keys: &GreylistKeys, params: &GreylistParams, now: UnixTime, record: bool) -> GreylistOutcome;
    }
    GreylistAdmin {
        expire(now: UnixTime) -> u64;
        counts(now: UnixTime) -> StoreCounts;
        list_triplets(limit: usize) -> Vec<TripletRow>;
        find_greylist(filter: &GreylistFilter, limit: usize) -> GreylistEntries;
        delete_greylist(filter: &GreylistFilter) -> GreylistDeleted;
    }
    AllowStore {
        allow_generation() -> u64;
        allow_list() -> Vec<AllowEntry>;
    }
    AllowAdmin {
        allow_add(entry: &AllowEntry) -> bool;
        allow_remove(kind: AllowListKind, value: &str) -> bool;
    }
    AccountStore {
        account(username: &str) -> Option<Account>;
        charge(username: &str, charges: &[(LimitKind, Rate, u32)], now_ms: u64, record: bool) -> Vec<(LimitKind, GcraOutcome)>;
        record_event(event: &AccountEvent) -> ();
    }
    AccountAdmin {
        put_account(account: &Account) -> ();
        list_accounts(limit: usize) -> Vec<Account>;
        events(username: Option<&str>, since: UnixTime, limit: usize) -> Vec<AccountEvent>;
    }
}
