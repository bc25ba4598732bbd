//! Running nft: load a ruleset, update sets, read the per-source hit tables.

use std::cmp::Reverse;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::error::Op25bError;
use crate::plan::Plan;
use crate::render;

/// `nft -j list set` of a full hit table (at most 1M entries) stays below this.
const STDOUT_LIMIT: usize = 256 << 20;
const STDERR_LIMIT: usize = 64 * 1024;

/// How long one nft call may take by default (`[op25b] nft_timeout`).
pub const DEFAULT_NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to invoke nft: `["nft"]`, or with a prefix such as
/// `["ip", "netns", "exec", "sg-router", "nft"]`, and how long one call may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftRunner {
    argv: Vec<String>,
    timeout: Duration,
}

impl Default for NftRunner {
    fn default() -> Self {
        NftRunner {
            argv: vec!["nft".to_owned()],
            timeout: DEFAULT_NFT_TIMEOUT,
        }
    }
}

impl NftRunner {
    /// The command words that run nft; `None` if empty.
    pub fn new(argv: Vec<String>) -> Option<NftRunner> {
        (!argv.is_empty()).then_some(NftRunner {
            argv,
            timeout: DEFAULT_NFT_TIMEOUT,
        })
    }

    /// The same runner with each call limited to `timeout` (then nft and whatever it
    /// started are killed and the call fails with [`Op25bError::Timeout`]).
    pub fn with_timeout(mut self, timeout: Duration) -> NftRunner {
        self.timeout = timeout;
        self
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Splits a command line on whitespace (no quoting): `"ip netns exec sg-router nft"`.
    pub fn from_command_line(line: &str) -> Option<NftRunner> {
        NftRunner::new(line.split_whitespace().map(str::to_owned).collect())
    }

    fn describe(&self, args: &[&str]) -> String {
        let mut words = self.argv.clone();
        words.extend(args.iter().map(|a| (*a).to_owned()));
        words.join(" ")
    }

    /// Runs nft with `args`, feeding `stdin`; returns its standard output, or an error
    /// carrying its standard error when it exits non-zero. A call that has not finished
    /// within the runner's timeout is killed (with its process group: a wrapper such as
    /// `ip netns exec` or a script and everything it started) and fails with
    /// [`Op25bError::Timeout`].
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, Op25bError> {
        let command = self.describe(args);
        let deadline = Instant::now() + self.timeout;
        let mut child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a timeout can kill all of it.
            .process_group(0)
            .spawn()
            .map_err(|source| Op25bError::Spawn {
                program: self.argv[0].clone(),
                source,
            })?;
        // Feed and drain on their own threads so neither pipe can fill up and stall nft,
        // and this thread can watch the clock.
        let writer = match (child.stdin.take(), stdin) {
            (Some(mut pipe), Some(text)) => {
                let text = text.to_owned();
                Some(thread::spawn(move || {
                    let _ = pipe.write_all(text.as_bytes());
                }))
            }
            _ => None,
        };
        let stderr_reader = child.stderr.take().map(|mut pipe| {
            thread::spawn(move || {
                let mut kept = Vec::new();
                let _ = (&mut pipe).take(STDERR_LIMIT as u64).read_to_end(&mut kept);
                let _ = io::copy(&mut pipe, &mut io::sink());
                kept
            })
        });
        let too_large = Arc::new(AtomicBool::new(false));
        let stdout_reader = child.stdout.take().map(|pipe| {
            let too_large = Arc::clone(&too_large);
            thread::spawn(move || {
                let mut kept = Vec::new();
                let _ = pipe.take(STDOUT_LIMIT as u64 + 1).read_to_end(&mut kept);
                if kept.len() > STDOUT_LIMIT {
                    too_large.store(true, Ordering::Release);
                }
                kept
            })
        });
        let status = match wait_until(&mut child, deadline, &too_large) {
            Ok(Waited::Exited(status)) => status,
            Ok(Waited::TooLarge) => {
                return Err(Op25bError::OutputTooLarge {
                    command,
                    limit: STDOUT_LIMIT,
                });
            }
            Ok(Waited::TimedOut) => {
                // The pipe threads end when the last process holding the pipes is gone;
                // they are not waited for, so nothing here can hang.
                return Err(Op25bError::Timeout {
                    command,
                    timeout: humantime::format_duration(self.timeout).to_string(),
                });
            }
            Err(source) => {
                kill_group(&mut child);
                return Err(Op25bError::Spawn {
                    program: self.argv[0].clone(),
                    source,
                });
            }
        };
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        let stdout = stdout_reader
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        let stderr = stderr_reader
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        if too_large.load(Ordering::Acquire) {
            return Err(Op25bError::OutputTooLarge {
                command,
                limit: STDOUT_LIMIT,
            });
        }
        if !status.success() {
            return Err(Op25bError::Nft {
                command,
                status: status.to_string(),
                stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    }
}

enum Waited {
    Exited(ExitStatus),
    TooLarge,
    TimedOut,
}

/// Waits for `child` to exit, polling, until `deadline`; kills its process group when
/// the deadline passes or its output is too large.
fn wait_until(child: &mut Child, deadline: Instant, too_large: &AtomicBool) -> io::Result<Waited> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Waited::Exited(status));
        }
        if too_large.load(Ordering::Acquire) {
            kill_group(child);
            return Ok(Waited::TooLarge);
        }
        let now = Instant::now();
        if now >= deadline {
            kill_group(child);
            return Ok(Waited::TimedOut);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// SIGKILL to the child's process group (it leads one: `process_group(0)`), then reaps it.
fn kill_group(child: &mut Child) {
    let pid = rustix::process::Pid::from_child(child);
    if rustix::process::kill_process_group(pid, rustix::process::Signal::KILL).is_err() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Loads a rendered ruleset: checked first (`nft -c -f -`), then loaded (`nft -f -`), one
/// transaction, so either all of it is in force or the previous rules still are.
pub fn apply(rendered: &str, nft: &NftRunner) -> Result<(), Op25bError> {
    nft.run(&["-c", "-f", "-"], Some(rendered))?;
    nft.run(&["-f", "-"], Some(rendered))?;
    Ok(())
}

/// Rewrites the pool, exemption and relay sets of the loaded table from `plan`, in one
/// transaction, without touching the chains or the hit tables. Changes to ports, interfaces
/// or the log rate need [`apply`].
pub fn sync_plan(plan: &Plan, nft: &NftRunner) -> Result<(), Op25bError> {
    require_table(plan.table(), nft)?;
    let script = render::set_update(plan);
    nft.run(&["-c", "-f", "-"], Some(&script))?;
    nft.run(&["-f", "-"], Some(&script))?;
    Ok(())
}

fn require_table(table: &str, nft: &NftRunner) -> Result<(), Op25bError> {
    let listing = nft.run(&["list", "tables"], None)?;
    let wanted = format!("table inet {table}");
    if listing.lines().any(|line| line.trim() == wanted) {
        Ok(())
    } else {
        Err(Op25bError::TableMissing {
            table: table.to_owned(),
        })
    }
}

/// Blocked attempts from one source, from the kernel's hit table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hit {
    pub source: IpAddr,
    /// Packets refused (about one per connection attempt: each gets a reset at once).
    pub packets: u64,
    pub bytes: u64,
    /// Seconds until the entry is forgotten without further attempts.
    pub expires_secs: Option<u64>,
}

/// The per-source blocked counts of `table`, most attempts first.
pub fn hits(table: &str, nft: &NftRunner) -> Result<Vec<Hit>, Op25bError> {
    require_table(table, nft)?;
    let mut all = Vec::new();
    for set in ["blocked4", "blocked6"] {
        let json = nft.run(&["-j", "list", "set", "inet", table, set], None)?;
        all.extend(parse_hits(&json)?);
    }
    sort_hits(&mut all);
    Ok(all)
}

fn sort_hits(hits: &mut [Hit]) {
    hits.sort_by_key(|h| (Reverse(h.packets), Reverse(h.bytes), h.source));
}

/// Reads `nft -j list set` output of a hit table. Elements without a counter count as 0.
pub fn parse_hits(json: &str) -> Result<Vec<Hit>, Op25bError> {
    let doc: Value = serde_json::from_str(json).map_err(|e| Op25bError::Json(e.to_string()))?;
    let items = doc
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| Op25bError::Json("no \"nftables\" array".to_owned()))?;
    let mut hits = Vec::new();
    for set in items.iter().filter_map(|item| item.get("set")) {
        let Some(elements) = set.get("elem").and_then(Value::as_array) else {
            continue; // an empty set has no "elem"
        };
        for element in elements {
            // Either a bare value, or {"elem": {"val": ..., "counter": {...}, "expires": N}}.
            let (value, detail) = match element.get("elem") {
                Some(detail) => (detail.get("val"), Some(detail)),
                None => (Some(element), None),
            };
            let source = value
                .and_then(Value::as_str)
                .and_then(|text| text.parse::<IpAddr>().ok())
                .ok_or_else(|| Op25bError::Json(format!("unexpected element {element}")))?;
            let counter = detail.and_then(|d| d.get("counter"));
            let number = |key: &str| counter.and_then(|c| c.get(key)).and_then(Value::as_u64);
            hits.push(Hit {
                source,
                packets: number("packets").unwrap_or(0),
                bytes: number("bytes").unwrap_or(0),
                expires_secs: detail
                    .and_then(|d| d.get("expires"))
                    .and_then(Value::as_u64),
            });
        }
    }
    sort_hits(&mut hits);
    Ok(hits)
}

/// A plain table for people: source, packets, bytes, seconds until forgotten.
pub fn format_hits(hits: &[Hit]) -> String {
    let mut out = format!(
        "{:<40} {:>10} {:>12} {:>10}\n",
        "source", "packets", "bytes", "expires"
    );
    for hit in hits {
        let expires = hit
            .expires_secs
            .map_or_else(|| "-".to_owned(), |secs| format!("{secs}s"));
        out.push_str(&format!(
            "{:<40} {:>10} {:>12} {:>10}\n",
            hit.source.to_string(),
            hit.packets,
            hit.bytes,
            expires
        ));
    }
    out
}
