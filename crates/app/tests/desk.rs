//! The desk service on real SQLite files (the account store and the desk store): each
//! ladder sequence leaves the customer's linked accounts in the status it means, a
//! refused step changes nothing, and hooks run, retry and fail visibly.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Stores, stores_with};
use spamgate_app::desk::{DeskService, DeskSettings, HookSettings, NoticeSettings};
use spamgate_desk::case::Case;
use spamgate_desk::desk::DeskConfig;
use spamgate_desk::ladder::{Command, Step};
use spamgate_desk::report::Category;
use spamgate_desk::store::{DeliveryState, RetryPolicy};
use spamgate_desk::time::FixedOffset;
use spamgate_engine::outbound::{Account, AccountStatus};
use spamgate_store::{AccountAdmin, AccountStore};

const NOW: i64 = 1_800_000_000;
const ACCOUNTS: [&str; 2] = ["hanako@isp.example.jp", "hanako-shop@isp.example.jp"];

fn settings(hook: &[&str], retry: RetryPolicy) -> DeskSettings {
    DeskSettings {
        config: DeskConfig::default(),
        zone: FixedOffset::JST,
        hook: HookSettings {
            command: hook.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_secs(30),
            retry,
        },
        notice: NoticeSettings::default(),
        signals: Default::default(),
        op25b: None,
    }
}

/// Customer C-HANAKO with both accounts linked (and active).
async fn stores() -> Stores {
    stores_with(&ACCOUNTS, &ACCOUNTS, NOW as u64 - 100).await
}

fn suspend() -> Command {
    Command::Suspend {
        reason: "spam run".into(),
        evidence: vec![],
        approver: Some("suzuki".into()),
    }
}

fn resume(force: bool) -> Command {
    Command::Resume {
        reason: "cleaned up".into(),
        force,
    }
}

fn terminate() -> Command {
    Command::Terminate {
        reason: "third strike".into(),
        evidence: vec![],
    }
}

fn warn() -> Command {
    Command::Warn {
        reason: "first complaint".into(),
        evidence: vec![],
    }
}

/// The first account's status and the ladder step.
async fn standing(s: &Stores) -> (AccountStatus, Step) {
    let account = s.accounts.account(ACCOUNTS[0]).await.unwrap().unwrap();
    (account.status, s.desk.ladder("C-HANAKO").unwrap().step)
}

/// Runs `commands` in order (each `Ok` or refused as `refused` says) and checks the
/// ladder step and both accounts' status afterwards.
async fn check(commands: Vec<(Command, bool)>, step: Step, status: AccountStatus) {
    let s = stores().await;
    let service = DeskService::new(
        Arc::clone(&s.desk),
        &s.accounts,
        settings(&[], RetryPolicy::default()),
    );
    let case = format!("{commands:?}");
    for (i, (command, refused)) in commands.into_iter().enumerate() {
        let before = standing(&s).await;
        let got = service
            .decide("C-HANAKO".into(), "sato".into(), command, NOW + i as i64)
            .await;
        assert_eq!(got.is_err(), refused, "{case} step {i}: {got:?}");
        if refused {
            assert!(got.unwrap_err().is_usage(), "{case}");
            let after = standing(&s).await;
            assert_eq!(before, after, "a refused step changes nothing: {case}");
        }
    }
    assert_eq!(s.desk.ladder("C-HANAKO").unwrap().step, step, "{case}");
    for name in ACCOUNTS {
        let account = s.accounts.account(name).await.unwrap().unwrap();
        assert_eq!(account.status, status, "{name} after {case}");
    }
}

#[tokio::test]
async fn ladder_steps_set_the_linked_accounts() {
    use AccountStatus::{Active, Suspended, Terminated};
    check(vec![(warn(), false)], Step::Warned, Active).await;
    check(vec![(suspend(), false)], Step::Suspended, Suspended).await;
    check(
        vec![(suspend(), false), (resume(false), false)],
        Step::Resumed,
        Active,
    )
    .await;
    check(vec![(terminate(), false)], Step::Terminated, Terminated).await;
    check(
        vec![(suspend(), false), (terminate(), false)],
        Step::Terminated,
        Terminated,
    )
    .await;
    check(
        vec![(terminate(), false), (resume(false), true)],
        Step::Terminated,
        Terminated,
    )
    .await;
    check(
        vec![(terminate(), false), (resume(true), false)],
        Step::Resumed,
        Active,
    )
    .await;
    // No approver: the default policy refuses, nothing is suspended.
    check(
        vec![(
            Command::Suspend {
                reason: "x".into(),
                evidence: vec![],
                approver: None,
            },
            true,
        )],
        Step::None,
        Active,
    )
    .await;
    check(
        vec![(suspend(), false), (suspend(), true)],
        Step::Suspended,
        Suspended,
    )
    .await;
}

#[tokio::test]
async fn an_unknown_customer_or_linked_account_changes_nothing() {
    let s = stores().await;
    let service = DeskService::new(
        Arc::clone(&s.desk),
        &s.accounts,
        settings(&[], RetryPolicy::default()),
    );
    let err = service
        .decide("C-NOBODY".into(), "sato".into(), suspend(), NOW)
        .await
        .unwrap_err();
    assert!(
        err.is_usage() && err.to_string().contains("C-NOBODY"),
        "{err}"
    );
    // A link to an account the account store does not hold is refused.
    let err = service
        .link_account("typo@isp.example.jp".into(), "C-HANAKO".into())
        .await
        .unwrap_err();
    assert!(err.is_usage(), "{err}");
    assert_eq!(s.desk.customer_accounts("C-HANAKO").unwrap().len(), 2);
}

#[tokio::test]
async fn a_confirmed_overload_case_suspends_at_once_without_approval() {
    let s = stores().await;
    let service = DeskService::new(
        Arc::clone(&s.desk),
        &s.accounts,
        settings(&[], RetryPolicy::default()),
    );
    let case = s
        .desk
        .create_case(&Case::open(
            0,
            "C-HANAKO",
            Category::Overload,
            0,
            None,
            NOW - 60,
        ))
        .unwrap();
    let enforced = service.confirm(case, "sato".into(), NOW).await.unwrap();
    assert_eq!(enforced.transition.ladder.step, Step::Suspended);
    assert_eq!(
        enforced.transition.audit.rule.as_deref(),
        Some("overload-emergency")
    );
    assert_eq!(enforced.accounts.len(), 2, "{:?}", enforced.accounts);
    for name in ACCOUNTS {
        let account = s.accounts.account(name).await.unwrap().unwrap();
        assert_eq!(account.status, AccountStatus::Suspended, "{name}");
        let events = s.accounts.events(Some(name), 0, None, 10).await.unwrap();
        assert_eq!(events.len(), 1, "one status event per account: {events:?}");
    }
}

#[tokio::test]
async fn hooks_run_retry_and_fail_visibly() {
    let retry = RetryPolicy {
        first_delay: 60,
        max_delay: 600,
        max_attempts: 2,
    };
    // (hook command, state after the first run, state after a second run once due)
    let cases: [(&[&str], DeliveryState, DeliveryState); 2] = [
        (&["true"], DeliveryState::Done, DeliveryState::Done),
        (
            &["sh", "-c", "echo no route to NAS >&2; exit 1", "hook"],
            DeliveryState::Pending,
            DeliveryState::Failed,
        ),
    ];
    for (hook, first, second) in cases {
        let s = stores().await;
        let service = DeskService::new(Arc::clone(&s.desk), &s.accounts, settings(hook, retry));
        service
            .decide("C-HANAKO".into(), "sato".into(), warn(), NOW)
            .await
            .unwrap();
        let runs = service.run_due_hooks(NOW, 10).await.unwrap();
        assert_eq!(runs.len(), 1, "{hook:?}: {runs:?}");
        assert_eq!(
            (runs[0].customer.as_str(), runs[0].step.as_str()),
            ("C-HANAKO", "warned")
        );
        assert_eq!(runs[0].state, first, "{hook:?}");
        // Not due again before the backoff has passed.
        assert!(service.run_due_hooks(NOW + 1, 10).await.unwrap().is_empty());
        let again = service.run_due_hooks(NOW + 61, 10).await.unwrap();
        let last = again.last().map_or(first, |r| r.state);
        assert_eq!(last, second, "{hook:?}");
        if second == DeliveryState::Failed {
            let failed = s.desk.deliveries(DeliveryState::Failed, 10).unwrap();
            assert_eq!(failed.len(), 1);
            assert!(
                failed[0]
                    .last_error
                    .as_deref()
                    .unwrap()
                    .contains("no route to NAS"),
                "{failed:?}"
            );
        }
    }
    // Without a hook command nothing runs and the delivery stays queued.
    let s = stores().await;
    let service = DeskService::new(Arc::clone(&s.desk), &s.accounts, settings(&[], retry));
    service
        .decide("C-HANAKO".into(), "sato".into(), warn(), NOW)
        .await
        .unwrap();
    assert!(service.run_due_hooks(NOW, 10).await.unwrap().is_empty());
    let pending = s.desk.deliveries(DeliveryState::Pending, 10).unwrap();
    assert!(
        pending
            .iter()
            .any(|d| d.kind == spamgate_desk::store::DeliveryKind::Hook)
    );
}

#[tokio::test]
async fn an_account_linked_to_a_suspended_customer_is_suspended_by_reapply() {
    let s = stores().await;
    let service = DeskService::new(
        Arc::clone(&s.desk),
        &s.accounts,
        settings(&[], RetryPolicy::default()),
    );
    let late = "hanako-new@isp.example.jp";
    s.accounts
        .put_account(&Account::new(late, NOW as u64))
        .await
        .unwrap();
    let reapply = async || {
        service
            .reapply("C-HANAKO".into(), "sato".into(), NOW + 1)
            .await
            .unwrap()
            .len()
    };
    assert_eq!(reapply().await, 0, "not suspended: nothing to re-apply");
    service
        .decide("C-HANAKO".into(), "sato".into(), suspend(), NOW)
        .await
        .unwrap();
    service
        .link_account(late.into(), "C-HANAKO".into())
        .await
        .unwrap();
    assert_eq!(
        reapply().await,
        1,
        "the late account follows the suspension"
    );
    let account = s.accounts.account(late).await.unwrap().unwrap();
    assert_eq!(account.status, AccountStatus::Suspended);
    assert_eq!(reapply().await, 0, "idempotent");
    service
        .decide("C-HANAKO".into(), "sato".into(), resume(false), NOW + 2)
        .await
        .unwrap();
    assert_eq!(reapply().await, 0, "resumed: nothing to re-apply");
    // Resume reinstated the late account along with the others.
    let account = s.accounts.account(late).await.unwrap().unwrap();
    assert_eq!(account.status, AccountStatus::Active);
    let err = service
        .reapply("C-NOBODY".into(), "sato".into(), NOW)
        .await
        .unwrap_err();
    assert!(err.is_usage(), "{err}");
}
