//! SPF through the daemon: a client greylisting would hold is accepted at once when its
//! sender's domain authorises it through a narrow mechanism; `+all`, a wide range, or DNS
//! trouble leave it to greylisting.

mod common;
mod process;

use std::sync::Arc;

use common::*;
use spamgate::config::Config;
use spamgate_app::ManualClock;

const SPF_ZONE: &str = r#"
narrow  TXT "v=spf1 ip4:192.0.2.0/24 -all"
open    TXT "v=spf1 +all"
wide    TXT "v=spf1 ip4:192.0.0.0/8 -all"
inc     TXT "v=spf1 include:narrow.spf.test -all"
"#;

async fn start(spf: &str) -> Harness {
    let dns = dns_builder()
        .zone("spf.test.", SPF_ZONE)
        .blackhole("slow.test.")
        .start()
        .await
        .expect("test DNS");
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db = dir.path().join("spamgate.db");
    let text = format!("{}{spf}", config_text(dns.addr(), &db, "127.0.0.1:0"));
    let config = Config::parse(&text).unwrap();
    Harness::start_with(
        config,
        Some(dns),
        dir,
        Arc::new(ManualClock::new(4_000_000_000)),
    )
    .await
}

/// One RCPT from a numbered name S25R's rule 1 calls generic (greylisted without SPF).
async fn ask(h: &Harness, address: &str, name: &str, sender: &str) -> String {
    h.ask(&[
        ("client_address", address),
        ("client_name", name),
        ("reverse_client_name", name),
        ("sender", sender),
    ])
    .await
}

fn metric(h: &Harness, line_start: &str) -> Option<String> {
    h.service
        .metrics()
        .encode()
        .lines()
        .find(|l| l.starts_with(line_start))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrow_spf_pass_skips_greylisting_and_nothing_else_does() {
    let h = start("[spf]\nenabled = true\n").await;
    // (client, name, sender, accepted at the first attempt)
    let table: &[(&str, &str, &str, bool)] = &[
        (
            "192.0.2.11",
            "srv1x1.dc.example.test",
            "news@narrow.spf.test",
            true,
        ),
        (
            "192.0.2.12",
            "srv2x2.dc.example.test",
            "news@inc.spf.test",
            true,
        ),
        (
            "192.0.2.13",
            "srv3x3.dc.example.test",
            "news@open.spf.test",
            false,
        ),
        (
            "192.0.2.14",
            "srv4x4.dc.example.test",
            "news@wide.spf.test",
            false,
        ),
        (
            "192.0.2.15",
            "srv5x5.dc.example.test",
            "news@slow.test",
            false,
        ),
        (
            "192.0.2.16",
            "srv6x6.dc.example.test",
            "news@none.spf.test",
            false,
        ),
        ("192.0.2.17", "srv7x7.dc.example.test", "", false),
        // The right domain, the wrong client.
        (
            "203.0.113.18",
            "srv8x8.dc.example.test",
            "news@narrow.spf.test",
            false,
        ),
    ];
    for &(address, name, sender, accepted) in table {
        let reply = ask(&h, address, name, sender).await;
        if accepted {
            assert_eq!(reply, "DUNNO", "{address} {sender}");
        } else {
            assert!(
                reply.starts_with("DEFER_IF_PERMIT"),
                "{address} {sender}: {reply}"
            );
        }
    }
    let passes = metric(
        &h,
        "spamgate_decisions_total{action=\"pass\",reason=\"spf-pass\"}",
    );
    assert_eq!(
        passes.as_deref(),
        Some("spamgate_decisions_total{action=\"pass\",reason=\"spf-pass\"} 2"),
        "{}",
        h.service.metrics().encode()
    );
    assert!(
        metric(&h, "spamgate_spf_checks_total{result=\"temperror\"}").is_some()
            || metric(&h, "spamgate_spf_checks_total{result=\"timeout\"}").is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default() {
    let h = start("").await;
    let reply = ask(
        &h,
        "192.0.2.11",
        "srv1x1.dc.example.test",
        "news@narrow.spf.test",
    )
    .await;
    assert!(reply.starts_with("DEFER_IF_PERMIT"), "{reply}");
}
