//! The dashboard: profile, plan and its rate limit, a summary of keys,
//! sessions and 2FA.

use super::error::{page_error, PageError};
use super::layout::{app_page, csrf_field, field, form_problems, html, when, Input, Nav};
use super::session::{SignedIn, SignedInForm};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use convosphere_domain::api_key::ApiKeyStatus;
use convosphere_domain::profile::ProfileUpdate;
use convosphere_domain::usage::{Granularity, UsageRange};
use convosphere_domain::{FieldError, User};
use convosphere_service::common::cookie::see_other;
use convosphere_service::state::AppState;
use maud::{html, Markup};
use serde::Deserialize;

type Page = Result<HttpResponse, PageError>;

/// The profile form as posted, and its problems.
type ProfileEdit<'a> = (&'a [(&'a str, String)], &'a [FieldError]);

/// A query that may name a notice to show.
#[derive(Deserialize)]
pub(crate) struct NoticeQuery {
    pub notice: Option<String>,
}

/// `GET /`
pub(crate) async fn root() -> HttpResponse {
    see_other("/dashboard")
}

fn plan_name(user: &User) -> String {
    let plan = user.plan.as_str();
    let mut chars = plan.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn profile_form(who: &SignedIn, values: Option<&[(&str, String)]>, errors: &[FieldError]) -> Markup {
    let user = who.user();
    let value = |name: &str, stored: Option<&str>| -> String {
        values
            .and_then(|v| v.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()))
            .unwrap_or_else(|| stored.unwrap_or_default().to_owned())
    };
    let (name, company, country, phone) = (
        value("name", Some(&user.name)),
        value("company", user.company.as_deref()),
        value("country", user.country.as_deref()),
        value("phone", user.phone.as_deref()),
    );
    html! {
        section.card aria-labelledby="profile-edit" {
            h2 #profile-edit { "Edit profile" }
            (form_problems(errors))
            form method="post" action="/dashboard/profile" novalidate {
                (csrf_field(&who.csrf))
                div.row {
                    (field(Input { name: "name", label: "Name", value: Some(&name), required: true,
                        autocomplete: Some("name"), maxlength: Some(100), ..Input::default() }, errors))
                    (field(Input { name: "company", label: "Company", value: Some(&company),
                        autocomplete: Some("organization"), ..Input::default() }, errors))
                }
                div.row {
                    (field(Input { name: "country", label: "Country", value: Some(&country),
                        autocomplete: Some("country-name"), ..Input::default() }, errors))
                    (field(Input { name: "phone", label: "Phone", kind: "tel", value: Some(&phone),
                        autocomplete: Some("tel"), ..Input::default() }, errors))
                }
                button.btn.btn-secondary type="submit" { "Save profile" }
            }
        }
    }
}

async fn render(state: &AppState, who: &SignedIn, notice: Option<&str>, edit: Option<ProfileEdit<'_>>) -> Page {
    let user = who.user();
    let now = Utc::now();
    let sessions = state.auth.sessions(user.id).await.map_err(page_error)?;
    let keys = state.auth.api_keys(user.id).await.map_err(page_error)?;
    let active_keys = keys.iter().filter(|k| k.status(now) == ApiKeyStatus::Active).count();
    let limit = state.config.rate_limits.per_minute(user.plan);
    // Today (UTC), by hour: its busiest minute is the busiest of its hours.
    let today = UsageRange {
        granularity: Granularity::Hour,
        ..UsageRange::ending_at(now, chrono::Duration::days(1), Granularity::Day)
    };
    let today = state.auth.account_usage(user, today).await.map_err(page_error)?;
    let busiest = today.totals.peak_per_minute;
    let share = busiest as f64 / f64::from(limit.max(1)) * 100.0;
    let (values, errors) = edit.map_or((None, &[][..]), |(v, e)| (Some(v), e));
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let first_name = user.name.split_whitespace().next().unwrap_or(&user.name);
    let content = html! {
        div.page-head {
            h1 { "Welcome, " (first_name) }
            p { "Your account, your plan and how your credentials are used." }
        }
        div.grid {
            section.card aria-labelledby="plan" {
                h2 #plan { "Plan" }
                p.stat { (plan_name(user)) }
                p { strong { (limit) " requests per minute" } }
                p.muted { "Shared by all your API keys and sessions. Ask support to change plans." }
            }
            section.card aria-labelledby="usage-today" {
                h2 #usage-today { "Usage today" }
                p.stat { (today.totals.requests()) " " small { "requests" } }
                p {
                    label for="busiest-minute" { "Busiest minute: " (busiest) " of " (limit) " (" (format!("{share:.0}")) " %)" }
                }
                meter.usage-meter #busiest-minute min="0" max=(limit) high=(u64::from(limit) * 8 / 10) value=(busiest) {
                    (busiest) " of " (limit)
                }
                p.muted { (today.totals.rate_limited) " refused for the rate limit, " (today.totals.insufficient_scope) " for a missing scope (UTC day)." }
            }
            section.card aria-labelledby="keys" {
                h2 #keys { "API keys" }
                p.stat { (active_keys) " " small { "active" } }
                p.muted { (keys.len()) " in all, revoked and expired included." }
                a.btn.btn-secondary.btn-small href="/settings/api-keys" { "Manage API keys" }
            }
            section.card aria-labelledby="security" {
                h2 #security { "Security" }
                p {
                    "Two-factor authentication: "
                    @if user.mfa_enabled { span.badge.badge-on { "On" } } @else { span.badge.badge-off { "Off" } }
                }
                p { (sessions.len()) " of " (state.config.max_sessions) " sessions active" }
                div.actions.tight {
                    a.btn.btn-secondary.btn-small href="/settings/security" { "Security settings" }
                    a.btn.btn-quiet.btn-small href="/settings/sessions" { "Sessions" }
                }
            }
        }
        section.card aria-labelledby="profile" {
            h2 #profile { "Profile" }
            dl.facts {
                dt { "Name" } dd { (user.name) }
                dt { "E-mail" }
                dd {
                    (user.email.as_str()) " "
                    @if user.email_verified { span.badge.badge-on { "Verified" } } @else { span.badge.badge-pending { "Not verified" } }
                }
                dt { "Company" } dd { (user.company.as_deref().unwrap_or("—")) }
                dt { "Country" } dd { (user.country.as_deref().unwrap_or("—")) }
                dt { "Phone" } dd { (user.phone.as_deref().unwrap_or("—")) }
                dt { "Member since" } dd { (when(user.created_at)) }
                dt { "Account id" } dd { code { (user.id.to_string()) } }
            }
            p {
                a.btn.btn-secondary.btn-small href="/settings/account/export" download { "Download your data" }
                " "
                span.muted { "Every record we keep about your account, as one JSON file." }
            }
        }
        (profile_form(who, values, errors))
    };
    Ok(html(
        status,
        app_page("Dashboard", who, Nav::Dashboard, notice, content),
    ))
}

/// `GET /dashboard`
pub(crate) async fn show(state: web::Data<AppState>, who: SignedIn, query: web::Query<NoticeQuery>) -> Page {
    render(&state, &who, query.notice.as_deref(), None).await
}

/// `GET /settings/account/export`: the same document as `GET /v1/me/export`.
pub(crate) async fn export(state: web::Data<AppState>, who: SignedIn) -> Page {
    convosphere_service::common::export_document(&state, who.user(), Some(who.principal.session_id))
        .await
        .map_err(PageError::from)
}

/// `POST /dashboard/profile`: the same use case as `PATCH /v1/me`.
pub(crate) async fn update_profile(state: web::Data<AppState>, post: SignedInForm) -> Page {
    let form = &post.form;
    let values: Vec<(&str, String)> = ["name", "company", "country", "phone"]
        .into_iter()
        .map(|name| (name, form.text(name)))
        .collect();
    let text = |name: &str| values.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
    // A blank optional field clears it.
    let update = ProfileUpdate::parse(
        text("name"),
        Some(text("company").filter(|v| !v.trim().is_empty())),
        Some(text("country").filter(|v| !v.trim().is_empty())),
        Some(text("phone").filter(|v| !v.trim().is_empty())),
    );
    match update {
        Ok(update) => {
            state
                .auth
                .update_profile(post.who.user().id, update)
                .await
                .map_err(page_error)?;
            Ok(see_other("/dashboard?notice=profile_saved"))
        }
        Err(errors) => render(&state, &post.who, None, Some((&values, &errors))).await,
    }
}
