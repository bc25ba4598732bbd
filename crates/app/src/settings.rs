//! Everything a configuration reload replaces, compiled once. Built from plain values:
//! the application never reads the configuration file (the binary maps its TOML onto
//! [`SettingsParts`]).

use std::time::Duration;

use spamgate_dns::{NarrowRule, ZoneSpec};
use spamgate_engine::outbound::SubmissionRules;
use spamgate_engine::{Engine, EngineConfig, EngineError};

use crate::lists::{BreakerSettings, Zone};
use crate::replies::{Replies, ReplyError};

/// The inputs of [`Settings::new`].
#[derive(Debug, Clone)]
pub struct SettingsParts {
    pub engine: EngineConfig,
    pub dnsbl: Vec<ZoneSpec>,
    pub dnswl: Vec<ZoneSpec>,
    pub breaker: BreakerSettings,
    pub replies: Replies,
    /// Look the reverse name up even when Postfix already did.
    pub always_lookup: bool,
    /// Look it up when Postfix says `unknown`.
    pub lookup_unknown: bool,
    /// How long a store operation may take before the fail mode applies.
    pub store_timeout: Duration,
    /// `None` when submission is off: every transaction is inbound.
    pub submission: Option<SubmissionRules>,
    /// `None` when SPF is off.
    pub spf: Option<SpfSettings>,
}

/// SPF for clients about to be greylisted: a narrow pass for the envelope sender's
/// domain skips greylisting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpfSettings {
    pub narrow: NarrowRule,
    /// Bound on one whole evaluation (all its lookups); past it SPF has no effect.
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Reply(#[from] ReplyError),
}

/// The compiled settings, shared by every request until the next reload.
#[derive(Debug)]
pub struct Settings {
    pub engine: Engine,
    pub dnsbl: Vec<Zone>,
    pub dnswl: Vec<Zone>,
    pub replies: Replies,
    pub always_lookup: bool,
    pub lookup_unknown: bool,
    pub store_timeout: Duration,
    pub submission: Option<SubmissionRules>,
    pub spf: Option<SpfSettings>,
}

impl Settings {
    pub fn new(parts: SettingsParts) -> Result<Settings, SettingsError> {
        parts.replies.validate()?;
        let zones = |specs: Vec<ZoneSpec>| {
            specs
                .into_iter()
                .map(|spec| Zone::new(spec, parts.breaker))
                .collect()
        };
        Ok(Settings {
            engine: Engine::new(&parts.engine)?,
            dnsbl: zones(parts.dnsbl),
            dnswl: zones(parts.dnswl),
            replies: parts.replies,
            always_lookup: parts.always_lookup,
            lookup_unknown: parts.lookup_unknown,
            store_timeout: parts.store_timeout,
            submission: parts.submission,
            spf: parts.spf,
        })
    }
}
