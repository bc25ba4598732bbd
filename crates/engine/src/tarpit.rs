//! The taRgrey-style tarpit: a suspicious client greylisting would defer for the first
//! time is held instead (its reply delayed), then let in at once. Bots tend to hang up;
//! real MTAs wait. Lineage: S25R → Rgrey (greylist S25R matches) → taRgrey (tarpit them
//! first, greylist those that hang up; <http://k2net.hakuba.jp/targrey/index.en.html>).
//!
//! What a policy server can see: Postfix's smtpd keeps the policy connection open while
//! it waits for the reply, and it does not read from its SMTP client meanwhile, so a bot
//! hanging up on smtpd is *not* visible on the policy socket. What is visible is the
//! client's next step in the same transaction (Postfix's `instance` attribute): another
//! RCPT, or the DATA-stage request when `check_policy_service` is also in
//! `smtpd_data_restrictions`. That proves the client waited; a transaction that never
//! gets there within [`TarpitParams::confirm_window`] counts as hung up. The first attempt
//! is recorded as a pending greylist triplet when it is held, so a client that hung up is
//! greylisted as today when it comes back (it is never held twice for one triplet).
//!
//! Everything here is pure; the application keeps the table of held transactions and
//! the count of holds in progress.

use std::time::Duration;

use serde::Serialize;

use crate::UnixTime;
use crate::greylist::GreylistParams;

/// Tunables, from the `[tarpit]` config table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarpitParams {
    pub enabled: bool,
    /// How long the reply is held. Must stay well under Postfix's
    /// `smtpd_policy_service_timeout` (100 s) and the SMTP client's own timeouts.
    pub delay: Duration,
    /// Holds in progress at once; beyond, plain greylisting. Each held request keeps one
    /// Postfix smtpd process (and one policy connection) busy.
    pub max_concurrent: u32,
    /// How long after the hold the client's next step (another RCPT, DATA) may come
    /// before the transaction counts as hung up. Postfix's `smtpd_timeout` is 300 s.
    pub confirm_window: Duration,
}

impl Default for TarpitParams {
    fn default() -> Self {
        TarpitParams {
            enabled: false,
            // taRgrey recommends 120 s with Postfix's SLEEP; a held policy reply must stay
            // under smtpd_policy_service_timeout (100 s), so half of that.
            delay: Duration::from_secs(50),
            // Half of Postfix's default_process_limit (100).
            max_concurrent: 50,
            confirm_window: Duration::from_secs(300),
        }
    }
}

impl TarpitParams {
    /// The longest delay accepted: Postfix's default `smtpd_policy_service_timeout` is
    /// 100 s, and a reply later than that is a policy failure (451 4.3.5), not a tarpit.
    pub const MAX_DELAY: Duration = Duration::from_secs(95);

    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.delay.is_zero() || self.delay > Self::MAX_DELAY {
            return Err(format!(
                "delay must be positive and at most {}s (under Postfix's smtpd_policy_service_timeout)",
                Self::MAX_DELAY.as_secs()
            ));
        }
        if self.max_concurrent == 0 {
            return Err("max_concurrent must be positive".into());
        }
        if self.confirm_window.is_zero() {
            return Err("confirm_window must be positive".into());
        }
        Ok(())
    }

    /// A transaction held until `held_until` that has not shown its next step by `now`
    /// hung up (or never got to a stage spamgate is asked at).
    pub fn hung_up(&self, held_until: UnixTime, now: UnixTime) -> bool {
        now > held_until.saturating_add(self.confirm_window.as_secs())
    }

    /// The greylist parameters that record a client that waited out the hold as a passed
    /// retry: the hold itself was the delay, so no minimum applies.
    pub fn confirm_params(&self, greylist: &GreylistParams) -> GreylistParams {
        GreylistParams {
            min_delay: Duration::ZERO,
            ..greylist.clone()
        }
    }
}

/// What the application knows about holds when the engine considers one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarpitFacts {
    /// This transaction (same client, same Postfix `instance`) already waited out a hold:
    /// it is at its next RCPT, which proves it waited.
    pub waited_in_transaction: bool,
    /// A hold slot is free (fewer than `max_concurrent` holds in progress).
    pub slot_free: bool,
}

/// What the tarpit did, for the decision log and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "tarpit", rename_all = "kebab-case")]
pub enum TarpitOutcome {
    /// The reply is held this long, then the client passes.
    Held { hold_ms: u64 },
    /// The client came back in the same transaction after its hold (another RCPT, or
    /// DATA): it waited, and is recorded as a passed retry.
    Waited,
    /// Every hold slot was busy: plain greylisting.
    Full { max_concurrent: u32 },
    /// The hold was cut short (policy connection closed, shutdown): plain greylisting.
    Cut,
    /// No next step within the confirm window: the client hung up during or after the
    /// hold. Its triplet stays pending, so its retry is greylisted.
    HungUp,
}

impl TarpitOutcome {
    pub fn id(&self) -> &'static str {
        match self {
            TarpitOutcome::Held { .. } => "held",
            TarpitOutcome::Waited => "waited",
            TarpitOutcome::Full { .. } => "full",
            TarpitOutcome::Cut => "cut",
            TarpitOutcome::HungUp => "hung-up",
        }
    }
}
