//! The provider identities linked to an account: listed; linked by a
//! signed-in owner, who starts the provider's flow from their settings (a
//! sensitive action); and unlinked by them (a sensitive action too) unless
//! the account would be left without a way to sign in.

use super::oauth::{OAuthCallbackError, OAuthLogin, OAuthStartError, OAuthStarted};
use super::{Auth, Principal, RecentSignInRequired};
use crate::event::{ClientContext, EventKind};
use crate::oauth::{
    with_query, IdentityRecord, LinkOutcome, LinkRequest, LinkedIdentity, Provider, ProviderIdentity, UnlinkOutcome,
};
use crate::ports::{Invalidation, Mailer, OAuthProvider, OAuthRepository, PasswordHasher, Store, TokenSigner};
use crate::{InfraError, UserId};

/// Outcomes of [`Auth::oauth_link_start`].
#[derive(Debug, thiserror::Error)]
pub enum LinkStartError {
    /// The account has an identity of this provider already: unlink it first.
    #[error("the account is linked to this provider already")]
    AlreadyLinked,
    /// The session's last sign-in is too long ago: re-authenticate first.
    #[error(transparent)]
    RecentSignInRequired(#[from] RecentSignInRequired),
    /// The provider is unknown, `return_to` is refused, or the provider
    /// could not be prepared, as at a login's start.
    #[error(transparent)]
    Start(#[from] OAuthStartError),
}

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

    /// Starts linking `provider` to the principal's account: the same flow as
    /// a login's start, but the callback then links whoever signs in at the
    /// provider to this account (whatever address they come with, as long as
    /// the provider verified it) instead of signing anyone in, and sends the
    /// browser to `return_to` (a path of this service) with `?linked=<provider>`,
    /// or `?error=` `oauth_failed`, `identity_taken` (the identity belongs to
    /// another account), `already_linked` or `session_ended`. A sensitive action.
    pub async fn oauth_link_start<P: OAuthProvider>(
        &self,
        oauth: &OAuthLogin<P>,
        principal: &Principal,
        provider: Provider,
        return_to: &str,
    ) -> Result<OAuthStarted, LinkStartError> {
        self.require_recent_sign_in(principal)?;
        let linked = self
            .store
            .identities(principal.user.id)
            .await
            .map_err(OAuthStartError::from)?;
        if linked.iter().any(|identity| identity.provider == provider) {
            return Err(LinkStartError::AlreadyLinked);
        }
        let link = LinkRequest {
            user: principal.user.id,
            session: principal.session_id,
        };
        Ok(self
            .begin_authorization(oauth, provider, Some(return_to), Some(link))
            .await?)
    }

    /// The callback's end of a link: the identity joins the account that
    /// asked, if its session still lives and nobody else holds the identity.
    pub(super) async fn finish_link(
        &self,
        link: LinkRequest,
        provider: Provider,
        identity: &ProviderIdentity,
        target: &str,
        client: &ClientContext,
    ) -> Result<String, OAuthCallbackError> {
        let now = self.clock.now();
        let refused = |reason: &str, error: &str| OAuthCallbackError::Failed {
            reason: reason.to_owned(),
            back_to: Some(with_query(target, "error", error)),
        };
        let live = self.store.session(link.session).await?.is_some_and(|session| {
            session.user_id == link.user && session.is_active(now, self.config.session_idle_timeout)
        });
        let user = match self.store.user_by_id(link.user).await? {
            Some(user) if live => user,
            _ => return Err(refused("the session that asked to link has ended", "session_ended")),
        };
        if user.suspended {
            return Err(OAuthCallbackError::Locked {
                back_to: Some(with_query(target, "error", "account_locked")),
            });
        }
        let Some(email) = identity.verified_email() else {
            return Err(refused(
                &format!("{provider} did not give a verified e-mail address"),
                "oauth_failed",
            ));
        };
        let taken = || {
            refused(
                &format!("this {provider} identity is linked to another account"),
                "identity_taken",
            )
        };
        match self.store.identity_owner(provider, &identity.subject).await? {
            Some(owner) if owner == user.id => {
                self.store.note_identity_use(provider, &identity.subject, now).await?;
                return Ok(with_query(target, "linked", provider.as_str()));
            }
            Some(_) => return Err(taken()),
            None => {}
        }
        let linked = self.store.identities(user.id).await?;
        if linked.iter().any(|other| other.provider == provider) {
            return Err(refused(
                &format!("the account is linked to another {provider} identity"),
                "already_linked",
            ));
        }
        let record = LinkedIdentity {
            provider,
            subject: identity.subject.clone(),
            user_id: user.id,
            email,
            created_at: now,
        };
        match self.store.link_identity(&record).await? {
            LinkOutcome::Linked => {}
            LinkOutcome::AlreadyLinked(owner) if owner == user.id => {}
            LinkOutcome::AlreadyLinked(_) => return Err(taken()),
        }
        self.forget(Invalidation::User(user.id));
        let details = [("provider", provider.as_str()), ("via", "settings")];
        self.record(user.id, EventKind::OAuthLinked, client, &details).await?;
        Ok(with_query(target, "linked", provider.as_str()))
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
