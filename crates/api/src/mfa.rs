//! Two-factor authentication and the audit trail of the logged-in user.

use super::auth::UserSession;
use super::routes::{no_errors, required, Result};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use convosphere_domain::EventId;
use convosphere_service::common::extract::{ClientInfo, Json};
use convosphere_service::common::problem::{ApiError, Problem};
use convosphere_service::dto::{CodeBody, EventBody, EventList, PasswordBody, RecoveryCodesBody, TotpSetupBody};
use convosphere_service::state::AppState;
use serde::Deserialize;

/// Start enrolling an authenticator app. 2FA is not on until confirmed.
#[utoipa::path(post, path = "/v1/me/mfa/totp", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = TotpSetupBody), (status = 401, body = Problem), (status = 409, body = Problem)))]
pub async fn begin_totp(state: web::Data<AppState>, user: UserSession) -> Result {
    let setup = state.auth.begin_totp(&user.0).await?;
    Ok(super::carrying_secret(StatusCode::OK).json(TotpSetupBody {
        secret: setup.secret.to_base32(),
        otpauth_uri: setup.otpauth_uri,
    }))
}

/// Turn 2FA on with a code from the app; answers ten single-use recovery codes, shown once.
#[utoipa::path(post, path = "/v1/me/mfa/totp/confirm", tag = "me", security(("bearer" = [])),
    request_body = CodeBody,
    responses((status = 200, body = RecoveryCodesBody), (status = 401, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)))]
pub async fn confirm_totp(
    state: web::Data<AppState>,
    client: ClientInfo,
    user: UserSession,
    body: Json<CodeBody>,
) -> Result {
    let mut errors = Vec::new();
    let code = required(body.into_inner().code, "code", &mut errors);
    no_errors(errors)?;
    let codes = state.auth.confirm_totp(&user.0, &code, &client.context()).await?;
    Ok(super::carrying_secret(StatusCode::OK).json(RecoveryCodesBody {
        recovery_codes: codes.iter().map(|c| c.expose().to_owned()).collect(),
    }))
}

/// Turn 2FA off, with the account's password.
#[utoipa::path(delete, path = "/v1/me/mfa/totp", tag = "me", security(("bearer" = [])),
    request_body = PasswordBody,
    responses((status = 204), (status = 401, body = Problem), (status = 422, body = Problem)))]
pub async fn disable_totp(
    state: web::Data<AppState>,
    client: ClientInfo,
    user: UserSession,
    body: Json<PasswordBody>,
) -> Result {
    let mut errors = Vec::new();
    let password = required(body.into_inner().password, "password", &mut errors);
    no_errors(errors)?;
    state.auth.disable_totp(&user.0, &password, &client.context()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /v1/me/events` query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Page size, 1–100 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The `next` cursor of the previous page.
    #[param(value_type = Option<String>, format = Uuid)]
    pub before: Option<String>,
}

/// Your security events, newest first.
#[utoipa::path(get, path = "/v1/me/events", tag = "me", security(("bearer" = [])), params(EventsQuery),
    responses((status = 200, body = EventList), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn events(state: web::Data<AppState>, user: UserSession, query: web::Query<EventsQuery>) -> Result {
    let query = query.into_inner();
    let limit = match query.limit.as_deref() {
        None => 50,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::invalid_request("limit must be a whole number from 1 to 100"))?,
    };
    let before = match query.before.as_deref() {
        None => None,
        Some(raw) => Some(
            raw.parse::<EventId>()
                .map_err(|_| ApiError::invalid_request("before must be the next cursor of a previous page"))?,
        ),
    };
    let page = state.auth.events(user.0.user.id, before, limit).await?;
    Ok(HttpResponse::Ok().json(EventList {
        events: page.events.iter().map(EventBody::from).collect(),
        next: page.next.map(|id| id.to_string()),
    }))
}
