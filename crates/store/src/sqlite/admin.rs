//! Greylist administration: expiry requests, counts, listings and finding on the
//! read-only connection, deletion in small write steps.

use rusqlite::{Connection, OptionalExtension, params};
use spamgate_engine::UnixTime;
use spamgate_engine::greylist::awl_key;
use tokio::sync::oneshot;

use super::writer::Request;
use super::{SqliteStore, sql_int, unsigned};
use crate::{
    AwlRow, GreylistAdmin, GreylistDeleted, GreylistEntries, GreylistFilter, StoreCounts,
    StoreError, TripletRow,
};

impl GreylistAdmin for SqliteStore {
    async fn expire(&self, now: UnixTime) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.call(Request::Expire(now, reply), answer).await
    }

    async fn counts(&self, now: UnixTime) -> Result<StoreCounts, StoreError> {
        self.read(move |conn| count_live(conn, now)).await
    }

    async fn list_triplets(&self, limit: usize) -> Result<Vec<TripletRow>, StoreError> {
        self.read(move |conn| list(conn, limit)).await
    }

    async fn find_greylist(
        &self,
        filter: &GreylistFilter,
        limit: usize,
    ) -> Result<GreylistEntries, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| find(conn, &filter, limit)).await
    }

    /// Finds the triplets on the read-only connection, then deletes them by key in small
    /// write steps, so a scan over a large table never holds up the request path.
    async fn delete_greylist(
        &self,
        filter: &GreylistFilter,
    ) -> Result<GreylistDeleted, StoreError> {
        let mut deleted = GreylistDeleted::default();
        if filter.names_triplets() {
            let wanted = filter.clone();
            let keys = self
                .read(move |conn| matching_triplet_keys(conn, &wanted))
                .await?;
            for chunk in keys.chunks(DELETE_CHUNK) {
                let chunk = chunk.to_vec();
                deleted.triplets += self
                    .write_durably(move |tx| {
                        // Deleted pending rows lower their networks' counts.
                        tx.pending.clear();
                        let mut statement = tx
                            .conn
                            .prepare_cached("DELETE FROM triplets WHERE key = ?1")?;
                        let mut removed = 0;
                        for key in &chunk {
                            removed += statement.execute([key])? as u64;
                        }
                        Ok(removed)
                    })
                    .await?;
            }
        }
        if let Some(client) = filter.client {
            let key = awl_key(client);
            deleted.awl = self
                .write_durably(move |tx| {
                    tx.conn
                        .prepare_cached("DELETE FROM awl WHERE key = ?1")?
                        .execute([&key[..]])
                        .map(|rows| rows as u64)
                })
                .await?;
        }
        Ok(deleted)
    }
}

/// Triplets deleted per write step by `delete_greylist`.
pub(super) const DELETE_CHUNK: usize = 500;

pub(super) fn count_live(conn: &mut Connection, now: UnixTime) -> rusqlite::Result<StoreCounts> {
    let now = sql_int(now);
    // One read transaction: the three numbers come from the same snapshot.
    let tx = conn.transaction()?;
    let count = |sql: &str| -> rusqlite::Result<u64> {
        tx.prepare_cached(sql)?
            .query_row([now], |row| row.get::<_, i64>(0))
            .map(unsigned)
    };
    let pending = count(
        "SELECT count(*) FROM triplets INDEXED BY triplets_pending
         WHERE passed_at IS NULL AND expires_at > ?1",
    )?;
    let live = count("SELECT count(*) FROM triplets WHERE expires_at > ?1")?;
    let awl = count("SELECT count(*) FROM awl WHERE expires_at > ?1")?;
    Ok(StoreCounts {
        pending,
        passed: live.saturating_sub(pending),
        awl,
    })
}

pub(super) fn list(conn: &mut Connection, limit: usize) -> rusqlite::Result<Vec<TripletRow>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement = conn.prepare_cached(
        "SELECT net_text, sender, recipient, first_seen, last_seen, attempts, passed_at,
                expires_at
         FROM triplets ORDER BY expires_at DESC LIMIT ?1",
    )?;
    let rows = statement.query_map([limit], triplet_row)?;
    rows.collect()
}

/// A row of `net_text, sender, recipient, first_seen, last_seen, attempts, passed_at,
/// expires_at`.
pub(super) fn triplet_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TripletRow> {
    Ok(TripletRow {
        network: row.get(0)?,
        sender: row.get(1)?,
        recipient: row.get(2)?,
        first_seen: unsigned(row.get(3)?),
        last_seen: unsigned(row.get(4)?),
        attempts: u32::try_from(row.get::<_, i64>(5)?.max(0)).unwrap_or(u32::MAX),
        passed_at: row.get::<_, Option<i64>>(6)?.map(unsigned),
        expires_at: unsigned(row.get(7)?),
    })
}

/// The triplet part of a filter as SQL: a NULL parameter matches anything.
pub(super) const TRIPLET_FILTER: &str =
    "(?1 IS NULL OR net_text = ?1) AND (?2 IS NULL OR sender = ?2)
     AND (?3 IS NULL OR recipient = ?3)";

pub(super) fn find(
    conn: &mut Connection,
    filter: &GreylistFilter,
    limit: usize,
) -> rusqlite::Result<GreylistEntries> {
    let mut entries = GreylistEntries::default();
    if filter.names_triplets() {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT net_text, sender, recipient, first_seen, last_seen, attempts, passed_at,
                    expires_at
             FROM triplets WHERE {TRIPLET_FILTER} ORDER BY expires_at DESC LIMIT ?4"
        );
        let mut statement = conn.prepare(&sql)?;
        let rows = statement.query_map(
            params![filter.network, filter.sender, filter.recipient, limit],
            triplet_row,
        )?;
        entries.triplets = rows.collect::<rusqlite::Result<_>>()?;
    }
    if let Some(client) = filter.client {
        entries.awl = conn
            .prepare_cached(
                "SELECT client, first_seen, last_seen, expires_at FROM awl WHERE key = ?1",
            )?
            .query_row([&awl_key(client)[..]], |row| {
                Ok(AwlRow {
                    client: row.get(0)?,
                    first_seen: unsigned(row.get(1)?),
                    last_seen: unsigned(row.get(2)?),
                    expires_at: unsigned(row.get(3)?),
                })
            })
            .optional()?;
    }
    Ok(entries)
}

pub(super) fn matching_triplet_keys(
    conn: &mut Connection,
    filter: &GreylistFilter,
) -> rusqlite::Result<Vec<Vec<u8>>> {
    let sql = format!("SELECT key FROM triplets WHERE {TRIPLET_FILTER}");
    let mut statement = conn.prepare(&sql)?;
    let keys = statement.query_map(
        params![filter.network, filter.sender, filter.recipient],
        |row| row.get(0),
    )?;
    keys.collect()
}
