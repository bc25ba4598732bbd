//! What only the Redis store has: its key layout and TTLs, several hosts racing on one
//! entry, bounded failure while Redis is down, and recovery without a new store.

mod common;
mod redis_server;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use redis_server::RedisServer;
use spamgate_engine::greylist::GreylistOutcome::{self, *};
use spamgate_store::{
    GreylistAdmin, GreylistStore, RedisOptions, RedisStore, StoreCounts, StoreError,
};

const SENDER: &str = "news@example.com";

fn options(server: &RedisServer, prefix: &str) -> RedisOptions {
    RedisOptions {
        url: server.url(),
        key_prefix: prefix.into(),
        timeout: Duration::from_millis(500),
        ..RedisOptions::default()
    }
}

async fn connect(server: &RedisServer, prefix: &str) -> RedisStore {
    RedisStore::connect(&options(server, prefix)).await.unwrap()
}

fn hex(key: &[u8; 16]) -> String {
    key.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// TTL in seconds as redis-cli prints it.
fn ttl(server: &RedisServer, key: &str) -> i64 {
    server.cli(&["TTL", key]).parse().unwrap()
}

#[tokio::test]
async fn keys_carry_the_prefix_and_expire_by_ttl() {
    let server = RedisServer::start();
    let store = connect(&server, "mx:").await;
    let triplet = keys("192.0.2.10", SENDER, "alice@example.org");
    let triplet_key = format!("mx:t:{}", hex(&triplet.triplet_key));
    let awl_key = format!("mx:a:{}", hex(&triplet.awl_key));
    let network_key = format!("mx:n:{}", hex(&triplet.network_key));
    let greylist = |at| {
        let (store, triplet) = (&store, &triplet);
        async move { store.greylist(triplet, &params(), T0 + at, true).await }
    };

    assert_eq!(greylist(0).await.unwrap(), New { retry_in: 300 });
    // The TTL is the entry's life from the caller's clock: WINDOW + 1 seconds.
    assert!((WINDOW as i64 - 5..=WINDOW as i64 + 1).contains(&ttl(&server, &triplet_key)));
    assert_eq!(
        server.cli(&["ZRANGE", &network_key, "0", "-1"]),
        hex(&triplet.triplet_key),
        "the pending triplet is in its network's set"
    );
    assert_eq!(server.cli(&["EXISTS", &awl_key]), "0");

    assert_eq!(greylist(400).await.unwrap(), Passed { waited: 400 });
    assert!((LIFETIME as i64 - 5..=LIFETIME as i64).contains(&ttl(&server, &triplet_key)));
    assert!((LIFETIME as i64 - 5..=LIFETIME as i64).contains(&ttl(&server, &awl_key)));
    assert_eq!(
        server.cli(&["ZCARD", &network_key]),
        "0",
        "a passed triplet left the pending set"
    );
    let mut all: Vec<String> = server
        .cli(&["--scan", "--pattern", "*"])
        .lines()
        .map(str::to_string)
        .collect();
    all.sort();
    let mut expected = vec![awl_key, triplet_key];
    expected.sort();
    assert_eq!(
        all, expected,
        "nothing outside the prefix, nothing left over"
    );
}

#[tokio::test]
async fn prefixes_keep_clusters_apart() {
    let server = RedisServer::start();
    let blue = connect(&server, "blue:").await;
    let green = connect(&server, "green:").await;
    let triplet = keys("198.51.100.1", SENDER, "alice@example.org");
    assert_eq!(
        blue.greylist(&triplet, &params(), T0, true).await.unwrap(),
        New { retry_in: 300 }
    );
    assert_eq!(
        green
            .greylist(&triplet, &params(), T0 + 400, true)
            .await
            .unwrap(),
        New { retry_in: 300 },
        "green has never seen it"
    );
    assert_eq!(
        blue.greylist(&triplet, &params(), T0 + 400, true)
            .await
            .unwrap(),
        Passed { waited: 400 }
    );
    assert_eq!(
        green.counts(T0 + 400).await.unwrap(),
        StoreCounts {
            pending: 1,
            passed: 0,
            awl: 0
        }
    );
    assert_eq!(blue.list_triplets(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_value_this_build_cannot_read_counts_as_absent() {
    let server = RedisServer::start();
    let store = connect(&server, "sg:").await;
    let triplet = keys("203.0.113.9", SENDER, "alice@example.org");
    let triplet_key = format!("sg:t:{}", hex(&triplet.triplet_key));
    server.cli(&["SET", &triplet_key, "not a spamgate value"]);
    assert_eq!(
        store.greylist(&triplet, &params(), T0, true).await.unwrap(),
        New { retry_in: 300 }
    );
    assert_eq!(
        store
            .greylist(&triplet, &params(), T0 + 400, true)
            .await
            .unwrap(),
        Passed { waited: 400 },
        "the new value replaced it"
    );
    assert_eq!(store.list_triplets(10).await.unwrap().len(), 1);
}

/// Several hosts (stores with their own in-process locks) race on one triplet and on
/// one network's last pending places: compare-and-set keeps every decision atomic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hosts_racing_on_the_same_entries_lose_no_update() {
    let server = RedisServer::start();
    // A check queues behind its host's others for the same entries: on a loaded machine
    // that can outlast the usual 500 ms bound, which is not what this test is about.
    let patient = RedisOptions {
        timeout: Duration::from_secs(30),
        ..options(&server, "race:")
    };
    let hosts: Vec<Arc<RedisStore>> =
        futures_join(4, || async { RedisStore::connect(&patient).await.unwrap() }).await;
    let cap = 5;
    let params = Arc::new(params_with_cap(cap));
    let mut tasks = Vec::new();
    for n in 0..240u32 {
        let store = Arc::clone(&hosts[n as usize % hosts.len()]);
        let params = Arc::clone(&params);
        tasks.push(tokio::spawn(async move {
            // Two thirds retry one shared triplet; the others are first attempts of
            // distinct triplets in the same network, fighting for its few places.
            let recipient = if n % 3 != 0 {
                "shared@example.org".to_string()
            } else {
                format!("user{n}@example.org")
            };
            let keys = keys(&format!("192.0.2.{}", n % 200), SENDER, &recipient);
            (n % 3 != 0, store.greylist(&keys, &params, T0, true).await)
        }));
    }
    let mut shared = Vec::new();
    let mut others = Vec::new();
    // A check that lost the race to other hosts CAS_ATTEMPTS times in a row gives up
    // (the daemon applies its fail mode) and has written nothing.
    let mut gave_up = 0;
    for task in tasks {
        match task.await.unwrap() {
            (true, Ok(outcome)) => shared.push(outcome),
            (false, Ok(outcome)) => others.push(outcome),
            (_, Err(StoreError::Redis(message))) if message.contains("changed by other hosts") => {
                gave_up += 1
            }
            (_, Err(error)) => panic!("{error}"),
        }
    }
    let is_new = |o: &&GreylistOutcome| matches!(o, New { .. });
    let shared_new = shared.iter().filter(is_new).count();
    let too_early = shared
        .iter()
        .filter(|o| matches!(o, TooEarly { .. }))
        .count();
    let full = shared
        .iter()
        .filter(|o| matches!(o, NetworkFull { .. }))
        .count();
    // The shared triplet takes one place if it got one before the network filled up.
    assert!(shared_new <= 1);
    assert_eq!(shared_new + too_early + full, shared.len());
    assert_eq!(shared.len() + others.len() + gave_up, 240);
    if shared_new == 1 {
        assert_eq!(full, 0, "once recorded, retries need no room");
    }
    let others_new = others.iter().filter(is_new).count();
    assert_eq!(
        shared_new + others_new,
        cap as usize,
        "exactly the cap of first attempts were recorded"
    );
    assert!(
        others
            .iter()
            .all(|o| matches!(o, New { .. } | NetworkFull { .. }))
    );
    let rows = hosts[0].list_triplets(1000).await.unwrap();
    assert_eq!(rows.len(), cap as usize);
    if let Some(row) = rows.iter().find(|r| r.recipient == "shared@example.org") {
        assert_eq!(
            row.attempts as usize,
            shared_new + too_early,
            "no lost update"
        );
    }
}

/// What a host remembers of an entry is only a guess: after another host changed it,
/// the next check decides on what is stored.
#[tokio::test]
async fn a_host_decides_on_what_another_host_wrote_since() {
    let server = RedisServer::start();
    let mx1 = connect(&server, "sg:").await;
    let mx2 = connect(&server, "sg:").await;
    let triplet = keys("198.51.100.30", SENDER, "alice@example.org");
    let check = async |store: &RedisStore, at| {
        store
            .greylist(&triplet, &params(), T0 + at, true)
            .await
            .unwrap()
    };
    assert_eq!(check(&mx1, 0).await, New { retry_in: 300 });
    assert_eq!(check(&mx2, 400).await, Passed { waited: 400 });
    // mx1 last saw the triplet pending and the address not whitelisted.
    assert_eq!(check(&mx1, 401).await, AutoWhitelisted { since: T0 + 400 });
    let rows = mx1.list_triplets(10).await.unwrap();
    assert_eq!(
        (rows[0].attempts, rows[0].passed_at),
        (2, Some(T0 + 400)),
        "mx1 wrote nothing on its stale view"
    );

    // Both ways round: mx2 remembers the pass, mx1 starts the triplet over after its
    // lifetime; mx2 then sees the new pending triplet, not its old pass.
    assert_eq!(check(&mx1, 400 + LIFETIME).await, New { retry_in: 300 });
    assert_eq!(
        check(&mx2, 400 + LIFETIME + 10).await,
        TooEarly {
            waited: 10,
            retry_in: 290
        }
    );
}

async fn futures_join<F, Fut>(count: usize, make: F) -> Vec<Arc<RedisStore>>
where
    F: Fn() -> Fut,
    Fut: Future<Output = RedisStore>,
{
    let mut out = Vec::new();
    for _ in 0..count {
        out.push(Arc::new(make().await));
    }
    out
}

/// Calls until one succeeds (Redis coming back), at most `tries` times.
async fn until_ok<T>(
    tries: usize,
    mut call: impl AsyncFnMut() -> Result<T, StoreError>,
) -> (T, usize) {
    let mut failures = 0;
    loop {
        match call().await {
            Ok(value) => return (value, failures),
            Err(error) => {
                failures += 1;
                assert!(
                    failures < tries,
                    "still failing after {tries} calls: {error}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_each_call_and_recovers_by_itself() {
    // Persistent, so the state is still there after the restart.
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let store = connect(&server, "sg:").await;
    let triplet = keys("192.0.2.80", SENDER, "alice@example.org");
    assert_eq!(
        store.greylist(&triplet, &params(), T0, true).await.unwrap(),
        New { retry_in: 300 }
    );

    server.stop();
    // Each call comes back with the error the daemon turns into its fail mode.
    for at in [100, 101, 102] {
        let result = store.greylist(&triplet, &params(), T0 + at, true).await;
        assert!(
            matches!(result, Err(StoreError::Redis(_))),
            "{result:?} while Redis is down"
        );
    }
    assert!(store.counts(T0).await.is_err());
    assert!(store.list_triplets(10).await.is_err());

    server.restart();
    // The same store reconnects by itself; the first call may still see the old error.
    let (outcome, failures) = until_ok(40, async || {
        store.greylist(&triplet, &params(), T0 + 400, true).await
    })
    .await;
    assert_eq!(outcome, Passed { waited: 400 }, "the state survived");
    assert!(failures <= 2, "{failures} failed calls after the restart");
    assert_eq!(
        store.counts(T0 + 400).await.unwrap(),
        StoreCounts {
            pending: 0,
            passed: 1,
            awl: 1
        }
    );
}

/// A server that stops answering (paused, not gone): the call ends with the timeout
/// error rather than waiting for it, and the next call after the pause succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_fails_the_call_by_its_timeout() {
    let server = RedisServer::start();
    let store = connect(&server, "sg:").await;
    let triplet = keys("192.0.2.81", SENDER, "alice@example.org");
    assert_eq!(
        store.greylist(&triplet, &params(), T0, true).await.unwrap(),
        New { retry_in: 300 }
    );
    // Far longer than the store's 500 ms bound, so the call below surely meets it.
    assert_eq!(server.cli(&["CLIENT", "PAUSE", "3000", "ALL"]), "OK");
    match store.greylist(&triplet, &params(), T0 + 100, true).await {
        // The connection's own response timeout and the store's bound are both 500 ms;
        // either may speak first.
        Err(StoreError::Redis(message)) => assert!(
            message.contains("timed out") || message.contains("no answer within 500ms"),
            "the error names the timeout: {message}"
        ),
        other => panic!("answered while the server was paused: {other:?}"),
    }
    let (outcome, _) = until_ok(100, async || {
        store.greylist(&triplet, &params(), T0 + 400, true).await
    })
    .await;
    assert_eq!(
        outcome,
        Passed { waited: 400 },
        "the paused call wrote nothing"
    );
}

#[tokio::test]
async fn connecting_to_nothing_or_to_a_silent_server_fails() {
    let connect_to = async |port: u16| {
        RedisStore::connect(&RedisOptions {
            url: format!("redis://127.0.0.1:{port}/0"),
            timeout: Duration::from_millis(300),
            ..RedisOptions::default()
        })
        .await
    };
    let refused = connect_to(redis_server::free_port()).await;
    assert!(matches!(refused, Err(StoreError::Redis(_))));
    // The kernel completes the handshake, nobody ever answers: only the timeout ends
    // the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let result = connect_to(silent.local_addr().unwrap().port()).await;
    match result {
        Err(StoreError::Redis(message)) => assert!(
            message.contains("no answer within 300ms"),
            "the error names the timeout: {message}"
        ),
        other => panic!("connected to a silent server: {:?}", other.map(|_| ())),
    }

    let bad_url = RedisStore::connect(&RedisOptions {
        url: "http://example.test/".into(),
        ..RedisOptions::default()
    })
    .await;
    assert!(matches!(bad_url, Err(StoreError::Redis(_))));
}
