//! Learned exemptions in Redis: one hash (organisation → `expires_at|record JSON`), a
//! sorted set of every organisation by `expires_at` (how many are tracked; what to
//! forget) and one of the learned ones by `learned_until` (how many are exempted). The
//! engine's `observe` runs here, in Rust; a compare-and-set script writes its result
//! only if the record and the caps it was decided on still hold, else it is decided
//! again. Each write also forgets a few expired organisations.

use std::sync::LazyLock;

use redis::Script;
use spamgate_engine::UnixTime;
use spamgate_engine::learn::{
    LearnCounts, LearnEvent, LearnParams, LearnRecord, Observation, observe,
};

use super::RedisStore;
use crate::{LearnAdmin, LearnStore, StoreError};

/// KEYS: hash, by-expiry, by-learned-until. ARGV: org, now.
/// Returns {value or false, learned count, tracked count}.
const READ_LUA: &str = r"
local value = redis.call('HGET', KEYS[1], ARGV[1])
local learned = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[2], '+inf')
local tracked = redis.call('ZCOUNT', KEYS[2], '(' .. ARGV[2], '+inf')
return {value, learned, tracked}
";

/// KEYS: hash, by-expiry, by-learned-until. ARGV: org, expected value ('' = none),
/// new value, expires_at, learned_until (0 = not learned), now, max_entries (0 = no
/// check), max_tracked (0 = no check). Returns 1 when written, 0 on a conflict.
const CAS_LUA: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[2] then return 0 end
local now = ARGV[6]
if tonumber(ARGV[7]) > 0 and redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf') >= tonumber(ARGV[7]) then
  return 0
end
if tonumber(ARGV[8]) > 0 and redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf') >= tonumber(ARGV[8]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
if tonumber(ARGV[5]) > 0 then
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
else
  redis.call('ZREM', KEYS[3], ARGV[1])
end
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 16)
for _, org in ipairs(old) do
  redis.call('HDEL', KEYS[1], org)
  redis.call('ZREM', KEYS[2], org)
  redis.call('ZREM', KEYS[3], org)
end
return 1
";

/// KEYS: hash, by-expiry, by-learned-until. ARGV: org. Returns 1 if it was there.
const REMOVE_LUA: &str = r"
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return removed
";

static READ: LazyLock<Script> = LazyLock::new(|| Script::new(READ_LUA));
static CAS: LazyLock<Script> = LazyLock::new(|| Script::new(CAS_LUA));
static REMOVE: LazyLock<Script> = LazyLock::new(|| Script::new(REMOVE_LUA));

/// Decisions made again at most this often when other hosts keep changing the record.
const MAX_ATTEMPTS: usize = 8;

fn encode(record: &LearnRecord, params: &LearnParams) -> String {
    let json = serde_json::to_string(record).unwrap_or_default();
    format!("{}|{json}", record.expires_at(params))
}

/// The record unless it is past its expiry at `now` or unreadable (a newer writer).
fn decode(value: &str, now: UnixTime) -> Option<LearnRecord> {
    let (expires_at, json) = value.split_once('|')?;
    let expires_at: UnixTime = expires_at.parse().ok()?;
    if expires_at <= now {
        return None;
    }
    serde_json::from_str(json).ok()
}

impl RedisStore {
    fn learn_keys(&self) -> [String; 3] {
        let prefix = self.names.prefix();
        [
            format!("{prefix}learn"),
            format!("{prefix}learn:exp"),
            format!("{prefix}learn:until"),
        ]
    }

    async fn learn_read(
        &self,
        org: &str,
        now: UnixTime,
    ) -> Result<(Option<String>, usize, usize), StoreError> {
        let [hash, exp, until] = self.learn_keys();
        let mut invocation = READ.key(&hash);
        invocation.key(&exp).key(&until).arg(org).arg(now);
        let mut conn = self.link.conn();
        self.bounded(invocation.invoke_async(&mut conn)).await
    }
}

impl LearnStore for RedisStore {
    async fn learned(&self, org: &str, now: UnixTime) -> Result<Option<LearnRecord>, StoreError> {
        let [hash, ..] = self.learn_keys();
        let mut conn = self.link.conn();
        let value: Option<String> = self
            .bounded(
                redis::cmd("HGET")
                    .arg(&hash)
                    .arg(org)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(value.as_deref().and_then(|v| decode(v, now)))
    }

    async fn learn_observe(
        &self,
        observation: &Observation,
        params: &LearnParams,
        now: UnixTime,
    ) -> Result<LearnEvent, StoreError> {
        let [hash, exp, until] = self.learn_keys();
        for _ in 0..MAX_ATTEMPTS {
            let (raw, learned, tracked) = self.learn_read(&observation.org, now).await?;
            let stored = raw.as_deref().and_then(|v| decode(v, now));
            let was_learned = stored.as_ref().is_some_and(|r| r.is_learned(now));
            let was_tracked = stored.is_some();
            let counts = LearnCounts { learned, tracked };
            let observed = observe(stored, observation, counts, params, now);
            let Some(record) = observed.write else {
                return Ok(observed.event);
            };
            let newly_learned = record.is_learned(now) && !was_learned;
            let mut invocation = CAS.key(&hash);
            invocation
                .key(&exp)
                .key(&until)
                .arg(&observation.org)
                .arg(raw.unwrap_or_default())
                .arg(encode(&record, params))
                .arg(record.expires_at(params))
                .arg(
                    record
                        .learned_until
                        .filter(|_| record.is_learned(now))
                        .unwrap_or(0),
                )
                .arg(now)
                .arg(if newly_learned { params.max_entries } else { 0 })
                .arg(if was_tracked { 0 } else { params.max_tracked });
            let mut conn = self.link.conn();
            let written: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
            if written == 1 {
                return Ok(observed.event);
            }
        }
        Err(StoreError::Redis(format!(
            "learned record of {} kept changing",
            observation.org
        )))
    }
}

impl LearnAdmin for RedisStore {
    async fn learned_list(
        &self,
        now: UnixTime,
        limit: usize,
    ) -> Result<Vec<LearnRecord>, StoreError> {
        let [hash, ..] = self.learn_keys();
        let mut conn = self.link.conn();
        let pairs: Vec<(String, String)> = self
            .bounded(redis::cmd("HGETALL").arg(&hash).query_async(&mut conn))
            .await?;
        let mut records: Vec<LearnRecord> = pairs
            .iter()
            .filter_map(|(_, value)| decode(value, now))
            .collect();
        // As SQLite orders them: learned first, the latest-expiring first, then by name.
        records.sort_by(|a, b| {
            let key = |r: &LearnRecord| {
                let learned = r.is_learned(now);
                (
                    std::cmp::Reverse(learned),
                    std::cmp::Reverse(if learned { r.learned_until } else { None }),
                )
            };
            key(a).cmp(&key(b)).then_with(|| a.org.cmp(&b.org))
        });
        records.truncate(limit);
        Ok(records)
    }

    async fn learned_remove(&self, org: &str) -> Result<bool, StoreError> {
        let [hash, exp, until] = self.learn_keys();
        let mut invocation = REMOVE.key(&hash);
        invocation
            .key(&exp)
            .key(&until)
            .arg(org.to_ascii_lowercase());
        let mut conn = self.link.conn();
        let removed: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(removed > 0)
    }

    async fn learned_clear(&self) -> Result<u64, StoreError> {
        let [hash, exp, until] = self.learn_keys();
        let mut conn = self.link.conn();
        let count: u64 = self
            .bounded(redis::cmd("HLEN").arg(&hash).query_async(&mut conn))
            .await?;
        let _: i64 = self
            .bounded(
                redis::cmd("DEL")
                    .arg(&hash)
                    .arg(&exp)
                    .arg(&until)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_expire() {
        let params = LearnParams::default();
        let record = LearnRecord {
            org: "example.com".into(),
            networks: Vec::new(),
            learned_at: Some(10),
            learned_until: Some(100),
            refused_until: None,
            refused: None,
        };
        let value = encode(&record, &params);
        assert!(value.starts_with("100|"), "{value}");
        assert_eq!(decode(&value, 99), Some(record));
        assert_eq!(decode(&value, 100), None);
        assert_eq!(decode("garbage", 1), None);
    }
}
