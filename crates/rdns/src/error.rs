//! Configuration errors: each names the entry at fault.

/// Why a [`ClassifierConfig`](crate::ClassifierConfig) was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClassifierError {
    #[error("rdns rule id {id:?} is invalid: use 1-64 letters, digits, '-', '_' or '.'")]
    InvalidRuleId { id: String },
    #[error("rdns rule id {id:?} is used more than once (built-in ids are taken too)")]
    DuplicateRuleId { id: String },
    #[error("rdns rule {id:?}: invalid pattern: {source}")]
    InvalidRulePattern {
        id: String,
        #[source]
        source: regex::Error,
    },
    #[error("rdns disable_rules: {id:?} is not a built-in rule (built-in: {known})")]
    UnknownDisabledRule { id: String, known: String },
    #[error("rdns exception {entry:?}: {reason}")]
    InvalidException { entry: String, reason: String },
    #[error("rdns rules together are too large to compile: {source}")]
    RuleSetTooLarge {
        #[source]
        source: regex::Error,
    },
}
