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

/// The running filter, replaceable on reload.
type FilterHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

static FILTER: OnceLock<FilterHandle> = OnceLock::new();

/// `log_format`: how each line is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-12-02T01:02:03.456789Z  INFO spamgate::decision: action=pass ...`
    #[default]
    Text,
    /// One JSON object per line (docs/operations.md, "Logs").
    Json,
}

/// `log_target`: where lines go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// Standard error (journald under systemd).
    #[default]
    Stderr,
    /// The local syslog socket, facility mail, one datagram per line (RFC 3164 style:
    /// `<PRI>spamgate[PID]: ...`; the syslog daemon adds time and host).
    Syslog,
}

/// What [`init_with`] sets up.
#[derive(Debug, Clone)]
pub struct LogOptions {
    pub level: String,
    pub format: LogFormat,
    pub target: LogTarget,
    /// The syslog socket, for [`LogTarget::Syslog`].
    pub syslog_path: std::path::PathBuf,
}

/// Installs the process's logger: `level` (a tracing filter such as `info` or
/// `info,spamgate::decision=warn`) unless `SPAMGATE_LOG` overrides it, as text on stderr,
/// written by the log thread ([`install`]). The level can change later with [`set_level`].
pub fn init(level: &str) {
    init_with(&LogOptions {
        level: level.into(),
        format: LogFormat::Text,
        target: LogTarget::Stderr,
        syslog_path: DEFAULT_SYSLOG_PATH.into(),
    });
}

/// The usual syslog socket.
pub const DEFAULT_SYSLOG_PATH: &str = "/dev/log";

/// Installs the process's logger as `options` say; the first call in a process wins. A
/// syslog socket that does not exist falls back to stderr, and says so there.
pub fn init_with(options: &LogOptions) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPAMGATE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&options.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let mut target = options.target;
    let mut out: Box<dyn Write + Send> = Box::new(io::stderr());
    if target == LogTarget::Syslog {
        match SyslogOut::new(&options.syslog_path) {
            Ok(syslog) => out = Box::new(syslog),
            Err(e) => {
                eprintln!(
                    "spamgate: cannot log to syslog at {}: {e}; logging to stderr",
                    options.syslog_path.display()
                );
                target = LogTarget::Stderr;
            }
        }
    }
    let writer = install_to(out);
    let style = LineStyle {
        format: options.format,
        syslog_pid: (target == LogTarget::Syslog).then(std::process::id),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if style == LineStyle::TEXT {
        // Buffered, written by its own thread: a log line never waits for stderr.
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer.clone())
                    .with_ansi(false),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer.clone())
                    .with_ansi(false)
                    .event_format(style),
            )
            .try_init()
    };
    if installed.is_ok() {
        let _ = FILTER.set(handle);
        // Decision lines skip tracing's formatting: see `DecisionWriter`.
        spamgate_app::decision_log::set_sink(Box::new(DecisionWriter { writer, style }));
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

/// The process-wide buffered stderr writer (started on first use). Falls back to a
/// direct writer if the writer thread cannot be started.
pub fn install() -> LogWriter {
    install_to(Box::new(io::stderr()))
}

/// The process-wide buffered writer to `out` (the first output installed stays).
fn install_to(out: Box<dyn Write + Send>) -> LogWriter {
    INSTALLED
        .get_or_init(move || {
            let fallback = Box::new(io::stderr());
            LogWriter::new(out, CAPACITY).unwrap_or_else(|_| LogWriter {
                shared: Shared::new(fallback, CAPACITY, true),
            })
        })
        .clone()
}

/// How a line looks: text or JSON, with the syslog header or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LineStyle {
    format: LogFormat,
    /// `Some(pid)`: lines start with `<PRI>spamgate[pid]: ` and carry no time of their own
    /// in text (the syslog daemon stamps them).
    syslog_pid: Option<u32>,
}

impl LineStyle {
    /// tracing-subscriber's own text format on stderr, as before `log_format` existed.
    const TEXT: LineStyle = LineStyle {
        format: LogFormat::Text,
        syslog_pid: None,
    };

    /// What comes before the level: the syslog header, or the time for text on stderr
    /// (JSON carries the time as a member).
    fn prefix(&self, out: &mut String, level: tracing::Level) {
        use std::fmt::Write as _;
        match self.syslog_pid {
            Some(pid) => {
                let _ = write!(out, "<{}>spamgate[{pid}]: ", MAIL + severity(level));
            }
            None if self.format == LogFormat::Text => {
                rfc3339_now(out);
                out.push(' ');
            }
            None => {}
        }
    }

    /// The line up to the event's own fields: `{"timestamp":..,"level":..,"target":..`
    /// for JSON (no closing brace), `[time ]LEVEL target: ` for text.
    fn head(&self, out: &mut String, level: tracing::Level, target: &str) {
        self.prefix(out, level);
        match self.format {
            LogFormat::Json => {
                out.push_str("{\"timestamp\":\"");
                rfc3339_now(out);
                out.push_str("\",\"level\":\"");
                out.push_str(level.as_str());
                out.push_str("\",\"target\":");
                spamgate_app::decision_log::json_str(out, target);
            }
            LogFormat::Text if self.syslog_pid.is_some() => {
                out.push_str(level.as_str());
                out.push(' ');
                out.push_str(target);
                out.push_str(": ");
            }
            LogFormat::Text => {
                // tracing-subscriber's layout: the level right-aligned in five columns.
                use std::fmt::Write as _;
                let _ = write!(out, "{:>5} {target}: ", level.as_str());
            }
        }
    }
}

/// Syslog facility mail (2), shifted into the priority value.
const MAIL: u8 = 2 << 3;

fn severity(level: tracing::Level) -> u8 {
    match level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        _ => 7,
    }
}

/// Appends the current UTC time as RFC 3339 with microseconds, as tracing-subscriber
/// writes it (`2026-12-02T01:02:03.456789Z`).
fn rfc3339_now(out: &mut String) {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(out, since.as_secs(), since.subsec_micros());
}

fn rfc3339(out: &mut String, secs: u64, micros: u32) {
    use std::fmt::Write as _;
    // Days to civil date (Howard Hinnant's algorithm), for 1970 onwards.
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
}

/// An event's fields, gathered as JSON members or as text.
struct FieldWriter<'a> {
    out: &'a mut String,
    json: bool,
    /// Text: whether anything was written yet (a space goes before the next field).
    wrote: bool,
}

impl FieldWriter<'_> {
    fn value(&mut self, field: &tracing::field::Field, value: &str, quoted: bool) {
        use spamgate_app::decision_log::json_str;
        if self.json {
            self.out.push(',');
            json_str(self.out, field.name());
            self.out.push(':');
            if quoted {
                json_str(self.out, value);
            } else {
                self.out.push_str(value);
            }
            return;
        }
        if self.wrote {
            self.out.push(' ');
        }
        self.wrote = true;
        if field.name() != "message" {
            self.out.push_str(field.name());
            self.out.push('=');
        }
        self.out.push_str(value);
    }
}

impl tracing::field::Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.value(field, value, true);
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.value(field, &value.to_string(), false);
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.value(field, &value.to_string(), false);
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.value(field, if value { "true" } else { "false" }, false);
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.value(field, &format!("{value:?}"), true);
    }
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for LineStyle
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut line = String::with_capacity(256);
        self.head(&mut line, *meta.level(), meta.target());
        let json = self.format == LogFormat::Json;
        event.record(&mut FieldWriter {
            out: &mut line,
            json,
            wrote: false,
        });
        if json {
            line.push('}');
        }
        line.push('\n');
        writer.write_str(&line)
    }
}

/// Writes decision lines straight into the log buffer: the line is formatted once into a
/// reused per-thread buffer, without tracing's event, field visitor and formatter.
struct DecisionWriter {
    writer: LogWriter,
    style: LineStyle,
}

thread_local! {
    static DECISION_BUF: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(512));
}

impl spamgate_app::decision_log::DecisionSink for DecisionWriter {
    fn write(&self, decision: &spamgate_app::decision_log::DecisionLine<'_>) {
        DECISION_BUF.with(|buf| {
            let Ok(mut line) = buf.try_borrow_mut() else {
                return;
            };
            line.clear();
            format_decision(&mut line, self.style, decision);
            self.writer.push(line.as_bytes(), false);
            if line.capacity() > 64 * 1024 {
                *line = String::with_capacity(512);
            }
        });
    }
}

fn format_decision(
    line: &mut String,
    style: LineStyle,
    decision: &spamgate_app::decision_log::DecisionLine<'_>,
) {
    use std::fmt::Write as _;
    let target = spamgate_app::decision_log::TARGET;
    style.head(line, tracing::Level::INFO, target);
    match style.format {
        LogFormat::Json => {
            decision.write_json_fields(line);
            line.push('}');
        }
        LogFormat::Text => {
            let _ = write!(line, "{decision}");
        }
    }
    line.push('\n');
}

/// The syslog output: each line of a batch is one datagram to the socket, sent by
/// address every time, so a syslog daemon that restarts is found again. Lines without a
/// header of their own (the "lines dropped" notice) get one at `mail.err`.
struct SyslogOut {
    socket: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
    header: String,
}

/// Longest datagram sent; longer lines are cut (rsyslog's default limit is 8 KiB).
pub const SYSLOG_MAX_LINE: usize = 8192;

impl SyslogOut {
    fn new(path: &std::path::Path) -> io::Result<SyslogOut> {
        let socket = std::os::unix::net::UnixDatagram::unbound()?;
        // A syslog daemon that stops reading must not hold the log thread for long.
        socket.set_write_timeout(Some(Duration::from_secs(1)))?;
        // Fails now when nothing listens there, instead of losing every line later.
        socket.send_to(
            format!(
                "<{}>spamgate[{}]: logging to syslog",
                MAIL + 6,
                std::process::id()
            )
            .as_bytes(),
            path,
        )?;
        Ok(SyslogOut {
            socket,
            path: path.to_owned(),
            header: format!("<{}>spamgate[{}]: ", MAIL + 3, std::process::id()),
        })
    }
}

impl Write for SyslogOut {
    fn write(&mut self, batch: &[u8]) -> io::Result<usize> {
        for line in batch.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let mut owned;
            let mut line = line;
            if line.first() != Some(&b'<') {
                owned = self.header.clone().into_bytes();
                owned.extend_from_slice(line);
                line = &owned;
            }
            let line = &line[..line.len().min(SYSLOG_MAX_LINE)];
            // A lost datagram is not worth stopping the log thread for.
            let _ = self.socket.send_to(line, &self.path);
        }
        Ok(batch.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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

    #[test]
    fn times_are_rfc3339_utc_with_microseconds() {
        fn check(secs: u64, micros: u32, expected: &str) {
            let mut out = String::new();
            rfc3339(&mut out, secs, micros);
            assert_eq!(out, expected, "{secs}");
        }
        check(0, 0, "1970-01-01T00:00:00.000000Z");
        check(951_782_400, 1, "2000-02-29T00:00:00.000001Z");
        check(1_798_761_599, 999_999, "2026-12-31T23:59:59.999999Z");
        check(1_798_761_600, 0, "2027-01-01T00:00:00.000000Z");
        check(4_107_542_400, 500_000, "2100-03-01T00:00:00.500000Z");
    }

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
