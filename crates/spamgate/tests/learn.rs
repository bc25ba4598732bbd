//! Learned exemptions through the daemon: confirmed servers of one organisation pass
//! greylisting from three networks, and a fourth address of it is accepted at once; a
//! dynamic-looking organisation never learns; the operator sees and removes entries with
//! `spamgate learned`.

mod common;
mod process;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use spamgate::config::Config;
use spamgate_app::ManualClock;
use spamgate_store::LearnAdmin;

const LEARN: &str = r#"
[learn]
enabled = true
min_networks = 3
min_span = "1h"
window = "10days"
ttl = "2days"
refuse_for = "10days"
"#;

/// The test's time: far beyond the system clock the CLI reads (the year 2096), so the
/// CLI sees the exemptions running whatever day the test runs.
const NOW: u64 = 4_000_000_000;

async fn start() -> Harness {
    let dns = dns_builder().start().await.expect("test DNS");
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db = dir.path().join("spamgate.db");
    let text = format!("{}{LEARN}", config_text(dns.addr(), &db, "127.0.0.1:0"));
    let config = Config::parse(&text).unwrap();
    Harness::start_with(config, Some(dns), dir, Arc::new(ManualClock::new(NOW))).await
}

/// One RCPT from `address` with Postfix's verified name `name`, from a sender of its
/// own (greylisting keys by /24: one shared sender would make the triplets one; digits
/// in a sender's local part are normalised away, so letters).
async fn ask(h: &Harness, address: &str, name: &str) -> String {
    let sender = sender_of(address);
    h.ask(&[
        ("client_address", address),
        ("client_name", name),
        ("reverse_client_name", name),
        ("sender", &sender),
    ])
    .await
}

fn sender_of(address: &str) -> String {
    let letters: String = address
        .chars()
        .map(|c| match c.to_digit(10) {
            Some(d) => char::from(b'a' + d as u8),
            None => '-',
        })
        .collect();
    format!("news-{letters}@example.org")
}

/// A first attempt is deferred; the retry after the delay passes.
async fn pass_greylisting(h: &Harness, address: &str, name: &str) {
    let first = ask(h, address, name).await;
    assert!(
        first.starts_with("DEFER_IF_PERMIT"),
        "{address} {name}: {first}"
    );
    h.clock.advance(Duration::from_secs(400));
    let retry = ask(h, address, name).await;
    assert_eq!(retry, "DUNNO", "{address} {name} retry");
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
async fn three_confirmed_servers_teach_a_fourth_address_passes_at_once() {
    let h = start().await;
    // Numbered names S25R's rule 1 calls generic, with no dynamic keyword: the false
    // positives learning is for.
    pass_greylisting(&h, "192.0.2.11", "srv1x1.dc.example.test").await;
    h.clock.advance(Duration::from_secs(1800));
    pass_greylisting(&h, "198.51.100.51", "srv2x2.dc.example.test").await;
    h.clock.advance(Duration::from_secs(1800));
    pass_greylisting(&h, "203.0.113.51", "srv3x3.dc.example.test").await;

    // A fourth address and name of the organisation: accepted at its first attempt.
    let fourth = ask(&h, "192.0.2.150", "srv4x4.dc.example.test").await;
    assert_eq!(fourth, "DUNNO");
    let exempted = metric(&h, "spamgate_learn_events_total{result=\"exempted\"}");
    assert_eq!(
        exempted.as_deref(),
        Some("spamgate_learn_events_total{result=\"exempted\"} 1")
    );
    assert!(
        metric(
            &h,
            "spamgate_decisions_total{action=\"pass\",reason=\"learned\"}"
        )
        .is_some(),
        "{}",
        h.service.metrics().encode()
    );
    // Never a dynamic name of it, nor a name without forward confirmation.
    let dynamic = ask(&h, "192.0.2.151", "dyn-5-1.dc.example.test").await;
    assert!(dynamic.starts_with("DEFER_IF_PERMIT"), "{dynamic}");
    let unconfirmed = h
        .ask(&[
            ("client_address", "192.0.2.152"),
            ("client_name", "unknown"),
            ("reverse_client_name", "srv5x5.dc.example.test"),
            ("sender", &sender_of("192.0.2.152")),
        ])
        .await;
    assert!(unconfirmed.starts_with("DEFER_IF_PERMIT"), "{unconfirmed}");

    let now = h.service.now();
    let list = h.service.store().learned_list(now, 10).await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].org, "example.test");
    assert!(list[0].is_learned(now));

    // The operator sees it and removes it with the CLI (on the same file).
    let (dns, dir, clock, config) = h.stop().await;
    let config_path = dir.path().join("spamgate.toml");
    let dns_addr = dns.as_ref().unwrap().addr();
    let text = config_text(dns_addr, &config.store.path, "127.0.0.1:0");
    std::fs::write(&config_path, format!("{text}{LEARN}")).unwrap();
    // `spamgate check` answers what the daemon would, with the reason.
    let (code, out, err) = process::run_with_config(
        &config_path,
        &[
            "check",
            "--client-address",
            "192.0.2.170",
            "--client-name",
            "srv7x7.dc.example.test",
            "--reverse-client-name",
            "srv7x7.dc.example.test",
            "--sender",
            "news-x@example.org",
            "--recipient",
            "user@example.net",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("learned(example.test)"), "{out}");
    let (code, out, err) = process::run_with_config(&config_path, &["learned", "list", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let record: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(record["org"], "example.test");
    assert_eq!(record["networks"].as_array().unwrap().len(), 3);
    // (The CLI reads the system clock, long before NOW: the exemption is still running.)
    assert_eq!(record["learned"], true, "{out}");
    let (code, out, err) = process::run_with_config(
        &config_path,
        &["learned", "remove", "srv1x1.dc.example.test"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "removed example.test");
    let (code, _, _) =
        process::run_with_config(&config_path, &["learned", "remove", "example.test"]);
    assert_eq!(
        code,
        Some(64),
        "removing it twice is the operator's mistake"
    );

    // Removed: the next new address of the organisation is greylisted again.
    let h = Harness::start_with(config, dns, dir, clock).await;
    let again = ask(&h, "192.0.2.160", "srv6x6.dc.example.test").await;
    assert!(again.starts_with("DEFER_IF_PERMIT"), "{again}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_looking_organisation_never_learns() {
    let h = start().await;
    // Bots of one ISP that do retry: dynamic names (a keyword next to digits, an
    // address in the name) never count.
    pass_greylisting(&h, "192.0.2.21", "dsl-21.isp.test").await;
    h.clock.advance(Duration::from_secs(1800));
    pass_greylisting(&h, "198.51.100.61", "198-51-100-61.isp.test").await;
    h.clock.advance(Duration::from_secs(1800));
    pass_greylisting(&h, "203.0.113.61", "dsl-61.isp.test").await;
    // And numbered names of the same ISP after it showed dynamic ones do not either.
    for (i, address) in ["192.0.2.22", "198.51.100.62", "203.0.113.62"]
        .iter()
        .enumerate()
    {
        h.clock.advance(Duration::from_secs(1800));
        pass_greylisting(&h, address, &format!("h{i}x{i}.fixed.isp.test")).await;
    }
    let next = ask(&h, "192.0.2.23", "h9x9.fixed.isp.test").await;
    assert!(next.starts_with("DEFER_IF_PERMIT"), "{next}");

    let now = h.service.now();
    let list = h.service.store().learned_list(now, 10).await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(
        !list[0].is_learned(now) && list[0].is_refused(now),
        "{list:?}"
    );
    assert!(
        list[0]
            .refused
            .as_deref()
            .unwrap_or("")
            .starts_with("dynamic("),
        "{list:?}"
    );
    // An organisation whose own name is a dynamic zone is not even followed.
    for (i, address) in ["192.0.2.24", "198.51.100.64", "203.0.113.64"]
        .iter()
        .enumerate()
    {
        h.clock.advance(Duration::from_secs(1800));
        pass_greylisting(&h, address, &format!("h{i}x{i}.fixed.dynamic-pool.test")).await;
    }
    let next = ask(&h, "192.0.2.25", "h9x9.fixed.dynamic-pool.test").await;
    assert!(next.starts_with("DEFER_IF_PERMIT"), "{next}");
    assert_eq!(
        h.service.store().learned_list(now, 10).await.unwrap().len(),
        1
    );
    h.stop().await;
}
