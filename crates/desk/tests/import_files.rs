//! History files imported from disk the way `sessions import` does: a growing
//! RADIUS detail file tailed, a rotated one restarted, a Kea file resumed mid-way.

use std::io::Write;

use spamgate_desk::attribution::{AttributionPolicy, Query};
use spamgate_desk::case::{Customer, CustomerStatus, Language};
use spamgate_desk::desk::{HistoryFormat, import_history_file};
use spamgate_desk::history::Identity;
use spamgate_desk::store::DeskStore;
use spamgate_desk::store::sqlite::SqliteDeskStore;
use spamgate_desk::time::{FixedOffset, from_civil};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/history/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn who(store: &dyn DeskStore, address: &str, h: u32, m: u32) -> Option<String> {
    let at = from_civil(2026, 12, 1, h, m, 0, FixedOffset::JST).unwrap();
    let query = Query {
        address: address.parse().unwrap(),
        port: None,
        at,
    };
    store
        .attribute(query, &AttributionPolicy::default())
        .unwrap()
        .customer()
        .map(str::to_string)
}

fn store_with_customers(dir: &std::path::Path) -> SqliteDeskStore {
    let store = SqliteDeskStore::open(&dir.join("desk.sqlite")).unwrap();
    for (id, identity) in [
        (
            "C-ALICE",
            Identity::RadiusUser("alice@isp.example.jp".into()),
        ),
        ("C-BOB", Identity::RadiusUser("bob@isp.example.jp".into())),
        ("C-PD", Identity::HwAddr("00:11:22:33:44:55".into())),
        (
            "C-V6",
            Identity::ClientId("00:03:00:01:66:77:88:99:aa:bb".into()),
        ),
    ] {
        store
            .upsert_customer(&Customer {
                id: id.into(),
                name: id.into(),
                contact: "c@example.jp".into(),
                language: Language::Ja,
                plan: "home".into(),
                status: CustomerStatus::Active,
            })
            .unwrap();
        store.link_identity(&identity, id).unwrap();
    }
    store
}

#[test]
fn a_growing_detail_file_is_tailed_and_a_rotated_one_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_customers(dir.path());
    let detail = fixture("radius-detail");
    let path = dir.path().join("detail-20261201");
    // The writer is mid-record when the first import runs.
    let cut = detail.windows(2).position(|w| w == b"\n\n").unwrap() + 40;
    std::fs::write(&path, &detail[..cut]).unwrap();
    let first =
        import_history_file(&store, &path, HistoryFormat::RadiusDetail, FixedOffset::JST).unwrap();
    assert!(first.to_offset < cut as u64, "the partial record waits");
    assert_eq!(
        who(&store, "192.0.2.10", 10, 15).as_deref(),
        Some("C-ALICE")
    );
    // The file grows.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&detail[cut..])
        .unwrap();
    let second =
        import_history_file(&store, &path, HistoryFormat::RadiusDetail, FixedOffset::JST).unwrap();
    assert_eq!(
        (second.from_offset, second.to_offset),
        (first.to_offset, detail.len() as u64)
    );
    assert_eq!(
        second.rejected.len(),
        1,
        "the broken record, by its offset in the file"
    );
    assert!(second.rejected[0].0 > first.to_offset);
    assert_eq!(who(&store, "192.0.2.10", 11, 30).as_deref(), Some("C-BOB"));
    // Nothing new: nothing imported.
    let third =
        import_history_file(&store, &path, HistoryFormat::RadiusDetail, FixedOffset::JST).unwrap();
    assert_eq!(third.summary.upserted, 0);
    // Rotated: a new, shorter file under the same name is read from the start.
    std::fs::write(&path, &detail[..cut]).unwrap();
    let rotated =
        import_history_file(&store, &path, HistoryFormat::RadiusDetail, FixedOffset::JST).unwrap();
    assert!(rotated.restarted);
    assert_eq!(rotated.from_offset, 0);
    assert_eq!(
        who(&store, "192.0.2.10", 11, 30).as_deref(),
        Some("C-BOB"),
        "history already known stays"
    );
}

#[test]
fn a_kea_v6_file_resumed_mid_way_keeps_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_customers(dir.path());
    let leases = fixture("kea-leases6.csv");
    let path = dir.path().join("kea-leases6.csv");
    let first_line_end = leases.iter().position(|b| *b == b'\n').unwrap() + 1;
    let second_line_end = first_line_end
        + leases[first_line_end..]
            .iter()
            .position(|b| *b == b'\n')
            .unwrap()
        + 1;
    std::fs::write(&path, &leases[..second_line_end]).unwrap();
    let first =
        import_history_file(&store, &path, HistoryFormat::KeaCsv, FixedOffset::UTC).unwrap();
    assert_eq!(
        (first.summary.upserted, first.to_offset),
        (1, second_line_end as u64)
    );
    std::fs::write(&path, &leases).unwrap();
    let second =
        import_history_file(&store, &path, HistoryFormat::KeaCsv, FixedOffset::UTC).unwrap();
    assert_eq!(second.summary.upserted, 1);
    assert!(second.rejected.is_empty(), "{:?}", second.rejected);
    assert_eq!(
        who(&store, "2001:db8:5500:ab::1", 10, 30).as_deref(),
        Some("C-PD")
    );
    assert_eq!(
        who(&store, "2001:db8:6600::10", 10, 30).as_deref(),
        Some("C-V6")
    );
}

#[test]
fn static_and_cgnat_files_are_read_whole_and_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_customers(dir.path());
    let path = dir.path().join("static.csv");
    std::fs::write(&path, "C-ALICE,203.0.113.0/28,2026-01-01T00:00:00Z\n").unwrap();
    for _ in 0..2 {
        import_history_file(&store, &path, HistoryFormat::Static, FixedOffset::UTC).unwrap();
    }
    let found = store
        .intervals_at("203.0.113.3".parse().unwrap(), None, 1_796_083_200, 0)
        .unwrap();
    assert_eq!(found.len(), 1);
    assert!(
        import_history_file(
            &store,
            &dir.path().join("missing"),
            HistoryFormat::Cgnat,
            FixedOffset::UTC
        )
        .is_err()
    );
}
