//! Listeners and connections: bytes in, the codec, the pipeline, bytes out.
//!
//! Every read is bounded in time and size. A malformed request is logged and the
//! connection closed without a reply (Postfix's contract: it retries, then applies
//! `smtpd_policy_service_default_action`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use spamgate_engine::{Envelope, Verdict};
use spamgate_policy::{Limits, PolicyDecoder, PolicyRequest, encode_action};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::{ListenAddr, ServerConfig};
use crate::service::{Backend, Clock, Resolver, Service};

/// Per-connection bounds, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub codec: Limits,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

impl ConnectionLimits {
    pub fn from_config(server: &ServerConfig) -> ConnectionLimits {
        ConnectionLimits {
            codec: Limits {
                max_line_len: server.max_line_length,
                max_attributes: server.max_attributes,
                max_request_bytes: server.max_request_size,
            },
            idle_timeout: server.idle_timeout,
            request_timeout: server.request_timeout,
            max_connections: server.max_connections,
        }
    }
}

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "tcp:?".into(), |a| a.to_string()),
            Listener::Unix(_, path) => format!("unix:{}", path.display()),
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
            ListenAddr::Unix(path) => Listener::Unix(bind_unix(path, unix_mode)?, path.clone()),
        };
        listeners.push(listener);
    }
    Ok(listeners)
}

fn bind_unix(path: &Path, mode: u32) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    // A socket left by a previous run would make bind fail; remove only sockets.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
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
pub async fn run<S: Backend, R: Resolver, C: Clock>(
    service: Arc<Service<S, R, C>>,
    listeners: Vec<Listener>,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
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
                let permit = match permits.clone().try_acquire_owned() {
                    Ok(p) => p,
                    // At the limit, close the connection that has been idle longest to make
                    // room, so a flood of idle connections cannot lock Postfix out.
                    Err(_) if idle.evict_oldest() => {
                        match tokio::time::timeout(EVICTION_WAIT, permits.clone().acquire_owned()).await {
                            Ok(Ok(p)) => p,
                            _ => {
                                service.metrics().connection_refused();
                                warn!(peer = %conn.peer, "connection limit reached; closing new connection");
                                continue;
                            }
                        }
                    }
                    Err(_) => {
                        service.metrics().connection_refused();
                        warn!(peer = %conn.peer, limit = limits.max_connections,
                              "connection limit reached and every connection busy; closing new connection");
                        continue;
                    }
                };
                let service = service.clone();
                let idle = idle.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    let metrics = service.metrics().clone();
                    metrics.connection_opened();
                    let slot = IdleSlot::new(idle);
                    conn.serve(service, limits, &slot).await;
                    metrics.connection_closed();
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

/// How long a new connection waits for an evicted idle connection to give up its slot.
const EVICTION_WAIT: Duration = Duration::from_secs(2);

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

/// One connection's entry in the [`IdleRegistry`].
struct IdleSlot {
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
    fn set_idle(&self) {
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

    fn set_busy(&self) {
        self.state
            .idle_since
            .store(0, std::sync::atomic::Ordering::Release);
    }

    /// Completes when the connection must close once idle: evicted, or shutdown
    /// (see [`IdleSlot::closing`]).
    fn evicted(&self) -> tokio::sync::futures::Notified<'_> {
        self.state.evict.notified()
    }

    fn closing(&self) -> bool {
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

struct Connection {
    io: Box<dyn Io>,
    peer: String,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
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
                peer: format!("unix:{}", path.display()),
            }
        }
    })
}

impl Connection {
    async fn serve<S: Backend, R: Resolver, C: Clock>(
        mut self,
        service: Arc<Service<S, R, C>>,
        limits: ConnectionLimits,
        slot: &IdleSlot,
    ) {
        let mut decoder = PolicyDecoder::new(limits.codec);
        let mut buf = vec![0u8; 8192];
        let mut reply = Vec::with_capacity(256);
        // The action text, rendered in place request after request (no new String each).
        let mut action = String::with_capacity(256);
        let mut request_deadline: Option<Instant> = None;
        // One timer and one close signal for the connection's whole life, moved rather
        // than made anew per request: a later deadline is an atomic update in tokio's
        // timer, where a new timeout per read took the timer's lock twice, and a waiter
        // on a shared shutdown signal locked its list twice per request.
        let timer = tokio::time::sleep_until(Instant::now() + limits.idle_timeout);
        tokio::pin!(timer);
        let close = slot.evicted();
        tokio::pin!(close);
        loop {
            let in_progress = decoder.in_progress();
            if !in_progress && slot.closing() {
                return;
            }
            let deadline = match request_deadline {
                Some(d) if in_progress => d,
                _ => Instant::now() + limits.idle_timeout,
            };
            timer.as_mut().reset(deadline);
            if !in_progress {
                slot.set_idle();
            }
            let read = tokio::select! {
                // An idle connection told to close does not take another request.
                biased;
                () = &mut close, if !in_progress => {
                    debug!(peer = %self.peer, "closing idle connection (evicted to make room, or shutting down)");
                    return;
                }
                read = self.io.read(&mut buf) => Ok(read),
                () = &mut timer => Err(()),
            };
            let n = match read {
                Err(_) => {
                    if in_progress {
                        service.metrics().bad_request("request-timeout");
                        warn!(peer = %self.peer, "request not completed within {:?}; closing", limits.request_timeout);
                    } else {
                        debug!(peer = %self.peer, "idle connection timed out");
                    }
                    return;
                }
                Ok(Err(e)) => {
                    debug!(peer = %self.peer, "read error: {e}");
                    return;
                }
                Ok(Ok(0)) => {
                    if in_progress {
                        service.metrics().bad_request("truncated");
                        warn!(peer = %self.peer, "connection closed in the middle of a request");
                    }
                    return;
                }
                Ok(Ok(n)) => n,
            };
            slot.set_busy();
            if !in_progress {
                request_deadline = Some(Instant::now() + limits.request_timeout);
            }
            let mut input = &buf[..n];
            loop {
                match decoder.decode(&mut input) {
                    Ok(Some(request)) => {
                        reply.clear();
                        action.clear();
                        handle(&service, request, &mut action).await;
                        encode_action(&action, &mut reply);
                        if let Err(e) = self.io.write_all(&reply).await {
                            debug!(peer = %self.peer, "write error: {e}");
                            return;
                        }
                        request_deadline = Some(Instant::now() + limits.request_timeout);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        service.metrics().bad_request("malformed");
                        warn!(peer = %self.peer, "bad policy request: {e}; closing connection without reply");
                        return;
                    }
                }
            }
        }
    }
}

/// Turn a request into an envelope, decide, log, and render the action text into `action`
/// (appended; the caller clears it). The request is taken by value so the envelope can
/// own its strings without copying them.
pub async fn handle<S: Backend, R: Resolver, C: Clock>(
    service: &Service<S, R, C>,
    mut request: PolicyRequest,
    action: &mut String,
) {
    let Some(client_address) = request.client_address else {
        warn!(
            queue_id = request.queue_id.as_deref().unwrap_or(""),
            raw = request.client_address_raw().unwrap_or(""),
            "request without a usable client_address; answering DUNNO"
        );
        action.push_str("DUNNO");
        return;
    };
    let started = Instant::now();
    let envelope = take_envelope(&mut request, client_address);
    let state = request
        .protocol_state
        .as_ref()
        .map_or("RCPT", |s| s.as_str());
    let sasl_username = request.sasl_username.as_deref();
    let verdict = if service.is_submission(sasl_username, request.server_port) {
        let recipients = request
            .recipient_count
            .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX));
        service
            .decide_submission(
                sasl_username,
                request.server_port,
                state,
                recipients,
                envelope.client_address,
                true,
            )
            .await
    } else {
        service.decide(&envelope, state, true).await
    };
    service.metrics().decision(&verdict, started.elapsed());
    service
        .policy()
        .replies
        .render_into(&verdict, &envelope, action);
    log_decision(&request, &envelope, state, &verdict, action);
}

/// The envelope of a request, copying its strings.
pub fn envelope_of(request: &PolicyRequest, client_address: std::net::IpAddr) -> Envelope {
    Envelope {
        // An IPv4-mapped IPv6 address is the IPv4 client (lists, networks, allow-lists).
        client_address: client_address.to_canonical(),
        client_name: request.verified_client_name().map(str::to_string),
        reverse_client_name: request.known_reverse_client_name().map(str::to_string),
        helo: request.helo_name.clone().filter(|h| !h.is_empty()),
        sender: request.sender.clone().unwrap_or_default(),
        recipient: request.recipient.clone().unwrap_or_default(),
    }
}

/// [`envelope_of`] moving the strings out of the request instead of copying them (the
/// request path's version: five fewer allocations per request). The fields it takes are
/// left `None`.
fn take_envelope(request: &mut PolicyRequest, client_address: std::net::IpAddr) -> Envelope {
    let verified = request.verified_client_name().is_some();
    let known_reverse = request.known_reverse_client_name().is_some();
    Envelope {
        client_address: client_address.to_canonical(),
        client_name: request.client_name.take().filter(|_| verified),
        reverse_client_name: request.reverse_client_name.take().filter(|_| known_reverse),
        helo: request.helo_name.take().filter(|h| !h.is_empty()),
        sender: request.sender.take().unwrap_or_default(),
        recipient: request.recipient.take().unwrap_or_default(),
    }
}

/// `reason reason reason`, written straight into the log line (no intermediate strings
/// for the list and the join).
struct ReasonsShort<'a>(&'a Verdict);

impl std::fmt::Display for ReasonsShort<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, reason) in self.0.reasons.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(&reason.short())?;
        }
        Ok(())
    }
}

fn log_decision(
    request: &PolicyRequest,
    envelope: &Envelope,
    state: &str,
    verdict: &Verdict,
    action: &str,
) {
    // One stable, grep-able line per decision.
    info!(
        target: "spamgate::decision",
        "action={} client={} name={} helo={} sender=<{}> recipient=<{}> state={} queue_id={} reasons=\"{}\" reply=\"{}\"",
        verdict.action.id(),
        envelope.client_address,
        envelope.client_name.as_deref().or(envelope.reverse_client_name.as_deref()).unwrap_or("unknown"),
        envelope.helo.as_deref().unwrap_or("-"),
        envelope.sender,
        envelope.recipient,
        state,
        request.queue_id.as_deref().filter(|q| !q.is_empty()).unwrap_or("-"),
        ReasonsShort(verdict),
        action,
    );
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
