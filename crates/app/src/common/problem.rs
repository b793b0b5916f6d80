//! RFC 9457 problem JSON: the one place where outcomes become HTTP errors.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use convosphere_domain::auth::mfa::{BeginTotpError, ConfirmTotpError, DisableTotpError};
use convosphere_domain::auth::recent::{ReauthenticateError, RecentSignInRequired};
use convosphere_domain::auth::{
    AdminError, ChangePasswordError, LinkError, LoginError, NotFoundError, ProfileError, RefreshError,
    ResetPasswordError, SignupError,
};
use convosphere_domain::ports::RateLimitDecision;
use convosphere_domain::{AuthorizeError, CredentialError, FieldError, InfraError, PasswordError};
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

    /// 404 `not_found`.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    /// 429 `rate_limited` with `Retry-After` and the `RateLimit-*` headers of a refusal.
    pub fn rate_limited(decision: &RateLimitDecision) -> Self {
        let retry_after_secs = decision.retry_after.map_or(1, |d| d.as_secs_f64().ceil() as u64);
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests; slow down",
        );
        error.retry_after = Some(retry_after_secs.max(1));
        error.rate_limit = Some(*decision);
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

fn link_invalid() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "link_invalid",
        "this link is invalid, used or expired",
    )
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("invalid_credentials", "wrong e-mail or password")
}

fn account_locked() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "account_locked",
        "this account is locked; try again later or contact support",
    )
}

fn session_expired() -> ApiError {
    ApiError::unauthorized("session_expired", "the session has ended; log in again")
}

impl From<SignupError> for ApiError {
    fn from(e: SignupError) -> Self {
        match e {
            SignupError::Invalid(errors) => Self::validation(errors),
            SignupError::WeakPassword(reason) => Self::weak_password(reason, "password"),
            SignupError::Internal(cause) => cause.into(),
        }
    }
}

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::LinkInvalid => link_invalid(),
            LinkError::Internal(cause) => cause.into(),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::InvalidCredentials => invalid_credentials(),
            LoginError::EmailNotVerified => Self::new(
                StatusCode::FORBIDDEN,
                "email_not_verified",
                "verify your e-mail address first: check your mailbox for the link",
            ),
            LoginError::Locked => account_locked(),
            LoginError::MfaRequired => Self::unauthorized(
                "mfa_required",
                "two-factor authentication is on: send totp_code (or a recovery_code)",
            ),
            LoginError::InvalidMfaCode => {
                Self::unauthorized("invalid_mfa_code", "the two-factor code is wrong or was used already")
            }
            LoginError::Internal(cause) => cause.into(),
        }
    }
}

impl From<RefreshError> for ApiError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::InvalidToken => Self::unauthorized("invalid_token", "the refresh token is invalid"),
            RefreshError::SessionExpired => session_expired(),
            RefreshError::Locked => account_locked(),
            RefreshError::Internal(cause) => cause.into(),
        }
    }
}

impl From<CredentialError> for ApiError {
    fn from(e: CredentialError) -> Self {
        match e {
            CredentialError::InvalidToken => Self::unauthorized("invalid_token", "the access token is invalid"),
            CredentialError::TokenExpired => Self::unauthorized("token_expired", "the access token has expired"),
            CredentialError::SessionExpired => session_expired(),
            CredentialError::InvalidApiKey => Self::unauthorized("invalid_api_key", "the API key is invalid"),
            CredentialError::ApiKeyExpired => Self::unauthorized("api_key_expired", "the API key has expired"),
            CredentialError::ApiKeyRevoked => Self::unauthorized("api_key_revoked", "the API key has been revoked"),
            CredentialError::Locked => account_locked(),
            CredentialError::Internal(cause) => cause.into(),
        }
    }
}

impl From<AuthorizeError> for ApiError {
    fn from(e: AuthorizeError) -> Self {
        match e {
            AuthorizeError::Credential(e) => e.into(),
            AuthorizeError::RateLimited { budget, .. } => Self::rate_limited(&budget),
            AuthorizeError::InsufficientScope { missing, .. } => Self::insufficient_scope(missing.as_str()),
            AuthorizeError::Internal(cause) => cause.into(),
        }
    }
}

impl From<ResetPasswordError> for ApiError {
    fn from(e: ResetPasswordError) -> Self {
        match e {
            ResetPasswordError::LinkInvalid => link_invalid(),
            ResetPasswordError::WeakPassword(reason) => Self::weak_password(reason, "password"),
            ResetPasswordError::Internal(cause) => cause.into(),
        }
    }
}

impl From<ChangePasswordError> for ApiError {
    fn from(e: ChangePasswordError) -> Self {
        match e {
            ChangePasswordError::InvalidCredentials => {
                Self::unauthorized("invalid_credentials", "the current password is wrong")
            }
            ChangePasswordError::Locked => account_locked(),
            ChangePasswordError::WeakPassword(reason) => Self::weak_password(reason, "new_password"),
            ChangePasswordError::Internal(cause) => cause.into(),
        }
    }
}

impl From<ProfileError> for ApiError {
    fn from(e: ProfileError) -> Self {
        match e {
            ProfileError::Invalid(errors) => Self::validation(errors),
            ProfileError::NotFound => Self::not_found(),
            ProfileError::Internal(cause) => cause.into(),
        }
    }
}

impl From<NotFoundError> for ApiError {
    fn from(e: NotFoundError) -> Self {
        match e {
            NotFoundError::NotFound => Self::not_found(),
            NotFoundError::Internal(cause) => cause.into(),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::UnknownEmail(_) => Self::not_found(),
            AdminError::Internal(cause) => cause.into(),
        }
    }
}

impl From<BeginTotpError> for ApiError {
    fn from(e: BeginTotpError) -> Self {
        match e {
            BeginTotpError::AlreadyEnabled => Self::new(
                StatusCode::CONFLICT,
                "mfa_already_enabled",
                "two-factor authentication is already on; turn it off first to enrol another app",
            ),
            BeginTotpError::RecentSignInRequired(e) => e.into(),
            BeginTotpError::Internal(cause) => cause.into(),
        }
    }
}

impl From<RecentSignInRequired> for ApiError {
    fn from(_: RecentSignInRequired) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "reauthentication_required",
            "this action needs a recent sign-in: POST /v1/auth/reauthenticate with your password, then try again",
        )
    }
}

impl From<ReauthenticateError> for ApiError {
    fn from(e: ReauthenticateError) -> Self {
        match e {
            ReauthenticateError::InvalidCredentials => invalid_credentials(),
            ReauthenticateError::Locked => account_locked(),
            ReauthenticateError::MfaRequired => LoginError::MfaRequired.into(),
            ReauthenticateError::InvalidMfaCode => LoginError::InvalidMfaCode.into(),
            ReauthenticateError::SessionExpired => session_expired(),
            ReauthenticateError::Internal(cause) => cause.into(),
        }
    }
}

impl From<ConfirmTotpError> for ApiError {
    fn from(e: ConfirmTotpError) -> Self {
        match e {
            ConfirmTotpError::NotPending => Self::new(
                StatusCode::CONFLICT,
                "mfa_not_pending",
                "no two-factor setup is pending: start one with POST /v1/me/mfa/totp",
            ),
            ConfirmTotpError::InvalidCode => {
                Self::unauthorized("invalid_mfa_code", "the code does not match the new secret")
            }
            ConfirmTotpError::Internal(cause) => cause.into(),
        }
    }
}

impl From<DisableTotpError> for ApiError {
    fn from(e: DisableTotpError) -> Self {
        match e {
            DisableTotpError::InvalidCredentials => invalid_credentials(),
            DisableTotpError::Locked => account_locked(),
            DisableTotpError::Internal(cause) => cause.into(),
        }
    }
}
