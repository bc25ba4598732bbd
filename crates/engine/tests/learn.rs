//! Learned exemptions: the pure rules, with time passed in.

use std::time::Duration;

use spamgate_engine::UnixTime;
use spamgate_engine::client::ClientClass;
use spamgate_engine::facts::{ListAnswer, ListFact, RdnsFact};
use spamgate_engine::learn::{
    LearnCounts, LearnEvent, LearnParams, LearnRecord, LearnSubject, Observation, ObservationKind,
    exemption, observe,
};
use spamgate_rdns::{Classifier, ClassifierConfig};

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;
const T0: UnixTime = 1_800_000_000;

fn params() -> LearnParams {
    LearnParams {
        enabled: true,
        min_networks: 3,
        min_span: Duration::from_secs(DAY),
        window: Duration::from_secs(30 * DAY),
        ttl: Duration::from_secs(7 * DAY),
        refuse_for: Duration::from_secs(30 * DAY),
        max_entries: 2,
        max_tracked: 4,
        max_networks_per_org: 4,
        ..LearnParams::default()
    }
}

fn passed(network: &str) -> Observation {
    Observation {
        org: "example.com".into(),
        network: network.into(),
        kind: ObservationKind::Passed,
    }
}

fn against(why: &str) -> Observation {
    Observation {
        org: "example.com".into(),
        network: "198.51.100.0/24".into(),
        kind: ObservationKind::Against { why: why.into() },
    }
}

/// One step of a history: at `at`, this observation, with `learned` other organisations
/// exempted already; the event expected.
struct Step {
    at: UnixTime,
    observation: Observation,
    learned_elsewhere: usize,
    expected: &'static str,
}

fn step(at: UnixTime, observation: Observation, expected: &'static str) -> Step {
    Step {
        at,
        observation,
        learned_elsewhere: 0,
        expected,
    }
}

/// Runs a history through `observe` as a store would (writing what it returns) and
/// checks each event id and, at the end, whether the organisation is exempted at `end`.
fn check(history: Vec<Step>, end: UnixTime, exempt_at_end: bool) -> Option<LearnRecord> {
    let params = params();
    let mut stored: Option<LearnRecord> = None;
    for (i, step) in history.iter().enumerate() {
        let own = stored.as_ref().is_some_and(|r| r.is_learned(step.at)) as usize;
        let counts = LearnCounts {
            learned: step.learned_elsewhere + own,
            tracked: usize::from(stored.is_some()),
        };
        let observed = observe(stored.clone(), &step.observation, counts, &params, step.at);
        assert_eq!(
            observed.event.id(),
            step.expected,
            "step {i} at +{}s: {:?}",
            step.at - T0,
            observed.event
        );
        if let Some(record) = observed.write {
            stored = Some(record);
        }
    }
    assert_eq!(
        exemption(stored.as_ref(), end).is_some(),
        exempt_at_end,
        "exempt at +{}s: {stored:?}",
        end - T0
    );
    stored
}

#[test]
fn three_networks_over_a_day_learn() {
    let record = check(
        vec![
            step(T0, passed("192.0.2.0/24"), "counted"),
            step(T0 + HOUR, passed("198.51.100.0/24"), "counted"),
            step(T0 + DAY + 1, passed("203.0.113.0/24"), "learned"),
        ],
        T0 + DAY + 2,
        true,
    )
    .unwrap();
    assert_eq!(record.learned_until, Some(T0 + DAY + 1 + 7 * DAY));
}

#[test]
fn the_same_network_again_and_again_never_learns() {
    let mut history = Vec::new();
    for i in 0..10 {
        history.push(step(T0 + i * DAY, passed("192.0.2.0/24"), "counted"));
    }
    check(history, T0 + 11 * DAY, false);
}

#[test]
fn three_networks_in_one_burst_wait_for_the_span() {
    check(
        vec![
            step(T0, passed("192.0.2.0/24"), "counted"),
            step(T0 + 60, passed("198.51.100.0/24"), "counted"),
            step(T0 + 120, passed("203.0.113.0/24"), "counted"),
            // A day after the first: the span is there now.
            step(T0 + DAY, passed("203.0.113.0/24"), "learned"),
        ],
        T0 + DAY + 1,
        true,
    );
}

#[test]
fn an_exemption_expires_after_its_ttl() {
    let history = vec![
        step(T0, passed("192.0.2.0/24"), "counted"),
        step(T0 + HOUR, passed("198.51.100.0/24"), "counted"),
        step(T0 + DAY, passed("203.0.113.0/24"), "learned"),
    ];
    check(history, T0 + DAY + 7 * DAY - 1, true);
    let history = vec![
        step(T0, passed("192.0.2.0/24"), "counted"),
        step(T0 + HOUR, passed("198.51.100.0/24"), "counted"),
        step(T0 + DAY, passed("203.0.113.0/24"), "learned"),
    ];
    check(history, T0 + DAY + 7 * DAY, false);
}

#[test]
fn passes_older_than_the_window_are_forgotten() {
    check(
        vec![
            step(T0, passed("192.0.2.0/24"), "counted"),
            step(T0 + 31 * DAY, passed("198.51.100.0/24"), "counted"),
            // The first network fell out of the window: two networks, not three.
            step(T0 + 32 * DAY, passed("203.0.113.0/24"), "counted"),
        ],
        T0 + 32 * DAY + 1,
        false,
    );
}

#[test]
fn the_cap_on_learned_organisations_holds() {
    let mut last = step(T0 + DAY, passed("203.0.113.0/24"), "capped");
    last.learned_elsewhere = 2;
    check(
        vec![
            step(T0, passed("192.0.2.0/24"), "counted"),
            step(T0 + HOUR, passed("198.51.100.0/24"), "counted"),
            last,
        ],
        T0 + DAY + 1,
        false,
    );
}

#[test]
fn a_dynamic_name_refuses_the_organisation_and_revokes_its_exemption() {
    let record = check(
        vec![
            step(T0, passed("192.0.2.0/24"), "counted"),
            step(T0 + HOUR, passed("198.51.100.0/24"), "counted"),
            step(T0 + DAY, passed("203.0.113.0/24"), "learned"),
            step(
                T0 + DAY + 10,
                against("dynamic(dyn-keyword):dyn-5.example.com"),
                "refused",
            ),
            // Passes during the refusal count for nothing.
            step(T0 + 2 * DAY, passed("192.0.2.0/24"), "still-refused"),
        ],
        T0 + 2 * DAY,
        false,
    )
    .unwrap();
    assert_eq!(record.refused_until, Some(T0 + DAY + 10 + 30 * DAY));
    assert!(record.networks.is_empty(), "{record:?}");
}

#[test]
fn a_listed_client_refuses_the_organisation_before_it_learns() {
    check(
        vec![
            step(T0, passed("192.0.2.0/24"), "counted"),
            step(
                T0 + HOUR,
                against("listed(bl.example):192.0.2.9"),
                "refused",
            ),
            step(T0 + 2 * HOUR, passed("198.51.100.0/24"), "still-refused"),
            step(T0 + DAY + HOUR, passed("203.0.113.0/24"), "still-refused"),
        ],
        T0 + 2 * DAY,
        false,
    );
}

#[test]
fn a_refusal_ends_and_learning_starts_over() {
    let start = T0 + 31 * DAY;
    check(
        vec![
            step(T0, against("listed(bl.example):192.0.2.9"), "refused"),
            step(start, passed("192.0.2.0/24"), "counted"),
            step(start + HOUR, passed("198.51.100.0/24"), "counted"),
            step(start + DAY, passed("203.0.113.0/24"), "learned"),
        ],
        start + DAY + 1,
        true,
    );
}

#[test]
fn no_new_organisation_is_followed_beyond_max_tracked() {
    let params = params();
    let counts = LearnCounts {
        learned: 0,
        tracked: params.max_tracked,
    };
    let observed = observe(None, &passed("192.0.2.0/24"), counts, &params, T0);
    assert_eq!(observed.write, None);
    assert_eq!(
        observed.event,
        LearnEvent::NotTracked {
            max_tracked: params.max_tracked
        }
    );
}

#[test]
fn networks_per_organisation_are_capped() {
    let params = params();
    let mut stored = None;
    for i in 0..10u64 {
        let network = format!("192.0.{i}.0/24");
        let counts = LearnCounts {
            learned: 2,
            tracked: 1,
        };
        stored = observe(stored, &passed(&network), counts, &params, T0 + i)
            .write
            .or(None);
    }
    let record = stored.unwrap();
    assert_eq!(record.networks.len(), params.max_networks_per_org);
    // The longest-unseen went first.
    assert_eq!(record.networks[0].network, "192.0.6.0/24");
}

#[test]
fn a_removed_record_starts_over() {
    // `spamgate learned remove` deletes the record: the next pass is a first one.
    let observed = observe(
        None,
        &passed("192.0.2.0/24"),
        LearnCounts::default(),
        &params(),
        T0,
    );
    assert_eq!(observed.event, LearnEvent::Counted { networks: 1 });
    assert_eq!(exemption(observed.write.as_ref(), T0), None);
}

/// Which clients count, which count against, and which say nothing.
#[test]
fn subjects_by_name() {
    let classifier = Classifier::new(&ClassifierConfig::default()).unwrap();
    let params = params();
    let check = |rdns: RdnsFact, listed: bool, expected: &str| {
        let class = ClientClass::classify(&rdns, &classifier);
        let dnsbl = vec![ListFact {
            zone: "bl.example".into(),
            weight: 1,
            answer: if listed {
                ListAnswer::Listed {
                    answers: vec!["127.0.0.2".parse().unwrap()],
                    txt: None,
                }
            } else {
                ListAnswer::NotListed
            },
        }];
        let subject = LearnSubject::of(
            "192.0.2.10".parse().unwrap(),
            &rdns,
            &class,
            &dnsbl,
            &classifier,
            &params,
        );
        let got = match &subject {
            LearnSubject::Eligible { org, network } => format!("eligible {org} {network}"),
            LearnSubject::Against { org, why, .. } => format!("against {org} {why}"),
            LearnSubject::Ignored { why } => format!("ignored {why}"),
        };
        assert_eq!(got, expected, "{rdns:?}");
    };
    let confirmed = |name: &str| RdnsFact::Confirmed { name: name.into() };
    // S25R shape only: a mail server with a numbered name.
    check(
        confirmed("mo12a34.relay.example.co.jp"),
        false,
        "eligible example.co.jp 192.0.2.0/24",
    );
    check(
        confirmed("out1b2.example.com"),
        false,
        "eligible example.com 192.0.2.0/24",
    );
    // Dynamic: never counted, evidence against.
    check(
        confirmed("dyn-5-1.example.net"),
        false,
        "against example.net dynamic(dyn-keyword):dyn-5-1.example.net",
    );
    check(
        confirmed("192-0-2-10.example.net"),
        false,
        "against example.net dynamic(ip4-in-name):192-0-2-10.example.net",
    );
    check(
        confirmed("ab12cd.pool.example.co.uk"),
        false,
        "against example.co.uk dynamic(dyn-zone):ab12cd.pool.example.co.uk",
    );
    // Listed: evidence against.
    check(
        confirmed("out1b2.example.com"),
        true,
        "against example.com listed(bl.example):192.0.2.10",
    );
    // The organisation is a dynamic zone itself.
    check(
        confirmed("x1y2.t-dialin.net"),
        false,
        "ignored dynamic-zone-org",
    );
    check(RdnsFact::NoPtr, false, "ignored not-confirmed");
    check(
        RdnsFact::NotConfirmed {
            ptr: "mail1.example.com".into(),
        },
        false,
        "ignored not-confirmed",
    );
    check(
        RdnsFact::TempFail {
            error: "timeout".into(),
        },
        false,
        "ignored not-confirmed",
    );
}
