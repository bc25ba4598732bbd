//! Shared fixtures: real SQLite files in temporary directories, time passed in.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use spamgate_engine::greylist::{GreylistKeys, GreylistOutcome, GreylistParams, KeyScheme};
use spamgate_engine::outbound::{GcraOutcome, LimitKind, Rate};
use spamgate_engine::verdict::AllowListKind;
use spamgate_store::{
    AccountEvent, AccountStore, AllowEntry, EventKind, GreylistAdmin, GreylistStore, SqliteOptions,
    SqliteStore, StoreCounts, StoreError,
};
use tempfile::TempDir;

/// An arbitrary "now" for the first attempt.
pub const T0: u64 = 1_700_000_000;
pub const DAY: u64 = 86_400;
pub const LIFETIME: u64 = 35 * DAY;
pub const WINDOW: u64 = 2 * DAY;

pub struct Fixture {
    pub dir: TempDir,
    pub path: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("greylist.sqlite");
        Fixture { dir, path }
    }

    pub fn open(&self) -> SqliteStore {
        self.open_with(SqliteOptions::default())
    }

    pub fn open_with(&self, options: SqliteOptions) -> SqliteStore {
        SqliteStore::open(&self.path, options).unwrap()
    }
}

/// postgrey's defaults (300 s delay, 2-day window, 35-day lifetime, 1 h refresh).
pub fn params() -> GreylistParams {
    GreylistParams::default()
}

pub fn params_with_cap(max_pending_per_network: u32) -> GreylistParams {
    GreylistParams {
        max_pending_per_network,
        ..GreylistParams::default()
    }
}

/// Keys under the default policy (/24, /64) without a confirmed host name.
pub fn keys(client: &str, sender: &str, recipient: &str) -> GreylistKeys {
    keys_named(client, None, sender, recipient)
}

pub fn keys_named(
    client: &str,
    confirmed_name: Option<&str>,
    sender: &str,
    recipient: &str,
) -> GreylistKeys {
    GreylistKeys::new(
        &KeyScheme::default(),
        client.parse().unwrap(),
        confirmed_name,
        sender,
        recipient,
    )
}

pub fn secs(value: u64) -> Duration {
    Duration::from_secs(value)
}

/// One attempt: seconds after [`T0`], the keys, and the expected outcome.
pub struct Step {
    pub at: u64,
    pub keys: GreylistKeys,
    pub expected: GreylistOutcome,
}

pub fn step(at: u64, keys: GreylistKeys, expected: GreylistOutcome) -> Step {
    Step { at, keys, expected }
}

/// Applies the steps in order and compares every outcome.
pub async fn check(store: &impl GreylistStore, params: &GreylistParams, steps: &[Step]) {
    for (index, step) in steps.iter().enumerate() {
        let outcome = store
            .greylist(&step.keys, params, T0 + step.at, true)
            .await
            .unwrap();
        assert_eq!(
            outcome, step.expected,
            "step {index} at T0+{} for {} {} -> {}",
            step.at, step.keys.client, step.keys.sender, step.keys.recipient
        );
    }
}

pub const SENDER: &str = "news@example.com";

pub fn counts(pending: u64, passed: u64, awl: u64) -> StoreCounts {
    StoreCounts {
        pending,
        passed,
        awl,
    }
}

/// 25 first attempts from 192.0.2.50 (one of them passes at +400, putting the address
/// on the AWL), then 5 from 198.51.100.50 a day later: entries that expire at three
/// different times.
pub fn expiring_mix() -> Vec<Step> {
    let to = |client, n: u32| keys(client, SENDER, &format!("user{n}@example.org"));
    let mut steps: Vec<Step> = (0..25)
        .map(|n| {
            step(
                0,
                to("192.0.2.50", n),
                GreylistOutcome::New { retry_in: 300 },
            )
        })
        .collect();
    steps.push(step(
        400,
        to("192.0.2.50", 0),
        GreylistOutcome::Passed { waited: 400 },
    ));
    steps.extend((25..30).map(|n| {
        step(
            DAY,
            to("198.51.100.50", n),
            GreylistOutcome::New { retry_in: 300 },
        )
    }));
    steps
}

/// `calls` checks at once through clones of `store`: the even ones retry one shared
/// triplet (from many addresses of its network), the odd ones are first attempts of
/// their own. Every decision must be atomic: one `New` for the shared triplet, all its
/// other checks `TooEarly`, and every attempt counted.
pub async fn check_concurrently<S: GreylistStore + GreylistAdmin + Clone>(store: &S, calls: u32) {
    let params = params_with_cap(10_000);
    let mut tasks = Vec::new();
    for n in 0..calls {
        let (store, params) = (store.clone(), params.clone());
        tasks.push(tokio::spawn(async move {
            let shared = n % 2 == 0;
            let recipient = if shared {
                "shared@example.org".to_string()
            } else {
                format!("user{n}@example.org")
            };
            let keys = keys(&format!("192.0.2.{}", n % 250), SENDER, &recipient);
            (shared, store.greylist(&keys, &params, T0, true).await)
        }));
    }
    let mut shared_outcomes = Vec::new();
    for task in tasks {
        let (shared, outcome) = task.await.unwrap();
        let outcome = outcome.unwrap();
        if shared {
            shared_outcomes.push(outcome);
        } else {
            assert_eq!(outcome, GreylistOutcome::New { retry_in: 300 });
        }
    }
    let shared_calls = calls.div_ceil(2);
    let new = shared_outcomes
        .iter()
        .filter(|outcome| matches!(outcome, GreylistOutcome::New { .. }))
        .count();
    assert_eq!(new, 1, "exactly one New for the shared triplet");
    let too_early = GreylistOutcome::TooEarly {
        waited: 0,
        retry_in: 300,
    };
    assert_eq!(
        shared_outcomes.iter().filter(|&o| *o == too_early).count() as u32,
        shared_calls - 1
    );
    let triplets = u64::from(calls / 2 + 1);
    assert_eq!(store.counts(T0).await.unwrap(), counts(triplets, 0, 0));
    let rows = store.list_triplets(calls as usize).await.unwrap();
    let shared = rows
        .iter()
        .find(|row| row.recipient == "shared@example.org")
        .unwrap();
    assert_eq!(shared.attempts, shared_calls, "no lost update");
}

/// `count` distinct triplets, one per client address, spread over many networks like
/// real first attempts.
pub fn spread_keys(count: u32) -> Vec<GreylistKeys> {
    (0..count)
        .map(|n| {
            let [_, a, b, c] = n.to_be_bytes();
            let client = format!("2001:db8:{a:x}{b:02x}:{c:x}::25");
            keys(
                &client,
                "newsletter@example.com",
                &format!("user{n}@example.org"),
            )
        })
        .collect()
}

/// Checks per second with `tasks` tasks (each a clone of `store`), each awaiting its
/// checks one after another: a measurement, never an assertion.
pub async fn checks_per_second<S: GreylistStore + Clone>(
    store: &S,
    keys: &[GreylistKeys],
    now: u64,
    tasks: usize,
) -> f64 {
    let mut per_task: Vec<Vec<GreylistKeys>> = vec![Vec::new(); tasks];
    for (index, keys) in keys.iter().enumerate() {
        per_task[index % tasks].push(keys.clone());
    }
    let start = std::time::Instant::now();
    let running: Vec<_> = per_task
        .into_iter()
        .map(|batch| {
            let store = store.clone();
            tokio::spawn(async move {
                for keys in batch {
                    store.greylist(&keys, &params(), now, true).await.unwrap();
                }
            })
        })
        .collect();
    for task in running {
        task.await.unwrap();
    }
    keys.len() as f64 / start.elapsed().as_secs_f64()
}

// ---- accounts ----

/// Milliseconds at [`T0`].
pub const NOW_MS: u64 = T0 * 1000;

pub fn hourly(limit: u32) -> Rate {
    Rate {
        limit,
        period: secs(3600),
        burst: limit,
    }
}

pub fn daily(limit: u32) -> Rate {
    Rate {
        limit,
        period: secs(DAY),
        burst: limit,
    }
}

/// One charge call: (kind, rate, cost) each, expecting (allowed, used) for each.
pub async fn charge(
    store: &impl AccountStore,
    username: &str,
    now_ms: u64,
    charges: &[(LimitKind, Rate, u32)],
    expected: &[(bool, u64)],
) -> Vec<(LimitKind, GcraOutcome)> {
    let outcomes = store.charge(username, charges, now_ms, true).await.unwrap();
    let kinds: Vec<LimitKind> = outcomes.iter().map(|(kind, _)| *kind).collect();
    let wanted: Vec<LimitKind> = charges.iter().map(|(kind, ..)| *kind).collect();
    assert_eq!(kinds, wanted, "outcomes in input order");
    let got: Vec<(bool, u64)> = outcomes.iter().map(|(_, o)| (o.allowed, o.used)).collect();
    assert_eq!(got, expected, "{username} at {now_ms} charging {charges:?}");
    outcomes
}

/// 100 charges at once against a daily limit of 30, spread over `hosts` (stores on one
/// state): exactly 30 are allowed, and only those count against the other limit too.
pub async fn charge_concurrently<S: AccountStore + Clone>(hosts: &[S]) {
    let limit = 30;
    let charges = [
        (LimitKind::MessagesPerHour, hourly(1000), 1),
        (LimitKind::RecipientsPerDay, daily(limit), 1),
    ];
    let tasks: Vec<_> = (0..100)
        .map(|n| {
            let store = hosts[n % hosts.len()].clone();
            tokio::spawn(async move { store.charge("g@example.jp", &charges, NOW_MS, true).await })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(outcomes) if outcomes.iter().all(|(_, outcome)| outcome.allowed) => allowed += 1,
            Ok(_) => {}
            // Redis: a charge that lost the race to the other host every time gives up,
            // as documented, having stored nothing; the others still share the limit.
            Err(StoreError::Redis(message)) if message.contains("changed by other hosts") => {}
            Err(error) => panic!("{error}"),
        }
    }
    assert_eq!(allowed, limit);
    let now = hosts[0]
        .charge(
            "g@example.jp",
            &[(LimitKind::MessagesPerHour, hourly(1000), 0)],
            NOW_MS,
            false,
        )
        .await
        .unwrap();
    assert_eq!(now[0].1.used, u64::from(limit));
}

pub fn event(at: u64, username: &str, kind: EventKind) -> AccountEvent {
    AccountEvent {
        at,
        username: username.to_string(),
        kind,
        detail: format!("client 192.0.2.{}", at % 250),
    }
}

pub fn exceeded(used: u64) -> EventKind {
    EventKind::LimitExceeded {
        limit: LimitKind::MessagesPerHour,
        used,
        limit_value: 100,
    }
}

// ---- the runtime allow-list ----

pub fn allow_entry(kind: AllowListKind, value: &str, note: &str, added_at: u64) -> AllowEntry {
    AllowEntry {
        kind,
        value: value.to_string(),
        note: note.to_string(),
        added_at,
        scope: spamgate_engine::verdict::AllowScope::All,
        expires_at: None,
    }
}
