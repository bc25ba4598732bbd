//! The runtime allow-list and the generation number daemons poll.

use rusqlite::{Connection, OptionalExtension, params};
use spamgate_engine::verdict::{AllowListKind, AllowScope};

use super::{SqliteStore, sql_int, unsigned};
use crate::{AllowAdmin, AllowEntry, AllowStore, StoreError};

impl AllowStore for SqliteStore {
    async fn allow_list(&self) -> Result<Vec<AllowEntry>, StoreError> {
        self.read(list_allowed).await
    }

    async fn allow_generation(&self) -> Result<u64, StoreError> {
        self.read(|conn| generation(conn, ALLOW_LIST_GENERATION))
            .await
    }
}

impl AllowAdmin for SqliteStore {
    async fn allow_add(&self, entry: &AllowEntry) -> Result<bool, StoreError> {
        let entry = entry.clone();
        self.write_durably(move |tx| allow_add_step(tx.conn, &entry))
            .await
    }

    async fn allow_remove(&self, kind: AllowListKind, value: &str) -> Result<bool, StoreError> {
        let value = value.to_string();
        self.write_durably(move |tx| allow_remove_step(tx.conn, kind, &value))
            .await
    }
}

/// The `generations` row of the allow-list.
pub(super) const ALLOW_LIST_GENERATION: &str = "allow-list";

pub(super) fn bump_generation(conn: &Connection, name: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE generations SET value = value + 1 WHERE name = ?1")?
        .execute([name])?;
    Ok(())
}

pub(super) fn generation(conn: &mut Connection, name: &str) -> rusqlite::Result<u64> {
    let value = conn
        .prepare_cached("SELECT value FROM generations WHERE name = ?1")?
        .query_row([name], |row| row.get::<_, i64>(0))
        .optional()?;
    Ok(value.map(unsigned).unwrap_or(0))
}

pub(super) fn allow_add_step(conn: &Connection, entry: &AllowEntry) -> rusqlite::Result<bool> {
    let kind = entry.kind.id();
    let existed = conn
        .prepare_cached("SELECT 1 FROM allow_list WHERE kind = ?1 AND value = ?2")?
        .exists(params![kind, entry.value])?;
    conn.prepare_cached(
        "INSERT INTO allow_list (kind, value, note, added_at, scope, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (kind, value) DO UPDATE SET
            note = excluded.note, added_at = excluded.added_at, scope = excluded.scope,
            expires_at = excluded.expires_at",
    )?
    .execute(params![
        kind,
        entry.value,
        entry.note,
        sql_int(entry.added_at),
        entry.scope.id(),
        entry.expires_at.map(sql_int),
    ])?;
    bump_generation(conn, ALLOW_LIST_GENERATION)?;
    Ok(!existed)
}

pub(super) fn allow_remove_step(
    conn: &Connection,
    kind: AllowListKind,
    value: &str,
) -> rusqlite::Result<bool> {
    let removed = conn
        .prepare_cached("DELETE FROM allow_list WHERE kind = ?1 AND value = ?2")?
        .execute(params![kind.id(), value])?;
    if removed > 0 {
        bump_generation(conn, ALLOW_LIST_GENERATION)?;
    }
    Ok(removed > 0)
}

/// Ordered by the kind's id, then value. Rows of kinds this build does not know
/// (written by a newer one) are skipped, so the rest still applies.
pub(super) fn list_allowed(conn: &mut Connection) -> rusqlite::Result<Vec<AllowEntry>> {
    let mut statement = conn.prepare_cached(
        "SELECT kind, value, note, added_at, scope, expires_at FROM allow_list
         ORDER BY kind, value",
    )?;
    let mut entries = Vec::new();
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let kind_id: String = row.get(0)?;
        let Some(kind) = AllowListKind::parse(&kind_id) else {
            tracing::warn!(kind = %kind_id, "skipping an allow-list entry of an unknown kind");
            continue;
        };
        entries.push(AllowEntry {
            kind,
            value: row.get(1)?,
            note: row.get(2)?,
            added_at: unsigned(row.get(3)?),
            scope: scope_of(&row.get::<_, String>(4)?),
            expires_at: row.get::<_, Option<i64>>(5)?.map(unsigned),
        });
    }
    Ok(entries)
}

/// A stored scope; one this build does not know (a newer one wrote it) counts as the
/// narrower `greylist`, so an unknown entry never skips the DNS lists.
pub(super) fn scope_of(text: &str) -> AllowScope {
    AllowScope::parse(text).unwrap_or(AllowScope::Greylist)
}
