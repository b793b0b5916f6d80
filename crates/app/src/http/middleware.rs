//! Request ids, logs and metrics for every request; the per-IP limit of
//! the unauthenticated endpoints; problem+json for the router's own errors.

use super::extract::{state, ClientInfo};
use super::problem::{ApiError, PROBLEM_JSON};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, ResponseError};
use convosphere_domain::ports::RateLimitDecision;
use std::time::Instant;
use tracing::Instrument;

const REQUEST_ID: &str = "x-request-id";

fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// Gives every request an id (its `X-Request-Id`, or a new one), a log
/// line (method, path without query, status, latency — never a body or a
/// query string, which may hold tokens), and metrics; turns the router's
/// bare 404s and 405s into problem+json.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let started = Instant::now();
    let id = request_id(&req);
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let span = tracing::info_span!("request", request_id = %id, %method, %path);
    let state = state(req.request()).ok();
    let response = next.call(req).instrument(span.clone()).await?;

    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    let mut response = match status {
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED if !is_problem => {
            let error = if status == StatusCode::NOT_FOUND {
                ApiError::not_found()
            } else {
                ApiError::new(status, "method_not_allowed", "this method is not allowed here")
            };
            let (request, _) = response.into_parts();
            let mut answer = error.error_response();
            // RFC 9110 § 15.5.6: a 405 names the methods the resource has.
            let allowed = request
                .match_pattern()
                .and_then(|pattern| super::openapi::allowed_methods(&pattern));
            if let Some(allowed) = allowed.filter(|_| status == StatusCode::METHOD_NOT_ALLOWED) {
                answer
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allowed));
            }
            ServiceResponse::new(request, answer).map_into_right_body()
        }
        _ => response.map_into_left_body(),
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), value);
    }
    // The limiter's decision, kept by `ip_limit` or the authentication extractor.
    let decision = response.request().extensions().get::<RateLimitDecision>().copied();
    if let Some(decision) = decision {
        for (name, value) in rate_limit_headers(&decision) {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(HeaderName::from_static(name), value);
            }
        }
    }
    let elapsed = started.elapsed();
    let route = response.request().match_pattern().unwrap_or_else(|| "unmatched".into());
    if let Some(state) = state {
        state
            .metrics
            .http_requests
            .with_label_values(&[route.as_str(), method.as_str(), status.as_str()])
            .inc();
        state
            .metrics
            .http_duration
            .with_label_values(&[route.as_str(), method.as_str()])
            .observe(elapsed.as_secs_f64());
    }
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1e3,
            "request"
        )
    });
    Ok(response)
}

/// The `RateLimit-*` headers of a decision.
pub fn rate_limit_headers(decision: &convosphere_domain::ports::RateLimitDecision) -> [(&'static str, String); 3] {
    [
        ("ratelimit-limit", decision.limit.to_string()),
        ("ratelimit-remaining", decision.remaining.to_string()),
        ("ratelimit-reset", decision.reset_after.as_secs_f64().ceil().to_string()),
    ]
}

/// `AUTH_IP_RATE_LIMIT` requests per minute per client IP.
pub async fn ip_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    use convosphere_domain::ports::RateLimiter;
    let state = state(req.request())?;
    let client = ClientInfo::of(req.request(), &state.config.trusted_proxies);
    let decision = match state
        .ip_limiter
        .check(&format!("ip:{}", client.ip), state.config.ip_rate_limit)
        .await
    {
        Ok(decision) => decision,
        Err(cause) => {
            return Ok(req
                .into_response(ApiError::internal(&cause).error_response())
                .map_into_right_body())
        }
    };
    if !decision.allowed {
        state.metrics.rate_limited.with_label_values(&["ip"]).inc();
        let error = ApiError::rate_limited(&decision);
        return Ok(req.into_response(error.error_response()).map_into_right_body());
    }
    // `observe` adds the `RateLimit-*` headers from this decision.
    req.extensions_mut().insert(decision);
    Ok(next.call(req).await?.map_into_left_body())
}
