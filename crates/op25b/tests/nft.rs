//! Running nft: the runner itself, the hit-table parser, and (as root) the rendered text
//! against the real nft and kernel, inside throwaway network namespaces.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use spamgate_op25b::{
    Expiry, Hit, NftRunner, Op25bConfig, Op25bError, apply, hits, parse_hits, render, render_sync,
    sync,
};

fn runner(words: &[&str]) -> NftRunner {
    NftRunner::new(words.iter().map(|w| (*w).to_owned()).collect()).unwrap()
}

#[test]
fn runner_feeds_stdin_and_returns_stdout() {
    // More than a pipe buffer each way: neither side may stall the other.
    let input = "add element inet t s { 198.51.100.1 }\n".repeat(20_000);
    let echoed = runner(&["cat"]).run(&[], Some(&input)).unwrap();
    assert_eq!(echoed, input);
}

#[test]
fn runner_reports_failures_with_stderr() {
    let failing = runner(&[
        "sh",
        "-c",
        "echo 'Error: conflicting intervals' >&2; exit 1",
        "nft",
    ]);
    match failing.run(&["-f", "-"], None) {
        Err(Op25bError::Nft {
            command, stderr, ..
        }) => {
            assert!(command.ends_with("nft -f -"), "{command}");
            assert_eq!(stderr, "Error: conflicting intervals");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        runner(&["/nonexistent/nft"]).run(&["list", "tables"], None),
        Err(Op25bError::Spawn { .. })
    ));
    assert_eq!(NftRunner::from_command_line("  "), None);
    assert_eq!(
        NftRunner::from_command_line("ip netns exec sg-router nft"),
        Some(runner(&["ip", "netns", "exec", "sg-router", "nft"]))
    );
}

/// A fake nft that logs each call's arguments to `calls` and hangs (a `sleep` it starts,
/// its pid in `sleeper`) on the call whose arguments are `hang_on`; other calls answer
/// like nft with the table loaded.
fn hanging_nft(dir: &std::path::Path, hang_on: &str) -> NftRunner {
    let path = dir.join("nft");
    let script = format!(
        r#"#!/bin/sh
dir={dir}
echo "$*" >>"$dir/calls"
if [ "$*" = "{hang_on}" ]; then sleep 30 & echo $! >"$dir/sleeper"; wait; exit 0; fi
case "$*" in
  "list tables") echo "table inet spamgate_op25b" ;;
  "-j list set inet spamgate_op25b "*) echo '{{"nftables": []}}' ;;
  *) cat >/dev/null ;;
esac
"#,
        dir = dir.display()
    );
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    runner(&[path.to_str().unwrap()]).with_timeout(Duration::from_secs(1))
}

/// Whether process `pid` is gone (or a zombie: killed, not yet reaped by its new parent).
/// Waits up to 5 s for it: the kill is sent, its delivery is the kernel's.
fn gone(pid: &str) -> bool {
    for _ in 0..100 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z')) =>
            {
                return true;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    false
}

/// One hung nft call: the operation fails with the timeout named, the calls after the
/// hung one never run (a check that hangs loads nothing), and the hung nft's children are
/// killed with it.
fn check_hung(hang_on: &str, operation: &str, calls_made: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let nft = hanging_nft(dir.path(), hang_on);
    let now = at("2026-12-01T00:00:00Z");
    let base = config(ISP);
    let result = match operation {
        "apply" => apply(&render(&base, now).unwrap(), &nft),
        "sync" => sync(&base, now, &nft).map(|_| ()),
        "hits" => hits("spamgate_op25b", &nft).map(|_| ()),
        other => panic!("{other}"),
    };
    match result {
        Err(err @ Op25bError::Timeout { .. }) => {
            let text = err.to_string();
            assert!(text.contains("within nft_timeout (1s)"), "{text}");
            assert!(text.contains(hang_on), "{text}");
        }
        other => panic!("{operation} with `{hang_on}` hung: {other:?}"),
    }
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
    assert_eq!(calls.lines().collect::<Vec<_>>(), calls_made, "{operation}");
    let sleeper = std::fs::read_to_string(dir.path().join("sleeper")).unwrap();
    assert!(
        gone(sleeper.trim()),
        "the hung nft's child {sleeper} still runs"
    );
}

#[test]
fn hung_nft_calls_time_out() {
    check_hung("-c -f -", "apply", &["-c -f -"]);
    check_hung("-f -", "apply", &["-c -f -", "-f -"]);
    check_hung("list tables", "sync", &["list tables"]);
    check_hung("-c -f -", "sync", &["list tables", "-c -f -"]);
    check_hung("-f -", "sync", &["list tables", "-c -f -", "-f -"]);
    check_hung(
        "-j list set inet spamgate_op25b blocked6",
        "hits",
        &[
            "list tables",
            "-j list set inet spamgate_op25b blocked4",
            "-j list set inet spamgate_op25b blocked6",
        ],
    );
    // A call that finishes in time is unaffected by the limit.
    let dir = tempfile::tempdir().unwrap();
    let nft = hanging_nft(dir.path(), "never");
    assert_eq!(nft.timeout(), Duration::from_secs(1));
    assert_eq!(hits("spamgate_op25b", &nft).unwrap(), vec![]);
}

fn hit(source: &str, packets: u64, bytes: u64, expires_secs: Option<u64>) -> Hit {
    Hit {
        source: source.parse().unwrap(),
        packets,
        bytes,
        expires_secs,
    }
}

/// `json` is `nft -j list set` output (shapes seen from nft 1.0.6).
fn check(json: &str, expected: Result<Vec<Hit>, &str>) {
    match (parse_hits(json), expected) {
        (Ok(got), Ok(want)) => assert_eq!(got, want),
        (Err(err), Err(part)) => assert!(err.to_string().contains(part), "{err}"),
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
}

#[test]
fn parses_hit_tables() {
    let head = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, {"set": {"family": "inet", "name": "blocked4", "table": "t", "type": "ipv4_addr", "handle": 5, "size": 65536, "flags": ["timeout"], "timeout": 86400"#;
    check(&format!("{head}}}}}]}}"), Ok(vec![]));
    check(
        &format!(
            "{head}, \"elem\": [\
             {{\"elem\": {{\"val\": \"198.51.100.9\", \"expires\": 86399, \"counter\": {{\"packets\": 2, \"bytes\": 120}}}}}}, \
             {{\"elem\": {{\"val\": \"198.51.100.10\", \"expires\": 86000, \"counter\": {{\"packets\": 7, \"bytes\": 420}}}}}}, \
             {{\"elem\": {{\"val\": \"2001:db8:100:1::10\", \"counter\": {{\"packets\": 2, \"bytes\": 160}}}}}}, \
             \"198.51.100.11\"]}}}}]}}"
        ),
        Ok(vec![
            hit("198.51.100.10", 7, 420, Some(86000)),
            hit("2001:db8:100:1::10", 2, 160, None),
            hit("198.51.100.9", 2, 120, Some(86399)),
            hit("198.51.100.11", 0, 0, None),
        ]),
    );
    check("not json", Err("cannot read nft's JSON output"));
    check(r#"{"other": []}"#, Err("no \"nftables\" array"));
    check(
        &format!("{head}, \"elem\": [{{\"elem\": {{\"val\": {{\"prefix\": {{}}}}}}}}]}}}}]}}"),
        Err("unexpected element"),
    );
}

// ---------------------------------------------------------------------------------------
// Against the real nft. Skipped only when not root (CI runs as root).

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout == b"0\n")
}

#[derive(Deserialize)]
struct File {
    op25b: Op25bConfig,
}

fn config(text: &str) -> Op25bConfig {
    toml::from_str::<File>(text).unwrap().op25b
}

fn at(rfc3339: &str) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(Expiry::parse(rfc3339).unwrap().unix_ms() as u64)
}

const ISP: &str = r#"
[op25b]
pools = ["198.51.100.0/24", "203.0.113.0/25", "2001:db8:100::/48"]
relays = ["192.0.2.25", "2001:db8:25::25"]
interfaces = ["ppp*", "eth1"]
ports_blocked = [25, 2525]
exempt = [
  { prefix = "198.51.100.128/28", reason = "business plan \"fixed-16\"" },
  { prefix = "2001:db8:100:ff00::/56", reason = "固定IPプラン" },
  { prefix = "198.51.100.77", reason = "opt-out #1234", expires = 2027-03-31 },
  { prefix = "198.51.100.66", reason = "ended", expires = 2026-01-01 },
]
"#;

#[test]
fn rendered_ruleset_passes_nft_check() {
    if !is_root() {
        eprintln!("skipped: nft -c needs root");
        return;
    }
    let text = render(&config(ISP), at("2026-12-01T00:00:00Z")).unwrap();
    // A private, empty network namespace: `nft -c` asks the kernel, which must not be the
    // host's firewall.
    runner(&["unshare", "-n", "nft"])
        .run(&["-c", "-f", "-"], Some(&text))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    // And the set update, checked together with the table it updates.
    let update = render_sync(&config(ISP), at("2026-12-01T00:00:00Z")).unwrap();
    runner(&["unshare", "-n", "nft"])
        .run(&["-c", "-f", "-"], Some(&format!("{text}{update}")))
        .unwrap_or_else(|e| panic!("{e}\n{update}"));
}

/// A named network namespace for one test, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("sgt-op25b-{tag}-{}", std::process::id());
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(status.success(), "ip netns add {name}");
        Netns(name)
    }

    fn nft(&self) -> NftRunner {
        runner(&["ip", "netns", "exec", &self.0, "nft"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn apply_sync_and_hits_in_a_namespace() {
    if !is_root() {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let ns = Netns::new("life");
    let nft = ns.nft();
    let now = at("2026-12-01T00:00:00Z");
    let base = config(ISP);

    // Nothing loaded yet: sync and hits say so rather than failing obscurely.
    assert!(matches!(
        sync(&base, now, &nft),
        Err(Op25bError::TableMissing { .. })
    ));
    assert!(matches!(
        hits("spamgate_op25b", &nft),
        Err(Op25bError::TableMissing { .. })
    ));

    apply(&render(&base, now).unwrap(), &nft).unwrap();
    // Applying twice replaces the table (the leading table/delete pair).
    apply(&render(&base, now).unwrap(), &nft).unwrap();
    let listing = nft
        .run(&["list", "set", "inet", "spamgate_op25b", "exempt4"], None)
        .unwrap();
    assert!(listing.contains("198.51.100.77 timeout 121d"), "{listing}");
    assert!(!listing.contains("198.51.100.66"), "{listing}");
    assert_eq!(hits("spamgate_op25b", &nft).unwrap(), vec![]);

    // Hits: entries the packet path would add, here added by hand.
    nft.run(
        &[
            "add",
            "element",
            "inet",
            "spamgate_op25b",
            "blocked4",
            "{ 198.51.100.10, 198.51.100.11 }",
        ],
        None,
    )
    .unwrap();
    nft.run(
        &[
            "add",
            "element",
            "inet",
            "spamgate_op25b",
            "blocked6",
            "{ 2001:db8:100:1::10 }",
        ],
        None,
    )
    .unwrap();
    let sources: Vec<String> = hits("spamgate_op25b", &nft)
        .unwrap()
        .iter()
        .map(|h| h.source.to_string())
        .collect();
    assert_eq!(
        sources,
        ["198.51.100.10", "198.51.100.11", "2001:db8:100:1::10"]
    );

    // Sync an opt-out in: the chains keep their handles and the hit table its entries.
    let chains_before = nft
        .run(
            &["-a", "list", "chain", "inet", "spamgate_op25b", "op25b"],
            None,
        )
        .unwrap();
    let with_optout = config(&ISP.replace(
        "exempt = [",
        "exempt = [\n  { prefix = \"198.51.100.10\", reason = \"opt-out #42\" },",
    ));
    sync(&with_optout, now, &nft).unwrap();
    let listing = nft
        .run(&["list", "set", "inet", "spamgate_op25b", "exempt4"], None)
        .unwrap();
    assert!(
        listing.contains("198.51.100.10 comment \"opt-out #42\""),
        "{listing}"
    );
    let chains_after = nft
        .run(
            &["-a", "list", "chain", "inet", "spamgate_op25b", "op25b"],
            None,
        )
        .unwrap();
    assert_eq!(chains_before, chains_after);
    assert_eq!(hits("spamgate_op25b", &nft).unwrap().len(), 3);

    // Sync it out again.
    sync(&base, now, &nft).unwrap();
    let listing = nft
        .run(&["list", "set", "inet", "spamgate_op25b", "exempt4"], None)
        .unwrap();
    assert!(!listing.contains("198.51.100.10 "), "{listing}");

    // A ruleset nft refuses leaves the loaded one in force.
    let loaded = nft
        .run(
            &["list", "chain", "inet", "spamgate_op25b", "forward"],
            None,
        )
        .unwrap();
    let broken = render(&base, now)
        .unwrap()
        .replace("tcp dport { 25, 2525 }", "tcp dport { 25, 2525 } bogus");
    assert!(matches!(apply(&broken, &nft), Err(Op25bError::Nft { .. })));
    let still = nft
        .run(
            &["list", "chain", "inet", "spamgate_op25b", "forward"],
            None,
        )
        .unwrap();
    assert_eq!(loaded, still);
}
