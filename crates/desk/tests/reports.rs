//! Every message in tests/reports/ through the parser, against a table.

use std::net::IpAddr;

use proptest::prelude::*;
use spamgate_desk::report::{Category, ParseOptions, ReportKind, TimeSource, parse_report};
use spamgate_desk::time::{FixedOffset, rfc3339};

struct Expected {
    kind: ReportKind,
    category: Option<Category>,
    ip: Option<&'static str>,
    port: Option<u16>,
    time_utc: Option<&'static str>,
    time_source: Option<TimeSource>,
    message_id: Option<&'static str>,
    redacted: bool,
    triage: bool,
}

fn check(file: &str, expected: Expected) {
    let path = format!("{}/tests/reports/{file}", env!("CARGO_MANIFEST_DIR"));
    let raw = std::fs::read(&path).expect("test message");
    let report = parse_report(&raw, &ParseOptions::default());
    let got_ip = report.source_ip.map(|ip| ip.to_string());
    let got_time = report
        .time
        .as_ref()
        .map(|t| rfc3339(t.utc, FixedOffset::UTC));
    assert_eq!(report.kind, expected.kind, "{file}: kind; {report:#?}");
    assert_eq!(report.category, expected.category, "{file}: category");
    assert_eq!(got_ip.as_deref(), expected.ip, "{file}: source ip");
    assert_eq!(report.source_port, expected.port, "{file}: source port");
    assert_eq!(
        got_time.as_deref(),
        expected.time_utc,
        "{file}: time; {report:#?}"
    );
    assert_eq!(
        report.time.as_ref().map(|t| t.source),
        expected.time_source,
        "{file}: time source"
    );
    assert_eq!(
        report.original_message_id.as_deref(),
        expected.message_id,
        "{file}: original message id"
    );
    assert_eq!(report.redacted, expected.redacted, "{file}: redacted");
    assert_eq!(report.needs_triage(), expected.triage, "{file}: triage");
    if let Some(time) = &report.time {
        assert!(
            !time.original.is_empty(),
            "{file}: the original date text is kept"
        );
    }
}

#[test]
fn report_table() {
    use Category::*;
    use ReportKind::*;
    use TimeSource::*;
    let table = [
        (
            "arf-rfc5965.eml",
            Expected {
                kind: Arf,
                category: Some(Spam),
                ip: Some("192.0.2.1"),
                port: None,
                time_utc: Some("2026-12-01T01:00:00Z"),
                time_source: Some(ReportField),
                message_id: Some("<8787KJKJ3K4J3K4J3K4J3.mail@customer.isp.example.jp>"),
                redacted: false,
                triage: false,
            },
        ),
        (
            "arf-fbl-redacted.eml",
            Expected {
                kind: Arf,
                category: Some(Spam),
                ip: Some("203.0.113.77"),
                port: Some(40123),
                time_utc: Some("2026-12-01T02:58:07Z"),
                time_source: Some(ReportField),
                message_id: Some("<20261201115805.ABCDEF@shop.example.org>"),
                redacted: true,
                triage: false,
            },
        ),
        (
            "arf-ipv6-no-feedback-type.eml",
            Expected {
                kind: Arf,
                category: Some(Spam),
                ip: Some("2001:db8:1234:5600::25"),
                port: None,
                time_utc: Some("2026-12-02T07:45:10Z"),
                time_source: Some(ReportField),
                message_id: Some("<v6spam-1@pc.example>"),
                redacted: false,
                triage: false,
            },
        ),
        (
            "arf-overload-fraud.eml",
            Expected {
                kind: Arf,
                category: Some(Illegal),
                ip: Some("198.51.100.140"),
                port: None,
                time_utc: Some("2026-12-04T00:50:00Z"),
                time_source: Some(ReportField),
                message_id: None,
                redacted: false,
                triage: false,
            },
        ),
        (
            "xarf-json.eml",
            Expected {
                kind: Xarf,
                category: Some(Illegal),
                ip: Some("198.51.100.7"),
                port: Some(51413),
                time_utc: Some("2026-12-01T12:00:00Z"),
                time_source: Some(ReportField),
                message_id: None,
                redacted: false,
                triage: false,
            },
        ),
        (
            "xarf-legacy.eml",
            Expected {
                kind: XArfLegacy,
                category: Some(Vandalism),
                ip: Some("198.51.100.99"),
                port: Some(22),
                time_utc: Some("2026-11-30T21:41:09Z"),
                time_source: Some(ReportField),
                message_id: None,
                redacted: false,
                triage: false,
            },
        ),
        (
            "spamcop-plain.eml",
            Expected {
                kind: SpamCop,
                category: Some(Spam),
                ip: Some("192.0.2.44"),
                port: None,
                time_utc: Some("2026-12-01T00:58:12Z"),
                time_source: Some(Text),
                message_id: Some("<watches-123@pc44.dyn.isp.example.jp>"),
                redacted: false,
                triage: false,
            },
        ),
        (
            "spamcop-arf-no-source-ip.eml",
            Expected {
                kind: SpamCop,
                category: Some(Spam),
                ip: Some("203.0.113.200"),
                port: None,
                time_utc: Some("2026-12-02T04:40:00Z"),
                time_source: Some(ReportField),
                message_id: Some("<inv-2@mailer.example>"),
                redacted: false,
                triage: false,
            },
        ),
        (
            "plain-ja.eml",
            Expected {
                kind: PlainText,
                category: Some(Spam),
                ip: Some("198.51.100.23"),
                port: None,
                time_utc: Some("2026-12-01T01:05:00Z"),
                time_source: Some(Text),
                message_id: None,
                redacted: false,
                triage: false,
            },
        ),
        (
            "plain-en-headers.eml",
            Expected {
                kind: PlainText,
                category: Some(Spam),
                ip: Some("198.51.100.61"),
                port: None,
                time_utc: Some("2026-12-03T13:12:40Z"),
                time_source: Some(Text),
                message_id: Some("<loan-offer-9@client.dyn.isp.example.jp>"),
                redacted: false,
                triage: false,
            },
        ),
        // No Source-IP: the Received: chain names the sender (the local hop is skipped).
        (
            "arf-no-source-ip-received.eml",
            Expected {
                kind: Arf,
                category: Some(Spam),
                ip: Some("198.51.100.77"),
                port: None,
                time_utc: Some("2026-12-03T05:31:12Z"),
                time_source: Some(ReportField),
                message_id: Some("<nl-2026-12@shop.example.net>"),
                redacted: false,
                triage: false,
            },
        ),
        // not-spam is no complaint: a person looks.
        (
            "arf-not-spam.eml",
            Expected {
                kind: Arf,
                category: None,
                ip: Some("192.0.2.33"),
                port: None,
                time_utc: Some("2026-12-03T05:31:12Z"),
                time_source: Some(ReportField),
                message_id: None,
                redacted: false,
                triage: true,
            },
        ),
        (
            "unknown-no-address.eml",
            Expected {
                kind: Unknown,
                category: None,
                ip: None,
                port: None,
                time_utc: None,
                time_source: None,
                message_id: None,
                redacted: false,
                triage: true,
            },
        ),
        (
            "broken-mime.eml",
            Expected {
                kind: Arf,
                category: Some(Spam),
                ip: Some("192.0.2.250"),
                port: None,
                time_utc: None,
                time_source: None,
                message_id: None,
                redacted: false,
                triage: true,
            },
        ),
    ];
    let dir = format!("{}/tests/reports", env!("CARGO_MANIFEST_DIR"));
    let on_disk = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        on_disk,
        table.len(),
        "every message in tests/reports has a row"
    );
    for (file, expected) in table {
        check(file, expected);
    }
}

#[test]
fn a_spamcop_subject_alone_still_names_the_address() {
    let raw = b"Subject: [SpamCop (2001:db8::7) id:1]x\n\nno text\n";
    let report = parse_report(raw, &ParseOptions::default());
    assert_eq!(report.kind, ReportKind::SpamCop);
    assert_eq!(
        report.source_ip,
        Some("2001:db8::7".parse::<IpAddr>().unwrap())
    );
    assert!(report.needs_triage(), "no time: a person decides");
}

#[test]
fn plain_text_times_without_a_zone_use_the_configured_one() {
    let raw = "Subject: spam\r\n\r\nspam from 192.0.2.9 at 2026-12-01 10:00:00\r\n".as_bytes();
    let utc = ParseOptions {
        default_zone: FixedOffset::UTC,
        ..ParseOptions::default()
    };
    let jst = ParseOptions::default();
    let at_utc = parse_report(raw, &utc).time.unwrap();
    let at_jst = parse_report(raw, &jst).time.unwrap();
    assert_eq!(at_utc.utc - at_jst.utc, 9 * 3600);
    assert_eq!(at_jst.original, "2026-12-01 10:00:00");
}

#[test]
fn junk_and_huge_messages_become_reports() {
    let junk: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let report = parse_report(&junk, &ParseOptions::default());
    assert!(report.needs_triage());

    let empty = parse_report(b"", &ParseOptions::default());
    assert_eq!(empty.kind, ReportKind::Unknown);

    // 20 MB: a report whose enclosed spam carries a huge attachment.
    let mut big = std::fs::read(format!(
        "{}/tests/reports/arf-rfc5965.eml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let tail = b"--part1_13d.2e68ed54_boundary--\r\n";
    big.truncate(big.len() - tail.len());
    big.extend_from_slice(b"--part1_13d.2e68ed54_boundary\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    let line = b"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\r\n";
    while big.len() < 20 * 1024 * 1024 {
        big.extend_from_slice(line);
    }
    big.extend_from_slice(tail);
    let report = parse_report(&big, &ParseOptions::default());
    assert_eq!(report.kind, ReportKind::Arf);
    assert_eq!(
        report.source_ip,
        Some("192.0.2.1".parse::<IpAddr>().unwrap())
    );

    // 20 MB of text without structure.
    let text = "spam spam 192.0.2.3 ".repeat(1_100_000);
    let report = parse_report(
        format!("Subject: x\n\n{text}").as_bytes(),
        &ParseOptions::default(),
    );
    assert_eq!(
        report.source_ip,
        Some("192.0.2.3".parse::<IpAddr>().unwrap())
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = parse_report(&bytes, &ParseOptions::default());
    }

    #[test]
    fn mutated_reports_never_panic(cut in 0usize..2000, flip in 0usize..2000, byte in any::<u8>()) {
        let mut raw = std::fs::read(format!("{}/tests/reports/arf-fbl-redacted.eml", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let at = flip % raw.len();
        raw[at] = byte;
        raw.truncate(raw.len().saturating_sub(cut));
        let _ = parse_report(&raw, &ParseOptions::default());
    }
}
