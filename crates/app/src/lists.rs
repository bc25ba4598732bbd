//! The configured DNS lists, each with its circuit breaker, and the lookup of all of them
//! at once.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::join_all;
use spamgate_dns::ZoneSpec;
use spamgate_engine::facts::{ListAnswer, ListFact};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::resolver::Resolver;

/// A configured list zone with its metric label and circuit breaker, built once per
/// configuration.
#[derive(Debug)]
pub struct Zone {
    pub spec: ZoneSpec,
    pub label: Arc<String>,
    breaker: Breaker,
}

impl Zone {
    pub fn new(spec: ZoneSpec, breaker: BreakerSettings) -> Zone {
        Zone {
            label: Arc::new(spec.zone.clone()),
            spec,
            breaker: Breaker::new(breaker),
        }
    }
}

/// When to stop asking a list that keeps failing, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive errors that open the breaker; 0 disables it.
    pub failures: u32,
    /// How long the zone is skipped before one probe query is let through.
    pub cooldown: Duration,
}

/// A per-zone circuit breaker: after `failures` consecutive errors the zone is skipped
/// for `cooldown` (each skipped lookup is an error answer, never a listing), then one
/// probe decides whether it closes again. Lock-free: two atomics. Time comes from the
/// caller (the application's [`Clock`]), so recovery is testable.
#[derive(Debug)]
struct Breaker {
    settings: BreakerSettings,
    consecutive_errors: AtomicU64,
    /// Unix-epoch milliseconds until which the zone is skipped; 0 when closed.
    open_until_ms: AtomicU64,
}

#[derive(Debug, PartialEq, Eq)]
enum BreakerState {
    Closed,
    Open,
    /// The cooldown is over: this caller is the probe.
    Probe,
}

/// What a recorded result did to the breaker.
#[derive(Debug, PartialEq, Eq)]
enum BreakerChange {
    Opened,
    Closed,
}

impl Breaker {
    fn new(settings: BreakerSettings) -> Breaker {
        Breaker {
            settings,
            consecutive_errors: AtomicU64::new(0),
            open_until_ms: AtomicU64::new(0),
        }
    }

    fn cooldown_ms(&self) -> u64 {
        u64::try_from(self.settings.cooldown.as_millis()).unwrap_or(u64::MAX)
    }

    fn state(&self, now_ms: u64) -> BreakerState {
        let until = self.open_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return BreakerState::Closed;
        }
        if now_ms < until {
            return BreakerState::Open;
        }
        // Let exactly one caller probe; the others keep skipping for another cooldown.
        let next = now_ms.saturating_add(self.cooldown_ms());
        match self
            .open_until_ms
            .compare_exchange(until, next, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => BreakerState::Probe,
            Err(_) => BreakerState::Open,
        }
    }

    fn record(&self, error: bool, now_ms: u64) -> Option<BreakerChange> {
        if self.settings.failures == 0 {
            return None;
        }
        if !error {
            self.consecutive_errors.store(0, Ordering::Relaxed);
            let was_open = self.open_until_ms.swap(0, Ordering::AcqRel) != 0;
            return was_open.then_some(BreakerChange::Closed);
        }
        let errors = self.consecutive_errors.fetch_add(1, Ordering::AcqRel) + 1;
        if errors >= u64::from(self.settings.failures) {
            let until = now_ms.saturating_add(self.cooldown_ms()).max(1);
            let previous = self.open_until_ms.swap(until, Ordering::AcqRel);
            return (previous == 0).then_some(BreakerChange::Opened);
        }
        None
    }
}

/// Looks the client up in every zone at once, timing each for the metrics; a zone whose
/// breaker is open is not asked and answers an error (never a listing).
pub(crate) async fn look_up_all<R: Resolver, C: Clock>(
    zones: &[Zone],
    client: IpAddr,
    resolver: &R,
    clock: &C,
    metrics: &Metrics,
) -> Vec<ListFact> {
    join_all(zones.iter().map(|zone| async move {
        let answer = if zone.breaker.state(clock.now_ms()) == BreakerState::Open {
            metrics.list_skipped(&zone.label);
            ListAnswer::Error {
                error: "skipped: zone keeps failing (circuit breaker open)".into(),
            }
        } else {
            let started = Instant::now();
            let answer = resolver.list(&zone.spec, client).await;
            metrics.list_lookup(&zone.label, &answer, started.elapsed());
            let error = matches!(answer, ListAnswer::Error { .. });
            match zone.breaker.record(error, clock.now_ms()) {
                Some(BreakerChange::Opened) => warn!(
                    zone = %zone.spec.zone,
                    failures = zone.breaker.settings.failures,
                    cooldown = ?zone.breaker.settings.cooldown,
                    "DNS list keeps failing; skipping it for the cooldown"
                ),
                Some(BreakerChange::Closed) => {
                    info!(zone = %zone.spec.zone, "DNS list answers again; no longer skipped")
                }
                None => {}
            }
            answer
        };
        ListFact {
            zone: zone.spec.zone.clone(),
            weight: zone.spec.weight,
            answer,
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use spamgate_engine::facts::RdnsFact;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    /// A resolver whose list answers the test scripts, counting the queries it got.
    #[derive(Default)]
    struct Scripted {
        failing: Mutex<bool>,
        queries: AtomicUsize,
    }

    impl Resolver for Scripted {
        async fn list(&self, _zone: &ZoneSpec, _client: IpAddr) -> ListAnswer {
            self.queries.fetch_add(1, Ordering::SeqCst);
            if *self.failing.lock().unwrap() {
                ListAnswer::Error {
                    error: "timeout".into(),
                }
            } else {
                ListAnswer::NotListed
            }
        }
        async fn rdns(&self, _client: IpAddr) -> RdnsFact {
            RdnsFact::NoPtr
        }
        async fn spf(&self, _client: IpAddr, _domain: &str) -> spamgate_dns::SpfOutcome {
            spamgate_dns::SpfOutcome {
                result: spamgate_dns::SpfResult::None,
                matched: None,
                detail: String::new(),
            }
        }
    }

    #[derive(Debug, PartialEq)]
    enum Seen {
        Asked(bool),
        Skipped,
    }

    #[tokio::test]
    async fn the_breaker_opens_skips_for_the_cooldown_probes_once_and_recovers() {
        let zone = Zone::new(
            "bl.test".parse().unwrap(),
            BreakerSettings {
                failures: 3,
                cooldown: Duration::from_secs(30),
            },
        );
        let zones = [zone];
        let resolver = Scripted::default();
        let clock = Arc::new(ManualClock::new(1_800_000_000));
        let metrics = Metrics::new();
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let ask = async || {
            let before = resolver.queries.load(Ordering::SeqCst);
            let facts = look_up_all(&zones, client, &resolver, &clock, &metrics).await;
            let asked = resolver.queries.load(Ordering::SeqCst) > before;
            let error = matches!(facts[0].answer, ListAnswer::Error { .. });
            if asked {
                Seen::Asked(error)
            } else {
                assert!(error, "a skipped zone answers an error, never a listing");
                Seen::Skipped
            }
        };
        // (failing?, seconds to move the clock first, what the lookup does)
        let steps: [(bool, u64, Seen); 9] = [
            (true, 0, Seen::Asked(true)),
            (true, 0, Seen::Asked(true)),
            (true, 0, Seen::Asked(true)), // third error opens it
            (true, 0, Seen::Skipped),
            (true, 29, Seen::Skipped),       // still in the cooldown
            (true, 1, Seen::Asked(true)),    // cooldown over: one probe, fails
            (false, 0, Seen::Skipped),       // the failed probe started a new cooldown
            (false, 30, Seen::Asked(false)), // probe succeeds: closed
            (true, 0, Seen::Asked(true)),    // closed again: asked, counting from zero
        ];
        for (i, (failing, wait, want)) in steps.into_iter().enumerate() {
            *resolver.failing.lock().unwrap() = failing;
            clock.advance(Duration::from_secs(wait));
            assert_eq!(ask().await, want, "step {i}");
        }
        assert_eq!(
            zones[0].breaker.consecutive_errors.load(Ordering::SeqCst),
            1
        );
    }

    #[test]
    fn a_disabled_breaker_never_opens() {
        let breaker = Breaker::new(BreakerSettings {
            failures: 0,
            cooldown: Duration::from_secs(30),
        });
        for _ in 0..100 {
            assert_eq!(breaker.record(true, 1_000), None);
        }
        assert_eq!(breaker.state(1_000), BreakerState::Closed);
    }
}
