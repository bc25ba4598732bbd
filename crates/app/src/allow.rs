//! The runtime allow-list (`spamgate allow add|remove|list`): entries in the store,
//! checked the way the daemon reads them, and the daemon's compiled copy.

use spamgate_engine::UnixTime;
use spamgate_engine::allow::{AllowConfig, AllowError, AllowList};
use spamgate_engine::verdict::AllowListKind;
use spamgate_store::{AllowAdmin, AllowEntry, AllowStore, StoreError};
use tracing::warn;

#[derive(Debug, thiserror::Error)]
pub enum AllowCommandError {
    #[error("unknown kind {0:?}: client-address, client-name, sender or recipient")]
    UnknownKind(String),
    #[error("{0}")]
    Invalid(#[from] AllowError),
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
    /// the entry and whether it was new (an existing one gets the new note).
    pub async fn add(
        &self,
        kind: &str,
        value: &str,
        note: String,
        now: UnixTime,
    ) -> Result<(AllowEntry, bool), AllowCommandError> {
        let entry = AllowEntry {
            kind: runtime_kind(kind)?,
            value: value.trim().to_string(),
            note,
            added_at: now,
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

/// Compiles the stored entries; an entry that no longer parses is skipped with a
/// warning (entries are validated when added, so this means a newer spamgate wrote it).
pub(crate) fn compile(entries: &[AllowEntry]) -> AllowList {
    let mut config = AllowConfig {
        rfc2142: false,
        ..AllowConfig::default()
    };
    for entry in entries {
        if let Err(e) = AllowList::new(&entry_config(entry)) {
            warn!(kind = entry.kind.id(), value = %entry.value, "skipping runtime allow entry: {e}");
            continue;
        }
        let list = match entry.kind {
            AllowListKind::ClientAddress => &mut config.client_addresses,
            AllowListKind::ClientName => &mut config.client_names,
            AllowListKind::Sender => &mut config.senders,
            AllowListKind::Recipient => &mut config.recipients,
            AllowListKind::Rfc2142 => continue,
        };
        list.push(entry.value.clone());
    }
    AllowList::new(&config).unwrap_or_default()
}
