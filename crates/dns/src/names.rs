//! Query-name construction (pure): reversed address labels for lists and for PTR lookups.
//!
//! Every name is an FQDN with a trailing dot, so the resolver never applies search domains.

use std::fmt::Write as _;
use std::net::IpAddr;

/// The address's labels in reverse order: `d.c.b.a` for IPv4, 32 nibbles for IPv6.
/// IPv4-mapped IPv6 addresses are treated as the IPv4 address they carry.
pub fn reversed_labels(addr: IpAddr) -> String {
    match addr.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => {
            let mut out = String::with_capacity(63);
            for byte in v6.octets().iter().rev() {
                if !out.is_empty() {
                    out.push('.');
                }
                // Low nibble first: the name reverses the address nibble by nibble.
                let _ = write!(out, "{:x}.{:x}", byte & 0x0f, byte >> 4);
            }
            out
        }
    }
}

/// The name to look up `client` in list `zone`: `d.c.b.a.zone.` (a trailing dot on `zone` is
/// allowed).
pub fn list_query_name(client: IpAddr, zone: &str) -> String {
    let zone = zone.strip_suffix('.').unwrap_or(zone);
    format!("{}.{zone}.", reversed_labels(client))
}

/// The PTR name for `client`: `d.c.b.a.in-addr.arpa.` or `<nibbles>.ip6.arpa.`.
pub fn reverse_query_name(client: IpAddr) -> String {
    let suffix = match client.to_canonical() {
        IpAddr::V4(_) => "in-addr.arpa",
        IpAddr::V6(_) => "ip6.arpa",
    };
    list_query_name(client, suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(client: &str, zone: &str, expected: &str) {
        let client: IpAddr = client.parse().unwrap();
        assert_eq!(
            list_query_name(client, zone),
            expected,
            "{client} in {zone}"
        );
    }

    #[test]
    fn list_names() {
        check("192.0.2.10", "bl.test", "10.2.0.192.bl.test.");
        check("192.0.2.10", "bl.test.", "10.2.0.192.bl.test.");
        check(
            "127.0.0.2",
            "zen.spamhaus.org",
            "2.0.0.127.zen.spamhaus.org.",
        );
        check("::ffff:198.51.100.7", "bl.test", "7.100.51.198.bl.test.");
        check(
            "2001:db8::1",
            "bl.test",
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test.",
        );
        check(
            "2001:db8:1234:5678:9abc:def0:1:ff",
            "bl.test",
            "f.f.0.0.1.0.0.0.0.f.e.d.c.b.a.9.8.7.6.5.4.3.2.1.8.b.d.0.1.0.0.2.bl.test.",
        );
    }

    #[test]
    fn reverse_names() {
        let table = [
            ("192.0.2.10", "10.2.0.192.in-addr.arpa."),
            ("::ffff:192.0.2.10", "10.2.0.192.in-addr.arpa."),
            (
                "2001:db8::10",
                "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
            ),
        ];
        for (client, expected) in table {
            assert_eq!(reverse_query_name(client.parse().unwrap()), expected);
        }
    }

    #[test]
    fn ipv6_has_32_nibbles() {
        let labels = reversed_labels("2001:db8::".parse().unwrap());
        assert_eq!(labels.split('.').count(), 32);
        assert!(labels.split('.').all(|n| n.len() == 1));
    }
}
