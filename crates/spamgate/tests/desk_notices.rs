//! Customer notices through the real binary and a real SMTP receiver on loopback
//! (Postfix's `smtp-sink`): a confirmed case mails nothing while the relay is down, the
//! failure shows in `abuse deliveries` with its error, and `abuse deliver` (the timer's
//! command) sends it once the relay is up. `abuse signals` is wired and idempotent.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

mod process;
use process::{run_with_config, spamgate};

// The same `smtp-sink` fixture as the app crate's notice tests.
#[path = "../../app/tests/smtp_sink/mod.rs"]
mod smtp_sink;
use smtp_sink::{Sink, free_port};

fn write_config(dir: &Path, relay_port: u16) -> PathBuf {
    let path = dir.join("spamgate.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[store]
path = "{db}"
[desk]
notice_relay_host = "127.0.0.1"
notice_relay_port = {relay_port}
notice_from = "abuse@isp.example.jp"
notice_isp_name = "Example ISP"
hook_first_retry = "1s"
hook_max_retry = "1s"
"#,
            db = dir.join("state/spamgate.db").display(),
        ),
    )
    .unwrap();
    path
}

fn ok(config: &Path, args: &[&str]) -> String {
    let (code, out, err) = run_with_config(config, args);
    assert_eq!(code, Some(0), "spamgate {args:?}: {out} {err}");
    out
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn notify_deliveries(config: &Path, state: &str) -> Vec<serde_json::Value> {
    json_lines(&ok(
        config,
        &["abuse", "deliveries", "--state", state, "--json"],
    ))
    .into_iter()
    .filter(|d| d["kind"] == "notify")
    .collect()
}

#[test]
fn a_notice_failed_at_the_relay_is_shown_and_sent_by_a_later_deliver() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port);
    ok(
        &config,
        &[
            "customer",
            "add",
            "C-JOHN",
            "--name",
            "John Smith",
            "--contact",
            "john@example.com",
            "--language",
            "en",
        ],
    );
    let report = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../desk/tests/reports/arf-rfc5965.eml"),
    )
    .unwrap();
    let mut child = spamgate()
        .args(["abuse", "ingest", "-c"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &report).unwrap();
    assert!(child.wait().unwrap().success());
    let triage = json_lines(&ok(&config, &["abuse", "triage", "--json"]));
    let report_id = triage[0]["id"].to_string();
    ok(&config, &["abuse", "assign", &report_id, "C-JOHN"]);
    let cases = json_lines(&ok(&config, &["abuse", "cases", "--json"]));
    let case_id = cases[0]["id"].to_string();

    // The confirming command tries the notice at once: the relay is down.
    let out = ok(&config, &["abuse", "confirm", &case_id]);
    assert!(out.contains("notice "), "{out}");
    let pending = notify_deliveries(&config, "pending");
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["attempts"], 1);
    let error = pending[0]["last_error"].as_str().unwrap();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");

    // The relay is up: the timer's command sends it once its retry is due.
    let mail = dir.path().join("mail");
    let _sink = Sink::start(port, &mail);
    let mut sent = false;
    for _ in 0..40 {
        let out = ok(&config, &["abuse", "deliver"]);
        if out.contains("\tdone\t") {
            assert!(out.contains("john@example.com"), "{out}");
            sent = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(sent, "the notice was never sent");
    assert!(notify_deliveries(&config, "pending").is_empty());
    assert_eq!(notify_deliveries(&config, "done").len(), 1);
    let mut files = Vec::new();
    for _ in 0..200 {
        files = std::fs::read_dir(&mail).unwrap().collect();
        if !files.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(files.remove(0).unwrap().path()).unwrap();
    for header in [
        "X-Rcpt-Args: <john@example.com>",
        "X-Mail-Args: <abuse@isp.example.jp>",
        "Content-Type: text/plain; charset=utf-8",
    ] {
        assert!(text.contains(header), "{header} in {text}");
    }

    // Nothing to file from account events; a rerun files nothing either.
    for _ in 0..2 {
        let out = ok(&config, &["abuse", "signals"]);
        assert!(out.contains("0 filed, 0 already filed"), "{out}");
    }
}
