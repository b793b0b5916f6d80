//! The gateway decision, as `/v1/authz` and every authenticated request
//! make it: whose credential is this, does it hold the scopes asked for,
//! and may the account make one more request within its plan?
//!
//! Checked credentials are remembered in a [`CredentialCache`] shared by
//! every request of an instance. The rule of what may be remembered is
//! here, not in the cache: a caller is remembered only if nothing was
//! invalidated while it was checked, and never past what its credential
//! holds until ([`Caller::holds_until`]) nor past [`REMEMBER_AT_MOST`].

use super::keys::KeyPrincipal;
use super::{Auth, Principal, TOUCH_INTERVAL};
use crate::api_key::{ApiKeyFormatError, ApiKeyStatus, PresentedApiKey};
use crate::ports::{
    ApiKeyRepository, CredentialCache, CredentialKey, Mailer, PasswordHasher, RateLimitDecision, RateLimiter,
    RateSubject, Store, TokenSigner, TokenVerifyError,
};
use crate::{Credential, InfraError, Scope, ScopeSet, SessionId, User};
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;

/// The longest a checked credential is remembered: what another instance
/// changes without an invalidation (a profile field) shows within this.
pub const REMEMBER_AT_MOST: Duration = Duration::seconds(5);

/// How many failed credential checks (unknown keys, forged or unknown
/// tokens) one client network may cause a minute before its checks that
/// miss the cache are refused unchecked.
pub const FAILED_CHECKS_PER_MINUTE: u32 = 60;

/// Who presented a credential. Cheap to clone: the principals are shared
/// with the cache.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A user access token: holds every scope.
    User(Arc<Principal>),
    /// An API key: holds its own scopes.
    Key(Arc<KeyPrincipal>),
}

impl Caller {
    /// The principal of a user access token; `None` for an API key.
    pub fn into_user(self) -> Option<Arc<Principal>> {
        match self {
            Caller::User(principal) => Some(principal),
            Caller::Key(_) => None,
        }
    }

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

    /// `user` or `api_key`, as the contract names them.
    pub fn kind(&self) -> &'static str {
        match self {
            Caller::User(_) => "user",
            Caller::Key(_) => "api_key",
        }
    }

    /// The session of an access token.
    pub fn session_id(&self) -> Option<SessionId> {
        match self {
            Caller::User(principal) => Some(principal.session_id),
            Caller::Key(_) => None,
        }
    }

    /// Until when this caller holds as long as nothing is invalidated: an
    /// access token's [`Principal::holds_until`], a key's expiry.
    pub fn holds_until(&self) -> DateTime<Utc> {
        match self {
            Caller::User(principal) => principal.holds_until,
            Caller::Key(principal) => principal.key.expires_at.unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }
}

/// Why a credential is refused: the contract's outcomes.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// An access token that is malformed, wrongly signed or unknown.
    #[error("the access token is invalid")]
    InvalidToken,
    /// An access token past `exp`.
    #[error("the access token has expired")]
    TokenExpired,
    /// The access token's session ended.
    #[error("the session has ended")]
    SessionExpired,
    /// An API key that is malformed, has a bad checksum, is unknown or has the wrong secret.
    #[error("the API key is invalid")]
    InvalidApiKey,
    /// An API key past its expiry.
    #[error("the API key has expired")]
    ApiKeyExpired,
    /// An API key revoked or rotated away.
    #[error("the API key has been revoked")]
    ApiKeyRevoked,
    /// The account is suspended.
    #[error("the account is locked")]
    Locked,
    /// The client's network caused too many failed checks lately: its
    /// checks that miss the cache are refused unchecked for a while.
    #[error("too many failed credential checks from this network")]
    TooManyFailures {
        /// Until another check is made.
        retry_after: std::time::Duration,
    },
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// A request let through: who, and where the account's budget stands
/// (for the `RateLimit-*` headers).
#[derive(Debug, Clone)]
pub struct Authorization {
    /// Who presented the credential.
    pub caller: Caller,
    /// The plan's budget after this request.
    pub budget: RateLimitDecision,
}

/// Outcomes of [`Auth::authorize`].
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    /// The credential is refused (nothing was counted).
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The account's plan budget is spent.
    #[error("the rate limit is reached")]
    RateLimited {
        /// Who presented the credential (a valid one).
        caller: Caller,
        /// The spent budget, with when to retry.
        budget: RateLimitDecision,
    },
    /// The credential lacks `missing` (the request was counted).
    #[error("the credential lacks the scope {missing}")]
    InsufficientScope {
        /// Who presented the credential (a valid one).
        caller: Caller,
        /// The first scope asked for that the credential does not hold.
        missing: Scope,
        /// The plan's budget after this request.
        budget: RateLimitDecision,
    },
    /// Infrastructure failure (of the rate limiter).
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// A session's touch in flight (see [`CredentialCache::claim_touch`]).
struct TouchClaim<'a> {
    cache: &'a dyn CredentialCache,
    session: SessionId,
}

impl<'a> TouchClaim<'a> {
    fn take(cache: &'a dyn CredentialCache, session: SessionId) -> Option<Self> {
        // Not `then_some`: it would build (and drop) a claim when none was
        // taken, and the drop would release the claim of the touch in flight.
        cache.claim_touch(session).then(|| Self { cache, session })
    }
}

impl Drop for TouchClaim<'_> {
    fn drop(&mut self) {
        self.cache.release_touch(self.session);
    }
}

impl<S, H, T, M, L> Auth<S, H, T, M, L>
where
    S: Store + ApiKeyRepository,
    H: PasswordHasher,
    T: TokenSigner,
    M: Mailer,
    L: RateLimiter,
{
    /// The gateway check: the credential, then the account's plan budget
    /// (one request counted), then the scopes in `required`.
    pub async fn authorize(&self, credential: &str, required: ScopeSet) -> Result<Authorization, AuthorizeError> {
        self.authorize_from(credential, required, None).await
    }

    /// [`authorize`](Self::authorize) for a request from `client` (when its
    /// IP is known): a network whose unknown credentials failed more than
    /// [`FAILED_CHECKS_PER_MINUTE`] checks has its checks that miss the
    /// cache refused without a lookup until its budget refills, so that
    /// forged keys with a valid checksum cannot drive the database.
    pub async fn authorize_from(
        &self,
        credential: &str,
        required: ScopeSet,
        client: Option<std::net::IpAddr>,
    ) -> Result<Authorization, AuthorizeError> {
        let caller = self.authenticate_from(credential, client).await?;
        let user = caller.user();
        let budget = self
            .limiter
            .check(
                RateSubject::Account(user.id),
                self.config.plan_limits.per_minute(user.plan),
            )
            .await?;
        if !budget.allowed {
            return Err(AuthorizeError::RateLimited { caller, budget });
        }
        if let Some(missing) = caller.scopes().first_missing(required) {
            return Err(AuthorizeError::InsufficientScope {
                caller,
                missing,
                budget,
            });
        }
        Ok(Authorization { caller, budget })
    }

    /// Who presented `credential`, without counting the request: from the
    /// cache while current, else checked in full (and then remembered).
    pub async fn authenticate(&self, credential: &str) -> Result<Caller, CredentialError> {
        self.authenticate_from(credential, None).await
    }

    /// [`authenticate`](Self::authenticate), counting a failed check
    /// against `client`'s network (see [`authorize_from`](Self::authorize_from)).
    pub async fn authenticate_from(
        &self,
        credential: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<Caller, CredentialError> {
        let now = self.clock.now();
        let key = CredentialKey::of(credential);
        let cache = &*self.credentials;
        if let Some(caller) = cache.get(&key, now) {
            return Ok(caller);
        }
        let client = client.map(crate::ports::network);
        if let Some(until) = client.and_then(|net| cache.refused_until(net, now)) {
            let retry_after = (until - now).to_std().unwrap_or_default();
            return Err(CredentialError::TooManyFailures { retry_after });
        }
        let seen = cache.generation();
        let checked = match Credential::parse(credential) {
            Credential::ApiKey(key) => self.check_api_key(key).await.map(|p| Caller::Key(Arc::new(p))),
            Credential::AccessToken(token) => self.check_access_token(token).await.map(|p| Caller::User(Arc::new(p))),
        };
        let caller = match (checked, client) {
            (Err(failed @ (CredentialError::InvalidApiKey | CredentialError::InvalidToken)), Some(net)) => {
                let budget = self
                    .limiter
                    .check(RateSubject::FailedChecks(net), FAILED_CHECKS_PER_MINUTE);
                let budget = budget.await?;
                if !budget.allowed {
                    let wait = budget.retry_after.unwrap_or(std::time::Duration::from_secs(60));
                    cache.refuse_client(net, now + Duration::from_std(wait).unwrap_or(Duration::minutes(1)));
                }
                return Err(failed);
            }
            (checked, _) => checked?,
        };
        // Remembered only if nothing was forgotten while it was checked: a
        // check that read the state before a revocation committed must not
        // put it back after the revocation was forgotten.
        if cache.generation() == seen {
            cache.insert(key, caller.clone(), caller.holds_until().min(now + REMEMBER_AT_MOST));
            // An invalidation may have slipped in between the two: then it
            // is taken out again.
            if cache.generation() != seen {
                cache.remove(&key);
            }
        }
        Ok(caller)
    }

    /// Checks an access token and its session in full; records the session's use.
    pub(crate) async fn check_access_token(&self, access_token: &str) -> Result<Principal, CredentialError> {
        let now = self.clock.now();
        let claims = self.signer.verify(access_token, now).map_err(|e| match e {
            TokenVerifyError::Expired => CredentialError::TokenExpired,
            TokenVerifyError::Invalid => CredentialError::InvalidToken,
        })?;
        let session = self
            .store
            .session(claims.session_id)
            .await?
            .filter(|s| s.user_id == claims.user_id)
            .ok_or(CredentialError::InvalidToken)?;
        if !session.is_active(now, self.config.session_idle_timeout) {
            return Err(CredentialError::SessionExpired);
        }
        let user = self
            .store
            .user_by_id(claims.user_id)
            .await?
            .ok_or(CredentialError::InvalidToken)?;
        if user.suspended {
            return Err(CredentialError::Locked);
        }
        let mut last_active_at = session.last_active_at;
        if now - last_active_at >= TOUCH_INTERVAL {
            // One write of a session's use at a time: the requests that find
            // it due while it is in flight count it as written.
            if let Some(_claim) = TouchClaim::take(&*self.credentials, session.id) {
                self.store.touch_session(session.id, now).await?;
            }
            last_active_at = now;
        }
        let holds_until = claims
            .expires_at
            .min(session.expires_at)
            .min(last_active_at + self.config.session_idle_timeout)
            .min(last_active_at + TOUCH_INTERVAL);
        Ok(Principal {
            user,
            session_id: session.id,
            auth_time: session.auth_time,
            holds_until,
        })
    }

    /// Checks an API key in full: format and checksum first (no storage
    /// touched for a typo), then the stored hash in constant time, then
    /// status and owner.
    pub(crate) async fn check_api_key(&self, key: &str) -> Result<KeyPrincipal, CredentialError> {
        let presented = PresentedApiKey::parse(key).map_err(|e| match e {
            ApiKeyFormatError::Malformed | ApiKeyFormatError::BadChecksum => CredentialError::InvalidApiKey,
        })?;
        let record = self
            .store
            .api_key_by_public_id(presented.public_id())
            .await?
            .filter(|record| presented.matches(&record.secret_hash))
            .ok_or(CredentialError::InvalidApiKey)?;
        match record.status(self.clock.now()) {
            ApiKeyStatus::Active => {}
            ApiKeyStatus::Revoked => return Err(CredentialError::ApiKeyRevoked),
            ApiKeyStatus::Expired => return Err(CredentialError::ApiKeyExpired),
        }
        let user = self
            .store
            .user_by_id(record.user_id)
            .await?
            .ok_or(CredentialError::InvalidApiKey)?;
        if user.suspended {
            return Err(CredentialError::Locked);
        }
        Ok(KeyPrincipal { user, key: record })
    }
}

impl AuthorizeError {
    /// Where the plan's budget stands, when the request was counted.
    pub fn budget(&self) -> Option<RateLimitDecision> {
        match self {
            AuthorizeError::RateLimited { budget, .. } | AuthorizeError::InsufficientScope { budget, .. } => {
                Some(*budget)
            }
            AuthorizeError::Credential(_) | AuthorizeError::Internal(_) => None,
        }
    }

    /// Who presented the credential, when it was valid.
    pub fn caller(&self) -> Option<&Caller> {
        match self {
            AuthorizeError::RateLimited { caller, .. } | AuthorizeError::InsufficientScope { caller, .. } => {
                Some(caller)
            }
            AuthorizeError::Credential(_) | AuthorizeError::Internal(_) => None,
        }
    }
}
