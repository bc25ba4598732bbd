//! `--json` on `allow list` and `greylist stats`: the shapes docs/operations.md
//! documents, read back from the real binary over a real SQLite store.

use std::path::Path;

use serde_json::{Value, json};

mod process;
use process::{run_with_config, run_with_config_stdin};

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

/// `spamgate check --record` of a dynamic-looking client (203.0.113.7): greylisted, one
/// pending triplet.
fn record_greylisted(config: &Path) {
    let name = "203-0-113-7.dyn.example.net";
    run(
        config,
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
    record_greylisted(&config);
    assert_eq!(stats(&config), json!({"pending": 1, "passed": 0, "awl": 0}));
}

/// `spamgate ARGS -c CONFIG` with `input` on stdin: its stdout, which must succeed.
fn run_stdin(config: &Path, args: &[&str], input: &str) -> String {
    let (code, stdout, stderr) = run_with_config_stdin(config, args, input);
    assert_eq!(code, Some(0), "{args:?}: {stderr}");
    stdout
}

#[test]
fn stats_effectiveness_json_per_day_class_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap().replace(
            "[store]",
            "[server]\ndisplay_timezone = \"+09:00\"\n[store]",
        ),
    )
    .unwrap();
    let line = |at: &str, reasons: &str| {
        format!(
            "{at} mx1 spamgate[9]: INFO spamgate::decision: action=x client=203.0.113.7 \
             name=x helo=- sender=<a@example.org> recipient=<u@example.net> state=RCPT \
             queue_id=- reasons=\"{reasons}\" reply=\"x\"\n"
        )
    };
    let log = [
        line(
            "2026-12-01T10:00:00+0900",
            "client:generic(s25r-2) greylist:new(retry_in=300s)",
        ),
        line(
            "2026-12-01T10:07:00+0900",
            "client:generic(s25r-2) greylist:passed(waited=420s)",
        ),
        line(
            "2026-12-01T10:09:00+0900",
            "client:no-ptr greylist:new(retry_in=300s)",
        ),
        line(
            "2026-12-03T10:00:00+0900",
            "client:proper greylist:disabled",
        ),
    ]
    .concat();
    let out = run_stdin(&config, &["stats", "--effectiveness", "--json"], &log);
    let report: Value = serde_json::from_str(&out).expect(&out);
    assert_eq!(report["undated"], 0, "{report}");
    // The last greylisting line (the disabled one is none) ends the log.
    assert_eq!(report["log_end"], "2026-12-01T10:09:00+09:00", "{report}");
    let days = report["days"].as_array().unwrap();
    assert_eq!(days.len(), 2, "{report}");
    assert_eq!(
        days[0],
        json!({"day": "2026-12-01", "class": "generic", "rule": "s25r-2", "greylisted": 1,
               "passed": 1, "not_passed": 0, "pass_rate": 1.0, "delay_median": 420,
               "delay_p90": 420, "delay_max": 420, "settled": false})
    );
    assert_eq!(days[1]["class"], "no-ptr");
    assert_eq!(days[1]["not_passed"], 1);
}

#[test]
fn account_events_since_takes_journalctl_times() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    run(
        &config,
        &["account", "suspend", "bob@example.com", "--create"],
    );
    let events = |args: &[&str]| -> usize {
        let mut all = vec!["account", "events", "--json"];
        all.extend_from_slice(args);
        run(&config, &all).lines().count()
    };
    assert_eq!(events(&[]), 1);
    assert_eq!(events(&["--since", "-1h"]), 1);
    assert_eq!(events(&["--since", "1h ago", "--until", "now"]), 1);
    assert_eq!(events(&["--since", "tomorrow"]), 0);
    assert_eq!(
        events(&["--since", "2000-01-01", "--until", "2000-01-02 00:00:00"]),
        0
    );
    let (code, _, stderr) = run_with_config(&config, &["account", "events", "--since", "soonish"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("is not a time"), "{stderr}");
}

#[test]
fn op25b_render_json_says_what_the_ruleset_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "[op25b]\npools = [\"198.51.100.0/24\", \"2001:db8:100::/40\"]\n\
         relays = [\"192.0.2.25/32\"]\n\
         exempt = [{ prefix = \"198.51.100.130/32\", reason = \"business plan #1234\" },\n\
         { prefix = \"198.51.100.77/32\", reason = \"opt-out ticket 5678\", expires = \"2026-03-31\" }]\n",
    );
    std::fs::write(&config, text).unwrap();
    let out = run(
        &config,
        &["op25b", "render", "--json", "--now", "2026-06-01T00:00:00Z"],
    );
    let render: Value = serde_json::from_str(&out).expect(&out);
    assert_eq!(render["table"], "spamgate_op25b");
    assert_eq!(
        render["pools"],
        json!(["198.51.100.0/24", "2001:db8:100::/40"])
    );
    assert_eq!(render["relays"], json!(["192.0.2.25"]));
    let exemptions = render["exemptions"].as_array().unwrap();
    assert_eq!(exemptions.len(), 1, "{render}");
    assert_eq!(exemptions[0]["prefix"], "198.51.100.130");
    assert_eq!(exemptions[0]["expires"], Value::Null);
    assert_eq!(render["expired"][0]["prefix"], "198.51.100.77", "{render}");
    assert!(
        render["ruleset"]
            .as_str()
            .unwrap()
            .contains("table inet spamgate_op25b"),
        "{render}"
    );
}

#[test]
fn account_listings_json_are_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    run(
        &config,
        &[
            "account",
            "add",
            "alice@example.com",
            "--messages-per-hour",
            "20",
        ],
    );
    run(
        &config,
        &["account", "suspend", "bob@example.com", "--create"],
    );
    let list: Vec<Value> = run(&config, &["account", "list", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect();
    assert_eq!(list.len(), 2, "{list:?}");
    let alice = list
        .iter()
        .find(|a| a["username"] == "alice@example.com")
        .unwrap();
    assert_eq!(alice["status"], "active");
    assert_eq!(
        alice["limits"],
        json!({"messages_per_hour": 20, "recipients_per_day": null})
    );
    assert!(
        alice["updated_at"].as_u64().is_some_and(|t| t > 0),
        "{alice}"
    );
    let events: Vec<Value> = run(&config, &["account", "events", "bob@example.com", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["username"], "bob@example.com");
    // Text listings show RFC 3339 times in display_timezone (the default: local).
    let text = run(&config, &["account", "show", "bob@example.com"]);
    let updated = text
        .split('\t')
        .find_map(|f| f.strip_prefix("updated_at="))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        updated.len() >= 20 && updated.as_bytes()[10] == b'T' && updated.starts_with("20"),
        "{text}"
    );
}

#[test]
fn text_listings_show_times_in_the_display_zone() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "[store]",
            "[server]\ndisplay_timezone = \"+09:00\"\n[store]",
        ),
    )
    .unwrap();
    record_greylisted(&config);
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
    let rfc3339_jst = |field: &str, line: &str| {
        let value = line
            .split('\t')
            .find_map(|f| f.strip_prefix(field))
            .unwrap_or_else(|| panic!("no {field} in {line}"))
            .trim_end();
        assert!(
            value.len() == 25 && value.as_bytes()[10] == b'T' && value.ends_with("+09:00"),
            "{field}{value} in {line}"
        );
    };
    let list = run(&config, &["greylist", "list"]);
    rfc3339_jst("first_seen=", &list);
    rfc3339_jst("expires_at=", &list);
    let show = run(&config, &["greylist", "show", "--client", "203.0.113.7"]);
    let triplet = show.lines().find(|l| l.starts_with("triplet")).unwrap();
    rfc3339_jst("last_seen=", triplet);
    let allow = run(&config, &["allow", "list"]);
    rfc3339_jst("added_at=", &allow);
    rfc3339_jst("expires_at=", &allow);
    // An unknown zone is a configuration error naming the key.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"+09:00\"", "\"Mars/Olympus_Mons\"")).unwrap();
    let (code, _, stderr) = run_with_config(&config, &["greylist", "list"]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("server.display_timezone"), "{stderr}");
}
