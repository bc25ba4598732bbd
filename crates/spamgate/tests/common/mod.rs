//! A spamgate daemon on an ephemeral loopback port, with an in-process DNS server, a real
//! SQLite file and a clock the test moves. Tests talk raw policy protocol to it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use spamgate::config::Config;
use spamgate_app::{ManualClock, Service};
use spamgate_dns::Dns;
use spamgate_net::Listener;
use spamgate_store::{SqliteOptions, SqliteStore};
use spamgate_testdns::{TestDns, TestDnsBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const T0: u64 = 1_800_000_000;

/// DNSBL `bl.test`: 192.0.2.66 and 2001:db8::66 listed (127.0.0.2, with TXT),
/// 192.0.2.67 listed with 127.0.0.4, 192.0.2.99 answers a blocked-resolver sentinel.
pub const BL_ZONE: &str = r#"
66.2.0.192 A 127.0.0.2
66.2.0.192 TXT "Listed in bl.test, see http://bl.example/query/192.0.2.66"
67.2.0.192 A 127.0.0.4
99.2.0.192 A 127.255.255.254
6.6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2 A 127.0.0.2
"#;

/// DNSWL `wl.test`: 192.0.2.77 listed.
pub const WL_ZONE: &str = "77.2.0.192 A 127.0.10.2\n";

/// PTRs: 192.0.2.10 mail.example.test (confirmed), 192.0.2.20 a generic name (confirmed),
/// 192.0.2.30 a name that does not resolve back; 192.0.2.40 has none.
pub const REVERSE_V4: &str = "
10 PTR mail.example.test.
20 PTR 192-0-2-20.dyn.example.test.
30 PTR liar.example.test.
66 PTR mail.example.test.
";

pub const FORWARD: &str = "
mail A 192.0.2.10
mail AAAA 2001:db8::10
192-0-2-20.dyn A 192.0.2.20
liar A 198.51.100.200
";

pub type TestService = Service<SqliteStore, Dns, Arc<ManualClock>>;

pub struct Harness {
    pub addr: std::net::SocketAddr,
    pub service: Arc<TestService>,
    pub clock: Arc<ManualClock>,
    pub dns: Option<TestDns>,
    pub db: PathBuf,
    pub config: Config,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    _dir: Arc<tempfile::TempDir>,
}

pub fn dns_builder() -> TestDnsBuilder {
    TestDns::builder()
        .zone("bl.test.", BL_ZONE)
        .zone("wl.test.", WL_ZONE)
        .zone("2.0.192.in-addr.arpa.", REVERSE_V4)
        .zone("example.test.", FORWARD)
        .servfail("113.0.203.in-addr.arpa.")
}

/// The test configuration: short DNS timeouts, the lists above, a 300 s greylist delay.
pub fn config_for(dns: std::net::SocketAddr, db: &std::path::Path) -> Config {
    Config::parse(&config_text(dns, db, "127.0.0.1:0")).expect("test config is valid")
}

/// [`config_for`]'s text, listening on `listen`.
pub fn config_text(dns: std::net::SocketAddr, db: &std::path::Path, listen: &str) -> String {
    format!(
        r#"
log_level = "warn"
[server]
listen = ["{listen}"]
[store]
path = "{db}"
[dns]
nameservers = ["{dns}"]
timeout = "400ms"
attempts = 1
[dnsbl]
zones = ["bl.test=127.0.0.[2..3]"]
allow_zones = ["wl.test"]
[allow]
client_addresses = ["198.51.100.0/28"]
[replies]
reason_dns_tempfail = "temporary DNS failure"
[greylist]
min_delay = "300s"
max_pending_per_network = 50
"#,
        db = db.display()
    )
}

impl Harness {
    pub async fn start() -> Harness {
        let dns = dns_builder().start().await.expect("test DNS");
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let db = dir.path().join("spamgate.db");
        let config = config_for(dns.addr(), &db);
        Harness::start_with(config, Some(dns), dir, Arc::new(ManualClock::new(T0))).await
    }

    pub async fn start_with(
        config: Config,
        dns: Option<TestDns>,
        dir: Arc<tempfile::TempDir>,
        clock: Arc<ManualClock>,
    ) -> Harness {
        let settings = config.settings().unwrap();
        let resolver = Dns::new(&config.dns.to_dns_config().unwrap()).unwrap();
        let store = SqliteStore::open(&config.store.path, SqliteOptions::default()).unwrap();
        let service = Arc::new(Service::new(settings, store, resolver, clock.clone()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, rx) = watch::channel(false);
        let server = spamgate::config::ServerConfig {
            shutdown_grace: Duration::from_secs(2),
            ..config.server.clone()
        };
        let service_for_task = service.clone();
        let task = tokio::spawn(async move {
            spamgate::daemon::serve_postfix(
                service_for_task,
                vec![Listener::Tcp(listener)],
                &server,
                rx,
            )
            .await
        });
        let db = config.store.path.clone();
        Harness {
            addr,
            service,
            clock,
            dns,
            db,
            config,
            shutdown,
            task,
            _dir: dir,
        }
    }

    /// Stop the daemon (as SIGTERM does) and wait for it; keeps the DNS server and files.
    pub async fn stop(
        self,
    ) -> (
        Option<TestDns>,
        Arc<tempfile::TempDir>,
        Arc<ManualClock>,
        Config,
    ) {
        let _ = self.shutdown.send(true);
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("daemon stops within its grace period")
            .unwrap();
        (self.dns, self._dir, self.clock, self.config)
    }

    pub async fn connect(&self) -> Client {
        Client {
            stream: TcpStream::connect(self.addr).await.unwrap(),
        }
    }

    /// One request on a fresh connection.
    pub async fn ask(&self, attrs: &[(&str, &str)]) -> String {
        self.connect().await.ask(attrs).await
    }
}

pub struct Client {
    pub stream: TcpStream,
}

impl Client {
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads one reply (`action=...\n\n`); `None` if the server closed the connection.
    pub async fn read_reply(&mut self) -> Option<String> {
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(20), self.stream.read(&mut byte))
                .await
                .expect("a reply or a close within 20 s")
                .ok()?;
            if n == 0 {
                return None;
            }
            out.push(byte[0]);
            if out.ends_with(b"\n\n") {
                let text = String::from_utf8(out).unwrap();
                let line = text.trim_end();
                return Some(
                    line.strip_prefix("action=")
                        .expect("reply starts with action=")
                        .to_string(),
                );
            }
        }
    }

    pub async fn ask(&mut self, attrs: &[(&str, &str)]) -> String {
        self.send_raw(&request(attrs)).await;
        self.read_reply().await.expect("server answered")
    }
}

/// A Postfix-shaped RCPT request; `attrs` override or add attributes.
pub fn request(attrs: &[(&str, &str)]) -> Vec<u8> {
    let mut base: Vec<(&str, &str)> = vec![
        ("request", "smtpd_access_policy"),
        ("protocol_state", "RCPT"),
        ("protocol_name", "ESMTP"),
        ("helo_name", "helo.example.test"),
        ("queue_id", ""),
        ("sender", "sender@example.org"),
        ("recipient", "user@example.net"),
        ("recipient_count", "0"),
        ("client_address", "192.0.2.10"),
        ("client_name", "unknown"),
        ("reverse_client_name", "unknown"),
        ("instance", "1a2b.3c4d.5e6f.0"),
        ("sasl_method", ""),
        ("size", "0"),
        ("stress", ""),
        ("server_address", "127.0.0.1"),
        ("server_port", "25"),
    ];
    for (name, value) in attrs {
        match base.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => base.push((name, value)),
        }
    }
    let mut out = Vec::new();
    for (name, value) in base {
        out.extend_from_slice(format!("{name}={value}\n").as_bytes());
    }
    out.push(b'\n');
    out
}
