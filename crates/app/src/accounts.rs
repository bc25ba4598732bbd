//! The account rules every front-end (CLI, later the abuse desk and the HTTP API) goes
//! through: status changes with their events, termination being final unless forced,
//! and no command silently creating an account it was not asked to create.

use spamgate_engine::UnixTime;
use spamgate_engine::outbound::{Account, AccountStatus, LimitOverrides, canonical_username};
use spamgate_store::{AccountAdmin, AccountEvent, AccountStore, EventKind, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Invalid(String),
    #[error("no account {0:?} in the store (check the spelling, or pass --create to add it)")]
    Unknown(String),
    #[error("{0} is terminated; use --force to reactivate a terminated account")]
    Terminated(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl AccountError {
    /// Whether the operator asked for something wrong (as opposed to the store failing).
    pub fn is_usage(&self) -> bool {
        !matches!(self, AccountError::Store(_))
    }
}

/// What a status change may do beyond the plain case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusChange {
    /// Bring a terminated account back.
    pub force: bool,
    /// Create the account (active, default limits) when it is not in the store.
    pub create: bool,
}

/// The account commands, over any store.
pub struct AccountService<'a, S> {
    store: &'a S,
}

impl<'a, S: AccountStore + AccountAdmin> AccountService<'a, S> {
    pub fn new(store: &'a S) -> Self {
        AccountService { store }
    }

    /// Adds an account or changes its limits (an existing one keeps the limits not
    /// given); the status is not touched.
    pub async fn put_limits(
        &self,
        username: &str,
        limits: LimitOverrides,
        note: String,
        now: UnixTime,
    ) -> Result<Account, AccountError> {
        let username = &canonical(username)?;
        for (name, value) in [
            ("messages-per-hour", limits.messages_per_hour),
            ("recipients-per-day", limits.recipients_per_day),
        ] {
            if value == Some(0) {
                return Err(AccountError::Invalid(format!(
                    "--{name} 0 would refuse every message; suspend the account instead"
                )));
            }
        }
        let mut account = self
            .store
            .account(username)
            .await?
            .unwrap_or_else(|| Account::new(username, now));
        account.limits.messages_per_hour = limits
            .messages_per_hour
            .or(account.limits.messages_per_hour);
        account.limits.recipients_per_day = limits
            .recipients_per_day
            .or(account.limits.recipients_per_day);
        if !note.is_empty() {
            account.note = note;
        }
        account.updated_at = now;
        self.store.put_account(&account).await?;
        Ok(account)
    }

    /// Sets an account's status and records the change as an event. An account not in
    /// the store is an error unless `change.create`; leaving `terminated` needs
    /// `change.force`. On an error nothing is written.
    pub async fn set_status(
        &self,
        username: &str,
        to: AccountStatus,
        note: String,
        change: StatusChange,
        now: UnixTime,
    ) -> Result<Account, AccountError> {
        let username = &canonical(username)?;
        let mut account = match self.store.account(username).await? {
            Some(account) => account,
            None if change.create => Account::new(username, now),
            None => return Err(AccountError::Unknown(username.to_string())),
        };
        let from = account.status;
        if from == AccountStatus::Terminated && to != AccountStatus::Terminated && !change.force {
            return Err(AccountError::Terminated(username.to_string()));
        }
        account.status = to;
        if !note.is_empty() {
            account.note = note.clone();
        }
        account.updated_at = now;
        self.store.put_account(&account).await?;
        let event = AccountEvent {
            at: now,
            username: username.to_string(),
            kind: EventKind::StatusChanged { from, to },
            detail: note,
        };
        self.store.record_event(&event).await?;
        Ok(account)
    }

    /// The stored account, or an error naming the unknown one.
    pub async fn show(&self, username: &str) -> Result<Account, AccountError> {
        let username = &canonical(username)?;
        self.store
            .account(username)
            .await?
            .ok_or_else(|| AccountError::Unknown(username.to_string()))
    }

    pub async fn list(&self, limit: usize) -> Result<Vec<Account>, AccountError> {
        Ok(self.store.list_accounts(limit).await?)
    }

    pub async fn events(
        &self,
        username: Option<&str>,
        since: UnixTime,
        limit: usize,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        self.events_between(username, since, None, limit).await
    }

    /// [`Self::events`] at or before `until` too: the store applies both bounds before
    /// `limit`, so the newest `limit` events of the range come back.
    pub async fn events_between(
        &self,
        username: Option<&str>,
        since: UnixTime,
        until: Option<UnixTime>,
        limit: usize,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        let username = username.map(canonical).transpose()?;
        Ok(self
            .store
            .events(username.as_deref(), since, until, limit)
            .await?)
    }
}

/// The stored form of an operator-given name (see [`canonical_username`]).
fn canonical(username: &str) -> Result<String, AccountError> {
    canonical_username(username)
        .ok_or_else(|| AccountError::Invalid("an account name cannot be empty".into()))
}
