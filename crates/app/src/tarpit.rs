//! The tarpit's state: how many holds are in progress (the cap), and which held
//! transactions wait for their next step. The decisions are the engine's
//! ([`spamgate_engine::tarpit`]); this keeps the memory they need.
//!
//! The memory is per daemon and not persisted: after a restart, or when the next step
//! reaches another cluster node, a client that waited is counted as hung up and its
//! retry is greylisted, exactly as without the tarpit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use spamgate_engine::greylist::GreylistKeys;
use spamgate_engine::tarpit::{TarpitOutcome, TarpitParams};
use spamgate_engine::{Transaction, UnixTime};
use tracing::info;

use crate::metrics::Metrics;

/// The log target of tarpit events that are not answers (a transaction that hung up).
pub const TARGET: &str = "spamgate::tarpit";

/// One mail transaction: the client and Postfix's `instance` (the sender when the
/// front-end gives no instance).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    client: IpAddr,
    transaction: String,
}

impl TransactionKey {
    pub fn of(transaction: &Transaction) -> TransactionKey {
        let envelope = &transaction.envelope;
        TransactionKey {
            client: envelope.client_address,
            transaction: match transaction.instance.as_deref().filter(|i| !i.is_empty()) {
                Some(instance) => format!("i:{instance}"),
                None => format!("s:{}", envelope.sender.to_ascii_lowercase()),
            },
        }
    }
}

#[derive(Debug)]
struct HeldTransaction {
    /// The triplets recorded as first attempts in this transaction.
    keys: Vec<GreylistKeys>,
    /// When the hold ended; `None` while it runs.
    held_until: Option<UnixTime>,
}

/// Holds in progress and held transactions awaiting their next step.
#[derive(Debug, Default)]
pub struct TarpitState {
    active: AtomicU32,
    held: Mutex<HashMap<TransactionKey, HeldTransaction>>,
    last_sweep: AtomicU64,
}

impl TarpitState {
    fn table(&self) -> MutexGuard<'_, HashMap<TransactionKey, HeldTransaction>> {
        // A panic while holding the lock cannot leave the map half-updated (every update
        // is one insert or remove), so a poisoned lock is still usable.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds in progress.
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    /// Transactions held (or being held) and not yet confirmed or swept.
    pub fn remembered(&self) -> usize {
        self.table().len()
    }

    /// Reserves a hold slot when fewer than `max` are taken.
    pub(crate) fn try_acquire(self: &Arc<Self>, max: u32, metrics: &Arc<Metrics>) -> Option<Slot> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| {
                metrics.tarpit_active(1);
                Slot(self.clone(), metrics.clone())
            })
    }

    /// Whether this transaction already waited out a hold.
    pub(crate) fn waited(&self, key: &TransactionKey) -> bool {
        self.table()
            .get(key)
            .is_some_and(|held| held.held_until.is_some())
    }

    /// Takes the triplets of a transaction that waited out its hold.
    pub(crate) fn take_waited(&self, key: &TransactionKey) -> Option<Vec<GreylistKeys>> {
        let mut table = self.table();
        // Only a finished hold: one in progress has not shown anything yet.
        table.get(key)?.held_until?;
        table.remove(key).map(|held| held.keys)
    }

    fn start(&self, key: TransactionKey, keys: GreylistKeys) {
        self.table().insert(
            key,
            HeldTransaction {
                keys: vec![keys],
                held_until: None,
            },
        );
    }

    /// Forgets held transactions whose next step did not come within the confirm
    /// window (they hung up, or never reached a stage spamgate is asked at), counting
    /// and logging each. At most once a second: the request path calls it.
    pub fn sweep(&self, params: &TarpitParams, now: UnixTime, metrics: &Metrics) -> usize {
        let last = self.last_sweep.swap(now, Ordering::AcqRel);
        if last == now {
            return 0;
        }
        let mut gone = Vec::new();
        self.table().retain(|key, held| match held.held_until {
            Some(until) if params.hung_up(until, now) => {
                gone.push((key.clone(), std::mem::take(&mut held.keys)));
                false
            }
            _ => true,
        });
        for (key, keys) in &gone {
            metrics.tarpit(TarpitOutcome::HungUp);
            for k in keys {
                info!(target: TARGET, client = %key.client, sender = %k.sender, recipient = %k.recipient,
                    "tarpit:hung-up (no next step after the hold; its retry is greylisted)");
            }
        }
        gone.len()
    }
}

/// One reserved hold slot, released when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<TarpitState>, Arc<Metrics>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        self.1.tarpit_active(-1);
    }
}

/// A reply the front-end must hold for [`TarpitHold::duration`] before answering. Tell
/// it how the hold ended: [`TarpitHold::completed`] (then answer the pass), or
/// [`TarpitHold::cut`] (then answer [`Verdict::tarpit_cut`](spamgate_engine::Verdict::tarpit_cut),
/// or nothing when the connection is gone). Dropping it counts as cut.
#[derive(Debug)]
pub struct TarpitHold {
    slot: Option<Slot>,
    key: TransactionKey,
    duration: Duration,
    metrics: Arc<Metrics>,
}

impl TarpitHold {
    pub(crate) fn start(
        slot: Slot,
        key: TransactionKey,
        keys: GreylistKeys,
        duration: Duration,
        metrics: Arc<Metrics>,
    ) -> TarpitHold {
        slot.0.start(key.clone(), keys);
        TarpitHold {
            slot: Some(slot),
            key,
            duration,
            metrics,
        }
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The reply was held for the whole delay; the transaction now waits for its next
    /// step (which proves the client waited too).
    pub fn completed(mut self, now: UnixTime) {
        if let Some(slot) = self.slot.take()
            && let Some(held) = slot.0.table().get_mut(&self.key)
        {
            held.held_until = Some(now);
        }
    }

    /// The hold ended early: the transaction is forgotten, its first attempt stays
    /// recorded (plain greylisting).
    pub fn cut(self) {}
}

impl Drop for TarpitHold {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.0.table().remove(&self.key);
            self.metrics.tarpit(TarpitOutcome::Cut);
            info!(target: TARGET, client = %self.key.client,
                "tarpit:cut (the hold ended early: policy connection closed, or shutdown)");
        }
    }
}
