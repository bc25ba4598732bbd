//! Submission accounts, their GCRA states and the event log in Redis.
//!
//! - `acct:USER` holds the account as JSON; the sorted set `accts` (all scores 0)
//!   lists the names in byte order, as SQLite's index does.
//! - `rate:KIND:USER` holds one theoretical arrival time (ms, decimal) with a TTL of
//!   one period past it. A charge reads the states, applies the engine's [`gcra`] here
//!   and writes them back with a compare-and-set script, all or nothing.
//! - Events: members `SEQ(16 hex digits)JSON` in `ev` (all) and `ev:u:USER`, scored by
//!   time; equal times list the later recorded first. `ev:users` remembers who has
//!   events, so expiry trims their sets without a SCAN.

use std::sync::LazyLock;

use redis::Script;
use spamgate_engine::UnixTime;
use spamgate_engine::outbound::{Account, GcraOutcome, LimitKind, Rate, gcra};

use super::{CAS_ATTEMPTS, RedisStore};
use crate::{AccountAdmin, AccountEvent, AccountStore, StoreError};

/// KEYS: the rate states. ARGV: for each key its expected value ('' for absent), then
/// for each its new value and TTL (ms). Returns 1 when written, 0 if one changed.
const CHARGE_LUA: &str = r"
local n = #KEYS
for i = 1, n do
  if (redis.call('GET', KEYS[i]) or '') ~= ARGV[i] then return 0 end
end
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[n + 2 * i - 1], 'PX', ARGV[n + 2 * i])
end
return 1
";

/// KEYS: all events, the user's events, the sequence, the users with events.
/// ARGV: time, JSON, username.
const RECORD_LUA: &str = r"
local seq = redis.call('INCR', KEYS[3])
local member = string.format('%016x', seq) .. ARGV[2]
redis.call('ZADD', KEYS[1], ARGV[1], member)
redis.call('ZADD', KEYS[2], ARGV[1], member)
local last = redis.call('ZSCORE', KEYS[4], ARGV[3])
if not last or tonumber(last) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[4], ARGV[1], ARGV[3])
end
return seq
";

static CHARGE: LazyLock<Script> = LazyLock::new(|| Script::new(CHARGE_LUA));
static RECORD: LazyLock<Script> = LazyLock::new(|| Script::new(RECORD_LUA));

/// Hex digits of the sequence number in front of each event's JSON.
const SEQ_DIGITS: usize = 16;

impl RedisStore {
    fn account_key(&self, username: &str) -> String {
        format!("{}acct:{username}", self.names.prefix())
    }

    fn accounts_key(&self) -> String {
        format!("{}accts", self.names.prefix())
    }

    pub(super) fn rate_key(&self, kind: LimitKind, username: &str) -> String {
        format!("{}rate:{}:{username}", self.names.prefix(), kind.id())
    }

    fn events_key(&self, username: Option<&str>) -> String {
        match username {
            None => format!("{}ev", self.names.prefix()),
            Some(username) => format!("{}ev:u:{username}", self.names.prefix()),
        }
    }

    fn event_users_key(&self) -> String {
        format!("{}ev:users", self.names.prefix())
    }

    /// The whole event log, oldest first (recording order within a second).
    pub(super) async fn all_events(&self) -> Result<Vec<AccountEvent>, StoreError> {
        let key = self.events_key(None);
        let mut conn = self.link.conn();
        let members: Vec<Vec<u8>> = self
            .bounded(
                redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut conn),
            )
            .await?;
        members
            .iter()
            .map(|member| parse_event(&key, member))
            .collect()
    }

    /// Deletes events at or before `cutoff`; returns how many (of the full log).
    pub(super) async fn expire_events(&self, cutoff: UnixTime) -> Result<u64, StoreError> {
        let mut conn = self.link.conn();
        let all = self.events_key(None);
        let removed: u64 = self
            .bounded(
                redis::cmd("ZREMRANGEBYSCORE")
                    .arg(&all)
                    .arg("-inf")
                    .arg(cutoff)
                    .query_async(&mut conn),
            )
            .await?;
        // Users whose newest event is that old lose their whole set; the others only
        // their old events.
        let users_key = self.event_users_key();
        let users: Vec<(String, f64)> = self
            .bounded(
                redis::cmd("ZRANGE")
                    .arg(&users_key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(&mut conn),
            )
            .await?;
        for chunk in users.chunks(100) {
            let mut pipe = redis::pipe();
            for (user, last) in chunk {
                let key = self.events_key(Some(user));
                if *last <= cutoff as f64 {
                    pipe.del(&key).ignore();
                    pipe.zrem(&users_key, user).ignore();
                } else {
                    pipe.zrembyscore(&key, "-inf", cutoff).ignore();
                }
            }
            self.run_pipe(&mut conn, &pipe).await?;
        }
        Ok(removed)
    }
}

fn parse_event(key: &str, member: &[u8]) -> Result<AccountEvent, StoreError> {
    let json = member.get(SEQ_DIGITS..).unwrap_or_default();
    serde_json::from_slice(json).map_err(|e| malformed("event", key, e))
}

fn malformed(what: &str, key: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Redis(format!("malformed {what} at {key}: {error}"))
}

impl AccountStore for RedisStore {
    async fn account(&self, username: &str) -> Result<Option<Account>, StoreError> {
        let key = self.account_key(username);
        let mut conn = self.link.conn();
        let json: Option<Vec<u8>> = self
            .bounded(redis::cmd("GET").arg(&key).query_async(&mut conn))
            .await?;
        json.map(|json| serde_json::from_slice(&json).map_err(|e| malformed("account", &key, e)))
            .transpose()
    }

    async fn charge(
        &self,
        username: &str,
        charges: &[(LimitKind, Rate, u32)],
        now_ms: u64,
        record: bool,
    ) -> Result<Vec<(LimitKind, GcraOutcome)>, StoreError> {
        // The distinct kinds, in order of first appearance, and their keys.
        let mut kinds: Vec<LimitKind> = Vec::new();
        for (kind, ..) in charges {
            if !kinds.contains(kind) {
                kinds.push(*kind);
            }
        }
        let keys: Vec<String> = kinds
            .iter()
            .map(|kind| self.rate_key(*kind, username))
            .collect();
        let attempt = async || -> Result<Option<Vec<(LimitKind, GcraOutcome)>>, StoreError> {
            let mut conn = self.link.conn();
            let stored: Vec<Option<String>> = if keys.is_empty() {
                Vec::new()
            } else {
                self.bounded(redis::cmd("MGET").arg(&keys).query_async(&mut conn))
                    .await?
            };
            let tat_of = |index: usize| -> u64 {
                stored[index]
                    .as_deref()
                    .and_then(|text| text.parse().ok())
                    .unwrap_or(0)
            };
            let mut outcomes: Vec<(LimitKind, GcraOutcome)> = Vec::with_capacity(charges.len());
            for (kind, rate, cost) in charges {
                // A kind charged twice continues from its earlier charge in this call.
                let tat_ms = match outcomes.iter().rev().find(|(k, _)| k == kind) {
                    Some((_, earlier)) => earlier.tat_ms,
                    None => tat_of(kinds.iter().position(|k| k == kind).unwrap_or(0)),
                };
                outcomes.push((*kind, gcra(rate, tat_ms, *cost, now_ms)));
            }
            if !record || !outcomes.iter().all(|(_, outcome)| outcome.allowed) {
                return Ok(Some(outcomes));
            }
            let mut invocation = CHARGE.prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            for value in &stored {
                invocation.arg(value.as_deref().unwrap_or_default());
            }
            for kind in &kinds {
                // The last charge of a kind holds its final state.
                let (index, (_, outcome)) = outcomes
                    .iter()
                    .enumerate()
                    .rfind(|(_, (k, _))| k == kind)
                    .expect("every kind was charged");
                let period_ms = charges[index].1.period.as_millis() as u64;
                // As in SQLite: kept one period past the TAT, after which gcra would
                // treat it as fresh anyway.
                let expires_ms = outcome.tat_ms.div_ceil(1000) * 1000 + period_ms;
                invocation
                    .arg(outcome.tat_ms)
                    .arg(expires_ms.saturating_sub(now_ms).max(1));
            }
            let written: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
            Ok((written == 1).then_some(outcomes))
        };
        // Charges of one account from this process wait for each other, so conflicts
        // only come from other hosts.
        self.within(async {
            let _guard = self.locks[super::greylist::stripe(username.as_bytes())].lock().await;
            for _ in 0..CAS_ATTEMPTS {
                if let Some(outcomes) = attempt().await? {
                    return Ok(outcomes);
                }
            }
            Err(StoreError::Redis(format!(
                "rate limits of {username} changed by other hosts {CAS_ATTEMPTS} times during one charge"
            )))
        })
        .await
    }

    async fn record_event(&self, event: &AccountEvent) -> Result<(), StoreError> {
        let json = serde_json::to_string(event)
            .map_err(|e| malformed("event", &self.events_key(None), e))?;
        let mut invocation = RECORD.key(self.events_key(None));
        invocation
            .key(self.events_key(Some(&event.username)))
            .key(format!("{}ev:seq", self.names.prefix()))
            .key(self.event_users_key())
            .arg(event.at)
            .arg(json)
            .arg(&event.username);
        let mut conn = self.link.conn();
        let _: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(())
    }
}

impl AccountAdmin for RedisStore {
    async fn put_account(&self, account: &Account) -> Result<(), StoreError> {
        let key = self.account_key(&account.username);
        let json = serde_json::to_vec(account).map_err(|e| malformed("account", &key, e))?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set(&key, json)
            .ignore()
            .zadd(self.accounts_key(), &account.username, 0)
            .ignore();
        let mut conn = self.link.conn();
        self.bounded(pipe.exec_async(&mut conn)).await
    }

    async fn list_accounts(&self, limit: usize) -> Result<Vec<Account>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.link.conn();
        let stop = isize::try_from(limit - 1).unwrap_or(isize::MAX);
        let names: Vec<String> = self
            .bounded(
                redis::cmd("ZRANGE")
                    .arg(self.accounts_key())
                    .arg(0)
                    .arg(stop)
                    .query_async(&mut conn),
            )
            .await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = names.iter().map(|name| self.account_key(name)).collect();
        let values: Vec<Option<Vec<u8>>> = self
            .bounded(redis::cmd("MGET").arg(&keys).query_async(&mut conn))
            .await?;
        let mut accounts = Vec::with_capacity(values.len());
        for (key, json) in keys.iter().zip(values) {
            if let Some(json) = json {
                accounts
                    .push(serde_json::from_slice(&json).map_err(|e| malformed("account", key, e))?);
            }
        }
        Ok(accounts)
    }

    async fn events(
        &self,
        username: Option<&str>,
        since: UnixTime,
        until: Option<UnixTime>,
        limit: usize,
    ) -> Result<Vec<AccountEvent>, StoreError> {
        if limit == 0 || until.is_some_and(|u| u < since) {
            return Ok(Vec::new());
        }
        let key = self.events_key(username);
        let mut conn = self.link.conn();
        let members: Vec<Vec<u8>> = self
            .bounded(
                redis::cmd("ZREVRANGEBYSCORE")
                    .arg(&key)
                    .arg(until.map_or_else(|| "+inf".to_owned(), |u| u.to_string()))
                    .arg(since)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .query_async(&mut conn),
            )
            .await?;
        members
            .iter()
            .map(|member| parse_event(&key, member))
            .collect()
    }
}
