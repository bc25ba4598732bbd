//! List zones in Postfix postscreen syntax: `zone[=filter][*weight]`.
//!
//! The filter is `d.d.d.d`, where each `d` is a decimal number or a bracketed list of `;`-separated
//! numbers and `n..m` ranges, e.g. `list.dnswl.org=127.0.[2..15].[0;1]*-2`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Longest zone name accepted (DNS names are at most 253 characters without the final dot; the
/// reversed client address needs room in front of it, but the zone alone is checked here).
const MAX_ZONE_LEN: usize = 253;

/// One list to query, its answer filter and its weight.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ZoneSpec {
    /// The list's zone, lower case, without a trailing dot (e.g. `zen.spamhaus.org`).
    pub zone: String,
    /// Only answers matching this filter count as a listing; `None` accepts any 127/8 answer.
    pub filter: Option<AddrFilter>,
    /// Score added when listed (negative for allow-lists). Default 1.
    pub weight: i32,
}

/// A postscreen answer filter: four fields, each a set of inclusive byte ranges.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AddrFilter {
    fields: [Vec<(u8, u8)>; 4],
}

impl AddrFilter {
    /// Whether `a` matches every field of the filter.
    pub fn matches(&self, a: Ipv4Addr) -> bool {
        self.fields
            .iter()
            .zip(a.octets())
            .all(|(ranges, octet)| ranges.iter().any(|&(lo, hi)| lo <= octet && octet <= hi))
    }
}

/// Why a zone spec was rejected; the message quotes the offending input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid DNS list {input:?}: {reason}")]
pub struct ZoneSpecError {
    input: String,
    reason: String,
}

impl FromStr for ZoneSpec {
    type Err = ZoneSpecError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| ZoneSpecError {
            input: input.to_owned(),
            reason,
        };
        let trimmed = input.trim();
        let (zone_and_filter, weight) = match trimmed.split_once('*') {
            Some((head, weight)) => (head, parse_weight(weight).map_err(fail)?),
            None => (trimmed, 1),
        };
        let (zone, filter) = match zone_and_filter.split_once('=') {
            Some((zone, filter)) => (zone, Some(parse_filter(filter).map_err(fail)?)),
            None => (zone_and_filter, None),
        };
        let zone = parse_zone(zone).map_err(fail)?;
        Ok(ZoneSpec {
            zone,
            filter,
            weight,
        })
    }
}

fn parse_weight(text: &str) -> Result<i32, String> {
    text.trim()
        .parse::<i32>()
        .map_err(|_| format!("weight {text:?} after '*' is not a whole number"))
}

fn parse_zone(text: &str) -> Result<String, String> {
    let zone = text.trim().to_ascii_lowercase();
    let zone = zone.strip_suffix('.').unwrap_or(&zone);
    if zone.is_empty() {
        return Err("the zone name is empty".into());
    }
    if zone.len() > MAX_ZONE_LEN {
        return Err(format!(
            "the zone name is longer than {MAX_ZONE_LEN} characters"
        ));
    }
    for label in zone.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("zone label {label:?} must have 1 to 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("character {c:?} is not allowed in a zone name"));
        }
    }
    Ok(zone.to_owned())
}

fn parse_filter(text: &str) -> Result<AddrFilter, String> {
    let text = text.trim();
    let mut fields: Vec<Vec<(u8, u8)>> = Vec::with_capacity(4);
    let mut rest = text;
    loop {
        let (field, after) = if let Some(inner) = rest.strip_prefix('[') {
            let close = inner
                .find(']')
                .ok_or_else(|| format!("filter {text:?} has '[' without ']'"))?;
            (parse_bracket(&inner[..close])?, &inner[close + 1..])
        } else {
            let end = rest.find('.').unwrap_or(rest.len());
            (vec![single(parse_octet(&rest[..end])?)], &rest[end..])
        };
        fields.push(field);
        if fields.len() > 4 {
            break;
        }
        match after.strip_prefix('.') {
            Some(next) => rest = next,
            None if after.is_empty() => break,
            None => return Err(format!("unexpected {after:?} in filter {text:?}")),
        }
    }
    let fields: [Vec<(u8, u8)>; 4] = fields.try_into().map_err(|_| {
        format!("filter {text:?} must have four '.'-separated fields like 127.0.0.[2..11]")
    })?;
    Ok(AddrFilter { fields })
}

fn single(n: u8) -> (u8, u8) {
    (n, n)
}

fn parse_bracket(inner: &str) -> Result<Vec<(u8, u8)>, String> {
    if inner.contains(',') {
        return Err(format!("use ';' between values inside [{inner}]"));
    }
    inner
        .split(';')
        .map(|item| match item.split_once("..") {
            Some((lo, hi)) => {
                let (lo, hi) = (parse_octet(lo)?, parse_octet(hi)?);
                if lo > hi {
                    return Err(format!("range {lo}..{hi} is empty"));
                }
                Ok((lo, hi))
            }
            None => parse_octet(item).map(single),
        })
        .collect()
}

fn parse_octet(text: &str) -> Result<u8, String> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("filter field {text:?} is not a number 0..255"));
    }
    text.parse::<u8>()
        .map_err(|_| format!("filter value {text} is larger than 255"))
}

impl fmt::Display for AddrFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, ranges) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            match ranges.as_slice() {
                [(lo, hi)] if lo == hi => write!(f, "{lo}")?,
                _ => {
                    f.write_str("[")?;
                    for (j, (lo, hi)) in ranges.iter().enumerate() {
                        if j > 0 {
                            f.write_str(";")?;
                        }
                        if lo == hi {
                            write!(f, "{lo}")?;
                        } else {
                            write!(f, "{lo}..{hi}")?;
                        }
                    }
                    f.write_str("]")?;
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for ZoneSpec {
    /// The canonical postscreen form; parses back to an equal value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.zone)?;
        if let Some(filter) = &self.filter {
            write!(f, "={filter}")?;
        }
        if self.weight != 1 {
            write!(f, "*{}", self.weight)?;
        }
        Ok(())
    }
}

impl serde::Serialize for ZoneSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ZoneSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `input`; on success compares the canonical form, on failure a part of the message.
    fn check(input: &str, expected: Result<&str, &str>) {
        match (input.parse::<ZoneSpec>(), expected) {
            (Ok(spec), Ok(canonical)) => {
                assert_eq!(spec.to_string(), canonical, "{input}");
                assert_eq!(
                    canonical.parse::<ZoneSpec>().unwrap(),
                    spec,
                    "round trip {input}"
                );
            }
            (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{input}: {e}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn postscreen_syntax_table() {
        let table: &[(&str, Result<&str, &str>)] = &[
            ("zen.spamhaus.org", Ok("zen.spamhaus.org")),
            ("  Zen.Spamhaus.ORG. ", Ok("zen.spamhaus.org")),
            ("zen.spamhaus.org*3", Ok("zen.spamhaus.org*3")),
            ("zen.spamhaus.org*1", Ok("zen.spamhaus.org")),
            ("swl.spamhaus.org*-4", Ok("swl.spamhaus.org*-4")),
            ("bl.test*+2", Ok("bl.test*2")),
            ("bl.test=127.0.0.2", Ok("bl.test=127.0.0.2")),
            ("bl.test=127.0.0.[2..3]", Ok("bl.test=127.0.0.[2..3]")),
            (
                "bl.test=127.0.0.[2;4;6..8]*2",
                Ok("bl.test=127.0.0.[2;4;6..8]*2"),
            ),
            (
                "list.dnswl.org=127.0.[2..15].[2..3]*-4",
                Ok("list.dnswl.org=127.0.[2..15].[2..3]*-4"),
            ),
            ("bl.test=127.0.0.[10..10]", Ok("bl.test=127.0.0.10")),
            ("", Err("zone name is empty")),
            ("*3", Err("zone name is empty")),
            ("bl..test", Err("1 to 63")),
            ("bl test", Err("not allowed")),
            ("bl.test*", Err("not a whole number")),
            ("bl.test*x", Err("not a whole number")),
            ("bl.test*99999999999", Err("not a whole number")),
            ("bl.test=", Err("not a number")),
            ("bl.test=127.0.0", Err("four")),
            ("bl.test=127.0.0.1.5", Err("four")),
            ("bl.test=127.0.0.256", Err("larger than 255")),
            ("bl.test=127.0.0.[3..2]", Err("empty")),
            ("bl.test=127.0.0.[2,3]", Err("use ';'")),
            ("bl.test=127.0.0.[2..3", Err("without ']'")),
            ("bl.test=127.0.0.[2]x", Err("unexpected")),
            ("bl.test=127.0.0.-1", Err("not a number")),
            ("bl.test=127.0.0.[]", Err("not a number")),
        ];
        for (input, expected) in table {
            check(input, *expected);
        }
    }

    #[test]
    fn weight_and_filter_fields() {
        let spec: ZoneSpec = "bl.test=127.0.0.[2..3]*-2".parse().unwrap();
        assert_eq!(spec.zone, "bl.test");
        assert_eq!(spec.weight, -2);
        let filter = spec.filter.unwrap();
        assert!(filter.matches(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(filter.matches(Ipv4Addr::new(127, 0, 0, 3)));
        assert!(!filter.matches(Ipv4Addr::new(127, 0, 0, 4)));
        assert!(!filter.matches(Ipv4Addr::new(127, 0, 1, 2)));
    }

    #[test]
    fn filter_matching_table() {
        let filter = |s: &str| parse_filter(s).unwrap();
        let table = [
            ("127.0.0.2", "127.0.0.2", true),
            ("127.0.0.2", "127.0.0.3", false),
            ("127.0.[2..15].[0;1]", "127.0.15.1", true),
            ("127.0.[2..15].[0;1]", "127.0.16.1", false),
            ("127.0.[2..15].[0;1]", "127.0.2.2", false),
            ("[0..255].[0..255].[0..255].[0..255]", "10.1.2.3", true),
        ];
        for (f, addr, want) in table {
            assert_eq!(
                filter(f).matches(addr.parse().unwrap()),
                want,
                "{f} vs {addr}"
            );
        }
    }
}
