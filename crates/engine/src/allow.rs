//! Operator allow-lists: matched before any lookup, so allowed mail costs no DNS query.

use std::collections::HashSet;

use ipnet::IpNet;
use prefix_trie::joint::JointPrefixMap;
use serde::{Deserialize, Serialize};

use crate::envelope::Envelope;
use crate::names::{NamePatternError, NamePatterns};
use crate::verdict::{AllowListKind, AllowScope, Reason};

/// The `[allow]` config table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AllowConfig {
    /// Client addresses or networks, IPv4 and IPv6: `192.0.2.1`, `198.51.100.0/24`.
    pub client_addresses: Vec<String>,
    /// Verified client host names: `mail.example.com`, `.example.com`, `/regex/`.
    pub client_names: Vec<String>,
    /// Senders: `user@example.com`, or a domain `example.com` / `@example.com`.
    pub senders: Vec<String>,
    /// Recipients, same syntax as senders.
    pub recipients: Vec<String>,
    /// Let mail to the RFC 2142 role addresses through.
    pub rfc2142: bool,
    pub rfc2142_locals: Vec<String>,
}

impl Default for AllowConfig {
    fn default() -> Self {
        AllowConfig {
            client_addresses: Vec::new(),
            client_names: Vec::new(),
            senders: Vec::new(),
            recipients: Vec::new(),
            rfc2142: true,
            rfc2142_locals: vec!["postmaster".into(), "abuse".into()],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AllowError {
    #[error("allow.client_addresses: {entry:?} is not an IP address or network")]
    Address { entry: String },
    #[error("allow.client_names: {0}")]
    Name(#[from] NamePatternError),
    #[error("allow.{list}: empty entry")]
    Empty { list: &'static str },
}

impl AllowConfig {
    /// The entries that skip every check, and those that skip greylisting only, each
    /// kind in its [`AllowScope::default_for`].
    pub fn by_scope(&self) -> (AllowConfig, AllowConfig) {
        let all = AllowConfig {
            senders: Vec::new(),
            recipients: Vec::new(),
            ..self.clone()
        };
        let greylist_only = AllowConfig {
            client_addresses: Vec::new(),
            client_names: Vec::new(),
            senders: self.senders.clone(),
            recipients: self.recipients.clone(),
            rfc2142: false,
            rfc2142_locals: Vec::new(),
        };
        (all, greylist_only)
    }
}

/// Compiled allow-lists, all of one [`AllowScope`].
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    scope: AllowScope,
    networks: JointPrefixMap<IpNet, String>,
    names: NamePatterns,
    senders: AddressList,
    recipients: AddressList,
    rfc2142_locals: HashSet<String>,
}

impl AllowList {
    /// Lists whose matches skip every check.
    pub fn new(config: &AllowConfig) -> Result<AllowList, AllowError> {
        AllowList::with_scope(config, AllowScope::All)
    }

    /// Lists whose matches skip what `scope` says.
    pub fn with_scope(config: &AllowConfig, scope: AllowScope) -> Result<AllowList, AllowError> {
        let mut networks = JointPrefixMap::new();
        for entry in &config.client_addresses {
            let net = parse_net(entry).ok_or_else(|| AllowError::Address {
                entry: entry.clone(),
            })?;
            networks.insert(net, entry.trim().to_string());
        }
        Ok(AllowList {
            scope,
            networks,
            names: NamePatterns::new(&config.client_names)?,
            senders: AddressList::new(&config.senders, "senders")?,
            recipients: AddressList::new(&config.recipients, "recipients")?,
            rfc2142_locals: if config.rfc2142 {
                config
                    .rfc2142_locals
                    .iter()
                    .map(|l| l.to_ascii_lowercase())
                    .collect()
            } else {
                HashSet::new()
            },
        })
    }

    /// The first allow-list entry that covers this transaction.
    pub fn check(&self, envelope: &Envelope) -> Option<Reason> {
        let scope = self.scope;
        let allowed = |list, entry| Some(Reason::Allowed { list, entry, scope });
        if let Some((_, entry)) = self.networks.get_lpm(&IpNet::from(envelope.client_address)) {
            return allowed(AllowListKind::ClientAddress, entry.clone());
        }
        if let Some(entry) = envelope
            .client_name
            .as_deref()
            .and_then(|name| self.names.find(name))
        {
            return allowed(AllowListKind::ClientName, entry);
        }
        if let Some(entry) = self.senders.find(&envelope.sender) {
            return allowed(AllowListKind::Sender, entry);
        }
        if let Some(entry) = self.recipients.find(&envelope.recipient) {
            return allowed(AllowListKind::Recipient, entry);
        }
        if !self.rfc2142_locals.is_empty() && envelope.recipient.contains('@') {
            let local = Envelope::local_part_of(&envelope.recipient);
            if self.rfc2142_locals.contains(&local) {
                return allowed(AllowListKind::Rfc2142, format!("{local}@"));
            }
        }
        None
    }
}

fn parse_net(entry: &str) -> Option<IpNet> {
    let entry = entry.trim();
    entry
        .parse::<IpNet>()
        .map(|n| n.trunc())
        .ok()
        .or_else(|| entry.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// Addresses (`user@example.com`) and domains (`example.com`, `@example.com`).
#[derive(Debug, Clone, Default)]
struct AddressList {
    addresses: HashSet<String>,
    domains: HashSet<String>,
}

impl AddressList {
    fn new(entries: &[String], list: &'static str) -> Result<AddressList, AllowError> {
        let mut out = AddressList::default();
        for entry in entries {
            let entry = entry.trim().to_ascii_lowercase();
            if entry.is_empty() || entry == "@" {
                return Err(AllowError::Empty { list });
            }
            match entry.strip_prefix('@') {
                Some(domain) => out.domains.insert(domain.to_string()),
                None if entry.contains('@') => out.addresses.insert(entry),
                None => out.domains.insert(entry),
            };
        }
        Ok(out)
    }

    fn find(&self, address: &str) -> Option<String> {
        if self.addresses.is_empty() && self.domains.is_empty() {
            return None;
        }
        let lower = address.trim().to_ascii_lowercase();
        if self.addresses.contains(&lower) {
            return Some(lower);
        }
        let domain = Envelope::domain_of(&lower)?;
        self.domains.contains(&domain).then_some(domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(config: &AllowConfig, envelope: &Envelope, expected: Option<(AllowListKind, &str)>) {
        let list = AllowList::new(config).unwrap();
        let got = list.check(envelope);
        let expected = expected.map(|(list, entry)| Reason::Allowed {
            scope: AllowScope::All,
            list,
            entry: entry.to_string(),
        });
        assert_eq!(got, expected, "{envelope:?}");
    }

    fn envelope(ip: &str, name: Option<&str>, sender: &str, recipient: &str) -> Envelope {
        Envelope {
            client_name: name.map(str::to_string),
            sender: sender.into(),
            recipient: recipient.into(),
            ..Envelope::new(ip.parse().unwrap())
        }
    }

    #[test]
    fn each_list() {
        let config = AllowConfig {
            client_addresses: vec![
                "192.0.2.0/28".into(),
                "2001:db8:1::/48".into(),
                "198.51.100.7".into(),
            ],
            client_names: vec![".example.org".into()],
            senders: vec!["boss@example.net".into(), "@partner.example".into()],
            recipients: vec!["open.example".into()],
            ..AllowConfig::default()
        };
        use AllowListKind::*;
        check(
            &config,
            &envelope("192.0.2.5", None, "a@b.example", "u@example.com"),
            Some((ClientAddress, "192.0.2.0/28")),
        );
        check(
            &config,
            &envelope("192.0.2.16", None, "a@b.example", "u@example.com"),
            None,
        );
        check(
            &config,
            &envelope("2001:db8:1:ff::1", None, "", "u@example.com"),
            Some((ClientAddress, "2001:db8:1::/48")),
        );
        check(
            &config,
            &envelope("198.51.100.7", None, "", "u@example.com"),
            Some((ClientAddress, "198.51.100.7")),
        );
        check(
            &config,
            &envelope("203.0.113.1", Some("mx.Example.org"), "", "u@example.com"),
            Some((ClientName, ".example.org")),
        );
        check(
            &config,
            &envelope("203.0.113.1", None, "BOSS@example.net", "u@example.com"),
            Some((Sender, "boss@example.net")),
        );
        check(
            &config,
            &envelope("203.0.113.1", None, "x@partner.example", "u@example.com"),
            Some((Sender, "partner.example")),
        );
        check(
            &config,
            &envelope("203.0.113.1", None, "x@example.net", "u@open.example"),
            Some((Recipient, "open.example")),
        );
        check(
            &config,
            &envelope(
                "203.0.113.1",
                None,
                "x@example.net",
                "PostMaster@example.com",
            ),
            Some((Rfc2142, "postmaster@")),
        );
        check(
            &config,
            &envelope("203.0.113.1", None, "x@example.net", "abuse@example.com"),
            Some((Rfc2142, "abuse@")),
        );
        let no_rfc = AllowConfig {
            rfc2142: false,
            ..config.clone()
        };
        check(
            &no_rfc,
            &envelope("203.0.113.1", None, "x@example.net", "abuse@example.com"),
            None,
        );
    }

    #[test]
    fn bad_entries() {
        let bad = AllowConfig {
            client_addresses: vec!["192.0.2.300".into()],
            ..AllowConfig::default()
        };
        assert!(
            AllowList::new(&bad)
                .unwrap_err()
                .to_string()
                .contains("192.0.2.300")
        );
    }
}
