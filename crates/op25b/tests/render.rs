//! Rendering and validation, pure: snapshots of a realistic configuration, the table of
//! configuration errors, and expiry handling at chosen instants.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use spamgate_op25b::{Expiry, Op25bConfig, Op25bError, plan, render, render_sync};

#[derive(Deserialize)]
struct File {
    op25b: Op25bConfig,
}

fn parse(text: &str) -> Result<Op25bConfig, String> {
    toml::from_str::<File>(text)
        .map(|file| file.op25b)
        .map_err(|e| e.to_string())
}

fn at(rfc3339: &str) -> SystemTime {
    let ms = Expiry::parse(rfc3339).unwrap().unix_ms();
    UNIX_EPOCH + Duration::from_millis(ms as u64)
}

const NOW: &str = "2026-12-01T00:00:00Z";

/// A mid-size ISP: two IPv4 pools and one IPv6 pool, business ranges, opt-outs (one
/// expired, one with a future expiry, one permanent), relays in both families.
const ISP: &str = r#"
[op25b]
pools = ["198.51.100.0/24", "203.0.113.0/25", "2001:db8:100::/48"]
relays = ["192.0.2.25", "192.0.2.26", "2001:db8:25::25"]
log_rate = "5/minute"
interfaces = ["ppp*", "bond0.100"]
exempt = [
  { prefix = "198.51.100.128/28", reason = "business plan \"fixed-16\"" },
  { prefix = "2001:db8:100:ff00::/56", reason = "固定IPプラン" },
  { prefix = "198.51.100.77", reason = "opt-out #1234: own mail server", expires = 2027-03-31 },
  { prefix = "2001:db8:100:4200::/56", reason = "opt-out #1301", expires = "2027-01-01T00:00:00+09:00" },
  { prefix = "198.51.100.66", reason = "opt-out #999 (ended)", expires = 2026-06-30T23:59:59+09:00 },
  { prefix = "203.0.113.5", reason = "opt-out #1250" },
]
"#;

#[test]
fn realistic_ruleset() {
    let config = parse(ISP).unwrap();
    insta::assert_snapshot!("ruleset", render(&config, at(NOW)).unwrap());
}

#[test]
fn realistic_set_update() {
    let config = parse(ISP).unwrap();
    insta::assert_snapshot!("set_update", render_sync(&config, at(NOW)).unwrap());
}

#[test]
fn minimal_config_uses_the_defaults() {
    let config = parse("[op25b]\npools = [\"198.51.100.0/24\"]").unwrap();
    let text = render(&config, at(NOW)).unwrap();
    assert!(text.contains("table inet spamgate_op25b {"));
    assert!(text.contains("\t\ttcp dport 25 ct state new jump op25b\n"));
    assert!(text.contains("limit rate 10/minute log"));
    assert!(text.contains("size 65536") && text.contains("timeout 1d\n"));
    // Sets are always declared, so `sync` can fill them later.
    for set in ["exempt4", "exempt6", "relay4", "relay6", "pool6"] {
        assert!(text.contains(&format!("set {set} {{")), "{set}");
    }
}

#[test]
fn several_ports_and_one_interface() {
    let config = parse(
        "[op25b]\npools = [\"198.51.100.0/24\"]\nports_blocked = [25, 2525]\n\
         interfaces = [\"ppp0\"]\ntable = \"op25b_edge1\"\nhits_timeout = \"7days\"",
    )
    .unwrap();
    let text = render(&config, at(NOW)).unwrap();
    assert!(text.contains("iifname \"ppp0\" tcp dport { 25, 2525 } ct state new jump op25b"));
    assert!(text.contains("delete table inet op25b_edge1\n"));
    assert!(text.contains("timeout 7d\n"));
}

/// Whatever the configuration, the only `dport` in the output is the configured list and
/// the submission ports are nowhere.
#[test]
fn submission_ports_never_appear() {
    for ports in ["[25]", "[25, 2525]", "[24, 26, 10025]"] {
        let text = format!("[op25b]\npools = [\"198.51.100.0/24\"]\nports_blocked = {ports}");
        let rendered = render(&parse(&text).unwrap(), at(NOW)).unwrap();
        let dports: Vec<&str> = rendered.lines().filter(|l| l.contains("dport")).collect();
        assert_eq!(dports.len(), 1, "{rendered}");
        let rules = rendered
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'));
        for line in rules {
            assert!(!line.contains("587") && !line.contains("465"), "{line}");
        }
    }
}

/// `config` is the `[op25b]` table's body; `expected` is `None` for a valid one, else a
/// part of the error.
fn check(config: &str, expected: Option<&str>) {
    let text = format!("[op25b]\n{config}");
    let result = parse(&text).and_then(|c| plan(&c, at(NOW)).map_err(|e| e.to_string()));
    match (result, expected) {
        (Ok(_), None) => {}
        (Err(err), Some(part)) => assert!(
            err.contains(part),
            "{config}\n  error: {err}\n  want: {part}"
        ),
        (Ok(_), Some(part)) => panic!("{config}\n  accepted, want error containing {part:?}"),
        (Err(err), None) => panic!("{config}\n  refused: {err}"),
    }
}

const POOL: &str = "pools = [\"198.51.100.0/24\", \"2001:db8:100::/48\"]\n";

#[test]
fn validation() {
    let with_pool = |rest: &str| format!("{POOL}{rest}");
    let exempt = |entries: &str| with_pool(&format!("exempt = [{entries}]"));
    let cases: Vec<(String, Option<&str>)> = vec![
        (POOL.to_owned(), None),
        ("pools = []".to_owned(), Some("pools is empty")),
        (String::new(), Some("pools is empty")),
        ("pools = [\"198.51.100.1/24\"]".to_owned(), Some("host bits set; did you mean 198.51.100.0/24?")),
        ("pools = [\"198.51.100.0/33\"]".to_owned(), Some("longer than 32")),
        ("pools = [\"198.51.100.x/24\"]".to_owned(), Some("is not an IP address or prefix")),
        ("pools = [\"::ffff:198.51.100.0/120\"]".to_owned(), Some("IPv4-mapped")),
        ("pools = [\"0.0.0.0/0\"]".to_owned(), Some("covers every address")),
        ("pools = [\"198.51.100.0/24\", \"198.51.100.64/26\"]".to_owned(),
            Some("pools 198.51.100.0/24 and 198.51.100.64/26 overlap")),
        ("pools = [\"2001:db8:100::/48\", \"2001:db8::/32\"]".to_owned(),
            Some("pools 2001:db8:100::/48 and 2001:db8::/32 overlap")),
        ("pools = [\"198.51.100.0/24\", \"198.51.100.0/24\"]".to_owned(), Some("overlap")),
        ("pools = [\"198.51.100.0/25\", \"198.51.100.128/25\", \"2001:db8:100::/56\", \"2001:db8:100:100::/56\"]".to_owned(), None),
        (with_pool("relays = [\"192.0.2.0/24\", \"192.0.2.25\"]"), Some("relays 192.0.2.0/24 and 192.0.2.25 overlap")),
        (with_pool("relays = [\"192.0.2.25\", \"2001:db8:25::25\"]"), None),
        (with_pool("ports_blocked = [25, 587]"), Some("ports_blocked lists 587: 587 and 465")),
        (with_pool("ports_blocked = [465]"), Some("ports_blocked lists 465")),
        (with_pool("ports_blocked = []"), Some("ports_blocked is empty")),
        (with_pool("ports_blocked = [25, 25]"), Some("lists 25 twice")),
        (with_pool("ports_blocked = [0]"), Some("lists 0")),
        (with_pool("ports_blocked = [70000]"), Some("invalid value")),
        (with_pool("log_rate = \"10/fortnight\""), Some("expected N/second, N/minute, N/hour or N/day")),
        (with_pool("log_rate = \"0/minute\""), Some("at least 1")),
        (with_pool("log_rate = \"1/second\""), None),
        (with_pool("table = \"op25b-edge\""), Some("use 1-64 letters, digits and '_'")),
        (with_pool("table = \"\""), Some("use 1-64 letters")),
        (with_pool("interfaces = [\"eth 0\"]"), Some("expected a Linux interface name")),
        (with_pool("interfaces = [\"averyveryverylongname\"]"), Some("expected a Linux interface name")),
        (with_pool("interfaces = [\"*\"]"), Some("expected a Linux interface name")),
        (with_pool("interfaces = [\"ppp*\", \"ppp*\"]"), Some("listed twice")),
        (with_pool("interfaces = [\"ppp*\", \"eth1.100\"]"), None),
        (with_pool("hits_timeout = \"0s\""), Some("hits_timeout must be")),
        (with_pool("hits_timeout = \"1h\"\nhits_size = 1024"), None),
        (with_pool("hits_size = 0"), Some("hits_size must be")),
        (with_pool("nft_timeout = \"0s\""), Some("nft_timeout must be between 1s and 1h")),
        (with_pool("nft_timeout = \"2h\""), Some("nft_timeout must be between 1s and 1h")),
        (with_pool("nft_timeout = \"30s\""), None),
        (with_pool("colour = \"red\""), Some("unknown field `colour`")),
        (exempt("{ prefix = \"198.51.100.7\", reason = \"opt-out #1\" }"), None),
        (exempt("{ prefix = \"198.51.100.7\", reason = \"  \" }"), Some("exemption 198.51.100.7 has no reason")),
        (exempt("{ prefix = \"198.51.100.7\" }"), Some("missing field `reason`")),
        (exempt("{ prefix = \"198.51.100.7\", reason = \"x\", until = 2027-01-01 }"), Some("unknown field `until`")),
        (exempt("{ prefix = \"192.0.2.7\", reason = \"opt-out #2\" }"),
            Some("exemption 192.0.2.7 (\"opt-out #2\") lies outside every pool")),
        (exempt("{ prefix = \"2001:db8:200::/56\", reason = \"opt-out #3\" }"), Some("lies outside every pool")),
        // Expired entries are inert: neither outside-pool nor overlap is held against them.
        (exempt("{ prefix = \"192.0.2.7\", reason = \"old\", expires = 2026-01-01 }"), None),
        (exempt("{ prefix = \"198.51.100.0/28\", reason = \"a\" }, { prefix = \"198.51.100.7\", reason = \"b\" }"),
            Some("exemptions 198.51.100.0/28 (\"a\") and 198.51.100.7 (\"b\") overlap")),
        (exempt("{ prefix = \"198.51.100.7\", reason = \"a\", expires = 2026-11-30 }, { prefix = \"198.51.100.7\", reason = \"b\" }"), None),
        (exempt("{ prefix = \"198.51.100.7\", reason = \"a\", expires = \"2027-01-01T00:00:00\" }"), Some("no UTC offset")),
        (exempt("{ prefix = \"198.51.100.7\", reason = \"a\", expires = 2027-01-01T00:00:00 }"), Some("no UTC offset")),
        (exempt("{ prefix = \"198.51.100.7\", reason = \"a\", expires = \"soon\" }"), Some("expected YYYY-MM-DD")),
        (exempt("{ prefix = \"198.51.100.7\", reason = \"a\", expires = 2226-01-01 }"), Some("more than 36500 days ahead")),
        (exempt("{ prefix = \"198.51.100.7\", reason = \"a\", expires = 2027-02-30 }"), Some("expected day between 01 and 28")),
        (exempt("{ prefix = \"198.51.100.7\", reason = \"a\", expires = \"2027-02-30\" }"), Some("day out of range")),
    ];
    for (config, expected) in &cases {
        check(config, *expected);
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let config = parse(
        "[op25b]\npools = [\"198.51.100.0/24\", \"198.51.100.0/25\"]\nports_blocked = [25, 465]\n\
         exempt = [{ prefix = \"192.0.2.1\", reason = \"\" }]",
    )
    .unwrap();
    let Err(Op25bError::Invalid(problems)) = plan(&config, at(NOW)) else {
        panic!("accepted");
    };
    assert_eq!(problems.len(), 4, "{problems:#?}");
}

#[test]
fn expiry_is_resolved_at_now() {
    let config = parse(
        "[op25b]\npools = [\"198.51.100.0/24\"]\n\
         exempt = [{ prefix = \"198.51.100.7\", reason = \"trial\", expires = 2026-12-01T00:00:10Z }]",
    )
    .unwrap();
    let element_line = |now: &str| {
        let text = render(&config, at(now)).unwrap();
        text.lines()
            .find(|l| l.contains("198.51.100.7"))
            .map(str::trim)
            .map(str::to_owned)
    };
    assert_eq!(
        element_line("2026-11-30T00:00:00Z").as_deref(),
        Some("198.51.100.7 timeout 1d10s comment \"trial\", # until 2026-12-01T00:00:10Z")
    );
    // Rounded up: a fraction of a second left is still a live element.
    assert_eq!(
        element_line("2026-12-01T00:00:09.999Z").as_deref(),
        Some("198.51.100.7 timeout 1s comment \"trial\", # until 2026-12-01T00:00:10Z")
    );
    assert_eq!(element_line("2026-12-01T00:00:10Z"), None);
    let later = plan(&config, at("2027-01-01T00:00:00Z")).unwrap();
    assert_eq!(later.expired().len(), 1);
    assert_eq!(later.expired()[0].expired, "2026-12-01T00:00:10Z");
    assert_eq!(later.exemptions().count(), 0);
}

#[test]
fn config_round_trips_through_toml() {
    let config = parse(ISP).unwrap();
    #[derive(serde::Serialize)]
    struct Out<'a> {
        op25b: &'a Op25bConfig,
    }
    let text = toml::to_string(&Out { op25b: &config }).unwrap();
    assert_eq!(parse(&text).unwrap(), config, "{text}");
}
