//! The ladder as sequences of commands: each row applies one command and says
//! what must come of it.

use spamgate_desk::ladder::{
    Action, Claim, ClaimItem, Command, EscalationPolicy, Ladder, LadderError, ProposalKind, Step,
    apply, claim,
};
use spamgate_desk::report::Category;

const DAY: i64 = 86_400;

enum Want {
    /// Step after, audit action, audit rule, action tags in order.
    Ok(
        Step,
        &'static str,
        Option<&'static str>,
        &'static [&'static str],
    ),
    Err(LadderError),
}

fn tag(action: &Action) -> &'static str {
    match action {
        Action::SuspendAccounts { .. } => "suspend-accounts",
        Action::ReinstateAccounts { .. } => "reinstate-accounts",
        Action::RevokeOp25bExemptions { .. } => "revoke-op25b",
        Action::RestoreOp25bExemptions { .. } => "restore-op25b",
        Action::RunHook { .. } => "hook",
        Action::NotifyCustomer { .. } => "notify",
    }
}

fn confirm(case_id: i64, category: Category) -> Command {
    Command::ConfirmCase {
        case_id,
        category,
        evidence: vec![format!("report:{case_id}")],
    }
}

fn check(policy: &EscalationPolicy, steps: Vec<(&str, Command, i64, Want)>) -> Ladder {
    let mut ladder = Ladder::new("C1");
    for (row, (actor, command, now, want)) in steps.into_iter().enumerate() {
        let got = apply(&ladder, actor, command, policy, now);
        match (got, want) {
            (Ok(t), Want::Ok(step, action, rule, actions)) => {
                assert_eq!(t.ladder.step, step, "row {row}: step");
                assert_eq!(t.audit.action, action, "row {row}: audit action");
                assert_eq!(t.audit.rule.as_deref(), rule, "row {row}: rule");
                assert_eq!(t.audit.actor, actor, "row {row}: who");
                assert_eq!(t.audit.at, now, "row {row}: when");
                assert_eq!(t.audit.to, step);
                let tags: Vec<&str> = t.actions.iter().map(tag).collect();
                assert_eq!(tags, actions, "row {row}: enforcement actions");
                ladder = t.ladder;
            }
            (Err(e), Want::Err(expected)) => assert_eq!(e, expected, "row {row}: error"),
            (got, _) => panic!("row {row}: unexpected {got:?}"),
        }
    }
    ladder
}

const SUSPEND: &[&str] = &["suspend-accounts", "revoke-op25b", "hook", "notify"];
const RESUME: &[&str] = &["reinstate-accounts", "restore-op25b", "hook", "notify"];
const WARN: &[&str] = &["hook", "notify"];

#[test]
fn warning_then_proposed_suspension_then_approval_resume_and_termination() {
    use Want::*;
    let policy = EscalationPolicy::default();
    let ladder = check(
        &policy,
        vec![
            (
                "policy",
                confirm(1, Category::Spam),
                0,
                Ok(Step::Warned, "warn", Some("first-confirmed-case"), WARN),
            ),
            // The same case confirmed twice is one strike and enforces nothing new.
            (
                "policy",
                confirm(1, Category::Spam),
                DAY,
                Ok(Step::Warned, "confirm-case", Some("already-counted"), &[]),
            ),
            // A second case within 90 days: a proposal, nothing enforced yet.
            (
                "policy",
                confirm(2, Category::Spam),
                30 * DAY,
                Ok(
                    Step::Warned,
                    "propose-suspend",
                    Some("repeat-within-window"),
                    &[],
                ),
            ),
            // Approved by a person: suspension enforced.
            (
                "alice",
                Command::Approve {
                    reason: "checked".into(),
                },
                31 * DAY,
                Ok(Step::Suspended, "approve", None, SUSPEND),
            ),
            (
                "alice",
                Command::Approve {
                    reason: "again".into(),
                },
                31 * DAY,
                Err(LadderError::NoProposal),
            ),
            (
                "bob",
                Command::Resume {
                    reason: "customer cleaned the PC".into(),
                    force: false,
                },
                35 * DAY,
                Ok(Step::Resumed, "resume", None, RESUME),
            ),
            (
                "bob",
                Command::Resume {
                    reason: "x".into(),
                    force: false,
                },
                35 * DAY,
                Err(LadderError::NotFrom {
                    command: "resume",
                    step: "resumed",
                }),
            ),
            // A third strike after suspension proposes termination.
            (
                "policy",
                confirm(3, Category::Spam),
                40 * DAY,
                Ok(
                    Step::Resumed,
                    "propose-terminate",
                    Some("propose-termination"),
                    &[],
                ),
            ),
            (
                "alice",
                Command::Reject {
                    reason: "give one more chance".into(),
                },
                41 * DAY,
                Ok(Step::Resumed, "reject", None, &[]),
            ),
            (
                "alice",
                Command::Terminate {
                    reason: "contract ended".into(),
                    evidence: vec!["case:3".into()],
                },
                50 * DAY,
                Ok(
                    Step::Terminated,
                    "terminate",
                    None,
                    &["suspend-accounts", "revoke-op25b", "hook", "notify"],
                ),
            ),
            // Termination is final.
            (
                "policy",
                confirm(4, Category::Spam),
                51 * DAY,
                Err(LadderError::Terminated("C1".into())),
            ),
            (
                "bob",
                Command::Resume {
                    reason: "mistake".into(),
                    force: false,
                },
                51 * DAY,
                Err(LadderError::Terminated("C1".into())),
            ),
            (
                "bob",
                Command::Warn {
                    reason: "x".into(),
                    evidence: vec![],
                },
                51 * DAY,
                Err(LadderError::Terminated("C1".into())),
            ),
            // ...unless forced, and the audit says so.
            (
                "ceo",
                Command::Resume {
                    reason: "court order".into(),
                    force: true,
                },
                52 * DAY,
                Ok(Step::Resumed, "resume", None, RESUME),
            ),
        ],
    );
    assert_eq!(ladder.strikes.len(), 3);
}

#[test]
fn forced_resume_is_marked_in_the_audit() {
    let policy = EscalationPolicy::default();
    let ladder = Ladder::new("C1");
    let t = apply(
        &ladder,
        "a",
        Command::Terminate {
            reason: "r".into(),
            evidence: vec![],
        },
        &policy,
        0,
    )
    .unwrap();
    let t = apply(
        &t.ladder,
        "b",
        Command::Resume {
            reason: "court order".into(),
            force: true,
        },
        &policy,
        1,
    )
    .unwrap();
    assert!(t.audit.forced);
    assert!(t.audit.reason.contains("overridden"), "{}", t.audit.reason);
    assert_eq!(t.audit.from, Step::Terminated);
}

#[test]
fn overload_emergency_suspends_without_approval() {
    use Want::*;
    let policy = EscalationPolicy::default();
    check(
        &policy,
        vec![
            (
                "policy",
                confirm(1, Category::Overload),
                0,
                Ok(
                    Step::Suspended,
                    "suspend",
                    Some("overload-emergency"),
                    SUSPEND,
                ),
            ),
            // Already suspended: a further strike is recorded, no new enforcement.
            (
                "policy",
                confirm(2, Category::Overload),
                DAY,
                Ok(
                    Step::Suspended,
                    "confirm-case",
                    Some("strike-recorded"),
                    &[],
                ),
            ),
        ],
    );
    let off = EscalationPolicy {
        overload_emergency: false,
        ..EscalationPolicy::default()
    };
    check(
        &off,
        vec![(
            "policy",
            confirm(1, Category::Overload),
            0,
            Ok(Step::Warned, "warn", Some("first-confirmed-case"), WARN),
        )],
    );
}

#[test]
fn strikes_expire_and_the_window_is_ninety_days() {
    use Want::*;
    let policy = EscalationPolicy {
        strike_ttl: 180 * DAY,
        ..EscalationPolicy::default()
    };
    let ladder = check(
        &policy,
        vec![
            (
                "policy",
                confirm(1, Category::Spam),
                0,
                Ok(Step::Warned, "warn", Some("first-confirmed-case"), WARN),
            ),
            // 91 days later: outside the window, a warning again, not a suspension.
            (
                "policy",
                confirm(2, Category::Spam),
                91 * DAY,
                Ok(Step::Warned, "warn", Some("first-confirmed-case"), WARN),
            ),
            // 181 days after the first: case 1 has expired and is dropped.
            (
                "policy",
                confirm(3, Category::Spam),
                181 * DAY,
                Ok(
                    Step::Warned,
                    "propose-suspend",
                    Some("repeat-within-window"),
                    &[],
                ),
            ),
        ],
    );
    assert_eq!(
        ladder.strikes.iter().map(|s| s.case_id).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(
        ladder.proposal.as_ref().map(|p| p.kind),
        Some(ProposalKind::Suspend)
    );
}

#[test]
fn manual_suspension_needs_a_second_person_when_the_policy_says_so() {
    use Want::*;
    let policy = EscalationPolicy::default();
    let suspend = |approver: Option<&str>| Command::Suspend {
        reason: "botnet".into(),
        evidence: vec!["report:9".into()],
        approver: approver.map(str::to_string),
    };
    check(
        &policy,
        vec![
            (
                "alice",
                suspend(None),
                0,
                Err(LadderError::ApprovalRequired("alice".into())),
            ),
            (
                "alice",
                suspend(Some("alice")),
                0,
                Err(LadderError::ApprovalRequired("alice".into())),
            ),
            (
                "alice",
                suspend(Some("bob")),
                0,
                Ok(Step::Suspended, "suspend", None, SUSPEND),
            ),
            (
                "alice",
                suspend(Some("bob")),
                1,
                Err(LadderError::NotFrom {
                    command: "suspend",
                    step: "suspended",
                }),
            ),
            (
                "alice",
                Command::Warn {
                    reason: "x".into(),
                    evidence: vec![],
                },
                2,
                Err(LadderError::NotFrom {
                    command: "warn",
                    step: "suspended",
                }),
            ),
        ],
    );
    let lax = EscalationPolicy {
        suspension_requires_approval: false,
        ..EscalationPolicy::default()
    };
    check(
        &lax,
        vec![
            (
                "policy",
                confirm(1, Category::Spam),
                0,
                Ok(Step::Warned, "warn", Some("first-confirmed-case"), WARN),
            ),
            (
                "policy",
                confirm(2, Category::Vandalism),
                DAY,
                Ok(
                    Step::Suspended,
                    "suspend",
                    Some("repeat-within-window"),
                    SUSPEND,
                ),
            ),
        ],
    );
}

#[test]
fn claims_are_checked_and_audited_at_any_step() {
    let mut ladder = Ladder::new("C1");
    ladder.step = Step::Terminated;
    let good = Claim {
        customer: "C1".into(),
        case_ids: vec![7],
        amount: 150_000,
        currency: "JPY".into(),
        basis: "operator hours and blocklist removal".into(),
        items: vec![
            ClaimItem {
                description: "12 h operator time".into(),
                amount: 120_000,
            },
            ClaimItem {
                description: "delisting fees".into(),
                amount: 30_000,
            },
        ],
    };
    let audit = claim(&ladder, "legal", &good, 100).unwrap();
    assert_eq!(
        (audit.action.as_str(), audit.to, audit.evidence.clone()),
        ("claim", Step::Terminated, vec!["case:7".to_string()])
    );
    let table: Vec<(Claim, &str)> = vec![
        (
            Claim {
                amount: 1,
                ..good.clone()
            },
            "items do not add up",
        ),
        (
            Claim {
                currency: "yen".into(),
                ..good.clone()
            },
            "currency",
        ),
        (
            Claim {
                case_ids: vec![],
                ..good.clone()
            },
            "at least one case",
        ),
        (
            Claim {
                amount: 0,
                items: vec![],
                ..good.clone()
            },
            "positive",
        ),
        (
            Claim {
                customer: "C2".into(),
                ..good.clone()
            },
            "another customer",
        ),
        (
            Claim {
                basis: " ".into(),
                ..good.clone()
            },
            "basis",
        ),
    ];
    for (bad, why) in table {
        let err = claim(&ladder, "legal", &bad, 100).unwrap_err();
        assert!(err.to_string().contains(why), "{err} should say {why}");
    }
}
