//! Host-name patterns as operators write them: `name` (exact), `.domain` (the domain and
//! every name below it), `/regex/` (case-insensitive).

use std::collections::HashSet;

use regex::RegexSet;

#[derive(Debug, thiserror::Error)]
pub enum NamePatternError {
    #[error("invalid regex {entry:?}: {source}")]
    Regex {
        entry: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("empty host-name pattern")]
    Empty,
}

/// A compiled list of host-name patterns. Matching is case-insensitive and ignores one
/// trailing dot.
#[derive(Debug, Clone, Default)]
pub struct NamePatterns {
    exact: HashSet<String>,
    suffixes: HashSet<String>,
    regex_entries: Vec<String>,
    regexes: Option<RegexSet>,
}

impl NamePatterns {
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Result<NamePatterns, NamePatternError> {
        let mut patterns = NamePatterns::default();
        let mut regex_sources = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if let Some(body) = entry.strip_prefix('/').and_then(|e| e.strip_suffix('/')) {
                regex_sources.push(format!("(?i){body}"));
                patterns.regex_entries.push(entry.to_string());
            } else if let Some(domain) = entry.strip_prefix('.') {
                let domain = normalise(domain);
                if domain.is_empty() {
                    return Err(NamePatternError::Empty);
                }
                patterns.suffixes.insert(domain);
            } else {
                let name = normalise(entry);
                if name.is_empty() {
                    return Err(NamePatternError::Empty);
                }
                patterns.exact.insert(name);
            }
        }
        if !regex_sources.is_empty() {
            let set = RegexSet::new(&regex_sources).map_err(|source| {
                // Find the culprit so the error names the operator's entry.
                let entry = regex_sources
                    .iter()
                    .zip(&patterns.regex_entries)
                    .find(|(src, _)| regex::Regex::new(src).is_err())
                    .map_or_else(String::new, |(_, e)| e.clone());
                NamePatternError::Regex {
                    entry,
                    source: Box::new(source),
                }
            })?;
            patterns.regexes = Some(set);
        }
        Ok(patterns)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty() && self.regexes.is_none()
    }

    /// The entry that matches `name`, written as the operator wrote it.
    pub fn find(&self, name: &str) -> Option<String> {
        let name = normalise(name);
        if self.exact.contains(&name) {
            return Some(name);
        }
        // Walk label boundaries: "a.b.example.com" tries "a.b.example.com", "b.example.com", ...
        let mut rest = name.as_str();
        loop {
            if self.suffixes.contains(rest) {
                return Some(format!(".{rest}"));
            }
            match rest.split_once('.') {
                Some((_, tail)) if !tail.is_empty() => rest = tail,
                _ => break,
            }
        }
        let set = self.regexes.as_ref()?;
        let first = set.matches(&name).into_iter().next()?;
        Some(self.regex_entries[first].clone())
    }
}

fn normalise(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(patterns: &[&str], name: &str, expected: Option<&str>) {
        let compiled = NamePatterns::new(patterns).unwrap();
        assert_eq!(
            compiled.find(name).as_deref(),
            expected,
            "{name} against {patterns:?}"
        );
    }

    #[test]
    fn matching() {
        let list = &[
            "mail.example.com",
            ".example.org",
            "/^mx[0-9]+\\.example\\.net$/",
        ];
        check(list, "mail.example.com", Some("mail.example.com"));
        check(list, "MAIL.Example.COM.", Some("mail.example.com"));
        check(list, "smtp.mail.example.com", None);
        check(list, "example.org", Some(".example.org"));
        check(list, "a.b.example.org", Some(".example.org"));
        check(list, "badexample.org", None);
        check(
            list,
            "mx12.example.net",
            Some("/^mx[0-9]+\\.example\\.net$/"),
        );
        check(list, "mx.example.net", None);
        check(&[], "anything.example", None);
    }

    #[test]
    fn bad_regex_is_named() {
        let err = NamePatterns::new(&["/(/"]).unwrap_err().to_string();
        assert!(err.contains("/(/"), "{err}");
    }
}
