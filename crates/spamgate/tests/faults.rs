//! Store trouble while serving: the configured fail mode, never a 5xx, and recovery
//! without a restart. The real SQLite store sits behind a switch that makes it fail or
//! hang on demand (a disk cannot be made to fail on cue here).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use common::*;
use spamgate_app::{ManualClock, Service};
use spamgate_dns::Dns;
use spamgate_engine::greylist::{GreylistKeys, GreylistOutcome, GreylistParams};
use spamgate_engine::learn::{LearnEvent, LearnParams, LearnRecord, Observation};
use spamgate_engine::outbound::{Account, GcraOutcome, LimitKind, Rate};
use spamgate_engine::{StoreFailMode, UnixTime};
use spamgate_net::Listener;
use spamgate_store::{
    AccountEvent, AccountStore, AllowEntry, AllowStore, GreylistStore, LearnStore, SqliteOptions,
    SqliteStore, StoreError,
};
use tokio::net::TcpListener;

const OK: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;

/// The request path only (what the daemon's service needs), each call through the
/// switch: the store fails or hangs on demand.
struct Switched {
    inner: SqliteStore,
    mode: Arc<AtomicU8>,
}

impl Switched {
    async fn switch<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match self.mode.load(Ordering::SeqCst) {
            FAIL => Err(StoreError::Closed),
            HANG => std::future::pending().await,
            _ => call.await,
        }
    }
}

impl GreylistStore for Switched {
    async fn greylist(
        &self,
        keys: &GreylistKeys,
        params: &GreylistParams,
        now: UnixTime,
        record: bool,
    ) -> Result<GreylistOutcome, StoreError> {
        self.switch(self.inner.greylist(keys, params, now, record))
            .await
    }
}

impl AllowStore for Switched {
    async fn allow_generation(&self) -> Result<u64, StoreError> {
        self.switch(self.inner.allow_generation()).await
    }
    async fn allow_list(&self) -> Result<Vec<AllowEntry>, StoreError> {
        self.switch(self.inner.allow_list()).await
    }
}

impl LearnStore for Switched {
    async fn learned(&self, org: &str, now: UnixTime) -> Result<Option<LearnRecord>, StoreError> {
        self.switch(self.inner.learned(org, now)).await
    }
    async fn learn_observe(
        &self,
        observation: &Observation,
        params: &LearnParams,
        now: UnixTime,
    ) -> Result<LearnEvent, StoreError> {
        self.switch(self.inner.learn_observe(observation, params, now))
            .await
    }
}

impl AccountStore for Switched {
    async fn account(&self, username: &str) -> Result<Option<Account>, StoreError> {
        self.switch(self.inner.account(username)).await
    }
    async fn charge(
        &self,
        username: &str,
        charges: &[(LimitKind, Rate, u32)],
        now_ms: u64,
        record: bool,
    ) -> Result<Vec<(LimitKind, GcraOutcome)>, StoreError> {
        self.switch(self.inner.charge(username, charges, now_ms, record))
            .await
    }
    async fn record_event(&self, event: &AccountEvent) -> Result<(), StoreError> {
        self.switch(self.inner.record_event(event)).await
    }
}

async fn start(
    fail_mode: StoreFailMode,
) -> (
    Client,
    Arc<AtomicU8>,
    Arc<Service<Switched, Dns, Arc<ManualClock>>>,
    tempfile::TempDir,
) {
    let dns = dns_builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dns.addr(), &dir.path().join("db.sqlite"));
    config.store.fail_mode = fail_mode;
    config.store.timeout = Duration::from_millis(300);
    let mode = Arc::new(AtomicU8::new(OK));
    let store = Switched {
        inner: SqliteStore::open(&config.store.path, SqliteOptions::default()).unwrap(),
        mode: mode.clone(),
    };
    let service = Arc::new(Service::new(
        config.settings().unwrap(),
        store,
        Dns::new(&config.dns.to_dns_config().unwrap()).unwrap(),
        Arc::new(ManualClock::new(T0)),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let served = service.clone();
    tokio::spawn(async move {
        spamgate::daemon::serve_postfix(served, vec![Listener::Tcp(listener)], &config.server, rx)
            .await
    });
    std::mem::forget(_tx);
    std::mem::forget(dns);
    let client = Client {
        stream: tokio::net::TcpStream::connect(addr).await.unwrap(),
    };
    (client, mode, service, dir)
}

const GENERIC: [(&str, &str); 2] = [
    ("client_address", "192.0.2.20"),
    ("client_name", "192-0-2-20.dyn.example.test"),
];

#[tokio::test]
async fn store_failure_passes_in_dunno_mode_and_recovers() {
    let (mut conn, mode, service, _dir) = start(StoreFailMode::Dunno).await;
    mode.store(FAIL, Ordering::SeqCst);
    assert_eq!(
        conn.ask(&GENERIC).await,
        "DUNNO",
        "fail mode dunno lets mail through"
    );
    mode.store(HANG, Ordering::SeqCst);
    assert_eq!(
        conn.ask(&GENERIC).await,
        "DUNNO",
        "a hung store times out into the fail mode"
    );
    mode.store(OK, Ordering::SeqCst);
    let reply = conn.ask(&GENERIC).await;
    assert!(
        reply.starts_with("DEFER_IF_PERMIT 4.7.1"),
        "back to greylisting without a restart: {reply}"
    );
    let text = service.metrics().encode();
    assert!(text.contains("spamgate_store_errors_total 2"), "{text}");
    assert!(
        text.contains(r#"spamgate_decisions_total{action="pass",reason="store-error"} 2"#),
        "{text}"
    );
}

#[tokio::test]
async fn store_failure_defers_in_defer_mode_never_rejects() {
    let (mut conn, mode, _service, _dir) = start(StoreFailMode::Defer).await;
    mode.store(FAIL, Ordering::SeqCst);
    let reply = conn.ask(&GENERIC).await;
    assert!(reply.starts_with("DEFER_IF_PERMIT 4.3.0"), "{reply}");
    // A proper client never touches the store, so it still passes.
    assert_eq!(
        conn.ask(&[
            ("client_address", "192.0.2.10"),
            ("client_name", "mail.example.test")
        ])
        .await,
        "DUNNO"
    );
    mode.store(OK, Ordering::SeqCst);
    assert!(
        conn.ask(&GENERIC)
            .await
            .starts_with("DEFER_IF_PERMIT 4.7.1")
    );
}

#[tokio::test]
async fn submission_store_failure_follows_the_fail_mode() {
    let (mut conn, mode, _service, _dir) = start(StoreFailMode::Defer).await;
    let submission = [
        ("sasl_username", "taro@example.jp"),
        ("sasl_method", "PLAIN"),
        ("server_port", "587"),
        ("client_address", "198.51.100.10"),
    ];
    assert_eq!(conn.ask(&submission).await, "DUNNO");
    mode.store(FAIL, Ordering::SeqCst);
    let reply = conn.ask(&submission).await;
    assert!(reply.starts_with("DEFER_IF_PERMIT 4.3.0"), "{reply}");
}
