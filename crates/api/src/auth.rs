//! Authentication as extractors: the request's bearer credential goes
//! through the domain's gateway decision ([`Auth::authorize`]), and the
//! outcome is counted for the key's and the account's usage and mapped to
//! the answer. The budget it reports is kept in the request, so that the
//! answer carries the `RateLimit-*` headers.
//!
//! [`Auth::authorize`]: convosphere_domain::Auth::authorize

use actix_web::dev::Payload;
use actix_web::http::header::USER_AGENT;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use convosphere_domain::auth::{Caller, Principal};
use convosphere_domain::usage::UsageOutcome;
use convosphere_domain::{Authorization, AuthorizeError, ScopeSet};
use convosphere_service::common::extract::{bearer, known_client, state};
use convosphere_service::common::problem::ApiError;
use convosphere_service::usage::CountedRequest;
use futures_util::future::LocalBoxFuture;
use std::sync::Arc;

/// The gateway decision for this request's credential and `required` scopes.
pub async fn authorize(req: &HttpRequest, required: ScopeSet) -> Result<Authorization, ApiError> {
    let state = state(req)?;
    // A gateway that names no client is not held to one client's failed checks.
    let client = known_client(req, &state.config.trusted_proxies);
    let outcome = state.auth.authorize_from(bearer(req)?, required, client).await;
    let (caller, budget) = match &outcome {
        Ok(authorization) => (Some(&authorization.caller), Some(authorization.budget)),
        Err(refused) => (refused.caller(), refused.budget()),
    };
    if let Some(caller) = caller {
        let outcome = match &outcome {
            Ok(_) => UsageOutcome::Allowed,
            Err(AuthorizeError::RateLimited { .. }) => UsageOutcome::RateLimited,
            Err(_) => UsageOutcome::InsufficientScope,
        };
        state.usage.count(CountedRequest {
            user: caller.user().id,
            key: match caller {
                Caller::Key(principal) => Some(principal.key.id),
                Caller::User(_) => None,
            },
            outcome,
            ip: client,
            user_agent: req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok()),
        });
    }
    if let Some(budget) = budget {
        req.extensions_mut().insert(budget);
    }
    outcome.map_err(|refused| {
        if matches!(refused, AuthorizeError::RateLimited { .. }) {
            state.metrics.rate_limited.with_label_values(&["plan"]).inc();
        }
        refused.into()
    })
}

/// The caller of an endpoint that takes any credential (counted against
/// the plan's budget).
pub struct AnyCaller(pub Caller);

impl FromRequest for AnyCaller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Ok(AnyCaller(authorize(&req, ScopeSet::EMPTY).await?.caller)) })
    }
}

/// A logged-in user: an access token whose session is active. An API key
/// is refused with `user_token_required`.
pub struct UserSession(pub Arc<Principal>);

impl FromRequest for UserSession {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            match authorize(&req, ScopeSet::EMPTY).await?.caller {
                Caller::User(principal) => Ok(UserSession(principal)),
                Caller::Key(_) => Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "user_token_required",
                    "only a logged-in user may do this; API keys cannot",
                )),
            }
        })
    }
}
