//! One suite, every backend: each case is written once, generic over a [`Backend`],
//! and `conformance!` runs it against SQLite (a temporary file) and Redis (a real
//! `redis-server` the test starts on a free loopback port), the latter with and
//! without the store's memory of recent entries.
//!
//! Where the backends differ by design (what `expire` returns: SQLite deletes rows,
//! Redis lets TTLs do it), the cases assert what a caller can observe either way:
//! decisions, counts, listings and charges.

mod common;
mod redis_server;

use std::time::Duration;

use common::*;
use redis_server::RedisServer;
use spamgate_engine::greylist::GreylistOutcome;
use spamgate_engine::learn::{LearnEvent, LearnParams, Observation, ObservationKind};
use spamgate_engine::outbound::{Account, AccountStatus, LimitKind, LimitOverrides};
use spamgate_engine::verdict::AllowListKind::{self, *};
use spamgate_store::{
    AccountAdmin, AccountEvent, AccountStore, AllowAdmin, AllowEntry, AllowStore, EventKind,
    FullStore, GreylistAdmin, GreylistDeleted, GreylistFilter, GreylistStore, LearnAdmin,
    LearnStore, RedisOptions, RedisStore, SqliteOptions, SqliteStore, StoreCounts,
};

use GreylistOutcome::*;

/// A way to open (and reopen) one store's state.
trait Backend: Send + Sync + 'static {
    type S: FullStore;
    fn open(&self) -> impl Future<Output = Self::S> + Send;
    fn close(&self, store: Self::S) -> impl Future<Output = ()> + Send;
}

/// Not the default either.
const EVENT_RETENTION: Duration = Duration::from_secs(10 * DAY);

struct Sqlite(Fixture);

impl Sqlite {
    async fn new() -> Sqlite {
        Sqlite(Fixture::new())
    }
}

impl Backend for Sqlite {
    type S = SqliteStore;

    async fn open(&self) -> SqliteStore {
        self.0.open_with(SqliteOptions {
            event_retention: EVENT_RETENTION,
            ..SqliteOptions::default()
        })
    }

    async fn close(&self, store: SqliteStore) {
        store.close().await;
    }
}

struct Redis {
    server: RedisServer,
    /// The store's memory of recent entries (0: every check asks Redis first).
    recent_entries: usize,
}

impl Redis {
    async fn new() -> Redis {
        Redis {
            server: RedisServer::start(),
            recent_entries: RedisOptions::default().recent_entries,
        }
    }

    async fn cold() -> Redis {
        Redis {
            recent_entries: 0,
            ..Redis::new().await
        }
    }

    fn options(&self) -> RedisOptions {
        RedisOptions {
            url: self.server.url(),
            // Not the default: nothing may depend on it.
            key_prefix: "conformance:".into(),
            timeout: Duration::from_secs(5),
            event_retention: EVENT_RETENTION,
            recent_entries: self.recent_entries,
            ..RedisOptions::default()
        }
    }
}

impl Backend for Redis {
    type S = RedisStore;

    async fn open(&self) -> RedisStore {
        RedisStore::connect(&self.options()).await.unwrap()
    }

    async fn close(&self, store: RedisStore) {
        drop(store);
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Sqlite::new().await).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Redis::new().await).await;
                }
            )*
        }
        mod redis_cold {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Redis::cold().await).await;
                }
            )*
        }
    };
}

conformance!(
    life_cycle,
    awl_use_after_the_refresh_interval_extends_its_life,
    a_sender_keyed_by_ptr_domain_passes_from_another_address,
    a_domain_keyed_triplet_counts_toward_the_network_that_created_it,
    a_retry_after_the_window_starts_over,
    pending_triplets_per_network_are_capped,
    record_false_writes_nothing,
    state_survives_closing_and_reopening,
    counts_ignore_expired_entries,
    list_is_bounded_and_latest_expiry_first,
    show_and_delete_find_entries_by_network_sender_recipient_and_client,
    concurrent_checks_are_atomic_per_triplet,
    a_shared_store_serves_several_hosts,
    clones_share_one_store,
    allow_entries_are_added_replaced_removed_and_listed,
    allow_entries_keep_their_scope_and_expiry,
    allow_changes_reach_every_host_with_the_generation,
    accounts_are_put_replaced_and_listed_by_name,
    a_burst_then_refusal_then_refill,
    a_refused_limit_stores_no_charge_at_all,
    a_dry_charge_stores_nothing,
    concurrent_charges_from_two_hosts_never_exceed_the_limit,
    events_newest_first_filtered_and_bounded,
    expiry_drops_old_events_and_idle_rate_states,
    learned_organisations_are_learned_listed_removed_and_cleared,
    learned_caps_hold_across_hosts,
    learned_records_expire,
);

async fn life_cycle(backend: impl Backend) {
    let store = backend.open().await;
    let first = || keys("192.0.2.10", SENDER, "alice@example.org");
    let other = || keys("192.0.2.10", SENDER, "bob@example.org");
    let neighbour = || keys("192.0.2.11", SENDER, "bob@example.org");
    check(
        &store,
        &params(),
        &[
            step(0, first(), New { retry_in: 300 }),
            step(
                60,
                first(),
                TooEarly {
                    waited: 60,
                    retry_in: 240,
                },
            ),
            step(
                299,
                first(),
                TooEarly {
                    waited: 299,
                    retry_in: 1,
                },
            ),
            step(400, first(), Passed { waited: 400 }),
            // The AWL is per address: another triplet from it passes at once...
            step(500, other(), AutoWhitelisted { since: T0 + 400 }),
            // ...but not from the neighbour in the same /24.
            step(500, neighbour(), New { retry_in: 300 }),
            // Within the refresh interval a hit rewrites nothing, so the AWL entry and
            // the passed triplet expire one lifetime after the pass.
            step(400 + 3599, other(), AutoWhitelisted { since: T0 + 400 }),
            step(400 + LIFETIME, other(), New { retry_in: 300 }),
            step(400 + LIFETIME, first(), New { retry_in: 300 }),
        ],
    )
    .await;
    let rows = store.list_triplets(10).await.unwrap();
    let first_row = rows
        .iter()
        .find(|row| row.recipient == "alice@example.org")
        .unwrap();
    assert_eq!(first_row.network, "192.0.2.0/24");
    assert_eq!(first_row.sender, SENDER);
    assert_eq!(
        (
            first_row.first_seen,
            first_row.last_seen,
            first_row.attempts,
            first_row.passed_at,
            first_row.expires_at,
        ),
        (
            T0 + 400 + LIFETIME,
            T0 + 400 + LIFETIME,
            1,
            None,
            T0 + 400 + LIFETIME + WINDOW + 1
        ),
        "the expired triplet started over"
    );
    assert_eq!(
        store.counts(T0 + 400 + LIFETIME).await.unwrap(),
        counts(2, 0, 0),
        "alice and bob from .10 start over; bob from .11 ran out of his window"
    );
    backend.close(store).await;
}

async fn awl_use_after_the_refresh_interval_extends_its_life(backend: impl Backend) {
    let store = backend.open().await;
    let first = || keys("198.51.100.7", SENDER, "alice@example.org");
    let other = || keys("198.51.100.7", SENDER, "carol@example.org");
    check(
        &store,
        &params(),
        &[
            step(0, first(), New { retry_in: 300 }),
            step(300, first(), Passed { waited: 300 }),
            step(
                300 + LIFETIME - 10,
                other(),
                AutoWhitelisted { since: T0 + 300 },
            ),
            step(
                300 + LIFETIME + 10,
                other(),
                AutoWhitelisted { since: T0 + 300 },
            ),
        ],
    )
    .await;
    let counts = store.counts(T0 + 300 + LIFETIME + 10).await.unwrap();
    assert_eq!(counts.awl, 1);
    assert_eq!(counts.passed, 0, "only the AWL entry was refreshed");
    backend.close(store).await;
}

async fn a_sender_keyed_by_ptr_domain_passes_from_another_address(backend: impl Backend) {
    let store = backend.open().await;
    let from = |client, name| keys_named(client, Some(name), SENDER, "alice@example.org");
    check(
        &store,
        &params(),
        &[
            step(
                0,
                from("192.0.2.20", "out-1.mail.example.net"),
                New { retry_in: 300 },
            ),
            step(
                400,
                from("198.51.100.20", "out-2.mail.example.net"),
                Passed { waited: 400 },
            ),
            // A third address of the same domain has no AWL entry but the triplet passed.
            step(
                500,
                from("203.0.113.20", "out-3.mail.example.net"),
                KnownTriplet {
                    passed_at: T0 + 400,
                },
            ),
            step(
                600,
                from("203.0.113.20", "out-3.mail.example.net"),
                AutoWhitelisted { since: T0 + 500 },
            ),
        ],
    )
    .await;
    let rows = store.list_triplets(10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].network, "domain:example.net");
    assert_eq!(rows[0].attempts, 3);
    assert_eq!(store.counts(T0 + 600).await.unwrap(), counts(0, 1, 2));
    backend.close(store).await;
}

/// A domain-keyed triplet counts toward the cap of the network that created it, also
/// when another network's client of the same domain passes it or brings it back.
async fn a_domain_keyed_triplet_counts_toward_the_network_that_created_it(backend: impl Backend) {
    let store = backend.open().await;
    let from = |client, name, n: u32| {
        keys_named(client, Some(name), SENDER, &format!("user{n}@example.org"))
    };
    let a = |n| from("192.0.2.20", "out-1.mail.example.net", n);
    let b = |n| from("198.51.100.20", "out-2.mail.example.net", n);
    let c = |n| from("203.0.113.20", "out-3.mail.example.net", n);
    check(
        &store,
        &params_with_cap(2),
        &[
            step(0, a(1), New { retry_in: 300 }),
            step(0, a(2), New { retry_in: 300 }),
            step(1, a(3), NetworkFull { pending: 2 }),
            // b passes a's triplet 1: a's network has one pending triplet left.
            step(400, b(1), Passed { waited: 400 }),
            step(401, a(3), New { retry_in: 300 }),
            step(402, a(4), NetworkFull { pending: 2 }),
        ],
    )
    .await;
    // Triplet 2 ran out of its window; c (b is on the AWL now) brings it back as its
    // own network's pending triplet.
    let later = WINDOW + 1;
    check(
        &store,
        &params_with_cap(1),
        &[
            step(later, c(2), New { retry_in: 300 }),
            step(later, c(5), NetworkFull { pending: 1 }),
        ],
    )
    .await;
    check(
        &store,
        &params_with_cap(2),
        &[
            // a still has triplet 3 (window from 401); triplet 2 is c's now.
            step(later, a(6), New { retry_in: 300 }),
            step(later, a(7), NetworkFull { pending: 2 }),
        ],
    )
    .await;
    backend.close(store).await;
}

async fn a_retry_after_the_window_starts_over(backend: impl Backend) {
    let store = backend.open().await;
    let late = || keys("192.0.2.30", SENDER, "late@example.org");
    // Another address: its pass must not put the first one on the AWL.
    let just_in_time = || keys("192.0.2.31", SENDER, "ontime@example.org");
    check(
        &store,
        &params(),
        &[
            step(0, late(), New { retry_in: 300 }),
            step(0, just_in_time(), New { retry_in: 300 }),
            // The window's last second still counts.
            step(WINDOW, just_in_time(), Passed { waited: WINDOW }),
            step(WINDOW + 1, late(), New { retry_in: 300 }),
            step(
                WINDOW + 200,
                late(),
                TooEarly {
                    waited: 199,
                    retry_in: 101,
                },
            ),
            step(WINDOW + 301, late(), Passed { waited: 300 }),
        ],
    )
    .await;
    backend.close(store).await;
}

async fn pending_triplets_per_network_are_capped(backend: impl Backend) {
    let store = backend.open().await;
    let to = |client, n: u32| keys(client, SENDER, &format!("user{n}@example.org"));
    check(
        &store,
        &params_with_cap(3),
        &[
            step(0, to("192.0.2.10", 1), New { retry_in: 300 }),
            step(0, to("192.0.2.11", 2), New { retry_in: 300 }),
            step(0, to("192.0.2.12", 3), New { retry_in: 300 }),
            step(0, to("192.0.2.13", 4), NetworkFull { pending: 3 }),
            // Not recorded: the retry is still full, not too early.
            step(400, to("192.0.2.13", 4), NetworkFull { pending: 3 }),
            // Other networks are not affected.
            step(400, to("198.51.100.13", 4), New { retry_in: 300 }),
            // A pass leaves the pending set and frees a place.
            step(400, to("192.0.2.10", 1), Passed { waited: 400 }),
            step(401, to("192.0.2.13", 4), New { retry_in: 300 }),
            step(402, to("192.0.2.14", 5), NetworkFull { pending: 3 }),
            // A too-early retry neither counts twice nor needs room.
            step(
                403,
                to("192.0.2.13", 4),
                TooEarly {
                    waited: 2,
                    retry_in: 298,
                },
            ),
            // Triplets 2 and 3 ran out of their window: they no longer count, even
            // though nothing deleted them yet.
            step(WINDOW + 1, to("192.0.2.15", 6), New { retry_in: 300 }),
            step(WINDOW + 1, to("192.0.2.16", 7), New { retry_in: 300 }),
            step(WINDOW + 1, to("192.0.2.17", 8), NetworkFull { pending: 3 }),
            // Triplet 2 coming back after its window is a new one, and needs room.
            step(WINDOW + 1, to("192.0.2.11", 2), NetworkFull { pending: 3 }),
        ],
    )
    .await;
    let rows = store.list_triplets(100).await.unwrap();
    let recipients: Vec<&str> = rows.iter().map(|row| row.recipient.as_str()).collect();
    assert!(!recipients.contains(&"user5@example.org"), "{recipients:?}");
    assert!(!recipients.contains(&"user8@example.org"), "{recipients:?}");
    assert_eq!(rows.len(), 7, "{recipients:?}");
    backend.close(store).await;
}

async fn record_false_writes_nothing(backend: impl Backend) {
    let store = backend.open().await;
    let triplet = || keys("203.0.113.5", SENDER, "alice@example.org");
    let check_only = |at| {
        let store = &store;
        async move {
            store
                .greylist(&triplet(), &params(), T0 + at, false)
                .await
                .unwrap()
        }
    };
    assert_eq!(check_only(0).await, New { retry_in: 300 });
    assert_eq!(store.counts(T0).await.unwrap(), StoreCounts::default());
    assert!(store.list_triplets(10).await.unwrap().is_empty());

    check(
        &store,
        &params(),
        &[step(0, triplet(), New { retry_in: 300 })],
    )
    .await;
    // A dry run after the delay says it would pass, twice: no AWL entry was written.
    assert_eq!(check_only(400).await, Passed { waited: 400 });
    assert_eq!(check_only(500).await, Passed { waited: 500 });
    let rows = store.list_triplets(10).await.unwrap();
    assert_eq!((rows[0].attempts, rows[0].last_seen), (1, T0));
    assert_eq!(store.counts(T0 + 500).await.unwrap(), counts(1, 0, 0));
    backend.close(store).await;
}

async fn state_survives_closing_and_reopening(backend: impl Backend) {
    let triplet = || keys("192.0.2.40", SENDER, "alice@example.org");
    let other = || keys("192.0.2.40", SENDER, "bob@example.org");

    let store = backend.open().await;
    check(
        &store,
        &params(),
        &[step(0, triplet(), New { retry_in: 300 })],
    )
    .await;
    backend.close(store).await;

    let store = backend.open().await;
    check(
        &store,
        &params(),
        &[step(400, triplet(), Passed { waited: 400 })],
    )
    .await;
    backend.close(store).await;

    let store = backend.open().await;
    check(
        &store,
        &params(),
        &[step(500, other(), AutoWhitelisted { since: T0 + 400 })],
    )
    .await;
    assert_eq!(store.counts(T0 + 500).await.unwrap(), counts(0, 1, 1));
    backend.close(store).await;
}

async fn counts_ignore_expired_entries(backend: impl Backend) {
    let store = backend.open().await;
    check(&store, &params_with_cap(1000), &expiring_mix()).await;

    // A pending triplet is valid through first_seen + WINDOW, gone a second later.
    let gone = T0 + WINDOW + 1;
    assert_eq!(store.counts(T0 + WINDOW).await.unwrap(), counts(29, 1, 1));
    assert_eq!(store.counts(gone).await.unwrap(), counts(5, 1, 1));
    // Whether expire() deletes rows (SQLite) or TTLs do (Redis), nothing live goes.
    store.expire(gone).await.unwrap();
    assert_eq!(store.counts(gone).await.unwrap(), counts(5, 1, 1));
    assert_eq!(
        store.counts(T0 + DAY + WINDOW + 1).await.unwrap(),
        counts(0, 1, 1)
    );
    // The passed triplet and its AWL entry go together, one lifetime after the pass.
    assert_eq!(
        store.counts(T0 + 400 + LIFETIME - 1).await.unwrap(),
        counts(0, 1, 1)
    );
    store.expire(T0 + 400 + LIFETIME).await.unwrap();
    assert_eq!(
        store.counts(T0 + 400 + LIFETIME).await.unwrap(),
        counts(0, 0, 0)
    );
    // And an expired entry is a new one to the greylist, deleted or not.
    check(
        &store,
        &params_with_cap(1000),
        &[step(
            400 + LIFETIME,
            keys("192.0.2.50", SENDER, "user0@example.org"),
            New { retry_in: 300 },
        )],
    )
    .await;
    backend.close(store).await;
}

async fn list_is_bounded_and_latest_expiry_first(backend: impl Backend) {
    let store = backend.open().await;
    for n in 0..5u64 {
        let keys = keys("192.0.2.60", SENDER, &format!("user{n}@example.org"));
        store
            .greylist(&keys, &params(), T0 + n, true)
            .await
            .unwrap();
    }
    let rows = store.list_triplets(2).await.unwrap();
    let recipients: Vec<&str> = rows.iter().map(|row| row.recipient.as_str()).collect();
    assert_eq!(recipients, ["user4@example.org", "user3@example.org"]);
    assert_eq!(rows[0].expires_at, T0 + 4 + WINDOW + 1);
    assert!(store.list_triplets(0).await.unwrap().is_empty());
    assert_eq!(store.list_triplets(100).await.unwrap().len(), 5);
    backend.close(store).await;
}

fn filter(network: Option<&str>, sender: Option<&str>, recipient: Option<&str>) -> GreylistFilter {
    GreylistFilter {
        network: network.map(str::to_string),
        sender: sender.map(str::to_string),
        recipient: recipient.map(str::to_string),
        client: None,
    }
}

async fn show_and_delete_find_entries_by_network_sender_recipient_and_client(
    backend: impl Backend,
) {
    let store = backend.open().await;
    let alice = || keys("192.0.2.10", SENDER, "alice@example.org");
    let bob = || keys("192.0.2.10", SENDER, "bob@example.org");
    let carol = || keys("198.51.100.7", "other@example.net", "carol@example.org");
    let cap = params_with_cap(2);
    check(
        &store,
        &cap,
        &[
            step(0, alice(), New { retry_in: 300 }),
            step(0, carol(), New { retry_in: 300 }),
            step(400, carol(), Passed { waited: 400 }),
            step(500, bob(), New { retry_in: 300 }),
        ],
    )
    .await;

    // (filter, recipients shown, latest-expiring first)
    let cases: &[(GreylistFilter, &[&str])] = &[
        (
            filter(Some("192.0.2.0/24"), None, None),
            &["bob@example.org", "alice@example.org"],
        ),
        (
            filter(None, Some(SENDER), Some("alice@example.org")),
            &["alice@example.org"],
        ),
        (
            filter(None, Some("other@example.net"), None),
            &["carol@example.org"],
        ),
        (
            filter(Some("192.0.2.0/24"), Some("other@example.net"), None),
            &[],
        ),
        (filter(Some("192.0.2.10"), None, None), &[]),
        // No triplet field: no triplet, not all of them.
        (GreylistFilter::default(), &[]),
    ];
    for (wanted, expected) in cases {
        let found = store.find_greylist(wanted, 10).await.unwrap();
        let recipients: Vec<&str> = found
            .triplets
            .iter()
            .map(|t| t.recipient.as_str())
            .collect();
        assert_eq!(&recipients, expected, "{wanted:?}");
        assert_eq!(found.awl, None, "{wanted:?}");
    }
    let limited = store
        .find_greylist(&filter(Some("192.0.2.0/24"), None, None), 1)
        .await
        .unwrap();
    assert_eq!(limited.triplets.len(), 1);

    let carol_client = GreylistFilter {
        client: Some("198.51.100.7".parse().unwrap()),
        ..GreylistFilter::default()
    };
    let found = store.find_greylist(&carol_client, 10).await.unwrap();
    let awl = found.awl.expect("carol's address is auto-whitelisted");
    assert_eq!(
        (awl.client.as_str(), awl.first_seen, awl.expires_at),
        ("198.51.100.7", T0 + 400, T0 + 400 + LIFETIME)
    );
    assert!(found.triplets.is_empty());

    // The /24 is at its cap of two pending triplets: a third is refused...
    let dave = || keys("192.0.2.11", SENDER, "dave@example.org");
    check(
        &store,
        &cap,
        &[step(600, dave(), NetworkFull { pending: 2 })],
    )
    .await;
    // ...until alice's is deleted: the cap stops counting it at once.
    let deleted = store
        .delete_greylist(&filter(None, None, Some("alice@example.org")))
        .await
        .unwrap();
    assert_eq!(
        deleted,
        GreylistDeleted {
            triplets: 1,
            awl: 0
        }
    );
    check(
        &store,
        &cap,
        &[
            step(601, dave(), New { retry_in: 300 }),
            // A deleted triplet starts over as new.
            step(602, alice(), NetworkFull { pending: 2 }),
        ],
    )
    .await;

    // Deleting the AWL entry: carol's address is greylisted again for a new triplet
    // (her passed triplet still passes).
    let deleted = store.delete_greylist(&carol_client).await.unwrap();
    assert_eq!(
        deleted,
        GreylistDeleted {
            triplets: 0,
            awl: 1
        }
    );
    let carol_new = || keys("198.51.100.7", SENDER, "erin@example.org");
    check(
        &store,
        &params(),
        &[step(700, carol_new(), New { retry_in: 300 })],
    )
    .await;
    assert_eq!(
        store.delete_greylist(&carol_client).await.unwrap(),
        GreylistDeleted::default(),
        "nothing left to delete"
    );
    assert_eq!(
        store
            .delete_greylist(&GreylistFilter::default())
            .await
            .unwrap(),
        GreylistDeleted::default(),
        "an empty filter deletes nothing"
    );
    let left = store.list_triplets(10).await.unwrap();
    assert_eq!(left.len(), 4, "{left:?}");
    backend.close(store).await;
}

async fn concurrent_checks_are_atomic_per_triplet(backend: impl Backend<S: Clone>) {
    let store = backend.open().await;
    check_concurrently(&store, 400).await;
    backend.close(store).await;
}

/// Two stores on the same state at once (two MX hosts; for SQLite, two processes on
/// one file): what one writes, the other decides on.
async fn a_shared_store_serves_several_hosts(backend: impl Backend) {
    let mx1 = backend.open().await;
    let mx2 = backend.open().await;
    let triplet = || keys("203.0.113.70", SENDER, "alice@example.org");
    let other = || keys("203.0.113.70", SENDER, "bob@example.org");
    check(
        &mx1,
        &params(),
        &[step(0, triplet(), New { retry_in: 300 })],
    )
    .await;
    check(
        &mx2,
        &params(),
        &[
            step(
                100,
                triplet(),
                TooEarly {
                    waited: 100,
                    retry_in: 200,
                },
            ),
            step(400, triplet(), Passed { waited: 400 }),
        ],
    )
    .await;
    check(
        &mx1,
        &params(),
        &[step(500, other(), AutoWhitelisted { since: T0 + 400 })],
    )
    .await;
    let rows = mx1.list_triplets(10).await.unwrap();
    let alice = rows
        .iter()
        .find(|row| row.recipient == "alice@example.org")
        .unwrap();
    assert_eq!(alice.attempts, 3);
    backend.close(mx2).await;
    backend.close(mx1).await;
}

// ---- the runtime allow-list ----

enum AllowOp {
    Add(AllowListKind, &'static str, &'static str, u64),
    Remove(AllowListKind, &'static str),
}

/// Each operation with what it returns (new / existed) and whether the generation moves.
async fn check_allow(store: &(impl AllowStore + AllowAdmin), steps: &[(AllowOp, bool, bool)]) {
    for (index, (op, returns, moves)) in steps.iter().enumerate() {
        let before = store.allow_generation().await.unwrap();
        let returned = match *op {
            AllowOp::Add(kind, value, note, at) => store
                .allow_add(&allow_entry(kind, value, note, at))
                .await
                .unwrap(),
            AllowOp::Remove(kind, value) => store.allow_remove(kind, value).await.unwrap(),
        };
        let after = store.allow_generation().await.unwrap();
        assert_eq!(returned, *returns, "step {index}");
        assert_eq!(after != before, *moves, "step {index}: {before} -> {after}");
    }
}

/// A store is a handle: what one clone writes, another reads at once, so the daemon's
/// tasks (and later the abuse desk) each hold a clone instead of an `Arc`.
async fn clones_share_one_store(backend: impl Backend<S: Clone>) {
    let store = backend.open().await;
    let clone = store.clone();
    let triplet = || keys("192.0.2.30", SENDER, "alice@example.org");
    assert_eq!(
        clone
            .greylist(&triplet(), &params(), T0, true)
            .await
            .unwrap(),
        New { retry_in: 300 }
    );
    assert_eq!(
        store
            .greylist(&triplet(), &params(), T0 + 60, true)
            .await
            .unwrap(),
        TooEarly {
            waited: 60,
            retry_in: 240
        }
    );
    let bob = Account {
        username: "bob@example.jp".into(),
        status: AccountStatus::Suspended,
        limits: LimitOverrides::default(),
        note: String::new(),
        updated_at: T0,
    };
    store.put_account(&bob).await.unwrap();
    assert_eq!(clone.account("bob@example.jp").await.unwrap(), Some(bob));
    drop(clone);
    backend.close(store).await;
}

async fn allow_entries_are_added_replaced_removed_and_listed(backend: impl Backend) {
    use AllowOp::*;
    let store = backend.open().await;
    assert!(store.allow_list().await.unwrap().is_empty());
    assert_eq!(store.allow_generation().await.unwrap(), 0);
    check_allow(
        &store,
        &[
            (Add(Sender, "ceo@example.com", "ticket 1", T0), true, true),
            // The same kind and value replaces the note and time: not new, still a change.
            (
                Add(Sender, "ceo@example.com", "ticket 2", T0 + 5),
                false,
                true,
            ),
            // The same value under another kind is another entry.
            (Add(Recipient, "ceo@example.com", "", T0 + 6), true, true),
            (
                Add(ClientAddress, "192.0.2.25", "partner", T0 + 7),
                true,
                true,
            ),
            (Add(ClientName, "mx.example.net", "", T0 + 8), true, true),
            (
                Add(ClientAddress, "198.51.100.0/24", "", T0 + 9),
                true,
                true,
            ),
            (
                Add(ClientAddress, "2001:db8::/32", "v6", T0 + 10),
                true,
                true,
            ),
            (Remove(Recipient, "ceo@example.com"), true, true),
            // Removing what is not there changes nothing.
            (Remove(Recipient, "ceo@example.com"), false, false),
            (Remove(Sender, "nobody@example.com"), false, false),
            (Remove(ClientName, "192.0.2.25"), false, false),
        ],
    )
    .await;
    assert_eq!(
        store.allow_list().await.unwrap(),
        [
            allow_entry(ClientAddress, "192.0.2.25", "partner", T0 + 7),
            allow_entry(ClientAddress, "198.51.100.0/24", "", T0 + 9),
            allow_entry(ClientAddress, "2001:db8::/32", "v6", T0 + 10),
            allow_entry(ClientName, "mx.example.net", "", T0 + 8),
            allow_entry(Sender, "ceo@example.com", "ticket 2", T0 + 5),
        ],
        "ordered by kind, then value"
    );
    backend.close(store).await;
}

async fn allow_entries_keep_their_scope_and_expiry(backend: impl Backend) {
    use spamgate_engine::verdict::AllowScope;
    let store = backend.open().await;
    let scoped = AllowEntry {
        scope: AllowScope::Greylist,
        expires_at: Some(T0 + 86_400),
        ..allow_entry(Sender, "partner@example.org", "until tomorrow", T0)
    };
    let trusted = allow_entry(ClientAddress, "192.0.2.0/28", "relay", T0);
    store.allow_add(&scoped).await.unwrap();
    store.allow_add(&trusted).await.unwrap();
    assert_eq!(
        store.allow_list().await.unwrap(),
        vec![trusted.clone(), scoped.clone()]
    );
    // Replacing an entry replaces its scope and expiry too.
    let widened = AllowEntry {
        expires_at: None,
        ..scoped
    };
    store.allow_add(&widened).await.unwrap();
    assert_eq!(store.allow_list().await.unwrap(), vec![trusted, widened]);
}

/// `spamgate allow add` on one host; the daemons of every host poll the generation.
async fn allow_changes_reach_every_host_with_the_generation(backend: impl Backend) {
    let daemon = backend.open().await;
    let cli = backend.open().await;
    let seen = daemon.allow_generation().await.unwrap();
    let entry = allow_entry(Sender, "a@example.com", "", T0);
    assert!(cli.allow_add(&entry).await.unwrap());
    let moved = daemon.allow_generation().await.unwrap();
    assert_ne!(moved, seen);
    assert_eq!(
        daemon.allow_list().await.unwrap(),
        std::slice::from_ref(&entry)
    );
    backend.close(cli).await;

    // Both are kept: a restart sees them.
    backend.close(daemon).await;
    let reopened = backend.open().await;
    assert_eq!(reopened.allow_generation().await.unwrap(), moved);
    assert_eq!(reopened.allow_list().await.unwrap(), [entry]);
    assert!(
        reopened
            .allow_remove(Sender, "a@example.com")
            .await
            .unwrap()
    );
    assert!(reopened.allow_list().await.unwrap().is_empty());
    backend.close(reopened).await;
}

// ---- accounts, charges, events ----

use LimitKind::{MessagesPerHour, RecipientsPerDay};

async fn accounts_are_put_replaced_and_listed_by_name(backend: impl Backend) {
    let store = backend.open().await;
    assert_eq!(store.account("alice@example.jp").await.unwrap(), None);
    assert!(store.list_accounts(10).await.unwrap().is_empty());
    for name in ["carol@example.jp", "alice@example.jp", "bob@example.jp"] {
        store.put_account(&Account::new(name, T0)).await.unwrap();
    }
    let bob = Account {
        username: "bob@example.jp".into(),
        status: AccountStatus::Suspended,
        limits: LimitOverrides {
            messages_per_hour: Some(20),
            recipients_per_day: None,
        },
        note: "suspended by the abuse desk".into(),
        updated_at: T0 + 60,
    };
    store.put_account(&bob).await.unwrap();
    assert_eq!(
        store.account("bob@example.jp").await.unwrap(),
        Some(bob.clone())
    );
    assert_eq!(
        store.account("alice@example.jp").await.unwrap(),
        Some(Account::new("alice@example.jp", T0))
    );
    let listed = store.list_accounts(100).await.unwrap();
    let order: Vec<&str> = listed.iter().map(|a| a.username.as_str()).collect();
    assert_eq!(
        order,
        ["alice@example.jp", "bob@example.jp", "carol@example.jp"]
    );
    assert_eq!(listed[1], bob);
    let first_two: Vec<String> = store
        .list_accounts(2)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.username)
        .collect();
    assert_eq!(first_two, ["alice@example.jp", "bob@example.jp"]);
    assert!(store.list_accounts(0).await.unwrap().is_empty());
    backend.close(store).await;

    let reopened = backend.open().await;
    assert_eq!(reopened.account("bob@example.jp").await.unwrap(), Some(bob));
    backend.close(reopened).await;
}

async fn a_burst_then_refusal_then_refill(backend: impl Backend) {
    let store = backend.open().await;
    let rate = hourly(10);
    let one = [(MessagesPerHour, rate, 1)];
    for used in 1..=10 {
        charge(&store, "a@example.jp", NOW_MS, &one, &[(true, used)]).await;
    }
    let refused = charge(&store, "a@example.jp", NOW_MS, &one, &[(false, 10)]).await;
    assert_eq!(
        refused[0].1.retry_after_ms, 360_000,
        "one message per 6 min"
    );
    // Another account has its own limit.
    charge(&store, "b@example.jp", NOW_MS, &one, &[(true, 1)]).await;
    // The count survives a reconnect (a restart of the daemon).
    backend.close(store).await;
    let store = backend.open().await;
    // One interval later exactly one more fits.
    let later = NOW_MS + 360_000;
    charge(&store, "a@example.jp", later, &one, &[(true, 10)]).await;
    charge(&store, "a@example.jp", later, &one, &[(false, 10)]).await;
    // After a whole period the full burst is back.
    charge(
        &store,
        "a@example.jp",
        later + 3_600_000,
        &[(MessagesPerHour, rate, 10)],
        &[(true, 10)],
    )
    .await;
    backend.close(store).await;
}

async fn a_refused_limit_stores_no_charge_at_all(backend: impl Backend) {
    let store = backend.open().await;
    let user = "c@example.jp";
    let both = |recipients| {
        [
            (MessagesPerHour, hourly(100), 1),
            (RecipientsPerDay, daily(5), recipients),
        ]
    };
    charge(&store, user, NOW_MS, &both(3), &[(true, 1), (true, 3)]).await;
    // Three more recipients exceed 5: the message that would fit is not counted either.
    charge(&store, user, NOW_MS, &both(3), &[(true, 2), (false, 3)]).await;
    charge(&store, user, NOW_MS, &both(3), &[(true, 2), (false, 3)]).await;
    charge(&store, user, NOW_MS, &both(2), &[(true, 2), (true, 5)]).await;
    // The same kind twice in one call: the second sees the first.
    let twice = [
        (MessagesPerHour, hourly(100), 1),
        (MessagesPerHour, hourly(100), 1),
    ];
    charge(&store, user, NOW_MS, &twice, &[(true, 3), (true, 4)]).await;
    charge(
        &store,
        user,
        NOW_MS,
        &[(MessagesPerHour, hourly(100), 1)],
        &[(true, 5)],
    )
    .await;
    assert!(
        store
            .charge(user, &[], NOW_MS, true)
            .await
            .unwrap()
            .is_empty()
    );
    backend.close(store).await;
}

async fn a_dry_charge_stores_nothing(backend: impl Backend) {
    let store = backend.open().await;
    let charges = [(MessagesPerHour, hourly(10), 4)];
    charge(&store, "d@example.jp", NOW_MS, &charges, &[(true, 4)]).await;
    for _ in 0..5 {
        let dry = store
            .charge("d@example.jp", &charges, NOW_MS, false)
            .await
            .unwrap();
        assert_eq!((dry[0].1.allowed, dry[0].1.used), (true, 8));
    }
    let dry = store
        .charge("e@example.jp", &charges, NOW_MS, false)
        .await
        .unwrap();
    assert_eq!((dry[0].1.allowed, dry[0].1.used), (true, 4));
    charge(&store, "d@example.jp", NOW_MS, &charges, &[(true, 8)]).await;
    charge(&store, "e@example.jp", NOW_MS, &charges, &[(true, 4)]).await;
    backend.close(store).await;
}

/// Two hosts (two stores on one state) charging one account at once.
async fn concurrent_charges_from_two_hosts_never_exceed_the_limit(backend: impl Backend<S: Clone>) {
    let hosts = [backend.open().await, backend.open().await];
    charge_concurrently(&hosts).await;
    for host in hosts {
        backend.close(host).await;
    }
}

async fn events_newest_first_filtered_and_bounded(backend: impl Backend) {
    let store = backend.open().await;
    let suspended = EventKind::StatusChanged {
        from: AccountStatus::Active,
        to: AccountStatus::Suspended,
    };
    let rejected = EventKind::Rejected {
        status: AccountStatus::Suspended,
    };
    let recorded = [
        event(T0, "a@example.jp", exceeded(100)),
        event(T0 + 10, "b@example.jp", exceeded(101)),
        event(T0 + 20, "a@example.jp", suspended),
        event(T0 + 20, "a@example.jp", rejected),
        event(T0 + 30, "b@example.jp", rejected),
        // The very same event twice is two events.
        event(T0 + 30, "b@example.jp", rejected),
    ];
    for event in &recorded {
        store.record_event(event).await.unwrap();
    }
    let check = async |username: Option<&str>,
                       (since, until): (u64, Option<u64>),
                       limit: usize,
                       expected: &[usize]| {
        let got = store.events(username, since, until, limit).await.unwrap();
        let wanted: Vec<AccountEvent> = expected.iter().map(|&i| recorded[i].clone()).collect();
        assert_eq!(
            got, wanted,
            "{username:?} since {since} until {until:?} limit {limit}"
        );
    };
    // Same second: the later recorded comes first.
    check(None, (0, None), 100, &[5, 4, 3, 2, 1, 0]).await;
    check(None, (0, None), 2, &[5, 4]).await;
    check(None, (0, None), 0, &[]).await;
    check(None, (T0 + 10, None), 100, &[5, 4, 3, 2, 1]).await;
    check(Some("a@example.jp"), (0, None), 100, &[3, 2, 0]).await;
    check(Some("a@example.jp"), (T0 + 1, None), 100, &[3, 2]).await;
    check(Some("a@example.jp"), (T0 + 1, None), 1, &[3]).await;
    check(Some("b@example.jp"), (T0 + 31, None), 100, &[]).await;
    check(Some("nobody@example.jp"), (0, None), 100, &[]).await;
    // `until` bounds the range before `limit` picks the newest of it (not the newest
    // overall, then filtered: that would leave nothing here).
    check(None, (0, Some(T0 + 20)), 2, &[3, 2]).await;
    check(None, (0, Some(T0 + 20)), 100, &[3, 2, 1, 0]).await;
    check(None, (0, Some(T0 + 9)), 1, &[0]).await;
    check(None, (T0 + 10, Some(T0 + 10)), 100, &[1]).await;
    check(Some("b@example.jp"), (0, Some(T0 + 29)), 1, &[1]).await;
    check(Some("a@example.jp"), (T0 + 1, Some(T0 + 19)), 100, &[]).await;
    check(None, (T0 + 30, Some(T0 + 20)), 100, &[]).await;
    backend.close(store).await;
}

async fn expiry_drops_old_events_and_idle_rate_states(backend: impl Backend) {
    let store = backend.open().await;
    for user in ["h1@example.jp", "h2@example.jp"] {
        charge(
            &store,
            user,
            NOW_MS,
            &[(MessagesPerHour, hourly(10), 10)],
            &[(true, 10)],
        )
        .await;
    }
    for (at, user) in [
        (T0, "h1@example.jp"),
        (T0 + 1, "h2@example.jp"),
        (T0 + 5 * DAY, "h1@example.jp"),
    ] {
        store
            .record_event(&event(at, user, exceeded(10)))
            .await
            .unwrap();
    }
    // While a state matters, expiry keeps it: still full half an hour on.
    store.expire(T0 + 1800).await.unwrap();
    let half_hour = (T0 + 1800) * 1000;
    charge(
        &store,
        "h1@example.jp",
        half_hour,
        &[(MessagesPerHour, hourly(10), 6)],
        &[(false, 5)],
    )
    .await;
    // Long after, whether deleted or not, a state is as good as fresh.
    let later = T0 + 1800 + 3600;
    store.expire(later).await.unwrap();
    charge(
        &store,
        "h2@example.jp",
        later * 1000,
        &[(MessagesPerHour, hourly(10), 10)],
        &[(true, 10)],
    )
    .await;

    // Events older than the retention (10 days) go; the newer one stays, in both
    // listings.
    assert_eq!(store.events(None, 0, None, 10).await.unwrap().len(), 3);
    store.expire(T0 + 10 * DAY + 1).await.unwrap();
    let kept = [event(T0 + 5 * DAY, "h1@example.jp", exceeded(10))];
    assert_eq!(store.events(None, 0, None, 10).await.unwrap(), kept);
    assert_eq!(
        store
            .events(Some("h1@example.jp"), 0, None, 10)
            .await
            .unwrap(),
        kept
    );
    assert!(
        store
            .events(Some("h2@example.jp"), 0, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    backend.close(store).await;
}

fn learn_params() -> LearnParams {
    LearnParams {
        enabled: true,
        min_networks: 3,
        min_span: Duration::from_secs(3600),
        window: Duration::from_secs(10 * DAY),
        ttl: Duration::from_secs(2 * DAY),
        refuse_for: Duration::from_secs(10 * DAY),
        max_entries: 1,
        max_tracked: 3,
        max_networks_per_org: 4,
        ..LearnParams::default()
    }
}

fn seen(org: &str, network: &str) -> Observation {
    Observation {
        org: org.into(),
        network: network.into(),
        kind: ObservationKind::Passed,
    }
}

/// Three networks of `org` an hour apart, from `at`: the third learns (if the cap lets it).
async fn three_networks(store: &impl LearnStore, org: &str, at: u64) -> Vec<&'static str> {
    let mut events = Vec::new();
    for (i, network) in ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]
        .iter()
        .enumerate()
    {
        let event = store
            .learn_observe(&seen(org, network), &learn_params(), at + i as u64 * 1800)
            .await
            .unwrap();
        events.push(event.id());
    }
    events
}

async fn learned_organisations_are_learned_listed_removed_and_cleared(backend: impl Backend) {
    let store = backend.open().await;
    let params = learn_params();
    assert_eq!(
        three_networks(&store, "example.com", T0).await,
        ["counted", "counted", "learned"]
    );
    let now = T0 + 3600;
    let record = store.learned("example.com", now).await.unwrap().unwrap();
    assert!(record.is_learned(now), "{record:?}");
    assert_eq!(record.learned_until, Some(now + 2 * DAY));
    assert_eq!(record.networks.len(), 3);
    assert_eq!(store.learned("example.org", now).await.unwrap(), None);

    // Survives a restart.
    backend.close(store).await;
    let store = backend.open().await;
    // A second organisation, tracked but not learned (one network).
    store
        .learn_observe(&seen("example.net", "192.0.2.0/24"), &params, now)
        .await
        .unwrap();
    let list = store.learned_list(now, 10).await.unwrap();
    let orgs: Vec<(&str, bool)> = list
        .iter()
        .map(|r| (r.org.as_str(), r.is_learned(now)))
        .collect();
    assert_eq!(orgs, [("example.com", true), ("example.net", false)]);
    assert_eq!(store.learned_list(now, 1).await.unwrap().len(), 1);

    // Evidence against revokes at once.
    let against = Observation {
        kind: ObservationKind::Against {
            why: "listed(bl.example):192.0.2.9".into(),
        },
        ..seen("example.com", "192.0.2.0/24")
    };
    let event = store
        .learn_observe(&against, &params, now + 1)
        .await
        .unwrap();
    assert!(
        matches!(event, LearnEvent::Refused { revoked: true, .. }),
        "{event:?}"
    );
    let record = store
        .learned("example.com", now + 1)
        .await
        .unwrap()
        .unwrap();
    assert!(!record.is_learned(now + 1) && record.is_refused(now + 1));

    assert!(store.learned_remove("EXAMPLE.com").await.unwrap());
    assert!(!store.learned_remove("example.com").await.unwrap());
    assert_eq!(store.learned("example.com", now + 1).await.unwrap(), None);
    // Removed: it starts over, the refusal gone with it.
    let event = store
        .learn_observe(&seen("example.com", "192.0.2.0/24"), &params, now + 2)
        .await
        .unwrap();
    assert_eq!(event, LearnEvent::Counted { networks: 1 });

    assert_eq!(store.learned_clear().await.unwrap(), 2);
    assert!(store.learned_list(now, 10).await.unwrap().is_empty());
    backend.close(store).await;
}

async fn learned_caps_hold_across_hosts(backend: impl Backend) {
    let mx1 = backend.open().await;
    let mx2 = backend.open().await;
    assert_eq!(
        three_networks(&mx1, "example.com", T0).await,
        ["counted", "counted", "learned"]
    );
    // max_entries = 1: another host's organisation qualifies but is capped.
    assert_eq!(
        three_networks(&mx2, "example.org", T0).await,
        ["counted", "counted", "capped"]
    );
    assert_eq!(
        mx1.learned("example.org", T0 + 3600)
            .await
            .unwrap()
            .unwrap()
            .learned_until,
        None
    );
    // max_tracked = 3: a third is followed, a fourth is not.
    let params = learn_params();
    let at = T0 + 3600;
    let event = mx2
        .learn_observe(&seen("example.net", "192.0.2.0/24"), &params, at)
        .await
        .unwrap();
    assert_eq!(event.id(), "counted");
    let event = mx1
        .learn_observe(&seen("example.info", "192.0.2.0/24"), &params, at)
        .await
        .unwrap();
    assert_eq!(event, LearnEvent::NotTracked { max_tracked: 3 });
    assert_eq!(mx1.learned("example.info", at).await.unwrap(), None);
    backend.close(mx1).await;
    backend.close(mx2).await;
}

async fn learned_records_expire(backend: impl Backend) {
    let store = backend.open().await;
    let params = learn_params();
    three_networks(&store, "example.com", T0).await;
    let learned_at = T0 + 3600;
    // The exemption ends after its TTL; the record stays while its passes are in the window.
    let after_ttl = learned_at + 2 * DAY;
    let record = store
        .learned("example.com", after_ttl)
        .await
        .unwrap()
        .unwrap();
    assert!(!record.is_learned(after_ttl));
    // Past the window nothing is left, and the organisation no longer counts as tracked.
    let gone = learned_at + 10 * DAY;
    assert_eq!(store.learned("example.com", gone).await.unwrap(), None);
    assert!(store.learned_list(gone, 10).await.unwrap().is_empty());
    store.expire(gone).await.unwrap();
    for org in ["a.example", "b.example", "c.example"] {
        let event = store
            .learn_observe(&seen(org, "192.0.2.0/24"), &params, gone)
            .await
            .unwrap();
        assert_eq!(event.id(), "counted", "{org}");
    }
    backend.close(store).await;
}
