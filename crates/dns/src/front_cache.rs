//! The front cache of finished list results, in front of hickory's resolver.
//!
//! hickory caches DNS answers, but asking it for a cached answer still costs about 10 µs
//! (query-name formatting and parsing, its lookup future machinery, a moka lookup); under load
//! that was 9–16 % of the daemon's CPU. This cache holds the finished [`ListResult`] per
//! (zone, client) until the answer's own expiry, so a hit costs a hash, a lock and a clone.
//!
//! Only verdicts are stored (`Listed`, `NotListed`), never `Error`: a failing server must be
//! asked again at once when it recovers. Sharded to keep lock contention between worker threads
//! low; bounded: a full shard first drops its expired entries, then the half that expires
//! soonest (the entries with the least time left to be useful).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use crate::ListResult;
use crate::zonespec::ZoneSpec;

/// Shards (at most; fewer when the capacity is tiny, so the bound holds exactly).
const MAX_SHARDS: usize = 16;

/// Distinct zone specs given an identity; specs beyond this are simply not cached (the daemon
/// has a handful, from its configuration).
const MAX_ZONES: usize = 1024;

/// A cached result's key: the zone spec's identity and the client (canonical form, so an
/// IPv4-mapped IPv6 address shares the IPv4 entry, as it shares the query name).
pub(crate) type Key = (u32, IpAddr);

struct Entry {
    result: ListResult,
    expires: Instant,
}

pub(crate) struct FrontCache {
    shards: Box<[Mutex<HashMap<Key, Entry>>]>,
    shard_capacity: usize,
    /// Zone identity per spec. The whole spec is the identity: the filter decides what a
    /// listing is, and specs differing only in weight merely get separate entries.
    zones: RwLock<HashMap<ZoneSpec, u32>>,
}

impl FrontCache {
    /// A cache of at most `capacity` results; `None` for 0 (front cache off).
    pub(crate) fn new(capacity: usize) -> Option<FrontCache> {
        if capacity == 0 {
            return None;
        }
        let shard_count = capacity.min(MAX_SHARDS);
        Some(FrontCache {
            shards: (0..shard_count)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            shard_capacity: capacity / shard_count,
            zones: RwLock::new(HashMap::new()),
        })
    }

    /// The key for `client` in `zone`; `None` when too many distinct zones were seen already.
    pub(crate) fn key(&self, zone: &ZoneSpec, client: IpAddr) -> Option<Key> {
        let client = client.to_canonical();
        let known = self
            .zones
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(zone)
            .copied();
        if let Some(id) = known {
            return Some((id, client));
        }
        let mut zones = self.zones.write().unwrap_or_else(PoisonError::into_inner);
        // Another task may have added it between the two locks.
        if let Some(&id) = zones.get(zone) {
            return Some((id, client));
        }
        if zones.len() >= MAX_ZONES {
            return None;
        }
        let id = u32::try_from(zones.len()).ok()?;
        zones.insert(zone.clone(), id);
        Some((id, client))
    }

    /// The cached result, if it has not expired at `now`.
    pub(crate) fn get(&self, key: &Key, now: Instant) -> Option<ListResult> {
        let shard = self.shard(key);
        let entry = shard.get(key)?;
        (now < entry.expires).then(|| entry.result.clone())
    }

    /// Keeps `result` until `expires`. Errors are refused (never cached), and so is anything
    /// already expired at `now`.
    pub(crate) fn insert(&self, key: Key, result: ListResult, expires: Instant, now: Instant) {
        if matches!(result, ListResult::Error(_)) || expires <= now {
            return;
        }
        let mut shard = self.shard(&key);
        if shard.len() >= self.shard_capacity && !shard.contains_key(&key) {
            shard.retain(|_, e| e.expires > now);
            if shard.len() >= self.shard_capacity {
                let mut expiries: Vec<Instant> = shard.values().map(|e| e.expires).collect();
                let middle = expiries.len() / 2;
                let median = *expiries.select_nth_unstable(middle).1;
                // Keeps fewer than `len` entries (the median itself goes), so there is room.
                shard.retain(|_, e| e.expires > median);
            }
        }
        shard.insert(key, Entry { result, expires });
    }

    /// Entries held (expired ones included until they are dropped).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// The most entries the cache ever holds.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.shard_capacity * self.shards.len()
    }

    fn shard(&self, key: &Key) -> MutexGuard<'_, HashMap<Key, Entry>> {
        let bits = match key.1 {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        // Fold the address and zone into 64 bits, then multiply-shift: the top bits of the
        // product depend on every input bit, so neighbouring clients spread over the shards.
        let folded = (bits as u64) ^ ((bits >> 64) as u64) ^ u64::from(key.0).rotate_left(32);
        let index = (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize % self.shards.len();
        // Nothing panics while a shard is locked; a poisoned lock still holds consistent data.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;

    fn client(n: u32) -> IpAddr {
        // 198.18.0.0/15: the benchmarking range.
        IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + n))
    }

    fn listed() -> ListResult {
        ListResult::Listed {
            answers: vec![Ipv4Addr::new(127, 0, 0, 2)],
            txt: Some("listed".into()),
        }
    }

    #[test]
    fn hit_until_expiry_then_miss() {
        let cache = FrontCache::new(100).unwrap();
        let zone: ZoneSpec = "bl.test".parse().unwrap();
        let key = cache.key(&zone, client(1)).unwrap();
        let now = Instant::now();
        cache.insert(key, listed(), now + Duration::from_secs(60), now);
        assert_eq!(cache.get(&key, now), Some(listed()));
        assert_eq!(
            cache.get(&key, now + Duration::from_secs(59)),
            Some(listed())
        );
        assert_eq!(cache.get(&key, now + Duration::from_secs(60)), None);
    }

    #[test]
    fn errors_and_expired_answers_are_not_stored() {
        let cache = FrontCache::new(100).unwrap();
        let zone: ZoneSpec = "bl.test".parse().unwrap();
        let key = cache.key(&zone, client(1)).unwrap();
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        cache.insert(key, ListResult::Error("SERVFAIL".into()), later, now);
        cache.insert(key, ListResult::NotListed, now, now);
        assert_eq!(cache.get(&key, now), None);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn zone_identity_includes_the_filter_and_mapped_clients_share_an_entry() {
        let cache = FrontCache::new(100).unwrap();
        let plain: ZoneSpec = "bl.test".parse().unwrap();
        let filtered: ZoneSpec = "bl.test=127.0.0.[2..3]".parse().unwrap();
        let other: ZoneSpec = "bl2.test".parse().unwrap();
        let v4: IpAddr = "192.0.2.10".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.10".parse().unwrap();
        let keys = [
            cache.key(&plain, v4).unwrap(),
            cache.key(&filtered, v4).unwrap(),
            cache.key(&other, v4).unwrap(),
        ];
        assert!(keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2]);
        assert_eq!(cache.key(&plain, mapped), Some(keys[0]));
        assert_eq!(cache.key(&plain.clone(), v4), Some(keys[0]));
    }

    #[test]
    fn too_many_zones_are_not_cached() {
        let cache = FrontCache::new(100).unwrap();
        for n in 0..MAX_ZONES {
            let zone: ZoneSpec = format!("bl{n}.test").parse().unwrap();
            assert!(cache.key(&zone, client(1)).is_some());
        }
        let one_more: ZoneSpec = "one-more.test".parse().unwrap();
        assert_eq!(cache.key(&one_more, client(1)), None);
        let known: ZoneSpec = "bl0.test".parse().unwrap();
        assert_eq!(cache.key(&known, client(1)), Some((0, client(1))));
    }

    #[test]
    fn stays_bounded_and_drops_expired_entries_first() {
        let cache = FrontCache::new(160).unwrap();
        assert_eq!(cache.capacity(), 160);
        let zone: ZoneSpec = "bl.test".parse().unwrap();
        let now = Instant::now();
        // Entries that are expired by the time the later ones come in...
        let short: Vec<Key> = (0..80)
            .map(|n| cache.key(&zone, client(n)).unwrap())
            .collect();
        for key in &short {
            cache.insert(
                *key,
                ListResult::NotListed,
                now + Duration::from_secs(1),
                now,
            );
        }
        // ...and far more long-lived entries than fit.
        let later = now + Duration::from_secs(2);
        for n in 1000..3000 {
            let key = cache.key(&zone, client(n)).unwrap();
            let expires = later + Duration::from_secs(u64::from(n));
            cache.insert(key, ListResult::NotListed, expires, later);
            assert!(cache.len() <= 160, "{} entries after {n}", cache.len());
        }
        assert!(short.iter().all(|k| cache.get(k, now).is_none()));
        // The newest entry (the latest expiry) is always kept.
        let newest = cache.key(&zone, client(2999)).unwrap();
        assert_eq!(cache.get(&newest, later), Some(ListResult::NotListed));
    }

    #[test]
    fn tiny_capacities_hold_exactly() {
        assert!(FrontCache::new(0).is_none());
        for capacity in [1, 5, 17, 31] {
            let cache = FrontCache::new(capacity).unwrap();
            let zone: ZoneSpec = "bl.test".parse().unwrap();
            let now = Instant::now();
            for n in 0..200 {
                let key = cache.key(&zone, client(n)).unwrap();
                cache.insert(key, listed(), now + Duration::from_secs(60), now);
            }
            assert!(cache.len() <= capacity, "{capacity}: {}", cache.len());
            assert!(cache.len() >= 1);
        }
    }
}
