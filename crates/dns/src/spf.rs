//! A bounded SPF (RFC 7208) evaluator over [`Dns`]'s resolver, its cache and its in-flight
//! cap, that says which mechanism decided.
//!
//! Supported: `v=spf1` record selection (no record → `none`, several → `permerror`), the
//! mechanisms `all`, `include`, `a`, `mx`, `ip4`, `ip6` (with dual CIDR lengths on `a`/`mx`),
//! the `redirect` modifier (`exp` and unknown modifiers are ignored), the limit of 10 terms
//! that cause DNS lookups and of 2 void lookups (both → `permerror`), at most 10 MX names.
//!
//! **Not evaluated:** `ptr`, `exists` and macros (`%{...}` in a domain-spec). When evaluation
//! reaches such a term before anything matched it stops with `neutral` and that term as the
//! matched one, which is never a narrow pass: the caller must treat the sender as unproven.
//! That is a deliberate simplification, not RFC 7208's result for such records.
//!
//! **Invariant:** DNS trouble is `temperror`, never `fail`.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;

use hickory_resolver::proto::rr::{Name, RData, RecordType};

use crate::lookup::{Dns, Outcome};

/// RFC 7208 section 4.6.4: terms that cause DNS lookups.
pub const MAX_DNS_LOOKUPS: u32 = 10;
/// RFC 7208 section 4.6.4: lookups that return no answer (NXDOMAIN or no data).
pub const MAX_VOID_LOOKUPS: u32 = 2;
/// RFC 7208 section 4.6.4: MX names looked up for one `mx` mechanism.
pub const MAX_MX_NAMES: usize = 10;
/// Longest SPF record accepted (RFC 7208 advises staying within 450 bytes; a DNS answer
/// bounds it anyway).
pub const MAX_RECORD_LEN: usize = 4096;

/// The result of `check_host()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpfResult {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
}

impl SpfResult {
    pub fn id(self) -> &'static str {
        match self {
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::Neutral => "neutral",
            SpfResult::None => "none",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }
}

/// The kind of mechanism that decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MechanismKind {
    All,
    A,
    Mx,
    Ip4,
    Ip6,
    /// Not evaluated (see the module documentation).
    Ptr,
    /// Not evaluated.
    Exists,
    /// A term with a macro, not evaluated.
    Macro,
}

/// The mechanism that decided, as written in the record of `domain`. Through `include`, it
/// is the innermost mechanism (the one in the included record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matched {
    /// The domain whose record holds the term.
    pub domain: String,
    /// The term as written, lower case (e.g. `ip4:192.0.2.0/24`, `mx`, `+all`).
    pub term: String,
    pub kind: MechanismKind,
    /// The CIDR length that applied to the client's address family (`ip4`/`ip6`/`a`/`mx`).
    pub prefix: Option<u8>,
}

/// What [`Dns::spf_check`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpfOutcome {
    pub result: SpfResult,
    pub matched: Option<Matched>,
    /// Why, for errors (and the DNS lookups spent, for logs).
    pub detail: String,
}

/// Which passes count as "this client is one of the domain's own servers".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NarrowRule {
    /// Smallest `ip4` (and `a`/`mx` IPv4 CIDR) prefix length accepted.
    pub min_ip4_prefix: u8,
    /// Smallest `ip6` (and `a`/`mx` IPv6 CIDR) prefix length accepted.
    pub min_ip6_prefix: u8,
}

impl Default for NarrowRule {
    fn default() -> Self {
        NarrowRule {
            min_ip4_prefix: 16,
            min_ip6_prefix: 32,
        }
    }
}

impl SpfOutcome {
    /// A pass through `ip4`/`ip6`/`a`/`mx` whose range is no wider than the rule allows;
    /// never through `all`, `ptr`, `exists` or a macro.
    pub fn narrow_pass(&self, rule: &NarrowRule, client: IpAddr) -> bool {
        let Some(matched) = &self.matched else {
            return false;
        };
        if self.result != SpfResult::Pass {
            return false;
        }
        let min = if client.to_canonical().is_ipv4() {
            rule.min_ip4_prefix
        } else {
            rule.min_ip6_prefix
        };
        match matched.kind {
            MechanismKind::Ip4 | MechanismKind::Ip6 | MechanismKind::A | MechanismKind::Mx => {
                matched.prefix.is_some_and(|p| p >= min)
            }
            MechanismKind::All | MechanismKind::Ptr | MechanismKind::Exists => false,
            MechanismKind::Macro => false,
        }
    }
}

impl fmt::Display for SpfOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.result.id())?;
        if let Some(m) = &self.matched {
            write!(f, " ({} in {})", m.term, m.domain)?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

impl Qualifier {
    fn result(self) -> SpfResult {
        match self {
            Qualifier::Pass => SpfResult::Pass,
            Qualifier::Fail => SpfResult::Fail,
            Qualifier::SoftFail => SpfResult::SoftFail,
            Qualifier::Neutral => SpfResult::Neutral,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Mechanism {
    All,
    Include(String),
    A(Option<String>, u8, u8),
    Mx(Option<String>, u8, u8),
    Ip4(Ipv4Addr, u8),
    Ip6(Ipv6Addr, u8),
    /// `ptr`, `exists`, or any term with a macro.
    Unsupported(MechanismKind),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Term {
    qualifier: Qualifier,
    mechanism: Mechanism,
    text: String,
}

#[derive(Debug, PartialEq, Eq)]
struct Record {
    terms: Vec<Term>,
    redirect: Option<String>,
}

/// Parses one `v=spf1` record (already selected). `Err` is a permerror's reason.
fn parse_record(text: &str) -> Result<Record, String> {
    let mut words = text.split_ascii_whitespace();
    let version = words.next().unwrap_or_default();
    if !version.eq_ignore_ascii_case("v=spf1") {
        return Err("not a v=spf1 record".into());
    }
    let mut terms = Vec::new();
    let mut redirect = None;
    for word in words {
        let lower = word.to_ascii_lowercase();
        // A modifier's name is alphanumeric (with - _ .) up to its '='.
        if let Some((name, value)) = lower.split_once('=')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
        {
            if name == "redirect" {
                if redirect.is_some() {
                    return Err("two redirect modifiers".into());
                }
                redirect = Some(value.to_owned());
            }
            // exp= and unknown modifiers do not change the result.
            continue;
        }
        terms.push(parse_term(&lower)?);
    }
    Ok(Record { terms, redirect })
}

fn parse_term(word: &str) -> Result<Term, String> {
    let (qualifier, rest) = match word.as_bytes().first() {
        Some(b'+') => (Qualifier::Pass, &word[1..]),
        Some(b'-') => (Qualifier::Fail, &word[1..]),
        Some(b'~') => (Qualifier::SoftFail, &word[1..]),
        Some(b'?') => (Qualifier::Neutral, &word[1..]),
        _ => (Qualifier::Pass, word),
    };
    let bad = || format!("bad term {word:?}");
    let name_end = rest.find([':', '/']).unwrap_or(rest.len());
    let (name, arg) = rest.split_at(name_end);
    let domain_arg = |arg: &str| -> Result<Option<String>, String> {
        match arg.strip_prefix(':') {
            None if arg.is_empty() => Ok(None),
            Some(d) if !d.is_empty() => Ok(Some(d.to_owned())),
            _ => Err(bad()),
        }
    };
    let has_macro = rest.contains('%');
    let mechanism = match name {
        "all" if arg.is_empty() => Mechanism::All,
        "include" => match domain_arg(arg)? {
            Some(_) if has_macro => Mechanism::Unsupported(MechanismKind::Macro),
            Some(d) => Mechanism::Include(d),
            None => return Err(bad()),
        },
        "a" | "mx" => {
            let (domain, cidr) = match arg.find('/') {
                Some(i) => (&arg[..i], &arg[i..]),
                None => (arg, ""),
            };
            let domain = domain_arg(domain)?;
            let (v4, v6) = dual_cidr(cidr).ok_or_else(bad)?;
            if has_macro {
                Mechanism::Unsupported(MechanismKind::Macro)
            } else if name == "a" {
                Mechanism::A(domain, v4, v6)
            } else {
                Mechanism::Mx(domain, v4, v6)
            }
        }
        "ip4" => {
            let spec = arg.strip_prefix(':').ok_or_else(bad)?;
            let (addr, prefix) = split_prefix(spec, 32).ok_or_else(bad)?;
            Mechanism::Ip4(addr.parse().map_err(|_| bad())?, prefix)
        }
        "ip6" => {
            let spec = arg.strip_prefix(':').ok_or_else(bad)?;
            let (addr, prefix) = split_prefix(spec, 128).ok_or_else(bad)?;
            Mechanism::Ip6(addr.parse().map_err(|_| bad())?, prefix)
        }
        "ptr" => {
            domain_arg(arg)?;
            Mechanism::Unsupported(MechanismKind::Ptr)
        }
        "exists" => {
            domain_arg(arg)?.ok_or_else(bad)?;
            Mechanism::Unsupported(MechanismKind::Exists)
        }
        _ => return Err(format!("unknown mechanism {word:?}")),
    };
    Ok(Term {
        qualifier,
        mechanism,
        text: word.to_owned(),
    })
}

/// `/n` after an address, at most `max`; no `/` is `max`.
fn split_prefix(spec: &str, max: u8) -> Option<(&str, u8)> {
    match spec.split_once('/') {
        None => Some((spec, max)),
        Some((addr, n)) => {
            let n: u8 = parse_len(n)?;
            (n <= max).then_some((addr, n))
        }
    }
}

fn parse_len(n: &str) -> Option<u8> {
    if n.is_empty() || n.len() > 3 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// `""`, `/v4`, `//v6` or `/v4//v6`.
fn dual_cidr(cidr: &str) -> Option<(u8, u8)> {
    if cidr.is_empty() {
        return Some((32, 128));
    }
    let (v4, v6) = match cidr.strip_prefix("//") {
        Some(v6) => (None, Some(v6)),
        None => {
            let rest = cidr.strip_prefix('/')?;
            match rest.split_once("//") {
                Some((v4, v6)) => (Some(v4), Some(v6)),
                None => (Some(rest), None),
            }
        }
    };
    let v4 = v4.map_or(Some(32), parse_len).filter(|n| *n <= 32)?;
    let v6 = v6.map_or(Some(128), parse_len).filter(|n| *n <= 128)?;
    Some((v4, v6))
}

fn in_prefix(client: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (client, network) {
        (IpAddr::V4(c), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(c) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(c), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(c) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Lookups spent so far in one evaluation (shared by every include and redirect).
#[derive(Default)]
struct Budget {
    lookups: u32,
    voids: u32,
}

/// A step that ended the evaluation early.
enum Stop {
    Temp(String),
    Perm(String),
}

impl Budget {
    fn lookup(&mut self) -> Result<(), Stop> {
        self.lookups += 1;
        if self.lookups > MAX_DNS_LOOKUPS {
            return Err(Stop::Perm(format!(
                "more than {MAX_DNS_LOOKUPS} DNS lookups"
            )));
        }
        Ok(())
    }

    fn void(&mut self) -> Result<(), Stop> {
        self.voids += 1;
        if self.voids > MAX_VOID_LOOKUPS {
            return Err(Stop::Perm(format!(
                "more than {MAX_VOID_LOOKUPS} void lookups"
            )));
        }
        Ok(())
    }
}

type Eval<'a> = Pin<Box<dyn Future<Output = Result<SpfOutcome, Stop>> + Send + 'a>>;

fn name_of(domain: &str) -> Option<Name> {
    let domain = domain.trim_end_matches('.');
    if domain.is_empty() || domain.len() > 253 || !domain.contains('.') {
        return None;
    }
    let mut name = Name::from_ascii(domain).ok()?;
    name.set_fqdn(true);
    Some(name)
}

impl Dns {
    /// SPF `check_host()` for `client` and the envelope sender's `domain` (the part after
    /// '@'; the caller uses the HELO name for the null sender if it wants). At most
    /// [`MAX_DNS_LOOKUPS`] lookup terms, each query bounded by the resolver's deadline.
    pub async fn spf_check(&self, client: IpAddr, domain: &str) -> SpfOutcome {
        let client = client.to_canonical();
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if name_of(&domain).is_none() {
            return SpfOutcome {
                result: SpfResult::None,
                matched: None,
                detail: format!("not a domain name: {domain:?}"),
            };
        }
        let mut budget = Budget::default();
        let outcome = self.check_host(client, domain, &mut budget, true).await;
        let spent = format!("{} lookups", budget.lookups + 1);
        match outcome {
            Ok(mut outcome) => {
                if outcome.detail.is_empty() {
                    outcome.detail = spent;
                }
                outcome
            }
            Err(Stop::Temp(why)) => SpfOutcome {
                result: SpfResult::TempError,
                matched: None,
                detail: why,
            },
            Err(Stop::Perm(why)) => SpfOutcome {
                result: SpfResult::PermError,
                matched: None,
                detail: why,
            },
        }
    }

    /// One record's evaluation; `top` is false inside include and redirect.
    fn check_host<'a>(
        &'a self,
        client: IpAddr,
        domain: String,
        budget: &'a mut Budget,
        top: bool,
    ) -> Eval<'a> {
        Box::pin(async move {
            let Some(name) = name_of(&domain) else {
                return Err(Stop::Perm(format!("bad domain {domain:?}")));
            };
            let texts = match self.query(name, RecordType::TXT).await {
                Outcome::Records(records, _) => records
                    .iter()
                    .filter_map(|r| match r {
                        RData::TXT(t) => Some(
                            t.txt_data
                                .iter()
                                .flat_map(|s| s.iter().copied())
                                .take(MAX_RECORD_LEN + 1)
                                .collect::<Vec<u8>>(),
                        ),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
                Outcome::NxDomain(_) | Outcome::NoData(_) => Vec::new(),
                Outcome::Failed(why) => return Err(Stop::Temp(format!("TXT {domain}: {why}"))),
            };
            let spf: Vec<&Vec<u8>> = texts
                .iter()
                .filter(|t| {
                    t.len() >= 6
                        && t[..6].eq_ignore_ascii_case(b"v=spf1")
                        && t.get(6).is_none_or(|b| *b == b' ')
                })
                .collect();
            let text = match spf.as_slice() {
                [] if top => {
                    return Ok(SpfOutcome {
                        result: SpfResult::None,
                        matched: None,
                        detail: format!("no SPF record at {domain}"),
                    });
                }
                [] => return Err(Stop::Perm(format!("no SPF record at {domain}"))),
                [one] => *one,
                _ => return Err(Stop::Perm(format!("several SPF records at {domain}"))),
            };
            if text.len() > MAX_RECORD_LEN || !text.is_ascii() {
                return Err(Stop::Perm(format!("unreadable SPF record at {domain}")));
            }
            let text = String::from_utf8_lossy(text);
            let record = parse_record(&text).map_err(|e| Stop::Perm(format!("{domain}: {e}")))?;
            let has_all = record.terms.iter().any(|t| t.mechanism == Mechanism::All);
            for term in &record.terms {
                let matched = |kind, prefix| Matched {
                    domain: domain.clone(),
                    term: term.text.clone(),
                    kind,
                    prefix,
                };
                let done = |kind, prefix| {
                    Ok(SpfOutcome {
                        result: term.qualifier.result(),
                        matched: Some(matched(kind, prefix)),
                        detail: String::new(),
                    })
                };
                match &term.mechanism {
                    Mechanism::All => return done(MechanismKind::All, None),
                    Mechanism::Ip4(net, prefix) => {
                        if in_prefix(client, IpAddr::V4(*net), *prefix) {
                            return done(MechanismKind::Ip4, Some(*prefix));
                        }
                    }
                    Mechanism::Ip6(net, prefix) => {
                        if in_prefix(client, IpAddr::V6(*net), *prefix) {
                            return done(MechanismKind::Ip6, Some(*prefix));
                        }
                    }
                    Mechanism::A(target, v4, v6) => {
                        budget.lookup()?;
                        let target = target.clone().unwrap_or_else(|| domain.clone());
                        let prefix = if client.is_ipv4() { *v4 } else { *v6 };
                        if self.addr_match(client, &target, prefix, budget).await? {
                            return done(MechanismKind::A, Some(prefix));
                        }
                    }
                    Mechanism::Mx(target, v4, v6) => {
                        budget.lookup()?;
                        let target = target.clone().unwrap_or_else(|| domain.clone());
                        let prefix = if client.is_ipv4() { *v4 } else { *v6 };
                        if self.mx_match(client, &target, prefix, budget).await? {
                            return done(MechanismKind::Mx, Some(prefix));
                        }
                    }
                    Mechanism::Include(target) => {
                        budget.lookup()?;
                        let inner = self
                            .check_host(client, target.clone(), budget, false)
                            .await?;
                        match inner.result {
                            // The included record's mechanism is the one that decided.
                            SpfResult::Pass => {
                                return Ok(SpfOutcome {
                                    result: term.qualifier.result(),
                                    ..inner
                                });
                            }
                            SpfResult::Neutral
                                if inner.matched.as_ref().is_some_and(|m| {
                                    matches!(
                                        m.kind,
                                        MechanismKind::Ptr
                                            | MechanismKind::Exists
                                            | MechanismKind::Macro
                                    )
                                }) =>
                            {
                                // Not evaluated inside: neither is the rest here.
                                return Ok(inner);
                            }
                            _ => {}
                        }
                    }
                    Mechanism::Unsupported(kind) => {
                        return Ok(SpfOutcome {
                            result: SpfResult::Neutral,
                            matched: Some(matched(*kind, None)),
                            detail: "not evaluated (ptr, exists and macros are not supported)"
                                .into(),
                        });
                    }
                }
            }
            if let Some(target) = record.redirect.filter(|_| !has_all) {
                if target.contains('%') {
                    return Ok(SpfOutcome {
                        result: SpfResult::Neutral,
                        matched: Some(Matched {
                            domain: domain.clone(),
                            term: format!("redirect={target}"),
                            kind: MechanismKind::Macro,
                            prefix: None,
                        }),
                        detail: "not evaluated (macros are not supported)".into(),
                    });
                }
                budget.lookup()?;
                return self.check_host(client, target, budget, false).await;
            }
            Ok(SpfOutcome {
                result: SpfResult::Neutral,
                matched: None,
                detail: String::new(),
            })
        })
    }

    /// Whether an A/AAAA record of `target` covers the client at `prefix`.
    async fn addr_match(
        &self,
        client: IpAddr,
        target: &str,
        prefix: u8,
        budget: &mut Budget,
    ) -> Result<bool, Stop> {
        let Some(name) = name_of(target) else {
            return Err(Stop::Perm(format!("bad domain {target:?}")));
        };
        let rtype = if client.is_ipv4() {
            RecordType::A
        } else {
            RecordType::AAAA
        };
        match self.query(name, rtype).await {
            Outcome::Records(records, _) => Ok(records
                .iter()
                .filter_map(rdata_addr)
                .any(|a| in_prefix(client, a, prefix))),
            Outcome::NxDomain(_) | Outcome::NoData(_) => {
                budget.void()?;
                Ok(false)
            }
            Outcome::Failed(why) => Err(Stop::Temp(format!("{rtype} {target}: {why}"))),
        }
    }

    /// Whether an address of one of `target`'s MX hosts covers the client at `prefix`.
    async fn mx_match(
        &self,
        client: IpAddr,
        target: &str,
        prefix: u8,
        budget: &mut Budget,
    ) -> Result<bool, Stop> {
        let Some(name) = name_of(target) else {
            return Err(Stop::Perm(format!("bad domain {target:?}")));
        };
        let hosts: Vec<String> = match self.query(name, RecordType::MX).await {
            Outcome::Records(records, _) => records
                .iter()
                .filter_map(|r| match r {
                    RData::MX(mx) => Some(mx.exchange.to_ascii()),
                    _ => None,
                })
                .collect(),
            Outcome::NxDomain(_) | Outcome::NoData(_) => {
                budget.void()?;
                return Ok(false);
            }
            Outcome::Failed(why) => return Err(Stop::Temp(format!("MX {target}: {why}"))),
        };
        if hosts.len() > MAX_MX_NAMES {
            return Err(Stop::Perm(format!(
                "{target} has more than {MAX_MX_NAMES} MX names"
            )));
        }
        for host in hosts {
            // A host's address lookup is part of the mx term, not a term of its own; a host
            // without addresses is simply no match.
            let mut inner = Budget::default();
            if self.addr_match(client, &host, prefix, &mut inner).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn rdata_addr(rdata: &RData) -> Option<IpAddr> {
    match rdata {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_parse_or_are_permerrors() {
        let check = |input: &str, expected: Option<Mechanism>| {
            assert_eq!(
                parse_term(input).ok().map(|t| t.mechanism),
                expected,
                "{input}"
            )
        };
        check(
            "ip4:192.0.2.0/24",
            Some(Mechanism::Ip4([192, 0, 2, 0].into(), 24)),
        );
        check(
            "ip4:192.0.2.1",
            Some(Mechanism::Ip4([192, 0, 2, 1].into(), 32)),
        );
        check("ip4:192.0.2.0/33", None);
        check("ip4:192.0.2.0/", None);
        check(
            "ip6:2001:db8::/32",
            Some(Mechanism::Ip6("2001:db8::".parse().unwrap(), 32)),
        );
        check("a", Some(Mechanism::A(None, 32, 128)));
        check("a/24", Some(Mechanism::A(None, 24, 128)));
        check(
            "mx:example.test//64",
            Some(Mechanism::Mx(Some("example.test".into()), 32, 64)),
        );
        check(
            "a:example.test/24//64",
            Some(Mechanism::A(Some("example.test".into()), 24, 64)),
        );
        check("a:", None);
        check("include:", None);
        check(
            "exists:%{i}.example.test",
            Some(Mechanism::Unsupported(MechanismKind::Exists)),
        );
        check(
            "include:%{d}.example.test",
            Some(Mechanism::Unsupported(MechanismKind::Macro)),
        );
        check("ptr", Some(Mechanism::Unsupported(MechanismKind::Ptr)));
        check("bogus", None);
        check("all/8", None);
    }

    #[test]
    fn prefixes_match_only_their_range() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_prefix(ip("192.0.2.77"), ip("192.0.2.0"), 24));
        assert!(!in_prefix(ip("192.0.3.1"), ip("192.0.2.0"), 24));
        assert!(in_prefix(ip("203.0.113.9"), ip("0.0.0.0"), 0));
        assert!(in_prefix(ip("2001:db8::1"), ip("2001:db8::"), 32));
        assert!(!in_prefix(ip("2001:db9::1"), ip("2001:db8::"), 32));
        assert!(!in_prefix(ip("192.0.2.1"), ip("2001:db8::"), 0));
    }
}
