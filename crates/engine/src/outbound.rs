//! The outbound (submission) policy: account status and per-account rate limits.
//!
//! Pure like the rest of the engine: the store keeps one number per limit (the GCRA
//! "theoretical arrival time") and applies [`gcra`] inside its own transaction.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An account's standing, set by the abuse desk (`spamgate account suspend ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum AccountStatus {
    #[default]
    Active,
    Suspended,
    Terminated,
}

impl AccountStatus {
    pub fn id(&self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Terminated => "terminated",
        }
    }

    pub fn parse(text: &str) -> Option<AccountStatus> {
        match text {
            "active" => Some(AccountStatus::Active),
            "suspended" => Some(AccountStatus::Suspended),
            "terminated" => Some(AccountStatus::Terminated),
            _ => None,
        }
    }
}

/// An account name as stored and compared: trimmed and lower-cased, the way Dovecot's
/// default `auth_username_format = %Lu` hands it to Postfix (`sasl_username`), so
/// `TARO@Example.JP` and `taro@example.jp` are one account. `None` for an empty name.
pub fn canonical_username(name: &str) -> Option<String> {
    canonical_username_of(name).map(Cow::into_owned)
}

/// [`canonical_username`] without a copy when the name is canonical already (the
/// request path's case).
fn canonical_username_of(name: &str) -> Option<Cow<'_, str>> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        None
    } else if trimmed.chars().any(char::is_uppercase) {
        Some(Cow::Owned(trimmed.to_lowercase()))
    } else {
        Some(Cow::Borrowed(trimmed))
    }
}

/// Per-account overrides of the configured limits; `None` keeps the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitOverrides {
    pub messages_per_hour: Option<u32>,
    pub recipients_per_day: Option<u32>,
}

/// A submission account (the SASL user name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Account {
    pub username: String,
    pub status: AccountStatus,
    pub limits: LimitOverrides,
    /// Why the status was last changed (shown to the abuse desk, never to the client).
    pub note: String,
    pub updated_at: crate::UnixTime,
}

impl Account {
    pub fn new(username: &str, now: crate::UnixTime) -> Account {
        Account {
            username: username.to_string(),
            status: AccountStatus::Active,
            limits: LimitOverrides::default(),
            note: String::new(),
            updated_at: now,
        }
    }
}

/// Which limit a charge is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum LimitKind {
    MessagesPerHour,
    RecipientsPerDay,
}

impl LimitKind {
    pub fn id(&self) -> &'static str {
        match self {
            LimitKind::MessagesPerHour => "messages-per-hour",
            LimitKind::RecipientsPerDay => "recipients-per-day",
        }
    }

    pub fn parse(text: &str) -> Option<LimitKind> {
        match text {
            "messages-per-hour" => Some(LimitKind::MessagesPerHour),
            "recipients-per-day" => Some(LimitKind::RecipientsPerDay),
            _ => None,
        }
    }

    pub fn period(&self) -> Duration {
        match self {
            LimitKind::MessagesPerHour => Duration::from_secs(3600),
            LimitKind::RecipientsPerDay => Duration::from_secs(86_400),
        }
    }
}

/// A rate: `limit` units per `period`, of which up to `burst` may come at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rate {
    pub limit: u32,
    pub period: Duration,
    pub burst: u32,
}

impl Rate {
    /// Milliseconds of "credit" one unit uses (the emission interval).
    fn interval_ms(&self) -> u64 {
        let ms = self.period.as_millis() as u64;
        (ms / u64::from(self.limit.max(1))).max(1)
    }
}

/// The result of charging `cost` units against a rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GcraOutcome {
    pub allowed: bool,
    /// The state to store (unchanged when not allowed).
    pub tat_ms: u64,
    /// When the charge would be allowed, if it was not.
    pub retry_after_ms: u64,
    /// Units used in the current period, as seen after the charge (for events and logs).
    pub used: u64,
}

/// The Generic Cell Rate Algorithm over one stored number (`tat_ms`, the theoretical
/// arrival time; 0 for a fresh key). Allows a steady `limit` per `period` with up to
/// `burst` units at once; the whole `limit` may be used at once when `burst >= limit`.
pub fn gcra(rate: &Rate, tat_ms: u64, cost: u32, now_ms: u64) -> GcraOutcome {
    let interval = rate.interval_ms();
    let cost = u64::from(cost);
    let tolerance = interval * u64::from(rate.burst.max(1));
    let tat = tat_ms.max(now_ms);
    let new_tat = tat + interval * cost;
    // The charge fits if the new TAT is no further ahead than the burst tolerance.
    let allow_at = new_tat.saturating_sub(tolerance);
    let used = |tat: u64| tat.saturating_sub(now_ms).div_ceil(interval);
    if allow_at <= now_ms {
        GcraOutcome {
            allowed: true,
            tat_ms: new_tat,
            retry_after_ms: 0,
            used: used(new_tat),
        }
    } else {
        GcraOutcome {
            allowed: false,
            tat_ms,
            retry_after_ms: allow_at - now_ms,
            used: used(tat),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hourly(limit: u32, burst: u32) -> Rate {
        Rate {
            limit,
            period: Duration::from_secs(3600),
            burst,
        }
    }

    #[test]
    fn burst_then_steady_rate() {
        let rate = hourly(100, 100);
        let mut tat = 0;
        let now = 1_000_000_000;
        for i in 0..100 {
            let out = gcra(&rate, tat, 1, now);
            assert!(out.allowed, "message {i} of the burst");
            tat = out.tat_ms;
        }
        let refused = gcra(&rate, tat, 1, now);
        assert!(!refused.allowed);
        assert_eq!(refused.tat_ms, tat, "a refused charge changes nothing");
        assert_eq!(
            refused.retry_after_ms, 36_000,
            "one unit frees up every 36 s"
        );
        assert_eq!(refused.used, 100);
        let later = gcra(&rate, tat, 1, now + 36_000);
        assert!(later.allowed);
    }

    #[test]
    fn cost_larger_than_one() {
        let rate = Rate {
            limit: 1000,
            period: Duration::from_secs(86_400),
            burst: 1000,
        };
        let now = 5_000_000;
        let a = gcra(&rate, 0, 600, now);
        assert!(a.allowed);
        let b = gcra(&rate, a.tat_ms, 500, now);
        assert!(!b.allowed, "600 + 500 exceeds 1000");
        let c = gcra(&rate, a.tat_ms, 400, now);
        assert!(c.allowed);
        assert_eq!(c.used, 1000);
    }

    #[test]
    fn small_burst_spreads_the_limit() {
        let rate = hourly(60, 5);
        let mut tat = 0;
        let now = 10_000_000;
        let allowed = (0..10)
            .filter(|_| {
                let out = gcra(&rate, tat, 1, now);
                tat = out.tat_ms;
                out.allowed
            })
            .count();
        assert_eq!(allowed, 5);
    }
}

/// The submission rules from the `[submission]` config table: which requests are
/// submissions, where messages are charged, and the default limits per account
/// (accounts may override them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionRules {
    /// Server ports that are submission services: a request there without SMTP AUTH is
    /// refused.
    pub ports: Vec<u16>,
    /// The stage at which a message is charged against the limits.
    pub charge_at: Stage,
    pub messages_per_hour: u32,
    pub message_burst: u32,
    pub recipients_per_day: u32,
    pub recipient_burst: u32,
}

impl Default for SubmissionRules {
    fn default() -> Self {
        // Published ISP limits: 100–200 messages per hour per user; Microsoft 365 allows
        // 10,000 recipients a day. A home customer rarely needs more than this.
        SubmissionRules {
            ports: vec![587, 465],
            charge_at: Stage::Data,
            messages_per_hour: 100,
            message_burst: 30,
            recipients_per_day: 1000,
            recipient_burst: 200,
        }
    }
}

/// What the submission policy needs to look at for one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmissionStep<'a> {
    /// Decided without the store.
    Done(Verdict),
    /// Read the account's status (and refuse a suspended one). The name is canonical
    /// ([`canonical_username`]).
    CheckStatus { username: Cow<'a, str> },
    /// Read the status, then charge the message against the limits.
    CheckAndCharge {
        username: Cow<'a, str>,
        recipients: u32,
    },
}

impl SubmissionRules {
    /// The first step for a submission transaction: no login on a submission port is
    /// refused at once; the status is checked at RCPT, DATA and END-OF-MESSAGE; the
    /// message is charged at `charge_at`; other stages pass.
    pub fn step<'a>(&self, transaction: &'a Transaction) -> SubmissionStep<'a> {
        let Some(username) = transaction
            .sasl_username
            .as_deref()
            .and_then(canonical_username_of)
        else {
            return SubmissionStep::Done(SubmissionRules::unauthenticated(
                transaction.server_port.unwrap_or(0),
            ));
        };
        let stage = &transaction.stage;
        if *stage == self.charge_at {
            return SubmissionStep::CheckAndCharge {
                username,
                recipients: transaction.recipient_count.max(1),
            };
        }
        if matches!(stage, Stage::Rcpt | Stage::Data | Stage::EndOfMessage) {
            return SubmissionStep::CheckStatus { username };
        }
        SubmissionStep::Done(Verdict::pass(vec![Reason::Submission {
            username: username.into_owned(),
        }]))
    }

    /// The answer when the store could not be asked: the configured fail mode, never a
    /// refusal.
    pub fn store_trouble(username: &str, error: String, fail_mode: StoreFailMode) -> Verdict {
        Verdict {
            action: fail_mode.action(),
            reasons: vec![
                Reason::Submission {
                    username: username.to_string(),
                },
                Reason::StoreError { error },
            ],
        }
    }

    /// Step 1 (at RCPT): a suspended or terminated account is refused. An account that is
    /// not in the store is active with the default limits.
    pub fn check_status(&self, username: &str, account: Option<&Account>) -> Option<Verdict> {
        let status = account.map_or(AccountStatus::Active, |a| a.status);
        let mut reasons = vec![Reason::Submission {
            username: username.to_string(),
        }];
        if status == AccountStatus::Active {
            return None;
        }
        reasons.push(Reason::AccountStatus { status });
        Some(Verdict {
            action: Action::Reject {
                refusal: Refusal::AccountStatus,
            },
            reasons,
        })
    }

    /// The charges for one message with `recipients` recipients.
    pub fn charges(
        &self,
        account: Option<&Account>,
        recipients: u32,
    ) -> Vec<(LimitKind, Rate, u32)> {
        let overrides = account.map(|a| a.limits).unwrap_or_default();
        let messages = overrides
            .messages_per_hour
            .unwrap_or(self.messages_per_hour);
        let rcpts = overrides
            .recipients_per_day
            .unwrap_or(self.recipients_per_day);
        vec![
            (
                LimitKind::MessagesPerHour,
                Rate {
                    limit: messages,
                    period: LimitKind::MessagesPerHour.period(),
                    burst: scaled_burst(self.message_burst, self.messages_per_hour, messages),
                },
                1,
            ),
            (
                LimitKind::RecipientsPerDay,
                Rate {
                    limit: rcpts,
                    period: LimitKind::RecipientsPerDay.period(),
                    burst: scaled_burst(self.recipient_burst, self.recipients_per_day, rcpts),
                },
                recipients.max(1),
            ),
        ]
    }

    /// Step 2 (at DATA): the store's charge outcomes → pass, or a temporary refusal
    /// naming the first limit that tripped.
    pub fn finish(
        &self,
        username: &str,
        charges: &[(LimitKind, Rate, u32)],
        outcomes: &[(LimitKind, GcraOutcome)],
    ) -> Verdict {
        let mut reasons = vec![Reason::Submission {
            username: username.to_string(),
        }];
        let tripped = outcomes.iter().zip(charges).find(|((_, o), _)| !o.allowed);
        match tripped {
            None => Verdict::pass(reasons),
            Some(((kind, outcome), (_, rate, cost))) => {
                // A message costing more than the burst can never fit, however long the
                // client waits: refuse it for good instead of deferring it forever.
                let never_fits = *cost > rate.burst;
                let retry_in = if never_fits {
                    0
                } else {
                    outcome.retry_after_ms.div_ceil(1000)
                };
                reasons.push(Reason::RateLimit {
                    limit: *kind,
                    used: outcome.used,
                    cost: *cost,
                    allowed: rate.limit,
                    retry_in,
                });
                let action = if never_fits {
                    Action::Reject {
                        refusal: Refusal::TooLarge,
                    }
                } else {
                    Action::Defer { retry_in }
                };
                Verdict { action, reasons }
            }
        }
    }

    /// An unauthenticated request on a submission port.
    pub fn unauthenticated(server_port: u16) -> Verdict {
        Verdict {
            action: Action::Reject {
                refusal: Refusal::Unauthenticated,
            },
            reasons: vec![Reason::Unauthenticated { server_port }],
        }
    }
}

/// An account whose limit is raised (or lowered) keeps the configured burst-to-limit
/// proportion: 30 of 100 becomes 300 of 1000.
fn scaled_burst(burst: u32, default_limit: u32, limit: u32) -> u32 {
    let scaled = u64::from(burst) * u64::from(limit) / u64::from(default_limit.max(1));
    u32::try_from(scaled)
        .unwrap_or(u32::MAX)
        .clamp(1, limit.max(1))
}

use crate::StoreFailMode;
use crate::stage::Stage;
use crate::transaction::Transaction;
use crate::verdict::{Action, Reason, Refusal, Verdict};
