//! The engine's decision order, table-driven: facts in, action and reasons out.

use spamgate_engine::allow::AllowConfig;
use spamgate_engine::facts::{ListAnswer, ListFact, RdnsFact};
use spamgate_engine::greylist::GreylistOutcome;
use spamgate_engine::{
    Action, Engine, EngineConfig, Envelope, Evaluation, Reason, Refusal, Stage, StoreFailMode,
};

fn engine(tweak: impl FnOnce(&mut EngineConfig)) -> Engine {
    let mut config = EngineConfig::seed_defaults();
    config.allow = AllowConfig {
        client_addresses: vec!["198.51.100.0/24".into()],
        ..AllowConfig::default()
    };
    tweak(&mut config);
    Engine::new(&config).unwrap()
}

fn envelope(ip: &str) -> Envelope {
    Envelope {
        sender: "sender@example.org".into(),
        recipient: "user@example.net".into(),
        ..Envelope::new(ip.parse().unwrap())
    }
}

fn listed(zone: &str, weight: i32, answer: &str) -> ListFact {
    ListFact {
        zone: zone.into(),
        weight,
        answer: ListAnswer::Listed {
            answers: vec![answer.parse().unwrap()],
            txt: Some("see http://bl.example/".into()),
        },
    }
}

fn not_listed(zone: &str) -> ListFact {
    ListFact {
        zone: zone.into(),
        weight: 1,
        answer: ListAnswer::NotListed,
    }
}

fn error(zone: &str) -> ListFact {
    ListFact {
        zone: zone.into(),
        weight: 1,
        answer: ListAnswer::Error {
            error: "timeout".into(),
        },
    }
}

fn confirmed(name: &str) -> RdnsFact {
    RdnsFact::Confirmed { name: name.into() }
}

/// What we expect from `evaluate`: a final action, or "ask the greylist" for a class.
#[derive(Debug, PartialEq)]
enum Expect {
    Pass,
    Reject,
    Greylist(&'static str),
}

fn check(
    engine: &Engine,
    dnswl: &[ListFact],
    dnsbl: &[ListFact],
    rdns: RdnsFact,
    expected: Expect,
) {
    let env = envelope("203.0.113.7");
    let got = match engine.evaluate(&env, &Stage::Rcpt, dnswl, dnsbl, &rdns) {
        Evaluation::Done(v) if v.action == Action::Pass => Expect::Pass,
        Evaluation::Done(v)
            if matches!(
                v.action,
                Action::Reject {
                    refusal: Refusal::Dnsbl
                }
            ) =>
        {
            Expect::Reject
        }
        Evaluation::Done(v) => panic!("unexpected {v:?}"),
        Evaluation::Greylist(plan) => {
            let class = plan.reasons.iter().find_map(|r| match r {
                Reason::Client { client } => Some(client.id()),
                _ => None,
            });
            Expect::Greylist(class.expect("a greylist plan names the client class"))
        }
    };
    assert_eq!(
        got, expected,
        "dnswl={dnswl:?} dnsbl={dnsbl:?} rdns={rdns:?}"
    );
}

#[test]
fn decision_table() {
    let e = engine(|_| {});
    let proper = || confirmed("mail.example.org");
    use Expect::*;
    check(&e, &[], &[], proper(), Pass);
    check(&e, &[], &[not_listed("bl.test")], proper(), Pass);
    check(
        &e,
        &[],
        &[listed("bl.test", 1, "127.0.0.2")],
        proper(),
        Reject,
    );
    // DNS trouble never rejects.
    check(&e, &[], &[error("bl.test")], proper(), Pass);
    check(
        &e,
        &[],
        &[error("bl.test")],
        RdnsFact::NoPtr,
        Greylist("no-ptr"),
    );
    // DNSWL wins over DNSBL.
    check(
        &e,
        &[listed("wl.test", 1, "127.0.10.1")],
        &[listed("bl.test", 1, "127.0.0.2")],
        RdnsFact::NoPtr,
        Pass,
    );
    // Weights: 1 + (-1) is below the threshold, so the client goes on to classification.
    check(
        &e,
        &[],
        &[
            listed("bl.test", 1, "127.0.0.2"),
            listed("good.test", -1, "127.0.0.2"),
        ],
        RdnsFact::NoPtr,
        Greylist("no-ptr"),
    );
    // The suspicious classes.
    check(&e, &[], &[], RdnsFact::NoPtr, Greylist("no-ptr"));
    check(
        &e,
        &[],
        &[],
        RdnsFact::NotConfirmed {
            ptr: "mail.example.org".into(),
        },
        Greylist("ptr-not-confirmed"),
    );
    check(
        &e,
        &[],
        &[],
        RdnsFact::TempFail {
            error: "SERVFAIL".into(),
        },
        Greylist("dns-tempfail"),
    );
    check(
        &e,
        &[],
        &[],
        confirmed("203-0-113-7.adsl.example.net"),
        Greylist("generic"),
    );
    // A big sender that looks generic is excepted.
    check(
        &e,
        &[],
        &[],
        confirmed("mail-eopbgr80071.outbound.protection.outlook.com"),
        Pass,
    );

    let threshold3 = engine(|c| c.lists.threshold = 3);
    check(
        &threshold3,
        &[],
        &[listed("a.test", 2, "127.0.0.2")],
        proper(),
        Pass,
    );
    check(
        &threshold3,
        &[],
        &[
            listed("a.test", 2, "127.0.0.2"),
            listed("b.test", 1, "127.0.0.4"),
        ],
        proper(),
        Reject,
    );

    let only_generic = engine(|c| c.greylist_classes = vec!["generic".into()]);
    check(&only_generic, &[], &[], RdnsFact::NoPtr, Pass);
    check(
        &only_generic,
        &[],
        &[],
        confirmed("dhcp123.example.com"),
        Greylist("generic"),
    );

    let everyone = engine(|c| c.greylist_classes.push("proper".into()));
    check(&everyone, &[], &[], proper(), Greylist("proper"));

    let disabled = engine(|c| c.greylist_enabled = false);
    check(&disabled, &[], &[], RdnsFact::NoPtr, Pass);
}

#[test]
fn allow_lists_come_first() {
    let e = engine(|_| {});
    let v = e
        .check_allow(&envelope("198.51.100.25"))
        .expect("allow-listed");
    assert_eq!(v.action, Action::Pass);
    assert!(e.check_allow(&envelope("203.0.113.7")).is_none());
    let mut to_postmaster = envelope("203.0.113.7");
    to_postmaster.recipient = "postmaster@example.net".into();
    assert!(e.check_allow(&to_postmaster).is_some());
}

#[test]
fn reject_names_the_list() {
    let e = engine(|_| {});
    let Evaluation::Done(v) = e.evaluate(
        &envelope("203.0.113.7"),
        &Stage::Rcpt,
        &[],
        &[listed("bl.test", 1, "127.0.0.2")],
        &RdnsFact::NoPtr,
    ) else {
        panic!("a listed client is decided without the store");
    };
    let lists: Vec<_> = v.rejecting_lists().collect();
    assert_eq!(lists, vec![("bl.test", Some("see http://bl.example/"))]);
    assert!(
        v.reasons_short().contains("dnsbl:bl.test=127.0.0.2*1"),
        "{}",
        v.reasons_short()
    );
}

#[test]
fn finish_maps_outcomes_and_store_failures() {
    let plan = |e: &Engine| match e.evaluate(
        &envelope("203.0.113.7"),
        &Stage::Rcpt,
        &[],
        &[],
        &RdnsFact::NoPtr,
    ) {
        Evaluation::Greylist(p) => p,
        other => panic!("{other:?}"),
    };
    let e = engine(|_| {});
    let v = e.finish(plan(&e), Ok(GreylistOutcome::New { retry_in: 300 }));
    assert_eq!(v.action, Action::Greylist { retry_in: 300 });
    let v = e.finish(plan(&e), Ok(GreylistOutcome::Passed { waited: 400 }));
    assert_eq!(v.action, Action::Pass);
    let v = e.finish(plan(&e), Err("disk full".into()));
    assert_eq!(v.action, Action::Pass, "fail mode dunno");
    let defer = engine(|c| c.store_fail_mode = StoreFailMode::Defer);
    let v = defer.finish(plan(&defer), Err("disk full".into()));
    assert_eq!(
        v.action,
        Action::TempFail,
        "fail mode defer is temporary, never 5xx"
    );
}

#[test]
fn config_errors() {
    let mut c = EngineConfig::seed_defaults();
    c.greylist_classes.push("bogus".into());
    assert!(Engine::new(&c).unwrap_err().to_string().contains("bogus"));
    let mut c = EngineConfig::seed_defaults();
    c.greylist.min_delay = c.greylist.retry_window;
    assert!(Engine::new(&c).is_err());
}

#[test]
fn only_confirmed_names_that_are_not_generic_are_keyed_by_their_domain() {
    let e = engine(|c| c.greylist_classes.push("proper".into()));
    let network_of = |ip: &str, name: &str| match e.evaluate(
        &envelope(ip),
        &Stage::Rcpt,
        &[],
        &[],
        &confirmed(name),
    ) {
        Evaluation::Greylist(plan) => plan.keys.network,
        Evaluation::Done(v) => panic!("{name}: not greylisted: {v:?}"),
    };
    // (client, its confirmed name, the network its triplets are keyed by)
    let cases = [
        // End-user lines of one ISP in two /24s: each keyed by its own network, so one
        // host's retry can never pass another's first attempt.
        (
            "203.0.113.7",
            "203-0-113-7.dyn.example.net",
            "203.0.113.0/24",
        ),
        ("192.0.2.99", "192-0-2-99.dyn.example.net", "192.0.2.0/24"),
        // A proper (non-generic) confirmed name: the pool's domain.
        ("192.0.2.25", "mail.example.org", "domain:example.org"),
    ];
    for (ip, name, want) in cases {
        assert_eq!(network_of(ip, name), want, "{name}");
    }
}

#[test]
fn a_sender_entry_skips_greylisting_but_never_the_dnsbl() {
    use spamgate_engine::allow::AllowList;
    use spamgate_engine::verdict::{AllowListKind, AllowScope};
    let e = engine(|c| c.allow.senders = vec!["partner@example.org".into()]);
    let runtime = AllowList::default();
    let from_partner = |ip: &str| Envelope {
        sender: "partner@example.org".into(),
        ..envelope(ip)
    };
    // (client, its DNSBL answer, its reverse name, what happens)
    let decide = |ip: &str, dnsbl: Vec<ListFact>, rdns: RdnsFact| {
        let env = from_partner(ip);
        assert!(
            e.check_allow(&env).is_none(),
            "a sender never skips everything"
        );
        match e.evaluate(&env, &Stage::Rcpt, &[], &dnsbl, &rdns) {
            Evaluation::Done(v) => v,
            Evaluation::Greylist(plan) => match e.skip_greylisting(plan, &env, &runtime) {
                Evaluation::Done(v) => v,
                Evaluation::Greylist(_) => panic!("{ip}: greylisted despite the entry"),
            },
        }
    };
    // A listed host with the (forgeable) partner sender: refused.
    let listed = decide(
        "192.0.2.66",
        vec![listed("bl.test", 1, "127.0.0.2")],
        RdnsFact::NoPtr,
    );
    assert!(
        matches!(
            listed.action,
            Action::Reject {
                refusal: Refusal::Dnsbl
            }
        ),
        "{listed:?}"
    );
    // A suspicious but unlisted client: passes, and the reason names the scope.
    let passed = decide("203.0.113.7", vec![not_listed("bl.test")], RdnsFact::NoPtr);
    assert_eq!(passed.action, Action::Pass);
    assert!(passed.reasons.contains(&Reason::Allowed {
        list: AllowListKind::Sender,
        entry: "partner@example.org".into(),
        scope: AllowScope::Greylist,
    }));
    assert!(
        passed
            .reasons_short()
            .contains("allow:sender=partner@example.org(scope=greylist)")
    );
    // A client-address entry skips everything, the lists included.
    let trusted = e
        .check_allow(&envelope("198.51.100.25"))
        .expect("allow-listed");
    assert!(
        trusted.reasons_short().contains("(scope=all)"),
        "{trusted:?}"
    );
}
