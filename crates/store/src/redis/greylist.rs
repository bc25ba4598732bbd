//! The greylist check: the engine decides here, a compare-and-set script makes the
//! transition atomic (see the module documentation of `redis`).

use redis::aio::ConnectionManager;
use redis::{RedisError, Value};
use spamgate_engine::UnixTime;
use spamgate_engine::greylist::{
    AwlState, GreylistInputs, GreylistKeys, GreylistOutcome, GreylistParams, GreylistWrites, Key,
    TripletState, needs_pending_count,
};

use super::codec::{self, StoredAwl, StoredTriplet};
use super::{CAS_ATTEMPTS, LOCK_STRIPES, RedisStore, recent};
use crate::{GreylistStore, StoreError};

/// KEYS: AWL entry, triplet, network's pending set. ARGV: now (seconds).
/// Returns the two values (nil when absent) and the live pending count.
pub(super) const READ_LUA: &str = r"
return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]),
        redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[1], '+inf')}
";

/// KEYS: as READ_LUA, then 4 the pending set the triplet leaves (its owner's: the
/// network that created it). ARGV: 1 expected AWL value, 2 expected triplet value (''
/// for absent), 3 pending cap to re-check ('' for none), 4 now, 5 new triplet value (''
/// for none), 6 its TTL in ms, 7 new AWL value, 8 its TTL, 9 the triplet's member name
/// in the pending sets, 10 'add' (to KEYS[3]) or '', 11 the member's score (expiry),
/// 12 'leave' (KEYS[4]) or ''.
/// Returns {1} when written, else {0, awl, triplet, pending} as READ_LUA would.
pub(super) const CAS_LUA: &str = r"
local awl = redis.call('GET', KEYS[1])
local triplet = redis.call('GET', KEYS[2])
local since = '(' .. ARGV[4]
if (awl or '') ~= ARGV[1] or (triplet or '') ~= ARGV[2] then
  return {0, awl, triplet, redis.call('ZCOUNT', KEYS[3], since, '+inf')}
end
if ARGV[3] ~= '' then
  local pending = redis.call('ZCOUNT', KEYS[3], since, '+inf')
  if pending >= tonumber(ARGV[3]) then
    return {0, awl, triplet, pending}
  end
end
if ARGV[5] ~= '' then redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6]) end
if ARGV[7] ~= '' then redis.call('SET', KEYS[1], ARGV[7], 'PX', ARGV[8]) end
if ARGV[12] == 'leave' then
  redis.call('ZREM', KEYS[4], ARGV[9])
end
if ARGV[10] == 'add' then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[4])
  redis.call('ZADD', KEYS[3], ARGV[11], ARGV[9])
  local ttl = tonumber(ARGV[6])
  if redis.call('PTTL', KEYS[3]) < ttl then redis.call('PEXPIRE', KEYS[3], ttl) end
end
return {1}
";

/// What the read (or a failed compare-and-set) saw: raw values, for comparing.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    awl: Option<Vec<u8>>,
    triplet: Option<Vec<u8>>,
    pending: u32,
}

/// The key names of one check.
struct CheckNames {
    awl: String,
    triplet: String,
    network: String,
    member: String,
}

impl RedisStore {
    /// The read is idempotent: after a dropped connection it is sent once more, on the
    /// connection the manager is already re-establishing.
    async fn read_snapshot(
        &self,
        conn: &mut ConnectionManager,
        names: &CheckNames,
        now: UnixTime,
    ) -> Result<Snapshot, RedisError> {
        let mut invocation = self.read.key(&names.awl);
        invocation.key(&names.triplet).key(&names.network).arg(now);
        let reply = match invocation.invoke_async(conn).await {
            Err(error) if error.is_unrecoverable_error() => {
                *conn = self.link.conn();
                invocation.invoke_async(conn).await?
            }
            other => other?,
        };
        parse_snapshot(reply)
    }

    async fn greylist_bounded(
        &self,
        keys: &GreylistKeys,
        params: &GreylistParams,
        now: UnixTime,
        record: bool,
    ) -> Result<Result<GreylistOutcome, StoreError>, RedisError> {
        if let Some(outcome) = self.recent_awl_answer(keys, params, now) {
            return Ok(Ok(outcome));
        }
        let names = CheckNames {
            awl: self.names.awl(&keys.awl_key),
            triplet: self.names.triplet(&keys.triplet_key),
            network: self.names.network(&keys.network_key),
            member: codec::hex(&keys.triplet_key),
        };
        let mut conn = self.link.conn();
        // A dry run cannot compare-and-set, so it reads; a real check starts from a
        // guess (see `recent`), and a failed compare-and-set brings the real values.
        let mut verified = !record;
        let mut snapshot = if record {
            self.guess(keys)
        } else {
            let snapshot = self.read_snapshot(&mut conn, &names, now).await?;
            self.remember(keys, &snapshot);
            snapshot
        };
        let mut _guards = None;
        for _ in 0..CAS_ATTEMPTS {
            let awl = snapshot
                .awl
                .as_deref()
                .and_then(codec::decode_awl)
                .filter(|awl| awl.expires_at > now);
            let triplet = snapshot
                .triplet
                .as_deref()
                .and_then(codec::decode_triplet)
                .filter(|triplet| triplet.expires_at > now);
            let awl_state = awl.as_ref().map(|awl| awl.state);
            let triplet_state = triplet.as_ref().map(|triplet| triplet.state);
            let counted =
                needs_pending_count(params, awl_state.as_ref(), triplet_state.as_ref(), now);
            let inputs = GreylistInputs {
                awl: awl_state,
                triplet: triplet_state,
                pending_in_network: if counted { snapshot.pending } else { 0 },
            };
            let (outcome, writes) = spamgate_engine::greylist::decide(params, &inputs, now);
            if !record || (writes.triplet.is_none() && writes.awl.is_none()) {
                if verified {
                    return Ok(Ok(outcome));
                }
                // A guess may not answer by itself: read what is stored.
                snapshot = self.read_snapshot(&mut conn, &names, now).await?;
                self.remember(keys, &snapshot);
                verified = true;
                continue;
            }
            if _guards.is_none() {
                _guards = Some(self.lock(keys).await);
            }
            // The decision read the count only to create a triplet: the write needs the
            // room to still be there, not the same count (nor the guessed one).
            let cap = (counted && matches!(outcome, GreylistOutcome::New { .. }))
                .then_some(params.max_pending_per_network);
            let plan = WritePlan::new(keys, triplet.as_ref(), &writes, now);
            let leaves = self.names.network(&plan.leaves.unwrap_or(keys.network_key));
            let mut invocation = self.cas.key(&names.awl);
            invocation
                .key(&names.triplet)
                .key(&names.network)
                .key(&leaves)
                .arg(snapshot.awl.as_deref().unwrap_or_default())
                .arg(snapshot.triplet.as_deref().unwrap_or_default())
                .arg(cap.map(|cap| cap.to_string()).unwrap_or_default())
                .arg(now)
                .arg(plan.triplet.as_deref().unwrap_or_default())
                .arg(plan.triplet_ttl_ms)
                .arg(plan.awl.as_deref().unwrap_or_default())
                .arg(plan.awl_ttl_ms)
                .arg(&names.member)
                .arg(plan.pending_action)
                .arg(plan.pending_score)
                .arg(if plan.leaves.is_some() { "leave" } else { "" });
            let reply: Value = invocation.invoke_async(&mut conn).await?;
            match parse_cas(reply)? {
                None => {
                    self.remember(
                        keys,
                        &Snapshot {
                            awl: plan.awl.or(snapshot.awl),
                            triplet: plan.triplet.or(snapshot.triplet),
                            pending: 0,
                        },
                    );
                    return Ok(Ok(outcome));
                }
                Some(fresh) => {
                    self.remember(keys, &fresh);
                    snapshot = fresh;
                    verified = true;
                }
            }
        }
        Ok(Err(StoreError::Redis(format!(
            "greylist entry {} changed by other hosts {CAS_ATTEMPTS} times during one check",
            names.triplet
        ))))
    }

    /// An auto-whitelist hit answered from an entry seen alive a moment ago (see
    /// `recent`): only when the stored entry could not decide otherwise.
    fn recent_awl_answer(
        &self,
        keys: &GreylistKeys,
        params: &GreylistParams,
        now: UnixTime,
    ) -> Option<GreylistOutcome> {
        let seen = self.recent_awl.get(&keys.awl_key)?;
        if seen.at.elapsed() > recent::AWL_ANSWER_AGE {
            return None;
        }
        let (state, expires_at) = seen.value?;
        if expires_at <= now {
            return None;
        }
        let inputs = GreylistInputs {
            awl: Some(state),
            triplet: None,
            pending_in_network: 0,
        };
        let (outcome, writes) = spamgate_engine::greylist::decide(params, &inputs, now);
        let writes_nothing = writes.awl.is_none() && writes.triplet.is_none();
        (writes_nothing && matches!(outcome, GreylistOutcome::AutoWhitelisted { .. }))
            .then_some(outcome)
    }

    /// The stored values as this process last saw them (encoded as it would have
    /// stored them); unknown ones as absent.
    fn guess(&self, keys: &GreylistKeys) -> Snapshot {
        let awl = self
            .recent_awl
            .get(&keys.awl_key)
            .and_then(|seen| seen.value)
            .map(|(state, expires_at)| codec::encode_awl(&awl_value(keys, state, expires_at)));
        let triplet = self
            .recent_triplets
            .get(&keys.triplet_key)
            .and_then(|seen| seen.value)
            // Guessed as owned by this client's network: a triplet another network
            // created fails the compare-and-set once and is read.
            .map(|(state, expires_at)| {
                codec::encode_triplet(&triplet_value(keys, keys.network_key, state, expires_at))
            });
        Snapshot {
            awl,
            triplet,
            pending: 0,
        }
    }

    /// Values this build cannot read are remembered as unknown.
    fn remember(&self, keys: &GreylistKeys, snapshot: &Snapshot) {
        match snapshot.awl.as_deref().map(codec::decode_awl) {
            None => self.recent_awl.put(keys.awl_key, None),
            Some(Some(awl)) => self
                .recent_awl
                .put(keys.awl_key, Some((awl.state, awl.expires_at))),
            Some(None) => {}
        }
        match snapshot.triplet.as_deref().map(codec::decode_triplet) {
            None => self.recent_triplets.put(keys.triplet_key, None),
            Some(Some(triplet)) => self
                .recent_triplets
                .put(keys.triplet_key, Some((triplet.state, triplet.expires_at))),
            Some(None) => {}
        }
    }

    /// Locks the stripes of the triplet and the AWL entry, in index order.
    async fn lock(&self, keys: &GreylistKeys) -> [Option<tokio::sync::MutexGuard<'_, ()>>; 2] {
        let mut stripes = [stripe(&keys.triplet_key), stripe(&keys.awl_key)];
        stripes.sort_unstable();
        let first = self.locks[stripes[0]].lock().await;
        let second = if stripes[1] != stripes[0] {
            Some(self.locks[stripes[1]].lock().await)
        } else {
            None
        };
        [Some(first), second]
    }
}

/// The lock stripe of a key (FNV-1a: keys are hashes already, names are not).
pub(super) fn stripe(key: &[u8]) -> usize {
    let hash = key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % LOCK_STRIPES as u64) as usize
}

/// The value this check stores for its triplet in `state`.
/// `owner`: the network whose pending cap the triplet counts toward, the one that
/// created it (a domain-keyed triplet may be retried from another network).
fn triplet_value(
    keys: &GreylistKeys,
    owner: Key,
    state: TripletState,
    expires_at: UnixTime,
) -> StoredTriplet {
    StoredTriplet {
        state,
        expires_at,
        network_key: owner,
        network: keys.network.clone(),
        sender: keys.sender.clone(),
        recipient: keys.recipient.clone(),
    }
}

/// The value this check stores for its client's AWL entry in `state`.
fn awl_value(keys: &GreylistKeys, state: AwlState, expires_at: UnixTime) -> StoredAwl {
    StoredAwl {
        state,
        expires_at,
        client: keys.client.to_string(),
    }
}

/// What one compare-and-set writes.
struct WritePlan {
    triplet: Option<Vec<u8>>,
    triplet_ttl_ms: u64,
    awl: Option<Vec<u8>>,
    awl_ttl_ms: u64,
    pending_action: &'static str,
    pending_score: UnixTime,
    /// The owner's pending set the triplet leaves (it passed, or a new life replaces it).
    leaves: Option<Key>,
}

impl WritePlan {
    fn new(
        keys: &GreylistKeys,
        old: Option<&StoredTriplet>,
        writes: &GreylistWrites,
        now: UnixTime,
    ) -> WritePlan {
        // Relative TTLs: Redis deletes the key when the caller's clock says it expired.
        let ttl_ms = |expires_at: UnixTime| expires_at.saturating_sub(now).max(1) * 1000;
        let mut plan = WritePlan {
            triplet: None,
            triplet_ttl_ms: 0,
            awl: None,
            awl_ttl_ms: 0,
            pending_action: "",
            pending_score: 0,
            leaves: None,
        };
        if let Some((state, expires_at)) = writes.triplet {
            let was_pending = old.filter(|old| old.state.passed_at.is_none());
            let same_life = old.filter(|old| old.state.first_seen == state.first_seen);
            let owner = same_life.map_or(keys.network_key, |old| old.network_key);
            if state.passed_at.is_none() {
                // A new pending triplet joins this client's network's set (leaving its
                // previous life's); a retry of one is already in its owner's.
                if same_life.is_none() {
                    plan.pending_action = "add";
                    plan.pending_score = expires_at;
                    plan.leaves = was_pending.map(|old| old.network_key);
                }
            } else {
                plan.leaves = was_pending.map(|old| old.network_key);
            }
            plan.triplet = Some(codec::encode_triplet(&triplet_value(
                keys, owner, state, expires_at,
            )));
            plan.triplet_ttl_ms = ttl_ms(expires_at);
        }
        if let Some((state, expires_at)) = writes.awl {
            plan.awl = Some(codec::encode_awl(&awl_value(keys, state, expires_at)));
            plan.awl_ttl_ms = ttl_ms(expires_at);
        }
        plan
    }
}

fn parse_snapshot(reply: Value) -> Result<Snapshot, RedisError> {
    let (awl, triplet, pending): (Option<Vec<u8>>, Option<Vec<u8>>, i64) =
        redis::from_redis_value(reply)?;
    Ok(Snapshot {
        awl,
        triplet,
        pending: u32::try_from(pending.max(0)).unwrap_or(u32::MAX),
    })
}

/// `None` when written, else the fresh values.
fn parse_cas(reply: Value) -> Result<Option<Snapshot>, RedisError> {
    let Value::Array(mut items) = reply else {
        return Err(unexpected("compare-and-set reply is not an array"));
    };
    match items.first() {
        Some(Value::Int(1)) => Ok(None),
        Some(Value::Int(0)) if items.len() == 4 => {
            let rest = Value::Array(items.split_off(1));
            parse_snapshot(rest).map(Some)
        }
        _ => Err(unexpected("unexpected compare-and-set reply")),
    }
}

fn unexpected(what: &'static str) -> RedisError {
    RedisError::from((redis::ErrorKind::Client, what))
}

impl GreylistStore for RedisStore {
    async fn greylist(
        &self,
        keys: &GreylistKeys,
        params: &GreylistParams,
        now: UnixTime,
        record: bool,
    ) -> Result<GreylistOutcome, StoreError> {
        self.bounded(self.greylist_bounded(keys, params, now, record))
            .await?
    }
}
