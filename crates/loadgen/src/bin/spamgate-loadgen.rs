#![forbid(unsafe_code)]
//! Load generator for Postfix policy servers. See docs/performance.md.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use spamgate_loadgen::{
    Mode, Report, RunOptions, Target, Workload, WorkloadConfig, run, table, zones,
};

/// Sends a seeded, Postfix-like request mix over C persistent connections (one request
/// outstanding on each) and reports throughput, latency and the mix of answers.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// `HOST:PORT` or `unix:PATH`.
    #[arg(long, default_value = "127.0.0.1:10023")]
    target: Target,
    #[arg(long, short = 'c', default_value_t = 8)]
    connections: usize,
    /// Measured requests (after the warm-up).
    #[arg(long, short = 'n', default_value_t = 100_000)]
    requests: u64,
    /// Stop the measured phase after this many seconds even if fewer requests were sent.
    #[arg(long)]
    duration: Option<f64>,
    /// Warm-up requests, not measured; the first `--clients` of them visit every client once.
    #[arg(long, default_value_t = 5000)]
    warmup: u64,
    /// Connections used for the warm-up (default: --connections).
    #[arg(long)]
    warmup_connections: Option<usize>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = Mode::Mix)]
    mode: Mode,
    /// Distinct client addresses.
    #[arg(long, default_value_t = 5000)]
    clients: u32,
    #[arg(long, default_value_t = 0.1)]
    ipv6_share: f64,
    #[arg(long, default_value_t = 4000)]
    senders: u32,
    #[arg(long, default_value_t = 2000)]
    recipients: u32,
    /// Share of clients Postfix calls `unknown` (no PTR, or a PTR that does not confirm).
    #[arg(long, default_value_t = 0.1)]
    unknown_share: f64,
    /// Share of clients with a generic (dynamic, end-user) verified name.
    #[arg(long, default_value_t = 0.2)]
    generic_share: f64,
    /// Share of clients listed on the benchmark DNSBL (bl.test).
    #[arg(long, default_value_t = 0.02)]
    listed_share: f64,
    /// Share of requests that repeat an earlier triplet.
    #[arg(long, default_value_t = 0.1)]
    retry_share: f64,
    /// Seconds before a request without a reply counts as an error.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Runtime threads of the generator (1: a single thread, leaving the rest of the
    /// machine to the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// First measured request index (continue an earlier run: pass its `next_index`);
    /// 0 sends the warm-up first.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Name of what is measured, carried into the report (`baseline`, `spamgate`, ...).
    #[arg(long, default_value = "")]
    label: String,
    /// The server's process id: report the CPU time it spends per request.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the report as JSON (one line).
    #[arg(long)]
    json: bool,
    /// Read JSON reports (one per line) from this file, print them as one Markdown table
    /// with the headline ratios, and exit.
    #[arg(long, value_name = "FILE")]
    summarize: Option<PathBuf>,
    /// Write the DNS data for this workload (rbldnsd bl.test files, dnsmasq.conf) into
    /// this folder and exit.
    #[arg(long, value_name = "DIR")]
    write_zones: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(path) = &cli.summarize {
        let text = std::fs::read_to_string(path)?;
        let reports: Vec<Report> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        print!("{}\n{}", table::markdown(&reports), table::ratios(&reports));
        return Ok(());
    }
    let workload = Arc::new(Workload::new(WorkloadConfig {
        seed: cli.seed,
        mode: cli.mode,
        clients: cli.clients,
        ipv6_share: cli.ipv6_share,
        senders: cli.senders,
        recipients: cli.recipients,
        unknown_share: cli.unknown_share,
        generic_share: cli.generic_share,
        listed_share: cli.listed_share,
        retry_share: cli.retry_share,
        retry_window: 20_000,
        warmup: cli.warmup,
    })?);
    if let Some(dir) = &cli.write_zones {
        std::fs::create_dir_all(dir)?;
        let files = zones::write(&workload, dir)?;
        println!(
            "{}\n{}\n{}",
            files.ip4set.display(),
            files.ip6trie.display(),
            files.dnsmasq.display()
        );
        return Ok(());
    }
    let seconds = |s: f64, name: &str| {
        anyhow::ensure!(s.is_finite() && s > 0.0, "--{name} must be positive");
        Ok(Duration::from_secs_f64(s))
    };
    let options = RunOptions {
        target: cli.target.clone(),
        connections: cli.connections,
        warmup_connections: cli.warmup_connections.unwrap_or(cli.connections),
        requests: cli.requests,
        first: cli.first,
        duration: cli.duration.map(|d| seconds(d, "duration")).transpose()?,
        request_timeout: seconds(cli.timeout, "timeout")?,
        server_pid: cli.server_pid,
    };
    let runtime = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()?
    };
    let mut report = runtime.block_on(run(workload, options))?;
    report.label = cli.label.clone();
    if cli.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}
