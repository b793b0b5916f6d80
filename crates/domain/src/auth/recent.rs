//! The recent-sign-in rule ("sudo mode"): sensitive actions need a sign-in
//! or re-authentication within `AuthConfig::reauth_window`, so that a stolen
//! access token alone cannot enrol its own authenticator or mint a key that
//! outlives a password reset.

use super::{Auth, FactorCheck, IssuedTokens, PasswordCheck, Principal, SecondFactor};
use crate::event::{ClientContext, EventKind};
use crate::ports::{Invalidation, Mailer, PasswordHasher, Store, TokenSigner};
use crate::{AuthMethod, InfraError, OpaqueToken};

/// A sensitive action was asked of a session whose last sign-in or
/// re-authentication is older than the window: nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this action needs a recent sign-in: re-authenticate first")]
pub struct RecentSignInRequired;

/// Outcomes of [`Auth::reauthenticate`].
#[derive(Debug, thiserror::Error)]
pub enum ReauthenticateError {
    /// The password is wrong; counted toward the lockout.
    #[error("the password is wrong")]
    InvalidCredentials,
    /// Locked out after wrong passwords: no password is checked until it ends.
    #[error("the account is locked")]
    Locked,
    /// 2FA is on and no code was sent.
    #[error("a two-factor code is required")]
    MfaRequired,
    /// The code is wrong or used; counted toward the lockout.
    #[error("the two-factor code is wrong")]
    InvalidMfaCode,
    /// The session ended meanwhile.
    #[error("the session has ended")]
    SessionExpired,
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

impl<S, H, T, M, L> Auth<S, H, T, M, L>
where
    S: Store,
    H: PasswordHasher,
    T: TokenSigner,
    M: Mailer,
{
    /// Whether the caller's session may do a sensitive action now.
    pub fn require_recent_sign_in(&self, principal: &Principal) -> Result<(), RecentSignInRequired> {
        if self.clock.now() < principal.auth_time + self.config.reauth_window {
            Ok(())
        } else {
            Err(RecentSignInRequired)
        }
    }

    /// Proves again who the caller is, with the password (and a code when
    /// 2FA is on), and answers a new token pair for the same session whose
    /// `auth_time` is now. The session's earlier refresh tokens are used up:
    /// presenting one again is a reuse, as after a refresh. A wrong password
    /// or code counts toward the lockout as at login.
    pub async fn reauthenticate(
        &self,
        principal: &Principal,
        password: &str,
        factor: &SecondFactor,
        client: &ClientContext,
    ) -> Result<IssuedTokens, ReauthenticateError> {
        let user = &principal.user;
        match self.confirm_password(user, password, "reauthenticate", client).await? {
            PasswordCheck::Right => {}
            PasswordCheck::Wrong => return Err(ReauthenticateError::InvalidCredentials),
            PasswordCheck::Locked => return Err(ReauthenticateError::Locked),
        }
        let mut amr = vec![AuthMethod::Password];
        if user.mfa_enabled {
            match self.check_second_factor(user, factor, client).await? {
                FactorCheck::Missing => return Err(ReauthenticateError::MfaRequired),
                FactorCheck::Wrong => return Err(ReauthenticateError::InvalidMfaCode),
                FactorCheck::Passed => amr.push(AuthMethod::OneTimeCode),
            }
        }
        let refresh = OpaqueToken::generate(&*self.rng);
        let session = self
            .mark_reauthenticated(principal, amr, Some(&refresh))
            .await?
            .ok_or(ReauthenticateError::SessionExpired)?;
        self.record(user.id, EventKind::Reauthenticated, client, &[]).await?;
        Ok(self.issue(user.clone(), &session, refresh, self.clock.now())?)
    }

    /// Records that the caller's session proved itself now by `amr` (a
    /// re-authentication, or a password change or 2FA disable that carried
    /// the password), with `refresh` as its new refresh token if given: the
    /// session as it is now, `None` if it has ended.
    pub(crate) async fn mark_reauthenticated(
        &self,
        principal: &Principal,
        amr: Vec<AuthMethod>,
        refresh: Option<&OpaqueToken>,
    ) -> Result<Option<crate::Session>, InfraError> {
        let (user, id) = (principal.user.id, principal.session_id);
        let hash = refresh.map(OpaqueToken::hash);
        let marked = self
            .store
            .reauthenticate_session(user, id, self.clock.now(), &amr, hash.as_ref())
            .await?;
        self.forget(Invalidation::Session(id));
        if !marked {
            return Ok(None);
        }
        Ok(self.store.session(id).await?.filter(|s| s.ended_at.is_none()))
    }
}
