//! SPF evaluation against the in-process test DNS server on loopback: records in, result and
//! the mechanism that decided out.

use std::net::IpAddr;
use std::time::Duration;

use spamgate_dns::{Dns, DnsConfig, NarrowRule, SpfResult};
use spamgate_testdns::TestDns;

const SPF_ZONE: &str = r#"
narrow        TXT "v=spf1 ip4:192.0.2.0/24 -all"
narrow        TXT "google-site-verification=unrelated"
wide          TXT "v=spf1 ip4:192.0.0.0/8 -all"
plusall       TXT "v=spf1 +all"
softall       TXT "v=spf1 ~all"
v6            TXT "v=spf1 ip6:2001:db8:1::/48 ip6:2001:db8::/16 -all"
inc           TXT "v=spf1 include:wide.spf.test include:narrow.spf.test -all"
incwide       TXT "v=spf1 include:wide.spf.test -all"
incnone       TXT "v=spf1 include:nothing.spf.test -all"
nothing       A   192.0.2.99
redir         TXT "v=spf1 redirect=narrow.spf.test"
redirall      TXT "v=spf1 ?all redirect=narrow.spf.test"
mxdom         TXT "v=spf1 mx -all"
mxdom         MX  10 mail.mxdom.spf.test.
mail.mxdom    A   198.51.100.25
mxwide        TXT "v=spf1 mx/8 -all"
mxwide        MX  10 mail.mxdom.spf.test.
adom          TXT "v=spf1 a:out.adom.spf.test ~all"
out.adom      A   198.51.100.30
loop          TXT "v=spf1 include:loop.spf.test -all"
many          TXT "v=spf1 a:h.spf.test a:h.spf.test a:h.spf.test a:h.spf.test a:h.spf.test a:h.spf.test a:h.spf.test a:h.spf.test a:h.spf.test a:h.spf.test a:h.spf.test ip4:192.0.2.0/24 -all"
ten           TXT "v=spf1 a:h.spf.test a:h.spf.test a:h.spf.test a:h.spf.test a:h.spf.test a:h.spf.test a:h.spf.test a:h.spf.test a:h.spf.test a:h.spf.test ip4:192.0.2.0/24 -all"
h             A   203.0.113.200
voids         TXT "v=spf1 a:nx1.spf.test a:nx2.spf.test a:nx3.spf.test ip4:192.0.2.0/24 -all"
twovoids      TXT "v=spf1 a:nx1.spf.test a:nx2.spf.test ip4:192.0.2.0/24 -all"
two           TXT "v=spf1 -all"
two           TXT "v=spf1 ip4:192.0.2.0/24 -all"
ptrdom        TXT "v=spf1 ptr ip4:192.0.2.0/24 -all"
existsdom     TXT "v=spf1 exists:%{i}.x.spf.test -all"
incptr        TXT "v=spf1 include:ptrdom.spf.test ip4:192.0.2.0/24 -all"
early         TXT "v=spf1 ip4:192.0.2.0/24 ptr -all"
bad           TXT "v=spf1 ip4:192.0.2.0/24 frob:x -all"
slowinc       TXT "v=spf1 include:slow.test -all"
spf2          TXT "v=spf10 +all"
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn server() -> TestDns {
    TestDns::builder()
        .zone("spf.test.", SPF_ZONE)
        .blackhole("slow.test.")
        .servfail("broken.test.")
        .start()
        .await
        .unwrap()
}

fn dns(server: &TestDns) -> Dns {
    Dns::new(&DnsConfig {
        nameservers: vec![server.addr()],
        timeout: Duration::from_millis(100),
        attempts: 1,
        ..DnsConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn records_give_results_and_the_deciding_mechanism() {
    let server = server().await;
    let dns = dns(&server);
    let rule = NarrowRule::default();
    // (sender domain, client, result, matched term, narrow pass)
    let table: &[(&str, &str, SpfResult, Option<&str>, bool)] = &[
        (
            "narrow.spf.test",
            "192.0.2.10",
            SpfResult::Pass,
            Some("ip4:192.0.2.0/24"),
            true,
        ),
        (
            "narrow.spf.test",
            "198.51.100.1",
            SpfResult::Fail,
            Some("-all"),
            false,
        ),
        (
            "Narrow.SPF.test.",
            "192.0.2.10",
            SpfResult::Pass,
            Some("ip4:192.0.2.0/24"),
            true,
        ),
        (
            "narrow.spf.test",
            "::ffff:192.0.2.10",
            SpfResult::Pass,
            Some("ip4:192.0.2.0/24"),
            true,
        ),
        (
            "wide.spf.test",
            "192.0.2.10",
            SpfResult::Pass,
            Some("ip4:192.0.0.0/8"),
            false,
        ),
        (
            "plusall.spf.test",
            "192.0.2.10",
            SpfResult::Pass,
            Some("+all"),
            false,
        ),
        (
            "softall.spf.test",
            "192.0.2.10",
            SpfResult::SoftFail,
            Some("~all"),
            false,
        ),
        (
            "v6.spf.test",
            "2001:db8:1::25",
            SpfResult::Pass,
            Some("ip6:2001:db8:1::/48"),
            true,
        ),
        (
            "v6.spf.test",
            "2001:db8:2::25",
            SpfResult::Pass,
            Some("ip6:2001:db8::/16"),
            false,
        ),
        (
            "v6.spf.test",
            "192.0.2.10",
            SpfResult::Fail,
            Some("-all"),
            false,
        ),
        // The first include that passes decides, with its own mechanism.
        (
            "inc.spf.test",
            "192.0.2.10",
            SpfResult::Pass,
            Some("ip4:192.0.0.0/8"),
            false,
        ),
        (
            "incwide.spf.test",
            "192.0.2.10",
            SpfResult::Pass,
            Some("ip4:192.0.0.0/8"),
            false,
        ),
        (
            "inc.spf.test",
            "198.51.100.1",
            SpfResult::Fail,
            Some("-all"),
            false,
        ),
        (
            "incnone.spf.test",
            "192.0.2.10",
            SpfResult::PermError,
            None,
            false,
        ),
        (
            "redir.spf.test",
            "192.0.2.10",
            SpfResult::Pass,
            Some("ip4:192.0.2.0/24"),
            true,
        ),
        (
            "redir.spf.test",
            "198.51.100.1",
            SpfResult::Fail,
            Some("-all"),
            false,
        ),
        // With an `all` anywhere, redirect is ignored.
        (
            "redirall.spf.test",
            "192.0.2.10",
            SpfResult::Neutral,
            Some("?all"),
            false,
        ),
        (
            "mxdom.spf.test",
            "198.51.100.25",
            SpfResult::Pass,
            Some("mx"),
            true,
        ),
        (
            "mxdom.spf.test",
            "198.51.100.26",
            SpfResult::Fail,
            Some("-all"),
            false,
        ),
        (
            "mxwide.spf.test",
            "198.51.100.26",
            SpfResult::Pass,
            Some("mx/8"),
            false,
        ),
        (
            "adom.spf.test",
            "198.51.100.30",
            SpfResult::Pass,
            Some("a:out.adom.spf.test"),
            true,
        ),
        (
            "adom.spf.test",
            "198.51.100.31",
            SpfResult::SoftFail,
            Some("~all"),
            false,
        ),
        (
            "loop.spf.test",
            "192.0.2.10",
            SpfResult::PermError,
            None,
            false,
        ),
        (
            "many.spf.test",
            "192.0.2.10",
            SpfResult::PermError,
            None,
            false,
        ),
        (
            "ten.spf.test",
            "192.0.2.10",
            SpfResult::Pass,
            Some("ip4:192.0.2.0/24"),
            true,
        ),
        (
            "voids.spf.test",
            "192.0.2.10",
            SpfResult::PermError,
            None,
            false,
        ),
        (
            "twovoids.spf.test",
            "192.0.2.10",
            SpfResult::Pass,
            Some("ip4:192.0.2.0/24"),
            true,
        ),
        (
            "two.spf.test",
            "192.0.2.10",
            SpfResult::PermError,
            None,
            false,
        ),
        (
            "nothing.spf.test",
            "192.0.2.10",
            SpfResult::None,
            None,
            false,
        ),
        (
            "absent.spf.test",
            "192.0.2.10",
            SpfResult::None,
            None,
            false,
        ),
        ("spf2.spf.test", "192.0.2.10", SpfResult::None, None, false),
        (
            "bad.spf.test",
            "192.0.2.10",
            SpfResult::PermError,
            None,
            false,
        ),
        // ptr, exists and macros are not evaluated: neutral, never narrow.
        (
            "ptrdom.spf.test",
            "192.0.2.10",
            SpfResult::Neutral,
            Some("ptr"),
            false,
        ),
        (
            "existsdom.spf.test",
            "192.0.2.10",
            SpfResult::Neutral,
            Some("exists:%{i}.x.spf.test"),
            false,
        ),
        (
            "incptr.spf.test",
            "192.0.2.10",
            SpfResult::Neutral,
            Some("ptr"),
            false,
        ),
        (
            "early.spf.test",
            "192.0.2.10",
            SpfResult::Pass,
            Some("ip4:192.0.2.0/24"),
            true,
        ),
        // DNS trouble is temperror, never fail.
        ("slow.test", "192.0.2.10", SpfResult::TempError, None, false),
        (
            "slowinc.spf.test",
            "192.0.2.10",
            SpfResult::TempError,
            None,
            false,
        ),
        (
            "x.broken.test",
            "192.0.2.10",
            SpfResult::TempError,
            None,
            false,
        ),
        ("localhost", "192.0.2.10", SpfResult::None, None, false),
    ];
    let mut failures = Vec::new();
    for &(domain, client, result, term, narrow) in table {
        let outcome = dns.spf_check(ip(client), domain).await;
        let got = (
            outcome.result,
            outcome.matched.as_ref().map(|m| m.term.as_str()),
            outcome.narrow_pass(&rule, ip(client)),
        );
        if got != (result, term, narrow) {
            failures.push(format!("{domain} {client}: got {outcome} narrow={}, want {result:?} {term:?} narrow={narrow}", got.2));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn the_minimum_prefix_is_configurable() {
    let server = server().await;
    let dns = dns(&server);
    let outcome = dns.spf_check(ip("192.0.2.10"), "wide.spf.test").await;
    let loose = NarrowRule {
        min_ip4_prefix: 8,
        ..NarrowRule::default()
    };
    assert!(outcome.narrow_pass(&loose, ip("192.0.2.10")), "{outcome}");
    assert!(!outcome.narrow_pass(&NarrowRule::default(), ip("192.0.2.10")));
    let narrow = dns.spf_check(ip("192.0.2.10"), "narrow.spf.test").await;
    let strict = NarrowRule {
        min_ip4_prefix: 25,
        ..NarrowRule::default()
    };
    assert!(!narrow.narrow_pass(&strict, ip("192.0.2.10")), "{narrow}");
}

#[tokio::test]
async fn a_repeat_is_answered_from_the_cache() {
    let server = server().await;
    let dns = dns(&server);
    for _ in 0..3 {
        let outcome = dns.spf_check(ip("198.51.100.25"), "mxdom.spf.test").await;
        assert_eq!(outcome.result, SpfResult::Pass, "{outcome}");
    }
    assert_eq!(server.query_count("mxdom.spf.test", "TXT"), 1);
    assert_eq!(server.query_count("mxdom.spf.test", "MX"), 1);
    assert_eq!(server.query_count("mail.mxdom.spf.test", "A"), 1);
    // The include loop stopped at the limit: 1 + 10 TXT queries would be the most, and the
    // cache answers all but the first.
    dns.spf_check(ip("192.0.2.10"), "loop.spf.test").await;
    assert_eq!(server.query_count("loop.spf.test", "TXT"), 1);
}
