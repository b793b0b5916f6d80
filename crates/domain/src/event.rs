//! The audit trail: security events of an account, kept for a configured
//! time. Events never hold secrets: no password, token, key or code.

use crate::UserId;
use chrono::{DateTime, Utc};
use std::fmt;
use std::str::FromStr;

pub use crate::ids::EventId;

/// Where a request came from, as far as the service can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientContext {
    /// The client IP (behind trusted proxies, from `X-Forwarded-For`).
    pub ip: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
}

impl ClientContext {
    /// An operator's command: no IP, no user agent.
    pub fn operator() -> Self {
        Self::default()
    }
}

macro_rules! event_kinds {
    ($($(#[$meta:meta])* $variant:ident = $name:literal,)+) => {
        /// What happened.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum EventKind {
            $($(#[$meta])* $variant,)+
        }

        impl EventKind {
            /// Every kind.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)+];

            /// The stable name, as in the API and storage.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)+
                }
            }
        }

        impl FromStr for EventKind {
            type Err = UnknownEventKind;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(EventKind::$variant),)+
                    _ => Err(UnknownEventKind(s.to_owned())),
                }
            }
        }
    };
}

event_kinds! {
    /// An account was made.
    Signup = "signup",
    /// The e-mail address was proved.
    EmailVerified = "email_verified",
    /// A login succeeded (password, with 2FA if on, or OAuth).
    LoginSucceeded = "login_succeeded",
    /// A signed-in user proved who they are again, for sensitive actions.
    Reauthenticated = "reauthenticated",
    /// A login with the account's e-mail failed (`details.reason`).
    LoginFailed = "login_failed",
    /// Too many failed logins locked the account.
    LockedOut = "locked_out",
    /// An operator suspended the account.
    Suspended = "suspended",
    /// An operator lifted a suspension or lockout.
    Unlocked = "unlocked",
    /// The password was changed by its owner.
    PasswordChanged = "password_changed",
    /// The password was set through a reset link.
    PasswordReset = "password_reset",
    /// A session ended (`details.reason`).
    SessionEnded = "session_ended",
    /// 2FA was turned on.
    MfaEnabled = "mfa_enabled",
    /// 2FA was turned off.
    MfaDisabled = "mfa_disabled",
    /// A recovery code was used to log in.
    RecoveryCodeUsed = "recovery_code_used",
    /// An API key was made.
    ApiKeyCreated = "api_key_created",
    /// An API key was revoked.
    ApiKeyRevoked = "api_key_revoked",
    /// An API key was replaced by a new one.
    ApiKeyRotated = "api_key_rotated",
    /// An API key was used from a client network it had not used in 30
    /// days (`details`: the key's prefix and name, the network).
    ApiKeyNewNetwork = "api_key.new_network",
    /// An API key's first `rate_limited` answer of a day (UTC).
    ApiKeyRateLimited = "api_key.rate_limited",
    /// An operator changed the plan.
    PlanChanged = "plan_changed",
    /// A provider identity was linked (OAuth).
    OAuthLinked = "oauth_linked",
    /// A provider identity was unlinked by its owner (`details.provider`).
    OAuthUnlinked = "oauth_unlinked",
    /// A passkey was added (`details`: its id and name).
    PasskeyAdded = "passkey_added",
    /// A passkey was removed by its owner (`details`: its id and name).
    PasskeyRemoved = "passkey_removed",
    /// A change of the e-mail address was asked for (`details`: `from`, `to`).
    EmailChangeRequested = "email_change_requested",
    /// The e-mail address changed, confirmed by the link sent to the new
    /// one (`details`: `from`, `to`).
    EmailChanged = "email_changed",
    /// The account was deleted (`details.by`: `owner` or `operator`). The
    /// account's earlier events are kept without IP, user agent or details.
    AccountDeleted = "account_deleted",
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored event kind this version does not know.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown event kind {0:?}")]
pub struct UnknownEventKind(pub String);

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    /// Time-ordered id: also the pagination cursor.
    pub id: EventId,
    /// The account.
    pub user_id: UserId,
    /// What happened.
    pub kind: EventKind,
    /// When.
    pub at: DateTime<Utc>,
    /// From where.
    pub ip: Option<String>,
    /// With what.
    pub user_agent: Option<String>,
    /// Non-secret particulars (a reason, a key's prefix, a plan), in order.
    pub details: Vec<(String, String)>,
}

/// One page of events, newest first.
#[derive(Debug, Clone)]
pub struct EventPage {
    /// The events.
    pub events: Vec<SecurityEvent>,
    /// The cursor of the next (older) page, if there is one.
    pub next: Option<EventId>,
}
