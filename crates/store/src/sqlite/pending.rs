//! The SQLite writer's memory of how many pending triplets each network has.
//!
//! Every new triplet needs its network's pending count (the `max_pending_per_network`
//! cap). Counting is a range scan over the network's pending rows: up to the cap (200
//! by default) index entries, about 40 µs at the cap, paid again for every new triplet
//! of a busy or flooding network. The writer is the only thread that changes the
//! triplets in its open transaction, so after one count it can keep the figure exact
//! by itself: +1 for each pending row it inserts, and the count stays true until the
//! earliest counted row expires. Whatever it cannot follow exactly (a retry that
//! passes, a replaced row, a deletion, a rolled-back batch, another process's commit)
//! forgets the entry or the whole table; an expiry run retires the counts whose earliest
//! row it may delete. The next decision then counts again. A figure served from here is
//! always the one the query would return.

use std::collections::HashMap;

use spamgate_engine::UnixTime;

/// Networks remembered at most; past this the table starts over (a flood of distinct
/// networks then costs one count each, as without the table).
const MAX_NETWORKS: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Count {
    /// Pending rows with `expires_at > t` for every `t` in `[counted_at, valid_until)`.
    pending: u32,
    counted_at: UnixTime,
    /// The earliest `expires_at` among the counted rows (`u64::MAX`: none).
    valid_until: UnixTime,
}

#[derive(Debug, Default)]
pub(crate) struct PendingCounts {
    networks: HashMap<[u8; 16], Count>,
    /// Expiry runs have deleted rows expiring at or before this time: a count whose
    /// earliest row is among them may have lost rows and is not served.
    expired_through: UnixTime,
}

impl PendingCounts {
    /// The network's pending count at `now`, if it is known exactly.
    pub(crate) fn get(&self, network: &[u8; 16], now: UnixTime) -> Option<u32> {
        self.networks
            .get(network)
            .filter(|c| c.counted_at <= now && now < c.valid_until)
            .filter(|c| c.valid_until > self.expired_through)
            .map(|c| c.pending)
    }

    /// An expiry run deletes rows with `expires_at <= until`. A count whose earliest row
    /// expires later lost none of its rows and stays; the others are not served again.
    pub(crate) fn expired_through(&mut self, until: UnixTime) {
        self.expired_through = self.expired_through.max(until);
    }

    /// The store counted `pending` rows at `now`, the earliest of them expiring at
    /// `earliest_expiry`.
    pub(crate) fn counted(
        &mut self,
        network: [u8; 16],
        now: UnixTime,
        pending: u32,
        earliest_expiry: Option<UnixTime>,
    ) {
        if self.networks.len() >= MAX_NETWORKS && !self.networks.contains_key(&network) {
            self.networks.clear();
        }
        let count = Count {
            pending,
            counted_at: now,
            valid_until: earliest_expiry.unwrap_or(UnixTime::MAX),
        };
        self.networks.insert(network, count);
    }

    /// The writer inserted a pending row expiring at `expires_at` where no live row was.
    pub(crate) fn added(&mut self, network: &[u8; 16], expires_at: UnixTime) {
        if let Some(count) = self.networks.get_mut(network) {
            count.pending = count.pending.saturating_add(1);
            count.valid_until = count.valid_until.min(expires_at);
        }
    }

    /// Something changed the network's pending rows in a way not followed here.
    pub(crate) fn forget(&mut self, network: &[u8; 16]) {
        self.networks.remove(network);
    }

    /// Rows may have changed anywhere (deletions, rollback, another process).
    pub(crate) fn clear(&mut self) {
        self.networks.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.networks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: [u8; 16] = [7; 16];

    #[test]
    fn a_count_holds_from_its_time_until_the_earliest_row_expires() {
        let mut counts = PendingCounts::default();
        assert_eq!(counts.get(&NET, 100), None);
        counts.counted(NET, 100, 3, Some(150));
        for (now, expected) in [(99, None), (100, Some(3)), (149, Some(3)), (150, None)] {
            assert_eq!(counts.get(&NET, now), expected, "at {now}");
        }
        counts.counted(NET, 100, 0, None);
        assert_eq!(counts.get(&NET, u64::MAX - 1), Some(0));
    }

    #[test]
    fn inserts_count_up_and_may_bring_the_expiry_forward() {
        let mut counts = PendingCounts::default();
        counts.added(&NET, 500);
        assert_eq!(counts.get(&NET, 100), None, "nothing to count up from");
        counts.counted(NET, 100, 0, None);
        counts.added(&NET, 500);
        counts.added(&NET, 400);
        assert_eq!(counts.get(&NET, 399), Some(2));
        assert_eq!(counts.get(&NET, 400), None);
    }

    #[test]
    fn an_expiry_run_drops_only_counts_whose_rows_it_may_delete() {
        let mut counts = PendingCounts::default();
        let early = [1; 16];
        let late = [2; 16];
        let none = [3; 16];
        counts.counted(early, 100, 2, Some(200));
        counts.counted(late, 100, 5, Some(300));
        counts.counted(none, 100, 0, None);
        // Rows expiring at or before 200 are deleted: `early`'s first row among them.
        counts.expired_through(200);
        assert_eq!(counts.get(&early, 150), None);
        assert_eq!(counts.get(&late, 150), Some(5));
        assert_eq!(counts.get(&none, 150), Some(0));
        // An earlier run's time does not bring it back.
        counts.expired_through(120);
        assert_eq!(counts.get(&early, 150), None);
        counts.counted(early, 201, 1, Some(400));
        assert_eq!(counts.get(&early, 201), Some(1));
    }

    #[test]
    fn forgetting_and_clearing_drop_counts() {
        let mut counts = PendingCounts::default();
        let other = [8; 16];
        counts.counted(NET, 100, 1, None);
        counts.counted(other, 100, 2, None);
        counts.forget(&NET);
        assert_eq!(counts.get(&NET, 100), None);
        assert_eq!(counts.get(&other, 100), Some(2));
        counts.clear();
        assert_eq!(counts.get(&other, 100), None);
    }

    #[test]
    fn the_table_starts_over_when_full() {
        let mut counts = PendingCounts::default();
        for i in 0..MAX_NETWORKS as u32 {
            let mut network = [0; 16];
            network[..4].copy_from_slice(&i.to_be_bytes());
            counts.counted(network, 1, i, None);
        }
        assert_eq!(counts.len(), MAX_NETWORKS);
        counts.counted(NET, 1, 5, None);
        assert_eq!(counts.len(), 1);
        assert_eq!(counts.get(&NET, 1), Some(5));
    }
}
