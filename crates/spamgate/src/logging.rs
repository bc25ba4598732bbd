//! A buffered, non-blocking log writer for the daemon.
//!
//! tracing-subscriber's stderr writer makes one `write(2)` per line, on the thread that
//! logs: with one decision line per request that is a system call in every request, and a
//! slow reader of stderr (journald, a pipe) would stall the workers. Here a line is copied
//! into a shared buffer under a short lock; a writer thread writes the buffer out in
//! batches, after at most [`FLUSH_INTERVAL`] or as soon as [`BATCH_BYTES`] are waiting.
//! When [`CAPACITY`] bytes are already waiting the line is dropped and counted, and the
//! count is reported on stderr with the next batch: logging never blocks a request.
//!
//! [`FlushOnExit`] (held by `main`) writes what is left and makes later lines go out
//! directly, so a normal exit loses nothing.
//!
//! Why not `tracing-appender`'s non-blocking writer (issue 12, item 8): it was tried
//! (2026-12-01, bench/compare.sh `spamgate-info`, C=64, interleaved, 5 runs each) and cost
//! more: 22.3-26.3 µs of server CPU per request (median 24.3) against 18.5-19.4 µs (median
//! 19.1) here, 26.8-37.9k req/s against 36.9-45.5k. It copies each line into its own `Vec`,
//! sends it through a channel that wakes the worker for almost every line, and the worker
//! writes whenever the channel is empty: under strace, 1 `write(2)` per 13 lines and 0.29
//! futex calls per line, against 1 per 53 lines and 0.16 here, where lines gather for up
//! to [`FLUSH_INTERVAL`] in one buffer.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// Longest a line waits in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Waiting bytes that start a write at once instead of after the interval.
pub const BATCH_BYTES: usize = 64 * 1024;
/// Waiting bytes above which new lines are dropped.
pub const CAPACITY: usize = 4 * 1024 * 1024;
/// How long exit waits for the last lines: stderr may be a pipe nobody reads any more,
/// and that must not keep the daemon from stopping.
pub const EXIT_WAIT: Duration = Duration::from_secs(5);

/// The process-wide writer, once [`install`]ed.
static INSTALLED: OnceLock<LogWriter> = OnceLock::new();

/// A cheap handle to the shared buffer; hand it to tracing-subscriber as its writer.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer thread: a first line after a batch, a full batch, a warning, exit.
    wake: Condvar,
    /// Tells [`LogWriter::shutdown`] that the writer thread has written everything.
    stopped: Condvar,
    /// The output, locked for a whole batch so batches (and direct lines) keep their order.
    out: Mutex<Box<dyn Write + Send>>,
    capacity: usize,
}

struct Pending {
    buf: Vec<u8>,
    dropped: u64,
    /// Asks the writer thread to write what is left and stop.
    stop: bool,
    /// Lines go straight to the output: after the writer thread stopped, or without one.
    direct: bool,
    /// The writer thread has written its last batch (or there never was one).
    finished: bool,
}

fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves nothing half-done that matters for logging.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LogWriter {
    /// A writer to `out` with its writer thread, dropping lines past `capacity` bytes.
    pub fn new(out: Box<dyn Write + Send>, capacity: usize) -> io::Result<LogWriter> {
        let shared = Shared::new(out, capacity, false);
        let thread_shared = shared.clone();
        thread::Builder::new()
            .name("spamgate-log".into())
            .spawn(move || thread_shared.run())?;
        Ok(LogWriter { shared })
    }

    /// Write out what is waiting, on the calling thread.
    pub fn flush(&self) {
        self.shared.write_out(&mut Vec::new(), false);
    }

    /// Have the writer thread write what is left and stop; later lines are written
    /// directly. Waits at most `wait` for it (the output may be stuck); says whether it
    /// finished in that time.
    pub fn shutdown(&self, wait: Duration) -> bool {
        let shared = &*self.shared;
        let mut pending = lock(&shared.pending);
        pending.stop = true;
        shared.wake.notify_one();
        let deadline = Instant::now() + wait;
        while !pending.finished {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            pending = shared
                .stopped
                .wait_timeout(pending, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    fn push(&self, line: &[u8], urgent: bool) {
        let shared = &*self.shared;
        let mut pending = lock(&shared.pending);
        if pending.direct {
            drop(pending);
            let mut out = lock(&shared.out);
            let _ = out.write_all(line);
            let _ = out.flush();
            return;
        }
        let before = pending.buf.len();
        if before + line.len() > shared.capacity {
            pending.dropped += 1;
            return;
        }
        pending.buf.extend_from_slice(line);
        let after = pending.buf.len();
        drop(pending);
        // Wake the thread only when it has something new to do: a first line (it sleeps
        // on an empty buffer), a full batch, or a warning to show without delay.
        if before == 0 || (before < BATCH_BYTES && after >= BATCH_BYTES) || urgent {
            shared.wake.notify_one();
        }
    }
}

impl Shared {
    fn new(out: Box<dyn Write + Send>, capacity: usize, direct: bool) -> Arc<Shared> {
        Arc::new(Shared {
            pending: Mutex::new(Pending {
                buf: Vec::with_capacity(BATCH_BYTES.min(capacity)),
                dropped: 0,
                stop: false,
                direct,
                finished: direct,
            }),
            wake: Condvar::new(),
            stopped: Condvar::new(),
            out: Mutex::new(out),
            capacity,
        })
    }

    /// The writer thread.
    fn run(&self) {
        let mut spare = Vec::with_capacity(BATCH_BYTES.min(self.capacity));
        loop {
            let stop = {
                let mut pending = lock(&self.pending);
                while pending.buf.is_empty() && pending.dropped == 0 && !pending.stop {
                    pending = self
                        .wake
                        .wait(pending)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                // Let a batch gather, unless it is already big.
                let deadline = Instant::now() + FLUSH_INTERVAL;
                while pending.buf.len() < BATCH_BYTES && !pending.stop {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    let (guard, timeout) = self
                        .wake
                        .wait_timeout(pending, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner);
                    pending = guard;
                    if !timeout.timed_out() {
                        // Woken early: a full batch, a warning, or exit. Write now.
                        break;
                    }
                }
                pending.stop
            };
            self.write_out(&mut spare, stop);
            if stop {
                lock(&self.pending).finished = true;
                self.stopped.notify_all();
                return;
            }
        }
    }

    /// Swap the waiting lines out and write them, holding the output lock throughout so
    /// neither a concurrent flush nor a direct line can overtake this batch. `stop` also
    /// switches to direct writes (under the same locks, for the same reason).
    fn write_out(&self, spare: &mut Vec<u8>, stop: bool) {
        let mut out = lock(&self.out);
        let dropped = {
            let mut pending = lock(&self.pending);
            pending.direct |= stop;
            std::mem::swap(&mut pending.buf, spare);
            std::mem::take(&mut pending.dropped)
        };
        if !spare.is_empty() {
            let _ = out.write_all(spare);
        }
        if dropped > 0 {
            let _ = writeln!(
                out,
                "spamgate: the log output did not keep up; {dropped} log lines dropped"
            );
        }
        let _ = out.flush();
        spare.clear();
        // After a burst, do not keep a buffer far larger than a batch for good.
        if spare.capacity() > 4 * BATCH_BYTES {
            spare.shrink_to(BATCH_BYTES);
        }
    }
}

/// One line being handed over; tracing-subscriber writes each event with one `write_all`.
pub struct LineWriter<'a> {
    writer: &'a LogWriter,
    urgent: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.writer.push(line, self.urgent);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            writer: self,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        LineWriter {
            writer: self,
            // Warnings and errors are rare and someone may be waiting to read them.
            urgent: *meta.level() <= tracing::Level::WARN,
        }
    }
}

/// The process-wide buffered stderr writer (started on first use). Falls back to a
/// direct writer if the writer thread cannot be started.
/// The running filter, replaceable on reload.
type FilterHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

static FILTER: OnceLock<FilterHandle> = OnceLock::new();

/// Installs the process's logger: `level` (a tracing filter such as `info` or
/// `info,spamgate::decision=warn`) unless `SPAMGATE_LOG` overrides it, written by the
/// log thread ([`install`]). The level can change later with [`set_level`].
pub fn init(level: &str) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPAMGATE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                // Buffered, written by its own thread: a log line never waits for stderr.
                .with_writer(install())
                .with_ansi(false),
        )
        .try_init();
    if installed.is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// What [`set_level`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelChange {
    Applied,
    /// `SPAMGATE_LOG` is set and wins over the configuration.
    OverriddenByEnvironment,
    /// No logger of [`init`]'s is installed in this process.
    NotInstalled,
}

/// Replaces the running filter (a reload with a new `log_level`).
pub fn set_level(level: &str) -> Result<LevelChange, String> {
    if std::env::var_os("SPAMGATE_LOG").is_some() {
        return Ok(LevelChange::OverriddenByEnvironment);
    }
    let Some(handle) = FILTER.get() else {
        return Ok(LevelChange::NotInstalled);
    };
    let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    handle.reload(filter).map_err(|e| e.to_string())?;
    Ok(LevelChange::Applied)
}

pub fn install() -> LogWriter {
    INSTALLED
        .get_or_init(|| {
            LogWriter::new(Box::new(io::stderr()), CAPACITY).unwrap_or_else(|_| LogWriter {
                shared: Shared::new(Box::new(io::stderr()), CAPACITY, true),
            })
        })
        .clone()
}

/// Held by `main`: on drop (a normal return or a panic unwinding through it) the lines
/// still waiting are written and later lines go out directly.
#[must_use = "dropping it at once flushes at once"]
pub struct FlushOnExit;

impl Drop for FlushOnExit {
    fn drop(&mut self) {
        if let Some(writer) = INSTALLED.get() {
            let _ = writer.shutdown(EXIT_WAIT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.0).clone()).unwrap()
        }
    }

    fn write_line(writer: &LogWriter, line: &str) {
        writer.make_writer().write_all(line.as_bytes()).unwrap();
    }

    #[test]
    fn lines_come_out_in_order_after_flush() {
        let out = Captured::default();
        let writer = LogWriter::new(Box::new(out.clone()), CAPACITY).unwrap();
        for i in 0..1000 {
            write_line(&writer, &format!("line {i}\n"));
        }
        writer.flush();
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(out.text(), expected);
    }

    #[test]
    fn the_writer_thread_writes_without_a_flush() {
        let out = Captured::default();
        let writer = LogWriter::new(Box::new(out.clone()), CAPACITY).unwrap();
        write_line(&writer, "one\n");
        // Not a timing assertion: the line must come out eventually, however slow the
        // machine; a minute only bounds a hang.
        let give_up = Instant::now() + Duration::from_secs(60);
        while out.text().is_empty() && Instant::now() < give_up {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(out.text(), "one\n");
    }

    #[test]
    fn a_full_buffer_drops_lines_and_says_how_many() {
        let out = Captured::default();
        // Hold the output so the writer thread cannot empty the buffer meanwhile.
        let writer = LogWriter::new(Box::new(out.clone()), 20).unwrap();
        {
            let _held = lock(&writer.shared.out);
            write_line(&writer, "0123456789\n"); // 11 bytes: fits
            write_line(&writer, "abcdefghij\n"); // 22 > 20: dropped
            write_line(&writer, "klmnopqrst\n"); // dropped
            write_line(&writer, "uvwxy\n"); // 17: fits
        }
        writer.flush();
        assert_eq!(
            out.text(),
            "0123456789\nuvwxy\nspamgate: the log output did not keep up; 2 log lines dropped\n"
        );
    }

    #[test]
    fn after_shutdown_lines_go_out_directly() {
        let out = Captured::default();
        let writer = LogWriter::new(Box::new(out.clone()), CAPACITY).unwrap();
        write_line(&writer, "before\n");
        assert!(writer.shutdown(Duration::from_secs(60)));
        assert_eq!(out.text(), "before\n");
        write_line(&writer, "after\n");
        assert_eq!(out.text(), "before\nafter\n");
    }

    #[test]
    fn events_from_tracing_arrive_whole() {
        use tracing_subscriber::fmt;
        let out = Captured::default();
        let writer = LogWriter::new(Box::new(out.clone()), CAPACITY).unwrap();
        let subscriber = fmt()
            .with_writer(writer.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "spamgate::decision", "action=pass client=192.0.2.1");
            tracing::warn!("new configuration rejected");
        });
        writer.flush();
        assert_eq!(
            out.text(),
            " INFO spamgate::decision: action=pass client=192.0.2.1\n \
             WARN spamgate::logging::tests: new configuration rejected\n"
        );
    }

    #[test]
    fn exit_gives_up_on_a_stuck_output_and_loses_nothing_once_it_moves() {
        /// An output whose writes block until the test lets them go, then are kept.
        struct Stuck {
            released: Mutex<std::sync::mpsc::Receiver<()>>,
            entered: std::sync::mpsc::Sender<()>,
            out: Captured,
        }
        impl Write for Stuck {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let _ = self.entered.send(());
                let _ = lock(&self.released).recv();
                self.out.write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (release, released) = std::sync::mpsc::channel();
        let (entered, writing) = std::sync::mpsc::channel();
        let out = Captured::default();
        let stuck = Stuck {
            released: Mutex::new(released),
            entered,
            out: out.clone(),
        };
        let writer = LogWriter::new(Box::new(stuck), CAPACITY).unwrap();
        write_line(&writer, "stuck\n");
        writing.recv().unwrap();
        // The writer thread is inside a write that does not return: exit gives up, and
        // says so, instead of waiting.
        assert!(!writer.shutdown(Duration::from_millis(10)));
        // A line logged meanwhile waits in the buffer; it is neither lost nor blocking.
        write_line(&writer, "meanwhile\n");
        assert_eq!(out.text(), "");
        // Once the output moves, the thread writes both and finishes.
        drop(release);
        assert!(writer.shutdown(Duration::from_secs(60)));
        assert_eq!(out.text(), "stuck\nmeanwhile\n");
        // And from then on lines go out directly.
        write_line(&writer, "after\n");
        assert_eq!(out.text(), "stuck\nmeanwhile\nafter\n");
    }
}
