//! The decision service: one input (a [`Transaction`]), one routing point
//! ([`Direction::of`]), the engine for every decision, and the I/O it needs (DNS, the
//! store, the clock) injected.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use spamgate_engine::facts::RdnsFact;
use spamgate_engine::greylist::{GreylistKeys, GreylistOutcome};
use spamgate_engine::learn::{self, LearnEvent, LearnSubject, Observation};
use spamgate_engine::outbound::{SubmissionRules, SubmissionStep};
use spamgate_engine::tarpit::{TarpitFacts, TarpitOutcome};
use spamgate_engine::{Direction, Evaluation, Reason, Stage, Transaction, UnixTime, Verdict};
use spamgate_store::{AccountEvent, EventKind, StoreError};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::lists::look_up_all;
use crate::metrics::Metrics;
use crate::resolver::Resolver;
use crate::settings::Settings;
use crate::tarpit::{TarpitHold, TarpitState, TransactionKey};

/// Everything the request path needs from a store backend (SQLite, Redis).
pub use spamgate_store::RequestStore as Backend;

/// Whether a decision may change stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As a real request: greylist attempts, charges and events are recorded.
    Record,
    /// `spamgate check`: the same decision, nothing written.
    DryRun,
}

impl Mode {
    fn records(self) -> bool {
        self == Mode::Record
    }
}

/// The service. One per daemon, shared by all front-ends and connections.
pub struct Service<S, R, C> {
    settings: ArcSwap<Settings>,
    /// Allow-list entries added at run time (`spamgate allow add`), from the store.
    runtime_allow: ArcSwap<crate::allow::RuntimeAllow>,
    runtime_allow_generation: AtomicU64,
    store: S,
    resolver: R,
    clock: C,
    metrics: Arc<Metrics>,
    tarpit: Arc<TarpitState>,
    /// Whether Postfix ever asks at `[submission] charge_at` (warns once if not).
    charge_watch: crate::charge_watch::ChargeWatch,
}

impl<S: Backend, R: Resolver, C: Clock> Service<S, R, C> {
    pub fn new(settings: Settings, store: S, resolver: R, clock: C) -> Self {
        Service {
            settings: ArcSwap::from_pointee(settings),
            runtime_allow: ArcSwap::from_pointee(crate::allow::RuntimeAllow::default()),
            runtime_allow_generation: AtomicU64::new(u64::MAX),
            store,
            resolver,
            clock,
            metrics: Arc::new(Metrics::new()),
            tarpit: Arc::new(TarpitState::default()),
            charge_watch: crate::charge_watch::ChargeWatch::default(),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The tarpit's holds in progress and held transactions.
    pub fn tarpit(&self) -> &TarpitState {
        &self.tarpit
    }

    /// Counts held transactions whose next step never came as hung up. The request path
    /// does this at most once a second; call it when there is no traffic.
    pub fn sweep_tarpit(&self) -> usize {
        let settings = self.settings.load();
        self.tarpit.sweep(
            settings.engine.tarpit_params(),
            self.clock.now(),
            &self.metrics,
        )
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// Swap in new settings (SIGHUP). In-flight requests finish with the old ones.
    pub fn replace_settings(&self, settings: Settings) {
        self.settings.store(Arc::new(settings));
        // `charge_at` may have changed: watch for it afresh.
        self.charge_watch.reset();
    }

    /// How the daemon's reverse-DNS rules (as now loaded: a reload changes them) see
    /// `name` (`spamgate classify --explain`).
    pub fn classify(&self, name: &str) -> spamgate_rdns::Explanation {
        self.settings.load().engine.classifier().explain(name)
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// Reload the runtime allow-list when its generation moved, or when one of its
    /// entries expired. Cheap when neither happened.
    pub async fn refresh_runtime_allow(&self) -> Result<bool, StoreError> {
        let generation = self.store.allow_generation().await?;
        let now = self.clock.now();
        let expired = self
            .runtime_allow
            .load()
            .next_expiry
            .is_some_and(|at| at <= now);
        if generation == self.runtime_allow_generation.load(Ordering::Acquire) && !expired {
            return Ok(false);
        }
        let entries = self.store.allow_list().await?;
        self.runtime_allow
            .store(Arc::new(crate::allow::compile(&entries, now)));
        self.runtime_allow_generation
            .store(generation, Ordering::Release);
        Ok(true)
    }

    /// The decision for one transaction, inbound or submission, counted in the metrics.
    /// Every front-end calls this; `spamgate check` with [`Mode::DryRun`].
    ///
    /// A tarpit verdict's hold is dropped here (counted as cut): a front-end that can
    /// hold replies calls [`Service::decide_holding`].
    pub async fn decide(&self, transaction: &Transaction, mode: Mode) -> Verdict {
        self.decide_holding(transaction, mode).await.0
    }

    /// [`Service::decide`], and for a tarpit verdict (`Action::Tarpit`, [`Mode::Record`]
    /// only) the hold the front-end must carry out before it answers.
    pub async fn decide_holding(
        &self,
        transaction: &Transaction,
        mode: Mode,
    ) -> (Verdict, Option<TarpitHold>) {
        let started = Instant::now();
        let settings = self.settings.load_full();
        let mut hold = None;
        let verdict = match Direction::of(transaction, settings.submission.as_ref()) {
            Direction::Inbound => self.inbound(&settings, transaction, mode, &mut hold).await,
            Direction::Submission => self.submission(&settings, transaction, mode).await,
        };
        self.metrics.decision(&verdict, started.elapsed());
        if mode.records() {
            self.metrics.decision_at(&verdict, self.clock.now());
        }
        (verdict, hold)
    }

    /// Allow-lists, then every DNS lookup at once, the engine, and the store for
    /// greylisting.
    async fn inbound(
        &self,
        settings: &Settings,
        transaction: &Transaction,
        mode: Mode,
        hold: &mut Option<TarpitHold>,
    ) -> Verdict {
        let engine = &settings.engine;
        let envelope = &transaction.envelope;
        let tarpit = engine.tarpit_enabled() && mode.records();
        if tarpit {
            let now = self.clock.now();
            self.tarpit
                .sweep(engine.tarpit_params(), now, &self.metrics);
            // A held transaction at DATA (or later): the client waited out the hold.
            if transaction.stage != Stage::Rcpt
                && let Some(keys) = self.tarpit.take_waited(&TransactionKey::of(transaction))
            {
                let confirmed = self.confirm_waited(settings, keys, now).await;
                self.metrics.tarpit(TarpitOutcome::Waited);
                return engine.tarpit_waited(confirmed);
            }
        }
        if let Some(verdict) = engine.check_stage(&transaction.stage) {
            return verdict;
        }
        if let Some(verdict) = engine.check_allow(envelope) {
            return verdict;
        }
        let runtime_allow = self.runtime_allow.load();
        if let Some(reason) = runtime_allow.all.check(envelope) {
            return Verdict::pass(vec![reason]);
        }

        let client = envelope.client_address;
        let postfix_view = RdnsFact::from_postfix(
            envelope.client_name.as_deref(),
            envelope.reverse_client_name.as_deref(),
        );
        let look_up =
            settings.always_lookup || (settings.lookup_unknown && postfix_view == RdnsFact::NoPtr);
        // All lookups at once: the request costs one round trip, not three.
        let (dnswl, dnsbl, looked_up) = tokio::join!(
            look_up_all(
                &settings.dnswl,
                client,
                &self.resolver,
                &self.clock,
                &self.metrics
            ),
            look_up_all(
                &settings.dnsbl,
                client,
                &self.resolver,
                &self.clock,
                &self.metrics
            ),
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

        let plan = match engine.evaluate(envelope, &transaction.stage, &dnswl, &dnsbl, rdns) {
            Evaluation::Done(verdict) => return verdict,
            Evaluation::Greylist(plan) => plan,
        };
        // Past the DNS lists: entries that skip greylisting only may let it through.
        let plan = match engine.skip_greylisting(plan, envelope, &runtime_allow.greylist) {
            Evaluation::Done(verdict) => return verdict,
            Evaluation::Greylist(plan) => plan,
        };
        let now = self.clock.now();
        // Learned exemptions: a confirmed, non-dynamic, unlisted client of an
        // organisation that learned skips greylisting.
        let subject = engine.learn_subject(&plan, rdns, &dnsbl);
        if let Some(LearnSubject::Eligible { org, .. }) = &subject {
            match self.timed(settings, self.store.learned(org, now)).await {
                Ok(record) => {
                    if let Some(until) = learn::exemption(record.as_ref(), now) {
                        self.metrics.learn("exempted");
                        return engine.learned(plan, org, until);
                    }
                }
                // The exemption is an extra: without the store, greylisting decides.
                Err(error) => warn!(%org, "cannot read the learned exemption: {error}"),
            }
        }
        // SPF: the sender domain's own server, by a narrow mechanism, skips greylisting.
        // Errors, timeouts and anything but a narrow pass leave the decision to greylisting.
        if let Some(spf) = &settings.spf
            && let Some(domain) = spamgate_engine::Envelope::domain_of(&envelope.sender)
        {
            let check = self.resolver.spf(client, &domain);
            match tokio::time::timeout(spf.timeout, check).await {
                Ok(outcome) => {
                    let narrow = outcome.narrow_pass(&spf.narrow, client);
                    self.metrics.spf(outcome.result.id(), narrow);
                    if narrow && let Some(matched) = &outcome.matched {
                        return engine.spf_passed(plan, &domain, &matched.domain, &matched.term);
                    }
                    debug!(%client, %domain, spf = %outcome, "SPF gives no exemption");
                }
                Err(_) => {
                    self.metrics.spf("timeout", false);
                    debug!(%client, %domain, "SPF evaluation timed out");
                }
            }
        }
        let params = engine.greylist_params();
        let outcome = self
            .timed(
                settings,
                self.store.greylist(&plan.keys, params, now, mode.records()),
            )
            .await;
        if mode.records()
            && matches!(outcome, Ok(GreylistOutcome::Passed { .. }))
            && let Some(observation) = subject.as_ref().and_then(LearnSubject::observation)
        {
            self.learn_observe(settings, &observation, now).await;
        }
        if !engine.tarpit_enabled() {
            return engine.finish(plan, outcome);
        }
        self.finish_tarpit(settings, transaction, mode, plan, outcome, now, hold)
            .await
    }

    /// The greylist step with the tarpit on: the engine decides from what the tarpit's
    /// memory knows; holds are reserved here and handed to the front-end.
    #[allow(clippy::too_many_arguments)]
    async fn finish_tarpit(
        &self,
        settings: &Settings,
        transaction: &Transaction,
        mode: Mode,
        plan: spamgate_engine::GreylistPlan,
        outcome: Result<GreylistOutcome, String>,
        now: UnixTime,
        hold: &mut Option<TarpitHold>,
    ) -> Verdict {
        let engine = &settings.engine;
        let key = TransactionKey::of(transaction);
        let first_attempt = matches!(outcome, Ok(GreylistOutcome::New { .. }));
        let (waited, slot) = if mode.records() {
            let waited = self.tarpit.waited(&key);
            let slot = if first_attempt && !waited {
                self.tarpit
                    .try_acquire(engine.tarpit_params().max_concurrent, &self.metrics)
            } else {
                None
            };
            (waited, slot)
        } else {
            // `spamgate check` shows what a free slot would give, and holds nothing.
            (false, None)
        };
        let facts = TarpitFacts {
            waited_in_transaction: waited,
            slot_free: slot.is_some() || !mode.records(),
        };
        let keys = plan.keys.clone();
        let mut verdict = engine.finish_tarpit(plan, outcome, facts);
        let Some(&tarpit_outcome) = verdict.tarpit_outcome() else {
            return verdict;
        };
        if !mode.records() {
            return verdict;
        }
        self.metrics.tarpit(tarpit_outcome);
        match tarpit_outcome {
            TarpitOutcome::Waited => {
                // Another RCPT after the hold proves the client waited: every triplet
                // of the transaction, this one included, is a passed retry.
                let mut all = self.tarpit.take_waited(&key).unwrap_or_default();
                all.push(keys);
                let confirmed = self.confirm_waited(settings, all, now).await;
                // The confirmations go before the tarpit reason, which stays last.
                let mut recorded = engine.tarpit_waited(confirmed).reasons;
                recorded.pop();
                let at = verdict.reasons.len().saturating_sub(1);
                verdict.reasons.splice(at..at, recorded);
            }
            TarpitOutcome::Held { .. } => {
                if let (Some(slot), Some(duration)) = (slot, verdict.hold()) {
                    *hold = Some(TarpitHold::start(
                        slot,
                        key,
                        keys,
                        duration,
                        self.metrics.clone(),
                    ));
                }
            }
            _ => {}
        }
        verdict
    }

    /// A retry of a confirmed client passed: what it says about its organisation,
    /// recorded atomically; the event counted and logged. Failures are logged only.
    async fn learn_observe(&self, settings: &Settings, observation: &Observation, now: UnixTime) {
        let params = settings.engine.learn_params();
        match self
            .timed(settings, self.store.learn_observe(observation, params, now))
            .await
        {
            Ok(event) => {
                self.metrics.learn(event.id());
                match &event {
                    LearnEvent::Learned { until } => info!(
                        target: "spamgate::learn", org = %observation.org, until,
                        "organisation learned: its confirmed servers skip greylisting"
                    ),
                    LearnEvent::Refused { until, revoked } => info!(
                        target: "spamgate::learn", org = %observation.org, until, revoked,
                        why = ?observation.kind, "organisation refused for learning"
                    ),
                    _ => {}
                }
            }
            Err(error) => {
                self.metrics.learn("error");
                warn!(org = %observation.org, "cannot record a learned-exemption observation: {error}");
            }
        }
    }

    /// Records a held transaction's triplets as passed retries (and so the client in the
    /// auto-whitelist), through the store's own atomic transition.
    async fn confirm_waited(
        &self,
        settings: &Settings,
        keys: Vec<GreylistKeys>,
        now: UnixTime,
    ) -> Vec<(GreylistKeys, Result<GreylistOutcome, String>)> {
        let engine = &settings.engine;
        let params = engine
            .tarpit_params()
            .confirm_params(engine.greylist_params());
        let mut confirmed = Vec::with_capacity(keys.len());
        for keys in keys {
            let outcome = self
                .timed(settings, self.store.greylist(&keys, &params, now, true))
                .await;
            confirmed.push((keys, outcome));
        }
        confirmed
    }

    /// Account status at every checked stage, limits charged at `charge_at`. Store
    /// trouble follows `store.fail_mode` like the inbound side.
    async fn submission(
        &self,
        settings: &Settings,
        transaction: &Transaction,
        mode: Mode,
    ) -> Verdict {
        let Some(rules) = settings.submission.as_ref() else {
            return Verdict::pass(Vec::new());
        };
        if mode.records()
            && let Some(never) = self
                .charge_watch
                .observe(&transaction.stage, &rules.charge_at)
        {
            tracing::warn!(
                target: "spamgate::submission",
                requests = never.requests,
                stages_seen = %never.stages_seen.join(","),
                charge_at = %rules.charge_at,
                "submission limits never apply: no submission request arrived at the charge \
                 stage; Postfix must ask there (check_policy_service in \
                 smtpd_data_restrictions for DATA, smtpd_end_of_data_restrictions for \
                 END-OF-MESSAGE; docs/submission.md)"
            );
        }
        let fail_mode = settings.engine.store_fail_mode();
        let (username, charge) = match rules.step(transaction) {
            SubmissionStep::Done(verdict) => return verdict,
            SubmissionStep::CheckStatus { username } => (username, None),
            SubmissionStep::CheckAndCharge {
                username,
                recipients,
            } => (username, Some(recipients)),
        };
        let username = username.as_ref();
        let client = transaction.envelope.client_address;
        let now = self.clock.now();
        let account = match self.timed(settings, self.store.account(username)).await {
            Ok(account) => account,
            Err(error) => return SubmissionRules::store_trouble(username, error, fail_mode),
        };
        if let Some(verdict) = rules.check_status(username, account.as_ref()) {
            if mode.records() {
                let status = account.as_ref().map(|a| a.status).unwrap_or_default();
                self.event(username, now, EventKind::Rejected { status }, client)
                    .await;
            }
            return verdict;
        }
        let Some(recipients) = charge else {
            return Verdict::pass(vec![Reason::Submission {
                username: username.to_string(),
            }]);
        };
        let charges = rules.charges(account.as_ref(), recipients);
        let now_ms = self.clock.now_ms();
        let charge = self
            .store
            .charge(username, &charges, now_ms, mode.records());
        let outcomes = match self.timed(settings, charge).await {
            Ok(outcomes) => outcomes,
            Err(error) => return SubmissionRules::store_trouble(username, error, fail_mode),
        };
        let verdict = rules.finish(username, &charges, &outcomes);
        if let (
            true,
            Some(Reason::RateLimit {
                limit,
                used,
                allowed,
                ..
            }),
        ) = (mode.records(), verdict.reasons.last())
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

    /// A store operation bounded by `store.timeout` and counted; the error as text.
    async fn timed<T>(
        &self,
        settings: &Settings,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, String> {
        let started = Instant::now();
        let result = tokio::time::timeout(settings.store_timeout, op)
            .await
            .map_err(|_| format!("timed out after {:?}", settings.store_timeout))
            .and_then(|r| r.map_err(|e| e.to_string()));
        self.metrics.store_op(started.elapsed(), result.is_ok());
        result
    }

    /// Best effort: an event that cannot be stored is logged, never fatal to the answer.
    async fn event(&self, username: &str, at: UnixTime, kind: EventKind, client: std::net::IpAddr) {
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
}

impl<S, R, C> Service<S, R, C> {
    /// Hand the store back (to close it on shutdown).
    pub fn into_store(self) -> S {
        self.store
    }
}
