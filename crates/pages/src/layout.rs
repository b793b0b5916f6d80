//! The frame of every page and the pieces forms are made of (maud: the
//! templates are Rust, checked and compiled with the binary; every
//! interpolated value is HTML-escaped).

use super::assets;
use super::error::{plain_words, sentence, title};
use super::session::SignedIn;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use chrono::{DateTime, SecondsFormat, Utc};
use convosphere_domain::FieldError;
use maud::{html, Markup, DOCTYPE};

/// An HTML answer.
pub(crate) fn html(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

fn head(page_title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="robots" content="noindex";
            title { (page_title) " · Convosphere" }
            link rel="icon" type="image/svg+xml" href=(assets::href("icon.svg"));
            link rel="stylesheet" href=(assets::href("app.css"));
            script src=(assets::href("app.js")) defer {}
        }
    }
}

fn brand(href: &str) -> Markup {
    html! {
        a.brand href=(href) {
            img src=(assets::href("icon.svg")) alt="" width="28" height="28";
            span { "Convosphere" }
        }
    }
}

fn footer() -> Markup {
    html! {
        footer.foot {
            p { "Convosphere AI · Identity and access" }
        }
    }
}

/// The section of the signed-in pages a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Dashboard,
    ApiKeys,
    Sessions,
    Security,
    Account,
}

const NAV: [(Nav, &str, &str); 5] = [
    (Nav::Dashboard, "/dashboard", "Dashboard"),
    (Nav::ApiKeys, "/settings/api-keys", "API keys"),
    (Nav::Sessions, "/settings/sessions", "Sessions"),
    (Nav::Security, "/settings/security", "Security"),
    (Nav::Account, "/settings/account", "Account"),
];

/// A page for a signed-in user: the top bar with the sections and a
/// logout button, a notice if any, then `content`.
pub(crate) fn app_page(page_title: &str, who: &SignedIn, nav: Nav, notice: Option<&str>, content: Markup) -> Markup {
    let user = who.user();
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(page_title))
            body.app {
                a.skip href="#main" { "Skip to content" }
                header.topbar {
                    div.topbar-inner {
                        (brand("/dashboard"))
                        nav.mainnav aria-label="Main" {
                            ul {
                                @for (item, href, label) in NAV {
                                    li {
                                        a href=(href) aria-current=[(item == nav).then_some("page")] { (label) }
                                    }
                                }
                            }
                        }
                        div.account {
                            span.who title=(user.email.as_str()) { (user.email.as_str()) }
                            form.inline method="post" action="/logout" {
                                (csrf_field(&who.csrf))
                                button.btn.btn-quiet.btn-small type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main #main .container {
                    @if let Some(notice) = notice.and_then(notice_text) {
                        (alert(notice.0, html! { (notice.1) }))
                    }
                    (content)
                }
                (footer())
            }
        }
    }
}

/// A page without a session (signup, login, links from e-mails): one card.
pub(crate) fn auth_page(page_title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(page_title))
            body.auth {
                a.skip href="#main" { "Skip to content" }
                main #main .auth-main {
                    div.auth-brand { (brand("/login")) }
                    div.card.auth-card { (content) }
                }
                (footer())
            }
        }
    }
}

/// An error in plain words, with the API's code.
pub(crate) fn error_page(status: StatusCode, code: &str) -> Markup {
    auth_page(
        title(code),
        html! {
            h1 { (title(code)) }
            p.lead { (plain_words(code)) }
            p.error-code { "Error code " code { (code) } " · HTTP " (status.as_u16()) }
            div.actions {
                a.btn.btn-primary href="/dashboard" { "Go to the dashboard" }
                a.btn.btn-secondary href="/login" { "Sign in" }
            }
        },
    )
}

/// The messages that a redirect may ask a page to show (`?notice=`):
/// a fixed list, so nothing a link says is echoed.
pub(crate) fn notice_text(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "logged_out" => ("success", "You have been logged out."),
        "session_expired" => ("info", plain_words("session_expired")),
        "account_locked" => ("error", plain_words("account_locked")),
        "key_revoked" => ("success", "The key was revoked. It stopped working at once."),
        "session_ended" => ("success", "The session was ended. That device is signed out."),
        "password_changed" => (
            "success",
            "Your password was changed. Every other session was signed out.",
        ),
        "mfa_enabled" => ("success", "Two-factor authentication is on."),
        "mfa_disabled" => ("success", "Two-factor authentication is off."),
        "password_reset" => ("success", "Your password was changed. Sign in with the new one."),
        "email_verified" => ("success", "Your e-mail address is confirmed. You can sign in now."),
        "profile_saved" => ("success", "Your profile was saved."),
        "provider_unlinked" => ("success", "The provider was unlinked from your account."),
        "provider_linked" => ("success", "The provider was linked: you can sign in with it now."),
        "provider_identity_taken" => (
            "error",
            "That provider account is linked to another Convosphere account. Unlink it there, or delete that account, first.",
        ),
        "provider_already_linked" => (
            "error",
            "An account of that provider is linked already. Unlink it first to link another.",
        ),
        "provider_link_failed" => (
            "error",
            "The provider was not linked: it refused, did not answer, or gave no verified e-mail address. Try again.",
        ),
        "provider_last_way_in" => (
            "error",
            "That provider is your only way to sign in. Set a password first (use “Forgot password” on the sign-in page).",
        ),
        "passkey_added" => ("success", "The passkey was added. You can sign in with it now."),
        "passkey_removed" => ("success", "The passkey was removed."),
        "passkey_failed" => ("error", "The passkey was not added: the browser's answer did not check out. Try again."),
        "passkey_name" => ("error", "Give the passkey a name of at most 100 characters."),
        "passkey_last_way_in" => (
            "error",
            "That passkey is your only way to sign in. Set a password or add another passkey first.",
        ),
        "email_change_sent" => (
            "success",
            "Check the new address: the change happens when the link we sent there is used.",
        ),
        "email_changed" => ("success", "Your e-mail address was changed. Every other session was signed out."),
        "account_deleted" => ("success", "Your account was deleted. We sent a last e-mail to its address."),
        "passkey_script" => ("error", "Adding a passkey needs JavaScript and a browser that supports passkeys."),
        _ => return None,
    })
}

/// A message box: `kind` is `error`, `success`, `warning` or `info`.
pub(crate) fn alert(kind: &str, content: Markup) -> Markup {
    html! {
        div class=(format!("alert alert-{kind}")) role=(if kind == "error" { "alert" } else { "status" }) {
            (content)
        }
    }
}

/// The hidden CSRF field of a form.
pub(crate) fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// One labelled input of a form.
#[derive(Default, Clone, Copy)]
pub(crate) struct Input<'a> {
    pub name: &'a str,
    pub label: &'a str,
    /// `text` when empty.
    pub kind: &'a str,
    pub value: Option<&'a str>,
    pub required: bool,
    pub autocomplete: Option<&'a str>,
    pub hint: Option<&'a str>,
    pub minlength: Option<u32>,
    pub maxlength: Option<u32>,
    pub inputmode: Option<&'a str>,
    pub autofocus: bool,
    /// The field the domain's errors name, when it is not `name`.
    pub errors_for: Option<&'a str>,
}

/// An input with its label, hint and the domain's messages about it.
pub(crate) fn field(input: Input<'_>, errors: &[FieldError]) -> Markup {
    let id = format!("f-{}", input.name);
    let hint_id = format!("{id}-hint");
    let error_id = format!("{id}-error");
    let errors_for = input.errors_for.unwrap_or(input.name);
    let mine: Vec<&FieldError> = errors.iter().filter(|e| e.field == errors_for).collect();
    let invalid = !mine.is_empty();
    let mut described = Vec::new();
    if input.hint.is_some() {
        described.push(hint_id.clone());
    }
    if invalid {
        described.push(error_id.clone());
    }
    let described = (!described.is_empty()).then(|| described.join(" "));
    let kind = if input.kind.is_empty() { "text" } else { input.kind };
    html! {
        div.field.invalid[invalid] {
            label for=(id) {
                (input.label)
                @if !input.required { span.optional { " (optional)" } }
            }
            input id=(id) name=(input.name) type=(kind) value=[input.value]
                required[input.required] autocomplete=[input.autocomplete]
                minlength=[input.minlength] maxlength=[input.maxlength] inputmode=[input.inputmode]
                autofocus[input.autofocus] aria-invalid=[invalid.then_some("true")]
                aria-describedby=[described];
            @if let Some(hint) = input.hint { p.hint id=(hint_id) { (hint) } }
            @if invalid {
                p.field-error id=(error_id) {
                    @for (i, error) in mine.iter().enumerate() {
                        @if i > 0 { " " }
                        (sentence(&error.message))
                    }
                }
            }
        }
    }
}

/// "Please check the form" above a form with field problems.
pub(crate) fn form_problems(errors: &[FieldError]) -> Markup {
    html! {
        @if !errors.is_empty() {
            (alert("error", html! { strong { (title("validation_failed")) } " " (plain_words("validation_failed")) }))
        }
    }
}

/// An error of a whole form (wrong password…), in plain words with its code.
pub(crate) fn form_error(code: &str) -> Markup {
    alert(
        "error",
        html! {
            strong { (title(code)) } " " (plain_words(code))
            span.error-code { " (" code { (code) } ")" }
        },
    )
}

/// The name of a table's last column, the buttons of each row: read out
/// by screen readers, not shown.
pub(crate) const ACTIONS: &str = "Actions";

/// A list as a table: a row of `columns`, then `rows` (each `tr`, its cells
/// labelled for the narrow layout that stacks them).
pub(crate) fn table(columns: &[&str], rows: Markup) -> Markup {
    html! {
        div.table-wrap {
            table.list {
                thead { tr {
                    @for column in columns {
                        th scope="col" {
                            @if *column == ACTIONS { span.visually-hidden { (column) } } @else { (column) }
                        }
                    }
                } }
                tbody { (rows) }
            }
        }
    }
}

/// A form of one button that removes something: `aria_label` names what
/// it removes for screen readers.
pub(crate) fn remove_button(action: &str, csrf: &str, label: &str, aria_label: &str) -> Markup {
    html! {
        form method="post" action=(action) {
            (csrf_field(csrf))
            button.btn.btn-danger-quiet.btn-small type="submit" aria-label=(aria_label) { (label) }
        }
    }
}

/// A time for people, machine-readable too.
pub(crate) fn when(at: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339_opts(SecondsFormat::Secs, true)) {
            span.date { (at.format("%Y-%m-%d").to_string()) } " " span.clock { (at.format("%H:%M UTC").to_string()) }
        }
    }
}

/// A time, or `none` when there is none.
pub(crate) fn when_or(at: Option<DateTime<Utc>>, none: &str) -> Markup {
    match at {
        Some(at) => when(at),
        None => html! { span.muted { (none) } },
    }
}

/// A button that copies the text of the element `target` (app.js).
pub(crate) fn copy_button(target: &str, label: &str) -> Markup {
    html! {
        button.btn.btn-secondary.copy type="button" data-copy=(target) { (label) }
    }
}

/// A duration for people: `24 hours`, `1 hour`, `15 minutes`, `7 days`.
pub(crate) fn human_duration(duration: std::time::Duration) -> String {
    let secs = duration.as_secs();
    let (n, unit) = if secs >= 86_400 && secs % 86_400 == 0 && secs > 86_400 {
        (secs / 86_400, "day")
    } else if secs >= 3_600 && secs % 3_600 == 0 {
        (secs / 3_600, "hour")
    } else if secs >= 60 {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::human_duration;
    use std::time::Duration;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_secs(86_400)), "24 hours");
        assert_eq!(human_duration(Duration::from_secs(3_600)), "1 hour");
        assert_eq!(human_duration(Duration::from_secs(900)), "15 minutes");
        assert_eq!(human_duration(Duration::from_secs(7 * 86_400)), "7 days");
    }
}
