//! OP25B blocked attempts for the dashboard: the kernel's per-source hit tables
//! (`blocked4`, `blocked6` of the `[op25b]` table, what `spamgate op25b hits` prints),
//! read by running nft with a timeout and bounded output, cached for a short time, and
//! sampled once a minute by the daemon into a small per-minute series of new attempts.
//!
//! The counts live in the kernel, not in the daemon: reading them needs the nft command
//! and, for the daemon's user, `CAP_NET_ADMIN`. Without `[op25b]` (no pools) the monitor
//! says "not configured"; when nft cannot be read it says why. Neither is an error of
//! the page.

use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::sync::Mutex;

pub use spamgate_op25b::Hit;

/// How long nft may take for one read of both hit tables.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A reading younger than this is served from the cache.
pub const MAX_AGE_SECS: u64 = 15;
/// Minutes of series kept.
pub const SERIES_MINUTES: usize = 60;
/// The standard output of one `nft -j list set` read for the dashboard stays below this
/// (about 150 000 sources); a larger table is reported, not read.
const STDOUT_LIMIT: u64 = 32 << 20;
const STDERR_LIMIT: u64 = 16 * 1024;

/// What to read: the table and the command words that run nft (`["nft"]`, or a prefix
/// such as `["ip", "netns", "exec", "router", "nft"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitsSource {
    pub table: String,
    pub nft: Vec<String>,
}

/// One reading of the kernel's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Reading {
    /// `[op25b]` names no pools: spamgate does not manage OP25B here.
    NotConfigured,
    /// nft could not be read (not installed, no `CAP_NET_ADMIN`, table not loaded,
    /// timed out): why, for people.
    Unavailable { at: u64, error: String },
    /// Per-source counts, most attempts first.
    Counts { at: u64, hits: Vec<Hit> },
}

/// New blocked attempts per minute, as sampled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Series {
    /// Minute starts (Unix seconds) and the attempts first counted in that minute.
    pub minutes: VecDeque<(u64, u64)>,
}

impl Series {
    /// Adds `attempts` to the minute of `at`, forgetting minutes beyond the last
    /// [`SERIES_MINUTES`].
    pub fn record(&mut self, at: u64, attempts: u64) {
        let minute = at - at % 60;
        match self.minutes.back_mut() {
            Some((m, n)) if *m == minute => *n += attempts,
            Some((m, _)) if *m > minute => {} // the clock went back: keep what we have
            _ => self.minutes.push_back((minute, attempts)),
        }
        while let Some(&(m, _)) = self.minutes.front() {
            if m + (SERIES_MINUTES as u64) * 60 <= minute {
                self.minutes.pop_front();
            } else {
                break;
            }
        }
    }

    /// The last `minutes` minute starts up to `now` and their counts; `None` for a
    /// minute in which no sample was taken (not zero: unknown).
    pub fn window(&self, now: u64, minutes: usize) -> Vec<(u64, Option<u64>)> {
        let last = now - now % 60;
        (0..minutes as u64)
            .rev()
            .filter_map(|i| last.checked_sub(i * 60))
            .map(|m| {
                let n = self.minutes.iter().find(|(s, _)| *s == m).map(|(_, n)| *n);
                (m, n)
            })
            .collect()
    }
}

/// Attempts counted since `before`: a source's growth, or all of its packets when it is
/// new or its entry expired and started again (its count went down).
pub fn new_attempts(before: &BTreeMap<IpAddr, u64>, now: &[Hit]) -> u64 {
    now.iter()
        .map(|h| match before.get(&h.source) {
            Some(&old) if h.packets >= old => h.packets - old,
            _ => h.packets,
        })
        .sum()
}

#[derive(Debug, Default)]
struct State {
    last: Option<Reading>,
    /// The counts of the previous successful reading: the series' baseline.
    baseline: Option<BTreeMap<IpAddr, u64>>,
    series: Series,
}

/// The daemon's one reader of the OP25B counters (shared by the sampler and the
/// dashboard; one nft at a time).
#[derive(Debug)]
pub struct Op25bMonitor {
    source: Option<HitsSource>,
    timeout: Duration,
    state: Mutex<State>,
}

impl Op25bMonitor {
    /// `None`: OP25B is not configured here.
    pub fn new(source: Option<HitsSource>) -> Op25bMonitor {
        Op25bMonitor::with_timeout(source, READ_TIMEOUT)
    }

    pub fn with_timeout(source: Option<HitsSource>, timeout: Duration) -> Op25bMonitor {
        Op25bMonitor {
            source,
            timeout,
            state: Mutex::new(State::default()),
        }
    }

    pub fn is_configured(&self) -> bool {
        self.source.is_some()
    }

    /// The current counts: the cached reading when it is younger than
    /// [`MAX_AGE_SECS`], else a new one (which also feeds the series).
    pub async fn current(&self, now: u64) -> (Reading, Series) {
        let mut state = self.state.lock().await;
        let fresh = match &state.last {
            Some(Reading::Counts { at, .. } | Reading::Unavailable { at, .. }) => {
                now.saturating_sub(*at) < MAX_AGE_SECS
            }
            Some(Reading::NotConfigured) => true,
            None => false,
        };
        if !fresh {
            self.read_into(&mut state, now).await;
        }
        (
            state.last.clone().unwrap_or(Reading::NotConfigured),
            state.series.clone(),
        )
    }

    /// A new reading now (the daemon's once-a-minute sampler).
    pub async fn sample(&self, now: u64) -> Reading {
        let mut state = self.state.lock().await;
        self.read_into(&mut state, now).await;
        state.last.clone().unwrap_or(Reading::NotConfigured)
    }

    async fn read_into(&self, state: &mut State, now: u64) {
        let Some(source) = &self.source else {
            state.last = Some(Reading::NotConfigured);
            return;
        };
        let reading = match read_hits(source, self.timeout).await {
            Ok(hits) => {
                let counts: BTreeMap<IpAddr, u64> =
                    hits.iter().map(|h| (h.source, h.packets)).collect();
                // The first reading is the baseline: what was counted before the daemon
                // looked is not attributed to this minute.
                if let Some(before) = &state.baseline {
                    let n = new_attempts(before, &hits);
                    state.series.record(now, n);
                } else {
                    state.series.record(now, 0);
                }
                state.baseline = Some(counts);
                Reading::Counts { at: now, hits }
            }
            Err(error) => Reading::Unavailable { at: now, error },
        };
        state.last = Some(reading);
    }

    /// Samples every `every` until `shutdown` turns true; `now` reads the clock.
    pub async fn run(
        &self,
        every: Duration,
        now: impl Fn() -> u64,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        if self.source.is_none() {
            return;
        }
        loop {
            let reading = self.sample(now()).await;
            if let Reading::Unavailable { error, .. } = &reading {
                tracing::debug!("op25b counters: {error}");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }
}

/// Both hit tables of `source`, most attempts first.
pub async fn read_hits(source: &HitsSource, timeout: Duration) -> Result<Vec<Hit>, String> {
    let mut all = Vec::new();
    for set in ["blocked4", "blocked6"] {
        let args = ["-j", "list", "set", "inet", source.table.as_str(), set];
        let json = match tokio::time::timeout(timeout, run_nft(&source.nft, &args)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(format!(
                    "{} did not answer within {}s",
                    describe(&source.nft, &args),
                    timeout.as_secs()
                ));
            }
        };
        all.extend(spamgate_op25b::parse_hits(&json).map_err(|e| e.to_string())?);
    }
    all.sort_by_key(|h| (Reverse(h.packets), Reverse(h.bytes), h.source));
    Ok(all)
}

fn describe(argv: &[String], args: &[&str]) -> String {
    let mut words: Vec<&str> = argv.iter().map(String::as_str).collect();
    words.extend(args);
    words.join(" ")
}

/// Runs nft (killed when the caller's timeout drops this future), bounded output.
async fn run_nft(argv: &[String], args: &[&str]) -> Result<String, String> {
    let command = describe(argv, args);
    let (program, prefix) = argv
        .split_first()
        .ok_or_else(|| "no nft command configured".to_string())?;
    let mut child = tokio::process::Command::new(program)
        .args(prefix)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e} (is nftables installed?)"))?;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let out_pipe = child.stdout.take();
    let err_pipe = child.stderr.take();
    let read_out = async {
        if let Some(pipe) = out_pipe {
            let _ = pipe.take(STDOUT_LIMIT + 1).read_to_end(&mut stdout).await;
        }
    };
    let read_err = async {
        if let Some(pipe) = err_pipe {
            let _ = pipe.take(STDERR_LIMIT).read_to_end(&mut stderr).await;
        }
    };
    tokio::join!(read_out, read_err);
    if stdout.len() as u64 > STDOUT_LIMIT {
        let _ = child.kill().await;
        return Err(format!(
            "{command}: the hit table is larger than {} MiB; read it with spamgate op25b hits",
            STDOUT_LIMIT >> 20
        ));
    }
    let status = child.wait().await.map_err(|e| format!("{command}: {e}"))?;
    if !status.success() {
        return Err(explain(&command, &String::from_utf8_lossy(&stderr)));
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// nft's complaint, with what to do about the usual ones.
pub fn explain(command: &str, stderr: &str) -> String {
    let text = stderr.trim();
    let first = text.lines().next().unwrap_or("failed");
    let hint = if text.contains("Operation not permitted") {
        " — reading nftables counters needs CAP_NET_ADMIN (the daemon's user lacks it)"
    } else if text.contains("No such file or directory") {
        " — the table is not loaded (spamgate op25b apply)"
    } else {
        ""
    };
    format!("{command}: {first}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(source: &str, packets: u64) -> Hit {
        Hit {
            source: source.parse().unwrap(),
            packets,
            bytes: packets * 60,
            expires_secs: None,
        }
    }

    fn counts(rows: &[(&str, u64)]) -> BTreeMap<IpAddr, u64> {
        rows.iter().map(|(s, n)| (s.parse().unwrap(), *n)).collect()
    }

    #[test]
    fn new_attempts_count_growth_new_sources_and_restarted_entries() {
        fn check(before: &[(&str, u64)], now: &[(&str, u64)], expected: u64) {
            let now: Vec<Hit> = now.iter().map(|(s, n)| hit(s, *n)).collect();
            assert_eq!(
                new_attempts(&counts(before), &now),
                expected,
                "{before:?} → {now:?}"
            );
        }
        check(&[], &[], 0);
        check(&[], &[("198.51.100.10", 4)], 4);
        check(&[("198.51.100.10", 4)], &[("198.51.100.10", 4)], 0);
        check(&[("198.51.100.10", 4)], &[("198.51.100.10", 7)], 3);
        check(
            &[("198.51.100.10", 4)],
            &[("198.51.100.10", 5), ("2001:db8:100:1::10", 2)],
            3,
        );
        // The entry expired and the source came back: its count started again.
        check(&[("198.51.100.10", 9)], &[("198.51.100.10", 2)], 2);
        // A source that expired and did not come back adds nothing.
        check(&[("198.51.100.10", 9), ("198.51.100.11", 1)], &[], 0);
    }

    #[test]
    fn the_series_keeps_an_hour_of_minutes() {
        let t0 = 1_796_175_000; // 2026-12-02T01:30:00Z, a minute start
        let mut s = Series::default();
        s.record(t0 + 5, 2);
        s.record(t0 + 50, 3); // same minute
        s.record(t0 + 65, 1);
        assert_eq!(
            s.minutes.iter().copied().collect::<Vec<_>>(),
            [(t0, 5), (t0 + 60, 1)]
        );
        let w = s.window(t0 + 150, 4);
        assert_eq!(
            w,
            [
                (t0 - 60, None),
                (t0, Some(5)),
                (t0 + 60, Some(1)),
                (t0 + 120, None)
            ]
        );
        // An earlier minute after a later one (the clock went back) is not recorded.
        s.record(t0 + 10, 7);
        assert_eq!(s.minutes.len(), 2);
        for i in 2..=SERIES_MINUTES as u64 + 1 {
            s.record(t0 + i * 60, 1);
        }
        assert_eq!(s.minutes.len(), SERIES_MINUTES);
        assert_eq!(s.minutes.front().unwrap().0, t0 + 2 * 60);
    }

    #[test]
    fn nft_complaints_say_what_to_do() {
        for (stderr, expected) in [
            (
                "Error: Could not process rule: Operation not permitted\n",
                "CAP_NET_ADMIN",
            ),
            (
                "Error: No such file or directory\nlist set inet spamgate_op25b blocked4\n",
                "op25b apply",
            ),
            ("Error: syntax error\n", "nft -j: Error: syntax error"),
        ] {
            let text = explain("nft -j", stderr);
            assert!(text.contains(expected), "{stderr:?} → {text}");
        }
    }

    fn script(dir: &std::path::Path, name: &str, body: &str) -> Vec<String> {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        vec![path.to_string_lossy().into_owned()]
    }

    const SET4: &str = r#"{"nftables": [{"metainfo": {"json_schema_version": 1}}, {"set": {"family": "inet", "name": "blocked4", "table": "spamgate_op25b", "type": "ipv4_addr", "elem": [{"elem": {"val": "198.51.100.10", "expires": 3590, "counter": {"packets": 4, "bytes": 240}}}]}}]}"#;
    const SET6: &str = r#"{"nftables": [{"set": {"family": "inet", "name": "blocked6", "table": "spamgate_op25b", "type": "ipv6_addr", "elem": [{"elem": {"val": "2001:db8:100:1::10", "counter": {"packets": 9, "bytes": 720}}}]}}]}"#;

    /// A stand-in nft that answers like the real one (the real one, in a kernel, is
    /// scripts/op25b-netns.sh's): prints the set named by its last argument from files.
    fn fake_nft(dir: &std::path::Path) -> Vec<String> {
        std::fs::write(dir.join("blocked4"), SET4).unwrap();
        std::fs::write(dir.join("blocked6"), SET6).unwrap();
        let d = dir.display();
        script(
            dir,
            "nft",
            &format!("for a; do last=$a; done\necho \"$*\" >> {d}/calls\ncat {d}/$last"),
        )
    }

    #[tokio::test]
    async fn readings_are_cached_and_feed_the_series() {
        let dir = tempfile::tempdir().unwrap();
        let source = HitsSource {
            table: "spamgate_op25b".into(),
            nft: fake_nft(dir.path()),
        };
        let monitor = Op25bMonitor::new(Some(source));
        let t0 = 1_796_175_000; // 2026-12-02T01:30:00Z, a minute start
        let (reading, series) = monitor.current(t0).await;
        let Reading::Counts { hits, .. } = reading else {
            panic!("{reading:?}")
        };
        assert_eq!(
            hits.iter()
                .map(|h| (h.source.to_string(), h.packets))
                .collect::<Vec<_>>(),
            [
                ("2001:db8:100:1::10".to_string(), 9),
                ("198.51.100.10".to_string(), 4)
            ]
        );
        assert_eq!(
            series.minutes.iter().copied().collect::<Vec<_>>(),
            [(t0, 0)]
        );
        let calls = || {
            std::fs::read_to_string(dir.path().join("calls"))
                .unwrap()
                .lines()
                .count()
        };
        assert_eq!(calls(), 2, "one nft run per hit table");
        monitor.current(t0 + 5).await;
        assert_eq!(calls(), 2, "a fresh reading comes from the cache");
        // Three more attempts from the IPv4 source in the next minute.
        std::fs::write(
            dir.path().join("blocked4"),
            SET4.replace("\"packets\": 4", "\"packets\": 7"),
        )
        .unwrap();
        monitor.sample(t0 + 70).await;
        assert_eq!(calls(), 4);
        let (_, series) = monitor.current(t0 + 75).await;
        assert_eq!(
            series.minutes.iter().copied().collect::<Vec<_>>(),
            [(t0, 0), (t0 + 60, 3)]
        );
    }

    #[tokio::test]
    async fn what_cannot_be_read_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let t = 1_796_175_000;
        let (reading, _) = Op25bMonitor::new(None).current(t).await;
        assert_eq!(reading, Reading::NotConfigured);
        for (nft, expected) in [
            (
                script(
                    dir.path(),
                    "eperm",
                    "echo 'Error: Operation not permitted' >&2; exit 1",
                ),
                "CAP_NET_ADMIN",
            ),
            (
                vec![dir.path().join("missing").display().to_string()],
                "cannot run",
            ),
            (script(dir.path(), "garbage", "echo not json"), "json"),
            (
                script(dir.path(), "slow", "exec sleep 30"),
                "did not answer",
            ),
        ] {
            let monitor = Op25bMonitor::with_timeout(
                Some(HitsSource {
                    table: "spamgate_op25b".into(),
                    nft,
                }),
                Duration::from_millis(300),
            );
            match monitor.current(t).await.0 {
                Reading::Unavailable { error, .. } => assert!(
                    error.to_lowercase().contains(&expected.to_lowercase()),
                    "{expected}: {error}"
                ),
                other => panic!("{expected}: {other:?}"),
            }
        }
    }
}
