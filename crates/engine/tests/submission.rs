//! The submission policy: account status, then limits charged per message.

use spamgate_engine::outbound::{
    Account, AccountStatus, LimitKind, LimitOverrides, SubmissionRules, gcra,
};
use spamgate_engine::{Action, Reason, Refusal};

fn policy() -> SubmissionRules {
    SubmissionRules {
        messages_per_hour: 10,
        message_burst: 10,
        recipients_per_day: 50,
        recipient_burst: 50,
        ..SubmissionRules::default()
    }
}

#[test]
fn status_decides_first() {
    let p = policy();
    let check = |status: Option<AccountStatus>, refused: bool| {
        let account = status.map(|s| Account {
            status: s,
            ..Account::new("u@example.jp", 0)
        });
        let verdict = p.check_status("u@example.jp", account.as_ref());
        assert_eq!(verdict.is_some(), refused, "{status:?}");
        if let Some(v) = verdict {
            assert_eq!(
                v.action,
                Action::Reject {
                    refusal: Refusal::AccountStatus
                }
            );
            assert!(v.reasons.contains(&Reason::AccountStatus {
                status: status.unwrap()
            }));
        }
    };
    check(None, false); // unknown accounts are active with the defaults
    check(Some(AccountStatus::Active), false);
    check(Some(AccountStatus::Suspended), true);
    check(Some(AccountStatus::Terminated), true);
}

/// Charges applied to an in-memory TAT table, as a store does, all-or-nothing.
fn send(
    p: &SubmissionRules,
    account: Option<&Account>,
    tats: &mut [u64; 2],
    recipients: u32,
    now_ms: u64,
) -> Action {
    let charges = p.charges(account, recipients);
    let outcomes: Vec<_> = charges
        .iter()
        .zip(tats.iter())
        .map(|((kind, rate, cost), tat)| (*kind, gcra(rate, *tat, *cost, now_ms)))
        .collect();
    if outcomes.iter().all(|(_, o)| o.allowed) {
        for (tat, (_, o)) in tats.iter_mut().zip(&outcomes) {
            *tat = o.tat_ms;
        }
    }
    p.finish("u@example.jp", &charges, &outcomes).action
}

#[test]
fn messages_per_hour_then_recipients_per_day() {
    let p = policy();
    let mut tats = [0, 0];
    let now = 1_000_000_000;
    for i in 0..10 {
        assert_eq!(
            send(&p, None, &mut tats, 1, now),
            Action::Pass,
            "message {i}"
        );
    }
    let Action::Defer { retry_in } = send(&p, None, &mut tats, 1, now) else {
        panic!("the 11th message in an hour is deferred")
    };
    assert_eq!(retry_in, 360, "one message frees up every 6 minutes");
    assert_eq!(send(&p, None, &mut tats, 1, now + 360_000), Action::Pass);

    // Recipients: 10 already used; a message to 41 more exceeds 50 a day.
    let mut fresh = [0, 0];
    assert_eq!(send(&p, None, &mut fresh, 10, now), Action::Pass);
    assert!(matches!(
        send(&p, None, &mut fresh, 41, now),
        Action::Defer { .. }
    ));
    assert_eq!(
        send(&p, None, &mut fresh, 40, now),
        Action::Pass,
        "a refused message costs nothing"
    );
}

#[test]
fn per_account_overrides() {
    let p = policy();
    let big = Account {
        limits: LimitOverrides {
            messages_per_hour: Some(1000),
            recipients_per_day: Some(5000),
        },
        ..Account::new("newsletter@example.jp", 0)
    };
    let charges = p.charges(Some(&big), 3);
    assert_eq!(charges[0].0, LimitKind::MessagesPerHour);
    assert_eq!(charges[0].1.limit, 1000);
    assert_eq!(charges[1].1.limit, 5000);
    assert_eq!(charges[1].2, 3, "recipients are counted individually");
    assert_eq!(
        charges[0].1.burst, 1000,
        "the burst keeps its proportion (10 of 10)"
    );
    let lower = Account {
        limits: LimitOverrides {
            messages_per_hour: Some(5),
            recipients_per_day: None,
        },
        ..Account::new("slow@example.jp", 0)
    };
    assert_eq!(p.charges(Some(&lower), 1)[0].1.burst, 5);
}

#[test]
fn the_tripped_limit_is_named() {
    let p = policy();
    let mut tats = [0, 0];
    let now = 7_000_000;
    send(&p, None, &mut tats, 50, now);
    let charges = p.charges(None, 1);
    let outcomes: Vec<_> = charges
        .iter()
        .zip(tats)
        .map(|((k, r, c), t)| (*k, gcra(r, t, *c, now)))
        .collect();
    let verdict = p.finish("u@example.jp", &charges, &outcomes);
    let short = verdict.reasons_short();
    assert!(
        short.contains("limit:recipients-per-day(used=50,cost=1,allowed=50"),
        "{short}"
    );
}

#[test]
fn a_message_larger_than_the_burst_is_refused_for_good() {
    let p = SubmissionRules {
        recipient_burst: 20,
        ..policy()
    };
    let mut tats = [0, 0];
    let action = send(&p, None, &mut tats, 21, 1_000_000);
    assert_eq!(
        action,
        Action::Reject {
            refusal: Refusal::TooLarge
        },
        "21 recipients can never fit a burst of 20"
    );
    assert_eq!(send(&p, None, &mut tats, 20, 1_000_000), Action::Pass);
}
