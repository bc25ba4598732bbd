#![forbid(unsafe_code)]
//! Reverse-DNS host name classifier: does a client's verified name look like an end-user or
//! dynamic line (the S25R technique)?
//!
//! Layout:
//! - `rules`: the built-in rule table (S25R rules 1-6, then spamgate's own generic rules, then
//!   the mail-server rules that outweigh a shape-only match).
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

use regex::bytes::{Regex, RegexSet, RegexSetBuilder};

pub use config::{ClassifierConfig, RuleConfig};
pub use error::ClassifierError;

use exceptions::Exceptions;
use name::{MAX_NAME_LEN, Normalised, normalise};
use rules::{
    BARE_ZONE_LABEL, BUILTIN_RULES, DYN_ZONE_BARE_RULE, DYN_ZONE_RULE, RuleKind, SHORT_HOST_RULE,
    ZONE_LABEL,
};

/// The rule id reported for input that is not a DNS host name (over 253 bytes, an empty or
/// overlong label, or a byte outside `[a-z0-9._-]`). Exceptions do not apply to it.
pub const INVALID_NAME_RULE: &str = "invalid-name";

/// The verdict on one name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum NameClass {
    /// Looks like an end-user/dynamic line: `rule` is the id of the first matching rule (in rule order).
    Generic { rule: String },
    /// Matched a generic rule but something says it is a proper server: `exception` is the
    /// exception entry as written, or the id of the mail-server rule (`mail-service`,
    /// `mail-domain`) that outweighed a shape-only match.
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

/// What decided a verdict: the answer of [`Classifier::explain`], for
/// `spamgate classify --explain`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Decision {
    /// Not a DNS host name: rule [`INVALID_NAME_RULE`], no exception applies.
    InvalidName,
    /// No generic rule matched (or only `dyn-zone` inside a registrable domain).
    NoRule,
    /// This generic rule made the name generic (the first match in rule order).
    Rule { id: String },
    /// Generic rule `rule` matched, exception `entry` (as written) overrode it.
    Exception { rule: String, entry: String },
    /// Shape-only rule `rule` matched, mail-server rule `id` outweighed it.
    MailServerRule { rule: String, id: String },
}

/// A verdict with its reasons.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Explanation {
    /// The same verdict [`Classifier::classify`] gives.
    pub class: NameClass,
    /// Which rule or exception decided it.
    pub decision: Decision,
    /// Every active rule that matched the name, generic rules in table order, then mail-server
    /// rules (a `dyn-zone` match the public-suffix check refused is left out).
    pub matched_rules: Vec<String>,
}

#[derive(Debug)]
struct Rule {
    id: String,
    kind: RuleKind,
    pattern: String,
    /// Whether the match still needs the public-suffix check of its zone label.
    zone_check: Option<ZoneCheck>,
}

#[derive(Debug, Clone, Copy)]
enum ZoneCheck {
    /// Some label after the first, left of the registrable domain, is a zone label.
    AnyLabel,
    /// The second label is a bare zone label, left of the registrable domain.
    SecondLabel,
    /// The first label is the one right left of the registrable domain.
    FirstUnderDomain,
}

/// A compiled rule set with its exceptions. `Send + Sync`; share it behind an `Arc`.
#[derive(Debug)]
pub struct Classifier {
    /// Generic rules (built-in, then the operator's), in reporting order.
    rules: Vec<Rule>,
    /// One pattern per entry of `rules`, same order.
    rule_set: RegexSet,
    /// Mail-server rules: looked at only after a shape-only match.
    server_rules: Vec<Rule>,
    server_set: RegexSet,
    zone_label: Regex,
    bare_zone_label: Regex,
    exceptions: Exceptions,
}

/// The classifier's internal verdict: indexes instead of strings, so `classify` allocates
/// only the answer it returns.
enum Verdict<'a> {
    Invalid,
    Proper,
    Generic(usize),
    ByException(usize, &'a str),
    ByServerRule(usize, usize),
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
        let mut server_rules = Vec::new();
        if config.builtin_rules {
            for builtin in BUILTIN_RULES
                .iter()
                .filter(|rule| !config.disable_rules.iter().any(|id| id == rule.id))
            {
                let rule = Rule {
                    id: builtin.id.to_owned(),
                    kind: builtin.kind,
                    pattern: builtin.pattern.to_owned(),
                    zone_check: match builtin.id {
                        DYN_ZONE_RULE => Some(ZoneCheck::AnyLabel),
                        DYN_ZONE_BARE_RULE => Some(ZoneCheck::SecondLabel),
                        SHORT_HOST_RULE => Some(ZoneCheck::FirstUnderDomain),
                        _ => None,
                    },
                };
                if builtin.kind == RuleKind::Server {
                    server_rules.push(rule);
                } else {
                    rules.push(rule);
                }
            }
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
            // An operator rule is the operator's own judgement: no mail-server rule outweighs it.
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
                kind: RuleKind::Strong,
                pattern: rule.pattern.clone(),
                zone_check: None,
            });
        }
        let rule_set = regex_options(RegexSetBuilder::new(rules.iter().map(|r| &r.pattern)))
            .build()
            .map_err(|source| ClassifierError::RuleSetTooLarge { source })?;
        let server_set = regex_options(RegexSetBuilder::new(
            server_rules.iter().map(|r| &r.pattern),
        ))
        .build()
        .map_err(|source| ClassifierError::RuleSetTooLarge { source })?;
        let label_regex = |pattern: &str| {
            regex_options(regex::bytes::RegexBuilder::new(pattern))
                .build()
                .map_err(|source| ClassifierError::RuleSetTooLarge { source })
        };
        let zone_label = label_regex(ZONE_LABEL)?;
        let bare_zone_label = label_regex(BARE_ZONE_LABEL)?;

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
            server_rules,
            server_set,
            zone_label,
            bare_zone_label,
            exceptions,
        })
    }

    /// Classifies one reverse name (any case, with or without the trailing dot).
    /// Never panics and never allocates more than the verdict, whatever the input.
    pub fn classify(&self, name: &str) -> NameClass {
        let mut buf = [0; MAX_NAME_LEN];
        match self.verdict(name, &mut buf) {
            Verdict::Invalid => NameClass::Generic {
                rule: INVALID_NAME_RULE.to_owned(),
            },
            Verdict::Proper => NameClass::Proper,
            Verdict::Generic(rule) => NameClass::Generic {
                rule: self.rules[rule].id.clone(),
            },
            Verdict::ByException(rule, entry) => NameClass::Excepted {
                rule: self.rules[rule].id.clone(),
                exception: entry.to_owned(),
            },
            Verdict::ByServerRule(rule, server) => NameClass::Excepted {
                rule: self.rules[rule].id.clone(),
                exception: self.server_rules[server].id.clone(),
            },
        }
    }

    /// Classifies one name like [`classify`](Self::classify) and says why: which rule,
    /// exception or mail-server rule decided, and every rule that matched. For
    /// `spamgate classify --explain` and the corpus harness; slower than `classify` (it runs
    /// every rule set in full), so not for the hot path.
    pub fn explain(&self, name: &str) -> Explanation {
        let class = self.classify(name);
        let mut buf = [0; MAX_NAME_LEN];
        let verdict = self.verdict(name, &mut buf);
        let decision = match verdict {
            Verdict::Invalid => Decision::InvalidName,
            Verdict::Proper => Decision::NoRule,
            Verdict::Generic(rule) => Decision::Rule {
                id: self.rules[rule].id.clone(),
            },
            Verdict::ByException(rule, entry) => Decision::Exception {
                rule: self.rules[rule].id.clone(),
                entry: entry.to_owned(),
            },
            Verdict::ByServerRule(rule, server) => Decision::MailServerRule {
                rule: self.rules[rule].id.clone(),
                id: self.server_rules[server].id.clone(),
            },
        };
        let mut matched_rules = Vec::new();
        let mut buf = [0; MAX_NAME_LEN];
        if let Normalised::Name(name) = normalise(name, &mut buf) {
            for index in self.rule_set.matches(name).iter() {
                if self.zone_check_passes(&self.rules[index], name) {
                    matched_rules.push(self.rules[index].id.clone());
                }
            }
            for index in self.server_set.matches(name).iter() {
                if self.zone_check_passes(&self.server_rules[index], name) {
                    matched_rules.push(self.server_rules[index].id.clone());
                }
            }
        }
        Explanation {
            class,
            decision,
            matched_rules,
        }
    }

    /// The first rule that says the name is an end-user or dynamic line for certain: a
    /// strong rule (an address or an access-technology keyword in the name, a dynamic zone,
    /// an operator rule), whatever exceptions and mail-server rules say; or
    /// [`INVALID_NAME_RULE`]. `None` when only shape rules (S25R) match, or none. Learned
    /// exemptions never count such a name as a mail server.
    pub fn dynamic_rule(&self, name: &str) -> Option<&str> {
        let mut buf = [0; MAX_NAME_LEN];
        let name = match normalise(name, &mut buf) {
            Normalised::Empty => return None,
            Normalised::Invalid => return Some(INVALID_NAME_RULE),
            Normalised::Name(name) => name,
        };
        if !self.rule_set.is_match(name) {
            return None;
        }
        self.rule_set
            .matches(name)
            .iter()
            .map(|index| &self.rules[index])
            .find(|rule| rule.kind == RuleKind::Strong && self.zone_check_passes(rule, name))
            .map(|rule| rule.id.as_str())
    }

    /// Whether the registrable label of `domain` (`t-dialin` in `t-dialin.net`) names
    /// end-user lines itself: such an organisational domain is an access provider's
    /// dynamic zone.
    pub fn is_dynamic_zone_domain(&self, domain: &str) -> bool {
        let label = domain.split('.').next().unwrap_or_default();
        self.zone_label.is_match(label.as_bytes())
    }

    fn verdict<'a>(&'a self, raw: &str, buf: &mut [u8; MAX_NAME_LEN]) -> Verdict<'a> {
        let name = match normalise(raw, buf) {
            Normalised::Empty => return Verdict::Proper,
            Normalised::Invalid => return Verdict::Invalid,
            Normalised::Name(name) => name,
        };
        // `is_match` can stop early and skips the per-call allocation of `matches`; most
        // proper names end here.
        if !self.rule_set.is_match(name) {
            return Verdict::Proper;
        }
        let mut first = None;
        let mut strong = false;
        for index in self.rule_set.matches(name).iter() {
            if !self.zone_check_passes(&self.rules[index], name) {
                continue;
            }
            first.get_or_insert(index);
            if self.rules[index].kind == RuleKind::Strong {
                strong = true;
                break;
            }
        }
        let Some(first) = first else {
            return Verdict::Proper;
        };
        // Exceptions and mail-server rules are looked at only now: proper names never pay
        // for them.
        if let Some(entry) = self.exceptions.find(name) {
            return Verdict::ByException(first, entry);
        }
        if !strong
            && self.server_set.is_match(name)
            && let Some(server) = self
                .server_set
                .matches(name)
                .iter()
                .find(|&index| self.zone_check_passes(&self.server_rules[index], name))
        {
            return Verdict::ByServerRule(first, server);
        }
        Verdict::Generic(first)
    }

    /// The public-suffix check some rules need after their pattern matched. `dyn-zone` and
    /// `dyn-zone-bare`: the zone label must lie left of the registrable domain, so
    /// `x1.pool.example.co.uk` counts and `x1.pool.co.uk` does not. `short-host`: the first
    /// label must be the one right left of the registrable domain.
    fn zone_check_passes(&self, rule: &Rule, name: &[u8]) -> bool {
        let Some(check) = rule.zone_check else {
            return true;
        };
        if let ZoneCheck::FirstUnderDomain = check {
            // The first label ends right where the ICANN registrable domain starts.
            return icann_domain_start(name)
                .is_some_and(|start| name.iter().position(|&b| b == b'.') == start.checked_sub(1));
        }
        let Some(domain) = psl::domain(name) else {
            return false;
        };
        // Labels ending before this offset are left of the registrable domain.
        let limit = name.len() - domain.as_bytes().len();
        let mut offset = 0;
        for (position, label) in name.split(|&b| b == b'.').enumerate() {
            let end = offset + label.len();
            if end >= limit {
                return false;
            }
            offset = end + 1;
            match check {
                ZoneCheck::AnyLabel if position >= 1 && self.zone_label.is_match(label) => {
                    return true;
                }
                ZoneCheck::SecondLabel if position == 1 => {
                    return self.bare_zone_label.is_match(label);
                }
                _ => {}
            }
        }
        false
    }

    /// The active rules in the order they are tried: `(id, pattern)`. Generic rules first
    /// (built-in, then the operator's), then the mail-server rules.
    pub fn rules(&self) -> impl Iterator<Item = (&str, &str)> {
        self.rules
            .iter()
            .chain(&self.server_rules)
            .map(|rule| (rule.id.as_str(), rule.pattern.as_str()))
    }
}

/// Where the registrable domain under the ICANN section of the public suffix list starts
/// in `name` (a byte offset), or `None` when `name` is itself a suffix. A private entry
/// (`kasserver.example`-like hosting zones, `dyndns`-like services) is skipped for the
/// ICANN suffix it lies under: `dd36226.kasserver.com` has the registrable domain
/// `kasserver.com` here, where `psl::domain` says the whole name.
fn icann_domain_start(name: &[u8]) -> Option<usize> {
    let suffix = psl::suffix(name)?;
    let mut start = name.len().checked_sub(suffix.as_bytes().len())?;
    if suffix.typ() == Some(psl::Type::Private) {
        // The longest shorter tail that is a suffix of its own and not a private one.
        start = name[start..]
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'.')
            .map(|(i, _)| start + i + 1)
            .find(|&tail| {
                psl::suffix(&name[tail..]).is_some_and(|s| {
                    s.as_bytes().len() == name.len() - tail && s.typ() != Some(psl::Type::Private)
                })
            })?;
    }
    // One label more than the suffix.
    let before = name[..start].strip_suffix(b".")?;
    Some(
        before
            .iter()
            .rposition(|&b| b == b'.')
            .map_or(0, |dot| dot + 1),
    )
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
    fn icann_registrable_domain_skips_private_suffixes() {
        let check = |name: &str, expected: Option<&str>| {
            let got = icann_domain_start(name.as_bytes()).map(|start| &name[start..]);
            assert_eq!(got, expected, "{name}");
        };
        check("m15-78.126.com", Some("126.com"));
        check("c150240.vh.plala.or.jp", Some("plala.or.jp"));
        // Private entries of the list: a hoster's zone, a dynamic-DNS service.
        check("dd36226.kasserver.com", Some("kasserver.com"));
        check("sd-11162.dedibox.fr", Some("dedibox.fr"));
        check("host1.dyndns.org", Some("dyndns.org"));
        // A suffix alone has no registrable domain.
        check("co.uk", None);
        check("kasserver.com", Some("kasserver.com"));
        check("com", None);
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
