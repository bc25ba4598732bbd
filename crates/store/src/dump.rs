//! Moving all state between backends (`spamgate store migrate --from sqlite:PATH --to
//! redis://...`, and back): a backend-neutral [`StoreDump`], read from one store and
//! written into the other. Each backend reads and writes it in its own `dump` module.
//!
//! Run it while no spamgate writes to either store: the copy is not one transaction,
//! and what the target already holds under the same keys is overwritten.

use spamgate_engine::UnixTime;
use spamgate_engine::greylist::{AwlState, Key, TripletState};
use spamgate_engine::outbound::{Account, LimitKind};

use crate::{AccountEvent, AllowEntry};

/// Everything a store holds, each list in a canonical order (so two dumps of the same
/// state are equal).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreDump {
    /// By key.
    pub triplets: Vec<TripletRecord>,
    /// By key.
    pub awl: Vec<AwlRecord>,
    /// By kind id, then value.
    pub allow: Vec<AllowEntry>,
    pub allow_generation: u64,
    /// By username.
    pub accounts: Vec<Account>,
    /// By username, then kind id.
    pub rates: Vec<RateRecord>,
    /// Oldest first (in recording order within a second).
    pub events: Vec<AccountEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TripletRecord {
    pub key: Key,
    pub network_key: Key,
    pub network: String,
    pub sender: String,
    pub recipient: String,
    pub state: TripletState,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwlRecord {
    pub key: Key,
    pub client: String,
    pub state: AwlState,
    pub expires_at: UnixTime,
}

/// One GCRA state (see [`crate::AccountStore::charge`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateRecord {
    pub username: String,
    pub kind: LimitKind,
    pub tat_ms: u64,
    pub expires_at: UnixTime,
}

impl StoreDump {
    /// Entries of every kind together.
    pub fn len(&self) -> usize {
        self.triplets.len()
            + self.awl.len()
            + self.allow.len()
            + self.accounts.len()
            + self.rates.len()
            + self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn sort(&mut self) {
        self.triplets.sort_by_key(|t| t.key);
        self.awl.sort_by_key(|a| a.key);
        self.allow
            .sort_by(|a, b| (a.kind.id(), &a.value).cmp(&(b.kind.id(), &b.value)));
        self.accounts.sort_by(|a, b| a.username.cmp(&b.username));
        self.rates
            .sort_by(|a, b| (&a.username, a.kind.id()).cmp(&(&b.username, b.kind.id())));
    }
}
