//! The ladder's OP25B enforcement through the desk service, on real SQLite files: a
//! suspension takes the customer's `[op25b] exempt` entries out of the synced sets, a
//! resume puts them back, each recorded in the audit trail; a failed sync stays queued,
//! is retried with backoff, and is shown. nft is a recording stand-in here (the kernel
//! is exercised by scripts/op25b-netns.sh); it answers like nft and keeps every script
//! it was fed.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{Stores, stores_with};
use spamgate_app::desk::{DeskService, DeskSettings, HookSettings, NoticeSettings, Op25bRun};
use spamgate_app::op25b::{NftRunner, Op25bConfig, Op25bSettings};
use spamgate_desk::case::{Customer, CustomerStatus, Language};
use spamgate_desk::desk::DeskConfig;
use spamgate_desk::ladder::Command;
use spamgate_desk::store::{DeliveryKind, DeliveryState, RetryPolicy};
use spamgate_desk::time::FixedOffset;

const NOW: i64 = 1_800_000_000;
const ACCOUNT: &str = "hanako@isp.example.jp";
const STATIC_BLOCK: &str = "198.51.100.128/28";
const OPT_OUT: &str = "198.51.100.77";

/// A stand-in for nft: `list tables` names the table, `-f -` records its script (only
/// the committing run, not `-c`), and a file named `fail` beside it makes it fail.
fn fake_nft(dir: &Path) -> PathBuf {
    let path = dir.join("nft");
    let script = format!(
        r#"#!/bin/sh
dir={dir}
if [ -e "$dir/fail" ]; then echo "Error: Could not process rule: No such file or directory" >&2; exit 1; fi
case "$*" in
  "list tables") echo "table inet spamgate_op25b" ;;
  "-c -f -") cat >/dev/null ;;
  "-f -") n=$(ls "$dir" | grep -c '^sync-'); cat >"$dir/sync-$n" ;;
  *) echo "unexpected: $*" >&2; exit 2 ;;
esac
"#,
        dir = dir.display()
    );
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The scripts nft committed, oldest first.
fn synced(dir: &Path) -> Vec<String> {
    let mut scripts = Vec::new();
    while let Ok(text) = std::fs::read_to_string(dir.join(format!("sync-{}", scripts.len()))) {
        scripts.push(text);
    }
    scripts
}

fn op25b_config() -> Op25bConfig {
    toml::from_str(&format!(
        r#"
        pools = ["198.51.100.0/24"]
        exempt = [
          {{ prefix = "{STATIC_BLOCK}", reason = "fixed IP plan", customer = "C-HANAKO" }},
          {{ prefix = "{OPT_OUT}", reason = "opt-out #1234" }},
        ]
        "#
    ))
    .unwrap()
}

fn settings(op25b: Option<Op25bSettings>) -> DeskSettings {
    DeskSettings {
        config: DeskConfig::default(),
        zone: FixedOffset::JST,
        hook: HookSettings {
            command: Vec::new(),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy {
                first_delay: 60,
                max_delay: 600,
                max_attempts: 3,
            },
        },
        notice: NoticeSettings::default(),
        signals: spamgate_app::desk::SignalPolicy {
            min_op25b_hits: 100,
            ..Default::default()
        },
        op25b,
    }
}

struct Fixture {
    stores: Stores,
    nft_dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let stores = stores_with(&[ACCOUNT], &[ACCOUNT], NOW as u64 - 100).await;
    stores
        .desk
        .upsert_customer(&Customer {
            id: "C-TARO".into(),
            name: "Taro".into(),
            contact: "taro@example.jp".into(),
            language: Language::Ja,
            plan: "home".into(),
            status: CustomerStatus::Active,
        })
        .unwrap();
    Fixture {
        stores,
        nft_dir: tempfile::tempdir().unwrap(),
    }
}

impl Fixture {
    fn service(&self) -> DeskService<'_, spamgate_store::SqliteStore> {
        let nft = fake_nft(self.nft_dir.path());
        let op25b = Op25bSettings {
            config: op25b_config(),
            nft: NftRunner::new(vec![nft.display().to_string()]).unwrap(),
        };
        DeskService::new(
            Arc::clone(&self.stores.desk),
            &self.stores.accounts,
            settings(Some(op25b)),
        )
    }

    fn audit_actions(&self, customer: &str) -> Vec<(String, String)> {
        self.stores
            .desk
            .audit(customer)
            .unwrap()
            .into_iter()
            .map(|(_, a)| (a.action, a.reason))
            .collect()
    }
}

fn suspend() -> Command {
    Command::Suspend {
        reason: "spam run".into(),
        evidence: vec![],
        approver: Some("suzuki".into()),
    }
}

fn resume() -> Command {
    Command::Resume {
        reason: "cleaned up".into(),
        force: false,
    }
}

fn one(runs: Vec<Op25bRun>) -> Op25bRun {
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.into_iter().next().unwrap()
}

#[tokio::test]
async fn suspension_revokes_the_customers_exemption_and_resume_restores_it() {
    let f = fixture().await;
    let service = f.service();
    service
        .decide("C-HANAKO".into(), "sato".into(), suspend(), NOW)
        .await
        .unwrap();
    let run = one(service.run_due_op25b(NOW, 10).await.unwrap());
    assert_eq!(run.state, DeliveryState::Done, "{run:?}");
    assert_eq!((run.action.as_str(), run.in_force), ("revoke", false));
    assert_eq!(run.prefixes, [STATIC_BLOCK]);
    let scripts = synced(f.nft_dir.path());
    assert_eq!(scripts.len(), 1);
    assert!(
        !scripts[0].contains(STATIC_BLOCK),
        "revoked: {}",
        scripts[0]
    );
    assert!(scripts[0].contains(OPT_OUT), "others stay: {}", scripts[0]);
    // Nothing is due twice.
    assert!(service.run_due_op25b(NOW, 10).await.unwrap().is_empty());

    service
        .decide("C-HANAKO".into(), "sato".into(), resume(), NOW + 10)
        .await
        .unwrap();
    let run = one(service.run_due_op25b(NOW + 10, 10).await.unwrap());
    assert_eq!(run.state, DeliveryState::Done, "{run:?}");
    assert_eq!((run.action.as_str(), run.in_force), ("restore", true));
    let scripts = synced(f.nft_dir.path());
    assert_eq!(scripts.len(), 2);
    assert!(
        scripts[1].contains(STATIC_BLOCK),
        "restored: {}",
        scripts[1]
    );

    let audit = f.audit_actions("C-HANAKO");
    let actions: Vec<&str> = audit.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        ["suspend", "op25b-revoke", "resume", "op25b-restore"]
    );
    assert!(
        audit[1].1.contains(&format!("{STATIC_BLOCK} revoked")),
        "{audit:?}"
    );
    assert!(
        audit[3].1.contains(&format!("{STATIC_BLOCK} in force")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_failed_sync_is_retried_and_shown_never_dropped() {
    let f = fixture().await;
    let service = f.service();
    std::fs::write(f.nft_dir.path().join("fail"), "").unwrap();
    service
        .decide("C-HANAKO".into(), "sato".into(), suspend(), NOW)
        .await
        .unwrap();
    let run = one(service.run_due_op25b(NOW, 10).await.unwrap());
    assert_eq!(run.state, DeliveryState::Pending, "{run:?}");
    let error = run.error.unwrap();
    assert!(error.contains("Could not process rule"), "{error}");
    let pending: Vec<_> = f
        .stores
        .desk
        .deliveries(DeliveryState::Pending, 10)
        .unwrap()
        .into_iter()
        .filter(|d| d.kind == DeliveryKind::Op25b)
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].last_error.as_deref(), Some(error.as_str()));
    assert_eq!(pending[0].next_attempt, NOW + 60);
    assert!(
        service
            .run_due_op25b(NOW + 59, 10)
            .await
            .unwrap()
            .is_empty(),
        "not before the backoff"
    );
    assert!(
        !f.audit_actions("C-HANAKO")
            .iter()
            .any(|(a, _)| a.starts_with("op25b")),
        "a failed sync is not recorded as carried out"
    );

    // nft works again: the retry revokes.
    std::fs::remove_file(f.nft_dir.path().join("fail")).unwrap();
    let run = one(service.run_due_op25b(NOW + 60, 10).await.unwrap());
    assert_eq!(run.state, DeliveryState::Done, "{run:?}");
    assert!(!run.in_force);
    assert!(!synced(f.nft_dir.path())[0].contains(STATIC_BLOCK));

    // Out of attempts: failed, and listed as such.
    std::fs::write(f.nft_dir.path().join("fail"), "").unwrap();
    service
        .decide("C-HANAKO".into(), "sato".into(), resume(), NOW + 100)
        .await
        .unwrap();
    for at in [NOW + 100, NOW + 160, NOW + 280] {
        one(service.run_due_op25b(at, 10).await.unwrap());
    }
    let failed = f.stores.desk.deliveries(DeliveryState::Failed, 10).unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].kind, DeliveryKind::Op25b);
    assert_eq!(failed[0].attempts, 3);
}

#[tokio::test]
async fn nothing_to_sync_without_exemptions_or_without_op25b() {
    let f = fixture().await;
    let service = f.service();
    service
        .decide("C-TARO".into(), "sato".into(), suspend(), NOW)
        .await
        .unwrap();
    let run = one(service.run_due_op25b(NOW, 10).await.unwrap());
    assert_eq!(run.state, DeliveryState::Done);
    assert!(run.note.unwrap().contains("no [op25b] exemption"));
    assert!(synced(f.nft_dir.path()).is_empty(), "nft not run");

    let unmanaged = DeskService::new(
        Arc::clone(&f.stores.desk),
        &f.stores.accounts,
        settings(None),
    );
    unmanaged
        .decide("C-HANAKO".into(), "sato".into(), suspend(), NOW)
        .await
        .unwrap();
    let run = one(unmanaged.run_due_op25b(NOW, 10).await.unwrap());
    assert_eq!(run.state, DeliveryState::Done);
    assert!(run.note.unwrap().contains("not managed"));
}

#[test]
fn the_effective_set_follows_the_desk() {
    // `op25b sync` by hand computes the same set: a suspended customer's exemption
    // cannot come back through it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let f = rt.block_on(fixture());
    let config = op25b_config();
    let check = |expected_revoked: &[&str]| {
        let effective =
            spamgate_app::op25b::effective(&config, Some(f.stores.desk.as_ref())).unwrap();
        let revoked: Vec<String> = effective
            .revoked
            .iter()
            .map(|e| e.prefix.to_string())
            .collect();
        assert_eq!(revoked, expected_revoked);
    };
    check(&[]);
    let mut hanako = f.stores.desk.customer("C-HANAKO").unwrap().unwrap();
    for (status, revoked) in [
        (CustomerStatus::Suspended, &[STATIC_BLOCK][..]),
        (CustomerStatus::Terminated, &[STATIC_BLOCK][..]),
        (CustomerStatus::Active, &[][..]),
    ] {
        hanako.status = status;
        set_status(&f, &hanako);
        check(revoked);
    }
    let unknown: Op25bConfig = toml::from_str(
        r#"
        pools = ["198.51.100.0/24"]
        exempt = [{ prefix = "198.51.100.128/28", reason = "x", customer = "C-NOBODY" }]
        "#,
    )
    .unwrap();
    let effective = spamgate_app::op25b::effective(&unknown, Some(f.stores.desk.as_ref())).unwrap();
    assert!(effective.revoked.is_empty());
    assert_eq!(effective.unknown_customers, ["C-NOBODY"]);
    assert!(spamgate_app::op25b::effective(&unknown, None).is_err());
}

fn set_status(f: &Fixture, customer: &Customer) {
    // upsert_customer keeps a stored status only through the service; the store
    // itself writes what it is given.
    f.stores.desk.upsert_customer(customer).unwrap();
    assert_eq!(
        f.stores
            .desk
            .customer(&customer.id)
            .unwrap()
            .unwrap()
            .status,
        customer.status
    );
}

fn hit(source: &str, packets: u64, expires_secs: u64) -> spamgate_app::op25b::Hit {
    spamgate_app::op25b::Hit {
        source: source.parse().unwrap(),
        packets,
        bytes: packets * 60,
        expires_secs: Some(expires_secs),
    }
}

#[tokio::test]
async fn op25b_hits_above_the_threshold_become_reports_for_the_addresss_holder() {
    let f = fixture().await;
    let service = f.service();
    let history = f.nft_dir.path().join("static.csv");
    std::fs::write(
        &history,
        "C-HANAKO,198.51.100.128/28,2026-01-01T00:00:00Z\n",
    )
    .unwrap();
    service
        .import_sessions(history, spamgate_desk::desk::HistoryFormat::Static)
        .await
        .unwrap();
    const DAY: i64 = 86_400;
    // The hit table's expires_secs, read at NOW+now, of a last attempt at NOW+last.
    let left = |now: i64, last: i64| (DAY - (now - last)) as u64;
    // NOW is the start of an hour window (the default signal_window).
    let run = service
        .file_op25b_signals(
            vec![
                hit("198.51.100.130", 150, left(1000, 900)),
                hit("198.51.100.131", 99, left(1000, 900)),
                hit("198.51.100.10", 200, left(1000, 900)),
            ],
            DAY,
            NOW + 1000,
        )
        .await
        .unwrap();
    assert_eq!(run.filed.len(), 1, "{run:?}");
    let (report, customer, case) = run.filed[0].clone();
    assert_eq!(customer, "C-HANAKO");
    assert_eq!(
        run.triaged,
        [(run.triaged[0].0, "198.51.100.10".parse().unwrap())],
        "no one held it: triage"
    );
    let stored = f.stores.desk.report(report).unwrap().unwrap();
    assert_eq!(
        stored.report.source_ip,
        Some("198.51.100.130".parse().unwrap())
    );
    assert_eq!(stored.report.time.as_ref().unwrap().utc, NOW + 900);
    assert!(
        stored.report.subject.as_deref().unwrap().contains("150"),
        "{:?}",
        stored.report.subject
    );

    // Read again in the same window (more packets, a later attempt) and after the
    // source stopped: nothing new.
    for (at, packets, last) in [(2000, 300, 1950), (5000, 300, 1950)] {
        let again = service
            .file_op25b_signals(
                vec![
                    hit("198.51.100.130", packets, left(at, last)),
                    hit("198.51.100.10", 200, left(at, 900)),
                ],
                DAY,
                NOW + at,
            )
            .await
            .unwrap();
        assert!(
            again.filed.is_empty() && again.triaged.is_empty(),
            "{again:?}"
        );
        assert_eq!(again.already_filed, 2);
    }
    // Still trying in the next window: filed again, into the same case.
    let next = service
        .file_op25b_signals(
            vec![hit("198.51.100.130", 400, left(3800, 3700))],
            DAY,
            NOW + 3800,
        )
        .await
        .unwrap();
    assert_eq!(next.filed.len(), 1, "{next:?}");
    assert_eq!(next.filed[0].2, case);
    assert_ne!(next.filed[0].0, report);
}
