//! The test server answers real resolver queries over UDP and TCP.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use spamgate_testdns::TestDns;

const BL_ZONE: &str = "
2.0.0.127      A   127.0.0.2
2.0.0.127      TXT \"test listing\"
10.2.0.192     A   127.0.0.4
";

const REVERSE_ZONE: &str = "
10 PTR mail.example.test.
";

const FORWARD_ZONE: &str = "
$TTL 600
@      IN SOA ns.example.test. hostmaster.example.test. 7 3600 600 86400 30
mail   A    192.0.2.10
mail   AAAA 2001:db8::10
";

fn resolver(addr: SocketAddr, conn: ConnectionConfig) -> TokioResolver {
    let mut conn = conn;
    conn.port = addr.port();
    let server = NameServerConfig::new(addr.ip(), true, vec![conn]);
    let config = ResolverConfig::from_parts(None, vec![], vec![server]);
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_millis(500);
    opts.attempts = 0;
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .expect("resolver")
}

async fn start() -> TestDns {
    TestDns::start(&[
        ("bl.test.", BL_ZONE),
        ("2.0.192.in-addr.arpa.", REVERSE_ZONE),
        ("example.test.", FORWARD_ZONE),
    ])
    .await
    .expect("test dns starts")
}

fn rdatas(resolver_answer: &[hickory_resolver::proto::rr::Record]) -> Vec<RData> {
    resolver_answer.iter().map(|r| r.data.clone()).collect()
}

#[tokio::test]
async fn answers_a_txt_ptr_aaaa_over_udp_and_tcp() {
    let dns = start().await;
    for conn in [ConnectionConfig::udp(), ConnectionConfig::tcp()] {
        let r = resolver(dns.addr(), conn);

        let a = r.lookup("2.0.0.127.bl.test.", RecordType::A).await.unwrap();
        assert_eq!(
            rdatas(a.answers()),
            vec![RData::A(Ipv4Addr::new(127, 0, 0, 2).into())]
        );

        let txt = r
            .lookup("2.0.0.127.bl.test.", RecordType::TXT)
            .await
            .unwrap();
        assert!(
            matches!(&rdatas(txt.answers())[..], [RData::TXT(t)] if t.to_string() == "test listing")
        );

        let ptr = r
            .lookup("10.2.0.192.in-addr.arpa.", RecordType::PTR)
            .await
            .unwrap();
        assert!(
            matches!(&rdatas(ptr.answers())[..], [RData::PTR(n)] if n.to_string() == "mail.example.test.")
        );

        let aaaa = r
            .lookup("mail.example.test.", RecordType::AAAA)
            .await
            .unwrap();
        assert_eq!(
            rdatas(aaaa.answers()),
            vec![RData::AAAA(
                "2001:db8::10".parse::<Ipv6Addr>().unwrap().into()
            )]
        );
    }
    assert_eq!(dns.query_count("2.0.0.127.bl.test", "a"), 2);
}

#[tokio::test]
async fn unknown_name_is_nxdomain_and_missing_type_is_nodata() {
    let dns = start().await;
    let r = resolver(dns.addr(), ConnectionConfig::udp());

    let nx = r
        .lookup("3.0.0.127.bl.test.", RecordType::A)
        .await
        .unwrap_err();
    assert!(nx.is_nx_domain(), "{nx}");

    let nodata = r
        .lookup("10.2.0.192.bl.test.", RecordType::TXT)
        .await
        .unwrap_err();
    assert!(
        nodata.is_no_records_found() && !nodata.is_nx_domain(),
        "{nodata}"
    );
}

#[tokio::test]
async fn servfail_and_blackhole_zones_fail() {
    let dns = TestDns::builder()
        .zone("bl.test.", BL_ZONE)
        .servfail("broken.test.")
        .blackhole("silent.test.")
        .start()
        .await
        .unwrap();
    let r = resolver(dns.addr(), ConnectionConfig::udp());

    let servfail = r
        .lookup("2.0.0.127.broken.test.", RecordType::A)
        .await
        .unwrap_err();
    assert!(
        matches!(
            servfail,
            NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail))
        ),
        "{servfail}"
    );

    let silent = r
        .lookup("2.0.0.127.silent.test.", RecordType::A)
        .await
        .unwrap_err();
    assert!(matches!(silent, NetError::Timeout), "{silent}");

    // The other zone still answers.
    assert!(r.lookup("2.0.0.127.bl.test.", RecordType::A).await.is_ok());
}

#[tokio::test]
async fn delayed_answers_overlap_and_peak_is_counted() {
    let dns = TestDns::start_with_delay(&[("bl.test.", BL_ZONE)], Duration::from_millis(200))
        .await
        .unwrap();
    let r = resolver(dns.addr(), ConnectionConfig::udp());
    let (listed, other, absent) = tokio::join!(
        r.lookup("2.0.0.127.bl.test.", RecordType::A),
        r.lookup("10.2.0.192.bl.test.", RecordType::A),
        r.lookup("9.9.9.9.bl.test.", RecordType::A),
    );
    assert!(listed.is_ok() && other.is_ok() && absent.is_err());
    assert_eq!(dns.peak_in_flight(), 3);
    assert_eq!(dns.queries().len(), 3);

    dns.clear_stats();
    assert_eq!(dns.peak_in_flight(), 0);
    assert!(dns.queries().is_empty());
}

#[tokio::test]
async fn bad_zone_text_is_an_error() {
    let err = TestDns::start(&[("bl.test.", "2.0.0.127 A not-an-address\n")])
        .await
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("bl.test."), "{err:#}");

    let outside = TestDns::start(&[("bl.test.", "www.example.test. A 192.0.2.1\n")])
        .await
        .err()
        .expect("must fail");
    assert!(format!("{outside:#}").contains("outside"), "{outside:#}");
}

#[tokio::test]
async fn shutdown_stops_answering() {
    let dns = start().await;
    let addr = dns.addr();
    dns.shutdown().await.unwrap();
    let r = resolver(addr, ConnectionConfig::udp());
    assert!(r.lookup("2.0.0.127.bl.test.", RecordType::A).await.is_err());
}
