//! `/settings/security`: change the password, turn two-factor
//! authentication on (a QR code drawn here as SVG, recovery codes shown
//! once) and off, passkeys and the linked providers (each in its own
//! module), and the recent security events.

use super::error::{page_error, PageError};
use super::layout::{app_page, copy_button, csrf_field, field, form_error, html, table, when, Input, Nav};
use super::providers::SecurityQuery;
use super::reauth::reauthenticate_first;
use super::session::{SignedIn, SignedInForm};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use convosphere_domain::auth::mfa::{BeginTotpError, ConfirmTotpError, DisableTotpError};
use convosphere_domain::auth::ChangePasswordError;
use convosphere_domain::password::MIN_PASSWORD_CHARS;
use convosphere_domain::{FieldError, SecurityEvent};
use convosphere_service::common::cookie::see_other;
use convosphere_service::state::AppState;
use maud::{html, Markup};
use serde::{Deserialize, Serialize};

type Page = Result<HttpResponse, PageError>;

/// How long a 2FA setup may wait for its code.
const SETUP_TICKET_SECS: i64 = 1800;
const SETUP_TICKET: &str = "totp_setup";

/// What the forms of the page report.
#[derive(Default)]
struct Problems<'a> {
    password: &'a [FieldError],
    disable: &'a [FieldError],
    disable_code: Option<&'a str>,
}

fn event_label(event: &SecurityEvent) -> String {
    let text = event
        .kind
        .as_str()
        .replace('_', " ")
        .replace("mfa", "two-factor")
        .replace("api key", "API key");
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

async fn render(
    state: &AppState,
    who: &SignedIn,
    notice: Option<&str>,
    problems: Problems<'_>,
    status: StatusCode,
) -> Page {
    let user = who.user();
    let events = state.auth.events(user.id, None, 8).await.map_err(page_error)?;
    let identities = state.auth.identities(user.id).await.map_err(page_error)?;
    let passkeys = state.auth.passkeys(user.id).await.map_err(page_error)?;
    let content = html! {
        div.page-head {
            h1 { "Security" }
            p { "Your password, two-factor authentication and what happened lately." }
        }
        section.card aria-labelledby="password-title" {
            h2 #password-title { "Change password" }
            p.card-note { "Every other session is signed out when the password changes." }
            form method="post" action="/settings/security/password" novalidate {
                (csrf_field(&who.csrf))
                (field(Input { name: "current_password", label: "Current password", kind: "password", required: true,
                    autocomplete: Some("current-password"), ..Input::default() }, problems.password))
                (field(Input { name: "new_password", label: "New password", kind: "password", required: true,
                    autocomplete: Some("new-password"), minlength: Some(MIN_PASSWORD_CHARS as u32),
                    hint: Some("At least 8 characters; a few unrelated words work well."), ..Input::default() }, problems.password))
                button.btn.btn-primary type="submit" { "Change password" }
            }
        }
        section.card aria-labelledby="mfa-title" {
            h2 #mfa-title {
                "Two-factor authentication "
                @if user.mfa_enabled { span.badge.badge-on { "On" } } @else { span.badge.badge-off { "Off" } }
            }
            @if user.mfa_enabled {
                p.card-note { "Signing in asks for a code from your authenticator app, or one of your recovery codes." }
                @if let Some(code) = problems.disable_code { (form_error(code)) }
                form method="post" action="/settings/security/two-factor/disable" novalidate {
                    (csrf_field(&who.csrf))
                    (field(Input { name: "password", label: "Your password, to turn it off", kind: "password",
                        required: true, autocomplete: Some("current-password"), errors_for: Some("disable_password"),
                        ..Input::default() }, problems.disable))
                    button.btn.btn-danger-quiet type="submit" { "Turn off two-factor authentication" }
                }
            } @else {
                p.card-note {
                    "Protect your account with a second step at sign-in: a 6-digit code from an authenticator app "
                    "such as 1Password, Google Authenticator or Authy."
                }
                form method="post" action="/settings/security/two-factor" {
                    (csrf_field(&who.csrf))
                    button.btn.btn-primary type="submit" { "Set up two-factor authentication" }
                }
            }
        }
        @if state.passkeys.is_some() {
            (super::passkeys::section(&who.csrf, &passkeys))
        }
        (super::providers::section(state, &who.csrf, &identities))
        section.card aria-labelledby="events-title" {
            h2 #events-title { "Recent activity" }
            @if events.events.is_empty() {
                p.empty { "Nothing yet." }
            } @else {
                (table(&["What", "When", "IP address"], html! {
                    @for event in &events.events {
                        tr {
                            td data-label="What" { (event_label(event)) }
                            td data-label="When" { (when(event.at)) }
                            td data-label="IP address" { (event.ip.as_deref().unwrap_or("—")) }
                        }
                    }
                }))
            }
        }
    };
    Ok(html(status, app_page("Security", who, Nav::Security, notice, content)))
}

/// `GET /settings/security`
pub(crate) async fn show(state: web::Data<AppState>, who: SignedIn, query: web::Query<SecurityQuery>) -> Page {
    render(&state, &who, query.notice(), Problems::default(), StatusCode::OK).await
}

/// `POST /settings/security/password`: every other session ends.
pub(crate) async fn change_password(state: web::Data<AppState>, post: SignedInForm) -> Page {
    let who = &post.who;
    let current = post.form.text("current_password");
    let new = post.form.text("new_password");
    let (errors, status) = if current.is_empty() || new.is_empty() {
        let mut errors = Vec::new();
        if current.is_empty() {
            errors.push(FieldError::new(
                "current_password",
                "required",
                "enter your current password",
            ));
        }
        if new.is_empty() {
            errors.push(FieldError::new("new_password", "required", "choose a new password"));
        }
        (errors, StatusCode::UNPROCESSABLE_ENTITY)
    } else {
        match state
            .auth
            .change_password(&who.principal, &current, &new, &who.client.context())
            .await
        {
            Ok(()) => return Ok(see_other("/settings/security?notice=password_changed")),
            Err(ChangePasswordError::InvalidCredentials) => (
                vec![FieldError::new(
                    "current_password",
                    "invalid_credentials",
                    "the current password is wrong",
                )],
                StatusCode::UNAUTHORIZED,
            ),
            Err(ChangePasswordError::WeakPassword(reason)) => (
                vec![FieldError::new("new_password", reason.code(), reason.to_string())],
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            Err(ChangePasswordError::Locked) => (
                vec![FieldError::new(
                    "current_password",
                    "account_locked",
                    "too many wrong passwords: try again later",
                )],
                StatusCode::FORBIDDEN,
            ),
            Err(ChangePasswordError::Internal(cause)) => return Err(page_error(cause)),
        }
    };
    let problems = Problems {
        password: &errors,
        ..Problems::default()
    };
    render(&state, who, None, problems, status).await
}

/// A 2FA setup waiting for its code, sealed into the confirmation form so
/// that a mistyped code can be tried again on the same QR code.
#[derive(Serialize, Deserialize)]
struct PendingSetup {
    user: String,
    secret: String,
    uri: String,
}

/// The QR code of `text` as an SVG `data:` URL (drawn here; CSP allows `img-src data:`).
fn qr_data_url(text: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Some(format!("data:image/svg+xml;base64,{}", STANDARD.encode(svg)))
}

/// A base32 secret in groups of four, easier to type.
fn grouped(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn setup_page(
    who: &SignedIn,
    setup: &PendingSetup,
    ticket: &str,
    error: Option<&str>,
    errors: &[FieldError],
) -> Markup {
    let qr = qr_data_url(&setup.uri);
    html! {
        div.page-head {
            h1 { "Set up two-factor authentication" }
            p { "Two steps, and signing in will ask for a code from your phone." }
        }
        section.card aria-labelledby="scan-title" {
            h2 #scan-title { "1. Add Convosphere AI to your authenticator app" }
            div.qr-wrap {
                @if let Some(qr) = qr {
                    img.qr src=(qr) width="200" height="200"
                        alt="QR code to add Convosphere AI to an authenticator app";
                }
                div.qr-side {
                    p { "Scan the QR code with the app. Can't scan it? Enter this setup key instead:" }
                    p { code.totp-secret #totp-secret { (grouped(&setup.secret)) } }
                    (copy_button("totp-secret", "Copy key"))
                    p.copy-status #totp-secret-status aria-live="polite" {}
                    p.hint { "Time-based, 6 digits, every 30 seconds (SHA-1) — the defaults of every app." }
                }
            }
        }
        section.card aria-labelledby="confirm-title" {
            h2 #confirm-title { "2. Enter the code the app shows" }
            @if let Some(code) = error { (form_error(code)) }
            form method="post" action="/settings/security/two-factor/confirm" novalidate {
                (csrf_field(&who.csrf))
                input type="hidden" name="ticket" value=(ticket);
                (field(Input { name: "code", label: "6-digit code", inputmode: Some("numeric"), maxlength: Some(7),
                    autocomplete: Some("one-time-code"), required: true, autofocus: true, ..Input::default() }, errors))
                div.actions {
                    button.btn.btn-primary type="submit" { "Turn on two-factor authentication" }
                    a.btn.btn-secondary href="/settings/security" { "Cancel" }
                }
            }
        }
    }
}

/// `POST /settings/security/two-factor`: a new secret, not on until confirmed.
pub(crate) async fn begin_totp(state: web::Data<AppState>, post: SignedInForm) -> Page {
    let who = &post.who;
    let setup = match state.auth.begin_totp(&who.principal).await {
        Ok(setup) => setup,
        Err(BeginTotpError::RecentSignInRequired(_)) => return Err(reauthenticate_first("/settings/security")),
        Err(error) => return Err(page_error(error)),
    };
    let pending = PendingSetup {
        user: who.user().id.to_string(),
        secret: setup.secret.to_base32(),
        uri: setup.otpauth_uri,
    };
    let ticket = state
        .web
        .seal_ticket(SETUP_TICKET, SETUP_TICKET_SECS, &pending)
        .map_err(page_error)?;
    Ok(html(
        StatusCode::OK,
        app_page(
            "Two-factor setup",
            who,
            Nav::Security,
            None,
            setup_page(who, &pending, &ticket, None, &[]),
        ),
    ))
}

/// `POST /settings/security/two-factor/confirm`: on, and the recovery codes, shown once.
pub(crate) async fn confirm_totp(state: web::Data<AppState>, post: SignedInForm) -> Page {
    let who = &post.who;
    let ticket = post.form.text("ticket");
    let pending = state
        .web
        .open_ticket::<PendingSetup>(SETUP_TICKET, Some(&ticket))
        .filter(|p| p.user == who.user().id.to_string());
    let code = post.form.text("code");
    let retry = |error: Option<&str>, errors: &[FieldError], status: StatusCode| -> Page {
        match &pending {
            Some(pending) => Ok(html(
                status,
                app_page(
                    "Two-factor setup",
                    who,
                    Nav::Security,
                    None,
                    setup_page(who, pending, &ticket, error, errors),
                ),
            )),
            None => Err(PageError::Page {
                status: StatusCode::CONFLICT,
                code: "mfa_not_pending",
            }),
        }
    };
    if code.trim().is_empty() {
        let errors = [FieldError::new("code", "required", "enter the code your app shows")];
        return retry(None, &errors, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let codes = match state
        .auth
        .confirm_totp(&who.principal, &code, &who.client.context())
        .await
    {
        Ok(codes) => codes,
        Err(ConfirmTotpError::InvalidCode) => return retry(Some("invalid_mfa_code"), &[], StatusCode::UNAUTHORIZED),
        Err(error) => return Err(page_error(error)),
    };
    let content = html! {
        div.page-head {
            h1 { "Two-factor authentication is on" }
            p { "From now on, signing in asks for a code from your app." }
        }
        section.secret-panel aria-labelledby="codes-title" {
            h2 #codes-title { "Save your recovery codes" }
            p.warning-line { "Save these codes now — they won't be shown again." }
            p { "If you lose your phone, each code signs you in once instead of an app code. Keep them somewhere safe, such as a password manager." }
            ul.codes #recovery-codes {
                @for code in &codes { li { (code.expose()) } }
            }
            (copy_button("recovery-codes", "Copy codes"))
            p.copy-status #recovery-codes-status aria-live="polite" {}
        }
        div.actions { a.btn.btn-primary href="/settings/security?notice=mfa_enabled" { "I've saved them" } }
    };
    Ok(html(
        StatusCode::OK,
        app_page("Recovery codes", who, Nav::Security, None, content),
    ))
}

/// `POST /settings/security/two-factor/disable`: off, with the password.
pub(crate) async fn disable_totp(state: web::Data<AppState>, post: SignedInForm) -> Page {
    let who = &post.who;
    let password = post.form.text("password");
    let (errors, code, status) = if password.is_empty() {
        (
            vec![FieldError::new("disable_password", "required", "enter your password")],
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    } else {
        match state
            .auth
            .disable_totp(&who.principal, &password, &who.client.context())
            .await
        {
            Ok(()) => return Ok(see_other("/settings/security?notice=mfa_disabled")),
            Err(DisableTotpError::InvalidCredentials) => (
                vec![FieldError::new(
                    "disable_password",
                    "invalid_credentials",
                    "the password is wrong",
                )],
                Some("invalid_credentials"),
                StatusCode::UNAUTHORIZED,
            ),
            Err(DisableTotpError::Locked) => (
                vec![FieldError::new(
                    "disable_password",
                    "account_locked",
                    "too many wrong passwords: try again later",
                )],
                Some("account_locked"),
                StatusCode::FORBIDDEN,
            ),
            Err(DisableTotpError::Internal(cause)) => return Err(page_error(cause)),
        }
    };
    let problems = Problems {
        disable: &errors,
        disable_code: code,
        ..Problems::default()
    };
    render(&state, who, None, problems, status).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qr_code_is_an_svg_image() {
        let url = qr_data_url("otpauth://totp/Convosphere%20AI:ada%40example.com?secret=GEZDGNBV").unwrap();
        let svg = STANDARD
            .decode(url.strip_prefix("data:image/svg+xml;base64,").unwrap())
            .unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("<svg") && !svg.contains("style="), "{svg}");
    }

    #[test]
    fn secrets_are_grouped_by_four() {
        assert_eq!(grouped("ABCDEFGHIJ"), "ABCD EFGH IJ");
    }
}
