//! `/settings/api-keys`: create (the key shown once), list, revoke and
//! rotate, each behind a confirmation page.

use super::dashboard::NoticeQuery;
use super::error::{page_error, PageError};
use super::layout::{
    app_page, copy_button, csrf_field, field, form_problems, html, table, when, when_or, Input, Nav, ACTIONS,
};
use super::reauth::reauthenticate_first;
use super::session::{SignedIn, SignedInForm};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use convosphere_domain::api_key::{ApiKey, ApiKeyId, ApiKeyStatus};
use convosphere_domain::auth::keys::{CreateApiKeyError, CreatedApiKey, RotateApiKeyError, MAX_KEY_NAME_CHARS};
use convosphere_domain::usage::Usage;
use convosphere_domain::{FieldError, Scope};
use convosphere_service::common::cookie::see_other;
use convosphere_service::state::AppState;
use maud::{html, Markup};
use secrecy::ExposeSecret;

type Page = Result<HttpResponse, PageError>;

/// The scopes by area, with what each area covers.
const AREAS: [(&str, &str, Scope, Scope); 5] = [
    (
        "Agents",
        "AI agents and their settings.",
        Scope::AgentsRead,
        Scope::AgentsWrite,
    ),
    ("Chat", "Conversations and messages.", Scope::ChatRead, Scope::ChatWrite),
    (
        "Knowledge",
        "Knowledge base documents.",
        Scope::KnowledgeRead,
        Scope::KnowledgeWrite,
    ),
    (
        "Integrations",
        "Connected apps and services.",
        Scope::IntegrationsRead,
        Scope::IntegrationsWrite,
    ),
    (
        "Webhooks",
        "Event deliveries to your endpoints.",
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
    ),
];

/// The form's values, to show them again with its problems.
#[derive(Default)]
struct CreateForm {
    name: String,
    scopes: Vec<String>,
    expires_on: String,
}

/// A key just made, to show once.
struct NewKey<'a> {
    created: &'a CreatedApiKey,
    rotated: bool,
}

/// The last moment of a day typed as `YYYY-MM-DD`, in UTC.
fn end_of_day(raw: &str, errors: &mut Vec<FieldError>) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    match NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.and_hms_opt(23, 59, 59))
    {
        Some(at) => Some(at.and_utc()),
        None => {
            errors.push(FieldError::new(
                "expires_at",
                "invalid_time",
                "enter a date such as 2027-06-01",
            ));
            None
        }
    }
}

pub(crate) fn key_id(raw: &str) -> Result<ApiKeyId, PageError> {
    raw.parse().map_err(|_| PageError::not_found())
}

fn status_badge(status: ApiKeyStatus) -> Markup {
    let (class, label) = match status {
        ApiKeyStatus::Active => ("badge badge-active", "Active"),
        ApiKeyStatus::Revoked => ("badge badge-revoked", "Revoked"),
        ApiKeyStatus::Expired => ("badge badge-expired", "Expired"),
    };
    html! { span class=(class) { (label) } }
}

fn scope_chips(key: &ApiKey) -> Markup {
    html! {
        span.scope-list {
            @for scope in key.scopes.iter() { span.scope-chip { (scope.as_str()) } }
        }
    }
}

fn new_key_panel(new: &NewKey<'_>) -> Markup {
    let record = &new.created.record;
    html! {
        section.secret-panel aria-labelledby="new-key-title" {
            h2 #new-key-title {
                @if new.rotated { "Key rotated: " } @else { "Your new API key: " }
                (record.name)
            }
            p.warning-line { "Copy the key now — it won't be shown again." }
            div.secret-row {
                label.visually-hidden for="new-key" { "The new API key" }
                input #new-key type="text" readonly value=(new.created.key.expose_secret())
                    spellcheck="false" autocomplete="off" data-select-on-focus;
                (copy_button("new-key", "Copy"))
            }
            p.copy-status #new-key-status aria-live="polite" {}
            p.muted {
                "Send it as " code { "Authorization: Bearer cs_…" } ". It holds "
                @for (i, scope) in record.scopes.iter().enumerate() {
                    @if i > 0 { ", " }
                    code { (scope.as_str()) }
                }
                @if let Some(at) = record.expires_at { " and works until " (when(at)) } @else { " and does not expire" }
                "."
                @if new.rotated { " The key it replaces stopped working." }
            }
        }
    }
}

fn create_form(who: &SignedIn, form: &CreateForm, errors: &[FieldError]) -> Markup {
    let scope_errors: Vec<&FieldError> = errors.iter().filter(|e| e.field == "scopes").collect();
    html! {
        section.card aria-labelledby="create-title" {
            h2 #create-title { "Create a key" }
            p.card-note { "A key acts for you with the scopes you choose. Give each app or environment its own key." }
            (form_problems(errors))
            form method="post" action="/settings/api-keys" novalidate {
                (csrf_field(&who.csrf))
                (field(Input { name: "name", label: "Name", value: Some(&form.name), required: true,
                    maxlength: Some(MAX_KEY_NAME_CHARS as u32), autocomplete: Some("off"),
                    hint: Some("For you to recognise it, e.g. Production API Key."), ..Input::default() }, errors))
                fieldset aria-describedby=(if scope_errors.is_empty() { "scopes-hint" } else { "scopes-hint scopes-error" }) {
                    legend { "Scopes" }
                    p.hint #scopes-hint { "Choose what the key may do. Nothing implies anything else: write does not include read." }
                    div.scope-groups {
                        @for (area, about, read, write) in AREAS {
                            @let area_id = format!("area-{}", area.to_lowercase());
                            div.scope-group role="group" aria-labelledby=(area_id) {
                                div.scope-area {
                                    strong id=(area_id) { (area) }
                                    span { (about) }
                                }
                                @for (scope, label) in [(read, "Read"), (write, "Write")] {
                                    label.check {
                                        input type="checkbox" name="scopes" value=(scope.as_str())
                                            checked[form.scopes.iter().any(|s| s == scope.as_str())];
                                        span { (label) } " " code { (scope.as_str()) }
                                    }
                                }
                            }
                        }
                    }
                    @if !scope_errors.is_empty() {
                        p.field-group-error #scopes-error {
                            @for error in &scope_errors { (super::error::sentence(&error.message)) " " }
                        }
                    }
                }
                (field(Input { name: "expires_on", label: "Expires on", kind: "date", value: Some(&form.expires_on),
                    errors_for: Some("expires_at"),
                    hint: Some("The key stops working at the end of that day (UTC). Leave it empty for a key that does not expire."),
                    ..Input::default() }, errors))
                button.btn.btn-primary type="submit" { "Create key" }
            }
        }
    }
}

fn key_table(keys: &[(ApiKey, Usage)], now: DateTime<Utc>) -> Markup {
    html! {
        section.card aria-labelledby="list-title" {
            h2 #list-title { "Your keys" }
            @if keys.is_empty() {
                p.empty { "No keys yet. Create one above." }
            } @else {
                (table(&["Name", "Prefix", "Scopes", "Status", "Created", "Expires", "Last used", "30 days", ACTIONS], html! {
                    @for (key, usage) in keys {
                        @let status = key.status(now);
                        tr data-key-prefix=(key.prefix()) {
                            td data-label="Name" {
                                a href=(format!("/settings/api-keys/{}", key.id)) aria-label=(format!("Usage of {}", key.name)) {
                                    strong { (key.name) }
                                }
                            }
                            td data-label="Prefix" { code { (key.prefix()) "…" } }
                            td data-label="Scopes" { (scope_chips(key)) }
                            td data-label="Status" { (status_badge(status)) }
                            td data-label="Created" { (when(key.created_at)) }
                            td data-label="Expires" { (when_or(key.expires_at, "Never")) }
                            td data-label="Last used" { (when_or(key.last_used_at, "Never")) }
                            td data-label="30 days" { (super::usage::sparkline(usage)) }
                            td.cell-actions {
                                @if status != ApiKeyStatus::Revoked {
                                    a.btn.btn-secondary.btn-small href=(format!("/settings/api-keys/{}/rotate", key.id))
                                        aria-label=(format!("Rotate {}", key.name)) { "Rotate" }
                                    a.btn.btn-danger-quiet.btn-small href=(format!("/settings/api-keys/{}/revoke", key.id))
                                        aria-label=(format!("Revoke {}", key.name)) { "Revoke" }
                                }
                            }
                        }
                    }
                }))
            }
        }
    }
}

async fn render(
    state: &AppState,
    who: &SignedIn,
    new_key: Option<NewKey<'_>>,
    form: &CreateForm,
    errors: &[FieldError],
    notice: Option<&str>,
) -> Page {
    let keys = state
        .auth
        .keys_with_usage(who.user(), super::usage::last_30_days())
        .await
        .map_err(page_error)?;
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let content = html! {
        div.page-head {
            h1 { "API keys" }
            p { "Keys let your code call the Convosphere API as you. Revoke a key the moment you no longer trust it." }
        }
        @if let Some(new) = &new_key { (new_key_panel(new)) }
        (create_form(who, form, errors))
        (key_table(&keys, Utc::now()))
    };
    Ok(html(status, app_page("API keys", who, Nav::ApiKeys, notice, content)))
}

/// `GET /settings/api-keys`
pub(crate) async fn list(state: web::Data<AppState>, who: SignedIn, query: web::Query<NoticeQuery>) -> Page {
    render(&state, &who, None, &CreateForm::default(), &[], query.notice.as_deref()).await
}

/// `POST /settings/api-keys`: the same use case as `POST /v1/api-keys`;
/// the answer shows the key, this once (`no-store`).
pub(crate) async fn create(state: web::Data<AppState>, post: SignedInForm) -> Page {
    let who = &post.who;
    let form = CreateForm {
        name: post.form.text("name"),
        scopes: post.form.all("scopes"),
        expires_on: post.form.text("expires_on"),
    };
    let mut errors = Vec::new();
    let expires_at = end_of_day(&form.expires_on, &mut errors);
    if errors.is_empty() {
        match state
            .auth
            .create_api_key(
                &who.principal,
                &form.name,
                &form.scopes,
                expires_at,
                &who.client.context(),
            )
            .await
        {
            Ok(created) => return shown_once(&state, who, &created, false).await,
            Err(CreateApiKeyError::Invalid(invalid)) => errors = invalid,
            Err(CreateApiKeyError::RecentSignInRequired(_)) => return Err(reauthenticate_first("/settings/api-keys")),
            Err(CreateApiKeyError::Internal(cause)) => return Err(page_error(cause)),
        }
    }
    render(&state, who, None, &form, &errors, None).await
}

/// The keys page with a new key on it, shown this once.
async fn shown_once(state: &AppState, who: &SignedIn, created: &CreatedApiKey, rotated: bool) -> Page {
    let new = NewKey { created, rotated };
    render(state, who, Some(new), &CreateForm::default(), &[], None).await
}

fn confirm_page(who: &SignedIn, page_title: &str, content: Markup) -> HttpResponse {
    html(
        StatusCode::OK,
        app_page(
            page_title,
            who,
            Nav::ApiKeys,
            None,
            html! { section.card.confirm-box { (content) } },
        ),
    )
}

/// The user's key `id` while it is active; `None` once it is revoked.
async fn active_key(state: &AppState, who: &SignedIn, id: &str) -> Result<Option<ApiKey>, PageError> {
    let key = state
        .auth
        .api_key(who.user().id, key_id(id)?)
        .await
        .map_err(page_error)?;
    Ok(key.revoked_at.is_none().then_some(key))
}

/// `GET /settings/api-keys/{id}/revoke`: are you sure?
pub(crate) async fn confirm_revoke(state: web::Data<AppState>, who: SignedIn, id: web::Path<String>) -> Page {
    let Some(key) = active_key(&state, &who, &id).await? else {
        return Ok(see_other("/settings/api-keys"));
    };
    Ok(confirm_page(
        &who,
        "Revoke key",
        html! {
            h1 { "Revoke “" (key.name) "”?" }
            p {
                "Anything that uses " code { (key.prefix()) "…" } " stops working at once, on every server. "
                "This cannot be undone."
            }
            form method="post" action=(format!("/settings/api-keys/{}/revoke", key.id)) {
                (csrf_field(&who.csrf))
                div.actions {
                    button.btn.btn-danger type="submit" { "Revoke key" }
                    a.btn.btn-secondary href="/settings/api-keys" { "Cancel" }
                }
            }
        },
    ))
}

/// `POST /settings/api-keys/{id}/revoke`
pub(crate) async fn revoke(state: web::Data<AppState>, id: web::Path<String>, post: SignedInForm) -> Page {
    let who = &post.who;
    state
        .auth
        .revoke_api_key(who.user().id, key_id(&id)?, &who.client.context())
        .await
        .map_err(page_error)?;
    Ok(see_other("/settings/api-keys?notice=key_revoked"))
}

fn rotate_confirm(who: &SignedIn, key: &ApiKey, expires_on: &str, errors: &[FieldError]) -> Markup {
    html! {
        h1 { "Rotate “" (key.name) "”?" }
        p {
            "A new key with the same name and scopes replaces " code { (key.prefix()) "…" }
            ", which stops working at once. The new key is shown once."
        }
        (form_problems(errors))
        form method="post" action=(format!("/settings/api-keys/{}/rotate", key.id)) novalidate {
            (csrf_field(&who.csrf))
            (field(Input { name: "expires_on", label: "New key expires on", kind: "date", value: Some(expires_on),
                errors_for: Some("expires_at"),
                hint: Some("The end of that day (UTC). Leave it empty for a key that does not expire."),
                ..Input::default() }, errors))
            div.actions {
                button.btn.btn-primary type="submit" { "Rotate key" }
                a.btn.btn-secondary href="/settings/api-keys" { "Cancel" }
            }
        }
    }
}

/// `GET /settings/api-keys/{id}/rotate`: are you sure?
pub(crate) async fn confirm_rotate(state: web::Data<AppState>, who: SignedIn, id: web::Path<String>) -> Page {
    let Some(key) = active_key(&state, &who, &id).await? else {
        return Ok(see_other("/settings/api-keys"));
    };
    Ok(confirm_page(&who, "Rotate key", rotate_confirm(&who, &key, "", &[])))
}

/// `POST /settings/api-keys/{id}/rotate`: the new key, shown once.
pub(crate) async fn rotate(state: web::Data<AppState>, id: web::Path<String>, post: SignedInForm) -> Page {
    let who = &post.who;
    let id = key_id(&id)?;
    let expires_on = post.form.text("expires_on");
    let mut errors = Vec::new();
    let expires_at = end_of_day(&expires_on, &mut errors);
    if errors.is_empty() {
        match state
            .auth
            .rotate_api_key(&who.principal, id, expires_at, &who.client.context())
            .await
        {
            Ok(created) => return shown_once(&state, who, &created, true).await,
            Err(RotateApiKeyError::Invalid(invalid)) => errors = invalid,
            Err(RotateApiKeyError::NotFound) => return Err(PageError::not_found()),
            Err(RotateApiKeyError::RecentSignInRequired(_)) => {
                return Err(reauthenticate_first(&format!("/settings/api-keys/{id}/rotate")))
            }
            Err(RotateApiKeyError::Internal(cause)) => return Err(page_error(cause)),
        }
    }
    let key = state.auth.api_key(who.user().id, id).await.map_err(page_error)?;
    Ok(html(
        StatusCode::UNPROCESSABLE_ENTITY,
        app_page(
            "Rotate key",
            who,
            Nav::ApiKeys,
            None,
            html! { section.card.confirm-box { (rotate_confirm(who, &key, &expires_on, &errors)) } },
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_date_is_the_end_of_that_day_in_utc() {
        let mut errors = Vec::new();
        assert_eq!(
            end_of_day("2027-06-01", &mut errors).map(|at| at.to_rfc3339()),
            Some("2027-06-01T23:59:59+00:00".to_owned())
        );
        assert_eq!(end_of_day("  ", &mut errors), None);
        assert!(errors.is_empty());
        assert_eq!(end_of_day("June 1st", &mut errors), None);
        assert_eq!(errors[0].field, "expires_at");
    }
}
