//! [`AnyStore`]: the backend chosen at run time (`[store] backend`), behind the same
//! traits as each backend.

use spamgate_engine::UnixTime;
use spamgate_engine::greylist::{GreylistKeys, GreylistOutcome, GreylistParams};
use spamgate_engine::outbound::{Account, GcraOutcome, LimitKind, Rate};
use spamgate_engine::verdict::AllowListKind;

use spamgate_engine::learn::{LearnEvent, LearnParams, LearnRecord, Observation};

use crate::{
    AccountAdmin, AccountEvent, AccountStore, AllowAdmin, AllowEntry, AllowStore, GreylistAdmin,
    GreylistDeleted, GreylistEntries, GreylistFilter, GreylistStore, LearnAdmin, LearnStore,
    RedisStore, SqliteStore, StoreCounts, StoreError, TripletRow,
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

/// The store the daemon runs on when it may not be there yet: a store that could not
/// be opened at start (Redis unreachable, a damaged SQLite file) is retried in the
/// background while every operation fails with [`StoreError::Unavailable`], so requests
/// get the configured fail mode instead of the daemon not starting. Clones share it.
#[derive(Clone)]
pub struct Recovering {
    current: std::sync::Arc<arc_swap::ArcSwapOption<AnyStore>>,
    /// Why it is not there, while it is not.
    error: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Recovering {
    pub fn ready(store: AnyStore) -> Recovering {
        Recovering {
            current: std::sync::Arc::new(arc_swap::ArcSwapOption::from_pointee(store)),
            error: std::sync::Arc::default(),
        }
    }

    /// Not open yet, because of `error`; [`Recovering::install`] it when it opens.
    pub fn unavailable(error: String) -> Recovering {
        Recovering {
            current: std::sync::Arc::default(),
            error: std::sync::Arc::new(std::sync::Mutex::new(error)),
        }
    }

    pub fn install(&self, store: AnyStore) {
        self.current.store(Some(std::sync::Arc::new(store)));
    }

    /// The latest reason it could not be opened.
    pub fn set_error(&self, error: String) {
        *self
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = error;
    }

    pub fn is_ready(&self) -> bool {
        self.current.load().is_some()
    }

    pub fn describe(&self) -> String {
        match self.current.load_full() {
            Some(store) => store.describe(),
            None => "unavailable".to_string(),
        }
    }

    fn current(&self) -> Result<std::sync::Arc<AnyStore>, StoreError> {
        self.current.load_full().ok_or_else(|| {
            let error = self
                .error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            StoreError::Unavailable(error.clone())
        })
    }

    /// Flush and stop the store, if it was opened.
    pub async fn close(self) {
        // Another clone may still hold it; SQLite then commits as the last one goes.
        if let Some(Ok(store)) = self.current.swap(None).map(std::sync::Arc::try_unwrap) {
            store.close().await;
        }
    }
}

/// Implements each listed trait for [`AnyStore`] by handing every method to the
/// backend inside, and for [`Recovering`] by handing it to the store once it is there:
/// the one place the methods are forwarded.
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
        impl $trait for Recovering {$(
            async fn $method(&self, $($arg: $ty),*) -> Result<$out, StoreError> {
                self.current()?.$method($($arg),*).await
            }
        )*}
    )*};
}

forward! {
    LearnStore {
        learned(org: &str, now: UnixTime) -> Option<LearnRecord>;
        learn_observe(observation: &Observation, params: &LearnParams, now: UnixTime) -> LearnEvent;
    }
    LearnAdmin {
        learned_list(now: UnixTime, limit: usize) -> Vec<LearnRecord>;
        learned_remove(org: &str) -> bool;
        learned_clear() -> u64;
    }
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
        events(username: Option<&str>, since: UnixTime, until: Option<UnixTime>, limit: usize) -> Vec<AccountEvent>;
    }
}
