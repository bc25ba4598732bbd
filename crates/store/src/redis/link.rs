//! The connection to the Redis master: one reconnecting multiplexed connection, and
//! with Sentinel, a watcher that follows failovers.
//!
//! [`ConnectionManager`] reconnects to the address it was built with. After a Sentinel
//! failover that address is dead (or comes back as a read-only replica), so errors that
//! smell of a failover make the link ask the sentinels for the master again and, if it
//! moved, swap in a manager for the new address. Requests in flight fail (the daemon
//! applies its fail mode); later ones go to the new master.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{
    Client, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisError, RedisResult, ServerErrorKind,
};

use super::RedisOptions;

/// How long a sentinel query may take before the watcher gives up this round.
const SENTINEL_QUERY_BOUND: Duration = Duration::from_secs(2);
/// The least time between two sentinel queries, so an outage does not flood them.
const SENTINEL_QUERY_PAUSE: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub(crate) struct Link(Arc<Inner>);

struct Inner {
    manager: Mutex<ConnectionManager>,
    config: ConnectionManagerConfig,
    sentinel: Option<Watcher>,
}

struct Watcher {
    sentinel: tokio::sync::Mutex<Sentinel>,
    master_name: String,
    node: SentinelNodeConnectionInfo,
    master: Mutex<ConnectionAddr>,
    /// A query is running or pausing: later failures do not start another one.
    busy: AtomicBool,
}

impl Link {
    /// Connects (to the master the sentinels name, with Sentinel) and checks that the
    /// server answers, all within `options.timeout`.
    pub(crate) async fn connect(options: &RedisOptions) -> RedisResult<Link> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            // A failed reconnect ends the attempt quickly; the next request starts a new
            // one, so recovery follows traffic instead of a long backoff.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let info = options.url.as_str().into_connection_info()?;
        let (client, sentinel) = match &options.sentinel {
            None => (Client::open(info)?, None),
            Some(sentinel_options) => {
                let mut sentinel = Sentinel::build(sentinel_options.addresses.clone())?;
                let node = SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(info.redis_settings().clone());
                let client = bounded(
                    options.timeout,
                    sentinel.async_master_for(&sentinel_options.master_name, Some(&node)),
                )
                .await?;
                let watcher = Watcher {
                    sentinel: tokio::sync::Mutex::new(sentinel),
                    master_name: sentinel_options.master_name.clone(),
                    node,
                    master: Mutex::new(client.get_connection_info().addr().clone()),
                    busy: AtomicBool::new(false),
                };
                (client, Some(watcher))
            }
        };
        let addr = client.get_connection_info().addr().to_string();
        let mut manager = bounded(
            options.timeout,
            ConnectionManager::new_with_config(client, config.clone()),
        )
        .await?;
        bounded(options.timeout, redis::cmd("PING").exec_async(&mut manager)).await?;
        tracing::info!(%addr, sentinel = sentinel.is_some(), "redis store connected");
        Ok(Link(Arc::new(Inner {
            manager: Mutex::new(manager),
            config,
            sentinel,
        })))
    }

    /// A handle on the current connection (cheap: the connection is shared).
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.0
            .manager
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reports a failed command. With Sentinel, failures that a failover causes start
    /// a (single, background) check of where the master is now.
    pub(crate) fn failed(&self, error: &RedisError) {
        let Some(watcher) = &self.0.sentinel else {
            return;
        };
        if !suggests_failover(error) || watcher.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = Arc::clone(&self.0);
        tokio::spawn(async move {
            follow_master(&inner).await;
            tokio::time::sleep(SENTINEL_QUERY_PAUSE).await;
            if let Some(watcher) = &inner.sentinel {
                watcher.busy.store(false, Ordering::Release);
            }
        });
    }
}

/// Also a timeout is one: a master that vanished without closing its sockets shows as
/// requests timing out.
pub(crate) fn suggests_failover(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
}

async fn follow_master(inner: &Inner) {
    let Some(watcher) = &inner.sentinel else {
        return;
    };
    let found = {
        let mut sentinel = watcher.sentinel.lock().await;
        bounded(
            SENTINEL_QUERY_BOUND,
            sentinel.async_master_for(&watcher.master_name, Some(&watcher.node)),
        )
        .await
    };
    let client = match found {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(%error, master = %watcher.master_name, "sentinels name no usable master");
            return;
        }
    };
    let addr = client.get_connection_info().addr().clone();
    {
        let mut master = watcher
            .master
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *master == addr {
            return;
        }
        tracing::warn!(from = %*master, to = %addr, "redis master moved; following it");
        *master = addr;
    }
    // Lazy: the first request connects, so a master that fails again at once costs no
    // wait here.
    match ConnectionManager::new_lazy_with_config(client, inner.config.clone()) {
        Ok(manager) => {
            *inner.manager.lock().unwrap_or_else(PoisonError::into_inner) = manager;
        }
        Err(error) => tracing::warn!(%error, "cannot set up the connection to the new master"),
    }
}

async fn bounded<T>(
    limit: Duration,
    future: impl Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result,
        Err(_) => Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {limit:?}"),
        ))),
    }
}
