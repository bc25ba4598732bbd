//! Figures for the docs, SQLite and Redis side by side in one run (machines differ, so
//! only figures from the same run compare). Not assertions about speed:
//! `cargo test -p spamgate-store --release --test redis_perf -- --ignored --nocapture`

mod common;
mod redis_server;

use std::time::Duration;

use common::*;
use redis_server::RedisServer;
use spamgate_engine::greylist::GreylistKeys;
use spamgate_store::{GreylistStore, RedisOptions, RedisStore};

const TASKS: usize = 64;
const TRIPLETS: u32 = 100_000;

/// new, too-early, passed, awl-hit.
async fn phases<S: GreylistStore + Clone>(store: &S, keys: &[GreylistKeys]) -> [f64; 4] {
    [
        checks_per_second(store, keys, T0, TASKS).await,
        checks_per_second(store, keys, T0 + 60, TASKS).await,
        checks_per_second(store, keys, T0 + 400, TASKS).await,
        checks_per_second(store, keys, T0 + 500, TASKS).await,
    ]
}

fn line(name: &str, figures: [f64; 4]) {
    let [new, retry, passed, awl] = figures;
    println!(
        "{name:>6}: new {new:>7.0}  too-early {retry:>7.0}  passed {passed:>7.0}  awl-hit {awl:>7.0}  (checks/s, {TASKS} tasks)"
    );
}

/// CPU seconds this process has used (user + system), from /proc (10 ms ticks).
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// CPU seconds redis-server has used, from INFO cpu.
fn redis_cpu(server: &RedisServer) -> f64 {
    server
        .cli(&["INFO", "cpu"])
        .lines()
        .filter_map(|line| {
            let value = line
                .strip_prefix("used_cpu_sys:")
                .or_else(|| line.strip_prefix("used_cpu_user:"))?;
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// The `used_memory` line of INFO memory, in bytes.
fn used_memory(server: &RedisServer) -> u64 {
    server
        .cli(&["INFO", "memory"])
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release with --nocapture"]
async fn figures() {
    let keys = spread_keys(TRIPLETS);

    let fixture = Fixture::new();
    let sqlite = fixture.open();
    let sqlite_figures = phases(&sqlite, &keys).await;
    sqlite.close().await;

    println!("greylist checks, {TRIPLETS} distinct triplets per phase, same machine:");
    line("sqlite", sqlite_figures);
    // With the default local memory of recent entries, and without it (every check
    // asks Redis: the figures for a working set larger than that memory).
    let mut server = None;
    for (name, recent_entries) in [
        ("redis", RedisOptions::default().recent_entries),
        ("cold", 0),
    ] {
        let redis_server = RedisServer::start();
        let empty = used_memory(&redis_server);
        let redis = RedisStore::connect(&RedisOptions {
            url: redis_server.url(),
            timeout: Duration::from_secs(5),
            recent_entries,
            ..RedisOptions::default()
        })
        .await
        .unwrap();
        // CPU per check of each phase: (spamgate side, redis-server), in µs.
        let mut cpu = Vec::new();
        let mut phase = async |now| {
            let (client, server_cpu) = (own_cpu(), redis_cpu(&redis_server));
            let rate = checks_per_second(&redis, &keys, now, TASKS).await;
            let per = |seconds: f64| seconds / f64::from(TRIPLETS) * 1e6;
            cpu.push((
                per(own_cpu() - client),
                per(redis_cpu(&redis_server) - server_cpu),
            ));
            rate
        };
        let new = phase(T0).await;
        let pending_bytes = used_memory(&redis_server).saturating_sub(empty);
        let retry = phase(T0 + 60).await;
        let passed = phase(T0 + 400).await;
        let awl = phase(T0 + 500).await;
        let passed_bytes = used_memory(&redis_server).saturating_sub(empty);

        let figures = [new, retry, passed, awl];
        line(name, figures);
        let ratio: Vec<String> = figures
            .iter()
            .zip(sqlite_figures)
            .map(|(redis, sqlite)| format!("{:.0} %", redis / sqlite * 100.0))
            .collect();
        let cpu: Vec<String> = cpu
            .iter()
            .map(|(client, server)| format!("{client:.0}+{server:.0}"))
            .collect();
        println!(
            "        of sqlite: new {}, too-early {}, passed {}, awl-hit {}; \
             CPU µs per check (spamgate side + redis-server): {}, {}, {}, {}",
            ratio[0], ratio[1], ratio[2], ratio[3], cpu[0], cpu[1], cpu[2], cpu[3]
        );
        let per = |bytes: u64| bytes as f64 / f64::from(TRIPLETS);
        println!(
            "        redis used_memory: {:.0} B per pending triplet (with its pending-set \
             entry); {:.0} B per passed triplet + its AWL entry",
            per(pending_bytes),
            per(passed_bytes)
        );
        server = Some(redis_server);
    }
    let server = server.unwrap();
    let sample = &keys[0];
    let triplet_key = format!(
        "spamgate:t:{}",
        sample
            .triplet_key
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    println!(
        "MEMORY USAGE of one passed triplet key: {} B",
        server.cli(&["MEMORY", "USAGE", &triplet_key])
    );
}
