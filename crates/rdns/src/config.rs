//! Operator configuration: the daemon's `[rdns]` TOML table.

use serde::{Deserialize, Serialize};

/// Which rules and exceptions a [`Classifier`](crate::Classifier) uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Use the built-in rules: S25R rules `s25r-1`..`s25r-6`, then spamgate's own.
    pub builtin_rules: bool,
    /// Ids of built-in rules to turn off, e.g. `["s25r-3"]`.
    pub disable_rules: Vec<String>,
    /// Extra operator rules, tried after the built-in ones.
    pub rules: Vec<RuleConfig>,
    /// Use the shipped list of large senders whose outbound names look generic.
    pub builtin_exceptions: bool,
    /// Operator exceptions: `mail.example.com` (exact name), `.example.com` (the domain and
    /// every name under it), `/regex/` (case-insensitive regular expression).
    pub exceptions: Vec<String>,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            builtin_rules: true,
            disable_rules: Vec::new(),
            rules: Vec::new(),
            builtin_exceptions: true,
            exceptions: Vec::new(),
        }
    }
}

/// One operator rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Shown in logs and verdicts; letters, digits, `-`, `_`, `.`; unique among all rules.
    pub id: String,
    /// Regular expression, case-insensitive, matched against the lowercased name without
    /// its trailing dot.
    pub pattern: String,
}
