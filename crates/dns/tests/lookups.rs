//! List lookups and FCrDNS against the in-process test DNS server on loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures::future::join_all;
use spamgate_dns::{Dns, DnsConfig, ListResult, Rdns, ZoneSpec};
use spamgate_testdns::{TestDns, TestDnsBuilder};

/// 2001:db8::10 reversed, without a zone.
const V6_10_NIBBLES: &str = "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2";

fn bl_zone() -> String {
    format!(
        "
2.0.0.127   A   127.0.0.2
2.0.0.127   TXT \"test entry\"
10.2.0.192  A   127.0.0.2
10.2.0.192  TXT \"192.0.2.10 is listed\" \" (see example.test)\"
11.2.0.192  A   127.0.0.4
11.2.0.192  A   127.0.0.10
12.2.0.192  A   127.255.255.254
13.2.0.192  A   192.0.2.1
14.2.0.192  A   127.0.0.3
{V6_10_NIBBLES} A 127.0.0.2
{V6_10_NIBBLES} TXT \"v6 listed\"
"
    )
}

const WL_ZONE: &str = "
10.2.0.192  A   127.0.10.2
";

const REVERSE_V4: &str = "
10 PTR mail.example.test.
20 PTR liar.example.test.
30 PTR gone.example.test.
40 PTR mx.silent.test.
50 PTR a.example.test.
50 PTR mail50.example.test.
70 TXT \"a name without PTR\"
80 PTR MiXeD.Example.TEST.
";

/// Relative to 8.b.d.0.1.0.0.2.ip6.arpa.: 2001:db8::10 and 2001:db8::20.
const REVERSE_V6: &str = "
0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 PTR mail.example.test.
0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 PTR v4only.example.test.
";

const FORWARD: &str = "
@       SOA  ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
mail    A    192.0.2.10
mail    AAAA 2001:db8::10
liar    A    192.0.2.99
a       A    192.0.2.1
mail50  A    192.0.2.50
mixed   A    192.0.2.80
v4only  A    192.0.2.20
";

fn all_zones(builder: TestDnsBuilder) -> TestDnsBuilder {
    builder
        .zone("bl.test.", &bl_zone())
        .zone("wl.test.", WL_ZONE)
        .zone("2.0.192.in-addr.arpa.", REVERSE_V4)
        .zone("8.b.d.0.1.0.0.2.ip6.arpa.", REVERSE_V6)
        .zone("example.test.", FORWARD)
        .servfail("broken.test.")
        .servfail("100.51.198.in-addr.arpa.")
        .blackhole("silent.test.")
        .blackhole("113.0.203.in-addr.arpa.")
}

async fn server() -> TestDns {
    all_zones(TestDns::builder())
        .start()
        .await
        .expect("test dns")
}

fn config(addr: SocketAddr) -> DnsConfig {
    DnsConfig {
        nameservers: vec![addr],
        timeout: Duration::from_millis(300),
        attempts: 1,
        ..DnsConfig::default()
    }
}

fn dns_for(server: &TestDns) -> Dns {
    Dns::new(&config(server.addr())).expect("resolver")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn spec(s: &str) -> ZoneSpec {
    s.parse().unwrap()
}

fn listed(answers: &[&str], txt: Option<&str>) -> ListResult {
    ListResult::Listed {
        answers: answers
            .iter()
            .map(|a| a.parse::<Ipv4Addr>().unwrap())
            .collect(),
        txt: txt.map(str::to_owned),
    }
}

#[tokio::test]
async fn list_lookup_table() {
    let server = server().await;
    let dns = dns_for(&server);
    let table = [
        (
            "bl.test",
            "192.0.2.10",
            listed(
                &["127.0.0.2"],
                Some("192.0.2.10 is listed (see example.test)"),
            ),
        ),
        (
            "bl.test",
            "::ffff:192.0.2.10",
            listed(
                &["127.0.0.2"],
                Some("192.0.2.10 is listed (see example.test)"),
            ),
        ),
        ("bl.test", "192.0.2.99", ListResult::NotListed),
        (
            "bl.test",
            "2001:db8::10",
            listed(&["127.0.0.2"], Some("v6 listed")),
        ),
        ("bl.test", "2001:db8::11", ListResult::NotListed),
        // Filters: 192.0.2.11 answers 127.0.0.4 and 127.0.0.10.
        (
            "bl.test=127.0.0.[2..3]",
            "192.0.2.11",
            ListResult::NotListed,
        ),
        (
            "bl.test=127.0.0.[4..5]",
            "192.0.2.11",
            listed(&["127.0.0.4"], None),
        ),
        (
            "bl.test",
            "192.0.2.11",
            listed(&["127.0.0.4", "127.0.0.10"], None),
        ),
        // Answers outside 127/8 are not listings.
        ("bl.test", "192.0.2.13", ListResult::NotListed),
        // Listed without TXT: the listing stands.
        ("bl.test*5", "192.0.2.14", listed(&["127.0.0.3"], None)),
        (
            "wl.test=127.0.[0..255].[2..3]*-2",
            "192.0.2.10",
            listed(&["127.0.10.2"], None),
        ),
        // A zone the server does not serve: REFUSED is an error, not a verdict.
        (
            "unknown.test",
            "192.0.2.10",
            ListResult::Error("REFUSED".into()),
        ),
        (
            "broken.test",
            "192.0.2.10",
            ListResult::Error("SERVFAIL".into()),
        ),
    ];
    // The second round comes from the list cache: specs of one zone with different filters
    // must not share results.
    for round in 0..2 {
        for (zone, client, expected) in &table {
            assert_eq!(
                dns.list_lookup(&spec(zone), ip(client)).await,
                *expected,
                "{zone} {client} round {round}"
            );
        }
    }
}

#[tokio::test]
async fn sentinel_answer_is_an_error() {
    let server = server().await;
    let result = dns_for(&server)
        .list_lookup(&spec("bl.test"), ip("192.0.2.12"))
        .await;
    assert_eq!(
        result,
        ListResult::Error("blocked-resolver sentinel 127.255.255.254 from bl.test".into())
    );
}

#[tokio::test]
async fn silent_list_times_out_as_error() {
    let server = server().await;
    let result = dns_for(&server)
        .list_lookup(&spec("silent.test"), ip("192.0.2.10"))
        .await;
    assert_eq!(result, ListResult::Error("timeout".into()));
}

#[tokio::test]
async fn server_down_is_an_error() {
    // Take a free loopback port and release it: nothing listens there afterwards.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dns = Dns::new(&config(SocketAddr::from(([127, 0, 0, 1], port)))).unwrap();
    let result = dns.list_lookup(&spec("bl.test"), ip("192.0.2.10")).await;
    assert!(matches!(result, ListResult::Error(_)), "{result:?}");
    assert!(matches!(
        dns.reverse_confirm(ip("192.0.2.10")).await,
        Rdns::TempFail(_)
    ));
}

#[tokio::test]
async fn lookup_all_returns_every_zone_in_order() {
    let server = server().await;
    let zones = [
        spec("bl.test*3"),
        spec("broken.test"),
        spec("wl.test*-1"),
        spec("bl.test=127.0.0.9"),
    ];
    let results = dns_for(&server)
        .list_lookup_all(&zones, ip("192.0.2.10"))
        .await;
    let expected = vec![
        (
            0,
            listed(
                &["127.0.0.2"],
                Some("192.0.2.10 is listed (see example.test)"),
            ),
        ),
        (1, ListResult::Error("SERVFAIL".into())),
        (2, listed(&["127.0.10.2"], None)),
        (3, ListResult::NotListed),
    ];
    assert_eq!(results, expected);
}

#[tokio::test]
async fn zones_are_queried_in_parallel() {
    let server = all_zones(TestDns::builder().delay(Duration::from_millis(200)))
        .zone("bl2.test.", "10.2.0.192 A 127.0.0.2\n")
        .start()
        .await
        .unwrap();
    let dns = Dns::new(&DnsConfig {
        timeout: Duration::from_secs(2),
        ..config(server.addr())
    })
    .unwrap();
    let zones = [spec("bl.test"), spec("bl2.test"), spec("wl.test")];
    let results = dns.list_lookup_all(&zones, ip("192.0.2.10")).await;
    assert!(
        results
            .iter()
            .all(|(_, r)| matches!(r, ListResult::Listed { .. })),
        "{results:?}"
    );
    // All three A queries were at the server at the same moment (each is held for 200 ms).
    assert!(
        server.peak_in_flight() >= 3,
        "peak {}",
        server.peak_in_flight()
    );
}

#[tokio::test]
async fn identical_lookups_share_one_query_and_the_cache() {
    let server = all_zones(TestDns::builder().delay(Duration::from_millis(100)))
        .start()
        .await
        .unwrap();
    let dns = Dns::new(&DnsConfig {
        timeout: Duration::from_secs(2),
        ..config(server.addr())
    })
    .unwrap();
    let zone = spec("bl.test");
    let client = ip("192.0.2.10");
    let results = join_all((0..20).map(|_| dns.list_lookup(&zone, client))).await;
    let first = results[0].clone();
    assert!(matches!(first, ListResult::Listed { .. }));
    assert!(results.iter().all(|r| *r == first));
    assert_eq!(
        server.query_count("10.2.0.192.bl.test.", "A"),
        1,
        "{:?}",
        server.queries()
    );
    assert_eq!(server.query_count("10.2.0.192.bl.test.", "TXT"), 1);

    // Answers and NXDOMAIN are cached: repeating sends nothing.
    assert_eq!(
        dns.list_lookup(&zone, ip("192.0.2.99")).await,
        ListResult::NotListed
    );
    let before = server.queries().len();
    assert_eq!(dns.list_lookup(&zone, client).await, first);
    assert_eq!(
        dns.list_lookup(&zone, ip("192.0.2.99")).await,
        ListResult::NotListed
    );
    assert_eq!(server.queries().len(), before, "{:?}", server.queries());
}

#[tokio::test]
async fn zero_ttls_are_raised_to_min_ttl() {
    // TTL 0 everywhere, including the negative TTL (SOA minimum).
    let zone = "$TTL 0
@           SOA ns.test. hostmaster.test. 1 3600 600 86400 0
10.2.0.192  A   127.0.0.2
";
    for (min_ttl, queries_per_name) in [(Duration::from_secs(60), 1), (Duration::ZERO, 2)] {
        let server = TestDns::start(&[("ttl0.test.", zone)]).await.unwrap();
        let dns = Dns::new(&DnsConfig {
            min_ttl,
            ..config(server.addr())
        })
        .unwrap();
        for _ in 0..2 {
            let zone = spec("ttl0.test");
            assert!(matches!(
                dns.list_lookup(&zone, ip("192.0.2.10")).await,
                ListResult::Listed { .. }
            ));
            assert_eq!(
                dns.list_lookup(&zone, ip("192.0.2.11")).await,
                ListResult::NotListed
            );
        }
        assert_eq!(
            server.query_count("10.2.0.192.ttl0.test", "A"),
            queries_per_name,
            "{min_ttl:?}"
        );
        assert_eq!(
            server.query_count("11.2.0.192.ttl0.test", "A"),
            queries_per_name,
            "{min_ttl:?}"
        );
    }
}

#[tokio::test]
async fn reverse_confirm_table() {
    let server = server().await;
    let dns = dns_for(&server);
    let confirmed = |n: &str| Rdns::Confirmed { name: n.into() };
    let not_confirmed = |n: &str| Rdns::NotConfirmed { ptr: n.into() };
    let table = [
        ("192.0.2.10", confirmed("mail.example.test")),
        ("::ffff:192.0.2.10", confirmed("mail.example.test")),
        ("192.0.2.20", not_confirmed("liar.example.test")),
        // The PTR target does not exist.
        ("192.0.2.30", not_confirmed("gone.example.test")),
        // The second PTR name confirms.
        ("192.0.2.50", confirmed("mail50.example.test")),
        ("192.0.2.80", confirmed("mixed.example.test")),
        // NXDOMAIN, and a name with records but no PTR.
        ("192.0.2.60", Rdns::NoPtr),
        ("192.0.2.70", Rdns::NoPtr),
        ("2001:db8::10", confirmed("mail.example.test")),
        // AAAA is what confirms an IPv6 client; this name has only A.
        ("2001:db8::20", not_confirmed("v4only.example.test")),
        ("2001:db8::99", Rdns::NoPtr),
        (
            "198.51.100.7",
            Rdns::TempFail("PTR lookup: SERVFAIL".into()),
        ),
        ("203.0.113.7", Rdns::TempFail("PTR lookup: timeout".into())),
        // The only PTR name's forward lookup times out: no verdict.
        (
            "192.0.2.40",
            Rdns::TempFail("forward lookup of mx.silent.test: timeout".into()),
        ),
    ];
    for (client, expected) in table {
        assert_eq!(dns.reverse_confirm(ip(client)).await, expected, "{client}");
    }
}

#[test]
fn zone_specs_deserialize_from_strings() {
    let specs: Vec<ZoneSpec> =
        serde_json::from_str(r#"["zen.spamhaus.org*3", "list.dnswl.org=127.0.[2..15].[0..3]*-2"]"#)
            .unwrap();
    assert_eq!(specs[0].weight, 3);
    assert_eq!(specs[1].weight, -2);
    assert!(
        specs[1]
            .filter
            .as_ref()
            .unwrap()
            .matches(Ipv4Addr::new(127, 0, 5, 1))
    );
    let err = serde_json::from_str::<Vec<ZoneSpec>>(r#"["bl.test=127.0.0.[2,3]"]"#).unwrap_err();
    assert!(err.to_string().contains("use ';'"), "{err}");
    assert_eq!(
        serde_json::to_string(&specs[0]).unwrap(),
        r#""zen.spamhaus.org*3""#
    );
}

#[test]
fn dns_handle_is_clone_send_sync() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<Dns>();
}

#[test]
fn builds_outside_a_runtime() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 53));
    let dns = Dns::new(&config(addr)).expect("no runtime needed to build");
    assert!(format!("{dns:?}").contains("Dns"));
}

#[test]
fn invalid_config_is_rejected() {
    let bad = DnsConfig {
        timeout: Duration::ZERO,
        ..config(SocketAddr::from(([127, 0, 0, 1], 53)))
    };
    let err = Dns::new(&bad).unwrap_err();
    assert!(err.to_string().contains("timeout"), "{err}");
}

#[tokio::test]
async fn results_are_kept_until_their_ttl_expires() {
    // Two zones: answers of kept.test outlive the test, so asking again must not query;
    // ttl1.test has the shortest TTL DNS has (1 s, for answers and, through the SOA
    // minimum, NXDOMAIN), so once that has passed it must be asked again. min_ttl 0 leaves
    // the TTLs unraised. The wait is real: both caches (ours and hickory's, which takes no
    // other clock) read the system clock. It is the TTL counted from after the answers
    // arrived, so a stalled machine can only lengthen it, never make the test fail.
    let zone = |ttl: u32| {
        format!(
            "$TTL {ttl}
@           SOA ns.test. hostmaster.test. 1 3600 600 86400 {ttl}
10.2.0.192  A   127.0.0.2
10.2.0.192  TXT \"listed\"
"
        )
    };
    const SHORT_TTL: Duration = Duration::from_secs(1);
    let server = TestDns::start(&[
        ("kept.test.", &zone(3600)),
        ("ttl1.test.", &zone(SHORT_TTL.as_secs() as u32)),
    ])
    .await
    .unwrap();
    let dns = Dns::new(&DnsConfig {
        min_ttl: Duration::ZERO,
        ..config(server.addr())
    })
    .unwrap();
    let lookup_both = |zone: &'static str| {
        let dns = &dns;
        async move {
            let zone = spec(zone);
            assert_eq!(
                dns.list_lookup(&zone, ip("192.0.2.10")).await,
                listed(&["127.0.0.2"], Some("listed"))
            );
            assert_eq!(
                dns.list_lookup(&zone, ip("192.0.2.11")).await,
                ListResult::NotListed
            );
        }
    };
    let counts = |zone: &str| {
        [
            server.query_count(&format!("10.2.0.192.{zone}"), "A"),
            server.query_count(&format!("10.2.0.192.{zone}"), "TXT"),
            server.query_count(&format!("11.2.0.192.{zone}"), "A"),
        ]
    };

    lookup_both("ttl1.test").await;
    let answered = std::time::Instant::now();
    lookup_both("kept.test").await;
    lookup_both("kept.test").await;
    assert_eq!(counts("kept.test"), [1, 1, 1], "{:?}", server.queries());
    assert_eq!(counts("ttl1.test"), [1, 1, 1], "{:?}", server.queries());

    // hickory keeps an answer up to and including its last instant: wait a little past it.
    let expired = answered + SHORT_TTL + Duration::from_millis(10);
    tokio::time::sleep_until(expired.into()).await;
    lookup_both("ttl1.test").await;
    lookup_both("kept.test").await;
    assert_eq!(counts("ttl1.test"), [2, 2, 2], "{:?}", server.queries());
    assert_eq!(counts("kept.test"), [1, 1, 1], "{:?}", server.queries());
}

#[tokio::test]
async fn failures_are_asked_again_every_time() {
    let server = server().await;
    let dns = dns_for(&server);
    for _ in 0..3 {
        assert_eq!(
            dns.list_lookup(&spec("broken.test"), ip("192.0.2.10"))
                .await,
            ListResult::Error("SERVFAIL".into())
        );
        assert_eq!(
            dns.list_lookup(&spec("silent.test"), ip("192.0.2.10"))
                .await,
            ListResult::Error("timeout".into())
        );
    }
    assert_eq!(server.query_count("10.2.0.192.broken.test", "A"), 3);
    assert!(server.query_count("10.2.0.192.silent.test", "A") >= 3);
}

#[tokio::test]
async fn queries_in_flight_are_capped() {
    let server = all_zones(TestDns::builder().delay(Duration::from_millis(100)))
        .start()
        .await
        .unwrap();
    let dns = Dns::new(&DnsConfig {
        timeout: Duration::from_secs(2),
        max_in_flight: 2,
        ..config(server.addr())
    })
    .unwrap();
    let zone = spec("bl.test");
    // Ten different clients, none listed: ten A queries that would all overlap.
    let clients: Vec<IpAddr> = (100..110).map(|n| ip(&format!("192.0.2.{n}"))).collect();
    let results = join_all(clients.iter().map(|c| dns.list_lookup(&zone, *c))).await;
    assert!(
        results.iter().all(|r| *r == ListResult::NotListed),
        "{results:?}"
    );
    assert_eq!(server.queries().len(), 10, "{:?}", server.queries());
    assert!(
        server.peak_in_flight() <= 2,
        "peak {}",
        server.peak_in_flight()
    );
}
