//! The provider identities linked to an account: listed, and unlinked by
//! their owner (a sensitive action) unless the account would be left
//! without a way to sign in.

use super::{Auth, Principal, RecentSignInRequired};
use crate::event::{ClientContext, EventKind};
use crate::oauth::{IdentityRecord, Provider, UnlinkOutcome};
use crate::ports::{Invalidation, Mailer, OAuthRepository, PasswordHasher, Store, TokenSigner};
use crate::{InfraError, UserId};

/// Outcomes of [`Auth::unlink_identity`].
#[derive(Debug, thiserror::Error)]
pub enum UnlinkError {
    /// The account has no identity of that provider.
    #[error("no such linked identity")]
    NotFound,
    /// It is the account's only way to sign in (no password, no other identity).
    #[error("the account's only way to sign in")]
    LastWayIn,
    /// The session's last sign-in is too long ago: re-authenticate first.
    #[error(transparent)]
    RecentSignInRequired(#[from] RecentSignInRequired),
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

impl<S, H, T, M, L> Auth<S, H, T, M, L>
where
    S: Store + OAuthRepository,
    H: PasswordHasher,
    T: TokenSigner,
    M: Mailer,
{
    /// The identities linked to `user`, oldest first.
    pub async fn identities(&self, user: UserId) -> Result<Vec<IdentityRecord>, InfraError> {
        self.store.identities(user).await
    }

    /// Unlinks the principal's identity of `provider`: its provider logins
    /// then make or find an account by address again. A sensitive action.
    pub async fn unlink_identity(
        &self,
        principal: &Principal,
        provider: Provider,
        client: &ClientContext,
    ) -> Result<(), UnlinkError> {
        self.require_recent_sign_in(principal)?;
        let user = principal.user.id;
        match self.store.unlink_identity(user, provider).await? {
            UnlinkOutcome::NotLinked => Err(UnlinkError::NotFound),
            UnlinkOutcome::LastWayIn => Err(UnlinkError::LastWayIn),
            UnlinkOutcome::Unlinked => {
                self.forget(Invalidation::User(user));
                self.record(
                    user,
                    EventKind::OAuthUnlinked,
                    client,
                    &[("provider", provider.as_str())],
                )
                .await?;
                Ok(())
            }
        }
    }
}
