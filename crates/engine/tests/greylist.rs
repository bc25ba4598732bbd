//! The greylist state machine with an injected clock: no sleeps, every boundary tested.

use std::time::Duration;

use spamgate_engine::greylist::{
    GreylistInputs, GreylistKeys, GreylistOutcome, GreylistParams, KeyScheme, decide,
    needs_pending_count, normalise_sender, organisational_domain,
};

const T0: u64 = 1_700_000_000;

fn params() -> GreylistParams {
    GreylistParams {
        min_delay: Duration::from_secs(300),
        retry_window: Duration::from_secs(2 * 86_400),
        awl_lifetime: Duration::from_secs(35 * 86_400),
        max_pending_per_network: 3,
        refresh_interval: Duration::from_secs(3600),
    }
}

/// A tiny in-memory "store" applying writes, so a life cycle reads as a transcript.
#[derive(Default)]
struct Memory {
    inputs: GreylistInputs,
}

impl Memory {
    fn attempt(&mut self, now: u64) -> GreylistOutcome {
        let p = params();
        let mut inputs = self.inputs;
        if !needs_pending_count(&p, inputs.awl.as_ref(), inputs.triplet.as_ref(), now) {
            inputs.pending_in_network = 0;
        }
        let (outcome, writes) = decide(&p, &inputs, now);
        if let Some((t, expires)) = writes.triplet {
            assert!(expires > now, "a written triplet must outlive now");
            self.inputs.triplet = Some(t);
        }
        if let Some((a, expires)) = writes.awl {
            assert!(expires > now);
            self.inputs.awl = Some(a);
        }
        outcome
    }
}

#[test]
fn life_cycle() {
    let mut m = Memory::default();
    assert_eq!(m.attempt(T0), GreylistOutcome::New { retry_in: 300 });
    assert_eq!(
        m.attempt(T0 + 60),
        GreylistOutcome::TooEarly {
            waited: 60,
            retry_in: 240
        }
    );
    assert_eq!(
        m.attempt(T0 + 299),
        GreylistOutcome::TooEarly {
            waited: 299,
            retry_in: 1
        }
    );
    assert_eq!(m.attempt(T0 + 300), GreylistOutcome::Passed { waited: 300 });
    assert_eq!(m.inputs.triplet.unwrap().attempts, 4);
    // Now the client address is auto-whitelisted.
    assert_eq!(
        m.attempt(T0 + 400),
        GreylistOutcome::AutoWhitelisted { since: T0 + 300 }
    );
    // Still remembered just before the lifetime ends (refreshed on use)...
    let day = 86_400;
    assert!(m.attempt(T0 + 300 + 34 * day).passes());
    // ...and the refresh extended it.
    assert!(m.attempt(T0 + 300 + 60 * day).passes());
}

#[test]
fn awl_expires_without_use() {
    let mut m = Memory::default();
    m.attempt(T0);
    m.attempt(T0 + 300);
    let later = T0 + 300 + 35 * 86_400 + 1;
    // Both the AWL entry and the passed triplet are past their lifetime: a new first attempt.
    assert_eq!(m.attempt(later), GreylistOutcome::New { retry_in: 300 });
}

#[test]
fn retry_after_window_starts_over() {
    let mut m = Memory::default();
    m.attempt(T0);
    let late = T0 + 2 * 86_400 + 1;
    assert_eq!(m.attempt(late), GreylistOutcome::New { retry_in: 300 });
    assert_eq!(m.inputs.triplet.unwrap().first_seen, late);
    assert_eq!(
        m.attempt(late + 300),
        GreylistOutcome::Passed { waited: 300 }
    );
}

#[test]
fn retry_at_window_edge_passes() {
    let mut m = Memory::default();
    m.attempt(T0);
    assert_eq!(
        m.attempt(T0 + 2 * 86_400),
        GreylistOutcome::Passed { waited: 2 * 86_400 }
    );
}

#[test]
fn known_triplet_without_awl_passes_and_restores_awl() {
    let mut m = Memory::default();
    m.attempt(T0);
    m.attempt(T0 + 300);
    m.inputs.awl = None; // e.g. the same sender's retry arrived from another address
    assert_eq!(
        m.attempt(T0 + 500),
        GreylistOutcome::KnownTriplet {
            passed_at: T0 + 300
        }
    );
    assert!(m.inputs.awl.is_some());
}

#[test]
fn pending_cap_defers_without_recording() {
    let p = params();
    let inputs = GreylistInputs {
        pending_in_network: 3,
        ..GreylistInputs::default()
    };
    let (outcome, writes) = decide(&p, &inputs, T0);
    assert_eq!(outcome, GreylistOutcome::NetworkFull { pending: 3 });
    assert_eq!(writes.triplet, None);
    assert_eq!(outcome.retry_in(&p), Some(300));
    let below = GreylistInputs {
        pending_in_network: 2,
        ..GreylistInputs::default()
    };
    assert_eq!(
        decide(&p, &below, T0).0,
        GreylistOutcome::New { retry_in: 300 }
    );
}

#[test]
fn awl_refresh_is_rate_limited() {
    let p = params();
    let mut m = Memory::default();
    m.attempt(T0);
    m.attempt(T0 + 300);
    let inputs = m.inputs;
    let (_, soon) = decide(&p, &inputs, T0 + 310);
    assert_eq!(soon.awl, None, "no write within the refresh interval");
    let (_, later) = decide(&p, &inputs, T0 + 300 + 3600);
    assert!(later.awl.is_some());
}

#[test]
fn sender_normalisation() {
    let check =
        |input: &str, expected: &str| assert_eq!(normalise_sender(input), expected, "{input}");
    check("User@Example.COM", "user@example.com");
    check("", "<>");
    check("<>", "<>");
    check("prvs=4a5b6c7d8e=alice@example.com", "alice@example.com");
    check("alice+newsletter@example.com", "alice@example.com");
    check(
        "bounce-12345-67@lists.example.org",
        "bounce-#-#@lists.example.org",
    );
    check("msgid.20261128.777@example.net", "msgid.#.#@example.net");
    check("user2024@example.net", "user2024@example.net");
    check("ユーザー1@example.jp", "ユーザー1@example.jp");
    check("no-domain", "no-domain");
}

#[test]
fn keys() {
    let policy = KeyScheme::default();
    let a = GreylistKeys::new(
        &policy,
        "192.0.2.10".parse().unwrap(),
        None,
        "S@example.com",
        "R@example.net",
    );
    let b = GreylistKeys::new(
        &policy,
        "192.0.2.200".parse().unwrap(),
        None,
        "s@example.com",
        "r@example.net",
    );
    let c = GreylistKeys::new(
        &policy,
        "192.0.3.10".parse().unwrap(),
        None,
        "s@example.com",
        "r@example.net",
    );
    assert_eq!(a.network, "192.0.2.0/24");
    assert_eq!(a.triplet_key, b.triplet_key, "same /24, same triplet");
    assert_eq!(a.network_key, b.network_key);
    assert_ne!(
        a.awl_key, b.awl_key,
        "the AWL is per address, never per network"
    );
    assert_ne!(a.triplet_key, c.triplet_key);

    let v6a = GreylistKeys::new(
        &policy,
        "2001:db8:1:2::1".parse().unwrap(),
        None,
        "",
        "r@example.net",
    );
    let v6b = GreylistKeys::new(
        &policy,
        "2001:db8:1:2:ffff::9".parse().unwrap(),
        None,
        "",
        "r@example.net",
    );
    assert_eq!(v6a.network, "2001:db8:1:2::/64");
    assert_eq!(v6a.triplet_key, v6b.triplet_key);

    // A forward-confirmed big sender retrying from another network: same key by domain.
    let d1 = GreylistKeys::new(
        &policy,
        "198.51.100.1".parse().unwrap(),
        Some("a8-30.smtp-out.example.co.jp"),
        "s@x.example",
        "r@example.net",
    );
    let d2 = GreylistKeys::new(
        &policy,
        "203.0.113.9".parse().unwrap(),
        Some("b1-2.smtp-out.example.co.jp"),
        "s@x.example",
        "r@example.net",
    );
    assert_eq!(d1.network, "domain:example.co.jp");
    assert_eq!(d1.triplet_key, d2.triplet_key);
    assert_ne!(
        d1.network_key, d2.network_key,
        "the pending cap counts per IP network, not per ISP domain"
    );
    let off = KeyScheme {
        key_by_ptr_domain: false,
        ..KeyScheme::default()
    };
    let d3 = GreylistKeys::new(
        &off,
        "198.51.100.1".parse().unwrap(),
        Some("a8-30.smtp-out.example.co.jp"),
        "s@x.example",
        "r@example.net",
    );
    assert_eq!(d3.network, "198.51.100.0/24");
}

#[test]
fn organisational_domains() {
    let check = |name: &str, expected: Option<&str>| {
        assert_eq!(organisational_domain(name).as_deref(), expected, "{name}")
    };
    check("mail-1.out.example.co.jp", Some("example.co.jp"));
    check("a8-30.smtp-out.amazonses.com", Some("amazonses.com"));
    check("MX.Example.ORG.", Some("example.org"));
    check("host.example.test", Some("example.test"));
    check("co.jp", None);
}
