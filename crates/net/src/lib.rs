//! Listeners and connections, for any front-end: bind, accept, the connection limit
//! with eviction of the longest-idle connection, and the drain at shutdown. What a
//! connection says is the front-end's business ([`Handler`]).
#![forbid(unsafe_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A front-end's side of a connection.
pub trait Handler: Send + Sync + 'static {
    /// Serves one connection until it closes. `slot` tells the listener when the
    /// connection is idle (so it may be evicted) and when it must close.
    fn serve(&self, connection: Connection, slot: &IdleSlot) -> impl Future<Output = ()> + Send;

    fn connection_opened(&self) {}
    fn connection_closed(&self) {}
    /// A connection closed at once because the limit was reached.
    fn connection_refused(&self) {}
}

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, SocketFile),
}

impl Listener {
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "tcp:?".into(), |a| a.to_string()),
            Listener::Unix(_, file) => format!("unix:{}", file.path.display()),
        }
    }

    /// The socket file this listener made, if it is a UNIX socket.
    pub fn socket_file(&self) -> Option<SocketFile> {
        match self {
            Listener::Unix(_, file) => Some(file.clone()),
            Listener::Tcp(_) => None,
        }
    }
}

/// A UNIX socket file as this process created it (path, device and inode), so that at
/// exit it removes its own socket and never one another process has put there since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketFile {
    pub path: PathBuf,
    identity: (u64, u64),
}

impl SocketFile {
    fn of(path: &Path) -> std::io::Result<SocketFile> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: path.to_path_buf(),
            identity: (meta.dev(), meta.ino()),
        })
    }

    /// Removes the file if it is still the one this process bound.
    pub fn remove_if_ours(&self) {
        if SocketFile::of(&self.path).is_ok_and(|now| now == *self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Bind every configured listener (all or nothing).
pub async fn bind(addrs: &[ListenAddr], unix_mode: u32) -> anyhow::Result<Vec<Listener>> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let listener = match addr {
            ListenAddr::Tcp(a) => Listener::Tcp(
                TcpListener::bind(a)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {a}: {e}"))?,
            ),
            ListenAddr::Unix(path) => {
                let listener = bind_unix(path, unix_mode)?;
                let file = SocketFile::of(path)
                    .map_err(|e| anyhow::anyhow!("cannot stat {}: {e}", path.display()))?;
                Listener::Unix(listener, file)
            }
        };
        listeners.push(listener);
    }
    Ok(listeners)
}

fn bind_unix(path: &Path, mode: u32) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    // A socket left by a previous run would make bind fail: remove it, but only when it is
    // a socket nobody answers on; a live one belongs to a running daemon.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => anyhow::bail!(
                    "{} is in use: another process (a running spamgate?) listens on it; \
                     stop it first or use another path",
                    path.display()
                ),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(e) => anyhow::bail!("cannot tell whether {} is in use: {e}", path.display()),
            }
            std::fs::remove_file(path).map_err(|e| {
                anyhow::anyhow!("cannot remove stale socket {}: {e}", path.display())
            })?;
        } else {
            anyhow::bail!("{} exists and is not a socket", path.display());
        }
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("cannot listen on unix:{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| anyhow::anyhow!("cannot chmod {}: {e}", path.display()))?;
    Ok(listener)
}

/// Serve until `shutdown` turns true, then stop accepting, let connections finish their
/// current request (bounded by `grace`), and return.
pub async fn run<H: Handler>(
    handler: Arc<H>,
    listeners: Vec<Listener>,
    max_connections: usize,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let idle = Arc::new(IdleRegistry::default());
    let mut connections = JoinSet::new();
    let mut acceptors = JoinSet::new();
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel::<Connection>(64);
    for listener in listeners {
        info!("listening on {}", listener.describe());
        acceptors.spawn(accept_loop(listener, conn_tx.clone(), shutdown.clone()));
    }
    drop(conn_tx);

    loop {
        tokio::select! {
            biased;
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() { break; }
            }
            next = conn_rx.recv() => {
                let Some(conn) = next else { break };
                let Some(permit) = admit(&permits, &idle).await else {
                    handler.connection_refused();
                    warn!(peer = %conn.peer, limit = max_connections,
                          "connection limit reached and no connection freed within {OVERLOAD_WAIT:?}; closing new connection");
                    continue;
                };
                let handler = handler.clone();
                let idle = idle.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    handler.connection_opened();
                    let slot = IdleSlot::new(idle);
                    handler.serve(conn, &slot).await;
                    handler.connection_closed();
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    acceptors.abort_all();
    info!(
        open = connections.len(),
        "shutting down: finishing in-flight requests"
    );
    idle.close_all();
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            open = connections.len(),
            "grace period over; closing remaining connections"
        );
        connections.abort_all();
    }
}

/// How long a new connection may wait for a place when every connection is busy: it
/// is queued rather than dropped (Postfix waits `smtpd_policy_service_timeout`, 100 s by
/// default, for an answer).
pub const OVERLOAD_WAIT: Duration = Duration::from_secs(30);

/// How often a queued connection looks again for an idle one to evict.
const EVICTION_RETRY: Duration = Duration::from_millis(20);

/// A place for a new connection: a free one; else the longest-idle connection is told
/// to close; else the connection waits (queued, in arrival order) for a place, up to
/// [`OVERLOAD_WAIT`]. `None` when none came.
async fn admit(
    permits: &Arc<Semaphore>,
    idle: &IdleRegistry,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let deadline = Instant::now() + OVERLOAD_WAIT;
    loop {
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        // An evicted connection closes at once; the retry picks up its place.
        idle.evict_oldest();
        let wait = EVICTION_RETRY.min(deadline.saturating_duration_since(Instant::now()));
        if wait.is_zero() {
            return None;
        }
        if let Ok(Ok(permit)) = tokio::time::timeout(wait, permits.clone().acquire_owned()).await {
            return Some(permit);
        }
    }
}

/// Connections waiting idle between requests. Becoming idle or busy is one atomic
/// operation on the connection's own slot (twice per request); only opening, closing and
/// eviction take the lock.
struct IdleRegistry {
    slots: std::sync::Mutex<std::collections::HashMap<u64, Arc<SlotState>>>,
    next_id: std::sync::atomic::AtomicU64,
    /// Idle times are counted from here.
    epoch: Instant,
    /// Shutting down: every connection closes when (or as soon as) it is idle.
    closing: std::sync::atomic::AtomicBool,
}

impl Default for IdleRegistry {
    fn default() -> Self {
        IdleRegistry {
            slots: std::sync::Mutex::default(),
            next_id: std::sync::atomic::AtomicU64::new(0),
            epoch: Instant::now(),
            closing: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

struct SlotState {
    /// Nanoseconds after the registry's epoch, plus one, at which the connection became
    /// idle; 0 while it is busy.
    idle_since: std::sync::atomic::AtomicU64,
    evict: tokio::sync::Notify,
}

impl IdleRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Arc<SlotState>>> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Shutdown: tells every connection to close once idle. A connection registered
    /// after this sees `closing` before it first waits.
    fn close_all(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for slot in self.lock().values() {
            slot.evict.notify_one();
        }
    }

    /// Signal the longest-idle connection to close; false if none is idle.
    fn evict_oldest(&self) -> bool {
        use std::sync::atomic::Ordering;
        let slots = self.lock();
        loop {
            // Oldest first; the older connection (lower id) on a tie.
            let Some((since, _, slot)) = slots
                .iter()
                .map(|(id, slot)| (slot.idle_since.load(Ordering::Acquire), *id, slot))
                .filter(|(since, _, _)| *since != 0)
                .min_by_key(|(since, id, _)| (*since, *id))
            else {
                return false;
            };
            // Claim it unless it went busy (or idle anew) meanwhile; then look again.
            if slot
                .idle_since
                .compare_exchange(since, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                slot.evict.notify_one();
                return true;
            }
        }
    }
}

/// One connection's entry in the connection registry: the connection marks itself
/// idle between requests and busy while it works on one.
pub struct IdleSlot {
    registry: Arc<IdleRegistry>,
    id: u64,
    state: Arc<SlotState>,
}

impl IdleSlot {
    fn new(registry: Arc<IdleRegistry>) -> IdleSlot {
        use std::sync::atomic::Ordering;
        let id = registry.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let state = Arc::new(SlotState {
            idle_since: std::sync::atomic::AtomicU64::new(0),
            evict: tokio::sync::Notify::new(),
        });
        registry.lock().insert(id, state.clone());
        IdleSlot {
            registry,
            id,
            state,
        }
    }

    /// Marks the connection idle, keeping the time it first became idle.
    pub fn set_idle(&self) {
        use std::sync::atomic::Ordering;
        if self.state.idle_since.load(Ordering::Relaxed) != 0 {
            return;
        }
        let nanos = Instant::now()
            .saturating_duration_since(self.registry.epoch)
            .as_nanos();
        let since = u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1;
        let _ =
            self.state
                .idle_since
                .compare_exchange(0, since, Ordering::AcqRel, Ordering::Relaxed);
    }

    pub fn set_busy(&self) {
        self.state
            .idle_since
            .store(0, std::sync::atomic::Ordering::Release);
    }

    /// Completes when the connection must close once idle: evicted, or shutdown
    /// (see [`IdleSlot::closing`]).
    pub fn evicted(&self) -> tokio::sync::futures::Notified<'_> {
        self.state.evict.notified()
    }

    pub fn closing(&self) -> bool {
        self.registry
            .closing
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for IdleSlot {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

/// An accepted connection.
pub struct Connection {
    pub io: Box<dyn Io>,
    /// `ADDRESS:PORT`, or `unix:PATH` for a UNIX socket.
    pub peer: String,
}

/// A connection's byte stream.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn accept_loop(
    listener: Listener,
    tx: tokio::sync::mpsc::Sender<Connection>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = accept(&listener) => accepted,
        };
        match accepted {
            Ok(conn) => {
                if tx.send(conn).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(listener = %listener.describe(), "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn accept(listener: &Listener) -> std::io::Result<Connection> {
    Ok(match listener {
        Listener::Tcp(l) => {
            let (stream, peer) = l.accept().await?;
            let _ = stream.set_nodelay(true);
            Connection {
                io: Box::new(stream),
                peer: peer.to_string(),
            }
        }
        Listener::Unix(l, path) => {
            let (stream, _) = l.accept().await?;
            Connection {
                io: Box::new(stream),
                peer: format!("unix:{}", path.path.display()),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt as _;

    fn evicted(slot: &IdleSlot) -> bool {
        slot.evicted().now_or_never().is_some()
    }

    /// So that the next `set_idle` gets a later time than the previous one.
    fn tick() {
        let start = Instant::now();
        while Instant::now() == start {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn the_longest_idle_connection_is_evicted_first_and_only_once() {
        let registry = Arc::new(IdleRegistry::default());
        let first = IdleSlot::new(registry.clone());
        let second = IdleSlot::new(registry.clone());
        let busy = IdleSlot::new(registry.clone());
        // The newer connection has been idle longer.
        second.set_idle();
        tick();
        first.set_idle();
        tick();
        // Staying idle keeps the first idle time.
        second.set_idle();
        busy.set_idle();
        busy.set_busy();

        assert!(registry.evict_oldest());
        assert!(evicted(&second), "idle longest");
        assert!(!evicted(&first));
        assert!(registry.evict_oldest());
        assert!(evicted(&first));
        assert!(!evicted(&busy), "a busy connection is never evicted");
        assert!(!registry.evict_oldest(), "nobody idle any more");
    }

    #[test]
    fn a_closed_connection_leaves_the_registry() {
        let registry = Arc::new(IdleRegistry::default());
        let slot = IdleSlot::new(registry.clone());
        slot.set_idle();
        drop(slot);
        assert!(!registry.evict_oldest());
        assert!(registry.lock().is_empty());
    }
}
