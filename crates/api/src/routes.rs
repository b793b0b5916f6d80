//! Handlers: extract, call one use case, map the outcome.

use super::auth::{AnyCaller, UserSession};
use super::middleware::ip_limit;
use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpResponse};
use convosphere_domain::auth::{LoginRequest, SignupRequest};
use convosphere_domain::profile::ProfileUpdate;
use convosphere_domain::SecretString;
use convosphere_domain::{Caller, FieldError, SessionId};
use convosphere_service::common::export_document;
use convosphere_service::common::extract::{json_config, query_config, ClientInfo, Json};
use convosphere_service::common::problem::{ApiError, Problem};
use convosphere_service::dto::*;
use convosphere_service::state::{after_answer, AppState};

pub(crate) type Result<T = HttpResponse> = std::result::Result<T, ApiError>;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let limited = |path: &'static str| resource(path).wrap(from_fn(ip_limit));
    cfg.app_data(json_config())
        .app_data(query_config())
        // The gateway check first and `/v1/me` next: the hottest routes,
        // matched before any other. Each `{param}` route before a path
        // costs that path a regex match (about 1 µs).
        .service(resource("/v1/authz").route(web::get().to(super::keys::authz)))
        .service(
            resource("/v1/me")
                .route(web::get().to(me))
                .route(web::patch().to(update_profile))
                .route(web::delete().to(super::account::delete_account)),
        )
        .service(limited("/v1/auth/signup").route(web::post().to(signup)))
        .service(limited("/v1/auth/verify-email").route(web::post().to(verify_email)))
        .service(limited("/v1/auth/verify-email/resend").route(web::post().to(resend_verification)))
        .service(limited("/v1/auth/login").route(web::post().to(login)))
        .service(limited("/v1/auth/refresh").route(web::post().to(refresh)))
        .service(limited("/v1/auth/password/forgot").route(web::post().to(forgot_password)))
        .service(limited("/v1/auth/password/reset").route(web::post().to(reset_password)))
        .service(limited("/v1/auth/oauth/{provider}/start").route(web::get().to(super::oauth::start)))
        .service(limited("/v1/auth/oauth/{provider}/callback").route(web::get().to(super::oauth::callback)))
        .service(limited("/v1/auth/oauth/exchange").route(web::post().to(super::oauth::exchange)))
        .service(limited("/v1/auth/email/confirm").route(web::post().to(super::account::confirm_email)))
        .service(limited("/v1/auth/passkey/start").route(web::post().to(super::passkeys::sign_in_start)))
        .service(limited("/v1/auth/passkey/finish").route(web::post().to(super::passkeys::sign_in_finish)))
        .service(resource("/v1/auth/logout").route(web::post().to(logout)))
        .service(resource("/v1/auth/password/change").route(web::post().to(change_password)))
        .service(resource("/v1/auth/reauthenticate").route(web::post().to(reauthenticate)))
        .service(
            resource("/v1/me/mfa/totp")
                .route(web::post().to(super::mfa::begin_totp))
                .route(web::delete().to(super::mfa::disable_totp)),
        )
        .service(resource("/v1/me/mfa/totp/confirm").route(web::post().to(super::mfa::confirm_totp)))
        .service(resource("/v1/me/events").route(web::get().to(super::mfa::events)))
        .service(resource("/v1/me/usage").route(web::get().to(super::usage::account)))
        .service(resource("/v1/me/email").route(web::post().to(super::account::change_email)))
        .service(resource("/v1/me/export").route(web::get().to(export)))
        .service(resource("/v1/me/identities").route(web::get().to(super::oauth::identities)))
        .service(resource("/v1/me/identities/{provider}").route(web::delete().to(super::oauth::unlink)))
        .service(resource("/v1/me/passkeys").route(web::get().to(super::passkeys::list)))
        .service(resource("/v1/me/passkeys/register/start").route(web::post().to(super::passkeys::register_start)))
        .service(resource("/v1/me/passkeys/register/finish").route(web::post().to(super::passkeys::register_finish)))
        .service(resource("/v1/me/passkeys/{id}").route(web::delete().to(super::passkeys::remove)))
        .service(resource("/v1/sessions").route(web::get().to(list_sessions)))
        .service(resource("/v1/sessions/{id}").route(web::delete().to(revoke_session)))
        .service(
            resource("/v1/api-keys")
                .route(web::post().to(super::keys::create))
                .route(web::get().to(super::keys::list)),
        )
        .service(
            resource("/v1/api-keys/{id}")
                .route(web::get().to(super::keys::get))
                .route(web::delete().to(super::keys::revoke)),
        )
        .service(resource("/v1/api-keys/{id}/rotate").route(web::post().to(super::keys::rotate)))
        .service(resource("/v1/api-keys/{id}/usage").route(web::get().to(super::usage::key)))
        .service(resource("/.well-known/jwks.json").route(web::get().to(jwks)))
        .service(resource("/healthz").route(web::get().to(healthz)))
        .service(resource("/readyz").route(web::get().to(readyz)))
        .service(resource("/openapi.json").route(web::get().to(openapi)));
}

/// `/metrics`: on the main listener, or on `AUTH_METRICS_BIND` alone.
pub fn configure_metrics(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/metrics").route(web::get().to(metrics)));
}

/// A resource named after its own pattern: the metrics read a matched
/// route's name without putting its pattern together again.
fn resource(path: &'static str) -> actix_web::Resource {
    web::resource(path).name(path)
}

/// The default service: `not_found` as problem+json.
pub async fn not_found() -> Result {
    Err(ApiError::not_found())
}

/// A required string field, or a `required` field error.
pub(crate) fn required(value: Option<String>, field: &'static str, errors: &mut Vec<FieldError>) -> String {
    match value {
        Some(v) if !v.is_empty() => v,
        _ => {
            errors.push(FieldError::new(field, "required", format!("{field} is required")));
            String::new()
        }
    }
}

pub(crate) fn no_errors(errors: Vec<FieldError>) -> Result<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

fn accepted() -> HttpResponse {
    HttpResponse::Accepted().json(StatusBody { status: "accepted" })
}

/// Sign up; a verification link is e-mailed.
#[utoipa::path(post, path = "/v1/auth/signup", tag = "accounts", request_body = SignupBody,
    responses((status = 202, body = StatusBody), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn signup(state: web::Data<AppState>, client: ClientInfo, body: Json<SignupBody>) -> Result {
    let body = body.into_inner();
    state
        .auth
        .signup(SignupRequest {
            name: body.name.unwrap_or_default(),
            email: body.email.unwrap_or_default(),
            password: SecretString::from(body.password.unwrap_or_default()),
            company: body.company,
            country: body.country,
            phone: body.phone,
            client: client.context(),
        })
        .await?;
    Ok(HttpResponse::Accepted().json(StatusBody {
        status: "verification_sent",
    }))
}

/// Verify an e-mail address with the token of the e-mailed link.
#[utoipa::path(post, path = "/v1/auth/verify-email", tag = "accounts", request_body = TokenBody,
    responses((status = 200, body = UserEnvelope), (status = 400, body = Problem)))]
pub async fn verify_email(state: web::Data<AppState>, client: ClientInfo, body: Json<TokenBody>) -> Result {
    let mut errors = Vec::new();
    let token = required(body.into_inner().token, "token", &mut errors);
    no_errors(errors)?;
    let user = state.auth.verify_email(&token, &client.context()).await?;
    Ok(HttpResponse::Ok().json(UserEnvelope {
        user: UserBody::from(&user),
    }))
}

fn email_field(body: EmailBody) -> Result<String> {
    let mut errors = Vec::new();
    let email = required(body.email, "email", &mut errors);
    no_errors(errors)?;
    Ok(email)
}

/// Send a new verification link (if the address has an unverified account).
#[utoipa::path(post, path = "/v1/auth/verify-email/resend", tag = "accounts", request_body = EmailBody,
    responses((status = 202, body = StatusBody)))]
pub async fn resend_verification(state: web::Data<AppState>, body: Json<EmailBody>) -> Result {
    let email = email_field(body.into_inner())?;
    // After answering: the time of the answer must not tell whether the
    // address has an account.
    after_answer(&state, "resending a verification link", |state| async move {
        state.auth.resend_verification(&email).await
    })
    .await;
    Ok(accepted())
}

/// Log in with e-mail and password.
#[utoipa::path(post, path = "/v1/auth/login", tag = "accounts", request_body = LoginBody,
    responses((status = 200, body = TokenPair), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn login(state: web::Data<AppState>, client: ClientInfo, body: Json<LoginBody>) -> Result {
    let mut body = body.into_inner();
    let factor = body.second_factor();
    let mut errors = Vec::new();
    let email = required(body.email, "email", &mut errors);
    let password = required(body.password, "password", &mut errors);
    no_errors(errors)?;
    let outcome = state
        .auth
        .login(LoginRequest {
            email,
            password: SecretString::from(password),
            totp_code: factor.totp_code,
            recovery_code: factor.recovery_code,
            client: client.context(),
        })
        .await
        .map_err(ApiError::from);
    let label = outcome.as_ref().map_or_else(|e| e.code(), |_| "ok");
    state.metrics.logins.with_label_values(&[label]).inc();
    Ok(super::carrying_secret(StatusCode::OK).json(TokenPair::from(outcome?)))
}

/// Prove again who you are, for sensitive actions: a new pair for the same
/// session, whose `auth_time` is now. A wrong password counts toward the lockout.
#[utoipa::path(post, path = "/v1/auth/reauthenticate", tag = "accounts", security(("bearer" = [])),
    request_body = ReauthenticateBody,
    responses((status = 200, body = TokenPair), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem, description = "a passkey's assertion, and passkeys are off"),
        (status = 422, body = Problem)))]
pub async fn reauthenticate(
    state: web::Data<AppState>,
    user: UserSession,
    client: ClientInfo,
    body: Json<ReauthenticateBody>,
) -> Result {
    let mut body = body.into_inner();
    let factor = body.second_factor();
    let mut errors = Vec::new();
    if body.password.is_none() && (body.challenge_id.is_some() || body.credential.is_some()) {
        let challenge_id = required(body.challenge_id, "challenge_id", &mut errors);
        let credential = super::passkeys::credential_text(body.credential, &mut errors);
        no_errors(errors)?;
        let tokens = state
            .auth
            .passkey_reauthenticate(
                convosphere_service::common::passkey_verifier(&state)?,
                &user.0,
                &challenge_id,
                &credential,
                &client.context(),
            )
            .await?;
        return Ok(super::carrying_secret(StatusCode::OK).json(TokenPair::from(tokens)));
    }
    let password = required(body.password, "password", &mut errors);
    no_errors(errors)?;
    let tokens = state
        .auth
        .reauthenticate(&user.0, &password, &factor, &client.context())
        .await?;
    Ok(super::carrying_secret(StatusCode::OK).json(TokenPair::from(tokens)))
}

/// Trade a refresh token for a new pair; the old refresh token is dead.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "accounts", request_body = RefreshBody,
    responses((status = 200, body = TokenPair), (status = 401, body = Problem)))]
pub async fn refresh(state: web::Data<AppState>, client: ClientInfo, body: Json<RefreshBody>) -> Result {
    let mut errors = Vec::new();
    let token = required(body.into_inner().refresh_token, "refresh_token", &mut errors);
    no_errors(errors)?;
    let tokens = state.auth.refresh(&token, &client.context()).await?;
    Ok(super::carrying_secret(StatusCode::OK).json(TokenPair::from(tokens)))
}

/// E-mail a password reset link (if the address has an account).
#[utoipa::path(post, path = "/v1/auth/password/forgot", tag = "accounts", request_body = EmailBody,
    responses((status = 202, body = StatusBody)))]
pub async fn forgot_password(state: web::Data<AppState>, body: Json<EmailBody>) -> Result {
    let email = email_field(body.into_inner())?;
    // After answering: the time of the answer must not tell whether the
    // address has an account.
    after_answer(&state, "sending a password reset link", |state| async move {
        state.auth.forgot_password(&email).await
    })
    .await;
    Ok(accepted())
}

/// Set a new password with the token of the e-mailed link; every session ends.
#[utoipa::path(post, path = "/v1/auth/password/reset", tag = "accounts", request_body = ResetBody,
    responses((status = 204), (status = 400, body = Problem), (status = 422, body = Problem)))]
pub async fn reset_password(state: web::Data<AppState>, client: ClientInfo, body: Json<ResetBody>) -> Result {
    let body = body.into_inner();
    let mut errors = Vec::new();
    let token = required(body.token, "token", &mut errors);
    let password = required(body.password, "password", &mut errors);
    no_errors(errors)?;
    state.auth.reset_password(&token, &password, &client.context()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// End this session.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "me", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
pub async fn logout(state: web::Data<AppState>, client: ClientInfo, user: UserSession) -> Result {
    state
        .auth
        .logout(user.0.user.id, user.0.session_id, &client.context())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Change the password; every other session ends.
#[utoipa::path(post, path = "/v1/auth/password/change", tag = "me", security(("bearer" = [])),
    request_body = ChangePasswordBody,
    responses((status = 204), (status = 401, body = Problem), (status = 422, body = Problem)))]
pub async fn change_password(
    state: web::Data<AppState>,
    client: ClientInfo,
    user: UserSession,
    body: Json<ChangePasswordBody>,
) -> Result {
    let body = body.into_inner();
    let mut errors = Vec::new();
    let current = required(body.current_password, "current_password", &mut errors);
    let new = required(body.new_password, "new_password", &mut errors);
    no_errors(errors)?;
    state
        .auth
        .change_password(&user.0, &current, &new, &client.context())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Your data: every record the service keeps about your account, in one
/// JSON document (see docs/API.md for each field).
#[utoipa::path(get, path = "/v1/me/export", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = ExportBody), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn export(state: web::Data<AppState>, user: UserSession) -> Result {
    export_document(&state, &user.0.user, Some(user.0.session_id)).await
}

/// The caller: account and credential (a user access token or an API key).
#[utoipa::path(get, path = "/v1/me", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = MeBody), (status = 401, body = Problem)))]
pub async fn me(caller: AnyCaller) -> Result {
    let caller = caller.0;
    Ok(HttpResponse::Ok().json(MeBody {
        user: UserBody::from(caller.user()),
        principal: PrincipalBody {
            kind: caller.kind(),
            scopes: caller.scopes(),
            session_id: caller.session_id().map(|id| id.to_string()),
            api_key_id: match &caller {
                Caller::Key(principal) => Some(principal.key.id.to_string()),
                Caller::User(_) => None,
            },
        },
    }))
}

/// Change name, company, country or phone (`null` clears an optional field).
#[utoipa::path(patch, path = "/v1/me", tag = "me", security(("bearer" = [])), request_body = ProfileBody,
    responses((status = 200, body = UserBody), (status = 422, body = Problem)))]
pub async fn update_profile(state: web::Data<AppState>, user: UserSession, body: Json<ProfileBody>) -> Result {
    let body = body.into_inner();
    let name = match &body.name {
        Patch::Absent => None,
        Patch::Null => Some(""),
        Patch::Value(v) => Some(v.as_str()),
    };
    let update = ProfileUpdate::parse(
        name,
        body.company.as_update(),
        body.country.as_update(),
        body.phone.as_update(),
    )
    .map_err(ApiError::validation)?;
    let updated = state.auth.update_profile(user.0.user.id, update).await?;
    Ok(HttpResponse::Ok().json(UserBody::from(&updated)))
}

/// The active sessions, newest first.
#[utoipa::path(get, path = "/v1/sessions", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = SessionList), (status = 401, body = Problem)))]
pub async fn list_sessions(state: web::Data<AppState>, user: UserSession) -> Result {
    let sessions = state.auth.sessions(user.0.user.id).await?;
    let idle = state.auth.config().session_idle_timeout;
    Ok(HttpResponse::Ok().json(SessionList {
        sessions: sessions
            .iter()
            .map(|s| SessionBody::new(s, idle, user.0.session_id))
            .collect(),
    }))
}

/// End one of your sessions.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "me", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The session's id")),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn revoke_session(
    state: web::Data<AppState>,
    client: ClientInfo,
    user: UserSession,
    id: web::Path<String>,
) -> Result {
    let id: SessionId = id.parse().map_err(|_| ApiError::not_found())?;
    state.auth.revoke_session(user.0.user.id, id, &client.context()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The public keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "service", responses((status = 200)))]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("cache-control", "public, max-age=300"))
        .body(state.jwks.clone())
}

/// The process runs.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, body = StatusBody)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(StatusBody { status: "ok" })
}

/// How long `/readyz` waits for the database: less than a probe's usual
/// timeout (1 s in Kubernetes), so that a database that is down is a 503
/// rather than a probe timeout after the pool's 5 s checkout wait.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(900);

/// The database answers.
#[utoipa::path(get, path = "/readyz", tag = "service",
    responses((status = 200, body = StatusBody), (status = 503, body = Problem)))]
pub async fn readyz(state: web::Data<AppState>) -> Result {
    let ping = tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await;
    let cause = match ping {
        Ok(Ok(())) => return Ok(HttpResponse::Ok().json(StatusBody { status: "ready" })),
        Ok(Err(cause)) => cause.to_string(),
        Err(_) => format!("no answer within {} ms", READY_TIMEOUT.as_millis()),
    };
    tracing::warn!(error = %cause, "not ready: the database does not answer");
    Err(ApiError::new(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the database does not answer",
    ))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200)))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.update_gauges();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "service", responses((status = 200)))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(super::openapi::document())
}
