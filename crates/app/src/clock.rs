//! The time, injected: the engine never reads a clock, and neither does anything the
//! application decides with (greylisting, limits, the DNS-list circuit breaker).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spamgate_engine::UnixTime;

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Seconds since the Unix epoch.
    fn now(&self) -> UnixTime {
        self.now_ms() / 1000
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock tests move by hand (shared through an `Arc`).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock at `now` seconds since the epoch.
    pub fn new(now: UnixTime) -> ManualClock {
        ManualClock(AtomicU64::new(now.saturating_mul(1000)))
    }

    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for Arc<ManualClock> {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
