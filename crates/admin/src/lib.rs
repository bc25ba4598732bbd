//! spamgate's HTTP admin API: JSON over HTTP for scripts and the web console, served by
//! `spamgate serve` on the `[admin]` listener. Handlers only translate: every decision
//! and every change goes through the application layer (`spamgate-app`). See
//! docs/api.md for the endpoints, roles and errors.
//!
//! # The interface for front-ends mounted on this listener (the console)
//!
//! - **State**: [`AdminState`] (cheap `Clone`) holds the application services:
//!   [`AdminState::service`] (decisions, the store with the greylist, allow-list and
//!   accounts, metrics), [`AdminState::users`] (users, tokens, sessions, audit trail),
//!   [`AdminState::desk`] (the abuse desk's service, 503 when none) and
//!   [`AdminState::keys`] (the greylist key scheme).
//! - **Mounting**: [`router`]`(state, extra)` merges `extra: Router<AdminState>` with
//!   the API and puts *both* behind the same layers (body limit, [`auth::authenticate`]
//!   with CSRF). The API owns `GET /health`, `POST /login`, `POST /logout` and
//!   everything under `/api/v1/`; `extra` may own any other path (`GET /login`, the
//!   login page, is the console's). Routes must not overlap (axum panics on a duplicate).
//!   Unknown paths answer 401 without a caller and 404 with one.
//! - **Who is calling**: the extractor [`Principal`] (`user`, `role`, `via`, `address`;
//!   401 as JSON when there is none: take `Option<Principal>` to redirect a browser to
//!   `/login` instead) and [`RequireRole`]`<R>` with `R` one of [`roles`]`::{Viewer,
//!   Operator, Approver, Admin}` (403 below it). Roles are ordered: viewer < operator <
//!   approver < admin.
//! - **CSRF**: enforced by the middleware on every non-GET/HEAD/OPTIONS request made
//!   with a session cookie: the token must be in the `X-CSRF-Token` header or in the
//!   `csrf` field of an `application/x-www-form-urlencoded` body (the middleware reads
//!   and restores the body, so the handler's `Form` still works). Render it into forms
//!   with [`Principal::csrf`]: `<input type="hidden" name="csrf" value="{{ csrf }}">`.
//!   Handlers need do nothing else. `POST /login` is exempt (no session yet).
//! - **Sessions**: `POST /login` takes the form fields `user`, `password` and optional
//!   `next` (a local path), sets the `spamgate_session` cookie (HttpOnly,
//!   SameSite=Strict, `Secure` with TLS or `secure_cookie`) and redirects (303) to
//!   `next`; on failure it redirects to `/login?failed=1` (`?failed=rate` when rate
//!   limited). With `Accept: application/json` it answers JSON instead.
//!   `POST /logout` ends it. [`auth::SESSION_COOKIE`], [`auth::CSRF_HEADER`],
//!   [`auth::CSRF_FIELD`] name the pieces.
//! - **Auditing a change**: [`Principal::audit`]`(&state, "allow.add", target, json)`.
//! - **Errors**: [`ApiError`] answers `{"error": "...", "status": N}`; [`ApiJson`],
//!   [`ApiQuery`] and [`ApiForm`] turn malformed input into 400 and oversized bodies
//!   into 413 in that shape.
//! - **Serving**: [`serve`] over a bound `TcpListener`, TLS when given a rustls config
//!   ([`tls::server_config`]), every connection bounded by [`ListenerLimits`] (count,
//!   header, body and idle timeouts: [`listener`]).
#![forbid(unsafe_code)]

pub mod answers;
pub mod api;
pub mod api_desk;
pub mod auth;
pub mod error;
pub mod listener;
pub mod openapi;
pub mod state;
pub mod tls;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

pub use auth::{ClientAddress, MinRole, Principal, RequireRole, Via, roles};
pub use error::{ApiError, ApiForm, ApiJson, ApiQuery, ErrorBody};
pub use listener::ListenerLimits;
pub use state::{AdminSettings, AdminState, AppService, DeskParts};

/// Declares routes once, as `METHOD "path" => handler` lines: the function building the
/// `Router<AdminState>` and a `&[(method, path)]` table come from the same lines, so
/// the table is the router. The OpenAPI conformance test
/// (`crates/spamgate/tests/api_openapi.rs`) compares [`route_table`] with the
/// document both ways: a route added here and not to the document fails it.
#[macro_export]
macro_rules! route_table {
    ($(#[$meta:meta])* $routes:ident, $table:ident; $($method:ident $path:literal => $handler:path),* $(,)?) => {
        #[doc = concat!("`(method, path)` of every route [`", stringify!($routes), "`] builds.")]
        pub const $table: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        $(#[$meta])*
        pub fn $routes() -> axum::Router<$crate::AdminState> {
            axum::Router::new()$(.route($path, axum::routing::$method($handler)))*
        }
    };
}

route_table! {
    /// The routes outside [`api`]: health, sessions, the document.
    base_routes, BASE_ROUTES;
    get "/health" => health,
    post "/login" => auth::login,
    post "/logout" => auth::logout,
    get "/api/v1/session" => auth::session,
    get "/api/v1/openapi.json" => openapi::serve,
}

/// Every `(method, path)` the API answers ([`router`] without its `extra`), for
/// comparing with the OpenAPI document.
pub fn route_table() -> Vec<(&'static str, &'static str)> {
    BASE_ROUTES
        .iter()
        .chain(api::ROUTES)
        .chain(api_desk::ROUTES)
        .copied()
        .collect()
}

/// `GET /health`: `ok`, without authentication (for load balancers and probes).
#[utoipa::path(get, path = "/health", tag = "meta", security(()),
    responses((status = 200, description = "the daemon answers", body = String, content_type = "text/plain")))]
pub async fn health() -> &'static str {
    "ok\n"
}

/// The API's routes and `extra` (the console's), behind the body limit and the
/// authentication middleware, with `state` applied.
pub fn router(state: AdminState, extra: Router<AdminState>) -> Router {
    let api = base_routes().merge(api::routes()).merge(api_desk::routes());
    api.merge(extra)
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(DefaultBodyLimit::max(state.settings().body_limit))
        .with_state(state)
}

/// Under `/api/`, an error axum answered itself (a 405, a plain-text rejection) is
/// rewritten into the JSON error shape, so every API error reads the same.
async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let api = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !api || is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    ApiError::new(status, message).into_response()
}

/// Unknown paths: 401 to strangers (nothing answers them but `/health`), else 404.
async fn fallback(principal: Option<Principal>) -> axum::response::Response {
    match principal {
        None => ApiError::unauthorized().into_response(),
        Some(_) => ApiError::new(StatusCode::NOT_FOUND, "no such endpoint").into_response(),
    }
}

/// Serves `app` on `listener` (TLS-terminated when `tls` is given) within `limits`
/// until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: ListenerLimits,
    shutdown: watch::Receiver<bool>,
) {
    let addr = listener.local_addr().ok();
    match tls {
        Some(config) => {
            let listener = match tls::TlsListener::new(listener, config) {
                Ok(listener) => listener,
                Err(e) => {
                    warn!("admin listener failed: {e}");
                    return;
                }
            };
            if let Some(addr) = addr {
                info!("admin API on https://{addr}/");
            }
            listener::serve_connections(listener, app, limits, shutdown).await;
        }
        None => {
            if let Some(addr) = addr {
                info!("admin API on http://{addr}/");
            }
            listener::serve_connections(listener, app, limits, shutdown).await;
        }
    }
}
