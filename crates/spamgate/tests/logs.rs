//! The log formats and targets of a real `spamgate serve`: JSON lines on stderr, and
//! syslog datagrams (facility mail) to a UNIX datagram socket this test binds.

mod process;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use process::{ask, serve, serve_logging_to, spamgate};

/// From an allow-listed client: answered without DNS.
const ALLOWED: &str = "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=198.51.100.3\nclient_name=mx.example.org\nhelo_name=mx \"quoted\"\nsender=a@example.org\nrecipient=b@example.net\nqueue_id=4XyZ1\n\n";

fn config(dir: &Path, server_extra: &str, log_level: &str) -> std::path::PathBuf {
    let path = dir.join("spamgate.toml");
    std::fs::write(
        &path,
        format!(
            r#"
log_level = "{log_level}"
[server]
listen = ["unix:{dir}/policy.sock"]
{server_extra}
[store]
path = "{dir}/greylist.db"
[dns]
nameservers = ["127.0.0.1:9"]
timeout = "200ms"
attempts = 1
[dnsbl]
zones = []
[allow]
client_addresses = ["198.51.100.0/28"]
"#,
            dir = dir.display()
        ),
    )
    .unwrap();
    path
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// What every JSON decision line of [`ALLOWED`] carries, timestamp aside.
fn check_decision(value: &serde_json::Value) {
    let timestamp = value["timestamp"].as_str().expect("timestamp");
    assert!(
        timestamp.len() == 27 && timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T',
        "RFC 3339 UTC with microseconds: {timestamp}"
    );
    let mut value = value.clone();
    value.as_object_mut().unwrap().remove("timestamp");
    assert_eq!(
        value,
        serde_json::json!({
            "level": "INFO", "target": "spamgate::decision", "action": "pass",
            "client": "198.51.100.3", "name": "mx.example.org", "helo": "mx \"quoted\"",
            "sender": "a@example.org", "recipient": "b@example.net", "state": "RCPT",
            "queue_id": "4XyZ1",
            "reasons": ["allow:client-address=198.51.100.0/28(scope=all)"],
            "reply": "DUNNO"
        })
    );
}

#[test]
fn json_lines_on_stderr_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), r#"log_format = "json""#, "info");
    let socket = dir.path().join("policy.sock");
    let daemon = serve_logging_to(&config, &socket, &dir.path().join("stderr"));
    assert_eq!(ask(&socket, ALLOWED), "action=DUNNO\n\n");
    daemon.stop();
    let text = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(json).collect();
    let decisions: Vec<_> = lines
        .iter()
        .filter(|l| l["target"] == "spamgate::decision")
        .collect();
    assert_eq!(decisions.len(), 1, "{text}");
    check_decision(decisions[0]);
    // `spamgate stats` counts the JSON decision line this daemon really wrote, and
    // nothing else in the log.
    let out = spamgate()
        .args(["stats", "--json", "-c"])
        .arg(&config)
        .arg(dir.path().join("stderr"))
        .output()
        .unwrap();
    let counted: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(counted["decisions"], 1, "{counted}");
    assert_eq!(
        counted["by_action"],
        serde_json::json!({"pass": 1}),
        "{counted}"
    );
    assert_eq!(
        counted["by_reason"],
        serde_json::json!({"allow:client-address": 1}),
        "{counted}"
    );
    assert_eq!(counted["unreadable"], 0, "{counted}");
    // Other events: level, target, message and their own fields as members.
    assert!(
        lines.iter().any(|l| l["level"] == "INFO"
            && l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("spamgate"))
            && l["message"].as_str().is_some_and(|m| !m.is_empty())),
        "{text}"
    );
}

#[test]
fn syslog_datagrams_at_facility_mail() {
    let dir = tempfile::tempdir().unwrap();
    let log_socket = dir.path().join("log.sock");
    let syslog = UnixDatagram::bind(&log_socket).unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    for (format, log_level) in [("text", "info"), ("json", "info")] {
        let config = config(
            dir.path(),
            &format!(
                "log_format = \"{format}\"\nlog_target = \"syslog\"\nsyslog_path = \"{}\"",
                log_socket.display()
            ),
            log_level,
        );
        let socket = dir.path().join("policy.sock");
        let daemon = serve(&config, &socket);
        let pid = daemon.0.id();
        assert_eq!(ask(&socket, ALLOWED), "action=DUNNO\n\n");
        daemon.stop();
        let mut datagrams = Vec::new();
        let mut buf = vec![0u8; 65536];
        // Everything logged until the exit has been sent by now (the exit flushes).
        syslog.set_nonblocking(true).unwrap();
        while let Ok(n) = syslog.recv(&mut buf) {
            datagrams.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        syslog.set_nonblocking(false).unwrap();
        let header = |severity: u8| format!("<{}>spamgate[{pid}]: ", 16 + severity);
        // mail.info: the first datagram, sent when the socket is opened.
        assert_eq!(
            datagrams.first().map(String::as_str),
            Some(format!("{}logging to syslog", header(6)).as_str())
        );
        for datagram in &datagrams {
            assert!(
                !datagram.ends_with('\n'),
                "one line per datagram: {datagram:?}"
            );
            assert!(datagram.starts_with('<'), "{datagram:?}");
            assert!(
                datagram.contains(&format!("spamgate[{pid}]: ")),
                "{datagram:?}"
            );
        }
        let decisions: Vec<&str> = datagrams
            .iter()
            .filter_map(|d| d.strip_prefix(&header(6)))
            .filter(|d| d.contains("spamgate::decision"))
            .collect();
        assert_eq!(decisions.len(), 1, "{format}: {datagrams:#?}");
        match format {
            "json" => check_decision(&json(decisions[0])),
            _ => assert_eq!(
                decisions[0],
                "INFO spamgate::decision: action=pass client=198.51.100.3 name=mx.example.org \
                 helo=mx \"quoted\" sender=<a@example.org> recipient=<b@example.net> \
                 state=RCPT queue_id=4XyZ1 \
                 reasons=\"allow:client-address=198.51.100.0/28(scope=all)\" reply=\"DUNNO\""
            ),
        }
        // The startup line, at mail.info, without a time of its own (syslog stamps it).
        assert!(
            datagrams.iter().any(|d| d.starts_with(&header(6))
                && d.contains("spamgate")
                && !d[header(6).len()..].starts_with("20")),
            "{datagrams:#?}"
        );
    }
}

#[test]
fn a_filtered_decision_target_writes_no_decision_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        r#"log_format = "json""#,
        "info,spamgate::decision=warn",
    );
    let socket = dir.path().join("policy.sock");
    let daemon = serve_logging_to(&config, &socket, &dir.path().join("stderr"));
    assert_eq!(ask(&socket, ALLOWED), "action=DUNNO\n\n");
    daemon.stop();
    let text = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert!(!text.contains("spamgate::decision"), "{text}");
    assert!(!text.is_empty(), "other info lines still come");
}
