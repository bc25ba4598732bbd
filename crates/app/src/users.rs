//! The admin API's rules for users, API tokens, browser sessions, the login rate limit
//! and the audit trail, over any [`UserStore`]. Front-ends (the HTTP API, the console,
//! `spamgate admin`) translate; what may be done and how secrets are made and checked is
//! here:
//! - passwords: argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes), 12 to 1024
//!   characters; an unknown user costs a login as much as a wrong password;
//! - API tokens and session ids: 32 random bytes from the OS, shown once, stored as
//!   SHA-256; tokens look like `sgt_` + 64 hex digits so they are easy to spot in logs;
//! - CSRF tokens: 32 random bytes per session, compared in constant time;
//! - the login rate limit: at most `login_failures` failed logins per `login_window`
//!   per address and per user name; beyond it logins are refused without a password
//!   check until the window has passed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};
use spamgate_engine::UnixTime;
pub use spamgate_store::users::{
    AuditFilter, AuditRecord, Role, SessionRecord, TokenRecord, User, UserStore, UserStoreError,
};

use crate::clock::Clock;

/// The prefix of every API token.
pub const TOKEN_PREFIX: &str = "sgt_";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Invalid(String),
    #[error("user {0:?} already exists")]
    Exists(String),
    #[error("no user {0:?}")]
    UnknownUser(String),
    #[error("no token {0}")]
    UnknownToken(i64),
    #[error("wrong user name or password")]
    BadCredentials,
    #[error("too many failed logins; try again in {} s", retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration },
    #[error("{0}")]
    Store(#[from] UserStoreError),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

impl AuthError {
    /// Whether the caller asked for something wrong (as opposed to the store failing).
    pub fn is_usage(&self) -> bool {
        !matches!(self, AuthError::Store(_) | AuthError::Hash(_))
    }
}

/// The knobs of the rules (`[admin]` in the configuration).
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    /// How long a browser session lasts after login.
    pub session_ttl: Duration,
    /// Failed logins allowed per window, per address and per user name.
    pub login_failures: u32,
    pub login_window: Duration,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        AuthPolicy {
            session_ttl: Duration::from_secs(8 * 3600),
            login_failures: 5,
            login_window: Duration::from_secs(300),
        }
    }
}

/// A session just created: the cookie value (shown once, never stored) and its record.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub cookie: String,
    pub record: SessionRecord,
    pub user: User,
}

/// A token just created: the secret (shown once, never stored) and its record.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub secret: String,
    pub record: TokenRecord,
}

/// The users, tokens, sessions and audit service.
pub struct UserService {
    store: Arc<dyn UserStore>,
    clock: Arc<dyn Clock>,
    policy: AuthPolicy,
    limiter: Mutex<LoginLimiter>,
    /// A hash verified for unknown users, so they take as long as known ones.
    dummy_hash: String,
}

impl UserService {
    pub fn new(store: Arc<dyn UserStore>, clock: Arc<dyn Clock>, policy: AuthPolicy) -> Self {
        let dummy_hash = hash_password("spamgate-no-such-user").unwrap_or_default();
        UserService {
            store,
            clock,
            limiter: Mutex::new(LoginLimiter::new(
                policy.login_failures,
                policy.login_window,
            )),
            policy,
            dummy_hash,
        }
    }

    pub fn store(&self) -> &Arc<dyn UserStore> {
        &self.store
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    pub fn policy(&self) -> &AuthPolicy {
        &self.policy
    }

    /// Adds a user; an existing name is an error (change it with [`Self::set_password`]
    /// or [`Self::set_role`]).
    pub async fn add_user(
        &self,
        name: &str,
        role: Role,
        password: &str,
    ) -> Result<User, AuthError> {
        let name = check_name(name)?;
        check_password(password)?;
        if self.store.user(&name)?.is_some() {
            return Err(AuthError::Exists(name));
        }
        let password_hash = hash_blocking(password.to_string()).await?;
        let user = User {
            name,
            role,
            password_hash,
            created_at: self.now(),
            disabled: false,
        };
        self.store.put_user(&user)?;
        Ok(user)
    }

    /// Replaces a user's password and ends their sessions.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<User, AuthError> {
        check_password(password)?;
        let mut user = self.require_user(name)?;
        user.password_hash = hash_blocking(password.to_string()).await?;
        self.store.put_user(&user)?;
        self.store.delete_sessions_of(&user.name)?;
        Ok(user)
    }

    pub fn set_role(&self, name: &str, role: Role) -> Result<User, AuthError> {
        let mut user = self.require_user(name)?;
        user.role = role;
        self.store.put_user(&user)?;
        Ok(user)
    }

    /// Disables (or enables) a user; disabling ends their sessions, and their tokens
    /// stop working while disabled.
    pub fn set_disabled(&self, name: &str, disabled: bool) -> Result<User, AuthError> {
        let mut user = self.require_user(name)?;
        user.disabled = disabled;
        self.store.put_user(&user)?;
        if disabled {
            self.store.delete_sessions_of(&user.name)?;
        }
        Ok(user)
    }

    pub fn user(&self, name: &str) -> Result<User, AuthError> {
        self.require_user(name)
    }

    pub fn users(&self) -> Result<Vec<User>, AuthError> {
        Ok(self.store.users()?)
    }

    fn require_user(&self, name: &str) -> Result<User, AuthError> {
        self.store
            .user(name)?
            .ok_or_else(|| AuthError::UnknownUser(name.to_string()))
    }

    /// Checks a login and opens a session. Refused without a password check while
    /// the address or the name is over the failed-login limit; a failure counts
    /// against both.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        address: &str,
    ) -> Result<NewSession, AuthError> {
        let now_ms = self.clock.now_ms();
        let keys = [format!("addr:{address}"), format!("user:{name}")];
        {
            let limiter = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(retry_after) = keys
                .iter()
                .filter_map(|key| limiter.blocked(key, now_ms))
                .max()
            {
                return Err(AuthError::RateLimited { retry_after });
            }
        }
        let user = self.store.user(name)?;
        let hash = match &user {
            Some(user) if !user.disabled => user.password_hash.clone(),
            _ => self.dummy_hash.clone(),
        };
        let matches = verify_blocking(password.to_string(), hash).await;
        let user = match user {
            Some(user) if matches && !user.disabled => user,
            _ => {
                let mut limiter = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
                for key in &keys {
                    limiter.failed(key, now_ms);
                }
                return Err(AuthError::BadCredentials);
            }
        };
        let now = self.now();
        let cookie = random_hex()?;
        let record = SessionRecord {
            id_hash: sha256_hex(&cookie),
            user: user.name.clone(),
            csrf: random_hex()?,
            created_at: now,
            expires_at: now.saturating_add(self.policy.session_ttl.as_secs()),
            address: address.to_string(),
        };
        self.store.put_session(&record)?;
        let _ = self.store.expire_sessions(now);
        Ok(NewSession {
            cookie,
            record,
            user,
        })
    }

    /// The live session a cookie names, with its user (none when unknown, expired or
    /// the user is disabled).
    pub fn session(&self, cookie: &str) -> Result<Option<(SessionRecord, User)>, AuthError> {
        if cookie.is_empty() || cookie.len() > 128 {
            return Ok(None);
        }
        let Some(session) = self.store.session(&sha256_hex(cookie))? else {
            return Ok(None);
        };
        if session.expires_at <= self.now() {
            self.store.delete_session(&session.id_hash)?;
            return Ok(None);
        }
        Ok(self
            .store
            .user(&session.user)?
            .filter(|user| !user.disabled)
            .map(|user| (session, user)))
    }

    pub fn logout(&self, cookie: &str) -> Result<(), AuthError> {
        Ok(self.store.delete_session(&sha256_hex(cookie))?)
    }

    /// Creates a token for a user; the secret is in the result only.
    pub fn add_token(
        &self,
        user: &str,
        label: &str,
        expires_at: Option<UnixTime>,
    ) -> Result<NewToken, AuthError> {
        let user = self.require_user(user)?;
        let label = label.trim();
        if label.len() > 200 || label.chars().any(char::is_control) {
            return Err(AuthError::Invalid(
                "a token label is at most 200 characters, without control characters".into(),
            ));
        }
        let now = self.now();
        if expires_at.is_some_and(|at| at <= now) {
            return Err(AuthError::Invalid(
                "the expiry must be in the future".into(),
            ));
        }
        let secret = format!("{TOKEN_PREFIX}{}", random_hex()?);
        let mut record = TokenRecord {
            id: 0,
            user: user.name,
            label: label.to_string(),
            hash: sha256_hex(&secret),
            created_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        record.id = self.store.add_token(&record)?;
        Ok(NewToken { secret, record })
    }

    /// The live token a bearer secret names, with its user.
    pub fn authenticate_token(
        &self,
        secret: &str,
    ) -> Result<Option<(TokenRecord, User)>, AuthError> {
        if !secret.starts_with(TOKEN_PREFIX) || secret.len() > 128 {
            return Ok(None);
        }
        let Some(token) = self.store.token_by_hash(&sha256_hex(secret))? else {
            return Ok(None);
        };
        let now = self.now();
        if token.revoked_at.is_some() || token.expires_at.is_some_and(|at| at <= now) {
            return Ok(None);
        }
        let Some(user) = self.store.user(&token.user)?.filter(|u| !u.disabled) else {
            return Ok(None);
        };
        // Recorded at most once a minute per token: not a write per request.
        if token.last_used_at.is_none_or(|at| at + 60 <= now) {
            self.store.touch_token(token.id, now)?;
        }
        Ok(Some((token, user)))
    }

    pub fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>, AuthError> {
        Ok(self.store.tokens(user)?)
    }

    pub fn token(&self, id: i64) -> Result<TokenRecord, AuthError> {
        self.store.token(id)?.ok_or(AuthError::UnknownToken(id))
    }

    /// Revokes a token; an unknown or already revoked one is an error.
    pub fn revoke_token(&self, id: i64) -> Result<TokenRecord, AuthError> {
        if !self.store.revoke_token(id, self.now())? {
            return Err(AuthError::UnknownToken(id));
        }
        self.token(id)
    }

    /// Appends an audit entry stamped now.
    pub fn audit(&self, mut entry: AuditRecord) -> Result<i64, AuthError> {
        entry.at = self.now();
        Ok(self.store.audit(&entry)?)
    }

    pub fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, AuthError> {
        Ok(self.store.audit_log(filter)?)
    }
}

/// Compares two secrets without an early exit.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A user name: 1 to 64 of `a-z 0-9 . _ - @`, lowercased.
fn check_name(name: &str) -> Result<String, AuthError> {
    let name = name.trim().to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-@".contains(&b));
    if ok {
        Ok(name)
    } else {
        Err(AuthError::Invalid(format!(
            "a user name is 1 to 64 of a-z, 0-9, '.', '_', '-', '@' (got {name:?})"
        )))
    }
}

fn check_password(password: &str) -> Result<(), AuthError> {
    let length = password.chars().count();
    if (12..=1024).contains(&length) {
        Ok(())
    } else {
        Err(AuthError::Invalid(
            "a password has 12 to 1024 characters".into(),
        ))
    }
}

fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

async fn hash_blocking(password: String) -> Result<String, AuthError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AuthError::Hash(e.to_string()))?
}

async fn verify_blocking(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

/// 32 random bytes from the OS, hex.
fn random_hex() -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(hex(&bytes))
}

pub fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Failed logins per key in fixed windows, bounded in memory: at most
/// [`LoginLimiter::MAX_KEYS`] keys, the stalest forgotten first.
#[derive(Debug)]
pub struct LoginLimiter {
    failures: u32,
    window_ms: u64,
    /// key → (window start in ms, failures in it)
    keys: HashMap<String, (u64, u32)>,
}

impl LoginLimiter {
    pub const MAX_KEYS: usize = 10_000;

    pub fn new(failures: u32, window: Duration) -> Self {
        LoginLimiter {
            failures: failures.max(1),
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1),
            keys: HashMap::new(),
        }
    }

    /// How long `key` must wait, if it is over the limit at `now_ms`.
    pub fn blocked(&self, key: &str, now_ms: u64) -> Option<Duration> {
        let &(start, count) = self.keys.get(key)?;
        let end = start.saturating_add(self.window_ms);
        (count >= self.failures && now_ms < end).then(|| Duration::from_millis(end - now_ms))
    }

    pub fn failed(&mut self, key: &str, now_ms: u64) {
        if self.keys.len() >= Self::MAX_KEYS && !self.keys.contains_key(key) {
            let window = self.window_ms;
            self.keys
                .retain(|_, (start, _)| start.saturating_add(window) > now_ms);
            if self.keys.len() >= Self::MAX_KEYS
                && let Some(stalest) = self
                    .keys
                    .iter()
                    .min_by_key(|(_, (start, _))| *start)
                    .map(|(k, _)| k.clone())
            {
                self.keys.remove(&stalest);
            }
        }
        let entry = self.keys.entry(key.to_string()).or_insert((now_ms, 0));
        if entry.0.saturating_add(self.window_ms) <= now_ms {
            *entry = (now_ms, 0);
        }
        entry.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_blocks_after_the_failures_and_forgets_after_the_window() {
        let mut limiter = LoginLimiter::new(3, Duration::from_secs(60));
        // (step: fail at t or ask at t, expected block)
        let mut check = |fail: bool, at_s: u64, want: Option<u64>| {
            if fail {
                limiter.failed("k", at_s * 1000);
            }
            assert_eq!(
                limiter.blocked("k", at_s * 1000).map(|d| d.as_secs()),
                want,
                "at {at_s}"
            );
        };
        check(true, 0, None);
        check(true, 10, None);
        check(true, 20, Some(40));
        check(false, 59, Some(1));
        check(false, 60, None);
        check(true, 61, None);
        assert_eq!(limiter.blocked("other", 61_000), None);
    }

    #[test]
    fn the_limiter_stays_bounded() {
        let mut limiter = LoginLimiter::new(1, Duration::from_secs(60));
        for i in 0..LoginLimiter::MAX_KEYS + 10 {
            limiter.failed(&format!("k{i}"), 0);
        }
        assert!(limiter.keys.len() <= LoginLimiter::MAX_KEYS);
        assert!(
            limiter
                .blocked(&format!("k{}", LoginLimiter::MAX_KEYS + 9), 0)
                .is_some()
        );
    }

    #[test]
    fn names_and_passwords_are_checked() {
        for (name, ok) in [
            ("alice", true),
            ("Alice@example.test", true),
            ("", false),
            ("a b", false),
            (&"x".repeat(65), false),
        ] {
            assert_eq!(check_name(name).is_ok(), ok, "{name:?}");
        }
        assert!(check_password("short").is_err());
        assert!(check_password("twelve chars").is_ok());
    }

    #[test]
    fn secrets_compare_in_full() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
