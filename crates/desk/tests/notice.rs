//! Every shipped template renders, in the customer's language, naming the case,
//! the address and the time in the right zone.

use spamgate_desk::case::{Customer, CustomerStatus, Language};
use spamgate_desk::ladder::Step;
use spamgate_desk::notice::{NoticeFacts, Sender, Templates};
use spamgate_desk::report::Category;
use spamgate_desk::time::{FixedOffset, from_civil};

fn customer(language: Language) -> Customer {
    Customer {
        id: "C0001234".into(),
        name: if language == Language::Ja {
            "山田 太郎".into()
        } else {
            "Ann Smith".into()
        },
        contact: "customer@example.jp".into(),
        language,
        plan: "home".into(),
        status: CustomerStatus::Active,
    }
}

fn sender() -> Sender {
    Sender {
        isp_name: "Example ISP".into(),
        desk_address: "abuse@isp.example.jp".into(),
        english_zone: FixedOffset::UTC,
    }
}

fn check(language: Language, step: Step, category: Category, must: &[&str]) {
    let at = from_civil(2026, 12, 1, 10, 5, 0, FixedOffset::JST).unwrap();
    let facts = NoticeFacts {
        step,
        category,
        case_id: Some(42),
        address: Some("192.0.2.10".parse().unwrap()),
        port: Some(40123),
        at: Some(at),
        deadline: Some(at + 7 * 86_400),
    };
    let notice = Templates::builtin()
        .unwrap()
        .render(&customer(language), &facts, &sender())
        .unwrap();
    let text = format!("{}\n{}", notice.subject, notice.body);
    assert_eq!(notice.language, language);
    assert_eq!(notice.to, "customer@example.jp");
    for needle in must {
        assert!(
            text.contains(needle),
            "{language:?} {step:?} {category:?}: {needle:?} missing in\n{text}"
        );
    }
    assert!(
        !notice.body.starts_with("Subject"),
        "the subject line is taken off the body"
    );
}

#[test]
fn shipped_templates_name_case_address_time_and_what_to_do() {
    use Category::*;
    use Language::*;
    let table: &[(Language, Step, Category, &[&str])] = &[
        (
            Ja,
            Step::Warned,
            Spam,
            &[
                "山田 太郎 様",
                "案件番号 42",
                "192.0.2.10 (ポート 40123)",
                "2026-12-01T10:05:00+09:00",
                "ウイルス",
                "2026-12-08T10:05:00+09:00",
            ],
        ),
        (
            Ja,
            Step::Warned,
            Overload,
            &["大量送信", "一斉送信を直ちに停止"],
        ),
        (Ja, Step::Warned, Illegal, &["著作権"]),
        (Ja, Step::Suspended, Spam, &["停止しました", "案件番号 42"]),
        (Ja, Step::Resumed, Spam, &["再開しました"]),
        (Ja, Step::Terminated, Vandalism, &["契約を解除", "損害"]),
        (
            En,
            Step::Warned,
            Spam,
            &[
                "Dear Ann Smith",
                "case 42",
                "192.0.2.10 (port 40123)",
                "2026-12-01T01:05:00Z",
                "anti-virus",
            ],
        ),
        (En, Step::Warned, Vandalism, &["attacks"]),
        (
            En,
            Step::Suspended,
            Overload,
            &["suspended", "mass mailing"],
        ),
        (En, Step::Resumed, Spam, &["resumed"]),
        (En, Step::Terminated, Illegal, &["terminated", "copyright"]),
    ];
    for (language, step, category, must) in table {
        check(*language, *step, *category, must);
    }
}

#[test]
fn operators_override_templates_and_mistakes_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("en")).unwrap();
    std::fs::write(
        dir.path().join("en/warned.txt"),
        "Subject: Hi {{ customer_name }}\n\nCase {{ case_id }}.\n",
    )
    .unwrap();
    let templates = Templates::with_overrides(dir.path()).unwrap();
    let facts = NoticeFacts {
        step: Step::Warned,
        category: Category::Spam,
        case_id: Some(7),
        address: None,
        port: None,
        at: None,
        deadline: None,
    };
    let en = templates
        .render(&customer(Language::En), &facts, &sender())
        .unwrap();
    assert_eq!(
        (en.subject.as_str(), en.body.as_str()),
        ("Hi Ann Smith", "Case 7.\n")
    );
    let ja = templates
        .render(&customer(Language::Ja), &facts, &sender())
        .unwrap();
    assert!(
        ja.subject.contains("迷惑メール"),
        "Japanese keeps the shipped template"
    );

    std::fs::write(
        dir.path().join("en/warned.txt"),
        "Subject: {{ custmer_name }}\n",
    )
    .unwrap();
    let templates = Templates::with_overrides(dir.path()).unwrap();
    assert!(
        templates
            .render(&customer(Language::En), &facts, &sender())
            .is_err(),
        "a misspelt variable"
    );
    std::fs::write(dir.path().join("en/warned.txt"), "no subject\n").unwrap();
    let templates = Templates::with_overrides(dir.path()).unwrap();
    assert!(
        templates
            .render(&customer(Language::En), &facts, &sender())
            .is_err(),
        "no subject line"
    );
    std::fs::write(dir.path().join("en/warned.txt"), "Subject: {% if %}\n").unwrap();
    assert!(
        Templates::with_overrides(dir.path()).is_err(),
        "a syntax error is found at load"
    );
}
