//! The runtime allow-list in Redis: one hash (`kind:value` → added_at + note) and a
//! generation counter moved in the same script as each change.

use std::sync::LazyLock;

use redis::Script;
use spamgate_engine::verdict::{AllowListKind, AllowScope};

use super::RedisStore;
use crate::{AllowAdmin, AllowEntry, AllowStore, StoreError};

/// KEYS: list, generation. ARGV: field, value. Returns 1 if the field is new.
const ADD_LUA: &str = r"
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return new
";

/// KEYS: list, generation. ARGV: field. Returns 1 if it existed.
const REMOVE_LUA: &str = r"
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
if removed > 0 then redis.call('INCR', KEYS[2]) end
return removed
";

static ADD: LazyLock<Script> = LazyLock::new(|| Script::new(ADD_LUA));
static REMOVE: LazyLock<Script> = LazyLock::new(|| Script::new(REMOVE_LUA));

impl RedisStore {
    fn allow_keys(&self) -> (String, String) {
        let prefix = self.names.prefix();
        (format!("{prefix}allow"), format!("{prefix}allow:gen"))
    }
}

fn field(kind: AllowListKind, value: &str) -> String {
    format!("{}:{value}", kind.id())
}

/// First byte of the value format with a scope and an expiry. Values written before it
/// start with `added_at`'s top byte, which is 0 for any time before the year 2^56 s.
const SCOPED: u8 = 0xa1;

/// `SCOPED`, scope (`g` or `a`), expires_at (8 bytes, 0 = none), added_at (8), note.
fn encode(entry: &AllowEntry) -> Vec<u8> {
    let mut out = vec![SCOPED, entry.scope.id().as_bytes()[0]];
    out.extend_from_slice(&entry.expires_at.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&entry.added_at.to_be_bytes());
    out.extend_from_slice(entry.note.as_bytes());
    out
}

/// `None` for kinds this build does not know (a newer writer) or a cut value.
fn decode(field: &[u8], value: &[u8]) -> Option<AllowEntry> {
    let field = std::str::from_utf8(field).ok()?;
    let (kind, value_text) = field.split_once(':')?;
    let Some(kind) = AllowListKind::parse(kind) else {
        tracing::warn!(%kind, "skipping an allow-list entry of an unknown kind");
        return None;
    };
    // Entries of the first format skipped every check and never expired.
    let (scope, expires_at, rest) = match value.split_first() {
        Some((&SCOPED, rest)) => {
            let (&scope, rest) = rest.split_first()?;
            let (expires_at, rest) = rest.split_first_chunk::<8>()?;
            let scope = if scope == b'a' {
                AllowScope::All
            } else {
                AllowScope::Greylist
            };
            let expires_at = u64::from_be_bytes(*expires_at);
            (scope, (expires_at > 0).then_some(expires_at), rest)
        }
        _ => (AllowScope::All, None, value),
    };
    let (added_at, note) = rest.split_first_chunk::<8>()?;
    Some(AllowEntry {
        kind,
        value: value_text.to_string(),
        note: String::from_utf8_lossy(note).into_owned(),
        added_at: u64::from_be_bytes(*added_at),
        scope,
        expires_at,
    })
}

impl AllowStore for RedisStore {
    async fn allow_generation(&self) -> Result<u64, StoreError> {
        let (_, generation) = self.allow_keys();
        let mut conn = self.link.conn();
        let value: Option<u64> = self
            .bounded(redis::cmd("GET").arg(&generation).query_async(&mut conn))
            .await?;
        Ok(value.unwrap_or(0))
    }

    /// Ordered by the kind's id, then value, as SQLite orders them.
    async fn allow_list(&self) -> Result<Vec<AllowEntry>, StoreError> {
        let (list, _) = self.allow_keys();
        let mut conn = self.link.conn();
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = self
            .bounded(redis::cmd("HGETALL").arg(&list).query_async(&mut conn))
            .await?;
        let mut entries: Vec<AllowEntry> = pairs
            .iter()
            .filter_map(|(field, value)| decode(field, value))
            .collect();
        entries.sort_by(|a, b| (a.kind.id(), &a.value).cmp(&(b.kind.id(), &b.value)));
        Ok(entries)
    }
}

impl AllowAdmin for RedisStore {
    async fn allow_add(&self, entry: &AllowEntry) -> Result<bool, StoreError> {
        let (list, generation) = self.allow_keys();
        let mut invocation = ADD.key(&list);
        invocation
            .key(&generation)
            .arg(field(entry.kind, &entry.value))
            .arg(encode(entry));
        let mut conn = self.link.conn();
        let new: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(new > 0)
    }

    async fn allow_remove(&self, kind: AllowListKind, value: &str) -> Result<bool, StoreError> {
        let (list, generation) = self.allow_keys();
        let mut invocation = REMOVE.key(&list);
        invocation.key(&generation).arg(field(kind, value));
        let mut conn = self.link.conn();
        let removed: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(removed > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_unknown_kinds_are_skipped() {
        let entry = AllowEntry {
            kind: AllowListKind::Sender,
            value: "a:b@example.com".into(),
            note: "ticket 7".into(),
            added_at: 1_700_000_000,
            scope: spamgate_engine::verdict::AllowScope::All,
            expires_at: None,
        };
        let field_text = field(entry.kind, &entry.value);
        assert_eq!(field_text, "sender:a:b@example.com");
        assert_eq!(
            decode(field_text.as_bytes(), &encode(&entry)),
            Some(entry.clone())
        );
        assert_eq!(decode(b"future-kind:x", &encode(&entry)), None);
        assert_eq!(decode(field_text.as_bytes(), b"short"), None);
        let scoped = AllowEntry {
            scope: AllowScope::Greylist,
            expires_at: Some(1_800_000_000),
            ..entry.clone()
        };
        assert_eq!(
            decode(field_text.as_bytes(), &encode(&scoped)),
            Some(scoped)
        );
        // A value of the first format (added_at, note): every check, no expiry.
        let mut old = 1_700_000_000u64.to_be_bytes().to_vec();
        old.extend_from_slice(b"ticket 7");
        assert_eq!(decode(field_text.as_bytes(), &old), Some(entry));
    }
}
