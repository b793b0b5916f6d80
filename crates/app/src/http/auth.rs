//! Authentication as extractors: who is calling, with which credential,
//! and whether their plan's budget allows one more request.

use super::extract::{bearer, state};
use super::problem::ApiError;
use crate::cache::Stamp;
use crate::memo::{Digest, Memo, MEMO_CAPACITY};
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use chrono::{DateTime, Utc};
use convosphere_domain::auth::keys::{ApiKeyAuthError, KeyPrincipal};
use convosphere_domain::auth::AuthenticateError;
use convosphere_domain::auth::Principal;
use convosphere_domain::ports::{RateLimitDecision, RateLimiter};
use convosphere_domain::{InfraError, ScopeSet, User};
use futures_util::future::LocalBoxFuture;
use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::thread::LocalKey;

/// The caller of an endpoint that takes any credential.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A user access token (holds every scope), shared with the thread's memo.
    User(Arc<Principal>),
    /// An API key (holds its own scopes), shared with the thread's memo.
    Key(Arc<KeyPrincipal>),
}

impl Caller {
    /// The account.
    pub fn user(&self) -> &User {
        match self {
            Caller::User(principal) => &principal.user,
            Caller::Key(principal) => &principal.user,
        }
    }

    /// The scopes the credential holds.
    pub fn scopes(&self) -> ScopeSet {
        match self {
            Caller::User(_) => ScopeSet::all(),
            Caller::Key(principal) => principal.key.scopes,
        }
    }

    /// `user` or `api_key`.
    pub fn kind(&self) -> &'static str {
        match self {
            Caller::User(_) => "user",
            Caller::Key(_) => "api_key",
        }
    }
}

impl From<ApiKeyAuthError> for ApiError {
    fn from(e: ApiKeyAuthError) -> Self {
        match e {
            ApiKeyAuthError::Invalid => ApiError::unauthorized("invalid_api_key", "the API key is invalid"),
            ApiKeyAuthError::Expired => ApiError::unauthorized("api_key_expired", "the API key has expired"),
            ApiKeyAuthError::Revoked => ApiError::unauthorized("api_key_revoked", "the API key has been revoked"),
            ApiKeyAuthError::Locked => ApiError::new(
                StatusCode::FORBIDDEN,
                "account_locked",
                "this account is locked; contact support",
            ),
            ApiKeyAuthError::Internal(cause) => cause.into(),
        }
    }
}

/// Checks a bearer credential: an API key (`cs_…`) or an access token.
pub async fn authenticate(state: &AppState, credential: &str) -> Result<Caller, ApiError> {
    if credential.starts_with("cs_") {
        let principal = api_key(state, credential).await?;
        state.usage.record(principal.key.id);
        Ok(Caller::Key(principal))
    } else {
        Ok(Caller::User(access_token(state, credential).await?))
    }
}

thread_local! {
    /// The API keys this worker thread checked lately ([`crate::memo`]).
    static KEYS: RefCell<Memo<KeyPrincipal>> = RefCell::new(Memo::new(MEMO_CAPACITY));
    /// The access tokens this worker thread checked lately.
    static TOKENS: RefCell<Memo<Principal>> = RefCell::new(Memo::new(MEMO_CAPACITY));
}

/// The principal of a credential: remembered by this thread while current
/// ([`crate::memo`]), or else `check`ed in full by the use case and then
/// remembered until it `holds_until`. `stamp` tells where the stamps of a
/// principal's user and credential stand now.
async fn memoized<V, E>(
    memo: &'static LocalKey<RefCell<Memo<V>>>,
    state: &AppState,
    credential: &str,
    stamp: impl Fn(&V) -> Stamp,
    holds_until: impl FnOnce(&V) -> DateTime<Utc>,
    check: impl Future<Output = Result<V, E>>,
) -> Result<Arc<V>, E> {
    let digest = Digest::of(credential);
    let now = Utc::now();
    if let Some(known) = memo.with(|memo| memo.borrow_mut().get(&digest, now, &stamp)) {
        return Ok(known);
    }
    let store = state.auth.store();
    let seen = store.generation();
    let checked = Arc::new(check.await?);
    // Remembered only if nothing was forgotten while it was checked: the
    // stamps taken now are then those it was checked under.
    let stamped = stamp(&checked);
    if store.generation() == seen {
        let until = holds_until(&checked);
        memo.with(|memo| {
            memo.borrow_mut()
                .insert(digest, Arc::clone(&checked), stamped, now, until)
        });
    }
    Ok(checked)
}

/// The principal of an API key.
async fn api_key(state: &AppState, key: &str) -> Result<Arc<KeyPrincipal>, ApiKeyAuthError> {
    let store = state.auth.store();
    memoized(
        &KEYS,
        state,
        key,
        |principal: &KeyPrincipal| store.key_stamp(principal.user.id, &principal.key.public_id),
        |principal| principal.key.expires_at.unwrap_or(DateTime::<Utc>::MAX_UTC),
        state.auth.authenticate_api_key(key),
    )
    .await
}

/// The principal of an access token.
async fn access_token(state: &AppState, token: &str) -> Result<Arc<Principal>, AuthenticateError> {
    let store = state.auth.store();
    memoized(
        &TOKENS,
        state,
        token,
        |principal: &Principal| store.session_stamp(principal.user.id, principal.session_id),
        |principal| principal.holds_until,
        state.auth.authenticate(token),
    )
    .await
}

/// A UUID in its hyphenated lower-case form, without going through `fmt`
/// (which costs more than the rest of making the string).
pub(crate) fn uuid_string(uuid: uuid::Uuid) -> String {
    uuid.hyphenated()
        .encode_lower(&mut uuid::Uuid::encode_buffer())
        .to_owned()
}

/// Counts one request against the account's plan budget. The decision is
/// kept in the request so that the answer carries `RateLimit-*` headers.
pub async fn charge(state: &AppState, req: &HttpRequest, user: &User) -> Result<RateLimitDecision, ApiError> {
    let budget = state.config.rate_limits.per_minute(user.plan);
    // `acct:` and the UUID, written on the stack: nothing to allocate.
    let mut key = [0; 5 + uuid::fmt::Hyphenated::LENGTH];
    key[..5].copy_from_slice(b"acct:");
    user.id.as_uuid().hyphenated().encode_lower(&mut key[5..]);
    let key = std::str::from_utf8(&key).map_err(|_| ApiError::internal(&InfraError::new("limiter key")))?;
    let decision = state.limiter.check(key, budget).await?;
    req.extensions_mut().insert(decision);
    if !decision.allowed {
        state.metrics.rate_limited.with_label_values(&["plan"]).inc();
        return Err(ApiError::rate_limited(&decision));
    }
    Ok(decision)
}

async fn caller(req: &HttpRequest) -> Result<Caller, ApiError> {
    let state = state(req)?;
    let credential = bearer(req)?;
    let caller = authenticate(state, credential).await?;
    charge(state, req, caller.user()).await?;
    Ok(caller)
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { caller(&req).await })
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
            match caller(&req).await? {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_string_is_the_displayed_uuid() {
        for _ in 0..100 {
            let uuid = uuid::Uuid::new_v4();
            assert_eq!(uuid_string(uuid), uuid.to_string());
        }
        assert_eq!(uuid_string(uuid::Uuid::nil()), "00000000-0000-0000-0000-000000000000");
    }
}
