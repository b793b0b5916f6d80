//! The account's own life: changing its address and deleting it.

use super::auth::UserSession;
use super::routes::{no_errors, required, Result};
use actix_web::{web, HttpRequest, HttpResponse};
use convosphere_service::common::extract::{optional_json, ClientInfo, Json};
use convosphere_service::common::problem::{ApiError, Problem};
use convosphere_service::dto::{EmailBody, PasswordBody, StatusBody, TokenBody, UserBody, UserEnvelope};
use convosphere_service::state::AppState;

/// Change the account's address (a sensitive action): a link goes to the
/// new address, a notice to the current one. The same answer when the new
/// address belongs to another account, which is sent a notice instead.
#[utoipa::path(post, path = "/v1/me/email", tag = "me", security(("bearer" = [])), request_body = EmailBody,
    responses((status = 202, body = StatusBody), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, body = Problem)))]
pub async fn change_email(
    state: web::Data<AppState>,
    user: UserSession,
    client: ClientInfo,
    body: Json<EmailBody>,
) -> Result {
    let mut errors = Vec::new();
    let email = required(body.into_inner().email, "email", &mut errors);
    no_errors(errors)?;
    state
        .auth
        .request_email_change(&user.0, &email, &client.context())
        .await?;
    Ok(HttpResponse::Accepted().json(StatusBody {
        status: "confirmation_sent",
    }))
}

/// Confirm a change of address with the token of the link sent to the new
/// address: the address changes, and every other session ends.
#[utoipa::path(post, path = "/v1/auth/email/confirm", tag = "accounts", request_body = TokenBody,
    responses((status = 200, body = UserEnvelope), (status = 400, body = Problem), (status = 422, body = Problem)))]
pub async fn confirm_email(state: web::Data<AppState>, client: ClientInfo, body: Json<TokenBody>) -> Result {
    let mut errors = Vec::new();
    let token = required(body.into_inner().token, "token", &mut errors);
    no_errors(errors)?;
    let user = state.auth.confirm_email_change(&token, &client.context()).await?;
    Ok(HttpResponse::Ok().json(UserEnvelope {
        user: UserBody::from(&user),
    }))
}

/// Delete the account and its data: with its password, or (an account
/// without one) after a recent sign-in. The security log stays for
/// `AUTH_AUDIT_RETENTION` without IP, user agent or details.
#[utoipa::path(delete, path = "/v1/me", tag = "me", security(("bearer" = [])), request_body = PasswordBody,
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn delete_account(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: UserSession,
    client: ClientInfo,
    body: std::result::Result<Json<PasswordBody>, ApiError>,
) -> Result {
    let body = optional_json(&req, body)?;
    let password = body.password.filter(|p| !p.is_empty());
    state
        .auth
        .delete_account(&user.0, password.as_deref(), &client.context())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
