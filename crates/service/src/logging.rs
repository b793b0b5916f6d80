//! Logs: the subscriber, the request line, and the request id on every
//! line logged while a request is handled.
//!
//! Lines are formatted by `tracing_subscriber` (JSON, or pretty for a
//! terminal) and, in the server, written by `tracing_appender`'s
//! non-blocking writer: a thread of its own that writes the lines through a
//! buffer, flushed after each batch, so that a request costs no system call
//! of its own. The writer is not lossy: a stderr that cannot keep up slows
//! the requests down rather than losing lines. The guard [`init`] answers
//! writes what is left when it is dropped, at exit.
//!
//! A request's id reaches the lines logged while it is handled through a
//! task-local ([`with_request_id`]), read by the event formatter
//! ([`RequestIdFormat`]) only when a line is written: a `tracing` span per
//! request cost about a tenth of a `/v1/authz` request.

use crate::config::LogFormat;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Lines the writer thread holds before a logging thread waits for it.
const BUFFERED_LINES: usize = 128 * 1024;

/// Sets up logging to stderr at `default_level` unless `RUST_LOG` says
/// otherwise; `background` for the server (the writer thread, see above).
/// Keep the guard until exit.
pub fn init(format: LogFormat, default_level: &str, background: bool) -> Option<WorkerGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let (writer, guard) = if background {
        let (writer, guard) = NonBlockingBuilder::default()
            .lossy(false)
            .buffered_lines_limit(BUFFERED_LINES)
            .thread_name("log-writer")
            .finish(std::io::BufWriter::new(std::io::stderr()));
        (BoxMakeWriter::new(writer), Some(guard))
    } else {
        (BoxMakeWriter::new(std::io::stderr), None)
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Json => {
            let events = RequestIdFormat::json(
                tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
            );
            builder.json().event_format(events).init();
        }
        LogFormat::Pretty => {
            let events = RequestIdFormat::pretty(tracing_subscriber::fmt::format());
            builder.event_format(events).init();
        }
    }
    guard
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
                let id = serde_json::to_string(&*id).map_err(|_| std::fmt::Error)?;
                write!(writer, "{{\"request_id\":{id},{rest}")
            }
            None => writer.write_str(&line),
        }
    }
}

/// The target the request line is filtered and labelled by.
pub const TARGET: &str = "convosphere_auth::http::middleware";

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
    tracing::info!(
        target: TARGET,
        request_id = line.request_id,
        method = line.method,
        path = line.path,
        status = line.status,
        latency_ms = line.latency.as_secs_f64() * 1e3,
        "request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::{Arc, Mutex};

    /// Bytes written by a subscriber, readable by the test.
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
        let text = buffer.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    fn in_request(id: &str, log: impl FnOnce()) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(with_request_id(id.into(), async { log() }));
    }

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
    fn the_request_line_has_its_fields_and_target() {
        let text = logged(true, || write(&line("/v1/authz")));
        let value: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["message"], "request");
        assert_eq!(value["request_id"], "b3434d12-4503-4360-88d7-0f629ef9023d");
        assert_eq!(value["method"], "GET");
        assert_eq!(value["path"], "/v1/authz");
        assert_eq!(value["status"], 200);
        assert!((value["latency_ms"].as_f64().unwrap() - 4.81).abs() < 1e-9);
        assert_eq!(value["target"], TARGET);
        let stamp = value["timestamp"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok(), "{stamp}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A path is whatever the client sent: the line stays one JSON
        /// object on one line, and the path reads back as sent.
        #[test]
        fn any_path_gives_one_line_of_json_that_reads_back(path in any::<String>()) {
            let json = logged(true, || write(&line(&path)));
            prop_assert!(json.ends_with('\n'));
            prop_assert_eq!(json.matches('\n').count(), 1);
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(value["path"].as_str(), Some(path.as_str()));
        }
    }
}
