//! The login pages: e-mail and password, the two-factor step, logout.

use super::account::{required, Page};
use super::error::page_error;
use super::layout::{self, alert, auth_page, csrf_field, field, form_error, html, Input};
use super::session::{is_signed_in, AnonForm, SignedInForm, Visitor};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use convosphere_domain::auth::{LoginError, LoginRequest};
use convosphere_domain::{FieldError, SecondFactor, SecretString};
use convosphere_service::common::cookie::{
    mfa_cookie, safe_next, see_other, signed_in_response, PendingLogin, MFA_COOKIE, MFA_TICKET, MFA_TICKET_SECS,
};
use convosphere_service::common::problem::ApiError;
use convosphere_service::state::AppState;
use maud::{html, Markup};
use serde::Deserialize;

/// `GET /login` query.
#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
    notice: Option<String>,
}

struct LoginView<'a> {
    csrf: &'a str,
    email: &'a str,
    next: &'a str,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    errors: &'a [FieldError],
    providers: &'a [&'static str],
    /// Whether passkeys are on ("Sign in with a passkey", and their autofill).
    passkeys: bool,
}

fn provider_name(provider: &str) -> &'static str {
    provider
        .parse::<convosphere_domain::oauth::Provider>()
        .map_or("the provider", |p| p.display_name())
}

fn login_page(view: &LoginView<'_>) -> Markup {
    auth_page(
        "Sign in",
        html! {
            h1 { "Sign in" }
            p.muted { "Welcome back to Convosphere AI." }
            @if let Some((kind, text)) = view.notice.and_then(layout::notice_text) {
                (alert(kind, html! { (text) }))
            }
            @if let Some(code) = view.error { (form_error(code)) }
            @if view.error == Some("email_not_verified") {
                form.resend method="post" action="/verify-email/resend" {
                    (csrf_field(view.csrf))
                    input type="hidden" name="email" value=(view.email);
                    button.btn.btn-secondary.btn-block type="submit" { "Send a new confirmation link" }
                }
                div.divider { "or" }
            }
            form method="post" action="/login" novalidate {
                (csrf_field(view.csrf))
                input type="hidden" name="next" value=(view.next);
                (field(Input { name: "email", label: "E-mail", kind: "email", value: Some(view.email), required: true,
                    autocomplete: Some(if view.passkeys { "username webauthn" } else { "username" }), autofocus: view.email.is_empty(), ..Input::default() }, view.errors))
                (field(Input { name: "password", label: "Password", kind: "password", required: true,
                    autocomplete: Some("current-password"), autofocus: !view.email.is_empty(), ..Input::default() }, view.errors))
                p { a href="/forgot-password" { "Forgot your password?" } }
                button.btn.btn-primary.btn-block type="submit" { "Sign in" }
            }
            @if view.passkeys {
                div.divider { "or" }
                form #passkey-login method="post" action="/login/passkey" data-passkey-login="/login/passkey/start" {
                    (csrf_field(view.csrf))
                    input type="hidden" name="next" value=(view.next);
                    input type="hidden" name="challenge_id";
                    input type="hidden" name="credential";
                    p.field-error #passkey-status role="status" aria-live="polite" {}
                    button.btn.btn-secondary.btn-block type="submit" { "Sign in with a passkey" }
                }
            }
            @if !view.providers.is_empty() {
                div.divider { "or" }
                div.providers {
                    @for provider in view.providers {
                        a class=(format!("btn btn-secondary btn-block provider provider-{provider}"))
                            href=(format!("/v1/auth/oauth/{provider}/start")) {
                            span.provider-mark aria-hidden="true" { (provider_name(provider).chars().next().unwrap_or(' ')) }
                            "Sign in with " (provider_name(provider))
                        }
                    }
                }
            }
            p.auth-switch { "New to Convosphere? " a href="/signup" { "Create an account" } }
        },
    )
}

/// `GET /login`
pub(crate) async fn login_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    visitor: Visitor,
    query: web::Query<LoginQuery>,
) -> Page {
    let next = safe_next(query.next.as_deref());
    if is_signed_in(&req).await {
        return Ok(see_other(next));
    }
    let providers = state.config.oauth_providers();
    Ok(html(
        StatusCode::OK,
        login_page(&LoginView {
            csrf: &visitor.csrf,
            email: "",
            next,
            notice: query.notice.as_deref(),
            error: None,
            errors: &[],
            providers: &providers,
            passkeys: state.passkeys.is_some(),
        }),
    ))
}

/// `GET /login/two-factor`: the step of a provider login that waits for
/// its second factor; without one, back to the login page.
pub(crate) async fn login_mfa_form(state: web::Data<AppState>, req: HttpRequest, visitor: Visitor) -> Page {
    let ticket = req.cookie(MFA_COOKIE).map(|c| c.value().to_owned());
    if state
        .web
        .open_ticket::<PendingLogin>(MFA_TICKET, ticket.as_deref())
        .is_none()
    {
        return Ok(see_other("/login?notice=session_expired"));
    }
    let ticket = ticket.unwrap_or_default();
    Ok(html(StatusCode::OK, mfa_page(&visitor.csrf, &ticket, None, &[])))
}

fn mfa_page(csrf: &str, ticket: &str, error: Option<&str>, errors: &[FieldError]) -> Markup {
    auth_page(
        "Two-factor authentication",
        html! {
            h1 { "Two-factor authentication" }
            p.muted { "Enter the 6-digit code your authenticator app shows for Convosphere AI." }
            @if let Some(code) = error { (form_error(code)) }
            form method="post" action="/login/two-factor" novalidate {
                (csrf_field(csrf))
                input type="hidden" name="ticket" value=(ticket);
                (field(Input { name: "code", label: "Authentication code", autocomplete: Some("one-time-code"),
                    inputmode: Some("numeric"), maxlength: Some(7), autofocus: true, required: true,
                    errors_for: Some("totp_code"), ..Input::default() }, errors))
                details.recovery {
                    summary { "Lost your phone? Use a recovery code" }
                    (field(Input { name: "recovery_code", label: "Recovery code", autocomplete: Some("off"),
                        hint: Some("One of the ten codes you saved when you turned two-factor authentication on, like abcdef-ghijkl-mnopqr-stuvwx. Each works once."),
                        ..Input::default() }, errors))
                }
                button.btn.btn-primary.btn-block type="submit" { "Verify and sign in" }
            }
            p.auth-switch { a href="/login" { "Start over" } }
        },
    )
}

/// The login form again, with the outcome of a failed attempt.
pub(crate) fn login_failed(state: &AppState, csrf: &str, email: &str, next: &str, error: ApiError) -> Page {
    if matches!(error.code(), "internal" | "unavailable" | "rate_limited") {
        return Err(error.into());
    }
    let providers = state.config.oauth_providers();
    Ok(html(
        error.status(),
        login_page(&LoginView {
            csrf,
            email,
            next,
            notice: None,
            error: Some(error.code()),
            errors: &[],
            providers: &providers,
            passkeys: state.passkeys.is_some(),
        }),
    ))
}

fn count_login(state: &AppState, outcome: &Result<convosphere_domain::IssuedTokens, LoginError>) {
    let label = match outcome {
        Ok(_) => "ok",
        Err(LoginError::InvalidCredentials) => "invalid_credentials",
        Err(LoginError::EmailNotVerified) => "email_not_verified",
        Err(LoginError::Locked) => "account_locked",
        Err(LoginError::MfaRequired) => "mfa_required",
        Err(LoginError::InvalidMfaCode) => "invalid_mfa_code",
        Err(LoginError::Internal(_)) => "internal",
    };
    state.metrics.logins.with_label_values(&[label]).inc();
}

/// `POST /login`: the same use case as `POST /v1/auth/login`; the session
/// is kept in the cookie.
pub(crate) async fn login(state: web::Data<AppState>, post: AnonForm) -> Page {
    let form = &post.form;
    let next = safe_next(form.get("next")).to_owned();
    let mut errors = Vec::new();
    let email = required(form, "email", "The e-mail address", &mut errors);
    let password = required(form, "password", "The password", &mut errors);
    if !errors.is_empty() {
        let providers = state.config.oauth_providers();
        return Ok(html(
            StatusCode::UNPROCESSABLE_ENTITY,
            login_page(&LoginView {
                csrf: &post.csrf,
                email: &email,
                next: &next,
                notice: None,
                error: None,
                errors: &errors,
                providers: &providers,
                passkeys: state.passkeys.is_some(),
            }),
        ));
    }
    let outcome = state
        .auth
        .login(LoginRequest {
            email: email.clone(),
            password: SecretString::from(password.clone()),
            totp_code: None,
            recovery_code: None,
            client: post.client.context(),
        })
        .await;
    count_login(&state, &outcome);
    match outcome {
        Ok(tokens) => Ok(signed_in_response(&state, &tokens, &next)?),
        Err(LoginError::MfaRequired) => {
            let pending = PendingLogin::Password { email, password, next };
            let ticket = state
                .web
                .seal_ticket(MFA_TICKET, MFA_TICKET_SECS, &pending)
                .map_err(page_error)?;
            Ok(html(StatusCode::OK, mfa_page(&post.csrf, &ticket, None, &[])))
        }
        Err(error) => login_failed(&state, &post.csrf, &email, &next, error.into()),
    }
}

/// `POST /login/two-factor`: the login again, with the code.
pub(crate) async fn login_mfa(state: web::Data<AppState>, post: AnonForm) -> Page {
    let form = &post.form;
    let Some(pending) = state.web.open_ticket::<PendingLogin>(MFA_TICKET, form.get("ticket")) else {
        // Too slow, or tampered with: the password is asked again.
        return login_failed(
            &state,
            &post.csrf,
            "",
            "/dashboard",
            ApiError::unauthorized("session_expired", "the login took too long"),
        );
    };
    let code = form.optional("code");
    let recovery = form.optional("recovery_code");
    let ticket = form.text("ticket");
    if code.is_none() && recovery.is_none() {
        let errors = [FieldError::new(
            "totp_code",
            "required",
            "enter the code from your app, or a recovery code",
        )];
        return Ok(html(
            StatusCode::UNPROCESSABLE_ENTITY,
            mfa_page(&post.csrf, &ticket, None, &errors),
        ));
    }
    let factor = SecondFactor {
        totp_code: code.map(SecretString::from),
        recovery_code: recovery.map(SecretString::from),
    };
    let outcome = match &pending {
        PendingLogin::Password { email, password, .. } => {
            let outcome = state
                .auth
                .login(LoginRequest {
                    email: email.clone(),
                    password: SecretString::from(password.clone()),
                    totp_code: factor.totp_code,
                    recovery_code: factor.recovery_code,
                    client: post.client.context(),
                })
                .await;
            count_login(&state, &outcome);
            outcome.map_err(ApiError::from)
        }
        PendingLogin::Provider { code, .. } => state
            .auth
            .oauth_exchange(code, &factor, &post.client.context())
            .await
            .map_err(ApiError::from),
    };
    match outcome {
        Ok(tokens) => {
            let mut response = signed_in_response(&state, &tokens, pending.next())?;
            if matches!(pending, PendingLogin::Provider { .. }) {
                let mut gone = mfa_cookie(&state, String::new(), 0);
                gone.make_removal();
                response
                    .add_cookie(&gone)
                    .map_err(|e| page_error(convosphere_domain::InfraError::new(e.to_string())))?;
            }
            Ok(response)
        }
        Err(error) if error.code() == "invalid_mfa_code" => Ok(html(
            StatusCode::UNAUTHORIZED,
            mfa_page(&post.csrf, &ticket, Some("invalid_mfa_code"), &[]),
        )),
        Err(error) => login_failed(&state, &post.csrf, pending.email(), pending.next(), error),
    }
}

/// `POST /logout`: this session ends, the cookie goes.
pub(crate) async fn logout(state: web::Data<AppState>, post: SignedInForm) -> Page {
    let who = &post.who;
    state
        .auth
        .logout(who.user().id, who.principal.session_id, &who.client.context())
        .await
        .map_err(page_error)?;
    signed_out(&state, "/login?notice=logged_out")
}

/// A redirect to `location` that removes the session cookie: the browser's
/// session has ended (logout, a deleted account).
pub(crate) fn signed_out(state: &AppState, location: &str) -> Page {
    let mut response = see_other(location);
    response
        .add_cookie(&state.web.session_removal())
        .map_err(|e| page_error(convosphere_domain::InfraError::new(e.to_string())))?;
    Ok(response)
}
