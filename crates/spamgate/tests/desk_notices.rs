//! Customer notices through the real binary and a real SMTP receiver on loopback
//! (Postfix's `smtp-sink`): a confirmed case mails nothing while the relay is down, the
//! failure shows in `abuse deliveries` with its error, and `abuse deliver` (the timer's
//! command) sends it once the relay is up. `abuse signals` is wired and idempotent.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod process;
use process::{run_with_config, spamgate};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Sink(Child);

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `smtp-sink` on 127.0.0.1:`port`, one file per message under `dir`.
fn sink(port: u16, dir: &Path) -> Sink {
    std::fs::create_dir_all(dir).unwrap();
    let mut command = Command::new("smtp-sink");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if root {
        // As root it insists on a user to drop to.
        command.args(["-u", "root"]);
    }
    let child = command
        .arg("-d")
        .arg(format!("{}/%M.", dir.display()))
        .arg(format!("127.0.0.1:{port}"))
        .arg("10")
        .stdin(Stdio::null())
        .spawn()
        .expect("smtp-sink (package postfix) must be installed");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Sink(child)
}

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
    let _sink = sink(port, &mail);
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
