//! Login sessions: one per device or browser, each with a rotating refresh token.

use crate::{SessionId, UserId};
use chrono::{DateTime, Duration, Utc};
use std::fmt;
use std::str::FromStr;

/// A login session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session's id (the `sid` claim of its access tokens).
    pub id: SessionId,
    /// Whose session it is.
    pub user_id: UserId,
    /// Login time.
    pub created_at: DateTime<Utc>,
    /// Last login, refresh or authenticated request (written at most once a minute).
    pub last_active_at: DateTime<Utc>,
    /// The absolute end: login time plus the refresh token lifetime.
    pub expires_at: DateTime<Utc>,
    /// When it was ended, if it was.
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it was ended.
    pub end_reason: Option<EndReason>,
    /// Client IP at login.
    pub ip: Option<String>,
    /// Client `User-Agent` at login.
    pub user_agent: Option<String>,
}

impl Session {
    /// Whether the session can still be used at `now`, given the idle timeout.
    pub fn is_active(&self, now: DateTime<Utc>, idle_timeout: Duration) -> bool {
        self.ended_at.is_none() && now < self.expires_at && now < self.last_active_at + idle_timeout
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The user logged out.
    Logout,
    /// The user revoked it from another session.
    Revoked,
    /// A newer login pushed it past the session cap.
    Evicted,
    /// Its refresh token was used twice (a theft signal).
    RefreshReuse,
    /// The password was changed from another session.
    PasswordChanged,
    /// The password was reset by e-mail.
    PasswordReset,
    /// An operator suspended the account.
    Suspended,
    /// Two-factor authentication was turned on or off from another session.
    MfaChanged,
}

impl EndReason {
    /// The reason as stored.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::Revoked => "revoked",
            Self::Evicted => "evicted",
            Self::RefreshReuse => "refresh_reuse",
            Self::PasswordChanged => "password_changed",
            Self::PasswordReset => "password_reset",
            Self::Suspended => "suspended",
            Self::MfaChanged => "mfa_changed",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EndReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Logout,
            Self::Revoked,
            Self::Evicted,
            Self::RefreshReuse,
            Self::PasswordChanged,
            Self::PasswordReset,
            Self::Suspended,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == s)
        .ok_or_else(|| format!("unknown session end reason {s:?}"))
    }
}
