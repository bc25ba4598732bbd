//! The abuse desk through the real binary: a report ingested from stdin, the customer
//! found through imported RADIUS accounting, the ladder enforced on the running daemon's
//! submission policy, attribution answered, misuse refused with nothing changed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

mod process;
use process::{ask, run_with_config, run_with_config_stdin, serve, spamgate};

const ALICE_ACCOUNT: &str = "alice-smtp@isp.example.jp";

fn desk_fixture(kind: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../desk/tests")
        .join(kind)
        .join(name)
}

/// The RFC 5965 example report. It names 192.0.2.1; the RADIUS history has alice on
/// 192.0.2.10 at that time, so the address is rewritten the way a report about her
/// line would name it.
fn alice_report() -> Vec<u8> {
    std::fs::read_to_string(desk_fixture("reports", "arf-rfc5965.eml"))
        .unwrap()
        .replace("192.0.2.1", "192.0.2.10")
        .into_bytes()
}

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    // No DNS server at this address: lookups fail fast, which must never reject.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let path = dir.join("spamgate.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = ["unix:{socket}"]
unix_mode = "0600"
[store]
path = "{db}"
[dns]
nameservers = ["{ns}"]
timeout = "200ms"
attempts = 1
[dnsbl]
zones = []
{extra}
"#,
            socket = dir.join("policy.sock").display(),
            db = dir.join("state/spamgate.db").display(),
            ns = dead.local_addr().unwrap(),
        ),
    )
    .unwrap();
    path
}

/// `spamgate abuse ingest -c CONFIG` with `message` on stdin: (exit code, stdout, stderr).
fn ingest(config: &Path, message: &[u8]) -> (Option<i32>, String, String) {
    run_with_config_stdin(config, &["abuse", "ingest"], message)
}

/// Runs a command that must succeed; its stdout.
fn ok(config: &Path, args: &[&str]) -> String {
    let (code, out, err) = run_with_config(config, args);
    assert_eq!(code, Some(0), "spamgate {args:?}: {err}");
    out
}

/// The customer C-ALICE with her submission account and RADIUS user, and the
/// RADIUS detail file imported.
fn provision(config: &Path) {
    ok(config, &["account", "add", ALICE_ACCOUNT]);
    ok(
        config,
        &[
            "customer",
            "add",
            "C-ALICE",
            "--name",
            "Alice",
            "--contact",
            "alice@example.jp",
        ],
    );
    ok(
        config,
        &[
            "customer",
            "link",
            "C-ALICE",
            "--account",
            ALICE_ACCOUNT,
            "--radius-user",
            "alice@isp.example.jp",
        ],
    );
    let detail = desk_fixture("history", "radius-detail");
    let out = ok(
        config,
        &[
            "sessions",
            "import",
            "--format",
            "radius-detail",
            detail.to_str().unwrap(),
        ],
    );
    assert!(out.starts_with("imported\t"), "{out}");
}

fn submission_request(user: &str) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
         client_address=198.51.100.200\nclient_name=unknown\nsasl_method=PLAIN\n\
         sasl_username={user}\nserver_port=587\nsender={user}\n\
         recipient=someone@example.org\n\n"
    )
}

#[test]
fn a_reported_customer_is_suspended_at_the_running_daemon_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let hook_log = dir.path().join("hook.log");
    // The hook contract: the command, then the customer id and the step.
    let hook = format!(
        "[desk]\nhook_command = [\"sh\", \"-c\", \"echo \\\"$1 $2\\\" >> {}\", \"hook\"]\n",
        hook_log.display()
    );
    let config = write_config(dir.path(), &hook);
    provision(&config);

    let (code, first, err) = ingest(&config, &alice_report());
    assert_eq!(code, Some(0), "{err}");
    assert!(first.starts_with("stored\t"), "{first}");
    assert!(
        first.contains("\tfiled\tcustomer=C-ALICE\tcase="),
        "{first}"
    );
    let (code, second, err) = ingest(&config, &alice_report());
    assert_eq!(code, Some(0), "{err}");
    assert!(
        second.starts_with("duplicate\t"),
        "the same bytes: {second}"
    );
    let field = |line: &str, name: &str| {
        line.split('\t')
            .find_map(|f| f.strip_prefix(name).map(str::to_string))
            .unwrap()
    };
    assert_eq!(field(&first, "report="), field(&second, "report="));
    assert_eq!(
        ok(&config, &["abuse", "reports"]).lines().count(),
        1,
        "stored once"
    );

    // The case, found as an operator would: listed as JSON, times in JST.
    let cases = ok(&config, &["abuse", "cases", "--json"]);
    let cases: Vec<serde_json::Value> = cases
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0]["customer"], "C-ALICE");
    assert_eq!(cases[0]["category"], "spam");
    assert_eq!(cases[0]["opened_at"], "2026-12-01T10:00:00+09:00");
    let case_id = cases[0]["id"].as_i64().unwrap().to_string();
    let shown = ok(&config, &["abuse", "show", &case_id]);
    assert!(
        shown.contains(
            "evidence\t192.0.2.10/32\tradius-user=alice@isp.example.jp\tcustomer=C-ALICE"
        ),
        "the attribution is kept as evidence: {shown}"
    );

    let socket = dir.path().join("policy.sock");
    let daemon = serve(&config, &socket);
    assert_eq!(
        ask(&socket, &submission_request(ALICE_ACCOUNT)),
        "action=DUNNO\n\n",
        "an active customer's account sends"
    );

    // The default policy wants a second person for a suspension.
    let (code, _, err) = run_with_config(
        &config,
        &[
            "abuse", "suspend", "C-ALICE", "--reason", "spam run", "--actor", "sato",
        ],
    );
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("approver"), "{err}");
    assert_eq!(
        ask(&socket, &submission_request(ALICE_ACCOUNT)),
        "action=DUNNO\n\n",
        "a refused step enforces nothing"
    );

    let suspended = ok(
        &config,
        &[
            "abuse",
            "suspend",
            "C-ALICE",
            "--reason",
            "spam run",
            "--evidence",
            &format!("case:{case_id}"),
            "--actor",
            "sato",
            "--approver",
            "suzuki",
        ],
    );
    assert!(
        suspended.contains(&format!("account\t{ALICE_ACCOUNT}\tactive -> suspended")),
        "{suspended}"
    );
    assert!(
        suspended.contains("hook ") && suspended.contains("\tsuspended\tdone\tok"),
        "{suspended}"
    );
    let refused = ask(&socket, &submission_request(ALICE_ACCOUNT));
    assert!(
        refused.starts_with("action=554 5.7.1 Sending refused"),
        "no reload needed: {refused}"
    );

    ok(
        &config,
        &[
            "abuse",
            "resume",
            "C-ALICE",
            "--reason",
            "cleaned up",
            "--actor",
            "sato",
        ],
    );
    assert_eq!(
        ask(&socket, &submission_request(ALICE_ACCOUNT)),
        "action=DUNNO\n\n",
        "accepted again after resume"
    );
    daemon.stop();

    assert_eq!(
        std::fs::read_to_string(&hook_log).unwrap(),
        "C-ALICE suspended\nC-ALICE resumed\n"
    );
    let shown = ok(&config, &["customer", "show", "C-ALICE"]);
    for expected in [
        "ladder\tresumed\t",
        "\tsato\tsuspend\tnone -> suspended\tspam run",
        "\tsato\tresume\tsuspended -> resumed\tcleaned up",
        &format!("account\t{ALICE_ACCOUNT}"),
    ] {
        assert!(shown.contains(expected), "{expected:?} in {shown}");
    }
}

#[test]
fn who_answers_the_attribution_question() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    provision(&config);
    let check = |address: &str, time: &str, expected: &str| {
        let out = ok(&config, &["abuse", "who", address, time]);
        assert_eq!(
            out.lines().next().unwrap_or(""),
            expected,
            "who {address} {time}: {out}"
        );
    };
    // alice holds .10 from 10:00 to 11:00 JST; bob (no customer mapping) from 11:05.
    check(
        "192.0.2.10",
        "2026-12-01T10:30:00+09:00",
        "customer\tC-ALICE",
    );
    check("192.0.2.10", "2026-12-01T01:30:00Z", "customer\tC-ALICE");
    check(
        "192.0.2.10:40000",
        "2026-12-01T10:59:00+09:00",
        "customer\tC-ALICE",
    );
    // Between the two, beyond the 2-minute clock skew either side.
    check(
        "192.0.2.10",
        "2026-12-01T11:02:30+09:00",
        "triage\tno-candidate",
    );
    check(
        "192.0.2.10",
        "2026-12-01T11:30:00+09:00",
        "triage\tunknown-holder",
    );
    check(
        "203.0.113.99",
        "2026-12-01T10:30:00+09:00",
        "triage\tno-candidate",
    );

    let json = ok(
        &config,
        &[
            "abuse",
            "who",
            "192.0.2.10",
            "2026-12-01T10:30:00+09:00",
            "--json",
        ],
    );
    let answer: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(answer["customer"], "C-ALICE");
    assert_eq!(
        answer["evidence"][0]["start"], "2026-12-01T10:00:00+09:00",
        "times in the configured zone"
    );
}

#[test]
fn unknown_names_exit_64_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    provision(&config);
    let before = ok(&config, &["customer", "show", "C-ALICE"]);
    for args in [
        &[
            "abuse",
            "suspend",
            "C-NOBODY",
            "--reason",
            "x",
            "--approver",
            "b",
        ][..],
        &["abuse", "warn", "C-NOBODY", "--reason", "x"],
        &["abuse", "show", "999"],
        &["abuse", "enforce", "C-NOBODY"],
        &["abuse", "confirm", "999"],
        &["abuse", "assign", "999", "C-ALICE"],
        &["abuse", "export", "999", "/nonexistent-parent"],
        &["abuse", "resume", "C-ALICE", "--reason", "never suspended"],
        &[
            "abuse",
            "who",
            "not-an-address",
            "2026-12-01T10:30:00+09:00",
        ],
        &["abuse", "who", "192.0.2.10", "yesterday-ish"],
        &["customer", "show", "C-NOBODY"],
        &["customer", "link", "C-NOBODY", "--account", ALICE_ACCOUNT],
        &[
            "customer",
            "link",
            "C-ALICE",
            "--account",
            "nobody@isp.example.jp",
        ],
        &["customer", "add", "C-BAD", "--contact", "no-at-sign"],
        &["sessions", "import", "--format", "wtmp", "/etc/hostname"],
        &[
            "abuse", "claim", "C-ALICE", "--case", "999", "--amount", "1000", "--basis", "x",
        ],
    ] {
        let (code, _, err) = run_with_config(&config, args);
        assert_eq!(code, Some(64), "spamgate {args:?}: {err}");
        assert!(!err.trim().is_empty(), "spamgate {args:?} says why");
    }
    assert_eq!(
        ok(&config, &["customer", "show", "C-ALICE"]),
        before,
        "nothing changed"
    );
    assert_eq!(ok(&config, &["customer", "list"]).lines().count(), 1);
    assert!(
        ok(&config, &["account", "show", ALICE_ACCOUNT]).contains("\tactive\t"),
        "the account untouched"
    );
}

#[test]
fn ingest_exits_75_when_it_cannot_store() {
    let dir = tempfile::tempdir().unwrap();
    // The desk file's directory cannot exist: a regular file is in the way.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "").unwrap();
    let config = write_config(
        dir.path(),
        &format!("[desk]\npath = \"{}/desk.db\"\n", blocker.display()),
    );
    let (code, out, err) = ingest(&config, &alice_report());
    assert_eq!(code, Some(75), "EX_TEMPFAIL: the MTA retries: {out} {err}");
    // A broken configuration is no reason to bounce the report either.
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[desk]\ntime_zone = \"Mars/Olympus\"\n").unwrap();
    let (code, _, err) = ingest(&broken, &alice_report());
    assert_eq!(code, Some(75), "{err}");
}

#[test]
fn a_failing_hook_is_kept_and_shown_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[desk]\nhook_command = [\"sh\", \"-c\", \"echo coa refused >&2; exit 3\", \"hook\"]\n",
    );
    provision(&config);
    let out = ok(
        &config,
        &["abuse", "warn", "C-ALICE", "--reason", "first complaint"],
    );
    assert!(out.contains("\twarned\tpending\t"), "{out}");
    assert!(
        out.contains("coa refused"),
        "the hook's stderr is shown: {out}"
    );
    let pending = ok(&config, &["abuse", "deliveries", "--json"]);
    let hook: serde_json::Value = pending
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|d| d["kind"] == "hook")
        .expect("the hook delivery is still queued");
    assert_eq!(hook["attempts"], 1);
    assert_eq!(hook["payload"]["step"], "warned");
    assert!(
        hook["last_error"].as_str().unwrap().contains("coa refused"),
        "{hook}"
    );
}

#[test]
fn parallel_ingests_store_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    provision(&config);
    let same = alice_report();
    let distinct = |i: usize| {
        String::from_utf8(alice_report())
            .unwrap()
            .replace(
                "Subject: FW: Earn money",
                &format!("Subject: FW: Earn money {i}"),
            )
            .into_bytes()
    };
    // The MTA runs deliveries side by side: 8 copies of one message and 8 others at once.
    let messages: Vec<Vec<u8>> = (0..16)
        .map(|i| {
            if i % 2 == 0 {
                same.clone()
            } else {
                distinct(i)
            }
        })
        .collect();
    let mut children: Vec<_> = messages
        .iter()
        .map(|_| {
            spamgate()
                .args(["abuse", "ingest", "-c"])
                .arg(&config)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (child, message) in children.iter_mut().zip(&messages) {
        child.stdin.take().unwrap().write_all(message).unwrap();
    }
    let mut duplicates = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        duplicates += usize::from(stdout.starts_with("duplicate\t"));
    }
    assert_eq!(duplicates, 7, "every copy but the first is a duplicate");
    assert_eq!(
        ok(&config, &["abuse", "reports"]).lines().count(),
        9,
        "one report per distinct message"
    );
    let cases = ok(&config, &["abuse", "cases"]);
    assert_eq!(cases.lines().count(), 1, "{cases}");
    assert!(
        cases.contains("\treports=9\tduplicates=8\t"),
        "same original Message-ID: one case: {cases}"
    );
}

/// `abuse purge` is wired to the configured retention: nothing recent goes (the store's
/// rules are the conformance suite's `purge_keeps_open_and_claimed_cases`), and a
/// retention under a day is refused before anything is touched.
#[test]
fn purge_keeps_what_is_recent_and_refuses_a_short_retention() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    provision(&config);
    let (code, _, err) = ingest(&config, &alice_report());
    assert_eq!(code, Some(0), "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(ok(&config, &["abuse", "purge", "--json"]).trim()).unwrap();
    for key in ["sessions", "cases", "reports", "raw_reports", "deliveries"] {
        assert_eq!(summary[key], 0, "{key}: {summary}");
    }
    assert_eq!(summary["kept_open_cases"], 0, "not past its retention");
    assert_eq!(
        ok(&config, &["abuse", "reports", "--json"]).lines().count(),
        1
    );

    let short = write_config(dir.path(), "[desk]\nretention_cases = \"1h\"\n");
    let (code, _, err) = run_with_config(&short, &["abuse", "purge"]);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("retention_cases"), "{err}");
}
