//! One Postfix policy connection: requests read under the codec's bounds and the
//! timeouts, answered in order.
//!
//! Every read is bounded in time and size. A malformed request is logged and the
//! connection closed without a reply (Postfix's contract: it retries, then applies
//! `smtpd_policy_service_default_action`).

use std::sync::Arc;
use std::time::Duration;

use spamgate_app::{Backend, Clock, Mode, Resolver, Service};
use spamgate_net::{Connection, Handler, IdleSlot};
use spamgate_policy::{Limits, PolicyDecoder, encode_action};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::answer::answer;

/// Per-connection bounds, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub codec: Limits,
    /// How long a connection may wait between requests.
    pub idle_timeout: Duration,
    /// How long one request may take to arrive, from its first byte.
    pub request_timeout: Duration,
}

/// The front-end the listeners hand Postfix's connections to.
pub struct PostfixFrontEnd<S, R, C> {
    service: Arc<Service<S, R, C>>,
    limits: ConnectionLimits,
}

impl<S, R, C> PostfixFrontEnd<S, R, C> {
    pub fn new(service: Arc<Service<S, R, C>>, limits: ConnectionLimits) -> Self {
        PostfixFrontEnd { service, limits }
    }
}

impl<S: Backend, R: Resolver, C: Clock> Handler for PostfixFrontEnd<S, R, C> {
    fn connection_opened(&self) {
        self.service.metrics().connection_opened();
    }

    fn connection_closed(&self) {
        self.service.metrics().connection_closed();
    }

    fn connection_refused(&self) {
        self.service.metrics().connection_refused();
    }

    async fn serve(&self, mut connection: Connection, slot: &IdleSlot) {
        let service = &self.service;
        let limits = self.limits;
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
                    debug!(peer = %connection.peer, "closing idle connection (evicted to make room, or shutting down)");
                    return;
                }
                read = connection.io.read(&mut buf) => Ok(read),
                () = &mut timer => Err(()),
            };
            let n = match read {
                Err(_) => {
                    if in_progress {
                        service.metrics().bad_request("request-timeout");
                        warn!(peer = %connection.peer, "request not completed within {:?}; closing", limits.request_timeout);
                    } else {
                        debug!(peer = %connection.peer, "idle connection timed out");
                    }
                    return;
                }
                Ok(Err(e)) => {
                    debug!(peer = %connection.peer, "read error: {e}");
                    return;
                }
                Ok(Ok(0)) => {
                    if in_progress {
                        service.metrics().bad_request("truncated");
                        warn!(peer = %connection.peer, "connection closed in the middle of a request");
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
                        answer(service, request, Mode::Record, &mut action).await;
                        encode_action(&action, &mut reply);
                        if let Err(e) = connection.io.write_all(&reply).await {
                            debug!(peer = %connection.peer, "write error: {e}");
                            return;
                        }
                        request_deadline = Some(Instant::now() + limits.request_timeout);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        service.metrics().bad_request("malformed");
                        warn!(peer = %connection.peer, "bad policy request: {e}; closing connection without reply");
                        return;
                    }
                }
            }
        }
    }
}
