//! Shared fixtures: real SQLite files in temporary directories, time passed in.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use spamgate_engine::greylist::{GreylistKeys, GreylistOutcome, GreylistParams, KeyPolicy};
use spamgate_store::{GreylistStore, SqliteOptions, SqliteStore};
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
        &KeyPolicy::default(),
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
