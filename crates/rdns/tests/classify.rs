//! Classification of real-shaped names, operator configuration and configuration errors.

use proptest::prelude::*;
use spamgate_rdns::{Classifier, ClassifierConfig, ClassifierError, NameClass, RuleConfig};

/// What a table row expects, written compactly.
#[derive(Debug, Clone, Copy)]
enum Want {
    Generic(&'static str),
    Excepted(&'static str, &'static str),
    Proper,
}
use Want::{Excepted, Generic, Proper};

impl Want {
    fn class(self) -> NameClass {
        match self {
            Generic(rule) => NameClass::Generic { rule: rule.into() },
            Excepted(rule, exception) => NameClass::Excepted {
                rule: rule.into(),
                exception: exception.into(),
            },
            Proper => NameClass::Proper,
        }
    }
}

fn check(classifier: &Classifier, name: &str, expected: Want) {
    assert_eq!(
        classifier.classify(name),
        expected.class(),
        "classify({name:?})"
    );
}

fn default_classifier() -> Classifier {
    Classifier::new(&ClassifierConfig::default()).expect("default config compiles")
}

/// The built-in behaviour, name by name. Big senders use their real domains (the exceptions
/// are about them); everything else uses documentation names.
const DEFAULT_TABLE: &[(&str, Want)] = &[
    // The seed's examples of end-user lines.
    ("123-123-123-123.xxx.example.net", Generic("s25r-1")),
    ("123.123.123.123.xxx.example.net", Generic("s25r-3")),
    ("123-123-123-123.adsl.example.net", Generic("s25r-1")),
    ("123-123-123-123.dhcp.example.net", Generic("s25r-1")),
    // S25R's published examples, one per rule. `adsl-1-2` is listed under rule 6 but rule 1
    // matches it too, and the first rule in order is the one reported.
    ("p1234-ipbf01.example.ne.jp", Generic("s25r-1")),
    ("h219203254123.example.jp", Generic("s25r-2")),
    ("pc1.123-45.example.net", Generic("s25r-4")),
    ("a1.b2.dyn.example.net", Generic("s25r-5")),
    ("dhcp123.example.com", Generic("s25r-6")),
    ("adsl-1-2.example.net", Generic("s25r-1")),
    ("xdsl-line7.example.net", Generic("s25r-6")),
    ("ppp12.example.org", Generic("s25r-6")),
    // Real-world shapes of access-network names.
    ("c-73-15-2-1.hsd1.ca.comcast.example.net", Generic("s25r-1")),
    ("ppp-1-2-3-4.dynamic.example.jp", Generic("s25r-1")),
    ("softbank126012034056.bbtec.example.net", Generic("s25r-2")),
    ("KD111239160140.ppp-bb.example.jp", Generic("s25r-2")),
    ("host-203-0-113-5.static.example.com", Generic("s25r-1")),
    ("203-0-113-5.example.net", Generic("s25r-1")),
    ("203.0.113.5.dynamic.example.net", Generic("s25r-3")),
    ("ip-203-0-113-5.ec2.example.com", Generic("s25r-1")),
    ("203000113005.example.net", Generic("s25r-2")),
    ("p203000113005-dyn.example.net", Generic("s25r-2")),
    ("cb00710d.dsl.example.net", Generic("s25r-2")),
    (
        "2001-db8-85a3-0-0-8a2e-370-7334.dyn.example.net",
        Generic("s25r-1"),
    ),
    (
        "20010db8000000000000000000000005.ip6.example.net",
        Generic("s25r-1"),
    ),
    ("dsl-198-51-100-7.pool.example.de", Generic("s25r-1")),
    ("x1-6-00-1e-2a-3b-4c-5d.cpe.example.net", Generic("s25r-1")),
    // Names S25R lets through, caught by spamgate's own rules.
    ("customer.203-0-113-5.example.net", Generic("ip4-in-name")),
    (
        "static.customer.203.0.113.5.example.net",
        Generic("ip4-in-name"),
    ),
    ("dyn.203000113005.example.net", Generic("ip4-in-name")),
    ("dyn.2001-db8-1--5.example.net", Generic("ip6-in-name")),
    (
        "host.2001-db8-85a3-a-b-c-d-5.example.net",
        Generic("ip6-in-name"),
    ),
    (
        "host.20010db8000000010000000000000005.example.net",
        Generic("ip6-in-name"),
    ),
    ("dynamic-5.example.net", Generic("dyn-keyword")),
    ("cable5.example.net", Generic("dyn-keyword")),
    ("pool-12.example.net", Generic("dyn-keyword")),
    ("mail.dyn-5.example.net", Generic("dyn-keyword")),
    ("a.5-pppoe.example.net", Generic("dyn-keyword")),
    ("ftth7.example.jp", Generic("dyn-keyword")),
    ("user12.res.example.edu", Generic("subscriber-keyword")),
    ("customer-42.example.net", Generic("subscriber-keyword")),
    ("static-7.example.org", Generic("subscriber-keyword")),
    ("cbab71fe.dyn.example.net", Generic("dyn-zone")),
    ("x1.pool.example.net", Generic("dyn-zone")),
    ("cbab71fe.ppp-bb.example.jp", Generic("dyn-zone")),
    ("host7.customers.static.example.com", Generic("dyn-zone")),
    // A zone keyword under a multi-label public suffix counts like under `.net`.
    ("x1.pool.example.net", Generic("dyn-zone")),
    ("ab12cd.dyn.example.ne.jp", Generic("dyn-zone")),
    ("x1.pool.example.co.uk", Generic("dyn-zone")),
    ("x1.dsl.example.com.au", Generic("dyn-zone")),
    ("ab12cd.dyn.example.or.jp", Generic("dyn-zone")),
    // ... but not when the keyword is the registrable domain itself.
    ("x1.pool.co.uk", Proper),
    ("x1.dsl.com.au", Proper),
    // Hex-encoded IPv4 first label.
    ("cbab71fe.example.net", Generic("hex-ip")),
    ("ool-cbab71fe.example.net", Generic("hex-ip")),
    ("pcbab71fe.dip.example", Generic("hex-ip")),
    ("0xcbab71fe.example.dk", Generic("s25r-1")),
    ("cafebabe.example.com", Proper),
    // NAT pools, unnamed reverse templates, digit-less hosts under a line zone.
    ("nat-42.example.net", Generic("nat-pool")),
    ("natpool3.example.net", Generic("nat-pool")),
    ("unassigned.example.net", Generic("unassigned")),
    ("host.unallocated.example.org", Generic("unassigned")),
    ("abcdef.dip.example.net", Generic("dyn-zone-bare")),
    ("abcdef.ppp.example.ne.jp", Generic("dyn-zone-bare")),
    (
        "mail.dsl.example.net",
        Excepted("dyn-zone-bare", "mail-service"),
    ),
    // A mail word does not outweigh a strong rule.
    ("smtp.203-0-113-5.dynamic.example.net", Generic("s25r-3")),
    ("mail-12.dyn.example.net", Generic("dyn-zone")),
    ("mx1.dsl-5.example.net", Generic("dyn-keyword")),
    // A mail word in a TLD or a bare registered domain is not a mail-service word.
    ("abc123-x456.example.com.mx", Generic("s25r-1")),
    ("abc123-x456.mx.example", Generic("s25r-1")),
    // A short-numbered host right under the registrable domain is a server pool, not a line.
    ("m15-78.126.example", Excepted("s25r-1", "short-host")),
    ("d1-sfbay-01.example.com", Excepted("s25r-1", "short-host")),
    ("p02m169.example.net", Excepted("s25r-1", "short-host")),
    ("h234n2fls32o895.example.com", Generic("s25r-1")),
    // A first label that starts with digits is a line number, not a server's.
    ("102-be2-4.example.net", Generic("s25r-1")),
    // Under a hoster's private suffix of the public suffix list (a real entry: the
    // suffix is what is tested), the ICANN registrable domain counts.
    ("dd36226.kasserver.com", Excepted("s25r-2", "short-host")),
    // A mail word numbered inside a label (building + relay number) is a mail service;
    // the same shape without one is not.
    (
        "d01relay02.pok.example.com",
        Excepted("s25r-1", "mail-service"),
    ),
    ("d01av02.pok.example.com", Generic("s25r-1")),
    ("p1smartmail2.pok.example.com", Generic("s25r-1")),
    // ... but not when a strong rule matches.
    ("m15-78.pool.example.net", Generic("s25r-1")),
    // Proper mail servers.
    ("mail.example.com", Proper),
    ("smtp1.example.net", Proper),
    ("mx-01.example.org", Proper),
    ("mail2.example.co.jp", Proper),
    ("out1.mail.example.com", Proper),
    ("o1.email.example.com", Proper),
    ("mta-123.example.net", Proper),
    ("mx1.example.org", Proper),
    ("smtp.example.co.jp", Proper),
    ("mail-relay.example.net", Proper),
    ("smtp-out2.example.com", Proper),
    ("relay3.example.org", Proper),
    ("mx01.mail.example.ne.jp", Proper),
    ("mail.client.example.com", Proper),
    ("mail1.home.test", Proper),
    ("mx2.poolside.example.com", Proper),
    ("dynamo5.example.com", Proper),
    ("resolver1.example.net", Proper),
    ("mail-1a.example.com", Proper),
    ("mx.example.com.", Proper),
    ("MAIL.EXAMPLE.COM", Proper),
    ("unknown", Proper),
    ("", Proper),
    // Large senders whose names no rule matches: no exception needed.
    ("wrqvxttq.outbound-mail.sendgrid.net", Proper),
    ("o1.b.az.sendgrid.net", Proper),
    ("mail42.atl61.mcsv.net", Proper),
    ("mail50.atl71.mcdlv.net", Proper),
    ("db229.mta.exacttarget.com", Proper),
    ("mail323.linkedin.com", Proper),
    ("mta214a-ord.mtasv.net", Proper),
    ("smtp509.mail.kks.yahoo.co.jp", Proper),
    ("mail-sor-f41.google.com", Proper),
    // Proper servers S25R itself flags (rules published as-is): a mail-service word outweighs
    // the shape-only match.
    ("mx1-2.example.com", Excepted("s25r-1", "mail-service")),
    (
        "mx1.mail2.example.co.jp",
        Excepted("s25r-5", "mail-service"),
    ),
    (
        "mail.1and1.example.co.uk",
        Excepted("s25r-3", "mail-service"),
    ),
    // Large senders flagged by S25R: the mail-server rules save most of them, the built-in
    // exceptions the rest.
    (
        "mail-eopbgr80071.outbound.protection.outlook.com",
        Excepted("s25r-2", "mail-service"),
    ),
    (
        "mail-sn1nam02on2089.outbound.protection.outlook.com",
        Excepted("s25r-1", "mail-service"),
    ),
    (
        "a8-30.smtp-out.amazonses.com",
        Excepted("s25r-1", "mail-service"),
    ),
    (
        "a27-10.smtp-out.us-west-2.amazonses.com",
        Excepted("s25r-1", "mail-service"),
    ),
    (
        "mail-pj1-f67.google.com",
        Excepted("s25r-1", "mail-service"),
    ),
    (
        "sonic301-37.consmr.mail.bf2.yahoo.com",
        Excepted("s25r-1", "mail-service"),
    ),
    (
        "web53514.mail.yahoo.com",
        Excepted("s25r-2", "mail-service"),
    ),
    (
        "nh605-vm5.bullet.mail.ssk.yahoo.co.jp",
        Excepted("s25r-1", "mail-service"),
    ),
    (
        "st43p00im-ztdg10061801.me.com",
        Excepted("s25r-1", ".me.com"),
    ),
    (
        "66-220-155-156.mail-mail.facebook.com",
        Excepted("s25r-1", ".mail-mail.facebook.com"),
    ),
    (
        "sender4-of-o53.zoho.com",
        Excepted("s25r-1", "mail-service"),
    ),
    (
        "sender11-op-o11.zoho.eu",
        Excepted("s25r-1", "mail-service"),
    ),
    (
        "mail136-18.atl41.mandrillapp.com",
        Excepted("s25r-1", "mail-service"),
    ),
    ("so254-9.mailgun.net", Excepted("s25r-1", "mail-domain")),
    ("m42-4.mailgun.net", Excepted("s25r-1", "mail-domain")),
    (
        "MTA-81-59.SparkPostMail.com.",
        Excepted("s25r-1", "mail-service"),
    ),
    // Not host names at all.
    ("mail..example.com", Generic("invalid-name")),
    ("mail example.com", Generic("invalid-name")),
    ("mail.exämple.com", Generic("invalid-name")),
    ("[203.0.113.5]", Generic("invalid-name")),
];

#[test]
fn default_rules_and_exceptions() {
    let classifier = default_classifier();
    for &(name, expected) in DEFAULT_TABLE {
        check(&classifier, name, expected);
    }
}

#[test]
fn names_too_long_for_dns_are_invalid() {
    let classifier = default_classifier();
    let label = "a".repeat(63);
    let longest = format!("{label}.{label}.{label}.{}", "b".repeat(61));
    check(&classifier, &longest, Proper);
    check(&classifier, &format!("x{longest}"), Generic("invalid-name"));
    check(
        &classifier,
        &format!("{}.example.com", "a".repeat(64)),
        Generic("invalid-name"),
    );
    check(
        &classifier,
        &"1-2.".repeat(100_000),
        Generic("invalid-name"),
    );
}

/// Every built-in exception is needed: some row of the table is excepted by it, and that
/// row is generic once built-in exceptions are off.
#[test]
fn every_builtin_exception_matters() {
    let without = Classifier::new(&ClassifierConfig {
        builtin_exceptions: false,
        ..ClassifierConfig::default()
    })
    .unwrap();
    let builtin = include_str!("../src/exceptions.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'));
    for entry in builtin {
        let rows: Vec<_> = DEFAULT_TABLE
            .iter()
            .filter_map(|&(name, want)| match want {
                Excepted(rule, exception) if exception == entry => Some((name, rule)),
                _ => None,
            })
            .collect();
        assert!(!rows.is_empty(), "no test name is excepted by {entry}");
        for (name, rule) in rows {
            check(&without, name, Generic(rule));
        }
    }
}

#[test]
fn operator_can_disable_add_and_except() {
    let config = ClassifierConfig {
        disable_rules: vec!["s25r-1".into(), "s25r-3".into()],
        rules: vec![
            RuleConfig {
                id: "local-vps".into(),
                pattern: r"^vps[0-9]+\.hosting\.example$".into(),
            },
            RuleConfig {
                id: "upper".into(),
                pattern: r"^ShoutY".into(),
            },
        ],
        exceptions: vec![
            "mx1-2.example.com".into(),
            ".Partner.Example.NET.".into(),
            "/^relay[0-9]+\\.[0-9]+-[0-9]+\\.example\\.org$/".into(),
        ],
        ..ClassifierConfig::default()
    };
    let classifier = Classifier::new(&config).unwrap();
    let table: &[(&str, Want)] = &[
        // s25r-1 off: the next rule in order reports.
        ("adsl-1-2.example.net", Generic("s25r-6")),
        ("c-73-15-2-1.hsd1.ca.comcast.example.net", Generic("s25r-5")),
        (
            "host-203-0-113-5.static.example.com",
            Generic("ip4-in-name"),
        ),
        // s25r-3 off and nothing else matches.
        ("123.xxx.example.net.example", Proper),
        ("mail.1and1.example.co.uk", Proper),
        // Operator rules, case-insensitive, after the built-in ones.
        ("VPS12.hosting.example", Generic("local-vps")),
        ("shouty.example", Generic("upper")),
        ("vps12.hosting.example.net", Proper),
        // Exact exception: that name only.
        ("mx2-2.example.com", Proper),
        (
            "relay3.mx1-2.example.com",
            Excepted("s25r-4", "mail-service"),
        ),
        ("host3.ab1-2.example.com", Generic("s25r-4")),
        // Domain exception: the domain itself and every name under it.
        (
            "12345.partner.example.net",
            Excepted("s25r-2", ".Partner.Example.NET."),
        ),
        (
            "dyn-5.partner.example.net",
            Excepted("dyn-keyword", ".Partner.Example.NET."),
        ),
        ("12345.notpartner.example.net", Generic("s25r-2")),
        // Regex exception.
        (
            "relay1.22-3.example.org",
            Excepted("s25r-4", "/^relay[0-9]+\\.[0-9]+-[0-9]+\\.example\\.org$/"),
        ),
        // Built-in exceptions stay on.
        (
            "st43p00im-ztdg10061801.me.com",
            Excepted("s25r-2", ".me.com"),
        ),
    ];
    for &(name, expected) in table {
        check(&classifier, name, expected);
    }
    // `mx1-2` is s25r-1's; with that rule off no other rule matches the excepted name.
    check(&classifier, "mx1-2.example.com", Proper);
    let with_s25r1 = Classifier::new(&ClassifierConfig {
        exceptions: vec!["mx1-2.example.com".into()],
        ..ClassifierConfig::default()
    })
    .unwrap();
    check(
        &with_s25r1,
        "mx1-2.example.com",
        Excepted("s25r-1", "mx1-2.example.com"),
    );
    check(&with_s25r1, "host1-22334.example.org", Generic("s25r-1"));
    check(
        &with_s25r1,
        "relay1-22.example.org",
        Excepted("s25r-1", "mail-service"),
    );
}

#[test]
fn operator_exception_is_reported_before_a_builtin_one() {
    let classifier = Classifier::new(&ClassifierConfig {
        exceptions: vec![".google.com".into(), "/google/".into()],
        ..ClassifierConfig::default()
    })
    .unwrap();
    check(
        &classifier,
        "mail-pj1-f67.google.com",
        Excepted("s25r-1", ".google.com"),
    );
    check(
        &classifier,
        "mail-pj1-f67.google.example",
        Excepted("s25r-1", "/google/"),
    );
}

#[test]
fn builtins_can_be_turned_off() {
    let only_mine = Classifier::new(&ClassifierConfig {
        builtin_rules: false,
        builtin_exceptions: false,
        rules: vec![RuleConfig {
            id: "mine".into(),
            pattern: "^bad".into(),
        }],
        ..ClassifierConfig::default()
    })
    .unwrap();
    assert_eq!(only_mine.rules().collect::<Vec<_>>(), [("mine", "^bad")]);
    check(&only_mine, "123-123-123-123.xxx.example.net", Proper);
    check(&only_mine, "bad1.example.net", Generic("mine"));
    check(&only_mine, "bad..name", Generic("invalid-name"));

    let nothing = Classifier::new(&ClassifierConfig {
        builtin_rules: false,
        ..ClassifierConfig::default()
    })
    .unwrap();
    assert_eq!(nothing.rules().count(), 0);
    check(&nothing, "123-123-123-123.xxx.example.net", Proper);
}

#[test]
fn rules_lists_builtins_in_order_then_operator_rules() {
    let classifier = Classifier::new(&ClassifierConfig {
        disable_rules: vec!["s25r-2".into()],
        rules: vec![RuleConfig {
            id: "z".into(),
            pattern: "^z".into(),
        }],
        ..ClassifierConfig::default()
    })
    .unwrap();
    let ids: Vec<_> = classifier.rules().map(|(id, _)| id).collect();
    assert_eq!(
        ids,
        [
            "s25r-1",
            "s25r-3",
            "s25r-4",
            "s25r-5",
            "s25r-6",
            "ip4-in-name",
            "ip6-in-name",
            "dyn-keyword",
            "subscriber-keyword",
            "dyn-zone",
            "hex-ip",
            "nat-pool",
            "unassigned",
            "dyn-zone-bare",
            "z",
            "mail-service",
            "mail-domain",
            "short-host",
        ]
    );
    let (_, s25r_1) = classifier.rules().next().unwrap();
    assert_eq!(s25r_1, r"^[^.]*[0-9][^0-9.]+[0-9].*\.");
}

#[test]
fn config_errors_name_the_entry() {
    let rule = |id: &str, pattern: &str| RuleConfig {
        id: id.into(),
        pattern: pattern.into(),
    };
    let cases: Vec<(ClassifierConfig, &str)> = vec![
        (
            ClassifierConfig {
                disable_rules: vec!["s25r-7".into()],
                ..Default::default()
            },
            r#"rdns disable_rules: "s25r-7" is not a built-in rule"#,
        ),
        (
            ClassifierConfig {
                rules: vec![rule("bad", "a(b")],
                ..Default::default()
            },
            r#"rdns rule "bad": invalid pattern"#,
        ),
        (
            ClassifierConfig {
                rules: vec![rule("x", "a"), rule("x", "b")],
                ..Default::default()
            },
            r#"rdns rule id "x" is used more than once"#,
        ),
        (
            ClassifierConfig {
                rules: vec![rule("s25r-3", "a")],
                ..Default::default()
            },
            r#"rdns rule id "s25r-3" is used more than once"#,
        ),
        (
            ClassifierConfig {
                builtin_rules: false,
                rules: vec![rule("invalid-name", "a")],
                ..Default::default()
            },
            r#"rdns rule id "invalid-name" is used more than once"#,
        ),
        (
            ClassifierConfig {
                rules: vec![rule("", "a")],
                ..Default::default()
            },
            r#"rdns rule id "" is invalid"#,
        ),
        (
            ClassifierConfig {
                rules: vec![rule("has space", "a")],
                ..Default::default()
            },
            r#"rdns rule id "has space" is invalid"#,
        ),
        (
            ClassifierConfig {
                exceptions: vec!["/a(b/".into()],
                ..Default::default()
            },
            r#"rdns exception "/a(b/": invalid regular expression"#,
        ),
        (
            ClassifierConfig {
                exceptions: vec!["/unterminated".into()],
                ..Default::default()
            },
            r#"rdns exception "/unterminated": a regular expression is written /pattern/"#,
        ),
        (
            ClassifierConfig {
                exceptions: vec!["*.example.com".into()],
                ..Default::default()
            },
            r#"rdns exception "*.example.com": write .example.com"#,
        ),
        (
            ClassifierConfig {
                exceptions: vec!["mail example.com".into()],
                ..Default::default()
            },
            r#"rdns exception "mail example.com": not a host name"#,
        ),
        (
            ClassifierConfig {
                exceptions: vec![".".into()],
                ..Default::default()
            },
            r#"rdns exception ".": not a host name"#,
        ),
        (
            ClassifierConfig {
                exceptions: vec!["".into()],
                ..Default::default()
            },
            r#"rdns exception "": empty entry"#,
        ),
    ];
    for (config, expected) in cases {
        let error = Classifier::new(&config).expect_err(expected).to_string();
        assert!(
            error.starts_with(expected),
            "got {error:?}, want {expected:?}"
        );
    }
    // Disabling a built-in id is valid even when all built-ins are off.
    Classifier::new(&ClassifierConfig {
        builtin_rules: false,
        disable_rules: vec!["s25r-3".into()],
        ..Default::default()
    })
    .unwrap();
    assert!(matches!(
        Classifier::new(&ClassifierConfig {
            rules: vec![rule("bad", "a(b")],
            ..Default::default()
        }),
        Err(ClassifierError::InvalidRulePattern { .. })
    ));
}

#[test]
fn config_from_toml() {
    let config: ClassifierConfig = toml::from_str(
        r#"
        disable_rules = ["s25r-3"]
        exceptions = [".example.net", "/^mx[0-9]+-[0-9]+\\./"]
        [[rules]]
        id = "local"
        pattern = "^cust[0-9]+\\."
        "#,
    )
    .unwrap();
    assert!(config.builtin_rules && config.builtin_exceptions);
    assert_eq!(
        config.rules,
        [RuleConfig {
            id: "local".into(),
            pattern: r"^cust[0-9]+\.".into()
        }]
    );
    Classifier::new(&config).unwrap();

    assert_eq!(
        toml::from_str::<ClassifierConfig>("").unwrap(),
        ClassifierConfig::default()
    );
    let unknown = toml::from_str::<ClassifierConfig>("exception = []").unwrap_err();
    assert!(unknown.to_string().contains("unknown field"), "{unknown}");
    let round_trip: ClassifierConfig = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
    assert_eq!(round_trip, config);
}

#[test]
fn verdict_serialises_and_displays() {
    let json = |class: &NameClass| serde_json::to_string(class).unwrap();
    let generic = NameClass::Generic {
        rule: "s25r-1".into(),
    };
    let excepted = NameClass::Excepted {
        rule: "s25r-2".into(),
        exception: ".example.net".into(),
    };
    assert_eq!(json(&generic), r#"{"class":"generic","rule":"s25r-1"}"#);
    assert_eq!(
        json(&excepted),
        r#"{"class":"excepted","rule":"s25r-2","exception":".example.net"}"#
    );
    assert_eq!(json(&NameClass::Proper), r#"{"class":"proper"}"#);
    assert_eq!(generic.to_string(), "generic (s25r-1)");
    assert_eq!(
        excepted.to_string(),
        "excepted (s25r-2, exception .example.net)"
    );
    assert_eq!(NameClass::Proper.to_string(), "proper");
}

proptest! {
    #[test]
    fn never_panics_on_any_string(name in any::<String>()) {
        let _ = default_classifier_shared().classify(&name);
    }

    #[test]
    fn case_does_not_matter(name in "[a-zA-Z0-9._ -]{0,80}") {
        let classifier = default_classifier_shared();
        prop_assert_eq!(
            classifier.classify(&name.to_ascii_uppercase()),
            classifier.classify(&name.to_ascii_lowercase())
        );
    }

    #[test]
    fn case_does_not_matter_on_any_string(name in any::<String>()) {
        let classifier = default_classifier_shared();
        prop_assert_eq!(
            classifier.classify(&name.to_ascii_uppercase()),
            classifier.classify(&name.to_ascii_lowercase())
        );
    }

    #[test]
    fn trailing_dot_does_not_matter(name in "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,20}){0,5}") {
        let classifier = default_classifier_shared();
        prop_assert_eq!(classifier.classify(&format!("{name}.")), classifier.classify(&name));
    }
}

fn default_classifier_shared() -> &'static Classifier {
    static CLASSIFIER: std::sync::OnceLock<Classifier> = std::sync::OnceLock::new();
    CLASSIFIER.get_or_init(default_classifier)
}

/// `explain` gives the same verdict as `classify` and says what decided it.
#[test]
fn explain_says_which_rule_or_exception_decided() {
    use spamgate_rdns::Decision;
    let classifier = default_classifier();
    let rule = |id: &str| Decision::Rule { id: id.into() };
    let table: &[(&str, Decision, &[&str])] = &[
        ("mail.example.com", Decision::NoRule, &["mail-service"]),
        ("", Decision::NoRule, &[]),
        ("mail..example.com", Decision::InvalidName, &[]),
        (
            "123-123-123-123.adsl.example.net",
            rule("s25r-1"),
            &["s25r-1", "s25r-3", "ip4-in-name", "dyn-zone"],
        ),
        ("x1.pool.example.co.uk", rule("dyn-zone"), &["dyn-zone"]),
        // The public-suffix check refuses the zone label: not listed as matched.
        ("x1.pool.co.uk", Decision::NoRule, &["short-host"]),
        (
            "mx1-2.example.com",
            Decision::MailServerRule {
                rule: "s25r-1".into(),
                id: "mail-service".into(),
            },
            &["s25r-1", "mail-service", "short-host"],
        ),
        (
            "st43p00im-ztdg10061801.me.com",
            Decision::Exception {
                rule: "s25r-1".into(),
                entry: ".me.com".into(),
            },
            &["s25r-1", "s25r-2"],
        ),
    ];
    for (name, decision, matched) in table {
        let explanation = classifier.explain(name);
        assert_eq!(explanation.class, classifier.classify(name), "{name}");
        assert_eq!(&explanation.decision, decision, "{name}");
        assert_eq!(explanation.matched_rules, *matched, "{name}");
    }
    let json = serde_json::to_string(&classifier.explain("mx1-2.example.com")).unwrap();
    assert_eq!(
        json,
        r#"{"class":{"class":"excepted","rule":"s25r-1","exception":"mail-service"},"decision":{"by":"mail_server_rule","rule":"s25r-1","id":"mail-service"},"matched_rules":["s25r-1","mail-service","short-host"]}"#
    );
}

proptest! {
    #[test]
    fn explain_agrees_with_classify(name in "[a-z0-9.-]{0,60}") {
        let classifier = default_classifier_shared();
        prop_assert_eq!(classifier.explain(&name).class, classifier.classify(&name));
    }
}

/// What learned exemptions ask: which strong rule makes a name dynamic for certain
/// (shape rules alone do not), and whether an organisation's own name is a dynamic zone.
#[test]
fn dynamic_rules_and_dynamic_zone_domains() {
    let classifier = Classifier::new(&ClassifierConfig::default()).unwrap();
    let check = |name: &str, expected: Option<&str>| {
        assert_eq!(classifier.dynamic_rule(name), expected, "{name}");
    };
    // Shape only (S25R), or nothing: not dynamic.
    check("srv1x1.dc.example.com", None);
    check("mo12a34.relay.example.co.jp", None);
    check("mail.example.com", None);
    check("", None);
    // Strong rules, whatever a mail-service word says.
    check("dsl-21.isp.example", Some("dyn-keyword"));
    check("192-0-2-10.mail.example.net", Some("ip4-in-name"));
    check("ab12cd.pool.example.co.uk", Some("dyn-zone"));
    check("pd9e4f89f.mx.example.de", Some("hex-ip"));
    check("nat-42.example.net", Some("nat-pool"));
    // Not a host name at all.
    check("bad name.example", Some("invalid-name"));
    // A dyn-zone match the public suffix refuses is not one.
    check("x1.pool.co.uk", None);

    let zone = |domain: &str, expected: bool| {
        assert_eq!(
            classifier.is_dynamic_zone_domain(domain),
            expected,
            "{domain}"
        );
    };
    zone("t-dialin.net", true);
    zone("dynamic-pool.test", true);
    zone("dsl.example", true);
    zone("example.co.uk", false);
    zone("mailgun.org", false);
}
