//! The daemon over a real socket, with a real DNS server and a real SQLite file.

mod common;

use std::time::Duration;

use common::*;

fn is_defer(reply: &str) -> bool {
    reply.starts_with("DEFER_IF_PERMIT 4.7.1")
}

#[tokio::test]
async fn listed_clients_are_rejected_with_the_list_named() {
    let h = Harness::start().await;
    let reply = h
        .ask(&[
            ("client_address", "192.0.2.66"),
            ("client_name", "mail.example.test"),
        ])
        .await;
    assert!(reply.starts_with("554 5.7.1"), "{reply}");
    assert!(reply.contains("bl.test"), "{reply}");
    assert!(
        reply.contains("http://bl.example/query/192.0.2.66"),
        "the TXT reason is passed on: {reply}"
    );

    let v6 = h
        .ask(&[
            ("client_address", "2001:db8::66"),
            ("client_name", "unknown"),
        ])
        .await;
    assert!(v6.starts_with("554 5.7.1"), "IPv6 nibble lookup: {v6}");

    // 127.0.0.4 does not pass the zone's filter 127.0.0.[2..3].
    let filtered = h
        .ask(&[
            ("client_address", "192.0.2.67"),
            ("client_name", "mail.example.test"),
        ])
        .await;
    assert_eq!(filtered, "DUNNO");
}

#[tokio::test]
async fn blocked_resolver_sentinel_is_not_a_listing() {
    let h = Harness::start().await;
    let reply = h
        .ask(&[
            ("client_address", "192.0.2.99"),
            ("client_name", "mail.example.test"),
        ])
        .await;
    assert_eq!(reply, "DUNNO");
}

#[tokio::test]
async fn dnswl_passes_at_once() {
    let h = Harness::start().await;
    // No PTR at all, but listed in the allow list.
    let reply = h.ask(&[("client_address", "192.0.2.77")]).await;
    assert_eq!(reply, "DUNNO");
}

#[tokio::test]
async fn each_suspicious_class_is_greylisted() {
    let h = Harness::start().await;
    // (attributes, words the reply must contain)
    let cases: &[(&[(&str, &str)], &str)] = &[
        // No PTR: Postfix says unknown/unknown; spamgate's own lookup finds NXDOMAIN.
        (
            &[("client_address", "192.0.2.40")],
            "reverse lookup failure",
        ),
        // PTR that does not resolve back.
        (
            &[
                ("client_address", "192.0.2.30"),
                ("reverse_client_name", "liar.example.test"),
            ],
            "does not resolve back",
        ),
        // Temporary DNS failure (the reverse zone answers SERVFAIL).
        (
            &[("client_address", "203.0.113.50")],
            "temporary DNS failure",
        ),
        // Generic (S25R) name, forward-confirmed.
        (
            &[
                ("client_address", "192.0.2.20"),
                ("client_name", "192-0-2-20.dyn.example.test"),
                ("reverse_client_name", "192-0-2-20.dyn.example.test"),
            ],
            "S25R",
        ),
    ];
    for (attrs, words) in cases {
        let reply = h.ask(attrs).await;
        assert!(is_defer(&reply), "{attrs:?} -> {reply}");
        assert!(reply.contains(words), "{attrs:?} -> {reply}");
        assert!(reply.contains("300 seconds"), "{reply}");
    }
}

#[tokio::test]
async fn proper_server_passes_at_once() {
    let h = Harness::start().await;
    let reply = h
        .ask(&[
            ("client_address", "192.0.2.10"),
            ("client_name", "mail.example.test"),
            ("reverse_client_name", "mail.example.test"),
        ])
        .await;
    assert_eq!(reply, "DUNNO");
}

#[tokio::test]
async fn allow_lists_pass_even_listed_or_suspicious_clients() {
    let h = Harness::start().await;
    assert_eq!(h.ask(&[("client_address", "198.51.100.5")]).await, "DUNNO");
    assert_eq!(
        h.ask(&[
            ("client_address", "192.0.2.66"),
            ("recipient", "postmaster@example.net")
        ])
        .await,
        "DUNNO"
    );
}

#[tokio::test]
async fn retry_before_and_after_the_delay() {
    let h = Harness::start().await;
    let generic = [
        ("client_address", "192.0.2.20"),
        ("client_name", "192-0-2-20.dyn.example.test"),
    ];
    let mut conn = h.connect().await;
    let first = conn.ask(&generic).await;
    assert!(is_defer(&first) && first.contains("300 seconds"), "{first}");
    h.clock.advance(Duration::from_secs(120));
    let early = conn.ask(&generic).await;
    assert!(is_defer(&early) && early.contains("180 seconds"), "{early}");
    h.clock.advance(Duration::from_secs(180));
    assert_eq!(
        conn.ask(&generic).await,
        "DUNNO",
        "a retry after the delay passes"
    );
    // The client address is now remembered: another message passes at once.
    let other = [
        ("client_address", "192.0.2.20"),
        ("client_name", "192-0-2-20.dyn.example.test"),
        ("recipient", "other@example.net"),
    ];
    assert_eq!(conn.ask(&other).await, "DUNNO");
    // ...but not its whole /24: one bot in a pool that retries cannot open the pool.
    let neighbour = [
        ("client_address", "192.0.2.21"),
        ("recipient", "other@example.net"),
    ];
    assert!(is_defer(&conn.ask(&neighbour).await));
}

#[tokio::test]
async fn only_rcpt_is_decided_by_default() {
    let h = Harness::start().await;
    for state in ["CONNECT", "EHLO", "MAIL", "DATA", "END-OF-MESSAGE"] {
        let reply = h
            .ask(&[("protocol_state", state), ("client_address", "192.0.2.66")])
            .await;
        assert_eq!(reply, "DUNNO", "{state}");
    }
}

#[tokio::test]
async fn dns_server_down_never_rejects() {
    // Start without a DNS server: every lookup times out.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let config = config_for(dead.local_addr().unwrap(), &dir.path().join("db.sqlite"));
    let h = Harness::start_with(
        config,
        None,
        dir.clone(),
        std::sync::Arc::new(spamgate_app::ManualClock::new(T0)),
    )
    .await;
    for attrs in [
        vec![
            ("client_address", "192.0.2.66"),
            ("client_name", "mail.example.test"),
        ],
        vec![("client_address", "192.0.2.40")],
        vec![("client_address", "2001:db8::66")],
    ] {
        let reply = h.ask(&attrs).await;
        assert!(!reply.starts_with('5'), "{attrs:?} -> {reply}");
        assert!(
            reply == "DUNNO" || reply.starts_with("DEFER_IF_PERMIT"),
            "{reply}"
        );
    }
    drop(dead);
}

#[tokio::test]
async fn restart_keeps_greylist_state() {
    let h = Harness::start().await;
    let generic = [
        ("client_address", "192.0.2.20"),
        ("client_name", "192-0-2-20.dyn.example.test"),
    ];
    assert!(is_defer(&h.ask(&generic).await));
    let (dns, dir, clock, config) = h.stop().await;
    clock.advance(Duration::from_secs(301));
    let h = Harness::start_with(config, dns, dir, clock).await;
    assert_eq!(
        h.ask(&generic).await,
        "DUNNO",
        "the first attempt survived the restart"
    );
}

#[tokio::test]
async fn bad_request_closes_without_reply_and_others_are_served() {
    let h = Harness::start().await;
    let mut bad = h.connect().await;
    bad.send_raw(b"request=smtpd_access_policy\nthis line has no equals sign\n\n")
        .await;
    assert_eq!(bad.read_reply().await, None, "closed without a reply");

    let mut huge = h.connect().await;
    let long = format!("sender={}\n", "a".repeat(10_000));
    huge.send_raw(long.as_bytes()).await;
    assert_eq!(
        huge.read_reply().await,
        None,
        "an over-long line closes the connection"
    );

    let mut other = h.connect().await;
    let reply = other
        .ask(&[
            ("client_address", "192.0.2.10"),
            ("client_name", "mail.example.test"),
        ])
        .await;
    assert_eq!(reply, "DUNNO");
}

#[tokio::test]
async fn one_connection_serves_many_requests_including_pipelined() {
    let h = Harness::start().await;
    let mut conn = h.connect().await;
    for i in 0..50 {
        let rcpt = format!("user{i}@example.net");
        let reply = conn
            .ask(&[
                ("client_address", "192.0.2.10"),
                ("client_name", "mail.example.test"),
                ("recipient", &rcpt),
            ])
            .await;
        assert_eq!(reply, "DUNNO");
    }
    // Two requests in one write: two replies, in order.
    let mut both = request(&[
        ("client_address", "192.0.2.66"),
        ("client_name", "mail.example.test"),
    ]);
    both.extend(request(&[
        ("client_address", "192.0.2.10"),
        ("client_name", "mail.example.test"),
    ]));
    conn.send_raw(&both).await;
    assert!(conn.read_reply().await.unwrap().starts_with("554"));
    assert_eq!(conn.read_reply().await.unwrap(), "DUNNO");
}

#[tokio::test]
async fn missing_client_address_gets_dunno_not_an_error() {
    let h = Harness::start().await;
    assert_eq!(h.ask(&[("client_address", "not-an-ip")]).await, "DUNNO");
}

#[tokio::test]
async fn decisions_and_lookups_are_counted() {
    let h = Harness::start().await;
    h.ask(&[
        ("client_address", "192.0.2.66"),
        ("client_name", "mail.example.test"),
    ])
    .await;
    h.ask(&[("client_address", "192.0.2.40")]).await;
    h.ask(&[
        ("client_address", "192.0.2.10"),
        ("client_name", "mail.example.test"),
    ])
    .await;
    let mut bad = h.connect().await;
    bad.send_raw(b"no equals\n\n").await;
    assert_eq!(bad.read_reply().await, None);
    let text = h.service.metrics().encode();
    for line in [
        r#"spamgate_decisions_total{action="reject",reason="dnsbl"} 1"#,
        r#"spamgate_decisions_total{action="greylist",reason="new"} 1"#,
        r#"spamgate_decisions_total{action="pass",reason="proper"} 1"#,
        r#"spamgate_dns_list_queries_total{zone="bl.test",result="listed"} 1"#,
        r#"spamgate_rdns_lookups_total{result="no_ptr"} 1"#,
        r#"spamgate_bad_requests_total{result="malformed"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn a_failing_list_is_skipped_by_the_circuit_breaker() {
    let dns = dns_builder().blackhole("dead.test.").start().await.unwrap();
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = config_for(dns.addr(), &dir.path().join("db.sqlite"));
    config.dnsbl.zones.push("dead.test".into());
    config.dnsbl.breaker_failures = 2;
    config.dnsbl.breaker_cooldown = Duration::from_secs(3600);
    let h = Harness::start_with(
        config,
        Some(dns),
        dir,
        std::sync::Arc::new(spamgate_app::ManualClock::new(T0)),
    )
    .await;
    for i in 0..5 {
        let client = format!("192.0.2.{}", 100 + i);
        // Listed elsewhere or not, the dead zone never makes a rejection...
        let reply = h
            .ask(&[
                ("client_address", &client),
                ("client_name", "mail.example.test"),
            ])
            .await;
        assert_eq!(reply, "DUNNO");
    }
    // ...and after two consecutive failures it is no longer asked.
    let mut asked: Vec<String> = h
        .dns
        .as_ref()
        .unwrap()
        .queries()
        .into_iter()
        .filter(|q| q.contains("dead.test."))
        .collect();
    asked.sort();
    asked.dedup(); // the resolver may resend a query that timed out
    assert_eq!(
        asked,
        ["100.2.0.192.dead.test. A", "101.2.0.192.dead.test. A"]
    );
    let text = h.service.metrics().encode();
    assert!(
        text.contains(r#"spamgate_dns_list_queries_total{zone="dead.test",result="skipped"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"spamgate_dns_list_queries_total{zone="dead.test",result="error"} 2"#),
        "{text}"
    );
    // The healthy zone is still asked.
    let reply = h
        .ask(&[
            ("client_address", "192.0.2.66"),
            ("client_name", "mail.example.test"),
        ])
        .await;
    assert!(reply.starts_with("554"), "{reply}");
}

#[tokio::test]
async fn runtime_allow_entries_apply_without_a_reload() {
    use spamgate_engine::verdict::AllowListKind;
    use spamgate_store::{AllowAdmin, AllowEntry};
    let h = Harness::start().await;
    let listed = [
        ("client_address", "192.0.2.66"),
        ("client_name", "mail.example.test"),
    ];
    assert!(h.ask(&listed).await.starts_with("554"));
    let entry = AllowEntry {
        kind: AllowListKind::ClientAddress,
        value: "192.0.2.64/30".into(),
        note: "partner, ticket 7".into(),
        added_at: T0,
        scope: spamgate_engine::verdict::AllowScope::All,
        expires_at: None,
    };
    h.service.store().allow_add(&entry).await.unwrap();
    assert!(
        h.service.refresh_runtime_allow().await.unwrap(),
        "the generation moved"
    );
    assert!(
        !h.service.refresh_runtime_allow().await.unwrap(),
        "nothing new"
    );
    assert_eq!(h.ask(&listed).await, "DUNNO");
    h.service
        .store()
        .allow_remove(AllowListKind::ClientAddress, "192.0.2.64/30")
        .await
        .unwrap();
    h.service.refresh_runtime_allow().await.unwrap();
    assert!(h.ask(&listed).await.starts_with("554"));
}

#[tokio::test]
async fn a_runtime_sender_entry_never_lets_a_listed_host_in_and_expires() {
    use spamgate_app::allow::AllowService;
    use spamgate_engine::verdict::AllowScope;
    let h = Harness::start().await;
    let allow = AllowService::new(h.service.store());
    // A sender may not skip the DNS lists...
    let refused = allow
        .add(
            "sender",
            "partner@example.org",
            String::new(),
            Some(AllowScope::All),
            None,
            T0,
        )
        .await;
    assert!(
        refused.is_err_and(|e| e.is_usage()),
        "a forgeable sender cannot skip every check"
    );
    // ...by default it skips greylisting only, here for an hour.
    let (entry, _) = allow
        .add(
            "sender",
            "partner@example.org",
            "until the migration".into(),
            None,
            Some(T0 + 3600),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(entry.scope, AllowScope::Greylist);
    h.service.refresh_runtime_allow().await.unwrap();
    let listed = [
        ("client_address", "192.0.2.66"),
        ("client_name", "mail.example.test"),
        ("sender", "partner@example.org"),
    ];
    assert!(
        h.ask(&listed).await.starts_with("554"),
        "the forged sender does not help"
    );
    let suspicious = [
        ("client_address", "192.0.2.40"),
        ("client_name", "unknown"),
        ("sender", "partner@example.org"),
    ];
    assert_eq!(h.ask(&suspicious).await, "DUNNO", "greylisting skipped");
    // An hour later the entry no longer applies, without anyone removing it.
    h.clock.advance(std::time::Duration::from_secs(3601));
    assert!(
        h.service.refresh_runtime_allow().await.unwrap(),
        "expiry recompiles"
    );
    assert!(h.ask(&suspicious).await.starts_with("DEFER_IF_PERMIT"));
}

#[tokio::test]
async fn greylisting_effectiveness_is_counted_by_class_and_rule() {
    let h = Harness::start().await;
    let generic = [
        ("client_address", "192.0.2.20"),
        ("client_name", "192-0-2-20.dyn.example.test"),
    ];
    assert!(is_defer(&h.ask(&generic).await));
    // A bot without a PTR in another network (triplets are per network): greylisted
    // once, never back.
    assert!(is_defer(
        &h.ask(&[("client_address", "198.51.100.40")]).await
    ));
    h.clock.advance(Duration::from_secs(120));
    assert!(is_defer(&h.ask(&generic).await), "too early: neither");
    h.clock.advance(Duration::from_secs(250));
    assert_eq!(h.ask(&generic).await, "DUNNO");
    let text = h.service.metrics().encode();
    let value = |prefix: &str| -> Vec<(String, String)> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| {
                let (labels, v) = l.rsplit_once(' ').unwrap();
                (labels.to_string(), v.to_string())
            })
            .collect()
    };
    let first = value("spamgate_greylist_first_attempts_total{");
    let passed = value("spamgate_greylist_passed_retries_total{");
    let generic_labels = first
        .iter()
        .find(|(l, _)| l.contains(r#"class="generic""#))
        .map(|(l, v)| (l.clone(), v.clone()))
        .unwrap_or_else(|| panic!("no generic first attempt in\n{text}"));
    assert_eq!(generic_labels.1, "1", "{text}");
    assert!(
        !generic_labels.0.contains(r#"rule="-""#),
        "the rule is named: {text}"
    );
    // The test zone has no reverse zone for this network: no PTR answer, whatever the
    // class's name, it is not generic and has no rule.
    let bot = first
        .iter()
        .find(|(l, _)| !l.contains(r#"class="generic""#))
        .unwrap_or_else(|| panic!("no first attempt of the bot in\n{text}"));
    assert!(bot.0.ends_with(r#",rule="-"}"#) && bot.1 == "1", "{text}");
    let labels = generic_labels
        .0
        .trim_start_matches("spamgate_greylist_first_attempts_total");
    assert_eq!(
        passed,
        [(
            format!("spamgate_greylist_passed_retries_total{labels}"),
            "1".into()
        )],
        "only the generic client came back: {text}"
    );
    // The delay is the pass's time less the first attempt's: 370 s.
    assert!(
        text.contains(&format!(
            "spamgate_greylist_pass_delay_seconds_sum{labels} 370.0"
        )),
        "{text}"
    );
    let inner = labels.trim_start_matches('{');
    for (le, count) in [("300.0", 0), ("600.0", 1)] {
        let bucket =
            format!("spamgate_greylist_pass_delay_seconds_bucket{{le=\"{le}\",{inner} {count}");
        assert!(text.contains(&bucket), "{bucket} in\n{text}");
    }
    assert!(
        text.contains(&format!(
            "spamgate_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
}
