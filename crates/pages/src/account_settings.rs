//! `/settings/account`: change the e-mail address (confirmed by a link to
//! the new one, `/confirm-email`), download the account's data, delete the
//! account. The same use cases as `POST /v1/me/email`,
//! `POST /v1/auth/email/confirm`, `GET /v1/me/export` and `DELETE /v1/me`.

use super::account::{link_button_page, link_invalid_page, LinkButton, Page, TokenQuery};
use super::dashboard::NoticeQuery;
use super::error::page_error;
use super::layout::{app_page, csrf_field, field, html, when, Input, Nav};
use super::reauth::reauthenticate_first;
use super::session::{AnonForm, SignedIn, SignedInForm, Visitor};
use actix_web::http::StatusCode;
use actix_web::web;
use convosphere_domain::auth::account::{ConfirmEmailError, DeleteAccountError, EmailChangeError};
use convosphere_domain::FieldError;
use convosphere_service::common::cookie::see_other;
use convosphere_service::state::AppState;
use maud::html;

const PATH: &str = "/settings/account";

/// What the forms of the page report.
#[derive(Default)]
struct Problems<'a> {
    email: &'a [FieldError],
    email_value: Option<&'a str>,
    delete: &'a [FieldError],
}

async fn render(
    state: &AppState,
    who: &SignedIn,
    notice: Option<&str>,
    problems: Problems<'_>,
    status: StatusCode,
) -> Page {
    let user = who.user();
    let pending = state.auth.pending_email_change(user).await.map_err(page_error)?;
    let has_password = user.password_hash.is_some();
    let content = html! {
        div.page-head {
            h1 { "Account" }
            p { "Your sign-in address, your data, and the end of your account." }
        }
        section.card aria-labelledby="email-title" {
            h2 #email-title { "E-mail address" }
            p { "You sign in with " strong { (user.email.as_str()) } "." }
            @if let Some(pending) = &pending {
                p.card-note data-pending-email=(pending.new_email.as_str()) {
                    "A change to " strong { (pending.new_email.as_str()) } " waits for the link we sent there (until "
                    (when(pending.expires_at)) ")."
                }
            }
            p.card-note {
                "We send a link to the new address; the change happens when it is used, and every other session "
                "is signed out then. Your current address is told of the request."
            }
            form method="post" action="/settings/account/email" novalidate {
                (csrf_field(&who.csrf))
                (field(Input { name: "email", label: "New e-mail address", kind: "email", required: true,
                    autocomplete: Some("email"), value: problems.email_value, ..Input::default() }, problems.email))
                button.btn.btn-primary type="submit" { "Send a confirmation link" }
            }
        }
        section.card aria-labelledby="export-title" {
            h2 #export-title { "Your data" }
            p.card-note { "Every record we keep about your account (profile, sessions, keys without their secrets, passkeys, providers, security log, usage), as one JSON file." }
            a.btn.btn-secondary href="/settings/account/export" download { "Download your data" }
        }
        section.card.card-danger aria-labelledby="delete-title" {
            h2 #delete-title { "Delete the account" }
            p.card-note {
                "Deleting signs out every session, stops every API key at once, removes your passkeys and linked "
                "providers and erases your profile. It cannot be undone. The security log stays for a while, "
                "without addresses, names or devices."
            }
            form method="post" action="/settings/account/delete" novalidate {
                (csrf_field(&who.csrf))
                @if has_password {
                    (field(Input { name: "password", label: "Your password", kind: "password", required: true,
                        autocomplete: Some("current-password"), ..Input::default() }, problems.delete))
                }
                (field(Input { name: "confirm", label: "Type DELETE to confirm", required: true,
                    autocomplete: Some("off"), ..Input::default() }, problems.delete))
                button.btn.btn-danger type="submit" { "Delete my account" }
            }
        }
    };
    Ok(html(status, app_page("Account", who, Nav::Account, notice, content)))
}

/// `GET /settings/account`
pub(crate) async fn show(state: web::Data<AppState>, who: SignedIn, query: web::Query<NoticeQuery>) -> Page {
    render(
        &state,
        &who,
        query.notice.as_deref(),
        Problems::default(),
        StatusCode::OK,
    )
    .await
}

/// `POST /settings/account/email`
pub(crate) async fn change_email(state: web::Data<AppState>, post: SignedInForm) -> Page {
    let who = &post.who;
    let email = post.form.text("email");
    let errors = match state
        .auth
        .request_email_change(&who.principal, &email, &who.client.context())
        .await
    {
        Ok(()) => return Ok(see_other("/settings/account?notice=email_change_sent")),
        Err(EmailChangeError::Invalid(errors)) => errors,
        Err(EmailChangeError::RecentSignInRequired(_)) => return Err(reauthenticate_first(PATH)),
        Err(EmailChangeError::Internal(cause)) => return Err(page_error(cause)),
    };
    let problems = Problems {
        email: &errors,
        email_value: Some(&email),
        ..Problems::default()
    };
    render(&state, who, None, problems, StatusCode::UNPROCESSABLE_ENTITY).await
}

/// `POST /settings/account/delete`: the session ends with the account.
pub(crate) async fn delete(state: web::Data<AppState>, post: SignedInForm) -> Page {
    let who = &post.who;
    let (status, error) = if post.form.text("confirm").trim() != "DELETE" {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            FieldError::new("confirm", "required", "type DELETE, in capitals, to confirm"),
        )
    } else {
        let password = post.form.text("password");
        let password = Some(password.as_str()).filter(|p| !p.is_empty());
        match state
            .auth
            .delete_account(&who.principal, password, &who.client.context())
            .await
        {
            Ok(()) => return super::login::signed_out(&state, "/login?notice=account_deleted"),
            Err(DeleteAccountError::PasswordRequired) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                FieldError::new("password", "required", "enter your password"),
            ),
            Err(DeleteAccountError::InvalidCredentials) => (
                StatusCode::UNAUTHORIZED,
                FieldError::new("password", "invalid_credentials", "the password is wrong"),
            ),
            Err(DeleteAccountError::Locked) => (
                StatusCode::FORBIDDEN,
                FieldError::new(
                    "password",
                    "account_locked",
                    "too many wrong passwords: try again later",
                ),
            ),
            Err(DeleteAccountError::RecentSignInRequired(_)) => return Err(reauthenticate_first(PATH)),
            Err(DeleteAccountError::Internal(cause)) => return Err(page_error(cause)),
        }
    };
    let errors = [error];
    let problems = Problems {
        delete: &errors,
        ..Problems::default()
    };
    render(&state, who, None, problems, status).await
}

/// `GET /confirm-email?token=`: a page with a button; its POST changes the address.
pub(crate) async fn confirm_form(visitor: Visitor, query: web::Query<TokenQuery>) -> Page {
    let link = LinkButton {
        title: "Confirm your new e-mail address",
        lead: "Your account will sign in with this address from now on. Every other session is signed out.",
        action: "/confirm-email",
        button: "Use this address",
        resend: false,
    };
    link_button_page(&visitor, query.token.as_deref(), link)
}

/// `POST /confirm-email`
pub(crate) async fn confirm(state: web::Data<AppState>, post: AnonForm) -> Page {
    let token = post.form.text("token");
    match state.auth.confirm_email_change(&token, &post.client.context()).await {
        Ok(_) => Ok(see_other("/settings/account?notice=email_changed")),
        Err(ConfirmEmailError::LinkInvalid) => Ok(html(StatusCode::BAD_REQUEST, link_invalid_page(&post.csrf, false))),
        Err(ConfirmEmailError::Internal(cause)) => Err(page_error(cause)),
    }
}
