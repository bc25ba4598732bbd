//! The `spamgate` binary as an operator uses it: real processes, real files, signals.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spamgate::config::{Config, EXAMPLE};

mod process;
use process::{ask, run_with_config, serve, spamgate, wait_for};

#[test]
fn example_config_is_the_defaults() {
    let parsed = Config::parse(EXAMPLE).expect("the example parses");
    // The example names the store path of a system without systemd's STATE_DIRECTORY,
    // whatever the environment of this test.
    let defaults = Config {
        store: spamgate::config::StoreConfig::in_state_directory(None),
        ..Config::default()
    };
    assert_eq!(
        parsed, defaults,
        "dist/spamgate.example.toml drifted from the defaults"
    );
}

#[test]
fn config_check_reports_errors_with_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[greylist]\nmin_dealy = \"5m\"\n", "min_dealy"),
        ("[dnsbl]\nzones = [\"bl.test=127.0.0.[9..2]\"]\n", "bl.test"),
        ("[server]\nlisten = [\"localhost\"]\n", "server.listen"),
        ("[replies]\nreject = \"450 try later\"\n", "5xx"),
        (
            "[rdns]\ndisable_rules = [\"no-such-rule\"]\n",
            "no-such-rule",
        ),
        (
            "[allow]\nclient_addresses = [\"192.0.2.0/33\"]\n",
            "192.0.2.0/33",
        ),
        // Settings that would hurt: a silent daemon, port 25 as submission, a greylist
        // reply that is permanent.
        ("log_level = \"warnn\"\n", "not a level"),
        ("log_level = \"spamgate\"\n", "not a level"),
        ("[submission]\nports = [25, 587]\n", "port 25"),
        (
            "[replies]\ngreylist = \"550 5.7.1 go away\"\n",
            "temporary error",
        ),
        (
            "[replies]\ntempfail = \"5.3.0 broken\"\n",
            "temporary error",
        ),
    ];
    for (text, words) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = spamgate()
            .args(["config", "check", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(words), "{text}: {stderr}");
    }
    // Every problem of a file at once, each said once.
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "log_level = \"warnn\"\n[replies]\nreject = \"no code\"\n[rdns]\ndisable_rules = [\"no-such-rule\"]\n",
    )
    .unwrap();
    let out = spamgate()
        .args(["config", "check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("3 problems"), "{stderr}");
    for words in ["warnn", "no code", "no-such-rule"] {
        assert_eq!(stderr.matches(words).count(), 1, "{words} once: {stderr}");
    }
    let out = spamgate().args(["config", "check"]).output().unwrap();
    assert!(out.status.success());
    let effective = String::from_utf8_lossy(&out.stdout);
    assert!(effective.contains("bl.spamcop.net"), "{effective}");
}

#[test]
fn classify_reads_arguments_and_stdin() {
    let out = spamgate()
        .args([
            "classify",
            "123-123-123-123.dhcp.example.net",
            "mail.example.com",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("123-123-123-123.dhcp.example.net\tgeneric\t"),
        "{text}"
    );
    assert!(text.contains("mail.example.com\tproper"), "{text}");

    let mut child = spamgate()
        .args(["classify", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a8-30.smtp-out.amazonses.com\nh219203254123.example.jp\n\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "one answer per input line: {lines:?}");
    assert_eq!(lines[2], serde_json::json!({ "name": "" }));
    assert_eq!(lines[0]["class"]["class"], "excepted", "{lines:?}");
    assert_eq!(lines[0]["class"]["rule"], "s25r-1", "{lines:?}");
    assert_eq!(lines[1]["class"]["class"], "generic", "{lines:?}");
    assert_eq!(lines[1]["class"]["rule"], "s25r-2", "{lines:?}");
}

#[test]
fn classify_reads_log_forms_and_explains() {
    let mut child = spamgate()
        .args(["classify", "--explain"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = "123-123-123-123.dhcp.example.net[203.0.113.7]\n\nunknown[192.0.2.1]\n  mail.example.com[2001:db8::25]:25  \n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "aligned with the input: {text}");
    assert!(
        lines[0].starts_with("123-123-123-123.dhcp.example.net\tgeneric\t")
            && lines[0].contains("matched="),
        "{text}"
    );
    assert_eq!(lines[1], "", "{text}");
    assert_eq!(lines[2], "unknown\tproper\t-\tmatched=-", "{text}");
    assert!(lines[3].starts_with("mail.example.com\tproper"), "{text}");
}

fn write_config(dir: &Path, socket: &Path, extra: &str) -> std::path::PathBuf {
    // No DNS server at this address: lookups fail fast, which must never reject.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let ns = dead.local_addr().unwrap();
    let path = dir.join("spamgate.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = ["unix:{socket}"]
unix_mode = "0600"
pid_file = "{pid_file}"
[store]
path = "{db}"
[dns]
nameservers = ["{ns}"]
timeout = "200ms"
attempts = 1
{extra}
"#,
            socket = socket.display(),
            pid_file = dir.join("spamgate.pid").display(),
            db = dir.join("state/spamgate.db").display(),
        ),
    )
    .unwrap();
    path
}

/// `spamgate ARGS PATH`, waited for.
fn run_with_path(args: &[&str], path: &Path) -> std::process::Output {
    spamgate().args(args).arg(path).output().unwrap()
}

const PROPER_REQUEST: &str = "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.10\nclient_name=mail.example.test\nreverse_client_name=mail.example.test\nsender=a@example.org\nrecipient=b@example.net\n\n";

#[test]
fn serve_on_unix_socket_reload_and_terminate() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("policy.sock");
    let config = write_config(dir.path(), &socket, "");
    let mut child = spamgate()
        .args(["serve", "-c"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The daemon's log lines, as they come.
    let (log_tx, log_rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let log_reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = Vec::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = log_tx.send(line.clone());
            all.push(line);
        }
        all
    });
    let wait_for_log = |text: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match log_rx.recv_timeout(left) {
                Ok(line) if line.contains(text) => return,
                Ok(_) => {}
                Err(e) => panic!("the daemon never logged {text:?}: {e}"),
            }
        }
    };
    wait_for(&socket);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode from config");
    assert_eq!(ask(&socket, PROPER_REQUEST), "action=DUNNO\n\n");

    let pid = child.id().to_string();
    let pid_file = dir.path().join("spamgate.pid");
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap().trim(), pid);

    // `spamgate reload` checks the file, then signals the daemon; connections stay.
    let mut held = UnixStream::connect(&socket).unwrap();
    write_config(dir.path(), &socket, "[replies]\nprepend_header = true\n");
    let reload = run_with_path(&["reload", "-c"], &config);
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    assert!(
        String::from_utf8_lossy(&reload.stdout).contains(&format!("pid {pid}")),
        "{reload:?}"
    );
    let start = Instant::now();
    loop {
        let reply = ask(&socket, PROPER_REQUEST);
        if reply.starts_with("action=PREPEND X-Spamgate: pass") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "reload not applied: {reply}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // An invalid config: `spamgate reload` says why and does not signal...
    std::fs::write(&config, "[greylist]\nbogus = 1\n").unwrap();
    let refused = run_with_path(&["reload", "-c"], &config);
    assert_eq!(refused.status.code(), Some(78), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("bogus"),
        "{refused:?}"
    );
    // ...and the daemon, signalled anyway, refuses it and keeps the running one.
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for_log("new configuration rejected");
    assert!(ask(&socket, PROPER_REQUEST).starts_with("action=PREPEND"));
    held.write_all(PROPER_REQUEST.as_bytes()).unwrap();

    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    assert!(!pid_file.exists(), "the pid file goes with the process");
    let stale = run_with_path(&["reload", "--pid-file"], &pid_file);
    assert_eq!(stale.status.code(), Some(71), "{stale:?}");
    assert!(
        String::from_utf8_lossy(&stale.stderr).contains("is spamgate running?"),
        "{stale:?}"
    );
    let log = log_reader.join().unwrap();
    let decision_lines = log
        .iter()
        .filter(|l| l.contains("spamgate::decision:"))
        .count();
    assert!(decision_lines >= 3, "decisions are logged: {log:?}");
    // `spamgate stats` reads the lines this daemon really wrote.
    let mut stats = spamgate()
        .args(["stats", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    stats
        .stdin
        .take()
        .unwrap()
        .write_all(log.join("\n").as_bytes())
        .unwrap();
    let counted = stats.wait_with_output().unwrap();
    let counted: serde_json::Value = serde_json::from_slice(&counted.stdout).unwrap();
    assert_eq!(counted["decisions"], decision_lines, "{counted}");
    assert_eq!(counted["by_action"]["pass"], decision_lines, "{counted}");
    assert_eq!(counted["unreadable"], 0, "{counted}");
    assert_eq!(
        counted["by_reason"]["client:proper"], decision_lines,
        "{counted}"
    );
    assert!(!socket.exists(), "the socket is removed on exit");
}

#[test]
fn a_damaged_store_file_at_start_is_the_fail_mode_until_it_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("policy.sock");
    let config = write_config(dir.path(), &socket, "");
    let db = dir.path().join("state/spamgate.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    std::fs::write(&db, vec![0x5a; 8192]).unwrap(); // not a database
    let daemon = serve(&config, &socket);
    let generic = "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=203.0.113.7\nclient_name=unknown\nreverse_client_name=unknown\nsender=a@example.org\nrecipient=b@example.net\n\n";
    assert_eq!(ask(&socket, generic), "action=DUNNO\n\n", "the fail mode");
    // The operator moves the damaged file away: the daemon opens a new one by itself.
    std::fs::rename(&db, dir.path().join("damaged.db")).unwrap();
    let start = Instant::now();
    loop {
        let reply = ask(&socket, generic);
        if reply.starts_with("action=DEFER_IF_PERMIT") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "never recovered: {reply}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(daemon);
}

#[test]
fn unwritable_store_exits_74_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("policy.sock");
    let config = write_config(dir.path(), &socket, "");
    // A file where the state directory should be.
    std::fs::write(dir.path().join("state"), "not a directory").unwrap();
    let out = spamgate()
        .args(["serve", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(74));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("state"), "{stderr}");
}

#[test]
fn check_explains_and_does_not_record_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("unused.sock");
    let config = write_config(dir.path(), &socket, "[dnsbl]\nzones = []\n");
    let check = |record: bool| {
        let mut cmd = spamgate();
        cmd.args([
            "check",
            "--json",
            "--client-address",
            "203.0.113.7",
            "--client-name",
            "203-0-113-7.adsl.example.net",
            "--sender",
            "s@example.org",
            "--recipient",
            "r@example.net",
            "-c",
        ])
        .arg(&config);
        if record {
            cmd.arg("--record");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = check(false);
    assert_eq!(first["verdict"]["action"], "greylist");
    let reasons = first["verdict"]["reasons"].as_array().unwrap();
    assert!(
        reasons
            .iter()
            .any(|r| r["step"] == "client" && r["client"]["rule"] == "s25r-1"),
        "{reasons:?}"
    );
    assert!(
        first["postfix_action"]
            .as_str()
            .unwrap()
            .starts_with("DEFER_IF_PERMIT")
    );
    // Not recorded: still "new".
    let again = check(true);
    let state = |v: &serde_json::Value| {
        v["verdict"]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["step"] == "greylist")
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state(&again), "new");
    // Recorded by the previous call: now "too-early".
    assert_eq!(state(&check(false)), "too-early");
}

fn unknown_client_request(i: usize) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=203.0.113.{}\nclient_name=unknown\nreverse_client_name=unknown\nsender=s{i}@example.org\nrecipient=r{i}@example.net\n\n",
        i % 250
    )
}

fn greylist_rows(config: &Path) -> Vec<serde_json::Value> {
    let out = spamgate()
        .args(["greylist", "list", "--json", "--limit", "10000", "-c"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn greylist_show_and_delete_name_entries_and_a_deleted_one_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("policy.sock");
    let config = write_config(
        dir.path(),
        &socket,
        "lookup_unknown = false\n[dnsbl]\nzones = []\n[greylist]\nmin_delay = \"1h\"\n",
    );
    let daemon = serve(&config, &socket);
    for i in [1, 2, 251] {
        // 203.0.113.1 (s1/r1), .2 (s2/r2), .1 again (s251/r251)
        let reply = ask(&socket, &unknown_client_request(i));
        assert!(reply.contains("please resend in"), "{reply}");
    }
    let run = |args: &[&str]| run_with_config(&config, args);
    let (code, shown, _) = run(&["greylist", "show", "--client", "203.0.113.1", "--json"]);
    assert_eq!(code, Some(0));
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    // Triplets are per network: the /24 of .1 holds all three; no AWL entry yet.
    assert_eq!(shown["triplets"].as_array().unwrap().len(), 3, "{shown}");
    assert_eq!(shown["awl"], serde_json::Value::Null);
    assert_eq!(shown["triplets"][0]["network"], "203.0.113.0/24");
    assert_eq!(shown["triplets"][0]["state"], "live");

    // The sender is normalised as stored: case and +extension do not matter.
    let (code, text, _) = run(&["greylist", "show", "--sender", "S2+tag@Example.org"]);
    assert_eq!(code, Some(0));
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("triplet\t203.0.113.0/24\t<s2@example.org>"),
        "{text}"
    );

    let (code, text, _) = run(&["greylist", "delete", "--recipient", "r2@example.net"]);
    assert_eq!(
        (code, text.as_str()),
        (Some(0), "deleted\ttriplets=1\tawl=0\n")
    );
    let (_, text, _) = run(&["greylist", "show", "--recipient", "r2@example.net"]);
    assert_eq!(text, "");
    // The deleted triplet's next attempt is new again (the retry says 3600 s, not less).
    let reply = ask(&socket, &unknown_client_request(2));
    assert!(reply.contains("please resend in 3600 seconds"), "{reply}");

    let (code, _, stderr) = run(&["greylist", "delete"]);
    assert_eq!(code, Some(64), "an empty filter is refused: {stderr}");
    assert!(stderr.contains("--client"), "{stderr}");
    drop(daemon);
}

#[test]
fn kill_9_loses_nothing_that_was_answered_on_the_defaults() {
    // The default commits before answering: kill right after the last answer.
    kill_9_case(None, Duration::ZERO);
}

#[test]
fn kill_9_loses_nothing_answered_before_the_durability_window() {
    // With a 50 ms window, what was answered longer ago than that is in the file.
    kill_9_case(Some("50ms"), Duration::from_millis(500));
}

/// Answers N new triplets, waits `settle`, kills the daemon with SIGKILL, and checks
/// every answered attempt is in the file; then again for the retries. `window`: the
/// `durability_window` to set, or `None` for the default.
fn kill_9_case(window: Option<&str>, settle: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("policy.sock");
    let config = write_config(
        dir.path(),
        &socket,
        // (continues the [dns] table) no lookups at all: the test is about the store.
        "lookup_unknown = false\n[dnsbl]\nzones = []\n[greylist]\nmin_delay = \"1h\"\nmax_pending_per_network = 1000\n",
    );
    if let Some(window) = window {
        let text = std::fs::read_to_string(&config).unwrap();
        let text = text.replace(
            "[store]\n",
            &format!("[store]\ndurability_window = \"{window}\"\n"),
        );
        std::fs::write(&config, text).unwrap();
    }
    const N: usize = 200;
    let mut daemon = serve(&config, &socket);
    for i in 0..N {
        let reply = ask(&socket, &unknown_client_request(i));
        assert!(reply.contains("please resend in"), "{reply}");
    }
    std::thread::sleep(settle);
    daemon.0.kill().unwrap(); // SIGKILL: no shutdown path runs
    daemon.0.wait().unwrap();
    drop(daemon);
    std::fs::remove_file(&socket).ok();

    // Every attempt that was answered is in the file.
    let rows = greylist_rows(&config);
    assert_eq!(rows.len(), N);
    assert!(
        rows.iter()
            .all(|r| r["attempts"] == 1 && r["passed_at"].is_null())
    );

    // After a restart the retries land on the same rows: nothing was recreated.
    let daemon = serve(&config, &socket);
    for i in 0..N {
        let reply = ask(&socket, &unknown_client_request(i));
        assert!(reply.contains("please resend in"), "{reply}");
    }
    std::thread::sleep(settle);
    drop(daemon);
    let rows = greylist_rows(&config);
    assert_eq!(rows.len(), N);
    assert!(rows.iter().all(|r| r["attempts"] == 2), "{rows:?}");
}

#[test]
fn a_second_serve_does_not_steal_a_running_daemons_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("policy.sock");
    // A stale socket (its process gone) is replaced...
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let config = write_config(dir.path(), &socket, "");
    let first = serve(&config, &socket);
    // (the stale file was there before: wait until the daemon answers on it)
    let start = Instant::now();
    while UnixStream::connect(&socket).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ask(&socket, PROPER_REQUEST), "action=DUNNO\n\n");
    // ...a live one is not: the second daemon refuses to start and removes nothing.
    let second_dir = tempfile::tempdir().unwrap();
    let second_config = write_config(second_dir.path(), &socket, "");
    let out = spamgate()
        .args(["serve", "-c"])
        .arg(&second_config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(71), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is in use"), "{stderr}");
    assert_eq!(
        ask(&socket, PROPER_REQUEST),
        "action=DUNNO\n\n",
        "the first daemon still answers on its socket"
    );
    first.stop();
    assert!(!socket.exists(), "the first daemon removes its own socket");
}

#[test]
fn reload_signals_only_a_spamgate() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dir.path().join("unused.sock"), "");
    // A stale pid file naming another program: SIGHUP would end it.
    let mut other = Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::write(dir.path().join("spamgate.pid"), format!("{}\n", other.id())).unwrap();
    let (code, _, err) = run_with_config(&config, &["reload"]);
    assert_eq!(code, Some(71), "{err}");
    assert!(err.contains("not spamgate"), "{err}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        other.try_wait().unwrap().is_none(),
        "the other process was not signalled"
    );
    other.kill().unwrap();
    other.wait().unwrap();
}

#[test]
fn every_command_reads_the_same_configuration_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dir.path().join("unused.sock"), "");
    // No -c: SPAMGATE_CONFIG names the file, and the store is the one it names.
    let out = spamgate()
        .args(["account", "suspend", "hana@example.jp", "--create"])
        .env("SPAMGATE_CONFIG", &config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let db = dir.path().join("state/spamgate.db");
    assert!(
        stderr.contains(&format!(
            "configuration {} (from SPAMGATE_CONFIG)",
            config.display()
        )) && stderr.contains(&format!("store sqlite:{}", db.display())),
        "{stderr}"
    );
    let (_, listed, err) = run_with_config(&config, &["account", "list"]);
    assert!(listed.starts_with("hana@example.jp\tsuspended"), "{listed}");
    assert!(err.contains("(from -c)"), "{err}");
    // -c wins over the environment.
    let other = tempfile::tempdir().unwrap();
    let other_config = write_config(other.path(), &other.path().join("unused.sock"), "");
    let out = spamgate()
        .args(["account", "list", "-c"])
        .arg(&other_config)
        .env("SPAMGATE_CONFIG", &config)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "the other store is empty"
    );
}

#[test]
fn misuse_exits_64_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dir.path().join("unused.sock"), "");
    for args in [
        &["allow", "remove", "sender", "nobody@example.org"][..],
        &["allow", "add", "colour", "blue"],
        &["account", "show", "nobody@example.jp"],
        &["account", "terminate", "nobody@example.jp"],
        &["greylist", "show"],
    ] {
        let (code, _, err) = run_with_config(&config, args);
        assert_eq!(code, Some(64), "spamgate {args:?}: {err}");
        assert!(!err.trim().is_empty(), "spamgate {args:?} says why");
    }
    assert_eq!(run_with_config(&config, &["allow", "list"]).1, "");
    assert_eq!(run_with_config(&config, &["account", "list"]).1, "");
}

#[test]
fn termination_is_final_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dir.path().join("unused.sock"), "");
    let account = |args: &[&str]| run_with_config(&config, &[&["account"], args].concat());
    // A name that is not in the store is an error, and creates nothing.
    let (code, _, err) = account(&["suspend", "ken@example.jp", "--note", "spam run"]);
    assert_eq!(
        code,
        Some(64),
        "a usage error, not a configuration error: {err}"
    );
    assert!(err.contains("no account \"ken@example.jp\""), "{err}");
    assert_eq!(account(&["list"]).1, "", "nothing was created");
    assert_eq!(
        account(&[
            "suspend",
            "ken@example.jp",
            "--note",
            "spam run",
            "--create"
        ])
        .0,
        Some(0)
    );
    let (code, out, _) = account(&["resume", "ken@example.jp"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("ken@example.jp\tactive"), "{out}");
    assert!(
        out.contains("spam run"),
        "the note stays when none is given: {out}"
    );
    assert_eq!(
        account(&["terminate", "ken@example.jp", "--note", "contract ended"]).0,
        Some(0)
    );
    let (code, _, err) = account(&["resume", "ken@example.jp"]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("--force"), "{err}");
    let (code, out, _) = account(&["resume", "ken@example.jp", "--force"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("\tactive\t"), "{out}");
    let (_, events, _) = account(&["events", "ken@example.jp"]);
    assert_eq!(events.lines().count(), 4, "{events}");
    assert!(
        events.contains("status-changed terminated -> active"),
        "{events}"
    );
}

/// `config check --postfix-main-cf/--postfix-master-cf` on sample files: (main.cf,
/// master.cf, spamgate.toml, whether a never-charged warning is printed).
#[test]
fn config_check_warns_when_postfix_never_asks_at_the_charge_stage() {
    const RCPT_ONLY: &str = "smtpd_recipient_restrictions =\n    permit_mynetworks,\n    check_policy_service inet:127.0.0.1:10023\n";
    const RCPT_AND_DATA: &str = "smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:10023\nsmtpd_data_restrictions = check_policy_service inet:127.0.0.1:10023\n";
    const MASTER_RCPT_ONLY: &str = "submission inet n - y - - smtpd\n  -o { smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:10023, permit_sasl_authenticated, reject }\n";
    const EOM: &str = "[submission]\ncharge_at = \"END-OF-MESSAGE\"\n";
    let dir = tempfile::tempdir().unwrap();
    let check = |main: &str, master: Option<&str>, toml: &str, warned: bool| {
        let main_path = dir.path().join("main.cf");
        std::fs::write(&main_path, main).unwrap();
        let toml_path = dir.path().join("spamgate.toml");
        std::fs::write(&toml_path, toml).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_spamgate"));
        command
            .args(["config", "check", "-c"])
            .arg(&toml_path)
            .arg("--postfix-main-cf")
            .arg(&main_path);
        if let Some(master) = master {
            let master_path = dir.path().join("master.cf");
            std::fs::write(&master_path, master).unwrap();
            command.arg("--postfix-master-cf").arg(&master_path);
        }
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(
            stderr.contains("no submission limit ever applies"),
            warned,
            "main.cf {main:?} master.cf {master:?} config {toml:?}: {stderr}"
        );
    };
    check(RCPT_ONLY, None, "", true);
    check(RCPT_AND_DATA, None, "", false);
    check(RCPT_AND_DATA, None, EOM, true);
    check(RCPT_AND_DATA, Some(MASTER_RCPT_ONLY), "", false);
    check("", Some(MASTER_RCPT_ONLY), "", true);
    check(RCPT_ONLY, None, "[submission]\nenabled = false\n", false);

    // A file that cannot be read is a usage error, not a silent pass.
    let out = spamgate()
        .env_remove("SPAMGATE_CONFIG")
        .args([
            "config",
            "check",
            "--postfix-main-cf",
            "/nonexistent/main.cf",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
}

/// `[op25b] nft_timeout` reaches the nft calls of `op25b apply` and of the desk's sync: a
/// load that hangs fails naming the configured limit, and is not reported as loaded.
#[test]
fn op25b_apply_with_a_hung_nft_fails_naming_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &dir.path().join("policy.sock"),
        "[op25b]\npools = [\"198.51.100.0/24\"]\nnft_timeout = \"1s\"\n",
    );
    let parsed = Config::load(&config).unwrap();
    assert_eq!(
        parsed.op25b_settings().unwrap().nft.timeout(),
        Duration::from_secs(1)
    );
    let nft = dir.path().join("nft");
    std::fs::write(
        &nft,
        format!(
            "#!/bin/sh\necho \"$*\" >>{calls}\ncase \"$*\" in\n  \"-c -f -\") cat >/dev/null ;;\n  \"-f -\") sleep 30 ;;\nesac\n",
            calls = dir.path().join("calls").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&nft, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, stdout, stderr) =
        run_with_config(&config, &["op25b", "apply", "--nft", nft.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("nft -f -` did not finish within nft_timeout (1s)"),
        "{stderr}"
    );
    assert!(!stderr.contains("loaded;"), "{stderr}");
    assert_eq!(stdout, "");
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
    assert_eq!(calls, "-c -f -\n-f -\n");
}

/// `config check` writes every duration as an operator writes it (`365days`, `1m 30s`),
/// never humantime's `11months 30days 3h 50m 24s`, and what it prints reads back as the
/// same configuration.
#[test]
fn config_check_prints_every_duration_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &dir.path().join("policy.sock"),
        "[spf]\ntimeout = \"90s\"\n\
         [learn]\nmin_span = \"2days\"\nwindow = \"45days\"\nttl = \"31days\"\nrefuse_for = \"400days\"\n\
         [op25b]\npools = [\"198.51.100.0/24\"]\nhits_timeout = \"3650days\"\nnft_timeout = \"90s\"\n\
         exempt = [{ prefix = \"198.51.100.7\", reason = \"opt-out #1\" }]\n\
         [desk]\nretention_sessions = \"183days\"\nretention_reports = \"365days\"\nretention_cases = \"1095days\"\n\
         [admin]\nsession_ttl = \"36h\"\nlogin_window = \"90m\"\n",
    );
    let (code, stdout, stderr) = run_with_config(&config, &["config", "check"]);
    assert_eq!(code, Some(0), "{stderr}");
    let printed = |section: &str, key: &str| -> Option<String> {
        let mut current = "";
        for line in stdout.lines() {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                current = name;
            } else if current == section
                && let Some(value) = line.strip_prefix(&format!("{key} = "))
            {
                return Some(value.to_owned());
            }
        }
        None
    };
    let check = |section: &str, key: &str, expected: &str| {
        assert_eq!(
            printed(section, key).as_deref(),
            Some(expected),
            "[{section}] {key}"
        );
    };
    check("spf", "timeout", "\"1m 30s\"");
    check("learn", "min_span", "\"2days\"");
    check("learn", "window", "\"45days\"");
    check("learn", "ttl", "\"31days\"");
    check("learn", "refuse_for", "\"400days\"");
    check("op25b", "hits_timeout", "\"3650days\"");
    check("op25b", "nft_timeout", "\"1m 30s\"");
    check("desk", "retention_sessions", "\"183days\"");
    check("desk", "retention_reports", "\"365days\"");
    check("desk", "retention_cases", "\"1095days\"");
    check("admin", "session_ttl", "\"1day 12h\"");
    check("admin", "login_window", "\"1h 30m\"");
    for word in ["month", "year", "us\"", "ns\""] {
        assert!(!stdout.contains(word), "{word} in:\n{stdout}");
    }
    assert_eq!(
        Config::parse(&stdout).unwrap(),
        Config::load(&config).unwrap(),
        "{stdout}"
    );
}
