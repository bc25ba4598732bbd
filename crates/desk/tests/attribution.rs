//! Attribution over real-shaped history files: a table per concern.

use spamgate_desk::attribution::{Attribution, AttributionPolicy, Query, TriageReason, attribute};
use spamgate_desk::history::{
    Identity, Interval, apply_nas_resets, merge_by_key, parse_cgnat, parse_kea_leases,
    parse_radius_detail, parse_static,
};
use spamgate_desk::time::{FixedOffset, from_civil, parse_rfc3339};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/history/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn all_history() -> Vec<Interval> {
    let radius = parse_radius_detail(&fixture("radius-detail"), 0, FixedOffset::JST);
    let mut intervals = merge_by_key(radius.intervals);
    apply_nas_resets(&mut intervals, &radius.nas_resets);
    intervals.extend(parse_kea_leases(&fixture("kea-leases4.csv"), 0).intervals);
    intervals.extend(parse_kea_leases(&fixture("kea-leases6.csv"), 0).intervals);
    intervals.extend(parse_static(&String::from_utf8(fixture("static.csv")).unwrap()).intervals);
    intervals.extend(parse_cgnat(&String::from_utf8(fixture("cgnat.csv")).unwrap()).intervals);
    intervals
}

fn customer_of(identity: &Identity) -> Option<String> {
    match identity {
        Identity::Customer(id) => Some(id.clone()),
        Identity::RadiusUser(user) if user.starts_with("hana") => None,
        Identity::RadiusUser(user) => Some(format!(
            "C-{}",
            user.split('@').next()?.to_ascii_uppercase()
        )),
        Identity::HwAddr(hw) if hw == "aa:bb:cc:00:00:01" => Some("C-KEA-1".into()),
        Identity::ClientId(id) if id == "ff:00:00:00:01:00:01:aa" => Some("C-KEA-2".into()),
        Identity::HwAddr(hw) if hw == "00:11:22:33:44:55" => Some("C-KEA-PD".into()),
        Identity::ClientId(id) if id == "00:03:00:01:66:77:88:99:aa:bb" => Some("C-KEA-V6".into()),
        _ => None,
    }
}

#[derive(Debug)]
enum Want {
    Customer(&'static str),
    Triage(TriageReason),
}

fn jst(h: u32, m: u32, s: u32) -> i64 {
    from_civil(2026, 12, 1, h, m, s, FixedOffset::JST).unwrap()
}

fn check(history: &[Interval], address: &str, port: Option<u16>, at: i64, skew: i64, want: Want) {
    let query = Query {
        address: address.parse().unwrap(),
        port,
        at,
    };
    let policy = AttributionPolicy {
        skew,
        lost_stop_grace: 3600,
    };
    let got = attribute(query, history, customer_of, &policy);
    match (&got, &want) {
        (
            Attribution::Customer {
                customer, evidence, ..
            },
            Want::Customer(expected),
        ) => {
            assert_eq!(customer, expected, "{address} {port:?} @{at}");
            assert!(!evidence.is_empty(), "the records used are kept");
        }
        (Attribution::Triage { reason, .. }, Want::Triage(expected)) => {
            assert_eq!(reason, expected, "{address} {port:?} @{at}: {got:#?}");
        }
        _ => panic!("{address} {port:?} @{at}: wanted {want:?}, got {got:#?}"),
    }
}

#[test]
fn radius_session_boundaries_skew_and_reassignment() {
    let h = all_history();
    use Want::*;
    let table: &[(&str, i64, i64, Want)] = &[
        // alice holds .10 from 10:00 to 11:00 (Start, Interim, Stop).
        ("192.0.2.10", jst(10, 0, 0), 0, Customer("C-ALICE")),
        ("192.0.2.10", jst(10, 45, 0), 0, Customer("C-ALICE")),
        ("192.0.2.10", jst(11, 0, 0), 0, Customer("C-ALICE")),
        (
            "192.0.2.10",
            jst(9, 59, 0),
            0,
            Triage(TriageReason::NoCandidate),
        ),
        // 59 s before the Start is inside a 120 s skew.
        ("192.0.2.10", jst(9, 59, 1), 120, Customer("C-ALICE")),
        // Between alice's Stop and bob's Start: nobody.
        (
            "192.0.2.10",
            jst(11, 2, 30),
            0,
            Triage(TriageReason::NoCandidate),
        ),
        // Reassigned: bob from 11:05.
        ("192.0.2.10", jst(11, 30, 0), 0, Customer("C-BOB")),
        // With 5 minutes of skew the gap touches both holders: a person decides.
        (
            "192.0.2.10",
            jst(11, 2, 30),
            300,
            Triage(TriageReason::SeveralCandidates),
        ),
        (
            "192.0.2.10",
            jst(12, 0, 1),
            0,
            Triage(TriageReason::NoCandidate),
        ),
    ];
    for (address, at, skew, want) in table {
        check(&h, address, None, *at, *skew, clone(want));
    }
}

#[test]
fn lost_stop_nas_restart_and_unknown_holders() {
    let h = all_history();
    use Want::*;
    let table: &[(&str, i64, Want)] = &[
        // carol: Start 10:00, last Interim 10:10, Stop lost → until 11:10 (grace 1 h).
        ("192.0.2.20", jst(11, 9, 0), Customer("C-CAROL")),
        (
            "192.0.2.20",
            jst(11, 11, 0),
            Triage(TriageReason::NoCandidate),
        ),
        // dave's open session is cut by erin's Start on the same address at 09:20.
        ("192.0.2.30", jst(9, 10, 0), Customer("C-DAVE")),
        ("192.0.2.30", jst(9, 25, 0), Customer("C-ERIN")),
        // gina's NAS restarted at 13:00 (Accounting-On): her session ended there.
        ("192.0.2.40", jst(12, 45, 0), Customer("C-GINA")),
        (
            "192.0.2.40",
            jst(13, 10, 0),
            Triage(TriageReason::NoCandidate),
        ),
        // hana's session is known only from an Interim (start = event - session time),
        // and her user name maps to no customer.
        (
            "192.0.2.50",
            jst(13, 2, 0),
            Triage(TriageReason::UnknownHolder),
        ),
    ];
    for (address, at, want) in table {
        check(&h, address, None, *at, 0, clone(want));
    }
}

#[test]
fn ipv6_prefixes_static_blocks_cgnat_and_dhcp() {
    let h = all_history();
    use Want::*;
    let t = |s: &str| parse_rfc3339(s).unwrap();
    let table: &[(&str, Option<u16>, i64, Want)] = &[
        // Framed /64 and delegated /56: any address inside belongs to frank.
        (
            "2001:db8:100:1::abcd",
            None,
            jst(11, 0, 0),
            Customer("C-FRANK"),
        ),
        (
            "2001:db8:200:1ff:1:2:3:4",
            None,
            jst(11, 0, 0),
            Customer("C-FRANK"),
        ),
        (
            "2001:db8:200:200::1",
            None,
            jst(11, 0, 0),
            Triage(TriageReason::NoCandidate),
        ),
        (
            "2001:db8:100:1::abcd",
            None,
            jst(12, 30, 0),
            Triage(TriageReason::NoCandidate),
        ),
        // Static /28 reassigned on 2026-12-01.
        (
            "203.0.113.5",
            None,
            t("2026-06-01T00:00:00Z"),
            Customer("C-STATIC-1"),
        ),
        (
            "203.0.113.15",
            None,
            t("2026-12-02T00:00:00Z"),
            Customer("C-STATIC-2"),
        ),
        (
            "203.0.113.16",
            None,
            t("2026-12-02T00:00:00Z"),
            Triage(TriageReason::NoCandidate),
        ),
        (
            "2001:db8:300:ffff::1",
            None,
            t("2026-12-02T00:00:00Z"),
            Customer("C-STATIC-3"),
        ),
        // CGNAT: the port decides; without it nobody is named.
        (
            "198.51.100.1",
            Some(1500),
            t("2026-12-01T05:00:00Z"),
            Customer("C-CGN-A"),
        ),
        (
            "198.51.100.1",
            Some(3071),
            t("2026-12-01T05:00:00Z"),
            Customer("C-CGN-B"),
        ),
        (
            "198.51.100.1",
            Some(4000),
            t("2026-12-01T05:00:00Z"),
            Triage(TriageReason::NoCandidate),
        ),
        (
            "198.51.100.1",
            None,
            t("2026-12-01T05:00:00Z"),
            Triage(TriageReason::PortRequired),
        ),
        (
            "198.51.100.2",
            None,
            t("2026-12-01T05:00:00Z"),
            Triage(TriageReason::PortRequired),
        ),
        // Kea: lease 10:00-11:00 JST, renewed to 11:30; by hwaddr, and by client id.
        ("198.51.100.50", None, jst(11, 20, 0), Customer("C-KEA-1")),
        (
            "198.51.100.50",
            None,
            jst(11, 31, 0),
            Triage(TriageReason::NoCandidate),
        ),
        ("198.51.100.51", None, jst(10, 30, 0), Customer("C-KEA-2")),
        // Kea DHCPv6: a delegated /56 (by hwaddr) and an address lease (by DUID).
        (
            "2001:db8:5500:ab::1",
            None,
            jst(10, 30, 0),
            Customer("C-KEA-PD"),
        ),
        (
            "2001:db8:5501::1",
            None,
            jst(10, 30, 0),
            Triage(TriageReason::NoCandidate),
        ),
        (
            "2001:db8:6600::10",
            None,
            jst(10, 30, 0),
            Customer("C-KEA-V6"),
        ),
        // A reclaimed lease (state 2) names nobody.
        (
            "198.51.100.52",
            None,
            jst(10, 30, 0),
            Triage(TriageReason::NoCandidate),
        ),
    ];
    for (address, port, at, want) in table {
        check(&h, address, *port, *at, 0, clone(want));
    }
}

fn clone(want: &Want) -> Want {
    match want {
        Want::Customer(c) => Want::Customer(c),
        Want::Triage(r) => Want::Triage(*r),
    }
}

#[test]
fn radius_import_is_incremental_and_reports_bad_records() {
    let bytes = fixture("radius-detail");
    let whole = parse_radius_detail(&bytes, 0, FixedOffset::JST);
    assert_eq!(whole.next_offset, bytes.len() as u64);
    assert_eq!(whole.nas_resets.len(), 1);
    assert_eq!(
        whole.rejected.len(),
        1,
        "the record without a session id: {:?}",
        whole.rejected
    );
    // Cut the file mid-record: the partial record waits for the rest.
    let cut = bytes.len() / 2;
    let first = parse_radius_detail(&bytes[..cut], 0, FixedOffset::JST);
    assert!(first.next_offset < cut as u64);
    let second = parse_radius_detail(
        &bytes[first.next_offset as usize..],
        first.next_offset,
        FixedOffset::JST,
    );
    assert_eq!(second.next_offset, bytes.len() as u64);
    let mut pieces = first.intervals.clone();
    pieces.extend(second.intervals);
    assert_eq!(merge_by_key(pieces), merge_by_key(whole.intervals.clone()));
    // Importing twice changes nothing once merged by key.
    let mut twice = whole.intervals.clone();
    twice.extend(whole.intervals.clone());
    assert_eq!(merge_by_key(twice), merge_by_key(whole.intervals));
}

#[test]
fn kea_and_csv_importers_reject_bad_lines_with_offsets() {
    let kea = parse_kea_leases(&fixture("kea-leases4.csv"), 0);
    assert_eq!(kea.intervals.len(), 3);
    assert_eq!(kea.rejected.len(), 1);
    let renewals = merge_by_key(kea.intervals);
    assert_eq!(renewals.len(), 2, "a renewal is the same lease");
    let bad = parse_cgnat("198.51.100.1,2000,1000,C,2026-12-01T00:00:00Z\nx\n");
    assert_eq!(
        bad.rejected.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![0, 46]
    );
    let bad = parse_static("C,203.0.113.0/33,2026-01-01T00:00:00Z\n");
    assert_eq!(bad.rejected.len(), 1);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    #[test]
    fn history_parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048), offset in 0u64..1 << 40) {
        let _ = parse_radius_detail(&bytes, offset, FixedOffset::JST);
        let _ = parse_kea_leases(&bytes, offset);
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_static(&text);
        let _ = parse_cgnat(&text);
    }

    #[test]
    fn radius_records_with_extreme_numbers_never_panic(event in proptest::prelude::any::<i64>(), length in proptest::prelude::any::<i64>()) {
        let record = format!("Tue Dec  1 10:00:00 2026\n\tAcct-Status-Type = Stop\n\tUser-Name = u\n\tAcct-Session-Id = s\n\tFramed-IP-Address = 192.0.2.1\n\tEvent-Timestamp = {event}\n\tAcct-Session-Time = {length}\n\n");
        let batch = parse_radius_detail(record.as_bytes(), 0, FixedOffset::JST);
        proptest::prop_assert_eq!(batch.intervals.len(), 1);
        let kea = format!("address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n192.0.2.1,aa,,{length},{event},1,0,0,,0,\n");
        let _ = parse_kea_leases(kea.as_bytes(), 0);
    }
}
