//! Recent decisions over time, in memory: how many decisions per minute, by action and
//! by the reason that decided (the labels of `spamgate_decisions_total`). What the
//! console's dashboard draws; Prometheus keeps the long history, this keeps the last
//! day so an operator without one still sees a chart. Lost at restart.
//!
//! Bounded: at most [`Timeline::KEEP`] one-minute buckets, each with at most
//! [`Timeline::MAX_SERIES`] (action, reason) pairs (the labels are `&'static str` ids, a
//! few dozen exist); a pair beyond that counts under `("other", "other")`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use spamgate_engine::UnixTime;

#[derive(Debug, Default)]
pub struct Timeline {
    buckets: Mutex<VecDeque<Bucket>>,
}

#[derive(Debug, Clone)]
struct Bucket {
    /// The bucket's first second (a multiple of [`Timeline::BUCKET`]).
    start: UnixTime,
    counts: BTreeMap<(&'static str, &'static str), u64>,
}

/// Counts per bucket for one period, oldest first; every series has one value per
/// bucket (zeros included).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TimelineSnapshot {
    /// Seconds per bucket.
    pub bucket: u64,
    /// The start of each bucket.
    pub starts: Vec<UnixTime>,
    pub by_action: BTreeMap<String, Vec<u64>>,
    pub by_reason: BTreeMap<String, Vec<u64>>,
    pub total: u64,
}

impl Timeline {
    /// Seconds per stored bucket.
    pub const BUCKET: u64 = 60;
    /// Buckets kept: one day.
    pub const KEEP: usize = 24 * 60;
    /// Distinct (action, reason) pairs per bucket.
    pub const MAX_SERIES: usize = 64;

    pub fn new() -> Timeline {
        Timeline::default()
    }

    /// One decision at `now`. A clock that went back counts in the newest bucket.
    pub fn record(&self, now: UnixTime, action: &'static str, reason: &'static str) {
        let start = now - now % Self::BUCKET;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.back().is_none_or(|b| b.start < start) {
            buckets.push_back(Bucket {
                start,
                counts: BTreeMap::new(),
            });
            let oldest = start.saturating_sub(Self::BUCKET * (Self::KEEP as u64 - 1));
            while buckets.front().is_some_and(|b| b.start < oldest) {
                buckets.pop_front();
            }
        }
        let Some(bucket) = buckets.back_mut() else {
            return;
        };
        let key = if bucket.counts.len() < Self::MAX_SERIES
            || bucket.counts.contains_key(&(action, reason))
        {
            (action, reason)
        } else {
            ("other", "other")
        };
        *bucket.counts.entry(key).or_default() += 1;
    }

    /// The last `span` seconds before `now` (rounded up to whole buckets of `step`
    /// seconds, a multiple of [`Timeline::BUCKET`]), `step` seconds per bucket.
    pub fn snapshot(&self, now: UnixTime, span: u64, step: u64) -> TimelineSnapshot {
        let step = step.max(Self::BUCKET) / Self::BUCKET * Self::BUCKET;
        let n = span.div_ceil(step).clamp(1, Self::KEEP as u64) as usize;
        let last = now - now % step;
        let first = last.saturating_sub(step * (n as u64 - 1));
        let starts: Vec<UnixTime> = (0..n as u64).map(|i| first + i * step).collect();
        let mut snapshot = TimelineSnapshot {
            bucket: step,
            starts,
            by_action: BTreeMap::new(),
            by_reason: BTreeMap::new(),
            total: 0,
        };
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        for bucket in buckets
            .iter()
            .filter(|b| b.start >= first && b.start <= last + step)
        {
            let index = (((bucket.start - first) / step) as usize).min(n - 1);
            for (&(action, reason), &count) in &bucket.counts {
                snapshot
                    .by_action
                    .entry(action.to_string())
                    .or_insert_with(|| vec![0; n])[index] += count;
                snapshot
                    .by_reason
                    .entry(reason.to_string())
                    .or_insert_with(|| vec![0; n])[index] += count;
                snapshot.total += count;
            }
        }
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_minute_by_action_and_reason() {
        let t = Timeline::new();
        let base: u64 = 1_800_000_000; // a whole minute
        t.record(base + 1, "defer", "new");
        t.record(base + 59, "defer", "new");
        t.record(base + 61, "dunno", "proper");
        t.record(base + 130, "reject", "dnsbl");
        let s = t.snapshot(base + 130, 180, 60);
        assert_eq!(s.starts, vec![base, base + 60, base + 120]);
        assert_eq!(s.by_action["defer"], vec![2, 0, 0]);
        assert_eq!(s.by_action["dunno"], vec![0, 1, 0]);
        assert_eq!(s.by_action["reject"], vec![0, 0, 1]);
        assert_eq!(s.by_reason["new"], vec![2, 0, 0]);
        assert_eq!(s.total, 4);
        // Wider steps add the minutes up.
        let s = t.snapshot(base + 130, 600, 600);
        assert_eq!(s.total, 4);
        assert_eq!(s.by_action["defer"].iter().sum::<u64>(), 2);
    }

    #[test]
    fn old_buckets_are_dropped_and_series_are_bounded() {
        let t = Timeline::new();
        t.record(0, "defer", "new");
        let day = Timeline::BUCKET * Timeline::KEEP as u64;
        t.record(day + 60, "dunno", "proper");
        assert_eq!(t.buckets.lock().unwrap().len(), 1);
        let reasons: Vec<&'static str> = (0..100)
            .map(|i| &*Box::leak(format!("r{i}").into_boxed_str()))
            .collect();
        for r in &reasons {
            t.record(day + 60, "dunno", r);
        }
        let bucket = t.buckets.lock().unwrap().back().unwrap().counts.clone();
        assert_eq!(bucket.len(), Timeline::MAX_SERIES + 1);
        assert_eq!(
            bucket[&("other", "other")],
            101 - Timeline::MAX_SERIES as u64
        );
    }
}
