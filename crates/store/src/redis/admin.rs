//! Greylist administration: counts, listings, finding and deleting, by SCAN.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use spamgate_engine::UnixTime;
use spamgate_engine::greylist::{Key, awl_key};

use super::codec;
use super::{RECORD_BATCH, RedisStore};
use crate::{
    AwlRow, GreylistAdmin, GreylistDeleted, GreylistEntries, GreylistFilter, StoreCounts,
    StoreError, TripletRow,
};

impl GreylistAdmin for RedisStore {
    /// Greylist entries and rate-limit states go by their TTLs (and reads ignore
    /// values past their `expires_at` before that); what is left is trimming the
    /// account events past their retention. Returns how many events went.
    async fn expire(&self, now: UnixTime) -> Result<u64, StoreError> {
        self.expire_events(now.saturating_sub(self.event_retention.as_secs()))
            .await
    }

    /// Exact for `now`, but a SCAN over every greylist key: O(entries) per call.
    async fn counts(&self, now: UnixTime) -> Result<StoreCounts, StoreError> {
        let mut counts = StoreCounts::default();
        self.scan_values("t:", |_, value| {
            if let Some(triplet) = codec::decode_triplet(value).filter(|t| t.expires_at > now) {
                match triplet.state.passed_at {
                    None => counts.pending += 1,
                    Some(_) => counts.passed += 1,
                }
            }
        })
        .await?;
        self.scan_values("a:", |_, value| {
            if codec::decode_awl(value).is_some_and(|awl| awl.expires_at > now) {
                counts.awl += 1;
            }
        })
        .await?;
        Ok(counts)
    }

    /// A SCAN over every triplet, keeping the `limit` latest-expiring.
    async fn list_triplets(&self, limit: usize) -> Result<Vec<TripletRow>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // A min-heap of the best `limit` seen so far, by expiry.
        let mut best: BinaryHeap<Reverse<(UnixTime, Vec<u8>)>> = BinaryHeap::new();
        self.scan_values("t:", |name, value| {
            if let Some(triplet) = codec::decode_triplet(value) {
                best.push(Reverse((triplet.expires_at, value.to_vec())));
                if best.len() > limit {
                    best.pop();
                }
            }
            let _ = name;
        })
        .await?;
        Ok(latest_first(best))
    }

    /// A SCAN over every triplet, keeping the `limit` latest-expiring matches.
    async fn find_greylist(
        &self,
        filter: &GreylistFilter,
        limit: usize,
    ) -> Result<GreylistEntries, StoreError> {
        let mut entries = GreylistEntries::default();
        if filter.names_triplets() && limit > 0 {
            let mut best: BinaryHeap<Reverse<(UnixTime, Vec<u8>)>> = BinaryHeap::new();
            self.scan_values("t:", |_, value| {
                if let Some(triplet) = codec::decode_triplet(value)
                    && filter.matches(&triplet.network, &triplet.sender, &triplet.recipient)
                {
                    best.push(Reverse((triplet.expires_at, value.to_vec())));
                    if best.len() > limit {
                        best.pop();
                    }
                }
            })
            .await?;
            entries.triplets = latest_first(best);
        }
        if let Some(client) = filter.client {
            let name = self.names.awl(&awl_key(client));
            let mut conn = self.link.conn();
            let value: Option<Vec<u8>> = self
                .bounded(redis::cmd("GET").arg(&name).query_async(&mut conn))
                .await?;
            entries.awl = value
                .as_deref()
                .and_then(codec::decode_awl)
                .map(|awl| AwlRow {
                    client: awl.client,
                    first_seen: awl.state.first_seen,
                    last_seen: awl.state.last_seen,
                    expires_at: awl.expires_at,
                });
        }
        Ok(entries)
    }

    /// A SCAN over every triplet; each match leaves its network's pending set too, so the
    /// pending cap stops counting it at once. Other hosts' recent-entry memories forget
    /// a deleted entry by themselves: a compare-and-set against it fails and re-reads,
    /// and an auto-whitelist hit is answered from memory for at most a minute.
    async fn delete_greylist(
        &self,
        filter: &GreylistFilter,
    ) -> Result<GreylistDeleted, StoreError> {
        let mut deleted = GreylistDeleted::default();
        if filter.names_triplets() {
            let mut doomed: Vec<(Vec<u8>, Key)> = Vec::new();
            self.scan_values("t:", |name, value| {
                if let Some(triplet) = codec::decode_triplet(value)
                    && filter.matches(&triplet.network, &triplet.sender, &triplet.recipient)
                {
                    doomed.push((name.to_vec(), triplet.network_key));
                }
            })
            .await?;
            let mut conn = self.link.conn();
            for chunk in doomed.chunks(RECORD_BATCH) {
                let mut pipe = redis::pipe();
                for (name, network_key) in chunk {
                    pipe.cmd("DEL").arg(name);
                    if let Some(key) = self.names.parse_key("t:", name) {
                        self.recent_triplets.put(key, None);
                        pipe.cmd("ZREM")
                            .arg(self.names.network(network_key))
                            .arg(codec::hex(&key))
                            .ignore();
                    }
                }
                let removed: Vec<u64> = self.bounded(pipe.query_async(&mut conn)).await?;
                deleted.triplets += removed.iter().sum::<u64>();
            }
        }
        if let Some(client) = filter.client {
            let key = awl_key(client);
            // This process's memory must not answer from the entry it just deleted.
            self.recent_awl.put(key, None);
            let name = self.names.awl(&key);
            let mut conn = self.link.conn();
            deleted.awl = self
                .bounded(redis::cmd("DEL").arg(&name).query_async(&mut conn))
                .await?;
        }
        Ok(deleted)
    }
}

/// Encoded triplets from a min-heap by expiry, as rows, the latest-expiring first.
fn latest_first(best: BinaryHeap<Reverse<(UnixTime, Vec<u8>)>>) -> Vec<TripletRow> {
    best.into_sorted_vec()
        .into_iter()
        .filter_map(|Reverse((_, value))| codec::decode_triplet(&value))
        .map(|triplet| TripletRow {
            network: triplet.network,
            sender: triplet.sender,
            recipient: triplet.recipient,
            first_seen: triplet.state.first_seen,
            last_seen: triplet.state.last_seen,
            attempts: triplet.state.attempts,
            passed_at: triplet.state.passed_at,
            expires_at: triplet.expires_at,
        })
        .collect()
}
