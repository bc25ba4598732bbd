#![forbid(unsafe_code)]
//! Reverse-DNS host name classifier: does a client's verified name look like an end-user or
//! dynamic line (the S25R technique)?
//!
//! Layout:
//! - `rules`: the built-in rule table (S25R rules 1-6, then spamgate's own).
//! - `exceptions`: known proper senders whose names match a rule (`exceptions.txt`), plus the
//!   operator's exact / domain / regex exceptions.
//! - `name`: normalisation and syntax check of the input name.
//! - `config`, `error`: the `[rdns]` table and its errors.
//!
//! Give it the *verified* name (Postfix's `client_name`). A missing or unverified name
//! (`unknown`) is not a name: the caller handles that case itself (S25R's rule 0).
//! `classify("")` is [`NameClass::Proper`], and `"unknown"` has no digits, so it is too.

mod config;
mod error;
mod exceptions;
mod name;
mod rules;

use std::fmt;

use regex::bytes::{RegexSet, RegexSetBuilder};

pub use config::{ClassifierConfig, RuleConfig};
pub use error::ClassifierError;

use exceptions::Exceptions;
use name::{MAX_NAME_LEN, Normalised, normalise};
use rules::BUILTIN_RULES;

/// The rule id reported for input that is not a DNS host name (over 253 bytes, an empty or
/// overlong label, or a byte outside `[a-z0-9._-]`). Exceptions do not apply to it.
pub const INVALID_NAME_RULE: &str = "invalid-name";

/// The verdict on one name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum NameClass {
    /// Looks like an end-user/dynamic line: `rule` is the id of the first matching rule (in rule order).
    Generic { rule: String },
    /// Matched a generic rule but an exception says it is a proper server.
    Excepted { rule: String, exception: String },
    /// Does not look generic.
    Proper,
}

impl fmt::Display for NameClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameClass::Generic { rule } => write!(f, "generic ({rule})"),
            NameClass::Excepted { rule, exception } => {
                write!(f, "excepted ({rule}, exception {exception})")
            }
            NameClass::Proper => f.write_str("proper"),
        }
    }
}

#[derive(Debug)]
struct Rule {
    id: String,
    pattern: String,
}

/// A compiled rule set with its exceptions. `Send + Sync`; share it behind an `Arc`.
#[derive(Debug)]
pub struct Classifier {
    rules: Vec<Rule>,
    /// One pattern per entry of `rules`, same order.
    rule_set: RegexSet,
    exceptions: Exceptions,
}

/// Regex settings shared by rules and exceptions: names are ASCII (checked before matching),
/// so byte-oriented, ASCII-only, case-insensitive matching; the size limits bound what an
/// operator pattern may cost.
pub(crate) fn regex_options<B: RegexOptions>(builder: B) -> B {
    builder.options()
}

/// `RegexBuilder` and `RegexSetBuilder` share option names but no trait.
pub(crate) trait RegexOptions {
    fn options(self) -> Self;
}

const REGEX_SIZE_LIMIT: usize = 4 << 20;

impl RegexOptions for regex::bytes::RegexBuilder {
    fn options(mut self) -> Self {
        self.case_insensitive(true)
            .unicode(false)
            .size_limit(REGEX_SIZE_LIMIT);
        self
    }
}

impl RegexOptions for RegexSetBuilder {
    fn options(mut self) -> Self {
        self.case_insensitive(true)
            .unicode(false)
            .size_limit(4 * REGEX_SIZE_LIMIT);
        self
    }
}

fn is_valid_rule_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Classifier {
    /// Compiles the configuration. Errors name the offending entry: an invalid or duplicate
    /// rule id, a bad pattern, an unknown id in `disable_rules`, a malformed exception.
    pub fn new(config: &ClassifierConfig) -> Result<Classifier, ClassifierError> {
        for id in &config.disable_rules {
            if !BUILTIN_RULES.iter().any(|rule| rule.id == id) {
                let known = BUILTIN_RULES.iter().map(|rule| rule.id).collect::<Vec<_>>();
                return Err(ClassifierError::UnknownDisabledRule {
                    id: id.clone(),
                    known: known.join(", "),
                });
            }
        }

        let mut rules = Vec::new();
        if config.builtin_rules {
            rules.extend(
                BUILTIN_RULES
                    .iter()
                    .filter(|rule| !config.disable_rules.iter().any(|id| id == rule.id))
                    .map(|rule| Rule {
                        id: rule.id.to_owned(),
                        pattern: rule.pattern.to_owned(),
                    }),
            );
        }
        for rule in &config.rules {
            if !is_valid_rule_id(&rule.id) {
                return Err(ClassifierError::InvalidRuleId {
                    id: rule.id.clone(),
                });
            }
            // Built-in ids stay reserved even when turned off, so a log line's id is unambiguous.
            let taken = rule.id == INVALID_NAME_RULE
                || BUILTIN_RULES.iter().any(|builtin| builtin.id == rule.id)
                || rules.iter().any(|seen| seen.id == rule.id);
            if taken {
                return Err(ClassifierError::DuplicateRuleId {
                    id: rule.id.clone(),
                });
            }
            regex_options(regex::bytes::RegexBuilder::new(&rule.pattern))
                .build()
                .map_err(|source| ClassifierError::InvalidRulePattern {
                    id: rule.id.clone(),
                    source,
                })?;
            rules.push(Rule {
                id: rule.id.clone(),
                pattern: rule.pattern.clone(),
            });
        }
        let rule_set = regex_options(RegexSetBuilder::new(rules.iter().map(|r| &r.pattern)))
            .build()
            .map_err(|source| ClassifierError::RuleSetTooLarge { source })?;

        // Operator entries first: when both cover a name, the operator's is the one reported.
        let mut exception_entries: Vec<&str> =
            config.exceptions.iter().map(String::as_str).collect();
        if config.builtin_exceptions {
            // A loop, not `extend`: `push` shortens the `'static` entries' lifetime.
            for entry in exceptions::builtin_entries() {
                exception_entries.push(entry);
            }
        }
        let exceptions = Exceptions::new(exception_entries)?;

        Ok(Classifier {
            rules,
            rule_set,
            exceptions,
        })
    }

    /// Classifies one reverse name (any case, with or without the trailing dot).
    /// Never panics and never allocates more than the verdict, whatever the input.
    pub fn classify(&self, name: &str) -> NameClass {
        let mut buf = [0; MAX_NAME_LEN];
        let name = match normalise(name, &mut buf) {
            Normalised::Empty => return NameClass::Proper,
            Normalised::Invalid => {
                return NameClass::Generic {
                    rule: INVALID_NAME_RULE.to_owned(),
                };
            }
            Normalised::Name(name) => name,
        };
        // `is_match` can stop early and skips the per-call allocation of `matches`; most
        // proper names end here.
        if !self.rule_set.is_match(name) {
            return NameClass::Proper;
        }
        let Some(first) = self.rule_set.matches(name).iter().next() else {
            return NameClass::Proper;
        };
        let rule = self.rules[first].id.clone();
        // Exceptions are looked at only now: proper names never pay for them.
        match self.exceptions.find(name) {
            Some(exception) => NameClass::Excepted {
                rule,
                exception: exception.to_owned(),
            },
            None => NameClass::Generic { rule },
        }
    }

    /// The active rules in the order they are tried: `(id, pattern)`.
    pub fn rules(&self) -> impl Iterator<Item = (&str, &str)> {
        self.rules
            .iter()
            .map(|rule| (rule.id.as_str(), rule.pattern.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifier_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Classifier>();
    }

    #[test]
    fn builtin_rules_compile_one_by_one() {
        for rule in BUILTIN_RULES {
            regex_options(regex::bytes::RegexBuilder::new(rule.pattern))
                .build()
                .unwrap_or_else(|e| panic!("{}: {e}", rule.id));
        }
    }
}
