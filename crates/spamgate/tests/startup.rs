//! The startup line of `spamgate serve`: what an operator reads first in the journal
//! says which version runs with which file, store, listeners and DNS servers.

use std::io::BufRead;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

mod process;
use process::{Killed, spamgate};

/// How the test names the configuration file to `spamgate serve`.
#[derive(Clone, Copy, Debug)]
enum Named {
    Option,
    Environment,
}

fn write_config(dir: &Path, dns: &str) -> std::path::PathBuf {
    let path = dir.join("spamgate.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"unix:{socket}\"]\n[store]\npath = \"{db}\"\n[dns]\n{dns}\ntimeout = \"200ms\"\nattempts = 1\n",
            socket = dir.join("policy.sock").display(),
            db = dir.join("state/spamgate.db").display(),
        ),
    )
    .unwrap();
    path
}

/// The first stderr line of `spamgate serve` that contains "starting".
fn startup_line(config: &Path, named: Named) -> String {
    log_lines_until(config, named, &["starting"]).remove(0)
}

/// The first stderr line containing each of `wanted`, in turn; after the first, the
/// daemon gets a SIGHUP.
fn log_lines_until(config: &Path, named: Named, wanted: &[&str]) -> Vec<String> {
    let mut command = spamgate();
    command.arg("serve").env_remove("SPAMGATE_CONFIG");
    match named {
        Named::Option => {
            command.arg("-c").arg(config);
        }
        Named::Environment => {
            command.env("SPAMGATE_CONFIG", config);
        }
    }
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let daemon = Killed(child);
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut found = Vec::new();
    for (i, text) in wanted.iter().enumerate() {
        if i == 1 {
            let pid = daemon.0.id().to_string();
            let sent = std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap();
            assert!(sent.success());
        }
        // Only a bound on a hung daemon, not a timing assertion.
        let line = loop {
            let line = line_rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("the daemon never logged {text:?}: {e}"));
            if line.contains(text) {
                break line;
            }
        };
        found.push(line);
    }
    daemon.stop();
    found
}

fn check(named: Named, dns: &str, expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), dns);
    let line = startup_line(&config, named);
    let dir = dir.path().display();
    let version = format!("version={}", env!("CARGO_PKG_VERSION"));
    let config_field = format!("config={dir}/spamgate.toml");
    let store = format!("store=sqlite:{dir}/state/spamgate.db");
    let listen = format!("listen=unix:{dir}/policy.sock");
    for field in [&version, &config_field, &store, &listen] {
        assert!(
            line.contains(field.as_str()),
            "{named:?}: {field} in {line}"
        );
    }
    for field in expected {
        assert!(line.contains(field), "{named:?}: {field} in {line}");
    }
}

#[test]
fn startup_line_names_version_file_store_listeners_and_dns() {
    check(
        Named::Option,
        "nameservers = [\"127.0.0.1:5353\", \"[::1]:5353\"]",
        &["dns=127.0.0.1:5353,[::1]:5353"],
    );
    // The file found through $SPAMGATE_CONFIG is named too (and is what SIGHUP re-reads).
    check(
        Named::Environment,
        "nameservers = [\"127.0.0.1:5353\"]",
        &["dns=127.0.0.1:5353"],
    );
    // No servers configured: the system resolver's, as /etc/resolv.conf lists them.
    check(Named::Option, "", &["dns=system:"]);
}

/// Found through $SPAMGATE_CONFIG, the file is what SIGHUP re-reads (it once said
/// "running on built-in defaults, nothing to reload").
#[test]
fn sighup_rereads_the_file_named_by_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "nameservers = [\"127.0.0.1:5353\"]");
    let lines = log_lines_until(
        &config,
        Named::Environment,
        &["starting", "SIGHUP: configuration reloaded"],
    );
    assert!(
        lines[1].contains(&config.display().to_string()),
        "{lines:?}"
    );
}
