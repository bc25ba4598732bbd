//! The outbound policy over the socket: authenticated submission, limits, suspension,
//! unauthenticated clients on a submission port, and events for the abuse desk.

mod common;

use std::sync::Arc;

use common::*;
use spamgate_app::ManualClock;
use spamgate_engine::outbound::{Account, AccountStatus, LimitOverrides};
use spamgate_store::{AccountAdmin, EventKind};

async fn harness() -> Harness {
    let dns = dns_builder().start().await.unwrap();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = config_for(dns.addr(), &dir.path().join("db.sqlite"));
    config.submission.messages_per_hour = 5;
    config.submission.message_burst = 5;
    config.submission.recipients_per_day = 20;
    config.submission.recipient_burst = 20;
    Harness::start_with(config, Some(dns), dir, Arc::new(ManualClock::new(T0))).await
}

fn submit<'a>(user: &'a str, state: &'a str, rcpts: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("sasl_username", user),
        ("sasl_method", "PLAIN"),
        ("server_port", "587"),
        ("protocol_state", state),
        ("recipient_count", rcpts),
        // A customer line: the inbound policy would greylist it; the outbound one must not.
        ("client_address", "198.51.100.200"),
        ("client_name", "unknown"),
    ]
}

#[tokio::test]
async fn a_normal_account_sends_until_its_hourly_limit() {
    let h = harness().await;
    let mut conn = h.connect().await;
    for i in 0..5 {
        assert_eq!(
            conn.ask(&submit("taro@example.jp", "RCPT", "0")).await,
            "DUNNO",
            "rcpt {i}"
        );
        assert_eq!(
            conn.ask(&submit("taro@example.jp", "DATA", "1")).await,
            "DUNNO",
            "message {i}"
        );
    }
    let reply = conn.ask(&submit("taro@example.jp", "DATA", "1")).await;
    assert!(
        reply.starts_with("451 4.7.1 Sending limit reached (messages-per-hour)"),
        "{reply}"
    );
    assert!(
        reply.contains("720 seconds"),
        "one message per 12 minutes frees up: {reply}"
    );
    // Another account is not affected.
    assert_eq!(
        conn.ask(&submit("hanako@example.jp", "DATA", "1")).await,
        "DUNNO"
    );
    // After the interval, one more message is allowed.
    h.clock.advance(std::time::Duration::from_secs(720));
    assert_eq!(
        conn.ask(&submit("taro@example.jp", "DATA", "1")).await,
        "DUNNO"
    );

    let events = h
        .service
        .store()
        .events(Some("taro@example.jp"), 0, None, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        matches!(
            events[0].kind,
            EventKind::LimitExceeded {
                used: 5,
                limit_value: 5,
                ..
            }
        ),
        "{events:?}"
    );
}

#[tokio::test]
async fn recipients_are_counted_individually() {
    let h = harness().await;
    let mut conn = h.connect().await;
    assert_eq!(
        conn.ask(&submit("jiro@example.jp", "DATA", "15")).await,
        "DUNNO"
    );
    let reply = conn.ask(&submit("jiro@example.jp", "DATA", "6")).await;
    assert!(
        reply.starts_with("451 4.7.1 Sending limit reached (recipients-per-day)"),
        "{reply}"
    );
    assert_eq!(
        conn.ask(&submit("jiro@example.jp", "DATA", "5")).await,
        "DUNNO",
        "a refused message cost nothing"
    );
}

#[tokio::test]
async fn per_account_override_raises_the_limit() {
    let h = harness().await;
    let account = Account {
        limits: LimitOverrides {
            messages_per_hour: Some(50),
            recipients_per_day: None,
        },
        ..Account::new("shop@example.jp", T0)
    };
    h.service.store().put_account(&account).await.unwrap();
    let mut conn = h.connect().await;
    for _ in 0..5 {
        assert_eq!(
            conn.ask(&submit("shop@example.jp", "DATA", "1")).await,
            "DUNNO"
        );
    }
    assert_eq!(
        conn.ask(&submit("shop@example.jp", "DATA", "1")).await,
        "DUNNO",
        "over the default, under its own limit"
    );
}

#[tokio::test]
async fn suspension_takes_effect_on_the_next_request() {
    let h = harness().await;
    let mut conn = h.connect().await;
    assert_eq!(
        conn.ask(&submit("saburo@example.jp", "RCPT", "0")).await,
        "DUNNO"
    );
    let suspended = Account {
        status: AccountStatus::Suspended,
        note: "spam run, ticket 42".into(),
        ..Account::new("saburo@example.jp", T0)
    };
    h.service.store().put_account(&suspended).await.unwrap();
    let reply = conn.ask(&submit("saburo@example.jp", "RCPT", "0")).await;
    assert!(
        reply.starts_with("554 5.7.1 Sending refused: account saburo@example.jp is suspended"),
        "{reply}"
    );
    let terminated = Account {
        status: AccountStatus::Terminated,
        ..suspended
    };
    h.service.store().put_account(&terminated).await.unwrap();
    let reply = conn.ask(&submit("saburo@example.jp", "DATA", "1")).await;
    assert!(reply.contains("is terminated"), "{reply}");
    let events = h
        .service
        .store()
        .events(Some("saburo@example.jp"), 0, None, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| matches!(e.kind, EventKind::Rejected { .. }))
    );
}

#[tokio::test]
async fn unauthenticated_on_a_submission_port_is_refused() {
    let h = harness().await;
    let reply = h
        .ask(&[
            ("server_port", "587"),
            ("sasl_username", ""),
            ("client_address", "198.51.100.200"),
        ])
        .await;
    assert!(
        reply.starts_with("530 5.7.0 Authentication required"),
        "{reply}"
    );
    // Port 25 without AUTH is inbound mail, judged by the inbound policy.
    let inbound = h
        .ask(&[
            ("server_port", "25"),
            ("client_address", "192.0.2.10"),
            ("client_name", "mail.example.test"),
        ])
        .await;
    assert_eq!(inbound, "DUNNO");
}

#[tokio::test]
async fn suspension_cannot_be_sidestepped_by_letter_case() {
    let h = harness().await;
    let accounts = spamgate_app::accounts::AccountService::new(h.service.store());
    let change = spamgate_app::accounts::StatusChange {
        create: true,
        force: false,
    };
    accounts
        .set_status(
            "TARO@Example.JP",
            AccountStatus::Suspended,
            "spam".into(),
            change,
            T0,
        )
        .await
        .unwrap();
    // (login as Postfix hands it over, what a client may type, surrounding space)
    for login in [
        "taro@example.jp",
        "Taro@example.jp",
        "TARO@EXAMPLE.JP",
        " taro@example.jp ",
    ] {
        let mut conn = h.connect().await;
        let reply = conn.ask(&submit(login, "RCPT", "0")).await;
        assert!(
            reply.starts_with("554 5.7.1 Sending refused: account taro@example.jp is suspended"),
            "{login:?}: {reply}"
        );
    }
    // An operator command names the same account whatever its case.
    let shown = accounts.show("Taro@Example.jp").await.unwrap();
    assert_eq!(
        (shown.username.as_str(), shown.status),
        ("taro@example.jp", AccountStatus::Suspended)
    );
    for bad in ["", "   "] {
        assert!(accounts.show(bad).await.is_err(), "{bad:?}");
    }
    let zero = LimitOverrides {
        messages_per_hour: Some(0),
        recipients_per_day: None,
    };
    let refused = accounts
        .put_limits("taro@example.jp", zero, String::new(), T0)
        .await;
    assert!(
        refused.is_err(),
        "a zero limit is refused like in the config file"
    );
}
