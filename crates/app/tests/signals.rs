//! Submission account events become internal reports (`abuse signals`), on real SQLite
//! files: events written to the account store the way the policy service writes them are
//! counted per account and window; enough of them file one report for the account's
//! customer; a second run (or a later one within the lookback) files nothing again.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Stores, stores_with};
use spamgate_app::desk::{DeskService, DeskSettings, HookSettings, NoticeSettings, SignalPolicy};
use spamgate_desk::desk::DeskConfig;
use spamgate_desk::report::{Category, ReportKind};
use spamgate_desk::store::RetryPolicy;
use spamgate_desk::time::FixedOffset;
use spamgate_engine::outbound::{AccountStatus, LimitKind};
use spamgate_store::{AccountEvent, AccountStore, EventKind};

/// The start of an hour window.
const HOUR: i64 = 1_800_000_000; // 500000 whole hours
const LINKED: &str = "hanako@isp.example.jp";
const UNLINKED: &str = "nobody@isp.example.jp";

fn settings() -> DeskSettings {
    DeskSettings {
        config: DeskConfig::default(),
        zone: FixedOffset::JST,
        hook: HookSettings {
            command: Vec::new(),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        },
        notice: NoticeSettings::default(),
        signals: SignalPolicy {
            window: 3600,
            lookback: 86_400,
            min_limit_trips: 3,
            min_refused_sends: 1,
            min_op25b_hits: 100,
        },
        op25b: None,
    }
}

async fn stores() -> Stores {
    stores_with(&[LINKED, UNLINKED], &[LINKED], HOUR as u64 - 7200).await
}

fn trip(account: &str, at: i64) -> AccountEvent {
    AccountEvent {
        at: at as u64,
        username: account.into(),
        kind: EventKind::LimitExceeded {
            limit: LimitKind::MessagesPerHour,
            used: 100,
            limit_value: 100,
        },
        detail: "198.51.100.7".into(),
    }
}

fn refused(account: &str, at: i64) -> AccountEvent {
    AccountEvent {
        at: at as u64,
        username: account.into(),
        kind: EventKind::Rejected {
            status: AccountStatus::Suspended,
        },
        detail: "198.51.100.7".into(),
    }
}

/// Expected filing: category and the count the report names.
struct Filed {
    category: Category,
    says: &'static str,
}

/// Writes `events`, runs `abuse signals` at `now`, and checks what was filed for
/// C-HANAKO, that unlinked accounts are named, and that a second run files nothing.
async fn check(name: &str, events: Vec<AccountEvent>, now: i64, expected: &[Filed]) {
    let s = stores().await;
    for event in &events {
        s.accounts.record_event(event).await.unwrap();
    }
    let service = DeskService::new(Arc::clone(&s.desk), &s.accounts, settings());
    let run = service.file_account_signals(now).await.unwrap();
    assert_eq!(run.filed.len(), expected.len(), "{name}: {run:?}");
    let mut got: Vec<(Category, String)> = Vec::new();
    for (report_id, customer, case_id) in &run.filed {
        assert_eq!(customer, "C-HANAKO", "{name}");
        assert!(case_id.is_some(), "{name}: filed into a case");
        let stored = s.desk.report(*report_id).unwrap().unwrap();
        assert_eq!(stored.report.kind, ReportKind::Internal, "{name}");
        got.push((
            stored.report.category.unwrap(),
            stored.report.subject.unwrap_or_default(),
        ));
    }
    for want in expected {
        assert!(
            got.iter()
                .any(|(c, text)| *c == want.category && text.contains(want.says)),
            "{name}: {:?} {:?} in {got:?}",
            want.category,
            want.says
        );
    }
    let unlinked_events = events.iter().any(|e| e.username == UNLINKED);
    assert_eq!(
        run.unlinked.iter().any(|a| a == UNLINKED),
        unlinked_events,
        "{name}: {run:?}"
    );
    // Idempotent: again at once, and (when something was filed) an hour later, while
    // the window is still within the lookback.
    let reruns: &[i64] = if expected.is_empty() {
        &[now]
    } else {
        &[now, now + 3600]
    };
    for &later in reruns {
        let again = service.file_account_signals(later).await.unwrap();
        assert!(again.filed.is_empty(), "{name} at {later}: {again:?}");
        assert_eq!(again.already_filed, expected.len(), "{name}: {again:?}");
    }
}

#[tokio::test]
async fn account_events_become_reports_once() {
    let trips = |account, n: i64| (0..n).map(move |i| trip(account, HOUR + 60 * i));
    check(
        "three trips in an ended hour",
        trips(LINKED, 3).collect(),
        HOUR + 3600,
        &[Filed {
            category: Category::Overload,
            says: "tripped 3 times",
        }],
    )
    .await;
    check(
        "two trips are below the threshold",
        trips(LINKED, 2).collect(),
        HOUR + 3600,
        &[],
    )
    .await;
    check(
        "the hour has not ended yet",
        trips(LINKED, 5).collect(),
        HOUR + 3599,
        &[],
    )
    .await;
    check(
        "refused sends of a suspended account, and trips of an unlinked one",
        vec![
            refused(LINKED, HOUR + 5),
            refused(LINKED, HOUR + 9),
            trip(UNLINKED, HOUR + 1),
            trip(UNLINKED, HOUR + 2),
            trip(UNLINKED, HOUR + 3),
        ],
        HOUR + 7200,
        &[Filed {
            category: Category::Spam,
            says: "2 sends refused while suspended",
        }],
    )
    .await;
    check(
        "trips in two hours are two reports",
        trips(LINKED, 3)
            .chain((0..4).map(|i| trip(LINKED, HOUR + 3600 + i)))
            .collect(),
        HOUR + 7200,
        &[
            Filed {
                category: Category::Overload,
                says: "tripped 3 times",
            },
            Filed {
                category: Category::Overload,
                says: "tripped 4 times",
            },
        ],
    )
    .await;
}

#[tokio::test]
async fn a_window_is_filed_once_it_has_ended() {
    let s = stores().await;
    for i in 0..3 {
        s.accounts
            .record_event(&trip(LINKED, HOUR + i))
            .await
            .unwrap();
    }
    let service = DeskService::new(Arc::clone(&s.desk), &s.accounts, settings());
    let before_end = service.file_account_signals(HOUR + 3599).await.unwrap();
    assert!(before_end.filed.is_empty(), "{before_end:?}");
    let after_end = service.file_account_signals(HOUR + 3600).await.unwrap();
    assert_eq!(after_end.filed.len(), 1, "{after_end:?}");
    // Past the lookback the window is no longer read: nothing filed, nothing counted.
    let much_later = service
        .file_account_signals(HOUR + 3600 + 86_400 * 2)
        .await
        .unwrap();
    assert!(much_later.filed.is_empty() && much_later.already_filed == 0);
    assert_eq!(s.desk.reports(None, 10).unwrap().len(), 1);
}
