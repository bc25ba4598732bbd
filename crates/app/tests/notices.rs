//! Customer notices mailed through a real SMTP receiver on loopback (Postfix's
//! `smtp-sink`, which writes each message it accepts to a file): a report is filed
//! against a customer, the case confirmed (a warning), and `run_due_notices` mails the
//! queued notice. The received message is parsed back: headers decoded, UTF-8
//! text/plain, in the customer's language, naming the case, the address and the time.
//! An unreachable relay leaves the delivery pending with its error; a later run sends it.

use std::sync::Arc;
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};
use spamgate_app::desk::{
    DeskService, DeskSettings, HookSettings, NoticeSettings, open_sqlite_desk,
};
use spamgate_desk::case::{Customer, CustomerStatus, Language};
use spamgate_desk::desk::DeskConfig;
use spamgate_desk::store::{DeliveryKind, DeliveryState, DeskStore, RetryPolicy};
use spamgate_desk::time::FixedOffset;
use spamgate_store::{SqliteOptions, SqliteStore};

const NOW: i64 = 1_800_000_000;
/// An ARF report from a provider: 192.0.2.1 at 2026-12-01 10:00:00 +09:00.
const ARF: &str = include_str!("../../desk/tests/reports/arf-rfc5965.eml");

mod smtp_sink;
use smtp_sink::{Sink, free_port};

fn settings(port: u16, zone: FixedOffset, retry: RetryPolicy) -> DeskSettings {
    DeskSettings {
        config: DeskConfig::default(),
        zone,
        hook: HookSettings {
            command: Vec::new(),
            timeout: Duration::from_secs(30),
            retry,
        },
        notice: NoticeSettings {
            relay_host: "127.0.0.1".into(),
            relay_port: port,
            from: "Abuse Desk <abuse@isp.example.jp>".into(),
            isp_name: "Example ISP".into(),
            templates: None,
            reply_within: 7 * 86_400,
            timeout: Duration::from_secs(10),
        },
        signals: Default::default(),
        op25b: None,
    }
}

struct Stores {
    dir: tempfile::TempDir,
    accounts: SqliteStore,
    desk: Arc<dyn DeskStore>,
}

fn stores(language: Language, contact: &str) -> Stores {
    let dir = tempfile::tempdir().unwrap();
    let accounts =
        SqliteStore::open(&dir.path().join("spamgate.db"), SqliteOptions::default()).unwrap();
    let desk = open_sqlite_desk(&dir.path().join("desk.db")).unwrap();
    desk.upsert_customer(&Customer {
        id: "C-0001".into(),
        name: "Hanako Yamada".into(),
        contact: contact.into(),
        language,
        plan: "home".into(),
        status: CustomerStatus::Active,
    })
    .unwrap();
    Stores {
        dir,
        accounts,
        desk,
    }
}

/// Files the ARF report against C-0001 and confirms its case: a warning, with a notice
/// queued. Returns the case id.
async fn warn_by_report(service: &DeskService<'_, SqliteStore>) -> i64 {
    let outcome = service.ingest(ARF.as_bytes().to_vec(), NOW).await.unwrap();
    let case = service
        .assign(outcome.report_id, "C-0001".into(), None, "sato".into(), NOW)
        .await
        .unwrap();
    service.confirm(case, "sato".into(), NOW).await.unwrap();
    case
}

struct Expected {
    language: Language,
    zone: FixedOffset,
    contact: &'static str,
    /// Words the decoded subject must hold (the case id is checked besides).
    subject_words: &'static [&'static str],
    /// The report's time as the body must show it.
    time: &'static str,
    body_words: &'static [&'static str],
}

async fn check(expected: Expected) {
    let s = stores(expected.language, expected.contact);
    let port = free_port();
    let sink = Sink::start(port, &s.dir.path().join("sink"));
    let service = DeskService::new(
        Arc::clone(&s.desk),
        &s.accounts,
        settings(port, expected.zone, RetryPolicy::default()),
    );
    let case = warn_by_report(&service).await;
    // The warning queued a hook too, which nothing runs here (no hook command): with a
    // limit of one, the notice is still the one sent.
    let hooks = s.desk.deliveries(DeliveryState::Pending, 10).unwrap();
    assert!(
        hooks.iter().any(|d| d.kind == DeliveryKind::Hook),
        "{hooks:?}"
    );
    let runs = service.run_due_notices(NOW, 1).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].state, DeliveryState::Done, "{runs:?}");
    assert_eq!(runs[0].error, None);
    assert_eq!(runs[0].to.as_deref(), Some(expected.contact));
    assert_eq!(runs[0].step, "warned");
    let done = s.desk.deliveries(DeliveryState::Done, 10).unwrap();
    assert!(
        done.iter().any(|d| d.kind == DeliveryKind::Notify),
        "{done:?}"
    );
    assert!(
        service
            .run_due_notices(NOW + 3600, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let raw = &sink.messages(1)[0];
    let text = String::from_utf8_lossy(raw);
    assert!(
        text.contains(&format!("X-Rcpt-Args: <{}>", expected.contact)),
        "envelope recipient: {text}"
    );
    assert!(
        text.contains("X-Mail-Args: <abuse@isp.example.jp>"),
        "{text}"
    );
    let message = MessageParser::default().parse(raw).unwrap();
    let from = message.from().unwrap().first().unwrap();
    assert_eq!(from.address(), Some("abuse@isp.example.jp"));
    assert_eq!(from.name(), Some("Abuse Desk"));
    let to = message.to().unwrap().first().unwrap();
    assert_eq!(to.address(), Some(expected.contact));
    let subject = message.subject().unwrap();
    assert!(subject.contains(&case.to_string()), "{subject}");
    for word in expected.subject_words {
        assert!(subject.contains(word), "{word:?} in subject {subject:?}");
    }
    // Non-ASCII subjects go out RFC 2047-encoded, never raw 8-bit.
    let subject_line = text
        .lines()
        .find(|l| l.starts_with("Subject:"))
        .unwrap()
        .to_string();
    assert!(subject_line.is_ascii(), "{subject_line}");
    let content_type = message.content_type().unwrap();
    assert_eq!(
        (content_type.ctype(), content_type.subtype()),
        ("text", Some("plain"))
    );
    assert_eq!(
        content_type
            .attribute("charset")
            .map(str::to_ascii_lowercase),
        Some("utf-8".into())
    );
    assert!(message.message_id().is_some());
    let body = message.body_text(0).unwrap();
    assert!(!body.contains("<abuse@"), "the bare desk address: {body}");
    let case_text = case.to_string();
    for word in [case_text.as_str(), "192.0.2.1", expected.time]
        .into_iter()
        .chain(expected.body_words.iter().copied())
    {
        assert!(body.contains(word), "{word:?} in body:\n{body}");
    }
}

#[tokio::test]
async fn a_japanese_customer_gets_a_japanese_notice_with_the_time_in_jst() {
    // The desk shows times in UTC here; Japanese notices are in JST all the same.
    check(Expected {
        language: Language::Ja,
        zone: FixedOffset::UTC,
        contact: "hanako@example.jp",
        subject_words: &["【重要】", "迷惑メールの送信", "案件番号"],
        time: "2026-12-01T10:00:00+09:00",
        body_words: &[
            "Hanako Yamada 様",
            "日本時間",
            "Example ISP",
            "abuse@isp.example.jp",
        ],
    })
    .await;
}

#[tokio::test]
async fn an_english_customer_gets_an_english_notice_in_the_configured_zone() {
    check(Expected {
        language: Language::En,
        zone: FixedOffset::UTC,
        contact: "john@example.com",
        subject_words: &["spam"],
        time: "2026-12-01T01:00:00Z",
        body_words: &["Hanako Yamada", "Example ISP"],
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_relay_leaves_the_notice_pending_until_a_later_run() {
    let retry = RetryPolicy {
        first_delay: 60,
        max_delay: 600,
        max_attempts: 3,
    };
    let s = stores(Language::Ja, "hanako@example.jp");
    let port = free_port();
    let service = DeskService::new(
        Arc::clone(&s.desk),
        &s.accounts,
        settings(port, FixedOffset::JST, retry),
    );
    warn_by_report(&service).await;

    // Nothing listens on the port: refused, recorded, retried later.
    let runs = service.run_due_notices(NOW, 10).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].state, DeliveryState::Pending);
    let error = runs[0].error.clone().unwrap();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    let pending: Vec<_> = s
        .desk
        .deliveries(DeliveryState::Pending, 10)
        .unwrap()
        .into_iter()
        .filter(|d| d.kind == DeliveryKind::Notify)
        .collect();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].attempts, 1);
    assert_eq!(pending[0].last_error.as_deref(), Some(error.as_str()));
    assert_eq!(pending[0].next_attempt, NOW + 60);
    // Not due before the backoff has passed.
    assert!(
        service
            .run_due_notices(NOW + 1, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The relay is back: the next run once due delivers it.
    let sink = Sink::start(port, &s.dir.path().join("sink"));
    let runs = service.run_due_notices(NOW + 60, 10).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].state, DeliveryState::Done, "{runs:?}");
    assert_eq!(sink.messages(1).len(), 1);
    assert!(
        s.desk
            .deliveries(DeliveryState::Pending, 10)
            .unwrap()
            .iter()
            .all(|d| d.kind != DeliveryKind::Notify)
    );
}

#[tokio::test]
async fn without_a_relay_notices_stay_queued() {
    let s = stores(Language::En, "john@example.com");
    let mut settings = settings(free_port(), FixedOffset::JST, RetryPolicy::default());
    settings.notice.relay_host = String::new();
    let service = DeskService::new(Arc::clone(&s.desk), &s.accounts, settings);
    warn_by_report(&service).await;
    assert!(service.run_due_notices(NOW, 10).await.unwrap().is_empty());
    let pending = s.desk.deliveries(DeliveryState::Pending, 10).unwrap();
    assert!(
        pending
            .iter()
            .any(|d| d.kind == DeliveryKind::Notify && d.attempts == 0),
        "{pending:?}"
    );
}

#[tokio::test]
async fn a_step_taken_by_hand_names_the_customers_latest_case() {
    let s = stores(Language::En, "john@example.com");
    let port = free_port();
    let sink = Sink::start(port, &s.dir.path().join("sink"));
    let service = DeskService::new(
        Arc::clone(&s.desk),
        &s.accounts,
        settings(port, FixedOffset::UTC, RetryPolicy::default()),
    );
    let case = warn_by_report(&service).await;
    service.run_due_notices(NOW, 10).await.unwrap();
    // Suspended by hand (with an approver): the queued notice names no case.
    service
        .decide(
            "C-0001".into(),
            "sato".into(),
            spamgate_desk::ladder::Command::Suspend {
                reason: "still sending".into(),
                evidence: vec![],
                approver: Some("suzuki".into()),
            },
            NOW + 10,
        )
        .await
        .unwrap();
    let runs = service.run_due_notices(NOW + 10, 10).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        (runs[0].step.as_str(), runs[0].state),
        ("suspended", DeliveryState::Done)
    );
    let messages = sink.messages(2);
    let suspended = messages
        .iter()
        .map(|m| MessageParser::default().parse(m).unwrap())
        .find(|m| m.message_id() != Some("notice-2@isp.example.jp"))
        .unwrap();
    let subject = suspended.subject().unwrap().to_string();
    let body = suspended.body_text(0).unwrap();
    assert!(
        !subject.contains("none") && !body.contains("none"),
        "{subject}\n{body}"
    );
    for word in [
        case.to_string().as_str(),
        "192.0.2.1",
        "2026-12-01T01:00:00Z",
    ] {
        assert!(body.contains(word), "{word:?} in {body}");
    }
}
