//! Authentication and authorisation for the API and the console.
//!
//! [`authenticate`] runs before every handler: it resolves the caller's address
//! (believing `X-Forwarded-For` only from `trusted_proxies`), then the caller, from an
//! `Authorization: Bearer sgt_...` token or the `spamgate_session` cookie, and puts a
//! [`Principal`] in the request's extensions. For a session, every state-changing
//! request (any method but GET, HEAD, OPTIONS) must carry the session's CSRF token, in
//! the `X-CSRF-Token` header or, for an HTML form (`application/x-www-form-urlencoded`),
//! the `csrf` field; without it the request is refused with 403 before any handler runs.
//! Tokens need no CSRF token (a browser never sends one by itself).
//!
//! Handlers then ask for [`Principal`] (401 when there is none) or
//! [`RequireRole<R>`] (403 when the role is below `R`).

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use spamgate_app::users::{AuditRecord, AuthError, Role, constant_time_eq};

use crate::error::{ApiError, ApiJson};
use crate::state::AdminState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "spamgate_session";
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A browser session, with its CSRF token (to render into forms).
    Session { csrf: String },
    /// An API token, by id.
    Token { id: i64 },
}

/// The authenticated caller: who, with which role, how, and from where.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: String,
    pub role: Role,
    pub via: Via,
    /// The client address (from a trusted proxy's `X-Forwarded-For`, else the peer).
    pub address: String,
}

impl Principal {
    /// The session's CSRF token: put it in forms as `<input name="csrf">` or send it as
    /// `X-CSRF-Token`. `None` for token callers.
    pub fn csrf(&self) -> Option<&str> {
        match &self.via {
            Via::Session { csrf } => Some(csrf),
            Via::Token { .. } => None,
        }
    }

    pub fn has(&self, role: Role) -> bool {
        self.role >= role
    }

    /// `session` or `token:<id>`, as the audit trail records it.
    pub fn via_text(&self) -> String {
        match &self.via {
            Via::Session { .. } => "session".into(),
            Via::Token { id } => format!("token:{id}"),
        }
    }

    /// Records a change this caller made. An audit entry that cannot be written is
    /// logged; the change it describes has already happened.
    pub fn audit(
        &self,
        state: &AdminState,
        action: &str,
        target: impl Into<String>,
        detail: serde_json::Value,
    ) {
        let entry = AuditRecord {
            id: 0,
            at: 0,
            user: self.user.clone(),
            via: self.via_text(),
            address: self.address.clone(),
            action: action.to_string(),
            target: target.into(),
            detail: detail.to_string(),
        };
        if let Err(e) = state.users().audit(entry) {
            tracing::error!(action, user = %self.user, "cannot write the audit entry: {e}");
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)
    }
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Principal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}

/// The peer's address, as the listener saw it (plain TCP or TLS).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The least role a handler needs, as a type: `RequireRole<Operator>`.
pub trait MinRole: Send + Sync + 'static {
    const ROLE: Role;
}

/// Role markers for [`RequireRole`].
pub mod roles {
    use super::{MinRole, Role};
    pub struct Viewer;
    pub struct Operator;
    pub struct Approver;
    pub struct Admin;
    impl MinRole for Viewer {
        const ROLE: Role = Role::Viewer;
    }
    impl MinRole for Operator {
        const ROLE: Role = Role::Operator;
    }
    impl MinRole for Approver {
        const ROLE: Role = Role::Approver;
    }
    impl MinRole for Admin {
        const ROLE: Role = Role::Admin;
    }
}

/// A [`Principal`] with at least role `R`: 401 without one, 403 below `R`.
pub struct RequireRole<R: MinRole>(pub Principal, PhantomData<R>);

impl<R: MinRole> std::ops::Deref for RequireRole<R> {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S: Send + Sync, R: MinRole> FromRequestParts<S> for RequireRole<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if !principal.has(R::ROLE) {
            return Err(ApiError::forbidden(format!(
                "this needs the {} role; {} is {}",
                R::ROLE,
                principal.user,
                principal.role
            )));
        }
        Ok(RequireRole(principal, PhantomData))
    }
}

/// The client's address as resolved by [`authenticate`], for handlers that run
/// without a [`Principal`] (the login).
#[derive(Debug, Clone)]
pub struct ClientAddress(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientAddress>()
            .cloned()
            .unwrap_or_else(|| ClientAddress("unknown".into())))
    }
}

/// The peer, or the last `X-Forwarded-For` hop when the peer is a trusted proxy.
pub fn client_address(state: &AdminState, peer: Option<IpAddr>, headers: &HeaderMap) -> String {
    let Some(peer) = peer else {
        return "unknown".into();
    };
    let trusted = state
        .settings()
        .trusted_proxies
        .iter()
        .any(|net| net.contains(&peer));
    if trusted
        && let Some(forwarded) = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            // The last hop is the one the trusted proxy added; nothing before it is
            // believed, and one that does not parse leaves the peer's address.
            .next_back()
            .and_then(|hop| hop.trim().parse::<IpAddr>().ok())
    {
        return forwarded.to_string();
    }
    peer.to_string()
}

/// A cookie's value from the `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware: address, caller, CSRF. Mounted by [`crate::router`] over every
/// route, the console's included.
pub async fn authenticate(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    match resolve(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

async fn resolve(state: &AdminState, mut request: Request) -> Result<Request, ApiError> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<PeerAddr>>()
        .map(|ConnectInfo(PeerAddr(addr))| addr.ip());
    let address = client_address(state, peer, request.headers());
    request
        .extensions_mut()
        .insert(ClientAddress(address.clone()));
    let users = state.users();
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        // A credential that is there but wrong is refused outright, never ignored.
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "Authorization must be `Bearer <token>`",
                )
            })?;
        let (token, user) = users
            .authenticate_token(secret.trim())
            .map_err(auth_unavailable)?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unknown, expired or revoked token",
                )
            })?;
        request.extensions_mut().insert(Principal {
            user: user.name,
            role: user.role,
            via: Via::Token { id: token.id },
            address,
        });
        return Ok(request);
    }
    let Some(cookie_value) = cookie(request.headers(), SESSION_COOKIE).map(str::to_string) else {
        return Ok(request);
    };
    // A stale cookie counts as no session: the login page must stay reachable.
    let Some((session, user)) = users.session(&cookie_value).map_err(auth_unavailable)? else {
        return Ok(request);
    };
    if !is_safe(request.method()) && request.uri().path() != "/login" {
        request = check_csrf(request, &session.csrf, state.settings().body_limit).await?;
    }
    request.extensions_mut().insert(Principal {
        user: user.name,
        role: user.role,
        via: Via::Session { csrf: session.csrf },
        address,
    });
    Ok(request)
}

fn auth_unavailable(error: AuthError) -> ApiError {
    ApiError::unavailable(format!("cannot check the credentials: {error}"))
}

fn csrf_refused() -> ApiError {
    ApiError::forbidden("CSRF token missing or wrong (send X-CSRF-Token or the csrf form field)")
}

/// Passes a request carrying `expected` in the header or in a form's `csrf` field; a
/// form body is read (within `limit`) and put back for the handler.
async fn check_csrf(request: Request, expected: &str, limit: usize) -> Result<Request, ApiError> {
    if let Some(given) = request.headers().get(CSRF_HEADER) {
        return match given.to_str() {
            Ok(given) if constant_time_eq(given, expected) => Ok(request),
            _ => Err(csrf_refused()),
        };
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(csrf_refused());
    }
    let (parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"))?;
    let given = form_field(&bytes, CSRF_FIELD);
    if !given.is_some_and(|given| constant_time_eq(&given, expected)) {
        return Err(csrf_refused());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// One field of an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Field {
        csrf: Option<String>,
    }
    debug_assert_eq!(name, "csrf");
    serde_urlencoded_field(body).and_then(|f: Field| f.csrf)
}

fn serde_urlencoded_field<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    // What axum's Form uses; unknown fields are ignored.
    serde_urlencoded::from_bytes(body).ok()
}

/// The login form (`POST /login`, `application/x-www-form-urlencoded`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginForm {
    pub user: String,
    pub password: String,
    /// Where a browser goes after logging in (a local path); `/` by default.
    #[serde(default)]
    pub next: Option<String>,
}

/// What a JSON login (`Accept: application/json`) and `GET /api/v1/session` answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionInfo {
    pub user: String,
    #[schema(value_type = String, example = "operator")]
    pub role: Role,
    /// The CSRF token to send with every state-changing request (absent for tokens).
    pub csrf: Option<String>,
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// A local path to go to after login (never another site: `//host` and `/\host`
/// are refused).
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.chars().any(char::is_control) =>
        {
            path
        }
        _ => "/",
    }
}

fn session_cookie(state: &AdminState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.settings().secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `POST /login`: checks the form, opens a session and sets its cookie (HttpOnly,
/// SameSite=Strict, Secure when configured). A browser is redirected (303) to `next`,
/// or back to `/login?failed=1` (`failed=rate` when rate limited); with
/// `Accept: application/json` the answer is [`SessionInfo`] or an error (401, 429).
#[utoipa::path(post, path = "/login", tag = "auth",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = SessionInfo), (status = 303, description = "browser: redirect"),
        (status = 401, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub async fn login(
    State(state): State<AdminState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    crate::error::ApiForm(form): crate::error::ApiForm<LoginForm>,
) -> Response {
    let json = wants_json(&headers);
    let result = state
        .users()
        .login(&form.user, &form.password, &address)
        .await;
    let audit = |action: &str, detail: serde_json::Value| {
        let entry = AuditRecord {
            id: 0,
            at: 0,
            user: form.user.chars().take(64).collect(),
            via: "login".into(),
            address: address.clone(),
            action: action.into(),
            target: String::new(),
            detail: detail.to_string(),
        };
        if let Err(e) = state.users().audit(entry) {
            tracing::error!("cannot write the audit entry: {e}");
        }
    };
    match result {
        Ok(session) => {
            audit("login", serde_json::json!({}));
            let ttl = state.users().policy().session_ttl.as_secs();
            let cookie = session_cookie(&state, &session.cookie, ttl);
            let mut response = if json {
                ApiJson(SessionInfo {
                    user: session.user.name,
                    role: session.user.role,
                    csrf: Some(session.record.csrf),
                })
                .into_response()
            } else {
                Redirect::to(local_path(form.next.as_deref())).into_response()
            };
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Err(error) => {
            let rate = matches!(error, AuthError::RateLimited { .. });
            if error.is_usage() {
                audit(
                    if rate {
                        "login.refused"
                    } else {
                        "login.failed"
                    },
                    serde_json::json!({ "error": error.to_string() }),
                );
            }
            if json || !error.is_usage() {
                ApiError::from(error).into_response()
            } else {
                let failed = if rate { "rate" } else { "1" };
                Redirect::to(&format!("/login?failed={failed}")).into_response()
            }
        }
    }
}

/// `POST /logout`: ends the session (CSRF token required like any change) and clears
/// the cookie. A browser is redirected to `/login`; JSON callers get 204.
#[utoipa::path(post, path = "/logout", tag = "auth",
    responses((status = 204), (status = 303), (status = 401, body = crate::error::ErrorBody)))]
pub async fn logout(
    State(state): State<AdminState>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(value) = cookie(&headers, SESSION_COOKIE) {
        state.users().logout(value)?;
    }
    principal.audit(&state, "logout", "", serde_json::json!({}));
    let mut response = if wants_json(&headers) || principal.csrf().is_none() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        Redirect::to("/login").into_response()
    };
    response
        .headers_mut()
        .append(header::SET_COOKIE, session_cookie(&state, "", 0));
    Ok(response)
}

/// `GET /api/v1/session`: who is calling, and the session's CSRF token.
#[utoipa::path(get, path = "/api/v1/session", tag = "auth",
    responses((status = 200, body = SessionInfo), (status = 401, body = crate::error::ErrorBody)))]
pub async fn session(principal: Principal) -> ApiJson<SessionInfo> {
    ApiJson(SessionInfo {
        csrf: principal.csrf().map(str::to_string),
        user: principal.user,
        role: principal.role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        for (next, want) in [
            (None, "/"),
            (Some("/desk"), "/desk"),
            (Some("//evil.example"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("https://evil.example/"), "/"),
            (Some("/a\r\nSet-Cookie: x"), "/"),
        ] {
            assert_eq!(local_path(next), want, "{next:?}");
        }
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; spamgate_session=xyz"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn the_csrf_field_is_read_from_a_form() {
        assert_eq!(form_field(b"x=1&csrf=abc", "csrf").as_deref(), Some("abc"));
        assert_eq!(form_field(b"x=1", "csrf"), None);
    }
}
