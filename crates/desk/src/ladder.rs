//! The per-customer enforcement ladder: none → warned → suspended → (resumed)
//! → terminated, with claims beside it.
//!
//! [`apply`] is a pure state machine: it takes the ladder, a command, the
//! policy and `now`, and returns the new ladder, one [`AuditRecord`] and the
//! [`Action`]s the application layer must carry out. It never reads a clock.

use serde::{Deserialize, Serialize};

use crate::case::{CaseId, CustomerStatus};
use crate::report::Category;
use crate::time::UnixTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Step {
    None,
    Warned,
    Suspended,
    Resumed,
    Terminated,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::None => "none",
            Step::Warned => "warned",
            Step::Suspended => "suspended",
            Step::Resumed => "resumed",
            Step::Terminated => "terminated",
        }
    }

    pub fn parse(text: &str) -> Option<Step> {
        [
            Step::None,
            Step::Warned,
            Step::Suspended,
            Step::Resumed,
            Step::Terminated,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// The service status this step means.
    pub fn status(self) -> CustomerStatus {
        match self {
            Step::Suspended => CustomerStatus::Suspended,
            Step::Terminated => CustomerStatus::Terminated,
            _ => CustomerStatus::Active,
        }
    }
}

/// A confirmed case counted against the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Strike {
    pub case_id: CaseId,
    pub category: Category,
    pub at: UnixTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ProposalKind {
    Suspend,
    Terminate,
}

/// A step the policy wants and a person must approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Proposal {
    pub kind: ProposalKind,
    pub case_id: Option<CaseId>,
    pub at: UnixTime,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ladder {
    pub customer: String,
    pub step: Step,
    /// When the current step was entered.
    pub since: UnixTime,
    pub strikes: Vec<Strike>,
    pub proposal: Option<Proposal>,
}

impl Ladder {
    pub fn new(customer: &str) -> Ladder {
        Ladder {
            customer: customer.to_string(),
            step: Step::None,
            since: 0,
            strikes: Vec::new(),
            proposal: None,
        }
    }

    /// Strikes not yet expired at `now`.
    pub fn active_strikes(&self, now: UnixTime, policy: &EscalationPolicy) -> usize {
        self.strikes
            .iter()
            .filter(|s| now.saturating_sub(s.at) <= policy.strike_ttl)
            .count()
    }
}

/// The operator's escalation policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EscalationPolicy {
    /// The first confirmed case warns the customer.
    pub warn_on_first: bool,
    /// Strikes within `suspension_window` that call for suspension.
    pub suspend_after: usize,
    pub suspension_window: i64,
    /// A suspension needs a second person; the policy only proposes it.
    pub suspension_requires_approval: bool,
    /// A confirmed overload (mass mailing) case suspends at once, without
    /// approval (Specified Electronic Mail Act, Art. 11).
    pub overload_emergency: bool,
    /// Strikes counted while suspended or resumed that propose termination;
    /// `0` never proposes it.
    pub propose_termination_after: usize,
    /// Seconds after which a strike no longer counts.
    pub strike_ttl: i64,
}

impl Default for EscalationPolicy {
    fn default() -> Self {
        EscalationPolicy {
            warn_on_first: true,
            suspend_after: 2,
            suspension_window: 90 * 86_400,
            suspension_requires_approval: true,
            overload_emergency: true,
            propose_termination_after: 3,
            strike_ttl: 365 * 86_400,
        }
    }
}

/// What an operator (or the desk itself, as actor `policy`) asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "command")]
pub enum Command {
    /// A case was confirmed as abuse: a strike, and whatever the policy says next.
    ConfirmCase {
        case_id: CaseId,
        category: Category,
        evidence: Vec<String>,
    },
    Warn {
        reason: String,
        evidence: Vec<String>,
    },
    /// Suspends now. Where approval is required, `approver` must name a second person.
    Suspend {
        reason: String,
        evidence: Vec<String>,
        approver: Option<String>,
    },
    /// Carries out the pending proposal; the actor is the approver.
    Approve {
        reason: String,
    },
    /// Drops the pending proposal.
    Reject {
        reason: String,
    },
    Resume {
        reason: String,
        force: bool,
    },
    /// Ends the contract. Final: only a forced resume undoes it.
    Terminate {
        reason: String,
        evidence: Vec<String>,
    },
}

/// Work for the application layer; each is idempotent on its side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = LadderAction))]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum Action {
    /// Refuse the customer's submission accounts.
    SuspendAccounts {
        customer: String,
    },
    /// Undo `SuspendAccounts`.
    ReinstateAccounts {
        customer: String,
    },
    RevokeOp25bExemptions {
        customer: String,
    },
    RestoreOp25bExemptions {
        customer: String,
    },
    /// Run the operator's hook with the customer id and the step entered.
    RunHook {
        customer: String,
        step: Step,
    },
    NotifyCustomer {
        customer: String,
        step: Step,
        case_id: Option<CaseId>,
    },
}

/// One line of the audit trail: who, when, why, on which evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = LadderAuditRecord))]
pub struct AuditRecord {
    pub customer: String,
    pub at: UnixTime,
    pub actor: String,
    /// `confirm-case`, `warn`, `suspend`, `propose-suspend`, `propose-terminate`,
    /// `approve`, `reject`, `resume`, `terminate`, `claim`.
    pub action: String,
    pub from: Step,
    pub to: Step,
    pub reason: String,
    pub evidence: Vec<String>,
    /// The policy rule that decided, when a rule did.
    pub rule: Option<String>,
    pub approver: Option<String>,
    /// A final step overridden.
    pub forced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transition {
    pub ladder: Ladder,
    pub audit: AuditRecord,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LadderError {
    #[error("customer {0} is terminated; termination is final unless forced")]
    Terminated(String),
    #[error("cannot {command} a customer who is {step}")]
    NotFrom {
        command: &'static str,
        step: &'static str,
    },
    #[error("suspension requires an approver other than {0}")]
    ApprovalRequired(String),
    #[error("no proposal is pending")]
    NoProposal,
    #[error("invalid claim: {0}")]
    InvalidClaim(String),
}

fn suspend_actions(customer: &str) -> Vec<Action> {
    let c = customer.to_string();
    vec![
        Action::SuspendAccounts {
            customer: c.clone(),
        },
        Action::RevokeOp25bExemptions {
            customer: c.clone(),
        },
        Action::RunHook {
            customer: c.clone(),
            step: Step::Suspended,
        },
    ]
}

fn notify(customer: &str, step: Step, case_id: Option<CaseId>) -> Action {
    Action::NotifyCustomer {
        customer: customer.to_string(),
        step,
        case_id,
    }
}

struct Outcome {
    to: Step,
    action: &'static str,
    reason: String,
    evidence: Vec<String>,
    rule: Option<&'static str>,
    approver: Option<String>,
    forced: bool,
    actions: Vec<Action>,
    proposal: Option<Option<Proposal>>,
}

impl Outcome {
    fn new(to: Step, action: &'static str, reason: String, evidence: Vec<String>) -> Outcome {
        Outcome {
            to,
            action,
            reason,
            evidence,
            rule: None,
            approver: None,
            forced: false,
            actions: Vec::new(),
            proposal: None,
        }
    }
}

/// Applies `command` by `actor` at `now`.
pub fn apply(
    ladder: &Ladder,
    actor: &str,
    command: Command,
    policy: &EscalationPolicy,
    now: UnixTime,
) -> Result<Transition, LadderError> {
    let from = ladder.step;
    let customer = ladder.customer.as_str();
    let mut next = ladder.clone();
    let terminated = from == Step::Terminated;
    let outcome = match command {
        Command::ConfirmCase {
            case_id,
            category,
            mut evidence,
        } => {
            if terminated {
                return Err(LadderError::Terminated(customer.into()));
            }
            if next.strikes.iter().any(|s| s.case_id == case_id) {
                // Confirming a case twice is one strike and enforces nothing new.
                let mut o = Outcome::new(
                    from,
                    "confirm-case",
                    format!("case {case_id} already counted"),
                    vec![format!("case:{case_id}")],
                );
                o.rule = Some("already-counted");
                return Ok(finish(ladder, next, actor, from, now, o));
            }
            next.strikes.push(Strike {
                case_id,
                category,
                at: now,
            });
            // Expired strikes are kept out of the ladder: they no longer count.
            next.strikes
                .retain(|s| now.saturating_sub(s.at) <= policy.strike_ttl);
            evidence.insert(0, format!("case:{case_id}"));
            confirm(&next, policy, now, case_id, category, evidence)
        }
        Command::Warn { reason, evidence } => match from {
            Step::None | Step::Warned | Step::Resumed => {
                let mut o = Outcome::new(Step::Warned, "warn", reason, evidence);
                o.actions = vec![
                    Action::RunHook {
                        customer: customer.into(),
                        step: Step::Warned,
                    },
                    notify(customer, Step::Warned, None),
                ];
                o
            }
            Step::Terminated => return Err(LadderError::Terminated(customer.into())),
            step => {
                return Err(LadderError::NotFrom {
                    command: "warn",
                    step: step.as_str(),
                });
            }
        },
        Command::Suspend {
            reason,
            evidence,
            approver,
        } => {
            match from {
                Step::Terminated => return Err(LadderError::Terminated(customer.into())),
                Step::Suspended => {
                    return Err(LadderError::NotFrom {
                        command: "suspend",
                        step: "suspended",
                    });
                }
                _ => {}
            }
            if policy.suspension_requires_approval && approver.as_deref().is_none_or(|a| a == actor)
            {
                return Err(LadderError::ApprovalRequired(actor.into()));
            }
            let mut o = Outcome::new(Step::Suspended, "suspend", reason, evidence);
            o.approver = approver;
            o.actions = suspend_actions(customer);
            o.actions.push(notify(customer, Step::Suspended, None));
            o.proposal = Some(None);
            o
        }
        Command::Approve { reason } => {
            let proposal = ladder.proposal.clone().ok_or(LadderError::NoProposal)?;
            if terminated {
                return Err(LadderError::Terminated(customer.into()));
            }
            let evidence: Vec<String> = proposal
                .case_id
                .map(|c| format!("case:{c}"))
                .into_iter()
                .collect();
            let (to, mut actions) = match proposal.kind {
                ProposalKind::Suspend => (Step::Suspended, suspend_actions(customer)),
                ProposalKind::Terminate => (Step::Terminated, terminate_actions(customer)),
            };
            actions.push(notify(customer, to, proposal.case_id));
            let mut o = Outcome::new(
                to,
                "approve",
                format!("{}: {reason}", proposal.reason),
                evidence,
            );
            o.approver = Some(actor.to_string());
            o.actions = actions;
            o.proposal = Some(None);
            o
        }
        Command::Reject { reason } => {
            if ladder.proposal.is_none() {
                return Err(LadderError::NoProposal);
            }
            let mut o = Outcome::new(from, "reject", reason, Vec::new());
            o.proposal = Some(None);
            o
        }
        Command::Resume { reason, force } => match from {
            Step::Suspended => {
                let mut o = Outcome::new(Step::Resumed, "resume", reason, Vec::new());
                o.actions = resume_actions(customer);
                o
            }
            Step::Terminated if force => {
                let mut o = Outcome::new(
                    Step::Resumed,
                    "resume",
                    format!("termination overridden by force: {reason}"),
                    Vec::new(),
                );
                o.forced = true;
                o.actions = resume_actions(customer);
                o
            }
            Step::Terminated => return Err(LadderError::Terminated(customer.into())),
            step => {
                return Err(LadderError::NotFrom {
                    command: "resume",
                    step: step.as_str(),
                });
            }
        },
        Command::Terminate { reason, evidence } => {
            if terminated {
                return Err(LadderError::Terminated(customer.into()));
            }
            let mut o = Outcome::new(Step::Terminated, "terminate", reason, evidence);
            o.actions = terminate_actions(customer);
            o.actions.push(notify(customer, Step::Terminated, None));
            o.proposal = Some(None);
            o
        }
    };
    Ok(finish(ladder, next, actor, from, now, outcome))
}

fn finish(
    ladder: &Ladder,
    mut next: Ladder,
    actor: &str,
    from: Step,
    now: UnixTime,
    outcome: Outcome,
) -> Transition {
    let customer = ladder.customer.as_str();
    if outcome.to != from {
        next.since = now;
    }
    next.step = outcome.to;
    if let Some(proposal) = outcome.proposal {
        next.proposal = proposal;
    }
    let audit = AuditRecord {
        customer: customer.to_string(),
        at: now,
        actor: actor.to_string(),
        action: outcome.action.to_string(),
        from,
        to: outcome.to,
        reason: outcome.reason,
        evidence: outcome.evidence,
        rule: outcome.rule.map(str::to_string),
        approver: outcome.approver,
        forced: outcome.forced,
    };
    Transition {
        ladder: next,
        audit,
        actions: outcome.actions,
    }
}

fn terminate_actions(customer: &str) -> Vec<Action> {
    let c = customer.to_string();
    vec![
        Action::SuspendAccounts {
            customer: c.clone(),
        },
        Action::RevokeOp25bExemptions {
            customer: c.clone(),
        },
        Action::RunHook {
            customer: c,
            step: Step::Terminated,
        },
    ]
}

fn resume_actions(customer: &str) -> Vec<Action> {
    let c = customer.to_string();
    vec![
        Action::ReinstateAccounts {
            customer: c.clone(),
        },
        Action::RestoreOp25bExemptions {
            customer: c.clone(),
        },
        Action::RunHook {
            customer: c.clone(),
            step: Step::Resumed,
        },
        notify(&c, Step::Resumed, None),
    ]
}

/// The policy's answer to a newly confirmed case (strike already recorded in `ladder`).
fn confirm(
    ladder: &Ladder,
    policy: &EscalationPolicy,
    now: UnixTime,
    case_id: CaseId,
    category: Category,
    evidence: Vec<String>,
) -> Outcome {
    let customer = ladder.customer.as_str();
    let from = ladder.step;
    let in_window = ladder
        .strikes
        .iter()
        .filter(|s| now.saturating_sub(s.at) <= policy.suspension_window)
        .count();
    let active = ladder.active_strikes(now, policy);
    let propose = |kind: ProposalKind, reason: String, rule: &'static str| {
        let mut o = Outcome::new(from, "", reason.clone(), evidence.clone());
        o.action = match kind {
            ProposalKind::Suspend => "propose-suspend",
            ProposalKind::Terminate => "propose-terminate",
        };
        o.rule = Some(rule);
        o.proposal = Some(Some(Proposal {
            kind,
            case_id: Some(case_id),
            at: now,
            reason,
        }));
        o
    };
    if category == Category::Overload && policy.overload_emergency && from != Step::Suspended {
        let mut o = Outcome::new(
            Step::Suspended,
            "suspend",
            format!("case {case_id}: mass mailing overloading the service"),
            evidence,
        );
        o.rule = Some("overload-emergency");
        o.actions = suspend_actions(customer);
        o.actions
            .push(notify(customer, Step::Suspended, Some(case_id)));
        o.proposal = Some(None);
        return o;
    }
    match from {
        Step::Suspended | Step::Resumed
            if policy.propose_termination_after > 0
                && active >= policy.propose_termination_after =>
        {
            propose(
                ProposalKind::Terminate,
                format!("case {case_id}: {active} strikes after suspension"),
                "propose-termination",
            )
        }
        Step::Suspended => {
            let mut o = Outcome::new(
                from,
                "confirm-case",
                format!("case {case_id} confirmed"),
                evidence,
            );
            o.rule = Some("strike-recorded");
            o
        }
        _ if in_window >= policy.suspend_after && policy.suspend_after > 0 => {
            let reason = format!(
                "case {case_id}: {in_window} confirmed cases within {} days",
                policy.suspension_window / 86_400
            );
            if policy.suspension_requires_approval {
                propose(ProposalKind::Suspend, reason, "repeat-within-window")
            } else {
                let mut o = Outcome::new(Step::Suspended, "suspend", reason, evidence);
                o.rule = Some("repeat-within-window");
                o.actions = suspend_actions(customer);
                o.actions
                    .push(notify(customer, Step::Suspended, Some(case_id)));
                o
            }
        }
        _ if policy.warn_on_first => {
            let mut o = Outcome::new(
                Step::Warned,
                "warn",
                format!("case {case_id}: confirmed {}", category.as_str()),
                evidence,
            );
            o.rule = Some("first-confirmed-case");
            o.actions = vec![
                Action::RunHook {
                    customer: customer.into(),
                    step: Step::Warned,
                },
                notify(customer, Step::Warned, Some(case_id)),
            ];
            o
        }
        _ => {
            let mut o = Outcome::new(
                from,
                "confirm-case",
                format!("case {case_id} confirmed"),
                evidence,
            );
            o.rule = Some("strike-recorded");
            o
        }
    }
}

/// One line of a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimItem {
    pub description: String,
    /// In the currency's minor unit (yen have none: 1 = ¥1).
    pub amount: i64,
}

/// A claim for the actual damage, attached to one or more cases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Claim {
    pub customer: String,
    pub case_ids: Vec<CaseId>,
    pub amount: i64,
    /// ISO 4217 code, e.g. `JPY`.
    pub currency: String,
    /// How the damage was calculated.
    pub basis: String,
    pub items: Vec<ClaimItem>,
}

/// Checks a claim and returns its audit record. A claim changes no step: it
/// may follow any of them, termination included.
pub fn claim(
    ladder: &Ladder,
    actor: &str,
    claim: &Claim,
    now: UnixTime,
) -> Result<AuditRecord, LadderError> {
    let invalid = |why: &str| Err(LadderError::InvalidClaim(why.to_string()));
    if claim.customer != ladder.customer {
        return invalid("claim is for another customer");
    }
    if claim.case_ids.is_empty() {
        return invalid("a claim attaches to at least one case");
    }
    if claim.amount <= 0 {
        return invalid("amount must be positive");
    }
    if claim.currency.len() != 3 || !claim.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return invalid("currency must be an ISO 4217 code such as JPY");
    }
    if claim.basis.trim().is_empty() {
        return invalid("a claim states its basis");
    }
    if !claim.items.is_empty() && claim.items.iter().map(|i| i.amount).sum::<i64>() != claim.amount
    {
        return invalid("items do not add up to the amount");
    }
    Ok(AuditRecord {
        customer: ladder.customer.clone(),
        at: now,
        actor: actor.to_string(),
        action: "claim".into(),
        from: ladder.step,
        to: ladder.step,
        reason: format!("{} {}: {}", claim.amount, claim.currency, claim.basis),
        evidence: claim.case_ids.iter().map(|c| format!("case:{c}")).collect(),
        rule: None,
        approver: None,
        forced: false,
    })
}
