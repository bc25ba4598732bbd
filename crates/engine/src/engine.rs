//! The decision, step by step in the policy's order: allow-lists, DNSWL, DNSBL, client
//! class, selective greylisting.

use serde::{Deserialize, Serialize};
use spamgate_rdns::{Classifier, ClassifierConfig, ClassifierError};

use crate::allow::{AllowConfig, AllowError, AllowList};
use crate::client::ClientClass;
use crate::envelope::Envelope;
use crate::facts::{ListAnswer, ListFact, RdnsFact};
use crate::greylist::{GreylistKeys, GreylistOutcome, GreylistParams, KeyScheme};
use crate::learn::{LearnParams, LearnSubject};
use crate::stage::Stage;
use crate::tarpit::{TarpitFacts, TarpitOutcome, TarpitParams};
use crate::verdict::AllowScope;
use crate::verdict::{Action, Reason, Refusal, Verdict};

/// How DNS list answers turn into a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRules {
    /// Reject when the summed weights of listing DNSBLs reach this (postscreen's threshold).
    pub threshold: i32,
}

impl Default for ListRules {
    fn default() -> Self {
        ListRules { threshold: 1 }
    }
}

/// What to answer when the store cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreFailMode {
    /// Let the mail through (later restrictions still apply).
    #[default]
    Dunno,
    /// Answer with a temporary error; the client retries.
    Defer,
}

impl StoreFailMode {
    /// The action for a transaction the store could not decide: never a refusal.
    pub fn action(self) -> Action {
        match self {
            StoreFailMode::Dunno => Action::Pass,
            StoreFailMode::Defer => Action::TempFail,
        }
    }
}

/// Everything the engine needs, already parsed; the daemon maps its TOML onto this.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    pub allow: AllowConfig,
    pub rdns: ClassifierConfig,
    pub lists: ListRules,
    pub greylist_enabled: bool,
    /// Client classes (ids from [`ClientClass::IDS`]) that are greylisted.
    pub greylist_classes: Vec<String>,
    pub greylist: GreylistParams,
    pub keys: KeyScheme,
    pub store_fail_mode: StoreFailMode,
    /// The stages at which the inbound policy decides; others pass.
    pub decide_at: Vec<Stage>,
    /// taRgrey's tarpit (off by default).
    pub tarpit: TarpitParams,
    /// Learned exemptions (off by default).
    pub learn: LearnParams,
}

impl EngineConfig {
    /// The defaults the seed describes: greylist every suspicious class.
    pub fn seed_defaults() -> EngineConfig {
        EngineConfig {
            greylist_enabled: true,
            greylist_classes: default_greylist_classes(),
            decide_at: vec![Stage::Rcpt],
            ..EngineConfig::default()
        }
    }
}

pub fn default_greylist_classes() -> Vec<String> {
    ["no-ptr", "ptr-not-confirmed", "dns-tempfail", "generic"]
        .map(String::from)
        .to_vec()
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Allow(#[from] AllowError),
    #[error(transparent)]
    Classifier(#[from] ClassifierError),
    #[error(
        "greylist.classes: unknown class {0:?} (known: no-ptr, ptr-not-confirmed, dns-tempfail, generic, proper)"
    )]
    UnknownClass(String),
    #[error("greylist: {0}")]
    Greylist(String),
    #[error("tarpit: {0}")]
    Tarpit(String),
    #[error("greylist.learn: {0}")]
    Learn(String),
}

/// The compiled policy. Cheap to share behind an `Arc`; rebuilt on reload.
#[derive(Debug)]
pub struct Engine {
    /// Entries that skip every check (client addresses and names, RFC 2142).
    allow: AllowList,
    /// Entries that skip greylisting only (senders, recipients).
    allow_greylist: AllowList,
    classifier: Classifier,
    lists: ListRules,
    greylist_enabled: bool,
    greylist_classes: Vec<String>,
    greylist: GreylistParams,
    keys: KeyScheme,
    store_fail_mode: StoreFailMode,
    decide_at: Vec<Stage>,
    tarpit: TarpitParams,
    learn: LearnParams,
}

/// The result of the DNS-dependent steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evaluation {
    /// Decided without the store.
    Done(Verdict),
    /// The client is suspicious: ask the store, then call [`Engine::finish`].
    Greylist(GreylistPlan),
}

/// A pending greylist check: the keys to look up and the reasons so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreylistPlan {
    pub keys: GreylistKeys,
    pub reasons: Vec<Reason>,
}

impl Engine {
    pub fn new(config: &EngineConfig) -> Result<Engine, EngineError> {
        for class in &config.greylist_classes {
            if !ClientClass::IDS.contains(&class.as_str()) {
                return Err(EngineError::UnknownClass(class.clone()));
            }
        }
        let g = &config.greylist;
        if g.min_delay >= g.retry_window {
            return Err(EngineError::Greylist(format!(
                "min_delay ({}s) must be shorter than retry_window ({}s)",
                g.min_delay.as_secs(),
                g.retry_window.as_secs()
            )));
        }
        if config.keys.ipv4_prefix > 32 || config.keys.ipv6_prefix > 128 {
            return Err(EngineError::Greylist(
                "ipv4_prefix must be 0..=32 and ipv6_prefix 0..=128".into(),
            ));
        }
        config.tarpit.validate().map_err(EngineError::Tarpit)?;
        if config.learn.enabled {
            config.learn.validate().map_err(EngineError::Learn)?;
        }
        Ok(Engine {
            allow: AllowList::with_scope(&config.allow.by_scope().0, AllowScope::All)?,
            allow_greylist: AllowList::with_scope(
                &config.allow.by_scope().1,
                AllowScope::Greylist,
            )?,
            classifier: Classifier::new(&config.rdns)?,
            lists: config.lists.clone(),
            greylist_enabled: config.greylist_enabled,
            greylist_classes: config.greylist_classes.clone(),
            greylist: config.greylist.clone(),
            keys: config.keys.clone(),
            store_fail_mode: config.store_fail_mode,
            decide_at: config.decide_at.clone(),
            tarpit: config.tarpit.clone(),
            learn: config.learn.clone(),
        })
    }

    /// Step 0: the inbound policy decides only at the configured stages; at any other
    /// the transaction passes, saying why.
    pub fn check_stage(&self, stage: &Stage) -> Option<Verdict> {
        (!self.decide_at.contains(stage)).then(|| {
            Verdict::pass(vec![Reason::Stage {
                protocol_state: stage.to_string(),
            }])
        })
    }

    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    pub fn store_fail_mode(&self) -> StoreFailMode {
        self.store_fail_mode
    }

    pub fn greylist_params(&self) -> &GreylistParams {
        &self.greylist
    }

    pub fn tarpit_params(&self) -> &TarpitParams {
        &self.tarpit
    }

    pub fn learn_params(&self) -> &LearnParams {
        &self.learn
    }

    /// Step 5b, with learning on: what this greylisted client says about its
    /// organisation. `None` with learning off.
    pub fn learn_subject(
        &self,
        plan: &GreylistPlan,
        rdns: &RdnsFact,
        dnsbl: &[ListFact],
    ) -> Option<LearnSubject> {
        if !self.learn.enabled {
            return None;
        }
        let class = plan.reasons.iter().find_map(|reason| match reason {
            Reason::Client { client } => Some(client),
            _ => None,
        })?;
        Some(LearnSubject::of(
            plan.keys.client,
            rdns,
            class,
            dnsbl,
            &self.classifier,
            &self.learn,
        ))
    }

    /// Step 5b: the client's organisation is exempted until `until`: pass.
    pub fn learned(&self, plan: GreylistPlan, org: &str, until: crate::UnixTime) -> Verdict {
        let mut reasons = plan.reasons;
        reasons.push(Reason::Learned {
            org: org.to_string(),
            until,
        });
        Verdict::pass(reasons)
    }

    /// Step 5c: the envelope sender's SPF record authorises the client narrowly (the
    /// application judged it): pass without greylisting.
    pub fn spf_passed(
        &self,
        plan: GreylistPlan,
        domain: &str,
        record: &str,
        term: &str,
    ) -> Verdict {
        let mut reasons = plan.reasons;
        reasons.push(Reason::SpfPass {
            domain: domain.to_string(),
            record: record.to_string(),
            term: term.to_string(),
        });
        Verdict::pass(reasons)
    }

    /// Whether the tarpit is on. The application then keeps its table of held
    /// transactions and watches for their next step.
    pub fn tarpit_enabled(&self) -> bool {
        self.tarpit.enabled
    }

    /// Step 5a: a client about to be greylisted passes when an entry that skips
    /// greylisting names it: the configured senders and recipients, or `runtime` (the
    /// operator's entries of that scope). The DNS lists have already been passed.
    pub fn skip_greylisting(
        &self,
        plan: GreylistPlan,
        envelope: &Envelope,
        runtime: &AllowList,
    ) -> Evaluation {
        match self
            .allow_greylist
            .check(envelope)
            .or_else(|| runtime.check(envelope))
        {
            Some(reason) => {
                let mut reasons = plan.reasons;
                reasons.push(reason);
                Evaluation::Done(Verdict::pass(reasons))
            }
            None => Evaluation::Greylist(plan),
        }
    }

    /// Step 1: allow-lists that skip every check. Checked before any lookup.
    pub fn check_allow(&self, envelope: &Envelope) -> Option<Verdict> {
        self.allow
            .check(envelope)
            .map(|reason| Verdict::pass(vec![reason]))
    }

    pub fn classify(&self, rdns: &RdnsFact) -> ClientClass {
        ClientClass::classify(rdns, &self.classifier)
    }

    /// Steps 2–5 up to the store: DNSWL, DNSBL, client class, greylist keys. Greylisting
    /// needs the recipient: before RCPT a suspicious client passes (lists still apply).
    pub fn evaluate(
        &self,
        envelope: &Envelope,
        stage: &Stage,
        dnswl: &[ListFact],
        dnsbl: &[ListFact],
        rdns: &RdnsFact,
    ) -> Evaluation {
        let mut reasons = Vec::new();

        for fact in dnswl {
            match &fact.answer {
                ListAnswer::Listed { answers, .. } => {
                    reasons.push(Reason::Dnswl {
                        zone: fact.zone.clone(),
                        answers: answers.clone(),
                    });
                    return Evaluation::Done(Verdict::pass(reasons));
                }
                ListAnswer::Error { error } => reasons.push(Reason::ListError {
                    zone: fact.zone.clone(),
                    error: error.clone(),
                }),
                ListAnswer::NotListed | ListAnswer::NotQueried => {}
            }
        }

        let mut score = 0i32;
        let mut any_listed = false;
        for fact in dnsbl {
            match &fact.answer {
                ListAnswer::Listed { answers, txt } => {
                    any_listed = true;
                    score = score.saturating_add(fact.weight);
                    reasons.push(Reason::Dnsbl {
                        zone: fact.zone.clone(),
                        weight: fact.weight,
                        answers: answers.clone(),
                        txt: txt.clone(),
                    });
                }
                ListAnswer::Error { error } => reasons.push(Reason::ListError {
                    zone: fact.zone.clone(),
                    error: error.clone(),
                }),
                ListAnswer::NotListed | ListAnswer::NotQueried => {}
            }
        }
        if any_listed {
            reasons.push(Reason::DnsblScore {
                score,
                threshold: self.lists.threshold,
            });
            if score >= self.lists.threshold {
                return Evaluation::Done(Verdict {
                    action: Action::Reject {
                        refusal: Refusal::Dnsbl,
                    },
                    reasons,
                });
            }
        }

        let class = self.classify(rdns);
        let class_id = class.id();
        // Keying by PTR domain is for forward-confirmed names that are not generic (big
        // senders' pools): a generic name is an end-user line, and keying it by its ISP's
        // domain would let one host's retry pass another host's first attempt.
        let domain_key_name = match &class {
            ClientClass::Proper { name, .. } => Some(name.clone()),
            _ => None,
        };
        reasons.push(Reason::Client { client: class });
        if class_id == "proper" && !self.greylist_classes.iter().any(|c| c == "proper") {
            return Evaluation::Done(Verdict::pass(reasons));
        }
        if !self.greylist_classes.iter().any(|c| c == class_id) {
            reasons.push(Reason::ClassNotGreylisted {
                class: class_id.to_string(),
            });
            return Evaluation::Done(Verdict::pass(reasons));
        }
        if !self.greylist_enabled {
            reasons.push(Reason::GreylistDisabled);
            return Evaluation::Done(Verdict::pass(reasons));
        }
        if *stage != Stage::Rcpt {
            reasons.push(Reason::Stage {
                protocol_state: stage.to_string(),
            });
            return Evaluation::Done(Verdict::pass(reasons));
        }
        let keys = GreylistKeys::new(
            &self.keys,
            envelope.client_address,
            domain_key_name.as_deref(),
            &envelope.sender,
            &envelope.recipient,
        );
        Evaluation::Greylist(GreylistPlan { keys, reasons })
    }

    /// Step 5 after the store answered (or failed).
    pub fn finish(&self, plan: GreylistPlan, outcome: Result<GreylistOutcome, String>) -> Verdict {
        let GreylistPlan { keys, mut reasons } = plan;
        match outcome {
            Ok(outcome) => {
                let action = match outcome.retry_in(&self.greylist) {
                    Some(retry_in) if !outcome.passes() => Action::Greylist { retry_in },
                    _ => Action::Pass,
                };
                reasons.push(Reason::Greylist { outcome, keys });
                Verdict { action, reasons }
            }
            Err(error) => {
                reasons.push(Reason::StoreError { error });
                Verdict {
                    action: self.store_fail_mode.action(),
                    reasons,
                }
            }
        }
    }

    /// Step 5 with the tarpit: like [`Engine::finish`], but a first attempt that would
    /// be greylisted is held instead while a slot is free (`Action::Tarpit`), and a
    /// client already at its next step after a hold in this transaction passes (it
    /// waited; the application records it as a passed retry). Retries of a pending
    /// triplet (a client that hung up before) are greylisted as without the tarpit.
    pub fn finish_tarpit(
        &self,
        plan: GreylistPlan,
        outcome: Result<GreylistOutcome, String>,
        facts: TarpitFacts,
    ) -> Verdict {
        let first_attempt = matches!(outcome, Ok(GreylistOutcome::New { .. }));
        let retry = matches!(outcome, Ok(GreylistOutcome::TooEarly { .. }));
        let mut verdict = self.finish(plan, outcome);
        let Action::Greylist { retry_in } = verdict.action else {
            return verdict;
        };
        if !self.tarpit.enabled || !(first_attempt || retry) {
            return verdict;
        }
        let outcome = if facts.waited_in_transaction {
            verdict.action = Action::Pass;
            TarpitOutcome::Waited
        } else if !first_attempt {
            return verdict;
        } else if facts.slot_free {
            let hold_ms = u64::try_from(self.tarpit.delay.as_millis()).unwrap_or(u64::MAX);
            verdict.action = Action::Tarpit { hold_ms, retry_in };
            TarpitOutcome::Held { hold_ms }
        } else {
            TarpitOutcome::Full {
                max_concurrent: self.tarpit.max_concurrent,
            }
        };
        verdict.reasons.push(Reason::Tarpit { outcome });
        verdict
    }

    /// A held client's next step arrived at a stage the inbound policy does not
    /// otherwise decide at (DATA): it waited. The application has recorded its triplets
    /// as passed retries; `confirmed` are those outcomes (or the store's error).
    pub fn tarpit_waited(
        &self,
        confirmed: Vec<(GreylistKeys, Result<GreylistOutcome, String>)>,
    ) -> Verdict {
        let mut reasons = Vec::with_capacity(confirmed.len() + 1);
        for (keys, outcome) in confirmed {
            reasons.push(match outcome {
                Ok(outcome) => Reason::Greylist { outcome, keys },
                Err(error) => Reason::StoreError { error },
            });
        }
        // Last, so it is the reason that decided (logs, metrics).
        reasons.push(Reason::Tarpit {
            outcome: TarpitOutcome::Waited,
        });
        Verdict::pass(reasons)
    }
}
