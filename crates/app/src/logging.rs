//! Logs: the subscriber, the request line, and the fields of spans.
//!
//! The server's log lines are formatted by the thread that logs them and
//! written by a thread of its own, in batches (a buffer flushed whenever no
//! line is waiting): a write per request line cost a request more than its
//! authorization does. Nothing is dropped; a logger that cannot keep up
//! slows the requests down. The guard [`init`] answers flushes what is left
//! when it is dropped, at exit.
//!
//! When the server logs JSON, the request line (one per request, written by
//! `observe`) is built here and handed straight to the writer thread,
//! instead of going through `tracing`'s JSON formatter, and the fields of a
//! span are written as JSON directly ([`SpanFields`]) rather than through
//! `serde_json`: between them, these two cost about a quarter of the CPU
//! time of a `/v1/authz` request (docs/BENCHMARKS.md). The output is the
//! one `tracing_subscriber` writes — same fields, same order, same target —
//! and the request line obeys `RUST_LOG` like any other. In every other
//! case (pretty logs, tests) it is a `tracing` event.

use crate::config::LogFormat;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

/// Sets up logging to stderr at `default_level` unless `RUST_LOG` says
/// otherwise; `background` for the server (a writer thread, see above).
/// Keep the guard until exit.
pub fn init(format: LogFormat, default_level: &str, background: bool) -> Option<WorkerGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let (writer, guard) = if background {
        let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .thread_name("log-writer")
            .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()));
        if format == LogFormat::Json {
            install(writer.clone());
        }
        (BoxMakeWriter::new(writer), Some(guard))
    } else {
        (BoxMakeWriter::new(std::io::stderr), None)
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .fmt_fields(SpanFields)
            .init(),
        LogFormat::Pretty => builder.init(),
    }
    guard
}

/// The target the line is filtered and labelled by.
pub const TARGET: &str = "convosphere_auth::http::middleware";

static SINK: OnceLock<NonBlocking> = OnceLock::new();

/// Sends request lines, as JSON, straight to `writer` (the writer of the
/// server's JSON log). Only the first call counts.
fn install(writer: NonBlocking) {
    let _ = SINK.set(writer);
}

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
            let json = line.to_json(SystemTime::now());
            // A closed writer (the process is exiting) loses the line, as
            // `tracing` would.
            let _ = sink.clone().write_all(json.as_bytes());
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
    /// newline included.
    pub fn to_json(&self, at: SystemTime) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("{\"timestamp\":\"");
        push_timestamp(&mut out, at);
        out.push_str("\",\"level\":\"INFO\",\"message\":\"request\",\"request_id\":\"");
        push_escaped(&mut out, self.request_id);
        out.push_str("\",\"method\":\"");
        push_escaped(&mut out, self.method);
        out.push_str("\",\"path\":\"");
        push_escaped(&mut out, self.path);
        let _ = write!(
            out,
            "\",\"status\":{},\"latency_ms\":{},\"target\":\"{TARGET}\"}}",
            self.status,
            self.latency.as_secs_f64() * 1e3
        );
        out.push('\n');
        out
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
    let _ = write!(out, ".{:06}Z", since.subsec_micros());
}

/// Appends `text` as the inside of a JSON string.
fn push_escaped(out: &mut String, text: &str) {
    // Ids, methods and paths almost never hold anything to escape.
    if !text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
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
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// The fields of a span as one JSON object, `{"request_id":"…"}`: what
/// `tracing_subscriber`'s `JsonFields` writes, without building a
/// `serde_json` map for every span. Values that are not strings, integers,
/// floats or booleans are written as the string of their `Debug` form.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpanFields;

struct JsonObject {
    out: String,
}

impl JsonObject {
    fn key(&mut self, field: &Field) {
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        self.out.push('"');
        push_escaped(&mut self.out, field.name());
        self.out.push_str("\":");
    }

    fn string(&mut self, field: &Field, value: &str) {
        self.key(field);
        self.out.push('"');
        push_escaped(&mut self.out, value);
        self.out.push('"');
    }

    fn finish(mut self) -> String {
        if self.out.is_empty() {
            self.out.push('{');
        }
        self.out.push('}');
        self.out
    }
}

impl Visit for JsonObject {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.string(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.key(field);
            let _ = write!(self.out, "{value}");
        } else {
            self.string(field, &value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.string(field, &format!("{value:?}"));
    }
}

impl<'writer> FormatFields<'writer> for SpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> std::fmt::Result {
        let mut object = JsonObject { out: String::new() };
        fields.record(&mut object);
        writer.write_str(&object.finish())
    }

    /// Fields recorded later join the object.
    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> std::fmt::Result {
        let mut object = JsonObject { out: String::new() };
        fields.record(&mut object);
        if object.out.is_empty() {
            return Ok(());
        }
        let added = &object.out[1..];
        match current.fields.strip_suffix('}') {
            Some(open) if open.len() > 1 => current.fields = format!("{open},{added}}}"),
            _ => current.fields = format!("{{{added}}}"),
        }
        Ok(())
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
             \"status\":200,\"latency_ms\":4.81,\"target\":\"convosphere_auth::http::middleware\"}\n"
        );
        // The cached second is not reused for another second.
        let later = at + Duration::from_secs(61);
        assert!(line("/")
            .to_json(later)
            .starts_with("{\"timestamp\":\"2026-11-29T03:51:25.964318Z\""));
    }

    /// The JSON lines a subscriber writes for `log`, with span fields
    /// formatted by `fields`.
    fn lines_with<N>(fields: N, log: impl FnOnce()) -> Vec<serde_json::Value>
    where
        N: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        use std::sync::{Arc, Mutex};
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
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .fmt_fields(fields)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    #[test]
    fn span_fields_read_as_tracing_s_own_json_fields_write_them() {
        let log = || {
            let span = tracing::info_span!(
                "request",
                request_id = "a\"b\\c\n",
                count = 3u64,
                delta = -2i64,
                ok = true,
                ratio = 0.5f64,
                debug = ?vec![1, 2],
                later = tracing::field::Empty,
            );
            span.record("later", "recorded after");
            let _entered = span.enter();
            tracing::warn!(status = 503, "inside");
        };
        let ours = lines_with(SpanFields, log);
        let theirs = lines_with(tracing_subscriber::fmt::format::JsonFields::default(), log);
        assert_eq!(ours.len(), 1);
        assert_eq!(ours[0]["span"], theirs[0]["span"]);
        assert_eq!(ours[0]["spans"], theirs[0]["spans"]);
        assert_eq!(ours[0]["span"]["request_id"], "a\"b\\c\n");
        assert_eq!(ours[0]["span"]["later"], "recorded after");
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
