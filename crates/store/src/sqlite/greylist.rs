//! The greylist check: one atomic read-decide-write step on the store thread.

use std::net::IpAddr;

use rusqlite::{Connection, OptionalExtension, params};
use spamgate_engine::UnixTime;
use spamgate_engine::greylist::{
    AwlState, GreylistInputs, GreylistKeys, GreylistOutcome, GreylistParams, Key, TripletState,
    decide, needs_pending_count,
};

use super::writer::Tx;
use super::{SqliteStore, sql_int, unsigned};
use crate::{GreylistStore, StoreError};

pub(super) struct GreylistJob {
    pub(super) triplet_key: Key,
    pub(super) network_key: Key,
    pub(super) awl_key: Key,
    /// Readable texts, stored with new rows; empty when `record` is false.
    pub(super) network: String,
    pub(super) sender: String,
    pub(super) recipient: String,
    pub(super) client: Option<IpAddr>,
    pub(super) params: GreylistParams,
    pub(super) now: UnixTime,
    pub(super) record: bool,
}

impl GreylistStore for SqliteStore {
    async fn greylist(
        &self,
        keys: &GreylistKeys,
        params: &GreylistParams,
        now: UnixTime,
        record: bool,
    ) -> Result<GreylistOutcome, StoreError> {
        let text = |s: &String| if record { s.clone() } else { String::new() };
        let job = GreylistJob {
            triplet_key: keys.triplet_key,
            network_key: keys.network_key,
            awl_key: keys.awl_key,
            network: text(&keys.network),
            sender: text(&keys.sender),
            recipient: text(&keys.recipient),
            client: record.then_some(keys.client),
            params: params.clone(),
            now,
            record,
        };
        self.write(move |tx| greylist_step(tx, &job)).await
    }
}

/// A network's live pending triplets and the earliest of their expiry times (when the
/// count changes by itself).
pub(super) const PENDING_COUNT: &str = "SELECT count(*), min(expires_at) FROM triplets
    WHERE network = ?1 AND passed_at IS NULL AND expires_at > ?2";

/// One greylist request inside the batch transaction.
pub(super) fn greylist_step(
    tx: &mut Tx<'_>,
    job: &GreylistJob,
) -> rusqlite::Result<GreylistOutcome> {
    let conn = tx.conn;
    let now = sql_int(job.now);
    // Rows past expires_at count as absent even before expire() deletes them, so a
    // decision never depends on when expiry last ran.
    let awl = conn
        .prepare_cached("SELECT first_seen, last_seen FROM awl WHERE key = ?1 AND expires_at > ?2")?
        .query_row(params![&job.awl_key[..], now], |row| {
            Ok(AwlState {
                first_seen: unsigned(row.get(0)?),
                last_seen: unsigned(row.get(1)?),
            })
        })
        .optional()?;
    let stored = conn
        .prepare_cached(
            "SELECT first_seen, last_seen, attempts, passed_at, expires_at, network
             FROM triplets WHERE key = ?1 AND expires_at > ?2",
        )?
        .query_row(params![&job.triplet_key[..], now], |row| {
            let state = TripletState {
                first_seen: unsigned(row.get(0)?),
                last_seen: unsigned(row.get(1)?),
                attempts: u32::try_from(row.get::<_, i64>(2)?.max(0)).unwrap_or(u32::MAX),
                passed_at: row.get::<_, Option<i64>>(3)?.map(unsigned),
            };
            // The network whose pending cap the row counts toward: the one that
            // created it, not necessarily this client's (domain-keyed triplets).
            let network: [u8; 16] = row.get(5)?;
            Ok((state, unsigned(row.get(4)?), network))
        })
        .optional()?;
    let triplet = stored.map(|(state, _, _)| state);
    let pending_in_network =
        if needs_pending_count(&job.params, awl.as_ref(), triplet.as_ref(), job.now) {
            match tx.pending.get(&job.network_key, job.now) {
                Some(count) => count,
                None => {
                    // The range scan visits only the network's live pending rows, which
                    // this very check keeps at max_pending_per_network (a LIMIT in a
                    // subquery here made SQLite re-prepare the statement on every call).
                    let (count, earliest) = conn
                        .prepare_cached(PENDING_COUNT)?
                        .query_row(params![&job.network_key[..], now], |row| {
                            Ok((row.get::<_, i64>(0)?, row.get::<_, Option<i64>>(1)?))
                        })?;
                    let count = u32::try_from(count).unwrap_or(u32::MAX);
                    tx.pending
                        .counted(job.network_key, job.now, count, earliest.map(unsigned));
                    count
                }
            }
        } else {
            0
        };
    let inputs = GreylistInputs {
        awl,
        triplet,
        pending_in_network,
    };
    let (outcome, writes) = decide(&job.params, &inputs, job.now);
    if !job.record {
        return Ok(outcome);
    }
    if let Some((state, expires_at)) = writes.triplet {
        match stored {
            Some((old, old_expires_at, row_network)) if old.first_seen == state.first_seen => {
                let moved = update_triplet(conn, job, &old, old_expires_at, &state, expires_at)?;
                if moved && old.passed_at.is_none() {
                    tx.pending.forget(&row_network);
                }
            }
            Some((_, _, row_network)) => {
                // Replaces a live row, which moves to this client's network.
                insert_triplet(conn, job, &state, expires_at)?;
                tx.pending.forget(&row_network);
                tx.pending.forget(&job.network_key);
            }
            None => {
                // Where no live row was: a new pending row counts one more.
                insert_triplet(conn, job, &state, expires_at)?;
                if state.passed_at.is_none() {
                    tx.pending.added(&job.network_key, expires_at);
                } else {
                    tx.pending.forget(&job.network_key);
                }
            }
        }
    }
    if let Some((state, expires_at)) = writes.awl {
        let client = job.client.map(|ip| ip.to_string()).unwrap_or_default();
        conn.prepare_cached(
            "INSERT INTO awl (key, client, first_seen, last_seen, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (key) DO UPDATE SET
                first_seen = excluded.first_seen, last_seen = excluded.last_seen,
                expires_at = excluded.expires_at",
        )?
        .execute(params![
            &job.awl_key[..],
            client,
            sql_int(state.first_seen),
            sql_int(state.last_seen),
            sql_int(expires_at),
        ])?;
    }
    Ok(outcome)
}

/// A new triplet, or one replacing an expired row. The row counts toward the pending
/// cap of the network that created it, so a replaced row takes this client's network.
pub(super) fn insert_triplet(
    conn: &Connection,
    job: &GreylistJob,
    state: &TripletState,
    expires_at: UnixTime,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO triplets (key, network, first_seen, last_seen, attempts, passed_at,
                               expires_at, net_text, sender, recipient)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (key) DO UPDATE SET
            network = excluded.network, first_seen = excluded.first_seen,
            last_seen = excluded.last_seen, attempts = excluded.attempts,
            passed_at = excluded.passed_at, expires_at = excluded.expires_at",
    )?
    .execute(params![
        &job.triplet_key[..],
        &job.network_key[..],
        sql_int(state.first_seen),
        sql_int(state.last_seen),
        i64::from(state.attempts),
        state.passed_at.map(sql_int),
        sql_int(expires_at),
        job.network,
        job.sender,
        job.recipient,
    ])?;
    Ok(())
}

/// A later attempt of a live triplet. SQLite rewrites an index entry whenever its
/// columns are assigned, even to the same value, so only changed columns are set: a
/// too-early retry then touches one table page instead of also two index pages.
/// Returns whether `passed_at` or `expires_at` changed (the row moved in the indexes).
pub(super) fn update_triplet(
    conn: &Connection,
    job: &GreylistJob,
    old: &TripletState,
    old_expires_at: UnixTime,
    state: &TripletState,
    expires_at: UnixTime,
) -> rusqlite::Result<bool> {
    let key = &job.triplet_key[..];
    let last_seen = sql_int(state.last_seen);
    let attempts = i64::from(state.attempts);
    let passed_at = state.passed_at.map(sql_int);
    let expires_at = sql_int(expires_at);
    let passed_changed = old.passed_at != state.passed_at;
    let expiry_changed = sql_int(old_expires_at) != expires_at;
    let moved = passed_changed || expiry_changed;
    match (passed_changed, expiry_changed) {
        (false, false) => conn
            .prepare_cached("UPDATE triplets SET last_seen = ?2, attempts = ?3 WHERE key = ?1")?
            .execute(params![key, last_seen, attempts]),
        (false, true) => conn
            .prepare_cached(
                "UPDATE triplets SET last_seen = ?2, attempts = ?3, expires_at = ?4
                 WHERE key = ?1",
            )?
            .execute(params![key, last_seen, attempts, expires_at]),
        (true, false) => conn
            .prepare_cached(
                "UPDATE triplets SET last_seen = ?2, attempts = ?3, passed_at = ?4
                 WHERE key = ?1",
            )?
            .execute(params![key, last_seen, attempts, passed_at]),
        (true, true) => conn
            .prepare_cached(
                "UPDATE triplets SET last_seen = ?2, attempts = ?3, passed_at = ?4,
                                     expires_at = ?5
                 WHERE key = ?1",
            )?
            .execute(params![key, last_seen, attempts, passed_at, expires_at]),
    }?;
    Ok(moved)
}
