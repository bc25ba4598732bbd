//! [`UserStore`] in its own SQLite file: one connection behind a mutex (admin traffic is
//! light; every statement is short), WAL, foreign keys on.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};
use spamgate_engine::UnixTime;

use super::{
    AuditFilter, AuditRecord, Result, Role, SessionRecord, TokenRecord, User, UserStore,
    UserStoreError,
};

/// The schema's version, in `PRAGMA user_version`; a newer file is refused.
pub const USER_SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    label TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    last_used_at INTEGER
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    address TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions(expires_at);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    user TEXT NOT NULL,
    via TEXT NOT NULL,
    address TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_user ON audit(user, id);
";

/// The admin store in one SQLite file; cheap to share behind an `Arc`.
pub struct SqliteUserStore {
    conn: Mutex<Connection>,
}

impl SqliteUserStore {
    /// Opens (creating when missing) the file, its directory must exist.
    pub fn open(path: &Path) -> Result<SqliteUserStore> {
        let setup = |message: String| UserStoreError::Setup {
            path: path.display().to_string(),
            message,
        };
        let conn = Connection::open(path).map_err(|e| setup(e.to_string()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > USER_SCHEMA_VERSION {
            return Err(setup(format!(
                "schema version {version} is newer than this spamgate's ({USER_SCHEMA_VERSION})"
            )));
        }
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", USER_SCHEMA_VERSION)?;
        Ok(SqliteUserStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (each statement is
        // atomic): carry on with the connection.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn to_i64(at: UnixTime) -> i64 {
    i64::try_from(at).unwrap_or(i64::MAX)
}

fn from_i64(at: i64) -> UnixTime {
    u64::try_from(at).unwrap_or(0)
}

fn user_row(row: &Row<'_>) -> rusqlite::Result<User> {
    let role: String = row.get(1)?;
    Ok(User {
        name: row.get(0)?,
        // An unknown role (a newer spamgate) reads as the least one.
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        password_hash: row.get(2)?,
        created_at: from_i64(row.get(3)?),
        disabled: row.get::<_, i64>(4)? != 0,
    })
}

const TOKEN_COLUMNS: &str =
    "id, user, label, hash, created_at, expires_at, revoked_at, last_used_at";

fn token_row(row: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: row.get(0)?,
        user: row.get(1)?,
        label: row.get(2)?,
        hash: row.get(3)?,
        created_at: from_i64(row.get(4)?),
        expires_at: row.get::<_, Option<i64>>(5)?.map(from_i64),
        revoked_at: row.get::<_, Option<i64>>(6)?.map(from_i64),
        last_used_at: row.get::<_, Option<i64>>(7)?.map(from_i64),
    })
}

fn audit_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        id: row.get(0)?,
        at: from_i64(row.get(1)?),
        user: row.get(2)?,
        via: row.get(3)?,
        address: row.get(4)?,
        action: row.get(5)?,
        target: row.get(6)?,
        detail: row.get(7)?,
    })
}

impl UserStore for SqliteUserStore {
    fn put_user(&self, user: &User) -> Result<bool> {
        let conn = self.conn();
        let existed: bool = conn
            .query_row("SELECT 1 FROM users WHERE name = ?1", [&user.name], |_| {
                Ok(())
            })
            .optional()?
            .is_some();
        conn.execute(
            "INSERT INTO users (name, role, password_hash, created_at, disabled)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(name) DO UPDATE SET role = excluded.role,
                 password_hash = excluded.password_hash, disabled = excluded.disabled",
            params![
                user.name,
                user.role.as_str(),
                user.password_hash,
                to_i64(user.created_at),
                i64::from(user.disabled)
            ],
        )?;
        Ok(!existed)
    }

    fn user(&self, name: &str) -> Result<Option<User>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT name, role, password_hash, created_at, disabled FROM users WHERE name = ?1",
                [name],
                user_row,
            )
            .optional()?)
    }

    fn users(&self) -> Result<Vec<User>> {
        let conn = self.conn();
        let mut statement = conn.prepare(
            "SELECT name, role, password_hash, created_at, disabled FROM users ORDER BY name",
        )?;
        let rows = statement.query_map([], user_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn add_token(&self, token: &TokenRecord) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO tokens (user, label, hash, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                token.user,
                token.label,
                token.hash,
                to_i64(token.created_at),
                token.expires_at.map(to_i64)
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1"),
                [hash],
                token_row,
            )
            .optional()?)
    }

    fn token(&self, id: i64) -> Result<Option<TokenRecord>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
                [id],
                token_row,
            )
            .optional()?)
    }

    fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>> {
        let conn = self.conn();
        let mut statement = conn.prepare(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE ?1 IS NULL OR user = ?1 ORDER BY id"
        ))?;
        let rows = statement.query_map([user], token_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn revoke_token(&self, id: i64, at: UnixTime) -> Result<bool> {
        let changed = self.conn().execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, to_i64(at)],
        )?;
        Ok(changed > 0)
    }

    fn touch_token(&self, id: i64, at: UnixTime) -> Result<()> {
        self.conn().execute(
            "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1",
            params![id, to_i64(at)],
        )?;
        Ok(())
    }

    fn put_session(&self, session: &SessionRecord) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO sessions (id_hash, user, csrf, created_at, expires_at, address)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                session.id_hash,
                session.user,
                session.csrf,
                to_i64(session.created_at),
                to_i64(session.expires_at),
                session.address
            ],
        )?;
        Ok(())
    }

    fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id_hash, user, csrf, created_at, expires_at, address
                 FROM sessions WHERE id_hash = ?1",
                [id_hash],
                |row| {
                    Ok(SessionRecord {
                        id_hash: row.get(0)?,
                        user: row.get(1)?,
                        csrf: row.get(2)?,
                        created_at: from_i64(row.get(3)?),
                        expires_at: from_i64(row.get(4)?),
                        address: row.get(5)?,
                    })
                },
            )
            .optional()?)
    }

    fn delete_session(&self, id_hash: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash])?;
        Ok(())
    }

    fn delete_sessions_of(&self, user: &str) -> Result<u64> {
        let n = self
            .conn()
            .execute("DELETE FROM sessions WHERE user = ?1", [user])?;
        Ok(n as u64)
    }

    fn expire_sessions(&self, now: UnixTime) -> Result<u64> {
        let n = self
            .conn()
            .execute("DELETE FROM sessions WHERE expires_at <= ?1", [to_i64(now)])?;
        Ok(n as u64)
    }

    fn audit(&self, entry: &AuditRecord) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO audit (at, user, via, address, action, target, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                to_i64(entry.at),
                entry.user,
                entry.via,
                entry.address,
                entry.action,
                entry.target,
                entry.detail
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let conn = self.conn();
        let mut statement = conn.prepare(
            "SELECT id, at, user, via, address, action, target, detail FROM audit
             WHERE (?1 IS NULL OR user = ?1)
               AND (?2 IS NULL OR substr(action, 1, length(?2)) = ?2)
               AND (?3 IS NULL OR id < ?3)
             ORDER BY id DESC LIMIT ?4",
        )?;
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let rows = statement.query_map(
            params![filter.user, filter.action_prefix, filter.before, limit],
            audit_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, role: Role) -> User {
        User {
            name: name.into(),
            role,
            password_hash: "$argon2id$x".into(),
            created_at: 1_700_000_000,
            disabled: false,
        }
    }

    #[test]
    fn users_tokens_sessions_and_audit_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.db");
        let store = SqliteUserStore::open(&path).unwrap();
        assert!(store.put_user(&user("alice", Role::Admin)).unwrap());
        assert!(!store.put_user(&user("alice", Role::Viewer)).unwrap());
        let token = TokenRecord {
            id: 0,
            user: "alice".into(),
            label: "ci".into(),
            hash: "ab".repeat(32),
            created_at: 10,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        let id = store.add_token(&token).unwrap();
        assert!(store.revoke_token(id, 20).unwrap());
        assert!(!store.revoke_token(id, 21).unwrap(), "revoked once");
        assert!(!store.revoke_token(id + 1, 21).unwrap(), "no such token");
        let session = SessionRecord {
            id_hash: "cd".repeat(32),
            user: "alice".into(),
            csrf: "c".into(),
            created_at: 10,
            expires_at: 100,
            address: "127.0.0.1".into(),
        };
        store.put_session(&session).unwrap();
        for at in [1, 2, 3] {
            let entry = AuditRecord {
                id: 0,
                at,
                user: if at == 2 { "bob" } else { "alice" }.into(),
                via: "cli".into(),
                address: "local".into(),
                action: format!("user.add{at}"),
                target: "x".into(),
                detail: "{}".into(),
            };
            store.audit(&entry).unwrap();
        }
        drop(store);

        let store = SqliteUserStore::open(&path).unwrap();
        assert_eq!(store.user("alice").unwrap().unwrap().role, Role::Viewer);
        assert_eq!(store.users().unwrap().len(), 1);
        let stored = store.token_by_hash(&"ab".repeat(32)).unwrap().unwrap();
        assert_eq!((stored.id, stored.revoked_at), (id, Some(20)));
        assert_eq!(store.session(&session.id_hash).unwrap(), Some(session));
        assert_eq!(store.expire_sessions(99).unwrap(), 0);
        assert_eq!(store.expire_sessions(100).unwrap(), 1);
        let alice = store
            .audit_log(&AuditFilter {
                user: Some("alice".into()),
                limit: 10,
                ..AuditFilter::default()
            })
            .unwrap();
        let times: Vec<_> = alice.iter().map(|e| e.at).collect();
        assert_eq!(times, [3, 1], "newest first, only alice's");
        let before = store
            .audit_log(&AuditFilter {
                before: Some(alice[0].id),
                limit: 1,
                ..AuditFilter::default()
            })
            .unwrap();
        assert_eq!(before[0].user, "bob");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", USER_SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let error = SqliteUserStore::open(&path).err().unwrap().to_string();
        assert!(error.contains("newer"), "{error}");
    }
}
