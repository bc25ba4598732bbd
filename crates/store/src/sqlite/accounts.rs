//! Submission accounts, their GCRA charges and the abuse desk's event log.

use rusqlite::{Connection, OptionalExtension, params};
use spamgate_engine::UnixTime;
use spamgate_engine::outbound::{
    Account, AccountStatus, GcraOutcome, LimitKind, LimitOverrides, Rate, gcra,
};

use super::{SqliteStore, sql_int, unsigned};
use crate::{AccountAdmin, AccountEvent, AccountStore, EventKind, StoreError};

impl AccountStore for SqliteStore {
    async fn account(&self, username: &str) -> Result<Option<Account>, StoreError> {
        let username = username.to_string();
        self.write(move |tx| account_step(tx.conn, &username)).await
    }

    async fn charge(
        &self,
        username: &str,
        charges: &[(LimitKind, Rate, u32)],
        now_ms: u64,
        record: bool,
    ) -> Result<Vec<(LimitKind, GcraOutcome)>, StoreError> {
        let username = username.to_string();
        let charges = charges.to_vec();
        self.write(move |tx| charge_step(tx.conn, &username, &charges, now_ms, record))
            .await
    }

    async fn record_event(&self, event: &AccountEvent) -> Result<(), StoreError> {
        let data = serde_json::to_string(&event.kind)
            .map_err(|e| StoreError::from(rusqlite::Error::ToSqlConversionFailure(e.into())))?;
        let event = event.clone();
        self.write_durably(move |tx| record_event_step(tx.conn, &event, &data))
            .await
    }
}

impl AccountAdmin for SqliteStore {
    async fn put_account(&self, account: &Account) -> Result<(), StoreError> {
        let account = account.clone();
        self.write_durably(move |tx| put_account_step(tx.conn, &account))
            .await
    }

    async fn list_accounts(&self, limit: usize) -> Result<Vec<Account>, StoreError> {
        self.read(move |conn| list_accounts(conn, limit)).await
    }

    async fn events(
        &self,
        username: Option<&str>,
        since: UnixTime,
        until: Option<UnixTime>,
        limit: usize,
    ) -> Result<Vec<AccountEvent>, StoreError> {
        let username = username.map(str::to_string);
        self.read(move |conn| list_events(conn, username.as_deref(), since, until, limit))
            .await
    }
}

/// A stored text the engine cannot parse: a corrupt row or a newer writer.
pub(super) fn bad_text(column: usize, what: &str, text: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        format!("unknown {what} {text:?}").into(),
    )
}

pub(super) fn optional_u32(value: Option<i64>) -> Option<u32> {
    value.map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX))
}

pub(super) const ACCOUNT_COLUMNS: &str =
    "username, status, messages_per_hour, recipients_per_day, note, updated_at";

pub(super) fn account_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    let status: String = row.get(1)?;
    Ok(Account {
        username: row.get(0)?,
        status: AccountStatus::parse(&status).ok_or_else(|| bad_text(1, "status", &status))?,
        limits: LimitOverrides {
            messages_per_hour: optional_u32(row.get(2)?),
            recipients_per_day: optional_u32(row.get(3)?),
        },
        note: row.get(4)?,
        updated_at: unsigned(row.get(5)?),
    })
}

pub(super) fn account_step(conn: &Connection, username: &str) -> rusqlite::Result<Option<Account>> {
    conn.prepare_cached(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE username = ?1"
    ))?
    .query_row([username], account_from_row)
    .optional()
}

pub(super) fn put_account_step(conn: &Connection, account: &Account) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (username) DO UPDATE SET
            status = excluded.status, messages_per_hour = excluded.messages_per_hour,
            recipients_per_day = excluded.recipients_per_day, note = excluded.note,
            updated_at = excluded.updated_at"
    ))?
    .execute(params![
        account.username,
        account.status.id(),
        account.limits.messages_per_hour,
        account.limits.recipients_per_day,
        account.note,
        sql_int(account.updated_at),
    ])?;
    Ok(())
}

pub(super) fn list_accounts(conn: &mut Connection, limit: usize) -> rusqlite::Result<Vec<Account>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY username LIMIT ?1"
    ))?;
    statement.query_map([limit], account_from_row)?.collect()
}

/// All charges against the stored states; all stored, or (if one is refused or
/// `record` is false) none.
pub(super) fn charge_step(
    conn: &Connection,
    username: &str,
    charges: &[(LimitKind, Rate, u32)],
    now_ms: u64,
    record: bool,
) -> rusqlite::Result<Vec<(LimitKind, GcraOutcome)>> {
    let mut outcomes: Vec<(LimitKind, GcraOutcome)> = Vec::with_capacity(charges.len());
    for (kind, rate, cost) in charges {
        // A kind charged twice continues from its earlier charge in this call.
        let earlier = outcomes.iter().rev().find(|(k, _)| k == kind);
        let tat_ms = match earlier {
            Some((_, outcome)) => outcome.tat_ms,
            None => conn
                .prepare_cached("SELECT tat_ms FROM rate_limits WHERE username = ?1 AND kind = ?2")?
                .query_row(params![username, kind.id()], |row| row.get::<_, i64>(0))
                .optional()?
                .map(unsigned)
                .unwrap_or(0),
        };
        outcomes.push((*kind, gcra(rate, tat_ms, *cost, now_ms)));
    }
    if !record || !outcomes.iter().all(|(_, outcome)| outcome.allowed) {
        return Ok(outcomes);
    }
    // In input order, so a kind charged twice ends with its last state.
    for ((kind, outcome), (_, rate, _)) in outcomes.iter().zip(charges) {
        // Once now passes the TAT the row means nothing (gcra treats it as fresh);
        // keeping it one period longer than that is harmless and simple to reason about.
        let expires_at = outcome
            .tat_ms
            .div_ceil(1000)
            .saturating_add(rate.period.as_secs());
        conn.prepare_cached(
            "INSERT INTO rate_limits (username, kind, tat_ms, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (username, kind) DO UPDATE SET
                tat_ms = excluded.tat_ms, expires_at = excluded.expires_at",
        )?
        .execute(params![
            username,
            kind.id(),
            sql_int(outcome.tat_ms),
            sql_int(expires_at)
        ])?;
    }
    Ok(outcomes)
}

pub(super) fn record_event_step(
    conn: &Connection,
    event: &AccountEvent,
    data: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO account_events (at, username, kind, data, detail)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        sql_int(event.at),
        event.username,
        event.kind.id(),
        data,
        event.detail
    ])?;
    Ok(())
}

pub(super) fn list_events(
    conn: &mut Connection,
    username: Option<&str>,
    since: UnixTime,
    until: Option<UnixTime>,
    limit: usize,
) -> rusqlite::Result<Vec<AccountEvent>> {
    let since = sql_int(since);
    let until = until.map_or(i64::MAX, sql_int);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let from_row = |row: &rusqlite::Row<'_>| -> rusqlite::Result<AccountEvent> {
        let data: String = row.get(2)?;
        let kind = serde_json::from_str::<EventKind>(&data).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
        })?;
        Ok(AccountEvent {
            at: unsigned(row.get(0)?),
            username: row.get(1)?,
            kind,
            detail: row.get(3)?,
        })
    };
    // Two statements, so each walks its own index backwards from the newest event.
    match username {
        Some(username) => conn
            .prepare_cached(
                "SELECT at, username, data, detail FROM account_events
                 WHERE username = ?1 AND at >= ?2 AND at <= ?3
                 ORDER BY at DESC, id DESC LIMIT ?4",
            )?
            .query_map(params![username, since, until, limit], from_row)?
            .collect(),
        None => conn
            .prepare_cached(
                "SELECT at, username, data, detail FROM account_events
                 WHERE at >= ?1 AND at <= ?2 ORDER BY at DESC, id DESC LIMIT ?3",
            )?
            .query_map(params![since, until, limit], from_row)?
            .collect(),
    }
}
