//! Prometheus metrics, exposed at `/metrics`.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// The service's metrics, in one registry (no global state).
pub struct Metrics {
    registry: Registry,
    /// Requests by route pattern, method and status.
    pub http_requests: IntCounterVec,
    /// Latency by route pattern and method.
    pub http_duration: HistogramVec,
    /// Logins by outcome code (`ok`, `invalid_credentials`, …).
    pub logins: IntCounterVec,
    /// Requests refused by a rate limit, by limit (`ip`, `plan`).
    pub rate_limited: IntCounterVec,
    /// Mails accepted for delivery and not yet sent or given up.
    pub mail_sent: IntGauge,
    /// Mails given up after every retry.
    pub mail_failed: IntGauge,
    /// Rate-limit checks answered without Redis (fail-open).
    pub rate_limiter_failures: IntGauge,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("convosphere_auth".into()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route, method and status"),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route", "method"],
        )?;
        let logins = IntCounterVec::new(Opts::new("logins_total", "Login attempts by outcome"), &["outcome"])?;
        let rate_limited = IntCounterVec::new(
            Opts::new("rate_limited_total", "Requests refused by a rate limit"),
            &["limit"],
        )?;
        let mail_sent = IntGauge::new("mail_sent_total", "Mails delivered")?;
        let mail_failed = IntGauge::new("mail_failed_total", "Mails given up after every retry")?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(logins.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        let rate_limiter_failures = IntGauge::new(
            "rate_limiter_failures_total",
            "Rate-limit checks answered without Redis (allowed)",
        )?;
        registry.register(Box::new(rate_limiter_failures.clone()))?;
        registry.register(Box::new(mail_sent.clone()))?;
        registry.register(Box::new(mail_failed.clone()))?;
        Ok(Self {
            registry,
            http_requests,
            http_duration,
            logins,
            rate_limited,
            mail_sent,
            mail_failed,
            rate_limiter_failures,
        })
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
