//! A case exported from a real SQLite store, checked file by file and by `sha256sum -c`.

use spamgate_desk::case::{Customer, CustomerStatus, Language};
use spamgate_desk::desk::{self, DeskConfig};
use spamgate_desk::history::{Identity, parse_radius_detail};
use spamgate_desk::ladder::{Claim, ClaimItem};
use spamgate_desk::store::sqlite::SqliteDeskStore;
use spamgate_desk::store::{DeskStore, sha256_hex};
use spamgate_desk::time::FixedOffset;

fn message(dir: &str, name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/{dir}/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn export_holds_case_raw_reports_attribution_audit_and_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteDeskStore::open(&dir.path().join("desk.sqlite")).unwrap();
    store
        .upsert_customer(&Customer {
            id: "C-ALICE".into(),
            name: "Alice".into(),
            contact: "alice@example.jp".into(),
            language: Language::Ja,
            plan: "home".into(),
            status: CustomerStatus::Active,
        })
        .unwrap();
    store
        .link_identity(
            &Identity::RadiusUser("alice@isp.example.jp".into()),
            "C-ALICE",
        )
        .unwrap();
    store
        .link_account("alice-smtp@isp.example.jp", "C-ALICE")
        .unwrap();
    let history = parse_radius_detail(&message("history", "radius-detail"), 0, FixedOffset::JST);
    store.import_batch("radius", &history).unwrap();

    // The RFC 5965 example is about 192.0.2.1; history has alice on 192.0.2.10
    // at that time, so rewrite the address the way a second report would name it.
    let raw = String::from_utf8(message("reports", "arf-rfc5965.eml"))
        .unwrap()
        .replace("192.0.2.1", "192.0.2.10");
    let config = DeskConfig::default();
    let now = 1_796_100_000;
    let first = desk::ingest(&store, raw.as_bytes(), now, &config).unwrap();
    let case_id = first.case_id.expect("filed");
    let second_raw = raw.replace("Subject: FW: Earn money", "Subject: FW: Earn money (2)");
    let second = desk::ingest(&store, second_raw.as_bytes(), now + 1, &config).unwrap();
    assert_eq!(second.case_id, Some(case_id), "same spam: same case");
    desk::confirm_case(&store, case_id, "alice-op", now + 2, &config).unwrap();
    let claim = Claim {
        customer: "C-ALICE".into(),
        case_ids: vec![case_id],
        amount: 30_000,
        currency: "JPY".into(),
        basis: "operator time".into(),
        items: vec![ClaimItem {
            description: "3 h".into(),
            amount: 30_000,
        }],
    };
    desk::file_claim(&store, &claim, "legal", now + 3).unwrap();

    let out = tempfile::tempdir().unwrap();
    let export =
        spamgate_desk::export::export_case(&store, case_id, out.path(), now + 4, FixedOffset::JST)
            .unwrap();
    let names: Vec<&str> = export.files.iter().map(|(n, _)| n.as_str()).collect();
    let raw_name = format!("raw/{}.eml", sha256_hex(raw.as_bytes()));
    for expected in [
        "case.json",
        raw_name.as_str(),
        "attribution.json",
        "audit.json",
        "claims.json",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    assert_eq!(names.iter().filter(|n| n.starts_with("raw/")).count(), 2);
    assert_eq!(
        names.iter().filter(|n| n.starts_with("reports/")).count(),
        2
    );
    // The raw report is byte for byte what was ingested.
    assert_eq!(
        std::fs::read(export.folder.join(&raw_name)).unwrap(),
        raw.as_bytes()
    );
    // The manifest names every file with its hash.
    let manifest = std::fs::read_to_string(export.folder.join("MANIFEST.sha256")).unwrap();
    for (name, hash) in &export.files {
        let bytes = std::fs::read(export.folder.join(name)).unwrap();
        assert_eq!(&sha256_hex(&bytes), hash);
        assert!(manifest.contains(&format!("{hash}  {name}\n")));
    }
    let attribution = std::fs::read_to_string(export.folder.join("attribution.json")).unwrap();
    assert!(
        attribution.contains("alice@isp.example.jp"),
        "the session used is evidence"
    );
    let audit = std::fs::read_to_string(export.folder.join("audit.json")).unwrap();
    assert!(
        audit.contains("\"warn\"") && audit.contains("\"claim\"") && audit.contains("alice-op")
    );
    let case = std::fs::read_to_string(export.folder.join("case.json")).unwrap();
    assert!(case.contains("alice-smtp@isp.example.jp") && case.contains("+09:00"));
    // The legal team's tool agrees.
    let check = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg("--quiet")
        .arg("MANIFEST.sha256")
        .current_dir(&export.folder)
        .status();
    if let Ok(status) = check {
        assert!(status.success(), "sha256sum -c failed");
    }
    // Never overwritten.
    assert!(
        spamgate_desk::export::export_case(&store, case_id, out.path(), now + 5, FixedOffset::JST)
            .is_err()
    );
    assert!(
        spamgate_desk::export::export_case(
            &store,
            case_id + 1000,
            out.path(),
            now + 5,
            FixedOffset::JST
        )
        .is_err()
    );
}
