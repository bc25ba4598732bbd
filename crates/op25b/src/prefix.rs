//! Strictly parsed address prefixes, and overlap checks over lists of them.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 or IPv6 prefix (`198.51.100.0/24`, `2001:db8:100::/48`) or a single address
/// (`192.0.2.25`, taken as /32 or /128). Refused: host bits set (a typo that would
/// otherwise silently widen or shift the range), length 0, and IPv4-mapped IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix(IpNet);

impl Prefix {
    pub fn net(&self) -> IpNet {
        self.0
    }

    pub fn is_ipv4(&self) -> bool {
        matches!(self.0, IpNet::V4(_))
    }

    /// First and last address as integers (IPv4 in the low 32 bits).
    pub(crate) fn range(&self) -> (u128, u128) {
        match self.0 {
            IpNet::V4(net) => (
                u128::from(u32::from(net.network())),
                u128::from(u32::from(net.broadcast())),
            ),
            IpNet::V6(net) => (u128::from(net.network()), u128::from(net.broadcast())),
        }
    }

    /// Whether `addr` lies inside.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.contains(&addr)
    }
}

impl FromStr for Prefix {
    type Err = String;

    fn from_str(text: &str) -> Result<Prefix, String> {
        let text = text.trim();
        let (addr_text, len_text) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or prefix"))?;
        let max_len: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len_text {
            None => max_len,
            Some(len) => {
                if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("{text:?}: prefix length {len:?} is not a number"));
                }
                let len: u16 = len.parse().unwrap_or(u16::MAX);
                if len > u16::from(max_len) {
                    let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
                    return Err(format!(
                        "{text:?}: prefix length {len} is longer than {max_len}, the {family} maximum"
                    ));
                }
                len as u8
            }
        };
        if len == 0 {
            return Err(format!(
                "{text:?} covers every address; list the actual prefixes instead"
            ));
        }
        if let IpAddr::V6(v6) = addr
            && v6.to_ipv4_mapped().is_some()
        {
            return Err(format!(
                "{text:?} is an IPv4-mapped IPv6 address; nftables matches IPv4 traffic \
                 with the IPv4 form, so write that instead"
            ));
        }
        let net = IpNet::new(addr, len).map_err(|e| format!("{text:?}: {e}"))?;
        if net.network() != addr {
            return Err(format!(
                "{text:?} has host bits set; did you mean {}/{len}?",
                net.network()
            ));
        }
        Ok(Prefix(net))
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Prefix, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Pairs `(i, j)` of overlapping prefixes, by index into `prefixes`, at most `limit` of
/// them. Prefixes either nest or are disjoint, so after sorting by start each one need only
/// be compared with the widest-reaching one before it.
pub(crate) fn overlaps(prefixes: &[Prefix], limit: usize) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    for want_v4 in [true, false] {
        let mut order: Vec<(u128, u128, usize)> = prefixes
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_ipv4() == want_v4)
            .map(|(i, p)| {
                let (start, end) = p.range();
                (start, end, i)
            })
            .collect();
        // Same start: the wider (larger end) first, so it is the one reported as covering.
        order.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        let mut reach: Option<(u128, usize)> = None;
        for &(start, end, index) in &order {
            match reach {
                Some((reach_end, holder)) if start <= reach_end => {
                    if found.len() == limit {
                        return found;
                    }
                    found.push((holder.min(index), holder.max(index)));
                }
                _ => reach = Some((end, index)),
            }
        }
    }
    found
}

/// Disjoint prefixes sorted by start, for "does this overlap any of them" queries.
pub(crate) struct DisjointRanges {
    v4: Vec<(u128, u128)>,
    v6: Vec<(u128, u128)>,
}

impl DisjointRanges {
    pub(crate) fn new<'a>(prefixes: impl IntoIterator<Item = &'a Prefix>) -> DisjointRanges {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for prefix in prefixes {
            let list = if prefix.is_ipv4() { &mut v4 } else { &mut v6 };
            list.push(prefix.range());
        }
        v4.sort_unstable();
        v6.sort_unstable();
        DisjointRanges { v4, v6 }
    }

    pub(crate) fn overlaps(&self, prefix: &Prefix) -> bool {
        let list = if prefix.is_ipv4() { &self.v4 } else { &self.v6 };
        let (start, end) = prefix.range();
        // The last range starting at or before `end` is the only candidate, since the
        // ranges are disjoint and sorted (their ends are sorted too).
        let after = list.partition_point(|&(s, _)| s <= end);
        after > 0 && list[after - 1].1 >= start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<&str, &str>) {
        match (text.parse::<Prefix>(), expected) {
            (Ok(prefix), Ok(shown)) => assert_eq!(prefix.to_string(), shown, "{text}"),
            (Err(err), Err(part)) => assert!(err.contains(part), "{text}: {err}"),
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses_strictly() {
        check("198.51.100.0/24", Ok("198.51.100.0/24"));
        check(" 192.0.2.25 ", Ok("192.0.2.25"));
        check("192.0.2.25/32", Ok("192.0.2.25"));
        check("2001:db8:100::/48", Ok("2001:db8:100::/48"));
        check("2001:DB8:300::25", Ok("2001:db8:300::25"));
        check(
            "198.51.100.1/24",
            Err("host bits set; did you mean 198.51.100.0/24?"),
        );
        check("2001:db8:100::1/48", Err("did you mean 2001:db8:100::/48?"));
        check("198.51.100.0/33", Err("longer than 32, the IPv4 maximum"));
        check("2001:db8::/129", Err("longer than 128, the IPv6 maximum"));
        check("198.51.100.0/", Err("is not a number"));
        check("198.51.100.0/+8", Err("is not a number"));
        check("198.51.100.0/99999", Err("is not a number"));
        check("198.51.100/24", Err("not an IP address"));
        check("pool.example.net", Err("not an IP address"));
        check("0.0.0.0/0", Err("covers every address"));
        check("::ffff:198.51.100.0/120", Err("IPv4-mapped"));
    }

    fn prefixes(list: &[&str]) -> Vec<Prefix> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    #[test]
    fn finds_overlaps_within_each_family() {
        let list = prefixes(&[
            "198.51.100.0/24",
            "2001:db8::/32",
            "198.51.100.128/25",
            "203.0.113.0/24",
            "2001:db8:100::/48",
            "198.51.101.0/24",
            "203.0.113.0/24",
        ]);
        assert_eq!(overlaps(&list, 10), vec![(0, 2), (3, 6), (1, 4)]);
        assert_eq!(overlaps(&list, 1), vec![(0, 2)]);
        assert!(overlaps(&prefixes(&["198.51.100.0/25", "198.51.100.128/25"]), 10).is_empty());
    }

    #[test]
    fn disjoint_ranges_answer_overlap_queries() {
        let ranges = DisjointRanges::new(&prefixes(&[
            "198.51.100.0/24",
            "203.0.113.0/25",
            "2001:db8:100::/48",
        ]));
        for (text, want) in [
            ("198.51.100.77", true),
            ("198.51.100.0/23", true),
            ("198.51.101.0/24", false),
            ("203.0.113.128/25", false),
            ("203.0.113.127", true),
            ("192.0.2.0/24", false),
            ("2001:db8:100:ff00::/56", true),
            ("2001:db8:101::/48", false),
        ] {
            assert_eq!(ranges.overlaps(&text.parse().unwrap()), want, "{text}");
        }
    }
}
