//! `spamgate serve`: load config, open the store, bind, serve, reload on SIGHUP, drain on
//! SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use spamgate_dns::Dns;
use spamgate_store::{
    AnyStore, FullStore, Recovering, RedisOptions, RedisStore, SentinelOptions, SqliteOptions,
    SqliteStore, StoreError,
};

use crate::config::StoreBackend;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{error, info, warn};

use spamgate_app::{Backend, Clock, Resolver, Service, SystemClock};
use spamgate_postfix::{ConnectionLimits, PostfixFrontEnd};

use crate::config::Config;

/// Exit codes (sysexits.h), so service managers and scripts can tell failures apart.
pub mod exit {
    /// A command used wrongly: a missing argument, a name that is not there (EX_USAGE).
    pub const USAGE: i32 = 64;
    /// An invalid configuration (EX_CONFIG).
    pub const CONFIG: i32 = 78;
    /// The store cannot be opened (path, permissions, disk, newer schema).
    pub const STORE: i32 = 74;
    /// A listener cannot be bound, or another OS-level failure.
    pub const OS: i32 = 71;
}

/// A failure that maps to an exit code.
#[derive(Debug)]
pub struct Fatal {
    pub code: i32,
    pub error: anyhow::Error,
}

impl Fatal {
    fn new(code: i32, error: impl Into<anyhow::Error>) -> Fatal {
        Fatal {
            code,
            error: error.into(),
        }
    }
}

/// Open the configured store: the SQLite file (its directory created when missing) or
/// Redis.
pub async fn open_store(config: &Config) -> Result<AnyStore, Fatal> {
    match config.store.backend {
        StoreBackend::Sqlite => {
            open_sqlite(&config.store.path, config.store.durability_window).map(AnyStore::Sqlite)
        }
        StoreBackend::Redis => {
            let options = redis_options(config);
            RedisStore::connect(&options)
                .await
                .map(AnyStore::Redis)
                .map_err(|e| Fatal::new(exit::STORE, e))
        }
    }
}

/// The store for `serve`. A store that cannot be created at all (a bad path, no
/// permission, a file of a newer spamgate, a medium without WAL) stops the daemon with
/// exit 74 and the reason; one that is only down (Redis unreachable, a damaged SQLite
/// file) does not: the daemon starts, requests get `store.fail_mode`, and
/// [`reopen_loop`] retries in the background.
pub async fn open_for_serving(config: &Config) -> Result<Recovering, Fatal> {
    match open_store(config).await {
        Ok(store) => Ok(Recovering::ready(store)),
        Err(fatal) if retryable(&fatal) => {
            let error = format!("{:#}", fatal.error);
            warn!(
                fail_mode = ?config.store.fail_mode,
                "store unavailable at start, serving in the fail mode and retrying: {error}"
            );
            Ok(Recovering::unavailable(error))
        }
        Err(fatal) => Err(fatal),
    }
}

/// Whether an opening failure may pass by itself (a server down, a file being repaired).
fn retryable(fatal: &Fatal) -> bool {
    matches!(
        fatal.error.downcast_ref::<StoreError>(),
        Some(StoreError::Redis(_) | StoreError::Setup { .. } | StoreError::Sqlite(_))
    )
}

/// Until the store opens: try again, 1 s after the start and then at most every 30 s,
/// logging each failure's reason once it changes and counting every attempt.
pub async fn reopen_loop(
    store: Recovering,
    config: Config,
    metrics: Arc<spamgate_app::metrics::Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    if store.is_ready() {
        metrics.store_open(true);
        return;
    }
    metrics.store_open(false);
    let mut wait = Duration::from_secs(1);
    let mut last_error = String::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        match open_store(&config).await {
            Ok(opened) => {
                info!(store = %opened.describe(), "store open: serving normally again");
                store.install(opened);
                metrics.store_open(true);
                return;
            }
            Err(fatal) => {
                let error = format!("{:#}", fatal.error);
                metrics.store_open(false);
                if error != last_error {
                    warn!("store still unavailable (requests get the fail mode): {error}");
                    store.set_error(error.clone());
                    last_error = error;
                }
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// The `[store]` Redis keys as the Redis backend's options.
pub fn redis_options(config: &Config) -> RedisOptions {
    let store = &config.store;
    RedisOptions {
        url: store.redis_url.clone(),
        sentinel: store
            .redis_sentinel_master
            .as_ref()
            .map(|master| SentinelOptions {
                master_name: master.clone(),
                addresses: store.redis_sentinels.clone(),
            }),
        key_prefix: store.key_prefix.clone(),
        timeout: store.timeout,
        ..RedisOptions::default()
    }
}

/// Open an SQLite store file, creating its directory when missing.
pub fn open_sqlite(path: &Path, durability_window: Duration) -> Result<SqliteStore, Fatal> {
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            Fatal::new(
                exit::STORE,
                anyhow::anyhow!("cannot create store directory {}: {e}", dir.display()),
            )
        })?;
    }
    let options = SqliteOptions {
        durability_window,
        ..SqliteOptions::default()
    };
    SqliteStore::open(path, options).map_err(|e| Fatal::new(exit::STORE, e))
}

pub fn build_dns(config: &Config) -> Result<Dns, Fatal> {
    let dns_config = config
        .dns
        .to_dns_config()
        .map_err(|e| Fatal::new(exit::CONFIG, e))?;
    Dns::new(&dns_config).map_err(|e| Fatal::new(exit::CONFIG, anyhow::anyhow!("dns: {e}")))
}

/// The DNS servers the resolver asks, for the startup line: the configured ones, else
/// the `nameserver` lines of `/etc/resolv.conf` (what the resolver reads then).
fn dns_servers(dns: &crate::config::DnsSection) -> String {
    if !dns.nameservers.is_empty() {
        return dns.nameservers.join(",");
    }
    let system = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let servers: Vec<&str> = system
        .lines()
        .filter_map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                ["nameserver", server, ..] => Some(server),
                _ => None,
            },
        )
        .collect();
    format!("system:{}", servers.join(","))
}

/// Run the daemon until SIGTERM/SIGINT.
pub async fn serve(config_path: Option<PathBuf>, config: Config) -> Result<(), Fatal> {
    let settings = config.settings().map_err(|e| Fatal::new(exit::CONFIG, e))?;
    let open_files = raise_open_files_limit();
    // The admin listener's connections come out of the same open-files limit.
    let admin_files = if config.admin.listen.is_some() {
        config.admin.max_connections as u64
    } else {
        0
    };
    let reserve = config.dns.max_in_flight as u64 + RESERVED_FILES + admin_files;
    let server = crate::config::ServerConfig {
        max_connections: config
            .server
            .max_connections
            .or(Some(derived_max_connections(open_files, reserve))),
        ..config.server.clone()
    };
    info!(open_files, "open-files limit");
    let dns = build_dns(&config)?;
    let store = open_for_serving(&config).await?;
    if store.is_ready() {
        info!(store = %store.describe(), "store open");
    }
    let addrs = config
        .server
        .listen_addrs()
        .map_err(|e| Fatal::new(exit::CONFIG, e))?;
    let mode = config
        .server
        .unix_mode_bits()
        .map_err(|e| Fatal::new(exit::CONFIG, e))?;
    let listeners = spamgate_net::bind(&addrs, mode)
        .await
        .map_err(|e| Fatal::new(exit::OS, e))?;

    let metrics_listener = match config
        .metrics
        .listen_addr()
        .map_err(|e| Fatal::new(exit::CONFIG, e))?
    {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Fatal::new(
                exit::OS,
                anyhow::anyhow!("cannot listen on {addr} (metrics): {e}"),
            )
        })?),
        None => None,
    };

    let admin_listener = crate::admin::bind(&config).await?;

    // Installed before anything tells the world we run (the log line, the pid file):
    // SIGHUP's default action ends the process, so a reload (logrotate, `spamgate
    // reload`) sent right after start must find the handler already there.
    let handlers = Signals::install().map_err(|e| Fatal::new(exit::OS, e))?;
    let listen: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    info!(
        version = %env!("CARGO_PKG_VERSION"),
        // "none": the built-in defaults.
        config = %config_path.as_ref().map_or("none".into(), |p| p.display().to_string()),
        store = %config.store.describe(),
        listen = %listen.join(","),
        dns = %dns_servers(&config.dns),
        "spamgate starting"
    );
    // Written once the listeners are bound, so `spamgate reload` never signals a
    // process that could still fail to start.
    let pid_file = match &config.server.pid_file {
        Some(path) => Some(PidFile::write(path).map_err(|e| Fatal::new(exit::OS, e))?),
        None => None,
    };
    let service = Arc::new(Service::new(settings, store, dns, SystemClock));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let admin = match admin_listener {
        Some(bound) => {
            let state = crate::admin::state(&config, service.clone())?;
            Some(tokio::spawn(crate::admin::serve(
                bound,
                state,
                crate::admin::extra_routes(&config, shutdown_rx.clone()),
                shutdown_rx.clone(),
            )))
        }
        None => None,
    };
    if let Some(listener) = metrics_listener {
        tokio::spawn(crate::http::serve(
            listener,
            service.metrics().clone(),
            shutdown_rx.clone(),
        ));
    }

    let cleanup = tokio::spawn(cleanup_loop(
        service.clone(),
        config.store.cleanup_interval,
        shutdown_rx.clone(),
    ));
    let allow = tokio::spawn(allow_refresh_loop(service.clone(), shutdown_rx.clone()));
    let reopen = tokio::spawn(reopen_loop(
        service.store().clone(),
        config.clone(),
        service.metrics().clone(),
        shutdown_rx.clone(),
    ));
    let signals = tokio::spawn(signal_loop(
        handlers,
        service.clone(),
        config_path,
        config.clone(),
        shutdown_tx,
    ));

    let socket_files: Vec<_> = listeners.iter().filter_map(|l| l.socket_file()).collect();
    serve_postfix(service.clone(), listeners, &server, shutdown_rx).await;
    for file in &socket_files {
        file.remove_if_ours();
    }
    signals.abort();
    let _ = signals.await;
    let _ = cleanup.await;
    let _ = allow.await;
    let _ = reopen.await;
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    // Let the store commit what it has before the process ends.
    match Arc::try_unwrap(service) {
        Ok(service) => service.into_store().close().await,
        Err(_) => warn!("store still shared at exit; relying on SQLite's own durability"),
    }
    drop(pid_file);
    info!("stopped");
    Ok(())
}

/// The process id in a file while the daemon runs.
/// Serves Postfix's policy connections on `listeners` with `[server]`'s limits until
/// `shutdown`, then drains them.
pub async fn serve_postfix<S: Backend, R: Resolver, C: Clock>(
    service: Arc<Service<S, R, C>>,
    listeners: Vec<spamgate_net::Listener>,
    server: &crate::config::ServerConfig,
    shutdown: watch::Receiver<bool>,
) {
    let front_end = Arc::new(PostfixFrontEnd::new(service, connection_limits(server)));
    let max_connections = server
        .max_connections
        .unwrap_or_else(|| derived_max_connections(open_files_limit(), DEFAULT_RESERVE));
    info!(max_connections, "connection limit");
    spamgate_net::run(
        front_end,
        listeners,
        max_connections,
        shutdown,
        server.shutdown_grace,
    )
    .await;
}

/// The keys whose change a reload cannot apply (listeners, the store, the resolver, the
/// metrics listener), as `section.key`, in file order. Everything else in the
/// configuration is swapped in by a reload.
pub fn keys_needing_restart(current: &Config, next: &Config) -> Vec<&'static str> {
    // `section.key` for each listed key whose value differs.
    macro_rules! changed {
        ($($section:ident . $key:ident),* $(,)?) => {
            [$((
                concat!(stringify!($section), ".", stringify!($key)),
                current.$section.$key != next.$section.$key,
            )),*]
        };
    }
    let changes = changed![
        server.listen,
        server.unix_mode,
        server.max_connections,
        server.idle_timeout,
        server.request_timeout,
        server.max_line_length,
        server.max_attributes,
        server.max_request_size,
        server.shutdown_grace,
        server.pid_file,
        server.log_format,
        server.log_target,
        server.syslog_path,
        store.backend,
        store.path,
        store.cleanup_interval,
        store.durability_window,
        store.redis_url,
        store.redis_sentinel_master,
        store.redis_sentinels,
        store.key_prefix,
        dns.nameservers,
        dns.timeout,
        dns.attempts,
        dns.cache_size,
        dns.list_cache_size,
        dns.max_in_flight,
        dns.min_ttl,
        dns.max_ttl,
        metrics.listen,
        admin.listen,
        admin.tls_cert,
        admin.tls_key,
        admin.users_path,
        admin.session_ttl,
        admin.login_failures,
        admin.login_window,
        admin.trusted_proxies,
        admin.secure_cookie,
        admin.max_body_size,
        admin.max_connections,
        admin.header_timeout,
        admin.request_timeout,
        admin.idle_timeout,
    ];
    changes
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
}

/// Descriptors kept for everything but policy connections beyond the DNS sockets: the
/// store's files, the metrics listener, logs.
const RESERVED_FILES: u64 = 128;

/// The reserve with the default `dns.max_in_flight` (512).
const DEFAULT_RESERVE: u64 = 512 + RESERVED_FILES;

/// The most connections spamgate derives on its own (about 1 GiB of buffers).
const DERIVED_MAX: u64 = 65_536;

/// `server.max_connections` when unset: the open-files limit less `reserve`
/// (`dns.max_in_flight` + 128), at least 16 and at most 65,536.
pub fn derived_max_connections(open_files: u64, reserve: u64) -> usize {
    let derived = open_files.saturating_sub(reserve).clamp(16, DERIVED_MAX);
    usize::try_from(derived).unwrap_or(usize::MAX)
}

/// Raises the open-files soft limit to the hard limit, as servers do (systemd's default
/// soft limit is 1,024, its hard limit 524,288), and returns the soft limit in force.
pub fn raise_open_files_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            warn!("cannot raise the open-files limit to the hard limit: {e}");
        }
    }
    open_files_limit()
}

/// The open-files soft limit in force (`None`, unlimited, counts as the derived maximum).
fn open_files_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(DERIVED_MAX + DEFAULT_RESERVE)
}

/// The Postfix connections' bounds from `[server]`.
pub fn connection_limits(server: &crate::config::ServerConfig) -> ConnectionLimits {
    ConnectionLimits {
        codec: spamgate_policy::Limits {
            max_line_len: server.max_line_length,
            max_attributes: server.max_attributes,
            max_request_bytes: server.max_request_size,
        },
        idle_timeout: server.idle_timeout,
        request_timeout: server.request_timeout,
    }
}

struct PidFile(PathBuf);

impl PidFile {
    /// Replaces the file atomically (a reader never sees it half written).
    fn write(path: &Path) -> anyhow::Result<PidFile> {
        let temporary = path.with_extension("pid.tmp");
        std::fs::write(&temporary, format!("{}\n", std::process::id()))
            .and_then(|()| std::fs::rename(&temporary, path))
            .map_err(|e| anyhow::anyhow!("cannot write pid file {}: {e}", path.display()))?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    /// Removes the file only while it still names this process: a newer instance may
    /// have taken it over.
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.0)
            .is_ok_and(|text| text.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

async fn cleanup_loop<S: Backend + FullStore, R: Resolver, C: Clock>(
    service: Arc<Service<S, R, C>>,
    every: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let counts = async || match service.store().counts(service.now()).await {
        Ok(c) => service
            .metrics()
            .greylist_counts(c.pending, c.passed, c.awl),
        Err(e) => warn!("store counts failed: {e}"),
    };
    // The entry counts are there from the start, not only after the first cleanup.
    counts().await;
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        match service.store().expire(service.now()).await {
            Ok(0) => {}
            Ok(n) => info!(removed = n, "expired greylist entries removed"),
            Err(e) => warn!("store cleanup failed: {e}"),
        }
        counts().await;
    }
}

/// How often the runtime allow-list's generation is checked (one cheap read).
pub const ALLOW_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// Keep the runtime allow-list (`spamgate allow add`) current: entries added on any MX
/// host sharing the store apply within [`ALLOW_REFRESH`].
pub async fn allow_refresh_loop<S: Backend, R: Resolver, C: Clock>(
    service: Arc<Service<S, R, C>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(ALLOW_REFRESH);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        match service.refresh_runtime_allow().await {
            Ok(changed) => {
                if changed {
                    info!("runtime allow-list loaded");
                }
                failing = false;
            }
            Err(e) if !failing => {
                warn!("cannot read the runtime allow-list (keeping the last one): {e}");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// The signals the daemon answers, their handlers installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        let install = |kind: SignalKind| {
            signal(kind).map_err(|e| anyhow::anyhow!("cannot install signal handlers: {e}"))
        };
        Ok(Signals {
            term: install(SignalKind::terminate())?,
            int: install(SignalKind::interrupt())?,
            hup: install(SignalKind::hangup())?,
        })
    }
}

async fn signal_loop<S: Backend, R: Resolver, C: Clock>(
    handlers: Signals,
    service: Arc<Service<S, R, C>>,
    config_path: Option<PathBuf>,
    mut current: Config,
    shutdown: watch::Sender<bool>,
) {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = handlers;
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { info!("SIGINT: shutting down"); break; }
            _ = hup.recv() => {
                if let Some(next) = reload(&service, config_path.as_deref(), &current) {
                    current = next;
                }
            }
        }
    }
    let _ = shutdown.send(true);
}

/// Re-read the config; on any error keep the running policy and say why.
fn reload<S: Backend, R: Resolver, C: Clock>(
    service: &Service<S, R, C>,
    path: Option<&Path>,
    current: &Config,
) -> Option<Config> {
    let Some(path) = path else {
        info!("SIGHUP: running on built-in defaults, nothing to reload");
        return None;
    };
    let loaded = Config::load(path).and_then(|next| next.settings().map(|s| (next, s)));
    let (next, settings) = match loaded {
        Ok(pair) => pair,
        Err(e) => {
            service.metrics().reload(false);
            error!("SIGHUP: new configuration rejected, keeping the running one: {e}");
            return None;
        }
    };
    let restart = keys_needing_restart(current, &next);
    if !restart.is_empty() {
        warn!(
            keys = %restart.join(", "),
            "SIGHUP: these changes take effect after a restart; the rest is applied"
        );
    }
    if next.log_level != current.log_level {
        match crate::logging::set_level(&next.log_level) {
            Ok(crate::logging::LevelChange::Applied) => {
                info!(log_level = %next.log_level, "SIGHUP: log level applied")
            }
            Ok(crate::logging::LevelChange::OverriddenByEnvironment) => {
                warn!("SIGHUP: log_level changed, but SPAMGATE_LOG is set and stays in force")
            }
            Ok(crate::logging::LevelChange::NotInstalled) => {}
            Err(e) => warn!("SIGHUP: cannot apply log_level {:?}: {e}", next.log_level),
        }
    }
    service.replace_settings(settings);
    service.metrics().reload(true);
    info!(path = %path.display(), "SIGHUP: configuration reloaded");
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_names_exactly_the_keys_it_cannot_apply() {
        let base = Config::default();
        let check = |change: &dyn Fn(&mut Config), want: &[&str]| {
            let mut next = base.clone();
            change(&mut next);
            assert_eq!(keys_needing_restart(&base, &next), want);
        };
        check(&|_| {}, &[]);
        // Applied by a reload: nothing to restart.
        check(&|c| c.log_level = "debug".into(), &[]);
        check(
            &|c| c.server.decide_at = vec!["MAIL".into(), "RCPT".into()],
            &[],
        );
        check(
            &|c| c.store.fail_mode = spamgate_engine::StoreFailMode::Defer,
            &[],
        );
        check(&|c| c.dns.lookup_unknown = !c.dns.lookup_unknown, &[]);
        check(&|c| c.submission.messages_per_hour = 5, &[]);
        check(&|c| c.greylist.min_delay = Duration::from_secs(60), &[]);
        // Not applied: named, and only those.
        check(
            &|c| {
                c.server.listen = vec!["127.0.0.1:10024".into()];
                c.server.decide_at = vec!["MAIL".into()];
                c.dns.nameservers = vec!["127.0.0.1".into()];
            },
            &["server.listen", "dns.nameservers"],
        );
        check(
            &|c| c.store.durability_window = Duration::from_millis(50),
            &["store.durability_window"],
        );
        // The resolver's cache is built once at start: its sizes and TTL clamps too.
        check(
            &|c| {
                c.dns.cache_size = 10;
                c.dns.min_ttl = Duration::from_secs(5);
                c.dns.max_ttl = Duration::from_secs(600);
            },
            &["dns.cache_size", "dns.min_ttl", "dns.max_ttl"],
        );
    }

    #[test]
    fn the_connection_limit_follows_the_open_files_limit() {
        // (open-files limit, reserve, connections)
        for (open_files, reserve, want) in [
            (1_024, DEFAULT_RESERVE, 384),
            (20_000, DEFAULT_RESERVE, 19_360),
            (524_288, DEFAULT_RESERVE, 65_536),
            (256, DEFAULT_RESERVE, 16),
            (4_096, 1_024 + RESERVED_FILES, 2_944),
        ] {
            assert_eq!(
                derived_max_connections(open_files, reserve),
                want,
                "{open_files} files, reserve {reserve}"
            );
        }
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let before = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let now = raise_open_files_limit();
        assert_eq!(Some(now), before.maximum.or(Some(now)));
    }
}
