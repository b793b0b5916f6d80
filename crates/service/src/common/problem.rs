//! RFC 9457 problem JSON: the one place where outcomes become HTTP errors.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use convosphere_domain::ports::RateLimitDecision;
use convosphere_domain::{FieldError, InfraError, PasswordError};
use serde::Serialize;
use std::fmt;

/// The content type of every error.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer. Build it with one of the constructors; `From` impls map
/// each use case's outcomes. Boxed, so that `Result`s stay small.
#[derive(Debug, Clone)]
pub struct ApiError(Box<ErrorParts>);

/// What an [`ApiError`] holds.
#[derive(Debug, Clone)]
pub struct ErrorParts {
    status: StatusCode,
    code: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    /// `error=` of `WWW-Authenticate` for a 401 or 403.
    bearer_error: Option<&'static str>,
    /// The scope a 403 `insufficient_scope` lacks.
    scope: Option<String>,
    retry_after: Option<u64>,
    /// The limiter's decision behind a 429, for its `RateLimit-*` headers.
    rate_limit: Option<RateLimitDecision>,
}

/// One entry of `errors`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FieldProblem {
    /// The field of the request body.
    pub field: String,
    /// Stable code (`required`, `too_short`, …).
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

/// The body of every error (RFC 9457).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:convosphere:problem:<code>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// The stable code clients switch on.
    pub code: String,
    /// Field problems (422 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldProblem>>,
}

impl ApiError {
    /// A new error with a code and a detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self(Box::new(ErrorParts {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            bearer_error: None,
            scope: None,
            retry_after: None,
            rate_limit: None,
        }))
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", detail)
    }

    /// 422 `validation_failed` with the field problems.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut error = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "some fields are missing or invalid",
        );
        error.errors = errors;
        error
    }

    /// 422 `password_too_weak`.
    pub fn weak_password(reason: PasswordError, field: &'static str) -> Self {
        let mut error = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "password_too_weak",
            reason.to_string(),
        );
        error.errors = vec![FieldError::new(field, reason.code(), reason.to_string())];
        error
    }

    /// 401 with a bearer error (`invalid_token` for token problems).
    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::UNAUTHORIZED, code, detail);
        error.bearer_error = match code {
            "missing_credentials" | "invalid_credentials" | "mfa_required" | "invalid_mfa_code" => None,
            _ => Some("invalid_token"),
        };
        error
    }

    /// 403 `insufficient_scope` naming the scope.
    pub fn insufficient_scope(scope: &str) -> Self {
        let mut error = Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this credential does not hold the scope {scope}"),
        );
        error.bearer_error = Some("insufficient_scope");
        error.scope = Some(scope.to_owned());
        error
    }

    /// 400 `oauth_failed`: a provider's answer or a code that did not check out.
    pub fn oauth_failed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "oauth_failed", detail)
    }

    /// 404 `not_found`.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    /// 429 `rate_limited` with `Retry-After` and the `RateLimit-*` headers of a refusal.
    pub fn rate_limited(decision: &RateLimitDecision) -> Self {
        let retry_after = decision.retry_after.unwrap_or(std::time::Duration::from_secs(1));
        let mut error = Self::too_many("too many requests; slow down", retry_after);
        error.rate_limit = Some(*decision);
        error
    }

    /// 429 `rate_limited` with `Retry-After` (whole seconds, at least one).
    pub fn too_many(detail: &str, retry_after: std::time::Duration) -> Self {
        let mut error = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail);
        error.retry_after = Some((retry_after.as_secs_f64().ceil() as u64).max(1));
        error
    }

    /// 500 `internal` (or 503 when a backing service is unreachable). The
    /// cause is logged, with the request id of the current span, and never sent.
    pub fn internal(cause: &InfraError) -> Self {
        if cause.is_unavailable() {
            tracing::error!(error = %cause, "backing service unavailable");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the service is temporarily unavailable; try again shortly",
            );
        }
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred",
        )
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The field problems of a 422 (empty otherwise).
    pub fn field_errors(&self) -> &[FieldError] {
        &self.errors
    }

    fn title(&self) -> &'static str {
        match self.code {
            "invalid_request" => "Invalid request",
            "validation_failed" => "Validation failed",
            "password_too_weak" => "Password too weak",
            "payload_too_large" => "Payload too large",
            "link_invalid" => "Link invalid or expired",
            "invalid_credentials" => "Invalid credentials",
            "mfa_required" => "Two-factor code required",
            "invalid_mfa_code" => "Invalid two-factor code",
            "missing_credentials" => "Missing credentials",
            "invalid_token" => "Invalid token",
            "token_expired" => "Token expired",
            "session_expired" => "Session expired",
            "invalid_api_key" => "Invalid API key",
            "api_key_expired" => "API key expired",
            "api_key_revoked" => "API key revoked",
            "email_not_verified" => "E-mail not verified",
            "account_locked" => "Account locked",
            "insufficient_scope" => "Insufficient scope",
            "user_token_required" => "User token required",
            "not_found" => "Not found",
            "method_not_allowed" => "Method not allowed",
            "provider_not_found" => "Provider not found",
            "rate_limited" => "Too many requests",
            "oauth_failed" => "OAuth login failed",
            "unavailable" => "Service unavailable",
            "mfa_already_enabled" => "Two-factor authentication already on",
            "mfa_not_pending" => "No two-factor setup pending",
            "reauthentication_required" => "Re-authentication required",
            _ => "Internal error",
        }
    }

    /// The body.
    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("urn:convosphere:problem:{}", self.code),
            title: self.title().to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_owned(),
            errors: (!self.errors.is_empty()).then(|| {
                self.errors
                    .iter()
                    .map(|e| FieldProblem {
                        field: e.field.to_owned(),
                        code: e.code.to_owned(),
                        message: e.message.clone(),
                    })
                    .collect()
            }),
        }
    }
}

impl std::ops::Deref for ApiError {
    type Target = ErrorParts;
    fn deref(&self) -> &ErrorParts {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ErrorParts {
        &mut self.0
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        if self.status == StatusCode::UNAUTHORIZED || self.bearer_error.is_some() {
            let mut challenge = String::from("Bearer realm=\"convosphere\"");
            if let Some(error) = self.bearer_error {
                challenge.push_str(&format!(", error=\"{error}\""));
                if let Some(scope) = &self.scope {
                    challenge.push_str(&format!(", scope=\"{scope}\""));
                } else {
                    challenge.push_str(&format!(", error_description=\"{}\"", self.detail.replace('"', "'")));
                }
            }
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        let mut answer = response.body(serde_json::to_string(&self.problem()).unwrap_or_default());
        if let Some(decision) = &self.rate_limit {
            super::insert_rate_limit_headers(answer.headers_mut(), decision);
        }
        answer
    }
}

impl From<InfraError> for ApiError {
    fn from(cause: InfraError) -> Self {
        Self::internal(&cause)
    }
}
