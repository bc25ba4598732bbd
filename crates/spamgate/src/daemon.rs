//! `spamgate serve`: load config, open the store, bind, serve, reload on SIGHUP, drain on
//! SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use spamgate_dns::Dns;
use spamgate_store::{
    AnyStore, FullStore, RedisOptions, RedisStore, SentinelOptions, SqliteOptions, SqliteStore,
};

use crate::config::StoreBackend;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::server::{self, ConnectionLimits};
use crate::service::{Backend, Policy, Service, SystemClock};

/// Exit codes (sysexits.h), so service managers and scripts can tell failures apart.
pub mod exit {
    /// Bad command line or configuration.
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

/// Run the daemon until SIGTERM/SIGINT.
pub async fn serve(config_path: Option<PathBuf>, config: Config) -> Result<(), Fatal> {
    let policy = Policy::from_config(&config).map_err(|e| Fatal::new(exit::CONFIG, e))?;
    let dns = build_dns(&config)?;
    let store = open_store(&config).await?;
    info!(store = %store.describe(), "store open");
    let addrs = config
        .server
        .listen_addrs()
        .map_err(|e| Fatal::new(exit::CONFIG, e))?;
    let mode = config
        .server
        .unix_mode_bits()
        .map_err(|e| Fatal::new(exit::CONFIG, e))?;
    let listeners = server::bind(&addrs, mode)
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

    // Written once the listeners are bound, so `spamgate reload` never signals a
    // process that could still fail to start.
    let pid_file = match &config.server.pid_file {
        Some(path) => Some(PidFile::write(path).map_err(|e| Fatal::new(exit::OS, e))?),
        None => None,
    };
    let service = Arc::new(Service::new(policy, store, dns, SystemClock));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
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
    let signals = tokio::spawn(signal_loop(
        service.clone(),
        config_path,
        config.clone(),
        shutdown_tx,
    ));

    let limits = ConnectionLimits::from_config(&config.server);
    server::run(
        service.clone(),
        listeners,
        limits,
        shutdown_rx,
        config.server.shutdown_grace,
    )
    .await;
    for addr in &addrs {
        if let crate::config::ListenAddr::Unix(path) = addr {
            let _ = std::fs::remove_file(path);
        }
    }
    signals.abort();
    let _ = signals.await;
    let _ = cleanup.await;
    let _ = allow.await;
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

async fn cleanup_loop<S: FullStore, R: crate::service::Resolver, C: crate::service::Clock>(
    service: Arc<Service<S, R, C>>,
    every: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = service.now();
        match service.store().expire(now).await {
            Ok(0) => {}
            Ok(n) => info!(removed = n, "expired greylist entries removed"),
            Err(e) => warn!("store cleanup failed: {e}"),
        }
        match service.store().counts(now).await {
            Ok(c) => service
                .metrics()
                .greylist_counts(c.pending, c.passed, c.awl),
            Err(e) => warn!("store counts failed: {e}"),
        }
    }
}

/// How often the runtime allow-list's generation is checked (one cheap read).
pub const ALLOW_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// Keep the runtime allow-list (`spamgate allow add`) current: entries added on any MX
/// host sharing the store apply within [`ALLOW_REFRESH`].
pub async fn allow_refresh_loop<
    S: Backend,
    R: crate::service::Resolver,
    C: crate::service::Clock,
>(
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

async fn signal_loop<S: Backend, R: crate::service::Resolver, C: crate::service::Clock>(
    service: Arc<Service<S, R, C>>,
    config_path: Option<PathBuf>,
    mut current: Config,
    shutdown: watch::Sender<bool>,
) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        error!("cannot install signal handlers");
        return;
    };
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
fn reload<S: Backend, R: crate::service::Resolver, C: crate::service::Clock>(
    service: &Service<S, R, C>,
    path: Option<&Path>,
    current: &Config,
) -> Option<Config> {
    let Some(path) = path else {
        info!("SIGHUP: running on built-in defaults, nothing to reload");
        return None;
    };
    let loaded = Config::load(path).and_then(|next| Policy::from_config(&next).map(|p| (next, p)));
    let (next, policy) = match loaded {
        Ok(pair) => pair,
        Err(e) => {
            service.metrics().reload(false);
            error!("SIGHUP: new configuration rejected, keeping the running one: {e}");
            return None;
        }
    };
    for (what, changed) in [
        ("server", next.server != current.server),
        ("store", next.store != current.store),
        (
            "dns",
            next.dns.nameservers != current.dns.nameservers
                || next.dns.timeout != current.dns.timeout,
        ),
    ] {
        if changed {
            warn!("SIGHUP: changes to [{what}] take effect after a restart");
        }
    }
    service.replace_policy(policy);
    service.metrics().reload(true);
    info!(path = %path.display(), "SIGHUP: configuration reloaded");
    Some(next)
}
