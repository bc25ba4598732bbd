//! Expiry: deletes expired rows in steps capped by rows and time, between batches.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, params};
use spamgate_engine::UnixTime;

use super::sql_int;
use super::writer::{Reply, Writer};
use crate::StoreError;

pub(super) struct ExpireJob {
    pub(super) now: UnixTime,
    /// Events at or before this are deleted.
    pub(super) events_before: UnixTime,
    pub(super) deleted: u64,
    pub(super) reply: Reply<u64>,
}

/// How long one expiry step may delete before the requests queued behind it run.
pub(super) const EXPIRY_STEP_TIME: Duration = Duration::from_millis(2);
/// Rows per DELETE within an expiry step (the step repeats them until its time is up).
pub(super) const EXPIRY_CHUNK: usize = 100;

pub(super) struct ExpirySettings {
    /// Rows deleted per step at most.
    pub(super) batch: usize,
    /// Seconds.
    pub(super) event_retention: u64,
    pub(super) step_time: Duration,
}

/// Deletes at most `limit` expired rows: triplets, AWL entries, rate-limit states
/// and events at or before `events_before`, in that order.
pub(super) fn expire_step(
    conn: &Connection,
    now: UnixTime,
    events_before: UnixTime,
    limit: usize,
) -> rusqlite::Result<u64> {
    // Each deletes through its table's expiry index, at most ?2 rows up to time ?1.
    let deletes = [
        (
            "DELETE FROM triplets WHERE key IN
             (SELECT key FROM triplets WHERE expires_at <= ?1 LIMIT ?2)",
            now,
        ),
        (
            "DELETE FROM awl WHERE key IN
             (SELECT key FROM awl WHERE expires_at <= ?1 LIMIT ?2)",
            now,
        ),
        (
            "DELETE FROM rate_limits WHERE (username, kind) IN
             (SELECT username, kind FROM rate_limits WHERE expires_at <= ?1 LIMIT ?2)",
            now,
        ),
        (
            "DELETE FROM learned WHERE org IN
             (SELECT org FROM learned WHERE expires_at <= ?1 LIMIT ?2)",
            now,
        ),
        (
            "DELETE FROM account_events WHERE id IN
             (SELECT id FROM account_events WHERE at <= ?1 LIMIT ?2)",
            events_before,
        ),
    ];
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut deleted = 0i64;
    for (sql, until) in deletes {
        let left = limit - deleted;
        if left <= 0 {
            break;
        }
        let rows = conn
            .prepare_cached(sql)?
            .execute(params![sql_int(until), left])?;
        deleted += rows as i64;
    }
    Ok(deleted as u64)
}

impl Writer {
    /// After the batch was answered: deletes expired rows of the first expiry in
    /// chunks until the step's row or time budget is spent; answers that expiry when
    /// nothing is left.
    pub(super) fn expiry_step(&mut self, expiring: &mut VecDeque<ExpireJob>) {
        let Some(job) = expiring.front_mut() else {
            return;
        };
        let started = std::time::Instant::now();
        let budget = self.expiry.batch;
        let step_time = self.expiry.step_time;
        let result = (|| -> rusqlite::Result<bool> {
            self.begin()?;
            let mut deleted_now = 0;
            loop {
                let chunk = EXPIRY_CHUNK.min(budget - deleted_now);
                // It deletes only rows expiring at or before `job.now` (its caller's
                // clock): counts that include such rows stop being served.
                self.pending.expired_through(job.now);
                let deleted = expire_step(&self.conn, job.now, job.events_before, chunk)?;
                job.deleted += deleted;
                deleted_now += deleted as usize;
                if deleted < chunk as u64 {
                    return Ok(true);
                }
                if deleted_now >= budget || started.elapsed() >= step_time {
                    return Ok(false);
                }
            }
        })();
        let result = result.map_err(Arc::new).and_then(|done| {
            self.uncommitted += 1;
            if self.window.is_zero() {
                self.commit()?;
            }
            Ok(done)
        });
        match result {
            Ok(false) => {}
            Ok(true) => {
                if let Some(job) = expiring.pop_front() {
                    tracing::debug!(deleted = job.deleted, "store expiry finished");
                    let _ = job.reply.send(Ok(job.deleted));
                }
            }
            // A failing expiry would fail again at once: give it up.
            Err(error) => {
                tracing::warn!(%error, "store expiry failed");
                self.notice_rollback();
                if let Some(job) = expiring.pop_front() {
                    let _ = job.reply.send(Err(StoreError::Sqlite(error)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, params};

    use super::*;
    use crate::sqlite::schema;

    fn fresh() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        conn
    }

    fn insert_triplet(conn: &Connection, n: u8, expires_at: i64) {
        conn.execute(
            "INSERT INTO triplets VALUES (?1, x'00', 0, 0, 1, NULL, ?2, 'n', 's', 'r')",
            params![vec![n; 16], expires_at],
        )
        .unwrap();
    }

    #[test]
    fn an_expiry_step_deletes_at_most_its_limit() {
        let conn = fresh();
        for n in 0..7 {
            insert_triplet(&conn, n, 100);
        }
        insert_triplet(&conn, 200, 101);
        conn.execute("INSERT INTO awl VALUES (x'01', '192.0.2.1', 0, 0, 50)", [])
            .unwrap();
        let steps: Vec<u64> = (0..4)
            .map(|_| expire_step(&conn, 100, 0, 3).unwrap())
            .collect();
        assert_eq!(
            steps,
            [3, 3, 2, 0],
            "1 triplet + 1 AWL entry share the third step"
        );
        let left: i64 = conn
            .query_row("SELECT count(*) FROM triplets", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 1, "the row expiring at 101 stays");
    }

    #[test]
    fn an_expiry_step_covers_rate_limits_and_old_events() {
        let conn = fresh();
        for (user, expires_at) in [("a", 100), ("b", 100), ("c", 101)] {
            conn.execute(
                "INSERT INTO rate_limits VALUES (?1, 'messages-per-hour', 0, ?2)",
                params![user, expires_at],
            )
            .unwrap();
        }
        for at in [10, 20, 21] {
            conn.execute(
                "INSERT INTO account_events (at, username, kind, data, detail)
                 VALUES (?1, 'a', 'rejected', '{}', '')",
                [at],
            )
            .unwrap();
        }
        // Rate-limit rows by expiry time, events by the retention cut-off.
        let steps: Vec<u64> = (0..3)
            .map(|_| expire_step(&conn, 100, 20, 3).unwrap())
            .collect();
        assert_eq!(steps, [3, 1, 0]);
        let left: (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM rate_limits), (SELECT min(at) FROM account_events)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(left, (1, 21));
    }
}
