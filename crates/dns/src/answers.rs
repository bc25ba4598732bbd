//! Reading list answers (pure): which A answers count as a listing, which mean "resolver
//! blocked", and how TXT reasons are made safe to pass on.

use std::net::Ipv4Addr;

use crate::zonespec::ZoneSpec;

/// Longest reason text kept from a list's TXT answer.
pub const MAX_TXT_LEN: usize = 255;

/// What a list's A answers mean.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListAnswer {
    /// No answer in 127.0.0.0/8 passes the zone's filter.
    NotListed,
    /// The answers that passed the filter (in answer order, not empty).
    Listed(Vec<Ipv4Addr>),
    /// The list says our resolver is blocked or over quota: not a verdict about the client.
    Sentinel(Ipv4Addr),
}

/// Answers that lists use to mean "your resolver is blocked / over quota" (Spamhaus
/// 127.255.255.252-255, dnswl.org 127.0.0.255).
pub fn is_blocked_resolver_sentinel(a: Ipv4Addr) -> bool {
    let [w, x, y, z] = a.octets();
    (w, x, y) == (127, 255, 255) && z >= 252 || a == Ipv4Addr::new(127, 0, 0, 255)
}

/// Classifies A answers for `zone`: a sentinel anywhere makes the whole answer an error (never a
/// listing); answers outside 127/8 are ignored; the rest must pass the zone's filter.
pub(crate) fn classify(zone: &ZoneSpec, answers: &[Ipv4Addr]) -> ListAnswer {
    if let Some(&sentinel) = answers.iter().find(|a| is_blocked_resolver_sentinel(**a)) {
        return ListAnswer::Sentinel(sentinel);
    }
    let passing: Vec<Ipv4Addr> = answers
        .iter()
        .copied()
        .filter(|a| a.octets()[0] == 127)
        .filter(|a| zone.filter.as_ref().is_none_or(|f| f.matches(*a)))
        .collect();
    if passing.is_empty() {
        ListAnswer::NotListed
    } else {
        ListAnswer::Listed(passing)
    }
}

/// Joins TXT records (each a list of character-strings) into one line of printable ASCII, at most
/// [`MAX_TXT_LEN`] characters: records are separated by "; ", other bytes become '?'. The text
/// ends up in SMTP replies and logs, so no control characters may pass.
pub fn reason_text<'a>(records: impl IntoIterator<Item = &'a [Box<[u8]>]>) -> Option<String> {
    let mut out = String::new();
    for record in records {
        let bytes: Vec<u8> = record.iter().flat_map(|s| s.iter().copied()).collect();
        let text: String = bytes
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '?'
                }
            })
            .collect();
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(text);
        if out.len() >= MAX_TXT_LEN {
            break;
        }
    }
    // Only ASCII was pushed, so any byte index is a char boundary.
    out.truncate(MAX_TXT_LEN);
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(zone: &str, answers: &[&str], expected: ListAnswer) {
        let zone: ZoneSpec = zone.parse().unwrap();
        let answers: Vec<Ipv4Addr> = answers.iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(classify(&zone, &answers), expected, "{zone} {answers:?}");
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn classification_table() {
        use ListAnswer::*;
        check("bl.test", &[], NotListed);
        check("bl.test", &["127.0.0.2"], Listed(vec![ip("127.0.0.2")]));
        check(
            "bl.test",
            &["127.0.0.4", "127.0.0.10"],
            Listed(vec![ip("127.0.0.4"), ip("127.0.0.10")]),
        );
        check("bl.test", &["192.0.2.1"], NotListed);
        check(
            "bl.test",
            &["192.0.2.1", "127.0.0.3"],
            Listed(vec![ip("127.0.0.3")]),
        );
        check("bl.test=127.0.0.[2..3]", &["127.0.0.4"], NotListed);
        check(
            "bl.test=127.0.0.[2..3]",
            &["127.0.0.4", "127.0.0.3"],
            Listed(vec![ip("127.0.0.3")]),
        );
        check(
            "bl.test",
            &["127.255.255.254"],
            Sentinel(ip("127.255.255.254")),
        );
        check(
            "bl.test",
            &["127.0.0.2", "127.255.255.252"],
            Sentinel(ip("127.255.255.252")),
        );
        check(
            "wl.test=127.0.[0..255].[0..255]",
            &["127.0.0.255"],
            Sentinel(ip("127.0.0.255")),
        );
        check(
            "bl.test",
            &["127.255.255.251"],
            Listed(vec![ip("127.255.255.251")]),
        );
    }

    #[test]
    fn sentinels() {
        for s in [
            "127.255.255.252",
            "127.255.255.253",
            "127.255.255.254",
            "127.255.255.255",
            "127.0.0.255",
        ] {
            assert!(is_blocked_resolver_sentinel(ip(s)), "{s}");
        }
        for s in [
            "127.0.0.2",
            "127.255.255.251",
            "127.0.1.255",
            "10.255.255.254",
        ] {
            assert!(!is_blocked_resolver_sentinel(ip(s)), "{s}");
        }
    }

    fn txt(strings: &[&[u8]]) -> Vec<Box<[u8]>> {
        strings
            .iter()
            .map(|s| s.to_vec().into_boxed_slice())
            .collect()
    }

    #[test]
    fn reason_text_is_printable_and_bounded() {
        let one = txt(&[b"Listed ", b"by test"]);
        assert_eq!(
            reason_text([one.as_slice()]).as_deref(),
            Some("Listed by test")
        );

        let evil = txt(&[b"bad\r\n550 injected\x00\xff"]);
        assert_eq!(
            reason_text([evil.as_slice()]).as_deref(),
            Some("bad??550 injected??")
        );

        let (a, b) = (txt(&[b"first"]), txt(&[b"second"]));
        assert_eq!(
            reason_text([a.as_slice(), b.as_slice()]).as_deref(),
            Some("first; second")
        );

        let long = txt(&[&[b'x'; 250], &[b'y'; 250]]);
        let text = reason_text([long.as_slice(), long.as_slice()]).unwrap();
        assert_eq!(text.len(), MAX_TXT_LEN);

        let blank = txt(&[b"  "]);
        assert_eq!(reason_text([blank.as_slice()]), None);
        assert_eq!(reason_text(std::iter::empty()), None);
    }
}
