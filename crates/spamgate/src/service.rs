//! The decision pipeline around the pure engine: allow-lists, concurrent DNS lookups,
//! the engine, the store. DNS, store and clock are injected so tests control them.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use futures::future::join_all;
use spamgate_dns::{Dns, ListResult, Rdns, ZoneSpec};
use spamgate_engine::facts::{ListAnswer, ListFact, RdnsFact};
use spamgate_engine::{Engine, Envelope, Evaluation, Reason, UnixTime, Verdict};
use spamgate_store::Store;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::{Config, ConfigError, DnsblSection};
use crate::metrics::Metrics;
use crate::render::Replies;

/// DNS as the pipeline needs it.
pub trait Resolver: Send + Sync + 'static {
    fn list(&self, zone: &ZoneSpec, client: IpAddr) -> impl Future<Output = ListAnswer> + Send;
    fn rdns(&self, client: IpAddr) -> impl Future<Output = RdnsFact> + Send;
}

impl Resolver for Dns {
    async fn list(&self, zone: &ZoneSpec, client: IpAddr) -> ListAnswer {
        match self.list_lookup(zone, client).await {
            ListResult::NotListed => ListAnswer::NotListed,
            ListResult::Listed { answers, txt } => ListAnswer::Listed { answers, txt },
            ListResult::Error(error) => ListAnswer::Error { error },
        }
    }

    async fn rdns(&self, client: IpAddr) -> RdnsFact {
        match self.reverse_confirm(client).await {
            Rdns::Confirmed { name } => RdnsFact::Confirmed { name },
            Rdns::NotConfirmed { ptr } => RdnsFact::NotConfirmed { ptr },
            Rdns::NoPtr => RdnsFact::NoPtr,
            Rdns::TempFail(error) => RdnsFact::TempFail { error },
        }
    }
}

/// The time, injectable.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixTime;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A clock tests move by hand (shared through an `Arc`).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(now: UnixTime) -> ManualClock {
        ManualClock(AtomicU64::new(now))
    }
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
    }
}

impl Clock for Arc<ManualClock> {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

/// A configured list zone with its metric label and circuit breaker, built once per
/// configuration.
#[derive(Debug)]
pub struct Zone {
    pub spec: ZoneSpec,
    pub label: Arc<String>,
    breaker: Breaker,
}

fn zones(list: &[String], key: &str, breaker: BreakerSettings) -> Result<Vec<Zone>, ConfigError> {
    Ok(DnsblSection::parse_zones(list, key)?
        .into_iter()
        .map(|spec| Zone {
            label: Arc::new(spec.zone.clone()),
            spec,
            breaker: Breaker::new(breaker),
        })
        .collect())
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
/// probe decides whether it closes again. Lock-free: two atomics.
#[derive(Debug)]
struct Breaker {
    settings: BreakerSettings,
    consecutive_errors: AtomicU64,
    /// Unix-epoch milliseconds until which the zone is skipped; 0 when closed.
    open_until_ms: AtomicU64,
}

enum BreakerState {
    Closed,
    Open,
    /// The cooldown is over: this caller is the probe.
    Probe,
}

impl Breaker {
    fn new(settings: BreakerSettings) -> Breaker {
        Breaker {
            settings,
            consecutive_errors: AtomicU64::new(0),
            open_until_ms: AtomicU64::new(0),
        }
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
        let next = now_ms + self.settings.cooldown.as_millis() as u64;
        match self
            .open_until_ms
            .compare_exchange(until, next, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => BreakerState::Probe,
            Err(_) => BreakerState::Open,
        }
    }

    /// Records a result; returns `Some(true)` when this opened the breaker and
    /// `Some(false)` when it closed it.
    fn record(&self, error: bool, now_ms: u64) -> Option<bool> {
        if self.settings.failures == 0 {
            return None;
        }
        if !error {
            self.consecutive_errors.store(0, Ordering::Relaxed);
            let was_open = self.open_until_ms.swap(0, Ordering::AcqRel) != 0;
            return was_open.then_some(false);
        }
        let errors = self.consecutive_errors.fetch_add(1, Ordering::AcqRel) + 1;
        if errors >= u64::from(self.settings.failures) {
            let until = now_ms + self.settings.cooldown.as_millis() as u64;
            let previous = self.open_until_ms.swap(until, Ordering::AcqRel);
            return (previous == 0).then_some(true);
        }
        None
    }
}

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Everything a config reload replaces, compiled once.
#[derive(Debug)]
pub struct Policy {
    pub engine: Engine,
    pub dnsbl: Vec<Zone>,
    pub dnswl: Vec<Zone>,
    pub replies: Replies,
    /// Upper-case protocol states at which to decide.
    pub decide_at: Vec<String>,
    pub always_lookup: bool,
    pub lookup_unknown: bool,
    pub store_timeout: Duration,
}

impl Policy {
    pub fn from_config(config: &Config) -> Result<Policy, ConfigError> {
        let breaker = BreakerSettings {
            failures: config.dnsbl.breaker_failures,
            cooldown: config.dnsbl.breaker_cooldown,
        };
        Ok(Policy {
            engine: Engine::new(&config.engine_config())?,
            dnsbl: zones(&config.dnsbl.zones, "dnsbl.zones", breaker)?,
            dnswl: zones(&config.dnsbl.allow_zones, "dnsbl.allow_zones", breaker)?,
            replies: config.replies.clone(),
            decide_at: config
                .server
                .decide_at
                .iter()
                .map(|s| s.to_ascii_uppercase())
                .collect(),
            always_lookup: config.dns.always_lookup,
            lookup_unknown: config.dns.lookup_unknown,
            store_timeout: config.store.timeout,
        })
    }

    pub fn decides_at(&self, protocol_state: &str) -> bool {
        self.decide_at
            .iter()
            .any(|s| s.eq_ignore_ascii_case(protocol_state))
    }
}

/// The pipeline. One per daemon, shared by all connections.
pub struct Service<S, R, C> {
    policy: ArcSwap<Policy>,
    store: S,
    resolver: R,
    clock: C,
    metrics: Arc<Metrics>,
}

impl<S: Store, R: Resolver, C: Clock> Service<S, R, C> {
    pub fn new(policy: Policy, store: S, resolver: R, clock: C) -> Self {
        Service {
            policy: ArcSwap::from_pointee(policy),
            store,
            resolver,
            clock,
            metrics: Arc::new(Metrics::new()),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Look the client up in every zone at once, timing each for the metrics.
    async fn lists(&self, zones: &[Zone], client: IpAddr) -> Vec<ListFact> {
        join_all(zones.iter().map(|zone| async move {
            let answer = if let BreakerState::Open = zone.breaker.state(wall_clock_ms()) {
                self.metrics.list_skipped(&zone.label);
                ListAnswer::Error {
                    error: "skipped: zone keeps failing (circuit breaker open)".into(),
                }
            } else {
                let started = Instant::now();
                let answer = self.resolver.list(&zone.spec, client).await;
                self.metrics
                    .list_lookup(&zone.label, &answer, started.elapsed());
                let error = matches!(answer, ListAnswer::Error { .. });
                match zone.breaker.record(error, wall_clock_ms()) {
                    Some(true) => warn!(
                        zone = %zone.spec.zone,
                        failures = zone.breaker.settings.failures,
                        cooldown = ?zone.breaker.settings.cooldown,
                        "DNS list keeps failing; skipping it for the cooldown"
                    ),
                    Some(false) => {
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

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Swap in a new policy (SIGHUP). In-flight requests finish with the old one.
    pub fn replace_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// Decide for one transaction. `record = false` leaves the store untouched (`check`).
    pub async fn decide(&self, envelope: &Envelope, protocol_state: &str, record: bool) -> Verdict {
        let policy = self.policy.load_full();
        if !policy.decides_at(protocol_state) {
            return Verdict::pass(vec![Reason::Stage {
                protocol_state: protocol_state.to_string(),
            }]);
        }
        if let Some(verdict) = policy.engine.check_allow(envelope) {
            return verdict;
        }

        let client = envelope.client_address;
        let postfix_view = RdnsFact::from_postfix(
            envelope.client_name.as_deref(),
            envelope.reverse_client_name.as_deref(),
        );
        let look_up =
            policy.always_lookup || (policy.lookup_unknown && postfix_view == RdnsFact::NoPtr);
        // All lookups at once: the request costs one round trip, not three.
        let (dnswl, dnsbl, rdns) = tokio::join!(
            self.lists(&policy.dnswl, client),
            self.lists(&policy.dnsbl, client),
            async {
                if look_up {
                    let fact = self.resolver.rdns(client).await;
                    self.metrics.rdns_lookup(&fact);
                    fact
                } else {
                    postfix_view.clone()
                }
            }
        );

        let plan = match policy.engine.evaluate(envelope, &dnswl, &dnsbl, &rdns) {
            Evaluation::Done(verdict) => return verdict,
            Evaluation::Greylist(plan) => plan,
        };
        if !protocol_state.eq_ignore_ascii_case("RCPT") {
            // Greylisting needs the recipient; earlier stages only screen lists.
            let mut reasons = plan.reasons;
            reasons.push(Reason::Stage {
                protocol_state: protocol_state.to_string(),
            });
            return Verdict::pass(reasons);
        }
        let now = self.clock.now();
        let params = policy.engine.greylist_params();
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            policy.store_timeout,
            self.store.greylist(&plan.keys, params, now, record),
        )
        .await
        .map_err(|_| format!("timed out after {:?}", policy.store_timeout))
        .and_then(|r| r.map_err(|e| e.to_string()));
        self.metrics.store_op(started.elapsed(), outcome.is_ok());
        policy.engine.finish(plan, outcome)
    }
}

impl<S, R, C> Service<S, R, C> {
    /// Hand the store back (to close it on shutdown).
    pub fn into_store(self) -> S {
        self.store
    }
}

impl SystemClock {
    pub fn now_secs(&self) -> UnixTime {
        Clock::now(self)
    }
}
