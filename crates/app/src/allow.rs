//! The runtime allow-list (`spamgate allow add|remove|list`): entries in the store,
//! checked the way the daemon reads them, and the daemon's compiled copy.

use spamgate_engine::UnixTime;
use spamgate_engine::allow::{AllowConfig, AllowError, AllowList};
use spamgate_engine::verdict::{AllowListKind, AllowScope};
use spamgate_store::{AllowAdmin, AllowEntry, AllowStore, StoreError};
use tracing::warn;

#[derive(Debug, thiserror::Error)]
pub enum AllowCommandError {
    #[error("unknown kind {0:?}: client-address, client-name, sender or recipient")]
    UnknownKind(String),
    #[error("{0}")]
    Invalid(#[from] AllowError),
    #[error(
        "a {kind} entry can only skip greylisting (--scope greylist): a sender or recipient \
         can be forged, so it must never let a listed host in"
    )]
    ScopeNotAllowed { kind: &'static str },
    #[error("the entry would already have expired (--expires must be in the future)")]
    Expired,
    #[error("no such entry: {kind} {value}")]
    NoSuchEntry { kind: &'static str, value: String },
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl AllowCommandError {
    /// Whether the operator asked for something wrong (as opposed to the store failing).
    pub fn is_usage(&self) -> bool {
        !matches!(self, AllowCommandError::Store(_))
    }
}

/// The kind an operator may add at run time, from its name.
pub fn runtime_kind(text: &str) -> Result<AllowListKind, AllowCommandError> {
    AllowListKind::parse(text)
        .filter(|k| AllowListKind::RUNTIME.contains(k))
        .ok_or_else(|| AllowCommandError::UnknownKind(text.to_string()))
}

/// The allow-list commands, over any store.
pub struct AllowService<'a, S> {
    store: &'a S,
}

impl<'a, S: AllowStore + AllowAdmin> AllowService<'a, S> {
    pub fn new(store: &'a S) -> Self {
        AllowService { store }
    }

    /// Validates the entry exactly as the daemon will read it, then stores it. Returns
    /// the entry and whether it was new (an existing one gets the new note, scope and
    /// expiry). `scope` `None`: the kind's default ([`AllowScope::default_for`]); only
    /// client addresses and names may skip every check.
    pub async fn add(
        &self,
        kind: &str,
        value: &str,
        note: String,
        scope: Option<AllowScope>,
        expires_at: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<(AllowEntry, bool), AllowCommandError> {
        let kind = runtime_kind(kind)?;
        let scope = scope.unwrap_or(AllowScope::default_for(kind));
        if !scope.allowed_for(kind) {
            return Err(AllowCommandError::ScopeNotAllowed { kind: kind.id() });
        }
        if expires_at.is_some_and(|at| at <= now) {
            return Err(AllowCommandError::Expired);
        }
        let entry = AllowEntry {
            kind,
            value: value.trim().to_string(),
            note,
            added_at: now,
            scope,
            expires_at,
        };
        AllowList::new(&entry_config(&entry))?;
        let new = self.store.allow_add(&entry).await?;
        Ok((entry, new))
    }

    /// Removes an entry; one that is not there is an error and changes nothing.
    pub async fn remove(
        &self,
        kind: &str,
        value: &str,
    ) -> Result<(AllowListKind, String), AllowCommandError> {
        let kind = runtime_kind(kind)?;
        let value = value.trim().to_string();
        if self.store.allow_remove(kind, &value).await? {
            Ok((kind, value))
        } else {
            Err(AllowCommandError::NoSuchEntry {
                kind: kind.id(),
                value,
            })
        }
    }

    pub async fn list(&self) -> Result<Vec<AllowEntry>, AllowCommandError> {
        Ok(self.store.allow_list().await?)
    }
}

/// An allow config holding just this entry (to validate it alone).
fn entry_config(entry: &AllowEntry) -> AllowConfig {
    let mut config = AllowConfig {
        rfc2142: false,
        ..AllowConfig::default()
    };
    let value = vec![entry.value.clone()];
    match entry.kind {
        AllowListKind::ClientAddress => config.client_addresses = value,
        AllowListKind::ClientName => config.client_names = value,
        AllowListKind::Sender => config.senders = value,
        AllowListKind::Recipient => config.recipients = value,
        AllowListKind::Rfc2142 => {}
    }
    config
}

/// The runtime allow-list as the daemon applies it: the entries that skip every check,
/// those that skip greylisting only, and when the next one expires.
#[derive(Debug, Default)]
pub struct RuntimeAllow {
    pub all: AllowList,
    pub greylist: AllowList,
    /// The earliest expiry among the compiled entries: compile again then.
    pub next_expiry: Option<UnixTime>,
}

/// Compiles the stored entries in force at `now`; an entry that no longer parses is
/// skipped with a warning (entries are validated when added, so this means a newer
/// spamgate wrote it), and so is an expired one.
pub(crate) fn compile(entries: &[AllowEntry], now: UnixTime) -> RuntimeAllow {
    let empty = || AllowConfig {
        rfc2142: false,
        ..AllowConfig::default()
    };
    let (mut all, mut greylist) = (empty(), empty());
    let mut next_expiry: Option<UnixTime> = None;
    for entry in entries {
        if entry.expires_at.is_some_and(|at| at <= now) {
            continue;
        }
        if let Err(e) = AllowList::new(&entry_config(entry)) {
            warn!(kind = entry.kind.id(), value = %entry.value, "skipping runtime allow entry: {e}");
            continue;
        }
        // A scope the kind may not have (written by hand) is narrowed to greylisting.
        let config = match entry.scope {
            AllowScope::All if entry.scope.allowed_for(entry.kind) => &mut all,
            _ => &mut greylist,
        };
        let list = match entry.kind {
            AllowListKind::ClientAddress => &mut config.client_addresses,
            AllowListKind::ClientName => &mut config.client_names,
            AllowListKind::Sender => &mut config.senders,
            AllowListKind::Recipient => &mut config.recipients,
            AllowListKind::Rfc2142 => continue,
        };
        list.push(entry.value.clone());
        if let Some(at) = entry.expires_at {
            next_expiry = Some(next_expiry.map_or(at, |next| next.min(at)));
        }
    }
    RuntimeAllow {
        all: AllowList::with_scope(&all, AllowScope::All).unwrap_or_default(),
        greylist: AllowList::with_scope(&greylist, AllowScope::Greylist).unwrap_or_default(),
        next_expiry,
    }
}
