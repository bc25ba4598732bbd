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
use spamgate_engine::allow::{AllowConfig, AllowList};
use spamgate_engine::facts::{ListAnswer, ListFact, RdnsFact};
use spamgate_engine::outbound::SubmissionPolicy;
use spamgate_engine::verdict::AllowListKind;
use spamgate_engine::{Action, Engine, Envelope, Evaluation, Reason, UnixTime, Verdict};
use spamgate_store::{AccountEvent, AllowEntry, EventKind};
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

/// Everything the daemon's request path needs from a store backend (SQLite, Redis).
pub use spamgate_store::RequestStore as Backend;

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
    /// `None` when `[submission] enabled = false`.
    pub submission: Option<SubmissionPolicy>,
    pub submission_ports: Vec<u16>,
    /// Upper-case protocol state at which messages are charged.
    pub charge_at: String,
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
            submission: config
                .submission
                .enabled
                .then(|| config.submission.policy()),
            submission_ports: config.submission.ports.clone(),
            charge_at: config.submission.charge_at.to_ascii_uppercase(),
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
    /// Allow-list entries added at run time (`spamgate allow add`), from the store.
    runtime_allow: ArcSwap<AllowList>,
    runtime_allow_generation: AtomicU64,
    store: S,
    resolver: R,
    clock: C,
    metrics: Arc<Metrics>,
}

impl<S: Backend, R: Resolver, C: Clock> Service<S, R, C> {
    pub fn new(policy: Policy, store: S, resolver: R, clock: C) -> Self {
        Service {
            policy: ArcSwap::from_pointee(policy),
            runtime_allow: ArcSwap::from_pointee(AllowList::default()),
            runtime_allow_generation: AtomicU64::new(u64::MAX),
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

    /// Reload the runtime allow-list when its generation moved. Cheap when it did not.
    pub async fn refresh_runtime_allow(&self) -> Result<bool, spamgate_store::StoreError> {
        let generation = self.store.allow_generation().await?;
        if generation == self.runtime_allow_generation.load(Ordering::Acquire) {
            return Ok(false);
        }
        let entries = self.store.allow_list().await?;
        self.runtime_allow
            .store(Arc::new(runtime_allow_list(&entries)));
        self.runtime_allow_generation
            .store(generation, Ordering::Release);
        Ok(true)
    }

    /// Whether a request belongs to the outbound (submission) policy.
    pub fn is_submission(&self, sasl_username: Option<&str>, server_port: Option<u16>) -> bool {
        let policy = self.policy.load();
        policy.submission.is_some()
            && (sasl_username.is_some_and(|u| !u.is_empty())
                || server_port.is_some_and(|p| policy.submission_ports.contains(&p)))
    }

    /// The outbound policy: account status at every stage, limits charged at
    /// `charge_at`. Store trouble follows `store.fail_mode` like the inbound side.
    pub async fn decide_submission(
        &self,
        sasl_username: Option<&str>,
        server_port: Option<u16>,
        protocol_state: &str,
        recipient_count: u32,
        client: IpAddr,
        record: bool,
    ) -> Verdict {
        let policy = self.policy.load_full();
        let Some(submission) = policy.submission.as_ref() else {
            return Verdict::pass(Vec::new());
        };
        let Some(username) = sasl_username.filter(|u| !u.is_empty()) else {
            return SubmissionPolicy::unauthenticated(server_port.unwrap_or(0));
        };
        // `charge_at` is upper case; comparing without case saves an upper-cased copy.
        let charged_here = protocol_state.eq_ignore_ascii_case(&policy.charge_at);
        let checked_here = ["RCPT", "DATA", "END-OF-MESSAGE"]
            .iter()
            .any(|s| protocol_state.eq_ignore_ascii_case(s));
        if !checked_here && !charged_here {
            return Verdict::pass(vec![Reason::Submission {
                username: username.to_string(),
            }]);
        }
        let now = self.clock.now();
        let account = match self.timed(&policy, self.store.account(username)).await {
            Ok(account) => account,
            Err(error) => return self.store_trouble(&policy, username, error),
        };
        if let Some(verdict) = submission.check_status(username, account.as_ref()) {
            if record {
                let status = account.as_ref().map(|a| a.status).unwrap_or_default();
                self.event(username, now, EventKind::Rejected { status }, client)
                    .await;
            }
            return verdict;
        }
        if !charged_here {
            return Verdict::pass(vec![Reason::Submission {
                username: username.to_string(),
            }]);
        }
        let charges = submission.charges(account.as_ref(), recipient_count.max(1));
        let now_ms = now.saturating_mul(1000);
        let charge = self.store.charge(username, &charges, now_ms, record);
        let outcomes = match self.timed(&policy, charge).await {
            Ok(outcomes) => outcomes,
            Err(error) => return self.store_trouble(&policy, username, error),
        };
        let verdict = submission.finish(username, &charges, &outcomes);
        if let (
            true,
            Some(Reason::RateLimit {
                limit,
                used,
                allowed,
                ..
            }),
        ) = (record, verdict.reasons.last())
        {
            let kind = EventKind::LimitExceeded {
                limit: *limit,
                used: *used,
                limit_value: *allowed,
            };
            self.event(username, now, kind, client).await;
        }
        verdict
    }

    async fn timed<T>(
        &self,
        policy: &Policy,
        op: impl Future<Output = Result<T, spamgate_store::StoreError>>,
    ) -> Result<T, String> {
        let started = Instant::now();
        let result = tokio::time::timeout(policy.store_timeout, op)
            .await
            .map_err(|_| format!("timed out after {:?}", policy.store_timeout))
            .and_then(|r| r.map_err(|e| e.to_string()));
        self.metrics.store_op(started.elapsed(), result.is_ok());
        result
    }

    fn store_trouble(&self, policy: &Policy, username: &str, error: String) -> Verdict {
        let reasons = vec![
            Reason::Submission {
                username: username.to_string(),
            },
            Reason::StoreError { error },
        ];
        let action = match policy.engine.store_fail_mode() {
            spamgate_engine::StoreFailMode::Dunno => Action::Pass,
            spamgate_engine::StoreFailMode::Defer => Action::TempFail,
        };
        Verdict { action, reasons }
    }

    /// Best effort: an event that cannot be stored is logged, never fatal to the answer.
    async fn event(&self, username: &str, at: UnixTime, kind: EventKind, client: IpAddr) {
        let event = AccountEvent {
            at,
            username: username.to_string(),
            kind,
            detail: format!("client={client}"),
        };
        if let Err(e) = self.store.record_event(&event).await {
            warn!(username, "cannot record account event: {e}");
        } else {
            info!(target: "spamgate::abuse", username, event = kind.id(), %client, "account event recorded");
        }
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
        if let Some(reason) = self.runtime_allow.load().check(envelope) {
            return Verdict::pass(vec![reason]);
        }

        let client = envelope.client_address;
        let postfix_view = RdnsFact::from_postfix(
            envelope.client_name.as_deref(),
            envelope.reverse_client_name.as_deref(),
        );
        let look_up =
            policy.always_lookup || (policy.lookup_unknown && postfix_view == RdnsFact::NoPtr);
        // All lookups at once: the request costs one round trip, not three.
        let (dnswl, dnsbl, looked_up) = tokio::join!(
            self.lists(&policy.dnswl, client),
            self.lists(&policy.dnsbl, client),
            async {
                if look_up {
                    let fact = self.resolver.rdns(client).await;
                    self.metrics.rdns_lookup(&fact);
                    Some(fact)
                } else {
                    None
                }
            }
        );
        // Postfix's view is used as is, not copied, when nothing was looked up.
        let rdns = looked_up.as_ref().unwrap_or(&postfix_view);

        let plan = match policy.engine.evaluate(envelope, &dnswl, &dnsbl, rdns) {
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

/// Build the runtime allow-list; an entry that no longer parses is skipped with a warning
/// (entries are validated when added, so this means a newer spamgate wrote it).
fn runtime_allow_list(entries: &[AllowEntry]) -> AllowList {
    let mut config = AllowConfig {
        rfc2142: false,
        ..AllowConfig::default()
    };
    for entry in entries {
        let list = match entry.kind {
            AllowListKind::ClientAddress => &mut config.client_addresses,
            AllowListKind::ClientName => &mut config.client_names,
            AllowListKind::Sender => &mut config.senders,
            AllowListKind::Recipient => &mut config.recipients,
            AllowListKind::Rfc2142 => continue,
        };
        list.push(entry.value.clone());
        let single = AllowConfig {
            rfc2142: false,
            ..runtime_entry_config(entry)
        };
        if let Err(e) = AllowList::new(&single) {
            warn!(kind = entry.kind.id(), value = %entry.value, "skipping runtime allow entry: {e}");
            list.pop();
        }
    }
    AllowList::new(&config).unwrap_or_default()
}

/// An allow config holding just this entry (to validate it alone).
pub fn runtime_entry_config(entry: &AllowEntry) -> AllowConfig {
    let mut config = AllowConfig {
        rfc2142: false,
        ..AllowConfig::default()
    };
    let value = vec![entry.value.clone()];
    match entry.kind {
        AllowListKind::ClientAddress => config.client_addresses = value,
        AllowListKind::ClientName => config.client_names = value,
        AllowListKind::Sender => config.senders = value,
        AllowListKind::Recipient => config.recipients = value,
        AllowListKind::Rfc2142 => {}
    }
    config
}
