//! One Postfix policy connection: requests read under the codec's bounds and the
//! timeouts, answered in order.
//!
//! Every read is bounded in time and size. A malformed request is logged and the
//! connection closed without a reply (Postfix's contract: it retries, then applies
//! `smtpd_policy_service_default_action`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use spamgate_app::{Backend, Clock, Mode, Resolver, Service};
use spamgate_net::{Connection, Handler, IdleSlot};
use spamgate_policy::{Limits, PolicyDecoder, encode_action};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::futures::Notified;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::action::write_action;
use crate::answer::answer_holding;

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
        let mut out = Output::default();
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
            let mut flow = serve_input(
                service,
                &mut connection,
                &mut decoder,
                &buf[..n],
                &mut out,
                close.as_mut(),
            )
            .await;
            // Bytes that arrived while a reply was held (Postfix sends none: it waits for
            // the reply), answered in order after it.
            while flow != Flow::Stop && !out.early.is_empty() {
                let carried = std::mem::take(&mut out.early);
                let next = serve_input(
                    service,
                    &mut connection,
                    &mut decoder,
                    &carried,
                    &mut out,
                    close.as_mut(),
                )
                .await;
                flow = match (flow, next) {
                    (_, Flow::Stop) => Flow::Stop,
                    (Flow::Answered, _) | (_, Flow::Answered) => Flow::Answered,
                    _ => Flow::Continue,
                };
            }
            match flow {
                Flow::Continue => {}
                Flow::Answered => request_deadline = Some(Instant::now() + limits.request_timeout),
                Flow::Stop => return,
            }
        }
    }
}

/// Buffers reused request after request (no new allocation each).
#[derive(Default)]
struct Output {
    reply: Vec<u8>,
    /// The action text, rendered in place.
    action: String,
    /// Input read while a reply was held.
    early: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// All input decoded, no complete request in it.
    Continue,
    /// At least one request answered.
    Answered,
    /// Close the connection.
    Stop,
}

/// Decodes and answers every complete request in `input`, holding tarpit replies.
async fn serve_input<S: Backend, R: Resolver, C: Clock>(
    service: &Service<S, R, C>,
    connection: &mut Connection,
    decoder: &mut PolicyDecoder,
    mut input: &[u8],
    out: &mut Output,
    mut close: Pin<&mut Notified<'_>>,
) -> Flow {
    let mut flow = Flow::Continue;
    loop {
        match decoder.decode(&mut input) {
            Ok(Some(request)) => {
                out.reply.clear();
                out.action.clear();
                let (answered, hold) =
                    answer_holding(service, request, Mode::Record, &mut out.action).await;
                let mut last = false;
                if let Some(hold) = hold {
                    match hold_reply(connection, &mut out.early, close.as_mut(), hold.duration())
                        .await
                    {
                        HoldEnd::Completed => hold.completed(service.now()),
                        HoldEnd::PeerClosed => {
                            // smtpd went away (killed, or its own timeout): nobody to answer.
                            debug!(peer = %connection.peer, "policy connection closed during a tarpit hold");
                            hold.cut();
                            return Flow::Stop;
                        }
                        HoldEnd::Closing => {
                            // Shutting down: answer now with plain greylisting (the first
                            // attempt is recorded), then close.
                            hold.cut();
                            if let Some(answered) = answered {
                                out.action.clear();
                                write_action(
                                    &service.settings().replies,
                                    &answered.verdict.tarpit_cut(),
                                    &answered.transaction.envelope,
                                    &mut out.action,
                                );
                            }
                            last = true;
                        }
                    }
                }
                encode_action(&out.action, &mut out.reply);
                if let Err(e) = connection.io.write_all(&out.reply).await {
                    debug!(peer = %connection.peer, "write error: {e}");
                    return Flow::Stop;
                }
                if last {
                    return Flow::Stop;
                }
                flow = Flow::Answered;
            }
            Ok(None) => return flow,
            Err(e) => {
                service.metrics().bad_request("malformed");
                warn!(peer = %connection.peer, "bad policy request: {e}; closing connection without reply");
                return Flow::Stop;
            }
        }
    }
}

enum HoldEnd {
    Completed,
    PeerClosed,
    Closing,
}

/// Waits out a tarpit hold: a timer, not a thread, so thousands can be held at once.
/// Watches the policy connection meanwhile: its closing is the only thing a policy
/// server can see during the hold (a bot hanging up on smtpd is not: smtpd is waiting
/// for this reply and does not read from its client).
async fn hold_reply(
    connection: &mut Connection,
    early: &mut Vec<u8>,
    mut close: Pin<&mut Notified<'_>>,
    duration: Duration,
) -> HoldEnd {
    let sleep = tokio::time::sleep(duration);
    tokio::pin!(sleep);
    let mut scratch = [0u8; 1024];
    loop {
        // Keep at most one buffer of early input; past that, only the timer and the
        // close signal are watched.
        let watching = early.len() < 8192;
        tokio::select! {
            biased;
            () = &mut close => return HoldEnd::Closing,
            () = &mut sleep => return HoldEnd::Completed,
            read = connection.io.read(&mut scratch), if watching => match read {
                Ok(0) | Err(_) => return HoldEnd::PeerClosed,
                Ok(n) => early.extend_from_slice(&scratch[..n]),
            },
        }
    }
}
