//! The refusal invariants, over arbitrary facts:
//! - inbound, a permanent refusal comes only from a DNSBL score at the threshold;
//! - submission, only from the account's standing, a missing login or a message that
//!   can never fit;
//! - on either side, a store failure, a DNS error or a sentinel answer never refuses.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use proptest::prelude::*;
use spamgate_engine::facts::{ListAnswer, ListFact, RdnsFact};
use spamgate_engine::greylist::GreylistOutcome;
use spamgate_engine::outbound::{
    Account, AccountStatus, GcraOutcome, LimitOverrides, SubmissionRules, SubmissionStep,
};
use spamgate_engine::{
    Action, Engine, EngineConfig, Envelope, Evaluation, Reason, Refusal, Stage, StoreFailMode,
    Transaction, Verdict,
};

fn list_answer() -> impl Strategy<Value = ListAnswer> {
    prop_oneof![
        Just(ListAnswer::NotListed),
        Just(ListAnswer::NotQueried),
        "[a-z ]{0,12}".prop_map(|error| ListAnswer::Error { error }),
        (proptest::collection::vec(any::<u8>(), 1..3), any::<bool>()).prop_map(|(last, txt)| {
            ListAnswer::Listed {
                answers: last
                    .into_iter()
                    .map(|b| Ipv4Addr::new(127, 0, 0, b))
                    .collect(),
                txt: txt.then(|| "listed".to_string()),
            }
        }),
    ]
}

fn list_facts(prefix: &'static str) -> impl Strategy<Value = Vec<ListFact>> {
    proptest::collection::vec((list_answer(), -3i32..4), 0..4).prop_map(move |facts| {
        facts
            .into_iter()
            .enumerate()
            .map(|(i, (answer, weight))| ListFact {
                zone: format!("{prefix}{i}.test"),
                weight,
                answer,
            })
            .collect()
    })
}

fn rdns_fact() -> impl Strategy<Value = RdnsFact> {
    let names = prop_oneof![
        Just("mail.example.net".to_string()),
        Just("192-0-2-7.dyn.example.net".to_string()),
        Just("p1234-ipbf01.example.ne.jp".to_string()),
        "[a-z0-9.-]{1,30}",
    ];
    prop_oneof![
        Just(RdnsFact::NoPtr),
        names.clone().prop_map(|name| RdnsFact::Confirmed { name }),
        names.prop_map(|ptr| RdnsFact::NotConfirmed { ptr }),
        Just(RdnsFact::TempFail {
            error: "timeout".into()
        }),
    ]
}

fn stage() -> impl Strategy<Value = Stage> {
    prop_oneof![
        Just(Stage::Connect),
        Just(Stage::Helo),
        Just(Stage::Mail),
        Just(Stage::Rcpt),
        Just(Stage::Data),
        Just(Stage::EndOfMessage),
        Just(Stage::Other("LOGIN".into())),
    ]
}

fn store_outcome() -> impl Strategy<Value = Result<GreylistOutcome, String>> {
    prop_oneof![
        Just(Err("store down".to_string())),
        Just(Ok(GreylistOutcome::New { retry_in: 300 })),
        Just(Ok(GreylistOutcome::Passed { waited: 400 })),
        Just(Ok(GreylistOutcome::TooEarly {
            waited: 10,
            retry_in: 290
        })),
        Just(Ok(GreylistOutcome::NetworkFull { pending: 50 })),
        Just(Ok(GreylistOutcome::AutoWhitelisted { since: 1 })),
    ]
}

fn fail_mode() -> impl Strategy<Value = StoreFailMode> {
    prop_oneof![Just(StoreFailMode::Dunno), Just(StoreFailMode::Defer)]
}

fn refusal(verdict: &Verdict) -> Option<Refusal> {
    match verdict.action {
        Action::Reject { refusal } => Some(refusal),
        _ => None,
    }
}

proptest! {
    #[test]
    fn inbound_refuses_only_for_a_dnsbl_score_at_the_threshold(
        dnswl in list_facts("wl"),
        dnsbl in list_facts("bl"),
        rdns in rdns_fact(),
        stage in stage(),
        outcome in store_outcome(),
        fail_mode in fail_mode(),
        threshold in 1i32..4,
    ) {
        let mut config = EngineConfig::seed_defaults();
        config.lists.threshold = threshold;
        config.store_fail_mode = fail_mode;
        let engine = Engine::new(&config).unwrap();
        let envelope = Envelope {
            sender: "a@example.org".into(),
            recipient: "b@example.net".into(),
            ..Envelope::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)))
        };
        let store_failed = outcome.is_err();
        let verdict = match engine.evaluate(&envelope, &stage, &dnswl, &dnsbl, &rdns) {
            Evaluation::Done(verdict) => verdict,
            Evaluation::Greylist(plan) => engine.finish(plan, outcome),
        };
        let listed_score: i32 = dnsbl
            .iter()
            .filter(|f| matches!(f.answer, ListAnswer::Listed { .. }))
            .map(|f| f.weight)
            .sum();
        let whitelisted = dnswl.iter().any(|f| matches!(f.answer, ListAnswer::Listed { .. }));
        match refusal(&verdict) {
            Some(kind) => {
                prop_assert_eq!(kind, Refusal::Dnsbl);
                prop_assert!(!whitelisted, "a DNSWL listing passes before the DNSBL");
                prop_assert!(listed_score >= threshold, "score {} < {}", listed_score, threshold);
                let scored = verdict.reasons.iter().any(|r| matches!(r,
                    Reason::DnsblScore { score, .. } if *score >= threshold));
                prop_assert!(scored, "the reasons name the score");
            }
            None => prop_assert!(whitelisted || listed_score < threshold,
                "a score of {} at threshold {} must refuse: {:?}", listed_score, threshold, verdict),
        }
        if store_failed && verdict.reasons.iter().any(|r| matches!(r, Reason::StoreError { .. })) {
            prop_assert_eq!(verdict.action, fail_mode.action());
        }
    }

    #[test]
    fn submission_refuses_only_for_standing_login_or_size_never_for_store_trouble(
        username in proptest::option::of(Just("taro@example.jp".to_string())),
        on_submission_port in any::<bool>(),
        stage in stage(),
        status in prop_oneof![
            Just(None),
            Just(Some(AccountStatus::Active)),
            Just(Some(AccountStatus::Suspended)),
            Just(Some(AccountStatus::Terminated)),
        ],
        recipients in 1u32..400,
        used_up in any::<bool>(),
        store_fails in any::<bool>(),
        fail_mode in fail_mode(),
    ) {
        let rules = SubmissionRules::default();
        let transaction = Transaction {
            stage,
            sasl_username: username.clone(),
            server_port: Some(if on_submission_port { 587 } else { 25 }),
            recipient_count: recipients,
            ..Transaction::at_rcpt(Envelope::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))))
        };
        let account = status.map(|status| Account {
            status,
            limits: LimitOverrides::default(),
            ..Account::new("taro@example.jp", 0)
        });
        // The application's order: status, then the charge, each of which may fail.
        let verdict = match rules.step(&transaction) {
            SubmissionStep::Done(verdict) => verdict,
            SubmissionStep::CheckStatus { username } if store_fails => {
                SubmissionRules::store_trouble(&username, "down".into(), fail_mode)
            }
            SubmissionStep::CheckStatus { username } => rules
                .check_status(&username, account.as_ref())
                .unwrap_or_else(|| Verdict::pass(Vec::new())),
            SubmissionStep::CheckAndCharge { username, .. } if store_fails => {
                SubmissionRules::store_trouble(&username, "down".into(), fail_mode)
            }
            SubmissionStep::CheckAndCharge { username, recipients } => {
                match rules.check_status(&username, account.as_ref()) {
                    Some(verdict) => verdict,
                    None => {
                        let charges = rules.charges(account.as_ref(), recipients);
                        let outcomes: Vec<_> = charges
                            .iter()
                            .map(|(kind, _, _)| {
                                (*kind, GcraOutcome {
                                    allowed: !used_up,
                                    tat_ms: 0,
                                    retry_after_ms: Duration::from_secs(60).as_millis() as u64,
                                    used: 0,
                                })
                            })
                            .collect();
                        rules.finish(&username, &charges, &outcomes)
                    }
                }
            }
        };
        if store_fails && verdict.reasons.iter().any(|r| matches!(r, Reason::StoreError { .. })) {
            prop_assert_eq!(verdict.action, fail_mode.action());
        }
        match refusal(&verdict) {
            None => {}
            Some(Refusal::Dnsbl) => prop_assert!(false, "a DNSBL refusal on the submission side"),
            Some(Refusal::Unauthenticated) => prop_assert!(username.is_none()),
            Some(Refusal::AccountStatus) => prop_assert!(matches!(
                status,
                Some(AccountStatus::Suspended | AccountStatus::Terminated)
            )),
            Some(Refusal::TooLarge) => {
                prop_assert!(used_up && recipients > rules.recipient_burst)
            }
        }
    }
}
