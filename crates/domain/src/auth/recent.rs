//! The recent-sign-in rule ("sudo mode"): sensitive actions need a sign-in
//! or re-authentication within `AuthConfig::reauth_window`, so that a stolen
//! access token alone cannot enrol its own authenticator or mint a key that
//! outlives a password reset.

//!
//! The types are here; the rule itself is `Auth::require_recent_sign_in`,
//! and `Auth::reauthenticate` renews a session (both with the other
//! password use cases, in `auth.rs`).

use super::LoginError;
use crate::InfraError;

/// A sensitive action was asked of a session whose last sign-in or
/// re-authentication is older than the window: nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this action needs a recent sign-in: re-authenticate first")]
pub struct RecentSignInRequired;

/// Outcomes of [`Auth::reauthenticate`](super::Auth::reauthenticate).
#[derive(Debug, thiserror::Error)]
pub enum ReauthenticateError {
    /// Refused as a login with this password and code would be: a wrong
    /// password or code (counted toward the lockout), a missing code, a
    /// lockout, an infrastructure failure.
    #[error(transparent)]
    Refused(#[from] LoginError),
    /// The session ended meanwhile.
    #[error("the session has ended")]
    SessionExpired,
}

impl From<InfraError> for ReauthenticateError {
    fn from(cause: InfraError) -> Self {
        Self::Refused(LoginError::Internal(cause))
    }
}
