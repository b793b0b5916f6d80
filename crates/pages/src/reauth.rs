//! The re-authentication prompt: a sensitive action of a session whose last
//! sign-in is older than `AUTH_REAUTH_WINDOW` comes here first, and goes back
//! to the action's page once the password (and a code, with 2FA) checks out.

use super::account::{required, Page};
use super::error::{page_error, PageError};
use super::layout::{app_page, csrf_field, field, form_error, html, Input, Nav};
use super::session::{SignedIn, SignedInForm};
use actix_web::http::StatusCode;
use actix_web::web;
use convosphere_domain::{FieldError, SecondFactor, SecretString};
use convosphere_service::common::cookie::{safe_next, signed_in_response};
use convosphere_service::state::AppState;
use maud::{html, Markup};
use serde::Deserialize;

const PATH: &str = "/settings/reauthenticate";

/// Where a sensitive action goes when its session signed in too long ago:
/// the prompt, then back to `next` (the action's page).
pub(crate) fn reauthenticate_first(next: &str) -> PageError {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    PageError::Redirect {
        location: format!("{PATH}?{query}"),
        clear: None,
    }
}

/// `GET /settings/reauthenticate` query.
#[derive(Deserialize)]
pub(crate) struct ReauthQuery {
    next: Option<String>,
}

fn prompt(who: &SignedIn, next: &str, error: Option<&str>, errors: &[FieldError]) -> Markup {
    let content = html! {
        section.card.confirm-box {
            h1 { "Confirm it's you" }
            p.muted { "This action needs a recent sign-in. Enter your password to go on; you won't be asked again for a few minutes." }
            @if let Some(code) = error { (form_error(code)) }
            form method="post" action=(PATH) novalidate {
                (csrf_field(&who.csrf))
                input type="hidden" name="next" value=(next);
                // For password managers: whose password this is.
                input type="hidden" name="username" autocomplete="username" value=(who.user().email.as_str());
                (field(Input { name: "password", label: "Password", kind: "password", required: true,
                    autocomplete: Some("current-password"), autofocus: true, ..Input::default() }, errors))
                @if who.user().mfa_enabled {
                    (field(Input { name: "code", label: "Authentication code", autocomplete: Some("one-time-code"),
                        inputmode: Some("numeric"), maxlength: Some(7), errors_for: Some("totp_code"),
                        ..Input::default() }, errors))
                    details.recovery {
                        summary { "Lost your phone? Use a recovery code" }
                        (field(Input { name: "recovery_code", label: "Recovery code", autocomplete: Some("off"),
                            ..Input::default() }, errors))
                    }
                }
                div.actions {
                    button.btn.btn-primary type="submit" { "Confirm and continue" }
                    a.btn.btn-secondary href=(next) { "Cancel" }
                }
            }
        }
    };
    app_page("Confirm it's you", who, Nav::Security, None, content)
}

/// `GET /settings/reauthenticate?next=`
pub(crate) async fn form(who: SignedIn, query: web::Query<ReauthQuery>) -> Page {
    let next = safe_next(query.next.as_deref());
    Ok(html(StatusCode::OK, prompt(&who, next, None, &[])))
}

/// `POST /settings/reauthenticate`: the same use case as
/// `POST /v1/auth/reauthenticate`; the renewed session goes into the cookie.
pub(crate) async fn reauthenticate(state: web::Data<AppState>, post: SignedInForm) -> Page {
    let (who, form) = (&post.who, &post.form);
    let next = safe_next(form.get("next")).to_owned();
    let mut errors = Vec::new();
    let password = required(form, "password", "The password", &mut errors);
    let factor = SecondFactor {
        totp_code: form.optional("code").map(SecretString::from),
        recovery_code: form.optional("recovery_code").map(SecretString::from),
    };
    if who.user().mfa_enabled && factor.totp_code.is_none() && factor.recovery_code.is_none() {
        errors.push(FieldError::new(
            "totp_code",
            "required",
            "enter the code from your app, or a recovery code",
        ));
    }
    if !errors.is_empty() {
        return Ok(html(
            StatusCode::UNPROCESSABLE_ENTITY,
            prompt(who, &next, None, &errors),
        ));
    }
    let outcome = state
        .auth
        .reauthenticate(&who.principal, &password, &factor, &who.client.context())
        .await;
    match outcome.map_err(convosphere_service::common::problem::ApiError::from) {
        Ok(tokens) => Ok(signed_in_response(&state, &tokens, &next)?),
        Err(error)
            if matches!(
                error.code(),
                "invalid_credentials" | "invalid_mfa_code" | "mfa_required"
            ) =>
        {
            Ok(html(error.status(), prompt(who, &next, Some(error.code()), &[])))
        }
        Err(error) => Err(page_error(error)),
    }
}
