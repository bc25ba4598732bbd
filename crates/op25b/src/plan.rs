//! Validation: a configuration plus `now` becomes a [`Plan`] (the set contents, expired
//! exemptions left out), or every problem found at once.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use crate::config::Op25bConfig;
use crate::error::Op25bError;
use crate::prefix::{DisjointRanges, Prefix, overlaps};
use crate::time::{format_utc, unix_ms};

/// Ports customers must always reach: submission (RFC 6409) and implicit-TLS submission
/// (RFC 8314). OP25B only works because these stay open.
pub const NEVER_BLOCKED: [u16; 2] = [587, 465];

/// nft refuses element comments longer than this (bytes).
const COMMENT_MAX: usize = 128;
/// The kernel refuses element timeouts somewhere past 200000 days; stay well inside.
const MAX_EXPIRY_DAYS: i64 = 36_500;
const MAX_HITS_TIMEOUT_SECS: u64 = 3650 * 86_400;
const MAX_NFT_TIMEOUT: Duration = Duration::from_secs(3600);
const MAX_HITS_SIZE: u32 = 1 << 20;
/// Enough to fix a file in one go without drowning the message.
const MAX_PROBLEMS: usize = 50;

/// One set element as rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub prefix: Prefix,
    /// Seconds left until the element expires (rounded up); `None`: permanent.
    pub timeout_secs: Option<u64>,
    /// The exemption's reason, made safe for an nft string.
    pub comment: Option<String>,
    /// When it expires, as UTC text, for a human reading the ruleset.
    pub until: Option<String>,
}

/// An exemption left out because it has expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredExemption {
    pub prefix: Prefix,
    pub reason: String,
    pub expired: String,
}

/// A validated configuration resolved at one instant: what goes into each set.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) table: String,
    pub(crate) now_ms: i64,
    pub(crate) ports: Vec<u16>,
    pub(crate) interfaces: Vec<String>,
    pub(crate) log_rate: String,
    pub(crate) hits_timeout_secs: u64,
    pub(crate) hits_size: u32,
    pub(crate) pool4: Vec<Element>,
    pub(crate) pool6: Vec<Element>,
    pub(crate) exempt4: Vec<Element>,
    pub(crate) exempt6: Vec<Element>,
    pub(crate) relay4: Vec<Element>,
    pub(crate) relay6: Vec<Element>,
    pub(crate) expired: Vec<ExpiredExemption>,
}

impl Plan {
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Exemptions skipped because they expired (tell the operator; remove them from the file).
    pub fn expired(&self) -> &[ExpiredExemption] {
        &self.expired
    }

    /// Exemptions in force, both families.
    pub fn exemptions(&self) -> impl Iterator<Item = &Element> {
        self.exempt4.iter().chain(&self.exempt6)
    }
}

/// Checks `config` and resolves expiries at `now`. Errors list every problem found.
pub fn plan(config: &Op25bConfig, now: SystemTime) -> Result<Plan, Op25bError> {
    let now_ms = unix_ms(now);
    let mut problems = Vec::new();

    check_table_name(&config.table, &mut problems);

    if config.pools.is_empty() {
        problems.push("pools is empty: list the customer prefixes subject to OP25B".to_owned());
    }
    for (i, j) in overlaps(&config.pools, MAX_PROBLEMS) {
        problems.push(format!(
            "pools {} and {} overlap: list each address once",
            config.pools[i], config.pools[j]
        ));
    }
    for (i, j) in overlaps(&config.relays, MAX_PROBLEMS) {
        problems.push(format!(
            "relays {} and {} overlap: list each address once",
            config.relays[i], config.relays[j]
        ));
    }

    check_ports(&config.ports_blocked, &mut problems);
    check_interfaces(&config.interfaces, &mut problems);

    let hits_timeout_secs = config.hits_timeout.as_secs();
    if !(1..=MAX_HITS_TIMEOUT_SECS).contains(&hits_timeout_secs) {
        problems.push("hits_timeout must be between 1s and 3650 days".to_owned());
    }
    if !(Duration::from_secs(1)..=MAX_NFT_TIMEOUT).contains(&config.nft_timeout) {
        problems.push("nft_timeout must be between 1s and 1h".to_owned());
    }
    if !(1..=MAX_HITS_SIZE).contains(&config.hits_size) {
        problems.push(format!("hits_size must be between 1 and {MAX_HITS_SIZE}"));
    }

    // Exemptions: expired ones are inert, so they are neither rendered nor checked against
    // the live ones (re-adding an expired opt-out must not need the old line deleted).
    let pools = DisjointRanges::new(&config.pools);
    let mut live = Vec::new();
    let mut expired = Vec::new();
    for exemption in &config.exempt {
        let shown = format!("exemption {} ({:?})", exemption.prefix, exemption.reason);
        if exemption.reason.trim().is_empty() {
            problems.push(format!(
                "exemption {} has no reason: say why (plan, ticket)",
                exemption.prefix
            ));
        }
        if exemption
            .customer
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            problems.push(format!(
                "exemption {} has an empty customer: name the desk's customer id or leave it out",
                exemption.prefix
            ));
        }
        let mut element = Element {
            prefix: exemption.prefix,
            timeout_secs: None,
            comment: Some(nft_comment(&exemption.reason)),
            until: None,
        };
        if let Some(expiry) = &exemption.expires {
            let left_ms = expiry.unix_ms().saturating_sub(now_ms);
            if left_ms <= 0 {
                expired.push(ExpiredExemption {
                    prefix: exemption.prefix,
                    reason: exemption.reason.clone(),
                    expired: expiry.to_string(),
                });
                continue;
            }
            if left_ms > MAX_EXPIRY_DAYS * 86_400_000 {
                problems.push(format!(
                    "{shown} expires more than {MAX_EXPIRY_DAYS} days ahead; \
                     leave out `expires` for a permanent exemption"
                ));
            }
            element.timeout_secs = Some(left_ms.unsigned_abs().div_ceil(1000));
            element.until = Some(format_utc(expiry.unix_ms()));
        }
        // An exemption outside every pool changes nothing: almost always a typo that would
        // leave the customer who asked for it blocked, so it is an error, not a warning.
        if !config.pools.is_empty() && !pools.overlaps(&exemption.prefix) {
            problems.push(format!(
                "{shown} lies outside every pool, so it would have no effect (a typo?)"
            ));
        }
        live.push(element);
    }
    let live_prefixes: Vec<Prefix> = live.iter().map(|e| e.prefix).collect();
    for (i, j) in overlaps(&live_prefixes, MAX_PROBLEMS) {
        problems.push(format!(
            "exemptions {} ({:?}) and {} ({:?}) overlap: nftables needs disjoint entries, \
             keep one",
            live[i].prefix,
            live[i].comment.as_deref().unwrap_or(""),
            live[j].prefix,
            live[j].comment.as_deref().unwrap_or("")
        ));
    }

    if !problems.is_empty() {
        if problems.len() > MAX_PROBLEMS {
            let more = problems.len() - MAX_PROBLEMS;
            problems.truncate(MAX_PROBLEMS);
            problems.push(format!("... and {more} more"));
        }
        return Err(Op25bError::Invalid(problems));
    }

    let (pool4, pool6) = split(config.pools.iter().map(|&p| permanent(p)).collect());
    let (relay4, relay6) = split(config.relays.iter().map(|&p| permanent(p)).collect());
    let (exempt4, exempt6) = split(live);
    Ok(Plan {
        table: config.table.clone(),
        now_ms,
        ports: config.ports_blocked.clone(),
        interfaces: config.interfaces.clone(),
        log_rate: config.log_rate.to_string(),
        hits_timeout_secs,
        hits_size: config.hits_size,
        pool4,
        pool6,
        exempt4,
        exempt6,
        relay4,
        relay6,
        expired,
    })
}

fn permanent(prefix: Prefix) -> Element {
    Element {
        prefix,
        timeout_secs: None,
        comment: None,
        until: None,
    }
}

/// IPv4 and IPv6 apart, each sorted by address so the output is stable.
fn split(mut elements: Vec<Element>) -> (Vec<Element>, Vec<Element>) {
    elements.sort_by_key(|e| e.prefix.range());
    elements.into_iter().partition(|e| e.prefix.is_ipv4())
}

fn check_table_name(name: &str, problems: &mut Vec<String>) {
    let mut chars = name.chars();
    let ok = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        problems.push(format!(
            "table {name:?}: use 1-64 letters, digits and '_', starting with a letter"
        ));
    }
}

fn check_ports(ports: &[u16], problems: &mut Vec<String>) {
    if ports.is_empty() {
        problems.push("ports_blocked is empty: OP25B blocks at least port 25".to_owned());
    }
    let mut seen = HashSet::new();
    for &port in ports {
        if NEVER_BLOCKED.contains(&port) {
            problems.push(format!(
                "ports_blocked lists {port}: 587 and 465 are where customers send mail \
                 instead (SMTP AUTH), they are never blocked"
            ));
        } else if port == 0 {
            problems.push("ports_blocked lists 0, which is not a port".to_owned());
        } else if !seen.insert(port) {
            problems.push(format!("ports_blocked lists {port} twice"));
        }
    }
}

fn check_interfaces(interfaces: &[String], problems: &mut Vec<String>) {
    let mut seen = HashSet::new();
    for name in interfaces {
        let body = name.strip_suffix('*').unwrap_or(name);
        // Linux interface names: at most 15 bytes; '*' is nft's trailing wildcard.
        let ok = !body.is_empty()
            && name.len() <= 15
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !ok {
            problems.push(format!(
                "interface {name:?}: expected a Linux interface name (at most 15 of \
                 A-Z a-z 0-9 . - _), optionally ending in '*'"
            ));
        } else if !seen.insert(name.as_str()) {
            problems.push(format!("interface {name:?} is listed twice"));
        }
    }
}

/// nft strings have no escapes: double quotes become single ones, control characters
/// spaces, and the text is cut (on a character boundary) to nft's limit.
fn nft_comment(reason: &str) -> String {
    let mut out = String::new();
    for c in reason.trim().chars() {
        let c = match c {
            '"' => '\'',
            c if c.is_control() => ' ',
            c => c,
        };
        if out.len() + c.len_utf8() > COMMENT_MAX {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exemptions_of_revoked_customers_are_left_out() {
        let config: Op25bConfig = toml::from_str(
            r#"
            pools = ["198.51.100.0/24"]
            exempt = [
              { prefix = "198.51.100.128/28", reason = "static", customer = "C-1" },
              { prefix = "198.51.100.160/28", reason = "static", customer = "C-2" },
              { prefix = "198.51.100.77", reason = "opt-out" },
            ]
            "#,
        )
        .unwrap();
        assert!(config.has_customer_exemptions());
        assert_eq!(config.customer_exemptions("C-1").count(), 1);
        let (kept, out) = config.without_customers(|c| c == "C-1");
        let prefixes = |list: &[crate::config::Exemption]| {
            list.iter()
                .map(|e| e.prefix.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(prefixes(&out), ["198.51.100.128/28"]);
        assert_eq!(
            prefixes(&kept.exempt),
            ["198.51.100.160/28", "198.51.100.77"]
        );
        let plan = plan(&kept, SystemTime::UNIX_EPOCH).unwrap();
        assert!(!plan.set_update().contains("198.51.100.128/28"));
        assert!(plan.set_update().contains("198.51.100.160/28"));
        let (all, none) = config.without_customers(|_| false);
        assert_eq!(all, config);
        assert!(none.is_empty());
    }

    #[test]
    fn an_empty_customer_is_refused() {
        let config: Op25bConfig = toml::from_str(
            r#"
            pools = ["198.51.100.0/24"]
            exempt = [{ prefix = "198.51.100.128/28", reason = "static", customer = " " }]
            "#,
        )
        .unwrap();
        let error = plan(&config, SystemTime::UNIX_EPOCH)
            .unwrap_err()
            .to_string();
        assert!(error.contains("empty customer"), "{error}");
    }

    #[test]
    fn comments_are_made_safe_for_nft() {
        assert_eq!(nft_comment(" say \"hi\"\n\tnow "), "say 'hi'  now");
        let long = "固定".repeat(100);
        let cut = nft_comment(&long);
        assert!(cut.len() <= COMMENT_MAX && cut.len() > COMMENT_MAX - 3);
        assert!(long.starts_with(&cut));
    }
}
