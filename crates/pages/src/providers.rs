//! The "Linked providers" part of `/settings/security`: the Google, GitHub
//! and Facebook identities that sign in to the account, linked here (the
//! provider's flow, started while signed in) and unlinked here. Both are
//! sensitive actions: an old sign-in goes through the re-authentication
//! prompt first.

use super::error::{page_error, PageError};
use super::layout::{csrf_field, remove_button, table, when, when_or, ACTIONS};
use super::reauth::reauthenticate_first;
use super::session::SignedInForm;
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use convosphere_domain::auth::identities::{LinkStartError, UnlinkError};
use convosphere_domain::auth::oauth::OAuthStartError;
use convosphere_domain::oauth::{IdentityRecord, Provider};
use convosphere_domain::ports::OAuthProvider;
use convosphere_domain::InfraError;
use convosphere_service::common::cookie::see_other;
use convosphere_service::state::AppState;
use maud::{html, Markup};
use serde::Deserialize;

type Page = Result<HttpResponse, PageError>;

/// The security page, where the provider flow comes back to.
const PAGE: &str = "/settings/security";

/// `GET /settings/security` query: a notice of this service's redirects,
/// and what the provider flow of a link came back with.
#[derive(Deserialize)]
pub(crate) struct SecurityQuery {
    notice: Option<String>,
    linked: Option<String>,
    error: Option<String>,
}

impl SecurityQuery {
    /// The notice to show (a code of the fixed list of `notice_text`).
    pub(crate) fn notice(&self) -> Option<&str> {
        if self.linked.is_some() {
            return Some("provider_linked");
        }
        match self.error.as_deref() {
            Some("identity_taken") => Some("provider_identity_taken"),
            Some("already_linked") => Some("provider_already_linked"),
            Some("session_ended") => Some("session_expired"),
            Some("account_locked") => Some("account_locked"),
            Some(_) => Some("provider_link_failed"),
            None => self.notice.as_deref(),
        }
    }
}

/// The section: the linked identities, each with an "Unlink" button, and a
/// "Link" button for every configured provider not linked yet; nothing when
/// no provider is configured nor linked.
pub(crate) fn section(state: &AppState, csrf: &str, identities: &[IdentityRecord]) -> Markup {
    let linkable: Vec<Provider> = Provider::ALL
        .into_iter()
        .filter(|p| state.oauth.providers.is_enabled(*p))
        .filter(|p| !identities.iter().any(|identity| identity.provider == *p))
        .collect();
    if identities.is_empty() && linkable.is_empty() {
        return html! {};
    }
    html! {
        section.card aria-labelledby="providers-title" {
            h2 #providers-title { "Linked providers" }
            @if identities.is_empty() {
                p.empty { "No provider is linked." }
            } @else {
                (table(&["Provider", "Address", "Linked", "Last used", ACTIONS], html! {
                    @for identity in identities {
                        tr data-provider=(identity.provider.as_str()) {
                            td data-label="Provider" { (identity.provider.display_name()) }
                            td data-label="Address" { (identity.email.as_str()) }
                            td data-label="Linked" { (when(identity.linked_at)) }
                            td data-label="Last used" { (when_or(identity.last_used_at, "Not since")) }
                            td.cell-actions {
                                (remove_button(&format!("{PAGE}/providers/{}/unlink", identity.provider.as_str()), csrf,
                                    "Unlink", &format!("Unlink {}", identity.provider.display_name())))
                            }
                        }
                    }
                }))
            }
            @if !linkable.is_empty() {
                p.card-note { "Link another provider to sign in with it too. Its address may differ from this account's." }
                div.actions {
                    @for provider in &linkable {
                        form method="post" action=(format!("{PAGE}/providers/{}/link", provider.as_str())) {
                            (csrf_field(csrf))
                            button.btn.btn-secondary type="submit" { "Link " (provider.display_name()) }
                        }
                    }
                }
            }
        }
    }
}

/// A configured provider named by the path, or a 404 page.
fn configured(state: &AppState, name: &str) -> Result<Provider, PageError> {
    name.parse::<Provider>()
        .ok()
        .filter(|p| state.oauth.providers.is_enabled(*p))
        .ok_or_else(PageError::not_found)
}

/// `POST /settings/security/providers/{provider}/link`: to the provider,
/// with the cookie that binds the flow to this browser; it comes back to
/// the security page with `?linked=` or `?error=`.
pub(crate) async fn link_provider(state: web::Data<AppState>, provider: web::Path<String>, post: SignedInForm) -> Page {
    let provider = configured(&state, &provider)?;
    let who = &post.who;
    match state
        .auth
        .oauth_link_start(&state.oauth, &who.principal, provider, PAGE)
        .await
    {
        Ok(started) => {
            let cookie = convosphere_service::common::cookie::binding_cookie(
                &state,
                started.browser_binding.expose(),
                started.ttl.num_seconds(),
            );
            let mut response = see_other(&started.location);
            let value = header::HeaderValue::from_str(&cookie).map_err(|e| page_error(InfraError::new(e)))?;
            response.headers_mut().append(header::SET_COOKIE, value);
            Ok(response)
        }
        Err(LinkStartError::RecentSignInRequired(_)) => Err(reauthenticate_first(PAGE)),
        Err(LinkStartError::AlreadyLinked) => Ok(see_other(&format!("{PAGE}?error=already_linked"))),
        Err(LinkStartError::Start(OAuthStartError::ProviderNotFound)) => Err(PageError::not_found()),
        Err(LinkStartError::Start(OAuthStartError::Provider(why))) => {
            tracing::warn!(%provider, reason = %why, "a provider link could not start");
            Ok(see_other(&format!("{PAGE}?error=oauth_failed")))
        }
        Err(LinkStartError::Start(OAuthStartError::InvalidRedirect(why))) => Err(page_error(InfraError::new(why))),
        Err(LinkStartError::Start(OAuthStartError::Internal(cause))) => Err(page_error(cause)),
    }
}

/// `POST /settings/security/providers/{provider}/unlink`
pub(crate) async fn unlink_provider(
    state: web::Data<AppState>,
    provider: web::Path<String>,
    post: SignedInForm,
) -> Page {
    let provider: Provider = provider.parse().map_err(|_| PageError::not_found())?;
    let who = &post.who;
    match state
        .auth
        .unlink_identity(&who.principal, provider, &who.client.context())
        .await
    {
        Ok(()) => Ok(see_other(&format!("{PAGE}?notice=provider_unlinked"))),
        Err(UnlinkError::LastWayIn) => Ok(see_other(&format!("{PAGE}?notice=provider_last_way_in"))),
        Err(UnlinkError::NotFound) => Ok(see_other(PAGE)),
        Err(UnlinkError::RecentSignInRequired(_)) => Err(reauthenticate_first(PAGE)),
        Err(UnlinkError::Internal(cause)) => Err(page_error(cause)),
    }
}
