//! Learned exemptions: one row per organisational domain, the engine's record as JSON.

use rusqlite::{Connection, OptionalExtension, params};
use spamgate_engine::UnixTime;
use spamgate_engine::learn::{
    LearnCounts, LearnEvent, LearnParams, LearnRecord, Observation, observe,
};

use super::{SqliteStore, sql_int, unsigned};
use crate::{LearnAdmin, LearnStore, StoreError};

impl LearnStore for SqliteStore {
    async fn learned(&self, org: &str, now: UnixTime) -> Result<Option<LearnRecord>, StoreError> {
        // On the writer, in order with the writes: a primary-key lookup, and unlike a read
        // on the read connection it forces no commit of the durability window.
        let org = org.to_string();
        self.write(move |tx| read_record(tx.conn, &org, now)).await
    }

    async fn learn_observe(
        &self,
        observation: &Observation,
        params: &LearnParams,
        now: UnixTime,
    ) -> Result<LearnEvent, StoreError> {
        let observation = observation.clone();
        let params = params.clone();
        self.write(move |tx| observe_step(tx.conn, &observation, &params, now))
            .await
    }
}

impl LearnAdmin for SqliteStore {
    async fn learned_list(
        &self,
        now: UnixTime,
        limit: usize,
    ) -> Result<Vec<LearnRecord>, StoreError> {
        self.read(move |conn| list(conn, now, limit)).await
    }

    async fn learned_remove(&self, org: &str) -> Result<bool, StoreError> {
        let org = org.to_ascii_lowercase();
        self.write_durably(move |tx| {
            tx.conn
                .prepare_cached("DELETE FROM learned WHERE org = ?1")?
                .execute([org])
                .map(|n| n > 0)
        })
        .await
    }

    async fn learned_clear(&self) -> Result<u64, StoreError> {
        self.write_durably(|tx| {
            tx.conn
                .prepare_cached("DELETE FROM learned")?
                .execute([])
                .map(|n| n as u64)
        })
        .await
    }
}

/// A row this build cannot read (a newer writer, damage) counts as absent.
fn decode(text: &str) -> Option<LearnRecord> {
    serde_json::from_str(text).ok()
}

fn read_record(
    conn: &Connection,
    org: &str,
    now: UnixTime,
) -> rusqlite::Result<Option<LearnRecord>> {
    let text: Option<String> = conn
        .prepare_cached("SELECT record FROM learned WHERE org = ?1 AND expires_at > ?2")?
        .query_row(params![org, sql_int(now)], |row| row.get(0))
        .optional()?;
    Ok(text.as_deref().and_then(decode))
}

fn count(conn: &Connection, sql: &str, now: UnixTime) -> rusqlite::Result<usize> {
    let n: i64 = conn
        .prepare_cached(sql)?
        .query_row([sql_int(now)], |row| row.get(0))?;
    Ok(unsigned(n) as usize)
}

pub(super) fn observe_step(
    conn: &Connection,
    observation: &Observation,
    params: &LearnParams,
    now: UnixTime,
) -> rusqlite::Result<LearnEvent> {
    let stored = read_record(conn, &observation.org, now)?;
    let counts = LearnCounts {
        learned: count(
            conn,
            "SELECT count(*) FROM learned WHERE learned_until > ?1",
            now,
        )?,
        tracked: count(
            conn,
            "SELECT count(*) FROM learned WHERE expires_at > ?1",
            now,
        )?,
    };
    let observed = observe(stored, observation, counts, params, now);
    if let Some(record) = &observed.write {
        let text = serde_json::to_string(record)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        conn.prepare_cached(
            "INSERT INTO learned (org, record, learned_until, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (org) DO UPDATE SET record = excluded.record,
                learned_until = excluded.learned_until, expires_at = excluded.expires_at",
        )?
        .execute(params![
            record.org,
            text,
            record.learned_until.map(sql_int),
            sql_int(record.expires_at(params)),
        ])?;
    }
    Ok(observed.event)
}

fn list(conn: &Connection, now: UnixTime, limit: usize) -> rusqlite::Result<Vec<LearnRecord>> {
    let mut statement = conn.prepare_cached(
        "SELECT record FROM learned WHERE expires_at > ?1
         ORDER BY (learned_until > ?1) DESC, learned_until DESC, org LIMIT ?2",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = statement.query_map(params![sql_int(now), limit], |row| row.get::<_, String>(0))?;
    let mut out = Vec::new();
    for text in rows {
        if let Some(record) = decode(&text?) {
            out.push(record);
        }
    }
    Ok(out)
}
