//! The load itself: C persistent connections, each with one request outstanding, as
//! Postfix's smtpd processes use a policy server. Request indices come from one shared
//! counter, so the workload is the same whatever C is.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use spamgate_policy::{Limits, ReplyDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

use crate::report::{ActionKind, ActionMix, Latency, Report};
use crate::workload::Workload;

/// Error messages kept for the report.
const ERROR_SAMPLES: usize = 5;
/// A connection that fails this many times in a row stops (the server is gone).
const MAX_CONSECUTIVE_FAILURES: u32 = 20;
/// Latencies above this are clamped into the histogram's last bucket.
const HISTOGRAM_MAX_NS: u64 = 100_000_000_000;

/// Where the policy server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Tcp(String),
    Unix(PathBuf),
}

impl FromStr for Target {
    type Err = String;
    fn from_str(text: &str) -> Result<Target, String> {
        match text.strip_prefix("unix:") {
            Some("") => Err("empty socket path".into()),
            Some(path) => Ok(Target::Unix(path.into())),
            None if text.contains(':') => Ok(Target::Tcp(text.into())),
            None => Err(format!("expected HOST:PORT or unix:PATH, not {text:?}")),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(addr) => f.write_str(addr),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub target: Target,
    pub connections: usize,
    /// Connections for the warm-up phase (opened for it, closed after it).
    pub warmup_connections: usize,
    /// Measured requests (after the workload's warm-up requests).
    pub requests: u64,
    /// First request index of the measured phase. 0 sends the workload's warm-up
    /// requests first; a later index continues an earlier run (so its retries repeat
    /// triplets that were really sent) and sends no warm-up.
    pub first: u64,
    /// Stop the measured phase after this long even if fewer requests were sent.
    pub duration: Option<Duration>,
    /// A reply slower than this counts as an error (and the connection is reopened).
    pub request_timeout: Duration,
    /// The server's process id, to report the CPU time it spent per request (a figure
    /// that a busy machine disturbs much less than throughput).
    pub server_pid: Option<u32>,
}

/// User plus system CPU seconds of a process, its exited threads included
/// (`/proc/PID/stat` fields 14 and 15, in clock ticks of 1/100 s on Linux).
pub fn process_cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let ticks = |n: usize| fields.get(n)?.parse::<u64>().ok();
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Connection {
    io: Option<Box<dyn Io>>,
    decoder: ReplyDecoder,
    read_buf: Box<[u8]>,
    request: Vec<u8>,
}

impl Connection {
    fn new() -> Connection {
        Connection {
            io: None,
            decoder: ReplyDecoder::new(Limits::default()),
            read_buf: vec![0; 4096].into_boxed_slice(),
            request: Vec::with_capacity(1024),
        }
    }

    async fn ensure_open(&mut self, target: &Target) -> std::io::Result<()> {
        if self.io.is_none() {
            let io: Box<dyn Io> = match target {
                Target::Tcp(addr) => {
                    let stream = TcpStream::connect(addr.as_str()).await?;
                    stream.set_nodelay(true)?;
                    Box::new(stream)
                }
                Target::Unix(path) => Box::new(UnixStream::connect(path).await?),
            };
            self.io = Some(io);
            self.decoder = ReplyDecoder::new(Limits::default());
        }
        Ok(())
    }

    /// Sends `self.request` and waits for the reply's action.
    async fn exchange(&mut self) -> std::io::Result<String> {
        let io = self
            .io
            .as_mut()
            .ok_or_else(|| std::io::Error::other("not connected"))?;
        io.write_all(&self.request).await?;
        loop {
            let n = io.read(&mut self.read_buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
            let mut input = &self.read_buf[..n];
            let decoded = self
                .decoder
                .decode(&mut input)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            if let Some(action) = decoded {
                if !input.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "bytes after the reply with no request outstanding",
                    ));
                }
                return Ok(action);
            }
        }
    }
}

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_NS, 3).expect("valid histogram bounds")
}

struct PhaseStats {
    latency_ns: Histogram<u64>,
    /// The same latencies by [`ActionKind`], in [`ActionKind::ALL`]'s order.
    latency_by_action_ns: Vec<Histogram<u64>>,
    actions: ActionMix,
    errors: u64,
    error_samples: Vec<String>,
}

impl PhaseStats {
    fn new() -> PhaseStats {
        PhaseStats {
            latency_ns: latency_histogram(),
            latency_by_action_ns: ActionKind::ALL.map(|_| latency_histogram()).into(),
            actions: ActionMix::default(),
            errors: 0,
            error_samples: Vec::new(),
        }
    }

    fn error(&mut self, message: String) {
        self.errors += 1;
        if self.error_samples.len() < ERROR_SAMPLES {
            self.error_samples.push(message);
        }
    }

    fn merge(&mut self, other: PhaseStats) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency_ns.add(&other.latency_ns);
        for (mine, theirs) in self
            .latency_by_action_ns
            .iter_mut()
            .zip(&other.latency_by_action_ns)
        {
            let _ = mine.add(theirs);
        }
        self.actions.add(&other.actions);
        self.errors += other.errors;
        for sample in other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES {
                self.error_samples.push(sample);
            }
        }
    }
}

/// One connection's share of a phase: requests until the counter passes `end`.
async fn drive(
    workload: Arc<Workload>,
    options: Arc<RunOptions>,
    mut connection: Connection,
    next: Arc<AtomicU64>,
    end: u64,
    deadline: Option<Instant>,
) -> (Connection, PhaseStats) {
    let mut stats = PhaseStats::new();
    let mut failures = 0u32;
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if let Err(e) = connection.ensure_open(&options.target).await {
            stats.error(format!("connect to {}: {e}", options.target));
            failures += 1;
            if failures >= MAX_CONSECUTIVE_FAILURES {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= end {
            break;
        }
        connection.request.clear();
        workload.encode(i, &mut connection.request);
        let started = Instant::now();
        match tokio::time::timeout(options.request_timeout, connection.exchange()).await {
            Ok(Ok(action)) => {
                let ns = u64::try_from(started.elapsed().as_nanos())
                    .unwrap_or(u64::MAX)
                    .clamp(1, HISTOGRAM_MAX_NS);
                stats.latency_ns.saturating_record(ns);
                let kind = stats.actions.count(&action);
                stats.latency_by_action_ns[kind as usize].saturating_record(ns);
                failures = 0;
            }
            Ok(Err(e)) => {
                stats.error(format!("request {i}: {e}"));
                connection.io = None;
                failures += 1;
            }
            Err(_) => {
                stats.error(format!(
                    "request {i}: no reply within {:?}",
                    options.request_timeout
                ));
                connection.io = None;
                failures += 1;
            }
        }
        if failures >= MAX_CONSECUTIVE_FAILURES {
            break;
        }
    }
    (connection, stats)
}

async fn phase(
    workload: &Arc<Workload>,
    options: &Arc<RunOptions>,
    connections: Vec<Connection>,
    range: std::ops::Range<u64>,
    duration: Option<Duration>,
) -> anyhow::Result<(Vec<Connection>, PhaseStats, Duration, u64)> {
    let next = Arc::new(AtomicU64::new(range.start));
    let started = Instant::now();
    let deadline = duration.map(|d| started + d);
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|connection| {
            tokio::spawn(drive(
                workload.clone(),
                options.clone(),
                connection,
                next.clone(),
                range.end,
                deadline,
            ))
        })
        .collect();
    let mut connections = Vec::with_capacity(tasks.len());
    let mut stats = PhaseStats::new();
    for task in tasks {
        let (connection, task_stats) = task.await?;
        connections.push(connection);
        stats.merge(task_stats);
    }
    let elapsed = started.elapsed();
    let next_index = next.load(Ordering::Relaxed).min(range.end);
    Ok((connections, stats, elapsed, next_index))
}

/// Opens `n` connections before any clock starts, as Postfix keeps them open.
async fn open(options: &RunOptions, n: usize) -> anyhow::Result<Vec<Connection>> {
    let mut connections: Vec<Connection> = (0..n).map(|_| Connection::new()).collect();
    for connection in &mut connections {
        connection
            .ensure_open(&options.target)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", options.target))?;
    }
    Ok(connections)
}

/// Runs the workload's warm-up requests, then `options.requests` measured ones.
pub async fn run(workload: Arc<Workload>, options: RunOptions) -> anyhow::Result<Report> {
    anyhow::ensure!(options.connections > 0, "--connections must be positive");
    let options = Arc::new(options);
    let warmup = workload.config().warmup;
    if options.first == 0 && warmup > 0 {
        let connections = open(&options, options.warmup_connections.max(1)).await?;
        let (_, stats, _, _) = phase(&workload, &options, connections, 0..warmup, None).await?;
        anyhow::ensure!(
            stats.errors == 0,
            "{} errors during warm-up, first: {}",
            stats.errors,
            stats.error_samples.first().map_or("", String::as_str)
        );
    }
    let connections = open(&options, options.connections).await?;
    let server_pid = options.server_pid.map(|pid| pid.to_string());
    let cpu = |pid: &str| process_cpu_seconds(pid);
    let server_before = server_pid.as_deref().and_then(cpu);
    let client_before = cpu("self");
    let (_, stats, elapsed, next_index) = phase(
        &workload,
        &options,
        connections,
        options.first.max(warmup)..options.first.max(warmup).saturating_add(options.requests),
        options.duration,
    )
    .await?;
    let seconds = elapsed.as_secs_f64();
    let requests = stats.latency_ns.len();
    let per_request = |before: Option<f64>, pid: &str| {
        let spent = cpu(pid)? - before?;
        (requests > 0).then(|| spent * 1e6 / requests as f64)
    };
    let server_cpu_us_per_request = server_pid
        .as_deref()
        .and_then(|pid| per_request(server_before, pid));
    let client_cpu_us_per_request = per_request(client_before, "self");
    Ok(Report {
        label: String::new(),
        target: options.target.to_string(),
        connections: options.connections,
        requests,
        errors: stats.errors,
        seconds,
        requests_per_second: requests as f64 / seconds.max(1e-9),
        latency_us: Latency::from_histogram(&stats.latency_ns),
        latency_by_action_us: ActionKind::ALL
            .iter()
            .zip(&stats.latency_by_action_ns)
            .filter(|(_, h)| !h.is_empty())
            .map(|(kind, h)| (kind.name().to_owned(), Latency::from_histogram(h)))
            .collect(),
        actions: stats.actions,
        error_samples: stats.error_samples,
        next_index,
        server_cpu_us_per_request,
        client_cpu_us_per_request,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_time_of_a_process() {
        let spent = process_cpu_seconds("self").expect("/proc/self/stat");
        assert!(spent >= 0.0);
        assert_eq!(process_cpu_seconds("no-such-pid"), None);
    }
}
