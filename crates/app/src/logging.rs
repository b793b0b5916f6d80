//! Logs: the subscriber, its writer thread, the request line, and the
//! request id on every line logged while a request is handled.
//!
//! The server's log lines are formatted by the thread that logs them and
//! appended to one buffer; a thread of its own writes that buffer to stderr
//! every few milliseconds ([`LogWriter`]). A request costs no system call
//! and wakes no thread: a channel with a writer thread woken per line (as
//! `tracing-appender` does) cost a `/v1/authz` request more in the kernel
//! than its authorization costs (docs/BENCHMARKS.md). Nothing is dropped;
//! a stderr that cannot keep up slows the requests down. The guard [`init`]
//! answers flushes what is left when it is dropped, at exit.
//!
//! When the server logs JSON, the request line (one per request, written by
//! `observe`) is built here and appended straight to that buffer, instead
//! of going through `tracing`'s JSON formatter. It has the fields
//! `tracing_subscriber` would write, in its order, with the same target,
//! and obeys `RUST_LOG` like any other line. In every other case (pretty
//! logs, tests) it is a `tracing` event.
//!
//! A request's id reaches the lines logged while it is handled through a
//! task-local ([`with_request_id`]), read by the event formatter
//! ([`RequestIdFormat`]) only when a line is written: a `tracing` span per
//! request cost about a tenth of a `/v1/authz` request.

use crate::config::LogFormat;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// How often the writer thread writes what is waiting.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// Bytes waiting that wake the writer thread before its interval is up.
const WAKE_AT: usize = 256 * 1024;
/// Bytes waiting that make a logging thread wait for the writer.
const MAX_PENDING: usize = 8 * 1024 * 1024;
/// The capacity each of the two buffers keeps between batches: what a
/// buffer reaches at a steady rate before the writer wakes (`WAKE_AT` and
/// the lines logged while it wakes). A buffer that kept less would grow
/// again, copying itself, in every batch; what a burst grew above this is
/// given back.
const KEPT_CAPACITY: usize = 2 * WAKE_AT;

/// Sets up logging to stderr at `default_level` unless `RUST_LOG` says
/// otherwise; `background` for the server (a writer thread, see above).
/// Keep the guard until exit.
pub fn init(format: LogFormat, default_level: &str, background: bool) -> Option<LogGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let (writer, guard) = if background {
        let (writer, guard) = LogWriter::spawn(Box::new(std::io::stderr()), FLUSH_INTERVAL, MAX_PENDING);
        if format == LogFormat::Json {
            let _ = SINK.set(writer.clone());
        }
        (BoxMakeWriter::new(writer), Some(guard))
    } else {
        (BoxMakeWriter::new(std::io::stderr), None)
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Json => {
            let events = RequestIdFormat::json(tracing_subscriber::fmt::format().json().flatten_event(true));
            builder.json().event_format(events).init();
        }
        LogFormat::Pretty => {
            let events = RequestIdFormat::pretty(tracing_subscriber::fmt::format());
            builder.event_format(events).init();
        }
    }
    guard
}

/// Lines waiting for the writer thread.
struct Pending {
    state: Mutex<PendingState>,
    /// Signalled when the writer took what was waiting.
    taken: Condvar,
    writer: OnceLock<Thread>,
    stopping: AtomicBool,
    /// Bytes waiting that make a logging thread wait for the writer.
    max: usize,
}

struct PendingState {
    lines: Vec<u8>,
    /// The writer thread is gone: lines are written at once, by the
    /// thread that logs them, under the lock (so they stay whole).
    closed: Option<Box<dyn std::io::Write + Send>>,
}

/// The log's writer: appends whole lines to a buffer that a thread of its
/// own writes out every [`FLUSH_INTERVAL`]. Cheap to clone.
#[derive(Clone)]
pub struct LogWriter {
    pending: Arc<Pending>,
}

/// Stops the writer thread when dropped, after it wrote every line.
pub struct LogGuard {
    pending: Arc<Pending>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// Starts the writer thread, writing to `out` every `interval`; a
    /// logging thread waits while more than `max_pending` bytes wait.
    pub fn spawn(out: Box<dyn std::io::Write + Send>, interval: Duration, max_pending: usize) -> (LogWriter, LogGuard) {
        let pending = Arc::new(Pending {
            state: Mutex::new(PendingState {
                lines: Vec::with_capacity(KEPT_CAPACITY),
                closed: None,
            }),
            taken: Condvar::new(),
            writer: OnceLock::new(),
            stopping: AtomicBool::new(false),
            max: max_pending,
        });
        let shared = Arc::clone(&pending);
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_out(&shared, out, interval))
            .ok();
        match &thread {
            Some(thread) => {
                let _ = pending.writer.set(thread.thread().clone());
            }
            // No thread (the process is out of threads): every line is
            // written at once, to stderr, rather than waiting for nobody.
            None => {
                pending.state.lock().unwrap_or_else(PoisonError::into_inner).closed = Some(Box::new(std::io::stderr()));
            }
        }
        (
            LogWriter {
                pending: Arc::clone(&pending),
            },
            LogGuard { pending, thread },
        )
    }

    /// Appends `bytes` (whole lines) for the writer thread.
    pub fn append(&self, bytes: &[u8]) {
        let mut state = self.lock();
        while state.lines.len() >= self.pending.max && state.closed.is_none() {
            self.wake();
            state = self.pending.taken.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        match state.closed.as_mut() {
            Some(out) => write_through(out, bytes),
            None => {
                state.lines.extend_from_slice(bytes);
                if state.lines.len() >= WAKE_AT {
                    self.wake();
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, PendingState> {
        self.pending.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self) {
        if let Some(writer) = self.pending.writer.get() {
            writer.unpark();
        }
    }
}

/// The writer thread: takes what waits, writes it, sleeps for `interval`
/// (or until woken); at the end takes the last lines and hands `out` over
/// to the logging threads.
fn write_out(pending: &Pending, mut out: Box<dyn std::io::Write + Send>, interval: Duration) {
    let mut batch: Vec<u8> = Vec::with_capacity(KEPT_CAPACITY);
    loop {
        let stopping = pending.stopping.load(Ordering::Acquire);
        {
            let mut state = pending.state.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut state.lines, &mut batch);
            if stopping {
                write_through(&mut out, &batch);
                state.closed = Some(out);
                pending.taken.notify_all();
                return;
            }
        }
        pending.taken.notify_all();
        if !batch.is_empty() {
            write_through(&mut out, &batch);
            batch.clear();
            batch.shrink_to(KEPT_CAPACITY);
        }
        std::thread::park_timeout(interval);
    }
}

/// Writes `bytes` and flushes. Nothing can be done about a failing stderr
/// but to go on.
fn write_through(out: &mut Box<dyn std::io::Write + Send>, bytes: &[u8]) {
    let _ = out.write_all(bytes).and_then(|()| out.flush());
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.pending.stopping.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.append(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

tokio::task_local! {
    static REQUEST_ID: Rc<str>;
}

/// Runs `future` with `id` as the request id of every line it logs (on the
/// thread that polls it; work handed to other threads does not carry it).
pub fn with_request_id<F: Future>(id: Rc<str>, future: F) -> tokio::task::futures::TaskLocalFuture<Rc<str>, F> {
    REQUEST_ID.scope(id, future)
}

/// The id of the request being handled, if any.
pub fn current_request_id() -> Option<Rc<str>> {
    REQUEST_ID.try_with(Rc::clone).ok()
}

/// Formats events with `inner`, adding the current request's id: as the
/// first field of a JSON object, or `request_id=…` before a pretty line.
#[derive(Debug, Clone)]
pub struct RequestIdFormat<F> {
    inner: F,
    json: bool,
}

impl<F> RequestIdFormat<F> {
    /// Around a formatter that writes one JSON object per event.
    pub fn json(inner: F) -> Self {
        Self { inner, json: true }
    }

    /// Around a formatter of text lines.
    pub fn pretty(inner: F) -> Self {
        Self { inner, json: false }
    }
}

impl<S, N, F> FormatEvent<S, N> for RequestIdFormat<F>
where
    F: FormatEvent<S, N>,
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let Some(id) = current_request_id() else {
            return self.inner.format_event(ctx, writer, event);
        };
        if !self.json {
            write!(writer, "request_id={id} ")?;
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::with_capacity(256);
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => {
                let mut field = String::with_capacity(id.len() + 20);
                field.push_str("{\"request_id\":\"");
                push_escaped(&mut field, &id);
                field.push_str("\",");
                writer.write_str(&field)?;
                writer.write_str(rest)
            }
            None => writer.write_str(&line),
        }
    }
}

/// The target the line is filtered and labelled by.
pub const TARGET: &str = "convosphere_auth::http::middleware";

/// Where request lines go as JSON: the writer of the server's JSON log.
static SINK: OnceLock<LogWriter> = OnceLock::new();

/// What is logged of a request: never a body, a query string or a header,
/// which may hold credentials.
#[derive(Debug, Clone, Copy)]
pub struct RequestLine<'a> {
    /// `X-Request-Id`.
    pub request_id: &'a str,
    /// The HTTP method.
    pub method: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
    /// The answer's status.
    pub status: u16,
    /// How long the answer took.
    pub latency: Duration,
}

/// Logs the line at `INFO`, if `RUST_LOG` lets it through.
pub fn write(line: &RequestLine<'_>) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    match SINK.get() {
        Some(sink) => {
            thread_local! {
                static SCRATCH: RefCell<String> = RefCell::new(String::with_capacity(256));
            }
            SCRATCH.with(|scratch| {
                let mut json = scratch.borrow_mut();
                json.clear();
                line.push_json(&mut json, SystemTime::now());
                sink.append(json.as_bytes());
            });
        }
        None => tracing::info!(
            target: TARGET,
            request_id = line.request_id,
            method = line.method,
            path = line.path,
            status = line.status,
            latency_ms = line.latency.as_secs_f64() * 1e3,
            "request"
        ),
    }
}

impl RequestLine<'_> {
    /// The line as `tracing_subscriber`'s flattened JSON format writes it,
    /// newline included, but for `latency_ms`: milliseconds with three
    /// decimals (whole microseconds).
    pub fn to_json(&self, at: SystemTime) -> String {
        let mut out = String::with_capacity(256);
        self.push_json(&mut out, at);
        out
    }

    fn push_json(&self, out: &mut String, at: SystemTime) {
        out.push_str("{\"timestamp\":\"");
        push_timestamp(out, at);
        out.push_str("\",\"level\":\"INFO\",\"message\":\"request\",\"request_id\":\"");
        push_escaped(out, self.request_id);
        out.push_str("\",\"method\":\"");
        push_escaped(out, self.method);
        out.push_str("\",\"path\":\"");
        push_escaped(out, self.path);
        out.push_str("\",\"status\":");
        push_decimal(out, u64::from(self.status), 1);
        out.push_str(",\"latency_ms\":");
        let micros = u64::try_from(self.latency.as_micros()).unwrap_or(u64::MAX);
        push_decimal(out, micros / 1000, 1);
        out.push('.');
        push_decimal(out, micros % 1000, 3);
        out.push_str(",\"target\":\"");
        out.push_str(TARGET);
        out.push_str("\"}\n");
    }
}

/// Appends `n` in decimal, with leading zeros up to `width` digits.
fn push_decimal(out: &mut String, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while n > 0 || digits.len() - start < width.max(1) {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    for &digit in &digits[start..] {
        out.push(char::from(digit));
    }
}

/// RFC 3339 in UTC with microseconds, as `tracing_subscriber` writes it:
/// `2026-11-29T03:50:24.964318Z`. The part up to the second is formatted
/// once a second per thread.
fn push_timestamp(out: &mut String, at: SystemTime) {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let time = i64::try_from(secs)
                .ok()
                .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                .unwrap_or_default();
            cached.1 = time.format("%Y-%m-%dT%H:%M:%S").to_string();
            cached.0 = secs;
        }
        out.push_str(&cached.1);
    });
    out.push('.');
    push_decimal(out, u64::from(since.subsec_micros()), 6);
    out.push('Z');
}

/// Appends `text` as the inside of a JSON string, escaped as `serde_json`
/// escapes it.
pub(crate) fn push_escaped(out: &mut String, text: &str) {
    // Ids, methods and paths almost never hold anything to escape. One
    // pass without an early exit, so that it runs on whole vectors.
    let plain = text
        .bytes()
        .fold(true, |plain, b| plain & (b != b'"') & (b != b'\\') & (b >= 0x20));
    if plain {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(path: &str) -> RequestLine<'_> {
        RequestLine {
            request_id: "b3434d12-4503-4360-88d7-0f629ef9023d",
            method: "GET",
            path,
            status: 200,
            latency: Duration::from_micros(4_810),
        }
    }

    #[test]
    fn the_line_is_the_one_tracing_wrote() {
        let at = UNIX_EPOCH + Duration::from_micros(1_795_924_224_964_318);
        assert_eq!(
            line("/v1/authz").to_json(at),
            "{\"timestamp\":\"2026-11-29T03:50:24.964318Z\",\"level\":\"INFO\",\"message\":\"request\",\
             \"request_id\":\"b3434d12-4503-4360-88d7-0f629ef9023d\",\"method\":\"GET\",\"path\":\"/v1/authz\",\
             \"status\":200,\"latency_ms\":4.810,\"target\":\"convosphere_auth::http::middleware\"}\n"
        );
        // The cached second is not reused for another second.
        let later = at + Duration::from_secs(61);
        assert!(line("/")
            .to_json(later)
            .starts_with("{\"timestamp\":\"2026-11-29T03:51:25.964318Z\""));
        let slow = RequestLine {
            latency: Duration::from_micros(12_345_067),
            status: 503,
            ..line("/")
        };
        assert!(slow.to_json(at).contains("\"status\":503,\"latency_ms\":12345.067,"));
    }

    /// Bytes written by a writer thread or a subscriber, readable by the test.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// What the server's subscriber writes for `log`, JSON or pretty.
    fn logged(json: bool, log: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let builder = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false);
        if json {
            let events = RequestIdFormat::json(tracing_subscriber::fmt::format().json().flatten_event(true));
            tracing::subscriber::with_default(builder.json().event_format(events).finish(), log);
        } else {
            let events = RequestIdFormat::pretty(tracing_subscriber::fmt::format().with_ansi(false));
            tracing::subscriber::with_default(builder.event_format(events).finish(), log);
        }
        buffer.text()
    }

    fn in_request(id: &str, log: impl FnOnce()) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(with_request_id(id.into(), async { log() }));
    }

    #[test]
    fn lines_logged_while_a_request_is_handled_carry_its_id() {
        let text = logged(true, || {
            tracing::warn!(status = 503, "before");
            in_request("a\"b\\c", || tracing::error!(error = "boom", "inside"));
            tracing::warn!("after");
        });
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0]["message"], "before");
        assert!(lines[0].get("request_id").is_none());
        assert_eq!(lines[1]["request_id"], "a\"b\\c");
        assert_eq!(lines[1]["message"], "inside");
        assert_eq!(lines[1]["error"], "boom");
        assert_eq!(lines[1]["level"], "ERROR");
        assert!(lines[2].get("request_id").is_none());

        let text = logged(false, || in_request("r-1", || tracing::warn!("inside")));
        assert!(text.starts_with("request_id=r-1 "), "{text}");
        assert!(text.contains("inside"));
    }

    #[test]
    fn the_request_line_has_the_fields_tracing_gives_it() {
        let text = logged(true, || {
            tracing::info!(
                target: TARGET,
                request_id = "b3434d12-4503-4360-88d7-0f629ef9023d",
                method = "GET",
                path = "/v1/authz",
                status = 200u16,
                latency_ms = 4.81,
                "request"
            )
        });
        let theirs: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        let ours: serde_json::Value = serde_json::from_str(&line("/v1/authz").to_json(SystemTime::now())).unwrap();
        let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&ours), keys(&theirs));
        for key in [
            "level",
            "message",
            "request_id",
            "method",
            "path",
            "status",
            "latency_ms",
            "target",
        ] {
            assert_eq!(ours[key], theirs[key], "{key}");
        }
    }

    #[test]
    fn the_writer_thread_writes_every_line_whole_and_flushes_at_the_end() {
        let out = Buffer::default();
        // A tiny limit: logging threads keep waiting for the writer.
        let (writer, guard) = LogWriter::spawn(Box::new(out.clone()), Duration::from_millis(1), 512);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        writer.append(format!("thread {t} line {i:04} {}\n", "x".repeat(i % 50)).as_bytes());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        writer.append(b"last\n");
        drop(guard);
        let text = out.text();
        assert_eq!(text.lines().count(), 8 * 500 + 1);
        for t in 0..8 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            assert_eq!(mine.len(), 500);
            for (i, line) in mine.iter().enumerate() {
                assert_eq!(**line, format!("thread {t} line {i:04} {}", "x".repeat(i % 50)));
            }
        }
        assert!(text.ends_with("last\n"));
        // After the guard, lines are written at once.
        writer.append(b"after the end\n");
        assert!(out.text().ends_with("after the end\n"));
    }

    #[test]
    fn a_line_is_written_within_the_interval_without_a_flush() {
        let out = Buffer::default();
        let (writer, _guard) = LogWriter::spawn(Box::new(out.clone()), Duration::from_millis(10), MAX_PENDING);
        writer.append(b"soon\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.text().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(out.text(), "soon\n");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A path is whatever the client sent: the line stays one JSON
        /// object on one line, and the path reads back as sent.
        #[test]
        fn any_path_gives_one_line_of_json_that_reads_back(path in any::<String>(), micros in 0u64..4_102_444_800_000_000) {
            let json = line(&path).to_json(UNIX_EPOCH + Duration::from_micros(micros));
            prop_assert!(json.ends_with('\n'));
            prop_assert_eq!(json.matches('\n').count(), 1);
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(value["path"].as_str(), Some(path.as_str()));
            prop_assert_eq!(value["status"].as_u64(), Some(200));
            let stamp = value["timestamp"].as_str().unwrap();
            let parsed = chrono::DateTime::parse_from_rfc3339(stamp).unwrap();
            prop_assert_eq!(u64::try_from(parsed.timestamp_micros()).unwrap(), micros);
        }
    }
}
