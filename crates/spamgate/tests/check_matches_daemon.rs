//! `spamgate check` runs the daemon's own path: for every transaction of the table, the
//! action `check --json` explains is the one the running daemon answers on its socket.
//! Both are real processes on the same configuration, store file and DNS server (an
//! in-process authoritative server on loopback).

mod common;
mod process;

use std::path::Path;

use process::{ask, run_with_config, serve};

/// One transaction: the policy attributes (as `name=value`), and what the answer must
/// start with (so the table shows it reaches the path it names).
struct Case {
    name: &'static str,
    attributes: &'static [(&'static str, &'static str)],
    answer_starts: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "proper, confirmed name",
        attributes: &[
            ("client_address", "192.0.2.10"),
            ("client_name", "mail.example.test"),
        ],
        answer_starts: "DUNNO",
    },
    Case {
        name: "DNSBL listing",
        attributes: &[
            ("client_address", "192.0.2.66"),
            ("client_name", "mail.example.test"),
        ],
        answer_starts: "554 5.7.1 Service unavailable; client [192.0.2.66] blocked using bl.test",
    },
    Case {
        name: "DNSBL listing, IPv4-mapped IPv6 address",
        attributes: &[("client_address", "::ffff:192.0.2.66")],
        answer_starts: "554 5.7.1 Service unavailable; client [192.0.2.66]",
    },
    Case {
        name: "DNSWL listing",
        attributes: &[("client_address", "192.0.2.77")],
        answer_starts: "DUNNO",
    },
    Case {
        name: "no PTR",
        attributes: &[("client_address", "192.0.2.40"), ("client_name", "unknown")],
        answer_starts: "DEFER_IF_PERMIT 4.7.1 Greylisted (reverse lookup failure)",
    },
    Case {
        name: "PTR not confirmed",
        attributes: &[
            ("client_address", "192.0.2.30"),
            ("client_name", "unknown"),
            ("reverse_client_name", "liar.example.test"),
        ],
        answer_starts: "DEFER_IF_PERMIT 4.7.1 Greylisted (reverse name does not resolve back)",
    },
    Case {
        name: "generic (S25R) name",
        attributes: &[
            ("client_address", "192.0.2.20"),
            ("client_name", "192-0-2-20.dyn.example.test"),
        ],
        answer_starts: "DEFER_IF_PERMIT 4.7.1 Greylisted (S25R check",
    },
    Case {
        name: "generic name before RCPT: lists only",
        attributes: &[
            ("protocol_state", "MAIL"),
            ("client_address", "192.0.2.20"),
            ("client_name", "192-0-2-20.dyn.example.test"),
        ],
        answer_starts: "DUNNO",
    },
    Case {
        name: "configured allow-list",
        attributes: &[
            ("client_address", "198.51.100.5"),
            ("client_name", "unknown"),
        ],
        answer_starts: "DUNNO",
    },
    Case {
        name: "runtime allow-list (sender)",
        attributes: &[
            ("client_address", "203.0.113.9"),
            ("client_name", "unknown"),
            ("sender", "partner@example.org"),
        ],
        answer_starts: "DUNNO",
    },
    Case {
        name: "submission with AUTH, active account",
        attributes: &[
            ("client_address", "203.0.113.50"),
            ("sasl_username", "taro@example.jp"),
            ("server_port", "587"),
        ],
        answer_starts: "DUNNO",
    },
    Case {
        name: "submission port without AUTH",
        attributes: &[("client_address", "203.0.113.50"), ("server_port", "587")],
        answer_starts: "530 5.7.0 Authentication required",
    },
    Case {
        name: "submission by a suspended account",
        attributes: &[
            ("client_address", "203.0.113.51"),
            ("sasl_username", "hanako@example.jp"),
            ("server_port", "587"),
        ],
        answer_starts: "554 5.7.1 Sending refused: account hanako@example.jp is suspended",
    },
    Case {
        name: "AUTH on port 25 is a submission too",
        attributes: &[
            ("client_address", "203.0.113.52"),
            ("client_name", "unknown"),
            ("sasl_username", "hanako@example.jp"),
            ("server_port", "25"),
        ],
        answer_starts: "554 5.7.1 Sending refused",
    },
];

/// The request as Postfix sends it (RCPT unless the case says otherwise).
fn request(attributes: &[(&str, &str)]) -> String {
    let mut text = String::from("request=smtpd_access_policy\n");
    if !attributes.iter().any(|(n, _)| *n == "protocol_state") {
        text.push_str("protocol_state=RCPT\n");
    }
    let has = |name: &str| attributes.iter().any(|(n, _)| *n == name);
    for (name, value) in [("sender", "a@example.org"), ("recipient", "b@example.net")] {
        if !has(name) {
            text.push_str(&format!("{name}={value}\n"));
        }
    }
    for (name, value) in attributes {
        text.push_str(&format!("{name}={value}\n"));
    }
    text.push('\n');
    text
}

/// The same attributes as `spamgate check` options.
fn check_args(attributes: &[(&str, &str)]) -> Vec<String> {
    let mut args = vec!["check".to_string(), "--json".to_string()];
    let mut has_sender = false;
    let mut has_recipient = false;
    for (name, value) in attributes {
        has_sender |= *name == "sender";
        has_recipient |= *name == "recipient";
        let option = match *name {
            "helo_name" => "helo".to_string(),
            other => other.replace('_', "-"),
        };
        args.push(format!("--{option}={value}"));
    }
    if !has_sender {
        args.push("--sender=a@example.org".into());
    }
    if !has_recipient {
        args.push("--recipient=b@example.net".into());
    }
    args
}

/// The daemon tests' configuration, on a UNIX socket in `dir`.
fn write_config(dir: &Path, dns: std::net::SocketAddr) -> std::path::PathBuf {
    let path = dir.join("spamgate.toml");
    let listen = format!("unix:{}", dir.join("policy.sock").display());
    let text = common::config_text(dns, &dir.join("spamgate.db"), &listen);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_explains_the_answer_the_daemon_gives() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dns = rt
        .block_on(common::dns_builder().start())
        .expect("test DNS");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), dns.addr());
    let socket = dir.path().join("policy.sock");
    let cli = |args: &[&str]| {
        let (code, out, err) = run_with_config(&config, args);
        assert_eq!(code, Some(0), "spamgate {args:?}: {err}");
        out
    };
    cli(&["allow", "add", "sender", "partner@example.org"]);
    cli(&["account", "suspend", "hanako@example.jp", "--create"]);
    let daemon = serve(&config, &socket);
    // The daemon reads the runtime allow-list just after it starts listening: wait for it
    // (a probe the allow-list decides) before comparing.
    let probe = request(&[
        ("client_address", "203.0.113.99"),
        ("client_name", "unknown"),
        ("sender", "partner@example.org"),
    ]);
    let started = std::time::Instant::now();
    while !ask(&socket, &probe).contains("action=DUNNO") {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the daemon never loaded the runtime allow-list"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    for case in CASES {
        // check first: it writes nothing, so the daemon then sees the same state.
        let args = check_args(case.attributes);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let explained: serde_json::Value = serde_json::from_str(&cli(&args)).unwrap();
        let check_action = explained["postfix_action"].as_str().unwrap().to_string();
        let reply = ask(&socket, &request(case.attributes));
        let daemon_action = reply
            .trim_end()
            .strip_prefix("action=")
            .unwrap_or_else(|| panic!("{}: no reply: {reply:?}", case.name));
        assert!(
            same_answer(&check_action, daemon_action),
            "{}: check explained a different answer from the daemon's: {check_action:?} vs {daemon_action:?}",
            case.name
        );
        assert!(
            daemon_action.starts_with(case.answer_starts),
            "{}: {daemon_action}",
            case.name
        );
        assert_eq!(
            explained["verdict"]["action"].as_str(),
            Some(if daemon_action.starts_with("DUNNO") {
                "pass"
            } else if daemon_action.starts_with("DEFER_IF_PERMIT") {
                "greylist"
            } else {
                "reject"
            }),
            "{}: {explained}",
            case.name
        );
    }
    drop(daemon);
}

/// The same answer, allowing a "retry in N seconds" to differ by one second: `check` and
/// the daemon read the clock at two moments, and a second boundary may fall between them.
fn same_answer(check: &str, daemon: &str) -> bool {
    let check: Vec<&str> = check.split(' ').collect();
    let daemon: Vec<&str> = daemon.split(' ').collect();
    check.len() == daemon.len()
        && check.iter().zip(&daemon).enumerate().all(|(i, (a, b))| {
            a == b
                || (check
                    .get(i + 1)
                    .is_some_and(|next| next.starts_with("seconds"))
                    && matches!(
                        (a.parse::<u64>(), b.parse::<u64>()),
                        (Ok(x), Ok(y)) if x.abs_diff(y) <= 1
                    ))
        })
}

#[test]
fn same_answer_allows_one_second_only_in_numbers() {
    let cases = [
        (
            "DEFER_IF_PERMIT resend in 300 seconds",
            "DEFER_IF_PERMIT resend in 299 seconds",
            true,
        ),
        (
            "DEFER_IF_PERMIT resend in 300 seconds",
            "DEFER_IF_PERMIT resend in 298 seconds",
            false,
        ),
        ("DUNNO", "DUNNO", true),
        ("DUNNO", "DEFER_IF_PERMIT", false),
        ("550 5.7.1 listed", "450 5.7.1 listed", false),
        ("451 4.7.1 limit", "450 4.7.1 limit", false),
    ];
    for (a, b, expected) in cases {
        assert_eq!(same_answer(a, b), expected, "{a:?} vs {b:?}");
    }
}
