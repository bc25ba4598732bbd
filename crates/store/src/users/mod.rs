//! The admin API's users, API tokens, browser sessions and audit trail: plain records
//! behind [`UserStore`], with an SQLite backend ([`SqliteUserStore`], its own file
//! `admin.db`). The rules (password hashing, token generation, who may do what, the
//! login rate limit) are the application layer's (`spamgate_app::users`); a store only
//! keeps what it is given. Secrets are never stored: password hashes (argon2id PHC
//! strings), token and session-id hashes (SHA-256, hex) only.

mod sqlite;

use spamgate_engine::UnixTime;

pub use sqlite::SqliteUserStore;

/// What a user may do, each role including the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Changes filters (greylist, allow-list) and accounts; works the desk.
    Operator,
    /// Approves the ladder steps the policy holds for approval.
    Approver,
    /// Manages users and tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Approver, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user account of the admin API and console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// An argon2 PHC string.
    pub password_hash: String,
    pub created_at: UnixTime,
    pub disabled: bool,
}

/// An API token as stored: its hash, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    pub user: String,
    pub label: String,
    /// SHA-256 of the token, hex.
    pub hash: String,
    pub created_at: UnixTime,
    pub expires_at: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
    pub last_used_at: Option<UnixTime>,
}

/// A browser session: the cookie's hash, its CSRF token, its lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the session cookie's value, hex.
    pub id_hash: String,
    pub user: String,
    pub csrf: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub address: String,
}

/// One audited change: who, when, from where, what, with what outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditRecord {
    /// Assigned by the store (0 when writing).
    pub id: i64,
    pub at: UnixTime,
    /// The user name, or `cli:<login>` for a local command.
    pub user: String,
    /// `session`, `token:<id>` or `cli`.
    pub via: String,
    /// The peer address (and what a trusted proxy said), or `local`.
    pub address: String,
    /// A dotted verb: `allow.add`, `account.suspend`, `user.add`, `login.failed`...
    pub action: String,
    /// What it acted on (an entry, an account, a case id).
    pub target: String,
    /// The request's parameters or result, JSON text.
    pub detail: String,
}

/// Which audit entries to read: newest first, before `before` (an id) when given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub user: Option<String>,
    pub action_prefix: Option<String>,
    pub before: Option<i64>,
    pub limit: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum UserStoreError {
    #[error("admin store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("admin store {path}: {message}")]
    Setup { path: String, message: String },
}

pub type Result<T, E = UserStoreError> = std::result::Result<T, E>;

/// Everything the admin API keeps. Blocking calls (SQLite on a local file, short
/// statements); callers on an async runtime may run them in place like the desk's.
pub trait UserStore: Send + Sync {
    /// Inserts or replaces a user; true if it was new.
    fn put_user(&self, user: &User) -> Result<bool>;
    fn user(&self, name: &str) -> Result<Option<User>>;
    /// Every user, by name.
    fn users(&self) -> Result<Vec<User>>;

    /// Stores a token (its `id` is ignored) and returns its id.
    fn add_token(&self, token: &TokenRecord) -> Result<i64>;
    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    fn token(&self, id: i64) -> Result<Option<TokenRecord>>;
    /// Tokens, of one user or all, by id.
    fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>>;
    /// Marks a token revoked; false if there is no such token or it already was.
    fn revoke_token(&self, id: i64, at: UnixTime) -> Result<bool>;
    fn touch_token(&self, id: i64, at: UnixTime) -> Result<()>;

    fn put_session(&self, session: &SessionRecord) -> Result<()>;
    fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>>;
    fn delete_session(&self, id_hash: &str) -> Result<()>;
    /// Deletes every session of a user (password change, disabling); returns how many.
    fn delete_sessions_of(&self, user: &str) -> Result<u64>;
    /// Deletes sessions with `expires_at <= now`; returns how many.
    fn expire_sessions(&self, now: UnixTime) -> Result<u64>;

    /// Appends an entry (its `id` is ignored) and returns its id.
    fn audit(&self, entry: &AuditRecord) -> Result<i64>;
    fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>>;
}
