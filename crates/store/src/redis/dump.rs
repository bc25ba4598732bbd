//! Everything under a prefix as a [`StoreDump`] and back.

use std::collections::HashMap;

use spamgate_engine::UnixTime;
use spamgate_engine::greylist::Key;
use spamgate_engine::outbound::LimitKind;

use super::codec::{self, StoredAwl, StoredTriplet};
use super::{RECORD_BATCH, RedisStore};
use crate::{
    AccountAdmin, AccountStore, AllowAdmin, AllowStore, AwlRecord, RateRecord, StoreDump,
    StoreError, TripletRecord,
};

impl RedisStore {
    /// Everything under this store's prefix. A SCAN: consistent only if nothing
    /// writes meanwhile.
    pub async fn export(&self) -> Result<StoreDump, StoreError> {
        let mut dump = StoreDump::default();
        let mut failure = None;
        self.scan_values("t:", |name, value| {
            let Some(key) = self.names.parse_key("t:", name) else {
                return;
            };
            match codec::decode_triplet(value) {
                Some(t) => dump.triplets.push(TripletRecord {
                    key,
                    network_key: t.network_key,
                    network: t.network,
                    sender: t.sender,
                    recipient: t.recipient,
                    state: t.state,
                    expires_at: t.expires_at,
                }),
                None => failure = Some(String::from_utf8_lossy(name).into_owned()),
            }
        })
        .await?;
        self.scan_values("a:", |name, value| {
            let Some(key) = self.names.parse_key("a:", name) else {
                return;
            };
            match codec::decode_awl(value) {
                Some(a) => dump.awl.push(AwlRecord {
                    key,
                    client: a.client,
                    state: a.state,
                    expires_at: a.expires_at,
                }),
                None => failure = Some(String::from_utf8_lossy(name).into_owned()),
            }
        })
        .await?;
        if let Some(name) = failure {
            return Err(StoreError::Redis(format!(
                "cannot migrate: {name} holds a value this build cannot read"
            )));
        }
        dump.allow = self.allow_list().await?;
        dump.allow_generation = self.allow_generation().await?;
        dump.accounts = AccountAdmin::list_accounts(self, usize::MAX).await?;
        let rate_prefix = format!("{}rate:", self.names.prefix());
        let mut rates = Vec::new();
        self.scan_values("rate:", |name, value| {
            rates.push((name.to_vec(), value.to_vec()));
        })
        .await?;
        for (name, value) in rates {
            let name = String::from_utf8_lossy(&name).into_owned();
            let rest = name.strip_prefix(&rate_prefix).unwrap_or_default();
            let (kind, username) = rest.split_once(':').unwrap_or_default();
            let kind = LimitKind::parse(kind).ok_or_else(|| bad("rate key", &name))?;
            let tat_ms: u64 = std::str::from_utf8(&value)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| bad("rate value at", &name))?;
            dump.rates.push(RateRecord {
                username: username.to_string(),
                kind,
                tat_ms,
                // As charge() and SQLite compute it.
                expires_at: tat_ms.div_ceil(1000) + kind.period().as_secs(),
            });
        }
        dump.events = self.all_events().await?;
        dump.sort();
        Ok(dump)
    }

    /// Writes `dump` under this store's prefix, with TTLs counted from `now`; entries
    /// already expired at `now` are left out. Keys present are overwritten; the
    /// allow-list generation moves past both, so running daemons reload the list.
    pub async fn import(&self, dump: &StoreDump, now: UnixTime) -> Result<(), StoreError> {
        let ttl_ms = |expires_at: UnixTime| expires_at.saturating_sub(now) * 1000;
        let mut conn = self.link.conn();
        // Each network's pending set lives as long as its newest member.
        let mut network_expiry: HashMap<Key, UnixTime> = HashMap::new();
        for chunk in dump.triplets.chunks(RECORD_BATCH) {
            let mut pipe = redis::pipe();
            for t in chunk.iter().filter(|t| t.expires_at > now) {
                let value = codec::encode_triplet(&StoredTriplet {
                    state: t.state,
                    expires_at: t.expires_at,
                    network_key: t.network_key,
                    network: t.network.clone(),
                    sender: t.sender.clone(),
                    recipient: t.recipient.clone(),
                });
                let ttl = ttl_ms(t.expires_at);
                pipe.pset_ex(self.names.triplet(&t.key), value, ttl)
                    .ignore();
                if t.state.passed_at.is_none() {
                    let network = self.names.network(&t.network_key);
                    pipe.zadd(&network, codec::hex(&t.key), t.expires_at)
                        .ignore();
                    let expiry = network_expiry.entry(t.network_key).or_default();
                    *expiry = (*expiry).max(t.expires_at);
                }
            }
            self.run_pipe(&mut conn, &pipe).await?;
        }
        let networks: Vec<(Key, UnixTime)> = network_expiry.into_iter().collect();
        for chunk in networks.chunks(RECORD_BATCH) {
            let mut pipe = redis::pipe();
            for (network, expires_at) in chunk {
                pipe.pexpire(self.names.network(network), ttl_ms(*expires_at) as i64)
                    .ignore();
            }
            self.run_pipe(&mut conn, &pipe).await?;
        }
        for chunk in dump.awl.chunks(RECORD_BATCH) {
            let mut pipe = redis::pipe();
            for a in chunk.iter().filter(|a| a.expires_at > now) {
                let value = codec::encode_awl(&StoredAwl {
                    state: a.state,
                    expires_at: a.expires_at,
                    client: a.client.clone(),
                });
                pipe.pset_ex(self.names.awl(&a.key), value, ttl_ms(a.expires_at))
                    .ignore();
            }
            self.run_pipe(&mut conn, &pipe).await?;
        }
        for entry in &dump.allow {
            self.allow_add(entry).await?;
        }
        let generation = format!("{}allow:gen", self.names.prefix());
        let current = self.allow_generation().await?;
        let moved = current.max(dump.allow_generation) + 1;
        self.bounded(
            redis::cmd("SET")
                .arg(&generation)
                .arg(moved)
                .exec_async(&mut conn),
        )
        .await?;
        for account in &dump.accounts {
            AccountAdmin::put_account(self, account).await?;
        }
        let mut pipe = redis::pipe();
        for r in dump.rates.iter().filter(|r| r.expires_at > now) {
            pipe.pset_ex(
                self.rate_key(r.kind, &r.username),
                r.tat_ms,
                ttl_ms(r.expires_at),
            )
            .ignore();
        }
        self.run_pipe(&mut conn, &pipe).await?;
        for event in &dump.events {
            AccountStore::record_event(self, event).await?;
        }
        Ok(())
    }
}

fn bad(what: &str, text: &str) -> StoreError {
    StoreError::Redis(format!("cannot migrate: unknown {what} {text:?}"))
}
