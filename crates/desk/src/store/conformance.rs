//! The conformance suite every [`DeskStore`] backend must pass.
//!
//! Each check takes an opener that returns a new handle to one database
//! (empty at the first call): the concurrency check opens one handle per
//! thread, as parallel `abuse ingest` processes do. A backend's tests call
//! [`desk_store_conformance!`](crate::desk_store_conformance) with a function that
//! makes such an opener for a fresh database.

use std::net::IpAddr;
use std::sync::Arc;

use super::{DeliveryKind, DeliveryState, DeskError, DeskStore, ReportState, RetryPolicy};
use crate::attribution::{Attribution, AttributionPolicy, Query, TriageReason};
use crate::case::{Case, CaseState, Customer, CustomerStatus, Language};
use crate::desk::{self, DeskConfig};
use crate::history::{Identity, parse_cgnat, parse_radius_detail, parse_static};
use crate::ladder::{Claim, Command, Step};
use crate::report::{Category, ParseOptions, parse_report};
use crate::time::{FixedOffset, from_civil};

/// Returns a new handle to the database under test.
pub type Opener = dyn Fn() -> Box<dyn DeskStore> + Send + Sync;

/// Generates one `#[test]` per check for a backend. `$make` is an expression
/// of type `fn() -> Box<Opener>` that prepares a fresh database.
#[macro_export]
macro_rules! desk_store_conformance {
    ($make:expr) => {
        $crate::desk_store_conformance!(@each $make;
            raw_reports_are_stored_once,
            reports_round_trip_and_queue_by_state,
            customers_accounts_and_identities,
            history_import_is_idempotent_and_attributes,
            cases_ladder_audit_and_claims,
            deliveries_retry_then_fail_visibly,
            parallel_ingests_store_each_message_once,
            ingest_files_folds_and_triages,
            internal_signals_become_reports,
            purge_keeps_open_and_claimed_cases);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let opener = ($make)();
                $crate::store::conformance::$name(&*opener);
            }
        )*
    };
}

fn jst(h: u32, m: u32) -> i64 {
    from_civil(2026, 12, 1, h, m, 0, FixedOffset::JST).expect("valid time")
}

fn customer(id: &str, language: Language) -> Customer {
    Customer {
        id: id.into(),
        name: format!("Customer {id}"),
        contact: format!("{}@example.jp", id.to_ascii_lowercase()),
        language,
        plan: "home".into(),
        status: CustomerStatus::Active,
    }
}

fn arf(ip: &str, arrival: &str, message_id: &str, salt: &str) -> Vec<u8> {
    format!(
        "From: fbl@example.com\r\nTo: abuse@isp.example.jp\r\nSubject: report {salt}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nspam report {salt}\r\n\
         --b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: t/1\r\nVersion: 1\r\n\
         Source-IP: {ip}\r\nArrival-Date: {arrival}\r\n\r\n\
         --b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {message_id}\r\nSubject: spam\r\n\r\n--b--\r\n"
    )
    .into_bytes()
}

const RADIUS: &str = "Tue Dec  1 10:00:00 2026
\tAcct-Status-Type = Start
\tUser-Name = \"alice@isp.example.jp\"
\tAcct-Session-Id = \"A1\"
\tNAS-IP-Address = 192.0.2.254
\tFramed-IP-Address = 192.0.2.10
\tDelegated-IPv6-Prefix = 2001:db8:aa00:100::/56

Tue Dec  1 11:00:00 2026
\tAcct-Status-Type = Stop
\tUser-Name = \"alice@isp.example.jp\"
\tAcct-Session-Id = \"A1\"
\tNAS-IP-Address = 192.0.2.254
\tFramed-IP-Address = 192.0.2.10
\tDelegated-IPv6-Prefix = 2001:db8:aa00:100::/56
\tAcct-Session-Time = 3600

Tue Dec  1 11:30:00 2026
\tAcct-Status-Type = Start
\tUser-Name = \"bob@isp.example.jp\"
\tAcct-Session-Id = \"B1\"
\tNAS-IP-Address = 192.0.2.254
\tFramed-IP-Address = 192.0.2.10

Tue Dec  1 12:00:00 2026
\tAcct-Status-Type = Start
\tUser-Name = \"bob@isp.example.jp\"
\tAcct-Session-Id = \"B2\"
\tNAS-IP-Address = 192.0.2.250
\tFramed-IP-Address = 192.0.2.11

Tue Dec  1 12:10:00 2026
\tAcct-Status-Type = Accounting-On
\tNAS-IP-Address = 192.0.2.250

";

fn seed_history(store: &dyn DeskStore) {
    for (id, lang) in [
        ("C-ALICE", Language::Ja),
        ("C-BOB", Language::En),
        ("C-CGN", Language::Ja),
        ("C-STATIC", Language::En),
    ] {
        store.upsert_customer(&customer(id, lang)).unwrap();
    }
    store
        .link_identity(
            &Identity::RadiusUser("alice@isp.example.jp".into()),
            "C-ALICE",
        )
        .unwrap();
    store
        .link_identity(&Identity::RadiusUser("bob@isp.example.jp".into()), "C-BOB")
        .unwrap();
    let radius = parse_radius_detail(RADIUS.as_bytes(), 0, FixedOffset::JST);
    store
        .import_batch("radius:/var/log/radacct/detail", &radius)
        .unwrap();
    store
        .import_batch(
            "cgnat",
            &parse_cgnat("198.51.100.1,1024,2047,C-CGN,2026-12-01T00:00:00Z\n"),
        )
        .unwrap();
    store
        .import_batch(
            "static",
            &parse_static("C-STATIC,203.0.113.16/29,2026-01-01T00:00:00Z\n"),
        )
        .unwrap();
}

pub fn raw_reports_are_stored_once(open: &Opener) {
    let store = open();
    let first = store.put_raw(b"message one", 100).unwrap();
    let again = store.put_raw(b"message one", 200).unwrap();
    let other = store.put_raw(b"message two", 300).unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate, "the second copy is noted");
    assert_eq!(first.id, again.id, "and stored once");
    assert_ne!(first.id, other.id);
    assert_eq!(first.sha256, super::sha256_hex(b"message one"));
    assert_eq!(first.sha256.len(), 64);
    let raw = store.raw(first.id).unwrap().unwrap();
    assert_eq!(
        (
            raw.bytes.as_slice(),
            raw.copies,
            raw.first_seen,
            raw.last_seen
        ),
        (&b"message one"[..], 2, 100, 200)
    );
    assert!(store.raw(other.id + 1000).unwrap().is_none());
    // Bytes that are not text at all are kept exactly.
    let junk: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let put = store.put_raw(&junk, 400).unwrap();
    assert_eq!(store.raw(put.id).unwrap().unwrap().bytes, junk);
}

pub fn reports_round_trip_and_queue_by_state(open: &Opener) {
    let store = open();
    let raw = store.put_raw(b"x", 1).unwrap();
    let report = parse_report(
        &arf(
            "192.0.2.10",
            "Tue, 1 Dec 2026 10:30:00 +0900",
            "<m1@x>",
            "a",
        ),
        &ParseOptions::default(),
    );
    let id = store.put_report(raw.id, &report, 5).unwrap();
    assert_eq!(
        store.put_report(raw.id, &report, 6).unwrap(),
        id,
        "one report per raw message"
    );
    let stored = store.report(id).unwrap().unwrap();
    assert_eq!(
        (
            stored.report.clone(),
            stored.state,
            stored.raw_id,
            stored.received_at
        ),
        (report, ReportState::New, raw.id, 5)
    );
    assert_eq!(store.report_for_raw(raw.id).unwrap().unwrap().id, id);

    let junk_raw = store.put_raw(b"\x00\xff junk", 2).unwrap();
    let junk = parse_report(b"\x00\xff junk", &ParseOptions::default());
    let junk_id = store.put_report(junk_raw.id, &junk, 7).unwrap();
    let triage = store.reports(Some(ReportState::Triage), 10).unwrap();
    assert_eq!(
        triage.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![junk_id],
        "unknown reports queue for triage"
    );
    assert_eq!(store.reports(None, 10).unwrap().len(), 2);
    let missing = store.set_report_outcome(
        junk_id + 100,
        &super::ReportOutcome {
            state: ReportState::Dismissed,
            customer: None,
            case_id: None,
            attribution: None,
        },
    );
    assert!(missing.is_err(), "an unknown report is an error");
}

pub fn customers_accounts_and_identities(open: &Opener) {
    let store = open();
    store
        .upsert_customer(&customer("C1", Language::Ja))
        .unwrap();
    store
        .upsert_customer(&customer("C2", Language::En))
        .unwrap();
    let mut renamed = customer("C1", Language::Ja);
    renamed.name = "山田 太郎".into();
    store.upsert_customer(&renamed).unwrap();
    assert_eq!(store.customer("C1").unwrap().unwrap(), renamed);
    assert!(store.customer("C9").unwrap().is_none());
    let page = store.customers(None, 1).unwrap();
    assert_eq!(
        page.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["C1"]
    );
    let next = store.customers(Some("C1"), 10).unwrap();
    assert_eq!(
        next.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["C2"]
    );

    store.link_account("taro@isp.example.jp", "C1").unwrap();
    store.link_account("shop@isp.example.jp", "C1").unwrap();
    assert!(
        store.link_account("x@isp.example.jp", "C9").is_err(),
        "unknown customer: nothing linked"
    );
    assert!(
        store
            .account_customer("x@isp.example.jp")
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .account_customer("taro@isp.example.jp")
            .unwrap()
            .as_deref(),
        Some("C1")
    );
    assert_eq!(
        store.customer_accounts("C1").unwrap(),
        ["shop@isp.example.jp", "taro@isp.example.jp"]
    );

    // Bulk forms, as `customer import` uses them; an unknown customer rolls the whole batch back.
    let many: Vec<Customer> = (0..500)
        .map(|i| customer(&format!("B{i:04}"), Language::En))
        .collect();
    assert_eq!(store.upsert_customers(&many).unwrap(), 500);
    assert_eq!(
        store.customers(Some("B0498"), 10).unwrap().len(),
        1 + 2,
        "B0499, C1, C2"
    );
    let links = vec![
        (
            Identity::RadiusUser("b1@isp.example.jp".into()),
            "B0001".to_string(),
        ),
        (
            Identity::RadiusUser("b2@isp.example.jp".into()),
            "NOBODY".to_string(),
        ),
    ];
    assert!(store.link_identities(&links).is_err());
    assert!(
        store.identity_customer(&links[0].0).unwrap().is_none(),
        "nothing half-linked"
    );
    assert_eq!(store.link_identities(&links[..1]).unwrap(), 1);
    assert_eq!(
        store.identity_customer(&links[0].0).unwrap().as_deref(),
        Some("B0001")
    );

    let hw = Identity::HwAddr("aa:bb:cc:00:00:01".into());
    store.link_identity(&hw, "C2").unwrap();
    assert_eq!(store.identity_customer(&hw).unwrap().as_deref(), Some("C2"));
    assert!(
        store
            .link_identity(&Identity::ClientId("01".into()), "C9")
            .is_err()
    );
}

fn check_who(
    store: &dyn DeskStore,
    address: &str,
    port: Option<u16>,
    at: i64,
    want: Result<&str, TriageReason>,
) {
    let query = Query {
        address: address.parse::<IpAddr>().unwrap(),
        port,
        at,
    };
    let got = store
        .attribute(
            query,
            &AttributionPolicy {
                skew: 60,
                lost_stop_grace: 3600,
            },
        )
        .unwrap();
    match (&got, want) {
        (
            Attribution::Customer {
                customer, evidence, ..
            },
            Ok(expected),
        ) => {
            assert_eq!(customer, expected, "{address}");
            assert!(!evidence.is_empty());
        }
        (Attribution::Triage { reason, .. }, Err(expected)) => {
            assert_eq!(*reason, expected, "{address} {port:?}")
        }
        _ => panic!("{address} {port:?} at {at}: wanted {want:?}, got {got:#?}"),
    }
}

pub fn history_import_is_idempotent_and_attributes(open: &Opener) {
    let store = open();
    seed_history(&*store);
    assert_eq!(
        store
            .import_offset("radius:/var/log/radacct/detail")
            .unwrap(),
        RADIUS.len() as u64
    );
    assert_eq!(store.import_offset("never-seen").unwrap(), 0);
    type Row<'a> = (&'a str, Option<u16>, i64, Result<&'a str, TriageReason>);
    let table: &[Row<'_>] = &[
        ("192.0.2.10", None, jst(10, 30), Ok("C-ALICE")),
        ("2001:db8:aa00:1ff::1", None, jst(10, 30), Ok("C-ALICE")),
        (
            "192.0.2.10",
            None,
            jst(11, 15),
            Err(TriageReason::NoCandidate),
        ),
        ("192.0.2.10", None, jst(11, 45), Ok("C-BOB")),
        // Bob's session on the restarted NAS ended at the Accounting-On.
        ("192.0.2.11", None, jst(12, 5), Ok("C-BOB")),
        (
            "192.0.2.11",
            None,
            jst(12, 20),
            Err(TriageReason::NoCandidate),
        ),
        ("198.51.100.1", Some(1500), jst(12, 0), Ok("C-CGN")),
        (
            "198.51.100.1",
            None,
            jst(12, 0),
            Err(TriageReason::PortRequired),
        ),
        ("203.0.113.23", None, jst(12, 0), Ok("C-STATIC")),
        (
            "203.0.113.24",
            None,
            jst(12, 0),
            Err(TriageReason::NoCandidate),
        ),
        (
            "2001:db8:ffff::1",
            None,
            jst(12, 0),
            Err(TriageReason::NoCandidate),
        ),
    ];
    for (address, port, at, want) in table {
        check_who(&*store, address, *port, *at, *want);
    }
    // A deterministic CGNAT address cut into 1 000 port blocks at one time:
    // the port picks its block however many there are.
    let blocks: String = (0..1000u32)
        .map(|b| {
            format!(
                "198.51.100.2,{},{},C-CGN,2026-12-01T00:00:00Z\n",
                1024 + b * 64,
                1024 + b * 64 + 63
            )
        })
        .collect();
    store
        .import_batch("cgnat-2", &parse_cgnat(&blocks))
        .unwrap();
    check_who(
        &*store,
        "198.51.100.2",
        Some(1024 + 999 * 64 + 5),
        jst(12, 0),
        Ok("C-CGN"),
    );
    check_who(
        &*store,
        "198.51.100.2",
        Some(1023),
        jst(12, 0),
        Err(TriageReason::NoCandidate),
    );
    // Re-import: nothing duplicated, nothing changed.
    let before = store
        .intervals_at("192.0.2.10".parse().unwrap(), None, jst(23, 0), 0)
        .unwrap();
    seed_history(&*store);
    let after = store
        .intervals_at("192.0.2.10".parse().unwrap(), None, jst(23, 0), 0)
        .unwrap();
    assert_eq!(before.len(), 2, "alice's and bob's sessions");
    let mut before_sorted = before.clone();
    let mut after_sorted = after;
    before_sorted.sort_by(|a, b| a.key.cmp(&b.key));
    after_sorted.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(before_sorted, after_sorted);
    // A Stop arriving in a later increment closes the open session.
    let tail = "Tue Dec  1 13:00:00 2026\n\tAcct-Status-Type = Stop\n\tUser-Name = \"bob@isp.example.jp\"\n\tAcct-Session-Id = \"B1\"\n\tNAS-IP-Address = 192.0.2.254\n\tFramed-IP-Address = 192.0.2.10\n\tAcct-Session-Time = 5400\n\n";
    let batch = parse_radius_detail(tail.as_bytes(), RADIUS.len() as u64, FixedOffset::JST);
    store
        .import_batch("radius:/var/log/radacct/detail", &batch)
        .unwrap();
    check_who(&*store, "192.0.2.10", None, jst(12, 45), Ok("C-BOB"));
    check_who(
        &*store,
        "192.0.2.10",
        None,
        jst(13, 2),
        Err(TriageReason::NoCandidate),
    );
    assert_eq!(
        store
            .import_offset("radius:/var/log/radacct/detail")
            .unwrap(),
        (RADIUS.len() + tail.len()) as u64
    );
    // Retention: everything that ended before 11:50 goes; the static block stays.
    let purged = store.purge_intervals(jst(11, 50)).unwrap();
    assert_eq!(purged, 2, "alice's IPv4 and IPv6 intervals");
    check_who(
        &*store,
        "192.0.2.10",
        None,
        jst(10, 30),
        Err(TriageReason::NoCandidate),
    );
    check_who(&*store, "203.0.113.23", None, jst(12, 0), Ok("C-STATIC"));
}

pub fn cases_ladder_audit_and_claims(open: &Opener) {
    let store = open();
    store
        .upsert_customer(&customer("C1", Language::Ja))
        .unwrap();
    let config = DeskConfig::default();
    let case = Case::open(0, "C1", Category::Spam, 1, Some("<a@x>"), 100);
    let id = store.create_case(&case).unwrap();
    let mut stored = store.case(id).unwrap().unwrap();
    assert_eq!(stored.id, id);
    stored.add_report(2, Some("<b@x>"), 200);
    store.save_case(&stored).unwrap();
    assert_eq!(
        store.customer_cases("C1", 150).unwrap(),
        vec![stored.clone()]
    );
    assert!(store.customer_cases("C1", 250).unwrap().is_empty());
    assert_eq!(store.cases(Some(CaseState::Open), 10).unwrap().len(), 1);

    let t = desk::confirm_case(store.as_ref(), id, "alice", 1_000, &config).unwrap();
    assert_eq!(t.ladder.step, Step::Warned);
    assert_eq!(store.ladder("C1").unwrap(), t.ladder);
    assert_eq!(store.case(id).unwrap().unwrap().state, CaseState::Confirmed);
    let queued = store.due_deliveries(1_000, 10).unwrap();
    assert_eq!(
        queued.iter().map(|d| d.kind).collect::<Vec<_>>(),
        vec![DeliveryKind::Hook, DeliveryKind::Notify],
        "the warning's hook and notice are queued"
    );

    let denied = desk::decide(
        store.as_ref(),
        "C1",
        "alice",
        Command::Suspend {
            reason: "x".into(),
            evidence: vec![],
            approver: None,
        },
        1_100,
        &config,
    );
    assert!(denied.is_err(), "suspension needs an approver by default");
    assert_eq!(
        store.ladder("C1").unwrap().step,
        Step::Warned,
        "nothing changed"
    );
    let t = desk::decide(
        store.as_ref(),
        "C1",
        "alice",
        Command::Suspend {
            reason: "botnet".into(),
            evidence: vec![format!("case:{id}")],
            approver: Some("bob".into()),
        },
        1_200,
        &config,
    )
    .unwrap();
    assert_eq!(t.ladder.step, Step::Suspended);
    assert_eq!(
        store.customer("C1").unwrap().unwrap().status,
        CustomerStatus::Suspended
    );
    let op25b: Vec<_> = store
        .due_deliveries_of(DeliveryKind::Op25b, 1_200, 10)
        .unwrap();
    assert_eq!(op25b.len(), 1, "the suspension queues the OP25B revocation");
    assert_eq!(op25b[0].customer, "C1");
    assert!(
        op25b[0].payload.contains("revoke-op25b-exemptions"),
        "{}",
        op25b[0].payload
    );
    assert!(
        desk::decide(
            store.as_ref(),
            "C404",
            "alice",
            Command::Terminate {
                reason: "x".into(),
                evidence: vec![]
            },
            1,
            &config
        )
        .is_err()
    );

    let claim = Claim {
        customer: "C1".into(),
        case_ids: vec![id],
        amount: 50_000,
        currency: "JPY".into(),
        basis: "delisting work".into(),
        items: vec![],
    };
    let claim_id = desk::file_claim(store.as_ref(), &claim, "legal", 1_300).unwrap();
    assert_eq!(store.claims("C1").unwrap(), vec![(claim_id, claim.clone())]);
    let foreign = Claim {
        case_ids: vec![id + 99],
        ..claim
    };
    assert!(
        desk::file_claim(store.as_ref(), &foreign, "legal", 1_300).is_err(),
        "a case of nobody"
    );

    let trail = store.audit("C1").unwrap();
    let actions: Vec<&str> = trail.iter().map(|(_, a)| a.action.as_str()).collect();
    assert_eq!(actions, ["warn", "suspend", "claim"]);
    assert_eq!(trail[1].1.approver.as_deref(), Some("bob"));
    assert!(trail.windows(2).all(|w| w[0].0 < w[1].0), "audit ids grow");
}

pub fn deliveries_retry_then_fail_visibly(open: &Opener) {
    let store = open();
    let retry = RetryPolicy {
        first_delay: 10,
        max_delay: 25,
        max_attempts: 3,
    };
    let id = store
        .enqueue_delivery(DeliveryKind::Hook, "C1", "{\"step\":\"suspended\"}", 0)
        .unwrap();
    let ok = store
        .enqueue_delivery(DeliveryKind::Notify, "C1", "{}", 0)
        .unwrap();
    assert_eq!(store.due_deliveries(0, 10).unwrap().len(), 2);
    // Per kind, the limit counts that kind only: a stuck hook cannot crowd out a notice.
    let of = |kind| {
        store
            .due_deliveries_of(kind, 0, 1)
            .unwrap()
            .iter()
            .map(|d| (d.id, d.kind))
            .collect::<Vec<_>>()
    };
    assert_eq!(of(DeliveryKind::Hook), [(id, DeliveryKind::Hook)]);
    assert_eq!(of(DeliveryKind::Notify), [(ok, DeliveryKind::Notify)]);
    store.delivery_done(ok, 1).unwrap();
    assert!(store.delivery_done(ok, 2).is_err(), "done once");
    assert_eq!(
        store.delivery_failed(id, 1, "exit 1", &retry).unwrap(),
        DeliveryState::Pending
    );
    assert!(
        store.due_deliveries(10, 10).unwrap().is_empty(),
        "backing off"
    );
    assert_eq!(store.due_deliveries(11, 10).unwrap().len(), 1);
    assert_eq!(
        store.delivery_failed(id, 11, "exit 1", &retry).unwrap(),
        DeliveryState::Pending
    );
    assert!(
        store.due_deliveries(30, 10).unwrap().is_empty(),
        "20 s after the second failure"
    );
    assert_eq!(
        store
            .delivery_failed(id, 31, "exit 2: no route", &retry)
            .unwrap(),
        DeliveryState::Failed
    );
    assert!(store.due_deliveries(1_000_000, 10).unwrap().is_empty());
    let failed = store.deliveries(DeliveryState::Failed, 10).unwrap();
    assert_eq!(failed.len(), 1, "a failed hook stays visible");
    assert_eq!(
        (failed[0].attempts, failed[0].last_error.as_deref()),
        (3, Some("exit 2: no route"))
    );
    assert_eq!(store.deliveries(DeliveryState::Done, 10).unwrap().len(), 1);
    // An operator's retry: the failed delivery is due again with its attempts kept,
    // so one more failure makes it failed again; a done or unknown one is refused.
    let again = store.retry_delivery(id, 40).unwrap();
    assert_eq!(
        (again.state, again.attempts, again.next_attempt),
        (DeliveryState::Pending, 3, 40)
    );
    assert_eq!(store.due_deliveries(40, 10).unwrap()[0].id, id);
    assert_eq!(
        store.delivery_failed(id, 41, "exit 2", &retry).unwrap(),
        DeliveryState::Failed
    );
    assert!(matches!(
        store.retry_delivery(ok, 50),
        Err(DeskError::NotFound { .. })
    ));
    assert!(matches!(
        store.retry_delivery(9999, 50),
        Err(DeskError::NotFound { .. })
    ));
    assert_eq!(store.deliveries(DeliveryState::Done, 10).unwrap().len(), 1);
}

pub fn parallel_ingests_store_each_message_once(open: &Opener) {
    // Opening the database first makes its schema, as the first ingest would.
    let first = open();
    seed_history(&*first);
    let opener: Arc<&Opener> = Arc::new(open);
    let config = DeskConfig::default();
    // 100 ingests of 50 distinct messages, each fed twice, all at once.
    std::thread::scope(|scope| {
        for i in 0..100 {
            let opener = Arc::clone(&opener);
            let config = &config;
            scope.spawn(move || {
                let store = opener();
                let n = i % 50;
                let bytes = arf(
                    "192.0.2.10",
                    "Tue, 1 Dec 2026 10:30:00 +0900",
                    &format!("<p{n}@x>"),
                    &n.to_string(),
                );
                desk::ingest(store.as_ref(), &bytes, 1_000 + i as i64, config).unwrap();
            });
        }
    });
    let reports = first.reports(None, 1_000).unwrap();
    assert_eq!(reports.len(), 50, "each message stored once");
    for report in &reports {
        let raw = first.raw(report.raw_id).unwrap().unwrap();
        assert_eq!(raw.copies, 2, "and its second copy noted");
        assert_eq!(report.customer.as_deref(), Some("C-ALICE"));
        assert_eq!(report.state, ReportState::Filed);
    }
    let filed: usize = first
        .customer_cases("C-ALICE", 0)
        .unwrap()
        .iter()
        .map(|c| c.report_ids.len())
        .sum();
    assert_eq!(filed, 50, "every report is in a case exactly once");
}

pub fn ingest_files_folds_and_triages(open: &Opener) {
    let store = open();
    seed_history(&*store);
    let config = DeskConfig::default();
    let now = jst(15, 0);
    let first = desk::ingest(
        &*store,
        &arf(
            "192.0.2.10",
            "Tue, 1 Dec 2026 10:30:00 +0900",
            "<s1@x>",
            "1",
        ),
        now,
        &config,
    )
    .unwrap();
    assert_eq!(
        (first.state, first.customer.as_deref()),
        (ReportState::Filed, Some("C-ALICE"))
    );
    let case_id = first.case_id.unwrap();
    // The same bytes again: stored once, noted, filed once.
    let again = desk::ingest(
        &*store,
        &arf(
            "192.0.2.10",
            "Tue, 1 Dec 2026 10:30:00 +0900",
            "<s1@x>",
            "1",
        ),
        now,
        &config,
    )
    .unwrap();
    assert!(again.raw.duplicate);
    assert_eq!(
        (again.report_id, again.case_id),
        (first.report_id, Some(case_id))
    );
    // Another reporter's copy of the same spam: counted on the case, no new case.
    let dup = desk::ingest(
        &*store,
        &arf(
            "192.0.2.10",
            "Tue, 1 Dec 2026 10:31:00 +0900",
            "<s1@x>",
            "2",
        ),
        now,
        &config,
    )
    .unwrap();
    assert_eq!(dup.fold, Some(crate::case::Fold::Duplicate { case_id }));
    // New spam the same day: same case.
    let more = desk::ingest(
        &*store,
        &arf(
            "2001:db8:aa00:100::99",
            "Tue, 1 Dec 2026 10:40:00 +0900",
            "<s2@x>",
            "3",
        ),
        now,
        &config,
    )
    .unwrap();
    assert_eq!(more.fold, Some(crate::case::Fold::Attach { case_id }));
    let case = store.case(case_id).unwrap().unwrap();
    assert_eq!((case.report_ids.len(), case.duplicate_count), (3, 1));
    assert_eq!(store.case_reports(case_id).unwrap().len(), 3);
    // An address nobody held, and junk: stored, triaged, never lost.
    let nobody = desk::ingest(
        &*store,
        &arf(
            "192.0.2.99",
            "Tue, 1 Dec 2026 10:30:00 +0900",
            "<s3@x>",
            "4",
        ),
        now,
        &config,
    )
    .unwrap();
    assert_eq!(nobody.state, ReportState::Triage);
    let stored = store.report(nobody.report_id).unwrap().unwrap();
    assert!(matches!(
        stored.attribution,
        Some(Attribution::Triage {
            reason: TriageReason::NoCandidate,
            ..
        })
    ));
    let junk = desk::ingest(&*store, b"\x00\x01\x02 not mail", now, &config).unwrap();
    assert_eq!(junk.state, ReportState::Triage);
    assert_eq!(
        store.raw(junk.raw.id).unwrap().unwrap().bytes,
        b"\x00\x01\x02 not mail"
    );
    // A crash after the raw bytes were stored (kill -9 mid-ingest), and one
    // after the report was stored: the MTA's retry files each exactly once.
    let crashed_early = arf(
        "192.0.2.10",
        "Tue, 1 Dec 2026 10:50:00 +0900",
        "<k1@x>",
        "k1",
    );
    store.put_raw(&crashed_early, now).unwrap();
    let crashed_late = arf(
        "192.0.2.10",
        "Tue, 1 Dec 2026 10:51:00 +0900",
        "<k2@x>",
        "k2",
    );
    let late_raw = store.put_raw(&crashed_late, now).unwrap();
    store
        .put_report(
            late_raw.id,
            &parse_report(&crashed_late, &config.parse),
            now,
        )
        .unwrap();
    for bytes in [&crashed_early, &crashed_late] {
        let retried = desk::ingest(&*store, bytes, now + 60, &config).unwrap();
        assert!(retried.raw.duplicate);
        assert_eq!(retried.state, ReportState::Filed);
        assert_eq!(store.raw(retried.raw.id).unwrap().unwrap().copies, 2);
        let again = desk::ingest(&*store, bytes, now + 120, &config).unwrap();
        assert_eq!(again.report_id, retried.report_id);
    }
    let case = store.case(case_id).unwrap().unwrap();
    assert_eq!(case.report_ids.len(), 5, "each retried report filed once");
    // A person assigns the orphan.
    let assigned = desk::assign(
        &*store,
        nobody.report_id,
        "C-BOB",
        None,
        "alice",
        now,
        &config,
    )
    .unwrap();
    assert_ne!(assigned, case_id);
    assert_eq!(
        store.report(nobody.report_id).unwrap().unwrap().state,
        ReportState::Filed
    );
    assert!(
        desk::assign(
            &*store,
            junk.report_id,
            "C-404",
            Some(Category::Spam),
            "alice",
            now,
            &config
        )
        .is_err()
    );
    assert_eq!(
        store.report(junk.report_id).unwrap().unwrap().state,
        ReportState::Triage,
        "nothing changed"
    );
}

pub fn internal_signals_become_reports(open: &Opener) {
    use crate::report::{InternalSignal, ReportKind};
    let store = open();
    seed_history(&*store);
    store
        .link_account("bob-smtp@isp.example.jp", "C-BOB")
        .unwrap();
    let config = DeskConfig::default();
    let trips = InternalSignal::SubmissionLimitTrips {
        account: "bob-smtp@isp.example.jp".into(),
        trips: 12,
    };
    let filed = desk::ingest_internal(&*store, &trips, jst(11, 0), jst(11, 1), &config).unwrap();
    assert_eq!(
        (filed.state, filed.customer.as_deref()),
        (ReportState::Filed, Some("C-BOB"))
    );
    let case = store.case(filed.case_id.unwrap()).unwrap().unwrap();
    assert_eq!(case.category, Category::Overload);
    let stored = store.report(filed.report_id).unwrap().unwrap();
    assert_eq!(stored.report.kind, ReportKind::Internal);
    assert!(
        String::from_utf8(store.raw(filed.raw.id).unwrap().unwrap().bytes)
            .unwrap()
            .contains("submission-limit-trips")
    );
    // OP25B hits are mapped through the address history.
    let hits = InternalSignal::Op25bBlocked {
        address: "192.0.2.10".parse().unwrap(),
        attempts: 500,
    };
    let op25b = desk::ingest_internal(&*store, &hits, jst(10, 20), jst(11, 2), &config).unwrap();
    assert_eq!(op25b.customer.as_deref(), Some("C-ALICE"));
    // An account nobody owns: triage.
    let orphan = InternalSignal::RefusedWhileSuspended {
        account: "ghost@isp.example.jp".into(),
        attempts: 3,
    };
    let triaged = desk::ingest_internal(&*store, &orphan, jst(11, 0), jst(11, 3), &config).unwrap();
    assert_eq!(triaged.state, ReportState::Triage);
}

/// Retention: what `purge` removes, and what it keeps unless forced.
pub fn purge_keeps_open_and_claimed_cases(open: &Opener) {
    use super::{ReportOutcome, Retention};
    use crate::report::{Report, ReportKind};
    const DAY: i64 = 86_400;
    let now = 20_000 * DAY;
    let old = now - 40 * DAY;
    let recent = now - DAY;
    let retention = Retention {
        sessions: 10 * DAY,
        reports: 20 * DAY,
        cases: 30 * DAY,
    };
    let store = open();
    store
        .upsert_customer(&customer("C1", Language::Ja))
        .unwrap();
    let report = |text: &str, at: i64| {
        let raw = store.put_raw(text.as_bytes(), at).unwrap();
        let id = store
            .put_report(raw.id, &Report::empty(ReportKind::PlainText), at)
            .unwrap();
        (raw.id, id)
    };
    let filed = |text: &str, category: Category, at: i64, state: CaseState| {
        let (raw, id) = report(text, at);
        let (case_id, _) = store
            .file_into_case(id, "C1", category, None, at, &Default::default())
            .unwrap();
        store
            .set_report_outcome(
                id,
                &ReportOutcome {
                    state: ReportState::Filed,
                    customer: Some("C1".into()),
                    case_id: Some(case_id),
                    attribution: None,
                },
            )
            .unwrap();
        let mut case = store.case(case_id).unwrap().unwrap();
        case.state = state;
        store.save_case(&case).unwrap();
        (raw, id, case_id)
    };
    let closed_old = filed("closed old", Category::Spam, old, CaseState::Closed);
    let open_old = filed("open old", Category::Overload, old, CaseState::Confirmed);
    let claimed_old = filed("claimed old", Category::Vandalism, old, CaseState::Closed);
    let closed_recent = filed(
        "closed recent",
        Category::Illegal,
        recent,
        CaseState::Closed,
    );
    desk::file_claim(
        &*store,
        &Claim {
            customer: "C1".into(),
            case_ids: vec![claimed_old.2],
            amount: 10_000,
            currency: "JPY".into(),
            basis: "operator time".into(),
            items: vec![],
        },
        "legal",
        old,
    )
    .unwrap();
    let triage_old = report("triage old", old);
    let triage_recent = report("triage recent", recent);
    for id in [triage_old.1, triage_recent.1] {
        store
            .set_report_outcome(id, &ReportOutcome::triage())
            .unwrap();
    }
    store
        .import_batch(
            "static",
            &parse_static(&format!(
                "C1,203.0.113.16/29,{},{}\nC1,203.0.113.24/29,{},\n",
                crate::time::rfc3339(old - DAY, FixedOffset::UTC),
                crate::time::rfc3339(old, FixedOffset::UTC),
                crate::time::rfc3339(old, FixedOffset::UTC),
            )),
        )
        .unwrap();
    let done = store
        .enqueue_delivery(DeliveryKind::Hook, "C1", "{}", old)
        .unwrap();
    store.delivery_done(done, old).unwrap();
    let failed = store
        .enqueue_delivery(DeliveryKind::Hook, "C1", "{}", old)
        .unwrap();
    let once = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    store
        .delivery_failed(failed, old, "refused", &once)
        .unwrap();

    let summary = store.purge(&retention.cutoffs(now, false)).unwrap();
    assert_eq!(
        (
            summary.sessions,
            summary.cases,
            summary.reports,
            summary.raw_reports
        ),
        (1, 1, 2, 2),
        "{summary:?}"
    );
    assert_eq!(summary.deliveries, 1, "the done one: {summary:?}");
    assert_eq!(
        (summary.kept_open_cases, summary.kept_claimed_cases),
        (1, 1),
        "{summary:?}"
    );
    assert!(store.case(closed_old.2).unwrap().is_none());
    assert!(store.report(closed_old.1).unwrap().is_none());
    assert!(store.raw(closed_old.0).unwrap().is_none());
    assert!(store.report(triage_old.1).unwrap().is_none());
    for (raw, report, case) in [open_old, claimed_old, closed_recent] {
        assert!(store.case(case).unwrap().is_some(), "case {case} kept");
        assert!(store.report(report).unwrap().is_some());
        assert!(store.raw(raw).unwrap().is_some());
    }
    assert!(store.report(triage_recent.1).unwrap().is_some());
    assert_eq!(
        store.deliveries(DeliveryState::Failed, 10).unwrap().len(),
        1
    );
    check_who(&*store, "203.0.113.25", None, now, Ok("C1"));
    // Nothing more the second time.
    let again = store.purge(&retention.cutoffs(now, false)).unwrap();
    assert_eq!(
        (again.sessions, again.cases, again.reports, again.deliveries),
        (0, 0, 0, 0)
    );

    let forced = store.purge(&retention.cutoffs(now, true)).unwrap();
    assert_eq!(
        (forced.cases, forced.reports, forced.raw_reports),
        (2, 2, 2)
    );
    assert_eq!(forced.deliveries, 1, "the failed one");
    assert!(store.case(open_old.2).unwrap().is_none());
    assert!(store.case(claimed_old.2).unwrap().is_none());
    assert!(store.case(closed_recent.2).unwrap().is_some());
    assert_eq!(store.claims("C1").unwrap().len(), 1, "claims are kept");
    assert!(
        store
            .audit("C1")
            .unwrap()
            .iter()
            .any(|(_, a)| a.action == "claim"),
        "the audit trail is kept"
    );
}
