//! Redis Sentinel on loopback: one master, one replica, one sentinel. The master is
//! killed; the sentinel promotes the replica; the same store follows it and keeps the
//! state the replica had received.

mod common;
mod redis_server;

use std::time::{Duration, Instant};

use common::*;
use redis_server::RedisServer;
use spamgate_engine::greylist::GreylistOutcome::*;
use spamgate_store::{
    GreylistAdmin, GreylistStore, RedisOptions, RedisStore, SentinelOptions, StoreError,
};

const MASTER_NAME: &str = "spamgate-test";

/// Polls `what` every 50 ms until it returns Some, for at most `limit`.
async fn wait_for<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The master's port as the sentinel names it.
fn master_port(sentinel: &RedisServer) -> Option<u16> {
    let reply = sentinel.cli(&["SENTINEL", "get-master-addr-by-name", MASTER_NAME]);
    reply.lines().nth(1)?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_follows_a_sentinel_failover() {
    // The first full sync starts at once, not after the default 5 s delay.
    let mut master = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
    let replica = RedisServer::replica_of(&master);
    wait_for(Duration::from_secs(20), "the replica syncs", || {
        replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
            .then_some(())
    })
    .await;
    let sentinel = RedisServer::sentinel_for(&master, MASTER_NAME);
    let replica_port = replica.port.to_string();
    wait_for(
        Duration::from_secs(20),
        "the sentinel sees the replica",
        || {
            sentinel
                .cli(&["SENTINEL", "replicas", MASTER_NAME])
                .contains(&replica_port)
                .then_some(())
        },
    )
    .await;

    let store = RedisStore::connect(&RedisOptions {
        // With Sentinel only the database (and credentials) of the URL count.
        url: "redis://unused.example.invalid/0".into(),
        sentinel: Some(SentinelOptions {
            master_name: MASTER_NAME.into(),
            addresses: vec![format!("redis://127.0.0.1:{}", sentinel.port)],
        }),
        key_prefix: "sg:".into(),
        timeout: Duration::from_millis(500),
        ..RedisOptions::default()
    })
    .await
    .unwrap();
    let triplet = keys("192.0.2.90", "news@example.com", "alice@example.org");
    assert_eq!(
        store.greylist(&triplet, &params(), T0, true).await.unwrap(),
        New { retry_in: 300 }
    );
    // Replication is asynchronous: make sure the replica has it (the triplet and its
    // network's pending set) before the crash.
    wait_for(Duration::from_secs(10), "the replica has the write", || {
        (replica.cli(&["DBSIZE"]) == "2").then_some(())
    })
    .await;

    master.stop();
    let failed_at = Instant::now();
    let mut failures = 0;
    let outcome = loop {
        match store.greylist(&triplet, &params(), T0 + 400, true).await {
            Ok(outcome) => break outcome,
            Err(StoreError::Redis(_)) => {
                failures += 1;
                assert!(
                    failed_at.elapsed() < Duration::from_secs(30),
                    "no failover followed within 30 s ({failures} failed calls)"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(other) => panic!("{other}"),
        }
    };
    assert_eq!(outcome, Passed { waited: 400 }, "the replica had the state");
    assert!(failures > 0, "calls fail while there is no master");
    assert_eq!(
        master_port(&sentinel),
        Some(replica.port),
        "the replica was promoted"
    );
    eprintln!(
        "failover followed after {:?} and {failures} failed calls",
        failed_at.elapsed()
    );
    // And it keeps working on the new master.
    let other = keys("192.0.2.90", "news@example.com", "bob@example.org");
    assert_eq!(
        store
            .greylist(&other, &params(), T0 + 500, true)
            .await
            .unwrap(),
        AutoWhitelisted { since: T0 + 400 }
    );
    assert_eq!(store.counts(T0 + 500).await.unwrap().awl, 1);
}

#[tokio::test]
async fn an_unknown_master_name_fails_to_connect() {
    let master = RedisServer::start();
    let sentinel = RedisServer::sentinel_for(&master, MASTER_NAME);
    let result = RedisStore::connect(&RedisOptions {
        sentinel: Some(SentinelOptions {
            master_name: "no-such-master".into(),
            addresses: vec![format!("redis://127.0.0.1:{}", sentinel.port)],
        }),
        timeout: Duration::from_millis(500),
        ..RedisOptions::default()
    })
    .await;
    assert!(
        matches!(result, Err(StoreError::Redis(_))),
        "{:?}",
        result.err()
    );
}
