//! API key use cases: create, list, get, revoke, rotate, authenticate.

use super::{Auth, NotFoundError, Principal};
use crate::api_key::{ApiKey, ApiKeyId, GeneratedApiKey};
use crate::event::{ClientContext, EventKind};
use crate::ports::{ApiKeyRepository, Invalidation, Mailer, PasswordHasher, Store, TokenSigner};
use crate::{FieldError, InfraError, Scope, ScopeSet, User, UserId};
use chrono::{DateTime, Utc};
use secrecy::SecretString;

/// The most characters a key's name may have.
pub const MAX_KEY_NAME_CHARS: usize = 100;

/// A key just made: the record and the key text, shown once.
#[derive(Debug)]
pub struct CreatedApiKey {
    /// The stored record.
    pub record: ApiKey,
    /// The whole key; it is not stored and cannot be shown again.
    pub key: SecretString,
}

/// Outcomes of [`Auth::create_api_key`].
#[derive(Debug, thiserror::Error)]
pub enum CreateApiKeyError {
    /// Invalid name, scopes or expiry.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// The session's last sign-in is too long ago: re-authenticate first.
    #[error(transparent)]
    RecentSignInRequired(#[from] super::RecentSignInRequired),
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// Outcomes of [`Auth::rotate_api_key`].
#[derive(Debug, thiserror::Error)]
pub enum RotateApiKeyError {
    /// No such key of this user, or it is revoked already.
    #[error("not found")]
    NotFound,
    /// The new expiry is not in the future.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// The session's last sign-in is too long ago: re-authenticate first.
    #[error(transparent)]
    RecentSignInRequired(#[from] super::RecentSignInRequired),
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// A caller authenticated by an API key.
#[derive(Debug, Clone)]
pub struct KeyPrincipal {
    /// The key's owner.
    pub user: User,
    /// The key.
    pub key: ApiKey,
}

/// Checks a key's name, scopes and expiry; every problem at once.
pub fn parse_key_input(
    name: &str,
    scopes: &[String],
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(String, ScopeSet), Vec<FieldError>> {
    let mut errors = Vec::new();
    let name = crate::profile::parse_required_text("name", name, MAX_KEY_NAME_CHARS, &mut errors);
    let mut set = ScopeSet::EMPTY;
    for scope in scopes {
        match scope.parse::<Scope>() {
            Ok(scope) => set.insert(scope),
            Err(e) => errors.push(FieldError::new("scopes", "unknown_scope", e.to_string())),
        }
    }
    if scopes.is_empty() {
        errors.push(FieldError::new("scopes", "required", "choose at least one scope"));
    }
    if expires_at.is_some_and(|at| at <= now) {
        errors.push(FieldError::new(
            "expires_at",
            "in_the_past",
            "the expiry must lie in the future",
        ));
    }
    if errors.is_empty() {
        Ok((name, set))
    } else {
        Err(errors)
    }
}

impl<S, H, T, M, L> Auth<S, H, T, M, L>
where
    S: Store + ApiKeyRepository,
    H: PasswordHasher,
    T: TokenSigner,
    M: Mailer,
{
    fn new_key(
        &self,
        user: UserId,
        name: String,
        scopes: ScopeSet,
        expires_at: Option<DateTime<Utc>>,
    ) -> CreatedApiKey {
        let now = self.clock.now();
        let generated = GeneratedApiKey::generate(&*self.rng);
        CreatedApiKey {
            record: ApiKey {
                id: ApiKeyId::generate(now, &*self.rng),
                user_id: user,
                name,
                public_id: generated.public_id,
                secret_hash: generated.secret_hash,
                scopes,
                created_at: now,
                expires_at,
                last_used_at: None,
                revoked_at: None,
            },
            key: generated.key,
        }
    }

    /// Creates a key for the signed-in user (a sensitive action: it needs a
    /// recent sign-in). The key text is in the answer and nowhere else.
    pub async fn create_api_key(
        &self,
        principal: &Principal,
        name: &str,
        scopes: &[String],
        expires_at: Option<DateTime<Utc>>,
        client: &ClientContext,
    ) -> Result<CreatedApiKey, CreateApiKeyError> {
        self.require_recent_sign_in(principal)?;
        let user = principal.user.id;
        let (name, scopes) =
            parse_key_input(name, scopes, expires_at, self.clock.now()).map_err(CreateApiKeyError::Invalid)?;
        let created = self.new_key(user, name, scopes, expires_at);
        self.store.create_api_key(&created.record).await?;
        self.record_key_event(EventKind::ApiKeyCreated, &created.record, client, None)
            .await?;
        Ok(created)
    }

    /// The keys of `user`, newest first.
    pub async fn api_keys(&self, user: UserId) -> Result<Vec<ApiKey>, InfraError> {
        self.store.api_keys(user).await
    }

    /// One key of `user`.
    pub async fn api_key(&self, user: UserId, id: ApiKeyId) -> Result<ApiKey, NotFoundError> {
        self.store.api_key(user, id).await?.ok_or(NotFoundError::NotFound)
    }

    /// Revokes a key of `user` at once (a revoked key stays revoked).
    pub async fn revoke_api_key(
        &self,
        user: UserId,
        id: ApiKeyId,
        client: &ClientContext,
    ) -> Result<(), NotFoundError> {
        let key = self.store.api_key(user, id).await?.ok_or(NotFoundError::NotFound)?;
        let revoked = self.store.revoke_api_key(user, id, self.clock.now()).await?;
        self.forget(Invalidation::ApiKey(key.public_id.clone()));
        if revoked {
            self.record_key_event(EventKind::ApiKeyRevoked, &key, client, None)
                .await?;
        }
        Ok(())
    }

    /// Records a key's event: its id, prefix and name (never the key).
    pub(crate) async fn record_key_event(
        &self,
        kind: EventKind,
        key: &ApiKey,
        client: &ClientContext,
        replaces: Option<ApiKeyId>,
    ) -> Result<(), InfraError> {
        let (id, prefix, replaces) = (key.id.to_string(), key.prefix(), replaces.map(|id| id.to_string()));
        let mut details = vec![("api_key_id", id.as_str()), ("prefix", &prefix), ("name", &key.name)];
        if let Some(old) = &replaces {
            details.push(("replaces", old));
        }
        self.record(key.user_id, kind, client, &details).await
    }

    /// Replaces a key with a new one of the same name and scopes; the old
    /// key is revoked at once. A revoked key cannot be rotated. A sensitive
    /// action: it needs a recent sign-in.
    pub async fn rotate_api_key(
        &self,
        principal: &Principal,
        id: ApiKeyId,
        expires_at: Option<DateTime<Utc>>,
        client: &ClientContext,
    ) -> Result<CreatedApiKey, RotateApiKeyError> {
        let now = self.clock.now();
        let user = principal.user.id;
        let old = self.store.api_key(user, id).await?.ok_or(RotateApiKeyError::NotFound)?;
        self.require_recent_sign_in(principal)?;
        if old.revoked_at.is_some() {
            return Err(RotateApiKeyError::NotFound);
        }
        if expires_at.is_some_and(|at| at <= now) {
            return Err(RotateApiKeyError::Invalid(vec![FieldError::new(
                "expires_at",
                "in_the_past",
                "the expiry must lie in the future",
            )]));
        }
        let created = self.new_key(user, old.name, old.scopes, expires_at);
        if !self.store.rotate_api_key(user, id, &created.record, now).await? {
            return Err(RotateApiKeyError::NotFound);
        }
        self.forget(Invalidation::ApiKey(old.public_id));
        self.record_key_event(EventKind::ApiKeyRotated, &created.record, client, Some(id))
            .await?;
        Ok(created)
    }
}
