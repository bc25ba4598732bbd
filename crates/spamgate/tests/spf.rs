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

/// What `spamgate check` shows: the same path in dry-run mode, its last reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_domain_that_passed() {
    use spamgate_app::service::Mode;
    use spamgate_engine::{Envelope, Transaction};
    let h = start("[spf]\nenabled = true\n").await;
    let check = |client: &str, sender: &str| {
        let mut envelope = Envelope::new(client.parse().unwrap());
        envelope.client_name = Some("srv1x1.dc.example.test".into());
        envelope.reverse_client_name = Some("srv1x1.dc.example.test".into());
        envelope.sender = sender.into();
        envelope.recipient = "user@example.test".into();
        Transaction::at_rcpt(envelope)
    };
    let verdict = h
        .service
        .decide(&check("192.0.2.11", "news@inc.spf.test"), Mode::DryRun)
        .await;
    let last = verdict.reasons.last().map(|r| r.short());
    assert_eq!(
        last.as_deref(),
        Some("spf-pass(inc.spf.test)"),
        "{verdict:?}"
    );
    let verdict = h
        .service
        .decide(&check("192.0.2.11", "news@open.spf.test"), Mode::DryRun)
        .await;
    assert!(
        !verdict
            .reasons
            .iter()
            .any(|r| r.short().starts_with("spf-pass")),
        "{verdict:?}"
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

/// 50 sender domains, five kinds of record: ip4 ranges (pass), an include (pass), `mx`
/// (one host), `+all`, and no SPF record at all.
fn mix_zone() -> String {
    let mut zone = String::from(
        "_spf TXT \"v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.0/24 ip4:203.0.113.0/24 -all\"\n",
    );
    for k in 0..50 {
        let record = match k % 5 {
            0 => format!(
                "d{k} TXT \"v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.0/24 ip4:203.0.113.0/24 -all\"\n"
            ),
            1 => format!("d{k} TXT \"v=spf1 include:_spf.mix.test -all\"\n"),
            2 => format!(
                "d{k} TXT \"v=spf1 mx -all\"\nd{k} MX 10 mx{k}.mix.test.\nmx{k} A 192.0.2.{k}\n"
            ),
            3 => format!("d{k} TXT \"v=spf1 +all\"\n"),
            _ => format!("d{k} A 192.0.2.1\n"),
        };
        zone.push_str(&record);
    }
    zone
}

/// Decision `i` of the mix: one of 200 clients (greylist-class names), one of 50 domains.
fn mix_request(i: usize) -> (String, String, String) {
    let c = i % 200;
    let address = match c % 3 {
        0 => format!("192.0.2.{}", 10 + c / 3),
        1 => format!("198.51.100.{}", 100 + c / 3),
        _ => format!("203.0.113.{}", 10 + c / 3),
    };
    let name = format!("srv{c}x{c}.dc.example.test");
    let sender = format!("news@d{}.mix.test", (i * 7) % 50);
    (address, name, sender)
}

/// Queries the test DNS server received for `decisions` decisions of the mix, twice
/// (cold caches, then warm), and how many of them were accepted.
async fn mix_cost(spf: &str, decisions: usize) -> ((usize, usize), usize) {
    let dns = dns_builder()
        .zone("spf.test.", SPF_ZONE)
        .zone("mix.test.", &mix_zone())
        .start()
        .await
        .expect("test DNS");
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db = dir.path().join("spamgate.db");
    let text = format!("{}{spf}", config_text(dns.addr(), &db, "127.0.0.1:0"));
    let config = Config::parse(&text).unwrap();
    let h = Harness::start_with(
        config,
        Some(dns),
        dir,
        Arc::new(ManualClock::new(4_000_000_000)),
    )
    .await;
    let server = h.dns.as_ref().unwrap();
    let mut counts = [0usize; 2];
    let mut accepted = 0;
    for count in &mut counts {
        server.clear_stats();
        for i in 0..decisions {
            let (address, name, sender) = mix_request(i);
            if ask(&h, &address, &name, &sender).await == "DUNNO" {
                accepted += 1;
            }
        }
        *count = server.queries().len();
    }
    ((counts[0], counts[1]), accepted)
}

/// The DNS cost of SPF on a mix of 1000 decisions over 50 sender domains, with the
/// caches (hickory's and the list cache) as the daemon has them. Prints the figures
/// docs/performance.md quotes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_cost_of_spf_on_a_mix() {
    let decisions = 1000;
    let ((off_cold, off_warm), off_accepted) = mix_cost("", decisions).await;
    let ((on_cold, on_warm), on_accepted) = mix_cost("[spf]\nenabled = true\n", decisions).await;
    eprintln!(
        "SPF off: {off_cold} queries cold, {off_warm} warm; SPF on: {on_cold} cold, {on_warm} warm \
         ({decisions} decisions each; accepted off={off_accepted} on={on_accepted})"
    );
    assert_eq!(off_accepted, 0, "every client of the mix is greylist-class");
    // Kinds 0 and 1 (20 of 50 domains, 2 passes) pass every client the common test
    // zones do not list (a few of 192.0.2.0/24 are).
    assert!(
        on_accepted >= 2 * 2 * decisions / 5 * 9 / 10,
        "{on_accepted}"
    );
    assert!(on_accepted < 2 * decisions / 2, "{on_accepted}");
    // Each name and type is asked once while cached: at most TXT per domain, the include's
    // TXT, MX and one A per mx domain, beyond what the lists cost.
    let extra = on_cold - off_cold;
    assert!(
        extra > 0 && extra <= 50 + 1 + 10 * 2,
        "{extra} extra queries cold"
    );
    assert_eq!(on_warm, off_warm, "warm caches answer SPF without queries");
}
