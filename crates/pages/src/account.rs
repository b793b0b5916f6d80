//! Pages without a session but the login: signup, forgotten password,
//! reset and e-mail verification.

use super::error::{page_error, PageError};
use super::layout::{self, auth_page, csrf_field, field, form_problems, html, Input};
use super::session::{is_signed_in, AnonForm, Visitor};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use convosphere_domain::auth::{LinkError, ResetPasswordError, SignupError, SignupRequest};
use convosphere_domain::password::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
use convosphere_domain::{FieldError, SecretString};
use convosphere_service::common::cookie::see_other;
use convosphere_service::state::{after_answer, AppState};
use maud::{html, Markup};
use serde::Deserialize;

pub(super) type Page = Result<HttpResponse, PageError>;

pub(super) fn required(
    form: &super::form::FormData,
    name: &'static str,
    label: &str,
    errors: &mut Vec<FieldError>,
) -> String {
    let value = form.text(name);
    if value.is_empty() {
        errors.push(FieldError::new(name, "required", format!("{label} is required")));
    }
    value
}

// ---- Signup ----

#[derive(Default)]
struct SignupValues {
    name: String,
    email: String,
    company: String,
    country: String,
    phone: String,
}

fn signup_page(csrf: &str, values: &SignupValues, errors: &[FieldError]) -> Markup {
    let password_hint = format!(
        "{MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters. A few unrelated words make a strong, memorable password."
    );
    auth_page(
        "Create your account",
        html! {
            h1 { "Create your account" }
            p.muted { "Start building with Convosphere AI." }
            (form_problems(errors))
            form method="post" action="/signup" novalidate {
                (csrf_field(csrf))
                (field(Input { name: "name", label: "Name", value: Some(&values.name), required: true,
                    autocomplete: Some("name"), maxlength: Some(100), autofocus: true, ..Input::default() }, errors))
                (field(Input { name: "email", label: "Work e-mail", kind: "email", value: Some(&values.email),
                    required: true, autocomplete: Some("email"), ..Input::default() }, errors))
                (field(Input { name: "password", label: "Password", kind: "password", required: true,
                    autocomplete: Some("new-password"), minlength: Some(MIN_PASSWORD_CHARS as u32),
                    hint: Some(&password_hint), ..Input::default() }, errors))
                (field(Input { name: "company", label: "Company", value: Some(&values.company),
                    autocomplete: Some("organization"), ..Input::default() }, errors))
                div.row {
                    (field(Input { name: "country", label: "Country", value: Some(&values.country),
                        autocomplete: Some("country-name"), ..Input::default() }, errors))
                    (field(Input { name: "phone", label: "Phone", kind: "tel", value: Some(&values.phone),
                        autocomplete: Some("tel"), ..Input::default() }, errors))
                }
                button.btn.btn-primary.btn-block type="submit" { "Create account" }
            }
            p.auth-switch { "Already have an account? " a href="/login" { "Sign in" } }
        },
    )
}

/// `GET /signup`
pub(crate) async fn signup_form(req: HttpRequest, visitor: Visitor) -> Page {
    if is_signed_in(&req).await {
        return Ok(see_other("/dashboard"));
    }
    Ok(html(
        StatusCode::OK,
        signup_page(&visitor.csrf, &SignupValues::default(), &[]),
    ))
}

/// `POST /signup`: the same answer whether or not the address is taken.
pub(crate) async fn signup(state: web::Data<AppState>, post: AnonForm) -> Page {
    let form = &post.form;
    let values = SignupValues {
        name: form.text("name"),
        email: form.text("email"),
        company: form.text("company"),
        country: form.text("country"),
        phone: form.text("phone"),
    };
    let outcome = state
        .auth
        .signup(SignupRequest {
            name: values.name.clone(),
            email: values.email.clone(),
            password: SecretString::from(form.text("password")),
            company: form.optional("company"),
            country: form.optional("country"),
            phone: form.optional("phone"),
            client: post.client.context(),
        })
        .await;
    let errors = match outcome {
        Ok(()) => {
            let ttl = layout::human_duration(state.config.email_verify_ttl);
            return Ok(html(StatusCode::OK, check_inbox(&post.csrf, values.email.trim(), &ttl)));
        }
        Err(SignupError::Invalid(errors)) => errors,
        Err(SignupError::WeakPassword(reason)) => vec![FieldError::new("password", reason.code(), reason.to_string())],
        Err(SignupError::Internal(cause)) => return Err(page_error(cause)),
    };
    Ok(html(
        StatusCode::UNPROCESSABLE_ENTITY,
        signup_page(&post.csrf, &values, &errors),
    ))
}

fn check_inbox(csrf: &str, email: &str, ttl: &str) -> Markup {
    auth_page(
        "Check your inbox",
        html! {
            h1 { "Check your inbox" }
            p.lead { "We've sent a link to " strong { (email) } ". Open it to confirm your address, then sign in." }
            p.muted { "The link works once, for " (ttl) ". Nothing there? Check your spam folder, or send a new link." }
            form method="post" action="/verify-email/resend" {
                (csrf_field(csrf))
                input type="hidden" name="email" value=(email);
                button.btn.btn-secondary.btn-block type="submit" { "Send a new link" }
            }
            p.auth-switch { a href="/login" { "Back to sign in" } }
        },
    )
}

// ---- Forgotten password and reset ----

fn forgot_page(csrf: &str, email: &str, errors: &[FieldError]) -> Markup {
    auth_page(
        "Reset your password",
        html! {
            h1 { "Forgot your password?" }
            p.muted { "Enter the e-mail address of your account and we'll send you a link to choose a new password." }
            form method="post" action="/forgot-password" novalidate {
                (csrf_field(csrf))
                (field(Input { name: "email", label: "E-mail", kind: "email", value: Some(email), required: true,
                    autocomplete: Some("email"), autofocus: true, ..Input::default() }, errors))
                button.btn.btn-primary.btn-block type="submit" { "Send the link" }
            }
            p.auth-switch { a href="/login" { "Back to sign in" } }
        },
    )
}

/// `GET /forgot-password`
pub(crate) async fn forgot_form(visitor: Visitor) -> Page {
    Ok(html(StatusCode::OK, forgot_page(&visitor.csrf, "", &[])))
}

/// `POST /forgot-password`: the same answer whether or not the address has an account.
pub(crate) async fn forgot(state: web::Data<AppState>, post: AnonForm) -> Page {
    let mut errors = Vec::new();
    let email = required(&post.form, "email", "The e-mail address", &mut errors);
    if !errors.is_empty() {
        return Ok(html(
            StatusCode::UNPROCESSABLE_ENTITY,
            forgot_page(&post.csrf, &email, &errors),
        ));
    }
    let address = email.clone();
    after_answer(&state, "sending a password reset link", |state| async move {
        state.auth.forgot_password(&address).await
    })
    .await;
    let ttl = layout::human_duration(state.config.password_reset_ttl);
    Ok(link_sent(html! {
        p.lead { "If " strong { (email.trim()) } " has an account, we've sent it a link to choose a new password." }
        p.muted { "The link works once, for " (ttl) "." }
    }))
}

/// A query holding the token of an e-mailed link.
#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    pub(super) token: Option<String>,
}

fn reset_page(csrf: &str, token: &str, errors: &[FieldError]) -> Markup {
    auth_page(
        "Choose a new password",
        html! {
            h1 { "Choose a new password" }
            p.muted { "After this, every session of your account is signed out." }
            (form_problems(errors))
            form method="post" action="/reset-password" novalidate {
                (csrf_field(csrf))
                input type="hidden" name="token" value=(token);
                (field(Input { name: "password", label: "New password", kind: "password", required: true,
                    autocomplete: Some("new-password"), minlength: Some(MIN_PASSWORD_CHARS as u32), autofocus: true,
                    hint: Some("At least 8 characters; a few unrelated words work well."), ..Input::default() }, errors))
                button.btn.btn-primary.btn-block type="submit" { "Set the new password" }
            }
        },
    )
}

pub(super) fn link_invalid_page(csrf: &str, resend: bool) -> Markup {
    auth_page(
        "This link no longer works",
        html! {
            (layout::form_error("link_invalid"))
            @if resend {
                h1 { "Send a new confirmation link" }
                form method="post" action="/verify-email/resend" novalidate {
                    (csrf_field(csrf))
                    (field(Input { name: "email", label: "E-mail", kind: "email", required: true,
                        autocomplete: Some("email"), ..Input::default() }, &[]))
                    button.btn.btn-primary.btn-block type="submit" { "Send a new link" }
                }
            } @else {
                div.actions {
                    a.btn.btn-primary href="/forgot-password" { "Ask for a new link" }
                    a.btn.btn-secondary href="/login" { "Sign in" }
                }
            }
        },
    )
}

/// `GET /reset-password?token=`
pub(crate) async fn reset_form(visitor: Visitor, query: web::Query<TokenQuery>) -> Page {
    match query.token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => Ok(html(StatusCode::OK, reset_page(&visitor.csrf, token, &[]))),
        None => Ok(html(StatusCode::BAD_REQUEST, link_invalid_page(&visitor.csrf, false))),
    }
}

/// `POST /reset-password`: a refused password leaves the link usable.
pub(crate) async fn reset(state: web::Data<AppState>, post: AnonForm) -> Page {
    let token = post.form.text("token");
    let password = post.form.text("password");
    match state
        .auth
        .reset_password(&token, &password, &post.client.context())
        .await
    {
        Ok(()) => Ok(see_other("/login?notice=password_reset")),
        Err(ResetPasswordError::WeakPassword(reason)) => {
            let errors = [FieldError::new("password", reason.code(), reason.to_string())];
            Ok(html(
                StatusCode::UNPROCESSABLE_ENTITY,
                reset_page(&post.csrf, &token, &errors),
            ))
        }
        Err(ResetPasswordError::LinkInvalid) => Ok(html(StatusCode::BAD_REQUEST, link_invalid_page(&post.csrf, false))),
        Err(ResetPasswordError::Internal(cause)) => Err(page_error(cause)),
    }
}

// ---- E-mail verification ----

/// A mailed link whose page is a button: fetching the link (as mail
/// scanners do) changes nothing; the button posts the token to `action`.
pub(super) struct LinkButton {
    /// The page's title and heading.
    pub title: &'static str,
    /// What the button does, in a line.
    pub lead: &'static str,
    /// Where the button posts the token.
    pub action: &'static str,
    /// The button's label.
    pub button: &'static str,
    /// Whether a dead link's page offers a new link (verification only).
    pub resend: bool,
}

/// The page of a [`LinkButton`] link, or the dead-link page without a token.
pub(super) fn link_button_page(visitor: &Visitor, token: Option<&str>, link: LinkButton) -> Page {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(html(
            StatusCode::BAD_REQUEST,
            link_invalid_page(&visitor.csrf, link.resend),
        ));
    };
    Ok(html(
        StatusCode::OK,
        auth_page(
            link.title,
            html! {
                h1 { (link.title) }
                p.muted { (link.lead) }
                form method="post" action=(link.action) {
                    (csrf_field(&visitor.csrf))
                    input type="hidden" name="token" value=(token);
                    button.btn.btn-primary.btn-block type="submit" { (link.button) }
                }
            },
        ),
    ))
}

/// `GET /verify-email?token=`: a page with a button; its POST verifies.
pub(crate) async fn verify_form(visitor: Visitor, query: web::Query<TokenQuery>) -> Page {
    let link = LinkButton {
        title: "Confirm your e-mail address",
        lead: "One click and your account is ready.",
        action: "/verify-email",
        button: "Confirm my e-mail address",
        resend: true,
    };
    link_button_page(&visitor, query.token.as_deref(), link)
}

/// `POST /verify-email`
pub(crate) async fn verify(state: web::Data<AppState>, post: AnonForm) -> Page {
    let token = post.form.text("token");
    match state.auth.verify_email(&token, &post.client.context()).await {
        Ok(_) => Ok(see_other("/login?notice=email_verified")),
        Err(LinkError::LinkInvalid) => Ok(html(StatusCode::BAD_REQUEST, link_invalid_page(&post.csrf, true))),
        Err(LinkError::Internal(cause)) => Err(page_error(cause)),
    }
}

/// `POST /verify-email/resend`: the same answer whatever the address.
pub(crate) async fn resend(state: web::Data<AppState>, post: AnonForm) -> Page {
    let email = post.form.text("email");
    if !email.trim().is_empty() {
        after_answer(&state, "resending a verification link", |state| async move {
            state.auth.resend_verification(&email).await
        })
        .await;
    }
    Ok(link_sent(html! {
        p.lead { "If that address has an account waiting for confirmation, we've sent it a new link." }
        p.muted { "Only the newest link works." }
    }))
}

/// The answer to a request for an e-mailed link: the same whether or not
/// the address has an account.
fn link_sent(what: Markup) -> HttpResponse {
    html(
        StatusCode::OK,
        auth_page(
            "Check your inbox",
            html! {
                h1 { "Check your inbox" }
                (what)
                p.auth-switch { a href="/login" { "Back to sign in" } }
            },
        ),
    )
}
