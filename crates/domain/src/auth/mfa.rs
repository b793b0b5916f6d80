//! Turning TOTP two-factor authentication on and off.

use super::{Auth, PasswordCheck, Principal};
use crate::event::{ClientContext, EventKind};
use crate::mfa::{RecoveryCode, TotpSecret, RECOVERY_CODES};
use crate::ports::{Invalidation, Mailer, PasswordHasher, Store, TokenSigner};
use crate::session::EndReason;
use crate::InfraError;

/// A TOTP secret handed to its owner to enter in an authenticator app.
#[derive(Debug)]
pub struct TotpSetup {
    /// The secret (show it once, as base32 or as the QR code of the URI).
    pub secret: TotpSecret,
    /// The `otpauth://totp/…` URI.
    pub otpauth_uri: String,
}

/// Outcomes of [`Auth::begin_totp`].
#[derive(Debug, thiserror::Error)]
pub enum BeginTotpError {
    /// 2FA is already on: turn it off first.
    #[error("two-factor authentication is already on")]
    AlreadyEnabled,
    /// The session's last sign-in is too long ago: re-authenticate first.
    #[error(transparent)]
    RecentSignInRequired(#[from] super::RecentSignInRequired),
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// Outcomes of [`Auth::confirm_totp`].
#[derive(Debug, thiserror::Error)]
pub enum ConfirmTotpError {
    /// No setup is pending (never begun, or 2FA already on).
    #[error("no two-factor setup is pending")]
    NotPending,
    /// The code does not match the pending secret.
    #[error("the two-factor code is wrong")]
    InvalidCode,
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// Outcomes of [`Auth::disable_totp`].
#[derive(Debug, thiserror::Error)]
pub enum DisableTotpError {
    /// The password is wrong; counted toward the lockout.
    #[error("the password is wrong")]
    InvalidCredentials,
    /// Locked out after wrong passwords: no password is checked until it ends.
    #[error("the account is locked")]
    Locked,
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
    /// Starts enrolling an authenticator app: a new secret, kept encrypted
    /// and unconfirmed. 2FA is not on until [`confirm_totp`](Self::confirm_totp).
    /// Beginning again replaces an unconfirmed secret. A sensitive action:
    /// it needs a recent sign-in (a stolen token must not enrol its own app).
    pub async fn begin_totp(&self, principal: &Principal) -> Result<TotpSetup, BeginTotpError> {
        let user = &principal.user;
        if user.mfa_enabled {
            return Err(BeginTotpError::AlreadyEnabled);
        }
        self.require_recent_sign_in(principal)?;
        let secret = TotpSecret::generate(&*self.rng);
        let sealed = self
            .secrets
            .seal(secret.expose_bytes(), user.id.to_string().as_bytes())?;
        if !self.store.begin_totp(user.id, &sealed, self.clock.now()).await? {
            return Err(BeginTotpError::AlreadyEnabled);
        }
        let otpauth_uri = secret.otpauth_uri(&self.config.mfa_issuer, user.email.as_str());
        Ok(TotpSetup { secret, otpauth_uri })
    }

    /// Turns 2FA on with a code from the app; answers the ten recovery codes,
    /// shown this once. The confirming code is spent: it cannot log in.
    pub async fn confirm_totp(
        &self,
        principal: &Principal,
        code: &str,
        client: &ClientContext,
    ) -> Result<Vec<RecoveryCode>, ConfirmTotpError> {
        let user = principal.user.id;
        let enrolment = self
            .store
            .totp(user)
            .await?
            .filter(|e| !e.confirmed)
            .ok_or(ConfirmTotpError::NotPending)?;
        let secret = TotpSecret::from_bytes(
            self.secrets
                .open(&enrolment.sealed_secret, user.to_string().as_bytes())?,
        );
        let now = self.clock.now();
        let step = secret.matching_step(code, now).ok_or(ConfirmTotpError::InvalidCode)?;
        let codes: Vec<RecoveryCode> = (0..RECOVERY_CODES)
            .map(|_| RecoveryCode::generate(&*self.rng))
            .collect();
        let hashes: Vec<_> = codes.iter().map(RecoveryCode::hash).collect();
        if !self.store.confirm_totp(user, step, &hashes, now).await? {
            return Err(ConfirmTotpError::NotPending);
        }
        self.forget(Invalidation::User(user));
        // A factor changed: every other session ends, as for a password
        // change (a session opened with only the password is not trusted on).
        self.end_other_sessions(principal, EndReason::MfaChanged).await?;
        self.record(user, EventKind::MfaEnabled, client, &[]).await?;
        Ok(codes)
    }

    /// Turns 2FA off, with the account's password. Turning off what is
    /// off succeeds (and records nothing).
    pub async fn disable_totp(
        &self,
        principal: &Principal,
        password: &str,
        client: &ClientContext,
    ) -> Result<(), DisableTotpError> {
        let user = &principal.user;
        match self.confirm_password(user, password, "mfa_disable", client).await? {
            PasswordCheck::Right => {}
            PasswordCheck::Wrong => return Err(DisableTotpError::InvalidCredentials),
            PasswordCheck::Locked => return Err(DisableTotpError::Locked),
        }
        let was_on = self.store.totp(user.id).await?.is_some_and(|e| e.confirmed);
        self.store.disable_totp(user.id).await?;
        // The password was right: that counts as a re-authentication.
        self.mark_reauthenticated(principal, vec![crate::AuthMethod::Password], None)
            .await?;
        self.forget(Invalidation::User(user.id));
        if was_on {
            self.end_other_sessions(principal, EndReason::MfaChanged).await?;
            self.record(user.id, EventKind::MfaDisabled, client, &[]).await?;
        }
        Ok(())
    }
}
