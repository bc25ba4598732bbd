//! Two spamgate daemons (real processes) sharing one real redis-server: what one MX host
//! learns, the other knows. Needs `redis-server` (scripts/test-all.sh installs it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod process;
use process::{Killed, serve};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_redis(dir: &Path) -> (Killed, u16) {
    let port = free_port();
    let redis = spawn_redis(dir, port);
    let start = Instant::now();
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"PING\r\n");
            let mut buf = [0u8; 7];
            if s.read(&mut buf).is_ok_and(|n| n > 0) {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (redis, port)
}

/// A redis-server without persistence on `port`, its files in `dir`.
fn spawn_redis(dir: &Path, port: u16) -> Killed {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (apt-get install redis-server)");
    Killed(child)
}

fn config(dir: &Path, name: &str, redis_port: u16) -> (PathBuf, PathBuf) {
    let socket = dir.join(format!("{name}.sock"));
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = ["unix:{socket}"]
[store]
backend = "redis"
redis_url = "redis://127.0.0.1:{redis_port}/0"
key_prefix = "test-cluster:"
timeout = "1s"
[dns]
nameservers = ["127.0.0.1:9"]
lookup_unknown = false
[dnsbl]
zones = []
[greylist]
min_delay = "0s"
"#,
            socket = socket.display()
        ),
    )
    .unwrap();
    (path, socket)
}

fn ask(socket: &Path, client: &str, recipient: &str) -> String {
    let request = format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address={client}\nclient_name=unknown\nreverse_client_name=unknown\nsender=s@example.org\nrecipient={recipient}\n\n"
    );
    process::ask(socket, &request)
}

#[test]
fn two_mx_hosts_share_greylist_and_allow_list_through_redis() {
    let dir = tempfile::tempdir().unwrap();
    let (_redis, port) = start_redis(dir.path());
    let (config_a, socket_a) = config(dir.path(), "mx1", port);
    let (config_b, socket_b) = config(dir.path(), "mx2", port);
    let _a = serve(&config_a, &socket_a);
    let _b = serve(&config_b, &socket_b);

    // First attempt on mx1: greylisted (even with no delay to wait out).
    let first = ask(&socket_a, "203.0.113.7", "user@example.net");
    assert!(first.starts_with("action=DEFER_IF_PERMIT"), "{first}");
    // The retry reaches mx2. A host without mx1's state would see a first attempt and
    // defer it; mx2 lets it pass. (min_delay 0: no clock to wait for.)
    assert_eq!(
        ask(&socket_b, "203.0.113.7", "user@example.net"),
        "action=DUNNO\n\n",
        "the retry on mx2 passes"
    );
    // And the client is now auto-whitelisted on mx1 too.
    assert_eq!(
        ask(&socket_a, "203.0.113.7", "other@example.net"),
        "action=DUNNO\n\n"
    );

    // An allow-list entry added through mx1's config applies on mx2 without a reload.
    let before = ask(&socket_b, "198.51.100.9", "probe0@example.net");
    assert!(before.starts_with("action=DEFER_IF_PERMIT"), "{before}");
    let (code, _, stderr) = process::run_with_config(
        &config_a,
        &[
            "allow",
            "add",
            "client-address",
            "198.51.100.0/24",
            "--note",
            "partner",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    // mx2 polls the list's generation every 2 s (daemon::ALLOW_REFRESH). Each probe is a
    // first attempt (a new recipient), deferred until the entry applies: a retry would
    // pass by greylisting alone.
    let mut probe = 0;
    poll_until(
        "mx2 to apply the allow-list entry added through mx1",
        || {
            probe += 1;
            let reply = ask(
                &socket_b,
                "198.51.100.9",
                &format!("probe{probe}@example.net"),
            );
            (reply == "action=DUNNO\n\n").then_some(()).ok_or(reply)
        },
    );
}

/// Calls `probe` every 100 ms until it gives `Ok`, at most 150 times (15 s, far past the
/// poll intervals waited for); then fails with what it last saw.
fn poll_until<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let mut last = String::new();
    for _ in 0..150 {
        match probe() {
            Ok(value) => return value,
            Err(seen) => last = seen,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("gave up waiting for {what}; last seen: {last:?}");
}

#[test]
fn redis_down_means_the_fail_mode_and_recovery_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (redis, port) = start_redis(dir.path());
    let (config, socket) = config(dir.path(), "mx1", port);
    let _daemon = serve(&config, &socket);
    assert!(ask(&socket, "203.0.113.8", "a@example.net").starts_with("action=DEFER_IF_PERMIT"));
    drop(redis);
    // Fail mode "dunno" (the default): answered, never a 5xx. (A daemon stuck on the
    // store would have no answer: `ask` fails on its read guard.)
    let reply = ask(&socket, "203.0.113.9", "a@example.net");
    assert_eq!(reply, "action=DUNNO\n\n");
    // Redis back on the same port: normal decisions again, same daemon.
    let _redis = spawn_redis(dir.path(), port);
    poll_until("the daemon to greylist again with Redis back", || {
        let reply = ask(&socket, "203.0.113.10", "a@example.net");
        reply
            .starts_with("action=DEFER_IF_PERMIT")
            .then_some(())
            .ok_or(reply)
    });
}

#[test]
fn redis_down_at_start_is_the_fail_mode_not_an_exit() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(); // nothing listens there yet
    let (config, socket) = config(dir.path(), "mx1", port);
    let _daemon = serve(&config, &socket);
    // Started anyway, answering in the fail mode ("dunno"): never a 5xx, never silence.
    assert_eq!(
        ask(&socket, "203.0.113.9", "a@example.net"),
        "action=DUNNO\n\n"
    );
    // Redis comes up: the daemon connects in the background and greylists again.
    let _redis = spawn_redis(dir.path(), port);
    poll_until("the daemon to connect to Redis once it is up", || {
        let reply = ask(&socket, "203.0.113.10", "a@example.net");
        reply
            .starts_with("action=DEFER_IF_PERMIT")
            .then_some(())
            .ok_or(reply)
    });
}

#[test]
fn store_migrate_copies_sqlite_state_into_redis() {
    let dir = tempfile::tempdir().unwrap();
    let (_redis, port) = start_redis(dir.path());
    let db = dir.path().join("single.db");
    let sqlite_config = dir.path().join("single.toml");
    let socket = dir.path().join("single.sock");
    std::fs::write(
        &sqlite_config,
        format!(
            "[server]\nlisten = [\"unix:{}\"]\n[store]\npath = \"{}\"\n[dns]\nnameservers = [\"127.0.0.1:9\"]\nlookup_unknown = false\n[dnsbl]\nzones = []\n[greylist]\nmin_delay = \"1h\"\n",
            socket.display(),
            db.display()
        ),
    )
    .unwrap();
    // Migration is done with the daemon stopped (docs/cluster.md).
    let single = serve(&sqlite_config, &socket);
    assert!(ask(&socket, "203.0.113.20", "m@example.net").contains("3600 seconds"));
    single.stop();
    let (redis_config, redis_socket) = config(dir.path(), "mx1", port);
    let from = format!("sqlite:{}", db.display());
    let to = format!("redis://127.0.0.1:{port}/0");
    let (code, stdout, stderr) = process::run_with_config(
        &redis_config,
        &["store", "migrate", "--from", &from, "--to", &to],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("migrated 1 triplets"), "{stdout}");
    let _mx = serve(&redis_config, &redis_socket);
    // The Redis-backed daemon knows the attempt made on the single host: with no
    // delay there, its retry passes; an entry that was not copied would be a first
    // attempt, deferred.
    let reply = ask(&redis_socket, "203.0.113.20", "m@example.net");
    assert_eq!(reply, "action=DUNNO\n\n", "the copied entry's retry passes");
    let (_, text, _) = process::run_with_config(&redis_config, &["greylist", "list", "--json"]);
    assert!(text.contains("m@example.net"), "{text}");
    assert!(
        text.contains("\"attempts\":2"),
        "the copied entry got the second attempt: {text}"
    );
}
