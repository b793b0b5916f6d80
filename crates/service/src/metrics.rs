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

    /// Counts one answered request and its latency.
    pub fn observe_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.http_duration.with_label_values(&[route, method]).observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(metrics: &Metrics, route: &str, status: &str) -> u64 {
        metrics.http_requests.with_label_values(&[route, "GET", status]).get()
    }

    #[test]
    fn requests_are_counted_by_route_method_and_status_per_registry() {
        let (first, second) = (Metrics::new().unwrap(), Metrics::new().unwrap());
        for _ in 0..3 {
            first.observe_request("/v1/authz", "GET", 200, 0.001);
        }
        first.observe_request("/v1/authz", "GET", 401, 0.001);
        first.observe_request("/v1/me", "GET", 200, 0.001);
        second.observe_request("/v1/authz", "GET", 200, 0.001);
        assert_eq!(count(&first, "/v1/authz", "200"), 3);
        assert_eq!(count(&first, "/v1/authz", "401"), 1);
        assert_eq!(count(&first, "/v1/me", "200"), 1);
        assert_eq!(count(&second, "/v1/authz", "200"), 1);
        assert_eq!(
            first
                .http_duration
                .with_label_values(&["/v1/authz", "GET"])
                .get_sample_count(),
            4
        );
        // From another thread, the same series.
        std::thread::scope(|s| {
            s.spawn(|| first.observe_request("/v1/authz", "GET", 200, 0.002));
        });
        assert_eq!(count(&first, "/v1/authz", "200"), 4);
        assert!(first
            .render()
            .contains("convosphere_auth_http_requests_total{method=\"GET\",route=\"/v1/authz\",status=\"200\"} 4"));
    }
}
