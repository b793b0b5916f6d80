//! Request ids, logs and metrics for every request; the per-IP limit of
//! the unauthenticated endpoints; problem+json for the router's own errors.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest, ResponseError};
use convosphere_domain::ports::RateLimitDecision;
use convosphere_service::common::extract::{state, ClientInfo};
use convosphere_service::common::problem::{ApiError, PROBLEM_JSON};
use futures_util::future::{ready, Ready};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::Instant;
use tokio::task::futures::TaskLocalFuture;

// Header names as constants: made from text, they are parsed on every use.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn request_id(req: &ServiceRequest) -> Rc<str> {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map_or_else(new_request_id, Rc::from)
}

/// A new request id: a random (version 4) UUID from the thread's CSPRNG
/// (`rand`'s `ThreadRng`, no system call per id). Ids do not reveal how
/// many requests the process has served. Not a secret: it is echoed in
/// responses and logs.
fn new_request_id() -> Rc<str> {
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    Rc::from(&*uuid.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()))
}

/// Gives every request an id (its `X-Request-Id`, or a new one), a log
/// line (request id, method, path without query, status, latency — never a
/// body or a query string, which may hold tokens), and metrics; turns the
/// router's bare 404s and 405s into problem+json.
///
/// Whatever is logged while the request is handled carries its id
/// ([`convosphere_service::logging::with_request_id`]); its method and path are on the
/// request's line.
///
/// A middleware of its own rather than `middleware::from_fn`: that boxes
/// two futures per request and calls the application through a boxed
/// service; this one wraps the application's future as it is.
pub struct Observe;

impl<S, B> Transform<S, ServiceRequest> for Observe
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = ObserveService<S>;
    type InitError = ();
    type Future = Ready<Result<ObserveService<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ObserveService { service }))
    }
}

/// The service [`Observe`] puts around the application.
pub struct ObserveService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for ObserveService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = Observed<S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let id = request_id(&req);
        Observed {
            inner: convosphere_service::logging::with_request_id(Rc::clone(&id), self.service.call(req)),
            started,
            id,
        }
    }
}

pin_project_lite::pin_project! {
    /// The application's answer to one request, observed when it is ready.
    pub struct Observed<F: Future> {
        #[pin]
        inner: TaskLocalFuture<Rc<str>, F>,
        started: Instant,
        id: Rc<str>,
    }
}

impl<F, B> Future for Observed<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
    B: MessageBody,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        Poll::Ready(Ok(answered(response, *this.started, this.id)))
    }
}

/// What [`Observe`] does with an answer: problem+json for the router's
/// errors, the request id and `RateLimit-*` headers, metrics, the log line.
fn answered<B: MessageBody>(
    response: ServiceResponse<B>,
    started: Instant,
    id: &str,
) -> ServiceResponse<EitherBody<B>> {
    let status = response.status();
    // Problem JSON, or a page's own HTML error, is kept as it is.
    let explained = response.headers().get(header::CONTENT_TYPE).is_some_and(|ct| {
        ct.as_bytes().starts_with(PROBLEM_JSON.as_bytes()) || ct.as_bytes().starts_with(b"text/html")
    });
    let mut response = match status {
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED if !explained => {
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
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    // The limiter's decision, kept by `ip_limit` or the authentication extractor.
    let decision = response.request().extensions().get::<RateLimitDecision>().copied();
    if let Some(decision) = decision {
        convosphere_service::common::insert_rate_limit_headers(response.headers_mut(), &decision);
    }
    let elapsed = started.elapsed();
    let request = response.request();
    let method = request.method();
    let route = route(request);
    let route = route.as_deref().unwrap_or("unmatched");
    let status = response.status();
    if let Ok(state) = state(request) {
        state
            .metrics
            .observe_request(route, method.as_str(), status.as_u16(), elapsed.as_secs_f64());
    }
    convosphere_service::logging::write(&convosphere_service::logging::RequestLine {
        request_id: id,
        method: method.as_str(),
        path: request.path(),
        status: status.as_u16(),
        latency: elapsed,
    });
    response
}

/// The route pattern that matched, for metrics. The API's resources are
/// named after their patterns ([`super::routes::configure`]): the name is
/// a lookup, where the pattern is a string put together per request.
fn route(request: &HttpRequest) -> Option<Cow<'_, str>> {
    match request.match_name() {
        Some(name) => Some(Cow::Borrowed(name)),
        None => request.match_pattern().map(Cow::Owned),
    }
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
        .check(
            convosphere_domain::ports::RateSubject::client(client.ip),
            state.config.ip_rate_limit,
        )
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn new_request_ids_are_distinct_random_uuids() {
        let ids: HashSet<Rc<str>> = (0..10_000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version_num(), 4);
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
            assert_eq!(id.len(), 36);
        }
    }
}
