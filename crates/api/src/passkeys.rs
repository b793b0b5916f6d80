//! Passkeys: adding, listing and removing them, and signing in with one.

use super::auth::UserSession;
use super::routes::{no_errors, required, Result};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use convosphere_domain::auth::passkeys::PasskeyChallenge;
use convosphere_domain::{FieldError, PasskeyId};
use convosphere_service::common::extract::{ClientInfo, Json};
use convosphere_service::common::passkey_verifier as verifier;
use convosphere_service::common::problem::{ApiError, Problem};
use convosphere_service::dto::{
    PasskeyAssertionBody, PasskeyBody, PasskeyChallengeBody, PasskeyList, PasskeyRegistrationBody, TokenPair,
};
use convosphere_service::state::AppState;

/// The challenge as the API shows it.
pub(crate) fn challenge_body(challenge: PasskeyChallenge) -> Result<PasskeyChallengeBody> {
    let options = serde_json::from_str(&challenge.options)
        .map_err(|e| ApiError::internal(&convosphere_domain::InfraError::new(e)))?;
    Ok(PasskeyChallengeBody {
        challenge_id: challenge.challenge_id.expose().to_owned(),
        options,
    })
}

/// A required JSON object field, as its text for the verifier.
pub(crate) fn credential_text(value: Option<serde_json::Value>, errors: &mut Vec<FieldError>) -> String {
    match value {
        Some(value @ serde_json::Value::Object(_)) => value.to_string(),
        _ => {
            let message = "credential is required: the browser's PublicKeyCredential as JSON";
            errors.push(FieldError::new("credential", "required", message));
            String::new()
        }
    }
}

/// Start adding a passkey to your account (needs a recent sign-in).
#[utoipa::path(post, path = "/v1/me/passkeys/register/start", tag = "passkeys", security(("bearer" = [])),
    responses((status = 200, body = PasskeyChallengeBody), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem, description = "passkeys are off (the public URL is an IP address)"),
        (status = 422, body = Problem)))]
pub async fn register_start(state: web::Data<AppState>, user: UserSession) -> Result {
    let challenge = state
        .auth
        .start_passkey_registration(verifier(&state)?, &user.0)
        .await?;
    Ok(HttpResponse::Ok().json(challenge_body(challenge)?))
}

/// Finish adding a passkey with the browser's answer.
#[utoipa::path(post, path = "/v1/me/passkeys/register/finish", tag = "passkeys", security(("bearer" = [])),
    request_body = PasskeyRegistrationBody,
    responses((status = 201, body = PasskeyBody), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem, description = "passkeys are off (the public URL is an IP address)"),
        (status = 422, body = Problem)))]
pub async fn register_finish(
    state: web::Data<AppState>,
    client: ClientInfo,
    user: UserSession,
    body: Json<PasskeyRegistrationBody>,
) -> Result {
    let body = body.into_inner();
    let mut errors = Vec::new();
    let challenge_id = required(body.challenge_id, "challenge_id", &mut errors);
    let name = body.name.unwrap_or_default();
    let credential = credential_text(body.credential, &mut errors);
    no_errors(errors)?;
    let passkey = state
        .auth
        .finish_passkey_registration(
            verifier(&state)?,
            &user.0,
            &challenge_id,
            &name,
            &credential,
            &client.context(),
        )
        .await?;
    Ok(HttpResponse::Created().json(PasskeyBody::from(&passkey)))
}

/// Your passkeys, oldest first.
#[utoipa::path(get, path = "/v1/me/passkeys", tag = "passkeys", security(("bearer" = [])),
    responses((status = 200, body = PasskeyList), (status = 401, body = Problem)))]
pub async fn list(state: web::Data<AppState>, user: UserSession) -> Result {
    let passkeys = state.auth.passkeys(user.0.user.id).await?;
    Ok(HttpResponse::Ok().json(PasskeyList {
        passkeys: passkeys.iter().map(PasskeyBody::from).collect(),
    }))
}

/// Remove a passkey (needs a recent sign-in); refused when it is the
/// account's only way to sign in.
#[utoipa::path(delete, path = "/v1/me/passkeys/{id}", tag = "passkeys", security(("bearer" = [])),
    params(("id" = String, Path, description = "The passkey's id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn remove(
    state: web::Data<AppState>,
    client: ClientInfo,
    user: UserSession,
    id: web::Path<String>,
) -> Result {
    let id: PasskeyId = id.parse().map_err(|_| ApiError::not_found())?;
    state.auth.remove_passkey(&user.0, id, &client.context()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Start signing in with a passkey: no e-mail needed.
#[utoipa::path(post, path = "/v1/auth/passkey/start", tag = "passkeys",
    responses((status = 200, body = PasskeyChallengeBody),
        (status = 404, body = Problem, description = "passkeys are off (the public URL is an IP address)")))]
pub async fn sign_in_start(state: web::Data<AppState>) -> Result {
    let challenge = state.auth.start_passkey_sign_in(verifier(&state)?).await?;
    Ok(HttpResponse::Ok().json(challenge_body(challenge)?))
}

/// Finish signing in with the browser's assertion: a session like any sign-in (`amr` `hwk`).
#[utoipa::path(post, path = "/v1/auth/passkey/finish", tag = "passkeys", request_body = PasskeyAssertionBody,
    responses((status = 200, body = TokenPair), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem, description = "passkeys are off (the public URL is an IP address)"),
        (status = 422, body = Problem)))]
pub async fn sign_in_finish(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: Json<PasskeyAssertionBody>,
) -> Result {
    let body = body.into_inner();
    let mut errors = Vec::new();
    let challenge_id = required(body.challenge_id, "challenge_id", &mut errors);
    let credential = credential_text(body.credential, &mut errors);
    no_errors(errors)?;
    let outcome = state
        .auth
        .finish_passkey_sign_in(verifier(&state)?, &challenge_id, &credential, &client.context())
        .await
        .map_err(ApiError::from);
    let label = outcome.as_ref().map_or_else(|e| e.code(), |_| "ok");
    state.metrics.logins.with_label_values(&[label]).inc();
    Ok(super::carrying_secret(StatusCode::OK).json(TokenPair::from(outcome?)))
}
