//! The TOML configuration: every key, its default, and validation.
//!
//! `deny_unknown_fields` everywhere: a misspelt key is an error, not a silent default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use spamgate_app::lists::BreakerSettings;
use spamgate_app::replies::ReplyError;
use spamgate_app::{Replies, Settings, SettingsParts};
use spamgate_engine::allow::AllowConfig;
use spamgate_engine::greylist::{GreylistParams, KeyScheme};
use spamgate_engine::outbound::SubmissionRules;
use spamgate_engine::{EngineConfig, ListRules, Stage, StoreFailMode, default_greylist_classes};
use spamgate_rdns::ClassifierConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `trace`, `debug`, `info`, `warn`, `error`, or a tracing filter such as
    /// `info,spamgate::decision=warn`.
    pub log_level: String,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub dns: DnsSection,
    pub dnsbl: DnsblSection,
    pub rdns: ClassifierConfig,
    pub greylist: GreylistSection,
    /// taRgrey's tarpit (off by default); see docs/configuration.md and docs/postfix.md.
    pub tarpit: TarpitSection,
    /// Learned exemptions (off by default); see docs/learning.md.
    pub learn: LearnSection,
    /// SPF for clients about to be greylisted (off by default); see docs/learning.md.
    pub spf: SpfSection,
    pub allow: AllowConfig,
    pub replies: Replies,
    pub metrics: MetricsSection,
    pub submission: SubmissionSection,
    /// Outbound Port 25 Blocking (`spamgate op25b ...`); see docs/op25b.md. Its
    /// durations are written like every other (`crate::display::duration`).
    #[serde(serialize_with = "crate::display::serialize_op25b")]
    pub op25b: spamgate_op25b::Op25bConfig,
    /// The abuse desk (`spamgate abuse|customer|sessions ...`); see docs/abuse-desk.md.
    pub desk: DeskSection,
    /// The HTTP admin API and console (off unless `listen` is set); see docs/api.md.
    pub admin: AdminSection,
}

/// The outbound (submission) policy: requests with a `sasl_username`, or arriving on a
/// submission port, are judged by account status and per-account limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubmissionSection {
    pub enabled: bool,
    /// Postfix `server_port`s that are submission services: a request there without
    /// SMTP AUTH is refused.
    pub ports: Vec<u16>,
    pub messages_per_hour: u32,
    /// Messages that may be sent at once before the hourly rate applies.
    pub message_burst: u32,
    pub recipients_per_day: u32,
    pub recipient_burst: u32,
    /// Protocol state at which a message is counted: `DATA` (recipient_count known) or
    /// `END-OF-MESSAGE`.
    pub charge_at: String,
}

impl Default for SubmissionSection {
    fn default() -> Self {
        let p = SubmissionRules::default();
        SubmissionSection {
            enabled: true,
            ports: vec![587, 465],
            messages_per_hour: p.messages_per_hour,
            message_burst: p.message_burst,
            recipients_per_day: p.recipients_per_day,
            recipient_burst: p.recipient_burst,
            charge_at: "DATA".into(),
        }
    }
}

impl SubmissionSection {
    /// The engine's rules; `None` when submission is off.
    pub fn rules(&self) -> Option<SubmissionRules> {
        self.enabled.then(|| SubmissionRules {
            ports: self.ports.clone(),
            charge_at: Stage::parse(&self.charge_at),
            messages_per_hour: self.messages_per_hour,
            message_burst: self.message_burst,
            recipients_per_day: self.recipients_per_day,
            recipient_burst: self.recipient_burst,
        })
    }
}

/// The optional HTTP listener for `/metrics` (Prometheus) and `/health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// `ADDRESS:PORT`, e.g. `127.0.0.1:9323`. Unset: no HTTP listener.
    pub listen: Option<String>,
}

impl MetricsSection {
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.listen
            .as_deref()
            .map(|a| {
                a.parse()
                    .map_err(|_| ConfigError::invalid("metrics.listen", a, "expected ADDRESS:PORT"))
            })
            .transpose()
    }
}

/// The HTTP admin API and web console listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// `ADDRESS:PORT`, e.g. `127.0.0.1:8025`. Unset: no admin listener.
    pub listen: Option<String>,
    /// PEM certificate chain (leaf first); with `tls_key`, the listener speaks TLS.
    /// Required when `listen` is not a loopback address.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The SQLite file of users, tokens, sessions and the audit trail. Unset:
    /// `admin.db` next to `[store] path`.
    pub users_path: Option<PathBuf>,
    /// How long a browser session lasts after login.
    #[serde(with = "crate::display::serde_duration")]
    pub session_ttl: Duration,
    /// Failed logins allowed per `login_window`, per client address and per user name.
    pub login_failures: u32,
    #[serde(with = "crate::display::serde_duration")]
    pub login_window: Duration,
    /// Reverse proxies (CIDRs) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<String>,
    /// Mark the session cookie `Secure` without TLS here (TLS ends at a proxy). With
    /// `tls_cert` it is always set.
    pub secure_cookie: bool,
    /// The largest request body, in bytes; larger ones get 413.
    pub max_body_size: usize,
    /// Connections served at once; one more is closed at once.
    pub max_connections: usize,
    /// A request's head (request line and headers) must arrive within this.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A request's body must arrive within this of its head.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A connection on which nothing is read or written for this long is closed
    /// (idle keep-alive connections, clients that stop reading their answer).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for AdminSection {
    fn default() -> Self {
        let policy = spamgate_app::users::AuthPolicy::default();
        let limits = spamgate_admin::ListenerLimits::default();
        AdminSection {
            listen: None,
            tls_cert: None,
            tls_key: None,
            users_path: None,
            session_ttl: policy.session_ttl,
            login_failures: policy.login_failures,
            login_window: policy.login_window,
            trusted_proxies: Vec::new(),
            secure_cookie: false,
            max_body_size: 1024 * 1024,
            max_connections: limits.max_connections,
            header_timeout: limits.header_timeout,
            request_timeout: limits.request_timeout,
            idle_timeout: limits.idle_timeout,
        }
    }
}

impl AdminSection {
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.listen
            .as_deref()
            .map(|a| {
                a.parse()
                    .map_err(|_| ConfigError::invalid("admin.listen", a, "expected ADDRESS:PORT"))
            })
            .transpose()
    }

    /// The bounds on each admin connection.
    pub fn listener_limits(&self) -> spamgate_admin::ListenerLimits {
        spamgate_admin::ListenerLimits {
            max_connections: self.max_connections,
            header_timeout: self.header_timeout,
            request_timeout: self.request_timeout,
            idle_timeout: self.idle_timeout,
        }
    }

    /// The users file: `users_path`, or `admin.db` beside the main store.
    pub fn users_path(&self, store: &StoreConfig) -> PathBuf {
        self.users_path
            .clone()
            .unwrap_or_else(|| store.path.with_file_name("admin.db"))
    }

    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|text| {
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ConfigError::invalid(
                            "admin.trusted_proxies",
                            text,
                            "expected an address or CIDR",
                        )
                    })
            })
            .collect()
    }

    pub fn policy(&self) -> spamgate_app::users::AuthPolicy {
        spamgate_app::users::AuthPolicy {
            session_ttl: self.session_ttl,
            login_failures: self.login_failures,
            login_window: self.login_window,
        }
    }

    fn problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        match self.listen_addr() {
            Err(e) => problems.push(e),
            Ok(Some(addr)) if !addr.ip().is_loopback() && self.tls_cert.is_none() => {
                problems.push(ConfigError::invalid(
                    "admin.listen",
                    &addr.to_string(),
                    "a listener that is not on loopback needs tls_cert and tls_key \
                     (or listen on loopback behind a TLS reverse proxy)",
                ))
            }
            Ok(_) => {}
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            problems.push(ConfigError::invalid(
                "admin.tls_key",
                "",
                "give both tls_cert and tls_key, or neither",
            ));
        }
        if let Err(e) = self.trusted_proxy_nets() {
            problems.push(e);
        }
        if self.login_failures == 0 || self.login_window.is_zero() {
            problems.push(ConfigError::invalid(
                "admin.login_failures",
                "0",
                "login_failures and login_window must be positive",
            ));
        }
        if self.session_ttl < Duration::from_secs(60) {
            problems.push(ConfigError::invalid(
                "admin.session_ttl",
                &humantime::format_duration(self.session_ttl).to_string(),
                "must be at least 1m",
            ));
        }
        if self.max_body_size < 1024 {
            problems.push(ConfigError::invalid(
                "admin.max_body_size",
                &self.max_body_size.to_string(),
                "must be at least 1024",
            ));
        }
        if self.max_connections == 0 {
            problems.push(ConfigError::invalid(
                "admin.max_connections",
                "0",
                "must be at least 1",
            ));
        }
        for (key, value) in [
            ("admin.header_timeout", self.header_timeout),
            ("admin.request_timeout", self.request_timeout),
            ("admin.idle_timeout", self.idle_timeout),
        ] {
            if value < Duration::from_millis(100) {
                problems.push(ConfigError::invalid(
                    key,
                    &humantime::format_duration(value).to_string(),
                    "must be at least 100ms",
                ));
            }
        }
        problems
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: "info".into(),
            server: ServerConfig::default(),
            store: StoreConfig::default(),
            dns: DnsSection::default(),
            dnsbl: DnsblSection::default(),
            rdns: ClassifierConfig::default(),
            greylist: GreylistSection::default(),
            tarpit: TarpitSection::default(),
            learn: LearnSection::default(),
            spf: SpfSection::default(),
            allow: AllowConfig::default(),
            replies: Replies::default(),
            metrics: MetricsSection::default(),
            submission: SubmissionSection::default(),
            op25b: spamgate_op25b::Op25bConfig::default(),
            desk: DeskSection::default(),
            admin: AdminSection::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// `ADDRESS:PORT` (IPv6 as `[::1]:10023`) or `unix:/path/to/socket`.
    pub listen: Vec<String>,
    /// Octal permission bits for UNIX sockets.
    pub unix_mode: String,
    /// Connections served at once. Unset: derived at start from the file-descriptor
    /// limit (raised to the hard limit first), less a reserve for the store and DNS.
    pub max_connections: Option<usize>,
    /// Postfix closes idle policy connections after 300 s; we wait a little longer.
    #[serde(with = "crate::display::serde_duration")]
    pub idle_timeout: Duration,
    /// Time allowed to receive one whole request once its first byte arrived.
    #[serde(with = "crate::display::serde_duration")]
    pub request_timeout: Duration,
    pub max_line_length: usize,
    pub max_attributes: usize,
    pub max_request_size: usize,
    /// Protocol states at which spamgate decides; at others it answers `DUNNO`.
    /// Greylisting needs a recipient, so it only happens at `RCPT`.
    pub decide_at: Vec<String>,
    /// Grace period for in-flight requests on shutdown.
    #[serde(with = "crate::display::serde_duration")]
    pub shutdown_grace: Duration,
    /// Where `serve` writes its process id (removed at exit), for `spamgate reload`.
    /// Unset: no file.
    pub pid_file: Option<std::path::PathBuf>,
    /// The zone listings show times in and read `--since` dates in: `local` (the
    /// system's), `UTC`, a fixed offset (`+09:00`), or a zone name (`Asia/Tokyo`, from
    /// the system's time-zone database).
    pub display_timezone: String,
    /// `"text"` or `"json"` (one object per line); a restart applies a change.
    pub log_format: crate::logging::LogFormat,
    /// `"stderr"` (journald under systemd) or `"syslog"` (facility mail, `syslog_path`).
    pub log_target: crate::logging::LogTarget,
    /// The syslog socket for `log_target = "syslog"`.
    pub syslog_path: std::path::PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec!["127.0.0.1:10023".into()],
            unix_mode: "0660".into(),
            max_connections: None,
            idle_timeout: Duration::from_secs(330),
            request_timeout: Duration::from_secs(100),
            max_line_length: 4096,
            max_attributes: 1000,
            max_request_size: 65536,
            decide_at: vec!["RCPT".into()],
            shutdown_grace: Duration::from_secs(10),
            pid_file: None,
            display_timezone: "local".into(),
            log_format: crate::logging::LogFormat::Text,
            log_target: crate::logging::LogTarget::Stderr,
            syslog_path: crate::logging::DEFAULT_SYSLOG_PATH.into(),
        }
    }
}

pub use spamgate_net::ListenAddr;

impl ServerConfig {
    /// The zone of `display_timezone`.
    pub fn display_zone(&self) -> Result<crate::display::DisplayZone, ConfigError> {
        crate::display::DisplayZone::parse(&self.display_timezone).map_err(|why| {
            ConfigError::invalid("server.display_timezone", &self.display_timezone, &why)
        })
    }

    pub fn listen_addrs(&self) -> Result<Vec<ListenAddr>, ConfigError> {
        self.listen
            .iter()
            .map(|entry| {
                if let Some(path) = entry.strip_prefix("unix:") {
                    if path.is_empty() {
                        return Err(ConfigError::invalid(
                            "server.listen",
                            entry,
                            "empty socket path",
                        ));
                    }
                    Ok(ListenAddr::Unix(PathBuf::from(path)))
                } else {
                    entry.parse().map(ListenAddr::Tcp).map_err(|_| {
                        ConfigError::invalid(
                            "server.listen",
                            entry,
                            "expected ADDRESS:PORT, [IPv6]:PORT or unix:/path",
                        )
                    })
                }
            })
            .collect()
    }

    pub fn unix_mode_bits(&self) -> Result<u32, ConfigError> {
        u32::from_str_radix(self.unix_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                ConfigError::invalid(
                    "server.unix_mode",
                    &self.unix_mode,
                    "expected octal like 0660",
                )
            })
    }
}

/// Which store keeps the state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreBackend {
    /// The embedded SQLite file (`path`): one host.
    #[default]
    Sqlite,
    /// A Redis server (or Sentinel-managed master) shared by several MX hosts.
    Redis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite` (default) or `redis` (docs/cluster.md).
    pub backend: StoreBackend,
    /// SQLite database file. Default: `$STATE_DIRECTORY/spamgate.db` under systemd, else
    /// `/var/lib/spamgate/spamgate.db`.
    pub path: PathBuf,
    /// What to answer when the store fails: `dunno` (let mail through) or `defer` (4xx).
    pub fail_mode: StoreFailMode,
    /// A store operation taking longer than this counts as a failure.
    #[serde(with = "crate::display::serde_duration")]
    pub timeout: Duration,
    /// How often expired entries are removed.
    #[serde(with = "crate::display::serde_duration")]
    pub cleanup_interval: Duration,
    /// SQLite: answered changes may wait this long for their commit, so many requests
    /// share one commit and none waits for it; a crash loses at most this window
    /// (senders greylisted once more). `0s`: commit before every answer.
    #[serde(with = "crate::display::serde_duration")]
    pub durability_window: Duration,
    /// Redis: `redis://[user:password@]host:port/db` (with Sentinel, only the database
    /// number and credentials are used).
    pub redis_url: String,
    /// Redis Sentinel: the monitored master's name; unset = no Sentinel.
    pub redis_sentinel_master: Option<String>,
    /// Redis Sentinel: the sentinels, `redis://host:26379`.
    pub redis_sentinels: Vec<String>,
    /// Redis: put before every key; the hosts of one spamgate cluster share it.
    pub key_prefix: String,
}

impl Default for StoreConfig {
    /// The store under systemd's `STATE_DIRECTORY` when it is set.
    fn default() -> Self {
        StoreConfig::in_state_directory(std::env::var_os("STATE_DIRECTORY").map(PathBuf::from))
    }
}

impl StoreConfig {
    /// The store as people read it: `sqlite:PATH`, or `redis://HOST...` without a
    /// password.
    pub fn describe(&self) -> String {
        match self.backend {
            StoreBackend::Sqlite => format!("sqlite:{}", self.path.display()),
            StoreBackend::Redis => {
                let url = &self.redis_url;
                match (url.split_once("://"), url.rsplit_once('@')) {
                    (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
                    _ => url.clone(),
                }
            }
        }
    }

    /// The defaults with the file in `state_directory`, or `/var/lib/spamgate` without.
    pub fn in_state_directory(state_directory: Option<PathBuf>) -> StoreConfig {
        let dir = state_directory.unwrap_or_else(|| PathBuf::from("/var/lib/spamgate"));
        StoreConfig {
            path: dir.join("spamgate.db"),
            fail_mode: StoreFailMode::Dunno,
            timeout: Duration::from_secs(5),
            cleanup_interval: Duration::from_secs(600),
            // Commit before answering: a kill -9 loses nothing that was answered.
            durability_window: Duration::ZERO,
            backend: StoreBackend::Sqlite,
            redis_url: "redis://127.0.0.1:6379/0".into(),
            redis_sentinel_master: None,
            redis_sentinels: Vec::new(),
            key_prefix: "spamgate:".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsSection {
    /// `HOST:PORT` or `HOST` (port 53). Empty: the system resolver (`/etc/resolv.conf`).
    pub nameservers: Vec<String>,
    /// Per query.
    #[serde(with = "crate::display::serde_duration")]
    pub timeout: Duration,
    pub attempts: usize,
    /// Look up PTR and forward-confirm ourselves even when Postfix sent `client_name`.
    pub always_lookup: bool,
    /// When Postfix says `unknown` for both names, look up ourselves to tell "no PTR" from
    /// a temporary DNS failure (Postfix does not say which).
    pub lookup_unknown: bool,
    pub cache_size: usize,
    /// Finished DNS-list results kept in front of the resolver's cache (a hit costs a
    /// hash, not a resolver lookup); 0 turns it off.
    pub list_cache_size: usize,
    /// DNS queries in flight at once; more wait (within their timeout).
    pub max_in_flight: usize,
    #[serde(with = "crate::display::serde_duration")]
    pub min_ttl: Duration,
    #[serde(with = "crate::display::serde_duration")]
    pub max_ttl: Duration,
}

impl Default for DnsSection {
    fn default() -> Self {
        DnsSection {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(2),
            attempts: 2,
            always_lookup: false,
            lookup_unknown: true,
            cache_size: 65536,
            list_cache_size: spamgate_dns::DnsConfig::default().list_cache_size,
            max_in_flight: spamgate_dns::DnsConfig::default().max_in_flight,
            // postscreen clamps DNSBL TTLs to 60 s..1 h.
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
        }
    }
}

impl DnsSection {
    pub fn nameserver_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        self.nameservers
            .iter()
            .map(|entry| {
                entry
                    .parse::<SocketAddr>()
                    .or_else(|_| {
                        entry
                            .parse::<std::net::IpAddr>()
                            .map(|ip| SocketAddr::new(ip, 53))
                    })
                    .map_err(|_| {
                        ConfigError::invalid(
                            "dns.nameservers",
                            entry,
                            "expected IP, IP:PORT or [IPv6]:PORT",
                        )
                    })
            })
            .collect()
    }

    pub fn to_dns_config(&self) -> Result<spamgate_dns::DnsConfig, ConfigError> {
        Ok(spamgate_dns::DnsConfig {
            nameservers: self.nameserver_addrs()?,
            timeout: self.timeout,
            attempts: self.attempts,
            cache_size: self.cache_size,
            list_cache_size: self.list_cache_size,
            max_in_flight: self.max_in_flight,
            min_ttl: self.min_ttl,
            max_ttl: self.max_ttl,
            ..spamgate_dns::DnsConfig::default()
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsblSection {
    /// Block lists in postscreen syntax: `zone[=filter][*weight]`,
    /// e.g. `zen.spamhaus.org=127.0.0.[2..11]*3`. Negative weights allow-list.
    pub zones: Vec<String>,
    /// Reject when the summed weights of listing zones reach this.
    pub threshold: i32,
    /// DNS allow lists (DNSWL), same syntax: a listed client passes at once.
    pub allow_zones: Vec<String>,
    /// Consecutive errors after which a zone is skipped (circuit breaker); 0 disables.
    pub breaker_failures: u32,
    /// How long a failing zone is skipped before one probe query.
    #[serde(with = "crate::display::serde_duration")]
    pub breaker_cooldown: Duration,
}

impl Default for DnsblSection {
    fn default() -> Self {
        DnsblSection {
            // The seed's list.
            zones: vec!["bl.spamcop.net".into()],
            threshold: 1,
            allow_zones: Vec::new(),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(60),
        }
    }
}

impl DnsblSection {
    pub fn parse_zones(
        list: &[String],
        key: &str,
    ) -> Result<Vec<spamgate_dns::ZoneSpec>, ConfigError> {
        list.iter()
            .map(|z| {
                z.parse::<spamgate_dns::ZoneSpec>()
                    .map_err(|e| ConfigError::invalid(key, z, &e.to_string()))
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GreylistSection {
    pub enabled: bool,
    /// Client classes to greylist: `no-ptr`, `ptr-not-confirmed`, `dns-tempfail`,
    /// `generic` (and `proper`, to greylist everyone like classic greylisting).
    pub classes: Vec<String>,
    #[serde(with = "crate::display::serde_duration")]
    pub min_delay: Duration,
    #[serde(with = "crate::display::serde_duration")]
    pub retry_window: Duration,
    #[serde(with = "crate::display::serde_duration")]
    pub awl_lifetime: Duration,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub key_by_ptr_domain: bool,
    pub max_pending_per_network: u32,
}

impl Default for GreylistSection {
    fn default() -> Self {
        let params = GreylistParams::default();
        let keys = KeyScheme::default();
        GreylistSection {
            enabled: true,
            classes: default_greylist_classes(),
            min_delay: params.min_delay,
            retry_window: params.retry_window,
            awl_lifetime: params.awl_lifetime,
            ipv4_prefix: keys.ipv4_prefix,
            ipv6_prefix: keys.ipv6_prefix,
            key_by_ptr_domain: keys.key_by_ptr_domain,
            max_pending_per_network: params.max_pending_per_network,
        }
    }
}

/// taRgrey's tarpit: a first attempt greylisting would defer is held `delay`, then let
/// in; clients that hang up are greylisted when they retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TarpitSection {
    pub enabled: bool,
    /// How long the reply is held; under Postfix's `smtpd_policy_service_timeout`.
    #[serde(with = "crate::display::serde_duration")]
    pub delay: Duration,
    /// Replies held at once; beyond, plain greylisting. Each holds one smtpd process.
    pub max_concurrent: u32,
    /// How long after the hold the client's next step (RCPT, DATA) may come before it
    /// counts as hung up.
    #[serde(with = "crate::display::serde_duration")]
    pub confirm_window: Duration,
}

impl Default for TarpitSection {
    fn default() -> Self {
        let params = spamgate_engine::tarpit::TarpitParams::default();
        TarpitSection {
            enabled: params.enabled,
            delay: params.delay,
            max_concurrent: params.max_concurrent,
            confirm_window: params.confirm_window,
        }
    }
}

/// SPF: a client the envelope sender's domain authorises through a narrow mechanism
/// (`ip4`/`ip6` no wider than the minimum prefixes, `a`, `mx`) skips greylisting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpfSection {
    pub enabled: bool,
    /// Smallest IPv4 prefix length (of `ip4`, `a/N`, `mx/N`) that counts as narrow.
    pub min_ipv4_prefix: u8,
    /// Smallest IPv6 prefix length that counts as narrow.
    pub min_ipv6_prefix: u8,
    /// Bound on one whole evaluation; past it SPF has no effect.
    #[serde(with = "crate::display::serde_duration")]
    pub timeout: Duration,
}

impl Default for SpfSection {
    fn default() -> Self {
        let narrow = spamgate_dns::NarrowRule::default();
        SpfSection {
            enabled: false,
            min_ipv4_prefix: narrow.min_ip4_prefix,
            min_ipv6_prefix: narrow.min_ip6_prefix,
            timeout: Duration::from_secs(2),
        }
    }
}

impl SpfSection {
    /// The application's SPF settings; `None` when off.
    pub fn settings(&self) -> Result<Option<spamgate_app::settings::SpfSettings>, ConfigError> {
        if self.min_ipv4_prefix > 32 {
            let v = self.min_ipv4_prefix.to_string();
            return Err(ConfigError::invalid(
                "spf.min_ipv4_prefix",
                &v,
                "at most 32",
            ));
        }
        if self.min_ipv6_prefix > 128 {
            let v = self.min_ipv6_prefix.to_string();
            return Err(ConfigError::invalid(
                "spf.min_ipv6_prefix",
                &v,
                "at most 128",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid(
                "spf.timeout",
                "0s",
                "must be more than 0",
            ));
        }
        Ok(self.enabled.then_some(spamgate_app::settings::SpfSettings {
            narrow: spamgate_dns::NarrowRule {
                min_ip4_prefix: self.min_ipv4_prefix,
                min_ip6_prefix: self.min_ipv6_prefix,
            },
            timeout: self.timeout,
        }))
    }
}

/// Learned exemptions: an organisational domain whose forward-confirmed, non-dynamic
/// servers passed greylisting from `min_networks` networks over `min_span` skips it for
/// `ttl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LearnSection {
    pub enabled: bool,
    pub min_networks: usize,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    #[serde(with = "crate::display::serde_duration")]
    pub min_span: Duration,
    #[serde(with = "crate::display::serde_duration")]
    pub window: Duration,
    #[serde(with = "crate::display::serde_duration")]
    pub ttl: Duration,
    #[serde(with = "crate::display::serde_duration")]
    pub refuse_for: Duration,
    pub max_entries: usize,
    pub max_tracked: usize,
    pub max_networks_per_org: usize,
}

impl Default for LearnSection {
    fn default() -> Self {
        let p = spamgate_engine::learn::LearnParams::default();
        LearnSection {
            enabled: p.enabled,
            min_networks: p.min_networks,
            ipv4_prefix: p.ipv4_prefix,
            ipv6_prefix: p.ipv6_prefix,
            min_span: p.min_span,
            window: p.window,
            ttl: p.ttl,
            refuse_for: p.refuse_for,
            max_entries: p.max_entries,
            max_tracked: p.max_tracked,
            max_networks_per_org: p.max_networks_per_org,
        }
    }
}

impl LearnSection {
    pub fn params(&self) -> spamgate_engine::learn::LearnParams {
        spamgate_engine::learn::LearnParams {
            enabled: self.enabled,
            min_networks: self.min_networks,
            ipv4_prefix: self.ipv4_prefix,
            ipv6_prefix: self.ipv6_prefix,
            min_span: self.min_span,
            window: self.window,
            ttl: self.ttl,
            refuse_for: self.refuse_for,
            max_entries: self.max_entries,
            max_tracked: self.max_tracked,
            max_networks_per_org: self.max_networks_per_org,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {value:?}: {message}")]
    Invalid {
        key: String,
        value: String,
        message: String,
    },
    #[error(transparent)]
    Engine(#[from] spamgate_engine::EngineError),
    #[error(transparent)]
    Reply(#[from] ReplyError),
    #[error("{0}")]
    Section(String),
    /// Several problems in one file, one per line.
    #[error("{} problems:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Problems(Vec<ConfigError>),
}

/// A `log_level` that would silence the daemon is refused: every comma-separated
/// directive must be a level, or `target=level` (a bare word that is not a level is a
/// target filter that turns every other log line off).
fn check_log_level(text: &str) -> Result<(), ConfigError> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let is_level = |word: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(word.trim()));
    let directives: Vec<&str> = text.split(',').filter(|d| !d.trim().is_empty()).collect();
    let bad = directives
        .iter()
        .find(|directive| match directive.rsplit_once('=') {
            Some((target, level)) => target.trim().is_empty() || !is_level(level),
            None => !is_level(directive),
        });
    match (directives.is_empty(), bad) {
        (true, _) => Err(ConfigError::invalid(
            "log_level",
            text,
            "empty: no log line would be written",
        )),
        (false, Some(bad)) => {
            let what = if bad.trim() == text.trim() {
                "not a level".to_string()
            } else {
                format!("{:?} is not a level", bad.trim())
            };
            let message = format!(
                "{what} (trace, debug, info, warn, error, off) nor target=level: \
                 no log line would be written"
            );
            Err(ConfigError::invalid("log_level", text, &message))
        }
        (false, None) => Ok(()),
    }
}

impl ConfigError {
    fn invalid(key: &str, value: &str, message: &str) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            value: value.into(),
            message: message.into(),
        }
    }
}

impl Config {
    /// The desk's settings with OP25B as `[op25b]` manages it here (`None` without pools).
    pub fn desk_settings(&self) -> Result<spamgate_app::desk::DeskSettings, ConfigError> {
        let mut settings = self.desk.settings()?;
        settings.op25b = self.op25b_settings();
        Ok(settings)
    }

    /// `[op25b]` and the nft command of `[desk] op25b_nft`; `None` when `[op25b]` has no
    /// pools (spamgate does not manage OP25B here).
    pub fn op25b_settings(&self) -> Option<spamgate_app::op25b::Op25bSettings> {
        if self.op25b.pools.is_empty() {
            return None;
        }
        Some(spamgate_app::op25b::Op25bSettings {
            config: self.op25b.clone(),
            nft: spamgate_op25b::NftRunner::new(self.desk.op25b_nft.clone())
                .unwrap_or_default()
                .with_timeout(self.op25b.nft_timeout),
        })
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parse and validate.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Load `path`, or the built-in defaults when there is none.
    pub fn load_or_default(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(path) => Config::load(path),
            None => {
                let config = Config::default();
                config.validate()?;
                Ok(config)
            }
        }
    }

    /// Everything that can be checked without binding or opening anything; every
    /// problem at once ([`ConfigError::Problems`] when there are several).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = self.problems();
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(ConfigError::Problems(problems)),
        }
    }

    /// Each problem of this configuration, once, in file order.
    fn problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let mut check = |result: Result<(), ConfigError>| {
            if let Err(e) = result {
                problems.push(e);
            }
        };
        let invalid = |key: &str, value: &str, message: &str| -> Result<(), ConfigError> {
            Err(ConfigError::invalid(key, value, message))
        };
        check(check_log_level(&self.log_level));
        let server = &self.server;
        if server.listen.is_empty() {
            check(invalid(
                "server.listen",
                "[]",
                "at least one listener is needed",
            ));
        }
        check(server.listen_addrs().map(drop));
        check(server.display_zone().map(drop));
        check(server.unix_mode_bits().map(drop));
        for state in &server.decide_at {
            if !spamgate_engine::stage::INBOUND_STAGES.contains(&Stage::parse(state)) {
                check(invalid(
                    "server.decide_at",
                    state,
                    "expected CONNECT, EHLO, HELO, MAIL or RCPT",
                ));
            }
        }
        if server.max_line_length < 64 || server.max_request_size < server.max_line_length {
            check(invalid(
                "server.max_line_length",
                &server.max_line_length.to_string(),
                "must be at least 64 and at most server.max_request_size",
            ));
        }
        if server.max_connections == Some(0) {
            check(invalid("server.max_connections", "0", "must be positive"));
        }
        check(self.dns.nameserver_addrs().map(drop));
        if self.dns.attempts == 0 || self.dns.timeout.is_zero() {
            check(invalid(
                "dns.timeout",
                "0",
                "timeout and attempts must be positive",
            ));
        }
        check(DnsblSection::parse_zones(&self.dnsbl.zones, "dnsbl.zones").map(drop));
        check(DnsblSection::parse_zones(&self.dnsbl.allow_zones, "dnsbl.allow_zones").map(drop));
        for problem in self.replies.problems() {
            check(Err(problem.into()));
        }
        check(self.metrics.listen_addr().map(drop));
        check(self.desk.settings().map(drop));
        for problem in self.admin.problems() {
            check(Err(problem));
        }
        let store = &self.store;
        if store.backend == StoreBackend::Redis {
            let scheme_ok = ["redis://", "rediss://", "unix://", "redis+unix://"]
                .iter()
                .any(|s| store.redis_url.starts_with(s));
            if !scheme_ok {
                check(invalid(
                    "store.redis_url",
                    &store.redis_url,
                    "expected redis://host:port/db, rediss://... or unix:///path",
                ));
            }
            if store.redis_sentinel_master.is_some() == store.redis_sentinels.is_empty() {
                check(invalid(
                    "store.redis_sentinels",
                    &store.redis_sentinels.join(","),
                    "give both redis_sentinel_master and redis_sentinels, or neither",
                ));
            }
        }
        let sub = &self.submission;
        if !spamgate_engine::stage::CHARGE_STAGES.contains(&Stage::parse(&sub.charge_at)) {
            check(invalid(
                "submission.charge_at",
                &sub.charge_at,
                "expected DATA or END-OF-MESSAGE",
            ));
        }
        if sub.enabled && sub.ports.contains(&25) {
            check(invalid(
                "submission.ports",
                "25",
                "port 25 is where other MTAs deliver: every request there without SMTP AUTH \
                 would be refused with a 5xx (submission ports are 587 and 465)",
            ));
        }
        for (key, value) in [
            ("submission.messages_per_hour", sub.messages_per_hour),
            ("submission.message_burst", sub.message_burst),
            ("submission.recipients_per_day", sub.recipients_per_day),
            ("submission.recipient_burst", sub.recipient_burst),
        ] {
            if value == 0 {
                check(invalid(key, "0", "must be positive"));
            }
        }
        // An empty [op25b] (no pools) means OP25B is not managed by spamgate here.
        if !self.op25b.pools.is_empty() {
            check(
                spamgate_op25b::plan(&self.op25b, std::time::SystemTime::now())
                    .map(drop)
                    .map_err(|e| ConfigError::Section(e.to_string())),
            );
        }
        check(
            spamgate_engine::Engine::new(&self.engine_config())
                .map(drop)
                .map_err(ConfigError::from),
        );
        problems
    }

    pub fn engine_config(&self) -> EngineConfig {
        let g = &self.greylist;
        EngineConfig {
            allow: self.allow.clone(),
            rdns: self.rdns.clone(),
            lists: ListRules {
                threshold: self.dnsbl.threshold,
            },
            greylist_enabled: g.enabled,
            greylist_classes: g.classes.clone(),
            greylist: GreylistParams {
                min_delay: g.min_delay,
                retry_window: g.retry_window,
                awl_lifetime: g.awl_lifetime,
                max_pending_per_network: g.max_pending_per_network,
                ..GreylistParams::default()
            },
            keys: KeyScheme {
                ipv4_prefix: g.ipv4_prefix,
                ipv6_prefix: g.ipv6_prefix,
                key_by_ptr_domain: g.key_by_ptr_domain,
            },
            store_fail_mode: self.store.fail_mode,
            decide_at: self
                .server
                .decide_at
                .iter()
                .map(|s| Stage::parse(s))
                .collect(),
            tarpit: spamgate_engine::tarpit::TarpitParams {
                enabled: self.tarpit.enabled,
                delay: self.tarpit.delay,
                max_concurrent: self.tarpit.max_concurrent,
                confirm_window: self.tarpit.confirm_window,
            },
            learn: self.learn.params(),
        }
    }

    /// The application's settings for this configuration (validated first).
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let parts = SettingsParts {
            engine: self.engine_config(),
            dnsbl: DnsblSection::parse_zones(&self.dnsbl.zones, "dnsbl.zones")?,
            dnswl: DnsblSection::parse_zones(&self.dnsbl.allow_zones, "dnsbl.allow_zones")?,
            breaker: BreakerSettings {
                failures: self.dnsbl.breaker_failures,
                cooldown: self.dnsbl.breaker_cooldown,
            },
            replies: self.replies.clone(),
            always_lookup: self.dns.always_lookup,
            lookup_unknown: self.dns.lookup_unknown,
            store_timeout: self.store.timeout,
            submission: self.submission.rules(),
            spf: self.spf.settings()?,
        };
        Settings::new(parts).map_err(|e| match e {
            spamgate_app::settings::SettingsError::Engine(e) => ConfigError::Engine(e),
            spamgate_app::settings::SettingsError::Reply(e) => ConfigError::Reply(e),
        })
    }

    /// The effective configuration as TOML (for `config check`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// The abuse desk: its store, the zone it reads and shows times in, the escalation
/// policy, and the operator's hook. Every knob of `spamgate-desk`'s policies is here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeskSection {
    /// The desk's SQLite file. Unset: `desk.db` next to `[store] path`.
    pub path: Option<PathBuf>,
    /// Zone of report times written without one, and of every time shown (`+09:00` JST).
    pub time_zone: String,
    /// How far a reporter's clock may be off either way.
    #[serde(with = "crate::display::serde_duration")]
    pub clock_skew: Duration,
    /// How long an open session counts after its last Start/Interim when its Stop was lost.
    #[serde(with = "crate::display::serde_duration")]
    pub lost_stop_grace: Duration,
    /// Reports of one customer and category within this window fold into one case.
    #[serde(with = "crate::display::serde_duration")]
    pub case_window: Duration,
    pub warn_on_first: bool,
    pub suspend_after: usize,
    #[serde(with = "crate::display::serde_duration")]
    pub suspension_window: Duration,
    pub suspension_requires_approval: bool,
    pub overload_emergency: bool,
    pub propose_termination_after: usize,
    #[serde(with = "crate::display::serde_duration")]
    pub strike_ttl: Duration,
    /// The hook program and leading arguments; spamgate appends the customer id and
    /// the step. Empty: no hook (hook deliveries stay queued).
    pub hook_command: Vec<String>,
    #[serde(with = "crate::display::serde_duration")]
    pub hook_timeout: Duration,
    /// Attempts before a hook delivery is shown as failed.
    pub hook_attempts: u32,
    #[serde(with = "crate::display::serde_duration")]
    pub hook_first_retry: Duration,
    #[serde(with = "crate::display::serde_duration")]
    pub hook_max_retry: Duration,
    /// The SMTP relay customer notices go through (no TLS: the ISP's own relay).
    /// Empty: no relay, notices stay queued.
    pub notice_relay_host: String,
    pub notice_relay_port: u16,
    /// The notices' `From:` and envelope sender, named in them as the desk's address.
    pub notice_from: String,
    /// The ISP's name the notices are signed with.
    pub notice_isp_name: String,
    /// Operator templates (`ja/warned.txt`, `en/suspended.txt`, ...) replacing the shipped ones.
    pub notice_templates: Option<PathBuf>,
    /// The answer deadline a notice names.
    #[serde(with = "crate::display::serde_duration")]
    pub notice_reply_within: Duration,
    /// The longest the relay may take to answer one SMTP command.
    #[serde(with = "crate::display::serde_duration")]
    pub notice_timeout: Duration,
    /// `abuse signals` counts account events per account in fixed windows this long.
    #[serde(with = "crate::display::serde_duration")]
    pub signal_window: Duration,
    /// How far back `abuse signals` looks (a missed run is caught up).
    #[serde(with = "crate::display::serde_duration")]
    pub signal_lookback: Duration,
    /// Submission limit trips of one account within a window that make a report.
    pub signal_limit_trips: u32,
    /// Refused sends of a suspended account within a window that make a report.
    pub signal_refused_sends: u32,
    /// Blocked port-25 attempts of one source in `op25b hits` that make an internal
    /// report for the customer who held the address (0: OP25B hits are not signals).
    pub signal_op25b_hits: u64,
    /// How the desk runs nft for OP25B (the revocation's sync, the hits), e.g.
    /// `["ip", "netns", "exec", "router", "nft"]`.
    pub op25b_nft: Vec<String>,
    /// `abuse purge`: address history (sessions) that ended longer ago is removed.
    #[serde(with = "crate::display::serde_duration")]
    pub retention_sessions: Duration,
    /// `abuse purge`: reports in no case (triage, dismissed) received longer ago, and
    /// finished deliveries, are removed.
    #[serde(with = "crate::display::serde_duration")]
    pub retention_reports: Duration,
    /// `abuse purge`: closed or dismissed cases without a claim whose last report is
    /// older are removed with their reports and raw messages.
    #[serde(with = "crate::display::serde_duration")]
    pub retention_cases: Duration,
}

impl Default for DeskSection {
    fn default() -> Self {
        use spamgate_desk::{attribution::AttributionPolicy, case::FoldPolicy};
        let secs = |s: i64| Duration::from_secs(s.max(0) as u64);
        let attribution = AttributionPolicy::default();
        let escalation = spamgate_desk::ladder::EscalationPolicy::default();
        let retry = spamgate_desk::store::RetryPolicy::default();
        let signals = spamgate_app::desk::SignalPolicy::default();
        DeskSection {
            path: None,
            time_zone: "+09:00".into(),
            clock_skew: secs(attribution.skew),
            lost_stop_grace: secs(attribution.lost_stop_grace),
            case_window: secs(FoldPolicy::default().window),
            warn_on_first: escalation.warn_on_first,
            suspend_after: escalation.suspend_after,
            suspension_window: secs(escalation.suspension_window),
            suspension_requires_approval: escalation.suspension_requires_approval,
            overload_emergency: escalation.overload_emergency,
            propose_termination_after: escalation.propose_termination_after,
            strike_ttl: secs(escalation.strike_ttl),
            hook_command: Vec::new(),
            hook_timeout: Duration::from_secs(30),
            hook_attempts: retry.max_attempts,
            hook_first_retry: secs(retry.first_delay),
            hook_max_retry: secs(retry.max_delay),
            notice_relay_host: String::new(),
            notice_relay_port: 25,
            notice_from: "abuse@example.net".into(),
            notice_isp_name: "Example ISP".into(),
            notice_templates: None,
            notice_reply_within: Duration::from_secs(7 * 86_400),
            notice_timeout: Duration::from_secs(30),
            signal_window: secs(signals.window),
            signal_lookback: secs(signals.lookback),
            signal_limit_trips: signals.min_limit_trips,
            signal_refused_sends: signals.min_refused_sends,
            signal_op25b_hits: signals.min_op25b_hits,
            op25b_nft: vec!["nft".into()],
            retention_sessions: Duration::from_secs(183 * 86_400),
            retention_reports: Duration::from_secs(365 * 86_400),
            retention_cases: Duration::from_secs(3 * 365 * 86_400),
        }
    }
}

impl DeskSection {
    /// The desk file: `path`, or `desk.db` beside the main store.
    pub fn store_path(&self, store: &StoreConfig) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| store.path.with_file_name("desk.db"))
    }

    /// The retention `abuse purge` applies, in seconds.
    pub fn retention(&self) -> spamgate_desk::store::Retention {
        let secs = |d: Duration| d.as_secs().min(i64::MAX as u64) as i64;
        spamgate_desk::store::Retention {
            sessions: secs(self.retention_sessions),
            reports: secs(self.retention_reports),
            cases: secs(self.retention_cases),
        }
    }

    /// The application layer's desk settings.
    pub fn settings(&self) -> Result<spamgate_app::desk::DeskSettings, ConfigError> {
        use spamgate_desk::{attribution::AttributionPolicy, case::FoldPolicy};
        let zone = spamgate_desk::time::FixedOffset::parse(&self.time_zone).ok_or_else(|| {
            ConfigError::invalid(
                "desk.time_zone",
                &self.time_zone,
                "expected an offset such as +09:00, Z, or Asia/Tokyo",
            )
        })?;
        if self.hook_attempts == 0 {
            return Err(ConfigError::invalid(
                "desk.hook_attempts",
                "0",
                "must be positive",
            ));
        }
        if !self.notice_relay_host.is_empty() && !looks_like_mailbox(&self.notice_from) {
            return Err(ConfigError::invalid(
                "desk.notice_from",
                &self.notice_from,
                "expected an address such as abuse@example.net",
            ));
        }
        if self.op25b_nft.is_empty() || self.op25b_nft[0].trim().is_empty() {
            return Err(ConfigError::invalid(
                "desk.op25b_nft",
                "[]",
                "name the nft command, e.g. [\"nft\"]",
            ));
        }
        for (key, value) in [
            ("desk.retention_sessions", self.retention_sessions),
            ("desk.retention_reports", self.retention_reports),
            ("desk.retention_cases", self.retention_cases),
        ] {
            if value < Duration::from_secs(86_400) {
                return Err(ConfigError::invalid(
                    key,
                    &humantime::format_duration(value).to_string(),
                    "must be at least 1day",
                ));
            }
        }
        if self.signal_window < Duration::from_secs(60) {
            return Err(ConfigError::invalid(
                "desk.signal_window",
                &crate::display::duration(self.signal_window),
                "must be at least 1m",
            ));
        }
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let config = spamgate_desk::desk::DeskConfig {
            parse: spamgate_desk::report::ParseOptions {
                default_zone: zone,
                ..Default::default()
            },
            attribution: AttributionPolicy {
                skew: secs(self.clock_skew),
                lost_stop_grace: secs(self.lost_stop_grace),
            },
            fold: FoldPolicy {
                window: secs(self.case_window),
            },
            escalation: spamgate_desk::ladder::EscalationPolicy {
                warn_on_first: self.warn_on_first,
                suspend_after: self.suspend_after,
                suspension_window: secs(self.suspension_window),
                suspension_requires_approval: self.suspension_requires_approval,
                overload_emergency: self.overload_emergency,
                propose_termination_after: self.propose_termination_after,
                strike_ttl: secs(self.strike_ttl),
            },
        };
        Ok(spamgate_app::desk::DeskSettings {
            config,
            zone,
            hook: spamgate_app::desk::HookSettings {
                command: self.hook_command.clone(),
                timeout: self.hook_timeout,
                retry: spamgate_desk::store::RetryPolicy {
                    first_delay: secs(self.hook_first_retry).max(1),
                    max_delay: secs(self.hook_max_retry).max(1),
                    max_attempts: self.hook_attempts,
                },
            },
            notice: spamgate_app::desk::NoticeSettings {
                relay_host: self.notice_relay_host.clone(),
                relay_port: self.notice_relay_port,
                from: self.notice_from.clone(),
                isp_name: self.notice_isp_name.clone(),
                templates: self.notice_templates.clone(),
                reply_within: secs(self.notice_reply_within),
                timeout: self.notice_timeout,
            },
            signals: spamgate_app::desk::SignalPolicy {
                window: secs(self.signal_window),
                lookback: secs(self.signal_lookback),
                min_limit_trips: self.signal_limit_trips,
                min_refused_sends: self.signal_refused_sends,
                min_op25b_hits: self.signal_op25b_hits,
            },
            // Filled from [op25b] by the caller (`Config::desk_settings`).
            op25b: None,
        })
    }
}

/// `local@domain` or `Name <local@domain>`: enough to refuse a typo at load, not a parser.
fn looks_like_mailbox(text: &str) -> bool {
    let address = match text.rsplit_once('<') {
        Some((_, rest)) => rest.trim_end().trim_end_matches('>'),
        None => text.trim(),
    };
    matches!(address.rsplit_once('@'), Some((local, domain)) if !local.is_empty() && domain.contains('.') && !address.contains(char::is_whitespace))
}

/// The annotated example configuration (`spamgate config example`). A test checks that it
/// parses and equals the built-in defaults, so it cannot drift.
pub const EXAMPLE: &str = include_str!("../../../dist/spamgate.example.toml");
