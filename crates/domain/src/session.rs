//! Login sessions: one per device or browser, each with a rotating refresh token.

use crate::{SessionId, UserId};
use chrono::{DateTime, Duration, Utc};

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
    /// The last sign-in or re-authentication (`auth_time`): what the
    /// recent-sign-in rule for sensitive actions reads.
    pub auth_time: DateTime<Utc>,
    /// How the holder proved who they are then (`amr`).
    pub amr: Vec<AuthMethod>,
}

/// A way of proving who one is, by its RFC 8176 name (the `amr` claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString)]
pub enum AuthMethod {
    /// A password (`pwd`).
    #[strum(serialize = "pwd")]
    Password,
    /// A one-time code: TOTP or a recovery code (`otp`).
    #[strum(serialize = "otp")]
    OneTimeCode,
    /// A hardware-bound key: a passkey (`hwk`).
    #[strum(serialize = "hwk")]
    HardwareKey,
    /// A federated login through an OAuth provider (`fed`).
    #[strum(serialize = "fed")]
    Federated,
}

impl AuthMethod {
    /// The RFC 8176 name.
    pub fn as_str(&self) -> &'static str {
        self.into()
    }

    /// The method of an RFC 8176 name this service uses.
    ///
    /// ```
    /// use convosphere_domain::session::AuthMethod;
    /// assert_eq!(AuthMethod::parse("otp"), Some(AuthMethod::OneTimeCode));
    /// assert_eq!(AuthMethod::parse("sms"), None);
    /// ```
    pub fn parse(name: &str) -> Option<Self> {
        name.parse().ok()
    }
}

impl Session {
    /// Whether the session can still be used at `now`, given the idle timeout.
    pub fn is_active(&self, now: DateTime<Utc>, idle_timeout: Duration) -> bool {
        self.ended_at.is_none() && now < self.expires_at && now < self.last_active_at + idle_timeout
    }

    /// Whether its holder signed in or re-authenticated within `window` of
    /// `now`: the recent-sign-in rule for sensitive actions.
    pub fn signed_in_recently(&self, now: DateTime<Utc>, window: Duration) -> bool {
        now < self.auth_time + window
    }
}

/// Why a session ended, as stored: `logout`, `refresh_reuse`…
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::Display, strum::EnumString)]
#[strum(serialize_all = "snake_case", parse_err_ty = String, parse_err_fn = unknown_end_reason)]
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
    /// The account's e-mail address changed (confirmed by its link).
    EmailChanged,
}

impl EndReason {
    /// The reason as stored.
    pub fn as_str(&self) -> &'static str {
        self.into()
    }
}

impl EndReason {
    /// Every reason.
    pub const ALL: &'static [EndReason] = &[
        Self::Logout,
        Self::Revoked,
        Self::Evicted,
        Self::RefreshReuse,
        Self::PasswordChanged,
        Self::PasswordReset,
        Self::Suspended,
        Self::MfaChanged,
        Self::EmailChanged,
    ];
}

fn unknown_end_reason(name: &str) -> String {
    format!("unknown session end reason {name:?}")
}

#[cfg(test)]
mod tests {
    use super::EndReason;

    #[test]
    fn every_end_reason_reads_back_as_stored() {
        for reason in EndReason::ALL {
            assert_eq!(reason.as_str().parse::<EndReason>(), Ok(*reason));
        }
        // A reason left out of ALL could be stored but never read back; this
        // match makes a new variant come here and be listed.
        let listed = |reason: EndReason| match reason {
            EndReason::Logout
            | EndReason::Revoked
            | EndReason::Evicted
            | EndReason::RefreshReuse
            | EndReason::PasswordChanged
            | EndReason::PasswordReset
            | EndReason::Suspended
            | EndReason::MfaChanged
            | EndReason::EmailChanged => EndReason::ALL.contains(&reason),
        };
        assert!(EndReason::ALL.iter().copied().all(listed));
        assert_eq!(EndReason::ALL.len(), 9);
    }
}
