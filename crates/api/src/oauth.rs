//! OAuth login: `start` sends the browser to the provider, `callback`
//! brings it back with a one-time code, `exchange` trades the code for a
//! token pair; and the identities linked to an account, listed and unlinked.

use super::auth::UserSession;
use super::routes::{no_errors, required, Result};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use convosphere_domain::auth::oauth::{OAuthCallback, OAuthCallbackError, OAuthExchangeError, OAuthStartError};
use convosphere_domain::oauth::Provider;
use convosphere_domain::oauth::DEFAULT_REDIRECT_PATH;
use convosphere_domain::SecondFactor;
use convosphere_service::common::cookie::{
    binding_cookie, presented_binding, provider_second_factor, signed_in_response,
};
use convosphere_service::common::extract::{ClientInfo, Json};
use convosphere_service::common::problem::{ApiError, Problem};
use convosphere_service::dto::{IdentityBody, IdentityList, OAuthCodeBody, TokenPair};
use convosphere_service::state::AppState;
use std::collections::HashMap;

fn provider_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "provider_not_found",
        "no such OAuth provider is configured here",
    )
}

/// A configured provider named by the path.
fn provider(state: &AppState, name: &str) -> Result<Provider> {
    use convosphere_domain::ports::OAuthProvider;
    name.parse()
        .ok()
        .filter(|p| state.oauth.providers.is_enabled(*p))
        .ok_or_else(provider_not_found)
}

fn query(req: &HttpRequest) -> HashMap<String, String> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
}

/// A redirect that must not be cached, nor leak its URL (which holds a
/// code) as a `Referer`.
fn redirect(location: &str) -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::Found();
    response
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("referrer-policy", "no-referrer"));
    response
}

/// Start logging in with a provider: a redirect to it, with `state`, PKCE
/// `S256` and (OpenID Connect) `nonce`, and a cookie binding the login to
/// this browser for 10 minutes.
#[utoipa::path(get, path = "/v1/auth/oauth/{provider}/start", tag = "oauth",
    params(
        ("provider" = String, Path, description = "`google`, `github` or `facebook`"),
        ("redirect_to" = Option<String>, Query,
            description = "Where to go afterwards: a path of this service, or a URL under a prefix of AUTH_OAUTH_REDIRECT_ALLOWLIST. Default: /dashboard"),
    ),
    responses((status = 302, description = "To the provider"), (status = 400, body = Problem),
        (status = 404, body = Problem), (status = 429, body = Problem)))]
pub async fn start(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result {
    let provider = provider(&state, &path)?;
    let redirect_to = query(&req).remove("redirect_to");
    let started = state
        .auth
        .oauth_start(&state.oauth, provider, redirect_to.as_deref())
        .await
        .map_err(|e| match e {
            OAuthStartError::ProviderNotFound => provider_not_found(),
            OAuthStartError::InvalidRedirect(why) => ApiError::invalid_request(why.to_string()),
            OAuthStartError::Provider(why) => {
                tracing::warn!(%provider, reason = %why, "OAuth login could not start");
                ApiError::oauth_failed(format!("{provider} is not available now: {why}"))
            }
            OAuthStartError::Internal(cause) => cause.into(),
        })?;
    let cookie = binding_cookie(&state, started.browser_binding.expose(), started.ttl.num_seconds());
    Ok(redirect(&started.location)
        .insert_header((header::SET_COOKIE, cookie))
        .finish())
}

/// Where the provider sends the browser back. Answers a redirect to
/// `redirect_to` (or `/dashboard`) with `?code=` for `POST /v1/auth/oauth/exchange`.
/// A failure after the state checked out, when a `redirect_to` was named,
/// goes back there with `?error=oauth_failed` (or `account_locked`); any
/// other failure answers problem JSON.
#[utoipa::path(get, path = "/v1/auth/oauth/{provider}/callback", tag = "oauth",
    params(
        ("provider" = String, Path, description = "`google`, `github` or `facebook`"),
        ("code" = Option<String>, Query, description = "The provider's authorization code"),
        ("state" = Option<String>, Query, description = "The state sent at start"),
        ("error" = Option<String>, Query, description = "The provider's refusal (e.g. access_denied)"),
    ),
    responses((status = 302, description = "To redirect_to with ?code=ONE_TIME_CODE"),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn callback(
    state: web::Data<AppState>,
    client: ClientInfo,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result {
    let provider = provider(&state, &path)?;
    let mut query = query(&req);
    let callback = OAuthCallback {
        state: query.remove("state"),
        code: query.remove("code"),
        error: query.remove("error"),
        browser_binding: presented_binding(&req),
    };
    let outcome = state
        .auth
        .oauth_callback(&state.oauth, provider, callback, &client.context())
        .await;
    // The login is over either way: the cookie goes.
    let clear = binding_cookie(&state, "", 0);
    let (error, back_to) = match outcome {
        Ok(location) => {
            // No redirect_to named: a person in a browser. Sign them in to
            // the web pages (one of their sessions) and show the dashboard.
            let dashboard = format!("{}{DEFAULT_REDIRECT_PATH}?code=", state.config.public_url);
            if let Some(code) = location.strip_prefix(&dashboard) {
                let outcome = state
                    .auth
                    .oauth_exchange(code, &SecondFactor::default(), &client.context())
                    .await;
                let mut response = match outcome {
                    Ok(tokens) => signed_in_response(&state, &tokens, DEFAULT_REDIRECT_PATH)?,
                    // 2FA is on: the code waits for it at the second-factor page.
                    Err(OAuthExchangeError::MfaRequired) => {
                        provider_second_factor(&state, code, DEFAULT_REDIRECT_PATH)?
                    }
                    Err(e) => return Err(e.into()),
                };
                if let Ok(value) = HeaderValue::from_str(&clear) {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
                return Ok(response);
            }
            return Ok(redirect(&location).insert_header((header::SET_COOKIE, clear)).finish());
        }
        Err(OAuthCallbackError::ProviderNotFound) => (provider_not_found(), None),
        Err(OAuthCallbackError::Failed { reason, back_to }) => {
            tracing::warn!(%provider, %reason, "OAuth login failed");
            (ApiError::oauth_failed(reason), back_to)
        }
        Err(OAuthCallbackError::Locked { back_to }) => (
            ApiError::new(StatusCode::FORBIDDEN, "account_locked", "this account is locked"),
            back_to,
        ),
        Err(OAuthCallbackError::Internal(cause)) => (cause.into(), None),
    };
    let mut response = match back_to {
        Some(location) => redirect(&location).finish(),
        None => error.error_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Trade the one-time code of the callback for a token pair. The code works
/// once, for 60 seconds; the login is a session like any other. When the
/// account has two-factor authentication on, the exchange needs `totp_code`
/// (or `recovery_code`) as the password login does: without one it answers
/// 401 `mfa_required` and the code keeps working for the rest of its minute.
#[utoipa::path(post, path = "/v1/auth/oauth/exchange", tag = "oauth", request_body = OAuthCodeBody,
    responses((status = 200, body = TokenPair), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn exchange(state: web::Data<AppState>, client: ClientInfo, body: Json<OAuthCodeBody>) -> Result {
    let mut body = body.into_inner();
    let factor = body.second_factor();
    let mut errors = Vec::new();
    let code = required(body.code, "code", &mut errors);
    no_errors(errors)?;
    let outcome = state
        .auth
        .oauth_exchange(&code, &factor, &client.context())
        .await
        .map_err(ApiError::from);
    let label = outcome.as_ref().map_or_else(|e| e.code(), |_| "ok");
    state.metrics.logins.with_label_values(&[label]).inc();
    Ok(super::carrying_secret(actix_web::http::StatusCode::OK).json(TokenPair::from(outcome?)))
}

/// The provider identities linked to your account, oldest first.
#[utoipa::path(get, path = "/v1/me/identities", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = IdentityList), (status = 401, body = Problem)))]
pub async fn identities(state: web::Data<AppState>, user: UserSession) -> Result {
    let identities = state.auth.identities(user.0.user.id).await?;
    Ok(HttpResponse::Ok().json(IdentityList {
        identities: identities.iter().map(IdentityBody::from).collect(),
    }))
}

/// Unlink a provider: its logins no longer reach this account. Refused when
/// it is the account's only way to sign in; needs a recent sign-in.
#[utoipa::path(delete, path = "/v1/me/identities/{provider}", tag = "me", security(("bearer" = [])),
    params(("provider" = String, Path, description = "`google`, `github` or `facebook`")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn unlink(
    state: web::Data<AppState>,
    client: ClientInfo,
    user: UserSession,
    provider: web::Path<String>,
) -> Result {
    let provider: Provider = provider.parse().map_err(|_| provider_not_found())?;
    state.auth.unlink_identity(&user.0, provider, &client.context()).await?;
    Ok(HttpResponse::NoContent().finish())
}
