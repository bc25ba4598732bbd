//! `--json` on `allow list` and `greylist stats`: the shapes docs/operations.md
//! documents, read back from the real binary over a real SQLite store.

use std::path::Path;

use serde_json::{Value, json};

mod process;
use process::run_with_config;

fn write_config(dir: &Path) -> std::path::PathBuf {
    // No DNS server at this address: lookups fail fast and decide nothing.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let path = dir.join("spamgate.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\npath = \"{db}\"\n[dns]\nnameservers = [\"{ns}\"]\ntimeout = \"200ms\"\nattempts = 1\n",
            db = dir.join("spamgate.db").display(),
            ns = dead.local_addr().unwrap(),
        ),
    )
    .unwrap();
    path
}

/// `spamgate ARGS -c CONFIG`, which must succeed: its stdout.
fn run(config: &Path, args: &[&str]) -> String {
    let (code, stdout, stderr) = run_with_config(config, args);
    assert_eq!(code, Some(0), "{args:?}: {stderr}");
    stdout
}

/// Each stdout line as JSON, with `added_at` (the clock's) checked and taken out.
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| {
            let mut value: Value = serde_json::from_str(line).expect(line);
            let added_at = value.as_object_mut().unwrap().remove("added_at");
            if let Some(added_at) = added_at {
                assert!(added_at.as_u64().is_some_and(|t| t > 0), "{line}");
            }
            value
        })
        .collect()
}

#[test]
fn allow_list_json_is_one_object_per_entry() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    assert_eq!(run(&config, &["allow", "list", "--json"]), "");
    run(
        &config,
        &[
            "allow",
            "add",
            "client-address",
            "192.0.2.10",
            "--note",
            "partner MTA",
        ],
    );
    run(
        &config,
        &[
            "allow",
            "add",
            "sender",
            "news@example.org",
            "--expires",
            "30days",
        ],
    );
    let entries = json_lines(&run(&config, &["allow", "list", "--json"]));
    assert_eq!(entries.len(), 2, "{entries:?}");
    let client = entries
        .iter()
        .find(|e| e["kind"] == "client-address")
        .expect("the client entry");
    assert_eq!(
        *client,
        json!({"kind": "client-address", "value": "192.0.2.10", "scope": "all",
               "expires_at": null, "note": "partner MTA"})
    );
    let sender = entries
        .iter()
        .find(|e| e["kind"] == "sender")
        .expect("the sender entry");
    assert_eq!(sender["scope"], "greylist", "{sender}");
    assert!(sender["expires_at"].as_u64().is_some(), "{sender}");
}

#[test]
fn greylist_stats_json_counts() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let stats = |config: &Path| -> Value {
        serde_json::from_str(run(config, &["greylist", "stats", "--json"]).trim()).unwrap()
    };
    assert_eq!(stats(&config), json!({"pending": 0, "passed": 0, "awl": 0}));
    // A dynamic-looking client is greylisted: one pending triplet.
    let name = "203-0-113-7.dyn.example.net";
    run(
        &config,
        &[
            "check",
            "--client-address",
            "203.0.113.7",
            "--client-name",
            name,
            "--reverse-client-name",
            name,
            "--sender",
            "a@example.org",
            "--recipient",
            "user@example.net",
            "--record",
        ],
    );
    assert_eq!(stats(&config), json!({"pending": 1, "passed": 0, "awl": 0}));
}
