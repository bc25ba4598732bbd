//! Exceptions: names that match a generic rule but belong to proper mail servers.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use regex::bytes::{RegexSet, RegexSetBuilder};

use crate::ClassifierError;
use crate::name::is_valid_name;
use crate::regex_options;

/// The shipped list; its format is described at its top.
pub(crate) const BUILTIN_EXCEPTIONS: &str = include_str!("exceptions.txt");

/// Entries of the built-in list: non-blank lines that are not `#` comments.
pub(crate) fn builtin_entries() -> impl Iterator<Item = &'static str> {
    BUILTIN_EXCEPTIONS
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
}

/// FNV-1a: a suffix walk hashes several short keys per name, and SipHash's resistance to
/// chosen collisions buys nothing here, because only configured entries are ever inserted.
#[derive(Default)]
struct Fnv1a(u64);

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &byte in bytes {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type NameMap = HashMap<Box<[u8]>, usize, BuildHasherDefault<Fnv1a>>;

/// All exceptions, each kind in the structure that makes its lookup cheap.
/// Values are indexes into `entries`, the text as written, which verdicts report.
#[derive(Debug)]
pub(crate) struct Exceptions {
    entries: Vec<String>,
    exact: NameMap,
    suffix: NameMap,
    regexes: RegexSet,
    regex_entries: Vec<usize>,
}

enum Kind {
    Exact(String),
    Suffix(String),
    Regex(String),
}

fn parse(entry: &str) -> Result<Kind, String> {
    if entry.is_empty() {
        return Err("empty entry".into());
    }
    if let Some(body) = entry.strip_prefix('/') {
        let pattern = body
            .strip_suffix('/')
            .filter(|p| !p.is_empty())
            .ok_or("a regular expression is written /pattern/")?;
        regex_options(regex::bytes::RegexBuilder::new(pattern))
            .build()
            .map_err(|e| format!("invalid regular expression: {e}"))?;
        return Ok(Kind::Regex(pattern.to_owned()));
    }
    if entry.starts_with("*.") {
        return Err("write .example.com for a domain and every name under it".into());
    }
    let (is_suffix, name) = match entry.strip_prefix('.') {
        Some(domain) => (true, domain),
        None => (false, entry),
    };
    let name = name.to_ascii_lowercase();
    let name = name.strip_suffix('.').unwrap_or(&name);
    if name.is_empty() || !is_valid_name(name.as_bytes()) {
        return Err("not a host name, .domain or /regex/".into());
    }
    Ok(if is_suffix {
        Kind::Suffix(name.to_owned())
    } else {
        Kind::Exact(name.to_owned())
    })
}

impl Exceptions {
    /// Builds the set from entries as written; a bad entry is an error naming it.
    pub(crate) fn new<'a>(raw: impl IntoIterator<Item = &'a str>) -> Result<Self, ClassifierError> {
        let mut entries = Vec::new();
        let mut exact = NameMap::default();
        let mut suffix = NameMap::default();
        let mut patterns = Vec::new();
        let mut regex_entries = Vec::new();
        for raw_entry in raw {
            let entry = raw_entry.trim();
            let kind = parse(entry).map_err(|reason| ClassifierError::InvalidException {
                entry: raw_entry.to_owned(),
                reason,
            })?;
            let index = entries.len();
            entries.push(entry.to_owned());
            // A repeated entry is harmless: the first one written is the one reported.
            match kind {
                Kind::Exact(name) => {
                    exact
                        .entry(name.into_bytes().into_boxed_slice())
                        .or_insert(index);
                }
                Kind::Suffix(domain) => {
                    suffix
                        .entry(domain.into_bytes().into_boxed_slice())
                        .or_insert(index);
                }
                Kind::Regex(pattern) => {
                    patterns.push(pattern);
                    regex_entries.push(index);
                }
            }
        }
        let regexes = regex_options(RegexSetBuilder::new(&patterns))
            .build()
            .map_err(|source| ClassifierError::RuleSetTooLarge { source })?;
        Ok(Exceptions {
            entries,
            exact,
            suffix,
            regexes,
            regex_entries,
        })
    }

    /// The first exception that covers `name` (normalised): exact names, then domains from
    /// the most specific, then regular expressions in the order written.
    pub(crate) fn find(&self, name: &[u8]) -> Option<&str> {
        let index = self
            .exact
            .get(name)
            .or_else(|| self.find_suffix(name))
            .copied()
            .or_else(|| {
                if self.regex_entries.is_empty() {
                    return None;
                }
                let first = self.regexes.matches(name).iter().next()?;
                Some(self.regex_entries[first])
            })?;
        Some(&self.entries[index])
    }

    fn find_suffix(&self, name: &[u8]) -> Option<&usize> {
        if self.suffix.is_empty() {
            return None;
        }
        let mut rest = name;
        loop {
            if let Some(index) = self.suffix.get(rest) {
                return Some(index);
            }
            let dot = rest.iter().position(|&b| b == b'.')?;
            rest = &rest[dot + 1..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_list_parses_and_has_only_domains() {
        let entries: Vec<_> = builtin_entries().collect();
        assert!(!entries.is_empty(), "{entries:?}");
        for entry in &entries {
            assert!(matches!(parse(entry), Ok(Kind::Suffix(_))), "{entry}");
        }
        Exceptions::new(entries).unwrap();
    }

    #[test]
    fn find_reports_the_most_specific_entry() {
        let exceptions = Exceptions::new([
            ".example.net",
            "/^a/",
            ".mx.example.net",
            "a1.mx.example.net",
        ])
        .unwrap();
        let check = |name: &str, expected: Option<&str>| {
            assert_eq!(exceptions.find(name.as_bytes()), expected, "{name}");
        };
        check("a1.mx.example.net", Some("a1.mx.example.net"));
        check("a2.mx.example.net", Some(".mx.example.net"));
        check("mx.example.net", Some(".mx.example.net"));
        check("example.net", Some(".example.net"));
        check("aexample.net", Some("/^a/"));
        check("xexample.net", None);
        check("net", None);
    }
}
