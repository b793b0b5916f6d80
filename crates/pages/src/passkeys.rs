//! Passkeys on the pages: "Sign in with a passkey" (and the browser's
//! autofill of passkeys) on `/login`, and adding and removing them on
//! `/settings/security`. The WebAuthn calls are the script's (`app.js`);
//! the forms post the browser's answer like any other field, so the
//! server decides everything, and every other way in works without script.

use super::error::{page_error, PageError};
use super::layout::{csrf_field, remove_button, table, when, when_or, ACTIONS};
use super::login::login_failed;
use super::reauth::reauthenticate_first;
use super::session::{AnonForm, SignedInForm};
use actix_web::{web, HttpResponse};
use convosphere_domain::auth::passkeys::{AddPasskeyError, RemovePasskeyError};
use convosphere_domain::PasskeyId;
use convosphere_service::common::cookie::{safe_next, see_other, signed_in_response};
use convosphere_service::common::passkey_verifier as verifier;
use convosphere_service::common::problem::ApiError;
use convosphere_service::state::AppState;
use maud::{html, Markup};

type Page = Result<HttpResponse, PageError>;

/// The challenge for the script: its id and the options as they are (JSON).
fn json_challenge(challenge: Result<convosphere_domain::auth::passkeys::PasskeyChallenge, ApiError>) -> Page {
    let challenge = challenge?;
    let options: serde_json::Value =
        serde_json::from_str(&challenge.options).map_err(|e| page_error(convosphere_domain::InfraError::new(e)))?;
    let body = serde_json::json!({"challenge_id": challenge.challenge_id.expose(), "options": options});
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(body))
}

/// `POST /login/passkey/start`: a sign-in challenge, as JSON, for the script.
pub(crate) async fn sign_in_start(state: web::Data<AppState>, _post: AnonForm) -> Page {
    let started = async { Ok(state.auth.start_passkey_sign_in(verifier(&state)?).await?) }.await;
    json_challenge(started)
}

/// `POST /login/passkey`: the browser's assertion; signed in like any login.
pub(crate) async fn sign_in(state: web::Data<AppState>, post: AnonForm) -> Page {
    let form = &post.form;
    let next = safe_next(form.get("next")).to_owned();
    let (challenge_id, credential) = (
        form.get("challenge_id").unwrap_or(""),
        form.get("credential").unwrap_or(""),
    );
    let client = post.client.context();
    let outcome: Result<_, ApiError> = async {
        let verifier = verifier(&state)?;
        Ok(state
            .auth
            .finish_passkey_sign_in(verifier, challenge_id, credential, &client)
            .await?)
    }
    .await;
    let label = outcome.as_ref().map_or_else(|e| e.code(), |_| "ok");
    state.metrics.logins.with_label_values(&[label]).inc();
    match outcome {
        Ok(tokens) => Ok(signed_in_response(&state, &tokens, &next)?),
        Err(error) => login_failed(&state, &post.csrf, "", &next, error),
    }
}

/// `POST /settings/security/passkeys/start`: a registration challenge, as
/// JSON, for the script; a session that must re-authenticate first gets 403.
pub(crate) async fn register_start(state: web::Data<AppState>, post: SignedInForm) -> Page {
    let principal = &post.who.principal;
    let started = async {
        Ok(state
            .auth
            .start_passkey_registration(verifier(&state)?, principal)
            .await?)
    }
    .await;
    json_challenge(started)
}

/// `POST /settings/security/passkeys`: the new passkey's name and the
/// browser's answer (posted without them when the script could not run).
pub(crate) async fn register(state: web::Data<AppState>, post: SignedInForm) -> Page {
    let who = &post.who;
    let back = "/settings/security";
    let credential = post.form.get("credential").unwrap_or("");
    if credential.is_empty() {
        state
            .auth
            .require_recent_sign_in(&who.principal)
            .map_err(|_| reauthenticate_first(back))?;
        return Ok(see_other("/settings/security?notice=passkey_script"));
    }
    let verifier = verifier(&state)?;
    let (challenge_id, name) = (
        post.form.get("challenge_id").unwrap_or(""),
        post.form.get("name").unwrap_or(""),
    );
    let outcome = state
        .auth
        .finish_passkey_registration(
            verifier,
            &who.principal,
            challenge_id,
            name,
            credential,
            &who.client.context(),
        )
        .await;
    match outcome {
        Ok(_) => Ok(see_other("/settings/security?notice=passkey_added")),
        Err(AddPasskeyError::Invalid(_)) => Ok(see_other("/settings/security?notice=passkey_name")),
        Err(AddPasskeyError::Refused(_)) => Ok(see_other("/settings/security?notice=passkey_failed")),
        Err(AddPasskeyError::RecentSignInRequired(_)) => Err(reauthenticate_first(back)),
        Err(AddPasskeyError::Internal(cause)) => Err(page_error(cause)),
    }
}

/// `POST /settings/security/passkeys/{id}/remove`
pub(crate) async fn remove(state: web::Data<AppState>, id: web::Path<String>, post: SignedInForm) -> Page {
    let id: PasskeyId = id.parse().map_err(|_| PageError::not_found())?;
    let who = &post.who;
    match state
        .auth
        .remove_passkey(&who.principal, id, &who.client.context())
        .await
    {
        Ok(()) => Ok(see_other("/settings/security?notice=passkey_removed")),
        Err(RemovePasskeyError::LastWayIn) => Ok(see_other("/settings/security?notice=passkey_last_way_in")),
        Err(RemovePasskeyError::NotFound) => Err(PageError::not_found()),
        Err(RemovePasskeyError::RecentSignInRequired(_)) => Err(reauthenticate_first("/settings/security")),
        Err(RemovePasskeyError::Internal(cause)) => Err(page_error(cause)),
    }
}

/// The passkeys card of `/settings/security`: the list, and a form to add
/// one that the script completes with the browser's answer.
pub(crate) fn section(csrf: &str, passkeys: &[convosphere_domain::passkey::Passkey]) -> Markup {
    html! {
        section.card aria-labelledby="passkeys-title" {
            h2 #passkeys-title { "Passkeys" }
            p.card-note {
                "Sign in with your fingerprint, face or device PIN instead of a password. "
                "A passkey never leaves your device and cannot be phished."
            }
            @if passkeys.is_empty() {
                p.empty { "No passkey yet." }
            } @else {
                (table(&["Name", "Added", "Last used", "Synced", ACTIONS], html! {
                    @for passkey in passkeys {
                        tr data-passkey=(passkey.id.to_string()) {
                            td data-label="Name" { (passkey.name) }
                            td data-label="Added" { (when(passkey.created_at)) }
                            td data-label="Last used" { (when_or(passkey.last_used_at, "Never")) }
                            td data-label="Synced" { @if passkey.backed_up { "Yes" } @else { "No" } }
                            td.cell-actions {
                                (remove_button(&format!("/settings/security/passkeys/{}/remove", passkey.id), csrf,
                                    "Remove", &format!("Remove {}", passkey.name)))
                            }
                        }
                    }
                }))
            }
            form #passkey-add method="post" action="/settings/security/passkeys" data-passkey-register="/settings/security/passkeys/start" {
                (csrf_field(csrf))
                input type="hidden" name="challenge_id";
                input type="hidden" name="credential";
                div.field {
                    label for="passkey-name" { "Name of the new passkey" }
                    input #passkey-name type="text" name="name" maxlength="100" required value="Passkey" autocomplete="off";
                }
                p.field-error #passkey-status role="status" aria-live="polite" {}
                button.btn.btn-primary type="submit" { "Add a passkey" }
            }
        }
    }
}
