//! What this process last saw of recently used entries: hints that save round trips.
//!
//! A check first guesses the stored values from here (or "nothing stored") and sends its
//! compare-and-set at once; a wrong guess costs nothing extra, because a failed
//! compare-and-set answers with the fresh values, just as the read would have. So a
//! first attempt, and a retry whose entries no other host changed, take one round trip.
//!
//! An auto-whitelist entry seen alive a moment ago can even answer alone: while alive,
//! an entry only ever gets a later `last_seen` and expiry (its `first_seen` stays), so
//! the decision the stored entry would give is the same. Such answers are limited to
//! entries seen within [`AWL_ANSWER_AGE`], which bounds the effect of anything that
//! rewrites entries from outside (a migration import).
//!
//! Bounded: each shard keeps two generations of at most `capacity / 2 / SHARDS`
//! entries; when the current one is full it becomes the previous one and the old
//! previous one is dropped (an approximate LRU).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use spamgate_engine::greylist::Key;

/// How long an auto-whitelist entry seen in Redis may answer a check by itself.
pub(crate) const AWL_ANSWER_AGE: Duration = Duration::from_secs(60);

const SHARDS: usize = 16;

/// A stored value as last seen (`None`: nothing was stored), and when.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen<V> {
    pub value: Option<V>,
    pub at: Instant,
}

/// `V` is the decoded value without the texts (which follow from the key), so an
/// entry is a few dozen bytes and needs no allocation of its own.
pub(crate) struct Recent<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    /// Entries per generation and shard; 0 disables the cache.
    generation_size: usize,
}

struct Shard<V> {
    current: HashMap<Key, Seen<V>>,
    previous: HashMap<Key, Seen<V>>,
}

impl<V> Default for Shard<V> {
    fn default() -> Self {
        Shard {
            current: HashMap::new(),
            previous: HashMap::new(),
        }
    }
}

impl<V: Copy> Recent<V> {
    /// Remembers up to `capacity` entries (at least half of that many of the latest).
    pub(crate) fn new(capacity: usize) -> Recent<V> {
        Recent {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            generation_size: capacity / 2 / SHARDS,
        }
    }

    fn shard(&self, key: &Key) -> std::sync::MutexGuard<'_, Shard<V>> {
        // Keys are hashes: any byte spreads them evenly.
        self.shards[usize::from(key[0]) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, key: &Key) -> Option<Seen<V>> {
        if self.generation_size == 0 {
            return None;
        }
        let shard = self.shard(key);
        shard
            .current
            .get(key)
            .or_else(|| shard.previous.get(key))
            .copied()
    }

    pub(crate) fn put(&self, key: Key, value: Option<V>) {
        if self.generation_size == 0 {
            return;
        }
        let seen = Seen {
            value,
            at: Instant::now(),
        };
        let mut shard = self.shard(&key);
        if shard.current.len() >= self.generation_size && !shard.current.contains_key(&key) {
            shard.previous = std::mem::take(&mut shard.current);
        }
        shard.current.insert(key, seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u16) -> Key {
        let mut key = [0u8; 16];
        // Same shard for all: the first byte picks it.
        key[1..3].copy_from_slice(&n.to_be_bytes());
        key
    }

    #[test]
    fn keeps_at_least_the_latest_half_and_at_most_the_capacity() {
        // 2 entries per generation and shard.
        let recent = Recent::new(4 * SHARDS);
        for n in 0..5 {
            recent.put(key(n), Some(n));
        }
        let kept: Vec<u16> = (0..5).filter(|&n| recent.get(&key(n)).is_some()).collect();
        assert_eq!(kept, [2, 3, 4]);
        assert_eq!(recent.get(&key(4)).unwrap().value, Some(4));
        // Rewriting a present entry does not push others out.
        recent.put(key(4), None);
        assert_eq!(recent.get(&key(4)).unwrap().value, None);
        assert!(recent.get(&key(3)).is_some());
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let recent = Recent::new(0);
        recent.put(key(1), Some(1));
        assert!(recent.get(&key(1)).is_none());
    }
}
